"""A group write that is appended but not replicated in time, as Kafka's
CoordinatorRuntime treats it: the request is answered with the timeout's
error (COORDINATOR_NOT_AVAILABLE) but the state change stays applied, since
its records stay in the log and commit once the follower is back. Only an
append that fails is undone. Three real brokers; a follower of the group's
__consumer_offsets partition stops fetching so the high watermark stalls."""
from __future__ import annotations

import uuid

from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors

from . import zkcluster
from .test_coordinator_readwait import GROUP, conn, coordinator_of, heartbeat
from .test_coordinator_runtime import CLUSTER
from .zkcluster import create_topic, wait_for

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
    with zkcluster.cluster(zk_connect, 3, base=base) as bs:
        create_topic(bs, "rw", 2)
        coord, index = coordinator_of(bs)
        key = (ot.TOPIC, index)
        leader_part = coord.broker.log_manager.partitions[key]
        follower = next(b for b in bs if b is not coord)
        fm = follower.broker.replica_manager.fetchers
        follower.broker.call(lambda: fm.remove(key))
        mid = str(uuid.uuid4())
        before = coord.broker.call(lambda: leader_part.log_end_offset)
        with conn(coord) as c:
            r = heartbeat(c, GROUP, mid, 0, ["rw"], retry=False)
        # Appended (the member, the group epoch, its assignment), never replicated in time.
        assert r.error_code == Errors.COORDINATOR_NOT_AVAILABLE, r
        assert coord.broker.call(lambda: leader_part.log_end_offset) > before
        assert coord.broker.call(lambda: leader_part.high_watermark) <= before

        follower.broker.call(lambda: fm.add(follower.broker.log_manager.partitions[key], False))
        wait_for(lambda: coord.broker.call(lambda: leader_part.high_watermark == leader_part.log_end_offset),
                 timeout=60, what="the follower caught up")
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
