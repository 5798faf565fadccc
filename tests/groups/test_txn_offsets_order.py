"""A transaction's offset and a plain commit of the same partition, the plain
one written after the transaction's offset record but before its COMMIT
marker: Kafka keeps the offset whose record is the more recent
(OffsetMetadataManager.replayEndTransactionMarker compares the record
offsets: "We always keep the most recent committed offset when we have a mix
of transactional and regular offset commits"), so the plain commit stays, in
the coordinator's memory and after a restart replays the log. Before this
pylog let the marker overwrite it with the transaction's older offset.

Real broker, real confluent-kafka clients over real sockets.
"""
from __future__ import annotations

import tempfile

from confluent_kafka import Consumer, Producer, TopicPartition

from pylog.testing import running_broker

from .conftest import GROUP_CONFIG
from .helpers import create_topic

TIMEOUT = 60.0


def committed(b, group):
    c = Consumer({"bootstrap.servers": b, "group.id": group, "enable.auto.commit": False})
    try:
        return c.committed([TopicPartition("in", 0)], timeout=TIMEOUT)[0].offset
    finally:
        c.close()


def commit(b, group, offset):
    c = Consumer({"bootstrap.servers": b, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition("in", 0, offset)], asynchronous=False)
    finally:
        c.close()


def transaction(b, tid, group, offset, between):
    """A transaction sending offset for group, between() run after its
    TxnOffsetCommit and before its commit."""
    gmd = Consumer({"bootstrap.servers": b, "group.id": group, "enable.auto.commit": False})
    p = Producer({"bootstrap.servers": b, "transactional.id": tid})
    try:
        p.init_transactions(TIMEOUT)
        p.begin_transaction()
        p.send_offsets_to_transaction([TopicPartition("in", 0, offset)], gmd.consumer_group_metadata(), TIMEOUT)
        between()
        p.commit_transaction(TIMEOUT)
    finally:
        p.flush(10)
        gmd.close()


def test_a_plain_commit_after_the_transactions_offset_record_stays():
    config = {**GROUP_CONFIG, "offsets.topic.num.partitions": "1"}
    with tempfile.TemporaryDirectory() as data:
        with running_broker(data_dir=data, config=config) as b:
            create_topic(b, "in", 1)
            # The plain commit's record follows the transaction's: it stays.
            transaction(b, "tx-after", "g-after", 5, lambda: commit(b, "g-after", 9))
            assert committed(b, "g-after") == 9
            # The plain commit's record precedes the transaction's: the
            # transaction's offset replaces it at the marker.
            commit(b, "g-before", 9)
            transaction(b, "tx-before", "g-before", 5, lambda: None)
            assert committed(b, "g-before") == 5
        with running_broker(data_dir=data, config=config) as b:
            assert committed(b, "g-after") == 9
            assert committed(b, "g-before") == 5
