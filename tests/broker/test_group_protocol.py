"""The group coordinator's rules, one raw request at a time (KAFKA-NOTES §5):
error codes real clients rely on, which client libraries rarely show directly."""
import asyncio
import threading
import time

import pytest
from kafkawire import Wire

from pylog.groups.offsets_topic import java_string_hash, partition_for
from pylog.protocol import messages as m
from pylog.testing import running_broker

JOIN, SYNC, HEARTBEAT, LEAVE, COMMIT, FETCH_OFFSETS, FIND, DESCRIBE, LIST, DELETE = \
    11, 14, 12, 13, 8, 9, 10, 15, 16, 42
ILLEGAL_GENERATION, INCONSISTENT, INVALID_GROUP, UNKNOWN_MEMBER, INVALID_SESSION = 22, 23, 24, 25, 26
REBALANCE_IN_PROGRESS, NON_EMPTY, NOT_FOUND, MEMBER_ID_REQUIRED, FENCED = 27, 68, 69, 79, 82
METADATA_TOO_LARGE = 12


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "d", config={"group.initial.rebalance.delay.ms": "0",
                                                "group.min.session.timeout.ms": "100"}) as b:
        b.broker.create_topic("t", 4)
        coordinator_ready(b)
        yield b


def coordinator_ready(b):
    """What a client's FindCoordinator sets off and waits for (retrying
    COORDINATOR_NOT_AVAILABLE): __consumer_offsets created and led here. These
    tests send group requests straight to the broker, without looking first."""
    code = asyncio.run_coroutine_threadsafe(
        b.broker.ensure_internal_topic("__consumer_offsets"), b.broker._loop).result(60)
    assert code == 0


def join_req(member_id="", protocols=(("range", b"meta"),), session=10000, rebalance=10000, instance=None,
             protocol_type="consumer", group="g"):
    return m.JoinGroupRequest(group_id=group, session_timeout_ms=session, rebalance_timeout_ms=rebalance,
                              member_id=member_id, group_instance_id=instance, protocol_type=protocol_type,
                              protocols=[m.JoinGroupRequest.JoinGroupRequestProtocol(name=n, metadata=md)
                                         for n, md in protocols])


def join(w, **kw):
    """JoinGroup v5 the way a KIP-394 client does it: MEMBER_ID_REQUIRED, then again."""
    r = w.request(JOIN, 5, join_req(**kw))
    if r.error_code == MEMBER_ID_REQUIRED:
        assert r.member_id
        kw["member_id"] = r.member_id
        r = w.request(JOIN, 5, join_req(**kw))
    return r


def sync(w, member, generation, assignments=(), group="g", instance=None):
    return w.request(SYNC, 3, m.SyncGroupRequest(
        group_id=group, generation_id=generation, member_id=member, group_instance_id=instance,
        assignments=[m.SyncGroupRequest.SyncGroupRequestAssignment(member_id=a, assignment=b)
                     for a, b in assignments]))


def heartbeat(w, member, generation, group="g", instance=None):
    return w.request(HEARTBEAT, 3, m.HeartbeatRequest(group_id=group, generation_id=generation,
                                                      member_id=member, group_instance_id=instance)).error_code


def commit(w, member, generation, offsets, group="g"):
    R = m.OffsetCommitRequest
    r = w.request(COMMIT, 3, R(group_id=group, generation_id_or_member_epoch=generation, member_id=member,
                               topics=[R.OffsetCommitRequestTopic(name=t, partitions=[
                                   R.OffsetCommitRequestPartition(partition_index=p, committed_offset=o,
                                                                  committed_metadata=md)])
                                   for t, p, o, md in offsets]))
    return [p.error_code for t in r.topics for p in t.partitions]


def test_coordinator_partition_matches_javas_string_hash():
    assert java_string_hash("hello") == 99162322                 # "hello".hashCode() in Java
    assert java_string_hash("polygenelubricants") == -(1 << 31)  # Integer.MIN_VALUE: abs() gives 0
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("hello", 50) == 99162322 % 50
    assert java_string_hash("\U0001F600") == (0xD83D * 31 + 0xDE00) - (1 << 32) * 0  # UTF-16 units


