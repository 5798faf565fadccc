"""Request-decoding findings of fuzz/fuzz_requests.py, one test each (the
inputs are also kept under fuzz/findings/ and replayed by tests/fuzz)."""
from __future__ import annotations

import struct

import pytest

from pylog.protocol.framing import decode_request
from pylog.protocol.messages import MetadataRequest
from pylog.protocol.produce import decode_produce_request


def produce_frame(version, txn_len):
    # header v1 (client_id "fuzz"), transactional_id length txn_len and no
    # bytes, acks -1, timeout 1000, no topics.
    return (struct.pack(">hhih", 0, version, 7, 4) + b"fuzz" + struct.pack(">h", txn_len)
            + struct.pack(">hii", -1, 1000, 0))


@pytest.mark.parametrize("version", [3, 5, 7, 8])
@pytest.mark.parametrize("txn_len", [-2, -3841, -32768])
def test_produce_decoders_agree_on_a_negative_transactional_id_length(version, txn_len):
    # The hand-written decoder (the broker's path for v3+) read any negative
    # length as null, the generated one refused all but -1; Kafka reads null.
    frame = produce_frame(version, txn_len)
    fast = decode_produce_request(memoryview(frame))
    header, body = decode_request(memoryview(frame))
    assert fast[3] is None and body.transactional_id is None
    assert (body.acks, body.timeout_ms, body.topic_data) == (fast[4], fast[5], []) == (-1, 1000, [])


def test_nullable_array_with_any_negative_count_is_null():
    # Metadata v1+: topics null = all topics, as Kafka reads a count < 0.
    for count in (-1, -2, -(1 << 31)):
        frame = struct.pack(">hhih", 3, 5, 1, -1) + struct.pack(">i", count) + b"\x00"
        header, body = decode_request(memoryview(frame))
        assert type(body) is MetadataRequest and body.topics is None
