"""Every client here is User:ANONYMOUS on 127.0.0.1: ACLs for it (and for
others, and for other hosts) decide what real clients (confluent-kafka,
kafka-python) may do, with Kafka's answers: produce, fetch, group join and
offset commits, topic creation and deletion, transactions, Metadata hiding
topics, authorized-operations fields."""
from __future__ import annotations

import uuid

import pytest

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import wait_until

from .conftest import (ANON, AclOperation, AclPermissionType, AdminClient, ResourcePatternType, ResourceType,
                       binding, ck, grant, revoke)

T, G, TXN = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
OP = AclOperation
DENY = AclPermissionType.DENY


def _conn(b):
    host, port = str(b).rsplit(":", 1)
    return Connection(host, int(port), client_id="acl-test", timeout=30)


def _make_topic(admin, topic):
    grant(admin, binding(T, topic, OP.CREATE))
    admin.create_topics([ck.admin.NewTopic(topic, 1, 1)])[topic].result()
    revoke(admin, binding(T, topic, OP.CREATE))


def _produce(b, topic, **conf):
    """The delivery error of one message (None: delivered)."""
    p = ck.Producer({"bootstrap.servers": str(b), "message.timeout.ms": 30000, **conf})
    out = []
    p.produce(topic, b"v", on_delivery=lambda err, msg: out.append(err))
    p.flush(60)
    return out[0] if out else "not delivered"


def _metadata(b, *names, auto=False, version=9, **kw):
    MR = m.MetadataRequest
    with _conn(b) as c:
        return c.request(MR(topics=None if not names else [MR.MetadataRequestTopic(name=n) for n in names],
                            allow_auto_topic_creation=auto, **kw), api_version=version)


def test_produce_needs_write_on_the_topic_and_deny_by_host_wins(acl_broker, admin, topic):
    _make_topic(admin, topic)
    grant(admin, binding(T, topic, OP.DESCRIBE))      # metadata answers, the Produce itself is refused
    err = _produce(acl_broker, topic)
    assert err is not None and err.code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(admin, binding(T, topic, OP.WRITE))
    assert _produce(acl_broker, topic) is None
    grant(admin, binding(T, topic, OP.WRITE, DENY, host="10.9.9.9"))   # another host: no effect here
    assert _produce(acl_broker, topic) is None
    grant(admin, binding(T, topic, OP.WRITE, DENY, host="127.0.0.1"))
    err = _produce(acl_broker, topic)
    assert err is not None and err.code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_prefixed_and_wildcard_principal_acls_apply_to_real_producers(acl_broker, admin, topic):
    _make_topic(admin, topic)
    grant(admin, binding(T, topic[:12], OP.WRITE, principal="User:*", pattern=ResourcePatternType.PREFIXED))
    assert _produce(acl_broker, topic) is None


def test_kafka_python_producer_is_refused_too(acl_broker, admin, topic):
    kafka = pytest.importorskip("kafka")
    _make_topic(admin, topic)
    grant(admin, binding(T, topic, OP.DESCRIBE))
    p = kafka.KafkaProducer(bootstrap_servers=str(acl_broker), retries=0, request_timeout_ms=30000)
    try:
        with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
            p.send(topic, b"v").get(timeout=60)
    finally:
        p.close(timeout=10)


