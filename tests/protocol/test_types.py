"""Primitive encodings: known byte layouts, round trips, and hostile input."""

import random
from uuid import UUID

import pytest

from pylog.protocol import types as t
from pylog.protocol.errors import ProtocolError


def write(fn, *args):
    out = bytearray()
    fn(out, *args)
    return bytes(out)


def read_all(fn, data, *args):
    """Reads one value and checks that it used the whole buffer."""
    buf = memoryview(data)
    value, pos = fn(buf, 0, *args)
    assert pos == len(buf)
    return value


# --- varints -------------------------------------------------------------------

@pytest.mark.parametrize("value, encoded", [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"),
    (16383, "ff7f"), (16384, "808001"), (0xFFFFFFFF, "ffffffff0f"),
])
def test_unsigned_varint(value, encoded):
    assert write(t.write_unsigned_varint, value).hex() == encoded
    assert read_all(t.read_unsigned_varint, bytes.fromhex(encoded)) == value


@pytest.mark.parametrize("value", [-1, 1 << 32])
def test_unsigned_varint_out_of_range(value):
    with pytest.raises(ProtocolError):
        write(t.write_unsigned_varint, value)


@pytest.mark.parametrize("data", ["", "80", "ffff", "ffffffff"])
def test_unsigned_varint_truncated(data):
    with pytest.raises(ProtocolError, match="truncated"):
        t.read_unsigned_varint(memoryview(bytes.fromhex(data)), 0)


@pytest.mark.parametrize("data", ["ffffffffff01", "ffffffff1f"])
def test_unsigned_varint_too_long(data):
    with pytest.raises(ProtocolError):
        t.read_unsigned_varint(memoryview(bytes.fromhex(data)), 0)


@pytest.mark.parametrize("value, encoded", [
    (0, "00"), (-1, "01"), (1, "02"), (-64, "7f"), (64, "8001"),
    (2**31 - 1, "feffffff0f"), (-2**31, "ffffffff0f"),
])
def test_varint_zigzag(value, encoded):
    assert write(t.write_varint, value).hex() == encoded
    assert read_all(t.read_varint, bytes.fromhex(encoded)) == value


@pytest.mark.parametrize("value", [0, -1, 1, 2**31, -2**31 - 1, 2**63 - 1, -2**63])
def test_varlong_round_trip(value):
    data = write(t.write_varlong, value)
    assert read_all(t.read_varlong, data) == value


def test_varlong_extremes_take_ten_bytes():
    assert write(t.write_varlong, -2**63).hex() == "ffffffffffffffffff01"


def test_varint_range():
    with pytest.raises(ProtocolError):
        write(t.write_varint, 2**31)
    with pytest.raises(ProtocolError):
        write(t.write_varlong, 2**63)
    with pytest.raises(ProtocolError):
        t.read_varlong(memoryview(b"\xff" * 11), 0)


# --- fixed width ---------------------------------------------------------------

@pytest.mark.parametrize("reader, s, value", [
    (t.read_int8, t.INT8, -2), (t.read_int16, t.INT16, -300), (t.read_int32, t.INT32, -70000),
    (t.read_int64, t.INT64, -2**40), (t.read_uint16, t.UINT16, 65535),
    (t.read_float64, t.FLOAT64, 2.5), (t.read_bool, t.BOOLEAN, True),
])
def test_fixed(reader, s, value):
    data = s.pack(value)
    assert read_all(reader, data) == value
    with pytest.raises(ProtocolError, match="truncated"):
        reader(memoryview(data[:-1]), 0)


def test_bool_reads_any_non_zero_as_true():
    assert t.read_bool(memoryview(b"\x02"), 0) == (True, 1)
    assert t.read_bool(memoryview(b"\x00"), 0) == (False, 1)


def test_uuid():
    u = UUID("01234567-89ab-cdef-0123-456789abcdef")
    data = write(t.write_uuid, u)
    assert data.hex() == "0123456789abcdef0123456789abcdef"
    assert read_all(t.read_uuid, data) == u
    with pytest.raises(ProtocolError):
        t.read_uuid(memoryview(data[:15]), 0)


# --- strings and bytes ---------------------------------------------------------

