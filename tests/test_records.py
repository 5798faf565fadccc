"""Record batch v2: encode_batch / decode_batches / validate_batches, every codec,
and batches produced by a real Kafka client (kafka-python's DefaultRecordBatchBuilder).

The layout checks read the header with struct (KAFKA-NOTES §2.1) and the CRC with
kafka-python's independent CRC-32C, so pylog's own code is never its own oracle.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pylog
from pylog import _engine, codecs
from pylog.errors import CorruptRecordError, UnsupportedCompressionError

kafka_records = pytest.importorskip("kafka.record.default_records")
from kafka.record.util import calc_crc32c  # noqa: E402

encode_batch = _engine.encode_batch
# The issue asks for pylog.decode_batches; fall back to the engine's when the
# package does not re-export it.
decode_batches = getattr(pylog, "decode_batches", _engine.decode_batches)
validate_batches = getattr(pylog, "validate_batches", _engine.validate_batches)

HEADER = struct.Struct(">qiibIhiqqqhii")  # the 61-byte v2 batch header
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def _codec_available(name: str) -> bool:
    try:
        codecs.compress(codecs.codec_id(name), b"probe")
        return True
    except UnsupportedCompressionError:
        return False


def codec_param(name):
    return pytest.param(name, marks=pytest.mark.skipif(not _codec_available(name),
                                                       reason=f"no {name} package installed"))


ALL_CODECS = [codec_param(c) for c in CODECS]


def header(batch: bytes) -> dict:
    f = HEADER.unpack_from(batch, 0)
    names = ["base_offset", "batch_length", "leader_epoch", "magic", "crc", "attributes",
             "last_offset_delta", "base_timestamp", "max_timestamp", "producer_id",
             "producer_epoch", "base_sequence", "records_count"]
    return dict(zip(names, f))


def as_tuple(rec):
    """(offset, timestamp, key, value, headers) with bytes instead of views."""
    b = lambda v: None if v is None else bytes(v)  # noqa: E731
    return (rec.offset, rec.timestamp, b(rec.key), b(rec.value),
            [(k, b(v)) for k, v in rec.headers])


# A set of records covering the corner cases the issue lists.
VALUES = [b"v0", None, b"", b"x" * 3000, b"\x00\xff" * 7, b"last"]
KEYS = [None, b"", b"key-2", b"\x00", None, b"k" * 200]
HEADERS = [
    [],
    [("h", b"1")],
    [("null-value", None), ("empty", b"")],
    [("ключ", "значение".encode()), ("🔑", b"\x01\x02")],
    [("dup", b"a"), ("dup", b"b")] + [(f"h{i}", bytes([i])) for i in range(20)],
    [],
]
TIMESTAMPS = [1_700_000_000_500, 1_700_000_000_100, 1_700_000_000_900, 0,
              1_700_000_000_900, 1_600_000_000_000]  # out of order, repeated, zero


def expected(base_offset=0):
    return [(base_offset + i, TIMESTAMPS[i], KEYS[i], VALUES[i], HEADERS[i]) for i in range(len(VALUES))]


# ---- encode / decode round trips ----

@pytest.mark.parametrize("compression", ALL_CODECS)
def test_round_trip_every_codec(compression):
    data = encode_batch(VALUES, keys=KEYS, headers=HEADERS, timestamps=TIMESTAMPS,
                        compression=compression, base_offset=42, leader_epoch=7)
    recs = decode_batches(data)
    assert [as_tuple(r) for r in recs] == expected(42)

    h = header(data)
    assert h["magic"] == 2
    assert h["base_offset"] == 42
    assert h["leader_epoch"] == 7
    assert h["batch_length"] == len(data) - 12
    assert h["attributes"] & 0x07 == codecs.codec_id(compression)
    assert h["attributes"] & ~0x07 == 0  # CreateTime, not transactional, not control
    assert h["last_offset_delta"] == len(VALUES) - 1
    assert h["records_count"] == len(VALUES)
    assert h["base_timestamp"] == TIMESTAMPS[0]
    assert h["max_timestamp"] == max(TIMESTAMPS)
    assert (h["producer_id"], h["producer_epoch"], h["base_sequence"]) == (-1, -1, -1)
    assert h["crc"] == calc_crc32c(data[21:])
    assert h["crc"] == pylog.crc32c(data[21:])


@pytest.mark.parametrize("compression", ALL_CODECS)
def test_kafka_python_reads_pylog_batches(compression):
    if compression == "snappy":
        pytest.importorskip("snappy", reason="kafka-python needs python-snappy to read snappy")
    data = encode_batch(VALUES, keys=KEYS, headers=HEADERS, timestamps=TIMESTAMPS,
                        compression=compression, base_offset=5)
    batch = kafka_records.DefaultRecordBatch(data)
    assert batch.validate_crc()
    assert batch.compression_type == codecs.codec_id(compression)
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in batch]
    assert got == expected(5)


def test_default_timestamps_are_now():
    import time
    before = int(time.time() * 1000)
    recs = decode_batches(encode_batch([b"a", b"b"]))
    after = int(time.time() * 1000)
    assert [r.offset for r in recs] == [0, 1]
    for r in recs:
        assert before <= r.timestamp <= after


def test_several_batches_concatenated():
    data = (encode_batch([b"a", b"b"], base_offset=0, timestamps=[1, 2])
            + encode_batch([b"c"], base_offset=2, timestamps=[3], compression="lz4")
            + encode_batch([b"d", b"e", b"f"], base_offset=3, timestamps=[4, 5, 6]))
    recs = decode_batches(data)
    assert [(r.offset, bytes(r.value), r.timestamp) for r in recs] == \
        [(0, b"a", 1), (1, b"b", 2), (2, b"c", 3), (3, b"d", 4), (4, b"e", 5), (5, b"f", 6)]
    assert validate_batches(data) == (len(data), 3, 6, 5, None)


def test_decode_is_zero_copy_for_uncompressed_batches():
    data = bytearray(encode_batch([b"hello"], timestamps=[1]))
    (rec,) = decode_batches(data)
    pos = bytes(data).index(b"hello")
    data[pos] = ord("j")
    assert bytes(rec.value) == b"jello"


def test_empty_input():
    assert decode_batches(b"") == []
    assert validate_batches(b"") == (0, 0, 0, -1, None)


def test_single_record_with_many_headers():
    hdrs = [(f"k{i}", None if i % 3 == 0 else str(i).encode()) for i in range(40)]
    (rec,) = decode_batches(encode_batch([b"v"], headers=[hdrs], timestamps=[9]))
    assert as_tuple(rec) == (0, 9, None, b"v", hdrs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(
    records=st.lists(
        st.tuples(
            st.none() | st.binary(max_size=40),                                # key
            st.none() | st.binary(max_size=200),                               # value
            st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3),
            st.integers(min_value=0, max_value=2**45),                         # timestamp
        ),
        min_size=1, max_size=30),
    compression=st.sampled_from(["none", "lz4", "gzip"]),
    base_offset=st.integers(min_value=0, max_value=2**40),
)
def test_round_trip_property(records, compression, base_offset):
    keys = [r[0] for r in records]
    values = [r[1] for r in records]
    headers = [r[2] for r in records]
    timestamps = [r[3] for r in records]
    data = encode_batch(values, keys=keys, headers=headers, timestamps=timestamps,
                        compression=compression, base_offset=base_offset)
    got = [as_tuple(r) for r in decode_batches(data)]
    want = [(base_offset + i, timestamps[i], keys[i], values[i], headers[i]) for i in range(len(records))]
    assert got == want
    assert validate_batches(data) == (len(data), 1, len(records), base_offset + len(records) - 1, None)


# ---- batches from a real Kafka client ----

def kafka_python_batch(codec_id: int, n: int = 50, base_ts: int = 1_700_000_000_000) -> tuple[bytes, list]:
    """A batch built by kafka-python's magic-2 builder, with compressible content
    (the builder silently falls back to no compression when it does not pay)."""
    b = kafka_records.DefaultRecordBatchBuilder(
        magic=2, compression_type=codec_id, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    want = []
    for i in range(n):
        key = None if i % 5 == 0 else f"key-{i % 7}".encode()
        value = None if i % 11 == 10 else (f"value-{i}-" + "abc" * 20).encode()
        headers = [] if i % 3 else [("trace", f"t{i}".encode()), ("nul", None), ("ü", b"")]
        ts = base_ts + (i * 37) % 101  # not monotonic
        assert b.append(i, timestamp=ts, key=key, value=value, headers=headers) is not None
        want.append((i, ts, key, value, headers))
    data = bytes(b.build())
    assert header(data)["attributes"] & 0x07 == codec_id, "kafka-python did not compress"
    return data, want


def kafka_codec_params():
    from kafka import codec as kc
    have = {0: True, 1: kc.has_gzip(), 2: kc.has_snappy(), 3: kc.has_lz4(), 4: kc.has_zstd()}
    names = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
    return [pytest.param(i, id=names[i], marks=pytest.mark.skipif(
        not have[i], reason=f"kafka-python cannot write {names[i]} here")) for i in range(5)]


@pytest.mark.parametrize("codec_id", kafka_codec_params())
def test_decode_kafka_python_batch(codec_id):
    data, want = kafka_python_batch(codec_id)
    assert [as_tuple(r) for r in decode_batches(data)] == want
    assert validate_batches(data) == (len(data), 1, len(want), len(want) - 1, None)


@pytest.mark.parametrize("codec_id", kafka_codec_params())
def test_append_kafka_python_batch_to_log(open_log, codec_id):
    data, want = kafka_python_batch(codec_id)
    log = open_log()
    log.append(b"before", timestamp=1)
    first, last = log.append_batches(data + data, leader_epoch=3)
    assert (first, last) == (1, 2 * len(want))
    got = [as_tuple(r) for r in log.scan(1)]
    shifted = [(o + 1, *rest) for (o, *rest) in want] + [(o + 1 + len(want), *rest) for (o, *rest) in want]
    assert got == shifted
    assert as_tuple(log.read(1 + len(want) + 3)) == shifted[len(want) + 3]
    # The stored bytes are still a valid Kafka batch with the leader's offset and epoch.
    fs = log.read_batches(1 + len(want), max_bytes=1)
    stored = bytes(fs)
    del fs
    kb = kafka_records.DefaultRecordBatch(stored)
    assert kb.validate_crc()
    assert kb.base_offset == 1 + len(want)
    assert kb.leader_epoch == 3
    assert len(stored) == len(data)
    assert stored[12 + 4:] == data[16:], "only base offset and leader epoch may change"


def _xerial_snappy(raw: bytes, block: int = 100) -> bytes:
    """Snappy as the Java client writes it: the xerial framing of raw blocks."""
    import cramjam
    out = [b"\x82SNAPPY\x00", struct.pack(">ii", 1, 1)]
    for i in range(0, len(raw), block):
        c = bytes(cramjam.snappy.compress_raw(raw[i:i + block]))
        out.append(struct.pack(">i", len(c)) + c)
    return b"".join(out)


@pytest.mark.skipif(not _codec_available("snappy"), reason="no cramjam")
def test_decode_java_style_xerial_snappy():
    plain = encode_batch([b"abc" * 50, None, b"z"], keys=[b"k", None, b""],
                         headers=[[("a", b"b")], [], [("n", None)]], timestamps=[5, 3, 8])
    h = header(plain)
    records = _xerial_snappy(plain[61:])
    attrs = (h["attributes"] & ~0x07) | 2
    body = struct.pack(">hiqqqhii", attrs, h["last_offset_delta"], h["base_timestamp"],
                       h["max_timestamp"], h["producer_id"], h["producer_epoch"],
                       h["base_sequence"], h["records_count"]) + records
    crc = calc_crc32c(body)
    batch = struct.pack(">qiib", 0, len(body) + 9, -1, 2) + struct.pack(">I", crc) + body
    assert validate_batches(batch)[4] is None
    assert [as_tuple(r) for r in decode_batches(batch)] == [as_tuple(r) for r in decode_batches(plain)]


# ---- CRC and bad input ----

def three_batches():
    b1 = encode_batch([b"a", b"b"], timestamps=[1, 2], base_offset=0)
    b2 = encode_batch([b"c", b"d", b"e"], timestamps=[3, 4, 5], base_offset=2)
    b3 = encode_batch([b"f"], timestamps=[6], base_offset=5)
    return b1, b2, b3


@pytest.mark.parametrize("where", ["attributes", "timestamp", "record value", "last byte"])
def test_crc_detects_flip_in_second_batch(where):
    b1, b2, b3 = three_batches()
    pos = {"attributes": 22, "timestamp": 30, "record value": len(b2) - 3, "last byte": len(b2) - 1}[where]
    bad = bytearray(b2)
    bad[pos] ^= 0x10
    data = bytes(b1 + bad + b3)
    valid, batches, records, last, err = validate_batches(data)
    assert (valid, batches, records, last) == (len(b1), 1, 2, 1)
    assert err is not None
    with pytest.raises(CorruptRecordError) as ei:
        decode_batches(data)
    assert ei.value.position == len(b1)


def test_flip_outside_crc_is_not_corruption():
    # base_offset and leader epoch are outside the CRC by design (the leader patches them).
    b1, b2, _ = three_batches()
    bad = bytearray(b2)
    bad[15] ^= 0x01  # leader epoch
    assert validate_batches(bytes(b1 + bad))[4] is None


def test_crc_flip_in_lone_batch():
    (b1, _, _) = three_batches()
    bad = bytearray(b1)
    bad[40] ^= 0x80
    assert validate_batches(bytes(bad))[:2] == (0, 0)
    with pytest.raises(CorruptRecordError):
        decode_batches(bytes(bad))


@pytest.mark.parametrize("cut", [1, 16, 60, 61, -1])
def test_truncated_batch_is_reported(cut):
    b1, b2, _ = three_batches()
    data = b1 + (b2[:cut] if cut > 0 else b2[:cut])
    valid, batches, _, last, err = validate_batches(data)
    assert (valid, batches, last) == (len(b1), 1, 1)
    assert err is not None
    with pytest.raises(CorruptRecordError):
        decode_batches(data)


def test_bad_magic_is_reported():
    b1, b2, _ = three_batches()
    bad = bytearray(b2)
    bad[16] = 1
    valid, batches, _, _, err = validate_batches(bytes(b1 + bad))
    assert (valid, batches) == (len(b1), 1) and err is not None
    with pytest.raises(CorruptRecordError):
        decode_batches(bytes(b1 + bad))


def test_garbage_compressed_section_is_corrupt_not_a_crash():
    plain = encode_batch([b"abc" * 30] * 4, timestamps=[1] * 4, compression="lz4")
    body = bytearray(plain[21:])
    body[61 - 21 + 4:] = b"\x00" * (len(body) - (61 - 21 + 4))  # destroy the lz4 frame
    batch = plain[:17] + struct.pack(">I", calc_crc32c(bytes(body))) + bytes(body)
    assert validate_batches(batch)[4] is None  # the CRC is right...
    with pytest.raises(CorruptRecordError):   # ...but the records do not inflate
        decode_batches(batch)


# ---- argument errors ----

@pytest.mark.parametrize("kwargs", [
    dict(values=["text"]),
    dict(values=[b"ok"], keys=["text-key"]),
    dict(values=[b"ok"], headers=[[("k", "text-value")]]),
])
def test_str_is_a_type_error(kwargs):
    with pytest.raises(TypeError):
        encode_batch(**kwargs)


def test_str_is_a_type_error_in_log(open_log):
    log = open_log()
    with pytest.raises(TypeError):
        log.append("text")
    with pytest.raises(TypeError):
        log.append(b"v", key="text")
    with pytest.raises(TypeError):
        log.append_batch([b"a", "b"])
    assert log.log_end_offset == 0
    assert log.append(b"fine") == 0


def test_length_mismatches_and_empty_batch():
    with pytest.raises(ValueError):
        encode_batch([])
    with pytest.raises(ValueError):
        encode_batch([b"a", b"b"], keys=[b"k"])
    with pytest.raises(ValueError):
        encode_batch([b"a"], timestamps=[1, 2])
    with pytest.raises(ValueError):
        encode_batch([b"a"], headers=[[], []])


def test_unknown_compression():
    with pytest.raises(UnsupportedCompressionError):
        encode_batch([b"a"], compression="brotli")


def test_bytes_like_values_are_accepted():
    recs = decode_batches(encode_batch([bytearray(b"ba"), memoryview(b"mv")], keys=[memoryview(b"k"), None],
                                       timestamps=[1, 2]))
    assert [(bytes(r.value), None if r.key is None else bytes(r.key)) for r in recs] == [(b"ba", b"k"), (b"mv", None)]


def test_header_key_none_is_a_type_error():
    with pytest.raises(TypeError):
        encode_batch([b"v"], headers=[[(None, b"x")]])


def _claiming(batch: bytes, count: int) -> bytes:
    """batch with records_count and last_offset_delta set to count (count - 1),
    its CRC made valid again: a header that lies about its records."""
    b = bytearray(batch)
    struct.pack_into(">i", b, 23, count - 1)
    struct.pack_into(">i", b, 57, count)
    struct.pack_into(">I", b, 17, calc_crc32c(bytes(b[21:])))
    return bytes(b)


@pytest.mark.parametrize("count", [0x4C4C4C4C, 2**31 - 1])
def test_readers_refuse_a_count_the_records_cannot_hold(tmp_path, count):
    """A stored or fetched batch claiming more records than its bytes can hold
    (a record is at least 7 bytes) is CorruptRecordError before any array of
    that many records is allocated: it was a MemoryError (or a 2^31 x 56-byte
    malloc) from the header's word (fuzz/findings/records-count-huge-malloc)."""
    bad = _claiming(encode_batch([b"a", b"b"], base_offset=0), count)
    with pytest.raises(CorruptRecordError):
        _engine.decode_fetched(bad, "t", 0, 0)
    with pytest.raises(CorruptRecordError):
        list(decode_batches(bad))
    # As stored by the engine (the broker's produce path refuses it first; a
    # follower or an old data dir may still hold one).
    with pylog.Log.open(str(tmp_path / "t-0")) as log:
        log.append_batches(bad, assign_offsets=False)
        with pytest.raises(CorruptRecordError):
            for _ in log.scan():
                pass
