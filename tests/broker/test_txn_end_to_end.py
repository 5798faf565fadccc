"""Transactions on partitions with a real transactional producer (the
coordinator of pylog.transactions sends the markers through this broker's
WriteTxnMarkers body): confluent-kafka commits and aborts, pylog's own
read_committed Consumer and kafka-python's drop the aborted records, the
abort is in the partition's .txnindex in Kafka's format, and the LSO ends at
the high watermark."""
from __future__ import annotations

import os
import struct
import time
import uuid

import pytest

from pylog import Consumer, TopicPartition
from pylog.testing import running_broker

ck = pytest.importorskip("confluent_kafka")
ENTRY = struct.Struct(">hqqqq")


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "data") as b:
        b.broker.create_topic("t", 1)
        yield b


def read_all(consume, until=b"END", timeout=60):
    got = []
    deadline = time.monotonic() + timeout
    while until not in got and time.monotonic() < deadline:
        got += consume()
    return got


def test_a_real_transactional_producers_abort_is_dropped_by_read_committed_consumers(broker):
    p = ck.Producer({"bootstrap.servers": str(broker), "transactional.id": "tx-" + uuid.uuid4().hex[:6]})
    p.init_transactions(60)
    p.begin_transaction()
    for i in range(3):
        p.produce("t", b"aborted-%d" % i, partition=0)
    p.flush(30)
    p.abort_transaction(60)
    p.begin_transaction()
    for v in (b"kept-0", b"kept-1", b"END"):
        p.produce("t", v, partition=0)
    p.commit_transaction(60)

    c = Consumer(bootstrap_servers=str(broker), isolation_level="read_committed", enable_auto_commit=False)
    try:
        c.assign([TopicPartition("t", 0)])
        c.seek(TopicPartition("t", 0), 0)
        assert read_all(lambda: [bytes(r.value) for r in c.poll(0.5)]) == [b"kept-0", b"kept-1", b"END"]
    finally:
        c.close()
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    k = KafkaConsumer(bootstrap_servers=str(broker), isolation_level="read_committed", enable_auto_commit=False,
                      auto_offset_reset="earliest")
    try:
        k.assign([KTP("t", 0)])
        k.seek(KTP("t", 0), 0)
        got = read_all(lambda: [r.value for recs in k.poll(500).values() for r in recs])
        assert got == [b"kept-0", b"kept-1", b"END"]
    finally:
        k.close()

    part = broker.broker.log_manager.partitions[("t", 0)]
    pid = broker.broker.call(lambda: next(iter(part.producer_state.producers)))
    # Offsets: aborted 0-2, ABORT marker 3, kept 4-6, COMMIT 7.
    with open(os.path.join(part.path, "00000000000000000000.txnindex"), "rb") as f:
        assert ENTRY.unpack(f.read()) == (0, pid, 0, 3, 4)
    assert broker.broker.call(lambda: (part.last_stable_offset, part.high_watermark)) == (8, 8)
