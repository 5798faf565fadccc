"""Generated message classes: every class at every valid version round-trips,
rejects truncated and corrupted input with ProtocolError, and matches byte
layouts derived by hand from the Kafka protocol guide."""

import itertools
import random
import timeit
from pathlib import Path
from uuid import UUID

import pytest

from pylog.protocol import codegen
from pylog.protocol import messages as m
from pylog.protocol.errors import ProtocolError, UnsupportedVersionError
from pylog.protocol.schema import fields_in_version, struct_type, version_in

ALL = ([m.RequestHeader, m.ResponseHeader] + list(m.REQUESTS.values())
       + list(m.RESPONSES.values()) + list(m.DATA.values()))
CASES = [(cls, v) for cls in ALL
         for v in range(cls.VALID_VERSIONS[0], cls.VALID_VERSIONS[1] + 1)]
CASE_IDS = [f"{cls.__name__}-v{v}" for cls, v in CASES]

SCHEMAS = codegen.DEFAULT_SCHEMAS  # beside the repository, or beside a folder above it


# --- building objects by walking the schema ------------------------------------

class Filler:
    """Builds an object with a non-default value in every field present in
    `version` (fields of other versions keep their defaults, since a decoder
    would give them those), or with None in every field that may be null."""

    def __init__(self, message, version, nulls=False):
        self.message, self.version, self.nulls = message, version, nulls
        self.counter = itertools.count(1)

    def build(self, cls):
        obj = cls()
        for f in fields_in_version(cls, self.version):
            nullable = f.nullable_versions and version_in(f.nullable_versions, self.version)
            if self.nulls:
                if nullable:
                    setattr(obj, f.name, None)
                elif struct_type(f):
                    # Reach the nullable fields of nested structs too.
                    nested = self.build(getattr(self.message, struct_type(f)))
                    setattr(obj, f.name, [nested] if f.type.startswith("[]") else nested)
                continue
            setattr(obj, f.name, self.value(f))
        return obj

    def value(self, f):
        if f.type.startswith("[]"):
            elem = f.type[2:]
            return [self.scalar(elem, None) for _ in range(2)]
        return self.scalar(f.type, f.default)

    def scalar(self, type_, default):
        i = next(self.counter)
        if struct_type_name(type_):
            return self.build(getattr(self.message, type_))
        value = {
            "int8": -(i % 100) - 2,
            "int16": -300 - i,
            "int32": -70000 - i,
            "int64": -(1 << 40) - i,
            "uint16": 40000 + i,      # above int16's range: checks it is unsigned
            "float64": 0.5 + i,
            "bool": True,
            "string": f"s{i}-é",      # non-ASCII: byte length != character count
            "bytes": bytes([i % 256, 0, 255]),
            "records": b"records-" + bytes([i % 256]),
            "uuid": UUID(int=(i << 64) | i),
        }[type_]
        if value == default:
            value = False if type_ == "bool" else value + 1
        return value


def struct_type_name(type_):
    return type_[:1].isupper()


# --- round trips ---------------------------------------------------------------

@pytest.mark.parametrize("cls, version", CASES, ids=CASE_IDS)
def test_round_trip_filled(cls, version):
    obj = Filler(cls, version).build(cls)
    data = cls.encode(obj, version)
    decoded = cls.decode(data, version)
    assert decoded == obj
    assert cls.encode(decoded, version) == data


@pytest.mark.parametrize("cls, version", CASES, ids=CASE_IDS)
def test_round_trip_nulls_and_defaults(cls, version):
    for obj in (Filler(cls, version, nulls=True).build(cls), cls()):
        try:
            data = cls.encode(obj, version)
        except ProtocolError:
            # Some defaults are null in versions where the field is not
            # nullable (a null default covering later versions only).
            assert obj == cls()
            continue
        decoded = cls.decode(data, version)
        assert decoded == obj
        assert cls.encode(decoded, version) == data


FLEXIBLE = [pytest.param(cls, v, id=f"{cls.__name__}-v{v}")
            for cls, v in CASES if cls.is_flexible(v)]


@pytest.mark.parametrize("cls, version", FLEXIBLE)
def test_unknown_tagged_fields_are_kept(cls, version):
    obj = Filler(cls, version).build(cls)
    obj._unknown_tagged_fields = [(9000, b"future"), (9001, b"")]
    data = cls.encode(obj, version)
    decoded = cls.decode(data, version)
    assert decoded._unknown_tagged_fields == [(9000, b"future"), (9001, b"")]
    assert decoded == obj
    assert cls.encode(decoded, version) == data


