"""pylog's network Consumer under read_committed asks for stable committed
offsets (OffsetFetch v7+ with require_stable, KIP-447), as Java's consumer
and librdkafka do: while a transaction that sent offsets for the group
(send_offsets_to_transaction) is open, the broker answers the partition
UNSTABLE_OFFSET_COMMIT and the consumer waits instead of starting from the
older committed offset (which would read the transaction's input again: a
duplicate in an exactly-once pipeline). Real broker, real sockets,
confluent-kafka's transactional producer.
"""
from __future__ import annotations

import time

import confluent_kafka as ck
import pytest

import pylog
from pylog.errors import PylogError
from pylog.protocol.error_codes import Errors
from pylog.structs import TopicPartition

from .conftest import create_topic

TIMEOUT = 60.0


def _open_transaction_with_offsets(bootstrap, topic, group, tid, offset):
    """A transactional producer whose open transaction holds group's offset
    `offset` for topic-0 (AddOffsetsToTxn + TxnOffsetCommit, no EndTxn)."""
    p = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": tid})
    p.init_transactions(TIMEOUT)
    p.begin_transaction()
    meta = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        p.send_offsets_to_transaction([ck.TopicPartition(topic, 0, offset)], meta.consumer_group_metadata(),
                                      TIMEOUT)
    finally:
        meta.close()
    return p


def _commit(bootstrap, topic, group, offset):
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[ck.TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        c.close()


def _setup(bootstrap, topic, group, committed, in_transaction):
    """topic-0 holding m0..m9, group's committed offset `committed`, and a
    transactional producer whose open transaction holds `in_transaction`."""
    create_topic(bootstrap, topic, partitions=1)
    with pylog.Producer(bootstrap) as plain:
        for i in range(10):
            plain.send(topic, b"m%d" % i, partition=0)
    _commit(bootstrap, topic, group, committed)
    return _open_transaction_with_offsets(bootstrap, topic, group, f"tid-{topic}", in_transaction)


def _first_offset(c, wait):
    """The offset of the first record c polls within wait seconds, or None."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        got = c.poll(0.3)
        if got:
            return got[0].offset
    return None


def test_read_committed_consumer_waits_for_offsets_of_an_open_transaction(cbroker, topic, group):
    p = _setup(cbroker, topic, group, committed=3, in_transaction=7)
    tp = TopicPartition(topic, 0)
    # committed() waits out its request timeout for a stable offset, then raises.
    rc = pylog.Consumer(bootstrap_servers=cbroker, group_id=group, isolation_level="read_committed",
                        enable_auto_commit=False, auto_offset_reset="earliest", request_timeout_ms=10000)
    ru = pylog.Consumer(bootstrap_servers=cbroker, group_id=group, isolation_level="read_uncommitted",
                        enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        rc.assign([tp])
        ru.assign([tp])
        # read_uncommitted reads the committed offset as it is (Kafka's
        # consumers send require_stable only under read_committed).
        assert _first_offset(ru, TIMEOUT) == 3
        # read_committed: no position while the transaction is open (the old
        # OffsetFetch v3 read 3 and returned records 3..9 at once).
        assert _first_offset(rc, 3.0) is None
        with pytest.raises(PylogError) as e:
            rc.committed(tp)
        assert e.value.error_code == Errors.UNSTABLE_OFFSET_COMMIT
        p.commit_transaction(TIMEOUT)
        # The commit's marker makes 7 the committed offset: read from there.
        assert _first_offset(rc, TIMEOUT) == 7
        assert rc.committed(tp).offset == 7
    finally:
        rc.close()
        ru.close()


def test_an_aborted_transaction_leaves_the_older_offset(cbroker, topic, group):
    p = _setup(cbroker, topic, group, committed=2, in_transaction=8)
    rc = pylog.Consumer(bootstrap_servers=cbroker, group_id=group, isolation_level="read_committed",
                        enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        rc.assign([TopicPartition(topic, 0)])
        assert _first_offset(rc, 2.0) is None
        p.abort_transaction(TIMEOUT)
        assert _first_offset(rc, TIMEOUT) == 2
    finally:
        rc.close()
