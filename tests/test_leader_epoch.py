"""Leader epochs: the cache (Kafka's LeaderEpochFileCacheTest answers), its
checkpoint file, the follower's KIP-279 truncation loop on the KIP-101/279
scenarios and on random leader histories, and the OffsetForLeaderEpoch answer
through the generated codecs."""
from __future__ import annotations

import itertools
import os
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylog.broker.epoch_api import offset_for_leader_epoch
from pylog.errors import UnknownTopicOrPartitionError
from pylog.log.checkpoint import read_checkpoint, write_checkpoint
from pylog.log.leader_epoch import (
    LEADER_EPOCH_CHECKPOINT,
    LeaderEpochCache,
    TruncationStep,
    follower_truncation_offset,
    follower_truncation_start,
)
from pylog.protocol import messages as m

UNDEFINED = (-1, -1)


@pytest.fixture
def cache(tmp_path):
    return LeaderEpochCache(str(tmp_path / LEADER_EPOCH_CHECKPOINT))


def cache_of(*entries):
    c = LeaderEpochCache(None)
    for e, s in entries:
        c.assign(e, s)
    return c


# ---- cache semantics: LeaderEpochFileCacheTest (apache/kafka), answer for answer ----

def test_previous_epoch(cache):
    assert cache.previous_epoch() == -1
    cache.assign(2, 10)
    assert cache.previous_epoch() == -1
    cache.assign(4, 15)
    assert cache.previous_epoch() == 2
    cache.assign(10, 20)
    assert cache.previous_epoch() == 4
    cache.truncate_from_end(18)
    assert cache.previous_epoch() == 2
    assert cache.previous_epoch(cache.latest_epoch()) == 2
    assert cache.previous_epoch(2) == -1


def test_add_epoch_and_message_offset(cache):
    cache.assign(2, 10)
    assert cache.latest_epoch() == 2
    assert cache.epoch_entries() == [(2, 10)]
    assert cache.end_offset_for(2, 11) == (2, 11)


def test_log_end_offset_if_latest_epoch_requested(cache):
    cache.assign(2, 11)
    cache.assign(2, 12)
    assert cache.end_offset_for(2, 14) == (2, 14)


def test_undefined_epoch_requested(cache):
    cache.assign(2, 11)
    cache.assign(3, 12)
    assert cache.end_offset_for(-1, 0) == UNDEFINED
    assert LeaderEpochCache(None).end_offset_for(-1, 73) == UNDEFINED


def test_monotonically_increasing_start_offsets(cache):
    cache.assign(2, 9)
    cache.assign(3, 9)
    assert cache.epoch_entries() == [(3, 9)]


def test_an_epoch_once_assigned_keeps_its_start(cache):
    cache.assign(2, 6)
    assert cache.assign(2, 10) is False
    cache.assign(2, 7)
    assert cache.epoch_entries() == [(2, 6)]


def test_no_epoch_recorded(cache):
    assert cache.latest_epoch() == -1
    assert cache.end_offset_for(0, 0) == UNDEFINED
    assert cache.end_offset_for(7, 0) == UNDEFINED


def test_requested_epoch_below_first_epoch_answers_first_start(cache):
    for e, s in [(5, 11), (6, 12), (7, 13)]:
        cache.assign(e, s)
    assert cache.end_offset_for(4, 0) == (4, 11)


def test_matching_epoch_with_earlier_start_truncates(cache):
    for e, s in [(5, 11), (6, 12), (7, 13)]:
        cache.assign(e, s)
    cache.assign(7, 12)
    assert cache.epoch_entries() == [(5, 11), (7, 12)]
    assert cache.end_offset_for(5, 0) == (5, 12)
    assert cache.end_offset_for(6, 0) == (5, 12)


def test_first_offset_of_subsequent_epoch_ends_previous(cache):
    for e, s in [(1, 11), (1, 12), (2, 13), (2, 14), (3, 15), (3, 16)]:
        cache.assign(e, s)
    assert cache.end_offset_for(2, 17) == (2, 15)


def test_next_available_epoch_when_no_exact_epoch(cache):
    for e, s in [(0, 10), (2, 13), (4, 17)]:
        cache.assign(e, s)
    assert cache.end_offset_for(1, 0) == (0, 13)
    assert cache.end_offset_for(2, 0) == (2, 17)
    assert cache.end_offset_for(3, 0) == (2, 17)


