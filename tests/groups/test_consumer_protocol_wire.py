"""KIP-848 consumer groups over raw requests on a real broker: what
ConsumerGroupHeartbeat answers (epochs, assignments, Kafka's errors), the
member-epoch checks of OffsetCommit/OffsetFetch v9, the classic APIs meeting a
consumer group, and the group surviving a broker restart (replayed from
__consumer_offsets)."""
from __future__ import annotations

import pytest

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker, wait_until

from .helpers import create_topic
from .kip848 import CONFIG, RETRIABLE, connect, describe, heartbeat, member_id, owned


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


@pytest.fixture
def conn(broker):
    c = connect(broker)
    yield c
    c.close()


def _parts(resp):
    return sorted((tp.topic_id, p) for tp in resp.assignment.topic_partitions for p in tp.partitions)


def test_join_gets_every_partition_then_steady_heartbeats_carry_no_assignment(broker, conn):
    create_topic(broker, "w-join", 4)
    mid = member_id()
    r = heartbeat(conn, "w-join-g", mid, 0, ["w-join"])
    assert r.error_code == 0, r.error_message
    assert r.member_id == mid and r.member_epoch >= 1
    assert r.heartbeat_interval_ms == 500
    assert len(_parts(r)) == 4
    again = heartbeat(conn, "w-join-g", mid, r.member_epoch, owned=owned(r))
    assert again.error_code == 0 and again.member_epoch == r.member_epoch
    assert again.assignment is None          # nothing changed: no assignment sent
    left = heartbeat(conn, "w-join-g", mid, -1)
    assert left.error_code == 0 and left.member_epoch == -1


def test_describe_v1_names_each_member_type(broker, conn):
    create_topic(broker, "w-type", 2)
    mid = member_id()
    assert heartbeat(conn, "w-type-g", mid, 0, ["w-type"]).error_code == 0
    g = describe(conn, "w-type-g", version=1)
    assert [(mm.member_id, mm.member_type) for mm in g.members] == [(mid, 1)]   # KIP-1099: a consumer member
    # v0 has no MemberType: what it decodes is the field's default (-1, unknown).
    assert [mm.member_type for mm in describe(conn, "w-type-g", version=0).members] == [-1]


def test_second_member_gets_partitions_only_after_the_first_revokes(broker, conn):
    create_topic(broker, "w-revoke", 4)
    a, b = member_id(), member_id()
    ra = heartbeat(conn, "w-revoke-g", a, 0, ["w-revoke"])
    rb = heartbeat(conn, "w-revoke-g", b, 0, ["w-revoke"])
    assert rb.error_code == 0
    # b's target is half the partitions, but a still owns them all: b gets none yet.
    assert _parts(rb) == []
    # a heartbeats still owning everything: it is told to keep only its half (revocation by omission).
    ra2 = heartbeat(conn, "w-revoke-g", a, ra.member_epoch, owned=owned(ra))
    assert ra2.error_code == 0 and len(_parts(ra2)) == 2
    assert ra2.member_epoch == ra.member_epoch      # still revoking: epoch unchanged
    # a reports the revocation done: it moves to the new epoch.
    ra3 = heartbeat(conn, "w-revoke-g", a, ra2.member_epoch, owned=owned(ra2))
    assert ra3.member_epoch == rb.member_epoch
    # Now b gets the released half.
    rb2 = heartbeat(conn, "w-revoke-g", b, rb.member_epoch, owned=[])
    assert len(_parts(rb2)) == 2
    assert set(_parts(rb2)).isdisjoint(_parts(ra2))
    g = describe(conn, "w-revoke-g")
    assert g.error_code == 0 and g.group_state == "Stable"
    assert {mm.member_id for mm in g.members} == {a, b}
    for mm in g.members:
        assert [tp.topic_name for tp in mm.assignment.topic_partitions] == ["w-revoke"]
        assert len(mm.assignment.topic_partitions[0].partitions) == 2
        assert mm.target_assignment.topic_partitions[0].partitions == mm.assignment.topic_partitions[0].partitions


