"""Server-side partition assignors of KIP-848 consumer groups, and their regex subscriptions.

The group coordinator computes a consumer group's target assignment itself; these are Kafka's two
built-in assignors (org.apache.kafka.coordinator.group.assignor):

- ``uniform`` (the default): balance first (member sizes differ by at most one, or per topic among
  its subscribers when subscriptions differ), stickiness second: a member keeps what it already
  has up to its quota, so a join or a leave moves only the partitions that must move.
  UniformHomogeneousAssignmentBuilder / UniformHeterogeneousAssignmentBuilder.
- ``range``: per topic, members sorted static first (by instance id) then by member id, member i
  takes the i-th contiguous range; every topic is cut the same way, so topics with equal partition
  counts are co-partitioned. Kafka 4.1+ dropped the 4.0 variant that looked at the current
  assignment: stickiness comes only from static members' instance ids, and so it does here.

The same input yields the same assignment on every broker: members go in id order (as Kafka's
own tests order them), topics that must be ranked in Kafka's signed-UUID order, and where Kafka's
homogeneous builder walks a HashSet or HashMap the walk follows Java's bucket order, which makes
its layouts Kafka's (checked against the expected assignments of Kafka's tests).

Neither assignor looks at racks (Kafka 4.2's do not either): ``rack_id`` is carried for the
coordinator's sake only.

Inputs Kafka never hands its assignors are tolerated rather than trusted: subscribed or assigned
topics missing from ``partitions_per_topic`` (deleted topics) count as unsubscribed and are revoked,
partitions beyond a topic's count are dropped, and a partition found in two members' current
assignments stays with the first member in id order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import re2

__all__ = [
    "ASSIGNOR_NAMES",
    "MemberSubscription",
    "UnknownAssignorError",
    "assign",
    "compile_regex",
]


@dataclass(frozen=True)
class MemberSubscription:
    rack_id: str | None
    instance_id: str | None
    subscribed_topic_ids: frozenset[uuid.UUID]
    # The member's current target assignment (what the previous assignor run gave it).
    assignment: Mapping[uuid.UUID, frozenset[int]]


class UnknownAssignorError(KeyError):
    """The assignor name is none of ASSIGNOR_NAMES (heartbeats answer UNSUPPORTED_ASSIGNOR)."""


Assignment = dict[uuid.UUID, frozenset[int]]

ASSIGNOR_NAMES: tuple[str, ...] = ("uniform", "range")


def assign(
    assignor: str,
    members: Mapping[str, MemberSubscription],
    partitions_per_topic: Mapping[uuid.UUID, int],
) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
    """The new target assignment: every member id mapped to its partitions per topic id.

    Topics a member gets nothing of are absent from its map; every member is present.
    """
    try:
        run = _ASSIGNORS[assignor]
    except KeyError:
        raise UnknownAssignorError(assignor) from None
    if not members:
        return {}
    spec = _GroupSpec(members, partitions_per_topic)
    result = run(spec)
    return {member_id: result.get(member_id, {}) for member_id in spec.member_ids}


def compile_regex(pattern: str):
    """A subscription regex compiled with RE2 syntax, as Kafka's RE2/J reads it.

    Kafka matches a regex against whole topic names: use ``.fullmatch(name)``. Raises ValueError
    for a pattern RE2 refuses (heartbeats answer INVALID_REGULAR_EXPRESSION).
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(f"invalid regular expression {pattern!r}: {detail}") from None


def _re2_options() -> re2.Options:
    options = re2.Options()
    # RE2 logs every refused pattern to stderr; the caller reports it through ValueError instead.
    options.log_errors = False
    return options


_RE2_OPTIONS = _re2_options()


def _java_uuid_order(topic_id: uuid.UUID) -> tuple[int, int]:
    """Kafka's Uuid.compareTo: both 64-bit halves compared as signed longs."""
    value = topic_id.int
    msb, lsb = value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF
    return (msb - (1 << 64) if msb >> 63 else msb, lsb - (1 << 64) if lsb >> 63 else lsb)


# Where Kafka's homogeneous builder walks a HashSet or HashMap (the subscribed topics, a
# member's topics, a topic's partitions), the walk decides which partitions are dealt first and
# which a member over its quota gives up. Java's order is that of the hash table's buckets:
# (hash ^ hash >>> 16) & (table size - 1), the table at least 16 and grown while more than 3/4
# full. Walking the same way gives Kafka's own layouts (its tests' expected assignments); keys
# sharing a bucket, whose order is insertion order there, go in Kafka's sorted order here.
def _java_table_size(count: int) -> int:
    size = 16
    while count > size * 3 // 4:
        size *= 2
    return size


def _java_bucket(hash32: int, table_size: int) -> int:
    return (hash32 ^ (hash32 >> 16)) & (table_size - 1)


