"""Kafka's record validation on produce (engine/validate.c), through raw sockets
against a broker process.

Each bad batch below is CRC-valid: only a record-by-record walk finds what is
wrong. Before it existed, every one was stored with error 0 and made all later
acknowledged records of the partition unreachable (librdkafka consumers stopped
or looped, kafka-python raised CorruptRecordError). Each test checks the exact
error code Kafka gives, then that a confluent-kafka consumer and a kafka-python
consumer both read every good record produced after the bad one.

Decompression bombs are refused at produce with the broker's peak RSS
(VmHWM, /proc) bounded, and ListOffsets by time over a stored bomb (written by
the engine directly, as old data) stays bounded too.
"""
from __future__ import annotations

import glob
import os
import socket
import struct
import time
import uuid
import zlib

import pytest
from brokerproc import BrokerProc
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from pylog import _engine
from pylog.protocol import messages as m
from pylog.protocol.framing import decode_response, encode_request

zstandard = pytest.importorskip("zstandard")

CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, INVALID_TIMESTAMP, UNSUPPORTED_COMPRESSION, INVALID_RECORD = 2, 10, 32, 76, 87
PRODUCE, LIST_OFFSETS, METADATA = 0, 2, 3
TIMEOUT = 30
RSS_BOUND = 200 << 20  # what a bomb may add to the broker's peak RSS


# ---- the broker process ---------------------------------------------------------

@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = BrokerProc(tmp_path_factory.mktemp("validation") / "data", overrides=["num.partitions=1"])
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def topic(request):
    return f"val-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}".replace("[", "-").replace("]", "")


# ---- building CRC-valid batches by hand ---------------------------------------------

def zz(v: int) -> bytes:
    """A zigzag varint (Kafka's), any length."""
    u = (v << 1) ^ (v >> 63)
    u &= (1 << 64) - 1
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


def field(b: bytes | None) -> bytes:
    return zz(-1) if b is None else zz(len(b)) + b


def record(offset_delta, value=b"v", key=b"k", headers=(), ts_delta=0, body=None) -> bytes:
    if body is None:
        body = (b"\x00" + zz(ts_delta) + zz(offset_delta) + field(key) + field(value) + zz(len(headers))
                + b"".join(field(hk) + field(hv) for hk, hv in headers))
    return zz(len(body)) + body


def batch(records: bytes, count: int, *, codec=0, attributes=None, last_offset_delta=None,
          base_ts=None, max_ts=None, producer_id=-1, producer_epoch=-1, base_sequence=-1) -> bytes:
    """A record batch v2 around records (already compressed when codec != 0),
    with a correct CRC-32C whatever the fields say."""
    now = int(time.time() * 1000) if base_ts is None else base_ts
    attrs = codec if attributes is None else attributes
    lod = count - 1 if last_offset_delta is None else last_offset_delta
    body = struct.pack(">hiqqqhii", attrs, lod, now, now if max_ts is None else max_ts,
                       producer_id, producer_epoch, base_sequence, count) + records
    crc = _engine.crc32c(body)
    rest = struct.pack(">ibI", -1, 2, crc) + body   # partition_leader_epoch, magic, crc
    return struct.pack(">qi", 0, len(rest)) + rest


def good_records(n, tag=b"v"):
    return b"".join(record(i, value=tag + b"%d" % i) for i in range(n))


# ---- the wire --------------------------------------------------------------------

def _recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise AssertionError("connection closed by the broker")
        out += chunk
    return bytes(out)


def call(bootstrap_port, api_key, version, body, corr=7):
    with socket.create_connection(("127.0.0.1", bootstrap_port), timeout=120) as s:
        s.sendall(encode_request(corr, api_key, version, body, client_id="validation-test"))
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        header, resp = decode_response(_recv_exact(s, size), api_key, version)
        assert header.correlation_id == corr
        return resp


def produce_raw(broker, topic, records, version=7, transactional_id=None):
    P = m.ProduceRequest
    body = P(acks=-1, timeout_ms=10000, transactional_id=transactional_id, topic_data=[
        P.TopicProduceData(name=topic, partition_data=[P.PartitionProduceData(index=0, records=records)])])
    (t,) = call(broker.port, PRODUCE, version, body).responses
    (part,) = t.partition_responses
    return part


def ensure_topic(broker, topic):
    """Auto-create the topic and wait until it has a leader."""
    body = m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name=topic)],
                             allow_auto_topic_creation=True)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        resp = call(broker.port, METADATA, 4, body)
        t = resp.topics[0]
        if t.error_code == 0 and t.partitions and t.partitions[0].leader_id >= 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{topic} has no leader")