def test_epoch_errors(broker, conn):
    create_topic(broker, "w-epoch", 2)
    mid = member_id()
    r = heartbeat(conn, "w-epoch-g", mid, 0, ["w-epoch"])
    assert heartbeat(conn, "w-epoch-g", mid, r.member_epoch + 1).error_code == Errors.FENCED_MEMBER_EPOCH
    assert heartbeat(conn, "w-epoch-g", member_id(), r.member_epoch).error_code == Errors.UNKNOWN_MEMBER_ID
    assert heartbeat(conn, "w-epoch-g", mid, r.member_epoch).error_code == 0
    # A second member moves the epoch on; the first rejoining at 0 with the same id is fenced, as in Kafka.
    other = member_id()
    r2 = heartbeat(conn, "w-epoch-g", other, 0, ["w-epoch"])
    heartbeat(conn, "w-epoch-g", mid, r.member_epoch, owned=owned(r))
    assert heartbeat(conn, "w-epoch-g", mid, 0, ["w-epoch"]).error_code == Errors.FENCED_MEMBER_EPOCH
    assert r2.error_code == 0


def test_bad_first_heartbeats(broker, conn):
    create_topic(broker, "w-bad", 1)
    bad = heartbeat(conn, "w-bad-g", member_id(), 0, ["w-bad"], assignor="no-such-assignor")
    assert bad.error_code == Errors.UNSUPPORTED_ASSIGNOR and bad.member_id is None
    assert heartbeat(conn, "w-bad-g", member_id(), 0, ["w-bad"],
                     rebalance_timeout_ms=-1).error_code == Errors.INVALID_REQUEST
    assert heartbeat(conn, "w-bad-g", member_id(), 0, None).error_code == Errors.INVALID_REQUEST
    assert heartbeat(conn, "w-bad-g", "", 0, ["w-bad"]).error_code == Errors.INVALID_REQUEST   # v1: client's id
    assert heartbeat(conn, "w-bad-g", member_id(), -3).error_code == Errors.INVALID_REQUEST
    assert heartbeat(conn, "w-bad-g", member_id(), -2).error_code == Errors.INVALID_REQUEST   # no instance id
    assert heartbeat(conn, "w-bad-g", member_id(), 0, ["w-bad"],
                     instance_id="").error_code == Errors.INVALID_REQUEST
    assert heartbeat(conn, "w-bad-g", member_id(), 0, None,
                     regex="(unclosed").error_code == Errors.INVALID_REGULAR_EXPRESSION
    assert heartbeat(conn, "w-missing-g", member_id(), 3).error_code == Errors.GROUP_ID_NOT_FOUND
    # v0: the broker makes the member id of a join without one.
    r0 = heartbeat(conn, "w-bad-g", "", 0, ["w-bad"], version=0)
    assert r0.error_code == 0 and r0.member_id


def test_static_members(broker, conn):
    create_topic(broker, "w-static", 4)
    a, b = member_id(), member_id()
    ra = heartbeat(conn, "w-static-g", a, 0, ["w-static"], instance_id="i-a")
    assert ra.error_code == 0
    # Another member id with the same instance id while i-a is active: refused.
    assert heartbeat(conn, "w-static-g", b, 0, ["w-static"],
                     instance_id="i-a").error_code == Errors.UNRELEASED_INSTANCE_ID
    # i-a leaves temporarily (-2): its partitions stay reserved for it.
    left = heartbeat(conn, "w-static-g", a, -2, instance_id="i-a")
    assert left.error_code == 0 and left.member_epoch == -2
    rb = heartbeat(conn, "w-static-g", b, 0, ["w-static"], instance_id="i-a")
    assert rb.error_code == 0
    assert _parts(rb) == _parts(ra)          # the same partitions, no rebalance
    g = describe(conn, "w-static-g")
    assert [(mm.member_id, mm.instance_id) for mm in g.members] == [(b, "i-a")]
    assert g.group_epoch == 1                # a static member's return moves no epoch
    # Its target came along: a later rebalance starts from it.
    assert g.members[0].target_assignment.topic_partitions[0].partitions == [0, 1, 2, 3]
    assert heartbeat(conn, "w-static-g", a, ra.member_epoch, instance_id="i-a").error_code == \
        Errors.FENCED_INSTANCE_ID