def test_epoch_not_tracked_is_undefined(cache):
    cache.assign(2, 100)
    assert cache.end_offset_for(3, 100) == UNDEFINED


def test_epochs_need_not_start_from_zero(cache):
    cache.assign(2, 6)
    assert cache.end_offset_for(2, 7) == (2, 7)
    assert cache.epoch_entries() == [(2, 6)]


def test_lower_epoch_truncates_later_entries(cache):
    # Kafka's shouldEnforceMonotonicallyIncreasingEpochs: not ignored, the
    # conflicting later entries go.
    cache.assign(1, 5)
    cache.assign(2, 6)
    cache.assign(1, 7)
    assert cache.latest_epoch() == 1
    assert cache.end_offset_for(1, 8) == (1, 8)
    assert cache.end_offset_for(2, 8) == UNDEFINED
    assert cache.epoch_entries() == [(1, 7)]


def test_offsets_increase_monotonically(cache):
    cache.assign(2, 6)
    cache.assign(3, 5)
    assert cache.epoch_entries() == [(3, 5)]


def test_epochs_tracked_as_leaders_change_many_times(cache):
    cache.assign(0, 0)
    cache.assign(1, 0)
    assert cache.latest_epoch() == 1
    assert cache.end_offset_for(1, 0) == (1, 0)
    assert cache.end_offset_for(0, 0) == (0, 0)
    assert cache.end_offset_for(1, 5) == (1, 5)
    assert cache.end_offset_for(0, 5) == (0, 0)
    cache.assign(2, 5)
    assert cache.end_offset_for(2, 10) == (2, 10)
    assert cache.end_offset_for(1, 10) == (1, 5)
    assert cache.end_offset_for(0, 10) == (0, 0)


def test_epochs_tracked_as_follower_receives_many_messages(cache):
    for offset, epoch in enumerate([0, 0, 0, 1, 1, 1, 2, 2, 2]):
        cache.assign(epoch, offset)
    assert cache.latest_epoch() == 2
    assert cache.end_offset_for(2, 9) == (2, 9)
    assert cache.end_offset_for(0, 9) == (0, 3)
    assert cache.end_offset_for(1, 9) == (1, 6)


@pytest.mark.parametrize("end_offset, left", [
    (8, [(2, 6)]),                 # shouldDropEntriesOnEpochBoundaryWhenRemovingLatestEntries
    (9, [(2, 6), (3, 8)]),         # shouldDropEntriesBetweenEpochBoundaryWhenRemovingNewest
    (-1, [(2, 6), (3, 8), (4, 11)]),  # shouldNotResetEpochHistoryTailIfUndefinedPassed
    (6, []),
    (100, [(2, 6), (3, 8), (4, 11)]),
])
def test_truncate_from_end(cache, end_offset, left):
    for e, s in [(2, 6), (3, 8), (4, 11)]:
        cache.assign(e, s)
    cache.truncate_from_end(end_offset)
    assert cache.epoch_entries() == left


@pytest.mark.parametrize("start_offset, left", [
    (8, [(3, 8), (4, 11)]),          # shouldPreserveResetOffsetOnClearEarliestIfOneExists
    (1, [(2, 6), (3, 8), (4, 11)]),  # shouldNotClearAnythingIfOffsetTooEarly
    (6, [(2, 6), (3, 8), (4, 11)]),  # shouldNotClearAnythingIfOffsetIsFirstOffset
    (11, [(4, 11)]),                 # shouldRetainLatestEpochOnClearAllEarliest
    (9, [(3, 9), (4, 11)]),          # shouldUpdateOffsetBetweenEpochBoundariesOnClearEarliest
    (15, [(4, 15)]),                 # shouldRetainLatestEpochOnClearAllEarliestAndUpdateItsOffset
    (-1, [(2, 6), (3, 8), (4, 11)]),  # shouldNotResetEpochHistoryHeadIfUndefinedPassed
])
def test_truncate_from_start(cache, start_offset, left):
    for e, s in [(2, 6), (3, 8), (4, 11)]:
        cache.assign(e, s)
    cache.truncate_from_start(start_offset)
    assert cache.epoch_entries() == left


def test_truncate_from_start_between_first_two_epochs(cache):
    for e, s in [(0, 0), (1, 7), (2, 10)]:
        cache.assign(e, s)
    cache.truncate_from_start(5)
    assert cache.epoch_entries() == [(0, 5), (1, 7), (2, 10)]