@pytest.mark.parametrize("writer, reader, value, encoded", [
    (t.write_string, t.read_string, "abc", "0003616263"),
    (t.write_string, t.read_string, "", "0000"),
    (t.write_nullable_string, t.read_nullable_string, None, "ffff"),
    (t.write_nullable_string, t.read_nullable_string, "é", "0002c3a9"),
    (t.write_compact_string, t.read_compact_string, "abc", "04616263"),
    (t.write_compact_string, t.read_compact_string, "", "01"),
    (t.write_compact_nullable_string, t.read_compact_nullable_string, None, "00"),
    (t.write_bytes, t.read_bytes, b"\x00\x01", "000000020001"),
    (t.write_nullable_bytes, t.read_nullable_bytes, None, "ffffffff"),
    (t.write_compact_bytes, t.read_compact_bytes, b"", "01"),
    (t.write_compact_nullable_bytes, t.read_compact_nullable_bytes, None, "00"),
    (t.write_nullable_records, t.read_nullable_records, b"rec", "00000003726563"),
    (t.write_compact_nullable_records, t.read_compact_nullable_records, None, "00"),
    (t.write_compact_records, t.read_compact_records, b"rec", "04726563"),
])
def test_length_prefixed(writer, reader, value, encoded):
    assert write(writer, value).hex() == encoded
    assert read_all(reader, bytes.fromhex(encoded)) == value


@pytest.mark.parametrize("reader, data", [
    (t.read_string, "ffff"),
    (t.read_compact_string, "00"),
    (t.read_bytes, "ffffffff"),
    (t.read_compact_bytes, "00"),
    (t.read_records, "ffffffff"),
])
def test_null_in_non_nullable(reader, data):
    with pytest.raises(ProtocolError, match="non-nullable"):
        reader(memoryview(bytes.fromhex(data)), 0)


