"""_engine.RecordAccumulator, ProducerBatch and DeliveryHandle: the producer's
native batching. Batches are checked by decoding what build() returns with
the engine's own readers (decode_batches, validate_batches, batch_headers)."""
from __future__ import annotations

import logging
import os
import threading
import time

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st
from test_partitioner import reference_murmur2

from pylog import _engine
from pylog.structs import RecordMetadata

HEADER = 61   # record batch v2 header bytes


def make(batch_size=1000, buffer_memory=1 << 30, count=4, topic="t", **kw):
    acc = _engine.RecordAccumulator(batch_size, buffer_memory, **kw)
    acc.set_partition_count(topic, count)
    return acc


def send(acc, value=b"v", key=None, partition=-1, timestamp=None, headers=None, callback=None, topic="t"):
    return acc.append(topic, partition, key, value, timestamp, headers, callback)


HEADER_FIELDS = ("base_offset", "last_offset_delta", "max_timestamp", "producer_id", "producer_epoch",
                 "base_sequence", "records_count", "attributes")


def header_of(data):
    (_pos, *fields), = _engine.batch_headers(data)
    return dict(zip(HEADER_FIELDS, fields))


def records_of(data):
    return [(r.offset, r.timestamp, None if r.key is None else bytes(r.key),
             None if r.value is None else bytes(r.value),
             [(k, None if v is None else bytes(v)) for k, v in r.headers])
            for r in _engine.decode_batches(data)]


# ---- metadata, arguments ------------------------------------------------------

def test_unknown_topic_needs_metadata():
    acc = _engine.RecordAccumulator(1000, 1 << 20)
    assert acc.partition_count("t") == -1
    with pytest.raises(_engine.NeedMetadata) as ei:
        send(acc)
    assert ei.value.topic == "t"
    with pytest.raises(_engine.NeedMetadata):
        acc.append_many("t", -1, [b"x"])
    acc.set_partition_count("t", 3)
    assert acc.partition_count("t") == 3
    assert send(acc).partition in range(3)
    acc.set_partition_count("t", 5)   # partitions added
    assert acc.partition_count("t") == 5
    assert send(acc, partition=4).partition == 4


def test_bad_arguments():
    acc = make(count=2)
    with pytest.raises(ValueError, match="partition 2 out of range for topic t \\(count 2\\)"):
        send(acc, partition=2)
    with pytest.raises(TypeError, match="not str"):
        send(acc, value="text")
    with pytest.raises(TypeError, match="not str"):
        send(acc, key="text")
    with pytest.raises(ValueError):
        _engine.RecordAccumulator(1000, 1000, partitioner="nope")
    with pytest.raises(ValueError):
        acc.set_partition_count("t", 0)
    assert acc.pending_count() == 0 and acc.buffered_bytes() == 0


def test_buffer_types_are_copied():
    acc = make()
    value = bytearray(b"mutable")
    send(acc, value=value, key=memoryview(b"key"), partition=0, timestamp=5,
         headers=[("h", bytearray(b"1")), (b"raw", None)])
    value[:] = b"changed"
    b, = acc.drain(0, 0, True)
    assert records_of(b.build()) == [(0, 5, b"key", b"mutable", [("h", b"1"), ("raw", None)])]


# ---- partitioning ------------------------------------------------------------

def test_keyed_records_go_where_murmur2_puts_them():
    acc = make(count=7, batch_size=1 << 20)
    keys = [os.urandom(n % 20) for n in range(300)] + [b"%d" % i for i in range(300)]
    for k in keys:
        h = send(acc, key=k)
        assert h.partition == _engine.partition_for_key(k, 7) == (reference_murmur2(k) & 0x7FFFFFFF) % 7
    # The bulk path places keys the same way.
    batches = acc.append_many("t", -1, [b"v"] * len(keys), keys)
    placed = {}
    for b in batches:
        for r in _engine.decode_batches(b.build()):
            placed.setdefault(b.partition, []).append(bytes(r.key))
    for p, ks in placed.items():
        assert ks == [k for k in keys if _engine.partition_for_key(k, 7) == p]


