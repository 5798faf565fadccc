"""The broker rewriting produced batches where Kafka's LogValidator does:
message.timestamp.type=LogAppendTime (the broker's clock in the batch header,
the CRC recomputed) and a topic's compression.type other than producer (the
batch rebuilt with the topic's codec, producer id/epoch/sequence kept).

Real broker over sockets, real clients (confluent-kafka, kafka-python), the
stored batches read from the segment files (what the broker really wrote).
librdkafka's tests 0052 (LogAppendTime) and 0081 (topic compression.type=lz4)
are the model.
"""
from __future__ import annotations

import struct
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer, KafkaError,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import errors as KafkaErrors
from kafka import TopicPartition as KpTopicPartition

from pylog import _engine
from pylog.broker.config import BrokerConfig
from pylog.protocol import batch_layout as L
from pylog.errors import InvalidConfigError
from pylog.testing import running_broker

from .test_record_validation import produce_raw

TIMEOUT = 60
OLD_TS = 1_000_000_000_000  # 2001: a producer timestamp no broker clock shows
CODECS = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
ATTR_LOG_APPEND_TIME = 0x08


@pytest.fixture(scope="module")
def broker():
    with running_broker(config={"num.partitions": "1"}) as b:
        yield b


def create_topic(broker, configs: dict) -> str:
    name = f"rw-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fut = admin.create_topics([NewTopic(name, 1, 1, config=configs)])[name]
    fut.result(TIMEOUT)
    return name


def create_topic_error(broker, configs: dict):
    name = f"rw-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as ei:
        admin.create_topics([NewTopic(name, 1, 1, config=configs)])[name].result(TIMEOUT)
    return ei.value.args[0]


def stored_batches(broker, topic):
    """Headers of the batches in the partition's segment files, as written."""
    out = []
    for seg in sorted(Path(broker.data_dir, f"{topic}-0").glob("*.log")):
        out.extend(_engine.batch_headers(seg.read_bytes()))
    return out


def confluent_produce(broker, topic, values, conf=None, timestamp=0):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 20, **(conf or {})})
    reports = []
    for i, v in enumerate(values):
        p.produce(topic, v, key=b"k%d" % i, partition=0, timestamp=timestamp, headers=[("h", b"%d" % i)],
                  on_delivery=lambda e, msg: reports.append((e, msg.timestamp())))
    assert p.flush(TIMEOUT) == 0
    assert [e for e, _ in reports] == [None] * len(values)
    return [ts for _, ts in reports]


def confluent_read(broker, topic, n):
    deadline, got = time.monotonic() + TIMEOUT, []
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"rw-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    try:
        while len(got) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got.append((msg.key(), msg.value(), msg.headers(), msg.timestamp()))
    finally:
        c.close()
    return got


def kafka_python_read(broker, topic, n):
    # Iterating stops after TIMEOUT without a record (consumer_timeout_ms);
    # range first in zip, so the n+1th record is never waited for.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=TIMEOUT * 1000)
    c.assign([KpTopicPartition(topic, 0)])
    try:
        return [(r.key, r.value, r.timestamp, r.timestamp_type) for _, r in zip(range(n), c)]
    finally:
        c.close()


# ---- message.timestamp.type=LogAppendTime ---------------------------------------------

def test_log_append_time_topic_gives_the_brokers_clock_to_every_client(broker):
    topic = create_topic(broker, {"message.timestamp.type": "LogAppendTime"})
    # Two hours ahead: a CreateTime topic refuses it (message.timestamp.after.max.ms),
    # a LogAppendTime one does not look at it (Kafka checks the window on CreateTime only).
    future = int(time.time() * 1000) + 2 * 3600 * 1000
    before = int(time.time() * 1000)
    delivered = confluent_produce(broker, topic, [b"a", b"b", b"c"], timestamp=future)
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    meta = kp.send(topic, b"d", key=b"k", partition=0, timestamp_ms=OLD_TS).get(TIMEOUT)
    kp.close()
    after = int(time.time() * 1000)
    # The produce response's log_append_time_ms: kafka-python reports it as the
    # record's timestamp, librdkafka as a LogAppendTime timestamp.
    assert before <= meta.timestamp <= after
    assert all(t == TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after for t, ts in delivered), delivered
    got = confluent_read(broker, topic, 4)
    assert [v for _, v, _, _ in got] == [b"a", b"b", b"c", b"d"]
    for _, _, _, (ts_type, ts) in got:
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME and before <= ts <= after
    kgot = kafka_python_read(broker, topic, 4)
    assert [(v, t) for _, v, _, t in kgot] == [(b"a", 1), (b"b", 1), (b"c", 1), (b"d", 1)]
    assert all(before <= ts <= after for _, _, ts, _ in kgot)
    # In the header: the bit set, max_timestamp the broker's; the CRC is checked by both consumers.
    for h in stored_batches(broker, topic):
        assert h[8] & ATTR_LOG_APPEND_TIME and before <= h[3] <= after


