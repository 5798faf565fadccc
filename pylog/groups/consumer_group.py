"""KIP-848 consumer groups (`group.protocol=consumer`; KAFKA-NOTES §10): the
group and member state, ConsumerGroupHeartbeat, reconciliation, the records
in __consumer_offsets, and the member checks of OffsetCommit/OffsetFetch.

Kafka's group-coordinator module is the model (GroupMetadataManager
.consumerGroupHeartbeat, ConsumerGroup, ConsumerGroupMember,
CurrentAssignmentBuilder). The server computes a *target assignment* with
one of its assignors (consumer_assignors.py) whenever the group epoch moves
past the assignment epoch; each member then moves towards its target one
heartbeat at a time:

- kept = owned ∩ target stays (never paused); revoke = owned − target;
  add = target − owned, minus partitions another member still holds.
- While a member still reports a partition it must revoke, it stays at its
  epoch in UNREVOKED_PARTITIONS and is given only `kept` (revocation is
  signalled by omission); once it reports them gone it moves to the target
  epoch with kept ∪ add, STABLE, or UNRELEASED_PARTITIONS when some of its
  target is still held elsewhere (handed over on a later heartbeat, once
  freed).

The group epoch moves when a member joins, leaves, is fenced or changes its
subscription, and when the topics the group subscribes to change (partition
counts, creation or deletion, a regex matching another set): the hash of
that metadata is kept in the ConsumerGroupMetadata record, so a change while
the coordinator was down is noticed after a reload too.

Everything runs as events of the coordinator runtime of the group's
__consumer_offsets partition (GroupCoordinator.runtime): state changes apply
at once, answers wait for the records' high watermark, and a write whose
append fails reverts the group to what it was before the event
(GroupSnapshot); one appended but not replicated in time keeps its change.
Sessions and rebalance (revocation) deadlines are runtime timers per member. Regexes
are resolved off the heartbeat, as Kafka does: an executor thread matches
them against a copy of the topic names, and the result comes back as an
event. Classic-protocol members of a consumer group and the conversions
between the two kinds of group: classic_members.py. Threads: the event
loop's only, but for that pure regex matching.
"""
from __future__ import annotations

import asyncio
import base64
import enum
import itertools
import logging
import time
import uuid

from ..coordinator.runtime import NotCoordinatorError
from ..errors import PylogError
from ..protocol.coordinator_records import (
    ConsumerGroupCurrentMemberAssignmentValue as CurrentValue,
    ConsumerGroupMemberMetadataValue as MemberValue,
    ConsumerGroupMetadataValue as MetadataValue,
    ConsumerGroupRegularExpressionValue as RegexValue,
    ConsumerGroupTargetAssignmentMemberValue as TargetValue,
    ConsumerGroupTargetAssignmentMetadataValue as TargetMetaValue,
)
from ..protocol.error_codes import Errors
from . import classic_members, consumer_assignors
from . import offsets_topic as ot
from .metadata_hash import TopicHashes

log = logging.getLogger("pylog.groups")

# Member epochs with a meaning (Kafka's ConsumerGroupHeartbeatRequest constants).
JOIN_EPOCH, LEAVE_EPOCH, LEAVE_STATIC_EPOCH = 0, -1, -2

PROTOCOL_TYPE = "consumer"

# Regex resolutions of a group are at least this far apart, and at most
# this old while the group subscribes to any (Kafka's
# REGEX_BATCH_REFRESH_MIN_INTERVAL_MS and the default of its internal
# group.consumer.regex.refresh.interval.ms).
REGEX_REFRESH_MIN_MS = 10_000
REGEX_REFRESH_MAX_MS = 10 * 60_000


class MemberState(enum.IntEnum):
    """ConsumerGroupCurrentMemberAssignmentValue.State (Kafka's MemberState)."""
    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127


class ConsumerGroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


Assignment = dict   # {topic_id (uuid.UUID): frozenset[int]}


def _now_ms() -> int:
    return int(time.time() * 1000)


class ConsumerMember:
    """One member: what it subscribes to (the type-5 record) and where its
    reconciliation stands (the type-8 record)."""

    __slots__ = ("member_id", "instance_id", "rack_id", "client_id", "client_host", "subscribed_topic_names",
                 "subscribed_topic_regex", "rebalance_timeout_ms", "server_assignor", "member_epoch",
                 "previous_member_epoch", "state", "assigned", "pending_revocation", "epochs", "classic")

    def __init__(self, member_id: str):
        self.member_id = member_id
        self.instance_id = None
        self.rack_id = None
        self.client_id = ""
        self.client_host = ""
        self.subscribed_topic_names: list[str] = []
        self.subscribed_topic_regex = None
        self.rebalance_timeout_ms = -1
        self.server_assignor = None
        self.member_epoch = 0
        self.previous_member_epoch = -1
        self.state = MemberState.STABLE
        self.assigned: Assignment = {}
        self.pending_revocation: Assignment = {}
        # {(topic_id, partition): the member epoch at which it was assigned}
        # for every partition assigned or pending revocation (KIP-1251): a
        # commit with an older member epoch is still good for a partition
        # the member held since then.
        self.epochs: dict = {}
        # A member speaking the classic protocol in a consumer group (online
        # migration): its classic_members.ClassicState, else None.
        self.classic = None

    @property
    def member_type(self) -> int:
        """ConsumerGroupDescribe v1 MemberType (KIP-1099): 0 classic, 1 consumer."""
        return 1 if self.classic is None else 0

    def metadata_value(self) -> MemberValue:
        return MemberValue(instance_id=self.instance_id, rack_id=self.rack_id, client_id=self.client_id,
                           client_host=self.client_host, subscribed_topic_names=list(self.subscribed_topic_names),
                           subscribed_topic_regex=self.subscribed_topic_regex,
                           rebalance_timeout_ms=self.rebalance_timeout_ms, server_assignor=self.server_assignor,
                           classic_member_metadata=None if self.classic is None else self.classic.record())

    def apply_metadata(self, v: MemberValue):
        self.instance_id, self.rack_id = v.instance_id, v.rack_id
        self.client_id, self.client_host = v.client_id, v.client_host
        self.subscribed_topic_names = list(v.subscribed_topic_names)
        self.subscribed_topic_regex = v.subscribed_topic_regex
        self.rebalance_timeout_ms, self.server_assignor = v.rebalance_timeout_ms, v.server_assignor
        self.classic = classic_members.ClassicState.from_record(v.classic_member_metadata)

    def current_value(self) -> CurrentValue:
        return CurrentValue(member_epoch=self.member_epoch, previous_member_epoch=self.previous_member_epoch,
                            state=int(self.state), assigned_partitions=self._epoch_list(self.assigned),
                            partitions_pending_revocation=self._epoch_list(self.pending_revocation))

    def _epoch_list(self, assignment: Assignment) -> list:
        out = _tp_list(CurrentValue.TopicPartitions, assignment)
        for tp in out:
            tp.assignment_epochs = [self.assignment_epoch(tp.topic_id, p) for p in tp.partitions]
        return out

    def assignment_epoch(self, topic_id, partition):
        """The epoch at which the member got the partition, None when it
        neither holds it nor is revoking it (Kafka's assignmentEpoch, then
        pendingRevocationEpoch)."""
        if partition in self.assigned.get(topic_id, ()) or partition in self.pending_revocation.get(topic_id, ()):
            return self.epochs.get((topic_id, partition), max(self.member_epoch, 0))
        return None

    def apply_current(self, v: CurrentValue):
        self.member_epoch, self.previous_member_epoch = v.member_epoch, v.previous_member_epoch
        try:
            self.state = MemberState(v.state)
        except ValueError:
            self.state = MemberState.UNKNOWN
        self.assigned = _tp_dict(v.assigned_partitions)
        self.pending_revocation = _tp_dict(v.partitions_pending_revocation)
        # A record without epochs (older writer), or with a count that does
        # not match, gives every partition the member's epoch, as Kafka's
        # Utils.assignmentFromTopicPartitions does.
        default = max(v.member_epoch, 0)
        self.epochs = {}
        for tp in list(v.assigned_partitions or ()) + list(v.partitions_pending_revocation or ()):
            epochs = tp.assignment_epochs
            if epochs is None or len(epochs) != len(tp.partitions):
                epochs = [default] * len(tp.partitions)
            self.epochs.update(((tp.topic_id, p), e) for p, e in zip(tp.partitions, epochs))

    def current_key(self):
        return (self.member_epoch, self.previous_member_epoch, self.state, self.assigned, self.pending_revocation,
                self.epochs)

    def copy(self) -> "ConsumerMember":
        # Its values are replaced, never mutated in place: a shallow copy is a snapshot.
        out = ConsumerMember.__new__(ConsumerMember)
        for name in self.__slots__:
            setattr(out, name, getattr(self, name))
        return out


