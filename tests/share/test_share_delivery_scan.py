"""The engine's header scan (engine/delivery.c through _engine.find_headers)
on hand-built record batches: values, timestamps, several keys, control and
compressed batches, and corrupt or short input giving an error, not a crash."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from pylog import _engine
from pylog.errors import CorruptRecordError
from pylog.protocol.types import write_unsigned_varint

KEYS = [b"pylog.deliver.at", b"pylog.deliver.after", b"pylog.priority"]


def varint(v: int) -> bytes:
    out = bytearray()
    write_unsigned_varint(out, (v << 1) ^ (v >> 63))     # Kafka's zigzag
    return bytes(out)


def record(delta, ts_delta=0, value=b"v", headers=()):
    body = b"\x00" + varint(ts_delta) + varint(delta) + varint(-1) + varint(len(value)) + value
    body += varint(len(headers))
    for k, v in headers:
        body += varint(len(k)) + k + (varint(-1) if v is None else varint(len(v)) + v)
    return varint(len(body)) + body


def batch(base_offset, records, base_ts=1000, max_ts=None, attributes=0, count=None, section=None):
    section = b"".join(records) if section is None else section
    n = len(records) if count is None else count
    after_length = struct.pack(">iBIhiqqqhii", 0, 2, 0, attributes, max(n - 1, 0), base_ts,
                               base_ts if max_ts is None else max_ts, -1, -1, -1, n) + section
    return struct.pack(">qi", base_offset, len(after_length)) + after_length


def scan(data, keys=KEYS):
    raw, end, used = _engine.find_headers(data, keys)
    return np.frombuffer(raw, np.int64).reshape(-1, 4).tolist(), end, used


def test_batches_without_the_headers_give_nothing():
    data = batch(0, [record(0), record(1, headers=[(b"trace", b"1")])]) + batch(2, [record(0)])
    assert scan(data) == ([], 3, len(data))


def test_values_keys_and_timestamps_of_the_records_that_carry_them():
    data = batch(10, [
        record(0, 0),
        record(1, 5, headers=[(b"pylog.deliver.at", b"123456789"), (b"x", b"y")]),
        record(2, 7, headers=[(b"pylog.priority", b"9"), (b"pylog.deliver.after", b"-250")]),
    ], base_ts=1000)
    hits, end, used = scan(data)
    assert hits == [[11, 0, 1005, 123456789], [12, 2, 1007, 9], [12, 1, 1007, -250]]
    assert (end, used) == (13, len(data))


def test_log_append_time_gives_every_record_the_batch_time():
    data = batch(0, [record(0, 3, headers=[(b"pylog.priority", b"4")])], base_ts=1000, max_ts=5000,
                 attributes=0x08)
    assert scan(data)[0] == [[0, 2, 5000, 4]]


def test_a_key_given_twice_counts_once_with_its_last_value():
    data = batch(0, [record(0, headers=[(b"pylog.priority", b"1"), (b"pylog.priority", b"7")])])
    assert scan(data)[0] == [[0, 2, 1000, 7]]


@pytest.mark.parametrize("value", [b"", b"soon", b"12a", b"-", None, b"1234567890123456789", b" 5"])
def test_a_value_that_is_not_a_decimal_integer_is_skipped(value):
    data = batch(0, [record(0, headers=[(b"pylog.priority", value)]), record(1, headers=[(b"pylog.priority", b"3")])])
    assert scan(data)[0] == [[1, 2, 1000, 3]]


def test_control_batches_are_skipped_and_compressed_ones_inflated():
    ctl = batch(0, [record(0, headers=[(b"pylog.priority", b"9")])], attributes=0x20)
    lz4 = _engine.encode_batch([b"a", b"b"], headers=[[], [("pylog.priority", b"6")]], timestamps=[7, 8],
                               compression="lz4", base_offset=1)
    hits, end, used = scan(ctl + lz4)
    assert hits == [[2, 2, 8, 6]]
    assert (end, used) == (3, len(ctl) + len(lz4))


def test_a_batch_cut_short_at_the_end_stops_the_walk():
    whole = batch(0, [record(0, headers=[(b"pylog.priority", b"2")])])
    cut = batch(1, [record(0, headers=[(b"pylog.priority", b"3")])])[:-3]
    assert scan(whole + cut) == ([[0, 2, 1000, 2]], 1, len(whole))
    assert scan(b"") == ([], -1, 0)
    assert scan(b"\x00" * 10) == ([], -1, 0)


@pytest.mark.parametrize("section", [
    record(0, headers=[(b"pylog.priority", b"2")])[:-2],                       # record longer than the section
    record(0, headers=[(b"pylog.priority", b"2")]) + b"\x00",                  # bytes after the last record
    varint(40) + b"\x00" + varint(0) + varint(0) + varint(-1) + varint(1) + b"v" + varint(1)
    + varint(30) + b"pylog.priority",                                          # header key past the record
    varint(20) + b"\x00" + varint(0) + varint(0) + varint(-1) + varint(1) + b"v" + varint(-3)
    + b"pylog.priority",                                                       # negative header count
    b"\xff" * 12 + b"pylog.priority",                                          # an overlong varint
])
def test_corrupt_records_raise_an_error_not_a_crash(section):
    with pytest.raises(CorruptRecordError):
        scan(batch(0, [b""], section=section))


@pytest.mark.parametrize("count", [3, 1 << 30])
def test_more_records_claimed_than_the_section_holds_is_corrupt(count):
    section = record(0, headers=[(b"pylog.priority", b"2")])
    with pytest.raises(CorruptRecordError):
        scan(batch(0, [section], count=count))


def test_without_the_shared_key_prefix_records_are_not_decoded():
    # The fast path: one memmem finds no "pylog." and nothing more is read.
    assert scan(batch(0, [b""], count=2, section=b"\xff" * 40)) == ([], 2, 61 + 40)


def test_between_one_and_eight_keys():
    data = batch(0, [record(0)])
    with pytest.raises(ValueError):
        _engine.find_headers(data, [])
    with pytest.raises(ValueError):
        _engine.find_headers(data, [b"k%d" % i for i in range(9)])
    assert scan(data, [b"pylog.priority"]) == ([], 1, len(data))
