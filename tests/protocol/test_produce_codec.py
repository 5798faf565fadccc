"""The hand-written Produce codec (pylog/protocol/produce.py) against the
generated reference codecs: same fields from the same request bytes, same
response bytes from the same values, and ProtocolError (never a crash or a
wrong answer) for every cut of a valid request."""
from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from pylog.protocol import messages as m
from pylog.protocol.errors import ProtocolError
from pylog.protocol.framing import decode_request, encode_request, encode_response
from pylog.protocol.produce import (
    FIRST_VERSION, LAST_VERSION, decode_produce_request, encode_produce_response,
)

P = m.ProduceRequest
R = m.ProduceResponse

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
records = st.one_of(st.none(), st.binary(max_size=64))
int16 = st.integers(-(1 << 15), (1 << 15) - 1)
int32 = st.integers(-(1 << 31), (1 << 31) - 1)
int64 = st.integers(-(1 << 63), (1 << 63) - 1)

requests = st.builds(
    lambda txn, acks, timeout, topics: P(transactional_id=txn, acks=acks, timeout_ms=timeout, topic_data=[
        P.TopicProduceData(name=n, partition_data=[P.PartitionProduceData(index=i, records=r) for i, r in parts])
        for n, parts in topics]),
    st.one_of(st.none(), names), int16, int32,
    st.lists(st.tuples(names, st.lists(st.tuples(int32, records), max_size=3)), max_size=3))


@settings(max_examples=300, deadline=None)
@given(requests, st.integers(FIRST_VERSION, LAST_VERSION), int32, st.one_of(st.none(), names))
def test_request_decodes_as_the_generated_codec_does(req, version, corr, client_id):
    frame = encode_request(corr, 0, version, req, client_id)[4:]
    header, ref = decode_request(frame)
    got = decode_produce_request(memoryview(frame))
    assert got[:6] == (header.correlation_id, version, header.client_id, ref.transactional_id,
                       ref.acks, ref.timeout_ms)
    assert [(n, [(i, None if r is None else bytes(r)) for i, r in parts]) for n, parts in got[6]] == \
        [(t.name, [(p.index, None if p.records is None else bytes(p.records)) for p in t.partition_data])
         for t in ref.topic_data]


@settings(max_examples=100, deadline=None)
@given(requests, st.integers(FIRST_VERSION, LAST_VERSION))
def test_every_cut_of_a_request_is_a_protocol_error(req, version):
    frame = encode_request(7, 0, version, req, "c")[4:]
    for cut in range(len(frame)):
        with pytest.raises(ProtocolError):
            decode_produce_request(memoryview(frame[:cut]))
    # A byte after the last field is ignored, as Kafka ignores it.
    assert decode_produce_request(memoryview(frame + b"\0")) == decode_produce_request(memoryview(frame))


results = st.lists(st.tuples(names, st.lists(
    st.tuples(int32, int16, int64, int64, int64, st.one_of(st.none(), names)), max_size=3)), max_size=3)


@settings(max_examples=300, deadline=None)
@given(results, st.integers(FIRST_VERSION, LAST_VERSION), int32)
def test_response_bytes_equal_the_generated_codec(res, version, corr):
    ref = R(throttle_time_ms=0, responses=[R.TopicProduceResponse(name=n, partition_responses=[
        R.PartitionProduceResponse(index=i, error_code=c, base_offset=b, log_append_time_ms=t,
                                   log_start_offset=s, error_message=msg)
        for i, c, b, t, s, msg in parts]) for n, parts in res])
    assert encode_produce_response(corr, version, res) == encode_response(corr, 0, version, ref)


leaders = st.one_of(st.none(), st.tuples(int32, int32))
endpoints = st.lists(st.tuples(int32, names, int32, st.one_of(st.none(), names)), max_size=3)
record_errors = st.lists(st.tuples(int32, st.one_of(st.none(), names)), max_size=2)
flexible_results = st.lists(st.tuples(names, st.lists(
    st.tuples(int32, int16, int64, int64, int64, st.one_of(st.none(), names), record_errors, leaders),
    max_size=3)), max_size=3)


