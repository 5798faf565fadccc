"""The broker against real Kafka clients over real sockets.

confluent-kafka (librdkafka) and kafka-python talk to an in-process pylog
broker (pylog.testing.running_broker): produce/consume round trips (byte-exact,
with and without compression, across clients), ListOffsets, seeking, the
idempotent producer (and the broker's de-duplication of a resent batch, with
raw requests), restarts, the admin APIs, auto topic creation, max.message.bytes
and long-poll fetches.

Consumer groups are not supported by the broker yet: consumers use assign()
and seek(), never subscribe(), and never commit.
"""
from __future__ import annotations

import collections
import random
import socket
import struct
import threading
import time
import warnings

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType as KConfigResourceType
from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError as KTopicAlreadyExistsError

from pylog import _engine
from pylog.protocol import messages as m
from pylog.protocol.framing import decode_response, encode_request

TIMEOUT = 30.0  # seconds any single client operation may take before the test fails

# ---------------------------------------------------------------------------
# confluent-kafka helpers
# ---------------------------------------------------------------------------


def cf_admin(b) -> AdminClient:
    return AdminClient({"bootstrap.servers": b})


def create_topic(b, name, partitions, config=None):
    admin = cf_admin(b)  # must outlive its futures: a destroyed client fails them
    fs = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10, request_timeout=TIMEOUT)
    fs[name].result(TIMEOUT)


def cf_producer(b, conf=None) -> Producer:
    cfg = {"bootstrap.servers": b, "acks": "all", "linger.ms": 5}
    cfg.update(conf or {})
    return Producer(cfg)


def cf_consumer(b, conf=None) -> Consumer:
    # A group.id is required by the constructor; no group feature is used.
    cfg = {"bootstrap.servers": b, "group.id": "pylog-tests", "enable.auto.commit": False,
           "enable.auto.offset.store": False, "auto.offset.reset": "error"}
    cfg.update(conf or {})
    return Consumer(cfg)


def produce_cf(p, topic, msgs, partition=None, timestamps=None, flush=True):
    """Produce msgs [(key, value, headers)]; returns the delivery reports
    [(error, partition, offset)] in message order."""
    reports = [None] * len(msgs)

    def on_delivery(i):
        def cb(err, msg):
            reports[i] = (err, msg.partition(), msg.offset())
        return cb

    for i, (key, value, headers) in enumerate(msgs):
        kwargs = {}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamps is not None:
            kwargs["timestamp"] = timestamps[i]
        if headers is not None:
            kwargs["headers"] = headers
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=on_delivery(i), **kwargs)
                break
            except BufferError:
                p.poll(0.05)
    if flush:
        assert p.flush(TIMEOUT) == 0, "messages still undelivered after the flush timeout"
        assert None not in reports
    return reports


def assert_delivered(reports):
    errors = [r for r in reports if r[0] is not None]
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0]}"


def _cf_tuple(msg):
    return (msg.partition(), msg.offset(), msg.key(), msg.value(), norm_headers(msg.headers()),
            msg.timestamp())