def log_end_offset(broker, topic):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "val-leo"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False)[1]
    finally:
        c.close()


def produce_good(broker, topic, n, tag):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    acked = []
    for i in range(n):
        p.produce(topic, b"%s-%d" % (tag, i), partition=0,
                  on_delivery=lambda e, msg: acked.append(msg.value()) if e is None else None)
    assert p.flush(TIMEOUT) == 0
    assert len(acked) == n
    return acked


def read_confluent(broker, topic, want):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"val-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline and not set(want) <= set(got):
            for msg in c.consume(1000, 0.5):
                assert msg.error() is None, f"confluent-kafka consumer error: {msg.error()}"
                got.append(msg.value())
    finally:
        c.close()
    return got


def read_kafka_python(broker, topic, want):
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=40000)
    c.assign([KpTopicPartition(topic, 0)])
    c.seek_to_beginning()
    got = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline and not set(want) <= set(got):
            for recs in c.poll(timeout_ms=300).values():
                got.extend(r.value for r in recs)
    finally:
        c.close()
    return got


def assert_all_readable(broker, topic, before, after):
    """Both clients read every good record, before and after the refused batch."""
    want = before + after
    assert set(want) <= set(read_confluent(broker, topic, want)), "confluent-kafka consumer lost records"
    assert set(want) <= set(read_kafka_python(broker, topic, want)), "kafka-python consumer lost records"


# ---- one test per corrupt class ---------------------------------------------------

NOW = int(time.time() * 1000)
R0 = record(0)


def _cases():
    long_varint = b"\x80\x80\x80\x80\x80\x01"   # 6 bytes: overlong for an int32 varint
    return {
        "record-length-past-end": (batch(zz(500) + R0[1:], 1), INVALID_RECORD),
        "record-length-short": (batch(record(0, body=(b"\x00" + zz(0) + zz(0) + field(b"k") + field(b"v")
                                                     + zz(0) + b"extra")[:-3]) + b"xyz", 1), INVALID_RECORD),
        "key-length-lies": (batch(record(0, body=b"\x00" + zz(0) + zz(0) + zz(1000) + b"k" + field(b"v")
                                         + zz(0)), 1), INVALID_RECORD),
        "value-length-lies": (batch(record(0, body=b"\x00" + zz(0) + zz(0) + field(b"k") + zz(1 << 30)
                                           + b"v" + zz(0)), 1), INVALID_RECORD),
        "key-length-below-minus-one": (batch(record(0, body=b"\x00" + zz(0) + zz(0) + zz(-7) + field(b"v")
                                                    + zz(0)), 1), INVALID_RECORD),
        "header-count-2^31-1": (batch(record(0, body=b"\x00" + zz(0) + zz(0) + field(b"k") + field(b"v")
                                             + zz(2**31 - 1) + field(b"h") + field(b"x")), 1), INVALID_RECORD),
        "header-key-length-lies": (batch(record(0, body=b"\x00" + zz(0) + zz(0) + field(b"k") + field(b"v")
                                                + zz(1) + zz(99) + b"h" + field(b"x")), 1), INVALID_RECORD),
        "header-key-null": (batch(record(0, headers=[(None, b"x")]), 1), INVALID_RECORD),
        "offset-deltas-out-of-order": (batch(record(1) + record(0), 2), INVALID_RECORD),
        "offset-delta-gap": (batch(record(0) + record(2), 2), INVALID_RECORD),
        "overlong-varint": (batch(long_varint + R0[1:], 1), INVALID_RECORD),
        "truncated-varint": (batch(R0 + b"\x80", 2), INVALID_RECORD),
        "fewer-records-than-count": (batch(good_records(2), 3), INVALID_RECORD),
        "trailing-bytes": (batch(good_records(2) + b"\x00\x00", 2), INVALID_RECORD),
        "codec-5": (batch(R0, 1, codec=5), UNSUPPORTED_COMPRESSION),
        "codec-6": (batch(R0, 1, codec=6), UNSUPPORTED_COMPRESSION),
        "codec-7": (batch(R0, 1, codec=7), UNSUPPORTED_COMPRESSION),
        "gzip-corrupt": (batch(b"\x1f\x8b\x08\x00garbage-not-deflate", 1, codec=1), CORRUPT_MESSAGE),
        "lz4-labelled-zstd": (batch(_engine_codec(3, R0), 1, codec=4), CORRUPT_MESSAGE),
        "zstd-labelled-gzip": (batch(_engine_codec(4, R0), 1, codec=1), CORRUPT_MESSAGE),
        "gzip-hiding-lying-record": (batch(_engine_codec(1, zz(500) + R0[1:]), 1, codec=1), INVALID_RECORD),
        "zstd-hiding-fewer-records": (batch(_engine_codec(4, good_records(1)), 5, codec=4), INVALID_RECORD),
        "transactional-without-producer-id": (batch(R0, 1, attributes=0x10), INVALID_RECORD),
        "producer-id-without-sequence": (batch(R0, 1, producer_id=5, producer_epoch=0, base_sequence=-1),
                                         INVALID_RECORD),
        "timestamp-far-future": (batch(record(0), 1, base_ts=NOW + 10 * 3600 * 1000), INVALID_TIMESTAMP),
        "timestamp-int64-min": (batch(record(0), 1, base_ts=-(2**63) + 5), INVALID_TIMESTAMP),
        "timestamp-delta-overflow": (batch(record(0, ts_delta=2**62), 1, base_ts=2**62), INVALID_TIMESTAMP),
    }