def test_find_coordinator_names_this_broker(broker):
    with Wire(broker) as w:
        for v in (0, 1, 2):
            r = w.request(FIND, v, m.FindCoordinatorRequest(key="g", key_type=0))
            assert (r.error_code, r.node_id, r.port) == (0, broker.broker.broker_id, broker.port)
        # key_type 1 (transactions): the coordinator of __transaction_state,
        # COORDINATOR_NOT_AVAILABLE (15) until that topic exists.
        for _ in range(600):
            r = w.request(FIND, 1, m.FindCoordinatorRequest(key="txn", key_type=1))
            if r.error_code != 15:
                break
            time.sleep(0.05)
        assert (r.error_code, r.node_id, r.port) == (0, broker.broker.broker_id, broker.port)
    assert "__consumer_offsets" in broker.broker.log_manager.topics


def test_join_sync_heartbeat_leave_happy_path_and_generations(broker):
    with Wire(broker) as w1, Wire(broker) as w2:
        r1 = join(w1)
        assert r1.error_code == 0 and r1.generation_id == 1 and r1.leader == r1.member_id
        assert [mm.member_id for mm in r1.members] == [r1.member_id]  # the leader sees the members
        assert sync(w1, r1.member_id, 1, [(r1.member_id, b"A1")]).assignment == b"A1"
        assert heartbeat(w1, r1.member_id, 1) == 0
        assert heartbeat(w1, r1.member_id, 0) == ILLEGAL_GENERATION
        assert heartbeat(w1, "nobody", 1) == UNKNOWN_MEMBER
        # A second member: the first learns of the rebalance through its heartbeat.
        out = {}
        t = threading.Thread(target=lambda: out.update(r2=join(w2)))
        t.start()
        for _ in range(200):
            if broker.broker.groups.groups["g"].state.value == "PreparingRebalance":
                break
            threading.Event().wait(0.01)
        assert heartbeat(w1, r1.member_id, 1) == REBALANCE_IN_PROGRESS
        r1b = w1.request(JOIN, 5, join_req(member_id=r1.member_id))
        t.join(10)
        r2 = out["r2"]
        assert r1b.generation_id == r2.generation_id == 2
        assert r1b.leader == r1.member_id and len(r1b.members) == 2 and r2.members == []
        # Sync: the follower waits for the leader's assignment.
        got = {}
        t = threading.Thread(target=lambda: got.update(s2=sync(w2, r2.member_id, 2)))
        t.start()
        s1 = sync(w1, r1.member_id, 2, [(r1.member_id, b"A"), (r2.member_id, b"B")])
        t.join(10)
        assert (s1.assignment, got["s2"].assignment) == (b"A", b"B")
        assert sync(w1, r1.member_id, 1).error_code == ILLEGAL_GENERATION
        # Leave: the other one rebalances alone into generation 3.
        assert w2.request(LEAVE, 1, m.LeaveGroupRequest(group_id="g", member_id=r2.member_id)).error_code == 0
        assert heartbeat(w1, r1.member_id, 2) == REBALANCE_IN_PROGRESS
        r1c = w1.request(JOIN, 5, join_req(member_id=r1.member_id))
        assert (r1c.error_code, r1c.generation_id) == (0, 3)
        assert w2.request(LEAVE, 1, m.LeaveGroupRequest(group_id="g", member_id=r2.member_id)).error_code \
            == UNKNOWN_MEMBER


def test_join_errors(broker):
    with Wire(broker) as w:
        assert w.request(JOIN, 5, join_req(group="")).error_code == INVALID_GROUP
        assert w.request(JOIN, 5, join_req(session=50)).error_code == INVALID_SESSION
        assert w.request(JOIN, 5, join_req(member_id="made-up")).error_code == UNKNOWN_MEMBER
        r = w.request(JOIN, 4, join_req())
        assert r.error_code == MEMBER_ID_REQUIRED and r.member_id.startswith("wire-test-")
        assert w.request(JOIN, 3, join_req()).error_code == 0  # before v4 the id comes with the join
        # A member speaking another protocol cannot join.
        assert w.request(JOIN, 3, join_req(protocols=(("roundrobin", b""),))).error_code == INCONSISTENT
        assert w.request(JOIN, 3, join_req(protocol_type="connect")).error_code == INCONSISTENT


