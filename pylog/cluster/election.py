"""Partition leader election: the controller's decisions, as pure functions
(Kafka's PartitionLeaderElectionAlgorithms and the leaderFor* / ISR-removal
steps of its Partition/ReplicaStateMachine; KAFKA-NOTES §4.3).

Two layers:
- ``*_leader(...)`` pick a broker id (or None) from an assignment, an ISR and
  the live brokers, exactly as Kafka's four algorithms do;
- ``elect_*(state, ...)`` turn the current partition state into the state the
  controller must write (by compare-and-set against ``state.partition_epoch``),
  or None when no leader can be elected (the caller then writes nothing and
  the partition stays as it is, as Kafka's failed elections do).

Every returned state has leader_epoch = old + 1 (Kafka's newLeaderAndIsr
bumps it on any controller-made change, KAFKA-NOTES §4.2), the given
controller_epoch, and the OLD partition_epoch: that is the version the CAS
write expects; the store assigns the next one.

Offline partition with no electable replica (ISR all dead, unclean election
off): Kafka's election fails and writes nothing; the dead replicas then go
through removeReplicasFromIsr (``remove_replica_from_isr`` here), which sets
leader = -1 when the removed replica led and keeps the ISR as it is when only
one member is left (the last ISR member is remembered so that a later clean
election can pick it when it comes back). So an offline partition ends with
leader -1, leader_epoch bumped, and ISR = [last member standing].

States are duck-typed: anything with leader, leader_epoch, isr,
controller_epoch (and partition_epoch) that ``dataclasses.replace`` or a
namedtuple's ``_replace`` can copy, i.e. pylog.cluster.metadata_store's
PartitionState. Pure functions; thread-safe.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence

__all__ = [
    "NO_LEADER",
    "LEADER_IMBALANCE_PER_BROKER_PERCENTAGE",
    "offline_partition_leader",
    "reassign_partition_leader",
    "preferred_replica_leader",
    "controlled_shutdown_leader",
    "elect_offline",
    "elect_reassign",
    "elect_preferred",
    "elect_controlled_shutdown",
    "remove_replica_from_isr",
    "imbalance_ratios",
    "preferred_election_candidates",
]

NO_LEADER = -1  # Kafka's LeaderAndIsr.NoLeader
LEADER_IMBALANCE_PER_BROKER_PERCENTAGE = 10  # leader.imbalance.per.broker.percentage


# --- the four algorithms (broker id or None) ---------------------------------

def offline_partition_leader(assignment: Sequence[int], isr: Collection[int], live: Collection[int],
                             unclean_leader_election_enable: bool = False) -> int | None:
    """First replica in assignment order that is alive and in the ISR; failing
    that, with unclean election on, the first alive replica."""
    for replica in assignment:
        if replica in live and replica in isr:
            return replica
    if unclean_leader_election_enable:
        for replica in assignment:
            if replica in live:
                return replica
    return None


def reassign_partition_leader(reassignment: Sequence[int], isr: Collection[int],
                              live: Collection[int]) -> int | None:
    """First replica of the new assignment that is alive and in the ISR."""
    for replica in reassignment:
        if replica in live and replica in isr:
            return replica
    return None


def preferred_replica_leader(assignment: Sequence[int], isr: Collection[int],
                             live: Collection[int]) -> int | None:
    """The first replica of the assignment if it is alive and in the ISR."""
    if assignment and assignment[0] in live and assignment[0] in isr:
        return assignment[0]
    return None


def controlled_shutdown_leader(assignment: Sequence[int], isr: Collection[int], live: Collection[int],
                               shutting_down: Collection[int]) -> int | None:
    """First replica in assignment order alive, in the ISR and not shutting down."""
    for replica in assignment:
        if replica in live and replica in isr and replica not in shutting_down:
            return replica
    return None


# --- new partition states -----------------------------------------------------

def _with(state, **changes):
    if dataclasses.is_dataclass(state):
        return dataclasses.replace(state, **changes)
    return state._replace(**changes)


def _new_leader_and_isr(state, leader: int, isr: list[int], controller_epoch: int):
    return _with(state, leader=leader, leader_epoch=state.leader_epoch + 1, isr=list(isr),
                 controller_epoch=controller_epoch)


def elect_offline(state, assignment: Sequence[int], live: Collection[int], controller_epoch: int,
                  unclean_leader_election_enable: bool = False):
    """New state after the leader went away (or for a partition with none):
    clean leader -> ISR = the live members of the old ISR (ISR order kept);
    unclean leader -> ISR = [leader]. None when nobody is electable."""
    leader = offline_partition_leader(assignment, state.isr, live, unclean_leader_election_enable)
    if leader is None:
        return None
    if leader in state.isr:
        isr = [r for r in state.isr if r in live]
    else:
        isr = [leader]
    return _new_leader_and_isr(state, leader, isr, controller_epoch)


def elect_reassign(state, reassignment: Sequence[int], live: Collection[int], controller_epoch: int):
    """New leader from the new replica set; the ISR is kept (Kafka's newLeader)."""
    leader = reassign_partition_leader(reassignment, state.isr, live)
    if leader is None:
        return None
    return _new_leader_and_isr(state, leader, list(state.isr), controller_epoch)


def elect_preferred(state, assignment: Sequence[int], live: Collection[int], controller_epoch: int):
    """Move leadership to the preferred replica; ISR kept. None when it is not
    electable or already leads (nothing to write)."""
    leader = preferred_replica_leader(assignment, state.isr, live)
    if leader is None or leader == state.leader:
        return None
    return _new_leader_and_isr(state, leader, list(state.isr), controller_epoch)


def elect_controlled_shutdown(state, assignment: Sequence[int], live: Collection[int],
                              shutting_down: Collection[int], controller_epoch: int):
    """Move leadership off the shutting-down brokers, which also leave the ISR.
    None when no live ISR replica outside them exists (the partition stays
    led by the broker and is reported as remaining)."""
    leader = controlled_shutdown_leader(assignment, state.isr, live, shutting_down)
    if leader is None:
        return None
    isr = [r for r in state.isr if r not in shutting_down]
    return _new_leader_and_isr(state, leader, isr, controller_epoch)


def remove_replica_from_isr(state, replica: int, controller_epoch: int):
    """Kafka's removeReplicasFromIsr for one replica going offline (or a
    follower shutting down): leader -1 if it led, ISR without it unless it is
    the only member left. None when it is not in the ISR (nothing to write)."""
    if replica not in state.isr:
        return None
    leader = NO_LEADER if state.leader == replica else state.leader
    isr = list(state.isr) if len(state.isr) == 1 else [r for r in state.isr if r != replica]
    return _new_leader_and_isr(state, leader, isr, controller_epoch)


# --- auto leader rebalance ----------------------------------------------------

def imbalance_ratios(assignments: Mapping[object, Sequence[int]],
                     states: Mapping[object, object]) -> dict[int, float]:
    """{preferred broker: partitions it is preferred for but does not lead /
    partitions it is preferred for}. assignments and states are keyed alike
    (e.g. (topic, partition)); a partition without a state is not counted as
    misplaced (Kafka: leadershipInfo.exists(...))."""
    preferred: dict[int, int] = {}
    misplaced: dict[int, int] = {}
    for tp, replicas in assignments.items():
        if not replicas:
            continue
        broker = replicas[0]
        preferred[broker] = preferred.get(broker, 0) + 1
        state = states.get(tp)
        if state is not None and state.leader != broker:
            misplaced[broker] = misplaced.get(broker, 0) + 1
    return {b: misplaced.get(b, 0) / total for b, total in preferred.items()}


def preferred_election_candidates(assignments: Mapping[object, Sequence[int]],
                                  states: Mapping[object, object], live: Iterable[int],
                                  imbalance_percentage: int = LEADER_IMBALANCE_PER_BROKER_PERCENTAGE,
                                  excluded: Collection[object] = ()) -> list:
    """Partitions for a preferred election (auto.leader.rebalance): for every
    live preferred broker whose imbalance ratio exceeds the percentage, its
    partitions that it does not lead (minus ``excluded``, e.g. topics being
    deleted). Sorted for a deterministic order. Whether the preferred replica
    is in the ISR is elect_preferred's decision, not this one's."""
    live = set(live)
    ratios = imbalance_ratios(assignments, states)
    chosen = []
    for tp, replicas in assignments.items():
        if not replicas or tp in excluded:
            continue
        broker = replicas[0]
        state = states.get(tp)
        if (broker in live and ratios.get(broker, 0.0) > imbalance_percentage / 100
                and state is not None and state.leader != broker):
            chosen.append(tp)
    return sorted(chosen)
