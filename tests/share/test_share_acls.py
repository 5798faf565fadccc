"""Share-group ACLs as Kafka's KafkaApis checks them, on a real broker with
the StandardAuthorizer on and real clients (confluent_kafka.ShareConsumer,
AdminClient) plus raw KIP-932 requests over a socket. Every client is
User:ANONYMOUS; the ACLs granted to it decide:

- ShareGroupHeartbeat: READ on the group, DESCRIBE on every subscribed topic;
- ShareFetch / ShareAcknowledge: READ on the group (the request's
  GROUP_AUTHORIZATION_FAILED), READ on each topic (per partition
  TOPIC_AUTHORIZATION_FAILED, fetched or acknowledged);
- ShareGroupDescribe: DESCRIBE on the group, the principal's own authorized
  operations, DESCRIBE on the assigned topics;
- Describe/Alter/DeleteShareGroupOffsets: DESCRIBE / READ / DELETE on the
  group, DESCRIBE / READ / READ on each topic; DeleteGroups DELETE and
  ListGroups (all groups with DESCRIBE on the cluster)."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, ShareConsumer
from confluent_kafka.admin import AclOperation, AdminClient, ResourceType

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker

from tests.security.conftest import ADMIN_ACLS, ANON, AUTHZ, binding, grant, revoke

from .wire import (CONFIG, connect, create_topic, heartbeat, join_assigned, member_id, produce, set_group_configs,
                   share_ack, share_fetch)

T, G = ResourceType.TOPIC, ResourceType.GROUP
OP = AclOperation
TIMEOUT = 60.0
ACCEPT = 1


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """Authorizer on, no super user; User:ANONYMOUS may manage ACLs (granted
    while it was a super user, before a restart)."""
    data = str(tmp_path_factory.mktemp("share-acl"))
    config = {**CONFIG, **AUTHZ}
    with running_broker(data_dir=data, config={**config, "super.users": ANON}) as b:
        grant(AdminClient({"bootstrap.servers": str(b)}), *ADMIN_ACLS)
    with running_broker(data_dir=data, config=config) as b:
        yield b


@pytest.fixture
def admin(broker):
    return AdminClient({"bootstrap.servers": str(broker)})


@pytest.fixture
def names():
    u = uuid.uuid4().hex[:8]
    return f"sa-topic-{u}", f"sa-group-{u}"


def make_topic(broker, admin, topic, n=0):
    """The topic with n records, made and filled under ACLs taken back after."""
    grant(admin, binding(T, topic, OP.CREATE), binding(T, topic, OP.WRITE))
    create_topic(broker, topic)
    if n:
        produce(broker, topic, n)
    revoke(admin, binding(T, topic, OP.CREATE), binding(T, topic, OP.WRITE))


def earliest(broker, admin, group):
    grant(admin, binding(G, group, OP.ALTER_CONFIGS))
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    revoke(admin, binding(G, group, OP.ALTER_CONFIGS))


def join(conn, group, topic):
    mid = member_id()
    (tp,) = join_assigned(conn, group, mid, [topic]).assignment.topic_partitions
    return mid, tp.topic_id


def share_consumer_error(broker, group, topic):
    """The code of the first error an unmodified ShareConsumer of group meets
    on topic (polled as an errored message or raised); no record may come."""
    c = ShareConsumer({"bootstrap.servers": str(broker), "group.id": group})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert time.monotonic() < deadline, "no error"
            try:
                for msg in c.poll(0.2):
                    assert msg.error() is not None, f"a record: {msg.offset()}"
                    return msg.error().code()
            except KafkaException as e:
                return e.args[0].code()
    finally:
        c.close()


def test_a_principal_with_read_on_group_and_topic_consumes_with_a_share_consumer(broker, admin, names):
    topic, group = names
    make_topic(broker, admin, topic, 20)
    earliest(broker, admin, group)
    grant(admin, binding(G, group, OP.READ), binding(T, topic, OP.READ))
    c = ShareConsumer({"bootstrap.servers": str(broker), "group.id": group})
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 20:
            assert time.monotonic() < deadline, f"got {len(got)} of 20"
            for msg in c.poll(0.2):
                assert msg.error() is None, msg.error()
                got.append(msg.offset())
        assert sorted(got) == list(range(20))
        c.commit_sync()
    finally:
        c.close()


def test_without_group_read_every_share_api_is_refused(broker, admin, names):
    topic, group = names
    make_topic(broker, admin, topic, 5)
    grant(admin, binding(T, topic, OP.READ), binding(G, group, OP.DESCRIBE))
    conn = connect(broker)
    try:
        r = heartbeat(conn, group, member_id(), 0, [topic])
        assert r.error_code == Errors.GROUP_AUTHORIZATION_FAILED
        r = share_fetch(conn, group, member_id(), 0)
        assert r.error_code == Errors.GROUP_AUTHORIZATION_FAILED
        r = share_ack(conn, group, member_id(), 1, {})
        assert r.error_code == Errors.GROUP_AUTHORIZATION_FAILED
        A = m.AlterShareGroupOffsetsRequest
        r = conn.request(A(group_id=group, topics=[A.AlterShareGroupOffsetsRequestTopic(
            topic_name=topic, partitions=[A.AlterShareGroupOffsetsRequestPartition(partition_index=0,
                                                                                     start_offset=0)])]),
            api_version=0)
        assert (r.error_code, r.responses) == (Errors.GROUP_AUTHORIZATION_FAILED, [])
        D = m.DeleteShareGroupOffsetsRequest
        r = conn.request(D(group_id=group, topics=[D.DeleteShareGroupOffsetsRequestTopic(topic_name=topic)]),
                         api_version=0)
        assert r.error_code == Errors.GROUP_AUTHORIZATION_FAILED
    finally:
        conn.close()
    # An unmodified ShareConsumer fails with it.
    assert share_consumer_error(broker, group, topic) == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_without_topic_read_its_partitions_are_refused_per_partition(broker, admin, names):
    topic, group = names
    make_topic(broker, admin, topic, 5)
    earliest(broker, admin, group)
    grant(admin, binding(G, group, OP.READ), binding(T, topic, OP.READ))
    conn = connect(broker)
    try:
        mid, tid = join(conn, group, topic)
        tp = (tid, 0)
        deadline = time.monotonic() + TIMEOUT
        epoch = 0
        while True:
            r = share_fetch(conn, group, mid, epoch, [tp] if epoch == 0 else [])
            assert r.error_code == Errors.NONE, r
            epoch += 1
            got = [(a.first_offset, a.last_offset) for t in r.responses for p in t.partitions
                   for a in p.acquired_records]
            if got or time.monotonic() > deadline:
                break
        assert got and got[0][0] == 0
        # READ taken away (DESCRIBE left): the session's partition is refused,
        # and so is the acknowledgement of what was acquired before.
        revoke(admin, binding(T, topic, OP.READ))
        grant(admin, binding(T, topic, OP.DESCRIBE))
        r = share_fetch(conn, group, mid, epoch, [], acks={tp: [(0, got[0][1], [ACCEPT])]})
        assert r.error_code == Errors.NONE
        assert [(p.partition_index, p.error_code, p.acknowledge_error_code, p.acquired_records)
                for t in r.responses for p in t.partitions] == [
            (0, Errors.TOPIC_AUTHORIZATION_FAILED, Errors.TOPIC_AUTHORIZATION_FAILED, [])]
        epoch += 1
        r = share_ack(conn, group, mid, epoch, {tp: [(0, got[0][1], [ACCEPT])]})
        assert r.error_code == Errors.NONE
        assert [(p.partition_index, p.error_code) for t in r.responses for p in t.partitions] == [
            (0, Errors.TOPIC_AUTHORIZATION_FAILED)]
        epoch += 1
        # READ back: the records come back to an acknowledgement.
        grant(admin, binding(T, topic, OP.READ))
        r = share_ack(conn, group, mid, epoch, {tp: [(0, got[0][1], [ACCEPT])]})
        assert [(p.partition_index, p.error_code) for t in r.responses for p in t.partitions] == [(0, 0)]
        # A subscribed topic without DESCRIBE fails the heartbeat, naming nothing.
        revoke(admin, binding(T, topic, OP.READ), binding(T, topic, OP.DESCRIBE))
        r = heartbeat(conn, group, member_id(), 0, [topic])
        assert (r.error_code, r.member_id, r.assignment) == (Errors.TOPIC_AUTHORIZATION_FAILED, None, None)
    finally:
        conn.close()


def test_a_share_consumer_without_topic_read_gets_topic_authorization_failed(broker, admin, names):
    topic, group = names
    make_topic(broker, admin, topic, 5)
    earliest(broker, admin, group)
    grant(admin, binding(G, group, OP.READ), binding(T, topic, OP.DESCRIBE))
    assert share_consumer_error(broker, group, topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_share_group_describe_and_list_follow_describe_acls(broker, admin, names):
    topic, group = names
    make_topic(broker, admin, topic)
    grant(admin, binding(G, group, OP.READ), binding(T, topic, OP.READ))
    conn = connect(broker)
    try:
        mid, _tid = join(conn, group, topic)
        DR = m.ShareGroupDescribeRequest
        other = group + "-other"
        r = conn.request(DR(group_ids=[group, other], include_authorized_operations=True), api_version=1)
        got = {g.group_id: g for g in r.groups}
        # READ implies DESCRIBE; the principal's operations on the group are READ and DESCRIBE.
        assert got[group].error_code == Errors.NONE
        assert [mm.member_id for mm in got[group].members] == [mid]
        assert got[group].authorized_operations == (1 << 3) | (1 << 8)
        assert got[other].error_code == Errors.GROUP_AUTHORIZATION_FAILED
        r = conn.request(DR(group_ids=[group]), api_version=1)
        assert r.groups[0].authorized_operations == -(1 << 31)

        # An assigned topic the principal may not DESCRIBE hides the group's members.
        revoke(admin, binding(T, topic, OP.READ))
        d = conn.request(DR(group_ids=[group]), api_version=1).groups[0]
        assert (d.error_code, d.members) == (Errors.TOPIC_AUTHORIZATION_FAILED, [])
        assert "not authorized to describe" in d.error_message

        lr = conn.request(m.ListGroupsRequest(states_filter=[], types_filter=["share"]), api_version=5)
        assert [g.group_type for g in lr.groups if g.group_id == group] == ["share"]
    finally:
        conn.close()


def test_share_group_offsets_apis_check_group_and_topics(broker, admin, names):
    topic, group = names
    hidden = topic + "-hidden"
    make_topic(broker, admin, topic, 5)
    make_topic(broker, admin, hidden, 5)
    earliest(broker, admin, group)
    grant(admin, binding(G, group, OP.READ), binding(T, topic, OP.READ), binding(T, hidden, OP.READ))
    conn = connect(broker)
    try:
        mid = member_id()
        r = join_assigned(conn, group, mid, [topic, hidden], 2)
        tids = {"parts": [(tp.topic_id, 0) for tp in r.assignment.topic_partitions]}
        # Both share-partitions initialized by a fetch, then the member leaves.
        epoch = 0
        deadline = time.monotonic() + TIMEOUT
        seen = set()
        while len(seen) < 2:
            assert time.monotonic() < deadline, "both share-partitions fetched"
            f = share_fetch(conn, group, mid, epoch, tids["parts"] if epoch == 0 else [])
            epoch += 1
            seen |= {t.topic_id for t in f.responses for p in t.partitions if p.acquired_records}
        share_fetch(conn, group, mid, -1)
        assert heartbeat(conn, group, mid, -1).error_code == Errors.NONE
        revoke(admin, binding(T, hidden, OP.READ))

        # DescribeShareGroupOffsets: DESCRIBE on the group (implied by READ),
        # topics without DESCRIBE left out of "all" and refused when named.
        Q = m.DescribeShareGroupOffsetsRequest

        def describe(topics, gid=group):
            g = Q.DescribeShareGroupOffsetsRequestGroup(group_id=gid, topics=None if topics is None else [
                Q.DescribeShareGroupOffsetsRequestTopic(topic_name=t, partitions=[0]) for t in topics])
            return conn.request(Q(groups=[g]), api_version=1).groups[0]
        d = describe(None)
        assert d.error_code == Errors.NONE and [t.topic_name for t in d.topics] == [topic]
        d = describe([topic, hidden])
        rows = {t.topic_name: [(p.error_code, p.start_offset, p.lag) for p in t.partitions] for t in d.topics}
        assert rows[hidden] == [(Errors.TOPIC_AUTHORIZATION_FAILED, -1, -1)]
        assert rows[topic][0][0] == Errors.NONE
        assert describe(None, group + "-x").error_code == Errors.GROUP_AUTHORIZATION_FAILED

        # AlterShareGroupOffsets: READ on the group and each topic.
        A = m.AlterShareGroupOffsetsRequest
        r = conn.request(A(group_id=group, topics=[A.AlterShareGroupOffsetsRequestTopic(
            topic_name=t, partitions=[A.AlterShareGroupOffsetsRequestPartition(partition_index=0, start_offset=1)])
            for t in (topic, hidden)]), api_version=0)
        assert r.error_code == Errors.NONE
        assert {t.topic_name: [p.error_code for p in t.partitions] for t in r.responses} == {
            topic: [Errors.NONE], hidden: [Errors.TOPIC_AUTHORIZATION_FAILED]}

        # DeleteShareGroupOffsets and DeleteGroups: DELETE on the group.
        D = m.DeleteShareGroupOffsetsRequest
        req = D(group_id=group, topics=[D.DeleteShareGroupOffsetsRequestTopic(topic_name=t) for t in (topic, hidden)])
        assert conn.request(req, api_version=0).error_code == Errors.GROUP_AUTHORIZATION_FAILED
        res = admin.delete_consumer_groups([group], request_timeout=30)[group]
        with pytest.raises(KafkaException) as e:
            res.result(30)
        assert e.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
        grant(admin, binding(G, group, OP.DELETE))
        r = conn.request(req, api_version=0)
        assert r.error_code == Errors.NONE
        assert {t.topic_name: t.error_code for t in r.responses} == {
            topic: Errors.NONE, hidden: Errors.TOPIC_AUTHORIZATION_FAILED}
        admin.delete_consumer_groups([group], request_timeout=30)[group].result(30)
    finally:
        conn.close()


def test_list_groups_shows_the_share_groups_the_principal_may_describe(tmp_path):
    """Without DESCRIBE on the cluster (which ALTER on it implies), ListGroups
    answers only the groups the principal may DESCRIBE, share groups too.
    Set up while User:ANONYMOUS is a super user, listed after a restart
    without it."""
    topic, seen, unseen = "sa-list", "sa-list-seen", "sa-list-unseen"
    config = {**CONFIG, **AUTHZ}
    with running_broker(data_dir=tmp_path, config={**config, "super.users": ANON}) as b:
        create_topic(b, topic)
        conn = connect(b)
        for group in (seen, unseen):
            mid = member_id()
            join_assigned(conn, group, mid, [topic])
            assert heartbeat(conn, group, mid, -1).error_code == Errors.NONE
        conn.close()
        grant(AdminClient({"bootstrap.servers": str(b)}), binding(G, seen, OP.DESCRIBE))
    with running_broker(data_dir=tmp_path, config=config) as b:
        conn = connect(b)
        try:
            lr = conn.request(m.ListGroupsRequest(states_filter=[], types_filter=["share"]), api_version=5)
            assert lr.error_code == Errors.NONE
            assert [(g.group_id, g.group_type, g.group_state) for g in lr.groups] == [(seen, "share", "Empty")]
        finally:
            conn.close()