def test_protocol_is_a_common_one_chosen_by_votes(broker):
    with Wire(broker) as w1, Wire(broker) as w2, Wire(broker) as w3:
        a = join(w1, protocols=(("range", b""), ("sticky", b"")))
        assert a.protocol_name == "range"
        sync(w1, a.member_id, a.generation_id, [(a.member_id, b"")])

        def rejoin_all(extra_w, extra_protocols):
            out = {}
            t = threading.Thread(target=lambda: out.update(r=join(extra_w, protocols=extra_protocols)))
            t.start()
            for _ in range(200):
                if broker.broker.groups.groups["g"].state.value == "PreparingRebalance":
                    break
                threading.Event().wait(0.01)
            mine = w1.request(JOIN, 5, join_req(member_id=a.member_id, protocols=(("range", b""), ("sticky", b""))))
            t.join(10)
            return mine, out["r"]

        # b supports only sticky: the one common protocol wins whatever the votes.
        mine, b = rejoin_all(w2, (("sticky", b""),))
        assert mine.protocol_name == b.protocol_name == "sticky"
        # A third member that cannot speak sticky is refused.
        assert w3.request(JOIN, 3, join_req(protocols=(("range", b""),))).error_code == INCONSISTENT


def test_session_expiry_and_static_fencing(broker):
    with Wire(broker) as w1, Wire(broker) as w2:
        r = join(w1, session=300, instance="i-1")
        assert sync(w1, r.member_id, r.generation_id, [(r.member_id, b"X")]).assignment == b"X"
        # The same instance id again: the old member id is fenced, the assignment kept, no rebalance.
        r2 = join(w2, session=300, instance="i-1")
        assert r2.error_code == 0 and r2.member_id != r.member_id and r2.generation_id == r.generation_id
        assert heartbeat(w1, r.member_id, r.generation_id, instance="i-1") == FENCED
        assert heartbeat(w1, r.member_id, r.generation_id) == UNKNOWN_MEMBER
        assert sync(w2, r2.member_id, r2.generation_id, instance="i-1").assignment == b"X"
        # No heartbeats: expelled after the session timeout; the group goes Empty.
        for _ in range(100):
            if broker.broker.groups.groups["g"].state.value == "Empty":
                break
            threading.Event().wait(0.05)
        assert broker.broker.groups.groups["g"].state.value == "Empty"
        assert heartbeat(w2, r2.member_id, r2.generation_id) == UNKNOWN_MEMBER


def test_offset_commit_rules_and_fetch(broker):
    with Wire(broker) as w:
        # Standalone (no members): generation -1 and no member id.
        assert commit(w, "", -1, [("t", 0, 5, "meta"), ("t", 1, 7, None)]) == [0, 0]
        assert commit(w, "", -1, [("t", 9, 1, "")]) == [3]            # no partition 9
        assert commit(w, "", -1, [("t", 2, 1, "x" * 5000)]) == [METADATA_TOO_LARGE]
        r = w.request(FETCH_OFFSETS, 3, m.OffsetFetchRequest(group_id="g", topics=None))
        got = {(t.name, p.partition_index): (p.committed_offset, p.metadata) for t in r.topics for p in t.partitions}
        assert got == {("t", 0): (5, "meta"), ("t", 1): (7, "")}
        # With members, commits need the member and its generation.
        j = join(w)
        sync(w, j.member_id, j.generation_id, [(j.member_id, b"")])
        assert commit(w, "", -1, [("t", 0, 6, "")]) == [UNKNOWN_MEMBER]
        assert commit(w, "stranger", j.generation_id, [("t", 0, 6, "")]) == [UNKNOWN_MEMBER]
        assert commit(w, j.member_id, j.generation_id + 1, [("t", 0, 6, "")]) == [ILLEGAL_GENERATION]
        assert commit(w, j.member_id, j.generation_id, [("t", 0, 6, "m2")]) == [0]
        R = m.OffsetFetchRequest
        r = w.request(FETCH_OFFSETS, 1, R(group_id="g", topics=[R.OffsetFetchRequestTopic(
            name="t", partition_indexes=[0, 3])]))
        got = {p.partition_index: (p.committed_offset, p.metadata) for t in r.topics for p in t.partitions}
        assert got == {0: (6, "m2"), 3: (-1, "")}


