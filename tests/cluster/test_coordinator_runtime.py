"""The coordinator runtime in a 3-broker cluster: a commit is answered only
once the offsets partition's ISR has it (a lagging follower holds the answer
back), and a committed offset survives leadership of its partition moving."""
from __future__ import annotations

import concurrent.futures
import time

from pylog.client.wire import Connection
from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m

from . import zkcluster
from .zkcluster import create_topic, wait_for

CLUSTER = {
    # A follower that stops fetching stays in the ISR for the whole test.
    "replica.lag.time.max.ms": "120000",
    "replica.fetch.wait.max.ms": "100",
    "zookeeper.session.timeout.ms": "4000",
    "min.insync.replicas": "2",
    "default.replication.factor": "3",
    "auto.leader.rebalance.enable": "false",
    "offsets.topic.num.partitions": "3",
    "offsets.topic.replication.factor": "3",
    "group.initial.rebalance.delay.ms": "0",
}
GROUP = "g-runtime"


def find_coordinator(brokers):
    """(coordinator broker, partition index) once the group's coordinator is loaded."""
    out = {}

    def found():
        for b in brokers:
            with Connection(b.broker.advertised_host, b.broker.advertised_port) as c:
                r = c.request(m.FindCoordinatorRequest(key=GROUP, key_type=0), api_version=1)
            if r.error_code != 0:
                return False
            coord = next((x for x in brokers if x.broker.broker_id == r.node_id), None)
            if coord is None:
                return False
            gc = coord.broker.groups
            index = coord.broker.call(lambda: gc.partition_for(GROUP))
            if not coord.broker.call(lambda: gc.runtime.is_active(index)):
                return False
            out["c"] = coord, index
        return True
    wait_for(found, timeout=60, what="the group's coordinator, loaded")
    return out["c"]


def commit(b, offset, timeout=60):
    O = m.OffsetCommitRequest
    with Connection(b.broker.advertised_host, b.broker.advertised_port, timeout=timeout) as c:
        r = c.request(O(group_id=GROUP, generation_id_or_member_epoch=-1, member_id="", topics=[
            O.OffsetCommitRequestTopic(name="rt", partitions=[
                O.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset,
                                               committed_metadata="")])]), api_version=2)
    return r.topics[0].partitions[0].error_code


def fetch(b):
    F = m.OffsetFetchRequest
    with Connection(b.broker.advertised_host, b.broker.advertised_port) as c:
        r = c.request(F(group_id=GROUP, topics=[F.OffsetFetchRequestTopic(name="rt", partition_indexes=[0])]),
                      api_version=3)
    return r.error_code, r.topics[0].partitions[0].committed_offset if r.topics else None


def test_a_commit_waits_for_a_lagging_follower_and_survives_leadership_moving(zk_connect):
    with zkcluster.cluster(zk_connect, 3, base=CLUSTER) as bs:
        create_topic(bs, "rt", 1)
        coord, index = find_coordinator(bs)
        key = (ot.TOPIC, index)
        assert commit(coord, 5) == 0
        leader_part = coord.broker.log_manager.partitions[key]
        isr = coord.broker.call(lambda: list(leader_part.isr))
        assert len(isr) == 3, isr
        follower = next(b for b in bs if b is not coord)
        fm = follower.broker.replica_manager.fetchers
        # The follower stops fetching the offsets partition (it stays in the ISR).
        follower.broker.call(lambda: fm.remove(key))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(commit, coord, 7)
            # Appended on the leader, not yet below the high watermark...
            wait_for(lambda: coord.broker.call(
                lambda: leader_part.log_end_offset > leader_part.high_watermark), what="the commit appended")
            time.sleep(0.5)
            # ...so not answered, and not served to readers either.
            assert not answer.done()
            assert fetch(coord) == (0, 5)
            # The follower catches up: the high watermark passes the commit, which is answered.
            follower.broker.call(lambda: fm.add(follower.broker.log_manager.partitions[key], False))
            assert answer.result(60) == 0
        assert fetch(coord) == (0, 7)

        # Leadership moves: the new coordinator replays the partition and serves the commit.
        old_id = coord.broker.broker_id
        coord.broker.stop_in_thread()
        survivors = [b for b in bs if b is not coord]
        new_coord, new_index = find_coordinator(survivors)
        assert new_index == index and new_coord.broker.broker_id != old_id
        assert fetch(new_coord) == (0, 7)
        assert commit(new_coord, 9) == 0
        assert fetch(new_coord) == (0, 9)