@pytest.mark.parametrize("reader, data", [
    (t.read_nullable_string, "fffe"),
    (t.read_nullable_bytes, "fffffffe"),
    (t.read_nullable_records, "80000000"),
])
def test_any_negative_length_is_null_when_nullable(reader, data):
    # As Kafka's generated readers (`if (length < 0) null`) and pylog's
    # hand-written Produce decoder read it (found by fuzz/fuzz_requests.py).
    assert reader(memoryview(bytes.fromhex(data)), 0) == (None, len(data) // 2)


@pytest.mark.parametrize("reader, data", [
    (t.read_string, "fffe"),
    (t.read_bytes, "fffffffe"),
    (t.read_records, "80000000"),
])
def test_negative_length(reader, data):
    with pytest.raises(ProtocolError, match="invalid length"):
        reader(memoryview(bytes.fromhex(data)), 0)


@pytest.mark.parametrize("reader, data", [
    (t.read_string, "000561"),
    (t.read_compact_string, "0561"),
    (t.read_bytes, "0000000261"),
    (t.read_compact_nullable_records, "ffffff0f"),
    (t.read_string, "00"),
])
def test_truncated_data(reader, data):
    with pytest.raises(ProtocolError, match="truncated"):
        reader(memoryview(bytes.fromhex(data)), 0)


def test_invalid_utf8():
    with pytest.raises(ProtocolError, match="UTF-8"):
        t.read_string(memoryview(b"\x00\x02\xc3\x28"), 0)


def test_string_too_long_for_int16_length():
    with pytest.raises(ProtocolError):
        write(t.write_string, "x" * 0x8000)
    assert len(write(t.write_compact_string, "x" * 0x8000)) == 0x8000 + 3


def test_records_are_a_view_of_the_buffer():
    frame = b"\x00\x00\x00\x03abc"
    records, _ = t.read_records(memoryview(frame), 0)
    assert isinstance(records, memoryview) and records.obj is frame
    data, _ = t.read_bytes(memoryview(frame), 0)
    assert type(data) is bytes


def test_records_accept_any_buffer():
    assert write(t.write_records, memoryview(b"xyz")) == b"\x00\x00\x00\x03xyz"
    assert write(t.write_compact_records, bytearray(b"xyz")) == b"\x04xyz"


# --- arrays --------------------------------------------------------------------

def test_array_lengths():
    assert read_all(t.read_nullable_array_length, bytes.fromhex("ffffffff")) == -1
    assert read_all(t.read_compact_nullable_array_length, b"\x00") == -1
    assert t.read_array_length(memoryview(bytes.fromhex("00000001aa")), 0) == (1, 4)
    assert t.read_compact_array_length(memoryview(bytes.fromhex("02aa")), 0) == (1, 1)
    with pytest.raises(ProtocolError, match="non-nullable"):
        t.read_array_length(memoryview(bytes.fromhex("ffffffff")), 0)
    with pytest.raises(ProtocolError, match="non-nullable"):
        t.read_compact_array_length(memoryview(b"\x00"), 0)
    assert read_all(t.read_nullable_array_length, bytes.fromhex("fffffffe")) == -1
    assert read_all(t.read_nullable_array_length, bytes.fromhex("80000000")) == -1


@pytest.mark.parametrize("reader, data", [
    (t.read_array_length, "7fffffff"),
    (t.read_nullable_array_length, "0000000501020304"),
    (t.read_compact_array_length, "ffffffff07"),
])
def test_forged_array_count_is_refused(reader, data):
    # A count above the bytes left cannot be honest; refusing it early stops a
    # 5-byte request from making the decoder loop two billion times.
    with pytest.raises(ProtocolError, match="exceeds"):
        reader(memoryview(bytes.fromhex(data)), 0)


def test_arrays():
    out = bytearray()
    t.write_array(out, [1, -1], lambda o, v: o.extend(t.INT32.pack(v)))
    assert out.hex() == "00000002" "00000001" "ffffffff"
    assert read_all(t.read_array, bytes(out), t.read_int32) == [1, -1]
    assert write(t.write_nullable_array, None, t.write_string) == b"\xff\xff\xff\xff"
    assert read_all(t.read_nullable_array, b"\xff\xff\xff\xff", t.read_string) is None
    data = write(t.write_compact_array, ["a", "bc"], t.write_compact_string)
    assert data.hex() == "03" "0261" "036263"
    assert read_all(t.read_compact_array, data, t.read_compact_string) == ["a", "bc"]
    assert write(t.write_compact_nullable_array, None, t.write_compact_string) == b"\x00"
    assert read_all(t.read_compact_nullable_array, b"\x00", t.read_compact_string) is None


def test_fixed_arrays():
    data = write(t.write_fixed_array, "i", [1, 2, -3])
    assert data.hex() == "00000003" "00000001" "00000002" "fffffffd"
    assert read_all(t.read_fixed_array, data[4:], "i", 4, 3) == [1, 2, -3]
    assert write(t.write_compact_fixed_array, "h", [7]).hex() == "02" "0007"
    assert write(t.write_fixed_array, "q", []).hex() == "00000000"
    with pytest.raises(ProtocolError, match="truncated"):
        t.read_fixed_array(memoryview(data[4:-1]), 0, "i", 4, 3)
    many = list(range(100))  # past the cached sizes
    data = write(t.write_fixed_array, "i", many)
    assert read_all(t.read_fixed_array, data[4:], "i", 4, 100) == many


# --- tagged fields -------------------------------------------------------------

def test_tagged_fields_written_in_tag_order():
    data = write(t.write_tagged_fields, [(5, b"\x01"), (0, b""), (300, b"xy")])
    assert data.hex() == "03" "0000" "050101" "ac0202" "7879"
    assert read_all(t.read_tagged_fields, data) == [(0, b""), (5, b"\x01"), (300, b"xy")]
    assert write(t.write_tagged_fields, []) == b"\x00"
    assert read_all(t.read_tagged_fields, b"\x00") is None


def test_tagged_field_overruns_buffer():
    with pytest.raises(ProtocolError, match="truncated"):
        t.read_tagged_fields(memoryview(bytes.fromhex("01000561")), 0)
    with pytest.raises(ProtocolError, match="size"):
        t.check_tag_end(3, 10, 11)


# --- hostile input -------------------------------------------------------------

READERS = [
    t.read_int8, t.read_int16, t.read_int32, t.read_int64, t.read_uint16, t.read_float64,
    t.read_bool, t.read_uuid, t.read_unsigned_varint, t.read_varint, t.read_varlong,
    t.read_string, t.read_nullable_string, t.read_compact_string,
    t.read_compact_nullable_string, t.read_bytes, t.read_nullable_bytes,
    t.read_compact_bytes, t.read_compact_nullable_bytes, t.read_records,
    t.read_nullable_records, t.read_compact_records, t.read_compact_nullable_records,
    t.read_array_length, t.read_nullable_array_length, t.read_compact_array_length,
    t.read_compact_nullable_array_length, t.read_tagged_fields,
]


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_random_bytes_raise_only_protocol_error(reader):
    rng = random.Random(reader.__name__)
    for _ in range(300):
        data = memoryview(bytes(rng.randrange(256) for _ in range(rng.randrange(12))))
        pos = rng.randrange(len(data) + 2)
        try:
            reader(data, pos)
        except ProtocolError:
            pass