def test_describe_list_and_delete_groups(broker):
    with Wire(broker) as w:
        j = join(w)
        sync(w, j.member_id, j.generation_id, [(j.member_id, b"ASSIGN")])
        commit(w, "", -1, [("t", 0, 1, "")], group="empty-one")
        d = w.request(DESCRIBE, 4, m.DescribeGroupsRequest(groups=["g", "empty-one", "none"]))
        by = {g.group_id: g for g in d.groups}
        assert by["g"].group_state == "Stable" and by["g"].protocol_data == "range"
        assert by["g"].protocol_type == "consumer"
        assert [(mm.member_id, mm.client_id, mm.member_assignment) for mm in by["g"].members] == \
            [(j.member_id, "wire-test", b"ASSIGN")]
        assert by["g"].members[0].client_host == "/127.0.0.1"
        assert by["g"].authorized_operations == -(1 << 31)
        assert by["empty-one"].group_state == "Empty" and by["none"].group_state == "Dead"
        lst = w.request(LIST, 4, m.ListGroupsRequest(states_filter=["Empty"]))
        assert [(g.group_id, g.group_state) for g in lst.groups] == [("empty-one", "Empty")]
        lst = w.request(LIST, 0, m.ListGroupsRequest())
        assert sorted(g.group_id for g in lst.groups) == ["empty-one", "g"]
        r = w.request(DELETE, 1, m.DeleteGroupsRequest(groups_names=["g", "empty-one", "none"]))
        assert {x.group_id: x.error_code for x in r.results} == {"g": NON_EMPTY, "empty-one": 0, "none": NOT_FOUND}
        r = w.request(FETCH_OFFSETS, 3, m.OffsetFetchRequest(group_id="empty-one", topics=None))
        assert r.topics == []


def test_groups_and_offsets_survive_a_restart(broker):
    with Wire(broker) as w:
        j = join(w, session=30000)
        sync(w, j.member_id, j.generation_id, [(j.member_id, b"KEEP")])
        assert commit(w, j.member_id, j.generation_id, [("t", 1, 42, "m")]) == [0]
        commit(w, "", -1, [("t", 0, 3, "")], group="gone")
        w.request(DELETE, 1, m.DeleteGroupsRequest(groups_names=["gone"]))
    broker.restart()
    with Wire(broker) as w:
        # The member's session carries on: same id, same generation, same assignment.
        assert heartbeat(w, j.member_id, j.generation_id) == 0
        assert sync(w, j.member_id, j.generation_id).assignment == b"KEEP"
        r = w.request(FETCH_OFFSETS, 3, m.OffsetFetchRequest(group_id="g", topics=None))
        assert [(p.partition_index, p.committed_offset, p.metadata) for t in r.topics for p in t.partitions] == \
            [(1, 42, "m")]
        r = w.request(FETCH_OFFSETS, 3, m.OffsetFetchRequest(group_id="gone", topics=None))
        assert r.topics == []
        assert "gone" not in broker.broker.groups.groups


