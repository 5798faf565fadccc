"""One group id is one group of one type, as in Kafka's GroupMetadataManager:
a share group (KIP-932) refuses the classic and KIP-848 protocols and their
offset commits, a classic or consumer group refuses share members, each
describe API answers for a group of another type as Kafka does, and an id is
free for another type once its group is deleted. Real broker, raw requests
over a socket and unmodified confluent-kafka clients."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker, wait_until

from tests.share import wire as sw
from tests.groups import kip848

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def broker():
    from tests.groups.conftest import GROUP_CONFIG
    with running_broker(config={**GROUP_CONFIG, **sw.CONFIG}) as b:
        yield b


@pytest.fixture
def conn(broker):
    c = sw.connect(broker)
    yield c
    c.close()


def names():
    u = uuid.uuid4().hex[:8]
    return f"gt-topic-{u}", f"gt-group-{u}"


def share_join(conn, group, topic):
    mid = sw.member_id()
    r = sw.heartbeat(conn, group, mid, 0, [topic])
    assert r.error_code == Errors.NONE, r
    return mid, r.member_epoch


def join_classic(conn, group, version=5):
    req = m.JoinGroupRequest(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="",
                             protocol_type="consumer",
                             protocols=[m.JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"")])
    return conn.request(req, api_version=version)


def commit(conn, group, topic, version, generation=-1):
    R = m.OffsetCommitRequest
    req = R(group_id=group, generation_id_or_member_epoch=generation, member_id="", topics=[
        R.OffsetCommitRequestTopic(name=topic, partitions=[
            R.OffsetCommitRequestPartition(partition_index=0, committed_offset=1, committed_metadata="")])])
    r = conn.request(req, api_version=version)
    return [p.error_code for t in r.topics for p in t.partitions]


def txn_commit_error(b, group, topic):
    """The error of a transactional producer's send_offsets_to_transaction for group."""
    p = Producer({"bootstrap.servers": str(b), "transactional.id": f"gt-txn-{uuid.uuid4().hex[:8]}"})
    c = Consumer({"bootstrap.servers": str(b), "group.id": group})
    try:
        p.init_transactions(30)
        p.begin_transaction()
        try:
            p.send_offsets_to_transaction([TopicPartition(topic, 0, 1)], c.consumer_group_metadata(), 30)
        except KafkaException as e:
            return e.args[0].code()
        return KafkaError.NO_ERROR
    finally:
        c.close()


def listed_types(conn, group):
    r = conn.request(m.ListGroupsRequest(states_filter=[], types_filter=[]), api_version=5)
    return [(g.group_type, g.protocol_type) for g in r.groups if g.group_id == group]


def delete_group(b, group):
    a = AdminClient({"bootstrap.servers": str(b)})
    a.delete_consumer_groups([group], request_timeout=30)[group].result(30)


def test_a_share_group_refuses_the_classic_and_consumer_protocols(broker, conn):
    topic, group = names()
    sw.create_topic(broker, topic)
    mid, epoch = share_join(conn, group, topic)

    r = kip848.heartbeat(conn, group, kip848.member_id(), 0, [topic])
    assert (r.error_code, r.error_message) == (Errors.GROUP_ID_NOT_FOUND, f"Group {group} is not a consumer group.")
    r = kip848.heartbeat(conn, group, kip848.member_id(), -1, retry=False)
    assert (r.error_code, r.error_message) == (Errors.GROUP_ID_NOT_FOUND, f"Group {group} is not a consumer group.")

    r = join_classic(conn, group)
    assert (r.error_code, r.member_id) == (Errors.INCONSISTENT_GROUP_PROTOCOL, "")
    r = conn.request(m.SyncGroupRequest(group_id=group, generation_id=1, member_id=mid, assignments=[]),
                     api_version=3)
    assert r.error_code == Errors.UNKNOWN_MEMBER_ID
    r = conn.request(m.HeartbeatRequest(group_id=group, generation_id=1, member_id=mid), api_version=3)
    assert r.error_code == Errors.UNKNOWN_MEMBER_ID
    r = conn.request(m.LeaveGroupRequest(group_id=group, member_id=mid), api_version=2)
    assert r.error_code == Errors.UNKNOWN_MEMBER_ID
    D = m.OffsetDeleteRequest
    r = conn.request(D(group_id=group, topics=[D.OffsetDeleteRequestTopic(
        name=topic, partitions=[D.OffsetDeleteRequestPartition(partition_index=0)])]), api_version=0)
    assert r.error_code == Errors.GROUP_ID_NOT_FOUND

    # Kafka's ShareGroup.validateOffsetCommit, in every version; no simple
    # classic group appears beside the share group.
    assert commit(conn, group, topic, 9) == [Errors.GROUP_ID_NOT_FOUND]
    assert commit(conn, group, topic, 8) == [Errors.GROUP_ID_NOT_FOUND]
    assert txn_commit_error(broker, group, topic) == KafkaError.GROUP_ID_NOT_FOUND
    assert listed_types(conn, group) == [("share", "share")]

    # OffsetFetch answers as for a group without offsets.
    R = m.OffsetFetchRequest
    r = conn.request(R(group_id=group, topics=[R.OffsetFetchRequestTopic(name=topic, partition_indexes=[0])]),
                     api_version=7)
    assert r.error_code == Errors.NONE
    assert [(p.committed_offset, p.error_code) for t in r.topics for p in t.partitions] == [(-1, Errors.NONE)]

    # The member stays a member of its share group.
    r = sw.heartbeat(conn, group, mid, epoch)
    assert r.error_code == Errors.NONE