def _engine_codec(codec, data):
    from pylog import codecs
    return codecs.compress(codec, data)


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupt_batch_refused_and_later_records_readable(broker, topic, case):
    bad, code = CASES[case]
    ensure_topic(broker, topic)
    before = produce_good(broker, topic, 3, b"before")
    leo = log_end_offset(broker, topic)
    # A transactional batch comes with its transactional id (without one Kafka
    # answers TRANSACTIONAL_ID_AUTHORIZATION_FAILED before validating records).
    part = produce_raw(broker, topic, bad, transactional_id="txn" if bad[22] & 0x10 else None)
    assert part.error_code == code, f"{case}: {part.error_code} ({part.error_message}), Kafka gives {code}"
    assert part.base_offset == -1
    assert log_end_offset(broker, topic) == leo, "a refused batch changed the log end offset"
    after = produce_good(broker, topic, 5, b"after")
    assert_all_readable(broker, topic, before, after)


def test_record_errors_name_each_bad_record(broker, topic):
    """Produce v8: per-record errors in record_errors (Kafka's batch_index and
    message), INVALID_TIMESTAMP over INVALID_RECORD as Kafka's processRecordErrors."""
    ensure_topic(broker, topic)
    recs = record(0) + record(1, ts_delta=10 * 3600 * 1000) + record(2) + record(3, ts_delta=20 * 3600 * 1000)
    part = produce_raw(broker, topic, batch(recs, 4, base_ts=NOW), version=8)
    assert part.error_code == INVALID_TIMESTAMP
    assert [e.batch_index for e in part.record_errors] == [1, 3]
    assert all("out of range" in e.batch_index_error_message for e in part.record_errors)
    assert "invalid timestamp" in part.error_message
    assert log_end_offset(broker, topic) == 0


