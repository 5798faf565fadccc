#!/usr/bin/env python3
"""Fuzz target: request decoding, every advertised API key and version.

Input: byte 0 picks the form.
  even: byte 1 (and 2) pick an advertised (api_key, version) pair (PAIRS); the
        target writes the request header for it and the rest is the body, so
        mutations go to the body of a request the broker would parse.
  odd:  the rest is a whole frame (size prefix excluded), header included, so
        the header itself is fuzzed (unknown keys and versions, header v0-v2).

Oracle, from what the broker does with a frame (broker/server.py _on_frame):
- decode_request raises nothing but ProtocolError (UnsupportedVersionError is
  one); anything else escapes the connection's handler as a traceback. An
  ApiVersions request with a readable header keeps .header (KIP-511 answer).
- a Produce request of a served version also goes through the hand-written
  decoder (protocol/produce.py), which raises nothing but ProtocolError,
  accepts exactly what the generated decoder accepts (but a client_id that is
  not UTF-8) and reads the same request from it.
- what decodes re-encodes, and those bytes decode and re-encode to the same
  bytes (a decoder and its encoder agree on the layout).
"""
from __future__ import annotations

import struct

try:
    from . import _harness
except ImportError:
    import _harness

with _harness.instrumenting(__name__ == "__main__"):
    from pylog.broker import api_versions as av
    from pylog.protocol.errors import ProtocolError, UnsupportedVersionError
    from pylog.protocol.framing import decode_request, request_header_version
    from pylog.protocol.messages import REQUESTS, RequestHeader
    from pylog.protocol.produce import decode_produce_request

Finding = _harness.Finding

# Every advertised (api_key, version), in a fixed order (the input indexes it).
PAIRS = [(k, v) for k in sorted(av.ADVERTISED) for v in range(av.ADVERTISED[k][0], av.ADVERTISED[k][1] + 1)]
CLIENT_ID = "fuzz"


def header_bytes(api_key: int, version: int, correlation_id: int = 7) -> bytes:
    out = bytearray()
    RequestHeader.encode_into(RequestHeader(api_key, version, correlation_id, CLIENT_ID),
                              request_header_version(api_key, version), out)
    return bytes(out)


_HEADERS = [header_bytes(k, v) for k, v in PAIRS]


def pick(data: bytes):
    """(frame, (api_key, version) or None) for an input."""
    if not data:
        return b"", None
    if data[0] & 1:
        return data[1:], None
    if len(data) < 3:
        return b"", None
    i = struct.unpack_from(">H", data, 1)[0] % len(PAIRS)
    return _HEADERS[i] + data[3:], PAIRS[i]


def body_input(api_key: int, version: int, body: bytes) -> bytes:
    """The input that gives this request body under the synthesized header."""
    return bytes([0]) + struct.pack(">H", PAIRS.index((api_key, version))) + body


def frame_input(frame: bytes) -> bytes:
    return b"\x01" + frame


def _check_produce(frame, generated):
    try:
        fast = decode_produce_request(memoryview(frame))
    except ProtocolError as e:
        if generated is not None:
            raise Finding(f"Produce: the hand-written decoder refuses what the generated one reads: {e}")
        return
    if generated is None:
        try:
            RequestHeader.decode_from(memoryview(frame), 0, 1)
        except ProtocolError:
            return  # a client_id that is not UTF-8: the fast path reads it with replacement
        raise Finding("Produce: the hand-written decoder reads what the generated one refuses")
    header, body = generated
    corr, version, _client, txn, acks, timeout_ms, topics = fast
    same = (corr == header.correlation_id and version == header.request_api_version
            and txn == body.transactional_id and acks == body.acks and timeout_ms == body.timeout_ms
            and topics == [(t.name, [(p.index, p.records) for p in t.partition_data])
                           for t in body.topic_data])
    if not same:
        raise Finding(f"Produce v{version}: the hand-written and generated decoders disagree")


def test_one(data: bytes):
    frame, _ = pick(data)
    generated = None
    try:
        generated = decode_request(memoryview(frame))
    except UnsupportedVersionError as e:
        if len(frame) >= 8 and frame[:2] == b"\x00\x12" and e.header is None:
            # A readable ApiVersions header must be kept for the KIP-511 reply
            # (unless the header's client_id itself is malformed).
            try:
                RequestHeader.decode_from(memoryview(frame), 0, 1)
            except ProtocolError:
                pass
            else:
                raise Finding("UnsupportedVersionError for ApiVersions without .header") from e
    except ProtocolError:
        pass
    if frame[:2] == b"\x00\x00" and len(frame) >= 4 and \
            av.is_served(av.PRODUCE, struct.unpack_from(">h", frame, 2)[0]):
        _check_produce(frame, generated)
    if generated is None:
        return
    header, body = generated
    cls = REQUESTS[header.request_api_key]
    version = header.request_api_version
    # Compared as bytes, not objects: a reader takes tagged fields in any order
    # (as Kafka's does) and the writer sorts them, so encode(x) is canonical.
    try:
        once = cls.encode(body, version)
        twice = cls.encode(cls.decode(once, version), version)
    except ProtocolError as e:
        raise Finding(f"{cls.__name__} v{version}: a decoded request does not re-encode: {e}") from e
    if once != twice:
        raise Finding(f"{cls.__name__} v{version}: encode(decode(encode(x))) != encode(x)\n{body!r}")

if __name__ == "__main__":
    _harness.run(test_one)