def test_offsets_with_member_epochs(broker, conn):
    create_topic(broker, "w-off", 1)
    mid = member_id()
    r = heartbeat(conn, "w-off-g", mid, 0, ["w-off"])
    epoch = r.member_epoch

    def commit(member, ep, version=9):
        C = m.OffsetCommitRequest
        req = C(group_id="w-off-g", generation_id_or_member_epoch=ep, member_id=member, group_instance_id=None,
                retention_time_ms=-1, topics=[C.OffsetCommitRequestTopic(name="w-off", partitions=[
                    C.OffsetCommitRequestPartition(partition_index=0, committed_offset=7, committed_leader_epoch=-1,
                                                   committed_metadata="")])])
        return conn.request(req, api_version=version).topics[0].partitions[0].error_code

    assert commit(mid, epoch + 1) == Errors.STALE_MEMBER_EPOCH
    assert commit("nobody", epoch) == Errors.UNKNOWN_MEMBER_ID
    assert commit(mid, epoch, version=8) == Errors.UNSUPPORTED_VERSION
    assert commit("", -1) == Errors.UNKNOWN_MEMBER_ID        # the group has members: not an admin commit
    assert commit(mid, epoch) == Errors.NONE

    def fetch(member, ep):
        F = m.OffsetFetchRequest
        req = F(require_stable=False, groups=[F.OffsetFetchRequestGroup(
            group_id="w-off-g", member_id=member, member_epoch=ep,
            topics=[F.OffsetFetchRequestTopics(name="w-off", partition_indexes=[0])])])
        return conn.request(req, api_version=9).groups[0]

    got = fetch(mid, epoch)
    assert got.error_code == 0 and got.topics[0].partitions[0].committed_offset == 7
    assert fetch(mid, epoch + 1).error_code == Errors.STALE_MEMBER_EPOCH
    assert fetch("nobody", epoch).error_code == Errors.UNKNOWN_MEMBER_ID
    assert fetch(None, -1).error_code == 0     # an admin's read


def test_classic_apis_meet_a_consumer_group(broker, conn):
    create_topic(broker, "w-mix", 1)
    r = heartbeat(conn, "w-mix-g", member_id(), 0, ["w-mix"])
    assert r.error_code == 0
    J = m.JoinGroupRequest
    join = conn.request(J(group_id="w-mix-g", session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="",
                          group_instance_id=None, protocol_type="consumer", reason=None,
                          protocols=[J.JoinGroupRequestProtocol(name="range", metadata=b"")]), api_version=5)
    # Served by the consumer group (a classic member joining it, `bidirectional`): first the KIP-394 id.
    assert join.error_code == Errors.MEMBER_ID_REQUIRED and join.member_id
    # DescribeGroups (< v6) shows a consumer group as Dead, no error; ListGroups knows its type.
    d = conn.request(m.DescribeGroupsRequest(groups=["w-mix-g"], include_authorized_operations=False),
                     api_version=5).groups[0]
    assert (d.error_code, d.group_state, d.members) == (0, "Dead", [])
    listed = conn.request(m.ListGroupsRequest(states_filter=[], types_filter=["consumer"]), api_version=5)
    row = [g for g in listed.groups if g.group_id == "w-mix-g"]
    assert [(g.group_type, g.protocol_type, g.group_state) for g in row] == [("consumer", "consumer", "Stable")]
    # ConsumerGroupDescribe of a group that is not a consumer group, and of none.
    assert describe(conn, "w-nothing-g").error_code == Errors.GROUP_ID_NOT_FOUND


def test_consumer_heartbeat_on_a_classic_group_in_use(broker, conn):
    J = m.JoinGroupRequest
    req = J(group_id="w-classic-g", session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="",
            group_instance_id=None, protocol_type="consumer", reason=None,
            protocols=[J.JoinGroupRequestProtocol(name="range", metadata=b"")])
    while True:   # v3: no KIP-394 round trip, the member joins at once
        j = conn.request(req, api_version=3)
        if j.error_code not in RETRIABLE:
            break
    assert j.error_code == 0
    r = heartbeat(conn, "w-classic-g", member_id(), 0, ["w-mix"])
    # Kafka's answer when the classic members' subscriptions are not the consumer protocol's
    # (convertToConsumerGroup; the policies themselves: test_group_migration.py) ...
    assert (r.error_code, r.error_message) == (
        Errors.GROUP_ID_NOT_FOUND,
        "Cannot upgrade classic group w-classic-g to consumer group because the embedded consumer protocol is "
        "malformed.")
    # ... and to a heartbeat that is not a join (getOrMaybeCreateConsumerGroup).
    r = heartbeat(conn, "w-classic-g", member_id(), 3, owned=[])
    assert (r.error_code, r.error_message) == (Errors.GROUP_ID_NOT_FOUND, "Group w-classic-g is not a consumer group.")


