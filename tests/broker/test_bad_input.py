"""Hostile and malformed input on the wire, through raw sockets.

Every bad input (garbage bytes, a negative or 2 GB size prefix, an unknown API
key, an unsupported version, a truncated request, an array claiming more
elements than it carries, a half request that stalls, a corrupt record batch)
must end in an error response or a closed connection within seconds, and:

- a fresh connection still gets valid ApiVersions and Metadata answers;
- a client that stayed connected the whole time still works;
- no log is touched: the log end offsets of the guarded topic stay put and no
  topic appears.

The broker is shared by the whole module; pylog.request.read.timeout.ms is
1 s so the stalled-client cases finish quickly.
"""
from __future__ import annotations

import random
import socket
import struct
import time

import pytest

from pylog import _engine
from pylog.protocol import messages as m
from pylog.protocol.framing import decode_response, encode_request
from pylog.testing import running_broker

GUARDED = "guarded"     # holds data; no bad input may change it
WRITABLE = "writable"   # the valid produce requests of these tests write here
PARTITIONS = 2
READ_TIMEOUT_MS = 1000
CLOSE_WITHIN = 3.0      # seconds a bad input may take to be answered or closed
CLIENT_ID = "bad-input-test"

API_VERSIONS, METADATA, PRODUCE, LIST_OFFSETS, CREATE_TOPICS = 18, 3, 0, 2, 19
CORRUPT_MESSAGE, INVALID_REQUIRED_ACKS, UNSUPPORTED_VERSION, INVALID_RECORD = 2, 21, 35, 87


# ---- wire helpers -----------------------------------------------------------------

def connect(broker) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(sock, n) -> bytes | None:
    """n bytes, or None when the peer closed (or reset) the connection first."""
    out = bytearray()
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        out += chunk
    return bytes(out)


def recv_frame(sock) -> bytes | None:
    """One response frame without its size prefix; None on a closed connection."""
    head = recv_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    assert 4 <= size < 64 << 20, f"implausible response size {size}"
    frame = recv_exact(sock, size)
    assert frame is not None, "connection closed in the middle of a response"
    return frame


def call(sock, corr, api_key, version, body):
    """Send one request and decode its response (which must be the next frame)."""
    sock.sendall(encode_request(corr, api_key, version, body, client_id=CLIENT_ID))
    frame = recv_frame(sock)
    assert frame is not None, f"connection closed instead of answering api key {api_key} v{version}"
    header, resp = decode_response(frame, api_key, version)
    assert header.correlation_id == corr
    return resp


def assert_closed(sock, within=CLOSE_WITHIN):
    """The broker closes the connection (without sending anything) within `within` s."""
    sock.settimeout(within)
    t0 = time.monotonic()
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        data = b""
    except socket.timeout:
        pytest.fail(f"connection still open after {within} s")
    assert data == b"", f"expected a closed connection, got {len(data)} bytes: {data[:40].hex()}"
    return time.monotonic() - t0


def raw_frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def raw_header(api_key, version, corr, client_id=CLIENT_ID) -> bytes:
    cid = client_id.encode()
    return struct.pack(">hhih", api_key, version, corr, len(cid)) + cid


def produce_body(topic, records, acks=-1, partition=0):
    P = m.ProduceRequest
    return P(acks=acks, timeout_ms=5000, transactional_id=None, topic_data=[
        P.TopicProduceData(name=topic, partition_data=[P.PartitionProduceData(index=partition, records=records)])])


def produce_error(resp):
    (topic,) = resp.responses
    (part,) = topic.partition_responses
    return part.error_code


def metadata_v1(topics):
    return m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name=t) for t in topics])


def batch(n=3, tag=b"x"):
    return _engine.encode_batch([tag + b"-%d" % i for i in range(n)], keys=[b"k%d" % i for i in range(n)])


def recrc(batch_bytes: bytes) -> bytes:
    """The batch with its CRC-32C (over bytes 21..end) recomputed."""
    b = bytearray(batch_bytes)
    b[17:21] = struct.pack(">I", _engine.crc32c(bytes(b[21:])))
    return bytes(b)


# ---- the shared broker, a bystander client, the guarded log ---------------------------