def poll_cf(c, n, timeout=TIMEOUT, settle=0.3):
    """Consume until n messages arrived (then `settle` seconds more, to catch
    extras); fails on any consumer error."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for msg in c.consume(num_messages=1000, timeout=0.2):
            if msg.error():
                raise AssertionError(f"consumer error: {msg.error()}")
            out.append(_cf_tuple(msg))
    if settle:
        end = time.monotonic() + settle
        while time.monotonic() < end:
            for msg in c.consume(num_messages=1000, timeout=0.1):
                if msg.error():
                    raise AssertionError(f"consumer error: {msg.error()}")
                out.append(_cf_tuple(msg))
    return out


def consume_cf(b, topic, starts, n, conf=None, timeout=TIMEOUT):
    """Assign {partition: start offset} and consume n messages; returns
    [(partition, offset, key, value, headers, (ts_type, ts))]."""
    c = cf_consumer(b, conf)
    try:
        c.assign([TopicPartition(topic, p, off) for p, off in starts.items()])
        return poll_cf(c, n, timeout)
    finally:
        c.close()


def norm_headers(headers):
    return [tuple(h) for h in headers or []]


def check_round_trip(msgs, reports, consumed):
    """consumed [(partition, offset, key, value, headers, ...)] holds exactly
    msgs, each at the (partition, offset) its delivery report named; offsets
    are contiguous from 0 in every partition, in consumption order."""
    assert_delivered(reports)
    where = {(p, o): i for i, (_err, p, o) in enumerate(reports)}
    assert len(where) == len(msgs), "two messages were reported at the same partition/offset"
    assert len(consumed) == len(msgs), f"consumed {len(consumed)} messages, produced {len(msgs)}"
    per_partition = collections.defaultdict(list)
    for p, o, key, value, headers, *_ in consumed:
        per_partition[p].append(o)
        i = where.get((p, o))
        assert i is not None, f"consumed partition {p} offset {o}, which no delivery report named"
        ekey, evalue, eheaders = msgs[i]
        assert key == ekey, f"message {i} (p{p}@{o}): key {key!r} != {ekey!r}"
        assert value == evalue, f"message {i} (p{p}@{o}): value differs ({value!r:.60} != {evalue!r:.60})"
        assert headers == norm_headers(eheaders), f"message {i} (p{p}@{o}): headers {headers} != {eheaders}"
    for p, offsets in per_partition.items():
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets not 0..n-1 in order"


def make_messages(n, nkeys, seed, null_header_values=True):
    rng = random.Random(seed)
    msgs = []
    for i in range(n):
        key = None if i % 1000 == 5 else b"key-\x00\xff-%d" % (i % nkeys)
        if i % 997 == 3:
            value = None
        elif i % 997 == 4:
            value = b""
        elif i % 2:
            value = rng.randbytes(rng.randrange(1, 400))
        else:
            value = (b"value %d " % i) * rng.randrange(1, 20)
        if i % 5 == 0:
            headers = None
        else:
            headers = [("idx", b"%d" % i), ("bin", rng.randbytes(rng.randrange(0, 16))),
                       ("dup", b"1"), ("dup", b"2"), ("\u00fcn\u00efc\u00f6de", b"\xe2\x82\xac")]
            if null_header_values and i % 7 == 1:
                headers.append(("nil", None))
        msgs.append((key, value, headers))
    return msgs


def watermarks(b, topic, partition):
    c = cf_consumer(b)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT, cached=False)
    finally:
        c.close()


# ---------------------------------------------------------------------------
# kafka-python helpers
# ---------------------------------------------------------------------------


def kp_consumer(b, **conf) -> KafkaConsumer:
    cfg = {"bootstrap_servers": b, "group_id": None, "enable_auto_commit": False,
           "auto_offset_reset": "earliest", "request_timeout_ms": 40000}
    cfg.update(conf)
    return KafkaConsumer(**cfg)


def poll_kp(c, n, timeout=TIMEOUT, settle=0.3):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=200).values():
            out.extend(_kp_tuple(r) for r in recs)
    end = time.monotonic() + settle
    while time.monotonic() < end:
        for recs in c.poll(timeout_ms=100).values():
            out.extend(_kp_tuple(r) for r in recs)
    return out


def _kp_tuple(r):
    return (r.partition, r.offset, r.key, r.value, norm_headers(r.headers), r.timestamp)


def produce_kp(b, topic, msgs, compression=None):
    prod = KafkaProducer(bootstrap_servers=b, acks="all", compression_type=compression, linger_ms=5)
    try:
        futs = [prod.send(topic, key=k, value=v, headers=h or []) for k, v, h in msgs]
        prod.flush(timeout=TIMEOUT)
        reports = []
        for f in futs:
            try:
                md = f.get(timeout=TIMEOUT)
                reports.append((None, md.partition, md.offset))
            except Exception as e:  # noqa: BLE001 - recorded as the delivery error
                reports.append((e, -1, -1))
        return reports
    finally:
        prod.close(timeout=10)


# ---------------------------------------------------------------------------
# raw protocol helpers
# ---------------------------------------------------------------------------


class RawClient:
    """One connection speaking pylog's own codecs: a request in, its response out."""

    def __init__(self, bootstrap):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        self.correlation_id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            buf += chunk
        return bytes(buf)

    def request(self, api_key, version, body):
        self.correlation_id += 1
        self.sock.sendall(encode_request(self.correlation_id, api_key, version, body, client_id="pylog-tests"))
        (size,) = struct.unpack(">i", self._recv(4))
        header, resp = decode_response(self._recv(size), api_key, version)
        assert header.correlation_id == self.correlation_id
        return resp

    def init_producer_id(self):
        r = self.request(22, 1, m.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000))
        assert r.error_code == 0
        return r.producer_id, r.producer_epoch

    def produce(self, topic, partition, records, acks=-1):
        P = m.ProduceRequest
        req = P(transactional_id=None, acks=acks, timeout_ms=10000, topic_data=[
            P.TopicProduceData(name=topic, partition_data=[P.PartitionProduceData(index=partition, records=records)])])
        r = self.request(0, 7, req)
        part = r.responses[0].partition_responses[0]
        return part.error_code, part.base_offset

    def fetch_all(self, topic, partition, start=0):
        """Every batch's raw bytes from start up to the high watermark."""
        F = m.FetchRequest
        data = bytearray()
        offset = start
        while True:
            req = F(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=64 << 20, isolation_level=0,
                    session_id=0, session_epoch=-1, topics=[F.FetchTopic(topic=topic, partitions=[
                        F.FetchPartition(partition=partition, current_leader_epoch=-1, fetch_offset=offset,
                                         log_start_offset=-1, partition_max_bytes=64 << 20)])],
                    forgotten_topics_data=[], rack_id="")
            r = self.request(1, 11, req)
            pd = r.responses[0].partitions[0]
            assert pd.error_code == 0, f"fetch error {pd.error_code}"
            chunk = bytes(pd.records or b"")
            headers = _engine.batch_headers(chunk)
            if not headers:
                return bytes(data), pd.high_watermark
            end = headers[-1][0] + 12 + struct.unpack_from(">i", chunk, headers[-1][0] + 8)[0]
            data += chunk[:end]
            offset = headers[-1][1] + headers[-1][2] + 1
            if offset >= pd.high_watermark:
                return bytes(data), pd.high_watermark