def test_each_describe_answers_for_a_group_of_another_type(broker, conn):
    topic, group = names()
    sw.create_topic(broker, topic)
    share_join(conn, group, topic)
    d = kip848.describe(conn, group)
    assert (d.error_code, d.error_message) == (Errors.GROUP_ID_NOT_FOUND, f"Group {group} is not a consumer group.")
    # DescribeGroups (v5 at most here, as Kafka before v6): not a classic group, so Dead.
    r = conn.request(m.DescribeGroupsRequest(groups=[group]), api_version=5)
    assert [(g.error_code, g.group_state, g.members) for g in r.groups] == [(Errors.NONE, "Dead", [])]

    cgroup = group + "-848"
    r = kip848.heartbeat(conn, cgroup, kip848.member_id(), 0, [topic])
    assert r.error_code == Errors.NONE
    d = conn.request(m.ShareGroupDescribeRequest(group_ids=[cgroup]), api_version=1).groups[0]
    assert (d.error_code, d.error_message) == (Errors.GROUP_ID_NOT_FOUND, f"Group {cgroup} is not a share group.")
    d = conn.request(m.ShareGroupDescribeRequest(group_ids=[cgroup + "-none"]), api_version=1).groups[0]
    assert (d.error_code, d.error_message) == (Errors.GROUP_ID_NOT_FOUND, f"Group {cgroup}-none not found.")


def test_classic_and_consumer_groups_refuse_share_members(broker, conn):
    topic, group = names()
    sw.create_topic(broker, topic)
    r = kip848.heartbeat(conn, group, kip848.member_id(), 0, [topic])
    assert r.error_code == Errors.NONE
    r = sw.heartbeat(conn, group, sw.member_id(), 0, [topic])
    assert (r.error_code, r.error_message) == (Errors.GROUP_ID_NOT_FOUND, f"Group {group} is not a share group.")

    # An empty classic group holding offsets (a simple group) is a group too:
    # Kafka converts only to a consumer group, never to a share group.
    simple = group + "-simple"
    assert commit(conn, simple, topic, 9) == [Errors.NONE]
    r = sw.heartbeat(conn, simple, sw.member_id(), 0, [topic])
    assert (r.error_code, r.error_message) == (Errors.GROUP_ID_NOT_FOUND, f"Group {simple} is not a share group.")
    delete_group(broker, simple)
    r = sw.heartbeat(conn, simple, sw.member_id(), 0, [topic])
    assert r.error_code == Errors.NONE
    assert listed_types(conn, simple) == [("share", "share")]


def test_a_deleted_share_group_frees_its_id_for_a_classic_consumer(broker, conn):
    topic, group = names()
    sw.create_topic(broker, topic)
    sw.produce(broker, topic, 5)
    mid, epoch = share_join(conn, group, topic)
    assert sw.heartbeat(conn, group, mid, -1).error_code == Errors.NONE
    # Empty, the share group still owns the id, as in Kafka until it is deleted.
    assert join_classic(conn, group).error_code == Errors.INCONSISTENT_GROUP_PROTOCOL
    assert commit(conn, group, topic, 9) == [Errors.GROUP_ID_NOT_FOUND]
    delete_group(broker, group)
    assert listed_types(conn, group) == []
    assert commit(conn, group, topic, 9) == [Errors.NONE]
    assert [t for t, _ in listed_types(conn, group)] == ["classic"]


# ---- unmodified clients ----

