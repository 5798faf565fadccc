"""Share groups on Kafka's CoordinatorRuntime rules, three real brokers,
a follower of the written partition stops fetching so the high watermark
stalls:

- a ShareGroupHeartbeat whose records are appended but not replicated in
  time is answered COORDINATOR_NOT_AVAILABLE and keeps its change (only an
  append that fails is undone): the records commit once the follower is
  back, and the coordinator's state is theirs;
- ReadShareGroupState and ReadShareGroupStateSummary are write operations
  in Kafka's share coordinator: behind a pending write of their
  __share_group_state partition they wait for it, and get its error when it
  times out."""
from __future__ import annotations

import concurrent.futures
import uuid

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.share.coordinator import topic_id_text

from .test_coordinator_readwait import GROUP, conn
from .test_coordinator_readwait_ops import Held, held_cluster
from .test_coordinator_runtime import CLUSTER
from .zkcluster import wait_for

# Short: each failing write waits it out once.
WRITE_TIMEOUT_MS = 3000
STATE_TOPIC = "__share_group_state"
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


def state_request(cls, topic_cls, group, tid, **fields):
    return cls(group_id=group, topics=[getattr(cls, topic_cls)(topic_id=tid,
                                                               partitions=[cls.PartitionData(partition=0, **fields)])])


def once(b, req, version=0):
    """One request, no retry: its partition's result."""
    with conn(b) as c:
        return c.request(req, api_version=version).results[0].partitions[0]


def until_answered(b, req, version=0):
    """The request again while the state partition loads (or its topic is made)."""
    retriable = (Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR, Errors.COORDINATOR_NOT_AVAILABLE)
    out = {}

    def answered():
        out["r"] = once(b, req, version)
        return out["r"].error_code not in retriable
    wait_for(answered, timeout=60, what="the share coordinator's answer")
    return out["r"]


def test_share_state_reads_wait_for_the_pending_write_and_get_its_timeout(zk_connect):
    base = {**CLUSTER, **SHARE, "share.coordinator.write.timeout.ms": str(WRITE_TIMEOUT_MS)}
    with held_cluster(zk_connect, base) as (bs, _coord, _index, _held):
        tid = bs[0].broker.metadata_cache.topic_ids["rw"]
        sg = "sg-readwait"
        with conn(bs[0]) as c:
            key = f"{sg}:{topic_id_text(tid)}:0"
            wait_for(lambda: c.request(m.FindCoordinatorRequest(key_type=2, coordinator_keys=[key]),
                                       api_version=6).coordinators[0].error_code == 0,
                     timeout=60, what="the share coordinator")
            node = c.request(m.FindCoordinatorRequest(key_type=2, coordinator_keys=[key]),
                             api_version=6).coordinators[0].node_id
        sc = next(b for b in bs if b.broker.broker_id == node)
        R, S, W, I = (m.ReadShareGroupStateRequest, m.ReadShareGroupStateSummaryRequest,
                      m.WriteShareGroupStateRequest, m.InitializeShareGroupStateRequest)
        init = state_request(I, "InitializeStateData", sg, tid, state_epoch=1, start_offset=0)
        assert until_answered(sc, init).error_code == 0
        read = state_request(R, "ReadStateData", sg, tid, leader_epoch=1)
        summary = state_request(S, "ReadStateSummaryData", sg, tid, leader_epoch=-1)
        assert until_answered(sc, read).error_code == 0     # leader epoch 1 recorded: reads now write nothing

        # The follower of the state's partition stops fetching; a write is appended, held.
        idx = sc.broker.call(lambda: sc.broker.share.coordinator.partition_of(sg, tid, 0))
        held = Held(bs, sc, idx)
        held.key = (STATE_TOPIC, idx)
        held.part = sc.broker.log_manager.partitions[held.key]
        SB = W.StateBatch
        write = state_request(W, "WriteStateData", sg, tid, state_epoch=1, leader_epoch=1, start_offset=0,
                              state_batches=[SB(first_offset=0, last_offset=4, delivery_state=2, delivery_count=1)])
        held.hold()
        try:
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                writing = pool.submit(once, sc, write)
                wait_for(lambda: sc.broker.call(lambda: held.part.log_end_offset > held.part.high_watermark),
                         what="the held write appended")
                # Both rest on the held write: they wait for it and get its
                # timeout (answered at once with the state before).
                r = once(sc, read)
                assert r.error_code == Errors.COORDINATOR_NOT_AVAILABLE, r
                s = once(sc, summary, version=1)
                assert s.error_code == Errors.COORDINATOR_NOT_AVAILABLE, s
                assert writing.result().error_code == Errors.COORDINATOR_NOT_AVAILABLE
        finally:
            held.release()
        held.caught_up()
        # The timed-out write was kept (Kafka reverts only a failed append) and
        # has committed: both read it now.
        r = until_answered(sc, read)
        assert r.error_code == 0, r
        assert [(b.first_offset, b.last_offset, b.delivery_state) for b in r.state_batches] == [(0, 4, 2)]
        s = until_answered(sc, summary, version=1)
        assert (s.error_code, s.state_epoch, s.leader_epoch, s.delivery_complete_count) == (0, 1, 1, 5), s

