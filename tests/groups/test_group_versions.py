"""The group APIs in the versions Kafka 4.x serves, on the wire and through
real clients: the fields the old versions could not carry (committed leader
epochs, batched FindCoordinator keys, ListGroups' types filter, LeaveGroup's
reason, JoinGroup's skip_assignment, SyncGroup's protocol checks) and the
answers Kafka gives for them."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from kafkawire import Wire

from pylog.protocol import messages as m
from pylog.testing import running_broker, wait_until

from .conftest import GROUP_CONFIG
from .helpers import TIMEOUT, admin, create_topic

COMMIT, FETCH, FIND, JOIN, HEARTBEAT, LEAVE, SYNC, DESCRIBE, LIST, DELETE = 8, 9, 10, 11, 12, 13, 14, 15, 16, 42
INVALID_REQUEST, ILLEGAL_GENERATION, INCONSISTENT, UNKNOWN_MEMBER = 42, 22, 23, 25
GROUP_ID_NOT_FOUND, MEMBER_ID_REQUIRED = 69, 79
INT32_MIN = -(1 << 31)


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "d", config=GROUP_CONFIG) as b:
        b.broker.create_topic("t", 2)
        code = asyncio.run_coroutine_threadsafe(
            b.broker.ensure_internal_topic("__consumer_offsets"), b.broker._loop).result(60)
        assert code == 0
        yield b


def _commit(w, version, group, offsets, generation=-1, member="", instance=None):
    R = m.OffsetCommitRequest
    r = w.request(COMMIT, version, R(
        group_id=group, generation_id_or_member_epoch=generation, member_id=member, group_instance_id=instance,
        topics=[R.OffsetCommitRequestTopic(name=t, partitions=[R.OffsetCommitRequestPartition(
            partition_index=p, committed_offset=o, committed_leader_epoch=e, committed_metadata="md")])
            for t, p, o, e in offsets]))
    return [p.error_code for t in r.topics for p in t.partitions]


def _fetch_v9(w, group, member_id=None, member_epoch=-1):
    """{(topic, partition): (offset, leader_epoch)} of one group, by OffsetFetch v9."""
    R = m.OffsetFetchRequest
    r = w.request(FETCH, 9, R(groups=[R.OffsetFetchRequestGroup(group_id=group, member_id=member_id,
                                                                   member_epoch=member_epoch, topics=None)]))
    (g,) = r.groups
    assert g.error_code == 0
    return {(t.name, p.partition_index): (p.committed_offset, p.committed_leader_epoch)
            for t in g.topics for p in t.partitions}


def _fetch_v5(w, group, topic, partitions):
    R = m.OffsetFetchRequest
    r = w.request(FETCH, 5, R(group_id=group, topics=[R.OffsetFetchRequestTopic(
        name=topic, partition_indexes=list(partitions))]))
    assert r.error_code == 0
    return {(t.name, p.partition_index): (p.committed_offset, p.committed_leader_epoch)
            for t in r.topics for p in t.partitions}


def _join(w, version, group="g", member="", instance=None, protocols=(("range", b"meta"),), reason=None):
    R = m.JoinGroupRequest
    req = R(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id=member,
            group_instance_id=instance, protocol_type="consumer", reason=reason,
            protocols=[R.JoinGroupRequestProtocol(name=n, metadata=md) for n, md in protocols])
    r = w.request(JOIN, version, req)
    if r.error_code == MEMBER_ID_REQUIRED:
        req.member_id = r.member_id
        r = w.request(JOIN, version, req)
    return r


def _sync(w, version, member, generation, assignments=(), group="g", instance=None, ptype=None, pname=None):
    R = m.SyncGroupRequest
    return w.request(SYNC, version, R(group_id=group, generation_id=generation, member_id=member,
                                      group_instance_id=instance, protocol_type=ptype, protocol_name=pname,
                                      assignments=[R.SyncGroupRequestAssignment(member_id=a, assignment=b)
                                                   for a, b in assignments]))


def _list(w, version, states=(), types=()):
    r = w.request(LIST, version, m.ListGroupsRequest(states_filter=list(states), types_filter=list(types)))
    assert r.error_code == 0
    return {g.group_id: g for g in r.groups}


# ---- OffsetCommit / OffsetFetch ----

def test_committed_leader_epochs_round_trip_through_a_restart(broker):
    """OffsetCommit v6+ carries the leader epoch of the committed offset
    (KIP-320); OffsetFetch v5+ gives it back, also after the coordinator
    replayed __consumer_offsets (OffsetCommitValue v3 keeps it)."""
    with Wire(broker.bootstrap) as w:
        assert _commit(w, 9, "g9", [("t", 0, 42, 7)]) == [0]
        assert _commit(w, 6, "g6", [("t", 1, 5, 3)]) == [0]
        assert _commit(w, 8, "g6", [("t", 0, 9, -1)]) == [0]
        assert _fetch_v9(w, "g9") == {("t", 0): (42, 7)}
        assert _fetch_v5(w, "g6", "t", [0, 1]) == {("t", 0): (9, -1), ("t", 1): (5, 3)}
    broker.restart()
    with Wire(broker.bootstrap) as w:
        assert _fetch_v9(w, "g9") == {("t", 0): (42, 7)}
        assert _fetch_v5(w, "g6", "t", [0, 1]) == {("t", 0): (9, -1), ("t", 1): (5, 3)}
        # OffsetFetch v9's member fields do not matter for a classic group, as in Kafka.
        assert _fetch_v9(w, "g9", member_id="someone", member_epoch=12) == {("t", 0): (42, 7)}


def test_offset_commit_v9_names_a_missing_group(broker):
    """A commit with a generation for a group that does not exist: v9 answers
    GROUP_ID_NOT_FOUND, older versions ILLEGAL_GENERATION (Kafka 4's
    OffsetMetadataManager); generation -1 makes a simple group."""
    with Wire(broker.bootstrap) as w:
        assert _commit(w, 9, "nope", [("t", 0, 1, -1)], generation=3, member="m") == [GROUP_ID_NOT_FOUND]
        assert _commit(w, 8, "nope", [("t", 0, 1, -1)], generation=3, member="m") == [ILLEGAL_GENERATION]
        assert _commit(w, 9, "simple", [("t", 0, 1, -1)], generation=-1) == [0]


def test_offset_commit_v9_uses_the_generation_and_static_fencing(broker):
    """For a classic group generation_id_or_member_epoch is the generation;
    v7+ carry group_instance_id, and a stale member id of an instance is
    FENCED_INSTANCE_ID."""
    with Wire(broker.bootstrap) as w:
        j = _join(w, 9, instance="i1")
        assert j.error_code == 0 and j.leader == j.member_id
        s = _sync(w, 5, j.member_id, j.generation_id, [(j.member_id, b"a")], instance="i1")
        assert s.error_code == 0
        ok = _commit(w, 9, "g", [("t", 0, 10, 2)], generation=j.generation_id, member=j.member_id, instance="i1")
        assert ok == [0]
        assert _commit(w, 9, "g", [("t", 0, 11, 2)], generation=j.generation_id + 1, member=j.member_id,
                       instance="i1") == [ILLEGAL_GENERATION]
        assert _commit(w, 9, "g", [("t", 0, 11, 2)], generation=j.generation_id, member="old-id",
                       instance="i1") == [82]   # FENCED_INSTANCE_ID
        assert _fetch_v9(w, "g") == {("t", 0): (10, 2)}


def test_admin_client_round_trips_leader_epochs(broker):
    """librdkafka's AlterConsumerGroupOffsets / ListConsumerGroupOffsets (its
    test 0081) with leader epochs: OffsetCommit v9 and OffsetFetch v9 now."""
    create_topic(broker.bootstrap, "ep", 2)
    a = admin(broker.bootstrap)
    tps = [TopicPartition("ep", 0, 5, leader_epoch=4), TopicPartition("ep", 1, 8, leader_epoch=9)]
    fs = a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions("adm", tps)], request_timeout=TIMEOUT)
    fs["adm"].result(TIMEOUT)
    fs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions("adm", [TopicPartition("ep", 0),
                                                                             TopicPartition("ep", 1)])],
                                       request_timeout=TIMEOUT)
    got = {tp.partition: (tp.offset, tp.leader_epoch) for tp in fs["adm"].result(TIMEOUT).topic_partitions}
    assert got == {0: (5, 4), 1: (8, 9)}


# ---- FindCoordinator ----

def test_find_coordinator_batches_keys(broker):
    """v4+ (KIP-699): one answer per key, for groups and transactional ids;
    share groups (key type 2, v6) are not served: INVALID_REQUEST, as Kafka
    answers without a share coordinator; an unknown type fails every key."""
    node = broker.broker.broker_id
    with Wire(broker.bootstrap) as w:
        for version in (4, 6):
            r = w.request(FIND, version, m.FindCoordinatorRequest(key_type=0, coordinator_keys=["a", "b", "c"]))
            assert [(c.key, c.error_code, c.node_id) for c in r.coordinators] == \
                [("a", 0, node), ("b", 0, node), ("c", 0, node)]
            assert all(c.port > 0 for c in r.coordinators)
        # Transactional ids: the transaction state topic is made on first need.
        for _ in range(100):
            r = w.request(FIND, 4, m.FindCoordinatorRequest(key_type=1, coordinator_keys=["tx1", "tx2"]))
            if all(c.error_code == 0 for c in r.coordinators):
                break
            assert {c.error_code for c in r.coordinators} <= {0, 15}   # COORDINATOR_NOT_AVAILABLE
            time.sleep(0.1)
        assert [(c.key, c.error_code, c.node_id) for c in r.coordinators] == [("tx1", 0, node), ("tx2", 0, node)]
        for version in (5, 6):
            r = w.request(FIND, version, m.FindCoordinatorRequest(key_type=2, coordinator_keys=["s:t:0"]))
            assert [(c.key, c.error_code, c.node_id) for c in r.coordinators] == [("s:t:0", INVALID_REQUEST, -1)]
        r = w.request(FIND, 4, m.FindCoordinatorRequest(key_type=9, coordinator_keys=["x", "y"]))
        assert [(c.key, c.error_code) for c in r.coordinators] == [("x", INVALID_REQUEST), ("y", INVALID_REQUEST)]
        # v3 still answers one key.
        r = w.request(FIND, 3, m.FindCoordinatorRequest(key="a", key_type=0))
        assert (r.error_code, r.node_id) == (0, node)


# ---- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ----

def test_join_v7_names_the_protocol_type_and_sync_v5_checks_the_protocol(broker):
    with Wire(broker.bootstrap) as w:
        j = _join(w, 7)
        assert j.error_code == 0
        assert (j.protocol_type, j.protocol_name, j.skip_assignment) == ("consumer", "range", False)
        for ptype, pname in (("connect", "range"), ("consumer", "roundrobin")):
            s = _sync(w, 5, j.member_id, j.generation_id, [(j.member_id, b"x")], ptype=ptype, pname=pname)
            assert s.error_code == INCONSISTENT, (ptype, pname)
        s = _sync(w, 5, j.member_id, j.generation_id, [(j.member_id, b"x")], ptype="consumer", pname="range")
        assert (s.error_code, s.assignment, s.protocol_type, s.protocol_name) == (0, b"x", "consumer", "range")
        # Without them (null) nothing is checked.
        s = _sync(w, 5, j.member_id, j.generation_id)
        assert (s.error_code, s.assignment) == (0, b"x")
        r = w.request(HEARTBEAT, 4, m.HeartbeatRequest(group_id="g", generation_id=j.generation_id,
                                                       member_id=j.member_id))
        assert r.error_code == 0
        # An error answer has no protocol (null from v7).
        bad = w.request(JOIN, 7, m.JoinGroupRequest(
            group_id="g", session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="unknown",
            protocol_type="consumer", protocols=[m.JoinGroupRequest.JoinGroupRequestProtocol(name="range")]))
        assert (bad.error_code, bad.protocol_type, bad.protocol_name) == (UNKNOWN_MEMBER, None, None)


@pytest.mark.parametrize("version", [7, 9])
def test_a_returning_static_leader_and_skip_assignment(broker, version):
    """KIP-814: a static leader that comes back to a stable group gets, from
    JoinGroup v9, its new id as leader, the members and skip_assignment; before
    v9, the previous leader id and no members. Either way no rebalance."""
    with Wire(broker.bootstrap) as w1, Wire(broker.bootstrap) as w2:
        first = _join(w1, version, instance="lead")
        assert first.error_code == 0 and first.leader == first.member_id
        gen = first.generation_id
        assert _sync(w1, 5, first.member_id, gen, [(first.member_id, b"A")], instance="lead").error_code == 0
        back = _join(w2, version, instance="lead", reason="restarted")
        assert back.error_code == 0 and back.generation_id == gen and back.member_id != first.member_id
        if version >= 9:
            assert (back.leader, back.skip_assignment) == (back.member_id, True)
            assert [(mm.member_id, mm.group_instance_id, mm.metadata) for mm in back.members] == \
                [(back.member_id, "lead", b"meta")]
        else:
            assert (back.leader, back.skip_assignment, back.members) == (first.member_id, False, [])
        s = _sync(w2, 5, back.member_id, gen, instance="lead")
        assert (s.error_code, s.assignment) == (0, b"A")
        assert broker.broker.groups.groups["g"].state.value == "Stable"


def test_leave_group_v5_reason_and_removal_by_instance_id(broker, group_log):
    """LeaveGroup v3+ batches members; an empty member id with a
    group.instance.id removes that static member (KIP-345's admin removal);
    v5's reason is logged; a group the coordinator does not know answers
    every member UNKNOWN_MEMBER_ID (Kafka 4's GroupCoordinatorService)."""
    R = m.LeaveGroupRequest
    with Wire(broker.bootstrap) as w:
        j = _join(w, 9, instance="i1")
        assert j.error_code == 0
        assert _sync(w, 5, j.member_id, j.generation_id, [(j.member_id, b"a")], instance="i1").error_code == 0
        r = w.request(LEAVE, 5, R(group_id="g", members=[
            R.MemberIdentity(member_id="", group_instance_id="i1", reason="scaling down"),
            R.MemberIdentity(member_id="", group_instance_id="i2", reason=None),
            R.MemberIdentity(member_id="ghost", group_instance_id=None, reason=None)]))
        assert r.error_code == 0
        assert [(x.member_id, x.group_instance_id, x.error_code) for x in r.members] == \
            [("", "i1", 0), ("", "i2", UNKNOWN_MEMBER), ("ghost", None, UNKNOWN_MEMBER)]
        assert broker.broker.groups.groups["g"].members == {}
        assert any("scaling down" in rec.getMessage() for rec in group_log.records)
        r = w.request(LEAVE, 5, R(group_id="never-seen", members=[R.MemberIdentity(member_id="x")]))
        assert r.error_code == 0
        assert [(x.member_id, x.group_instance_id, x.error_code) for x in r.members] == [("x", None, UNKNOWN_MEMBER)]


# ---- DescribeGroups / ListGroups / DeleteGroups ----

def test_describe_v5_authorized_operations_and_list_v5_types(broker):
    with Wire(broker.bootstrap) as w:
        j = _join(w, 9)
        assert _sync(w, 5, j.member_id, j.generation_id, [(j.member_id, b"a")]).error_code == 0
        d = w.request(DESCRIBE, 5, m.DescribeGroupsRequest(groups=["g"], include_authorized_operations=True))
        (g,) = d.groups
        # READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS: Kafka without an authorizer.
        assert (g.error_code, g.group_state, g.authorized_operations) == (0, "Stable", 3400)
        d = w.request(DESCRIBE, 5, m.DescribeGroupsRequest(groups=["g"], include_authorized_operations=False))
        assert d.groups[0].authorized_operations == INT32_MIN

        assert _commit(w, 9, "lonely", [("t", 0, 1, -1)]) == [0]
        every = _list(w, 5)
        assert {gid: (x.group_type, x.group_state, x.protocol_type) for gid, x in every.items()} == \
            {"g": ("classic", "Stable", "consumer"), "lonely": ("classic", "Empty", "")}
        assert set(_list(w, 5, types=["classic"])) == {"g", "lonely"}
        assert set(_list(w, 5, types=["CLASSIC", "share"])) == {"g", "lonely"}
        assert _list(w, 5, types=["consumer"]) == {}
        assert _list(w, 5, types=["bogus"]) == {}
        # States match case-insensitively (Kafka 4).
        assert set(_list(w, 5, states=["stable"])) == {"g"}
        assert set(_list(w, 5, states=["EMPTY"], types=["classic"])) == {"lonely"}
        assert set(_list(w, 4, states=["Empty"])) == {"lonely"}

        r = w.request(DELETE, 2, m.DeleteGroupsRequest(groups_names=["lonely", "g", "nope"]))
        assert [(x.group_id, x.error_code) for x in r.results] == [("lonely", 0), ("g", 68), ("nope", 69)]



# ---- kafka-python in the new versions (JoinGroup 7, SyncGroup 5, LeaveGroup 5,
# OffsetCommit/OffsetFetch 8, batched FindCoordinator) ----

def _settle_kafka_python(groups, group_id, consumers, sizes):
    """Poll each kafka-python consumer in a thread of its own, as an
    application does, until the members hold that many partitions each, all 4
    in all, in the broker's current generation of a Stable group.

    Why threads and a poll timeout longer than a rebalance: kafka-python
    3.0.12 throws away a JoinGroup/SyncGroup round trip that completes while
    no poll() waits for it, and joins again. The leader's JoinGroup in a
    Stable group starts a new rebalance (as in Kafka), so consumers polled in
    turn from one thread with short timeouts can rebalance without end (each
    one's join completes while the thread polls the other)."""
    held, errors, stop = {}, [], threading.Event()

    def run(i, c):
        try:
            while not stop.is_set():
                c.poll(timeout_ms=1000)
                held[i] = (c._coordinator._generation.generation_id, sorted(tp.partition for tp in c.assignment()))
        except Exception as e:  # reported by the waiting thread
            errors.append(e)

    def settled():
        if errors:
            return True
        g = groups.get(group_id)
        now = [held.get(i) for i in range(len(consumers))]
        return g is not None and g.state.value == "Stable" and None not in now and \
            all(gen == g.generation_id for gen, _ in now) and [len(p) for _, p in now] == sizes and \
            sorted(sum((p for _, p in now), [])) == [0, 1, 2, 3]

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(consumers)]
    for t in threads:
        t.start()
    try:
        wait_until(settled, "kafka-python members settled", timeout=90)
    except AssertionError:
        g = groups.get(group_id)
        raise AssertionError(f"members never held {sizes} partitions: {held} (generation, partitions) each, "
                             f"group {g and (g.state.value, g.generation_id)}, errors {errors}") from None
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_kafka_python_group_rebalances_commits_epochs_and_leaves(broker, group_log):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata

    create_topic(broker.bootstrap, "kp", 4)

    def member(name, instance=None):
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="kpg", client_id=name,
                          group_instance_id=instance, enable_auto_commit=False, auto_offset_reset="earliest",
                          session_timeout_ms=6000, heartbeat_interval_ms=300, request_timeout_ms=30000)
        c.subscribe(["kp"])
        return c

    def settle(consumers, sizes):
        _settle_kafka_python(broker.broker.groups.groups, "kpg", consumers, sizes)

    c1 = member("kp-1", instance="kp-static")
    c2 = None
    try:
        settle([c1], [4])
        c2 = member("kp-2")
        settle([c1, c2], [2, 2])
        g = broker.broker.groups.groups["kpg"]
        assert g.state.value == "Stable" and g.protocol_type == "consumer" and len(g.members) == 2
        assert list(g.static) == ["kp-static"]
        # Commits with leader epochs, read back by the member and by another client.
        a, b = sorted(tp.partition for tp in c1.assignment())
        c1.commit({KTP("kp", a): OffsetAndMetadata(5, "m0", 6), KTP("kp", b): OffsetAndMetadata(7, "m1", 2)})
        om = c1.committed(KTP("kp", a), metadata=True)
        assert (om.offset, om.metadata, om.leader_epoch) == (5, "m0", 6)
        with Wire(broker.bootstrap) as w:
            assert _fetch_v9(w, "kpg") == {("kp", a): (5, 6), ("kp", b): (7, 2)}
        # The dynamic member leaves on close (LeaveGroup v5, batched form): the
        # static one takes every partition.
        leaver = c2._coordinator._generation.member_id
        c2.close()
        c2 = None
        settle([c1], [4])
        assert list(broker.broker.groups.groups["kpg"].members) == [c1._coordinator._generation.member_id]
        assert any(f"member {leaver} left the group" in r.getMessage() for r in group_log.records)
    finally:
        c1.close()
        if c2 is not None:
            c2.close()


