"""The transaction coordinator's rules, one raw request at a time over a real
socket to a real broker (KAFKA-NOTES §6.2): FindCoordinator(key_type 1),
InitProducerId's epochs and fencing, the state machine of AddPartitionsToTxn /
AddOffsetsToTxn / EndTxn with Kafka's error codes, the timeout abort, id
expiration, Describe/ListTransactions, and __transaction_state surviving a
restart. Bad input gets Kafka's code and changes nothing."""
import time

import pytest
from kafkawire import Wire

from pylog.protocol import messages as m
from pylog.testing import running_broker
from pylog.transactions import log_records as lr

FIND, INIT, ADD_PARTS, ADD_OFFSETS, END, TXN_COMMIT, DESCRIBE, LIST = 10, 22, 24, 25, 26, 28, 65, 66
INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE, INVALID_MAPPING, INVALID_TIMEOUT = 47, 48, 49, 50
CONCURRENT, INVALID_REQUEST, PRODUCER_FENCED, NOT_FOUND = 51, 42, 90, 105
UNKNOWN_TOPIC, NOT_ATTEMPTED, NOT_AVAILABLE = 3, 55, 15
AP = m.AddPartitionsToTxnRequest


def ready(b):
    """What a client does first: FindCoordinator(1) until __transaction_state
    exists and this broker leads the id's partition."""
    with Wire(b) as w:
        deadline = time.monotonic() + 60
        while True:
            r = w.request(FIND, 1, m.FindCoordinatorRequest(key="any", key_type=1))
            if r.error_code == 0 or time.monotonic() > deadline:
                return r
            time.sleep(0.05)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(tmp_path_factory.mktemp("txn") / "d") as b:
        b.broker.create_topic("t", 3)
        assert ready(b).error_code == 0
        yield b


def init(w, tid, version=1, timeout=60000, pid=-1, epoch=-1):
    req = m.InitProducerIdRequest(transactional_id=tid, transaction_timeout_ms=timeout, producer_id=pid,
                                  producer_epoch=epoch)
    r = w.request(INIT, version, req)
    return r.error_code, r.producer_id, r.producer_epoch


def add(w, tid, pid, epoch, parts=(("t", 0),), version=0):
    topics = {}
    for t, p in parts:
        topics.setdefault(t, []).append(p)
    r = w.request(ADD_PARTS, version, AP(v3_and_below_transactional_id=tid, v3_and_below_producer_id=pid,
                                          v3_and_below_producer_epoch=epoch, v3_and_below_topics=[
                                              AP.AddPartitionsToTxnTopic(name=t, partitions=ps)
                                              for t, ps in topics.items()]))
    return {(t.name, p.partition_index): p.partition_error_code
            for t in r.results_by_topic_v3_and_below for p in t.results_by_partition}


def end(w, tid, pid, epoch, commit, version=0):
    return w.request(END, version, m.EndTxnRequest(transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                                                   committed=commit)).error_code


def describe(w, tid):
    return w.request(DESCRIBE, 0, m.DescribeTransactionsRequest(transactional_ids=[tid])).transaction_states[0]


