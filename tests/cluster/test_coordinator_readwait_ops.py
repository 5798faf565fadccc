"""Every request Kafka's group coordinator runs as a write operation follows
its runtime's rule for one that writes nothing: the answer rests on state a
pending write changed, so it waits for that write's commit, and fails as
Kafka's handleOperationException maps the failure (a timeout:
COORDINATOR_NOT_AVAILABLE). A request its checks refuse is answered at once
(Kafka's operation throws). JoinGroup and SyncGroup hand their answer out
when the group gives it (Kafka passes the operation its response future):
at once when given at once, failed when the pending write fails first.
Three real brokers; a follower of the groups' __consumer_offsets partition
stops fetching so a simple group's commit stays pending."""
from __future__ import annotations

import concurrent.futures
import contextlib
import time
import uuid

from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors

from . import zkcluster
from .test_coordinator_readwait import GROUP, conn, coordinator_of
from .test_coordinator_runtime import CLUSTER
from .zkcluster import create_topic, wait_for

# Long enough for a held write to commit once its follower is back on a
# loaded machine; each failing case waits it out once.
WRITE_TIMEOUT_MS = 12000
BASE = {**CLUSTER, "offsets.commit.timeout.ms": str(WRITE_TIMEOUT_MS), "offsets.topic.num.partitions": "3"}
RETRIABLE = (Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR, Errors.COORDINATOR_NOT_AVAILABLE)


def same_partition(index, prefix):
    """A group id whose __consumer_offsets partition is index."""
    return next(f"{prefix}-{i}" for i in range(10000) if ot.partition_for(f"{prefix}-{i}", 3) == index)


def simple_commit(b, group, offset, metadata="", generation=-1, member=""):
    """OffsetCommit v8 of rw-0 (a simple group's when generation is -1)."""
    O = m.OffsetCommitRequest
    with conn(b) as c:
        r = c.request(O(group_id=group, generation_id_or_member_epoch=generation, member_id=member, topics=[
            O.OffsetCommitRequestTopic(name="rw", partitions=[O.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=offset, committed_leader_epoch=-1,
                committed_metadata=metadata)])]), api_version=8)
    return r.topics[0].partitions[0].error_code


def fetch(b, group, require_stable):
    """OffsetFetch v7 of rw-0: (error, offset)."""
    O = m.OffsetFetchRequest
    with conn(b) as c:
        r = c.request(O(group_id=group, require_stable=require_stable,
                        topics=[O.OffsetFetchRequestTopic(name="rw", partition_indexes=[0])]), api_version=7)
    p = r.topics[0].partitions[0]
    return r.error_code or p.error_code, p.committed_offset


class Held:
    """The coordinator's offsets partition with one follower not fetching."""

    def __init__(self, bs, coord, index):
        self.coord, self.key = coord, (ot.TOPIC, index)
        self.part = coord.broker.log_manager.partitions[self.key]
        self.follower = next(b for b in bs if b is not coord)
        self.pending = GROUP   # a simple group of the partition, whose commits are the held writes

    @contextlib.contextmanager
    def write(self, pool, offset):
        """A commit appended and held below the high watermark: its future.
        The follower fetches again on leaving."""
        self.hold()
        try:
            committing = pool.submit(simple_commit, self.coord, self.pending, offset)
            wait_for(lambda: self.coord.broker.call(lambda: self.part.log_end_offset > self.part.high_watermark),
                     what="the held commit appended")
            yield committing
        finally:
            self.release()

    def hold(self):
        f = self.follower.broker
        f.call(lambda: f.replica_manager.fetchers.remove(self.key))

    def release(self):
        f = self.follower.broker
        f.call(lambda: f.replica_manager.fetchers.add(f.log_manager.partitions[self.key], False))   # idempotent

    def caught_up(self):
        wait_for(lambda: self.coord.broker.call(lambda: self.part.log_end_offset == self.part.high_watermark),
                 timeout=60, what="the follower caught up")


@contextlib.contextmanager
def held_cluster(zk_connect, base=BASE, topics=(("rw", 1),)):
    """Three brokers, the topics, and the coordinator of GROUP (loaded) with
    its partition's follower to hold: (brokers, coordinator, index, Held)."""
    with zkcluster.cluster(zk_connect, 3, base=base) as bs:
        for name, partitions in topics:
            create_topic(bs, name, partitions)
        coord, index = coordinator_of(bs)
        yield bs, coord, index, Held(bs, coord, index)