def test_librdkafka_admin_lists_types_and_describes_operations(broker):
    """librdkafka's admin API on ListGroups v5 and DescribeGroups v5 (its test
    0081 checks both): classic groups listed by type, a group's authorized
    operations as Kafka reports them without an authorizer."""
    from confluent_kafka import ConsumerGroupType
    from confluent_kafka.admin import AclOperation

    with Wire(broker.bootstrap) as w:
        j = _join(w, 9, group="rdk")
        assert _sync(w, 5, j.member_id, j.generation_id, [(j.member_id, b"")], group="rdk").error_code == 0
        a = admin(broker.bootstrap)
        listed = a.list_consumer_groups(types={ConsumerGroupType.CLASSIC}, request_timeout=TIMEOUT).result(TIMEOUT)
        assert {(g.group_id, g.type) for g in listed.valid} == {("rdk", ConsumerGroupType.CLASSIC)}
        listed = a.list_consumer_groups(types={ConsumerGroupType.CONSUMER}, request_timeout=TIMEOUT).result(TIMEOUT)
        assert listed.valid == []
        d = a.describe_consumer_groups(["rdk"], include_authorized_operations=True,
                                       request_timeout=TIMEOUT)["rdk"].result(TIMEOUT)
        assert set(d.authorized_operations) == {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE,
                                                AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
        # librdkafka learns a group's type from DescribeGroups (classic) or
        # ConsumerGroupDescribe (consumer groups, not served here).
        assert d.type == ConsumerGroupType.CLASSIC
