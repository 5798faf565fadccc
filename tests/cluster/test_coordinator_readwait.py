"""A request that may write but writes nothing (a ConsumerGroupHeartbeat
that changes nothing) is answered from the group's in-memory state, which
may hold records not yet committed. As in Kafka's CoordinatorRuntime, its
answer waits until the partition's last write is committed, and gets that
write's error when it fails (the state it saw is rolled back). Three real
brokers, a follower of __consumer_offsets that stops fetching so a commit's
record cannot reach the high watermark."""
from __future__ import annotations

import concurrent.futures
import time
import uuid

from pylog.client.wire import Connection
from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors

from . import zkcluster
from .test_coordinator_runtime import CLUSTER
from .zkcluster import create_topic, wait_for

GROUP = "g-readwait"
# Long enough that a held write commits once its follower is back, even on
# a loaded machine; the failing case waits it out once.
WRITE_TIMEOUT_MS = 20000


def conn(b, timeout=90) -> Connection:
    return Connection(b.broker.advertised_host, b.broker.advertised_port, timeout=timeout)


def coordinator_of(bs):
    out = {}

    def found():
        with conn(bs[0]) as c:
            r = c.request(m.FindCoordinatorRequest(key=GROUP, key_type=0), api_version=1)
        if r.error_code:
            return False
        coord = next((x for x in bs if x.broker.broker_id == r.node_id), None)
        if coord is None:
            return False
        index = coord.broker.call(lambda: coord.broker.groups.partition_for(GROUP))
        out["c"] = coord, index
        return coord.broker.call(lambda: coord.broker.groups.runtime.is_active(index))
    wait_for(found, timeout=60, what="the group's coordinator, loaded")
    return out["c"]


def commit(b, mid, epoch, offset):
    O = m.OffsetCommitRequest
    with conn(b) as c:
        r = c.request(O(group_id=GROUP, generation_id_or_member_epoch=epoch, member_id=mid, topics=[
            O.OffsetCommitRequestTopic(name="rw", partitions=[
                O.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset,
                                               committed_metadata="")])]), api_version=9)
    return r.topics[0].partitions[0].error_code


def heartbeat(c, group, mid, epoch, topics=None, *, owned=None, retry=True):
    """One ConsumerGroupHeartbeat (a join at epoch 0); retries the
    coordinator's retriable errors unless told not to."""
    join = epoch == 0
    req = m.ConsumerGroupHeartbeatRequest(
        group_id=group, member_id=mid, member_epoch=epoch, instance_id=None, rack_id=None,
        rebalance_timeout_ms=30000 if join else -1, subscribed_topic_names=topics, subscribed_topic_regex=None,
        server_assignor=None, topic_partitions=([] if join else None) if owned is None else owned)
    while True:
        r = c.request(req, api_version=0)
        if not retry or r.error_code not in (Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR,
                                             Errors.COORDINATOR_NOT_AVAILABLE):
            return r
        time.sleep(0.1)


def owned_of(resp):
    T = m.ConsumerGroupHeartbeatRequest.TopicPartitions
    return [T(topic_id=tp.topic_id, partitions=list(tp.partitions)) for tp in resp.assignment.topic_partitions]


def classic_member(b, group):
    """A classic group's lone member, joined and synced: (generation, member id)."""
    J, S = m.JoinGroupRequest, m.SyncGroupRequest
    with conn(b) as c:
        mid = ""
        while True:
            j = c.request(J(group_id=group, session_timeout_ms=120000, rebalance_timeout_ms=30000, member_id=mid,
                            group_instance_id=None, protocol_type="consumer", reason=None,
                            protocols=[J.JoinGroupRequestProtocol(name="range", metadata=b"")]), api_version=4)
            if j.error_code == Errors.MEMBER_ID_REQUIRED:
                mid = j.member_id   # KIP-394: join again with the id given
                continue
            if j.error_code not in (Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR):
                break
            time.sleep(0.1)
        assert j.error_code == 0, j
        s = c.request(S(group_id=group, generation_id=j.generation_id, member_id=j.member_id,
                        group_instance_id=None, assignments=[S.SyncGroupRequestAssignment(
                            member_id=j.member_id, assignment=b"")]), api_version=3)
        assert s.error_code == 0, s
    return j.generation_id, j.member_id


