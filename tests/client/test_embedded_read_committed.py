"""Embedded mode (a LocalStore, no broker) with isolation_level
read_committed: pylog's Consumer reads below the last stable offset and drops
aborted transactions and markers, by the same Partition body the broker's
Fetch uses. Markers are written as a transaction coordinator writes them
(Partition.append_txn_marker on the store's broker loop)."""
from __future__ import annotations

import struct

from pylog import Consumer, TopicPartition, _engine, crc32c
from pylog.embedded import LocalStore
from pylog.embedded.store import PRODUCE_VERSION

TP = TopicPartition("t", 0)


def batch(values, pid=-1, seq=-1, transactional=True):
    b = bytearray(_engine.encode_batch(values))
    struct.pack_into(">qhi", b, 43, pid, 0 if pid >= 0 else -1, seq)
    if transactional:
        b[22] |= 0x10
    struct.pack_into(">I", b, 17, crc32c(bytes(b[21:])))
    return bytes(b)


def txn_append(store, data):
    """A transactional batch as a Produce request with a transactional id
    brings it (the handler's per-partition body, on the store's loop): the
    public append has no transactional id, so it refuses such batches with
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as the wire does."""
    store.call(store.broker.handlers.produce_partition, "t", 0, data, -1, PRODUCE_VERSION, False)


def marker(store, pid, commit):
    store.call(lambda: store.partition_on_loop("t", 0).append_txn_marker(pid, 0, 0, commit))


def values(consumer, n_polls=20):
    got = []
    for _ in range(n_polls):
        got += [bytes(r.value) for r in consumer.poll(0.2)]
    return got


def test_embedded_read_committed_consumer(tmp_path):
    store = LocalStore.open(tmp_path / "data")
    try:
        store.create_topic("t", 1)
        a, b = 11, 12
        store.append("t", 0, batch([b"p0"], transactional=False))        # 0
        txn_append(store, batch([b"a0", b"a1"], a, 0))                     # 1-2
        txn_append(store, batch([b"b0"], b, 0))                            # 3, open
        marker(store, a, False)                                            # 4: ABORT
        store.append("t", 0, batch([b"p1"], transactional=False))        # 5
        c = Consumer(log_dir=str(tmp_path / "data"), isolation_level="read_committed", enable_auto_commit=False)
        u = Consumer(log_dir=str(tmp_path / "data"), enable_auto_commit=False)
        try:
            for consumer in (c, u):
                consumer.assign([TP])
                consumer.seek(TP, 0)
            # B's open transaction holds the LSO at 3.
            assert values(c, 5) == [b"p0"]
            assert values(u, 5) == [b"p0", b"a0", b"a1", b"b0", b"p1"]
            marker(store, b, True)                                         # 6: COMMIT
            assert values(c) == [b"b0", b"p1"]
            assert store.list_offset("t", 0, -1, 1) == (7, -1)
        finally:
            c.close()
            u.close()
    finally:
        store.close()
