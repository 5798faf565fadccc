"""_engine.decode_fetched: a Fetch response's records field decoded in one
native pass, checked against pylog.client.records (consumed_records,
next_fetch_offset) on the same bytes."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylog import _engine
from pylog.client.records import CREATE_TIME, consumed_records, next_fetch_offset
from pylog.errors import CorruptRecordError

CONTROL = 0x20
LOG_APPEND_TIME = 0x08


def patched(batch: bytes, set_attributes=0, max_timestamp=None) -> bytes:
    """batch with attribute bits set (and max_timestamp replaced), CRC resealed:
    how a broker's control batch or LogAppendTime batch looks."""
    b = bytearray(batch)
    attrs = struct.unpack_from(">h", b, 21)[0] | set_attributes
    struct.pack_into(">h", b, 21, attrs)
    if max_timestamp is not None:
        struct.pack_into(">q", b, 35, max_timestamp)
    struct.pack_into(">I", b, 17, _engine.crc32c(bytes(b[21:])))
    return bytes(b)


def as_tuples(recs):
    return [(r.partition, r.offset, r.timestamp, r.timestamp_type, None if r.key is None else bytes(r.key),
             None if r.value is None else bytes(r.value),
             tuple((k, None if v is None else bytes(v)) for k, v in r.headers)) for r in recs]


def reference(data, partition, fetch_offset):
    recs = [(r.partition, r.offset, r.timestamp, 0 if r.timestamp_type == CREATE_TIME else 1,
             None if r.key is None else bytes(r.key), None if r.value is None else bytes(r.value),
             tuple((k, None if v is None else bytes(v)) for k, v in r.headers))
            for r in consumed_records(partition, data, fetch_offset)]
    return recs, next_fetch_offset(data, fetch_offset)


def test_plain_batches():
    data = (_engine.encode_batch([b"a", b"b"], keys=[b"k", None], timestamps=[10, 11], base_offset=5,
                                 leader_epoch=3)
            + _engine.encode_batch([b"c"], headers=[[("h", b"1"), ("n", None)]], timestamps=[12], base_offset=7))
    recs, nxt = _engine.decode_fetched(data, "t", 2, 0)
    assert as_tuples(recs) == [(2, 5, 10, 0, b"k", b"a", ()), (2, 6, 11, 0, None, b"b", ()),
                               (2, 7, 12, 0, None, b"c", (("h", b"1"), ("n", None)))]
    assert nxt == 8
    assert [r.topic for r in recs] == ["t"] * 3
    assert [r.leader_epoch for r in recs] == [3, 3, -1]
    assert [(r.serialized_key_size, r.serialized_value_size) for r in recs] == [(1, 1), (-1, 1), (-1, 1)]
    # Zero copy: the values are views of the response itself.
    assert isinstance(recs[0].value, memoryview) and recs[0].value.obj is data and recs[0].value.readonly
    assert recs[0] == _engine.decode_fetched(data, "t", 2, 0)[0][0] and recs[0] != recs[1]
    assert "offset=5" in repr(recs[0])
    # records below the fetch offset are dropped; the next offset never goes back.
    recs, nxt = _engine.decode_fetched(data, "t", 2, 6)
    assert [r.offset for r in recs] == [6, 7] and nxt == 8
    assert _engine.decode_fetched(data, "t", 2, 20) == ([], 20)
    assert _engine.decode_fetched(None, "t", 2, 4) == ([], 4)
    assert _engine.decode_fetched(b"", "t", 2, 4) == ([], 4)
    assert as_tuples(_engine.decode_fetched(memoryview(bytearray(data)), "t", 2, 0)[0]) == \
        as_tuples(_engine.decode_fetched(data, "t", 2, 0)[0])


def test_partial_trailing_batch_is_dropped():
    whole = _engine.encode_batch([b"a", b"b"], base_offset=0)
    nxt_batch = _engine.encode_batch([b"c" * 50], base_offset=2)
    for cut in (1, 11, 12, 30, 61, len(nxt_batch) - 1):
        data = whole + nxt_batch[:cut]
        recs, nxt = _engine.decode_fetched(data, "t", 0, 0)
        assert [bytes(r.value) for r in recs] == [b"a", b"b"] and nxt == 2
        assert reference(data, 0, 0) == (as_tuples(recs), nxt)
    # Only a cut batch: nothing, and the fetch offset stays.
    assert _engine.decode_fetched(nxt_batch[:40], "t", 0, 2) == ([], 2)


