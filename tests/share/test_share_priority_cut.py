"""Cutting a stored batch down to the records a share fetch acquired
(engine/delivery.c pl_batch_cut, through pylog._engine.trim_batch): the
records kept are the stored ones byte for byte, the batch stays one a client
reads (the form log compaction leaves), and bytes that are not a sound batch
give an error, never a crash or a batch with a fresh CRC over bad bytes."""
from __future__ import annotations

import random
import struct

import pytest

from pylog._engine import crc32c, trim_batch, decode_batches, encode_batch, validate_batches
from pylog.errors import CorruptRecordError

BASE = 1000


def _batch(n=50, compression=None, base=BASE):
    values = [b"v-%d" % i * (1 + i % 7) for i in range(n)]
    keys = [None if i % 5 == 0 else b"k-%d" % i for i in range(n)]
    headers = [[("h", b"%d" % i), ("pylog.priority", b"%d" % (i % 10))] if i % 3 else [] for i in range(n)]
    timestamps = [1_700_000_000_000 + 37 * i - (i % 4) * 1000 for i in range(n)]
    return encode_batch(values, keys, headers, timestamps, compression, base_offset=BASE if base is None else base)


def _records(data):
    return [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in decode_batches(data)]


def _reseal(b: bytearray) -> bytes:
    struct.pack_into(">I", b, 17, crc32c(bytes(b[21:])))
    return bytes(b)


@pytest.mark.parametrize("ranges", [
    [(BASE + 10, BASE + 19)],
    [(BASE, BASE)],
    [(BASE + 49, BASE + 49)],
    [(BASE + 3, BASE + 5), (BASE + 20, BASE + 20), (BASE + 40, BASE + 60)],
    [(0, BASE + 2), (BASE + 48, BASE + 100)],
])
def test_a_cut_keeps_exactly_the_acquired_records_byte_for_byte(ranges):
    whole = _batch()
    cut = trim_batch(whole, ranges)
    want = [r for r in _records(whole) if any(f <= r[0] <= l for f, l in ranges)]
    assert _records(cut) == want
    assert len(cut) < len(whole)
    # A sound batch: CRC, lengths; base offset, last offset delta, producer
    # fields and base sequence as stored (what compaction keeps).
    valid, batches, records, last, err = validate_batches(cut)
    assert (valid, batches, records, err) == (len(cut), 1, len(want), None)
    assert cut[:12] == whole[:12][:8] + struct.pack(">i", len(cut) - 12)
    assert cut[21:35] == whole[21:35]           # attributes, last offset delta, base timestamp
    assert cut[43:57] == whole[43:57]           # producer id, epoch, base sequence
    assert struct.unpack_from(">q", cut, 35)[0] == max(r[1] for r in want)


def test_nothing_kept_is_no_batch_and_everything_kept_is_the_batch():
    whole = _batch()
    assert trim_batch(whole, [(0, BASE - 1), (BASE + 50, BASE + 99)]) == b""
    assert trim_batch(whole, []) == b""
    again = trim_batch(whole, [(BASE, BASE + 49)])
    assert _records(again) == _records(whole) and len(again) == len(whole)


def test_log_append_time_batches_keep_their_max_timestamp():
    b = bytearray(_batch())
    struct.pack_into(">h", b, 21, struct.unpack_from(">h", b, 21)[0] | 0x08)
    struct.pack_into(">q", b, 35, 1_800_000_000_000)
    whole = _reseal(b)
    cut = trim_batch(whole, [(BASE + 1, BASE + 2)])
    assert [r[1] for r in _records(cut)] == [1_800_000_000_000] * 2
    assert struct.unpack_from(">q", cut, 35)[0] == 1_800_000_000_000


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_a_compressed_batch_is_cut_to_an_uncompressed_one_with_the_same_records(codec):
    whole = _batch(200, compression=codec)
    ranges = [(BASE + 3, BASE + 9), (BASE + 150, BASE + 150)]
    cut = trim_batch(whole, ranges)
    assert _records(cut) == [r for r in _records(whole) if any(f <= r[0] <= l for f, l in ranges)]
    attributes = struct.unpack_from(">h", cut, 21)[0]
    assert attributes & 0x07 == 0 and attributes & ~0x07 == struct.unpack_from(">h", whole, 21)[0] & ~0x07
    assert validate_batches(cut)[0] == len(cut) and validate_batches(cut)[4] is None
    assert cut[43:57] == whole[43:57] and cut[:8] == whole[:8]