def _java_uuid_hash(topic_id: uuid.UUID) -> int:
    """Kafka's Uuid.hashCode as an unsigned 32-bit value."""
    x = (topic_id.int >> 64) ^ (topic_id.int & 0xFFFF_FFFF_FFFF_FFFF)
    return ((x >> 32) ^ x) & 0xFFFF_FFFF


def _java_topic_walk(topic_ids) -> list[uuid.UUID]:
    size = _java_table_size(len(topic_ids))
    return sorted(topic_ids, key=lambda t: (_java_bucket(_java_uuid_hash(t), size), _java_uuid_order(t)))


def _java_partition_walk(partitions) -> list[int]:
    size = _java_table_size(len(partitions))
    return sorted(partitions, key=lambda p: (_java_bucket(p, size), p))


class _GroupSpec:
    """The assignors' input cleaned of what Kafka's GroupSpec can never contain (see the module doc)."""

    def __init__(self, members: Mapping[str, MemberSubscription], partitions_per_topic: Mapping[uuid.UUID, int]):
        self.partitions = {t: n for t, n in partitions_per_topic.items() if n > 0}
        order = {t: _java_uuid_order(t) for t in self.partitions}
        self.topic_order = order.__getitem__
        self.member_ids = sorted(members)
        self.instance_ids = {m: members[m].instance_id for m in self.member_ids}
        self.subscriptions: dict[str, frozenset[uuid.UUID]] = {}
        self.assignments: dict[str, dict[uuid.UUID, frozenset[int]]] = {}
        claimed: set[tuple[uuid.UUID, int]] = set()
        # Members mostly share a handful of subscriptions: each distinct one is filtered once
        # (UUID hashing is Python code, and large groups have members x topics of them).
        existing: dict[frozenset, frozenset] = {}
        for member_id in self.member_ids:
            member = members[member_id]
            subscribed = frozenset(member.subscribed_topic_ids)
            kept_topics = existing.get(subscribed)
            if kept_topics is None:
                kept_topics = existing[subscribed] = frozenset(t for t in subscribed if t in self.partitions)
            self.subscriptions[member_id] = kept_topics
            current: dict[uuid.UUID, frozenset[int]] = {}
            for topic_id in sorted((t for t in member.assignment if t in order), key=self.topic_order):
                count = self.partitions[topic_id]
                kept = frozenset(
                    p for p in member.assignment[topic_id] if 0 <= p < count and (topic_id, p) not in claimed
                )
                if kept:
                    claimed.update((topic_id, p) for p in kept)
                    current[topic_id] = kept
            self.assignments[member_id] = current
        self.homogeneous = len(set(self.subscriptions.values())) <= 1


def _uniform(spec: _GroupSpec) -> dict[str, Assignment]:
    if spec.homogeneous:
        return _uniform_homogeneous(spec)
    return _UniformHeterogeneous(spec).build()


def _uniform_homogeneous(spec: _GroupSpec) -> dict[str, Assignment]:
    """UniformHomogeneousAssignmentBuilder: quotas of P/M, the first P%M members able to use it get one more."""
    subscribed = spec.subscriptions[spec.member_ids[0]]
    if not subscribed:
        return {}
    topics = _java_topic_walk(subscribed)
    owned = {(t, p) for a in spec.assignments.values() for t, ps in a.items() for p in ps}
    unassigned = [(t, p) for t in topics for p in range(spec.partitions[t]) if (t, p) not in owned]
    total = sum(spec.partitions[t] for t in topics)
    member_count = len(spec.member_ids)
    minimum_quota, extra = divmod(total, member_count)

    target: dict[str, dict[uuid.UUID, set[int]]] = {}
    unfilled: list[tuple[str, int]] = []
    for index, member_id in enumerate(spec.member_ids):
        quota = minimum_quota
        has_extra = extra > 0
        if has_extra:
            quota += 1
        kept: dict[uuid.UUID, set[int]] = {}
        current = spec.assignments[member_id]
        for topic_id in _java_topic_walk(current):
            if topic_id not in subscribed:
                continue
            ordered = _java_partition_walk(current[topic_id])
            keep, revoke = ordered[:quota], ordered[quota:]
            quota -= len(keep)
            if keep:
                kept[topic_id] = set(keep)
            unassigned.extend((topic_id, p) for p in revoke)
        # A member that already fell short of the larger quota leaves the extra partition to a
        # later member, unless the remaining members are too few to absorb all the extras.
        if quota > 0 and has_extra and member_count - index > extra:
            quota -= 1
            has_extra = False
        if quota > 0:
            unfilled.append((member_id, quota))
        if has_extra:
            extra -= 1
        target[member_id] = kept

    next_index = 0
    for member_id, quota in unfilled:
        for topic_id, partition in unassigned[next_index : next_index + quota]:
            target[member_id].setdefault(topic_id, set()).add(partition)
        next_index += quota
    if next_index < len(unassigned):
        raise AssertionError("uniform assignor left partitions unassigned")
    return {m: {t: frozenset(ps) for t, ps in a.items()} for m, a in target.items()}