def poll_error(c, want, what):
    deadline = time.monotonic() + TIMEOUT
    seen = []
    while time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and msg.error() is not None:
            seen.append(msg.error().code())
            if msg.error().code() == want:
                return msg.error()
    raise AssertionError(f"no {what}; errors seen: {seen}")


def test_clients_of_another_protocol_are_refused_by_a_share_group(broker, conn):
    topic, group = names()
    sw.create_topic(broker, topic)
    sw.set_group_configs(broker, group, share_auto_offset_reset="earliest")
    sw.produce(broker, topic, 10)
    from confluent_kafka import ShareConsumer
    share = ShareConsumer({"bootstrap.servers": str(broker), "group.id": group})
    share.subscribe([topic])
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 10:
        assert time.monotonic() < deadline, f"share consumer got {len(got)} of 10"
        got += [x for x in share.poll(0.2) if x.error() is None]
    try:
        classic = Consumer({"bootstrap.servers": str(broker), "group.id": group, "group.protocol": "classic",
                            "auto.offset.reset": "earliest"})
        classic.subscribe([topic])
        try:
            poll_error(classic, KafkaError.INCONSISTENT_GROUP_PROTOCOL, "INCONSISTENT_GROUP_PROTOCOL")
            assert classic.assignment() == []
        finally:
            classic.close()
        # librdkafka takes a heartbeat's GROUP_ID_NOT_FOUND as fatal.
        kip = kip848.consumer(broker, group)
        kip.subscribe([topic])
        try:
            err = poll_error(kip, KafkaError._FATAL, "a fatal error")
            assert "ConsumerGroupHeartbeat" in err.str() and "group id does not exist" in err.str(), err
            assert kip.assignment() == []
        finally:
            kip.close()
        # Its commit of explicit offsets is refused too.
        standalone = Consumer({"bootstrap.servers": str(broker), "group.id": group, "enable.auto.commit": False})
        try:
            with pytest.raises(Exception) as e:
                standalone.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
            assert "GROUP_ID_NOT_FOUND" in str(e.value) or e.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
        finally:
            standalone.close()
    finally:
        share.close()


def test_a_share_consumer_is_refused_by_a_consumer_group_and_welcome_after_it_is_deleted(broker, conn):
    topic, group = names()
    sw.create_topic(broker, topic)
    sw.produce(broker, topic, 10)
    c = kip848.consumer(broker, group)
    c.subscribe([topic])
    wait_until(lambda: (c.poll(0.1), kip848.assigned(c, topic))[1] == {(topic, 0)}, timeout=TIMEOUT,
               what="the consumer group member's assignment")
    r = sw.heartbeat(conn, group, sw.member_id(), 0, [topic])
    assert (r.error_code, r.error_message) == (Errors.GROUP_ID_NOT_FOUND, f"Group {group} is not a share group.")
    c.close()
    delete_group(broker, group)
    from confluent_kafka import ShareConsumer
    sw.set_group_configs(broker, group, share_auto_offset_reset="earliest")
    share = ShareConsumer({"bootstrap.servers": str(broker), "group.id": group})
    try:
        share.subscribe([topic])
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 10:
            assert time.monotonic() < deadline, f"share consumer got {len(got)} of 10"
            got += [x for x in share.poll(0.2) if x.error() is None]
        assert listed_types(conn, group) == [("share", "share")]
    finally:
        share.close()


def test_a_share_consumer_fails_fatally_on_a_classic_groups_id(broker, conn):
    topic, group = names()
    sw.create_topic(broker, topic)
    c = Consumer({"bootstrap.servers": str(broker), "group.id": group, "group.protocol": "classic",
                  "session.timeout.ms": 10000})
    c.subscribe([topic])
    from confluent_kafka import ShareConsumer
    share = ShareConsumer({"bootstrap.servers": str(broker), "group.id": group})
    try:
        wait_until(lambda: (c.poll(0.1), c.assignment())[1], timeout=TIMEOUT, what="the classic member's assignment")
        share.subscribe([topic])
        deadline = time.monotonic() + TIMEOUT
        with pytest.raises(KafkaException) as e:
            while time.monotonic() < deadline:
                share.poll(0.2)
                c.poll(0.05)
        err = e.value.args[0]
        assert (err.code(), err.fatal()) == (KafkaError.GROUP_ID_NOT_FOUND, True)
        assert [t for t, _ in listed_types(conn, group)] == ["classic"]
        assert [(tp.topic, tp.partition) for tp in c.assignment()] == [(topic, 0)]
    finally:
        share.close()
        c.close()
