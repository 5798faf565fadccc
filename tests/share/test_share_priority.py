"""Priority (pylog/share/delivery.py) to an unmodified
confluent_kafka.ShareConsumer: records with a `pylog.priority` header come
before a backlog of plain ones, and `pylog.priority.max.wait.ms` bounds how
long a low-priority record waits behind higher ones."""
from __future__ import annotations

import time

from confluent_kafka import Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

from .delivery_clients import TIMEOUT, broker, now_ms, producer, setup  # noqa: F401 (broker: a fixture)
from .wire import acquired, connect, join_assigned, member_id, set_group_configs, share_fetch


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
    """A member asks for 10 records at a time over the wire, as a busy
    consumer would (0.4 s of work each time): the low records are not taken
    while they have waited less than the max wait (the high ones come first),
    and the first fetch sent after it takes them all. The clocks are the
    test's and the broker's: one machine, so a fetch sent after the low ones
    came of age is acquired after it too, however loaded the machine is.
    (librdkafka's consumer acquires ahead of what it delivers, so its delivery
    order cannot show the bound.)"""
    topic, group, max_wait = "pr-starve", "pr-starve-g", 20000
    a = AdminClient({"bootstrap.servers": str(broker)})
    a.create_topics([NewTopic(topic, 1, 1, config={"pylog.priority.max.wait.ms": str(max_wait)})])[topic].result(30)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    conn = connect(broker)
    member = member_id()
    r = join_assigned(conn, group, member, [topic])
    tid = r.assignment.topic_partitions[0].topic_id
    # One batch (a long linger): its first records the low ones, stamped 4 s
    # ago, so they come of age 4 s before the batch's max timestamp would.
    p = Producer({"bootstrap.servers": str(broker), "acks": "all", "linger.ms": 1000})
    sent = now_ms() - 4000
    for i in range(5):
        p.produce(topic, b"low-%d" % i, timestamp=sent)
    # 60 fetches of high records at 0.4 s each: 24 s, well past the max wait,
    # which leaves 16 s for the producing before the first fetch.
    for i in range(600):
        p.produce(topic, b"high-%d" % i, headers=[("pylog.priority", b"9")])
    assert p.flush(30) == 0
    lows = set(range(5))
    fetches, acks, epoch = [], None, 0
    deadline = time.monotonic() + TIMEOUT * 2
    while lows - {o for _, _, got in fetches for o in got}:
        assert time.monotonic() < deadline, fetches[-3:]
        asked = now_ms()
        resp = share_fetch(conn, group, member, epoch, parts=[(tid, 0)], acks=acks, max_records=10)
        epoch += 1
        answered = now_ms()
        ranges = acquired(resp).get((tid, 0), [])
        got = {o for f, l, _ in ranges for o in range(f, l + 1)}
        fetches.append((asked, answered, got))
        acks = {(tid, 0): [(f, l, [1]) for f, l, _ in ranges]} if ranges else None
        time.sleep(0.4)
    share_fetch(conn, group, member, -1, parts=(), acks=acks)
    conn.close()
    came_of_age = sent + max_wait
    # Not before its max wait: the high ones were there all along ...
    early = [(asked - sent, got & lows) for asked, answered, got in fetches if answered < came_of_age]
    assert early and not any(low for _, low in early), early
    # ... and at the first fetch after it, all of them: they did not starve.
    first_after = next(got for asked, _, got in fetches if asked >= came_of_age)
    assert lows <= first_after, [(a - sent, min(g, default=None), sorted(g & lows)) for a, _, g in fetches]
