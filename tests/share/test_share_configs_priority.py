"""The topic config `pylog.priority.default` (pylog/share/delivery.py): the
priority of records without a `pylog.priority` header, validated and
described as a topic config, read at every fetch (an alter applies to
records not yet delivered); seen by an unmodified confluent_kafka
ShareConsumer over sockets."""
from __future__ import annotations

import time
import warnings

import pytest
from confluent_kafka import AcknowledgeType, KafkaException, ShareConsumer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic, ResourceType)

from .delivery_clients import TIMEOUT, broker, producer  # noqa: F401 (broker: a fixture)
from .wire import set_group_configs

KEY = "pylog.priority.default"
NO_AGING = {"pylog.priority.max.wait.ms": "600000"}    # no record ages into the top in these tests


def admin(b):
    return AdminClient({"bootstrap.servers": str(b)})


def entries(b, topic):
    r = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(b)            # held until the answer is in: a client destroyed first fails it
    return a.describe_configs([r])[r].result(30)


def share_consumer(b, group):
    return ShareConsumer({"bootstrap.servers": str(b), "group.id": group, "max.poll.records": 10})


def consume(c, n):
    order = []
    deadline = time.monotonic() + TIMEOUT
    while len(order) < n:
        assert time.monotonic() < deadline, f"timed out after {len(order)} records"
        for m in c.poll(0.2):
            assert m.error() is None, m.error()
            order.append(m.value())
    return order


def test_the_default_priority_is_a_validated_described_topic_config(broker):
    a = admin(broker)
    a.create_topics([NewTopic("pd-plain", 1, 1)])["pd-plain"].result(30)
    e = entries(broker, "pd-plain")[KEY]
    assert (e.value, e.source, e.is_read_only) == ("0", ConfigSource.DEFAULT_CONFIG.value, False)
    a.create_topics([NewTopic("pd-set", 1, 1, config={KEY: "7"})])["pd-set"].result(30)
    e = entries(broker, "pd-set")[KEY]
    assert (e.value, e.source) == ("7", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    for bad in ("10", "-1", "high", "2.5"):
        with pytest.raises(KafkaException, match="INVALID_CONFIG"):
            a.create_topics([NewTopic("pd-bad", 1, 1, config={KEY: bad})])["pd-bad"].result(30)
        r = ConfigResource(ResourceType.TOPIC, "pd-set", incremental_configs=[
            ConfigEntry(KEY, bad, incremental_operation=AlterConfigOpType.SET)])
        with pytest.raises(KafkaException, match="INVALID_CONFIG"):
            a.incremental_alter_configs([r])[r].result(30)
        r = ConfigResource(ResourceType.TOPIC, "pd-set", set_config={KEY: bad})
        with pytest.raises(KafkaException, match="INVALID_CONFIG"), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)    # AlterConfigs (legacy) is what is tested
            a.alter_configs([r])[r].result(30)
    assert entries(broker, "pd-set")[KEY].value == "7"
    r = ConfigResource(ResourceType.TOPIC, "pd-set", incremental_configs=[
        ConfigEntry(KEY, "9", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([r])[r].result(30)
    assert entries(broker, "pd-set")[KEY].value == "9"
    r = ConfigResource(ResourceType.TOPIC, "pd-set", incremental_configs=[
        ConfigEntry(KEY, None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([r])[r].result(30)
    assert entries(broker, "pd-set")[KEY].source == ConfigSource.DEFAULT_CONFIG.value


def test_records_without_the_header_take_the_topics_priority_and_a_header_overrides_it(broker):
    topic, group = "pd-order", "pd-order-g"
    a = admin(broker)
    a.create_topics([NewTopic(topic, 1, 1, config={KEY: "5", **NO_AGING})])[topic].result(30)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    p = producer(broker)
    # In offset order: below the default, then plain (the default, 5), then above it.
    for i in range(20):
        p.produce(topic, b"low-%d" % i, headers=[("pylog.priority", b"0")])
    for i in range(200):
        p.produce(topic, b"plain-%d" % i)
    for i in range(10):
        p.produce(topic, b"high-%d" % i, headers=[("pylog.priority", b"6")])
    assert p.flush(30) == 0
    c = share_consumer(broker, group)
    c.subscribe([topic])
    order = consume(c, 230)
    c.commit_sync()
    c.close()
    assert sorted(order) == sorted([b"low-%d" % i for i in range(20)] + [b"plain-%d" % i for i in range(200)]
                                   + [b"high-%d" % i for i in range(10)])
    pos = {v: i for i, v in enumerate(order)}
    # In offset order the 20 low ones would come first and the high ones last.
    assert max(pos[b"high-%d" % i] for i in range(10)) < 60, order[:60]
    assert min(pos[b"low-%d" % i] for i in range(20)) >= 150, order


def test_an_alter_of_the_default_applies_to_records_not_yet_delivered(broker):
    topic, group = "pd-alter", "pd-alter-g"
    a = admin(broker)
    a.create_topics([NewTopic(topic, 1, 1, config={KEY: "9", **NO_AGING})])[topic].result(30)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    p = producer(broker)
    for i in range(20):
        p.produce(topic, b"three-%d" % i, headers=[("pylog.priority", b"3")])
    for i in range(300):
        p.produce(topic, b"plain-%d" % i)
    assert p.flush(30) == 0
    # At default 9 the plain records outrank the 3s, which wait (parked) ...
    c = share_consumer(broker, group)
    c.subscribe([topic])
    first = consume(c, 30)
    c.commit_sync()
    c.close()
    assert not [v for v in first if v.startswith(b"three")], first
    # ... and at default 0 the 3s, indexed and parked already, come first of the rest.
    r = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(KEY, "0", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([r])[r].result(30)
    c = share_consumer(broker, group)
    c.subscribe([topic])
    threes = {b"three-%d" % i for i in range(20)}
    rest = []
    deadline = time.monotonic() + TIMEOUT
    while not threes <= set(rest):
        assert time.monotonic() < deadline, f"timed out after {len(rest)} records"
        for m in c.poll(0.2):
            assert m.error() is None, m.error()
            rest.append(m.value())
    c.commit_sync()
    c.close()
    pos = {v: i for i, v in enumerate(rest)}
    assert max(pos[v] for v in threes) < 80, rest[:80]


def test_a_released_record_below_the_default_comes_back(broker):
    topic, group = "pd-release", "pd-release-g"
    a = admin(broker)
    a.create_topics([NewTopic(topic, 1, 1, config={KEY: "5", **NO_AGING})])[topic].result(30)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    p = producer(broker)
    for i in range(3):
        p.produce(topic, b"low-%d" % i, headers=[("pylog.priority", b"1")])
    assert p.flush(30) == 0
    c = ShareConsumer({"bootstrap.servers": str(broker), "group.id": group,
                       "share.acknowledgement.mode": "explicit"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + TIMEOUT
    try:
        # Released once, each comes back (in offset order, as any released record) and is accepted then.
        while len([g for g in got if g[1] == 2]) < 3:
            assert time.monotonic() < deadline, f"deliveries so far {got}"
            for msg in c.poll(0.2):
                assert msg.error() is None, msg.error()
                got.append((msg.value(), msg.delivery_count()))
                c.acknowledge(msg, AcknowledgeType.RELEASE if msg.delivery_count() == 1 else AcknowledgeType.ACCEPT)
            c.commit_sync()
    finally:
        c.close()
    assert sorted(got) == sorted((b"low-%d" % i, n) for i in range(3) for n in (1, 2))