class Env:
    def __init__(self, broker):
        self.broker = broker
        self.bystander = connect(broker)
        self.corr = 1000
        r = self.bystander_call(API_VERSIONS, 3, m.ApiVersionsRequest(
            client_software_name="bystander", client_software_version="1.0"))
        assert r.error_code == 0

    def next_corr(self):
        self.corr += 1
        return self.corr

    def bystander_call(self, api_key, version, body):
        return call(self.bystander, self.next_corr(), api_key, version, body)

    def state(self):
        """(topics, {(topic, partition): log end offset}) read on the broker's loop."""
        lm = self.broker.broker.log_manager

        def snap():
            return (sorted(lm.topics),
                    {k: p.log.log_end_offset for k, p in lm.partitions.items() if k[0] == GUARDED})
        return self.broker.broker.call(snap)


@pytest.fixture(scope="module")
def env():
    config = {
        "pylog.request.read.timeout.ms": READ_TIMEOUT_MS,
        "connections.max.idle.ms": 60000,
        "auto.create.topics.enable": False,
        "num.partitions": PARTITIONS,
    }
    with running_broker(config=config) as b:
        e = Env(b)
        T = m.CreateTopicsRequest
        r = e.bystander_call(CREATE_TOPICS, 4, T(timeout_ms=5000, validate_only=False, topics=[
            T.CreatableTopic(name=name, num_partitions=PARTITIONS, replication_factor=1, assignments=[], configs=[])
            for name in (GUARDED, WRITABLE)]))
        assert [t.error_code for t in r.topics] == [0, 0]
        for p in range(PARTITIONS):
            for _ in range(2):
                r = e.bystander_call(PRODUCE, 7, produce_body(GUARDED, batch(3, b"g"), partition=p))
                assert produce_error(r) == 0
        try:
            yield e
        finally:
            e.bystander.close()


@pytest.fixture
def healthy(env):
    """Checks, after the test, that the broker still serves everyone and that the
    guarded topic (and the topic list) did not change."""
    before = env.state()
    assert before[1] == {(GUARDED, p): 6 for p in range(PARTITIONS)}
    yield env
    assert_healthy(env, before)


def assert_healthy(env, before):
    # A fresh connection gets ApiVersions and Metadata answers.
    with connect(env.broker) as s:
        r = call(s, 1, API_VERSIONS, 3, m.ApiVersionsRequest(client_software_name="fresh",
                                                              client_software_version="1"))
        assert r.error_code == 0 and any(k.api_key == PRODUCE for k in r.api_keys)
        r = call(s, 2, METADATA, 5, m.MetadataRequest(topics=None, allow_auto_topic_creation=False))
        assert {t.name for t in r.topics} >= {GUARDED, WRITABLE}
    # The bystander, connected all along, is unaffected.
    r = env.bystander_call(METADATA, 1, metadata_v1([GUARDED]))
    assert [(t.name, t.error_code, len(t.partitions)) for t in r.topics] == [(GUARDED, 0, PARTITIONS)]
    # No log was touched.
    assert env.state() == before


# ---- size prefix and garbage ------------------------------------------------------

