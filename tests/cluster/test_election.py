"""Leader election: Kafka's PartitionLeaderElectionAlgorithmsTest answers,
the state transitions of its Partition/ReplicaStateMachine, auto-rebalance
ratios, and hypothesis properties."""
from hypothesis import given, settings
from hypothesis import strategies as st

from pylog.cluster.election import (
    NO_LEADER,
    controlled_shutdown_leader,
    elect_controlled_shutdown,
    elect_offline,
    elect_preferred,
    elect_reassign,
    imbalance_ratios,
    offline_partition_leader,
    preferred_election_candidates,
    preferred_replica_leader,
    reassign_partition_leader,
    remove_replica_from_isr,
)
from pylog.cluster.metadata_store import PartitionState


def st_(leader, isr, leader_epoch=5, controller_epoch=1, partition_epoch=7):
    return PartitionState(leader=leader, leader_epoch=leader_epoch, isr=list(isr),
                          controller_epoch=controller_epoch, partition_epoch=partition_epoch)


# --- Kafka's PartitionLeaderElectionAlgorithmsTest --------------------------------

def test_offline_partition_leader_election():
    assert offline_partition_leader([2, 4], [2, 4], {4}, False) == 4


def test_offline_last_isr_offline_unclean_disabled():
    assert offline_partition_leader([2, 4], [2], {4}, False) is None


def test_offline_last_isr_offline_unclean_enabled():
    assert offline_partition_leader([2, 4], [2], {4}, True) == 4


def test_offline_prefers_isr_over_assignment_order_even_when_unclean():
    assert offline_partition_leader([1, 2, 3], [3], {1, 2, 3}, True) == 3


def test_reassign_partition_leader_election():
    assert reassign_partition_leader([2, 4], [2, 4], {4}) == 4
    assert reassign_partition_leader([2, 4], [2], set()) is None
    assert reassign_partition_leader([], [2], {2}) is None


def test_preferred_replica_partition_leader_election():
    assert preferred_replica_leader([2, 4], [2, 4], {2, 4}) == 2
    assert preferred_replica_leader([2, 4], [2, 4], {4}) is None      # preferred in ISR, not live
    assert preferred_replica_leader([2, 4], [4], {2, 4}) is None      # preferred live, not in ISR


def test_controlled_shutdown_partition_leader_election():
    assert controlled_shutdown_leader([2, 4], [2, 4], {2, 4}, {2}) == 4
    assert controlled_shutdown_leader([2, 4], [2], {2, 4}, {2}) is None
    assert controlled_shutdown_leader([2, 4], [2, 4], {2, 4}, {2, 4}) is None


# --- new states ---------------------------------------------------------------------

def test_elect_offline_clean_keeps_live_isr_and_bumps_epoch():
    new = elect_offline(st_(1, [1, 2, 3]), [1, 2, 3], live={2, 3}, controller_epoch=4)
    assert new == st_(2, [2, 3], leader_epoch=6, controller_epoch=4, partition_epoch=7)


def test_elect_offline_isr_order_is_kept_not_assignment_order():
    new = elect_offline(st_(1, [1, 3, 2]), [1, 2, 3], live={2, 3}, controller_epoch=1)
    assert new.leader == 2 and new.isr == [3, 2]


def test_elect_offline_no_live_isr():
    state = st_(NO_LEADER, [1])
    assert elect_offline(state, [1, 2, 3], live={2, 3}, controller_epoch=1) is None
    new = elect_offline(state, [1, 2, 3], live={2, 3}, controller_epoch=1,
                        unclean_leader_election_enable=True)
    assert (new.leader, new.isr, new.leader_epoch) == (2, [2], 6)


def test_elect_reassign_keeps_isr():
    new = elect_reassign(st_(1, [1, 4, 5]), [4, 5], live={1, 4, 5}, controller_epoch=2)
    assert (new.leader, new.isr, new.leader_epoch, new.controller_epoch) == (4, [1, 4, 5], 6, 2)


def test_elect_preferred():
    new = elect_preferred(st_(2, [2, 1]), [1, 2], live={1, 2}, controller_epoch=3)
    assert (new.leader, new.isr, new.leader_epoch) == (1, [2, 1], 6)
    assert elect_preferred(st_(1, [1, 2]), [1, 2], live={1, 2}, controller_epoch=3) is None  # already
    assert elect_preferred(st_(2, [2]), [1, 2], live={1, 2}, controller_epoch=3) is None     # not in ISR


def test_elect_controlled_shutdown_removes_shutting_down_from_isr():
    new = elect_controlled_shutdown(st_(1, [1, 2, 3]), [1, 2, 3], live={1, 2, 3},
                                    shutting_down={1}, controller_epoch=1)
    assert (new.leader, new.isr) == (2, [2, 3])
    assert elect_controlled_shutdown(st_(1, [1]), [1, 2], live={1, 2}, shutting_down={1},
                                     controller_epoch=1) is None


