"""Frames and headers: which header version each request/response uses, the
size prefix, and the ApiVersions exceptions of KIP-511."""

import pytest

from pylog.protocol import framing
from pylog.protocol import messages as m
from pylog.protocol.errors import ProtocolError, UnsupportedVersionError


@pytest.mark.parametrize("api_key, version, request_header, response_header", [
    (18, 0, 1, 0),
    (18, 3, 2, 0),    # flexible, but ApiVersions responses always use header v0
    (18, 4, 2, 0),
    (18, 99, 2, 0),   # unknown future version: still readable
    (1, 11, 1, 0),
    (1, 12, 2, 1),
    (0, 8, 1, 0),
    (0, 9, 2, 1),
    (7, 0, 0, 0),     # ControlledShutdown v0: the only request header v0
    (7, 1, 1, 0),
    (17, 1, 1, 0),    # SaslHandshake: never flexible
    (999, 0, 1, 0),   # unknown api key
])
def test_header_versions(api_key, version, request_header, response_header):
    assert framing.request_header_version(api_key, version) == request_header
    assert framing.response_header_version(api_key, version) == response_header


def test_api_versions_v3_request_frame():
    body = m.ApiVersionsRequest(client_software_name="librdkafka", client_software_version="2.3.0")
    frame = framing.encode_request(1, 18, 3, body, client_id="rdkafka")
    expected = bytes.fromhex(
        "00000024"                          # size 36 = 18 header + 18 body
        "0012" "0003" "00000001"            # api key 18, version 3, correlation id 1
        "0007" + b"rdkafka".hex() +         # client_id: classic int16 length even in v2
        "00"                                # header tagged fields
        "0b" + b"librdkafka".hex() + "06" + b"2.3.0".hex() + "00")
    assert frame == expected
    header, decoded = framing.decode_request(frame[4:])
    assert (header.request_api_key, header.request_api_version, header.correlation_id,
            header.client_id) == (18, 3, 1, "rdkafka")
    assert decoded == body


def test_api_versions_v3_response_uses_header_v0():
    body = m.ApiVersionsResponse(api_keys=[
        m.ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4)])
    frame = framing.encode_response(7, 18, 3, body)
    assert frame == bytes.fromhex(
        "00000013"          # size 19
        "00000007"          # correlation id, and no tagged-field byte after it
        "0000" "02" "0012" "0000" "0004" "00" "00000000" "00")
    header, decoded = framing.decode_response(frame[4:], 18, 3)
    assert header.correlation_id == 7 and decoded == body


def test_flexible_response_has_header_tags():
    frame = framing.encode_response(5, 1, 12, m.FetchResponse())
    assert frame[4:9] == bytes.fromhex("00000005" "00")
    assert framing.response_correlation_id(frame[4:]) == 5
    header, body = framing.decode_response(frame[4:], 1, 12)
    assert header.correlation_id == 5 and body == m.FetchResponse()


def test_controlled_shutdown_v0_header_has_no_client_id():
    frame = framing.encode_request(9, 7, 0, m.ControlledShutdownRequest(broker_id=1), client_id="x")
    assert frame == bytes.fromhex("0000000c" "0007" "0000" "00000009" "00000001")
    header, body = framing.decode_request(frame[4:])
    assert header.client_id is None and body.broker_id == 1


def test_request_round_trip_keeps_records_as_a_view():
    body = m.ProduceRequest(acks=1, timeout_ms=100, topic_data=[
        m.ProduceRequest.TopicProduceData(name="t", partition_data=[
            m.ProduceRequest.PartitionProduceData(index=0, records=b"batch")])])
    frame = framing.encode_request(3, 0, 7, body, client_id=None)
    payload = frame[4:]
    assert int.from_bytes(frame[:4], "big") == len(payload)
    header, decoded = framing.decode_request(payload)
    assert header.client_id is None and decoded == body
    records = decoded.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and records.obj is payload


def test_unsupported_api_versions_request_keeps_its_header():
    # A client newer than this build: the body must not be parsed, but the
    # broker needs the correlation id to send a v0 UNSUPPORTED_VERSION reply.
    frame = bytes.fromhex("0012" "0063" "0000002a" "0001" "63" "00") + b"\x07future"
    with pytest.raises(UnsupportedVersionError) as info:
        framing.decode_request(frame)
    assert info.value.error_code == 35
    assert info.value.header.correlation_id == 42 and info.value.header.client_id == "c"
    reply = framing.encode_response(42, 18, 0, m.ApiVersionsResponse(error_code=35, api_keys=[
        m.ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4)]))
    assert reply == bytes.fromhex("00000010" "0000002a" "0023" "00000001" "0012" "0000" "0004")


def test_unknown_api_key():
    with pytest.raises(UnsupportedVersionError, match="unknown api key 999") as info:
        framing.decode_request(bytes.fromhex("03e7" "0000" "00000001" "ffff"))
    assert info.value.header.correlation_id == 1
    with pytest.raises(UnsupportedVersionError):
        framing.encode_response(1, 999, 0, b"")


def test_malformed_request_body():
    L = m.ListOffsetsRequest
    frame = framing.encode_request(4, 2, 1, L(replica_id=-1, topics=[]))[4:]
    with pytest.raises(ProtocolError) as info:
        framing.decode_request(frame[:-1])
    assert info.value.header.correlation_id == 4


@pytest.mark.parametrize("api_key, version, body", [
    (3, 1, m.MetadataRequest(topics=[])),
    (3, 12, m.MetadataRequest(topics=None)),
    (2, 1, m.ListOffsetsRequest(replica_id=-1, topics=[])),
    (18, 3, m.ApiVersionsRequest(client_software_name="x", client_software_version="1")),
    (1, 12, m.FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=1, topics=[])),
])
def test_trailing_bytes_are_ignored_as_kafka_ignores_them(api_key, version, body):
    """Kafka's generated readers stop after a version's last field and its
    parser never checks what remains (librdkafka #5049 relies on it for
    Metadata); a body cut short is still an error."""
    frame = framing.encode_request(4, api_key, version, body)[4:]
    header, req = framing.decode_request(frame + b"\x00\x01junk")
    assert header.correlation_id == 4 and type(req) is type(body)
    assert framing.decode_request(frame)[1] == req
    with pytest.raises(ProtocolError) as info:
        framing.decode_request(frame[:-1])
    assert info.value.header.correlation_id == 4


@pytest.mark.parametrize("frame", [
    "", "00", "0012", "00120003", "0012000300000001", "00120003000000010005"])
def test_truncated_request_header(frame):
    with pytest.raises(ProtocolError):
        framing.decode_request(bytes.fromhex(frame))


def test_pre_encoded_body_passes_through():
    body = m.MetadataResponse.encode(m.MetadataResponse(), 1)
    expected = framing.encode_response(1, 3, 1, m.MetadataResponse())
    assert framing.encode_response(1, 3, 1, body) == expected


def test_wrong_body_type():
    with pytest.raises(ProtocolError, match="got a MetadataRequest"):
        framing.encode_response(1, 3, 1, m.MetadataRequest())
