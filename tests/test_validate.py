"""Engine-level checks of the produce validator (engine/validate.c through
_engine.validate_produce) and of the bounded streaming inflate it and the
ListOffsets search share: records crossing inflate-chunk boundaries, records
larger than a chunk, the bound itself, each codec."""
from __future__ import annotations

import time

import pytest

from pylog import _engine, codecs
from pylog.errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError

NOW = int(time.time() * 1000)
LONG_MAX = (1 << 63) - 1
CODECS = ["gzip", "snappy", "lz4", "zstd"]


def validate(b, limit=64 << 20, version=8):
    return _engine.validate_produce(b, NOW, LONG_MAX, 3600000, False, version, limit, "t-0")


@pytest.mark.parametrize("codec", CODECS)
def test_compressible_batch_crossing_chunks_passes(codec):
    """8 MB of 1 KB records (records straddle every 256 KB inflate chunk)."""
    n = 8000
    b = _engine.encode_batch([bytes(1000 + i % 7) for i in range(n)], keys=[b"k%d" % i for i in range(n)],
                             timestamps=[NOW + i % 100 for i in range(n)], compression=codec)
    assert validate(b) is b


@pytest.mark.parametrize("codec", CODECS)
def test_record_larger_than_a_chunk_passes(codec):
    b = _engine.encode_batch([bytes(3 << 20), b"small"], compression=codec)
    assert validate(b) is b


@pytest.mark.parametrize("codec", ["gzip", "lz4", "zstd"])
def test_inflate_bound_is_exact(codec):
    """Refused when the records inflate past the bound, accepted just below it."""
    b = _engine.encode_batch([bytes(1 << 20)] * 4, compression=codec)
    inflated = sum(len(c) for c in codecs.inflate_stream(codecs.codec_id(codec), memoryview(b)[61:], 1 << 16))
    assert validate(b, limit=inflated) is b
    with pytest.raises(RecordTooLargeError):
        validate(b, limit=inflated - 1)


def test_snappy_block_declaring_a_huge_size_is_corrupt():
    raw = bytearray(codecs.compress(codecs.SNAPPY, b"x" * 100))
    raw[0:1] = b"\xff\xff\xff\xff\x0f"  # declares 4 GiB
    with pytest.raises(CorruptRecordError):
        list(codecs.inflate_stream(codecs.SNAPPY, bytes(raw), 1 << 16))


def test_max_timestamp_set_to_the_records():
    """Kafka's in-place path rewrites the batch's max_timestamp to its records';
    the CRC is recomputed."""
    b = bytearray(_engine.encode_batch([b"a", b"b"], timestamps=[NOW, NOW + 5]))
    b[35:43] = (NOW + 999).to_bytes(8, "big")
    b[17:21] = _engine.crc32c(bytes(b[21:])).to_bytes(4, "big")
    out = validate(bytes(b))
    assert int.from_bytes(out[35:43], "big") == NOW + 5
    assert _engine.validate_batches(out)[1] == 1  # the CRC holds


@pytest.mark.parametrize("codec", [None] + CODECS)
def test_find_time_stops_at_the_answer(tmp_path, codec):
    """Segment search in a compressed batch: the answer, the log-start rule, and
    a bound that only the deep search passes."""
    from pylog.log.log import Log
    n = 64
    b = _engine.encode_batch([bytes(1 << 20)] * n, timestamps=[1000 + i for i in range(n)], compression=codec)
    with Log.open(str(tmp_path / "t-0")) as log:
        log.append_batches(b)
        assert log.offset_and_timestamp_for_time(1003, 8 << 20) == (3, 1003)
        assert log.offset_and_timestamp_for_time(0, 8 << 20) == (0, 1000)
        assert log.offset_and_timestamp_for_time(10_000, 8 << 20) is None
        if codec is not None:
            with pytest.raises(RecordTooLargeError):
                log.offset_and_timestamp_for_time(1000 + n - 1, 8 << 20)
        log.delete_records(5)
        assert log.offset_and_timestamp_for_time(1002, 8 << 20) == (5, 1005)


def test_two_batches_refused():
    b = _engine.encode_batch([b"a"])
    with pytest.raises(InvalidRecordError, match="exactly one record batch"):
        validate(b + b)