def test_offset_retention(broker):
    gc = broker.broker.groups
    with Wire(broker) as w:
        # A standalone group: each offset expires by its own commit time.
        assert commit(w, "", -1, [("t", 0, 3, "")], group="solo") == [0]
        first = gc.groups["solo"].offsets[("t", 0)].commit_timestamp
        threading.Event().wait(0.01)
        assert commit(w, "", -1, [("t", 1, 4, "")], group="solo") == [0]
        second = gc.groups["solo"].offsets[("t", 1)].commit_timestamp
        assert second > first
        broker.broker.call(gc.expire_offsets, first + gc.retention_ms)          # nothing old enough
        assert set(gc.groups["solo"].offsets) == {("t", 0), ("t", 1)}
        broker.broker.call(gc.expire_offsets, second + gc.retention_ms)         # only the first
        assert set(gc.groups["solo"].offsets) == {("t", 1)}
        broker.broker.call(gc.expire_offsets, second + gc.retention_ms + 1)     # then the group
        assert "solo" not in gc.groups
        # A consumer group: its offsets go once it has been Empty for the retention time.
        j = join(w, group="cg")
        sync(w, j.member_id, j.generation_id, [(j.member_id, b"")], group="cg")
        assert commit(w, j.member_id, j.generation_id, [("t", 2, 5, "")], group="cg") == [0]
        broker.broker.call(gc.expire_offsets, 1 << 60)  # far future, but the group has a member
        assert ("t", 2) in gc.groups["cg"].offsets
        assert w.request(LEAVE, 1, m.LeaveGroupRequest(group_id="cg", member_id=j.member_id)).error_code == 0
        empty_since = gc.groups["cg"].empty_since
        broker.broker.call(gc.expire_offsets, empty_since + gc.retention_ms)
        assert "cg" in gc.groups
        broker.broker.call(gc.expire_offsets, empty_since + gc.retention_ms + 1)
        assert "cg" not in gc.groups
        r = w.request(FETCH_OFFSETS, 3, m.OffsetFetchRequest(group_id="solo", topics=None))
        assert r.topics == []


def test_a_probe_group_without_offsets_does_not_linger(broker):
    with Wire(broker) as w:
        assert w.request(JOIN, 4, join_req(group="probe", session=100)).error_code == MEMBER_ID_REQUIRED
        gc = broker.broker.groups
        for _ in range(100):  # the pending member id expires after its session timeout
            if not gc.groups["probe"].pending:
                break
            threading.Event().wait(0.02)
        broker.broker.call(gc.expire_offsets)
        assert "probe" not in gc.groups


def test_a_repeated_sync_answers_the_first_one(broker):
    with Wire(broker) as w1, Wire(broker) as w2a, Wire(broker) as w2b:
        a = join(w1, rebalance=5000)
        out = {}
        t = threading.Thread(target=lambda: out.update(b=join(w2a, rebalance=5000)))
        t.start()
        for _ in range(200):
            if broker.broker.groups.groups["g"].state.value == "PreparingRebalance":
                break
            threading.Event().wait(0.01)
        a2 = w1.request(JOIN, 5, join_req(member_id=a.member_id, rebalance=5000))
        t.join(10)
        b = out["b"]
        cid1 = w2a.send(SYNC, 3, m.SyncGroupRequest(group_id="g", generation_id=b.generation_id,
                                                    member_id=b.member_id, assignments=[]))
        threading.Event().wait(0.2)
        cid2 = w2b.send(SYNC, 3, m.SyncGroupRequest(group_id="g", generation_id=b.generation_id,
                                                    member_id=b.member_id, assignments=[]))
        assert w2a.receive(SYNC, 3, cid1).error_code == REBALANCE_IN_PROGRESS  # superseded, not lost
        sync(w1, a2.member_id, a2.generation_id, [(a2.member_id, b"A"), (b.member_id, b"B")])
        assert w2b.receive(SYNC, 3, cid2).assignment == b"B"


def test_a_returning_static_leader_is_not_asked_to_assign(broker):
    with Wire(broker) as w1, Wire(broker) as w2:
        a = join(w1, instance="lead")
        assert a.leader == a.member_id
        sync(w1, a.member_id, a.generation_id, [(a.member_id, b"KEEP")], instance="lead")
        again = join(w2, instance="lead")
        assert again.error_code == 0 and again.generation_id == a.generation_id
        assert again.leader == a.member_id != again.member_id and again.members == []
        assert sync(w2, again.member_id, again.generation_id, instance="lead").assignment == b"KEEP"