def join(b, group, member_id="", rebalance_timeout_ms=120000, version=4):
    J = m.JoinGroupRequest
    with conn(b) as c:
        while True:
            r = c.request(J(group_id=group, session_timeout_ms=120000, rebalance_timeout_ms=rebalance_timeout_ms,
                            member_id=member_id, protocol_type="consumer",
                            protocols=[J.JoinGroupRequestProtocol(name="range", metadata=b"")]),
                          api_version=version)
            if r.error_code not in (Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR):
                return r
            time.sleep(0.1)


def sync(b, group, generation, member_id, assignments=()):
    S = m.SyncGroupRequest
    with conn(b) as c:
        return c.request(S(group_id=group, generation_id=generation, member_id=member_id, assignments=[
            S.SyncGroupRequestAssignment(member_id=mid, assignment=a) for mid, a in assignments]), api_version=3)


def answered_while(pending, fut, timeout=90):
    """fut's result, which must come while pending is still held."""
    r = fut.result(timeout)
    assert not pending.done(), "answered only after the pending write was decided"
    return r


def held_back(fut):
    time.sleep(1.0)
    return not fut.done()


def test_join_and_sync_answer_when_the_group_does_or_fail_with_the_pending_write(zk_connect):
    with held_cluster(zk_connect) as (bs, coord, index, held):
        group = same_partition(index, "g-rw-join")
        r = join(coord, group)
        assert r.error_code == Errors.MEMBER_ID_REQUIRED
        m1 = join(coord, group, r.member_id)
        assert m1.error_code == 0 and m1.leader == m1.member_id, m1
        assert sync(coord, group, m1.generation_id, m1.member_id, [(m1.member_id, b"a1")]).error_code == 0

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            with held.write(pool, 1) as pending:
                # Answers the group gives at once go at once, pending write or not.
                s = answered_while(pending, pool.submit(sync, coord, group, m1.generation_id, m1.member_id))
                assert (s.error_code, s.assignment) == (0, b"a1")
                r = answered_while(pending, pool.submit(join, coord, group))
                assert r.error_code == Errors.MEMBER_ID_REQUIRED
                # A new member's join waits for m1 to rejoin (up to its rebalance
                # timeout); the pending write times out first: that is its answer.
                joining = pool.submit(join, coord, group, r.member_id)
                j2 = joining.result(90)
                assert pending.result(90) == Errors.COORDINATOR_NOT_AVAILABLE
                assert (j2.error_code, j2.member_id, j2.generation_id) == (Errors.COORDINATOR_NOT_AVAILABLE, "", -1)
            held.caught_up()

            with held.write(pool, 2) as pending:
                # m1 rejoins: the join phase completes in its own request, answered at once.
                again = answered_while(pending, pool.submit(join, coord, group, m1.member_id))
                assert again.error_code == 0 and again.leader == m1.member_id, again
                assert len(again.members) == 2
                other = next(x.member_id for x in again.members if x.member_id != m1.member_id)
                # The other member's SyncGroup waits for the leader's assignment,
                # which does not come; the pending write times out first.
                s2 = pool.submit(sync, coord, group, again.generation_id, other).result(90)
                assert pending.result(90) == Errors.COORDINATOR_NOT_AVAILABLE
                assert (s2.error_code, s2.assignment) == (Errors.COORDINATOR_NOT_AVAILABLE, b"")
            held.caught_up()