def test_corrupt_whole_batch_raises():
    good = _engine.encode_batch([b"a"], base_offset=0)
    bad = bytearray(_engine.encode_batch([b"value"], base_offset=1))
    bad[-3] ^= 0xFF   # inside the value: only the CRC can tell
    data = good + bytes(bad)
    with pytest.raises(CorruptRecordError) as ei:
        _engine.decode_fetched(data, "t", 0, 0)
    assert ei.value.position == len(good)
    with pytest.raises(CorruptRecordError):
        list(consumed_records(0, data, 0))
    recs, nxt = _engine.decode_fetched(data, "t", 0, 0, check_crcs=False)
    assert [bytes(r.value) for r in recs] == [b"a", bytes(bad[-6:-1])] and nxt == 2


def test_control_batches_are_skipped():
    marker = patched(_engine.encode_batch([b"\x00\x00\x00\x00\x00\x00"], keys=[b"\x00\x00\x00\x00"],
                                          base_offset=1), CONTROL)
    data = _engine.encode_batch([b"a"], base_offset=0) + marker + _engine.encode_batch([b"b"], base_offset=2)
    recs, nxt = _engine.decode_fetched(data, "t", 0, 0)
    assert [(r.offset, bytes(r.value)) for r in recs] == [(0, b"a"), (2, b"b")] and nxt == 3
    assert reference(data, 0, 0) == (as_tuples(recs), nxt)
    # A response ending in a control batch still moves the fetch offset past it.
    assert _engine.decode_fetched(marker, "t", 0, 1) == ([], 2)


def test_log_append_time():
    batch = patched(_engine.encode_batch([b"a", b"b"], timestamps=[1, 2], base_offset=0), LOG_APPEND_TIME, 777)
    recs, nxt = _engine.decode_fetched(batch, "t", 0, 0)
    assert [(r.timestamp, r.timestamp_type) for r in recs] == [(777, 1), (777, 1)] and nxt == 2
    assert reference(batch, 0, 0) == (as_tuples(recs), nxt)


def test_max_records():
    data = b"".join(_engine.encode_batch([b"%d" % i for i in range(j, j + 3)], base_offset=j) for j in (0, 3, 6))
    for m in range(10):
        recs, nxt = _engine.decode_fetched(data, "t", 0, 1, max_records=m)
        assert [r.offset for r in recs] == list(range(1, 1 + min(m, 8)))
        # Stopped early: one past the last record returned; else the usual.
        assert nxt == (1 + m if m < 8 else 9)
    # Exactly the records available: the usual next offset.
    assert _engine.decode_fetched(data, "t", 0, 0, max_records=9)[1] == 9


def test_compressed_batches():
    data = (_engine.encode_batch([b"x" * 100] * 20, keys=[b"k%d" % i for i in range(20)], compression="lz4",
                                 timestamps=list(range(20)), base_offset=10)
            + _engine.encode_batch([b"y"], compression="gzip", base_offset=30))
    recs, nxt = _engine.decode_fetched(data, "t", 1, 15)
    assert [r.offset for r in recs] == list(range(15, 30)) + [30] and nxt == 31
    assert reference(data, 1, 15) == (as_tuples(recs), nxt)


# ---- property: the same answer as pylog.client.records ------------------------

batch_spec = st.tuples(
    st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=20)), st.one_of(st.none(), st.binary(max_size=80)),
                       st.lists(st.tuples(st.text(st.characters(blacklist_categories=("Cs",)), max_size=4),
                                          st.one_of(st.none(), st.binary(max_size=6))), max_size=2)),
             min_size=1, max_size=12),
    st.sampled_from([None, "lz4", "gzip"]),
    st.sampled_from([0, CONTROL, LOG_APPEND_TIME]),
    st.integers(0, 3),   # gap before the batch (compacted offsets)
)


@settings(max_examples=200, deadline=None)
@given(st.lists(batch_spec, min_size=1, max_size=6), st.integers(0, 80), st.integers(0, 200), st.integers(0, 200))
def test_same_as_consumed_records(specs, fetch_offset, cut, partition):
    parts = []
    offset = 0
    for recs, compression, attrs, gap in specs:
        offset += gap
        keys = [k for k, _, _ in recs]
        values = [v for _, v, _ in recs]
        headers = [h for _, _, h in recs]
        b = _engine.encode_batch(values, keys=keys, headers=headers, timestamps=[1000 + i for i in range(len(recs))],
                                 compression=compression, base_offset=offset)
        if attrs:
            b = patched(b, attrs, 5000 if attrs == LOG_APPEND_TIME else None)
        parts.append(b)
        offset += len(recs)
    data = b"".join(parts)
    if cut:
        data = data[:max(0, len(data) - cut)]   # maybe a KIP-74 partial tail
    recs, nxt = _engine.decode_fetched(data, "t", partition, fetch_offset)
    assert (as_tuples(recs), nxt) == reference(data, partition, fetch_offset)
    assert all(r.topic == "t" for r in recs)
