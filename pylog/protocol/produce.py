"""Hand-written codecs for the broker's hottest request: Produce v3-v11.

The generated codecs (messages/) build an object per struct; a produce
request of one partition is decoded and answered here with a few struct calls
instead, which halves the broker's Python time per request. The generated
classes stay the reference: tests/protocol/test_produce_codec.py checks that
both agree on every field and byte, for random requests.

v3-v8: request header v1, response header v0. v9-v11 are flexible (KIP-482:
request header v2, response header v1, compact strings and arrays, tagged
fields; unknown tags are skipped, as Kafka does). v10-v11 answers carry
KIP-951's tagged fields: CurrentLeader (tag 0) on a partition refused with
NOT_LEADER_OR_FOLLOWER and the NodeEndpoints (tag 0) of those leaders.
The requests pylog's own producer sends stay v3-v8 (encode_produce_request).
"""
from __future__ import annotations

import struct

from .errors import ProtocolError

__all__ = ["FIRST_VERSION", "LAST_VERSION", "decode_produce_request", "encode_produce_request",
           "encode_produce_response"]

FIRST_VERSION, LAST_VERSION = 3, 11
FIRST_FLEXIBLE = 9
REQUEST_LAST_VERSION = 8  # encode_produce_request writes the non-flexible versions only

_HEAD = struct.Struct(">hhih")       # api_key, api_version, correlation_id, client_id length
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS = struct.Struct(">hii")        # acks, timeout_ms, topic count
_PART = struct.Struct(">ii")         # partition index, records length
_RESP_PART = struct.Struct(">ihqq")  # index, error_code, base_offset, log_append_time_ms
_I64 = struct.Struct(">q")
_SIZE_CORR = struct.Struct(">ii")
_ACKS_TIMEOUT = struct.Struct(">hi")
_LEADER = struct.Struct(">ii")       # leader_id, leader_epoch


def _string(buf, pos, end, what):
    if pos + 2 > end:
        raise ProtocolError(f"Produce request cut short in {what} at offset {pos}")
    n = _I16.unpack_from(buf, pos)[0]
    return _utf8(buf, pos + 2, end, n, what)


def _utf8(buf, pos, end, n, what):
    """A string of n bytes at pos (None when n < 0) and the position after it."""
    if n < 0:
        return None, pos
    if pos + n > end:
        raise ProtocolError(f"Produce request: {what} of {n} bytes overruns the frame at offset {pos}")
    try:
        return str(buf[pos:pos + n], "utf-8"), pos + n
    except UnicodeDecodeError:
        raise ProtocolError(f"Produce request: {what} is not UTF-8") from None


def decode_produce_request(frame):
    """frame: the request without its size prefix (a memoryview; records come
    back as slices of it). Returns (correlation_id, api_version, client_id,
    transactional_id, acks, timeout_ms, topics) with topics a list of
    (name, [(partition_index, records or None)]). Raises ProtocolError for
    malformed bytes (the caller closes the connection)."""
    end = len(frame)
    if end < _HEAD.size:
        raise ProtocolError(f"Produce request of {end} bytes has no header")
    _key, version, correlation_id, n = _HEAD.unpack_from(frame, 0)
    pos = _HEAD.size
    client_id = None
    if n >= 0:
        if pos + n > end:
            raise ProtocolError("Produce request: client_id overruns the frame")
        client_id = str(frame[pos:pos + n], "utf-8", "replace")
        pos += n
    if version >= FIRST_FLEXIBLE:
        return _decode_flexible(frame, pos, end, correlation_id, version, client_id)
    transactional_id, pos = _string(frame, pos, end, "transactional_id")
    if pos + _ACKS.size > end:
        raise ProtocolError("Produce request cut short before acks")
    acks, timeout_ms, ntopics = _ACKS.unpack_from(frame, pos)
    pos += _ACKS.size
    if ntopics < 0 or ntopics > (end - pos) // 6:
        raise ProtocolError(f"Produce request claims {ntopics} topics in {end - pos} bytes")
    topics = []
    for _ in range(ntopics):
        name, pos = _string(frame, pos, end, "topic name")
        if name is None:
            raise ProtocolError("Produce request: null topic name")
        if pos + 4 > end:
            raise ProtocolError("Produce request cut short before a partition count")
        nparts = _I32.unpack_from(frame, pos)[0]
        pos += 4
        if nparts < 0 or nparts > (end - pos) // 8:
            raise ProtocolError(f"Produce request claims {nparts} partitions in {end - pos} bytes")
        parts = []
        for _ in range(nparts):
            if pos + 8 > end:
                raise ProtocolError("Produce request cut short in a partition")
            index, size = _PART.unpack_from(frame, pos)
            pos += 8
            if size < 0:
                records = None
            else:
                if pos + size > end:
                    raise ProtocolError(f"Produce request: records of {size} bytes overrun the frame")
                records = frame[pos:pos + size]
                pos += size
            parts.append((index, records))
        topics.append((name, parts))
    # Bytes after the last field are ignored, as Kafka's generated readers
    # (and pylog's, framing.decode_request) ignore them.
    return correlation_id, version, client_id, transactional_id, acks, timeout_ms, topics


