"""Kafka wire-protocol primitive types.

Classic encodings (every version):
    int8 int16 int32 int64 uint16 float64   big-endian, fixed width
    bool                                    int8, 0 = false (any non-zero reads as true)
    uuid                                    16 raw bytes
    string / nullable string                int16 length, UTF-8 bytes; null = length -1
    bytes / records                         int32 length, raw bytes; null = length -1
    array                                   int32 count, elements; null = count -1
                                            (readers take any negative length as null)

Flexible versions (KIP-482) switch strings, bytes, records and arrays to their
compact forms and end every struct with a tagged-field section:
    unsigned varint                         LEB128, 7 bits a byte, at most 5 bytes (32 bits)
    compact string / bytes / records        uvarint(length + 1), data; 0 = null
    compact array                           uvarint(count + 1), elements; 0 = null
    tagged fields                           uvarint count, then per field: uvarint tag,
                                            uvarint size, size bytes; tags ascending

varint/varlong (zigzag) are not used by message schemas, only inside record
batches; they live here so the record code shares one implementation.

Writers append to a bytearray `out`. Readers take a buffer (normally a
memoryview, so slices do not copy) and a position, and return
`(value, new_position)`. Every reader raises ProtocolError on truncated or
invalid input, never IndexError or struct.error: a peer's bytes must not be
able to produce any other exception.
"""

from struct import Struct
from struct import error as StructError
from uuid import UUID

from .errors import ProtocolError

__all__ = [
    "INT8", "INT16", "INT32", "INT64", "UINT16", "FLOAT64", "BOOLEAN",
    "ZERO_UUID", "ProtocolError",
    "read_int8", "read_int16", "read_int32", "read_int64", "read_uint16",
    "read_float64", "read_bool", "read_uuid", "write_uuid",
    "write_unsigned_varint", "read_unsigned_varint",
    "write_varint", "read_varint", "write_varlong", "read_varlong",
    "write_string", "read_string", "write_nullable_string", "read_nullable_string",
    "write_compact_string", "read_compact_string",
    "write_compact_nullable_string", "read_compact_nullable_string",
    "write_bytes", "read_bytes", "write_nullable_bytes", "read_nullable_bytes",
    "write_compact_bytes", "read_compact_bytes",
    "write_compact_nullable_bytes", "read_compact_nullable_bytes",
    "write_records", "read_records", "write_nullable_records", "read_nullable_records",
    "write_compact_records", "read_compact_records",
    "write_compact_nullable_records", "read_compact_nullable_records",
    "read_array", "read_nullable_array", "read_compact_array", "read_compact_nullable_array",
    "write_array", "write_nullable_array", "write_compact_array", "write_compact_nullable_array",
    "read_array_length", "read_nullable_array_length",
    "read_compact_array_length", "read_compact_nullable_array_length",
    "write_fixed_array", "write_compact_fixed_array", "read_fixed_array",
    "write_tagged_fields", "read_tagged_fields", "read_tag_header", "add_unknown_tag",
    "check_tag_end",
]

INT8 = Struct(">b")
INT16 = Struct(">h")
INT32 = Struct(">i")
INT64 = Struct(">q")
UINT16 = Struct(">H")
FLOAT64 = Struct(">d")
BOOLEAN = Struct(">?")

ZERO_UUID = UUID(int=0)

_NULL16 = b"\xff\xff"
_NULL32 = b"\xff\xff\xff\xff"
_pack_int16 = INT16.pack
_pack_int32 = INT32.pack
_read_int16 = INT16.unpack_from
_read_int32 = INT32.unpack_from


def _truncated(buf, pos, need):
    return ProtocolError(
        f"truncated: need {need} byte(s) at offset {pos}, buffer has {len(buf)}"
    )


# --- fixed width -------------------------------------------------------------

def _fixed_reader(s):
    unpack_from, size = s.unpack_from, s.size

    def read(buf, pos):
        try:
            return unpack_from(buf, pos)[0], pos + size
        except StructError:
            raise _truncated(buf, pos, size) from None
    return read


read_int8 = _fixed_reader(INT8)
read_int16 = _fixed_reader(INT16)
read_int32 = _fixed_reader(INT32)
read_int64 = _fixed_reader(INT64)
read_uint16 = _fixed_reader(UINT16)
read_float64 = _fixed_reader(FLOAT64)
read_bool = _fixed_reader(BOOLEAN)


