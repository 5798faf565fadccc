"""The embedded Consumer decodes a fetch a poll's worth at a time, from views
of the mapped segments: what a poll does not return is not made yet, and the
records it returns stay valid however long the caller keeps them."""
from __future__ import annotations

import tracemalloc

from pylog import Consumer, Producer, TopicPartition
from pylog.embedded import LocalStore

from .test_embedded_read_committed import batch, marker, txn_append

TP = TopicPartition("t", 0)


def _fill(d, n):
    with Producer(log_dir=d, acks=1, enable_idempotence=False, linger_ms=5, batch_size=1_000_000) as p:
        for i in range(0, n, 5000):
            p.send_many("t", [b"v-%07d" % j for j in range(i, i + 5000)], partition=0)
        assert p.flush(30) == 0


def test_a_poll_makes_only_the_records_it_returns(tmp_path):
    d = str(tmp_path / "data")
    n = 40_000     # ~0.7 MB of batches: one fetch (max_partition_fetch_bytes 1 MiB)
    store = LocalStore.open(d)
    store.create_topic("t", 1)
    store.close()
    _fill(d, n)
    with Consumer(log_dir=d, enable_auto_commit=False) as c:
        c.assign([TP])
        c.seek(TP, 0)
        c.position(TP)
        got = 0        # counted, not kept: the peak is the consumer's
        tracemalloc.start()
        try:
            while got < n:
                recs = c.poll(5.0, max_records=100)
                assert recs, f"stopped at {got}"
                for r in recs:
                    assert (r.offset, bytes(r.value)) == (got, b"v-%07d" % got)
                    got += 1
                del recs, r
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert c.position(TP) == n
    # Decoding the whole fetch at once held ~40k records (some 300 bytes
    # each, over 10 MB) from the first poll on; a poll's worth is ~100
    # (tens of KB).
    assert peak < 3_000_000, peak


def test_records_outlive_the_consumer_and_later_appends(tmp_path):
    d = str(tmp_path / "data")
    store = LocalStore.open(d)
    store.create_topic("t", 1)
    store.close()
    _fill(d, 10_000)
    with Consumer(log_dir=d, enable_auto_commit=False) as c:
        c.assign([TP])
        c.seek(TP, 0)
        kept = c.poll(5.0, max_records=10_000)
    assert len(kept) == 10_000
    _fill(d, 10_000)   # the store reopened, appended to, closed again
    assert [bytes(r.value) for r in kept] == [b"v-%07d" % j for j in range(10_000)]


def test_read_committed_filters_alike_when_a_fetch_spans_many_polls(tmp_path):
    d = str(tmp_path / "data")
    store = LocalStore.open(d)
    try:
        store.create_topic("t", 1)
        a, b = 21, 22
        txn_append(store, batch([b"a0", b"a1"], a, 0))     # 0-1 aborted
        txn_append(store, batch([b"b0", b"b1"], b, 0))     # 2-3 committed
        store.append("t", 0, batch([b"p0"], transactional=False))   # 4
        marker(store, a, False)                             # 5: ABORT a
        txn_append(store, batch([b"a2"], a, 2))             # 6: a's next transaction, committed
        txn_append(store, batch([b"b2"], b, 2))             # 7
        marker(store, b, True)                              # 8: COMMIT b
        marker(store, a, True)                              # 9: COMMIT a
        store.append("t", 0, batch([b"p1"], transactional=False))   # 10
        with Consumer(log_dir=d, isolation_level="read_committed", enable_auto_commit=False) as c:
            c.assign([TP])
            c.seek(TP, 0)
            got = []
            for _ in range(30):
                got += [(r.offset, bytes(r.value)) for r in c.poll(0.2, max_records=1)]
                if c.position(TP) == 11:
                    break
            assert got == [(2, b"b0"), (3, b"b1"), (4, b"p0"), (6, b"a2"), (7, b"b2"), (10, b"p1")]
    finally:
        store.close()
