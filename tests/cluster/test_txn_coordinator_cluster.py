"""The transaction coordinator in a 3-broker cluster (embedded controller):
every broker names the same coordinator, __transaction_state is created with
Kafka's replication (RF 3, min ISR 2), a TxnOffsetCommit at another broker's
group coordinator is verified against the transaction coordinator with
AddPartitionsToTxn v4 verify_only, and a transaction's state survives its
coordinator's broker stopping (the new leader replays the partition)."""
from __future__ import annotations

from pylog.client.wire import Connection
from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.transactions import log_records as lr

from . import zkcluster
from .zkcluster import create_topic, wait_for

CLUSTER = {
    **zkcluster.CLUSTER,
    "offsets.topic.num.partitions": "3",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.num.partitions": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
}
AP = m.AddPartitionsToTxnRequest
TID = "tx-cluster"


def call(b, req, version):
    with Connection(b.broker.advertised_host, b.broker.advertised_port, timeout=60) as c:
        return c.request(req, api_version=version)


def txn_coordinator(brokers, tid):
    """The broker that coordinates tid, once its partition is loaded there."""
    out = {}

    def found():
        ids = set()
        for b in brokers:
            r = call(b, m.FindCoordinatorRequest(key=tid, key_type=1), 1)
            if r.error_code:
                return False
            ids.add(r.node_id)
        if len(ids) != 1:
            return False
        node_id = ids.pop()
        coord = next((b for b in brokers if b.broker.broker_id == node_id), None)
        if coord is None:
            return False
        tc = coord.broker.transactions
        if not coord.broker.call(lambda: tc.runtime.is_active(tc.partition_for(tid))):
            return False
        out["c"] = coord
        return True
    wait_for(found, timeout=60, what=f"the coordinator of {tid}, loaded")
    return out["c"]


def group_on_another_broker(brokers, not_id):
    """A group id whose offsets partition another broker than not_id leads."""
    for i in range(1000):
        gid = f"grp-{i}"
        index = ot.partition_for(gid, 3)
        leaders = {b.broker.metadata_cache.topics[ot.TOPIC][index].leader for b in brokers}
        if len(leaders) == 1 and leaders != {not_id}:
            return gid, next(b for b in brokers if b.broker.broker_id in leaders)
    raise AssertionError("no group led elsewhere")


def describe(b, tid):
    return call(b, m.DescribeTransactionsRequest(transactional_ids=[tid]), 0).transaction_states[0]


def txn_commit(b, group, pid, epoch):
    R = m.TxnOffsetCommitRequest
    r = call(b, R(transactional_id=TID, group_id=group, producer_id=pid, producer_epoch=epoch, generation_id=-1,
                  member_id="", group_instance_id=None, topics=[R.TxnOffsetCommitRequestTopic(name="ct", partitions=[
                      R.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=3,
                                                        committed_leader_epoch=-1, committed_metadata="")])]), 3)
    return r.topics[0].partitions[0].error_code


def test_coordinator_placement_remote_verification_and_failover():
    with zkcluster.embedded_cluster(3, base=CLUSTER) as bs:
        create_topic(bs, "ct", 1)
        coord = txn_coordinator(bs, TID)
        parts = coord.broker.metadata_cache.topics[lr.TOPIC]
        assert sorted(parts) == [0, 1, 2] and all(len(st.replicas) == 3 for st in parts.values())
        assert coord.broker.log_manager.topics[lr.TOPIC].configs["min.insync.replicas"] == "2"
        r = call(coord, m.InitProducerIdRequest(transactional_id=TID, transaction_timeout_ms=60000), 1)
        assert r.error_code == 0
        pid, epoch = r.producer_id, r.producer_epoch
        r = call(coord, AP(v3_and_below_transactional_id=TID, v3_and_below_producer_id=pid,
                           v3_and_below_producer_epoch=epoch,
                           v3_and_below_topics=[AP.AddPartitionsToTxnTopic(name="ct", partitions=[0])]), 0)
        assert r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 0
        # Two groups coordinated by another broker than the transaction's coordinator
        # (waiting for __consumer_offsets first: the commit's broker checks the group).
        for b in bs:
            wait_for(lambda b=b: call(b, m.FindCoordinatorRequest(key="x", key_type=0), 1).error_code == 0,
                     timeout=60, what="__consumer_offsets")
        group, group_coord = group_on_another_broker(bs, coord.broker.broker_id)
        wait_for(lambda: txn_commit(group_coord, group, pid, epoch) == 48, timeout=60,
                 what="INVALID_TXN_STATE from the remote verification (the group is not in the transaction)")
        r = call(coord, m.AddOffsetsToTxnRequest(transactional_id=TID, producer_id=pid, producer_epoch=epoch,
                                                 group_id=group), 0)
        assert r.error_code == 0
        assert txn_commit(group_coord, group, pid, epoch) == 0
        assert txn_commit(group_coord, group, pid, epoch - 1) == 47   # a stale epoch, verified remotely
        before = describe(coord, TID)
        assert before.transaction_state == "Ongoing"

        # The coordinator's broker stops: another replica of the partition
        # leads it, replays it, and serves the same transaction.
        coord.broker.stop_in_thread()
        survivors = [b for b in bs if b is not coord]
        new = txn_coordinator(survivors, TID)
        assert new.broker.broker_id != coord.broker.broker_id
        after = describe(new, TID)
        assert (after.transaction_state, after.producer_id, after.producer_epoch,
                after.transaction_start_time_ms) == ("Ongoing", pid, epoch, before.transaction_start_time_ms)
        assert sorted((t.topic, list(t.partitions)) for t in after.topics) == sorted(
            (t.topic, list(t.partitions)) for t in before.topics)