class _Balancer:
    """UniformHeterogeneousAssignmentBuilder.MemberAssignmentBalancer.

    Over one topic's subscribers sorted by load, it hands out the least loaded member to receive a
    partition and the most loaded one to give one up, as two ranges of equally loaded members that
    grow towards each other, so successive picks spread evenly instead of piling onto one member.
    """

    def __init__(self, sizes: list[int]):
        self.sizes = sizes
        self.sorted_members: list[int] = []
        self.least_end = 0
        self.least_count = -1
        self.next_least = 0
        self.most_start = 0
        self.most_end = 0
        self.most_count = 1
        self.next_most = -1

    def initialize(self, members: list[int]) -> int:
        sizes = self.sizes
        self.sorted_members = sorted(members, key=lambda m: (sizes[m], m))
        first, last = self.sorted_members[0], self.sorted_members[-1]
        self.least_end = 0
        self.least_count = sizes[first] - 1
        self.next_least = 0
        self.most_start = len(self.sorted_members)
        self.most_end = len(self.sorted_members)
        self.most_count = sizes[last] + 1
        self.next_most = len(self.sorted_members) - 1
        return sizes[last] - sizes[first]

    def next_least_loaded(self) -> int:
        members, sizes = self.sorted_members, self.sizes
        if self.next_least >= self.least_end:
            self.least_count += 1
            while self.least_end < len(members) and sizes[members[self.least_end]] == self.least_count:
                self.least_end += 1
            self.next_least = 0
        member = members[self.next_least]
        self.next_least += 1
        return member

    def next_most_loaded(self) -> int:
        members, sizes = self.sorted_members, self.sizes
        if self.next_most < self.most_start:
            if self.most_end <= self.most_start and self.most_start > 0:
                # Exclusions emptied the range: restart its level from the next member down so
                # the range expands instead of handing out a member outside it.
                self.most_count = sizes[members[self.most_start - 1]]
            else:
                self.most_count -= 1
            while self.most_start > 0 and sizes[members[self.most_start - 1]] == self.most_count:
                self.most_start -= 1
            self.next_most = self.most_end - 1
        if self.next_most < 0:
            return -1
        member = members[self.next_most]
        self.next_most -= 1
        return member

    def exclude_most_loaded(self) -> None:
        """Drop the member last returned by next_most_loaded: it has nothing of this topic to give."""
        members = self.sorted_members
        position = self.next_most + 1
        members[position], members[self.most_end - 1] = members[self.most_end - 1], members[position]
        self.most_end -= 1

    def is_balanced(self) -> bool:
        return self.most_count - self.least_count <= 1