def idempotent_batch(values, producer_id, epoch, base_sequence):
    """A record batch v2 carrying producer id, epoch and base sequence (CRC redone)."""
    batch = bytearray(_engine.encode_batch(values))
    struct.pack_into(">qhi", batch, 43, producer_id, epoch, base_sequence)
    struct.pack_into(">I", batch, 17, _engine.crc32c(bytes(batch[21:])))
    return bytes(batch)


# ---------------------------------------------------------------------------
# 1. confluent round trip
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_confluent_round_trip_6_partitions(broker, topic, compression):
    n = 10_000
    create_topic(broker, topic, 6)
    msgs = make_messages(n, nkeys=397, seed=compression)
    p = cf_producer(broker, {"compression.type": compression, "batch.num.messages": 1000})
    reports = produce_cf(p, topic, msgs)
    assert_delivered(reports)

    consumed = consume_cf(broker, topic, {i: 0 for i in range(6)}, n)
    check_round_trip(msgs, reports, consumed)

    partitions_of_key = collections.defaultdict(set)
    for (key, _v, _h), (_err, part, _off) in zip(msgs, reports):
        if key is not None:
            partitions_of_key[key].add(part)
    assert all(len(s) == 1 for s in partitions_of_key.values()), "a key landed on two partitions"
    used = {part for _e, part, _o in reports}
    assert used == set(range(6)), f"397 keys spread over partitions {used} only"
    for _p, _o, _k, _v, _h, (ts_type, ts) in consumed:
        assert ts_type == TIMESTAMP_CREATE_TIME and ts > 1_600_000_000_000


# ---------------------------------------------------------------------------
# 2. across clients
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_kafka_python_produces_confluent_consumes(broker, topic, compression):
    n = 2000
    create_topic(broker, topic, 3)
    msgs = make_messages(n, nkeys=50, seed=7, null_header_values=False)
    msgs = [(k, v, h) for k, v, h in msgs if not (k is None and v is None)]
    reports = produce_kp(broker, topic, msgs, compression)
    consumed = consume_cf(broker, topic, {i: 0 for i in range(3)}, len(msgs))
    check_round_trip(msgs, reports, consumed)


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_confluent_produces_kafka_python_consumes(broker, topic, compression):
    n = 2000
    create_topic(broker, topic, 3)
    msgs = make_messages(n, nkeys=50, seed=8, null_header_values=False)
    reports = produce_cf(cf_producer(broker, {"compression.type": compression}), topic, msgs)
    c = kp_consumer(broker)
    try:
        tps = [KTopicPartition(topic, i) for i in range(3)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        consumed = poll_kp(c, len(msgs))
    finally:
        c.close()
    check_round_trip(msgs, reports, consumed)


# ---------------------------------------------------------------------------
# 3. ListOffsets
# ---------------------------------------------------------------------------


def _produce_timestamped(b, topic):
    """Partition 0 gets ten messages with timestamps 1000..10000: the first five
    in one batch, the rest one batch each. Partition 1 stays empty."""
    create_topic(b, topic, 2)
    p = cf_producer(b, {"linger.ms": 100})
    ts = [1000 * (i + 1) for i in range(10)]
    msgs = [(b"k", b"m%d" % i, None) for i in range(10)]
    r1 = produce_cf(p, topic, msgs[:5], partition=0, timestamps=ts[:5])
    r2 = []
    for i in range(5, 10):
        r2 += produce_cf(p, topic, msgs[i:i + 1], partition=0, timestamps=ts[i:i + 1])
    assert_delivered(r1 + r2)
    assert [o for _e, _p, o in r1 + r2] == list(range(10))
    return ts


# target timestamp -> expected offset (-1: none at or after it)
TIME_CASES = {0: 0, 1000: 0, 1001: 1, 2500: 2, 5000: 4, 5001: 5, 9999: 9, 10000: 9, 10001: -1, 10**12: -1}


def test_list_offsets_confluent(broker, topic):
    ts = _produce_timestamped(broker, topic)
    c = cf_consumer(broker)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False) == (0, 10)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=TIMEOUT, cached=False) == (0, 0)
        single = {t: c.offsets_for_times([TopicPartition(topic, 0, t)], timeout=TIMEOUT)[0].offset
                  for t in TIME_CASES}
        both = c.offsets_for_times([TopicPartition(topic, 0, 2500), TopicPartition(topic, 1, 1000)],
                                   timeout=TIMEOUT)
        c.assign([TopicPartition(topic, 0, 0)])
        consumed = poll_cf(c, 10, settle=0)
    finally:
        c.close()
    assert single == TIME_CASES
    assert [(tp.partition, tp.offset, tp.error) for tp in both] == [(0, 2, None), (1, -1, None)]
    assert [x[5] for x in consumed] == [(TIMESTAMP_CREATE_TIME, t) for t in ts]