def test_truncations_and_clear_on_empty_cache(cache):
    assert cache.truncate_from_start(7) == []
    assert cache.truncate_from_end(7) == []
    cache.clear()
    cache.flush()
    assert cache.epoch_entries() == []


def test_epoch_for_offset(cache):
    for e, s in [(0, 10), (1, 20), (5, 30)]:
        cache.assign(e, s)
    assert cache.epoch_for_offset(25) == 1
    assert cache.epoch_for_offset(20) == 1
    assert cache.epoch_for_offset(30) == 5
    assert cache.epoch_for_offset(50) == 5
    assert cache.epoch_for_offset(5) == -1


def test_invalid_entries_are_refused(cache):
    with pytest.raises(ValueError):
        cache.assign(-1, 0)
    with pytest.raises(ValueError):
        cache.assign(0, -1)


# ---- the checkpoint file ----

def test_persisted_between_instances(tmp_path):
    path = str(tmp_path / LEADER_EPOCH_CHECKPOINT)
    LeaderEpochCache(path).assign(2, 6)
    assert LeaderEpochCache(path).epoch_entries() == [(2, 6)]
    with open(path) as f:
        assert f.read() == "0\n1\n2 6\n"


def test_truncations_are_written_by_flush(tmp_path):
    # Kafka's shouldWriteCheckpointOnTruncation, with the flush made explicit.
    path = str(tmp_path / LEADER_EPOCH_CHECKPOINT)
    c = LeaderEpochCache(path)
    for e, s in [(2, 6), (3, 8), (4, 11)]:
        c.assign(e, s)
    c.truncate_from_end(11)
    c.truncate_from_start(8)
    assert read_checkpoint(path) == [["2", "6"], ["3", "8"], ["4", "11"]]  # assign wrote through; not yet these
    c.flush()
    assert read_checkpoint(path) == [["3", "8"]]
    assert LeaderEpochCache(path).epoch_entries() == [(3, 8)]
    c.clear()
    c.flush()
    assert LeaderEpochCache(path).epoch_entries() == []


def test_no_write_when_nothing_changed(tmp_path):
    path = str(tmp_path / LEADER_EPOCH_CHECKPOINT)
    c = LeaderEpochCache(path)
    c.assign(1, 0)
    os.remove(path)
    assert c.assign(1, 5) is False  # a follower appending more batches of the same epoch
    c.truncate_from_start(0)
    c.flush()
    assert not os.path.exists(path)


def test_reads_kafka_written_file_and_repairs_order(tmp_path):
    path = str(tmp_path / LEADER_EPOCH_CHECKPOINT)
    with open(path, "w") as f:
        f.write("0\n3\n0 0\n2 100\n5 230\n")
    c = LeaderEpochCache(path)
    assert c.epoch_entries() == [(0, 0), (2, 100), (5, 230)]
    assert c.end_offset_for(1, 300) == (0, 100)
    # A non-monotonic file (hand-edited, or a stale entry) is replayed through assign.
    write_checkpoint(path, [(1, 0), (3, 50), (2, 40)])
    assert LeaderEpochCache(path).epoch_entries() == [(1, 0), (2, 40)]


@pytest.mark.parametrize("text", ["1\n0\n", "0\n2\n0 0\n", "0\n1\n0 0 0\n", "0\n1\nx 0\n"])
def test_malformed_file_is_an_error(tmp_path, text):
    path = tmp_path / LEADER_EPOCH_CHECKPOINT
    path.write_text(text)
    with pytest.raises(ValueError):
        LeaderEpochCache(str(path))


def test_missing_file_is_an_empty_cache_and_flush_creates_it(tmp_path):
    path = tmp_path / "t-0" / LEADER_EPOCH_CHECKPOINT
    c = LeaderEpochCache(str(path))
    assert c.latest_epoch() == -1
    c.assign(0, 0)
    assert path.read_text() == "0\n1\n0 0\n"
    assert LeaderEpochCache.in_dir(str(tmp_path / "t-0")).epoch_entries() == [(0, 0)]