class ConsumerGroup:
    """A consumer group. Shares GroupCoordinator.groups with the classic
    groups (one id, one group), so it carries the attributes the classic code
    reads of any group: offsets, members, static, pending, protocol_type."""

    protocol_type = PROTOCOL_TYPE

    def __init__(self, group_id: str):
        self.group_id = group_id
        self.group_epoch = 0
        self.metadata_hash = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerMember] = {}
        self.target: dict[str, Assignment] = {}    # member id -> target assignment
        self.static: dict[str, str] = {}           # instance id -> member id
        self.offsets: dict = {}                    # (topic, partition) -> OffsetAndMetadata
        self.regexes: dict[str, list[str]] = {}    # subscription regex -> the topics it resolved to
        # The asynchronous regex resolution (ConsumerGroups._maybe_refresh_regexes):
        # when the last one ran (wall ms, as the type-16 records' timestamps), the
        # topic-image version it saw (-1: none since this load), whether one runs.
        self.regex_refreshed_ms = 0
        self.regex_image_version = -1
        self.regex_refreshing = False
        self.reverted_at = -1   # GroupSnapshot's stamp of the last revert
        self.pending: dict = {}                    # (classic KIP-394 ids: never any here)
        self.dead = False
        self.empty_since = _now_ms()

    @property
    def state(self) -> ConsumerGroupState:
        if self.dead:
            return ConsumerGroupState.DEAD
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for m in self.members.values():
            if m.state is not MemberState.STABLE or m.member_epoch != self.assignment_epoch:
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    @property
    def generation_id(self) -> int:
        return self.group_epoch

    def owners(self, but: str) -> dict:
        """{(topic_id, partition): member id} of the partitions members other
        than `but` hold (assigned or still revoking): Kafka's partition epochs."""
        out = {}
        for mid, m in self.members.items():
            if mid == but:
                continue
            for part in (m.assigned, m.pending_revocation):
                for tid, ps in part.items():
                    for p in ps:
                        out[(tid, p)] = mid
        return out

    def preferred_assignor(self, names: tuple[str, ...]) -> str:
        """The assignor most members name, else the broker's default (first)."""
        votes: dict[str, int] = {}
        for m in self.members.values():
            if m.server_assignor:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if not votes:
            return names[0]
        return max(votes, key=lambda n: (votes[n], -names.index(n) if n in names else 0))


_STAMPS = itertools.count()

_GROUP_FIELDS = ("group_epoch", "metadata_hash", "assignment_epoch", "empty_since", "regex_refreshed_ms",
                 "regex_image_version")


class GroupSnapshot:
    """A consumer group as it was before an event changed it, to go back to
    when the event's records are not written (Kafka reverts its timeline
    to the last committed offset): the group's fields and maps, copies of
    the members the event may change in place, and which group object the
    id named (a conversion replaces it). Events change members by replacing
    their values, so shallow copies are snapshots.

    Only an append that fails reverts (within its event: nothing else ran
    since). A revert applies only when no later revert undid the group
    already."""

    def __init__(self, c, gid: str, member_ids=()):
        self.gid = gid
        self.group = g = c.groups.get(gid)
        self.fields = self.maps = None
        self.copies = []
        if isinstance(g, ConsumerGroup):
            self.fields = tuple(getattr(g, f) for f in _GROUP_FIELDS)
            self.maps = (dict(g.members), dict(g.target), dict(g.static), dict(g.regexes))
            self.copies = [(g.members[mid], g.members[mid].copy()) for mid in member_ids if mid in g.members]
        self.after = self.after_group = None

    def done(self, c):
        """The event applied its change: what a revert must find to undo it."""
        self.after = next(_STAMPS)
        self.after_group = c.groups.get(self.gid)

    def restore(self, groups: "ConsumerGroups", *, refused: bool = False) -> bool:
        """Back to the snapshot. refused: the event itself was refused (an
        error answer, nothing appended): it undoes only its own changes,
        leaves no revert stamp (the state it goes back to holds every
        earlier event's) and is not a failed write (no INFO line)."""
        c = groups.c
        if self.after is None:
            self.done(c)
        now = c.groups.get(self.gid)
        if now is not self.after_group or self.after <= getattr(now, "reverted_at", -1):
            return False
        before = dict(now.members) if isinstance(now, ConsumerGroup) else {}
        if self.group is None:
            c.groups.pop(self.gid, None)
        else:
            c.groups[self.gid] = self.group
        g = self.group
        if isinstance(g, ConsumerGroup):
            for f, v in zip(_GROUP_FIELDS, self.fields):
                setattr(g, f, v)
            g.members, g.target, g.static, g.regexes = (dict(x) for x in self.maps)
            for obj, copy in self.copies:
                for name in ConsumerMember.__slots__:
                    setattr(obj, name, getattr(copy, name))
            if not refused:
                g.reverted_at = next(_STAMPS)
        index = c.partition_for(self.gid)
        for mid in before:
            if not isinstance(g, ConsumerGroup) or mid not in g.members:
                for kind in ("cg-session", "cg-rebalance", "cg-classic"):
                    c.runtime.cancel_timer(index, (kind, self.gid, mid))
        if isinstance(g, ConsumerGroup):
            for mid, m in g.members.items():
                if mid not in before or before[mid] is not m:
                    groups.arm_member(g, m)
        elif g is not None:
            c._arm(g)   # a classic group put back (a conversion undone)
        if not refused:
            log.info("group %s: write failed, group state reverted", self.gid)
        return True