def test_list_offsets_kafka_python(broker, topic):
    _produce_timestamped(broker, topic)
    c = kp_consumer(broker)
    try:
        tp0, tp1 = KTopicPartition(topic, 0), KTopicPartition(topic, 1)
        assert c.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1]) == {tp0: 10, tp1: 0}
        for target, offset in TIME_CASES.items():
            r = c.offsets_for_times({tp0: target})[tp0]
            if offset == -1:
                assert r is None, f"timestamp {target}: {r}"
            else:
                assert r is not None, f"timestamp {target}: no offset"
                assert (r.offset, r.timestamp) == (offset, 1000 * (offset + 1)), f"timestamp {target}: {r}"
        assert c.offsets_for_times({tp1: 1000}) == {tp1: None}
    finally:
        c.close()


# ---------------------------------------------------------------------------
# 4. seek
# ---------------------------------------------------------------------------


def test_seek_to_middle_offset(broker, topic):
    n = 300
    create_topic(broker, topic, 1)
    msgs = [(b"k%d" % i, b"value-%d" % i, [("i", b"%d" % i)]) for i in range(n)]
    # lz4 and lingering: a few large compressed batches, so 137 lies inside one.
    reports = produce_cf(cf_producer(broker, {"compression.type": "lz4", "linger.ms": 50}), topic, msgs,
                         partition=0)
    assert [o for _e, _p, o in reports] == list(range(n))

    c = cf_consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        first = poll_cf(c, 10, settle=0)
        assert first[0][1] == 0
        c.seek(TopicPartition(topic, 0, 137))
        after = poll_cf(c, n - 137)
    finally:
        c.close()
    assert [x[1] for x in after] == list(range(137, n))
    assert [x[3] for x in after] == [v for _k, v, _h in msgs[137:]]

    # assign straight at an offset
    direct = consume_cf(broker, topic, {0: 250}, n - 250)
    assert [x[1] for x in direct] == list(range(250, n))
    assert direct[0][3] == b"value-250"

    kc = kp_consumer(broker)
    try:
        tp = KTopicPartition(topic, 0)
        kc.assign([tp])
        kc.seek(tp, 137)
        got = poll_kp(kc, n - 137)
    finally:
        kc.close()
    assert [x[1] for x in got] == list(range(137, n))
    assert [x[3] for x in got] == [v for _k, v, _h in msgs[137:]]


# ---------------------------------------------------------------------------
# 5. idempotent producer
# ---------------------------------------------------------------------------


def test_idempotent_producer_no_duplicates_order_kept(broker, topic):
    n, nkeys, nparts = 20_000, 40, 4
    create_topic(broker, topic, nparts)
    fatal = []
    p = cf_producer(broker, {"enable.idempotence": True, "acks": "all", "linger.ms": 2,
                             "batch.num.messages": 500, "error_cb": fatal.append})
    msgs = []
    seq = collections.Counter()
    for i in range(n):
        k = b"key-%d" % (i % nkeys)
        msgs.append((k, b"%s:%d" % (k, seq[k]), None))
        seq[k] += 1
    reports = produce_cf(p, topic, msgs)
    assert not fatal, fatal
    assert_delivered(reports)

    consumed = consume_cf(broker, topic, {i: 0 for i in range(nparts)}, n)
    values = [x[3] for x in consumed]
    assert len(values) == n and len(set(values)) == n, "duplicates or losses"
    check_round_trip(msgs, reports, consumed)
    per_key = collections.defaultdict(list)
    for part, off, key, value, *_ in sorted(consumed, key=lambda x: (x[0], x[1])):
        per_key[key].append(int(value.rsplit(b":", 1)[1]))
    for key, seqs in per_key.items():
        assert seqs == list(range(len(seqs))), f"{key!r}: order not kept"

    # What the broker stored: batches of one producer id, sequences contiguous.
    with RawClient(broker) as raw:
        for part in range(nparts):
            data, hw = raw.fetch_all(topic, part)
            headers = _engine.batch_headers(data)
            assert headers, f"partition {part} is empty"
            pids = {h[4] for h in headers}
            assert len(pids) == 1 and min(pids) >= 0, f"partition {part}: producer ids {pids}"
            expected_seq = 0
            for h in headers:
                assert h[6] == expected_seq, f"partition {part}: batch at {h[1]} has sequence {h[6]}"
                expected_seq += h[7]
            assert expected_seq == hw