def until(fn, what, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            assert v, what
            return v
        time.sleep(0.05)


def test_find_coordinator_creates_the_topic_as_kafka_does(broker):
    with Wire(broker) as w:
        for v in (1, 2):
            r = w.request(FIND, v, m.FindCoordinatorRequest(key="tx-find", key_type=1))
            assert (r.error_code, r.node_id, r.port) == (0, broker.broker.broker_id, broker.port)
    meta = broker.broker.log_manager.topics[lr.TOPIC]
    assert (meta.num_partitions, meta.replication_factor) == (50, 1)   # a lone broker: RF 1, min ISR 1
    assert meta.configs["cleanup.policy"] == "compact" and meta.configs["min.insync.replicas"] == "1"
    assert meta.configs["segment.bytes"] == str(100 << 20)
    # Java's String.hashCode placement: "hello".hashCode() == 99162322.
    assert broker.broker.transactions.partition_for("hello") == 99162322 % 50


def test_init_producer_id_bumps_the_epoch_and_keeps_the_producer_id(broker):
    with Wire(broker) as w:
        code, pid, epoch = init(w, "tx-init")
        assert (code, epoch) == (0, 0) and pid >= 0
        assert init(w, "tx-init") == (0, pid, 1)           # a new incarnation: epoch + 1
        # KIP-360 (v3+): the current producer bumps its own epoch...
        assert init(w, "tx-init", version=3, pid=pid, epoch=1) == (0, pid, 2)
        # ...a retry of that bump (its answer lost) gets the same epoch again...
        assert init(w, "tx-init", version=3, pid=pid, epoch=1) == (0, pid, 2)
        # ...an older epoch is fenced: INVALID_PRODUCER_EPOCH before v4, PRODUCER_FENCED from v4.
        assert init(w, "tx-init", version=3, pid=pid, epoch=0)[0] == INVALID_PRODUCER_EPOCH
        assert init(w, "tx-init", version=4, pid=pid, epoch=0)[0] == PRODUCER_FENCED
        assert init(w, "tx-init", version=4, pid=pid + 12345, epoch=2)[0] == PRODUCER_FENCED
        st = describe(w, "tx-init")
        assert (st.error_code, st.transaction_state, st.producer_id, st.producer_epoch) == (0, "Empty", pid, 2)


def test_init_producer_id_bad_input(broker):
    with Wire(broker) as w:
        assert init(w, "tx-bad", timeout=900001)[0] == INVALID_TIMEOUT   # > transaction.max.timeout.ms
        assert init(w, "tx-bad", timeout=0)[0] == INVALID_TIMEOUT
        assert init(w, "")[0] == INVALID_REQUEST
        assert describe(w, "tx-bad").error_code == NOT_FOUND            # nothing was created
        # Without a transactional id: an idempotent producer's fresh id, epoch 0.
        code, pid, epoch = init(w, None, version=4)
        assert (code, epoch) == (0, 0) and pid >= 0


def test_add_partitions_end_txn_and_their_errors(broker):
    with Wire(broker) as w:
        _, pid, epoch = init(w, "tx-flow")
        assert end(w, "tx-flow", pid, epoch, True) == INVALID_TXN_STATE        # Empty: nothing to end
        # Unknown partitions: nothing is added, the others are not attempted.
        assert add(w, "tx-flow", pid, epoch, [("t", 0), ("nope", 0)]) == {("t", 0): NOT_ATTEMPTED,
                                                                          ("nope", 0): UNKNOWN_TOPIC}
        assert add(w, "tx-flow", pid, epoch, [("t", 9)]) == {("t", 9): UNKNOWN_TOPIC}
        # Stale epoch, wrong producer id: Kafka's codes, and no change.
        assert add(w, "tx-flow", pid, epoch - 1) == {("t", 0): INVALID_PRODUCER_EPOCH}
        assert add(w, "tx-flow", pid, epoch - 1, version=2) == {("t", 0): PRODUCER_FENCED}
        assert add(w, "tx-flow", pid + 1, epoch) == {("t", 0): INVALID_MAPPING}
        assert add(w, "tx-unknown", pid, epoch) == {("t", 0): INVALID_MAPPING}
        st = describe(w, "tx-flow")
        assert (st.transaction_state, st.topics) == ("Empty", [])
        assert add(w, "tx-flow", pid, epoch, [("t", 0), ("t", 1)]) == {("t", 0): 0, ("t", 1): 0}
        r = w.request(ADD_OFFSETS, 0, m.AddOffsetsToTxnRequest(transactional_id="tx-flow", producer_id=pid,
                                                                producer_epoch=epoch, group_id="grp"))
        assert r.error_code == 0
        st = describe(w, "tx-flow")
        offsets_partition = broker.broker.groups.partition_for("grp")
        assert st.transaction_state == "Ongoing" and st.transaction_start_time_ms > 0
        assert sorted((t.topic, sorted(t.partitions)) for t in st.topics) == [
            ("__consumer_offsets", [offsets_partition]), ("t", [0, 1])]
        # EndTxn: unknown id, wrong producer, stale epoch change nothing.
        assert end(w, "tx-never", pid, epoch, True) == INVALID_MAPPING
        assert describe(w, "tx-never").error_code == NOT_FOUND
        assert end(w, "tx-flow", pid + 1, epoch, True) == INVALID_MAPPING
        assert end(w, "tx-flow", pid, epoch - 1, True) == INVALID_PRODUCER_EPOCH
        assert end(w, "tx-flow", pid, epoch - 1, True, version=2) == PRODUCER_FENCED
        assert describe(w, "tx-flow").transaction_state == "Ongoing"
        assert end(w, "tx-flow", pid, epoch, True) == 0
        if getattr(broker.broker.handlers, "txn_partition_apis", None) is None:
            # No WriteTxnMarkers handler on this broker: the markers are never
            # written and the transaction stays PrepareCommit.
            assert describe(w, "tx-flow").transaction_state == "PrepareCommit"
            assert end(w, "tx-flow", pid, epoch, True) == CONCURRENT
            assert add(w, "tx-flow", pid, epoch) == {("t", 0): CONCURRENT}
        else:
            until(lambda: describe(w, "tx-flow").transaction_state == "CompleteCommit", "the markers written")
            assert end(w, "tx-flow", pid, epoch, True) == 0     # a retried EndTxn of a completed commit
        assert end(w, "tx-flow", pid, epoch, False) == INVALID_TXN_STATE    # committing or committed: no abort


def test_a_new_incarnation_fences_the_old_one_and_aborts_its_transaction(broker):
    with Wire(broker) as w:
        _, pid, epoch = init(w, "tx-zombie")
        assert add(w, "tx-zombie", pid, epoch) == {("t", 0): 0}
        # The second producer with the same id: its open transaction is
        # aborted under a bumped epoch first; it is told to retry meanwhile.
        assert init(w, "tx-zombie")[0] == CONCURRENT
        st = describe(w, "tx-zombie")
        assert st.transaction_state in ("PrepareAbort", "CompleteAbort")
        assert (st.producer_id, st.producer_epoch) == (pid, epoch + 1)
        # The old incarnation is fenced from now on.
        assert add(w, "tx-zombie", pid, epoch) == {("t", 0): INVALID_PRODUCER_EPOCH}
        assert end(w, "tx-zombie", pid, epoch, True, version=2) == PRODUCER_FENCED


def test_list_transactions_filters_as_kafka(broker):
    with Wire(broker) as w:
        _, pid_a, ea = init(w, "tx-list-a")
        _, pid_b, eb = init(w, "tx-list-b")
        assert add(w, "tx-list-b", pid_b, eb) == {("t", 0): 0}

        def listed(states=(), pids=(), duration=-1, version=1):
            r = w.request(LIST, version, m.ListTransactionsRequest(state_filters=list(states),
                                                                    producer_id_filters=list(pids),
                                                                    duration_filter=duration))
            return r.error_code, list(r.unknown_state_filters), {
                s.transactional_id: (s.producer_id, s.transaction_state) for s in r.transaction_states}

        code, unknown, all_ = listed()
        assert code == 0 and unknown == []
        assert all_["tx-list-a"] == (pid_a, "Empty") and all_["tx-list-b"] == (pid_b, "Ongoing")
        assert listed(states=["Ongoing", "Bogus"])[1:] == (["Bogus"], {
            k: v for k, v in all_.items() if v[1] == "Ongoing"})
        assert listed(pids=[pid_a])[2] == {"tx-list-a": (pid_a, "Empty")}
        # duration: only those whose transaction started longer ago than it
        # (an hour: not tx-list-b's; an Empty id has no start time, -1, and is
        # listed, as Kafka's now - txnStartTimestamp makes it).
        long_running = listed(duration=3600_000)[2]
        assert "tx-list-b" not in long_running and long_running["tx-list-a"] == (pid_a, "Empty")
        time.sleep(0.01)
        assert "tx-list-b" in listed(duration=0)[2]
        # v0 has no duration filter: everything.
        assert listed(version=0, duration=3600_000)[2] == listed(version=0)[2] != {}


def test_timed_out_transactions_are_aborted_under_a_new_epoch(tmp_path):
    cfg = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "200"}
    with running_broker(tmp_path / "d", config=cfg) as b:
        b.broker.create_topic("t", 1)
        assert ready(b).error_code == 0
        with Wire(b) as w:
            _, pid, epoch = init(w, "tx-slow", timeout=1000)
            assert add(w, "tx-slow", pid, epoch) == {("t", 0): 0}
            until(lambda: describe(w, "tx-slow").transaction_state in ("PrepareAbort", "CompleteAbort"),
                  "the broker aborts a transaction open longer than its timeout")
            st = describe(w, "tx-slow")
            assert (st.producer_id, st.producer_epoch) == (pid, epoch + 1)
            assert end(w, "tx-slow", pid, epoch, True) == INVALID_PRODUCER_EPOCH