def _resolve_regexes(regexes, names) -> dict:
    """{regex: sorted names it matches} (an invalid one matches nothing).
    Runs in an executor thread: pure computation over copies."""
    out = {}
    for rx_text in regexes:
        try:
            rx = consumer_assignors.compile_regex(rx_text)
        except ValueError:
            out[rx_text] = []
            continue
        out[rx_text] = [n for n in names if rx.fullmatch(n)]
    return out


def _tp_list(cls, assignment: Assignment) -> list:
    return [cls(topic_id=tid, partitions=sorted(ps)) for tid, ps in sorted(assignment.items()) if ps]


def _tp_dict(tps) -> Assignment:
    return {tp.topic_id: frozenset(tp.partitions) for tp in tps or () if tp.partitions}


def _minus(a: Assignment, b: Assignment) -> Assignment:
    out = {}
    for tid, ps in a.items():
        left = ps - b.get(tid, frozenset())
        if left:
            out[tid] = frozenset(left)
    return out


def _intersect(a: Assignment, b: Assignment) -> Assignment:
    out = {}
    for tid, ps in a.items():
        both = ps & b.get(tid, frozenset())
        if both:
            out[tid] = frozenset(both)
    return out


def _union(a: Assignment, b: Assignment) -> Assignment:
    out = dict(a)
    for tid, ps in b.items():
        out[tid] = frozenset(out.get(tid, frozenset()) | ps)
    return {t: p for t, p in out.items() if p}


def _overlaps(owned: Assignment | None, a: Assignment) -> bool:
    """Whether the member still reports any partition of a (None: it did not
    report, so it counts as owning all)."""
    if owned is None:
        return bool(a)
    return any(owned.get(tid, frozenset()) & ps for tid, ps in a.items())


def _subset(owned: Assignment | None, a: Assignment) -> bool:
    if owned is None:
        return True
    return all(ps <= a.get(tid, frozenset()) for tid, ps in owned.items())


def reconcile(member: ConsumerMember, target_epoch: int, target: Assignment, owners: dict,
              owned: Assignment | None):
    """Kafka's CurrentAssignmentBuilder: the member's next (epoch, previous
    epoch, state, assigned, pending revocation, assignment epochs). A
    partition kept or being revoked keeps its assignment epoch; one newly
    given gets the target epoch. owners: partitions other
    members hold; owned: what the member reported (None: not reported)."""
    state = member.state
    if state is MemberState.UNKNOWN:
        raise _Fenced("the member's state is unknown")
    if state is MemberState.STABLE and member.member_epoch == target_epoch:
        return member.current_key()
    if state is MemberState.UNREVOKED_PARTITIONS and _overlaps(owned, member.pending_revocation):
        return member.current_key()
    current = member.assigned
    kept = _intersect(current, target)
    revoke = _minus(current, target)
    adds = _minus(target, current)
    free, unreleased = {}, False
    for tid, ps in adds.items():
        mine = frozenset(p for p in ps if (tid, p) not in owners)
        if len(mine) < len(ps):
            unreleased = True
        if mine:
            free[tid] = mine
    if revoke and _overlaps(owned, revoke):
        return (member.member_epoch, member.member_epoch, MemberState.UNREVOKED_PARTITIONS, kept, revoke,
                _epochs_of(member, current))
    new_state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    epochs = _epochs_of(member, kept)
    epochs.update(((tid, p), target_epoch) for tid, ps in free.items() for p in ps)
    return (target_epoch, member.member_epoch, new_state, _union(kept, free), {}, epochs)


def _epochs_of(member: ConsumerMember, a: Assignment) -> dict:
    return {(tid, p): member.assignment_epoch(tid, p) for tid, ps in a.items() for p in ps}


class _Fenced(Exception):
    pass


class HeartbeatError(Exception):
    def __init__(self, code: int, message: str | None = None):
        super().__init__(message)
        self.code, self.message = code, message