def _uvarint(buf, pos, end, what):
    """An unsigned varint of at most 5 bytes (a 32-bit value), as Kafka reads one."""
    if pos < end and buf[pos] < 0x80:   # one byte: every count and short length
        return buf[pos], pos + 1
    value = shift = 0
    while True:
        if pos >= end:
            raise ProtocolError(f"Produce request cut short in {what} at offset {pos}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            if value > 0xFFFFFFFF:   # a fifth byte above 0x0F: more than 32 bits, as the codecs refuse
                raise ProtocolError(f"Produce request: {what} is an unsigned varint over 32 bits")
            return value, pos
        shift += 7
        if shift > 28:
            raise ProtocolError(f"Produce request: {what} is a varint longer than 5 bytes")


def _skip_tags(buf, pos, end, what):
    """A tagged-field section: none is known in a Produce request, so each is skipped."""
    if pos < end and buf[pos] == 0:     # none: what every client sends
        return pos + 1
    n, pos = _uvarint(buf, pos, end, what)
    for _ in range(n):
        _tag, pos = _uvarint(buf, pos, end, what)
        size, pos = _uvarint(buf, pos, end, what)
        if pos + size > end:
            raise ProtocolError(f"Produce request: a tagged field of {size} bytes overruns the frame")
        pos += size
    return pos


def _compact_string(buf, pos, end, what):
    n, pos = _uvarint(buf, pos, end, what)
    return _utf8(buf, pos, end, n - 1, what)


def _compact_count(buf, pos, end, what, least):
    """A compact array's length; each element takes at least least bytes, so a
    count the rest of the frame cannot hold is refused before any work."""
    n, pos = _uvarint(buf, pos, end, f"the count of {what}")
    n -= 1
    if n < 0 or n > (end - pos) // least:
        raise ProtocolError(f"Produce request claims {n} {what} in {end - pos} bytes")
    return n, pos


def _decode_flexible(frame, pos, end, correlation_id, version, client_id):
    """The rest of a v9+ request from the request header's tagged fields on."""
    pos = _skip_tags(frame, pos, end, "the header's tagged fields")
    transactional_id, pos = _compact_string(frame, pos, end, "transactional_id")
    if pos + 6 > end:
        raise ProtocolError("Produce request cut short before acks")
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(frame, pos)
    pos += 6
    # A topic takes at least 3 bytes (name, partition count, tags); a partition 6.
    ntopics, pos = _compact_count(frame, pos, end, "topics", 3)
    topics = []
    for _ in range(ntopics):
        name, pos = _compact_string(frame, pos, end, "topic name")
        if name is None:
            raise ProtocolError("Produce request: null topic name")
        nparts, pos = _compact_count(frame, pos, end, "partitions", 6)
        parts = []
        for _ in range(nparts):
            if pos + 4 > end:
                raise ProtocolError("Produce request cut short in a partition")
            index = _I32.unpack_from(frame, pos)[0]
            size, pos = _uvarint(frame, pos + 4, end, "a records length")
            if size == 0:
                records = None
            else:
                size -= 1
                if pos + size > end:
                    raise ProtocolError(f"Produce request: records of {size} bytes overrun the frame")
                records = frame[pos:pos + size]
                pos += size
            pos = _skip_tags(frame, pos, end, "a partition's tagged fields")
            parts.append((index, records))
        pos = _skip_tags(frame, pos, end, "a topic's tagged fields")
        topics.append((name, parts))
    pos = _skip_tags(frame, pos, end, "the body's tagged fields")
    # Bytes after the last field are ignored, as Kafka's generated readers
    # (and pylog's, framing.decode_request) ignore them.
    return correlation_id, version, client_id, transactional_id, acks, timeout_ms, topics


def _put_uvarint(out, n):
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _put_compact_string(out, s):
    if s is None:
        out.append(0)
        return
    b = s.encode()
    _put_uvarint(out, len(b) + 1)
    out += b


def _encode_flexible_response(correlation_id, version, results, node_endpoints, throttle_ms=0):
    out = bytearray(_SIZE_CORR.pack(0, correlation_id))
    out.append(0)  # response header v1: no tagged fields
    _put_uvarint(out, len(results) + 1)
    for name, parts in results:
        _put_compact_string(out, name)
        _put_uvarint(out, len(parts) + 1)
        for part in parts:
            index, code, base, append_time, start, message = part[:6]
            out += _RESP_PART.pack(index, code, base, append_time)
            out += _I64.pack(start)
            record_errors = part[6] if len(part) > 6 and part[6] else ()
            _put_uvarint(out, len(record_errors) + 1)
            for batch_index, batch_message in record_errors:
                out += _I32.pack(batch_index)
                _put_compact_string(out, batch_message)
                out.append(0)
            _put_compact_string(out, message)
            leader = part[7] if version >= 10 and len(part) > 7 else None
            if leader is not None and leader != (-1, -1):
                # CurrentLeader, written only when not its default (as Kafka):
                # one tag, 0, of 9 bytes (leader_id, leader_epoch, no tags).
                out += b"\x01\x00\x09"
                out += _LEADER.pack(*leader)
                out.append(0)
            else:
                out.append(0)
        out.append(0)
    out += _I32.pack(throttle_ms)
    if version >= 10 and node_endpoints:
        body = bytearray()
        _put_uvarint(body, len(node_endpoints) + 1)
        for node_id, host, port, rack in node_endpoints:
            body += _I32.pack(node_id)
            _put_compact_string(body, host)
            body += _I32.pack(port)
            _put_compact_string(body, rack)
            body.append(0)
        out += b"\x01\x00"  # one tag: 0, NodeEndpoints
        _put_uvarint(out, len(body))
        out += body
    else:
        out.append(0)
    out[0:4] = _I32.pack(len(out) - 4)
    return bytes(out)


def encode_produce_response(correlation_id, version, results, node_endpoints=(), throttle_ms=0):
    """The whole response frame (size prefix included). results: a list of
    (topic, [(index, error_code, base_offset, log_append_time_ms,
    log_start_offset, error_message[, record_errors[, current_leader]])])
    with record_errors [(batch_index, batch_index_error_message)] and
    current_leader (leader_id, leader_epoch) or None; error messages and
    record errors exist only from v8 on, current_leader and node_endpoints
    [(node_id, host, port, rack)] from v10 on; throttle_ms: a quota's
    throttle time."""
    if version >= FIRST_FLEXIBLE:
        return _encode_flexible_response(correlation_id, version, results, node_endpoints, throttle_ms)
    out = bytearray(_SIZE_CORR.pack(0, correlation_id))
    out += _I32.pack(len(results))
    for name, parts in results:
        b = name.encode()
        out += _I16.pack(len(b))
        out += b
        out += _I32.pack(len(parts))
        for part in parts:
            index, code, base, append_time, start, message = part[:6]
            out += _RESP_PART.pack(index, code, base, append_time)
            if version >= 5:
                out += _I64.pack(start)
            if version >= 8:
                record_errors = part[6] if len(part) > 6 else ()
                out += _I32.pack(len(record_errors))
                for batch_index, batch_message in record_errors:
                    out += _I32.pack(batch_index)
                    if batch_message is None:
                        out += _I16.pack(-1)
                    else:
                        bm = batch_message.encode()[:32767]
                        out += _I16.pack(len(bm))
                        out += bm
                if message is None:
                    out += _I16.pack(-1)
                else:
                    mb = message.encode()
                    out += _I16.pack(len(mb))
                    out += mb
    out += _I32.pack(throttle_ms)
    out[0:4] = _I32.pack(len(out) - 4)
    return bytes(out)


def encode_produce_request(correlation_id, version, client_id, acks, timeout_ms, partitions,
                           transactional_id=None):
    """A Produce v3-v8 (REQUEST_LAST_VERSION) request as a list of buffers for sendmsg (size prefix
    included), so the record batches go out without being copied into one
    frame. partitions: [(topic, index, records)], grouped by topic in the
    order given (a topic's partitions must be contiguous)."""
    head = bytearray(_HEAD.pack(0, version, correlation_id, -1 if client_id is None else 0))
    if client_id is not None:
        cb = client_id.encode()
        head[-2:] = _I16.pack(len(cb))
        head += cb
    if transactional_id is None:
        head += _I16.pack(-1)
    else:
        tb = transactional_id.encode()
        head += _I16.pack(len(tb))
        head += tb
    by_topic: list = []
    for topic, index, records in partitions:
        if by_topic and by_topic[-1][0] == topic:
            by_topic[-1][1].append((index, records))
        else:
            by_topic.append((topic, [(index, records)]))
    head += _ACKS.pack(acks, timeout_ms, len(by_topic))
    out = [None, head]
    cur = head
    for topic, parts in by_topic:
        tb = topic.encode()
        cur += _I16.pack(len(tb))
        cur += tb
        cur += _I32.pack(len(parts))
        for index, records in parts:
            n = -1 if records is None else len(records)
            cur += _PART.pack(index, n)
            if n > 0:
                out.append(records)
                cur = bytearray()
                out.append(cur)
    out[0] = _I32.pack(sum(len(b) for b in out[1:]))
    return out