def test_idle_transactional_ids_expire(tmp_path):
    cfg = {"transactional.id.expiration.ms": "300",
           "transaction.remove.expired.transaction.cleanup.interval.ms": "200"}
    with running_broker(tmp_path / "d", config=cfg) as b:
        assert ready(b).error_code == 0
        with Wire(b) as w:
            assert init(w, "tx-idle")[0] == 0
            until(lambda: describe(w, "tx-idle").error_code == NOT_FOUND, "an idle id expires")
    with running_broker(tmp_path / "d", config=cfg) as b:   # its tombstone is replayed
        assert ready(b).error_code == 0
        with Wire(b) as w:
            assert describe(w, "tx-idle").error_code == NOT_FOUND


def test_transaction_state_survives_a_restart(tmp_path):
    with running_broker(tmp_path / "d") as b:
        b.broker.create_topic("t", 2)
        assert ready(b).error_code == 0
        with Wire(b) as w:
            _, pid, epoch = init(w, "tx-durable")
            _, pid2, epoch2 = init(w, "tx-durable-2")
            assert add(w, "tx-durable", pid, epoch, [("t", 0), ("t", 1)]) == {("t", 0): 0, ("t", 1): 0}
            before = describe(w, "tx-durable")
    with running_broker(tmp_path / "d") as b:
        assert ready(b).error_code == 0
        with Wire(b) as w:
            after = describe(w, "tx-durable")
            assert (after.transaction_state, after.producer_id, after.producer_epoch,
                    after.transaction_start_time_ms, after.transaction_timeout_ms) == (
                "Ongoing", pid, epoch, before.transaction_start_time_ms, 60000)
            assert [(t.topic, sorted(t.partitions)) for t in after.topics] == [("t", [0, 1])]
            assert describe(w, "tx-durable-2").transaction_state == "Empty"
            # The next incarnation continues the epochs (and fences the open transaction).
            assert init(w, "tx-durable")[0] == CONCURRENT
            assert describe(w, "tx-durable").producer_epoch == epoch + 1
            assert init(w, "tx-durable-2") == (0, pid2, epoch2 + 1)