def classic_heartbeat(b, group, generation, mid):
    with conn(b) as c:
        return c.request(m.HeartbeatRequest(group_id=group, generation_id=generation, member_id=mid,
                                            group_instance_id=None), api_version=3).error_code


def quiet_heartbeat(b, mid, epoch):
    """A heartbeat that changes nothing: same epoch, nothing re-sent."""
    with conn(b) as c:
        return heartbeat(c, GROUP, mid, epoch, retry=False)


def test_a_no_op_heartbeat_waits_for_the_pending_write_and_gets_its_error(zk_connect):
    base = {**CLUSTER, "offsets.commit.timeout.ms": str(WRITE_TIMEOUT_MS),
            "group.consumer.session.timeout.ms": "60000", "group.consumer.heartbeat.interval.ms": "5000"}
    with zkcluster.cluster(zk_connect, 3, base=base) as bs:
        create_topic(bs, "rw", 1)
        coord, index = coordinator_of(bs)
        key = (ot.TOPIC, index)
        mid = str(uuid.uuid4())
        with conn(coord) as c:
            got = {"r": heartbeat(c, GROUP, mid, 0, ["rw"])}

            def assigned():
                r = got["r"]
                assert r.error_code == 0, r
                if r.assignment is not None and r.assignment.topic_partitions:
                    return True
                got["r"] = heartbeat(c, GROUP, mid, r.member_epoch)
                return False
            wait_for(assigned, timeout=60, what="the partition assigned")
            epoch = got["r"].member_epoch
            r = heartbeat(c, GROUP, mid, epoch, ["rw"], owned=owned_of(got["r"]))
            assert r.error_code == 0 and r.member_epoch == epoch, r
        assert quiet_heartbeat(coord, mid, epoch).error_code == 0   # nothing pending: answered
        # A classic group on the same offsets partition: its Heartbeat writes nothing either.
        classic = next(f"{GROUP}-classic-{i}" for i in range(1000)
                       if ot.partition_for(f"{GROUP}-classic-{i}", 3) == index)
        generation, cmid = classic_member(coord, classic)
        assert classic_heartbeat(coord, classic, generation, cmid) == 0
        leader_part = coord.broker.log_manager.partitions[key]
        follower = next(b for b in bs if b is not coord)
        fm = follower.broker.replica_manager.fetchers

        def held(pool, offset):
            """A commit appended and held below the high watermark, then a
            quiet heartbeat and a classic one sent: the three futures."""
            follower.broker.call(lambda: fm.remove(key))
            committing = pool.submit(commit, coord, mid, epoch, offset)
            wait_for(lambda: coord.broker.call(lambda: leader_part.log_end_offset > leader_part.high_watermark),
                     what="the commit appended")
            beating = pool.submit(quiet_heartbeat, coord, mid, epoch)
            classic_beating = pool.submit(classic_heartbeat, coord, classic, generation, cmid)
            time.sleep(1.0)
            assert not committing.done()
            # The heartbeats wrote nothing, but what they would say rests on the commit.
            assert not beating.done()
            assert not classic_beating.done()
            return committing, beating, classic_beating

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            committing, beating, classic_beating = held(pool, 5)
            follower.broker.call(lambda: fm.add(follower.broker.log_manager.partitions[key], False))
            assert committing.result(90) == 0
            r = beating.result(90)
            assert r.error_code == 0 and r.member_epoch == epoch, r
            assert classic_beating.result(90) == 0

            # The follower stays away: the commit times out, and the heartbeat
            # that waited on it is told as the commit's writer would be.
            committing, beating, classic_beating = held(pool, 7)
            assert committing.result(90) != 0
            assert beating.result(90).error_code == Errors.COORDINATOR_NOT_AVAILABLE
            assert classic_beating.result(90) == Errors.COORDINATOR_NOT_AVAILABLE
            follower.broker.call(lambda: fm.add(follower.broker.log_manager.partitions[key], False))

        # Once that write is settled, a quiet heartbeat is answered at once again.
        wait_for(lambda: coord.broker.call(lambda: leader_part.log_end_offset == leader_part.high_watermark),
                 what="the follower caught up")
        r = quiet_heartbeat(coord, mid, epoch)
        assert r.error_code == 0 and r.member_epoch == epoch, r
        assert classic_heartbeat(coord, classic, generation, cmid) == 0