def test_idempotent_resent_batch_is_deduplicated_raw(broker, topic):
    create_topic(broker, topic, 1)
    with RawClient(broker) as raw:
        pid, epoch = raw.init_producer_id()
        assert pid >= 0 and epoch >= 0
        b0 = idempotent_batch([b"a", b"b", b"c"], pid, epoch, 0)
        assert raw.produce(topic, 0, b0) == (0, 0)
        assert raw.produce(topic, 0, b0) == (0, 0), "a resent batch must be answered with its first offset"
        assert watermarks(broker, topic, 0) == (0, 3)
        b1 = idempotent_batch([b"d", b"e"], pid, epoch, 3)
        assert raw.produce(topic, 0, b1) == (0, 3)
        assert raw.produce(topic, 0, b0) == (0, 0)  # an older one of the last five batches
        assert raw.produce(topic, 0, b1) == (0, 3)
        gap = idempotent_batch([b"x"], pid, epoch, 10)
        code, _ = raw.produce(topic, 0, gap)
        assert code == 45, f"a sequence gap must give OUT_OF_ORDER_SEQUENCE_NUMBER (45), not {code}"
        assert watermarks(broker, topic, 0) == (0, 5)
        b2 = idempotent_batch([b"f"], pid, epoch, 5)
        assert raw.produce(topic, 0, b2) == (0, 5)
        data, hw = raw.fetch_all(topic, 0)
    assert hw == 6
    assert [(h[1], h[6], h[7]) for h in _engine.batch_headers(data)] == [(0, 0, 3), (3, 3, 2), (5, 5, 1)]


# ---------------------------------------------------------------------------
# 6. restart
# ---------------------------------------------------------------------------


def test_restart_keeps_data_offsets_topics_configs(fresh_broker, topic):
    b = fresh_broker
    cfg_topic = topic + "-cfg"
    create_topic(b, topic, 3, {"segment.bytes": "16384"})  # several segments to recover
    create_topic(b, cfg_topic, 2, {"retention.ms": "12345"})
    p = cf_producer(b)
    msgs1 = [(b"k%d" % (i % 10), b"before-%d-" % i + b"x" * 100, [("n", b"%d" % i)]) for i in range(600)]
    r1 = produce_cf(p, topic, msgs1)
    assert_delivered(r1)
    c = cf_consumer(b)
    try:
        c.assign([TopicPartition(topic, i, 0) for i in range(3)])
        got1 = poll_cf(c, len(msgs1), settle=0)
        check_round_trip(msgs1, r1, got1)
        counts = collections.Counter(part for _e, part, _o in r1)

        b.restart()

        msgs2 = [(b"k%d" % (i % 10), b"after-%d" % i, [("n", b"%d" % i)]) for i in range(600)]
        r2 = produce_cf(p, topic, msgs2)  # the same producer carries on
        assert_delivered(r2)
        for part in range(3):
            offs = [o for _e, pp, o in r2 if pp == part]
            assert offs == list(range(counts[part], counts[part] + len(offs))), \
                f"partition {part}: offsets after restart {offs[:3]}... (had {counts[part]})"
        got2 = poll_cf(c, len(msgs2))  # the same consumer carries on
    finally:
        c.close()
    assert sorted((x[0], x[1]) for x in got2) == sorted((pp, o) for _e, pp, o in r2)
    assert sorted(x[3] for x in got2) == sorted(v for _k, v, _h in msgs2)

    everything = consume_cf(b, topic, {i: 0 for i in range(3)}, len(msgs1) + len(msgs2))
    check_round_trip(msgs1 + msgs2, r1 + r2, everything)

    md = cf_admin(b).list_topics(timeout=TIMEOUT)
    assert len(md.topics[topic].partitions) == 3 and len(md.topics[cfg_topic].partitions) == 2
    res = ConfigResource(ResourceType.TOPIC, cfg_topic)
    admin = cf_admin(b)
    entries = admin.describe_configs([res])[res].result(TIMEOUT)
    assert entries["retention.ms"].value == "12345"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_restart_idempotent_producer_carries_on(fresh_broker, topic):
    b = fresh_broker
    create_topic(b, topic, 2)
    fatal = []
    p = cf_producer(b, {"enable.idempotence": True, "error_cb": fatal.append})
    msgs1 = [(b"k%d" % (i % 4), b"a%d" % i, None) for i in range(500)]
    r1 = produce_cf(p, topic, msgs1)
    b.restart()
    msgs2 = [(b"k%d" % (i % 4), b"b%d" % i, None) for i in range(500)]
    r2 = produce_cf(p, topic, msgs2)
    assert not [e for e in fatal if e.fatal()], fatal
    consumed = consume_cf(b, topic, {0: 0, 1: 0}, 1000)
    check_round_trip(msgs1 + msgs2, r1 + r2, consumed)


