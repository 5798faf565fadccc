"""A transaction's COMMIT marker on __consumer_offsets that is appended but
not replicated in time (WriteTxnMarkers answers REQUEST_TIMED_OUT), as
Kafka's CoordinatorRuntime treats it: the marker's change stays applied at
its place in the log (CompleteTransactionEvent: replayEndTransactionMarker,
then the append; the write timeout only completes the request's future), so
the transaction's offsets are the group's once the high watermark passes the
marker, ordered with plain commits by log offset, and the transaction
coordinator's retried marker finds nothing left to apply. Three real
brokers; a follower of the group's __consumer_offsets partition stops
fetching so the high watermark stalls; confluent_kafka's transactional
producer sends the offsets."""
from __future__ import annotations

import concurrent.futures
import threading

import pytest

from pylog.broker import txn_partition_apis
from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.transactions import channel

from .test_coordinator_readwait import GROUP, conn, coordinator_of
from .test_coordinator_readwait_ops import fetch, held_cluster, simple_commit
from .test_coordinator_runtime import CLUSTER
from .zkcluster import bootstrap, wait_for

ck = pytest.importorskip("confluent_kafka")

# Long enough for the plain commit below to be replicated on a loaded machine.
WRITE_TIMEOUT_MS = 12000
# The marker's wait: short, so that it times out while the follower is held.
MARKER_TIMEOUT_S = 2.0
# The transaction coordinator's retry of the marker comes well after the
# follower is released and the plain commit applied, so that a retry applying
# the transaction's offsets again would overwrite it.
MARKER_RETRY_S = 10.0


def timed_out_markers(monkeypatch):
    """Counts WriteTxnMarkers answers with REQUEST_TIMED_OUT for
    __consumer_offsets, at every (in-process) broker."""
    seen = {"n": 0}
    lock = threading.Lock()
    original = txn_partition_apis.TxnPartitionApis.write_markers

    async def write_markers(self, req):
        resp = await original(self, req)
        timed_out = sum(1 for mr in resp.markers for t in mr.topics if t.name == ot.TOPIC
                        for p in t.partitions if p.error_code == Errors.REQUEST_TIMED_OUT)
        with lock:
            seen["n"] += timed_out
        return resp
    monkeypatch.setattr(txn_partition_apis.TxnPartitionApis, "write_markers", write_markers)
    return seen


def transaction_state(bs, tid):
    for b in bs:
        with conn(b) as c:
            r = c.request(m.DescribeTransactionsRequest(transactional_ids=[tid]), api_version=0)
        st = r.transaction_states[0]
        if st.error_code == 0:
            return st.transaction_state
    return None


def test_a_timed_out_commit_marker_applies_at_its_place_in_the_log(zk_connect, monkeypatch):
    monkeypatch.setattr(txn_partition_apis, "MARKER_APPEND_TIMEOUT_S", MARKER_TIMEOUT_S)
    monkeypatch.setattr(channel, "RETRY_BACKOFF_S", MARKER_RETRY_S)
    timed_out = timed_out_markers(monkeypatch)
    base = {**CLUSTER, "offsets.commit.timeout.ms": str(WRITE_TIMEOUT_MS),
            "transaction.state.log.num.partitions": "3"}
    tid = "tx-marker-timeout"
    with held_cluster(zk_connect, base) as (bs, coord, index, held):
        boot = bootstrap(bs)
        consumer = ck.Consumer({"bootstrap.servers": boot, "group.id": GROUP, "log_level": 0})
        producer = ck.Producer({"bootstrap.servers": boot, "transactional.id": tid, "log_level": 0})
        try:
            producer.init_transactions(60)
            producer.begin_transaction()
            producer.send_offsets_to_transaction([ck.TopicPartition("rw", 0, 5)],
                                                 consumer.consumer_group_metadata(), 60)
            assert fetch(coord, GROUP, True) == (Errors.UNSTABLE_OFFSET_COMMIT, -1)

            held.hold()
            marker_at = coord.broker.call(lambda: held.part.log_end_offset)
            producer.commit_transaction(60)
            wait_for(lambda: timed_out["n"] >= 1, timeout=60, what="the marker's wait timed out")
            assert coord.broker.call(lambda: held.part.high_watermark) <= marker_at

            # A plain commit of a newer offset, after the marker in the log.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                committing = pool.submit(simple_commit, coord, GROUP, 9)
                wait_for(lambda: coord.broker.call(lambda: held.part.log_end_offset) > marker_at + 1,
                         what="the plain commit appended after the marker")
                held.release()
                assert committing.result(90) == 0
            held.caught_up()

            # The log holds the transaction's 5 at the marker, then 9: the
            # group's offset is 9, and nothing is pending any more (Kafka's
            # OffsetFetch with require_stable finds no pending offsets).
            assert fetch(coord, GROUP, False) == (0, 9)
            assert fetch(coord, GROUP, True) == (0, 9)

            # The retried marker completes the transaction: nothing to apply.
            wait_for(lambda: transaction_state(bs, tid) == "CompleteCommit", timeout=90,
                     what="the transaction's markers written")
            held.caught_up()
            assert fetch(coord, GROUP, False) == (0, 9)
            assert fetch(coord, GROUP, True) == (0, 9)
        finally:
            producer.flush(10)
            consumer.close()

        # A new coordinator replays the log: the same offset.
        old_id = coord.broker.broker_id
        coord.broker.stop_in_thread()
        new_coord, new_index = coordinator_of([b for b in bs if b is not coord])
        assert new_index == index and new_coord.broker.broker_id != old_id
        wait_for(lambda: fetch(new_coord, GROUP, True)[0] not in (
            Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR), what="the group's partition loaded")
        assert fetch(new_coord, GROUP, True) == (0, 9)