def write_uuid(out, u):
    out += u.bytes


def read_uuid(buf, pos):
    end = pos + 16
    if end > len(buf):
        raise _truncated(buf, pos, 16)
    return UUID(bytes=bytes(buf[pos:end])), end


# --- varints -----------------------------------------------------------------

def write_unsigned_varint(out, n):
    if 0 <= n < 0x80:  # the common case: lengths and tag counts
        out.append(n)
        return
    if n < 0 or n > 0xFFFFFFFF:
        raise ProtocolError(f"unsigned varint out of range: {n}")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_uvarint(buf, pos, max_bytes, what):
    value = shift = 0
    for i in range(pos, pos + max_bytes):
        try:
            b = buf[i]
        except IndexError:
            raise _truncated(buf, i, 1) from None
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    raise ProtocolError(f"{what} longer than {max_bytes} bytes at offset {pos}")


def read_unsigned_varint(buf, pos):
    try:
        b = buf[pos]
    except IndexError:
        raise _truncated(buf, pos, 1) from None
    if b < 0x80:
        return b, pos + 1
    value, end = _read_uvarint(buf, pos, 5, "unsigned varint")
    if value > 0xFFFFFFFF:
        raise ProtocolError(f"unsigned varint over 32 bits at offset {pos}")
    return value, end


def write_varint(out, n):
    if not -0x80000000 <= n <= 0x7FFFFFFF:
        raise ProtocolError(f"varint out of int32 range: {n}")
    write_unsigned_varint(out, ((n << 1) ^ (n >> 31)) & 0xFFFFFFFF)


def read_varint(buf, pos):
    u, pos = read_unsigned_varint(buf, pos)
    return (u >> 1) ^ -(u & 1), pos


def write_varlong(out, n):
    if not -0x8000000000000000 <= n <= 0x7FFFFFFFFFFFFFFF:
        raise ProtocolError(f"varlong out of int64 range: {n}")
    u = ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)


def read_varlong(buf, pos):
    u, pos = _read_uvarint(buf, pos, 10, "varlong")
    if u > 0xFFFFFFFFFFFFFFFF:
        raise ProtocolError("varlong over 64 bits")
    return (u >> 1) ^ -(u & 1), pos


# --- length-prefixed data ----------------------------------------------------
# A reader first gets the length, then checks the end against the buffer,
# because slicing past the end of a memoryview silently returns fewer bytes.

def _length16(buf, pos):
    try:
        return _read_int16(buf, pos)[0], pos + 2
    except StructError:
        raise _truncated(buf, pos, 2) from None


def _length32(buf, pos):
    try:
        return _read_int32(buf, pos)[0], pos + 4
    except StructError:
        raise _truncated(buf, pos, 4) from None


def _compact_length(buf, pos):
    n, pos = read_unsigned_varint(buf, pos)
    return n - 1, pos


def _bad_length(n, pos, nullable):
    if n == -1 and not nullable:
        return ProtocolError(f"null at offset {pos} in a non-nullable field")
    return ProtocolError(f"invalid length {n} at offset {pos}")


