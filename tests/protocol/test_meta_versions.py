"""Metadata 0-12, ListOffsets 1-9, Produce 9-11 and DescribeCluster 0-1 as
Apache Kafka 4.x serves them (issue 17), against a real broker over real
sockets: raw requests through pylog's wire client at the exact versions, the
answers decoded by the generated codecs, and real clients (confluent-kafka,
kafka-python, aiokafka) that now pick the new versions and run KIP-320
leader-epoch validation against them.
"""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pylog import _engine
from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker, wait_until

NOT_ASKED = -(1 << 31)
ZERO = uuid.UUID(int=0)
MR = m.MetadataRequest
LR = m.ListOffsetsRequest


@pytest.fixture(scope="module")
def broker():
    with running_broker(config={"num.partitions": "2"}) as b:
        yield b


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create(bootstrap, name, partitions):
    a = admin(bootstrap)  # kept alive until the answer: its futures end with it
    for f in a.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(30)


def delete(bootstrap, name):
    a = admin(bootstrap)
    for f in a.delete_topics([name]).values():
        f.result(30)


def produce(bootstrap, topic, n, partition=0, **conf):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, **conf})
    for i in range(n):
        p.produce(topic, value=b"v%d" % i, partition=partition, timestamp=1_000_000 + i)
    assert p.flush(30) == 0


def metadata(bootstrap, version, topics, **kw):
    """version None: the broker's highest, up to 12."""
    host, port = bootstrap.rsplit(":", 1)
    with Connection(host, int(port)) as conn:
        if version is None:
            version = min(12, conn.api_versions[3][1])
        return conn.request(MR(topics=topics, allow_auto_topic_creation=False, **kw), api_version=version)


def exists(bootstrap, name):
    return metadata(bootstrap, None, [MR.MetadataRequestTopic(name=name)]).topics[0].error_code == 0


def leader_epoch(broker, topic, index=0):
    """The partition's leader epoch on the broker, once it leads it (its
    LeaderAndIsr may be applied just after CreateTopics is answered)."""
    hosted = broker.broker.log_manager.partitions
    wait_until(lambda: (topic, index) in hosted and hosted[topic, index].leader_epoch >= 0, "a leader epoch")
    return hosted[topic, index].leader_epoch


def topic_id(bootstrap, name):
    resp = metadata(bootstrap, 12, [MR.MetadataRequestTopic(name=name)])
    t = resp.topics[0]
    return t.topic_id if t.error_code == 0 else None


def test_advertised_versions(broker):
    host, port = broker.rsplit(":", 1)
    with Connection(host, int(port)) as conn:
        assert conn.api_versions[3] == (0, 12)
        assert conn.api_versions[2] == (1, 9)
        assert conn.api_versions[0] == (0, 11)
        assert conn.api_versions[60] == (0, 1)


@pytest.mark.parametrize("version", [7, 8, 9, 10, 11, 12])
def test_metadata_carries_leader_epochs_ids_and_operations(broker, topic, version):
    create(broker, topic, 2)
    resp = metadata(broker, version, [MR.MetadataRequestTopic(name=topic)])
    t = resp.topics[0]
    assert t.error_code == 0 and t.name == topic
    assert [p.leader_epoch for p in t.partitions] == [leader_epoch(broker, topic)] * 2
    if version >= 8:
        assert t.topic_authorized_operations == NOT_ASKED
    if 8 <= version <= 10:
        assert resp.cluster_authorized_operations == NOT_ASKED
    if version >= 10:
        assert t.topic_id != ZERO


def test_authorized_operations_when_asked(broker, topic):
    """No authorizer: every operation a topic (cluster) supports, as Kafka's
    AuthHelper answers: READ WRITE CREATE DELETE ALTER DESCRIBE
    DESCRIBE_CONFIGS ALTER_CONFIGS for a topic."""
    create(broker, topic, 1)
    resp = metadata(broker, 10, [MR.MetadataRequestTopic(name=topic)],
                    include_topic_authorized_operations=True, include_cluster_authorized_operations=True)
    ops = resp.topics[0].topic_authorized_operations
    assert sorted(i for i in range(32) if ops >> i & 1) == [3, 4, 5, 6, 7, 8, 10, 11]
    cops = resp.cluster_authorized_operations
    assert sorted(i for i in range(32) if cops >> i & 1) == [5, 7, 8, 9, 10, 11, 12]


