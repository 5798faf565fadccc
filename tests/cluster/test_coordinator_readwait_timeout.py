"""A group write that is appended but not replicated in time, as Kafka's
CoordinatorRuntime treats it: the request is answered with the timeout's
error (COORDINATOR_NOT_AVAILABLE) but the state change stays applied, since
its records stay in the log and commit once the follower is back. Only an
append that fails is undone. Three real brokers; a follower of the group's
__consumer_offsets partition stops fetching so the high watermark stalls."""
from __future__ import annotations

import uuid

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors

from .test_coordinator_readwait import GROUP, conn, heartbeat, owned_of
from .test_coordinator_readwait_ops import held_cluster, simple_commit
from .test_coordinator_runtime import CLUSTER

# Short: the failing write waits it out once.
WRITE_TIMEOUT_MS = 3000


def describe(b, group):
    with conn(b) as c:
        r = c.request(m.ConsumerGroupDescribeRequest(group_ids=[group], include_authorized_operations=False),
                      api_version=0)
    return r.groups[0]


def test_a_timed_out_join_keeps_its_member_and_its_records_commit_later(zk_connect):
    base = {**CLUSTER, "offsets.commit.timeout.ms": str(WRITE_TIMEOUT_MS),
            "group.consumer.session.timeout.ms": "60000", "group.consumer.heartbeat.interval.ms": "5000"}
    with held_cluster(zk_connect, base, (("rw", 2),)) as (bs, coord, index, held):
        leader_part = held.part
        held.hold()
        mid = str(uuid.uuid4())
        before = coord.broker.call(lambda: leader_part.log_end_offset)
        with conn(coord) as c:
            r = heartbeat(c, GROUP, mid, 0, ["rw"], retry=False)
        # Appended (the member, the group epoch, its assignment), never replicated in time.
        assert r.error_code == Errors.COORDINATOR_NOT_AVAILABLE, r
        assert coord.broker.call(lambda: leader_part.log_end_offset) > before
        assert coord.broker.call(lambda: leader_part.high_watermark) <= before

        held.release()
        held.caught_up()
        # The records committed: the coordinator's state is theirs (a reverted
        # member would be missing here while every replica's log has it).
        d = describe(coord, GROUP)
        assert d.error_code == 0, d
        assert [mm.member_id for mm in d.members] == [mid]
        epoch = d.members[0].member_epoch
        assert epoch >= 1
        assigned = sorted(p for tp in d.members[0].assignment.topic_partitions for p in tp.partitions)
        assert assigned == [0, 1]

        # The client retries its join: it is given the member's epoch and
        # partitions as they stand, with no new epoch for the group.
        with conn(coord) as c:
            r = heartbeat(c, GROUP, mid, 0, ["rw"])
        assert r.error_code == 0, r
        assert r.member_epoch == epoch
        assert sorted(p for tp in r.assignment.topic_partitions for p in tp.partitions) == [0, 1]
        assert describe(coord, GROUP).group_epoch == d.group_epoch


def fetch_offset(b, group):
    O = m.OffsetFetchRequest
    with conn(b) as c:
        r = c.request(O(group_id=group, topics=[O.OffsetFetchRequestTopic(name="rw", partition_indexes=[0])]),
                      api_version=5)
    assert r.error_code == 0, r
    return r.topics[0].partitions[0].committed_offset


def test_a_timed_out_commit_applies_once_its_records_commit(zk_connect):
    """Kafka keeps a timed-out commit's offset in its state and reads it
    once the high watermark passes it; the coordinator that answered the
    timeout must not serve the older offset the log has overwritten."""
    base = {**CLUSTER, "offsets.commit.timeout.ms": str(WRITE_TIMEOUT_MS)}
    with held_cluster(zk_connect, base) as (bs, coord, index, held):
        assert simple_commit(coord, GROUP, 5) == 0
        assert fetch_offset(coord, GROUP) == 5
        held.hold()
        # Appended, not replicated in time: Kafka 4's answer to a timed-out write.
        assert simple_commit(coord, GROUP, 9) == Errors.COORDINATOR_NOT_AVAILABLE
        assert fetch_offset(coord, GROUP) == 5        # not committed: not read
        held.release()
        held.caught_up()
        # Committed now, on every replica: the coordinator reads it too.
        assert fetch_offset(coord, GROUP) == 9


def test_a_timed_out_epoch_bump_is_found_by_the_retry_at_the_previous_epoch(zk_connect):
    """librdkafka's path after a heartbeat answered COORDINATOR_NOT_AVAILABLE:
    it heartbeats again at the epoch it knows. The bump that timed out is
    kept, and the retry at the previous epoch (owning a subset of the new
    assignment) is given the new epoch and partitions, with no new epoch."""
    base = {**CLUSTER, "offsets.commit.timeout.ms": str(WRITE_TIMEOUT_MS),
            "group.consumer.session.timeout.ms": "60000", "group.consumer.heartbeat.interval.ms": "5000"}
    with held_cluster(zk_connect, base, (("rw", 2), ("rw2", 2))) as (bs, coord, index, held):
        mid = str(uuid.uuid4())
        with conn(coord) as c:
            r = heartbeat(c, GROUP, mid, 0, ["rw"])
            while not (r.assignment is not None and r.assignment.topic_partitions):
                r = heartbeat(c, GROUP, mid, r.member_epoch)
            epoch, owned = r.member_epoch, owned_of(r)
            assert heartbeat(c, GROUP, mid, epoch, owned=owned).error_code == 0
            d = describe(coord, GROUP)
            held.hold()
            # A new subscription: a new group epoch, target and member epoch, not replicated in time.
            r = heartbeat(c, GROUP, mid, epoch, ["rw", "rw2"], owned=owned, retry=False)
            assert r.error_code == Errors.COORDINATOR_NOT_AVAILABLE, r
            held.release()
            held.caught_up()
            after = describe(coord, GROUP)
            assert after.group_epoch == d.group_epoch + 1
            assert after.members[0].member_epoch > epoch
            # The retry, as a client sends one after an error (the Java client
            # resets what it sent: a full request): the epoch it knows, what it owns.
            r = c.request(m.ConsumerGroupHeartbeatRequest(
                group_id=GROUP, member_id=mid, member_epoch=epoch, instance_id=None, rack_id=None,
                rebalance_timeout_ms=30000, subscribed_topic_names=["rw", "rw2"], subscribed_topic_regex=None,
                server_assignor=None, topic_partitions=owned), api_version=0)
            assert r.error_code == 0, r
            assert r.member_epoch == after.members[0].member_epoch
            assert len([p for tp in r.assignment.topic_partitions for p in tp.partitions]) == 4
        assert describe(coord, GROUP).group_epoch == after.group_epoch
