"""Delayed delivery (pylog/share/delivery.py) to an unmodified
confluent_kafka.ShareConsumer: records produced by a plain Kafka producer
with `pylog.deliver.at` / `pylog.deliver.after` headers, or into a topic
with `pylog.delivery.delay.ms`, reach share consumers no earlier than due;
plain consumers read them at once; a broker restart keeps them delayed.
Lateness is measured by bench P, not asserted here (a loaded machine)."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaException, ShareConsumer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                   ResourceType)

from pylog.testing import running_broker

from .delivery_clients import TIMEOUT, broker, now_ms, producer, setup  # noqa: F401 (broker: a fixture)
from .wire import (CONFIG, acquired, connect, create_topic, join_assigned, member_id, set_group_configs,
                   share_fetch)

def share_consumer(b, group, **conf):
    c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group,
                       **{k.replace("_", "."): v for k, v in conf.items()}})
    return c


def collect(c, want, timeout=TIMEOUT, extra=0.0):
    """{value: arrival ms} of records polled until `want` values arrived
    (then `extra` seconds more, to see that nothing else comes)."""
    got = {}
    deadline = time.monotonic() + timeout
    while not want <= set(got):
        assert time.monotonic() < deadline, f"timed out; missing {sorted(want - set(got))[:5]}"
        for m in c.poll(0.1):
            assert m.error() is None, m.error()
            got.setdefault(m.value(), now_ms())
    end = time.monotonic() + extra
    while time.monotonic() < end:
        for m in c.poll(0.1):
            got.setdefault(m.value(), now_ms())
    return got


def test_deliver_at_and_after_hold_records_until_due_and_plain_consumers_see_them_at_once(broker):
    topic, group = "dl-headers", "dl-headers-g"
    p = setup(broker, topic, group)
    base = now_ms()
    due = {}
    for i in range(10):
        p.produce(topic, b"plain-%d" % i)
        at = base + 1500 + 150 * i
        p.produce(topic, b"at-%d" % i, headers=[("pylog.deliver.at", str(at).encode())])
        due[b"at-%d" % i] = at
        # relative to the record's own timestamp, here set by the producer
        ts = base - 5000
        p.produce(topic, b"after-%d" % i, timestamp=ts, headers=[("pylog.deliver.after", str(7000 + 100 * i))])
        due[b"after-%d" % i] = ts + 7000 + 100 * i
    # An hour away: never handed to the share consumer during the test.
    p.produce(topic, b"later", headers=[("pylog.deliver.at", str(base + 3600_000).encode())])
    assert p.flush(30) == 0

    c = share_consumer(broker, group)
    c.subscribe([topic])
    got = collect(c, {b"plain-%d" % i for i in range(10)} | set(due), extra=1.0)
    c.commit_sync()
    c.close()
    for v, at in due.items():
        assert got[v] >= at, (v, got[v] - at)
    assert b"later" not in got

    # A plain consumer reads the log as it is, delayed records included.
    pc = Consumer({"bootstrap.servers": str(broker), "group.id": "dl-plain", "auto.offset.reset": "earliest"})
    pc.subscribe([topic])
    seen = set()
    deadline = time.monotonic() + TIMEOUT
    while b"later" not in seen:
        assert time.monotonic() < deadline
        m = pc.poll(0.2)
        if m is not None and m.error() is None:
            seen.add(m.value())
    pc.close()
    assert len(seen) == 31


def test_a_malformed_header_value_is_as_if_absent(broker):
    topic, group = "dl-bad", "dl-bad-g"
    p = setup(broker, topic, group)
    p.produce(topic, b"x", headers=[("pylog.deliver.at", b"soon")])
    p.produce(topic, b"y", headers=[("pylog.deliver.after", None)])
    assert p.flush(30) == 0
    c = share_consumer(broker, group)
    c.subscribe([topic])
    assert set(collect(c, {b"x", b"y"})) == {b"x", b"y"}
    c.close()


def describe(b, topic):
    a = AdminClient({"bootstrap.servers": str(b)})
    r = ConfigResource(ResourceType.TOPIC, topic)
    return {k: e.value for k, e in a.describe_configs([r])[r].result(30).items()}


def test_the_topic_delay_is_a_topic_config_and_holds_every_record(broker):
    topic, group = "dl-topic", "dl-topic-g"
    a = AdminClient({"bootstrap.servers": str(broker)})
    a.create_topics([NewTopic(topic, 1, 1, config={"pylog.delivery.delay.ms": "1200"})])[topic].result(30)
    assert describe(broker, topic)["pylog.delivery.delay.ms"] == "1200"
    assert describe(broker, topic)["pylog.priority.max.wait.ms"] == "30000"
    with pytest.raises(KafkaException, match="INVALID_CONFIG|at least 0"):
        a.create_topics([NewTopic("dl-topic-bad", 1, 1, config={"pylog.delivery.delay.ms": "-1"})])[
            "dl-topic-bad"].result(30)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    p = producer(broker)
    sent = {}
    for i in range(20):
        v = b"t-%d" % i
        sent[v] = now_ms()
        p.produce(topic, v, timestamp=sent[v])
        # A header may only delay a record further than the topic does.
        if i == 0:
            p.produce(topic, b"early", headers=[("pylog.deliver.at", str(sent[v] - 60_000).encode())])
            sent[b"early"] = sent[v]
        time.sleep(0.02)
    assert p.flush(30) == 0
    c = share_consumer(broker, group)
    c.subscribe([topic])
    got = collect(c, set(sent))
    c.commit_sync()
    c.close()
    for v, ts in sent.items():
        assert got[v] >= ts + 1200, (v, got[v] - ts)
    # AlterConfigs takes it back to 0: new records come at once (no lower bound to check).
    r = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("pylog.delivery.delay.ms", "0", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([r])[r].result(30)
    assert describe(broker, topic)["pylog.delivery.delay.ms"] == "0"


def test_delayed_records_stay_delayed_across_a_broker_restart(tmp_path):
    topic, group = "dl-restart", "dl-restart-g"
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        p = setup(b, topic, group)
        base = now_ms()
        due = {}
        for i in range(10):
            p.produce(topic, b"plain-%d" % i)
            due[b"d-%d" % i] = base + 8000 + 100 * i
            p.produce(topic, b"d-%d" % i, headers=[("pylog.deliver.at", str(due[b"d-%d" % i]).encode())])
        assert p.flush(30) == 0
        c = share_consumer(b, group)
        c.subscribe([topic])
        first = collect(c, {b"plain-%d" % i for i in range(10)})
        c.commit_sync()
        c.close()
        b.restart()
        c = share_consumer(b, group)
        c.subscribe([topic])
        # Under load the first session can outlast the due times and take some.
        after = collect(c, set(due) - set(first), extra=1.0)
        c.commit_sync()
        c.close()
    assert not set(first) & set(due) or all(first[v] >= due[v] for v in set(first) & set(due))
    for v, at in due.items():
        assert (first.get(v) or after[v]) >= at
    # Nothing accepted before the restart comes back after it.
    assert not {v for v in after if v.startswith(b"plain-")}


def test_a_fetch_waiting_in_the_purgatory_is_woken_when_a_record_comes_due(broker):
    # Wire level, to hold one ShareFetch open: it must come back with the
    # record when it falls due, not empty at the end of its MaxWaitMs.
    topic, group = "dl-wake", "dl-wake-g"
    conn = connect(broker)
    create_topic(broker, topic)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    mid = member_id()
    hb = join_assigned(conn, group, mid, [topic])
    tp = (hb.assignment.topic_partitions[0].topic_id, 0)
    epoch = 0
    held = broker.broker.share.manager.held
    while (group, tp[0], 0) not in held:            # the share-partition loaded
        assert share_fetch(conn, group, mid, epoch, [tp], max_wait_ms=100).error_code == 0
        epoch += 1
    p = producer(broker)
    due = now_ms() + 3000
    p.produce(topic, b"due", headers=[("pylog.deliver.at", str(due).encode())])
    assert p.flush(30) == 0
    r = share_fetch(conn, group, mid, epoch, [tp], max_wait_ms=28_000)
    got = now_ms()
    assert acquired(r) == {tp: [(0, 0, 1)]}
    assert got >= due
    # Woken at the due time, not found when MaxWaitMs ran out (25 s of slack
    # between the two: this tells which, not how fast).
    assert got < due + 20_000, got - due
    conn.close()