def txn_commit(w, tid, pid, epoch, group="grp-t", offsets=(("t", 0, 5),), version=3, member="", generation=-1):
    R = m.TxnOffsetCommitRequest
    topics = {}
    for t, p, o in offsets:
        topics.setdefault(t, []).append(R.TxnOffsetCommitRequestPartition(
            partition_index=p, committed_offset=o, committed_leader_epoch=-1, committed_metadata="md"))
    r = w.request(TXN_COMMIT, version, R(transactional_id=tid, group_id=group, producer_id=pid, producer_epoch=epoch,
                                         generation_id=generation, member_id=member, group_instance_id=None,
                                         topics=[R.TxnOffsetCommitRequestTopic(name=t, partitions=ps)
                                                 for t, ps in topics.items()]))
    return {(t.name, p.partition_index): p.error_code for t in r.topics for p in t.partitions}


def fetch_offset(w, group, topic="t", partition=0):
    R = m.OffsetFetchRequest
    r = w.request(9, 3, R(group_id=group, topics=[R.OffsetFetchRequestTopic(name=topic, partition_indexes=[partition])]))
    return [p.committed_offset for t in r.topics for p in t.partitions][0]


def test_txn_offset_commit_needs_the_group_in_the_transaction_and_stays_pending(broker):
    with Wire(broker) as w:
        _, pid, epoch = init(w, "tx-offsets")
        assert add(w, "tx-offsets", pid, epoch) == {("t", 0): 0}
        # The group's offsets partition was not added (no AddOffsetsToTxn):
        # INVALID_TXN_STATE, as Kafka's verification answers, and nothing is written.
        offsets_partition = broker.broker.groups.partition_for("grp-t")
        log_end = broker.broker.log_manager.partitions[("__consumer_offsets", offsets_partition)].log_end_offset
        assert txn_commit(w, "tx-offsets", pid, epoch) == {("t", 0): INVALID_TXN_STATE}
        assert broker.broker.log_manager.partitions[("__consumer_offsets", offsets_partition)].log_end_offset \
            == log_end
        r = w.request(ADD_OFFSETS, 0, m.AddOffsetsToTxnRequest(transactional_id="tx-offsets", producer_id=pid,
                                                                producer_epoch=epoch, group_id="grp-t"))
        assert r.error_code == 0
        assert txn_commit(w, "tx-offsets", pid, epoch - 1) == {("t", 0): INVALID_PRODUCER_EPOCH}
        assert txn_commit(w, "tx-offsets", pid + 100, epoch) == {("t", 0): INVALID_MAPPING}
        assert txn_commit(w, "tx-offsets", pid, epoch, member="someone", generation=1) == {("t", 0): 25}
        assert txn_commit(w, "tx-offsets", pid, epoch, offsets=(("t", 0, 5), ("nope", 0, 1))) == {
            ("t", 0): 0, ("nope", 0): UNKNOWN_TOPIC}
        # Written, but not the group's offset until the transaction commits.
        assert fetch_offset(w, "grp-t") == -1
        assert broker.broker.groups.txn_offsets[offsets_partition][pid] \
            [("grp-t", "t", 0)].offset == 5


