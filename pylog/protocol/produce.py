"""Hand-written codecs for the broker's hottest request: Produce v3-v8.

The generated codecs (messages/) build an object per struct; a produce
request of one partition is decoded and answered here with a few struct calls
instead, which halves the broker's Python time per request. The generated
classes stay the reference: tests/protocol/test_produce_codec.py checks that
both agree on every field and byte, for random requests.

Only non-flexible versions (3-8) are handled: request header v1, response
header v0; v9+ is flexible and goes through the generated codecs.
"""
from __future__ import annotations

import struct

from .errors import ProtocolError

__all__ = ["FIRST_VERSION", "LAST_VERSION", "decode_produce_request", "encode_produce_request",
           "encode_produce_response"]

FIRST_VERSION, LAST_VERSION = 3, 8

_HEAD = struct.Struct(">hhih")       # api_key, api_version, correlation_id, client_id length
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS = struct.Struct(">hii")        # acks, timeout_ms, topic count
_PART = struct.Struct(">ii")         # partition index, records length
_RESP_PART = struct.Struct(">ihqq")  # index, error_code, base_offset, log_append_time_ms
_I64 = struct.Struct(">q")
_SIZE_CORR = struct.Struct(">ii")


def _string(buf, pos, end, what):
    if pos + 2 > end:
        raise ProtocolError(f"Produce request cut short in {what} at offset {pos}")
    n = _I16.unpack_from(buf, pos)[0]
    pos += 2
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
    if pos != end:
        raise ProtocolError(f"Produce v{version}: {end - pos} trailing byte(s) after offset {pos}")
    return correlation_id, version, client_id, transactional_id, acks, timeout_ms, topics


def encode_produce_response(correlation_id, version, results):
    """The whole response frame (size prefix included). results: a list of
    (topic, [(index, error_code, base_offset, log_append_time_ms,
    log_start_offset, error_message[, record_errors])]) with record_errors
    [(batch_index, batch_index_error_message)]; error messages and record
    errors exist only from v8 on."""
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
    out += _I32.pack(0)  # throttle_time_ms
    out[0:4] = _I32.pack(len(out) - 4)
    return bytes(out)


def encode_produce_request(correlation_id, version, client_id, acks, timeout_ms, partitions,
                           transactional_id=None):
    """A Produce v3-v8 request as a list of buffers for sendmsg (size prefix
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