def test_reads_the_file_the_broker_partition_writes(tmp_path):
    from confluent_kafka import Producer

    from pylog.testing import running_broker

    with running_broker(tmp_path / "d") as b:
        p = Producer({"bootstrap.servers": str(b), "linger.ms": 1})
        for i in range(20):
            p.produce("ep", b"v%d" % i, partition=0)
        assert p.flush(10) == 0
        part = b.broker.log_manager.partitions[("ep", 0)]
        leader_epoch, leo = part.leader_epoch, part.log_end_offset
    c = LeaderEpochCache.in_dir(str(tmp_path / "d" / "ep-0"))
    assert leo == 20
    assert c.latest_epoch() == leader_epoch
    assert c.epoch_entries()[0][1] == 0  # the partition was created empty
    assert c.end_offset_for(leader_epoch, leo) == (leader_epoch, leo)


# ---- follower truncation: a replica model ----

class Replica:
    """A replica's log as a list of (epoch, record id); offset = index."""

    def __init__(self, log=(), hw=0):
        self.log = []
        self.cache = LeaderEpochCache(None)
        self.hw = hw
        self.append(log)

    @property
    def leo(self):
        return len(self.log)

    def append(self, records):
        for epoch, rid in records:
            self.cache.assign(epoch, self.leo)  # per batch in Kafka; one record per batch here
            self.log.append((epoch, rid))

    def become_leader(self, epoch):
        self.cache.assign(epoch, self.leo)

    def truncate(self, offset):
        assert 0 <= offset <= self.leo
        del self.log[offset:]
        self.cache.truncate_from_end(offset)
        self.hw = min(self.hw, offset)


def leader_answer(leader, epoch, version=3):
    """The leader's OffsetForLeaderEpoch answer, through the real codecs."""
    req = m.OffsetForLeaderEpochRequest(replica_id=1, topics=[m.OffsetForLeaderEpochRequest.OffsetForLeaderTopic(
        topic="t", partitions=[m.OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
            partition=0, current_leader_epoch=leader.cache.latest_epoch(), leader_epoch=epoch)])])
    req = m.OffsetForLeaderEpochRequest.decode(m.OffsetForLeaderEpochRequest.encode(req, version), version)
    state = SimpleNamespace(leader_epoch=leader.cache.latest_epoch(), is_leader=True,
                            epoch_cache=leader.cache, log_end_offset=leader.leo)
    resp = offset_for_leader_epoch(req, lambda t, p: state)
    resp = m.OffsetForLeaderEpochResponse.decode(m.OffsetForLeaderEpochResponse.encode(resp, version), version)
    part = resp.topics[0].partitions[0]
    assert part.error_code == 0
    return part.leader_epoch, part.end_offset


def truncate_against(follower, leader, version=3):
    """Run the KIP-279 loop; returns the epochs asked."""
    asked = []
    step = follower_truncation_start(follower.cache, follower.leo, follower.hw)
    while True:
        follower.truncate(step.offset)
        if step.done:
            return asked
        assert not asked or step.next_epoch < asked[-1]  # strictly decreasing: the loop ends
        asked.append(step.next_epoch)
        epoch, end = leader_answer(leader, step.next_epoch, version)
        step = follower_truncation_offset(follower.cache, follower.leo, follower.hw, epoch, end)


def fetch_all(follower, leader):
    follower.append(leader.log[follower.leo:])


