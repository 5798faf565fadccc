"""Client-side partition assignors of the classic consumer-group protocol.

The group leader runs one of these in the JoinGroup/SyncGroup round: every
member sends subscription_metadata() bytes as its JoinGroup protocol
metadata; the leader decodes them all, assign()s, and sends each member its
ConsumerProtocolAssignment bytes in SyncGroup. The broker never looks inside
(KAFKA-NOTES §5.3, §5.4).

The algorithms are ports of the Java client's assignors (apache/kafka
1eb7644, org.apache.kafka.clients.consumer.RangeAssignor,
RoundRobinAssignor, StickyAssignor, CooperativeStickyAssignor and
internals.AbstractStickyAssignor), so a pylog leader and a Java or
librdkafka leader give the same kind of answer. Deliberate differences:

- Java walks HashMaps, so its choices between equals depend on hashing; we
  walk member ids in sorted order, which makes every result deterministic.
- Rack-aware assignment (KIP-881) is not implemented: rack ids are encoded
  and decoded but do not influence the result.
- Owned partitions of topics the leader does not know, or with an index the
  topic no longer has, are ignored instead of being handed out.

Wire format (int16 version prefix + non-flexible struct, KAFKA-NOTES §5.4):

    Subscription v0: topics [string], user_data nullable bytes
                 v1: + owned_partitions [topic string, partitions [int32]]
                 v2: + generation_id int32        v3: + rack_id nullable string
    Assignment v0-3: assigned_partitions [topic string, partitions [int32]],
                     user_data nullable bytes

We write Subscription v1 (v3 only when a rack id is given) and, as Java
does, Assignment v3 (v0-v3 are byte-identical after the version). Readers
take any version: a higher one is read as its known prefix, as Java does.

user_data written per assignor, as Java's assignors do for a v1 subscription:
- "sticky": StickyAssignorUserData v1 = previous_assignment [topic string,
  partitions [int32]], generation int32 (null before the first assignment).
  Java's eager StickyAssignor reads ownership only from here, because an
  eager member has revoked everything (so sends no owned partitions) by the
  time it rejoins.
- "cooperative-sticky": int32 generation (CooperativeStickyAssignor's
  user data v0), the only place a v1 subscription can carry it.
- "range", "roundrobin": null.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from ..protocol.errors import ProtocolError
from ..protocol.messages import ConsumerProtocolAssignment, ConsumerProtocolSubscription
from ..structs import TopicPartition

__all__ = [
    "ASSIGNOR_NAMES", "Assignor", "CooperativeStickyAssignor", "RangeAssignor",
    "RoundRobinAssignor", "StickyAssignor", "Subscription", "decode_assignment",
    "decode_subscription", "encode_assignment", "get_assignor",
]

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")

DEFAULT_GENERATION = -1
SUBSCRIPTION_VERSION = 1       # owned partitions; what librdkafka and Java all read
RACK_SUBSCRIPTION_VERSION = 3  # the first version with rack_id
ASSIGNMENT_VERSION = 3         # what Java's ConsumerProtocol writes


# --- consumer protocol bytes -----------------------------------------------------

class Subscription(NamedTuple):
    """One member's decoded JoinGroup metadata. generation is the v2+ field
    (-1 when absent); an assignor may find a generation in user_data
    instead (see the module docstring)."""

    topics: list[str]
    owned_partitions: list[TopicPartition]
    generation: int = DEFAULT_GENERATION
    user_data: bytes | None = None
    rack_id: str | None = None


def _by_topic(partitions) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for tp in sorted(set(partitions)):
        grouped.setdefault(tp.topic, []).append(tp.partition)
    return grouped


def _read_version(data, what: str) -> tuple[memoryview, int]:
    mv = memoryview(data)
    if len(mv) < 2:
        raise ProtocolError(f"consumer protocol {what} of {len(mv)} byte(s)")
    version = _INT16.unpack_from(mv, 0)[0]
    if version < 0:
        raise ProtocolError(f"consumer protocol {what} version {version}")
    return mv, version


def encode_subscription(topics, owned=(), generation: int = DEFAULT_GENERATION,
                        user_data: bytes | None = None, rack_id: str | None = None,
                        version: int | None = None) -> bytes:
    """int16 version + ConsumerProtocolSubscription. version defaults to 1,
    or 3 when rack_id is given (no lower version can carry it)."""
    if version is None:
        version = SUBSCRIPTION_VERSION if rack_id is None else RACK_SUBSCRIPTION_VERSION
    sub = ConsumerProtocolSubscription(
        topics=sorted(set(topics)),
        user_data=user_data,
        owned_partitions=[ConsumerProtocolSubscription.TopicPartition(t, ps)
                          for t, ps in _by_topic(owned).items()],
        generation_id=generation,
        rack_id=rack_id)
    return _INT16.pack(version) + ConsumerProtocolSubscription.encode(sub, version)


def decode_subscription(data) -> Subscription:
    """Reads JoinGroup member metadata of any version (a version above 3 as
    its v3 prefix, bytes after the known fields ignored, as Java does).
    Raises ProtocolError for bytes that are not a subscription."""
    mv, version = _read_version(data, "subscription")
    hi = ConsumerProtocolSubscription.VALID_VERSIONS[1]
    sub, _ = ConsumerProtocolSubscription.decode_from(mv, 2, min(version, hi))
    owned = [TopicPartition(tp.topic, p) for tp in sub.owned_partitions for p in tp.partitions]
    user_data = None if sub.user_data is None else bytes(sub.user_data)
    return Subscription(list(sub.topics), owned, sub.generation_id, user_data, sub.rack_id)


def encode_assignment(partitions, user_data: bytes | None = None,
                      version: int = ASSIGNMENT_VERSION) -> bytes:
    """int16 version + ConsumerProtocolAssignment; topics and partitions in
    sorted order."""
    a = ConsumerProtocolAssignment(
        assigned_partitions=[ConsumerProtocolAssignment.TopicPartition(t, ps)
                             for t, ps in _by_topic(partitions).items()],
        user_data=user_data)
    return _INT16.pack(version) + ConsumerProtocolAssignment.encode(a, version)


def decode_assignment(data) -> list[TopicPartition]:
    """The partitions in SyncGroup assignment bytes of any version, in wire
    order; [] for empty bytes (a member the leader gave nothing, or a
    SyncGroup error)."""
    if data is None or len(data) == 0:
        return []
    mv, version = _read_version(data, "assignment")
    hi = ConsumerProtocolAssignment.VALID_VERSIONS[1]
    a, _ = ConsumerProtocolAssignment.decode_from(mv, 2, min(version, hi))
    return [TopicPartition(tp.topic, p) for tp in a.assigned_partitions for p in tp.partitions]


# --- the assignor interface ------------------------------------------------------

class Assignor:
    """A partition assignor: a name for JoinGroup, the bytes a member sends,
    and the leader's assign().

    Invariants: assign() is a pure function of its arguments (deterministic,
    members walked in sorted order); every member in the input gets an entry
    in the output, possibly empty; a partition goes only to a member
    subscribed to its topic, and to at most one member. Instances hold no
    state, so one may be shared by any number of threads and consumers.
    """

    name: str = ""
    protocol: str = "EAGER"

    def __repr__(self):
        return f"{type(self).__name__}()"

    def subscription_user_data(self, owned, generation: int) -> bytes | None:
        return None

    def subscription_metadata(self, topics: list[str], owned: list[TopicPartition] = (),
                              generation: int = DEFAULT_GENERATION,
                              rack_id: str | None = None) -> bytes:
        """This member's JoinGroup protocol metadata. owned: the partitions
        it holds now (cooperative), or held at its last assignment (the
        eager "sticky" assignor, which sends them in user_data because an
        eager member has revoked everything before it rejoins); generation:
        the generation of that assignment, -1 if none."""
        owned = list(owned)
        return encode_subscription(topics, owned, generation,
                                   self.subscription_user_data(owned, generation), rack_id)

    def assign(self, partitions_per_topic: dict[str, int], subscriptions: dict[str, bytes],
               group_instance_ids: dict[str, str | None] | None = None) -> dict[str, bytes]:
        """member_id -> SyncGroup assignment bytes. partitions_per_topic:
        partition counts of (at least) the subscribed topics; subscriptions:
        member_id -> the metadata bytes it sent in JoinGroup (as the leader's
        JoinGroup response lists them); group_instance_ids: the members'
        static ids, which order members in range and roundrobin as Java's
        MemberInfo does."""
        decoded = {m: decode_subscription(data) for m, data in subscriptions.items()}
        assignment = self.assign_partitions(partitions_per_topic, decoded, group_instance_ids)
        return {m: encode_assignment(tps) for m, tps in assignment.items()}

    def assign_partitions(self, partitions_per_topic: dict[str, int],
                          subscriptions: dict[str, Subscription],
                          group_instance_ids: dict[str, str | None] | None = None,
                          ) -> dict[str, list[TopicPartition]]:
        """assign() on decoded subscriptions: member_id -> sorted partitions."""
        subscribed = {t for s in subscriptions.values() for t in s.topics}
        counts = {t: n for t, n in partitions_per_topic.items() if t in subscribed and n > 0}
        result = self._assign(counts, subscriptions, group_instance_ids or {})
        return {m: sorted(result.get(m, ())) for m in sorted(subscriptions)}

    def _assign(self, counts, subscriptions, instance_ids) -> dict[str, list[TopicPartition]]:
        raise NotImplementedError


def _member_order(members, instance_ids):
    """Java's MemberInfo order: static members first, by group instance id,
    then dynamic members by member id."""
    def key(m):
        iid = instance_ids.get(m)
        return (0, iid, m) if iid else (1, m, m)
    return sorted(members, key=key)


class RangeAssignor(Assignor):
    """Per topic, its members in order each get a contiguous range of
    len(partitions) // len(members) partitions, the first
    len(partitions) % len(members) members one more. Co-partitioned topics
    therefore land together. Stateless; thread-safe."""

    name = "range"

    def _assign(self, counts, subscriptions, instance_ids):
        out = {m: [] for m in subscriptions}
        for topic in sorted(counts):
            members = _member_order([m for m, s in subscriptions.items() if topic in s.topics],
                                    instance_ids)
            if not members:
                continue
            n = counts[topic]
            per, extra = divmod(n, len(members))
            start = 0
            for i, m in enumerate(members):
                size = per + (1 if i < extra else 0)
                out[m].extend(TopicPartition(topic, p) for p in range(start, start + size))
                start += size
        return out


class RoundRobinAssignor(Assignor):
    """All subscribed (topic, partition)s in sorted order are dealt to the
    members in order, one each, a member skipped for a topic it does not
    subscribe to; the dealer's position carries over between topics (Java's
    CircularIterator). Stateless; thread-safe."""

    name = "roundrobin"

    def _assign(self, counts, subscriptions, instance_ids):
        out = {m: [] for m in subscriptions}
        members = _member_order(subscriptions, instance_ids)
        if not members:
            return out
        topic_sets = {m: set(subscriptions[m].topics) for m in members}
        i = 0
        for topic in sorted(counts):
            for p in range(counts[topic]):
                while topic not in topic_sets[members[i]]:
                    i = (i + 1) % len(members)
                out[members[i]].append(TopicPartition(topic, p))
                i = (i + 1) % len(members)
        return out


# --- sticky ------------------------------------------------------------------------

class _MemberData(NamedTuple):
    partitions: list[TopicPartition]
    generation: int | None  # None: the member sent none (Java's Optional.empty())


def _encode_sticky_user_data(partitions, generation: int) -> bytes:
    out = bytearray()
    grouped = _by_topic(partitions)
    out += _INT32.pack(len(grouped))
    for topic, ps in grouped.items():
        raw = topic.encode()
        out += _INT16.pack(len(raw)) + raw + _INT32.pack(len(ps))
        for p in ps:
            out += _INT32.pack(p)
    out += _INT32.pack(generation)
    return bytes(out)


def _decode_sticky_user_data(data: bytes) -> _MemberData:
    """StickyAssignorUserData v1, else v0 (no generation); unreadable bytes
    mean no previous assignment at the default generation, as in Java."""
    try:
        pos = 0
        (n,) = _INT32.unpack_from(data, pos)
        pos += 4
        partitions = []
        for _ in range(n):
            (tlen,) = _INT16.unpack_from(data, pos)
            pos += 2
            if tlen < 0 or pos + tlen > len(data):
                raise ValueError("bad topic length")
            topic = bytes(data[pos:pos + tlen]).decode()
            pos += tlen
            (pn,) = _INT32.unpack_from(data, pos)
            pos += 4
            if pn < 0 or pos + 4 * pn > len(data):
                raise ValueError("bad partition count")
            partitions.extend(TopicPartition(topic, p)
                              for p in struct.unpack_from(f">{pn}i", data, pos))
            pos += 4 * pn
        if pos == len(data):
            return _MemberData(partitions, None)  # v0
        (generation,) = _INT32.unpack_from(data, pos)
        return _MemberData(partitions, generation)
    except (struct.error, ValueError, UnicodeDecodeError):
        return _MemberData([], DEFAULT_GENERATION)


class _PartitionMovements:
    """Where partitions moved during one general sticky assignment, so a
    partition about to move back along a (dst -> src) edge of its topic is
    swapped for one that already moved that way (keeps Java's stickiness:
    no two members trading partitions of one topic)."""

    def __init__(self):
        self.by_topic: dict[str, dict[tuple[str, str], set[TopicPartition]]] = {}
        self.moves: dict[TopicPartition, tuple[str, str]] = {}

    def _remove(self, tp):
        pair = self.moves.pop(tp)
        topic_moves = self.by_topic[tp.topic]
        topic_moves[pair].discard(tp)
        if not topic_moves[pair]:
            del topic_moves[pair]
        if not topic_moves:
            del self.by_topic[tp.topic]
        return pair

    def _add(self, tp, pair):
        self.moves[tp] = pair
        self.by_topic.setdefault(tp.topic, {}).setdefault(pair, set()).add(tp)

    def move(self, tp, old, new):
        if tp in self.moves:
            src, _ = self._remove(tp)
            if src != new:
                self._add(tp, (src, new))
        else:
            self._add(tp, (old, new))

    def actual_partition_to_move(self, tp, old, new):
        topic_moves = self.by_topic.get(tp.topic)
        if not topic_moves:
            return tp
        if tp in self.moves:
            old = self.moves[tp][0]
        reverse = topic_moves.get((new, old))
        return min(reverse) if reverse else tp


class _StickyBase(Assignor):
    """Shared sticky algorithm (Java's AbstractStickyAssignor without racks):
    the result is as balanced as the subscriptions allow and keeps each
    member's previously owned partitions where balance permits. When all
    members subscribe to the same topics (the "constrained" case) member
    sizes differ by at most one. Stateless; thread-safe."""

    def _member_data(self, sub: Subscription) -> _MemberData:
        raise NotImplementedError

    def _assign(self, counts, subscriptions, instance_ids):
        assignment, _ = self._sticky(counts, subscriptions)
        return assignment

    def _sticky(self, counts, subscriptions):
        """(assignment, partitions_transferring_ownership or None). The
        second is only computed in the constrained case, as in Java."""
        members = sorted(subscriptions)
        data = {m: self._member_data(subscriptions[m]) for m in members}
        owned, multiple_owners, all_equal, max_generation = _resolve_owned(
            counts, subscriptions, data, members)
        if all_equal:
            return _constrained(counts, owned, multiple_owners)
        return _general(counts, subscriptions, data, owned, max_generation), None


def _valid(tp, counts):
    return tp.topic in counts and 0 <= tp.partition < counts[tp.topic]


def _resolve_owned(counts, subscriptions, data, members):
    """Java's allSubscriptionsEqual: each member's claimed partitions that
    still exist; of two claims in different generations the higher wins, two
    claims in one generation void the partition for both. Both sides'
    generations come from the assignor's member data (Java reads the other
    claimant's from the v2+ field only, which a v1 member lacks)."""
    owned: dict[str, list[TopicPartition]] = {}
    multiple_owners: set[TopicPartition] = set()
    owner_of: dict[TopicPartition, str] = {}
    first_topics = None
    all_equal = True
    max_generation = DEFAULT_GENERATION
    for m in members:
        topics = set(subscriptions[m].topics)
        if first_topics is None:
            first_topics = topics
        elif topics != first_topics:
            all_equal = False
        gen = data[m].generation
        gen = DEFAULT_GENERATION if gen is None else gen
        max_generation = max(max_generation, gen)
        mine: list[TopicPartition] = []
        owned[m] = mine
        for tp in dict.fromkeys(data[m].partitions):
            if not _valid(tp, counts):
                continue
            other = owner_of.get(tp)
            if other is None:
                mine.append(tp)
                owner_of[tp] = m
                continue
            other_gen = data[other].generation
            other_gen = DEFAULT_GENERATION if other_gen is None else other_gen
            if gen == other_gen:
                multiple_owners.add(tp)
                if tp in owned[other]:
                    owned[other].remove(tp)
                owner_of[tp] = m
            elif gen > other_gen:
                mine.append(tp)
                if tp in owned[other]:
                    owned[other].remove(tp)
                owner_of[tp] = m
    return owned, multiple_owners, all_equal, max_generation


def _all_partitions(counts, topics):
    return [TopicPartition(t, p) for t in topics for p in range(counts[t])]


def _constrained(counts, owned, multiple_owners):
    """Java's ConstrainedAssignmentBuilder (identical subscriptions): keep up
    to a quota of owned partitions per member, then deal the rest
    round-robin to members under quota."""
    members = sorted(owned)
    total = sum(counts.values())
    n = len(members)
    min_quota, expected_over = divmod(total, n)
    max_quota = min_quota + (1 if expected_over else 0)
    current_over = 0
    assignment = {m: [] for m in members}
    assigned: set[TopicPartition] = set()
    maybe_revoked: dict[TopicPartition, str] = {}
    transferring: dict[TopicPartition, str] = {}
    under_min: list[str] = []
    exactly_min: list[str] = []

    for m in members:
        mine = sorted((tp for tp in owned[m] if tp not in multiple_owners),
                      key=lambda tp: (tp.partition, tp.topic))
        if len(mine) < min_quota:
            assignment[m].extend(mine)
            assigned.update(mine)
            under_min.append(m)
        elif len(mine) >= max_quota and current_over < expected_over:
            current_over += 1
            if current_over == expected_over:
                exactly_min.clear()
            assignment[m].extend(mine[:max_quota])
            assigned.update(mine[:max_quota])
            for tp in mine[max_quota:]:
                maybe_revoked[tp] = m
        else:
            assignment[m].extend(mine[:min_quota])
            assigned.update(mine[:min_quota])
            for tp in mine[min_quota:]:
                maybe_revoked[tp] = m
            if current_over < expected_over:
                exactly_min.append(m)

    unassigned = [tp for tp in _all_partitions(counts, sorted(counts)) if tp not in assigned]
    under_min.sort()
    exactly_min.sort()

    # Java's assignRoundRobin: an iterator over the under-minQuota members,
    # restarted when it runs out; members that reach minQuota leave it for
    # the exactly-minQuota queue, which is drawn from once it is empty.
    idx = 0
    for tp in unassigned:
        if idx < len(under_min):
            m = under_min[idx]
            idx += 1
        elif not under_min and not exactly_min:
            raise AssertionError(f"sticky assignor: no member left for {tp}")
        elif not under_min:
            m = exactly_min.pop(0)
        else:
            idx = 0
            m = under_min[idx]
            idx += 1
        assignment[m].append(tp)
        if (tp in maybe_revoked and maybe_revoked[tp] != m) or tp in multiple_owners:
            transferring[tp] = m
        size = len(assignment[m])
        if size == min_quota:
            idx -= 1
            under_min.pop(idx)
            exactly_min.append(m)
        elif size == max_quota:
            current_over += 1
    return assignment, transferring


def _general(counts, subscriptions, data, owned, max_generation):
    """Java's GeneralAssignmentBuilder (differing subscriptions): keep owned
    partitions still subscribed, give each unowned partition to the least
    loaded member that can take it, then move partitions from members with
    two or more above another eligible member until balanced, preferring to
    return a partition to its owner of an earlier generation."""
    members = sorted(subscriptions)
    consumers_of: dict[str, list[str]] = {t: [] for t in counts}
    topics_of: dict[str, list[str]] = {}
    for m in members:
        mine = [t for t in dict.fromkeys(subscriptions[m].topics) if t in counts]
        topics_of[m] = mine
        for t in mine:
            consumers_of[t].append(m)
    topic_sets = {m: set(ts) for m, ts in topics_of.items()}
    current = {m: list(owned.get(m, ())) for m in members}
    owner: dict[TopicPartition, str] = {tp: m for m, tps in current.items() for tp in tps}
    sorted_topics = sorted(counts, key=lambda t: (len(consumers_of[t]), t))
    sorted_all = _all_partitions(counts, sorted_topics)
    total = sum(counts.values())

    prev: dict[TopicPartition, tuple[str, int]] = {}

    def update_prev(partitions, m, generation):
        for tp in partitions:
            if tp not in prev or generation > prev[tp][1]:
                prev[tp] = (m, generation)

    for m in members:
        gen = data[m].generation
        if gen is not None and gen < max_generation:
            update_prev(data[m].partitions, m, gen)
        elif gen is None and max_generation > DEFAULT_GENERATION:
            update_prev(data[m].partitions, m, DEFAULT_GENERATION)

    revocation_required = False
    assigned: set[TopicPartition] = set()
    for m in members:
        keep = []
        for tp in current[m]:
            if tp.topic not in topic_sets[m]:
                revocation_required = True
                del owner[tp]
            else:
                keep.append(tp)
                assigned.add(tp)
        current[m] = keep
    unassigned = [tp for tp in sorted_all if tp not in assigned]

    def least_loaded(topic, among):
        eligible = [m for m in consumers_of[topic] if m in among]
        return min(eligible, key=lambda m: (len(current[m]), m)) if eligible else None

    def max_size(m):
        if len(topics_of[m]) == len(counts):
            return total
        return sum(counts[t] for t in topics_of[m])

    initializing = all(not tps for tps in current.values())
    for tp in unassigned:
        m = least_loaded(tp.topic, current)
        if m is not None:
            current[m].append(tp)
            owner[tp] = m

    def reassignable_topic(t):
        return len(consumers_of[t]) >= 2

    fixed = {tp for tp in sorted_all if not reassignable_topic(tp.topic)}
    sorted_all = [tp for tp in sorted_all if tp not in fixed]
    unassigned = [tp for tp in unassigned if tp not in fixed]

    def can_participate(m):
        if len(current[m]) < max_size(m):
            return True
        return any(reassignable_topic(tp.topic) for tp in current[m])

    fixed_assignments = {m: current.pop(m) for m in members if not can_participate(m)}
    pre_balance = {m: list(tps) for m, tps in current.items()}
    pre_balance_owner = dict(owner)
    movements = _PartitionMovements()

    def is_balanced():
        if not current:
            return True
        sizes = [len(tps) for tps in current.values()]
        if min(sizes) >= max(sizes) - 1:
            return True
        for m in sorted(current, key=lambda m: (len(current[m]), m)):
            size = len(current[m])
            if size == max_size(m):
                continue
            mine = set(current[m])
            for t in topics_of[m]:
                for p in range(counts[t]):
                    tp = TopicPartition(t, p)
                    if tp in mine:
                        continue
                    other = owner.get(tp)
                    if other in current and size + 1 < len(current[other]):
                        return False
        return True

    def process_move(tp, new):
        old = owner[tp]
        movements.move(tp, old, new)
        current[old].remove(tp)
        current[new].append(tp)
        owner[tp] = new

    def reassign(tp, new):
        process_move(movements.actual_partition_to_move(tp, owner[tp], new), new)

    def perform_reassignments(partitions):
        performed = False
        while True:
            modified = False
            for tp in partitions:
                if is_balanced():
                    break
                m = owner.get(tp)
                if m not in current:
                    continue
                back = prev.get(tp)
                if (back is not None and back[0] in current and tp.topic in topic_sets[back[0]]
                        and len(current[m]) > len(current[back[0]]) + 1):
                    reassign(tp, back[0])
                    performed = modified = True
                    continue
                for other in consumers_of[tp.topic]:
                    if other in current and len(current[m]) > len(current[other]) + 1:
                        reassign(tp, least_loaded(tp.topic, current))
                        performed = modified = True
                        break
            if not modified:
                return performed

    if not revocation_required:
        perform_reassignments(unassigned)
    performed = perform_reassignments(sorted_all)
    if not initializing and performed and _balance_score(current) >= _balance_score(pre_balance):
        current = pre_balance
        owner = pre_balance_owner
    current.update(fixed_assignments)
    return current


def _balance_score(assignment) -> int:
    sizes = sorted(len(tps) for tps in assignment.values())
    # sum of |a - b| over all pairs, in one pass over the sorted sizes
    return sum(s * (2 * i - len(sizes) + 1) for i, s in enumerate(sizes))


class StickyAssignor(_StickyBase):
    """The eager sticky assignor ("sticky"): ownership travels in user_data
    (StickyAssignorUserData), since an eager member has revoked everything
    before it rejoins. Members without user_data are read from their v1+
    owned partitions and generation instead (Java reads nothing then).
    Stateless; thread-safe."""

    name = "sticky"

    def subscription_user_data(self, owned, generation):
        if not owned and generation < 0:
            return None  # never assigned: Java sends null user data
        return _encode_sticky_user_data(owned, generation)

    def _member_data(self, sub):
        if sub.user_data:
            return _decode_sticky_user_data(sub.user_data)
        gen = None if sub.generation == DEFAULT_GENERATION else sub.generation
        return _MemberData(list(sub.owned_partitions), gen)


class CooperativeStickyAssignor(_StickyBase):
    """The sticky assignment under KIP-429's incremental protocol
    ("cooperative-sticky"): a partition the sticky result moves from one
    member to another is left out of its new owner's assignment this round;
    the old owner revokes it, rejoins, and the next rebalance hands it over.
    Stateless; thread-safe."""

    name = "cooperative-sticky"
    protocol = "COOPERATIVE"

    def subscription_user_data(self, owned, generation):
        return _INT32.pack(generation)

    def _member_data(self, sub):
        if sub.generation != DEFAULT_GENERATION:
            return _MemberData(list(sub.owned_partitions), sub.generation)
        if sub.user_data is None:
            gen = None
        elif len(sub.user_data) >= 4:
            gen = _INT32.unpack_from(sub.user_data, 0)[0]
        else:
            gen = DEFAULT_GENERATION
        return _MemberData(list(sub.owned_partitions), gen)

    def _assign(self, counts, subscriptions, instance_ids):
        assignment, transferring = self._sticky(counts, subscriptions)
        if transferring is None:
            transferring = _transferring(subscriptions, assignment)
        for tp, m in transferring.items():
            assignment[m].remove(tp)
        return assignment


def _transferring(subscriptions, assignment) -> dict[TopicPartition, str]:
    """Partitions given to a member that did not own them while another
    member that did own them loses them."""
    added: dict[TopicPartition, str] = {}
    revoked: set[TopicPartition] = set()
    for m, tps in assignment.items():
        owned = set(subscriptions[m].owned_partitions)
        given = set(tps)
        added.update((tp, m) for tp in tps if tp not in owned)
        revoked.update(owned - given)
    return {tp: m for tp, m in added.items() if tp in revoked}


# --- lookup --------------------------------------------------------------------------

_ASSIGNORS: dict[str, Assignor] = {
    a.name: a for a in (RangeAssignor(), RoundRobinAssignor(), StickyAssignor(),
                        CooperativeStickyAssignor())
}
ASSIGNOR_NAMES = tuple(_ASSIGNORS)


def get_assignor(name: str) -> Assignor:
    """The assignor registered under its JoinGroup protocol name."""
    try:
        return _ASSIGNORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown partition assignor {name!r}; valid names: "
                         f"{', '.join(ASSIGNOR_NAMES)}") from None
