"""The transaction coordinator in a 3-broker cluster (embedded controller):
every broker names the same coordinator, __transaction_state is created with
Kafka's replication (RF 3, min ISR 2), a TxnOffsetCommit at another broker's
group coordinator is verified against the transaction coordinator with
AddPartitionsToTxn v4 verify_only, and a transaction's state survives its
coordinator's broker stopping (the new leader replays the partition)."""
from __future__ import annotations

import asyncio
import time
import uuid

import confluent_kafka as ck

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


def test_markers_reach_every_partition_leader():
    """A confluent-kafka transaction over 3 brokers: its markers go to each
    partition's leader (WriteTxnMarkers over the wire to the other brokers);
    read_committed readers get the committed records exactly once, and
    nothing of the aborted transaction."""
    with zkcluster.embedded_cluster(3, base=CLUSTER) as bs:
        create_topic(bs, "spread", 3)
        coord = txn_coordinator(bs, TID)
        boot = ",".join(str(b) for b in bs)
        p = ck.Producer({"bootstrap.servers": boot, "transactional.id": TID})
        p.init_transactions(60)
        p.begin_transaction()
        for i in range(30):
            p.produce("spread", b"%d" % i, partition=i % 3)
        p.commit_transaction(60)
        p.begin_transaction()
        for i in range(9):
            p.produce("spread", b"x%d" % i, partition=i % 3)
        p.flush(30)
        p.abort_transaction(60)
        wait_for(lambda: describe(coord, TID).transaction_state == "CompleteAbort", timeout=60,
                 what="the abort's markers written on every leader")
        leaders = {coord.broker.metadata_cache.topics["spread"][i].leader for i in range(3)}
        assert len(leaders) > 1          # markers went to other brokers than the coordinator's

        c = ck.Consumer({"bootstrap.servers": boot, "group.id": "rc-" + uuid.uuid4().hex[:6],
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
        c.subscribe(["spread"])
        got, deadline = [], time.monotonic() + 60
        while len(got) < 30 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg.value())
        for _ in range(4):   # nothing more arrives: the aborted records stay hidden
            msg = c.poll(0.5)
            assert msg is None or msg.error() or msg.value() is None, msg.value()
        c.close()
        assert sorted(got) == sorted(b"%d" % i for i in range(30))
        p.flush(10)



def test_markers_wait_for_an_offline_partition_and_survive_their_coordinator_moving():
    """Kafka's transactions_test.py in miniature: a committed transaction's
    only data partition is offline (its one replica stopped) when EndTxn is
    answered, so its marker cannot be written and the transaction waits in
    PrepareCommit; then the coordinator's broker stops too. The next
    coordinator loads PrepareCommit from __transaction_state and resumes the
    markers; once the partition's replica is back the commit completes and a
    read_committed reader gets every record exactly once."""
    with zkcluster.embedded_cluster(3, base=CLUSTER) as bs:
        by_id = {b.broker.broker_id: b for b in bs}
        txn_coordinator(bs, "probe")   # __transaction_state exists and is led
        leaders = {i: st.leader for i, st in by_id[1].broker.metadata_cache.topics[lr.TOPIC].items()}
        # A transactional id coordinated by broker 2 or 3 (broker 1 runs the controller and stays).
        tid = next(f"tx-move-{i}" for i in range(10000)
                   if leaders[lr.partition_for(f"tx-move-{i}", 3)] in (2, 3))
        coord = txn_coordinator(bs, tid)
        other = by_id[5 - coord.broker.broker_id]     # the third broker: hosts the data
        code, msg = asyncio.run_coroutine_threadsafe(by_id[1].broker.create_topic_async(
            "solo", assignment={0: [other.broker.broker_id]}, configs={"min.insync.replicas": "1"}),
            by_id[1].broker._loop).result(60)
        assert code == 0, msg
        wait_for(lambda: all(b.broker.metadata_cache.topics.get("solo", {}).get(0) is not None
                             and b.broker.metadata_cache.topics["solo"][0].leader == other.broker.broker_id
                             for b in bs), timeout=60, what="solo led by its one replica")
        p = ck.Producer({"bootstrap.servers": str(by_id[1]), "transactional.id": tid})
        p.init_transactions(60)
        p.begin_transaction()
        for i in range(10):
            p.produce("solo", b"%d" % i, partition=0)
        assert p.flush(30) == 0

        other.broker.stop_in_thread()                  # solo-0 offline: no marker can be written
        wait_for(lambda: coord.broker.metadata_cache.topics["solo"][0].leader < 0, timeout=60,
                 what="solo-0 without a leader")
        p.commit_transaction(60)                        # answered once PrepareCommit is replicated
        time.sleep(1)
        assert describe(coord, tid).transaction_state == "PrepareCommit"

        coord.broker.stop_in_thread()                  # the coordinator goes too
        new = txn_coordinator([by_id[1]], tid)
        st = describe(new, tid)
        assert st.transaction_state == "PrepareCommit"  # loaded, markers resumed (still waiting)
        assert [(t.topic, list(t.partitions)) for t in st.topics] == [("solo", [0])]

        other.restart()                                # the replica is back: the marker goes out
        wait_for(lambda: describe(new, tid).transaction_state == "CompleteCommit", timeout=90,
                 what="the commit completed by the new coordinator")
        # Assigned, not subscribed: one of three brokers is still down, too few
        # for __consumer_offsets' replication factor.
        c = ck.Consumer({"bootstrap.servers": str(by_id[1]), "group.id": "rc-" + uuid.uuid4().hex[:6],
                         "isolation.level": "read_committed", "enable.auto.commit": False})
        c.assign([ck.TopicPartition("solo", 0, ck.OFFSET_BEGINNING)])
        got, deadline = [], time.monotonic() + 60
        while len(got) < 10 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg.value())
        c.close()
        assert sorted(got) == sorted(b"%d" % i for i in range(10))