def test_metadata_v12_looks_topics_up_by_id(broker, topic):
    create(broker, topic, 2)
    tid = topic_id(broker, topic)
    unknown = uuid.uuid4()
    resp = metadata(broker, 12, [MR.MetadataRequestTopic(topic_id=tid, name=None),
                                 MR.MetadataRequestTopic(topic_id=unknown, name=None)])
    by_id = {t.topic_id: t for t in resp.topics}
    assert by_id[tid].error_code == 0 and by_id[tid].name == topic and len(by_id[tid].partitions) == 2
    assert by_id[unknown].error_code == Errors.UNKNOWN_TOPIC_ID and by_id[unknown].name is None


@pytest.mark.parametrize("version", [10, 11])
def test_metadata_before_v12_refuses_ids(broker, topic, version):
    create(broker, topic, 1)
    tid = topic_id(broker, topic)
    resp = metadata(broker, version, [MR.MetadataRequestTopic(topic_id=tid, name=topic)])
    assert [t.error_code for t in resp.topics] == [Errors.INVALID_REQUEST]


def test_a_recreated_topic_gets_a_new_id(broker, topic):
    create(broker, topic, 3)
    first = topic_id(broker, topic)
    delete(broker, topic)
    wait_until(lambda: topic_id(broker, topic) is None, "the topic gone")
    create(broker, topic, 1)
    second = wait_until(lambda: topic_id(broker, topic), "the topic back")
    assert second not in (ZERO, first)
    # The old id names nothing any more.
    resp = metadata(broker, 12, [MR.MetadataRequestTopic(topic_id=first, name=None)])
    assert resp.topics[0].error_code == Errors.UNKNOWN_TOPIC_ID


def list_offsets(bootstrap, version, topic, timestamp, current_leader_epoch=-1, isolation=0):
    host, port = bootstrap.rsplit(":", 1)
    with Connection(host, int(port)) as conn:
        resp = conn.request(LR(replica_id=-1, isolation_level=isolation, topics=[LR.ListOffsetsTopic(
            name=topic, partitions=[LR.ListOffsetsPartition(partition_index=0, timestamp=timestamp,
                                                            current_leader_epoch=current_leader_epoch)])]),
                            api_version=version)
    return resp.topics[0].partitions[0]


def test_list_offsets_special_timestamps_and_epochs(broker, topic):
    create(broker, topic, 1)
    produce(broker, topic, 5)
    epoch = leader_epoch(broker, topic)
    latest = list_offsets(broker, 9, topic, -1)
    assert (latest.error_code, latest.offset, latest.leader_epoch) == (0, 5, epoch)
    earliest = list_offsets(broker, 9, topic, -2)
    assert (earliest.error_code, earliest.offset, earliest.timestamp, earliest.leader_epoch) == (0, 0, -1, epoch)
    local = list_offsets(broker, 9, topic, -4)   # EARLIEST_LOCAL: earliest, nothing is tiered
    assert (local.error_code, local.offset, local.leader_epoch) == (0, 0, epoch)
    tiered = list_offsets(broker, 9, topic, -5)  # LATEST_TIERED: none
    assert (tiered.error_code, tiered.offset, tiered.timestamp, tiered.leader_epoch) == (0, -1, -1, -1)
    top = list_offsets(broker, 9, topic, -3)     # MAX_TIMESTAMP: the record with the largest timestamp
    assert (top.error_code, top.offset, top.timestamp, top.leader_epoch) == (0, 4, 1_000_004, epoch)
    at = list_offsets(broker, 9, topic, 1_000_002)
    assert (at.error_code, at.offset, at.timestamp, at.leader_epoch) == (0, 2, 1_000_002, epoch)
    none = list_offsets(broker, 9, topic, 2_000_000)
    assert (none.error_code, none.offset, none.leader_epoch) == (0, -1, -1)


@pytest.mark.parametrize("version", [4, 6, 9])
def test_list_offsets_checks_the_current_leader_epoch(broker, topic, version):
    create(broker, topic, 1)
    epoch = leader_epoch(broker, topic)
    assert list_offsets(broker, version, topic, -1, epoch).error_code == 0
    assert list_offsets(broker, version, topic, -1, epoch + 1).error_code == Errors.UNKNOWN_LEADER_EPOCH
    if epoch > 0:
        assert list_offsets(broker, version, topic, -1, epoch - 1).error_code == Errors.FENCED_LEADER_EPOCH