def test_offsets_topic_made_by_a_metadata_request_is_the_real_one(tmp_path):
    with running_broker(tmp_path / "d", config={"offsets.topic.num.partitions": "7"}) as b:
        with Wire(b) as w:
            r = w.request(3, 5, m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(
                name="__consumer_offsets")], allow_auto_topic_creation=True))
            assert len(r.topics[0].partitions) == 7
            assert b.broker.log_manager.topics["__consumer_offsets"].configs["cleanup.policy"] == "compact"
            r = w.request(19, 4, m.CreateTopicsRequest(topics=[m.CreateTopicsRequest.CreatableTopic(
                name="__transaction_state", num_partitions=1, replication_factor=1)], timeout_ms=1000))
            assert r.topics[0].error_code == 42
            assert commit(w, "", -1, [("__consumer_offsets", 0, 1, "")], group="x") == [0]
    # The placement follows the topic, not a changed config: offsets stay where they were written.
    with running_broker(tmp_path / "d", config={"offsets.topic.num.partitions": "50"}) as b:
        assert b.broker.groups.partition_for("x") == partition_for("x", 7)
        with Wire(b) as w:
            r = w.request(FETCH_OFFSETS, 3, m.OffsetFetchRequest(group_id="x", topics=None))
            assert [(t.name, p.committed_offset) for t in r.topics for p in t.partitions] == \
                [("__consumer_offsets", 1)]


def test_internal_topics_refuse_produce_and_delete_records(broker):
    from pylog import _engine
    with Wire(broker) as w:
        w.request(FIND, 2, m.FindCoordinatorRequest(key="g", key_type=0))
        P = m.ProduceRequest
        r = w.request(0, 7, P(acks=-1, timeout_ms=1000, topic_data=[P.TopicProduceData(
            name="__consumer_offsets", partition_data=[P.PartitionProduceData(
                index=0, records=_engine.encode_batch([None], keys=[b"\0\1forged"]))])]))
        assert r.responses[0].partition_responses[0].error_code == 17
        D = m.DeleteRecordsRequest
        r = w.request(21, 1, D(topics=[D.DeleteRecordsTopic(name="__consumer_offsets", partitions=[
            D.DeleteRecordsPartition(partition_index=0, offset=-1)])], timeout_ms=1000))
        assert r.topics[0].partitions[0].error_code == 42
        assert broker.broker.log_manager.partitions[("__consumer_offsets", 0)].log_end_offset == 0


def test_deleting_a_topic_forgets_its_committed_offsets(broker):
    with Wire(broker) as w:
        broker.broker.create_topic("doomed", 2)
        assert commit(w, "", -1, [("doomed", 0, 5, ""), ("t", 0, 9, "")]) == [0, 0]
        assert commit(w, "", -1, [("doomed", 1, 3, "")], group="only-doomed") == [0]
        r = w.request(20, 3, m.DeleteTopicsRequest(topic_names=["doomed"], timeout_ms=5000))
        assert r.responses[0].error_code == 0
        r = w.request(FETCH_OFFSETS, 3, m.OffsetFetchRequest(group_id="g", topics=None))
        assert [(t.name, p.partition_index) for t in r.topics for p in t.partitions] == [("t", 0)]
        assert "only-doomed" not in broker.broker.groups.groups
    broker.restart()  # the tombstones were stored
    with Wire(broker) as w:
        r = w.request(FETCH_OFFSETS, 3, m.OffsetFetchRequest(group_id="g", topics=None))
        assert [(t.name, p.partition_index) for t in r.topics for p in t.partitions] == [("t", 0)]


def test_the_offsets_topic_cannot_be_deleted_or_resized(broker):
    with Wire(broker) as w:
        w.request(FIND, 2, m.FindCoordinatorRequest(key="g", key_type=0))
        r = w.request(20, 3, m.DeleteTopicsRequest(topic_names=["__consumer_offsets"], timeout_ms=5000))
        assert r.responses[0].error_code == 42
        r = w.request(37, 1, m.CreatePartitionsRequest(topics=[m.CreatePartitionsRequest.CreatePartitionsTopic(
            name="__consumer_offsets", count=60)], timeout_ms=5000))
        assert r.results[0].error_code == 42
    assert broker.broker.log_manager.topics["__consumer_offsets"].num_partitions == 50