def test_exactly_once_pipeline_survives_its_transaction_coordinator_stopping():
    """A consume-transform-produce loop (Kafka's transactions_test.py is the
    model) over 3 brokers; its transaction coordinator's broker stops part
    way. Failed transactions are aborted and the input rewound to the group's
    committed offsets; the output, read_committed, is exactly the transformed
    input: no duplicate, no loss."""
    n = 300
    with zkcluster.embedded_cluster(3, base=CLUSTER) as bs:
        by_id = {b.broker.broker_id: b for b in bs}
        create_topic(bs, "in", 3)
        create_topic(bs, "out", 3)
        feeder = ck.Producer({"bootstrap.servers": bootstrap_of(bs)})
        for i in range(n):
            feeder.produce("in", b"%d" % i, partition=i % 3)
        assert feeder.flush(30) == 0
        txn_coordinator(bs, "probe")
        leaders = {i: st.leader for i, st in by_id[1].broker.metadata_cache.topics[lr.TOPIC].items()}
        tid = next(f"eos-{i}" for i in range(10000) if leaders[lr.partition_for(f"eos-{i}", 3)] in (2, 3))
        coord = txn_coordinator(bs, tid)
        boot = bootstrap_of(bs)
        c = ck.Consumer({"bootstrap.servers": boot, "group.id": "eos-group", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
        c.subscribe(["in"])
        p = ck.Producer({"bootstrap.servers": boot, "transactional.id": tid, "transaction.timeout.ms": "30000"})
        p.init_transactions(60)
        done, commits, stopped, aborted = 0, 0, False, 0
        deadline = time.monotonic() + 240
        while done < n:
            assert time.monotonic() < deadline, f"{done} of {n} processed"
            msgs = [msg for msg in c.consume(30, 1.0) if not msg.error()]
            if not msgs:
                continue
            p.begin_transaction()
            try:
                for msg in msgs:
                    p.produce("out", msg.value() + b"!", partition=msg.partition())
                p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 60)
                if commits == 3 and not stopped:
                    coord.broker.stop_in_thread()      # between the data and EndTxn
                    stopped = True
                p.commit_transaction(60)
                commits += 1
                done += len(msgs)
            except ck.KafkaException as e:
                err = e.args[0]
                assert not err.fatal(), err
                p.abort_transaction(60)
                aborted += 1
                # Rewind to what the group committed: the aborted batch comes again.
                for tp in c.committed(c.assignment(), timeout=60):
                    c.seek(ck.TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
                done = sum(max(tp.offset, 0) for tp in c.committed(c.assignment(), timeout=60))
        c.close()
        assert stopped
        survivors = [b for b in bs if b is not coord]
        r = ck.Consumer({"bootstrap.servers": bootstrap_of(survivors), "group.id": "check-" + uuid.uuid4().hex[:6],
                         "isolation.level": "read_committed", "enable.auto.commit": False})
        r.assign([ck.TopicPartition("out", i, ck.OFFSET_BEGINNING) for i in range(3)])
        got, deadline = [], time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            msg = r.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg.value())
        for _ in range(4):
            msg = r.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg.value())
        r.close()
        assert sorted(got) == sorted(b"%d!" % i for i in range(n)), (len(got), len(set(got)), aborted)


def bootstrap_of(brokers):
    return ",".join(str(b) for b in brokers)