def test_fetch_needs_read_on_the_topic(acl_broker, admin, topic):
    kafka = pytest.importorskip("kafka")
    _make_topic(admin, topic)
    grant(admin, binding(T, topic, OP.WRITE))
    assert _produce(acl_broker, topic) is None
    c = kafka.KafkaConsumer(bootstrap_servers=str(acl_broker), auto_offset_reset="earliest",
                            enable_auto_commit=False, consumer_timeout_ms=2000)
    try:
        c.assign([kafka.TopicPartition(topic, 0)])
        c.seek(kafka.TopicPartition(topic, 0), 0)
        with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
            wait_until(lambda: c.poll(timeout_ms=500), what="a refused fetch", timeout=60)
        grant(admin, binding(T, topic, OP.READ))
        got = wait_until(lambda: c.poll(timeout_ms=500), what="records fetched", timeout=60)
        assert [r.value for rs in got.values() for r in rs] == [b"v"]
    finally:
        c.close()
    # on the wire: the partition's error is TOPIC_AUTHORIZATION_FAILED
    revoke(admin, binding(T, topic, OP.READ))
    F = m.FetchRequest
    with _conn(acl_broker) as conn:
        r = conn.request(F(replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
                           topics=[F.FetchTopic(topic=topic, partitions=[F.FetchPartition(
                               partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])]), api_version=11)
    assert r.responses[0].partitions[0].error_code == Errors.TOPIC_AUTHORIZATION_FAILED


def test_group_join_needs_read_on_the_group_then_commits(acl_broker, admin, topic):
    _make_topic(admin, topic)
    group = f"g-{uuid.uuid4().hex[:8]}"
    grant(admin, binding(T, topic, OP.WRITE), binding(T, topic, OP.READ))
    assert _produce(acl_broker, topic) is None
    c = ck.Consumer({"bootstrap.servers": str(acl_broker), "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        errors = []

        def refused():
            msg = c.poll(0.5)
            if msg is not None and msg.error():
                errors.append(msg.error().code())
            return ck.KafkaError.GROUP_AUTHORIZATION_FAILED in errors
        wait_until(refused, what="GROUP_AUTHORIZATION_FAILED", timeout=60)
        grant(admin, binding(G, group, OP.READ))

        def consumed():
            msg = c.poll(0.5)
            return msg if msg is not None and not msg.error() else None
        msg = wait_until(consumed, what="a record through the group", timeout=90)
        assert msg.value() == b"v"
        c.commit(message=msg, asynchronous=False)
        [tp] = c.committed([ck.TopicPartition(topic, 0)], timeout=30)
        assert tp.offset == 1
    finally:
        c.close()


def _find_coordinator(b, group):
    with _conn(b) as c:
        return c.request(m.FindCoordinatorRequest(key=group, key_type=0), api_version=3).error_code == 0


def test_offset_commit_needs_read_on_group_and_topic(acl_broker, admin, topic):
    _make_topic(admin, topic)
    group = f"g-{uuid.uuid4().hex[:8]}"
    OC = m.OffsetCommitRequest

    def commit():
        with _conn(acl_broker) as c:
            r = c.request(OC(group_id=group, generation_id_or_member_epoch=-1, member_id="", topics=[
                OC.OffsetCommitRequestTopic(name=topic, partitions=[
                    OC.OffsetCommitRequestPartition(partition_index=0, committed_offset=0)])]), api_version=8)
        return r.topics[0].partitions[0].error_code
    assert commit() == Errors.GROUP_AUTHORIZATION_FAILED
    grant(admin, binding(G, group, OP.READ))
    assert commit() == Errors.TOPIC_AUTHORIZATION_FAILED
    grant(admin, binding(T, topic, OP.READ))
    # (the broker's first group: NOT_COORDINATOR until FindCoordinator has made __consumer_offsets)
    wait_until(lambda: _find_coordinator(acl_broker, group) and commit() == 0, what="the offset committed")
    # OffsetFetch: DESCRIBE on the group (READ implies it), topics without DESCRIBE left out
    OF = m.OffsetFetchRequest
    with _conn(acl_broker) as c:
        r = c.request(OF(group_id=group, topics=None), api_version=7)
        assert r.error_code == 0 and [t.name for t in r.topics] == [topic]
        revoke(admin, binding(T, topic, OP.READ))
        r = c.request(OF(group_id=group, topics=None), api_version=7)
        assert r.topics == []
        r = c.request(OF(group_id=group, topics=[OF.OffsetFetchRequestTopic(name=topic, partition_indexes=[0])]),
                      api_version=7)
        assert r.topics[0].partitions[0].error_code == Errors.TOPIC_AUTHORIZATION_FAILED
        r = c.request(OF(group_id="not-mine", topics=None), api_version=7)
        assert r.error_code == Errors.GROUP_AUTHORIZATION_FAILED
        # v8+: several groups, each answered on its own
        G8 = OF.OffsetFetchRequestGroup
        r = c.request(OF(groups=[G8(group_id=group, topics=[OF.OffsetFetchRequestTopics(
            name=topic, partition_indexes=[0])]), G8(group_id="not-mine", topics=None)]), api_version=8)
        by_group = {g.group_id: g for g in r.groups}
        assert by_group["not-mine"].error_code == Errors.GROUP_AUTHORIZATION_FAILED
        assert by_group[group].error_code == 0
        assert by_group[group].topics[0].partitions[0].error_code == Errors.TOPIC_AUTHORIZATION_FAILED
        grant(admin, binding(T, topic, OP.DESCRIBE))
        r = c.request(OF(groups=[G8(group_id=group, topics=None)]), api_version=8)
        [g] = r.groups
        assert [(t.name, t.partitions[0].committed_offset) for t in g.topics] == [(topic, 0)]


def test_topic_creation_and_deletion_need_create_and_delete(acl_broker, admin, topic):
    f = admin.create_topics([ck.admin.NewTopic(topic, 1, 1)])[topic]
    with pytest.raises(ck.KafkaException) as e:
        f.result()
    assert e.value.args[0].code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(admin, binding(T, topic[:8], OP.CREATE, pattern=ResourcePatternType.PREFIXED))
    admin.create_topics([ck.admin.NewTopic(topic, 1, 1)])[topic].result()
    with pytest.raises(ck.KafkaException) as e:
        admin.delete_topics([topic])[topic].result()
    assert e.value.args[0].code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED
    grant(admin, binding(T, topic, OP.DELETE))
    admin.delete_topics([topic])[topic].result()


def test_metadata_hides_topics_without_describe_and_refuses_named_ones(acl_broker, admin, topic):
    _make_topic(admin, topic)
    hidden = f"{topic}-hidden"
    _make_topic(admin, hidden)
    grant(admin, binding(T, topic, OP.DESCRIBE))
    listed = set(AdminClient({"bootstrap.servers": str(acl_broker)}).list_topics(timeout=30).topics)
    assert topic in listed and hidden not in listed
    r = _metadata(acl_broker, topic, hidden)
    assert {t.name: t.error_code for t in r.topics} == {topic: 0, hidden: Errors.TOPIC_AUTHORIZATION_FAILED}
    # a name that does not exist is refused the same way (nothing leaks)
    r = _metadata(acl_broker, f"{topic}-nope")
    assert r.topics[0].error_code == Errors.TOPIC_AUTHORIZATION_FAILED
    # auto-creation needs CREATE as well as DESCRIBE
    auto = f"{topic}-auto"
    grant(admin, binding(T, auto, OP.DESCRIBE))
    assert _metadata(acl_broker, auto, auto=True).topics[0].error_code == Errors.TOPIC_AUTHORIZATION_FAILED
    grant(admin, binding(T, auto, OP.CREATE))
    wait_until(lambda: _metadata(acl_broker, auto, auto=True).topics[0].error_code == 0,
               what="the topic created on demand")
    # authorized operations: this principal's, per topic
    r = _metadata(acl_broker, topic, version=10, include_topic_authorized_operations=True,
                  include_cluster_authorized_operations=True)
    assert r.topics[0].topic_authorized_operations == 1 << 8      # DESCRIBE only
    assert r.cluster_authorized_operations == (1 << 7) | (1 << 8)  # ALTER, DESCRIBE (the admin ACLs)


def test_describe_cluster_and_groups_answer_authorized_operations(acl_broker, admin):
    group = f"g-{uuid.uuid4().hex[:8]}"
    with _conn(acl_broker) as c:
        r = c.request(m.DescribeClusterRequest(include_cluster_authorized_operations=True), api_version=1)
        assert r.cluster_authorized_operations == (1 << 7) | (1 << 8)
        r = c.request(m.DescribeGroupsRequest(groups=[group], include_authorized_operations=True), api_version=5)
        assert r.groups[0].error_code == Errors.GROUP_AUTHORIZATION_FAILED
        grant(admin, binding(G, group, OP.READ))
        r = c.request(m.DescribeGroupsRequest(groups=[group], include_authorized_operations=True), api_version=5)
        assert r.groups[0].error_code == 0
        assert r.groups[0].authorized_operations == (1 << 3) | (1 << 8)   # READ and the DESCRIBE it implies


def test_transactions_need_write_on_the_transactional_id(acl_broker, admin, topic):
    _make_topic(admin, topic)
    txn = f"txn-{uuid.uuid4().hex[:8]}"
    grant(admin, binding(T, topic, OP.WRITE))

    def producer():
        return ck.Producer({"bootstrap.servers": str(acl_broker), "transactional.id": txn,
                            "transaction.timeout.ms": 60000})
    p = producer()
    with pytest.raises(ck.KafkaException) as e:
        p.init_transactions(60)
    assert e.value.args[0].code() == ck.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    del p
    grant(admin, binding(TXN, txn, OP.WRITE))
    p = producer()
    p.init_transactions(60)
    p.begin_transaction()
    p.produce(topic, b"in-txn")
    p.commit_transaction(60)
    # the transactional id's WRITE without WRITE on one topic: AddPartitionsToTxn
    # refuses that topic and does not attempt the others (Kafka's answer)
    A = m.AddPartitionsToTxnRequest
    other = f"{topic}-other"
    with _conn(acl_broker) as c:
        r = c.request(A(v3_and_below_transactional_id=txn, v3_and_below_producer_id=0, v3_and_below_producer_epoch=0,
                        v3_and_below_topics=[A.AddPartitionsToTxnTopic(name=topic, partitions=[0]),
                                             A.AddPartitionsToTxnTopic(name=other, partitions=[0])]), api_version=3)
        codes = {t.name: t.results_by_partition[0].partition_error_code for t in r.results_by_topic_v3_and_below}
        assert codes == {topic: Errors.OPERATION_NOT_ATTEMPTED, other: Errors.TOPIC_AUTHORIZATION_FAILED}
        r = c.request(A(v3_and_below_transactional_id="not-mine", v3_and_below_producer_id=0,
                        v3_and_below_producer_epoch=0,
                        v3_and_below_topics=[A.AddPartitionsToTxnTopic(name=topic, partitions=[0])]), api_version=3)
        assert r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == \
            Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        r = c.request(m.FindCoordinatorRequest(key="not-mine", key_type=1), api_version=3)
        assert r.error_code == Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_idempotent_producer_needs_idempotent_write_or_write_on_some_topic(tmp_path):
    from pylog.testing import running_broker

    from .conftest import ADMIN_ACLS, AUTHZ
    data = str(tmp_path / "d")
    with running_broker(data_dir=data, config={**AUTHZ, "super.users": ANON}) as b:
        grant(AdminClient({"bootstrap.servers": str(b)}), *ADMIN_ACLS)
    with running_broker(data_dir=data, config=AUTHZ) as b:
        def init():
            with _conn(b) as c:
                return c.request(m.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=1),
                                 api_version=4).error_code
        assert init() == Errors.CLUSTER_AUTHORIZATION_FAILED
        admin = AdminClient({"bootstrap.servers": str(b)})
        grant(admin, binding(T, "any-topic", OP.WRITE))        # KIP-679: WRITE on some topic is enough
        assert init() == 0
        revoke(admin, binding(T, "any-topic", OP.WRITE))
        assert init() == Errors.CLUSTER_AUTHORIZATION_FAILED
        grant(admin, binding(ResourceType.BROKER, "kafka-cluster", OP.IDEMPOTENT_WRITE))
        assert init() == 0


def test_allow_everyone_if_no_acl_found(tmp_path):
    from pylog.testing import running_broker

    from .conftest import AUTHZ
    with running_broker(data_dir=str(tmp_path / "d"),
                        config={**AUTHZ, "allow.everyone.if.no.acl.found": "true"}) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        admin.create_topics([ck.admin.NewTopic("open", 1, 1), ck.admin.NewTopic("guarded", 1, 1)])["open"].result()
        wait_until(lambda: "guarded" in admin.list_topics(timeout=30).topics, what="both topics")
        # an ACL on "guarded" for someone else: no longer open to everyone
        grant(admin, binding(T, "guarded", OP.WRITE, principal="User:bob"))
        assert _produce(b, "open") is None
        err = _produce(b, "guarded")
        assert err is not None and err.code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_produce_with_a_transactional_id_needs_write_on_it(acl_broker, admin, topic):
    """A request with transactional batches: Kafka refuses it whole with
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED before looking at topics; other
    requests have each topic checked on its own."""
    import struct

    from pylog import _engine, crc32c
    _make_topic(admin, topic)
    grant(admin, binding(T, topic, OP.WRITE))
    P = m.ProduceRequest
    batch = _engine.encode_batch([b"v"])
    txn_batch = bytearray(batch)
    struct.pack_into(">h", txn_batch, 21, struct.unpack_from(">h", txn_batch, 21)[0] | 0x10)   # transactional
    struct.pack_into(">I", txn_batch, 17, crc32c(bytes(txn_batch[21:])))

    def produce(txn_id, topics, records=batch):
        with _conn(acl_broker) as c:
            r = c.request(P(transactional_id=txn_id, acks=1, timeout_ms=30000, topic_data=[
                P.TopicProduceData(name=t, partition_data=[P.PartitionProduceData(index=0, records=records)])
                for t in topics]), api_version=9)
        return {t.name: t.partition_responses[0].error_code for t in r.responses}
    assert produce("not-mine", [topic], bytes(txn_batch)) == {topic: Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
    # the id without transactional batches: not checked (Kafka looks at the batches)
    assert produce("not-mine", [topic]) == {topic: 0}
    assert produce(None, [topic, f"{topic}-no"]) == {topic: 0, f"{topic}-no": Errors.TOPIC_AUTHORIZATION_FAILED}
