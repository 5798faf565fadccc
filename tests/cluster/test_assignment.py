"""Replica assignment: Kafka's own expectations (AdminRackAwareTest,
RackAwareTest.checkReplicaDistribution, the AdminUtils doc examples) plus
hypothesis properties over the whole input space."""
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylog.cluster.assignment import assign_replicas, rack_alternated_broker_list
from pylog.errors import (
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    InvalidReplicationFactorError,
)


def with_racks(rack_map):
    return [(b, r) for b, r in rack_map.items()]


def check_replica_distribution(assignment, rack_map, num_brokers, num_partitions, rf,
                               verify_rack_aware=True, verify_leader_distribution=True,
                               verify_replicas_distribution=True):
    """Kafka's RackAwareTest.checkReplicaDistribution."""
    for replicas in assignment.values():
        assert len(set(replicas)) == len(replicas), "more than one replica on one broker"
    if verify_rack_aware:
        assert [len({rack_map[b] for b in replicas}) for replicas in assignment.values()] == \
            [rf] * num_partitions, "more than one replica of a partition on one rack"
    if verify_leader_distribution:
        leaders = Counter(replicas[0] for replicas in assignment.values())
        assert sorted(leaders.values()) == [num_partitions // num_brokers] * num_brokers
    if verify_replicas_distribution:
        counts = Counter(b for replicas in assignment.values() for b in replicas)
        assert sorted(counts.values()) == [num_partitions * rf // num_brokers] * num_brokers


def test_replica_assignment_kafka_expected():
    brokers = [(b, None) for b in range(5)]
    with pytest.raises(InvalidReplicationFactorError):
        assign_replicas(brokers, 10, 0)
    with pytest.raises(InvalidReplicationFactorError):
        assign_replicas(brokers, 10, 6)
    expected = {
        0: [0, 1, 2], 1: [1, 2, 3], 2: [2, 3, 4], 3: [3, 4, 0], 4: [4, 0, 1],
        5: [0, 2, 3], 6: [1, 3, 4], 7: [2, 4, 0], 8: [3, 0, 1], 9: [4, 1, 2],
    }
    assert assign_replicas(brokers, 10, 3, fixed_start_index=0) == expected
    # plain ids and unsorted input give the same answer (sorted by id first)
    assert assign_replicas([4, 2, 0, 3, 1], 10, 3, fixed_start_index=0) == expected


def test_invalid_partition_count_and_partial_racks():
    with pytest.raises(InvalidPartitionsError):
        assign_replicas([0, 1], 0, 1)
    with pytest.raises(InvalidReplicaAssignmentError):
        assign_replicas([(0, "a"), (1, None), (2, "b")], 3, 2)


def test_rack_alternated_list_and_assignment_kafka_expected():
    rack_map = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}
    assert rack_alternated_broker_list(rack_map) == [0, 3, 1, 5, 4, 2]
    assert rack_alternated_broker_list({b: r for b, r in rack_map.items() if b != 5}) == [0, 3, 1, 4, 2]
    assignment = assign_replicas(with_racks(rack_map), 7, 3, start_partition=0, fixed_start_index=0)
    assert assignment == {0: [0, 3, 1], 1: [3, 1, 5], 2: [1, 5, 4], 3: [5, 4, 2],
                          4: [4, 2, 0], 5: [2, 0, 3], 6: [0, 4, 2]}


def test_rack_alternated_list_kafka_doc():
    rack_map = {0: "rack1", 1: "rack1", 2: "rack1", 3: "rack2", 4: "rack2", 5: "rack2",
                6: "rack3", 7: "rack3", 8: "rack3"}
    assert rack_alternated_broker_list(rack_map) == [0, 3, 6, 1, 4, 7, 2, 5, 8]


def test_kafka_notes_follower_rotation():
    # n=5, start=0, shift=0: p0 -> [0,1,2], p5 -> [0,2,3] (KAFKA-NOTES §4.4)
    a = assign_replicas(range(5), 10, 3, fixed_start_index=0)
    assert a[0] == [0, 1, 2] and a[5] == [0, 2, 3]


def test_start_index_and_shift_independent():
    # start 1, shift 3 with 4 brokers, RF 2: first = (p+1)%4, follower =
    # first + 1 + 3 % 3 = first + 1 (then shift 4 from p4: first + 1 + 1)
    a = assign_replicas(range(4), 6, 2, fixed_start_index=1, start_shift=3)
    assert a == {0: [1, 2], 1: [2, 3], 2: [3, 0], 3: [0, 1], 4: [1, 3], 5: [2, 0]}


RACKS_6 = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack1"}


def test_assignment_with_rack_aware():
    a = assign_replicas(with_racks(RACKS_6), 6, 3, fixed_start_index=2)
    check_replica_distribution(a, RACKS_6, 6, 6, 3)


@pytest.mark.parametrize("seed", range(20))
def test_assignment_with_rack_aware_random_start(seed):
    a = assign_replicas(with_racks(RACKS_6), 6, 3, rng=random.Random(seed))
    check_replica_distribution(a, RACKS_6, 6, 6, 3)


def test_assignment_with_rack_aware_uneven_replicas():
    a = assign_replicas(with_racks(RACKS_6), 13, 3, fixed_start_index=0)
    check_replica_distribution(a, RACKS_6, 6, 13, 3, verify_leader_distribution=False,
                               verify_replicas_distribution=False)


@pytest.mark.parametrize("seed", range(20))
def test_assignment_with_rack_aware_uneven_racks(seed):
    racks = {0: "rack1", 1: "rack1", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack1"}
    a = assign_replicas(with_racks(racks), 12, 3, rng=random.Random(seed))
    check_replica_distribution(a, racks, 6, 12, 3, verify_replicas_distribution=False)


@pytest.mark.parametrize("seed", range(20))
def test_assignment_with_2_replicas_rack_aware(seed):
    a = assign_replicas(with_racks(RACKS_6), 12, 2, rng=random.Random(seed))
    check_replica_distribution(a, RACKS_6, 6, 12, 2)
    a = assign_replicas(with_racks(RACKS_6), 6, 2, rng=random.Random(seed))
    check_replica_distribution(a, RACKS_6, 6, 6, 2)


@pytest.mark.parametrize("seed", range(20))
def test_rack_aware_expansion(seed):
    racks = {6: "rack1", 7: "rack2", 8: "rack2", 9: "rack3", 10: "rack3", 11: "rack1"}
    a = assign_replicas(with_racks(racks), 12, 2, start_partition=12, rng=random.Random(seed))
    assert sorted(a) == list(range(12, 24))
    check_replica_distribution(a, racks, 6, 12, 2)


@pytest.mark.parametrize("seed", range(20))
def test_2_replicas_rack_aware_3_brokers(seed):
    racks = {0: "rack1", 1: "rack2", 4: "rack3"}
    a = assign_replicas(with_racks(racks), 3, 2, rng=random.Random(seed))
    check_replica_distribution(a, racks, 3, 3, 2)


@pytest.mark.parametrize("seed", range(10))
def test_large_number_partitions_assignment(seed):
    racks = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack1",
             6: "rack1", 7: "rack2", 8: "rack2", 9: "rack3", 10: "rack1", 11: "rack3"}
    a = assign_replicas(with_racks(racks), 96, 3, rng=random.Random(seed))
    check_replica_distribution(a, racks, 12, 96, 3)


@pytest.mark.parametrize("seed", range(10))
def test_more_replicas_than_racks(seed):
    racks = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack2"}
    a = assign_replicas(with_racks(racks), 6, 5, rng=random.Random(seed))
    assert [len(r) for r in a.values()] == [5] * 6
    assert all(len({racks[b] for b in r}) == 3 for r in a.values())


@pytest.mark.parametrize("seed", range(10))
def test_less_replicas_than_racks(seed):
    racks = {0: "rack1", 1: "rack2", 2: "rack2", 3: "rack3", 4: "rack3", 5: "rack2"}
    a = assign_replicas(with_racks(racks), 6, 2, rng=random.Random(seed))
    assert [len(r) for r in a.values()] == [2] * 6
    assert all(len({racks[b] for b in r}) == 2 for r in a.values())


@pytest.mark.parametrize("seed", range(10))
def test_single_rack(seed):
    racks = {b: "rack1" for b in range(6)}
    a = assign_replicas(with_racks(racks), 6, 3, rng=random.Random(seed))
    assert [len(r) for r in a.values()] == [3] * 6
    assert Counter(r[0] for r in a.values()) == {b: 1 for b in range(6)}


def test_skip_broker_with_replica_already_assigned():
    racks = {0: "a", 1: "b", 2: "c", 3: "a", 4: "a"}
    a = assign_replicas(with_racks(racks), 6, 4, fixed_start_index=2)
    check_replica_distribution(a, racks, 5, 6, 4, verify_rack_aware=False,
                               verify_leader_distribution=False, verify_replicas_distribution=False)


# --- properties ----------------------------------------------------------------

@st.composite
def clusters(draw, with_racks_=False):
    ids = draw(st.lists(st.integers(0, 50), min_size=1, max_size=9, unique=True))
    if with_racks_:
        racks = draw(st.lists(st.sampled_from("abcd"), min_size=len(ids), max_size=len(ids)))
        brokers = list(zip(ids, racks))
    else:
        brokers = [(b, None) for b in ids]
    rf = draw(st.integers(1, len(ids)))
    partitions = draw(st.integers(1, 40))
    start = draw(st.integers(0, 30))
    seed = draw(st.integers(0, 2**32))
    return brokers, rf, partitions, start, seed


@settings(max_examples=300, deadline=None)
@given(clusters(with_racks_=False))
def test_property_rack_unaware(case):
    brokers, rf, partitions, start, seed = case
    ids = {b for b, _ in brokers}
    n = len(ids)
    a = assign_replicas(brokers, partitions, rf, start_partition=start, rng=random.Random(seed))
    assert sorted(a) == list(range(start, start + partitions))
    for replicas in a.values():
        assert len(replicas) == rf and len(set(replicas)) == rf and set(replicas) <= ids
    leaders = Counter(r[0] for r in a.values())
    counts = [leaders.get(b, 0) for b in ids]
    assert max(counts) - min(counts) <= 1
    if partitions % n == 0:
        assert set(counts) == {partitions // n}
        if start % n == 0:
            replicas = Counter(b for r in a.values() for b in r)
            assert {replicas[b] for b in ids} == {partitions * rf // n}


@settings(max_examples=300, deadline=None)
@given(clusters(with_racks_=True))
def test_property_rack_aware(case):
    brokers, rf, partitions, start, seed = case
    rack_of = dict(brokers)
    num_racks = len(set(rack_of.values()))
    a = assign_replicas(brokers, partitions, rf, start_partition=start, rng=random.Random(seed))
    assert sorted(a) == list(range(start, start + partitions))
    for replicas in a.values():
        assert len(replicas) == rf and len(set(replicas)) == rf and set(replicas) <= set(rack_of)
        racks = {rack_of[b] for b in replicas}
        # distinct racks while RF <= racks, every rack covered otherwise
        assert len(racks) == min(rf, num_racks)
    leaders = Counter(r[0] for r in a.values())
    counts = [leaders.get(b, 0) for b in rack_of]
    assert max(counts) - min(counts) <= 1


@settings(max_examples=100, deadline=None)
@given(clusters(with_racks_=True), st.integers(0, 8))
def test_property_fixed_start_is_deterministic(case, fixed):
    brokers, rf, partitions, start, _ = case
    fixed %= len(brokers)
    a = assign_replicas(brokers, partitions, rf, start, fixed_start_index=fixed, rng=random.Random(1))
    b = assign_replicas(list(reversed(brokers)), partitions, rf, start, fixed_start_index=fixed,
                        rng=random.Random(2))
    assert a == b


def test_broker_info_input():
    from pylog.cluster.metadata_store import BrokerInfo
    infos = [BrokerInfo(broker_id=b, host="h", port=9000 + b, rack=r)
             for b, r in RACKS_6.items()]
    assert assign_replicas(infos, 6, 3, fixed_start_index=2) == \
        assign_replicas(with_racks(RACKS_6), 6, 3, fixed_start_index=2)