def test_offset_commits_wait_for_the_pending_write_unless_refused(zk_connect):
    with held_cluster(zk_connect) as (bs, coord, index, held):
        classic = same_partition(index, "g-rw-commit")
        r = join(coord, classic)
        mem = join(coord, classic, r.member_id)
        assert mem.error_code == 0
        assert sync(coord, classic, mem.generation_id, mem.member_id, [(mem.member_id, b"")]).error_code == 0
        simple = same_partition(index, "g-rw-simple")
        too_large = "x" * 5000     # over offsets.metadata.max.bytes: refused per partition, nothing written
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            with held.write(pool, 1) as pending:
                # Refused by the group's checks (Kafka's commitOffset throws): at once.
                bad = pool.submit(simple_commit, coord, classic, 5, "", mem.generation_id + 1, mem.member_id)
                assert answered_while(pending, bad) == Errors.ILLEGAL_GENERATION
                # Refused per partition: an answer, which waits for the pending write.
                refused = pool.submit(simple_commit, coord, simple, 5, too_large)
                assert held_back(refused)
                held.release()
                assert pending.result(90) == 0
                assert refused.result(90) == Errors.OFFSET_METADATA_TOO_LARGE
            held.caught_up()

            with held.write(pool, 2) as pending:
                refused = pool.submit(simple_commit, coord, simple, 6, too_large)
                assert held_back(refused)
                assert pending.result(90) == Errors.COORDINATOR_NOT_AVAILABLE
                assert refused.result(90) == Errors.COORDINATOR_NOT_AVAILABLE
            held.caught_up()

            # OffsetFetch with require_stable is a write operation in Kafka: it
            # reads the latest offsets, the pending commit's included, and is
            # answered once that commit is. Without the flag: a read of what
            # is committed, at once.
            with held.write(pool, 3) as pending:
                assert answered_while(pending, pool.submit(fetch, coord, held.pending, False)) == (0, 2)
                stable = pool.submit(fetch, coord, held.pending, True)
                assert held_back(stable)
                held.release()
                assert pending.result(90) == 0
                assert stable.result(90) == (0, 3)
            held.caught_up()


def _txn_coordinator(bs, tid):
    def found():
        with conn(bs[0]) as c:
            r = c.request(m.FindCoordinatorRequest(key=tid, key_type=1), api_version=1)
        if r.error_code:
            return None
        return next(b for b in bs if b.broker.broker_id == r.node_id)
    out = {}
    wait_for(lambda: out.setdefault("b", found()) is not None or out.pop("b", None) is not None,
             timeout=60, what="the transaction coordinator")
    return out["b"]


def test_a_txn_offset_commit_that_writes_nothing_waits_for_the_pending_write(zk_connect):
    with held_cluster(zk_connect, {**BASE, "transaction.state.log.replication.factor": "3",
                                   "transaction.state.log.min.isr": "2",
                                   "transaction.state.log.num.partitions": "3"}) as (bs, coord, index, held):
        group = same_partition(index, "g-rw-txn")
        tid = f"t-{uuid.uuid4()}"
        tc = _txn_coordinator(bs, tid)
        with conn(tc) as c:
            while True:
                ip = c.request(m.InitProducerIdRequest(transactional_id=tid, transaction_timeout_ms=60000),
                               api_version=2)
                if ip.error_code not in RETRIABLE + (Errors.CONCURRENT_TRANSACTIONS,):
                    break
                time.sleep(0.1)
            assert ip.error_code == 0, ip
            while True:
                ao = c.request(m.AddOffsetsToTxnRequest(transactional_id=tid, producer_id=ip.producer_id,
                                                        producer_epoch=ip.producer_epoch, group_id=group),
                               api_version=1)
                if ao.error_code not in RETRIABLE + (Errors.CONCURRENT_TRANSACTIONS,):
                    break
                time.sleep(0.1)
            assert ao.error_code == 0, ao
        T = m.TxnOffsetCommitRequest

        def txn_commit(metadata):
            with conn(coord) as c:
                r = c.request(T(transactional_id=tid, group_id=group, producer_id=ip.producer_id,
                                producer_epoch=ip.producer_epoch, topics=[T.TxnOffsetCommitRequestTopic(
                                    name="rw", partitions=[T.TxnOffsetCommitRequestPartition(
                                        partition_index=0, committed_offset=3, committed_leader_epoch=-1,
                                        committed_metadata=metadata)])]), api_version=2)
            return r.topics[0].partitions[0].error_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            with held.write(pool, 1) as pending:
                refused = pool.submit(txn_commit, "x" * 5000)
                assert held_back(refused)
                assert pending.result(90) == Errors.COORDINATOR_NOT_AVAILABLE
                assert refused.result(90) == Errors.COORDINATOR_NOT_AVAILABLE
            held.caught_up()
            # Nothing pending: answered as before.
            assert txn_commit("x" * 5000) == Errors.OFFSET_METADATA_TOO_LARGE
            assert txn_commit("") == 0