def new_member_id() -> str:
    """A v0 join without a member id gets one (v1 clients make their own): a
    random UUID as unpadded url-safe base64, as Kafka's Uuid.toString."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class ConsumerGroups:
    """The KIP-848 half of the group coordinator: it owns no storage of its
    own, writing through `coordinator` (its _store / runtime / groups)."""

    def __init__(self, coordinator, config):
        self.c = coordinator
        # BrokerConfig checked the bounds and refused what pylog cannot honour
        # (unknown assignors).
        # Sessions and heartbeat intervals: per group (GROUP config overrides,
        # else the broker's group.consumer.* values), through the writer.
        self.max_size = config.get("group.consumer.max.size")
        self.assignors = config.consumer_group_assignors()
        # Kafka answers UNSUPPORTED_VERSION when `consumer` is not enabled.
        self.enabled = "consumer" in config.group_rebalance_protocols()
        self._image_names: frozenset = frozenset()
        self.policy = config.get("group.consumer.migration.policy").lower()
        self.classic = classic_members.ClassicMembers(self)
        self._image_version = 0
        self.topic_hashes = TopicHashes(lambda: coordinator.writer)

    # ---- topics ----

    def _topics(self) -> dict:
        """{name: (topic_id, partitions)} of the cluster's topics."""
        return self.c.writer.topic_image()

    def _subscribed(self, g: ConsumerGroup, topics: dict) -> dict:
        """{member id: set of topic names} each member subscribes to now: its
        names, and what its regex last resolved to (_maybe_refresh_regexes;
        an unresolved one matches nothing yet)."""
        out = {}
        for mid, m in g.members.items():
            names = {n for n in m.subscribed_topic_names if n in topics}
            if m.subscribed_topic_regex:
                names.update(n for n in g.regexes.get(m.subscribed_topic_regex, ()) if n in topics)
            out[mid] = names
        return out

    def _note_image(self, topics: dict):
        """Count the topic images that brought new names (Kafka's
        lastMetadataImageWithNewTopics): a resolution older than that is
        redone."""
        if not self._image_names.issuperset(topics):
            self._image_version += 1
        self._image_names = frozenset(topics)

    def _unused_regex_records(self, g: ConsumerGroup) -> list:
        """Tombstones (type 16) of the resolutions no member uses any more."""
        used = {m.subscribed_topic_regex for m in g.members.values() if m.subscribed_topic_regex}
        records = []
        for rx in [rx for rx in g.regexes if rx not in used]:
            del g.regexes[rx]
            records.append((ot.consumer_key(16, g.group_id, regular_expression=rx), None))
        return records

    def _maybe_refresh_regexes(self, g: ConsumerGroup, topics: dict, new_regex: bool):
        """Kafka's maybeUpdateRegularExpressions: resolve the group's regexes
        off the heartbeat, when one is not resolved yet, topics appeared since
        the last resolution, or that is REGEX_REFRESH_MAX_MS old; never twice
        within REGEX_REFRESH_MIN_MS. The result comes back as an event of the
        group's partition (_regexes_resolved), which bumps the group epoch
        when a resolution changed."""
        used = {m.subscribed_topic_regex for m in g.members.values() if m.subscribed_topic_regex}
        if not used or g.regex_refreshing:
            return
        now = _now_ms()
        if now <= g.regex_refreshed_ms + REGEX_REFRESH_MIN_MS:
            return
        if not (new_regex or not used <= g.regexes.keys() or g.regex_image_version < self._image_version
                or now > g.regex_refreshed_ms + REGEX_REFRESH_MAX_MS):
            return
        g.regex_refreshing = True
        regexes, names, version = sorted(used), sorted(topics), self._image_version
        index = self.c.partition_for(g.group_id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:   # no loop (a store driven without one): resolve in place
            self._regexes_resolved(g, version, _resolve_regexes(regexes, names))
            return

        def done(fut):
            try:
                self.c.runtime.schedule(index, self._regexes_resolved, g, version, fut.result())
            except NotCoordinatorError:
                g.regex_refreshing = False
        loop.run_in_executor(None, _resolve_regexes, regexes, names).add_done_callback(done)

    def _regexes_resolved(self, g: ConsumerGroup, version: int, resolved: dict):
        """Kafka's handleRegularExpressionsResult, as an event of the group's
        partition: type-16 records for the regexes still used, and the group
        epoch bumped when what they match changed."""
        g.regex_refreshing = False
        if self.c.groups.get(g.group_id) is not g or not self.c.runtime.is_active(self.c.partition_for(g.group_id)):
            return
        snap = GroupSnapshot(self.c, g.group_id)
        used = {m.subscribed_topic_regex for m in g.members.values() if m.subscribed_topic_regex}
        now, records, changed = _now_ms(), [], False
        for rx, names in resolved.items():
            if rx not in used:
                continue
            changed |= g.regexes.get(rx, []) != names
            g.regexes[rx] = names
            records.append((ot.consumer_key(16, g.group_id, regular_expression=rx), ot.consumer_value(
                16, RegexValue(topics=names, version=version, timestamp=now))))
        g.regex_refreshed_ms, g.regex_image_version = now, version
        topics = self._topics()
        subscribed = self._subscribed(g, topics)
        new_hash = self.topic_hashes.group_hash({n: topics[n] for n in set().union(*subscribed.values())})
        if changed or new_hash != g.metadata_hash:
            g.group_epoch += 1
            g.metadata_hash = new_hash
            records.append((_metadata_key(g.group_id), _metadata_value(g)))
            log.info("group %s: epoch %d (a regular expression matches other topics)", g.group_id, g.group_epoch)
        if records:
            self._write_or_revert(snap, records)

    def _write_or_revert(self, snap: "GroupSnapshot", records: list):
        """Store records of an event with no answer to give (a timer, a regex
        resolution); the group goes back to snap when the append fails. Once
        appended they stay applied whatever their replication does (Kafka
        reverts only a failed append: see write_result)."""
        if snap.after is None:
            snap.done(self.c)
        try:
            self.c._store(snap.gid, [k for k, _ in records], [v for _, v in records])
        except (PylogError, OSError) as e:
            log.warning("group %s: records not stored (%s): group state reverted", snap.gid, e)
            snap.restore(self)

    # ---- the heartbeat ----

    def heartbeat(self, version: int, req, client_id: str, client_host: str):
        """One ConsumerGroupHeartbeat, as an event of the group's partition:
        the response, or a coroutine giving it once its records are
        replicated."""
        try:
            if not self.enabled:
                raise HeartbeatError(Errors.UNSUPPORTED_VERSION, "The new consumer group protocol is not enabled "
                                                                 "(group.coordinator.rebalance.protocols).")
            self._validate(version, req)
        except HeartbeatError as e:
            return error_response(e.code, e.message)
        snap = GroupSnapshot(self.c, req.group_id, (req.member_id,))
        try:
            resp, records = self._heartbeat(version, req, client_id, client_host)
        except HeartbeatError as e:
            # Refused, maybe after a change (a conversion): nothing of it stays.
            log.debug("group %s: heartbeat of %s at epoch %d refused: error %s (%s)", req.group_id, req.member_id,
                      req.member_epoch, e.code, e.message)
            snap.restore(self, refused=True)
            return error_response(e.code, e.message)
        if not records:
            return resp
        return self._write(snap, records, resp)

    def _write(self, snap: GroupSnapshot, records, resp):
        return self.write_result(snap, records, resp, error_response)

    def write_result(self, snap: GroupSnapshot, records, result, failed):
        """Append an answered event's records; result once they are
        replicated, else failed(the write's error as Kafka maps it).

        Only an append that fails puts the group back as before the event
        (snap): nothing of it is in the log. Records appended stay applied
        when their replication times out or the answer fails otherwise, as in
        Kafka's runtime (it reverts its timeline only when the batch cannot
        be written; a timed-out write keeps its records, which commit later
        or go with the leadership, and the state then is reloaded from the
        log). Reverting them would leave the leader's state behind a log that
        its followers replay."""
        group_id = snap.gid
        snap.done(self.c)
        try:
            last = self.c._store(group_id, [k for k, _ in records], [v for _, v in records])
        except (PylogError, OSError) as e:
            snap.restore(self)
            return failed(_write_error(getattr(e, "error_code", -1)))
        code = self.c.runtime.committed_now(self.c.partition_for(group_id), last)
        if code is not None:
            return failed(_write_error(code)) if code else result

        async def later():
            code = await self.c._wait_committed_raw(group_id, last)
            return failed(_write_error(code)) if code else result
        return later()

    def _validate(self, version, req):
        """Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid."""
        bad = Errors.INVALID_REQUEST
        if not req.group_id:
            raise HeartbeatError(bad, "GroupId can't be empty.")
        if req.instance_id is not None and not req.instance_id:
            raise HeartbeatError(bad, "InstanceId can't be empty.")
        if req.rack_id is not None and not req.rack_id:
            raise HeartbeatError(bad, "RackId can't be empty.")
        epoch = req.member_epoch
        if version >= 1 and not req.member_id:
            raise HeartbeatError(bad, "MemberId can't be empty.")
        if version == 0 and not req.member_id and epoch != JOIN_EPOCH:
            raise HeartbeatError(bad, "MemberId can't be empty.")
        if epoch == JOIN_EPOCH:
            if req.rebalance_timeout_ms == -1:
                raise HeartbeatError(bad, "RebalanceTimeoutMs must be provided in first request.")
            if req.topic_partitions is None or req.topic_partitions:
                raise HeartbeatError(bad, "TopicPartitions must be empty when (re-)joining.")
            regex = getattr(req, "subscribed_topic_regex", None) if version >= 1 else None
            if req.subscribed_topic_names is None and regex is None:
                raise HeartbeatError(bad, "SubscribedTopicNames or SubscribedTopicRegex must be set in first "
                                          "request.")
        elif epoch == LEAVE_STATIC_EPOCH:
            if req.instance_id is None:
                raise HeartbeatError(bad, "InstanceId can't be null.")
        elif epoch < LEAVE_STATIC_EPOCH:
            raise HeartbeatError(bad, f"MemberEpoch {epoch} is invalid.")
        if req.server_assignor is not None and req.server_assignor not in self.assignors:
            raise HeartbeatError(Errors.UNSUPPORTED_ASSIGNOR,
                                 f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: "
                                 f"{', '.join(self.assignors)}.")
        regex = req.subscribed_topic_regex if version >= 1 else None
        if regex:
            try:
                consumer_assignors.compile_regex(regex)
            except ValueError as e:
                raise HeartbeatError(Errors.INVALID_REGULAR_EXPRESSION, f"SubscribedTopicRegex `{regex}` is not "
                                                                        f"a valid regular expression: {e}.")

    def _group_for(self, req):
        """The consumer group of a heartbeat (created by a join), as Kafka's
        getOrMaybeCreateConsumerGroup with the `disabled` migration policy."""
        from .coordinator import Group, GroupState
        gid = req.group_id
        g = self.c.groups.get(gid)
        create = req.member_epoch == JOIN_EPOCH
        if isinstance(g, ConsumerGroup):
            return g, []
        if g is None and self.c.is_share_group(gid):
            raise HeartbeatError(Errors.GROUP_ID_NOT_FOUND, f"Group {gid} is not a consumer group.")
        if g is None:
            if not create:
                raise HeartbeatError(Errors.GROUP_ID_NOT_FOUND, f"Group {gid} not found.")
            g = self.c.groups[gid] = ConsumerGroup(gid)
            return g, []
        assert isinstance(g, Group)
        if not create:
            raise HeartbeatError(Errors.GROUP_ID_NOT_FOUND, f"Group {gid} is not a consumer group.")
        if g.members or g.state is not GroupState.EMPTY:
            # A classic group in use: the online upgrade (classic_members.py).
            try:
                cg, records = classic_members.to_consumer_group(self, g)
            except classic_members.MigrationError as e:
                raise HeartbeatError(e.code, e.message)
            self.c.groups[gid] = cg
            self.c.runtime.cancel_timer(self.c.partition_for(gid), ("group", gid))
            for m in cg.members.values():
                self._arm_session(cg, m)
            return cg, records
        # An empty classic group converts: its metadata goes, its offsets stay.
        records = [(ot.group_key(gid), None)] if g.generation_id or g.protocol_type else []
        cg = ConsumerGroup(gid)
        cg.offsets = g.offsets
        self.c.groups[gid] = cg
        log.info("group %s: empty classic group converted to a consumer group", gid)
        return cg, records

    def _heartbeat(self, version, req, client_id, client_host):
        gid, epoch = req.group_id, req.member_epoch
        if epoch in (LEAVE_EPOCH, LEAVE_STATIC_EPOCH):
            return self._leave(req)
        g, records = self._group_for(req)
        owned = None if req.topic_partitions is None else _tp_dict(req.topic_partitions)
        regex = req.subscribed_topic_regex if version >= 1 else None
        member_id = req.member_id or new_member_id()
        # Kafka's order: the size check, then the member (static or dynamic), then its epoch.
        if len(g.members) >= self.max_size and member_id not in g.members:
            raise HeartbeatError(Errors.GROUP_MAX_SIZE_REACHED,
                                 f"The consumer group has reached its maximum capacity of {self.max_size} members.")
        replaced = None
        check_epoch = True
        if req.instance_id is not None:
            static_id = g.static.get(req.instance_id)
            static = g.members.get(static_id) if static_id is not None else None
            if epoch == JOIN_EPOCH:
                check_epoch = False
                if static is not None:
                    # The instance comes back: only once its previous member left with -2,
                    # unless that one spoke the classic protocol (Kafka replaces it then).
                    if static.classic is None and static.member_epoch != LEAVE_STATIC_EPOCH:
                        raise HeartbeatError(Errors.UNRELEASED_INSTANCE_ID,
                                             f"Static member {member_id} with instance id {req.instance_id} cannot "
                                             f"join the group because the instance id is owned by "
                                             f"{static.member_id} member.")
                    replaced = static
                    m = None
                else:
                    m = g.members.get(member_id)
            else:
                if static is None:
                    raise HeartbeatError(Errors.UNKNOWN_MEMBER_ID,
                                         f"Instance id {req.instance_id} is unknown.")
                if static.member_id != member_id:
                    raise HeartbeatError(Errors.FENCED_INSTANCE_ID,
                                         f"Static member {member_id} with instance id {req.instance_id} was "
                                         f"fenced by member {static.member_id}.")
                m = static
        else:
            m = g.members.get(member_id)
            if m is None and epoch != JOIN_EPOCH:
                raise HeartbeatError(Errors.UNKNOWN_MEMBER_ID,
                                     f"Member {member_id} is not a member of group {gid}.")
        if m is not None and check_epoch:
            if epoch > m.member_epoch:
                raise HeartbeatError(Errors.FENCED_MEMBER_EPOCH,
                                     f"The consumer group member has a greater member epoch ({epoch}) than the one "
                                     f"known by the group coordinator ({m.member_epoch}). The member must abandon "
                                     "all its partitions and rejoin.")
            # The previous epoch with a subset of the assignment: the answer that bumped it was lost.
            if epoch < m.member_epoch and (epoch != m.previous_member_epoch or not _subset(owned, m.assigned)):
                raise HeartbeatError(Errors.FENCED_MEMBER_EPOCH,
                                     f"The consumer group member has a smaller member epoch ({epoch}) than the "
                                     f"one known by the group coordinator ({m.member_epoch}). The member must "
                                     "abandon all its partitions and rejoin.")
        new = m is None
        if new:
            m = ConsumerMember(member_id)
            if replaced is not None:
                records += self.replace_static(g, replaced, m)
                m.classic = None
        before_meta = _meta_tuple(replaced) if replaced is not None else None if new else _meta_tuple(m)
        before_current = None if new else m.current_key()
        # Null fields mean "unchanged since the last heartbeat".
        if req.instance_id is not None:
            m.instance_id = req.instance_id
        if req.rack_id is not None:
            m.rack_id = req.rack_id
        if req.rebalance_timeout_ms != -1:
            m.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.subscribed_topic_names is not None:
            m.subscribed_topic_names = list(req.subscribed_topic_names)
        before_regex = m.subscribed_topic_regex
        if regex is not None:
            m.subscribed_topic_regex = regex or None
        if req.server_assignor is not None:
            m.server_assignor = req.server_assignor
        m.client_id, m.client_host = client_id, client_host
        if new:
            g.members[member_id] = m
            if m.instance_id is not None:
                g.static[m.instance_id] = member_id
        meta_changed = new or _meta_tuple(m) != before_meta
        subs_changed = (new and replaced is None) or (before_meta is not None and before_meta[:3] != _meta_tuple(m)[:3])
        if meta_changed:
            records.append((_member_key(gid, member_id), _member_value(m)))
        topics = self._topics()
        self._note_image(topics)
        new_regex = m.subscribed_topic_regex is not None and m.subscribed_topic_regex != before_regex and \
            m.subscribed_topic_regex not in g.regexes
        if m.subscribed_topic_regex != before_regex:
            records += self._unused_regex_records(g)
        self._maybe_refresh_regexes(g, topics, new_regex)
        subscribed = self._subscribed(g, topics)
        used = set().union(*subscribed.values()) if subscribed else set()
        new_hash = self.topic_hashes.group_hash({n: topics[n] for n in used})
        if subs_changed or new_hash != g.metadata_hash or g.group_epoch == 0:
            g.group_epoch += 1
            g.metadata_hash = new_hash
            records.append((_metadata_key(gid), _metadata_value(g)))
            log.info("group %s: epoch %d (%s)", gid, g.group_epoch,
                     f"member {member_id} joined or changed its subscription" if subs_changed
                     else "subscribed topics changed")
        if g.group_epoch > g.assignment_epoch:
            records += self._assign(g, topics, subscribed)
        target = g.target.get(member_id, {})
        try:
            nxt = reconcile(m, g.assignment_epoch, target, g.owners(member_id), {} if epoch == JOIN_EPOCH else owned)
        except _Fenced as e:
            raise HeartbeatError(Errors.FENCED_MEMBER_EPOCH, str(e))
        (m.member_epoch, m.previous_member_epoch, m.state, m.assigned, m.pending_revocation, m.epochs) = nxt
        if before_current is None or m.current_key() != before_current:
            records.append((_current_key(gid, member_id), _current_value(m)))
        self._arm_session(g, m)
        if m.state is MemberState.UNREVOKED_PARTITIONS:
            self._arm_rebalance(g, m)
        else:
            self.c.runtime.cancel_timer(self.c.partition_for(gid), ("cg-rebalance", gid, member_id))
        full = (req.rebalance_timeout_ms != -1 and (req.subscribed_topic_names is not None or regex is not None)
                and req.topic_partitions is not None)
        changed = before_current is None or before_current[3] != m.assigned
        R = _response_type()
        assignment = None
        if epoch == JOIN_EPOCH or full or changed:
            assignment = R.Assignment(topic_partitions=_tp_list(R.TopicPartitions, m.assigned))
        return R(throttle_time_ms=0, error_code=0, error_message=None, member_id=member_id,
                 member_epoch=m.member_epoch,
                 heartbeat_interval_ms=self._group_config(gid)["consumer.heartbeat.interval.ms"],
                 assignment=assignment), records

    def _assign(self, g: ConsumerGroup, topics: dict, subscribed: dict) -> list:
        """Compute the target assignment at the group epoch; its records (7
        per changed member, then 6)."""
        name = g.preferred_assignor(self.assignors)
        members = {mid: consumer_assignors.MemberSubscription(
            rack_id=m.rack_id, instance_id=m.instance_id,
            subscribed_topic_ids=frozenset(topics[n][0] for n in subscribed.get(mid, ())),
            assignment=g.target.get(mid, {})) for mid, m in g.members.items()}
        parts = {topics[n][0]: topics[n][1] for names in subscribed.values() for n in names}
        new = consumer_assignors.assign(name, members, parts)
        records = []
        for mid in g.members:
            a = {tid: frozenset(ps) for tid, ps in new.get(mid, {}).items() if ps}
            if a != g.target.get(mid) or mid not in g.target:
                g.target[mid] = a
                records.append((_target_key(g.group_id, mid), _target_value(a)))
        g.assignment_epoch = g.group_epoch
        records.append((_target_meta_key(g.group_id), _target_meta_value(g)))
        log.info("group %s: target assignment at epoch %d by %s", g.group_id, g.assignment_epoch, name)
        return records

    # ---- leaving, fencing ----

    def _leave(self, req):
        R = _response_type()
        g = self.c.groups.get(req.group_id)
        if not isinstance(g, ConsumerGroup):
            # Kafka's consumerGroup(id): "not found" only when no group of any type has the id.
            known = g is not None or self.c.is_share_group(req.group_id)
            raise HeartbeatError(Errors.GROUP_ID_NOT_FOUND, f"Group {req.group_id} is not a consumer group."
                                 if known else f"Group {req.group_id} not found.")
        m = g.members.get(req.member_id)
        if req.instance_id is not None:
            sid = g.static.get(req.instance_id)
            if sid is None:
                raise HeartbeatError(Errors.UNKNOWN_MEMBER_ID, f"Instance id {req.instance_id} is unknown.")
            if sid != req.member_id:
                raise HeartbeatError(Errors.FENCED_INSTANCE_ID,
                                     f"Static member {req.member_id} with instance id {req.instance_id} was "
                                     f"fenced by member {sid}.")
            m = g.members[sid]
        if m is None:
            raise HeartbeatError(Errors.UNKNOWN_MEMBER_ID, f"Member {req.member_id} is not a member of group "
                                                           f"{req.group_id}.")
        resp = R(throttle_time_ms=0, error_code=0, error_message=None, member_id=m.member_id,
                 member_epoch=req.member_epoch, heartbeat_interval_ms=0, assignment=None)
        if req.member_epoch == LEAVE_STATIC_EPOCH:
            # Kept with its partitions until its session ends, for its return;
            # their epochs drop to 0 so that the returning member (a new
            # member id) commits them while commits of the old id stay fenced.
            m.previous_member_epoch, m.member_epoch = m.member_epoch, LEAVE_STATIC_EPOCH
            m.pending_revocation = {}
            m.epochs = {(tid, p): 0 for tid, ps in m.assigned.items() for p in ps}
            log.info("group %s: static member %s (%s) left temporarily", g.group_id, m.member_id, m.instance_id)
            return resp, [(_current_key(g.group_id, m.member_id), _current_value(m))]
        log.info("group %s: member %s left", g.group_id, m.member_id)
        return resp, self.fence_or_downgrade(g, m)

    def replace_static(self, g: ConsumerGroup, replaced: ConsumerMember, m: ConsumerMember) -> list:
        """A static member's return under a new member id (Kafka copies the
        member to the new id at epoch 0): its subscription, partitions and
        target stay; the records that move them. m is not in g yet."""
        gid = g.group_id
        target = g.target.get(replaced.member_id, {})
        records = self._remove_records(g, replaced)
        self._drop_member(g, replaced, bump=False)
        m.apply_metadata(replaced.metadata_value())
        m.member_epoch = m.previous_member_epoch = 0
        m.state = replaced.state
        m.assigned, m.pending_revocation, m.epochs = replaced.assigned, replaced.pending_revocation, replaced.epochs
        g.target[m.member_id] = target
        records.append((_target_key(gid, m.member_id), _target_value(target)))
        log.info("group %s: static member %s rejoined as %s (was %s)", gid, replaced.instance_id, m.member_id,
                 replaced.member_id)
        return records

    def _remove_records(self, g, m) -> list:
        gid, mid = g.group_id, m.member_id
        return [(_current_key(gid, mid), None), (_target_key(gid, mid), None), (_member_key(gid, mid), None)]

    def _drop_member(self, g: ConsumerGroup, m: ConsumerMember, bump: bool):
        g.members.pop(m.member_id, None)
        g.target.pop(m.member_id, None)
        if m.instance_id is not None and g.static.get(m.instance_id) == m.member_id:
            del g.static[m.instance_id]
        index = self.c.partition_for(g.group_id)
        self.c.runtime.cancel_timer(index, ("cg-session", g.group_id, m.member_id))
        self.c.runtime.cancel_timer(index, ("cg-rebalance", g.group_id, m.member_id))
        self.c.runtime.cancel_timer(index, ("cg-classic", g.group_id, m.member_id))
        if not g.members:
            g.empty_since = _now_ms()
        if bump:
            g.group_epoch += 1

    def fence_or_downgrade(self, g: ConsumerGroup, m: ConsumerMember) -> list:
        """m leaves (or is fenced): the group becomes a classic one when only
        classic members remain and the policy allows (Kafka's
        consumerGroupFenceMembers), else m goes. The records."""
        if classic_members.downgrade_possible(self, g, {m.member_id}):
            return classic_members.to_classic_group(self, g, {m.member_id})
        return self._fence_records(g, m)

    def tombstones(self, g: ConsumerGroup) -> list:
        """Kafka's createGroupTombstoneRecords: 8, 7 per member, 6, 5 per
        member, 16 per regex, 3 (its offsets stay)."""
        gid = g.group_id
        return ([(_current_key(gid, mid), None) for mid in g.members]
                + [(_target_key(gid, mid), None) for mid in g.members]
                + [(_target_meta_key(gid), None)]
                + [(_member_key(gid, mid), None) for mid in g.members]
                + [(ot.consumer_key(16, gid, regular_expression=rx), None) for rx in g.regexes]
                + [(_metadata_key(gid), None)])

    def _fence_records(self, g: ConsumerGroup, m: ConsumerMember) -> list:
        """Remove m and bump the group epoch: tombstones 8, 7, 5, then 3."""
        records = self._remove_records(g, m)
        self._drop_member(g, m, bump=True)
        records.append((_metadata_key(g.group_id), _metadata_value(g)))
        return records + self._unused_regex_records(g)

    def _fence_timer(self, group_id, member_id, why, epoch=None):
        g = self.c.groups.get(group_id)
        if not isinstance(g, ConsumerGroup):
            return
        m = g.members.get(member_id)
        if m is None:
            return
        if epoch is not None and (m.member_epoch != epoch or m.state is not MemberState.UNREVOKED_PARTITIONS):
            return
        log.info("group %s: member %s fenced: %s", group_id, member_id, why)
        snap = GroupSnapshot(self.c, group_id)
        records = self.fence_or_downgrade(g, m)
        snap.done(self.c)
        self._write_or_revert(snap, records)

    def _group_config(self, group_id) -> dict:
        return self.c.writer.group_config(group_id)

    def _arm_session(self, g: ConsumerGroup, m: ConsumerMember):
        index = self.c.partition_for(g.group_id)
        if not self.c.runtime.is_active(index):
            return
        ms = m.classic.session_timeout_ms if m.classic is not None else \
            self._group_config(g.group_id)["consumer.session.timeout.ms"]
        self.c.runtime.schedule_timer(index, ("cg-session", g.group_id, m.member_id),
                                      self.c.clock() + ms / 1000, self._fence_timer,
                                      g.group_id, m.member_id, f"session timeout ({ms} ms)")

    def _arm_rebalance(self, g: ConsumerGroup, m: ConsumerMember):
        index = self.c.partition_for(g.group_id)
        key = ("cg-rebalance", g.group_id, m.member_id)
        if not self.c.runtime.is_active(index) or self.c.runtime.timer_deadline(index, key) is not None:
            return
        ms = max(m.rebalance_timeout_ms, 0)
        self.c.runtime.schedule_timer(index, key, self.c.clock() + ms / 1000, self._fence_timer, g.group_id,
                                      m.member_id, f"partitions not revoked within {ms} ms", m.member_epoch)

    def arm_all(self, g: ConsumerGroup):
        """After a load: every member gets a fresh session (and revocation
        deadline) to find the new coordinator."""
        for m in g.members.values():
            self.arm_member(g, m)

    def arm_member(self, g: ConsumerGroup, m: ConsumerMember):
        self._arm_session(g, m)
        # A classic member's revocation deadline is its join/sync one (classic_members.py).
        if m.state is MemberState.UNREVOKED_PARTITIONS and m.classic is None:
            self._arm_rebalance(g, m)

    # ---- replay ----

    def replay(self, kind: int, key, value):
        """One ConsumerGroup* record of __consumer_offsets (types 3-8, 16)."""
        from .coordinator import Group
        gid = key.group_id
        g = self.c.groups.get(gid)
        if not isinstance(g, ConsumerGroup):
            if value is None:
                return
            cg = ConsumerGroup(gid)
            if isinstance(g, Group):
                cg.offsets = g.offsets
            g = self.c.groups[gid] = cg
        if kind == 3:
            if value is None:
                # The group goes; its offsets stay (a conversion to classic keeps them).
                del self.c.groups[gid]
                if g.offsets:
                    self.c.groups[gid] = Group(gid)
                    self.c.groups[gid].offsets = g.offsets
            else:
                g.group_epoch, g.metadata_hash = value.epoch, value.metadata_hash
        elif kind == 6:
            g.assignment_epoch = 0 if value is None else value.assignment_epoch
        elif kind in (5, 7, 8):
            mid = key.member_id
            m = g.members.get(mid)
            if value is None:
                if kind == 5 and m is not None:
                    g.members.pop(mid, None)
                    if m.instance_id is not None and g.static.get(m.instance_id) == mid:
                        del g.static[m.instance_id]
                elif kind == 7:
                    g.target.pop(mid, None)
                elif kind == 8 and m is not None:
                    m.member_epoch, m.state, m.assigned, m.pending_revocation = 0, MemberState.STABLE, {}, {}
                    m.epochs = {}
                return
            if m is None:
                m = g.members[mid] = ConsumerMember(mid)
            if kind == 5:
                m.apply_metadata(value)
                if m.instance_id is not None:
                    g.static[m.instance_id] = mid
            elif kind == 7:
                g.target[mid] = _tp_dict(value.topic_partitions)
            else:
                m.apply_current(value)
        elif kind == 16:
            if value is None:
                g.regexes.pop(key.regular_expression, None)
            else:
                g.regexes[key.regular_expression] = list(value.topics)
                g.regex_refreshed_ms = max(g.regex_refreshed_ms, value.timestamp)
        # 4 (partition metadata, Kafka 4.0 only) carries nothing needed here.

    # ---- offsets ----

    def commit_error(self, g: ConsumerGroup, member_id, member_epoch, version, partitions=(),
                     transactional=False) -> int:
        """Kafka's ConsumerGroup.validateOffsetCommit with its per-partition
        validator (KIP-1251): a member epoch older than the member's is good
        for each partition the member got at that epoch or before (assigned
        or pending revocation). partitions: the (topic, partition) pairs
        committed that exist. A classic member's generation is its member
        epoch; it is answered ILLEGAL_GENERATION where a consumer-protocol
        member is answered STALE_MEMBER_EPOCH."""
        if member_epoch < 0 and not g.members:
            return Errors.NONE
        if transactional and member_epoch < 0 and not member_id:
            return Errors.NONE
        m = g.members.get(member_id)
        if m is None:
            return Errors.UNKNOWN_MEMBER_ID
        if not transactional and version < 9 and m.classic is None:
            return Errors.UNSUPPORTED_VERSION
        if member_epoch == m.member_epoch:
            return Errors.NONE
        stale = Errors.ILLEGAL_GENERATION if m.classic is not None else Errors.STALE_MEMBER_EPOCH
        if member_epoch > m.member_epoch:
            return stale
        topics = self._topics()
        for topic, partition in partitions:
            tid = topics.get(topic, (None,))[0]
            epoch = m.assignment_epoch(tid, partition)
            if epoch is None or member_epoch < epoch:
                return stale
        return Errors.NONE

    @staticmethod
    def fetch_error(g: ConsumerGroup, member_id, member_epoch) -> int:
        """Kafka's ConsumerGroup.validateOffsetFetch."""
        if member_epoch < 0 and member_id is None:
            return Errors.NONE
        m = g.members.get(member_id)
        if m is None:
            return Errors.UNKNOWN_MEMBER_ID
        if member_epoch != m.member_epoch:
            return Errors.ILLEGAL_GENERATION if m.classic is not None else Errors.STALE_MEMBER_EPOCH
        return Errors.NONE

    def delete_records(self, g: ConsumerGroup) -> list:
        """Tombstones of an empty consumer group (offsets excepted): 16, 6, 3."""
        return [(ot.consumer_key(16, g.group_id, regular_expression=rx), None) for rx in g.regexes] + \
            [(_target_meta_key(g.group_id), None), (_metadata_key(g.group_id), None)]

    # ---- ConsumerGroupDescribe ----

    def describe(self, gid: str):
        from ..protocol import messages as msgs
        R = msgs.ConsumerGroupDescribeResponse
        g = self.c.groups.get(gid)
        if g is None and not self.c.is_share_group(gid):
            return R.DescribedGroup(error_code=Errors.GROUP_ID_NOT_FOUND, error_message=f"Group {gid} not found.",
                                    group_id=gid)
        if not isinstance(g, ConsumerGroup):
            return R.DescribedGroup(error_code=Errors.GROUP_ID_NOT_FOUND,
                                    error_message=f"Group {gid} is not a consumer group.", group_id=gid)
        names = {tid: n for n, (tid, _) in self._topics().items()}

        def assignment(a):
            return R.Assignment(topic_partitions=[
                R.TopicPartitions(topic_id=tid, topic_name=names.get(tid, ""), partitions=sorted(ps))
                for tid, ps in sorted(a.items()) if ps])
        members = [R.Member(member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id,
                            member_epoch=m.member_epoch, client_id=m.client_id, client_host=m.client_host,
                            subscribed_topic_names=list(m.subscribed_topic_names),
                            subscribed_topic_regex=m.subscribed_topic_regex, assignment=assignment(m.assigned),
                            target_assignment=assignment(g.target.get(m.member_id, {})),
                            member_type=m.member_type)
                   for m in g.members.values()]
        return R.DescribedGroup(error_code=0, error_message=None, group_id=gid, group_state=g.state.value,
                                group_epoch=g.group_epoch, assignment_epoch=g.assignment_epoch,
                                assignor_name=g.preferred_assignor(self.assignors), members=members)


def _meta_tuple(m: ConsumerMember):
    # The first three decide the subscription (an epoch bump); the rest only the record.
    return (tuple(m.subscribed_topic_names), m.subscribed_topic_regex, m.server_assignor, m.instance_id, m.rack_id,
            m.client_id, m.client_host, m.rebalance_timeout_ms)


def _response_type():
    from ..protocol import messages as msgs
    return msgs.ConsumerGroupHeartbeatResponse


def error_response(code: int, message: str | None = None):
    """A ConsumerGroupHeartbeat answer carrying only an error (Kafka's shape)."""
    return _response_type()(throttle_time_ms=0, error_code=code, error_message=message, member_id=None,
                            member_epoch=0, heartbeat_interval_ms=0, assignment=None)


def _write_error(code: int) -> int:
    from .coordinator import _group_store_error
    return _group_store_error(code)


# ---- record encoding (keys: int16 type + v0 struct; values: int16 version 0 + struct) ----

def _member_key(gid, mid):
    return ot.consumer_key(5, gid, mid)


def _member_value(m: ConsumerMember):
    return ot.consumer_value(5, m.metadata_value())


def _metadata_key(gid):
    return ot.consumer_key(3, gid)


def _metadata_value(g: ConsumerGroup):
    return ot.consumer_value(3, MetadataValue(epoch=g.group_epoch, metadata_hash=g.metadata_hash))


def _target_key(gid, mid):
    return ot.consumer_key(7, gid, mid)


def _target_value(a: Assignment):
    return ot.consumer_value(7, TargetValue(topic_partitions=_tp_list(TargetValue.TopicPartition, a)))


def _target_meta_key(gid):
    return ot.consumer_key(6, gid)


def _target_meta_value(g: ConsumerGroup):
    return ot.consumer_value(6, TargetMetaValue(assignment_epoch=g.assignment_epoch,
                                                assignment_timestamp=_now_ms()))


def _current_key(gid, mid):
    return ot.consumer_key(8, gid, mid)


def _current_value(m: ConsumerMember):
    return ot.consumer_value(8, m.current_value())