def test_an_exhausted_epoch_gets_a_new_producer_id(broker):
    with Wire(broker) as w:
        tc = broker.broker.transactions
        for tid in ("tx-exhaust", "tx-exhaust-360"):
            _, pid, _ = init(w, tid)
            # 32766 bumps over the wire would take minutes: start from metadata that says so.
            meta = broker.broker.call(lambda tid=tid: tc.txns[tid])
            broker.broker.call(lambda meta=meta: setattr(meta, "producer_epoch", 32766))
        # A new incarnation: a new producer id from epoch 0.
        code, new_pid, epoch = init(w, "tx-exhaust")
        assert (code, epoch) == (0, 0) and new_pid != pid
        # KIP-360: the producer itself bumping its exhausted epoch gets a new
        # id, and a retry of that request (its answer lost) the same again.
        _, pid, _ = (0, broker.broker.call(lambda: tc.txns["tx-exhaust-360"].producer_id), 0)
        code, new_pid, epoch = init(w, "tx-exhaust-360", version=3, pid=pid, epoch=32766)
        assert (code, epoch) == (0, 0) and new_pid != pid
        assert init(w, "tx-exhaust-360", version=3, pid=pid, epoch=32766) == (0, new_pid, 0)
        assert init(w, "tx-exhaust-360", version=3, pid=pid, epoch=5)[0] == INVALID_PRODUCER_EPOCH
        assert init(w, "tx-exhaust-360") == (0, new_pid, 1)