def test_remove_replica_from_isr_kafka_rules():
    # follower leaves: leader stays, epoch bumped (ZK-era controller rewrite)
    assert remove_replica_from_isr(st_(1, [1, 2]), 2, 3) == st_(1, [1], leader_epoch=6, controller_epoch=3)
    # leader leaves: no leader
    assert remove_replica_from_isr(st_(1, [1, 2]), 1, 3) == st_(NO_LEADER, [2], leader_epoch=6, controller_epoch=3)
    # last ISR member leaves: ISR kept, no leader
    assert remove_replica_from_isr(st_(1, [1]), 1, 3) == st_(NO_LEADER, [1], leader_epoch=6, controller_epoch=3)
    # not in ISR: nothing to write
    assert remove_replica_from_isr(st_(1, [1]), 2, 3) is None


# --- auto leader rebalance ----------------------------------------------------------

def test_imbalance_ratios_and_candidates():
    assignments = {("t", p): ([1, 2] if p < 10 else [2, 1]) for p in range(20)}
    # broker 1 is preferred for p0-9 but leads only p0-7: ratio 0.2 > 0.1
    # broker 2 is preferred for p10-19 and leads p10-18, p19 led by 1: 0.1, not > 0.1
    states = {tp: st_(r[0], [1, 2]) for tp, r in assignments.items()}
    states[("t", 8)] = st_(2, [1, 2])
    states[("t", 9)] = st_(2, [1, 2])
    states[("t", 19)] = st_(1, [1, 2])
    assert imbalance_ratios(assignments, states) == {1: 0.2, 2: 0.1}
    assert preferred_election_candidates(assignments, states, live={1, 2}) == [("t", 8), ("t", 9)]
    # a dead preferred broker gets nothing; exclusions are honoured
    assert preferred_election_candidates(assignments, states, live={2}) == []
    assert preferred_election_candidates(assignments, states, live={1, 2}, excluded={("t", 8)}) == [("t", 9)]
    assert preferred_election_candidates(assignments, states, live={1, 2}, imbalance_percentage=25) == []


# --- properties ----------------------------------------------------------------------

@st.composite
def partitions(draw):
    assignment = draw(st.lists(st.integers(0, 6), min_size=1, max_size=5, unique=True))
    isr = draw(st.lists(st.sampled_from(assignment), min_size=1, unique=True))
    leader = draw(st.sampled_from(isr + [NO_LEADER]))
    live = set(draw(st.lists(st.integers(0, 6), unique=True)))
    return assignment, st_(leader, isr, leader_epoch=draw(st.integers(0, 100))), live


@settings(max_examples=500, deadline=None)
@given(partitions(), st.booleans())
def test_property_offline_election(case, unclean):
    assignment, state, live = case
    new = elect_offline(state, assignment, live, controller_epoch=9, unclean_leader_election_enable=unclean)
    live_isr = [r for r in state.isr if r in live]
    if new is None:
        assert not live_isr
        assert not unclean or not (set(assignment) & live)
        return
    assert new.leader in live and new.leader in new.isr
    assert (new.leader_epoch, new.controller_epoch, new.partition_epoch) == \
        (state.leader_epoch + 1, 9, state.partition_epoch)
    if live_isr:
        assert new.leader in state.isr and new.isr == live_isr
        assert new.leader == next(r for r in assignment if r in live_isr)
    else:
        assert unclean and new.isr == [new.leader]


@settings(max_examples=500, deadline=None)
@given(partitions(), st.lists(st.integers(0, 6), unique=True))
def test_property_controlled_shutdown(case, shutting_down):
    assignment, state, live = case
    new = elect_controlled_shutdown(state, assignment, live, set(shutting_down), controller_epoch=2)
    if new is None:
        assert not [r for r in state.isr if r in live and r not in shutting_down]
        return
    assert new.leader not in shutting_down and new.leader in live and new.leader in new.isr
    assert not set(new.isr) & set(shutting_down)
    assert set(new.isr) <= set(state.isr)


@settings(max_examples=500, deadline=None)
@given(partitions(), st.integers(0, 6))
def test_property_remove_replica_from_isr(case, replica):
    _, state, _ = case
    new = remove_replica_from_isr(state, replica, controller_epoch=3)
    if replica not in state.isr:
        assert new is None
        return
    assert new.isr and new.leader != replica
    assert new.leader_epoch == state.leader_epoch + 1
    assert new.isr == (state.isr if len(state.isr) == 1 else [r for r in state.isr if r != replica])
