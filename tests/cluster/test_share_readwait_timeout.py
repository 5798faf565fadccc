"""Share groups on Kafka's CoordinatorRuntime rules, three real brokers,
a follower of the written partition stops fetching so the high watermark
stalls:

- a ShareGroupHeartbeat whose records are appended but not replicated in
  time is answered COORDINATOR_NOT_AVAILABLE and keeps its change (only an
  append that fails is undone): the records commit once the follower is
  back, and the coordinator's state is theirs."""
from __future__ import annotations

import uuid

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors

from .test_coordinator_readwait import GROUP, conn
from .test_coordinator_readwait_ops import held_cluster
from .test_coordinator_runtime import CLUSTER

# Short: each failing write waits it out once.
WRITE_TIMEOUT_MS = 3000
SHARE = {"share.coordinator.state.topic.replication.factor": "3", "share.coordinator.state.topic.min.isr": "2",
         "share.coordinator.state.topic.num.partitions": "3"}


def share_heartbeat(b, group, mid, epoch, topics=None):
    with conn(b) as c:
        return c.request(m.ShareGroupHeartbeatRequest(group_id=group, member_id=mid, member_epoch=epoch,
                                                      subscribed_topic_names=topics), api_version=1)


def share_describe(b, group):
    with conn(b) as c:
        r = c.request(m.ShareGroupDescribeRequest(group_ids=[group], include_authorized_operations=False),
                      api_version=1)
    return r.groups[0]


def test_a_timed_out_share_join_keeps_its_member_and_its_records_commit_later(zk_connect):
    base = {**CLUSTER, **SHARE, "offsets.commit.timeout.ms": str(WRITE_TIMEOUT_MS),
            "group.share.session.timeout.ms": "60000", "group.share.heartbeat.interval.ms": "5000"}
    with held_cluster(zk_connect, base, (("rw", 2),)) as (bs, coord, index, held):
        held.hold()
        mid = str(uuid.uuid4())
        before = coord.broker.call(lambda: held.part.log_end_offset)
        r = share_heartbeat(coord, GROUP, mid, 0, ["rw"])
        # Appended (the member, the group epoch, the partitions to initialize), never replicated in time.
        assert r.error_code == Errors.COORDINATOR_NOT_AVAILABLE, r
        assert coord.broker.call(lambda: held.part.log_end_offset) > before
        assert coord.broker.call(lambda: held.part.high_watermark) <= before

        held.release()
        held.caught_up()
        # The records committed: the coordinator's state is theirs (a reverted
        # group would be missing here while every replica's log has it).
        d = share_describe(coord, GROUP)
        assert d.error_code == 0, d
        assert [mm.member_id for mm in d.members] == [mid]
        epoch = d.members[0].member_epoch
        assert epoch >= 1

        # The client retries its join: it is given the member's epoch, with no
        # new epoch for the group.
        r = share_heartbeat(coord, GROUP, mid, 0, ["rw"])
        assert r.error_code == 0, r
        assert r.member_id == mid and r.member_epoch == epoch
        assert share_describe(coord, GROUP).group_epoch == d.group_epoch