def test_keyed_placement_matches_confluent_kafka(kafka_broker):
    """Where confluent-kafka (librdkafka murmur2_random) puts keys on a real
    broker, as tests/test_partitioner.py reads it."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": kafka_broker})   # kept alive until the result
    admin.create_topics([NewTopic("placed-acc", 5, 1)])["placed-acc"].result(10)
    p = Producer({"bootstrap.servers": kafka_broker, "partitioner": "murmur2_random"})
    keys = [os.urandom(n % 16 + 1) for n in range(200)]
    placed = {}
    for k in keys:
        p.produce("placed-acc", b"v", key=k,
                  on_delivery=lambda e, msg: placed.__setitem__(msg.key(), msg.partition()))
    assert p.flush(10) == 0
    acc = make(count=5, topic="placed-acc")
    assert all(send(acc, key=k, topic="placed-acc").partition == placed[k] for k in keys)


def test_xxhash_and_round_robin_partitioners():
    acc = make(count=5, partitioner="xxhash")
    for k in [os.urandom(n) for n in range(50)]:
        assert send(acc, key=k).partition == xxhash.xxh64_intdigest(k) % 5
    rr = make(count=3, partitioner="round_robin")
    assert [send(rr, key=b"same" if i % 2 else None).partition for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_sticky_partition_for_unkeyed_records():
    """KIP-480: unkeyed records stay on one partition until its batch is full
    (or drained), then move to another one."""
    acc = make(count=4, batch_size=HEADER + 10 * 10)   # 10 records of 10 bytes (value 3 bytes)
    first = [send(acc, value=b"abc", timestamp=0) for _ in range(10)]
    assert len({h.partition for h in first}) == 1
    assert [h.index for h in first] == list(range(10))
    nxt = send(acc, value=b"abc", timestamp=0)
    assert nxt.partition != first[0].partition and nxt.index == 0
    assert acc.has_ready()   # the full batch was closed
    # A drain ends the sticky batch too.
    acc.drain(0, 0, True)
    after = send(acc, value=b"abc", timestamp=0)
    assert after.partition != nxt.partition
    # Over many batches every partition gets some.
    seen = {send(acc, value=b"abc", timestamp=0).partition for _ in range(400)}
    assert seen == {0, 1, 2, 3}
    one = make(count=1, batch_size=HEADER + 10)
    assert {send(one, value=b"abc").partition for _ in range(5)} == {0}


# ---- batches, linger, flush ------------------------------------------------

def test_batch_size_closes_batches():
    acc = make(count=1, batch_size=1000)
    hs = [send(acc, value=os.urandom(100), timestamp=1) for _ in range(50)]
    batches = acc.drain(0, 10**9)   # only the closed ones (linger not over)
    assert batches and all(not b.done for b in batches)
    assert acc.pending_count() == 1   # the last, still open
    for b in batches:
        assert HEADER + b.size <= 1000 and len(b.build()) == HEADER + b.size
        assert HEADER + b.size + 110 > 1000   # nothing more would have fitted
    assert sum(b.records_count for b in batches) + acc.drain(0, 0, True)[0].records_count == 50
    assert {h.index for h in hs} == set(range(batches[0].records_count))
    # A record larger than batch_size is a batch of its own, closed at once.
    big = send(acc, value=b"x" * 5000)
    small = send(acc, value=b"y")
    assert big.batch is not small.batch and big.batch.records_count == 1
    b, = acc.drain(0, 10**9)
    assert b is big.batch and len(b.build()) > 5000


def test_linger_and_deadline():
    acc = make(count=2)
    assert acc.next_linger_deadline(5) == -1
    h = send(acc, partition=0)
    created = h.batch.created_ms
    assert abs(created - time.time_ns() // 1_000_000) < 5_000   # wall clock, as record timestamps
    assert acc.next_linger_deadline(5) == created + 5
    assert acc.drain(created + 4, 5) == []
    assert acc.next_linger_deadline() == created + 5   # linger of the last drain
    assert acc.drain(created + 5, 5) == [h.batch]
    assert acc.next_linger_deadline(5) == -1 and acc.pending_count() == 0
    send(acc, partition=0)
    send(acc, partition=1)
    assert len(acc.drain(0, 10**9, flush=True)) == 2


def test_drain_order_and_only():
    acc = make(count=3, batch_size=HEADER + 40)
    for i in range(12):
        send(acc, value=b"%02d" % i, partition=i % 2, timestamp=0)
    send(acc, partition=2)
    got = acc.drain(0, 10**9, True, only={("t", 0)})
    assert {b.partition for b in got} == {0}
    rest = acc.drain(0, 10**9, True)
    assert {b.partition for b in rest} == {1, 2}
    for part in (0, 1):
        values = [bytes(r.value) for b in got + rest if b.partition == part for r in _engine.decode_batches(b.build())]
        assert values == [b"%02d" % i for i in range(12) if i % 2 == part]   # oldest batch first
    assert acc.pending_count() == 0


def test_wakeup_only_on_new_or_closed_batches():
    calls = []
    acc = make(count=2, batch_size=HEADER + 30, wakeup=lambda: calls.append(1))
    send(acc, partition=0, value=b"ab", timestamp=0)
    assert len(calls) == 1   # a new open batch
    send(acc, partition=0, value=b"ab", timestamp=0)
    assert len(calls) == 1
    send(acc, partition=0, value=b"a" * 20, timestamp=0)   # closes one, opens one
    assert len(calls) == 2
    acc.append_many("t", 1, [b"x"] * 3)
    assert len(calls) == 3


def test_wakeup_errors_are_logged_not_raised(caplog):
    def boom():
        raise RuntimeError("wakeup broke")
    acc = make(wakeup=boom)
    with caplog.at_level(logging.ERROR, logger="pylog.producer"):
        h = send(acc)
    assert h.index == 0 and "wakeup" in caplog.text


# ---- memory ---------------------------------------------------------------------

def test_buffer_full_and_release():
    acc = make(count=1, batch_size=HEADER + 120, buffer_memory=1000)
    hs = []
    with pytest.raises(_engine.BufferFull):
        while True:
            hs.append(send(acc, value=b"x" * 100, timestamp=0))
    per = HEADER + hs[0].batch.size   # one record a batch
    assert acc.buffered_bytes() == len(hs) * per <= 1000 < (len(hs) + 1) * per
    batches = acc.drain(0, 0, True)
    assert acc.buffered_bytes() == sum(HEADER + b.size for b in batches)
    with pytest.raises(_engine.BufferFull):
        send(acc, value=b"x" * 100)   # drained is not released
    for b in batches:
        b.complete(0)
        b.release()
        b.release()   # idempotent
    assert acc.buffered_bytes() == 0
    send(acc, value=b"x" * 100)
    # An empty buffer takes even a record over buffer_memory, once.
    empty = make(count=1, buffer_memory=100)
    h = send(empty, value=b"x" * 500)
    assert empty.buffered_bytes() > 100
    with pytest.raises(_engine.BufferFull):
        send(empty, value=b"y")
    b, = empty.drain(0, 0, True)
    assert b is h.batch
    b.release()
    assert empty.buffered_bytes() == 0
    with pytest.raises(ValueError):
        send(empty, value=b"z").batch.release()   # still open


def test_bytes_return_when_a_batch_is_dropped():
    acc = make()
    send(acc, value=b"x" * 100, partition=0)
    b, = acc.drain(0, 0, True)
    assert acc.buffered_bytes() > 0
    del b
    assert acc.buffered_bytes() == 0


def test_append_many_buffer_full():
    acc = make(count=2, batch_size=1000, buffer_memory=5000)
    acc.append_many("t", -1, [b"x" * 100] * 30)     # empty buffer: goes through
    assert acc.buffered_bytes() > 3000
    with pytest.raises(_engine.BufferFull):
        acc.append_many("t", -1, [b"x" * 100] * 30)
    for b in acc.drain(0, 0, True):
        b.release()
    assert acc.buffered_bytes() == 0
    assert acc.pending_count() == 0


# ---- build ------------------------------------------------------------------------

def test_build_is_a_valid_batch_with_producer_fields():
    acc = make(count=1, batch_size=1 << 20)
    ts = [1000, 900, 1500, 1000]   # deltas may be negative
    recs = [(b"k0", b"v0", [("a", b"1")]), (None, b"v1", None), (b"k2", None, [("b", None), ("c", b"")]),
            (b"", b"", [])]
    for (k, v, hs), t in zip(recs, ts):
        send(acc, key=k, value=v, timestamp=t, headers=hs)
    b, = acc.drain(0, 0, True)
    assert (b.topic, b.partition, b.records_count, b.attempts, b.base_sequence) == ("t", 0, 4, 0, -1)
    with pytest.raises(ValueError):
        send(acc, partition=0).batch.build()   # open batches are not built
    data = b.build(producer_id=77, producer_epoch=3, base_sequence=41, transactional=True)
    assert b.build(77, 3, 41, True) is data   # an idempotent retry sends the same bytes
    valid, nbatches, nrecords, last, err = _engine.validate_batches(data)
    assert (valid, nbatches, nrecords, last, err) == (len(data), 1, 4, 3, None)
    h = header_of(data)
    assert h == {"base_offset": 0, "last_offset_delta": 3, "max_timestamp": 1500, "producer_id": 77,
                 "producer_epoch": 3, "base_sequence": 41, "records_count": 4, "attributes": 0x10}
    assert data[12:16] == b"\xff\xff\xff\xff"   # partition_leader_epoch -1
    assert records_of(data) == [(0, 1000, b"k0", b"v0", [("a", b"1")]), (1, 900, None, b"v1", []),
                                (2, 1500, b"k2", None, [("b", None), ("c", b"")]), (3, 1000, b"", b"", [])]
    with pytest.raises(ValueError, match="reset_producer_fields"):
        b.build(78, 0, 0)
    b.reset_producer_fields()
    again = b.build(78, 0, 0)
    assert again is not data and records_of(again) == records_of(data)
    assert header_of(again)["producer_id"] == 78 and header_of(again)["attributes"] == 0
    assert _engine.validate_batches(again)[4] is None
    # base_sequence -1 takes the batch's own (the sender sets it before build).
    send(acc, partition=0)
    c, = acc.drain(0, 0, True)
    c.base_sequence = 9
    assert header_of(c.build(5, 0))["base_sequence"] == 9


def test_lz4_round_trip():
    acc = make(count=1, batch_size=1 << 20, compression="lz4")
    values = [b"%d" % i * 20 for i in range(500)]
    for i, v in enumerate(values):
        send(acc, key=b"k%d" % i, value=v, timestamp=i, headers=[("n", b"%d" % i)])
    acc.append_many("t", 0, values, timestamp=7)
    b1, b2 = acc.drain(0, 0, True)
    for b in (b1, b2):
        data = b.build()
        assert header_of(data)["attributes"] & 7 == 3
        assert len(data) < HEADER + b.size / 2   # it did compress
        assert _engine.validate_batches(data)[4] is None
    assert [(r.offset, r.timestamp, bytes(r.key), bytes(r.value)) for r in _engine.decode_batches(b1.build())] == \
        [(i, i, b"k%d" % i, v) for i, v in enumerate(values)]
    assert [bytes(r.value) for r in _engine.decode_batches(b2.build())] == values
    recs, nxt = _engine.decode_fetched(b2.build(), "t", 0, 0)
    assert [bytes(r.value) for r in recs] == values and nxt == 500


def test_seal_writes_header_and_crc_into_the_batch_itself():
    # seal() is build() without the copy, for a writer in this process: the
    # same bytes, but as a writable view of the batch's own buffer.
    acc, twin = make(count=1, batch_size=1 << 20), make(count=1, batch_size=1 << 20)
    values = [b"%05d" % i * 30 for i in range(3000)]   # > 64 KiB: the CRC runs without the GIL
    b, = acc.append_many("t", 0, values, timestamp=5)
    t, = twin.append_many("t", 0, values, timestamp=5)
    assert acc.drain(0, 0, True) == [b]
    view = b.seal(77, 3, 41, True)
    assert isinstance(view, memoryview) and not view.readonly and len(view) == HEADER + b.size
    assert bytes(view) == t.build(77, 3, 41, True)
    assert _engine.validate_batches(view)[4] is None
    assert records_of(bytes(view))[-1][3] == values[-1]
    assert bytes(b.seal(77, 3, 41, True)) == bytes(view)   # same fields: the same bytes again
    with pytest.raises(ValueError, match="reset_producer_fields"):
        b.seal(78, 0, 0)
    b.reset_producer_fields()
    with pytest.raises(BufferError):
        b.seal(78, 0, 0)          # the header cannot change under a live view
    view.release()
    again = b.seal(78, 0, 0)
    assert header_of(bytes(again))["producer_id"] == 78 and _engine.validate_batches(again)[4] is None
    # A view keeps the buffer: drop_buffer() leaves it until the view is gone.
    b.drop_buffer()
    assert records_of(bytes(again))[0][3] == values[0]
    again.release()
    b.drop_buffer()
    with pytest.raises(ValueError, match="dropped"):
        b.build(78, 0, 0)
    with pytest.raises(BufferError):
        memoryview(b)
    # Small batches, and open ones.
    send(acc, value=b"v", partition=0)
    c, = acc.drain(0, 0, True)
    assert records_of(bytes(c.seal()))[0][3] == b"v" and c.build() == bytes(c.seal())
    with pytest.raises(ValueError):
        send(acc, partition=0).batch.seal()


def test_seal_of_a_compressed_batch_is_build():
    acc = make(count=1, batch_size=1 << 20, compression="lz4")
    b, = acc.append_many("t", 0, [b"x" * 100] * 100)
    data = b.seal(5, 0, 0)
    assert isinstance(data, bytes) and data is b.build(5, 0, 0)


def test_reused_buffers_carry_only_their_own_records():
    # Freed large buffers go to the next batches (no fresh pages to fault in):
    # each batch must still be exactly its own records.
    acc = make(count=1, batch_size=1 << 20)
    for round_ in range(4):
        # Each round's batch is smaller than the last, so the kept buffer fits it.
        values = [bytes([65 + round_]) * (50 - round_ * 5)] * (3000 - round_ * 300)
        kept = acc.pooled_bytes()
        batches = acc.append_many("t", 0, values)
        if round_ > 0:
            assert acc.pooled_bytes() < kept   # this batch took the last one's buffer
        for b in acc.drain(0, 0, True):
            view = b.seal()
            assert [r[3] for r in records_of(bytes(view))] == values
            view.release()
            b.drop_buffer()
            b.release()
        assert len(batches) == 1 and acc.pooled_bytes() > 0


def test_freed_buffers_kept_up_to_half_of_buffer_memory():
    acc = make(count=1, batch_size=300_000, buffer_memory=2_000_000)
    batches = acc.append_many("t", 0, [b"x" * 1000] * 1485)   # 5 batches of 297 records, ~300 kB
    assert len(batches) == 5 and acc.pooled_bytes() == 0
    for b in acc.drain(0, 0, True):
        b.seal()
        b.drop_buffer()
        b.release()
    assert 3 * 290_000 <= acc.pooled_bytes() <= 1_000_000   # 3 of the 5 (~300 kB each) fit in half of 2 MB
    again = acc.append_many("t", 0, [b"y" * 1000] * 600)   # 2 batches, from the kept buffers
    assert acc.pooled_bytes() < 600_000
    assert [bytes(r.value) for b in again for r in _engine.decode_batches(b.build())] == [b"y" * 1000] * 600
    acc.trim_pool()
    assert acc.pooled_bytes() == 0


def test_append_many_keeps_its_values_while_encoding_without_the_gil():
    # Large calls encode without the GIL; another thread replacing the list's
    # items meanwhile must not free what is being copied. Every record is one
    # of the two values its slot ever held, never anything else.
    acc = make(count=1, batch_size=1 << 24, buffer_memory=1 << 34)
    n = 20000
    olds = [b"o%07d" % i * 20 for i in range(n)]
    news = [b"n%07d" % i * 20 for i in range(n)]
    stop, running = threading.Event(), threading.Event()

    def churn(lst):
        while not stop.is_set():
            for i in range(0, n, 7):
                v = news[i] if lst[i][0] == 111 else olds[i]
                lst[i] = v[:1] + v[1:]   # a new object: the one it replaces is freed
            running.set()
    try:
        for _ in range(20):
            lst = [v[:1] + v[1:] for v in olds]   # objects only lst holds
            t = threading.Thread(target=churn, args=(lst,))
            t.start()
            running.wait()
            running.clear()
            try:
                batches = acc.append_many("t", 0, lst)
            finally:
                stop.set()
                t.join()
                stop.clear()
            got = [r[3] for b in acc.drain(0, 0, True) for r in records_of(b.build())]
            assert len(batches) == 1 and len(got) == n
            assert all(g == o or g == w for g, o, w in zip(got, olds, news))
    finally:
        stop.set()


# ---- completion -------------------------------------------------------------------

def test_complete_resolves_handles_and_callbacks_in_order():
    acc = make(count=1)
    calls = []
    hs = [send(acc, value=b"%d" % i, timestamp=100 + i,
               callback=(lambda e, md, i=i: calls.append((i, e, md))) if i % 2 == 0 else None)
          for i in range(5)]
    done_calls = []
    hs[1].add_done_callback(done_calls.append)
    assert not hs[0].done()
    with pytest.raises(TimeoutError):
        hs[0].get(timeout=0.01)
    b, = acc.drain(0, 0, True)
    assert b.complete(1000) is True
    assert b.complete(2000) is False and b.fail(RuntimeError()) is False   # ended once
    assert b.done and all(h.done() for h in hs)
    assert [h.get() for h in hs] == [RecordMetadata("t", 0, 1000 + i, 100 + i) for i in range(5)]
    assert hs[2].result(0) == hs[2].get() and hs[2].exception() is None
    assert [(i, e, md.offset) for i, e, md in calls] == [(0, None, 1000), (2, None, 1002), (4, None, 1004)]
    assert done_calls == [hs[1]]
    later = []
    hs[3].add_done_callback(later.append)   # already done: at once
    assert later == [hs[3]]
    assert b.result() == RecordMetadata("t", 0, 1000, 100)


def test_log_append_time_and_acks_zero():
    acc = make(count=2)
    h0 = send(acc, partition=0, timestamp=5)
    h1 = send(acc, partition=1, timestamp=5)
    b0, b1 = sorted(acc.drain(0, 0, True), key=lambda b: b.partition)
    b0.complete(10, log_append_time=999)
    b1.complete(-1)
    assert h0.get() == RecordMetadata("t", 0, 10, 999)
    assert h1.get() == RecordMetadata("t", 1, -1, 5)


def test_fail_resolves_with_the_exception():
    acc = make(count=1)
    calls = []
    hs = [send(acc, callback=lambda e, md: calls.append((e, md))) for _ in range(3)]
    b, = acc.drain(0, 0, True)
    exc = RuntimeError("gone")
    b.fail(exc)
    for h in hs:
        with pytest.raises(RuntimeError, match="gone"):
            h.get()
        assert h.exception() is exc
    assert calls == [(exc, None)] * 3
    with pytest.raises(RuntimeError):
        b.result()


def test_callback_exceptions_do_not_propagate(caplog):
    acc = make(count=1)
    order = []

    def bad(e, md):
        order.append("bad")
        raise ValueError("callback broke")

    send(acc, callback=bad)
    send(acc, callback=lambda e, md: order.append("good"))
    b, = acc.drain(0, 0, True)
    with caplog.at_level(logging.ERROR, logger="pylog.producer"):
        b.complete(0)
    assert order == ["bad", "good"]
    assert "callback broke" in caplog.text


def test_wait_from_another_thread():
    acc = make(count=1)
    h = send(acc)
    b, = acc.drain(0, 0, True)
    got = []
    t = threading.Thread(target=lambda: got.append(h.get(timeout=10)))
    t.start()
    assert not b.wait(0.05)
    b.complete(3)
    t.join(10)
    assert got == [RecordMetadata("t", 0, 3, h.timestamp)] and b.wait(0)


def test_abort_all():
    acc = make(count=2, batch_size=HEADER + 30)
    hs = [send(acc, value=b"x" * 5, partition=i % 2, timestamp=0) for i in range(6)]
    # Per partition: a closed batch of two records and an open one of one.
    assert acc.pending_count() == 4 and acc.has_ready()
    assert acc.abort_all(RuntimeError("closed")) == 4
    assert acc.pending_count() == 0 and acc.buffered_bytes() == 0
    for h in hs:
        assert isinstance(h.exception(0), RuntimeError)
    send(acc, partition=0)   # still usable
    assert acc.pending_count() == 1


# ---- append_many --------------------------------------------------------------

def test_append_many_spreads_full_batches_over_partitions():
    acc = make(count=3, batch_size=HEADER + 1000)
    values = [b"%04d" % i + b"x" * 96 for i in range(100)]
    batches = acc.append_many("t", -1, values, timestamp=42)
    assert all(not b.done for b in batches) and acc.has_ready()
    parts = [b.partition for b in batches]
    assert parts == [(parts[0] + i) % 3 for i in range(len(batches))]
    assert all(HEADER + b.size <= HEADER + 1000 for b in batches)
    decoded = [r for b in batches for r in _engine.decode_batches(b.build())]
    assert [bytes(r.value) for r in decoded] == values
    assert {r.timestamp for r in decoded} == {42}
    assert acc.drain(0, 10**9) == batches
    for b in batches:
        assert records_of(b.build())[0][0] == 0
        b.complete(10)
    assert batches[0].result() == RecordMetadata("t", parts[0], 10, 42)


def test_append_many_start_stop_is_a_slice_without_the_copy():
    values = [b"v%03d" % i for i in range(200)]
    keys = [b"k%03d" % (i % 17) for i in range(200)]
    for lo, hi in ((0, 200), (10, 150), (120, -1), (199, 200), (50, 10**6)):
        a, b = make(count=3, batch_size=HEADER + 300), make(count=3, batch_size=HEADER + 300)
        end = 200 if hi < 0 or hi > 200 else hi
        for kw, ks in (({}, None), ({"keys": keys}, keys[lo:end])):
            got = a.append_many("t", -1, values, kw.get("keys"), 7, lo, hi)
            want = b.append_many("t", -1, values[lo:end], ks, 7)
            # (unkeyed batches start at each accumulator's own random sticky partition)
            assert [(x.partition if ks else 0, records_of(x.build())) for x in got] == \
                [(y.partition if ks else 0, records_of(y.build())) for y in want]
    acc = make()
    assert acc.append_many("t", 0, values, None, None, 200) == []
    with pytest.raises(ValueError):
        acc.append_many("t", 0, values, None, None, 201)
    with pytest.raises(ValueError, match="differ in length"):
        acc.append_many("t", -1, values, keys[:100], None, 0, 100)


def test_append_many_one_partition_keeps_order_after_open_batch():
    acc = make(count=2, batch_size=1 << 20)
    send(acc, value=b"first", partition=1)
    batches = acc.append_many("t", 1, [b"a", b"b"])
    assert len(batches) == 1 and batches[0].partition == 1
    got = acc.drain(0, 10**9)   # the open batch was closed ahead of the bulk batch
    assert [[bytes(r.value) for r in _engine.decode_batches(b.build())] for b in got] == [[b"first"], [b"a", b"b"]]


def test_append_many_keyed_groups_per_partition():
    acc = make(count=4, batch_size=HEADER + 500)
    keys = [os.urandom(6) for _ in range(300)]
    values = [b"%d" % i for i in range(300)]
    batches = acc.append_many("t", -1, values, keys)
    by_part = {}
    for b in batches:
        for r in _engine.decode_batches(b.build()):
            assert _engine.partition_for_key(bytes(r.key), 4) == b.partition
            by_part.setdefault(b.partition, []).append(bytes(r.value))
    for p, vs in by_part.items():
        assert vs == [v for k, v in zip(keys, values) if _engine.partition_for_key(k, 4) == p]
    assert sum(map(len, by_part.values())) == 300
    with pytest.raises(ValueError):
        acc.append_many("t", -1, values, keys[:3])
    with pytest.raises(TypeError):
        acc.append_many("t", -1, ["str"])


# ---- property: what goes in comes out --------------------------------------------

record = st.tuples(
    st.one_of(st.none(), st.binary(max_size=40)),
    st.one_of(st.none(), st.binary(max_size=300)),
    st.integers(0, 2**41),
    st.lists(st.tuples(st.text(st.characters(blacklist_categories=("Cs",)), max_size=5),
                       st.one_of(st.none(), st.binary(max_size=10))), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(record, min_size=1, max_size=60), st.integers(HEADER, 3000), st.sampled_from([None, "lz4"]))
def test_appended_records_decode_back(recs, batch_size, compression):
    acc = make(count=1, batch_size=batch_size, compression=compression)
    handles = [send(acc, key=k, value=v, timestamp=t, headers=h, partition=0) for k, v, t, h in recs]
    batches = acc.drain(0, 0, True)
    assert acc.pending_count() == 0
    out = []
    base = 0
    for b in batches:
        data = bytearray(b.build())
        assert _engine.validate_batches(data)[4] is None
        data[0:8] = base.to_bytes(8, "big")   # what the broker stamps
        out += [(r.offset, r.timestamp, None if r.key is None else bytes(r.key),
                 None if r.value is None else bytes(r.value), [(hk, None if hv is None else bytes(hv))
                                                               for hk, hv in r.headers])
                for r in _engine.decode_batches(bytes(data))]
        b.complete(base)
        base += b.records_count
    assert out == [(i, t, k, v, [(hk, hv) for hk, hv in h]) for i, (k, v, t, h) in enumerate(recs)]
    assert [h.get().offset for h in handles] == list(range(len(recs)))
    for b in batches:
        b.release()
    assert acc.buffered_bytes() == 0


def test_concurrent_appends_and_drains_lose_nothing():
    """The GIL-atomic argument, exercised: appending threads and a sender
    thread that drains, builds, completes and releases, with a tiny switch
    interval; every record ends up in exactly one batch, in order."""
    import sys
    acc = make(count=3, batch_size=HEADER + 400, buffer_memory=1 << 30)
    per_thread, nthreads = 3000, 4
    handles = [[] for _ in range(nthreads)]
    stop = threading.Event()
    seen = []
    next_offset = {0: 0, 1: 0, 2: 0}

    def producer(n):
        for i in range(per_thread):
            key = None if i % 3 else b"%d-%d" % (n, i)
            handles[n].append(send(acc, key=key, value=b"%d:%d" % (n, i)))
            if i % 500 == 0:
                acc.append_many("t", -1, [b"bulk"] * 10)

    def sender():
        while True:
            last = stop.is_set()
            for b in acc.drain(time.time_ns() // 1_000_000, 0, last):
                recs = _engine.decode_batches(b.build())
                seen.extend((b.partition, bytes(r.value)) for r in recs)
                b.complete(next_offset[b.partition])
                next_offset[b.partition] += b.records_count
                b.release()
            if last:
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        ts = [threading.Thread(target=producer, args=(n,)) for n in range(nthreads)]
        s = threading.Thread(target=sender)
        s.start()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        stop.set()
        s.join()
    finally:
        sys.setswitchinterval(old)
    assert acc.pending_count() == 0 and acc.buffered_bytes() == 0
    values = [v for _, v in seen if v != b"bulk"]
    assert sorted(values) == sorted(b"%d:%d" % (n, i) for n in range(nthreads) for i in range(per_thread))
    assert len(seen) - len(values) == nthreads * (per_thread // 500) * 10
    log = {}   # partition -> values in offset order, as the sender completed them
    for p, v in seen:
        log.setdefault(p, []).append(v)
    for n in range(nthreads):
        for i, h in enumerate(handles[n]):
            md = h.get(0)
            assert log[md.partition][md.offset] == b"%d:%d" % (n, i)
        # One thread's records keep their order within each partition.
        by_part = {}
        for i, h in enumerate(handles[n]):
            by_part.setdefault(h.partition, []).append((h.get(0).offset, i))
        for offs in by_part.values():
            assert offs == sorted(offs)