@settings(max_examples=300, deadline=None)
@given(flexible_results, endpoints, st.integers(8, LAST_VERSION), int32)
def test_v8_to_v11_response_bytes_equal_the_generated_codec(res, eps, version, corr):
    """Record errors (v8+), the flexible encoding (v9+), and KIP-951's tagged
    CurrentLeader and NodeEndpoints (v10+: written only when not their
    default, as Kafka writes tagged fields)."""
    ref = R(throttle_time_ms=0, node_endpoints=[R.NodeEndpoint(node_id=i, host=h, port=p, rack=r)
                                                for i, h, p, r in eps],
            responses=[R.TopicProduceResponse(name=n, partition_responses=[
                R.PartitionProduceResponse(
                    index=i, error_code=c, base_offset=b, log_append_time_ms=t, log_start_offset=s,
                    error_message=msg, record_errors=[R.BatchIndexAndErrorMessage(batch_index=bi,
                                                                                  batch_index_error_message=bm)
                                                      for bi, bm in errs],
                    current_leader=R.LeaderIdAndEpoch(*(lead or (-1, -1))))
                for i, c, b, t, s, msg, errs, lead in parts]) for n, parts in res])
    assert encode_produce_response(corr, version, res, eps) == encode_response(corr, 0, version, ref)


def test_flexible_request_tagged_fields_are_skipped():
    """A v9+ request whose structs carry unknown tagged fields (a newer
    client's) decodes to the same fields; Kafka skips tags it does not know."""
    from pylog.protocol.produce import FIRST_FLEXIBLE
    req = P(transactional_id="tx", acks=-1, timeout_ms=30000, topic_data=[
        P.TopicProduceData(name="t", partition_data=[P.PartitionProduceData(index=2, records=b"abc")])])
    req.topic_data[0].partition_data[0]._unknown_tagged_fields = [(7, b"\x01\x02")]
    req.topic_data[0]._unknown_tagged_fields = [(3, b"")]
    req._unknown_tagged_fields = [(9, b"\xff" * 5)]
    frame = encode_request(11, 0, FIRST_FLEXIBLE, req, "c")[4:]
    got = decode_produce_request(memoryview(frame))
    assert got[:6] == (11, FIRST_FLEXIBLE, "c", "tx", -1, 30000)
    assert [(n, [(i, bytes(r)) for i, r in parts]) for n, parts in got[6]] == [("t", [(2, b"abc")])]


@pytest.mark.parametrize("version", [3, 8, 9, 11])
def test_trailing_bytes_are_ignored_as_the_generated_decoder_ignores_them(version):
    """Bytes after the last field are ignored by Kafka's readers and by the
    generated decoder (framing.decode_request); the hand-written Produce
    decoder reads the same request from the same frame (the requests fuzzer
    found it refusing one)."""
    req = P(transactional_id=None, acks=1, timeout_ms=1000, topic_data=[
        P.TopicProduceData(name="t", partition_data=[P.PartitionProduceData(index=0, records=b"xyz")])])
    frame = encode_request(5, 0, version, req, "c")[4:] + b"\x00" * 46
    got = decode_produce_request(memoryview(frame))
    assert got[:6] == (5, version, "c", None, 1, 1000)
    assert [(n, [(i, bytes(r)) for i, r in parts]) for n, parts in got[6]] == [("t", [(0, b"xyz")])]


def test_a_varint_over_32_bits_is_refused_as_the_generated_decoder_refuses_it():
    # Found by the requests fuzzer: a v9 partition's tagged-field tag of five
    # bytes whose value passes 2**32 (a5 a0 b3 be 32). Both decoders refuse it.
    frame = bytes.fromhex("0000000900000007000466757a7a0000ffff000075300207676f6c64656e0200000000000002"
                          "a5a0b3be3200000000656e000000")
    with pytest.raises(ProtocolError):
        decode_request(memoryview(frame))
    with pytest.raises(ProtocolError, match="over 32 bits"):
        decode_produce_request(memoryview(frame))