def test_create_time_topic_keeps_the_producers_timestamps(broker):
    topic = create_topic(broker, {})
    delivered = confluent_produce(broker, topic, [b"a", b"b"], timestamp=OLD_TS)
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    meta = kp.send(topic, b"c", partition=0, timestamp_ms=OLD_TS + 5).get(TIMEOUT)
    kp.close()
    assert meta.timestamp == OLD_TS + 5  # log_append_time_ms -1: the record's own
    assert delivered == [(TIMESTAMP_CREATE_TIME, OLD_TS)] * 2
    got = confluent_read(broker, topic, 3)
    assert [ts for _, _, _, ts in got] == [(TIMESTAMP_CREATE_TIME, OLD_TS)] * 2 + [(TIMESTAMP_CREATE_TIME, OLD_TS + 5)]
    assert all(not h[8] & ATTR_LOG_APPEND_TIME for h in stored_batches(broker, topic))


def test_bad_timestamp_type_and_codec_refused(broker):
    assert "message.timestamp.type" in str(create_topic_error(broker, {"message.timestamp.type": "Now"}))
    assert "compression.type" in str(create_topic_error(broker, {"compression.type": "none"}))


@pytest.mark.parametrize("key,value", [("log.message.timestamp.type", "AppendTime"), ("compression.type", "lz5")])
def test_broker_refuses_an_unknown_timestamp_type_or_codec(key, value):
    with pytest.raises(InvalidConfigError, match=f"Invalid value {value} for configuration {key}"):
        BrokerConfig({key: value})


def test_broker_level_log_append_time_and_compression():
    with running_broker(config={"num.partitions": "1", "log.message.timestamp.type": "LogAppendTime",
                                "compression.type": "zstd"}) as b:
        topic = create_topic(b, {})
        before = int(time.time() * 1000)
        confluent_produce(b, topic, [b"x" * 100, b"y" * 100], {"compression.type": "gzip"}, timestamp=OLD_TS)
        got = confluent_read(b, topic, 2)
        assert [v for _, v, _, _ in got] == [b"x" * 100, b"y" * 100]
        assert all(t == TIMESTAMP_LOG_APPEND_TIME and ts >= before for _, _, _, (t, ts) in got)
        hs = stored_batches(b, topic)
        assert hs and all(h[8] & 7 == CODECS["zstd"] and h[8] & ATTR_LOG_APPEND_TIME for h in hs)


# ---- compression.type other than producer -----------------------------------------------

@pytest.mark.parametrize("target,producer_codec", [("lz4", "gzip"), ("lz4", "none"), ("uncompressed", "lz4"),
                                                    ("gzip", "zstd"), ("snappy", "lz4"), ("zstd", "snappy")])
def test_topic_codec_rebuilds_batches_and_keeps_records(broker, target, producer_codec):
    topic = create_topic(broker, {"compression.type": target})
    values = [(b"value-%d-" % i) * 20 for i in range(50)]
    confluent_produce(broker, topic, values, {"compression.type": producer_codec, "enable.idempotence": True},
                      timestamp=OLD_TS)
    hs = stored_batches(broker, topic)
    assert hs and all(h[8] & 7 == CODECS[target] for h in hs), [h[8] for h in hs]
    # The idempotent producer's id, epoch and sequences survive the rebuild.
    assert all(h[4] >= 0 and h[5] >= 0 for h in hs)
    assert [h[6] for h in hs] == [sum(x[7] for x in hs[:i]) for i in range(len(hs))]
    got = confluent_read(broker, topic, len(values))
    assert got == [(b"k%d" % i, v, [("h", b"%d" % i)], (TIMESTAMP_CREATE_TIME, OLD_TS))
                   for i, v in enumerate(values)]
    if target == "snappy":
        return  # kafka-python reads snappy only with python-snappy, not installed here
    kgot = kafka_python_read(broker, topic, len(values))
    assert [(k, v, ts) for k, v, ts, _ in kgot] == [(b"k%d" % i, v, OLD_TS) for i, v in enumerate(values)]


def test_same_codec_is_stored_as_sent(broker):
    topic = create_topic(broker, {"compression.type": "lz4"})
    confluent_produce(broker, topic, [b"a" * 50] * 5, {"compression.type": "lz4"})
    assert all(h[8] & 7 == CODECS["lz4"] for h in stored_batches(broker, topic))
    assert len(confluent_read(broker, topic, 5)) == 5