def test_produce_flexible_versions(broker, topic):
    """Produce v9-v11 (flexible) through the hand-written codec: appended, answered."""
    create(broker, topic, 1)
    host, port = broker.rsplit(":", 1)
    P = m.ProduceRequest
    with Connection(host, int(port)) as conn:
        for version in (9, 10, 11):
            batch = bytes(_engine.encode_batch([b"x%d" % version]))
            resp = conn.request(P(transactional_id=None, acks=1, timeout_ms=10000, topic_data=[
                P.TopicProduceData(name=topic, partition_data=[P.PartitionProduceData(index=0, records=batch)])]),
                api_version=version)
            part = resp.responses[0].partition_responses[0]
            assert (part.error_code, part.base_offset) == (0, version - 9)
            # No leader change: no KIP-951 fields.
            assert part.current_leader.leader_id == -1 and resp.node_endpoints == []
        resp = conn.request(P(transactional_id=None, acks=1, timeout_ms=10000, topic_data=[
            P.TopicProduceData(name=topic, partition_data=[P.PartitionProduceData(index=7, records=batch)])]),
            api_version=11)
        assert resp.responses[0].partition_responses[0].error_code == Errors.UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.parametrize("version", [0, 1])
def test_describe_cluster(broker, version):
    host, port = broker.rsplit(":", 1)
    D = m.DescribeClusterRequest
    with Connection(host, int(port)) as conn:
        resp = conn.request(D(include_cluster_authorized_operations=False), api_version=version)
        assert resp.error_code == 0
        assert [(b.broker_id, b.host, b.port) for b in resp.brokers] == [(broker.broker.broker_id, host, int(port))]
        assert resp.controller_id == broker.broker.broker_id
        assert resp.cluster_id == broker.broker.log_manager.cluster_id
        assert resp.cluster_authorized_operations == NOT_ASKED
        if version == 1:
            bad = conn.request(D(include_cluster_authorized_operations=False, endpoint_type=2), api_version=1)
            assert bad.error_code == Errors.MISMATCHED_ENDPOINT_TYPE and bad.brokers == []


def test_confluent_admin_describe_cluster(broker):
    a = admin(broker)
    desc = a.describe_cluster(include_authorized_operations=True).result(30)
    assert [n.id for n in desc.nodes] == [broker.broker.broker_id]
    assert desc.controller.id == broker.broker.broker_id
    assert desc.authorized_operations


