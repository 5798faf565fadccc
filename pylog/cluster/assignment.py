"""Replica assignment for new topics and new partitions: Kafka's
AdminUtils.assignReplicasToBrokers (KAFKA-NOTES §4.4), same answers for the
same inputs.

Goals (Kafka's): spread replicas evenly over brokers; spread the followers of
the partitions led by one broker over the other brokers; when every broker
has a rack, put the replicas of one partition on different racks.

Rack-unaware, n brokers sorted by id:
  first replica of partition p = brokers[(p + start_index) % n]  (round robin)
  follower j (0 .. RF-2)      = brokers[(first + 1 + (shift + j) % (n-1)) % n]
  shift += 1 each time p wraps past a multiple of n (p > 0 and p % n == 0),
  so the follower sets rotate instead of repeating every n partitions.

Rack-aware: the same walk over a "rack-alternated" broker list (racks sorted
by name, brokers by id within a rack, one per rack in turn) with the shift
multiplied by the number of racks; a candidate follower is skipped while its
rack already holds a replica and some rack holds none, or while it already
holds one and some broker holds none.

start_index and the shift are two independent random draws in [0, n) unless
fixed (fixed_start_index fixes both, as in Kafka; start_shift, our addition,
fixes the shift alone). Pure functions; thread-safe.
"""
from __future__ import annotations

import random
from collections.abc import Iterable

from ..errors import InvalidPartitionsError, InvalidReplicaAssignmentError, InvalidReplicationFactorError

__all__ = ["assign_replicas", "rack_alternated_broker_list"]


def _id_and_rack(broker) -> tuple[int, str | None]:
    # BrokerInfo (pylog.cluster.metadata_store) has .broker_id/.rack; tests
    # and tools may pass plain (id, rack) pairs or bare ids.
    if isinstance(broker, int):
        return broker, None
    if isinstance(broker, tuple):
        return int(broker[0]), broker[1]
    return int(broker.broker_id), broker.rack


def _replica_index(first_replica_index: int, shift: int, j: int, n: int) -> int:
    return (first_replica_index + 1 + (shift + j) % (n - 1)) % n


def rack_alternated_broker_list(broker_racks: dict[int, str]) -> list[int]:
    """Brokers alternated by rack: racks sorted by name, brokers sorted by id
    within a rack, one broker per rack in turn (rack1: 0,1,2 rack2: 3,4,5
    rack3: 6,7,8 -> 0,3,6,1,4,7,2,5,8)."""
    by_rack: dict[str, list[int]] = {}
    for broker_id, rack in broker_racks.items():
        by_rack.setdefault(rack, []).append(broker_id)
    queues = [sorted(by_rack[rack]) for rack in sorted(by_rack)]
    result: list[int] = []
    depth = 0
    while len(result) < len(broker_racks):
        for queue in queues:
            if depth < len(queue):
                result.append(queue[depth])
        depth += 1
    return result


def assign_replicas(brokers: Iterable, num_partitions: int, replication_factor: int,
                    start_partition: int = 0, fixed_start_index: int = -1,
                    start_shift: int = -1, rng: random.Random | None = None) -> dict[int, list[int]]:
    """{partition id: [replica broker ids, preferred leader first]} for
    partitions start_partition .. start_partition + num_partitions - 1.

    brokers: BrokerInfo objects, (id, rack) pairs or ids, in any order (they
    are sorted by id, as Kafka's callers do). Raises InvalidPartitionsError
    (num_partitions <= 0), InvalidReplicationFactorError (RF <= 0 or RF >
    brokers) and InvalidReplicaAssignmentError when only some brokers have a
    rack (Kafka's AdminOperationException)."""
    pairs = sorted((_id_and_rack(b) for b in brokers), key=lambda p: p[0])
    if num_partitions <= 0:
        raise InvalidPartitionsError("Number of partitions must be larger than 0.")
    if replication_factor <= 0:
        raise InvalidReplicationFactorError("Replication factor must be larger than 0.")
    if replication_factor > len(pairs):
        raise InvalidReplicationFactorError(
            f"Replication factor: {replication_factor} larger than available brokers: {len(pairs)}.")
    if len({b for b, _ in pairs}) != len(pairs):
        raise InvalidReplicaAssignmentError(f"duplicate broker ids in {[b for b, _ in pairs]}")
    racks = {b: r for b, r in pairs if r is not None}
    if racks and len(racks) != len(pairs):
        raise InvalidReplicaAssignmentError(
            "Not all brokers have rack information for replica rack aware assignment.")
    rng = rng if rng is not None else random.Random()
    n = len(pairs)
    # Kafka draws start index then shift, each in [0, n); a fixed start index
    # fixes both.
    start_index = fixed_start_index if fixed_start_index >= 0 else rng.randrange(n)
    if start_shift >= 0:
        shift = start_shift
    else:
        shift = fixed_start_index if fixed_start_index >= 0 else rng.randrange(n)
    partition = max(0, start_partition)
    if not racks:
        return _rack_unaware([b for b, _ in pairs], num_partitions, replication_factor,
                             start_index, shift, partition)
    return _rack_aware(racks, num_partitions, replication_factor, start_index, shift, partition)


def _rack_unaware(broker_ids: list[int], num_partitions: int, replication_factor: int,
                  start_index: int, shift: int, partition: int) -> dict[int, list[int]]:
    n = len(broker_ids)
    result: dict[int, list[int]] = {}
    for _ in range(num_partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start_index) % n
        replicas = [broker_ids[first]]
        for j in range(replication_factor - 1):
            replicas.append(broker_ids[_replica_index(first, shift, j, n)])
        result[partition] = replicas
        partition += 1
    return result


def _rack_aware(broker_racks: dict[int, str], num_partitions: int, replication_factor: int,
                start_index: int, shift: int, partition: int) -> dict[int, list[int]]:
    arranged = rack_alternated_broker_list(broker_racks)
    n = len(arranged)
    num_racks = len(set(broker_racks.values()))
    result: dict[int, list[int]] = {}
    for _ in range(num_partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start_index) % n
        leader = arranged[first]
        replicas = [leader]
        racks_with_replicas = {broker_racks[leader]}
        brokers_with_replicas = {leader}
        k = 0
        for _j in range(replication_factor - 1):
            while True:
                broker = arranged[_replica_index(first, shift * num_racks, k, n)]
                rack = broker_racks[broker]
                k += 1
                # Skip a broker whose rack already has a replica while another
                # rack has none, or that already has one while another broker
                # has none (terminates: RF <= n guarantees a free broker).
                if ((rack not in racks_with_replicas or len(racks_with_replicas) == num_racks)
                        and (broker not in brokers_with_replicas or len(brokers_with_replicas) == n)):
                    replicas.append(broker)
                    racks_with_replicas.add(rack)
                    brokers_with_replicas.add(broker)
                    break
        result[partition] = replicas
        partition += 1
    return result