# ---- cleanup.policy checks: DeleteRecords, keyless records --------------------------------

@pytest.mark.parametrize("policy,deletes", [("compact", False), ("delete", True), ("compact,delete", True)])
def test_delete_records_needs_a_deleting_policy(broker, policy, deletes):
    topic = create_topic(broker, {"cleanup.policy": policy})
    confluent_produce(broker, topic, [b"a", b"b", b"c"])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    fut = admin.delete_records([TopicPartition(topic, 0, 2)])[TopicPartition(topic, 0, 2)]
    if deletes:
        assert fut.result(TIMEOUT).low_watermark == 2
        return
    with pytest.raises(KafkaException) as ei:
        fut.result(TIMEOUT)
    err = ei.value.args[0]
    assert err.code() == KafkaError.POLICY_VIOLATION, err
    # Nothing went: every record still reads from offset 0.
    assert [v for _, v, _, _ in confluent_read(broker, topic, 3)] == [b"a", b"b", b"c"]


def test_keyless_records_refused_on_a_compacted_topic(broker):
    """librdkafka's 0011 idea: a compacted topic takes keyed records only;
    a batch holding a keyless one is refused whole with INVALID_RECORD (87)."""
    topic = create_topic(broker, {"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 50, "retries": 0})
    reports = []
    p.produce(topic, b"keyed-1", key=b"k1", partition=0, on_delivery=lambda e, m: reports.append(e))
    p.produce(topic, b"keyless", partition=0, on_delivery=lambda e, m: reports.append(e))
    p.produce(topic, b"keyed-2", key=b"k2", partition=0, on_delivery=lambda e, m: reports.append(e))
    assert p.flush(TIMEOUT) == 0
    assert len(reports) == 3 and all(e is not None and e.code() == KafkaError.INVALID_RECORD for e in reports), \
        reports
    kp = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", retries=0)
    with pytest.raises(KafkaErrors.InvalidRecordError) as ei:
        kp.send(topic, b"keyless", partition=0).get(TIMEOUT)
    kp.close()
    # Kafka's record error message (LogValidator.validateKey), as kafka-python shows it.
    assert f"Compacted topic cannot accept message without key in topic partition {topic}-0" in str(ei.value)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "rw-leo"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT, cached=False) == (0, 0)
    finally:
        c.close()
    confluent_produce(broker, topic, [b"keyed"])  # keyed records still go in
    assert [(k, v) for k, v, _, _ in confluent_read(broker, topic, 1)] == [(b"k0", b"keyed")]


def test_transaction_markers_of_a_log_append_time_topic_are_stamped(broker):
    topic = create_topic(broker, {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"rw-{uuid.uuid4().hex[:6]}"})
    p.init_transactions(TIMEOUT)
    p.begin_transaction()
    p.produce(topic, b"in-txn", key=b"k", partition=0, timestamp=OLD_TS)
    p.commit_transaction(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while len(stored_batches(broker, topic)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the coordinator writes the marker after answering EndTxn
    after = int(time.time() * 1000)
    hs = stored_batches(broker, topic)
    assert [bool(h[8] & 0x20) for h in hs] == [False, True]  # the data batch, then the COMMIT marker
    assert all(h[8] & ATTR_LOG_APPEND_TIME and before <= h[3] <= after for h in hs), hs
    (got,) = confluent_read(broker, topic, 1)
    assert got[1] == b"in-txn" and got[3][0] == TIMESTAMP_LOG_APPEND_TIME and before <= got[3][1] <= after


def test_a_retried_batch_is_answered_with_its_first_stamp(broker):
    """An idempotent producer's retry of a batch already appended gets the
    original offset and log_append_time_ms (Kafka answers from the
    duplicate's batch metadata), nothing appended twice."""
    topic = create_topic(broker, {"message.timestamp.type": "LogAppendTime"})
    b = bytearray(_engine.encode_batch([b"once"], timestamps=[OLD_TS]))
    struct.pack_into(">qhi", b, L.PRODUCER_ID_OFFSET, 777, 0, 0)
    struct.pack_into(">I", b, L.CRC_OFFSET, _engine.crc32c(bytes(b[L.CRC_START:])))
    first = produce_raw(broker, topic, bytes(b))
    assert first.error_code == 0 and first.log_append_time_ms > OLD_TS
    time.sleep(0.01)
    again = produce_raw(broker, topic, bytes(b))
    assert (again.error_code, again.base_offset, again.log_append_time_ms) == \
        (0, first.base_offset, first.log_append_time_ms)
    assert len(stored_batches(broker, topic)) == 1