def common_prefix(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_kip101_scenario1_high_watermark_truncation_would_lose_data():
    # A leader (epoch 0) wrote m1 m2; B fetched both but learnt HW = 1 only, then
    # restarted. Truncating to its HW would drop m2, which A may lose next.
    a = Replica([(0, "m1"), (0, "m2")], hw=2)
    b = Replica([(0, "m1"), (0, "m2")], hw=1)
    assert truncate_against(b, a) == [0]
    assert b.log == [(0, "m1"), (0, "m2")]


def test_kip101_scenario2_replicas_diverge_after_leader_change():
    # Both crash; B comes back with m1 only, leads epoch 1 and writes m3 at offset 1.
    # A comes back with m1 m2 (epoch 0) and must drop m2.
    a = Replica([(0, "m1"), (0, "m2")], hw=2)
    b = Replica([(0, "m1")], hw=1)
    b.become_leader(1)
    b.append([(1, "m3")])
    assert truncate_against(a, b) == [0]
    assert a.log == [(0, "m1")]
    fetch_all(a, b)
    assert a.log == b.log == [(0, "m1"), (1, "m3")]
    assert a.cache.epoch_entries() == b.cache.epoch_entries() == [(0, 0), (1, 1)]


def test_kip279_follower_has_an_epoch_the_leader_never_saw():
    # A led epoch 1 (m1 m2); B copied m1, led epoch 2 and wrote m3 m4 that nobody
    # copied; A leads again in epoch 3. Under KIP-101 alone B would keep offset 1 (m3)
    # against A's m2: the leader's answer carries its epoch and B finds it lacks it.
    a = Replica([(1, "m1"), (1, "m2")])
    b = Replica([(1, "m1")])
    b.become_leader(2)
    b.append([(2, "m3"), (2, "m4")])
    a.become_leader(3)
    a.append([(3, "m5")])
    assert leader_answer(a, 2) == (1, 2)
    assert truncate_against(b, a) == [2]
    assert b.log == [(1, "m1")]
    fetch_all(b, a)
    assert b.log == a.log


def test_kip279_loop_asks_again_with_a_lower_epoch():
    leader = Replica([(1, "a")] * 7 + [(3, "b")] * 5)
    leader.become_leader(6)
    leader.append([(6, "c")] * 3)
    follower = Replica([(1, "a")] * 5 + [(2, "x")] * 5 + [(5, "y")] * 5)
    assert follower.cache.epoch_entries() == [(1, 0), (2, 5), (5, 10)]
    assert leader.cache.epoch_entries() == [(1, 0), (3, 7), (6, 12)]
    step = follower_truncation_offset(follower.cache, follower.leo, 0, *leader_answer(leader, 5))
    assert step == TruncationStep(10, False, 2)  # leader says (3, 12): we lack 3; cut to our end of epoch 2
    assert truncate_against(follower, leader) == [5, 2]
    assert follower.log == [(1, "a")] * 5
    fetch_all(follower, leader)
    assert follower.log == leader.log


def test_leader_lost_data_it_had_replicated():
    # A led epoch 1 and wrote 10 records, B copied them all; A crashed losing 5 unflushed
    # ones, came back and leads epoch 2 from offset 5. B must cut its 5 extra epoch-1 records.
    a = Replica([(1, i) for i in range(10)])
    b = Replica(a.log)
    a.truncate(5)
    a.become_leader(2)
    a.append([(2, i) for i in range(10, 13)])
    assert truncate_against(b, a) == [1]
    assert b.leo == 5
    fetch_all(b, a)
    assert b.log == a.log


def test_epoch_assigned_without_data_is_dropped_before_fetching():
    # A was elected (epoch 3 at 10) but wrote nothing before B took over (epoch 4).
    # Truncating to A's own LEO must still drop the empty (3, 10) entry, or assigning
    # the fetched epoch-2 batches would move epoch 2's start to 10.
    a = Replica([(1, i) for i in range(5)] + [(2, i) for i in range(5, 10)])
    b = Replica(a.log + [(2, 10), (2, 11)])
    a.become_leader(3)
    b.become_leader(4)
    b.append([(4, 12)])
    truncate_against(a, b)
    assert a.cache.epoch_entries() == [(1, 0), (2, 5)]
    fetch_all(a, b)
    assert a.cache.epoch_entries() == b.cache.epoch_entries() == [(1, 0), (2, 5), (4, 12)]


def test_undefined_answers_fall_back():
    local = [(1, 0), (2, 5)]
    # The leader does not know the epoch: the high watermark.
    assert follower_truncation_offset(local, 10, 7, -1, -1) == TruncationStep(7, True)
    # A v0 answer (no epoch): the leader's offset, never past our LEO.
    assert follower_truncation_offset(local, 10, 7, -1, 8) == TruncationStep(8, True)
    assert follower_truncation_offset(local, 10, 7, -1, 80) == TruncationStep(10, True)
    # A replica without epochs does not ask: its high watermark.
    assert follower_truncation_start([], 10, 4) == TruncationStep(4, True)
    assert follower_truncation_start(cache_of((1, 0), (2, 5)), 10, 4) == TruncationStep(10, False, 2)
    # The leader's epoch is below all of ours: its start is the end.
    assert follower_truncation_offset([(3, 4)], 10, 0, 1, 6) == TruncationStep(4, True)


def test_loop_through_a_v0_leader_uses_its_offset():
    a = Replica([(0, "m1"), (0, "m2")], hw=2)
    b = Replica([(0, "m1")])
    b.become_leader(1)
    b.append([(1, "m3")])
    truncate_against(a, b, version=0)  # v0 answers carry no epoch
    assert a.log == [(0, "m1")]


@st.composite
def histories(draw):
    n = draw(st.integers(2, 4))
    ops = draw(st.lists(st.one_of(
        st.tuples(st.just("elect"), st.integers(0, n - 1)),
        st.tuples(st.just("append"), st.integers(1, 4)),
        st.tuples(st.just("fetch"), st.integers(0, n - 1), st.integers(0, 6)),
        st.tuples(st.just("crash"), st.integers(0, n - 1), st.integers(0, 20)),
    ), max_size=60))
    return n, ops


@settings(max_examples=300, deadline=None)
@given(histories())
def test_random_leader_histories_converge(history):
    """Any replica may become leader (unclean elections included) and lose unflushed
    data: the loop ends, cuts exactly where the follower diverges from the leader, and
    afterwards the follower's log is a prefix of the leader's."""
    n, ops = history
    replicas = [Replica() for _ in range(n)]
    leader, epoch, ids = None, 0, itertools.count()
    synced = set()  # followers that truncated against the current leader

    def sync(r, limit):
        f, lead = replicas[r], replicas[leader]
        if r not in synced:
            expected = common_prefix(f.log, lead.log)
            asked = truncate_against(f, lead)
            assert len(asked) <= epoch + 1
            assert f.leo == expected, (f.log, lead.log)
            synced.add(r)
        assert f.log == lead.log[:f.leo]
        f.append(lead.log[f.leo:f.leo + limit])
        assert f.log == lead.log[:f.leo]

    for op in ops:
        if op[0] == "elect":
            epoch += 1
            leader = op[1]
            replicas[leader].become_leader(epoch)
            synced = set()
        elif leader is None:
            continue
        elif op[0] == "append":
            replicas[leader].append([(epoch, next(ids)) for _ in range(op[1])])
        elif op[0] == "fetch" and op[1] != leader:
            sync(op[1], op[2])
        elif op[0] == "crash":
            r = replicas[op[1]]
            r.truncate(min(op[2], r.leo))  # the unflushed tail is gone
            synced.discard(op[1])
            if op[1] == leader:
                leader = None
    if leader is not None:
        for r in range(n):
            if r != leader:
                sync(r, 1 << 30)
                assert replicas[r].log == replicas[leader].log
                assert replicas[r].cache.epoch_entries() == [
                    e for e in replicas[leader].cache.epoch_entries() if e[1] < replicas[leader].leo]


# ---- OffsetForLeaderEpoch (key 23) ----

def epoch_request(version, parts, replica_id=-1):
    Q = m.OffsetForLeaderEpochRequest
    req = Q(replica_id=replica_id, topics=[
        Q.OffsetForLeaderTopic(topic=t, partitions=[
            Q.OffsetForLeaderPartition(partition=p, current_leader_epoch=cur, leader_epoch=e)
            for t2, p, cur, e in parts if t2 == t])
        for t in dict.fromkeys(t for t, *_ in parts)])
    return Q.decode(Q.encode(req, version), version)


@pytest.fixture
def hosted(tmp_path):
    leader_cache = LeaderEpochCache(str(tmp_path / "t-0" / LEADER_EPOCH_CHECKPOINT))
    for e, s in [(0, 0), (2, 100), (5, 230)]:
        leader_cache.assign(e, s)
    follower_cache = LeaderEpochCache(str(tmp_path / "t-1" / LEADER_EPOCH_CHECKPOINT))
    follower_cache.assign(5, 0)
    table = {
        ("t", 0): SimpleNamespace(leader_epoch=5, is_leader=True, epoch_cache=leader_cache, log_end_offset=300),
        ("t", 1): SimpleNamespace(leader_epoch=5, is_leader=False, epoch_cache=follower_cache,
                                  log_end_offset=40),
    }

    def lookup(topic, partition):
        try:
            return table[(topic, partition)]
        except KeyError:
            raise UnknownTopicOrPartitionError(f"{topic}-{partition}") from None
    return lookup


def answers_by_row(req, lookup, version):
    """(error_code, leader_epoch, end_offset) per requested partition, in request order,
    after a round trip of the response through the codecs."""
    R = m.OffsetForLeaderEpochResponse
    resp = R.decode(R.encode(offset_for_leader_epoch(req, lookup), version), version)
    return [(p.error_code, p.leader_epoch, p.end_offset) for t in resp.topics for p in t.partitions]


@pytest.mark.parametrize("version", [2, 3])
def test_offset_for_leader_epoch_answers(hosted, version):
    req = epoch_request(version, [
        ("t", 0, 5, 5),    # the current epoch: the log end offset
        ("t", 0, -1, 1),   # an epoch we skipped: largest below, next start
        ("t", 0, 5, 2),
        ("t", 0, 5, 7),    # beyond ours: undefined
        ("t", 0, 4, 5),    # the asker's view of the leader is older: fenced
        ("t", 0, 6, 5),    # newer than ours: unknown leader epoch
        ("t", 1, 5, 5),    # not the leader
        ("t", 1, 3, 5),    # the epoch check comes first (Kafka's getLocalLog)
        ("t", 9, 5, 5),
        ("u", 0, -1, 0),
    ])
    assert answers_by_row(req, hosted, version) == [
        (0, 5, 300), (0, 0, 100), (0, 2, 230), (0, -1, -1), (74, -1, -1), (75, -1, -1),
        (6, -1, -1), (74, -1, -1), (3, -1, -1), (3, -1, -1)]


@pytest.mark.parametrize("version", [0, 1])
def test_offset_for_leader_epoch_old_versions(hosted, version):
    # No current_leader_epoch before v2 (so no fencing), no leader_epoch in v0 answers.
    req = epoch_request(version, [("t", 0, 4, 2), ("t", 0, 6, 5), ("t", 1, 4, 5), ("t", 7, 4, 5)])
    assert [p.current_leader_epoch for t in req.topics for p in t.partitions] == [-1] * 4
    epoch = (lambda e: e) if version == 1 else (lambda e: -1)
    assert answers_by_row(req, hosted, version) == [
        (0, epoch(2), 230), (0, epoch(5), 300), (6, -1, -1), (3, -1, -1)]


def test_offset_for_leader_epoch_v3_carries_replica_id(hosted):
    req = epoch_request(3, [("t", 0, 5, 0)], replica_id=2)
    assert req.replica_id == 2
    assert answers_by_row(req, hosted, 3) == [(0, 0, 100)]
    resp = offset_for_leader_epoch(req, hosted)
    assert resp.throttle_time_ms == 0 and [t.topic for t in resp.topics] == ["t"]


def test_leader_twice_without_writing_in_between():
    # Found by the random histories: A (epochs 1 and 3) and B (epochs 2 and 4) took
    # turns; A wrote only in epoch 1, B only in epoch 2. A's (3, 1) holds no data: it
    # must not be the epoch A asks about, or A would read B's (2, 1) answer against a
    # cache that lost epoch 3 and keep its epoch-1 record at offset 0.
    a = Replica([(1, "m1")])
    b = Replica()
    b.become_leader(2)
    b.append([(2, "m2")])
    a.become_leader(3)
    b.become_leader(4)
    assert follower_truncation_start(a.cache, a.leo, 0) == TruncationStep(1, False, 1)
    assert truncate_against(a, b) == [1]
    assert a.log == []
    fetch_all(a, b)
    assert a.log == b.log


def test_a_file_written_off_the_loop_is_not_written_again(tmp_path):
    # The broker writes a new leader's entries on its file thread before the
    # LeaderAndIsr is applied (ReplicaManager.write_leader_epochs); the assign
    # on the loop that leaves the same entries then writes nothing, and one
    # that leaves others (the log end moved meanwhile) writes through.
    cache = LeaderEpochCache.in_dir(str(tmp_path))
    cache.assign(0, 0)
    entries = cache.entries_if_assigned(3, 10)
    assert entries == [(0, 0), (3, 10)] and cache.epoch_entries() == [(0, 0)]
    assert cache.entries_if_assigned(0, 5) is None
    LeaderEpochCache.write_file(cache.path, entries)
    cache.note_written(entries)
    written = os.stat(cache.path).st_ino
    assert cache.assign(3, 10)
    assert os.stat(cache.path).st_ino == written
    assert cache.assign(4, 12)
    assert os.stat(cache.path).st_ino != written
    assert LeaderEpochCache.in_dir(str(tmp_path)).epoch_entries() == [(0, 0), (3, 10), (4, 12)]