def _decode_utf8(buf, pos, end):
    try:
        return str(buf[pos:end], "utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"invalid UTF-8 in string at offset {pos}: {e.reason}") from None


# A nullable field reads any negative length as null, as Kafka's generated
# readers do (`if (length < 0) null`); Produce's hand-written decoder does the
# same, and the two must agree on what a request is.

def _make_string_reader(length, nullable):
    def read(buf, pos):
        n, start = length(buf, pos)
        if n < 0:
            if nullable:
                return None, start
            raise _bad_length(n, pos, nullable)
        end = start + n
        if end > len(buf):
            raise _truncated(buf, start, n)
        return _decode_utf8(buf, start, end), end
    return read


def _make_data_reader(length, nullable, copy):
    def read(buf, pos):
        n, start = length(buf, pos)
        if n < 0:
            if nullable:
                return None, start
            raise _bad_length(n, pos, nullable)
        end = start + n
        if end > len(buf):
            raise _truncated(buf, start, n)
        return (bytes(buf[start:end]) if copy else buf[start:end]), end
    return read


read_string = _make_string_reader(_length16, False)
read_nullable_string = _make_string_reader(_length16, True)
read_compact_string = _make_string_reader(_compact_length, False)
read_compact_nullable_string = _make_string_reader(_compact_length, True)

# bytes fields are small (SASL tokens, group metadata): copy them so they do
# not pin the request buffer.
read_bytes = _make_data_reader(_length32, False, True)
read_nullable_bytes = _make_data_reader(_length32, True, True)
read_compact_bytes = _make_data_reader(_compact_length, False, True)
read_compact_nullable_bytes = _make_data_reader(_compact_length, True, True)

# records can be megabytes and go to the log as they are: return a slice of the
# caller's buffer (zero-copy when it is a memoryview). The slice keeps that
# buffer alive and shares its bytes, so the buffer must not be reused while the
# records are still in use.
read_records = _make_data_reader(_length32, False, False)
read_nullable_records = _make_data_reader(_length32, True, False)
read_compact_records = _make_data_reader(_compact_length, False, False)
read_compact_nullable_records = _make_data_reader(_compact_length, True, False)


def write_string(out, s):
    b = s.encode()
    if len(b) > 0x7FFF:
        raise ProtocolError(f"string of {len(b)} bytes does not fit an int16 length")
    out += _pack_int16(len(b))
    out += b


def write_nullable_string(out, s):
    if s is None:
        out += _NULL16
    else:
        write_string(out, s)


def write_compact_string(out, s):
    b = s.encode()
    write_unsigned_varint(out, len(b) + 1)
    out += b


def write_compact_nullable_string(out, s):
    if s is None:
        out.append(0)
    else:
        write_compact_string(out, s)


def write_bytes(out, b):
    out += _pack_int32(len(b))
    out += b


def write_nullable_bytes(out, b):
    if b is None:
        out += _NULL32
    else:
        out += _pack_int32(len(b))
        out += b


def write_compact_bytes(out, b):
    write_unsigned_varint(out, len(b) + 1)
    out += b


def write_compact_nullable_bytes(out, b):
    if b is None:
        out.append(0)
    else:
        write_unsigned_varint(out, len(b) + 1)
        out += b


# Records may be any buffer exporter (bytes, memoryview, a mmap slice), so the
# length is taken from a memoryview rather than len().
def write_records(out, r):
    m = memoryview(r)
    out += _pack_int32(m.nbytes)
    out += m


def write_nullable_records(out, r):
    if r is None:
        out += _NULL32
    else:
        write_records(out, r)


def write_compact_records(out, r):
    m = memoryview(r)
    write_unsigned_varint(out, m.nbytes + 1)
    out += m


def write_compact_nullable_records(out, r):
    if r is None:
        out.append(0)
    else:
        write_compact_records(out, r)


# --- arrays ------------------------------------------------------------------
# The length readers refuse a count larger than the bytes left (as Kafka
# does): every element takes at least one byte in practice, and a forged count
# must not make the decoder allocate or loop billions of times.

def _check_count(buf, pos, n, at):
    if n > len(buf) - pos:
        raise ProtocolError(
            f"array count {n} at offset {at} exceeds the {len(buf) - pos} bytes left"
        )


def read_array_length(buf, pos):
    n, end = _length32(buf, pos)
    if n < 0:
        raise _bad_length(n, pos, False)
    _check_count(buf, end, n, pos)
    return n, end


def read_nullable_array_length(buf, pos):
    """Returns -1 for a null array (any negative count, as Kafka reads it)."""
    n, end = _length32(buf, pos)
    if n < 0:
        return -1, end
    _check_count(buf, end, n, pos)
    return n, end


def read_compact_array_length(buf, pos):
    u, end = read_unsigned_varint(buf, pos)
    if u == 0:
        raise _bad_length(-1, pos, False)
    _check_count(buf, end, u - 1, pos)
    return u - 1, end


def read_compact_nullable_array_length(buf, pos):
    """Returns -1 for a null array."""
    u, end = read_unsigned_varint(buf, pos)
    _check_count(buf, end, u - 1, pos)
    return u - 1, end


def _read_items(buf, pos, n, read_item):
    items = []
    append = items.append
    for _ in range(n):
        item, pos = read_item(buf, pos)
        append(item)
    return items, pos


def read_array(buf, pos, read_item):
    """A non-nullable classic array; read_item(buf, pos) -> (item, pos)."""
    n, pos = read_array_length(buf, pos)
    return _read_items(buf, pos, n, read_item)


def read_nullable_array(buf, pos, read_item):
    n, pos = read_nullable_array_length(buf, pos)
    if n < 0:
        return None, pos
    return _read_items(buf, pos, n, read_item)


def read_compact_array(buf, pos, read_item):
    n, pos = read_compact_array_length(buf, pos)
    return _read_items(buf, pos, n, read_item)


def read_compact_nullable_array(buf, pos, read_item):
    n, pos = read_compact_nullable_array_length(buf, pos)
    if n < 0:
        return None, pos
    return _read_items(buf, pos, n, read_item)


def write_array(out, items, write_item):
    """A non-nullable classic array; write_item(out, item)."""
    out += _pack_int32(len(items))
    for item in items:
        write_item(out, item)


def write_nullable_array(out, items, write_item):
    if items is None:
        out += _NULL32
    else:
        write_array(out, items, write_item)


def write_compact_array(out, items, write_item):
    write_unsigned_varint(out, len(items) + 1)
    for item in items:
        write_item(out, item)


def write_compact_nullable_array(out, items, write_item):
    if items is None:
        out.append(0)
    else:
        write_compact_array(out, items, write_item)


_fixed_structs = {}


def _fixed_struct(code, n):
    # Compiled once per (type, count): replica and ISR lists are short and
    # repeat, and building a format string per call costs more than packing.
    # Peer-chosen counts above 64 are not cached, so they cannot grow this.
    # A two-letter code ("ii") is a count followed by n elements.
    s = _fixed_structs.get((code, n))
    if s is None:
        s = Struct(f">{code[:-1]}{n}{code[-1]}")
        if n <= 64:
            _fixed_structs[(code, n)] = s
    return s


def write_fixed_array(out, code, items):
    """A non-nullable classic array of one fixed-width type, count included,
    in one pack call; `code` is a struct format character (b h i q H d ?)."""
    out += _fixed_struct("i" + code, len(items)).pack(len(items), *items)


def write_compact_fixed_array(out, code, items):
    write_unsigned_varint(out, len(items) + 1)
    out += _fixed_struct(code, len(items)).pack(*items)


def read_fixed_array(buf, pos, code, size, n):
    end = pos + n * size
    if end > len(buf):
        raise _truncated(buf, pos, n * size)
    return list(_fixed_struct(code, n).unpack_from(buf, pos)), end


# --- tagged fields -----------------------------------------------------------

def write_tagged_fields(out, fields):
    """fields: (tag, bytes-like) pairs in any order; written ascending."""
    if not fields:
        out.append(0)
        return
    if len(fields) > 1:
        fields = sorted(fields, key=_tag_of)
    write_unsigned_varint(out, len(fields))
    for tag, data in fields:
        write_unsigned_varint(out, tag)
        write_unsigned_varint(out, len(data))
        out += data


def _tag_of(field):
    return field[0]


def read_tag_header(buf, pos):
    """Reads one field's tag and size: returns (tag, end_of_field, pos_of_data)."""
    tag, pos = read_unsigned_varint(buf, pos)
    size, pos = read_unsigned_varint(buf, pos)
    end = pos + size
    if end > len(buf):
        raise _truncated(buf, pos, size)
    return tag, end, pos


def add_unknown_tag(unknown, tag, buf, pos, end):
    """Keeps a tagged field this schema does not know, so re-encoding the
    message writes it back unchanged (as Kafka's _unknownTaggedFields)."""
    if unknown is None:
        unknown = []
    unknown.append((tag, bytes(buf[pos:end])))
    return unknown


def check_tag_end(tag, pos, end):
    if pos != end:
        raise ProtocolError(
            f"tagged field {tag}: value ends at offset {pos}, its size says {end}"
        )


def read_tagged_fields(buf, pos):
    """A tagged-field section with no known tags: returns (list or None, pos)."""
    n, pos = read_unsigned_varint(buf, pos)
    if n == 0:
        return None, pos
    unknown = []
    for _ in range(n):
        tag, end, pos = read_tag_header(buf, pos)
        unknown.append((tag, bytes(buf[pos:end])))
        pos = end
    return unknown, pos