def test_restart_keeps_producer_state_raw(fresh_broker, topic):
    """A batch resent after a restart is still recognised as a duplicate (the
    producer state survives: snapshot or log replay), and sequences go on."""
    b = fresh_broker
    create_topic(b, topic, 1)
    with RawClient(b) as raw:
        pid, epoch = raw.init_producer_id()
        b0 = idempotent_batch([b"a", b"b"], pid, epoch, 0)
        b1 = idempotent_batch([b"c"], pid, epoch, 2)
        assert raw.produce(topic, 0, b0) == (0, 0)
        assert raw.produce(topic, 0, b1) == (0, 2)
    b.restart()
    with RawClient(b) as raw:
        assert raw.produce(topic, 0, b1) == (0, 2), "a duplicate after restart was not recognised"
        assert raw.produce(topic, 0, b0) == (0, 0), "a duplicate after restart was not recognised"
        code, _ = raw.produce(topic, 0, idempotent_batch([b"x"], pid, epoch, 7))
        assert code == 45
        assert raw.produce(topic, 0, idempotent_batch([b"d"], pid, epoch, 3)) == (0, 3)
        pid2, _ = raw.init_producer_id()
        assert pid2 != pid, "a producer id was handed out twice"
        data, hw = raw.fetch_all(topic, 0)
    assert hw == 4
    assert [(h[1], h[4], h[6], h[7]) for h in _engine.batch_headers(data)] == \
        [(0, pid, 0, 2), (2, pid, 2, 1), (3, pid, 3, 1)]


# ---------------------------------------------------------------------------
# 7. admin
# ---------------------------------------------------------------------------


def _describe(b, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    admin = cf_admin(b)
    return admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)