def test_confluent_consumer_validates_offsets_with_leader_epochs(broker, topic):
    """librdkafka sees leader epochs (Metadata v12), validates its position
    with OffsetForLeaderEpoch and fetches with current_leader_epoch: every
    record arrives once, in order, with its leader epoch."""
    create(broker, topic, 1)
    produce(broker, topic, 20)
    # Which requests librdkafka sends, seen where the broker dispatches them.
    table = broker.broker.handlers.table
    seen = []
    serve_epochs, serve_fetch = table[23], table[1]

    def epochs(header, req):
        seen.append(("epochs", header.request_api_version,
                     [(t.topic, p.partition, p.current_leader_epoch, p.leader_epoch)
                      for t in req.topics for p in t.partitions]))
        return serve_epochs(header, req)

    def fetch(header, req):
        seen.append(("fetch", header.request_api_version,
                     [p.current_leader_epoch for t in req.topics for p in t.partitions
                      # by name, or by id from Fetch v13 (librdkafka uses ids once Metadata has them)
                      if t.topic == topic or getattr(t, "topic_id", None) == broker.broker.metadata_cache.topic_id(topic)]))
        return serve_fetch(header, req)
    table[23], table[1] = epochs, fetch
    c = Consumer({"bootstrap.servers": broker, "group.id": topic, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        # A position with its leader epoch (as a committed offset carries it):
        # librdkafka validates it before fetching.
        epoch = leader_epoch(broker, topic)
        c.assign([TopicPartition(topic, 0, 3, leader_epoch=epoch)])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 17 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                got.append((msg.offset(), msg.leader_epoch()))
        epoch = leader_epoch(broker, topic)
        assert got == [(o, epoch) for o in range(3, 20)]
    finally:
        c.close()
        table[23], table[1] = serve_epochs, serve_fetch
    # KIP-320: the position validated with OffsetForLeaderEpoch (librdkafka
    # sends v2), then fetched with the leader epoch the Metadata named.
    asked = [e for e in seen if e[0] == "epochs" and any(t == topic for t, *_ in e[2])]
    assert asked and asked[0][1] == 2, seen
    assert any(e[0] == "fetch" and e[2] == [epoch] for e in seen)


def test_librdkafka_producer_forgets_partitions_of_a_recreated_topic(broker, topic):
    """librdkafka test 0107's scenario: a producer knows 4 partitions; the
    topic is deleted and re-created with 2. Only a new topic id makes
    librdkafka shrink its partition count: messages for partitions 2 and 3
    then fail (unknown partition) instead of staying queued for ever."""
    create(broker, topic, 4)
    p = Producer({"bootstrap.servers": broker, "linger.ms": 0, "topic.metadata.refresh.interval.ms": 500,
                  "message.timeout.ms": 300000})
    for part in range(4):
        p.produce(topic, value=b"before", partition=part)
    assert p.flush(30) == 0
    delete(broker, topic)
    wait_until(lambda: not exists(broker, topic), "the topic gone")
    create(broker, topic, 2)
    wait_until(lambda: exists(broker, topic), "the topic back")
    results = []
    for part in range(4):
        p.produce(topic, value=b"after", partition=part,
                  on_delivery=lambda err, msg, part=part: results.append((part, err)))
    # message.timeout.ms is 5 minutes: a flush that returns within the wait
    # below means no message stayed queued for a vanished partition.
    remaining = p.flush(120)
    assert remaining == 0, f"{remaining} message(s) still queued: {results}"
    by_part = dict(results)
    assert by_part[0] is None and by_part[1] is None
    assert by_part[2].code() == KafkaError._UNKNOWN_PARTITION
    assert by_part[3].code() == KafkaError._UNKNOWN_PARTITION


def test_librdkafka_all_topics_metadata_v12(broker, topic):
    """librdkafka writes Metadata v9+'s null topic array as a 4-byte
    placeholder (its issue #5049; bytes captured from confluent-kafka 2.16's
    list_topics()). Kafka reads a null array then false, false, no tags and
    ignores the 3 bytes left: so does pylog, and list_topics works."""
    from pylog.protocol.framing import decode_request
    frame = bytes.fromhex("0003000c00000003000772646b61666b610000000000010000")
    header, req = decode_request(frame)
    assert (header.request_api_key, header.request_api_version, header.client_id) == (3, 12, "rdkafka")
    assert req.topics is None and req.allow_auto_topic_creation is False
    assert req.include_topic_authorized_operations is False
    create(broker, topic, 2)
    a = admin(broker)
    md = a.list_topics(timeout=30)
    assert len(md.topics[topic].partitions) == 2


class _Seen:
    """The (api key, version) of every request the broker dispatches, recorded
    where it dispatches them (Produce has its own path)."""

    def __init__(self, broker, keys=(2, 3)):
        self.h = broker.broker.handlers
        self.got = set()
        self.saved = {k: self.h.table[k] for k in keys}
        for k, serve in self.saved.items():
            self.h.table[k] = self._wrap(k, serve)
        self.produce = self.h.produce

        def produce(frame, *a):
            self.got.add((0, int.from_bytes(bytes(frame[2:4]), "big", signed=True)))
            return self.produce(frame, *a)
        self.h.produce = produce

    def _wrap(self, key, serve):
        def handler(header, req):
            self.got.add((key, header.request_api_version))
            return serve(header, req)
        return handler

    def close(self):
        self.h.table.update(self.saved)
        del self.h.produce


def test_kafka_python_speaks_the_new_versions(broker, topic):
    """kafka-python 3.0.12: a flexible Produce (v9, its choice here; through
    the hand-written codec), Metadata v12, ListOffsets v9; its records come
    back whole."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    create(broker, topic, 1)
    seen = _Seen(broker)
    try:
        p = KafkaProducer(bootstrap_servers=broker, acks="all")
        for i in range(5):
            p.send(topic, value=b"kp%d" % i, partition=0).get(timeout=30)
        p.close()
        c = KafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest", enable_auto_commit=False)
        c.assign([KTP(topic, 0)])
        c.seek_to_end(KTP(topic, 0))
        assert c.position(KTP(topic, 0)) == 5
        c.seek(KTP(topic, 0), 0)
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 5 and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500).values():
                got += [r.value for r in recs]
        c.close()
    finally:
        seen.close()
    assert got == [b"kp%d" % i for i in range(5)]
    assert {(3, 12), (2, 9)} <= seen.got and any(k == 0 and v >= 9 for k, v in seen.got), seen.got


def test_aiokafka_keeps_its_versions(broker, topic):
    """aiokafka 0.14 implements Produce up to 7, Metadata up to 5, ListOffsets
    up to 3: the wider ranges leave it on those."""
    import asyncio
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition as ATP
    create(broker, topic, 1)
    seen = _Seen(broker)

    async def run():
        p = AIOKafkaProducer(bootstrap_servers=broker)
        await p.start()
        try:
            for i in range(3):
                await p.send_and_wait(topic, b"aio%d" % i, partition=0)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=broker, auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        try:
            c.assign([ATP(topic, 0)])
            await c.seek_to_beginning(ATP(topic, 0))
            got = []
            while len(got) < 3:
                msg = await asyncio.wait_for(c.getone(), 60)
                got.append(msg.value)
            return got
        finally:
            await c.stop()
    try:
        got = asyncio.run(run())
    finally:
        seen.close()
    assert got == [b"aio%d" % i for i in range(3)]
    assert {(0, 7), (3, 5), (2, 3)} <= seen.got, seen.got
