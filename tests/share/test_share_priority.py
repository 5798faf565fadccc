"""Priority (pylog/share/delivery.py) to an unmodified
confluent_kafka.ShareConsumer: records with a `pylog.priority` header come
before a backlog of plain ones, and `pylog.priority.max.wait.ms` bounds how
long a low-priority record waits behind higher ones."""
from __future__ import annotations

import time

from confluent_kafka import ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

from .delivery_clients import TIMEOUT, broker, now_ms, producer, setup  # noqa: F401 (broker: a fixture)
from .wire import set_group_configs


def share_consumer(b, group):
    # Small fetches, so that a fetch's choice among what is available shows.
    return ShareConsumer({"bootstrap.servers": str(b), "group.id": group, "max.poll.records": 10})


def test_higher_priority_records_come_before_a_backlog(broker):
    topic, group = "pr-backlog", "pr-backlog-g"
    p = setup(broker, topic, group)
    for i in range(300):
        p.produce(topic, b"low-%d" % i)
    for i in range(10):
        p.produce(topic, b"mid-%d" % i, headers=[("pylog.priority", b"5")])
    for i in range(10):
        p.produce(topic, b"high-%d" % i, headers=[("pylog.priority", b"9")])
    assert p.flush(30) == 0
    c = share_consumer(broker, group)
    c.subscribe([topic])
    order = []
    deadline = time.monotonic() + TIMEOUT
    while len(order) < 320:
        assert time.monotonic() < deadline, f"timed out after {len(order)} records"
        for m in c.poll(0.2):
            assert m.error() is None, m.error()
            order.append(m.value())
    c.commit_sync()
    c.close()
    assert sorted(order) == sorted([b"low-%d" % i for i in range(300)] + [b"mid-%d" % i for i in range(10)]
                                   + [b"high-%d" % i for i in range(10)])
    pos = {v: i for i, v in enumerate(order)}
    last_high = max(pos[b"high-%d" % i] for i in range(10))
    last_mid = max(pos[b"mid-%d" % i] for i in range(10))
    # In offset order the 300 plain records would all come first.
    assert last_high < 100, order[:last_high + 1]
    assert last_mid < 150
    assert last_high < min(pos[b"mid-%d" % i] for i in range(10)) or last_high < 40


def test_a_low_priority_record_waits_at_most_the_max_wait_then_counts_as_top(broker):
    topic, group = "pr-starve", "pr-starve-g"
    a = AdminClient({"bootstrap.servers": str(broker)})
    a.create_topics([NewTopic(topic, 1, 1, config={"pylog.priority.max.wait.ms": "1500"})])[topic].result(30)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    p = producer(broker)
    sent = {}
    for i in range(5):
        sent[b"low-%d" % i] = now_ms()
        p.produce(topic, b"low-%d" % i, timestamp=sent[b"low-%d" % i])
    # Far more high-priority work than the consumer below can do in the max
    # wait (12 s of it against 1.5 s), so the margin covers what librdkafka
    # has acquired ahead when the low ones come of age.
    for i in range(600):
        p.produce(topic, b"high-%d" % i, headers=[("pylog.priority", b"9")])
    assert p.flush(30) == 0
    c = share_consumer(broker, group)
    c.subscribe([topic])
    order, arrived = [], {}
    deadline = time.monotonic() + TIMEOUT * 2
    while len(order) < 605:
        assert time.monotonic() < deadline, f"timed out after {len(order)} records"
        for m in c.poll(0.2):
            assert m.error() is None, m.error()
            order.append(m.value())
            arrived[m.value()] = now_ms()
            time.sleep(0.02)        # 20 ms of work a record: 600 of them take 12 s at least
    c.commit_sync()
    c.close()
    pos = {v: i for i, v in enumerate(order)}
    lows = [b"low-%d" % i for i in range(5)]
    for v in lows:
        # Not before its max wait (the high ones were there all along) ...
        assert arrived[v] >= sent[v] + 1500, (v, arrived[v] - sent[v])
    # ... and not after all the high ones either: it did not starve.
    assert max(pos[v] for v in lows) < 600 - 50, [pos[v] for v in lows]