class _UniformHeterogeneous:
    """UniformHeterogeneousAssignmentBuilder: keep what is still subscribed, deal the rest to the
    least loaded subscribers topic by topic, then move partitions from the most to the least loaded
    subscribers of each topic until no move improves the balance."""

    # Kafka's bound: overlapping, non-identical subscriptions converge slowly, each pass roughly
    # halving the imbalance.
    MAX_ITERATION_COUNT = 16

    def __init__(self, spec: _GroupSpec):
        self.spec = spec
        self.member_ids = spec.member_ids
        self.subscribers: dict[uuid.UUID, list[int]] = {}
        for index, member_id in enumerate(self.member_ids):
            for topic_id in spec.subscriptions[member_id]:
                self.subscribers.setdefault(topic_id, []).append(index)
        self.sizes = [0] * len(self.member_ids)
        self.owners = {t: [-1] * spec.partitions[t] for t in self.subscribers}
        self.target: dict[str, dict[uuid.UUID, set[int]]] = {}

    def build(self) -> dict[str, Assignment]:
        if not self.subscribers:
            return {}
        self._revoke_unsubscribed()
        self._assign_unassigned()
        self._balance()
        return {m: {t: frozenset(ps) for t, ps in a.items() if ps} for m, a in self.target.items()}

    def _topic_order(self, topic_id: uuid.UUID):
        # Partitions per subscriber descending, then fewer subscribers first, then topic id.
        count, subscribers = self.spec.partitions[topic_id], len(self.subscribers[topic_id])
        return (-count / subscribers, subscribers, self.spec.topic_order(topic_id))

    def _revoke_unsubscribed(self) -> None:
        for index, member_id in enumerate(self.member_ids):
            subscribed = self.spec.subscriptions[member_id]
            kept: dict[uuid.UUID, set[int]] = {}
            for topic_id, partitions in self.spec.assignments[member_id].items():
                if topic_id not in subscribed:
                    continue
                kept[topic_id] = set(partitions)
                self.sizes[index] += len(partitions)
                owners = self.owners[topic_id]
                for partition in partitions:
                    owners[partition] = index
            self.target[member_id] = kept

    def _assign_unassigned(self) -> None:
        unassigned = {}
        for topic_id, owners in self.owners.items():
            free = [p for p, owner in enumerate(owners) if owner == -1]
            if free:
                unassigned[topic_id] = free
        balancer = _Balancer(self.sizes)
        for topic_id in sorted(unassigned, key=self._topic_order):
            balancer.initialize(self.subscribers[topic_id])
            for partition in unassigned[topic_id]:
                self._move(topic_id, partition, balancer.next_least_loaded())

    def _balance(self) -> None:
        topics = sorted((t for t, s in self.subscribers.items() if len(s) >= 2), key=self._topic_order)
        if not topics:
            return
        balancer = _Balancer(self.sizes)
        last_rebalanced = -1
        for _ in range(self.MAX_ITERATION_COUNT):
            for index, topic_id in enumerate(topics):
                if index == last_rebalanced:
                    # A full pass over the topics moved nothing.
                    return
                moved = self._balance_topic(topic_id, balancer)
                if moved > 0 or last_rebalanced == -1:
                    last_rebalanced = index

    def _balance_topic(self, topic_id: uuid.UUID, balancer: _Balancer) -> int:
        if balancer.initialize(self.subscribers[topic_id]) <= 1:
            return 0
        owners = self.owners[topic_id]
        # Partitions grouped by owner so each member's partitions form one slice of the list,
        # taken from its end: constant time and deterministic.
        partitions = sorted(range(len(owners)), key=lambda p: (owners[p], p))
        start: dict[int, int] = {}
        end: dict[int, int] = {}
        for position, partition in enumerate(partitions):
            start.setdefault(owners[partition], position)
            end[owners[partition]] = position + 1

        moved = 0
        while not balancer.is_balanced():
            while True:
                giver = balancer.next_most_loaded()
                if giver == -1:
                    return moved
                if end.get(giver, 0) - start.get(giver, 0) <= 0:
                    balancer.exclude_most_loaded()
                    continue
                break
            end[giver] -= 1
            partition = partitions[end[giver]]
            receiver = balancer.next_least_loaded()
            if balancer.is_balanced():
                break
            self._move(topic_id, partition, receiver)
            moved += 1
        return moved

    def _move(self, topic_id: uuid.UUID, partition: int, member_index: int) -> None:
        owners = self.owners[topic_id]
        previous = owners[partition]
        if previous != -1:
            self.target[self.member_ids[previous]][topic_id].discard(partition)
            self.sizes[previous] -= 1
        self.target[self.member_ids[member_index]].setdefault(topic_id, set()).add(partition)
        owners[partition] = member_index
        self.sizes[member_index] += 1


def _range(spec: _GroupSpec) -> dict[str, Assignment]:
    """RangeAssignor (Kafka 4.1+): contiguous ranges per topic in static-first member order."""

    def order(member_id: str):
        instance_id = spec.instance_ids[member_id]
        return (0, instance_id, "") if instance_id is not None else (1, "", member_id)

    members = sorted(spec.member_ids, key=order)
    # Each topic is cut on its own among its subscribers, in that one member order.
    subscribers: dict[uuid.UUID, list[str]] = {}
    by_subscription: dict[frozenset, list[str]] = {}
    for member_id in members:
        by_subscription.setdefault(spec.subscriptions[member_id], []).append(member_id)
    position = {m: i for i, m in enumerate(members)}
    for topics, group in by_subscription.items():
        for topic_id in topics:
            subscribers.setdefault(topic_id, []).extend(group)
    result: dict[str, Assignment] = {member_id: {} for member_id in members}
    for topic_id, subscribed in subscribers.items():
        if len(by_subscription) > 1:
            subscribed.sort(key=position.__getitem__)
        count = spec.partitions[topic_id]
        quota, extra = divmod(count, len(subscribed))
        start = 0
        for index, member_id in enumerate(subscribed):
            stop = min(start + quota + (1 if index < extra else 0), count)
            if start >= stop:
                break
            result[member_id][topic_id] = frozenset(range(start, stop))
            start = stop
    return result


_ASSIGNORS: dict[str, Callable[[_GroupSpec], dict[str, Assignment]]] = {
    "uniform": _uniform,
    "range": _range,
}
assert tuple(_ASSIGNORS) == ASSIGNOR_NAMES