def test_timestamp_window_follows_topic_config(broker, topic):
    """message.timestamp.before.max.ms set on the topic refuses old records."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fut = admin.create_topics([NewTopic(topic, 1, 1, config={"message.timestamp.before.max.ms": "60000"})])
    fut[topic].result(TIMEOUT)
    ensure_topic(broker, topic)
    part = produce_raw(broker, topic, batch(record(0), 1, base_ts=NOW - 3600 * 1000))
    assert part.error_code == INVALID_TIMESTAMP
    part = produce_raw(broker, topic, batch(record(0), 1, base_ts=int(time.time() * 1000)))
    assert part.error_code == 0


def test_zstd_before_produce_v7_refused(broker, topic):
    ensure_topic(broker, topic)
    part = produce_raw(broker, topic, batch(_engine_codec(4, R0), 1, codec=4), version=6)
    assert part.error_code == UNSUPPORTED_COMPRESSION
    part = produce_raw(broker, topic, batch(_engine_codec(4, R0), 1, codec=4), version=7)
    assert part.error_code == 0


def _segments(broker, topic):
    return sorted(glob.glob(os.path.join(broker.data_dir, f"{topic}-0", "*.log")))


def test_count_of_2_31_minus_1_holding_one_record_refused(broker, topic):
    """Before: accepted, the log end offset jumped 2^31 and a segment rolled per batch."""
    ensure_topic(broker, topic)
    before = produce_good(broker, topic, 2, b"before")
    leo, segs = log_end_offset(broker, topic), _segments(broker, topic)
    for _ in range(3):
        part = produce_raw(broker, topic, batch(R0, 2**31 - 1))
        assert part.error_code == INVALID_RECORD
    assert log_end_offset(broker, topic) == leo
    assert _segments(broker, topic) == segs
    after = produce_good(broker, topic, 2, b"after")
    assert_all_readable(broker, topic, before, after)


# ---- decompression bombs --------------------------------------------------------------

def _bomb_records(total_bytes, record_value=1 << 20):
    """Yield the records section of total_bytes / record_value records of zeros,
    piece by piece (each record's timestamp delta is its index)."""
    zero = bytes(record_value)
    for i in range(total_bytes // record_value):
        yield record(i, value=zero, key=None, ts_delta=i)


def zstd_bomb(total_bytes):
    cobj = zstandard.ZstdCompressor(level=3).compressobj()
    parts = [cobj.compress(r) for r in _bomb_records(total_bytes)]
    parts.append(cobj.flush())
    return b"".join(parts), total_bytes // (1 << 20)


def gzip_bomb(total_bytes):
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [c.compress(r) for r in _bomb_records(total_bytes)]
    parts.append(c.flush())
    return b"".join(parts), total_bytes // (1 << 20)


@pytest.mark.parametrize("kind", ["zstd-2GB", "gzip-512MB"])
def test_decompression_bomb_refused_with_bounded_rss(broker, topic, kind):
    if kind.startswith("zstd"):
        section, n = zstd_bomb(2 << 30)
        codec = 4
    else:
        section, n = gzip_bomb(512 << 20)
        codec = 1
    assert len(section) < 1 << 20, "the bomb must fit max.message.bytes to reach the validator"
    bomb = batch(section, n, codec=codec, base_ts=NOW, max_ts=NOW + n - 1)
    ensure_topic(broker, topic)
    before = produce_good(broker, topic, 2, b"before")
    peak = broker.status("VmHWM")
    part = produce_raw(broker, topic, bomb)
    assert part.error_code == MESSAGE_TOO_LARGE, (part.error_code, part.error_message)
    assert broker.status("VmHWM") - peak < RSS_BOUND
    after = produce_good(broker, topic, 2, b"after")
    assert_all_readable(broker, topic, before, after)


def test_list_offsets_by_time_over_a_stored_bomb_is_bounded(tmp_path):
    """A 2 GB zstd batch already on disk (written by the engine, as data from
    before validation existed): ListOffsets by a timestamp inside it answers the
    early record at once and refuses the deep one after a bounded inflate; the
    broker's peak RSS stays bounded and other requests are answered meanwhile."""
    from pylog.log.log import Log
    section, n = zstd_bomb(2 << 30)
    base_ts = 1_700_000_000_000
    bomb = batch(section, n, codec=4, base_ts=base_ts, max_ts=base_ts + n - 1)
    small = _engine.encode_batch([b"tail"], timestamps=[base_ts + 10 * n])
    data_dir = tmp_path / "data"
    with Log.open(str(data_dir / "old-0")) as log:
        log.append_batches(bomb, leader_epoch=0)
        log.append_batches(small, leader_epoch=0)
        log.flush()
    b = BrokerProc(data_dir, overrides=["num.partitions=1"])
    try:
        ensure_topic(b, "old")
        peak = b.status("VmHWM")
        L = m.ListOffsetsRequest

        def lookup(ts):
            body = L(replica_id=-1, isolation_level=0, topics=[L.ListOffsetsTopic(
                name="old", partitions=[L.ListOffsetsPartition(partition_index=0, timestamp=ts)])])
            (t,) = call(b.port, LIST_OFFSETS, 3, body).topics
            return t.partitions[0]

        early = lookup(base_ts + 1)
        assert (early.error_code, early.offset, early.timestamp) == (0, 1, base_ts + 1)
        deep = lookup(base_ts + n - 1)
        assert deep.error_code == MESSAGE_TOO_LARGE
        after = lookup(base_ts + 10 * n)
        assert (after.error_code, after.offset) == (0, n)
        assert b.status("VmHWM") - peak < RSS_BOUND
    finally:
        b.stop()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_real_client_compressible_batches_pass(broker, topic, codec):
    """What the bound must never refuse: librdkafka's largest batches
    (batch.size 1 MB, linger) of highly compressible values. (A guard against
    a bound set too low: it passes on the old code too.)"""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 100,
                  "batch.size": 1000000, "compression.type": codec})
    acked = []
    value = bytes(10000)
    for i in range(1500):
        p.produce(topic, value + b"%d" % i, partition=0,
                  on_delivery=lambda e, msg: acked.append(msg.value()) if e is None else None)
    assert p.flush(TIMEOUT) == 0
    assert len(acked) == 1500
    assert log_end_offset(broker, topic) == 1500
