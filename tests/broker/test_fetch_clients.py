"""Real consumers over many partitions against Fetch v4-17 and fetch sessions.

kafka-python (Fetch v12, incremental fetch sessions of KIP-227),
confluent-kafka (librdkafka: Fetch up to v16, topic ids once Metadata carries
them, never sessions) and aiokafka (Fetch v11) each read every record of a
24-partition topic, some written while they read.
"""
from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

PARTITIONS = 24
PER_PARTITION = 20
DEADLINE = 90


@pytest.fixture(scope="module")
def b():
    from pylog.testing import running_broker
    with running_broker(config={"num.partitions": str(PARTITIONS)}) as handle:
        yield handle


def produce(bootstrap, topic, start, count):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
    for i in range(start, start + count):
        p.produce(topic, key=b"%d" % i, value=b"value-%d" % i, partition=i % PARTITIONS)
    assert p.flush(30) == 0


def expected(start, count):
    return {b"value-%d" % i for i in range(start, start + count)}


def test_kafka_python_reads_many_partitions_through_an_incremental_session(b, topic):
    first = PARTITIONS * PER_PARTITION
    produce(b, topic, 0, first)
    c = KafkaConsumer(bootstrap_servers=str(b), group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=100, request_timeout_ms=40000)
    got = set()
    try:
        c.assign([KpTopicPartition(topic, i) for i in range(PARTITIONS)])
        deadline = time.monotonic() + DEADLINE
        while len(got) < first and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                got.update(r.value for r in recs)
        # Records that arrive while it polls, on a few partitions only: the
        # session's incremental answers must carry them.
        produce(b, topic, first, 30)
        while len(got) < first + 30 and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                got.update(r.value for r in recs)
    finally:
        c.close()
    assert got == expected(0, first + 30)
    # The broker kept the consumer's session and served it incrementally
    # (a session starts at epoch 1; each incremental request advances it).
    sessions = [s for shard in b.broker.handlers.fetch_api.sessions.shards for s in shard.sessions.values()]
    assert any(s.epoch >= 2 for s in sessions), [(s.id, len(s.partitions), s.epoch) for s in sessions]


def test_confluent_kafka_reads_many_partitions(b, topic):
    produce(b, topic, 0, PARTITIONS * PER_PARTITION)
    c = Consumer({"bootstrap.servers": str(b), "group.id": "unused", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100})
    got = set()
    total = PARTITIONS * PER_PARTITION + 30
    try:
        c.assign([TopicPartition(topic, i, 0) for i in range(PARTITIONS)])
        deadline = time.monotonic() + DEADLINE
        produced_late = False
        while len(got) < total and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.2):
                assert msg.error() is None, msg.error()
                got.add(msg.value())
            if not produced_late and len(got) >= PARTITIONS * PER_PARTITION:
                produce(b, topic, PARTITIONS * PER_PARTITION, 30)
                produced_late = True
    finally:
        c.close()
    assert got == expected(0, total)


def test_aiokafka_reads_many_partitions(b, topic):
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as AioTopicPartition
    produce(b, topic, 0, PARTITIONS * PER_PARTITION)

    async def read():
        c = AIOKafkaConsumer(bootstrap_servers=str(b), enable_auto_commit=False, auto_offset_reset="earliest")
        await c.start()
        got = set()
        try:
            c.assign([AioTopicPartition(topic, i) for i in range(PARTITIONS)])
            deadline = time.monotonic() + DEADLINE
            while len(got) < PARTITIONS * PER_PARTITION and time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=200)).values():
                    got.update(m.value for m in msgs)
        finally:
            await c.stop()
        return got
    assert asyncio.run(read()) == expected(0, PARTITIONS * PER_PARTITION)


@pytest.mark.skipif(__import__("pylog.broker.api_versions", fromlist=["x"]).ADVERTISED[3][1] < 10,
                    reason="librdkafka sends topic ids (Fetch v13+) only once Metadata v10+ gives them")
def test_confluent_kafka_fetches_by_topic_id_when_metadata_gives_ids(b, topic):
    import logging
    produce(b, topic, 0, PARTITIONS * PER_PARTITION)
    lines = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
    log = logging.getLogger(f"rdkafka-{topic}")
    log.addHandler(Capture())
    log.setLevel(logging.DEBUG)
    c = Consumer({"bootstrap.servers": str(b), "group.id": "unused", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100, "debug": "protocol"}, logger=log)
    got = set()
    try:
        c.assign([TopicPartition(topic, i, 0) for i in range(PARTITIONS)])
        deadline = time.monotonic() + DEADLINE
        while len(got) < PARTITIONS * PER_PARTITION and time.monotonic() < deadline:
            for msg in c.consume(num_messages=1000, timeout=0.2):
                assert msg.error() is None, msg.error()
                got.add(msg.value())
    finally:
        c.close()
    assert got == expected(0, PARTITIONS * PER_PARTITION)
    assert any("Sent FetchRequest (v16" in line for line in lines)
