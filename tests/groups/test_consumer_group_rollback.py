"""A KIP-848 group whose records cannot be written stays as it was (Kafka
reverts its coordinator's timeline to the last committed offset): in a
three-broker cluster whose __consumer_offsets needs two in-sync replicas,
the coordinator's followers stop replicating the group's partition, its ISR
shrinks to the leader, and appends fail with NOT_ENOUGH_REPLICAS; the
heartbeats that would have changed the group are answered
COORDINATOR_NOT_AVAILABLE and leave no member, epoch or assignment behind."""
from __future__ import annotations

from pylog.client.wire import Connection
from pylog.consumer.assignors import encode_assignment, encode_subscription
from pylog.protocol import messages as m
from pylog.groups import offsets_topic as ot
from pylog.protocol.error_codes import Errors

from tests.cluster.test_groups_cluster import CLUSTER, coordinators
from tests.cluster.zkcluster import create_topic, embedded_cluster, wait_for

from .kip848 import CONFIG, RETRIABLE, describe, heartbeat, member_id, owned

GROUP = "g-rollback"


def test_a_heartbeat_whose_records_fail_leaves_the_group_unchanged():
    # The member sends nothing while the ISR shrinks: a session long enough
    # that it is not fenced meanwhile (a fence appended before the shrink
    # commits once the ISR is the leader alone, and stays).
    with embedded_cluster(3, base={**CLUSTER, **CONFIG, "min.insync.replicas": "2",
                                   "group.consumer.session.timeout.ms": "45000"}) as bs:
        create_topic(bs, "rb", 2)
        coord_id = next(iter(coordinators(bs, GROUP).values()))
        coord = next(b for b in bs if b.broker.broker_id == coord_id)
        conn = Connection(coord.broker.advertised_host, coord.broker.advertised_port)
        a = member_id()
        r = heartbeat(conn, GROUP, a, 0, ["rb"])
        assert r.error_code == 0 and len(r.assignment.topic_partitions[0].partitions) == 2
        assert heartbeat(conn, GROUP, a, r.member_epoch, owned=owned(r)).error_code == 0
        before = describe(conn, GROUP)
        assert before.group_state == "Stable"
        # A classic group in use on the same offsets partition, for an upgrade that cannot be written.
        index = ot.partition_for(GROUP, 6)
        classic = next(f"g-rollback-classic-{i}" for i in range(1000)
                       if ot.partition_for(f"g-rollback-classic-{i}", 6) == index)
        J, S = m.JoinGroupRequest, m.SyncGroupRequest
        while True:
            j = conn.request(J(group_id=classic, session_timeout_ms=30000, rebalance_timeout_ms=30000, member_id="",
                               group_instance_id=None, protocol_type="consumer", reason=None,
                               protocols=[J.JoinGroupRequestProtocol(name="range",
                                                                     metadata=encode_subscription(["rb"]))]),
                             api_version=3)
            if j.error_code not in RETRIABLE:
                break
        assert j.error_code == 0
        assert conn.request(S(group_id=classic, generation_id=j.generation_id, member_id=j.member_id,
                              group_instance_id=None, assignments=[S.SyncGroupRequestAssignment(
                                  member_id=j.member_id, assignment=encode_assignment([]))]),
                            api_version=3).error_code == 0

        key = (ot.TOPIC, ot.partition_for(GROUP, 6))
        part = coord.broker.log_manager.partitions[key]
        for f in (b for b in bs if b is not coord):
            fm = f.broker.replica_manager.fetchers
            f.broker.call(lambda fm=fm: fm.remove(key))
        # A write the followers do not fetch: the leader drops them from the
        # ISR (a follower with nothing to fetch is in sync), and the write
        # commits then (the ISR is the leader alone).
        O = m.OffsetCommitRequest
        assert conn.request(O(group_id=classic, generation_id_or_member_epoch=j.generation_id,
                              member_id=j.member_id, group_instance_id=None, topics=[
                                  O.OffsetCommitRequestTopic(name="rb", partitions=[
                                      O.OffsetCommitRequestPartition(partition_index=0, committed_offset=1,
                                                                     committed_leader_epoch=-1,
                                                                     committed_metadata="")])]),
                            api_version=8).topics[0].partitions[0].error_code == 0
        wait_for(lambda: coord.broker.call(lambda: list(part.isr)) == [coord_id],
                 what="the offsets partition's ISR shrunk to its leader")

        tried = []
        for _ in range(3):
            b = member_id()
            tried.append(b)
            joined = heartbeat(conn, GROUP, b, 0, ["rb"], retry=False)
            assert joined.error_code == Errors.COORDINATOR_NOT_AVAILABLE, joined
        # The upgrade of the classic group is refused with its records, and undone: still classic.
        up = heartbeat(conn, classic, member_id(), 0, ["rb"], retry=False)
        assert up.error_code == Errors.COORDINATOR_NOT_AVAILABLE
        assert describe(conn, classic).error_code == Errors.GROUP_ID_NOT_FOUND
        H = m.HeartbeatRequest
        assert conn.request(H(group_id=classic, generation_id=j.generation_id, member_id=j.member_id,
                              group_instance_id=None), api_version=3).error_code == 0
        # A member leaving is refused too, and stays.
        assert heartbeat(conn, GROUP, a, -1, retry=False).error_code == Errors.COORDINATOR_NOT_AVAILABLE

        after = describe(conn, GROUP)
        assert [mm.member_id for mm in after.members] == [a]
        assert (after.group_epoch, after.assignment_epoch, after.group_state) == \
            (before.group_epoch, before.assignment_epoch, "Stable")
        assert after.members[0].member_epoch == before.members[0].member_epoch
        assert after.members[0].assignment.topic_partitions[0].partitions == [0, 1]
        # The member carries on at its epoch, owning what it owned: nothing to write, so answered.
        again = heartbeat(conn, GROUP, a, r.member_epoch, owned=owned(r), retry=False)
        assert (again.error_code, again.member_epoch) == (0, r.member_epoch)
        # The refused members are unknown to the group.
        for b in tried:
            assert heartbeat(conn, GROUP, b, 1, owned=[], retry=False).error_code == Errors.UNKNOWN_MEMBER_ID
        conn.close()
