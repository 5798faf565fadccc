"""ACLs on the KIP-848 ConsumerGroupHeartbeat: READ on the group, and
DESCRIBE on every subscribed topic name, else the whole heartbeat fails with
TOPIC_AUTHORIZATION_FAILED (Kafka's KafkaApis; librdkafka's 0109 expects it
with group.protocol=consumer)."""
from __future__ import annotations

import uuid

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import wait_until

from .conftest import AclOperation, ResourceType, binding, ck, grant, revoke

T, G, OP = ResourceType.TOPIC, ResourceType.GROUP, AclOperation


def _make_topic(admin, topic):
    grant(admin, binding(T, topic, OP.CREATE))
    admin.create_topics([ck.admin.NewTopic(topic, 1, 1)])[topic].result()


def _join(b, group, topics):
    host, port = str(b).rsplit(":", 1)
    with Connection(host, int(port), client_id="acl-cg", timeout=30) as c:
        return c.request(m.ConsumerGroupHeartbeatRequest(
            group_id=group, member_id=uuid.uuid4().hex[:22], member_epoch=0, rebalance_timeout_ms=30000,
            subscribed_topic_names=topics, topic_partitions=[]), api_version=1)


def test_heartbeat_needs_describe_on_every_subscribed_topic(acl_broker, admin, topic):
    _make_topic(admin, topic)
    hidden = f"{topic}-hidden"
    _make_topic(admin, hidden)
    group = f"g-{uuid.uuid4().hex[:8]}"
    grant(admin, binding(G, group, OP.READ), binding(T, topic, OP.DESCRIBE))
    # One topic not described is enough, and the answer names no topic.
    r = _join(acl_broker, group, [topic, hidden])
    assert r.error_code == Errors.TOPIC_AUTHORIZATION_FAILED and r.member_epoch == 0 and r.assignment is None
    # The first join also creates __consumer_offsets: retry while the coordinator is not ready.
    busy = (Errors.NOT_COORDINATOR, Errors.COORDINATOR_NOT_AVAILABLE, Errors.COORDINATOR_LOAD_IN_PROGRESS)
    r = wait_until(lambda: (lambda r: r if r.error_code not in busy else None)(_join(acl_broker, group, [topic])),
                   what="a coordinator for the group", timeout=60)
    assert r.error_code == Errors.NONE and r.member_epoch == 1
    # Without READ on the group the group check comes first.
    assert _join(acl_broker, f"{group}-x", [topic]).error_code == Errors.GROUP_AUTHORIZATION_FAILED


def test_a_librdkafka_consumer_protocol_member_sees_the_error_then_consumes(acl_broker, admin, topic):
    _make_topic(admin, topic)
    group = f"g-{uuid.uuid4().hex[:8]}"
    grant(admin, binding(G, group, OP.READ), binding(T, topic, OP.WRITE))
    p = ck.Producer({"bootstrap.servers": str(acl_broker)})
    p.produce(topic, b"v")
    assert p.flush(30) == 0
    revoke(admin, binding(T, topic, OP.WRITE))   # WRITE implies DESCRIBE
    c = ck.Consumer({"bootstrap.servers": str(acl_broker), "group.id": group, "group.protocol": "consumer",
                     "auto.offset.reset": "earliest"})
    try:
        c.subscribe([topic])
        errors = []

        def refused():
            # The heartbeat's error is the whole subscription's: librdkafka
            # reports it without a topic (Metadata's names the topic).
            msg = c.poll(0.5)
            if msg is not None and msg.error():
                errors.append((msg.error().code(), msg.topic() or ""))
            return (ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, "") in errors
        wait_until(refused, what="TOPIC_AUTHORIZATION_FAILED from the heartbeat", timeout=60)
        grant(admin, binding(T, topic, OP.DESCRIBE), binding(T, topic, OP.READ))

        def consumed():
            msg = c.poll(0.5)
            return msg if msg is not None and not msg.error() else None
        assert wait_until(consumed, what="a record once DESCRIBE and READ are granted", timeout=90).value() == b"v"
    finally:
        c.close()


def test_describe_answers_the_principals_operations_on_the_group(acl_broker, admin, topic):
    """ConsumerGroupDescribe's authorized_operations are the principal's on
    each group, not every group operation (librdkafka's 0081
    DescribeConsumerGroups_with_authorized_ops, group.protocol=consumer)."""
    from confluent_kafka.admin import AclOperation as Op
    _make_topic(admin, topic)
    group = f"g-{uuid.uuid4().hex[:8]}"
    grant(admin, binding(G, group, OP.READ), binding(T, topic, OP.READ))
    c = ck.Consumer({"bootstrap.servers": str(acl_broker), "group.id": group, "group.protocol": "consumer"})
    try:
        c.subscribe([topic])
        wait_until(lambda: c.poll(0.2) is None and c.assignment(), what="an assignment", timeout=60)
        [d] = admin.describe_consumer_groups([group], include_authorized_operations=True,
                                             request_timeout=30).values()
        d = d.result()
        assert d.type == ck.ConsumerGroupType.CONSUMER
        assert set(d.authorized_operations) == {Op.READ, Op.DESCRIBE}
        host, port = str(acl_broker).rsplit(":", 1)
        with Connection(host, int(port), client_id="acl-cg", timeout=30) as conn:
            r = conn.request(m.ConsumerGroupDescribeRequest(group_ids=[group], include_authorized_operations=True),
                             api_version=0)
        assert r.groups[0].error_code == Errors.NONE
        assert r.groups[0].authorized_operations == (1 << 3) | (1 << 8)   # READ and the DESCRIBE it implies
    finally:
        c.close()