def test_admin_describe_and_alter_configs(broker, topic):
    create_topic(broker, topic, 2, {"retention.ms": "12345", "cleanup.policy": "delete"})
    entries = _describe(broker, topic)
    for key in ("retention.ms", "segment.bytes", "cleanup.policy", "max.message.bytes"):
        assert key in entries, f"{key} missing from DescribeConfigs"
    assert entries["retention.ms"].value == "12345"
    assert entries["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not entries["retention.ms"].is_default
    assert entries["segment.bytes"].value == str(1 << 30)
    assert entries["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert entries["max.message.bytes"].value == "1048588"

    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"max.message.bytes": "5000"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # alter_configs is deprecated in the client
        admin = cf_admin(broker)
        fs = admin.alter_configs([res], request_timeout=TIMEOUT)
    for f in fs.values():
        f.result(TIMEOUT)
    entries = _describe(broker, topic)
    assert entries["max.message.bytes"].value == "5000"
    assert entries["max.message.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # AlterConfigs replaces the whole set of overrides: retention.ms is back to its default.
    assert entries["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert entries["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    bad = ConfigResource(ResourceType.TOPIC, topic, set_config={"no.such.config": "1"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        admin = cf_admin(broker)
        fs = admin.alter_configs([bad], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        next(iter(fs.values())).result(TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_admin_create_partitions(broker, topic):
    create_topic(broker, topic, 6)
    admin = cf_admin(broker)
    fs = admin.create_partitions([NewPartitions(topic, 8)], request_timeout=TIMEOUT)
    fs[topic].result(TIMEOUT)
    md = cf_admin(broker).list_topics(topic, timeout=TIMEOUT)
    assert sorted(md.topics[topic].partitions) == list(range(8))
    reports = produce_cf(cf_producer(broker), topic, [(b"k", b"to-seven", None)], partition=7)
    assert reports == [(None, 7, 0)]
    got = consume_cf(broker, topic, {7: 0}, 1)
    assert [(x[0], x[1], x[3]) for x in got] == [(7, 0, b"to-seven")]
    admin = cf_admin(broker)
    fs = admin.create_partitions([NewPartitions(topic, 4)], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS


def test_admin_delete_topic(broker_no_auto, topic):
    b = broker_no_auto
    create_topic(b, topic, 2)
    r = produce_cf(cf_producer(b), topic, [(b"k", b"v%d" % i, None) for i in range(10)], partition=1)
    assert_delivered(r)
    admin = cf_admin(b)
    fs = admin.delete_topics([topic], operation_timeout=10, request_timeout=TIMEOUT)
    fs[topic].result(TIMEOUT)
    md = cf_admin(b).list_topics(timeout=TIMEOUT)
    assert topic not in md.topics
    md = cf_admin(b).list_topics(topic, timeout=TIMEOUT)
    assert md.topics[topic].error is not None
    assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    p = cf_producer(b, {"topic.metadata.propagation.max.ms": 1000, "message.timeout.ms": 10000})
    reports = produce_cf(p, topic, [(b"k", b"late", None)])
    assert reports[0][0] is not None, "producing to a deleted topic succeeded"
    assert reports[0][0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
    # The name can be used again, and the new topic starts empty.
    create_topic(b, topic, 2)
    assert watermarks(b, topic, 1) == (0, 0)
    r = produce_cf(cf_producer(b), topic, [(b"k", b"new", None)], partition=1)
    assert r == [(None, 1, 0)]


def test_admin_delete_records(broker, topic):
    create_topic(broker, topic, 2)
    r = produce_cf(cf_producer(broker), topic, [(b"k", b"v%d" % i, None) for i in range(100)], partition=0)
    assert_delivered(r)
    admin = cf_admin(broker)
    assert hasattr(admin, "delete_records")
    fs = admin.delete_records([TopicPartition(topic, 0, 40)], request_timeout=TIMEOUT)
    (fut,) = fs.values()
    assert fut.result(TIMEOUT).low_watermark == 40
    assert watermarks(broker, topic, 0) == (40, 100)
    got = consume_cf(broker, topic, {0: OFFSET_BEGINNING}, 60)
    assert [x[1] for x in got] == list(range(40, 100))
    assert got[0][3] == b"v40"
    # reading below the low watermark is out of range
    c = cf_consumer(broker)
    try:
        c.assign([TopicPartition(topic, 0, 10)])
        deadline = time.monotonic() + TIMEOUT
        err = None
        while err is None and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None:
                assert msg.error() is not None, f"read offset {msg.offset()} below the low watermark"
                err = msg.error()
    finally:
        c.close()
    assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
    kc = kp_consumer(broker)
    try:
        tp = KTopicPartition(topic, 0)
        assert kc.beginning_offsets([tp]) == {tp: 40}
    finally:
        kc.close()
    # beyond the high watermark: refused
    fs = admin.delete_records([TopicPartition(topic, 0, 101)], request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        next(iter(fs.values())).result(TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert watermarks(broker, topic, 0) == (40, 100)


def test_admin_create_existing_and_invalid_topics(broker, topic):
    create_topic(broker, topic, 1)
    admin = cf_admin(broker)
    fs = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)],
                                        request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[topic].result(TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    md = cf_admin(broker).list_topics(topic, timeout=TIMEOUT)
    assert len(md.topics[topic].partitions) == 1, "the failed create changed the topic"

    for name in ("bad name!", "x" * 250, ".."):
        admin = cf_admin(broker)
        fs = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                                            request_timeout=TIMEOUT)
        with pytest.raises(KafkaException) as ei:
            fs[name].result(TIMEOUT)
        assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, (name, ei.value)
    admin = cf_admin(broker)
    fs = admin.create_topics([NewTopic(topic + "-rf", num_partitions=1, replication_factor=3)],
                                        request_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as ei:
        fs[topic + "-rf"].result(TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR


def test_kafka_python_admin(broker, topic):
    admin = KafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=30000)
    try:
        admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1,
                                     "configs": {"retention.ms": "54321"}}})
        assert topic in admin.list_topics()
        (desc,) = admin.describe_topics([topic])
        assert desc["name"] == topic and len(desc["partitions"]) == 3
        with pytest.raises(KTopicAlreadyExistsError):
            admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})

        out = admin.describe_configs([KConfigResource(KConfigResourceType.TOPIC, topic)], config_filter="all")
        configs = out["topic"][topic]
        assert configs["retention.ms"]["value"] == "54321"
        assert configs["segment.bytes"]["value"] == str(1 << 30)
        modified = admin.describe_configs([KConfigResource(KConfigResourceType.TOPIC, topic)])["topic"][topic]
        assert set(modified) == {"retention.ms"}

        admin.delete_topics([topic])
        assert topic not in admin.list_topics()
    finally:
        admin.close()
    assert topic not in cf_admin(broker).list_topics(timeout=TIMEOUT).topics


# ---------------------------------------------------------------------------
# 8. auto topic creation
# ---------------------------------------------------------------------------


def test_auto_create_topic_on_produce(broker, topic):
    r = produce_cf(cf_producer(broker), topic, [(b"k%d" % i, b"v", None) for i in range(30)])
    assert_delivered(r)
    md = cf_admin(broker).list_topics(topic, timeout=TIMEOUT)
    assert md.topics[topic].error is None
    assert sorted(md.topics[topic].partitions) == [0, 1, 2]  # num.partitions=3 on this broker
    kr = produce_kp(broker, topic + "-kp", [(b"k", b"v", None)])
    assert kr[0][0] is None, kr
    md = cf_admin(broker).list_topics(topic + "-kp", timeout=TIMEOUT)
    assert sorted(md.topics[topic + "-kp"].partitions) == [0, 1, 2]


def test_auto_create_disabled(broker_no_auto, topic):
    b = broker_no_auto
    p = cf_producer(b, {"topic.metadata.propagation.max.ms": 1000, "message.timeout.ms": 10000})
    reports = produce_cf(p, topic, [(b"k", b"v", None)])
    err = reports[0][0]
    assert err is not None, f"produced to {topic} on a broker without auto-creation: {reports}"
    assert err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), err
    assert topic not in cf_admin(b).list_topics(timeout=TIMEOUT).topics
    assert topic not in b.broker.call(lambda: set(b.broker.log_manager.topics))


# ---------------------------------------------------------------------------
# 9. max.message.bytes
# ---------------------------------------------------------------------------


def test_max_message_bytes(broker, topic):
    create_topic(broker, topic, 1, {"max.message.bytes": "1000"})
    p = cf_producer(broker)
    assert_delivered(produce_cf(p, topic, [(b"k", b"small-%d" % i, None) for i in range(3)]))
    assert watermarks(broker, topic, 0) == (0, 3)
    big = random.Random(1).randbytes(5000)
    reports = produce_cf(p, topic, [(b"k", big, None)])
    err = reports[0][0]
    assert err is not None, f"a 5000-byte message was accepted: {reports}"
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    assert watermarks(broker, topic, 0) == (0, 3), "a refused message changed the log"
    assert produce_cf(p, topic, [(b"k", b"x" * 500, None)]) == [(None, 0, 3)]
    got = consume_cf(broker, topic, {0: 0}, 4)
    assert [x[3] for x in got] == [b"small-0", b"small-1", b"small-2", b"x" * 500]


# ---------------------------------------------------------------------------
# 10. long poll
# ---------------------------------------------------------------------------


class _FetchCounter:
    def __init__(self, b):
        self.table = b.broker.handlers.table
        self.orig = self.table[1]
        self.count = 0

    def __enter__(self):
        def counting(header, req):
            self.count += 1
            return self.orig(header, req)
        self.table[1] = counting
        return self

    def __exit__(self, *exc):
        self.table[1] = self.orig


def test_long_poll_confluent_wakes_on_produce(broker, topic):
    create_topic(broker, topic, 1)
    p = cf_producer(broker, {"linger.ms": 0})
    p.list_topics(topic, timeout=TIMEOUT)  # connected and warmed up
    c = cf_consumer(broker, {"fetch.wait.max.ms": 10000})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        assert c.poll(1.0) is None  # now fetching (and waiting) on the empty partition
        with _FetchCounter(broker) as fc:
            def later():
                time.sleep(0.3)
                p.produce(topic, b"wake up", partition=0)
                p.flush(TIMEOUT)
            t = threading.Thread(target=later)
            t0 = time.monotonic()
            t.start()
            msg = None
            while msg is None and time.monotonic() - t0 < 8:
                msg = c.poll(8)
            elapsed = time.monotonic() - t0
            t.join()
            fetches = fc.count
    finally:
        c.close()
    assert msg is not None, "no message within 8 s: the waiting fetch was not woken by the produce"
    assert msg.error() is None and msg.value() == b"wake up"
    assert 0.15 <= elapsed < 5, elapsed
    assert fetches <= 10, f"{fetches} fetch requests in {elapsed:.2f} s: the broker does not hold fetches"


def test_long_poll_kafka_python_waits_for_min_bytes(broker, topic):
    create_topic(broker, topic, 1)
    assert_delivered(produce_cf(cf_producer(broker), topic, [(b"k", b"tiny", None)]))
    c = kp_consumer(broker, fetch_max_wait_ms=2000, fetch_min_bytes=10 << 20)
    try:
        tp = KTopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        t0 = time.monotonic()
        got = []
        while not got and time.monotonic() - t0 < 15:
            for recs in c.poll(timeout_ms=500).values():
                got.extend(recs)
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert [r.value for r in got] == [b"tiny"]
    assert elapsed >= 1.0, f"returned after {elapsed:.2f} s: fetch_min_bytes/fetch_max_wait_ms ignored"
    assert elapsed < 10, elapsed