@pytest.mark.parametrize("data", [
    pytest.param(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", id="http"),   # size 0x47455420: > 100 MB
    pytest.param(b"\xff" * 64, id="all-ones"),                                # size -1
    pytest.param(random.Random(7).randbytes(4096), id="random"),
    pytest.param(raw_frame(random.Random(8).randbytes(200)), id="random-in-valid-frame"),
    pytest.param(raw_frame(b"\x00\x12"), id="frame-shorter-than-header"),
    pytest.param(raw_frame(b""), id="empty-frame"),
])
def test_garbage_closes_connection(healthy, data):
    with connect(healthy.broker) as s:
        s.sendall(data)
        assert_closed(s)


@pytest.mark.parametrize("size", [-1, -2, -0x80000000, 0x7FFFFFFF, 0x80000000 - 2, 104857600 + 1],
                         ids=["minus-1", "minus-2", "int32-min", "2GB", "2GB-2", "limit+1"])
def test_bad_size_prefix_closes_at_once(healthy, size):
    with connect(healthy.broker) as s:
        # Only the prefix and a little of the promised body: the broker must not
        # wait for gigabytes that never come, nor for the read timeout.
        s.sendall(struct.pack(">I", size & 0xFFFFFFFF) + raw_header(METADATA, 1, 1))
        took = assert_closed(s, within=CLOSE_WITHIN)
        assert took < READ_TIMEOUT_MS / 1000.0, f"closed only after {took:.2f} s: waited for the body"


def test_size_at_limit_is_accepted_but_then_times_out(healthy):
    """A size exactly at socket.request.max.bytes is legal: the broker waits for
    the body, and closes when it does not come within the read timeout."""
    with connect(healthy.broker) as s:
        s.sendall(struct.pack(">i", 104857600) + raw_header(PRODUCE, 7, 1))
        took = assert_closed(s, within=CLOSE_WITHIN)
        assert took >= READ_TIMEOUT_MS / 1000.0 * 0.8


# ---- header-level problems ---------------------------------------------------------

# (67, AllocateProducerIds, was here while the codecs did not know it: now
# it is parsed, its trailing zeros ignored as Kafka ignores them, and answered.)
@pytest.mark.parametrize("api_key", [999, 0x7FFF, -1, 200])
def test_unknown_api_key_closes_connection(healthy, api_key):
    with connect(healthy.broker) as s:
        s.sendall(raw_frame(raw_header(api_key, 0, 5) + b"\x00" * 16))
        assert_closed(s)


@pytest.mark.parametrize("api_key, version", [
    (METADATA, 99),     # beyond what the codec knows
    (2, 10),            # ListOffsets: the codec knows it (flexible), the broker does not advertise it
    (1, 3),             # Fetch below the advertised minimum of 4
    (PRODUCE, 12),
    (CREATE_TOPICS, -1),
])
def test_unsupported_version_closes_connection(healthy, api_key, version):
    with connect(healthy.broker) as s:
        s.sendall(raw_frame(raw_header(api_key, version, 9) + b"\x00" * 32))
        assert_closed(s)


def test_unsupported_version_after_good_request_on_same_connection(healthy):
    """Requests before the bad one are answered, then the connection closes."""
    with connect(healthy.broker) as s:
        s.sendall(encode_request(1, METADATA, 1, metadata_v1([GUARDED]), CLIENT_ID)
                  + raw_frame(raw_header(METADATA, 99, 2) + b"\x00" * 8))
        frame = recv_frame(s)
        assert frame is not None
        header, r = decode_response(frame, METADATA, 1)
        assert header.correlation_id == 1 and r.topics[0].name == GUARDED
        assert_closed(s)


@pytest.mark.parametrize("version", [99, 5, 0x7FFF])
def test_api_versions_too_high_gets_v0_error_reply(healthy, version):
    """KIP-511: never drop the connection for an ApiVersions version we do not
    know; answer with a v0 body (header v0), UNSUPPORTED_VERSION and at least
    the ApiVersions entry, so the client can retry with a version we speak."""
    with connect(healthy.broker) as s:
        # A v99 body could be anything: it must not even be parsed.
        s.sendall(raw_frame(raw_header(API_VERSIONS, version, 77) + b"\x00" + b"\xde\xad\xbe\xef" * 5))
        frame = recv_frame(s)
        assert frame is not None, "connection closed instead of an UNSUPPORTED_VERSION reply"
        header, r = decode_response(frame, API_VERSIONS, 0)
        assert header.correlation_id == 77
        assert r.error_code == UNSUPPORTED_VERSION
        entries = {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}
        assert API_VERSIONS in entries
        lo, hi = entries[API_VERSIONS]
        assert lo == 0 and hi >= 3
        # The connection stays usable: the client retries with the max we gave.
        r = call(s, 78, API_VERSIONS, hi, m.ApiVersionsRequest(client_software_name="retry",
                                                                client_software_version="1"))
        assert r.error_code == 0


def test_truncated_client_id_closes_connection(healthy):
    """The header's client_id claims 200 bytes; the frame carries 3."""
    with connect(healthy.broker) as s:
        s.sendall(raw_frame(struct.pack(">hhih", METADATA, 1, 1, 200) + b"abc"))
        assert_closed(s)


# ---- body-level problems --------------------------------------------------------------

def _truncations():
    good = encode_request(3, PRODUCE, 7, produce_body(GUARDED, batch(3, b"t")), CLIENT_ID)[4:]
    hdr = len(raw_header(PRODUCE, 7, 3))
    # Cut the body at several points, keeping the size prefix honest, so each
    # frame is complete but its body ends early (and holds a whole or partial batch).
    for cut in (hdr, hdr + 2, hdr + 9, hdr + 20, len(good) - 40, len(good) - 1):
        yield pytest.param(raw_frame(good[:cut]), id=f"produce-cut-at-{cut}")
    md = encode_request(4, METADATA, 1, metadata_v1([GUARDED, "other"]), CLIENT_ID)[4:]
    yield pytest.param(raw_frame(md[:-3]), id="metadata-cut-string")


@pytest.mark.parametrize("frame", list(_truncations()))
def test_truncated_request_closes_connection(healthy, frame):
    with connect(healthy.broker) as s:
        s.sendall(frame)
        assert_closed(s)


def test_trailing_bytes_are_ignored(healthy):
    # Kafka's parser reads a version's fields and ignores what follows
    # (RequestContext.parseRequest; framing's comment), so a request with
    # junk after its last field is answered as if it were not there, and the
    # connection serves the next request.
    L = m.ListOffsetsRequest
    good = encode_request(3, 2, 1, L(replica_id=-1, topics=[L.ListOffsetsTopic(name=GUARDED, partitions=[
        L.ListOffsetsPartition(partition_index=0, timestamp=-1)])]), CLIENT_ID)[4:]
    with connect(healthy.broker) as s:
        for junk in (b"\x00\x00\x00\x00junk", b"\xff" * 1000):
            s.sendall(raw_frame(good + junk))
            header, resp = decode_response(recv_frame(s), 2, 1)
            assert header.correlation_id == 3
            [p] = resp.topics[0].partitions
            assert (p.error_code, p.offset) == (0, 6)


@pytest.mark.parametrize("count", [2, 1000, 0x7FFFFFFF])
def test_metadata_array_claims_more_elements_than_carried(healthy, count):
    name = GUARDED.encode()
    body = struct.pack(">i", count) + struct.pack(">h", len(name)) + name   # one topic carried
    with connect(healthy.broker) as s:
        s.sendall(raw_frame(raw_header(METADATA, 1, 11) + body))
        assert_closed(s)


@pytest.mark.parametrize("count", [2, 0x7FFFFFFF])
def test_produce_array_claims_more_partitions_than_carried(healthy, count):
    """A valid batch for the guarded topic inside a partition array that claims
    more entries than it carries: nothing may be appended before the decode fails."""
    name = GUARDED.encode()
    records = batch(2, b"arr")
    body = (struct.pack(">h", -1) + struct.pack(">hi", -1, 5000)          # transactional_id, acks, timeout
            + struct.pack(">i", 1) + struct.pack(">h", len(name)) + name  # one topic
            + struct.pack(">i", count)                                    # partitions: claims count
            + struct.pack(">i", 0) + struct.pack(">i", len(records)) + records)
    with connect(healthy.broker) as s:
        s.sendall(raw_frame(raw_header(PRODUCE, 7, 12) + body))
        assert_closed(s)


def test_records_length_beyond_frame(healthy):
    """The records field claims more bytes than the frame holds."""
    name = GUARDED.encode()
    records = batch(2, b"len")
    body = (struct.pack(">hhi", -1, -1, 5000) + struct.pack(">ih", 1, len(name)) + name
            + struct.pack(">ii", 1, 0) + struct.pack(">i", len(records) + 1000) + records)
    with connect(healthy.broker) as s:
        s.sendall(raw_frame(raw_header(PRODUCE, 7, 13) + body))
        assert_closed(s)


# ---- slow, stalled and vanishing clients -----------------------------------------------

@pytest.mark.parametrize("sent", ["size-only", "size-and-header", "all-but-one-byte", "two-bytes"])
def test_stalled_half_request_is_closed_after_read_timeout(healthy, sent):
    frame = encode_request(21, PRODUCE, 7, produce_body(GUARDED, batch(3, b"slow")), CLIENT_ID)
    part = {"size-only": frame[:4], "size-and-header": frame[:4 + len(raw_header(PRODUCE, 7, 21))],
            "all-but-one-byte": frame[:-1], "two-bytes": frame[:2]}[sent]
    with connect(healthy.broker) as s:
        t0 = time.monotonic()
        s.sendall(part)
        # While this client stalls, the bystander is served without waiting for it.
        r = healthy.bystander_call(METADATA, 1, metadata_v1([GUARDED]))
        assert r.topics[0].error_code == 0
        assert time.monotonic() - t0 < READ_TIMEOUT_MS / 1000.0, "the bystander waited for the stalled client"
        assert_closed(s, within=CLOSE_WITHIN)
        took = time.monotonic() - t0
        assert took >= READ_TIMEOUT_MS / 1000.0 * 0.8, "closed before the read timeout"


def test_slow_but_steady_client_is_served(healthy):
    """A request trickling in byte by byte, finishing well within the read
    timeout, is answered normally."""
    frame = encode_request(22, METADATA, 1, metadata_v1([GUARDED]), CLIENT_ID)
    with connect(healthy.broker) as s:
        for i in range(len(frame)):
            s.sendall(frame[i:i + 1])
            time.sleep(0.005)
        resp = recv_frame(s)
        assert resp is not None
        header, r = decode_response(resp, METADATA, 1)
        assert header.correlation_id == 22 and r.topics[0].name == GUARDED


def test_client_vanishes_mid_request(healthy):
    """Half a produce request, then the client closes: nothing is appended."""
    frame = encode_request(23, PRODUCE, 7, produce_body(GUARDED, batch(3, b"gone")), CLIENT_ID)
    s = connect(healthy.broker)
    s.sendall(frame[:len(frame) // 2])
    s.close()
    time.sleep(0.1)


def test_many_stalled_clients_do_not_block_others(healthy):
    socks = [connect(healthy.broker) for _ in range(20)]
    try:
        for s in socks:
            s.sendall(struct.pack(">i", 1000) + b"\x00\x03")
        r = healthy.bystander_call(METADATA, 1, metadata_v1([GUARDED]))
        assert r.topics[0].error_code == 0
        for s in socks:
            assert_closed(s)
    finally:
        for s in socks:
            s.close()


# ---- produce requests the broker must refuse -------------------------------------------

def test_produce_bad_crc_is_corrupt_message(healthy):
    b = bytearray(batch(3, b"crc"))
    b[-1] ^= 0xFF   # last byte of the last record's value: CRC no longer matches
    with connect(healthy.broker) as s:
        r = call(s, 31, PRODUCE, 7, produce_body(GUARDED, bytes(b)))
        assert produce_error(r) == CORRUPT_MESSAGE
        # The connection stays open and usable.
        r = call(s, 32, METADATA, 1, metadata_v1([GUARDED]))
        assert r.topics[0].error_code == 0


def test_produce_bad_crc_in_second_batch_appends_nothing(healthy):
    """Two batches for one partition, the second corrupt: refused as a whole.
    Kafka refuses a second batch before any CRC is read (ProduceRequest.
    validateRecords: exactly one record batch per partition from v3 on)."""
    b2 = bytearray(batch(2, b"two"))
    b2[30] ^= 0x01   # inside baseTimestamp, covered by the CRC
    with connect(healthy.broker) as s:
        r = call(s, 33, PRODUCE, 7, produce_body(GUARDED, batch(2, b"one") + bytes(b2)))
        assert produce_error(r) == INVALID_RECORD


@pytest.mark.parametrize("magic", [0, 1, 3])
def test_produce_wrong_magic_refused(healthy, magic):
    b = bytearray(batch(3, b"magic"))
    b[16] = magic
    with connect(healthy.broker) as s:
        r = call(s, 34, PRODUCE, 7, produce_body(GUARDED, bytes(b)))
        assert produce_error(r) in (CORRUPT_MESSAGE, INVALID_RECORD)


@pytest.mark.parametrize("count", [0, 2, 4, 1000, -1])
def test_produce_records_count_mismatch_refused(healthy, count):
    b = bytearray(batch(3, b"count"))
    b[57:61] = struct.pack(">i", count)
    with connect(healthy.broker) as s:
        r = call(s, 35, PRODUCE, 7, produce_body(GUARDED, recrc(bytes(b))))
        # An intact batch with the wrong count is INVALID_RECORD, as in Kafka; a
        # negative count does not even parse as a header.
        assert produce_error(r) == (CORRUPT_MESSAGE if count < 0 else INVALID_RECORD)


def test_produce_last_offset_delta_mismatch_refused(healthy):
    b = bytearray(batch(3, b"delta"))
    b[23:27] = struct.pack(">i", 5)   # lastOffsetDelta 5 for 3 records
    with connect(healthy.broker) as s:
        r = call(s, 36, PRODUCE, 7, produce_body(GUARDED, recrc(bytes(b))))
        assert produce_error(r) == INVALID_RECORD


@pytest.mark.parametrize("length_delta", [-5, 5])
def test_produce_batch_length_mismatch_refused(healthy, length_delta):
    b = bytearray(batch(3, b"blen"))
    (n,) = struct.unpack_from(">i", b, 8)
    b[8:12] = struct.pack(">i", n + length_delta)
    with connect(healthy.broker) as s:
        r = call(s, 37, PRODUCE, 7, produce_body(GUARDED, bytes(b)))
        assert produce_error(r) in (CORRUPT_MESSAGE, INVALID_RECORD)


def test_produce_garbage_records_refused(healthy):
    with connect(healthy.broker) as s:
        r = call(s, 38, PRODUCE, 7, produce_body(GUARDED, random.Random(3).randbytes(300)))
        assert produce_error(r) in (CORRUPT_MESSAGE, INVALID_RECORD)


@pytest.mark.parametrize("acks", [5, 2, -2])
def test_produce_invalid_acks(healthy, acks):
    with connect(healthy.broker) as s:
        r = call(s, 39, PRODUCE, 7, produce_body(GUARDED, batch(2, b"acks"), acks=acks))
        assert produce_error(r) == INVALID_REQUIRED_ACKS


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_legacy_versions_close_connection(healthy, version):
    """Produce v0-2 (message formats 0/1) are advertised but not served."""
    with connect(healthy.broker) as s:
        s.sendall(encode_request(40, PRODUCE, version, produce_body(GUARDED, batch(2, b"v%d" % version)),
                                 CLIENT_ID))
        assert_closed(s)


def test_produce_acks0_bad_crc_closes_connection(healthy):
    """An acks=0 producer gets no response, so a refused produce closes the
    connection (as Kafka does) for it to notice."""
    b = bytearray(batch(3, b"crc0"))
    b[-1] ^= 0xFF
    with connect(healthy.broker) as s:
        s.sendall(encode_request(41, PRODUCE, 7, produce_body(GUARDED, bytes(b), acks=0), CLIENT_ID))
        assert_closed(s)


# ---- acks=0 and pipelining (valid requests; they write to WRITABLE) --------------------

def test_acks0_produce_gets_no_response_but_next_request_does(healthy):
    with connect(healthy.broker) as s:
        s.sendall(encode_request(50, PRODUCE, 7, produce_body(WRITABLE, batch(2, b"a0"), acks=0), CLIENT_ID)
                  + encode_request(51, METADATA, 1, metadata_v1([WRITABLE]), CLIENT_ID))
        frame = recv_frame(s)
        assert frame is not None
        header, r = decode_response(frame, METADATA, 1)
        assert header.correlation_id == 51, "the acks=0 produce was answered"
        assert r.topics[0].name == WRITABLE
        # Nothing else follows.
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(1)
        leo = healthy.broker.broker.call(
            lambda: healthy.broker.broker.log_manager.partitions[(WRITABLE, 0)].log.log_end_offset)
        assert leo >= 2


def test_pipelined_requests_answered_in_order(healthy):
    reqs = []
    kinds = []
    for i in range(50):
        corr = 100 + i
        kind = i % 4
        if kind == 0:
            reqs.append(encode_request(corr, API_VERSIONS, 3, m.ApiVersionsRequest(
                client_software_name="pipe", client_software_version="1"), CLIENT_ID))
            kinds.append((API_VERSIONS, 3))
        elif kind == 1:
            reqs.append(encode_request(corr, METADATA, 5, m.MetadataRequest(
                topics=[m.MetadataRequest.MetadataRequestTopic(name=WRITABLE)]), CLIENT_ID))
            kinds.append((METADATA, 5))
        elif kind == 2:
            reqs.append(encode_request(corr, PRODUCE, 7, produce_body(WRITABLE, batch(1, b"p%d" % i),
                                                                      acks=1, partition=1), CLIENT_ID))
            kinds.append((PRODUCE, 7))
        else:
            L = m.ListOffsetsRequest
            reqs.append(encode_request(corr, LIST_OFFSETS, 3, L(replica_id=-1, isolation_level=0, topics=[
                L.ListOffsetsTopic(name=WRITABLE, partitions=[
                    L.ListOffsetsPartition(partition_index=1, timestamp=-1)])]), CLIENT_ID))
            kinds.append((LIST_OFFSETS, 3))
    with connect(healthy.broker) as s:
        s.sendall(b"".join(reqs))   # one write
        got = []
        offsets = []
        for corr, (key, version) in zip(range(100, 150), kinds):
            frame = recv_frame(s)
            assert frame is not None, f"closed after {len(got)} responses"
            header, r = decode_response(frame, key, version)
            got.append(header.correlation_id)
            if key == PRODUCE:
                assert produce_error(r) == 0
                offsets.append(r.responses[0].partition_responses[0].base_offset)
            elif key == LIST_OFFSETS:
                # Answered after the produce before it: sees its record.
                assert r.topics[0].partitions[0].offset == offsets[-1] + 1
        assert got == list(range(100, 150))
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
