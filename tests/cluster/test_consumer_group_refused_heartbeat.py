"""A ConsumerGroupHeartbeat the coordinator refuses (UNKNOWN_MEMBER_ID,
FENCED_MEMBER_EPOCH, ...) undoes only its own changes. While another
member's join is still being replicated, such a refusal must not keep that
join from being reverted when its write fails: Kafka reverts the group to
its last committed state, so a member whose join was never written is not a
member. Three real brokers; a follower of the group's __consumer_offsets
partition stops fetching so the join's records cannot commit (the librdkafka
suite's 0113 and 0033 send such refused heartbeats, from fenced members,
every run)."""
from __future__ import annotations

import concurrent.futures
import time
import uuid

from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors

from . import zkcluster
from .test_coordinator_readwait import GROUP, conn, coordinator_of, heartbeat, owned_of
from .test_coordinator_runtime import CLUSTER
from .zkcluster import create_topic, wait_for

# The held join fails after this long (the runtime's write timeout).
WRITE_TIMEOUT_MS = 6000


def describe(b):
    with conn(b) as c:
        while True:
            g = c.request(m.ConsumerGroupDescribeRequest(group_ids=[GROUP], include_authorized_operations=False),
                          api_version=0).groups[0]
            if g.error_code not in (Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR):
                return g
            time.sleep(0.1)


def test_a_refused_heartbeat_does_not_keep_a_failed_join_in_the_group(zk_connect):
    base = {**CLUSTER, "offsets.commit.timeout.ms": str(WRITE_TIMEOUT_MS),
            "group.consumer.session.timeout.ms": "60000", "group.consumer.heartbeat.interval.ms": "5000"}
    with zkcluster.cluster(zk_connect, 3, base=base) as bs:
        create_topic(bs, "rw", 2)
        coord, index = coordinator_of(bs)
        key = (ot.TOPIC, index)
        a = str(uuid.uuid4())
        with conn(coord) as c:
            got = {"r": heartbeat(c, GROUP, a, 0, ["rw"])}

            def assigned():
                r = got["r"]
                assert r.error_code == 0, r
                if r.assignment is not None and r.assignment.topic_partitions:
                    return True
                got["r"] = heartbeat(c, GROUP, a, r.member_epoch)
                return False
            wait_for(assigned, timeout=60, what="member a assigned")
            r = heartbeat(c, GROUP, a, got["r"].member_epoch, ["rw"], owned=owned_of(got["r"]))
            assert r.error_code == 0, r
        before = describe(coord)
        assert [x.member_id for x in before.members] == [a]
        leader_part = coord.broker.log_manager.partitions[key]
        follower = next(b for b in bs if b is not coord)
        fm = follower.broker.replica_manager.fetchers
        follower.broker.call(lambda: fm.remove(key))
        try:
            b_id = str(uuid.uuid4())
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                def join_b():
                    with conn(coord) as c:
                        return heartbeat(c, GROUP, b_id, 0, ["rw"], retry=False)
                joining = pool.submit(join_b)
                wait_for(lambda: coord.broker.call(lambda: leader_part.log_end_offset > leader_part.high_watermark),
                         what="b's join appended")
                assert [x.member_id for x in describe(coord).members if x.member_id == b_id] == [b_id]

                def refused():
                    with conn(coord) as c:
                        return heartbeat(c, GROUP, str(uuid.uuid4()), 3, retry=False)
                refusing = pool.submit(refused)
                assert joining.result(90).error_code != 0          # its write timed out
                # The refusal waited on the same write (Kafka's read-after-write rule).
                assert refusing.result(90).error_code in (Errors.UNKNOWN_MEMBER_ID, Errors.COORDINATOR_NOT_AVAILABLE)
        finally:
            follower.broker.call(lambda: fm.add(follower.broker.log_manager.partitions[key], False))
        after = describe(coord)
        assert after.error_code == 0, after
        assert [x.member_id for x in after.members] == [a]       # b's join was reverted
        assert after.group_epoch == before.group_epoch