def test_a_compressed_batch_gone_bad_is_an_error():
    b = bytearray(_batch(200, compression="lz4"))
    b[100] ^= 0x01
    with pytest.raises(CorruptRecordError):
        trim_batch(bytes(b), [(BASE, BASE)])
    b = bytearray(_batch(200, compression="lz4"))
    b[70:90] = bytes(20)        # an inflate that fails, under a good CRC
    with pytest.raises(CorruptRecordError):
        trim_batch(_reseal(b), [(BASE, BASE)])


def test_control_batches_are_refused():
    b = bytearray(_batch())
    struct.pack_into(">h", b, 21, struct.unpack_from(">h", b, 21)[0] | 0x20)
    with pytest.raises(ValueError):
        trim_batch(_reseal(b), [(BASE, BASE)])


def test_ranges_out_of_order_are_refused():
    with pytest.raises(ValueError):
        trim_batch(_batch(), [(BASE + 5, BASE + 9), (BASE + 1, BASE + 2)])
    with pytest.raises(ValueError):
        trim_batch(_batch(), [(BASE + 5, BASE + 4)])


def test_bytes_gone_bad_are_not_resealed():
    b = bytearray(_batch())
    b[200] ^= 0x40
    with pytest.raises(CorruptRecordError):
        trim_batch(bytes(b), [(BASE, BASE + 3)])


@pytest.mark.parametrize("cut_at", [0, 1, 16, 60, 61, 62, 300])
def test_a_batch_cut_short_is_an_error(cut_at):
    with pytest.raises(CorruptRecordError):
        trim_batch(_batch()[:cut_at], [(BASE, BASE + 3)])


def test_a_record_count_or_lengths_that_lie_are_an_error_even_under_a_good_crc():
    whole = _batch()
    for count in (0, 49, 51, 1 << 30, -1):
        b = bytearray(whole)
        struct.pack_into(">i", b, 57, count)
        if count == 0:      # no record walked: the records do not fill the section
            with pytest.raises(CorruptRecordError):
                trim_batch(_reseal(b), [(BASE, BASE + 3)])
            continue
        with pytest.raises(CorruptRecordError):
            trim_batch(_reseal(b), [(BASE, BASE + 3)])
    b = bytearray(whole)
    b[61] = 0x7F        # the first record's length: far past the batch
    with pytest.raises(CorruptRecordError):
        trim_batch(_reseal(b), [(BASE, BASE + 3)])


def test_random_damage_under_a_good_crc_never_crashes():
    rng = random.Random(18)
    whole = _batch(200)
    kept = [(BASE + 7, BASE + 31), (BASE + 100, BASE + 104)]
    for _ in range(3000):
        b = bytearray(whole)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(61, len(b))] = rng.randrange(256)
        data = _reseal(b)
        try:
            out = trim_batch(data, kept)
        except (CorruptRecordError, ValueError):
            continue
        # What passes is still one sound batch holding only kept offsets.
        if out:
            assert validate_batches(out)[0] == len(out)
            assert validate_batches(out)[4] is None


def _part(data):
    from pylog._engine import batch_headers
    hd = batch_headers(data)[0]
    return data, hd[1], hd[1] + hd[2], hd[7], hd[8]


def test_what_a_fetch_sends_of_each_batch():
    from pylog.share.delivery import _trimmed
    whole = _batch(100)
    part = _part(whole)
    # Nothing of it acquired (read past on the way): nothing sent.
    assert _trimmed(part, [(0, BASE - 1, 1), (BASE + 100, BASE + 200, 1)]) == b""
    # More than half acquired: the batch as stored.
    assert _trimmed(part, [(BASE, BASE + 60, 1)]) is whole
    # At most half: cut, ranges from before and after the batch clipped to it.
    cut = _trimmed(part, [(BASE - 5, BASE + 2, 2), (BASE + 97, BASE + 300, 1)])
    assert [r[0] for r in _records(cut)] == [BASE, BASE + 1, BASE + 2, BASE + 97, BASE + 98, BASE + 99]
    # A batch whose bytes went bad goes as stored: the client's CRC check judges it.
    bad = bytearray(whole)
    bad[300] ^= 1
    assert _trimmed(_part(bytes(bad)), [(BASE, BASE, 1)]) == bytes(bad)