def test_delete_an_empty_consumer_group(broker, conn):
    create_topic(broker, "w-del", 1)
    mid = member_id()
    heartbeat(conn, "w-del-g", mid, 0, ["w-del"])
    D = m.DeleteGroupsRequest
    assert conn.request(D(groups_names=["w-del-g"]), api_version=2).results[0].error_code == Errors.NON_EMPTY_GROUP
    assert heartbeat(conn, "w-del-g", mid, -1).error_code == 0
    assert describe(conn, "w-del-g").group_state == "Empty"
    assert conn.request(D(groups_names=["w-del-g"]), api_version=2).results[0].error_code == 0
    assert describe(conn, "w-del-g").error_code == Errors.GROUP_ID_NOT_FOUND


def test_the_group_survives_a_broker_restart(tmp_path):
    with running_broker(tmp_path / "data", config=CONFIG) as b:
        create_topic(b, "w-restart", 3)
        conn = connect(b)
        mid = member_id()
        r = heartbeat(conn, "w-restart-g", mid, 0, ["w-restart"], instance_id="keep")
        before = describe(conn, "w-restart-g")
        conn.close()
        b.restart()
        conn = connect(b)
        after = wait_until(lambda: (lambda g: g if g.error_code == 0 else None)(describe(conn, "w-restart-g")),
                           "the group reloaded")
        assert (after.group_epoch, after.assignment_epoch) == (before.group_epoch, before.assignment_epoch)
        [mm] = after.members
        assert (mm.member_id, mm.instance_id, mm.member_epoch) == (mid, "keep", r.member_epoch)
        assert mm.assignment.topic_partitions[0].partitions == [0, 1, 2]
        # The member carries on at its epoch on the restarted coordinator.
        again = heartbeat(conn, "w-restart-g", mid, r.member_epoch, instance_id="keep", owned=owned(r))
        assert again.error_code == 0 and again.member_epoch == r.member_epoch
        conn.close()


def test_heartbeats_refused_when_the_consumer_protocol_is_not_enabled():
    with running_broker(config={**CONFIG, "group.coordinator.rebalance.protocols": "classic"}) as b:
        conn = connect(b)
        create_topic(b, "w-off-proto", 1)
        r = heartbeat(conn, "w-off-proto-g", member_id(), 0, ["w-off-proto"])
        assert r.error_code == Errors.UNSUPPORTED_VERSION
        conn.close()


def _commit(conn, group, member, epoch, offset, topic, version=9):
    C = m.OffsetCommitRequest
    req = C(group_id=group, generation_id_or_member_epoch=epoch, member_id=member, group_instance_id=None,
            retention_time_ms=-1, topics=[C.OffsetCommitRequestTopic(name=topic, partitions=[
                C.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset, committed_leader_epoch=-1,
                                               committed_metadata="")])])
    while True:
        code = conn.request(req, api_version=version).topics[0].partitions[0].error_code
        if code not in RETRIABLE:
            return code


def _fetched(conn, group, topic):
    F = m.OffsetFetchRequest
    while True:
        g = conn.request(F(require_stable=False, groups=[F.OffsetFetchRequestGroup(
            group_id=group, member_id=None, member_epoch=-1,
            topics=[F.OffsetFetchRequestTopics(name=topic, partition_indexes=[0])])]), api_version=9).groups[0]
        if g.error_code not in RETRIABLE:
            return g.topics[0].partitions[0].committed_offset