# --- hostile input -------------------------------------------------------------

def cut_points(n):
    if n <= 160:
        return range(n)
    return sorted(set(range(0, n, max(1, n // 120))) | set(range(n - 24, n)))


@pytest.mark.parametrize("cls, version", CASES, ids=CASE_IDS)
def test_truncated_input_raises_protocol_error(cls, version):
    data = cls.encode(Filler(cls, version).build(cls), version)
    for cut in cut_points(len(data)):
        with pytest.raises(ProtocolError):
            cls.decode(data[:cut], version)
    with pytest.raises(ProtocolError, match="trailing"):
        cls.decode(data + b"\x00", version)


@pytest.mark.parametrize("cls, version", CASES, ids=CASE_IDS)
def test_corrupted_input_raises_only_protocol_error(cls, version):
    data = cls.encode(Filler(cls, version).build(cls), version)
    rng = random.Random(f"{cls.__name__}{version}")
    for _ in range(40):
        corrupt = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            if corrupt:
                corrupt[rng.randrange(len(corrupt))] = rng.randrange(256)
        try:
            cls.decode(bytes(corrupt), version)
        except ProtocolError:
            pass
    for _ in range(10):
        try:
            cls.decode(bytes(rng.randrange(256) for _ in range(rng.randrange(40))), version)
        except ProtocolError:
            pass


def test_unsupported_version():
    with pytest.raises(UnsupportedVersionError):
        m.ProduceRequest.decode(b"", 99)
    with pytest.raises(UnsupportedVersionError):
        m.ProduceRequest.encode(m.ProduceRequest(), -1)


def test_encode_errors_name_the_field():
    bad = m.ProduceRequest(topic_data=[m.ProduceRequest.TopicProduceData(
        name="t", partition_data=[m.ProduceRequest.PartitionProduceData(index=2**31)])])
    with pytest.raises(ProtocolError, match=r"topic_data\[0\]\.partition_data\[0\]\.index"):
        m.ProduceRequest.encode(bad, 3)
    with pytest.raises(ProtocolError, match="name: None in a non-nullable field"):
        topic = m.MetadataRequest.MetadataRequestTopic(name=None)
        m.MetadataRequest.encode(m.MetadataRequest(topics=[topic]), 9)
    with pytest.raises(ProtocolError, match="got a FetchRequest"):
        m.ProduceRequest.encode(m.FetchRequest(), 3)


# --- class surface -------------------------------------------------------------

def test_lookups():
    assert m.REQUESTS[0] is m.ProduceRequest and m.RESPONSES[1] is m.FetchResponse
    assert m.ApiVersionsRequest.API_KEY == 18
    assert m.ApiVersionsResponse.VALID_VERSIONS == (0, 4)
    assert m.ApiVersionsResponse.FLEXIBLE_MIN == 3
    assert m.SaslHandshakeRequest.FLEXIBLE_MIN is None
    assert m.FetchResponse.FLEXIBLE_MIN == 12
    assert all(m.REQUESTS[k].API_KEY == k == m.RESPONSES[k].API_KEY for k in m.REQUESTS)
    assert set(m.REQUESTS) == set(m.RESPONSES)


def test_defaults_follow_the_schema():
    p = m.FetchResponse.PartitionData()
    assert (p.preferred_read_replica, p.last_stable_offset, p.log_start_offset) == (-1, -1, -1)
    assert p.records is None and p.aborted_transactions is None
    assert p.diverging_epoch == m.FetchResponse.EpochEndOffset(epoch=-1, end_offset=-1)
    assert m.ProduceRequest().transactional_id is None
    assert m.MetadataRequest().topics == []          # nullable only from v1: not None
    assert m.MetadataRequest().allow_auto_topic_creation is True
    assert m.FetchRequest().max_bytes == 0x7FFFFFFF
    assert m.FetchRequest().replica_id == -1
    assert m.FetchResponse.FetchableTopicResponse().topic_id == UUID(int=0)
    # Each object gets its own lists and structs.
    a, b = m.FetchResponse(), m.FetchResponse()
    a.responses.append(1)
    assert b.responses == []
    assert m.FetchResponse.PartitionData().current_leader is not p.current_leader


def test_snake_case_names():
    assert m.ProduceRequest.__slots__ == ("transactional_id", "acks", "timeout_ms", "topic_data")
    assert "partition_index" in m.FetchResponse.PartitionData.__slots__
    assert "k_raft_version_feature" in m.UpdateRaftVoterRequest.__slots__


def test_repr_and_equality():
    r = m.FetchResponse.PartitionData(records=memoryview(b"abc"))
    assert "records=<3 bytes>" in repr(r)
    assert r == m.FetchResponse.PartitionData(records=b"abc")
    assert r != m.FetchResponse.PartitionData()
    assert r != m.ProduceResponse.PartitionProduceResponse()


# --- byte layouts derived by hand ----------------------------------------------

def test_api_versions_request_v3():
    req = m.ApiVersionsRequest(client_software_name="librdkafka", client_software_version="2.3.0")
    expected = bytes.fromhex(
        "0b" + b"librdkafka".hex()   # compact string: uvarint(10 + 1)
        + "06" + b"2.3.0".hex()      # compact string: uvarint(5 + 1)
        + "00")                      # no tagged fields
    assert m.ApiVersionsRequest.encode(req, 3) == expected
    assert m.ApiVersionsRequest.decode(expected, 3) == req
    assert m.ApiVersionsRequest.encode(req, 0) == b""  # v0-v2 have no fields


def test_metadata_request_v1_null_topics():
    assert m.MetadataRequest.encode(m.MetadataRequest(topics=None), 1) == b"\xff\xff\xff\xff"
    assert m.MetadataRequest.decode(b"\xff\xff\xff\xff", 1).topics is None
    # v0 has no null: an empty array means all topics.
    assert m.MetadataRequest.encode(m.MetadataRequest(topics=[]), 0) == b"\x00\x00\x00\x00"
    with pytest.raises(ProtocolError, match="non-nullable"):
        m.MetadataRequest.encode(m.MetadataRequest(topics=None), 0)
    with pytest.raises(ProtocolError, match="non-nullable"):
        m.MetadataRequest.decode(b"\xff\xff\xff\xff", 0)
    req = m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name="a")],
                            allow_auto_topic_creation=False)
    assert m.MetadataRequest.encode(req, 4).hex() == "00000001" "000161" "00"


def test_produce_request_v3_with_records():
    records = bytes(range(70))
    req = m.ProduceRequest(
        transactional_id=None, acks=-1, timeout_ms=30000,
        topic_data=[m.ProduceRequest.TopicProduceData(name="t", partition_data=[
            m.ProduceRequest.PartitionProduceData(index=0, records=records)])])
    expected = bytes.fromhex(
        "ffff"          # transactional_id: null string
        "ffff"          # acks -1
        "00007530"      # timeout_ms 30000
        "00000001"      # one topic
        "000174"        # name "t"
        "00000001"      # one partition
        "00000000"      # index 0
        "00000046"      # records: int32 length 70
    ) + records
    assert m.ProduceRequest.encode(req, 3) == expected
    decoded = m.ProduceRequest.decode(expected, 3)
    assert decoded == req
    view = decoded.topic_data[0].partition_data[0].records
    assert isinstance(view, memoryview) and view.obj is expected  # not copied


def test_produce_request_v9_is_compact():
    req = m.ProduceRequest(transactional_id="tx", acks=1, timeout_ms=1, topic_data=[
        m.ProduceRequest.TopicProduceData(name="t", partition_data=[
            m.ProduceRequest.PartitionProduceData(index=1, records=None)])])
    assert m.ProduceRequest.encode(req, 9).hex() == (
        "03" + b"tx".hex() + "0001" "00000001"
        "02" "0274" "02" "00000001" "00" "00"   # topic: partitions, records null, tags
        "00"                                    # topic tags
        "00")                                   # request tags


def test_api_versions_response_v3_tagged_fields():
    resp = m.ApiVersionsResponse(error_code=0, api_keys=[
        m.ApiVersionsResponse.ApiVersion(api_key=18, min_version=0, max_version=4)])
    body = bytes.fromhex("0000" "02" "0012" "0000" "0004" "00" "00000000")
    # Defaults (FinalizedFeaturesEpoch -1, empty feature lists) are not written.
    assert m.ApiVersionsResponse.encode(resp, 3) == body + b"\x00"
    resp.finalized_features_epoch = 5
    tagged = bytes.fromhex("01" "01" "08" "0000000000000005")
    assert m.ApiVersionsResponse.encode(resp, 3) == body + tagged
    assert m.ApiVersionsResponse.decode(body + tagged, 3) == resp


def test_fetch_response_v12_tagged_struct():
    part = m.FetchResponse.PartitionData(partition_index=0, high_watermark=10, records=b"")
    part.current_leader = m.FetchResponse.LeaderIdAndEpoch(leader_id=1, leader_epoch=2)
    topic = m.FetchResponse.FetchableTopicResponse(topic="t", partitions=[part])
    resp = m.FetchResponse(responses=[topic])
    data = m.FetchResponse.encode(resp, 12)
    tail = bytes.fromhex(
        "00"                # aborted_transactions: null
        "ffffffff"          # preferred_read_replica -1
        "01"                # records: empty compact
        "01" "01" "09"      # one tagged field, tag 1 (CurrentLeader), 9 bytes
        "00000001" "00000002" "00"
        "00" "00")          # topic tags, response tags
    assert data.endswith(tail)
    assert m.FetchResponse.decode(data, 12) == resp


def test_nullable_struct_marker():
    cursor = m.DescribeTopicPartitionsRequest.Cursor(topic_name="t", partition_index=3)
    req = m.DescribeTopicPartitionsRequest(topics=[], response_partition_limit=1, cursor=cursor)
    data = m.DescribeTopicPartitionsRequest.encode(req, 0)
    assert data.hex() == "01" "00000001" "01" "0274" "00000003" "00" "00"
    req.cursor = None
    assert m.DescribeTopicPartitionsRequest.encode(req, 0).hex() == "01" "00000001" "ff" "00"
    assert m.DescribeTopicPartitionsRequest.decode(bytes.fromhex("0100000001ff00"), 0) == req


def test_request_header_client_id_stays_classic_in_v2():
    h = m.RequestHeader(request_api_key=18, request_api_version=3, correlation_id=1, client_id="c")
    assert m.RequestHeader.encode(h, 2).hex() == "0012" "0003" "00000001" "000163" "00"
    assert m.RequestHeader.encode(h, 0).hex() == "0012" "0003" "00000001"


# --- the committed file is the generator's output --------------------------------

@pytest.mark.skipif(not SCHEMAS.is_dir(), reason="shared/kafka-protocol not present")
def test_messages_package_is_up_to_date():
    package = Path(m.__file__).parent
    committed = {p.name: p.read_text(encoding="utf-8") for p in package.glob("*.py")}
    generated = codegen.generate_package(SCHEMAS)
    assert sorted(committed) == sorted(generated), (
        "pylog/protocol/messages/ has other modules than the generator writes: "
        "run `python -m pylog.protocol.codegen`")
    stale = [name for name in generated if generated[name] != committed[name]]
    assert not stale, f"pylog/protocol/messages/{stale[0]} is stale: run `python -m pylog.protocol.codegen`"


GROUP_SCHEMAS = SCHEMAS.parent / "group-coordinator"
GROUP_RECORDS = ["OffsetCommitKey", "OffsetCommitValue", "GroupMetadataKey", "GroupMetadataValue"]


@pytest.mark.skipif(not GROUP_SCHEMAS.is_dir(), reason="shared/kafka-protocol not present")
def test_group_records_py_is_up_to_date():
    from pylog.protocol import group_records
    committed = Path(group_records.__file__).read_text(encoding="utf-8")
    assert codegen.generate(GROUP_SCHEMAS, GROUP_RECORDS) == committed, (
        "pylog/protocol/group_records.py is stale: run `python -m pylog.protocol.codegen --schemas "
        "../shared/kafka-protocol/group-coordinator --only " + ",".join(GROUP_RECORDS)
        + " --out pylog/protocol/group_records.py`")


# --- speed sanity (printed, not asserted) ----------------------------------------

def test_fetch_response_v11_speed():
    records = bytes(1024)
    resp = m.FetchResponse(throttle_time_ms=0, error_code=0, session_id=0, responses=[
        m.FetchResponse.FetchableTopicResponse(topic=f"topic-{t}", partitions=[
            m.FetchResponse.PartitionData(
                partition_index=p, high_watermark=1000, last_stable_offset=1000,
                log_start_offset=0, aborted_transactions=None, records=records)
            for p in range(3)])
        for t in range(2)])
    n = 500
    data = m.FetchResponse.encode(resp, 11)
    # Best of several runs: the figure is for eyeballing, and a busy machine
    # only ever makes single runs slower.
    encode = min(timeit.repeat(lambda: m.FetchResponse.encode(resp, 11), number=n, repeat=5)) / n
    decode = min(timeit.repeat(lambda: m.FetchResponse.decode(data, 11), number=n, repeat=5)) / n
    assert m.FetchResponse.decode(data, 11) == resp
    print(f"\nFetchResponse v11, 2 topics x 3 partitions, {len(data)} bytes: "
          f"encode {encode * 1e6:.1f} us, decode {decode * 1e6:.1f} us, "
          f"both {(encode + decode) * 1e6:.1f} us")