def test_empty_groups_convert_both_ways_keeping_their_offsets(tmp_path):
    with running_broker(tmp_path / "data", config=CONFIG) as b:
        create_topic(b, "w-conv", 1)
        conn = connect(b)
        assert _commit(conn, "w-conv-g", "", -1, 5, "w-conv") == 0          # a simple (classic) group
        mid = member_id()
        r = heartbeat(conn, "w-conv-g", mid, 0, ["w-conv"])                  # empty: becomes a consumer group
        assert r.error_code == 0
        assert _commit(conn, "w-conv-g", mid, r.member_epoch, 6, "w-conv") == 0
        conn.close()
        b.restart()
        conn = connect(b)
        assert _fetched(conn, "w-conv-g", "w-conv") == 6
        g = wait_until(lambda: (lambda g: g if g.error_code == 0 else None)(describe(conn, "w-conv-g")),
                       "the consumer group reloaded")
        assert [mm.member_id for mm in g.members] == [mid]
        assert heartbeat(conn, "w-conv-g", mid, -1).error_code == 0
        # Empty again: a classic JoinGroup turns it back into a classic group, offsets kept.
        J = m.JoinGroupRequest
        j = conn.request(J(group_id="w-conv-g", session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="",
                           group_instance_id=None, protocol_type="consumer", reason=None,
                           protocols=[J.JoinGroupRequestProtocol(name="range", metadata=b"")]), api_version=3)
        assert j.error_code == 0
        assert describe(conn, "w-conv-g").error_code == Errors.GROUP_ID_NOT_FOUND
        conn.close()
        b.restart()
        conn = connect(b)
        assert _fetched(conn, "w-conv-g", "w-conv") == 6
        assert describe(conn, "w-conv-g").error_code == Errors.GROUP_ID_NOT_FOUND   # classic after the replay
        conn.close()


def test_a_group_config_override_sets_the_heartbeat_interval(broker, conn):
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
    create_topic(broker, "w-gcfg", 1)
    adm = AdminClient({"bootstrap.servers": str(broker)})
    res = ConfigResource(ResourceType.GROUP, "w-gcfg-g", incremental_configs=[
        ConfigEntry("consumer.heartbeat.interval.ms", "700", incremental_operation=AlterConfigOpType.SET)])
    adm.incremental_alter_configs([res])[res].result(timeout=30)
    r = wait_until(lambda: (lambda r: r if r.heartbeat_interval_ms == 700 else None)(
        heartbeat(conn, "w-gcfg-g", member_id(), 0, ["w-gcfg"])), "the group's own heartbeat interval")
    assert r.error_code == 0
    other = heartbeat(conn, "w-gcfg-other", member_id(), 0, ["w-gcfg"])
    assert other.heartbeat_interval_ms == 500          # the broker's value for every other group


def test_a_member_that_never_revokes_is_fenced_after_its_rebalance_timeout(broker, conn):
    create_topic(broker, "w-slow", 4)
    a, b = member_id(), member_id()
    ra = heartbeat(conn, "w-slow-g", a, 0, ["w-slow"], rebalance_timeout_ms=1000)
    assert heartbeat(conn, "w-slow-g", b, 0, ["w-slow"]).error_code == 0
    everything = owned(ra)

    def a_fenced():
        # a keeps heartbeating (its session stays alive) but never gives anything up.
        r = heartbeat(conn, "w-slow-g", a, ra.member_epoch, owned=everything)
        return r.error_code == Errors.UNKNOWN_MEMBER_ID
    wait_until(a_fenced, "the non-revoking member fenced")
    got = wait_until(lambda: (lambda r: r if r.assignment is not None and len(_parts(r)) == 4 else None)(
        heartbeat(conn, "w-slow-g", b, describe(conn, "w-slow-g").members[0].member_epoch, owned=[])),
        "the other member given every partition")
    assert got.error_code == 0


def test_records_in_consumer_offsets_have_kafkas_layouts(tmp_path):
    """What a join and a leave write, read back by `pylog dump-log
    --offsets-decoder` (Kafka's record types and field names)."""
    import glob
    import json
    import re
    import subprocess
    import sys

    from pylog.groups.offsets_topic import partition_for
    data = tmp_path / "data"
    with running_broker(data, config=CONFIG) as b:
        create_topic(b, "rx-layout", 1)
        conn = connect(b)
        mid = member_id()
        r = heartbeat(conn, "w-layout-g", mid, 0, [], regex="rx-.*")
        assert r.error_code == 0
        # The regex is resolved off the heartbeat; a later heartbeat gets its topic.
        wait_until(lambda: (lambda r: r.assignment is not None and len(_parts(r)) == 1)(
            heartbeat(conn, "w-layout-g", mid, r.member_epoch, owned=[])), "the regex's topic assigned")
        assert heartbeat(conn, "w-layout-g", mid, -1).error_code == 0
        conn.close()
    files = glob.glob(f"{data}/__consumer_offsets-{partition_for('w-layout-g', 50)}/*.log")
    out = subprocess.run([sys.executable, "-m", "pylog", "dump-log", "--offsets-decoder", "--files", *files],
                         capture_output=True, text=True, check=True).stdout
    rows = [(json.loads(k)["type"], v) for k, v in re.findall(r"key: (\{.*?\}\}) payload: (\S.*)$", out, re.M)]
    assert [(t, v == "<DELETE>") for t, v in rows] == [
        ("5", False), ("3", False), ("7", False), ("6", False), ("8", False),   # the join
        ("16", False), ("3", False),                                            # the regex resolved
        ("7", False), ("6", False), ("8", False),                               # the heartbeat after
        ("8", True), ("7", True), ("5", True), ("3", False), ("16", True)]      # the leave
    current = json.loads(rows[4][1])["data"]
    assert current["memberEpoch"] == 1 and current["state"] == 0
    assert json.loads(rows[5][1])["data"]["topics"] == ["rx-layout"]
    assert json.loads(rows[9][1])["data"]["memberEpoch"] == 2


def test_a_deleted_topic_leaves_the_assignment(broker, conn):
    from confluent_kafka.admin import AdminClient
    create_topic(broker, "w-gone-a", 2)
    create_topic(broker, "w-gone-b", 2)
    mid = member_id()
    r = heartbeat(conn, "w-gone-g", mid, 0, ["w-gone-a", "w-gone-b"])
    assert len(_parts(r)) == 4
    adm = AdminClient({"bootstrap.servers": str(broker)})
    adm.delete_topics(["w-gone-b"])["w-gone-b"].result(30)
    epoch, mine = r.member_epoch, owned(r)

    def shrunk():
        nonlocal epoch, mine
        got = heartbeat(conn, "w-gone-g", mid, epoch, owned=mine)
        assert got.error_code == 0, got.error_message
        epoch = got.member_epoch
        if got.assignment is not None:
            mine = owned(got)      # the member gives up what it is no longer given
        g = describe(conn, "w-gone-g")
        return epoch > r.member_epoch and g.group_state == "Stable" and \
            [tp.topic_name for tp in g.members[0].assignment.topic_partitions] == ["w-gone-a"]
    wait_until(shrunk, "the deleted topic's partitions gone from the assignment")
    assert len(mine) == 1 and len(mine[0].partitions) == 2


def test_group_max_size():
    with running_broker(config={**CONFIG, "group.consumer.max.size": "1"}) as b:
        create_topic(b, "w-max", 1)
        conn = connect(b)
        assert heartbeat(conn, "w-max-g", member_id(), 0, ["w-max"]).error_code == 0
        assert heartbeat(conn, "w-max-g", member_id(), 0, ["w-max"]).error_code == Errors.GROUP_MAX_SIZE_REACHED
        conn.close()


def test_an_empty_consumer_group_expires_with_its_offsets(broker, conn):
    import asyncio
    import time as _time
    create_topic(broker, "w-expire", 1)
    mid = member_id()
    r = heartbeat(conn, "w-expire-g", mid, 0, ["w-expire"])
    assert _commit(conn, "w-expire-g", mid, r.member_epoch, 3, "w-expire") == 0
    coordinator = broker.broker.groups

    def expire(after_ms):
        async def run():
            index = coordinator.partition_for("w-expire-g")
            return coordinator.runtime.schedule(index, coordinator.expire_offsets,
                                                int(_time.time() * 1000) + after_ms, index)
        asyncio.run_coroutine_threadsafe(run(), broker.broker._loop).result(30)

    week = coordinator.retention_ms
    expire(2 * week)                                       # a member is in: nothing expires
    assert describe(conn, "w-expire-g").error_code == 0
    assert heartbeat(conn, "w-expire-g", mid, -1).error_code == 0
    expire(0)                                              # empty, but not for long
    assert _fetched(conn, "w-expire-g", "w-expire") == 3
    expire(2 * week)
    assert describe(conn, "w-expire-g").error_code == Errors.GROUP_ID_NOT_FOUND
    assert _fetched(conn, "w-expire-g", "w-expire") == -1
