"""Online migration between classic and consumer groups
(`group.consumer.migration.policy`, KIP-848): members speaking the classic
protocol inside a consumer group, and the conversions of a group in use.

Kafka's GroupMetadataManager is the model:

- **upgrade** (convertToConsumerGroup): a ConsumerGroupHeartbeat join meeting
  a classic group in use that speaks the consumer protocol turns it into a
  consumer group. Every classic member becomes a member at the group's
  generation with what it owns as both its assignment and its target, and
  keeps speaking the classic protocol: the records are the classic group's
  tombstone, then the consumer group's (5 per member, 3, 7 per member, 6, 8
  per member), the type-5 records carrying the classic metadata (session
  timeout, protocols) in their tagged ClassicMemberMetadata field.
- **classic members of a consumer group** (classicGroupJoinToConsumerGroup and
  the sync, heartbeat and leave ones): JoinGroup updates the member from its
  subscription (topics, owned partitions, rack), computes the target when the
  group epoch moved and reconciles as a consumer heartbeat does, answering at
  once with the member epoch as generation and no leader (the member is never
  the one assigning). SyncGroup hands out the member's current assignment as
  ConsumerProtocolAssignment bytes. Heartbeat answers REBALANCE_IN_PROGRESS
  while the member is behind the assignment epoch or holds partitions it must
  give up, so the member rejoins (and revokes). LeaveGroup fences it. Sessions
  are the member's own classic session timeout; a member that does not sync
  after its join, or rejoin after being told to, within its rebalance timeout
  is fenced.
- **downgrade** (convertToClassicGroup): when the consumer-protocol members
  are gone (left or fenced) and classic members remain, the group becomes a
  classic group again: the consumer group's tombstones, then a GroupMetadata
  record of the classic group (Stable, generation = group epoch, each member
  with its target as assignment), which then rebalances.
- `upgrade` / `downgrade` / `bidirectional` / `disabled` allow one direction,
  both, or neither. Refused: an upgrade with GROUP_ID_NOT_FOUND (Kafka's
  validateOnlineUpgrade), a classic member joining a consumer group under
  `disabled` with INCONSISTENT_GROUP_PROTOCOL.

Threads: the event loop's only, as the coordinator runtime.
"""
from __future__ import annotations

import logging
import uuid

from ..protocol.coordinator_records import ConsumerGroupMemberMetadataValue as MemberValue
from ..protocol.error_codes import Errors
from ..protocol.errors import ProtocolError
from ..protocol.group_records import GroupMetadataValue
from . import offsets_topic as ot

log = logging.getLogger("pylog.groups")

POLICIES = ("bidirectional", "upgrade", "downgrade", "disabled")


class ClassicState:
    """What a classic-protocol member of a consumer group joined with."""

    __slots__ = ("session_timeout_ms", "protocols")

    def __init__(self, session_timeout_ms: int, protocols: list):
        self.session_timeout_ms = session_timeout_ms
        self.protocols = [(n, bytes(md)) for n, md in protocols]   # preference order

    @property
    def protocol_name(self) -> str:
        """The protocol its JoinGroup answers name (Kafka: its first)."""
        return self.protocols[0][0]

    def record(self):
        return MemberValue.ClassicMemberMetadata(
            session_timeout_ms=self.session_timeout_ms,
            supported_protocols=[MemberValue.ClassicProtocol(name=n, metadata=md) for n, md in self.protocols])

    @classmethod
    def from_record(cls, v) -> "ClassicState | None":
        if v is None:
            return None
        return cls(v.session_timeout_ms, [(p.name, p.metadata) for p in v.supported_protocols])


class MigrationError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def upgrade_allowed(policy: str) -> bool:
    return policy in ("upgrade", "bidirectional")


def downgrade_allowed(policy: str) -> bool:
    return policy in ("downgrade", "bidirectional")


def _subscription(meta: bytes):
    from ..consumer.assignors import decode_subscription
    return decode_subscription(meta)


def _ids(partitions, topics: dict) -> dict:
    """TopicPartitions by name -> {topic id: frozenset} (unknown topics dropped)."""
    out: dict = {}
    for tp in partitions:
        t = topics.get(tp.topic)
        if t is not None:
            out.setdefault(t[0], set()).add(tp.partition)
    return {tid: frozenset(ps) for tid, ps in out.items()}


def assignment_bytes(assigned: dict, topics: dict, protocols: list) -> bytes:
    """A member's partitions as ConsumerProtocolAssignment bytes, at the
    version of the subscription it joined with (Kafka's prepareAssignment)."""
    from ..consumer.assignors import ASSIGNMENT_VERSION, encode_assignment
    from ..structs import TopicPartition
    names = {tid: n for n, (tid, _) in topics.items()}
    version = ASSIGNMENT_VERSION
    meta = protocols[0][1] if protocols else b""
    if len(meta) >= 2:
        version = max(0, min(int.from_bytes(meta[:2], "big", signed=True), ASSIGNMENT_VERSION))
    parts = [TopicPartition(names[tid], p) for tid, ps in assigned.items() if tid in names for p in sorted(ps)]
    return encode_assignment(parts, version=version)


def supports_protocols(g, protocol_type: str, protocols: list) -> bool:
    """Kafka's ConsumerGroup.supportsClassicProtocols: the consumer protocol
    type, and a protocol every classic member supports too."""
    if protocol_type != "consumer" or not protocols:
        return False
    names = {n for n, _ in protocols}
    for m in g.members.values():
        if m.classic is not None:
            names &= {n for n, _ in m.classic.protocols}
    return bool(names)


def to_consumer_group(groups, g) -> tuple:
    """Kafka's convertToConsumerGroup: (the consumer group, its records).
    Raises MigrationError when g cannot be upgraded."""
    from .consumer_group import ConsumerGroup, ConsumerMember, MemberState
    gid = g.group_id
    if not upgrade_allowed(groups.policy):
        raise MigrationError(Errors.GROUP_ID_NOT_FOUND, f"Cannot upgrade classic group {gid} to consumer group "
                                                        "because online upgrade is disabled.")
    if g.protocol_type != "consumer":
        raise MigrationError(Errors.GROUP_ID_NOT_FOUND, f"Cannot upgrade classic group {gid} to consumer group "
                                                        "because the group does not use the consumer embedded "
                                                        "protocol.")
    if len(g.members) > groups.max_size:
        raise MigrationError(Errors.GROUP_ID_NOT_FOUND, f"Cannot upgrade classic group {gid} to consumer group "
                                                        "because the group size exceeds the consumer group maximum "
                                                        "size.")
    from ..consumer.assignors import decode_assignment
    topics = groups._topics()
    cg = ConsumerGroup(gid)
    cg.offsets = g.offsets
    cg.group_epoch = cg.assignment_epoch = g.generation_id
    try:
        for m in g.members.values():
            sub = _subscription(m.metadata_for(g.protocol_name))
            cm = ConsumerMember(m.member_id)
            cm.member_epoch = cm.previous_member_epoch = g.generation_id
            cm.state = MemberState.STABLE
            cm.instance_id, cm.rack_id = m.group_instance_id, sub.rack_id
            cm.rebalance_timeout_ms = m.rebalance_timeout_ms
            cm.client_id, cm.client_host = m.client_id, m.client_host
            cm.subscribed_topic_names = sorted(sub.topics)
            cm.assigned = _ids(decode_assignment(m.assignment), topics) if m.assignment else {}
            cm.epochs = {(tid, p): g.generation_id for tid, ps in cm.assigned.items() for p in ps}
            cm.classic = ClassicState(m.session_timeout_ms, m.protocols)
            cg.members[cm.member_id] = cm
            cg.target[cm.member_id] = dict(cm.assigned)
            if cm.instance_id is not None:
                cg.static[cm.instance_id] = cm.member_id
    except (ProtocolError, KeyError, TypeError, ValueError) as e:
        log.warning("group %s: cannot upgrade, the embedded consumer protocol is malformed: %s", gid, e)
        raise MigrationError(Errors.GROUP_ID_NOT_FOUND, f"Cannot upgrade classic group {gid} to consumer group "
                                                        "because the embedded consumer protocol is malformed.")
    subscribed = groups._subscribed(cg, topics)
    cg.metadata_hash = groups.topic_hashes.group_hash({n: topics[n] for n in set().union(*subscribed.values())})
    # The classic group's waiting members must rejoin (now into the consumer group).
    for m in g.members.values():
        for fut in (m.join_future, m.sync_future):
            if fut is not None and not fut.done():
                fut.set_result(Errors.REBALANCE_IN_PROGRESS)
    from .consumer_group import (_current_key, _current_value, _member_key, _member_value, _metadata_key,
                                 _metadata_value, _target_key, _target_meta_key, _target_meta_value, _target_value)
    records = [(ot.group_key(gid), None)]
    records += [(_member_key(gid, mid), _member_value(m)) for mid, m in cg.members.items()]
    records.append((_metadata_key(gid), _metadata_value(cg)))
    records += [(_target_key(gid, mid), _target_value(cg.target[mid])) for mid in cg.members]
    records.append((_target_meta_key(gid), _target_meta_value(cg)))
    records += [(_current_key(gid, mid), _current_value(m)) for mid, m in cg.members.items()]
    log.info("group %s: classic group with %d members converted to a consumer group", gid, len(cg.members))
    return cg, records


def downgrade_possible(groups, g, leaving: set) -> bool:
    """Kafka's validateOnlineDowngradeWithFencedMembers."""
    rest = [m for mid, m in g.members.items() if mid not in leaving]
    if not rest or any(m.classic is None for m in rest):
        return False
    if not downgrade_allowed(groups.policy):
        log.info("group %s: not downgraded to a classic group: the online downgrade is disabled", g.group_id)
        return False
    if len(rest) > groups.c.max_size:
        log.info("group %s: not downgraded to a classic group: more members than group.max.size", g.group_id)
        return False
    return True


def to_classic_group(groups, g, leaving: set, joining=None) -> list:
    """Kafka's convertToClassicGroup: the classic group replaces g in the
    coordinator; its records. After members left it rebalances. joining:
    (the classic ConsumerMember replacing a static member, the replaced
    member's id) when the downgrade comes from that replacement with the
    assignment current: the joining member takes the replaced one's place
    and target, and the group stays Stable (Kafka skips the rebalance)."""
    from .coordinator import Group, GroupState, Member
    c = groups.c
    gid = g.group_id
    topics = groups._topics()
    records = groups.tombstones(g)
    cg = Group(gid)
    cg.offsets = g.offsets
    cg.generation_id = g.group_epoch
    cg.protocol_type = "consumer"
    if joining is not None:
        leaving = leaving | {joining[1]}
    for mid, m in [*g.members.items(), *([(joining[0].member_id, joining[0])] if joining else [])]:
        if mid in leaving:
            continue
        mm = Member(mid, m.instance_id, m.client_id, m.client_host, m.classic.session_timeout_ms,
                    m.rebalance_timeout_ms if m.rebalance_timeout_ms > 0 else m.classic.session_timeout_ms,
                    "consumer", m.classic.protocols)
        mm.last_heartbeat = c.clock()
        cg.members[mid] = mm
        if m.instance_id is not None:
            cg.static[m.instance_id] = mid
    cg.protocol_name = cg.select_protocol()
    cg.leader_id = next(iter(cg.members))
    for mid, mm in cg.members.items():
        owner = joining[1] if joining is not None and mid == joining[0].member_id else mid
        mm.assignment = assignment_bytes(g.target.get(owner, {}), topics, [(cg.protocol_name,
                                                                         mm.metadata_for(cg.protocol_name))])
    cg.state = GroupState.STABLE
    members = [GroupMetadataValue.MemberMetadata(
        member_id=mm.member_id, group_instance_id=mm.group_instance_id, client_id=mm.client_id,
        client_host=mm.client_host, rebalance_timeout=mm.rebalance_timeout_ms, session_timeout=mm.session_timeout_ms,
        subscription=mm.metadata_for(cg.protocol_name), assignment=mm.assignment) for mm in cg.members.values()]
    records.append((ot.group_key(gid), ot.group_value(GroupMetadataValue(
        protocol_type="consumer", generation=cg.generation_id, protocol=cg.protocol_name, leader=cg.leader_id,
        current_state_timestamp=cg.state_timestamp, members=members))))
    index = c.partition_for(gid)
    for mid in g.members:
        c.runtime.cancel_timer(index, ("cg-session", gid, mid))
        c.runtime.cancel_timer(index, ("cg-rebalance", gid, mid))
        c.runtime.cancel_timer(index, ("cg-classic", gid, mid))
    c.groups[gid] = cg
    log.info("group %s: consumer group converted to a classic group (%d classic members)", gid, len(cg.members))
    if joining is None:
        c._prepare_rebalance(cg, f"Downgrade group {gid} from consumer to classic for member leaving.")
    else:
        c._arm(cg)   # the members' sessions (Kafka's rescheduleClassicGroupMemberHeartbeat)
    return records


class ClassicMembers:
    """JoinGroup, SyncGroup, Heartbeat and LeaveGroup of classic-protocol
    members in a consumer group, served by its ConsumerGroups."""

    def __init__(self, groups):
        self.groups = groups
        self.c = groups.c

    # ---- JoinGroup ----

    def join(self, version, g, member_id, instance_id, client_id, client_host, session_timeout_ms,
             rebalance_timeout_ms, protocol_type, protocols):
        """classicGroupJoinToConsumerGroup: the JoinGroup result tuple, or a
        coroutine giving it once the records are written."""
        from .consumer_group import (ConsumerMember, GroupSnapshot, _Fenced,
                                     _current_key, _current_value, _member_key, _member_value, _meta_tuple,
                                     _metadata_key, _metadata_value, reconcile)
        gs = self.groups
        gid = g.group_id
        if gs.policy == "disabled":
            return _join_error(Errors.INCONSISTENT_GROUP_PROTOCOL, member_id)
        unknown = not member_id
        if unknown:
            member_id = str(uuid.uuid4())
        if len(g.members) >= gs.max_size and member_id not in g.members:
            return _join_error(Errors.GROUP_MAX_SIZE_REACHED, member_id)
        if not supports_protocols(g, protocol_type, protocols):
            return _join_error(Errors.INCONSISTENT_GROUP_PROTOCOL, member_id)
        if unknown and version >= 4 and instance_id is None:
            return _join_error(Errors.MEMBER_ID_REQUIRED, member_id)
        # Kafka's getOrMaybeSubscribe{Static,Dynamic}ConsumerGroupMember with the classic protocol.
        replaced = None
        m = g.members.get(member_id)
        if instance_id is not None:
            sid = g.static.get(instance_id)
            if unknown:
                # A static member's return replaces its previous member, whatever its protocol or epoch.
                replaced = g.members.get(sid) if sid is not None else None
            elif sid is None:
                return _join_error(Errors.UNKNOWN_MEMBER_ID, member_id)
            elif sid != member_id:
                return _join_error(Errors.FENCED_INSTANCE_ID, member_id)
        try:
            sub = _subscription(dict(protocols).get(protocols[0][0]) if protocols else b"")
        except ProtocolError:
            return _join_error(Errors.INCONSISTENT_GROUP_PROTOCOL, member_id)
        snap = GroupSnapshot(self.c, gid, (member_id,))
        records = []
        new = m is None
        before = None if new else _meta_tuple(m)
        before_value = None if new else bytes(_member_value(m))
        before_current = None if new else m.current_key()
        if new:
            m = ConsumerMember(member_id)
            if replaced is not None:
                before = _meta_tuple(replaced)
                records += gs.replace_static(g, replaced, m)
        m.instance_id = instance_id
        if sub.rack_id is not None:
            m.rack_id = sub.rack_id
        m.rebalance_timeout_ms = rebalance_timeout_ms
        m.server_assignor = None
        m.subscribed_topic_names = sorted(sub.topics)
        m.subscribed_topic_regex = None
        m.client_id, m.client_host = client_id, client_host
        m.classic = ClassicState(session_timeout_ms, protocols)
        if new:
            g.members[member_id] = m
            if instance_id is not None:
                g.static[instance_id] = member_id
        value = _member_value(m)
        if bytes(value) != before_value:
            records.append((_member_key(gid, member_id), value))
        topics = gs._topics()
        subs_changed = before is None or before[:3] != _meta_tuple(m)[:3]
        subscribed = gs._subscribed(g, topics)
        new_hash = gs.topic_hashes.group_hash({n: topics[n] for n in set().union(*subscribed.values())})
        if subs_changed or new_hash != g.metadata_hash:
            g.group_epoch += 1
            g.metadata_hash = new_hash
            records.append((_metadata_key(gid), _metadata_value(g)))
            log.info("group %s: epoch %d (classic member %s joined or changed its subscription)", gid,
                     g.group_epoch, member_id)
        records += gs._unused_regex_records(g)
        if g.group_epoch > g.assignment_epoch:
            records += gs._assign(g, topics, subscribed)
        owned = _ids(sub.owned_partitions, topics)
        try:
            nxt = reconcile(m, g.assignment_epoch, g.target.get(member_id, {}), g.owners(member_id), owned)
        except _Fenced:
            snap.restore(gs, refused=True)
            return _join_error(Errors.UNKNOWN_MEMBER_ID, member_id)
        (m.member_epoch, m.previous_member_epoch, m.state, m.assigned, m.pending_revocation, m.epochs) = nxt
        if m.current_key() != before_current:
            records.append((_current_key(gid, member_id), _current_value(m)))
        index = self.c.partition_for(gid)
        self.c.runtime.cancel_timer(index, ("cg-classic", gid, member_id))
        gs._arm_session(g, m)
        self._arm_deadline(g, m, "did not sync after its join")
        result = (Errors.NONE, m.member_epoch, m.classic.protocol_name, "", member_id, [])

        if not records:
            return result   # a rejoin that changes nothing (it lost its answer)

        def failed(code):
            return _join_error(code, member_id)
        return gs.write_result(snap, records, result, failed)

    def downgrade_on_replace(self, g, member_id, instance_id, client_id, client_host, session_timeout_ms,
                             rebalance_timeout_ms, protocol_type, protocols) -> tuple | None:
        """Kafka's validateOnlineDowngradeWithReplacedMember: a classic static
        member coming back in place of the group's last consumer-protocol
        member turns the group classic. (the conversion's records, the
        JoinGroup answer or None), or None. With the assignment current (the
        subscription and the topics unchanged, the target at the group
        epoch), Kafka reconciles the joining member to the replaced one's
        partitions and answers its join at once, no rebalance; else the
        classic group rebalances and the member joins it."""
        from .consumer_group import ConsumerMember, _Fenced, reconcile
        if member_id or instance_id is None:
            return None
        replaced = g.members.get(g.static.get(instance_id))
        if replaced is None or replaced.classic is not None or \
                not supports_protocols(g, protocol_type, protocols):
            return None   # the consumer group's join refuses the protocols first, as Kafka's does
        try:
            sub = _subscription(dict(protocols).get(protocols[0][0]))
        except ProtocolError:
            return None
        if not downgrade_possible(self.groups, g, {replaced.member_id}):
            return None
        log.info("group %s: classic static member %s replaces the last consumer-protocol member %s", g.group_id,
                 instance_id, replaced.member_id)
        topics = self.groups._topics()
        current = not replaced.subscribed_topic_regex and \
            sorted(set(sub.topics)) == sorted(replaced.subscribed_topic_names) and \
            g.assignment_epoch >= g.group_epoch and g.metadata_hash == self.groups.topic_hashes.group_hash(
                {n: topics[n] for n in set().union(*self.groups._subscribed(g, topics).values())})
        if not current:
            return to_classic_group(self.groups, g, {replaced.member_id}), None
        m = ConsumerMember(str(uuid.uuid4()))
        m.instance_id, m.client_id, m.client_host = instance_id, client_id, client_host
        m.rebalance_timeout_ms = rebalance_timeout_ms
        m.classic = ClassicState(session_timeout_ms, protocols)
        m.member_epoch = m.previous_member_epoch = 0
        m.state, m.assigned, m.pending_revocation, m.epochs = (replaced.state, replaced.assigned,
                                                               replaced.pending_revocation, replaced.epochs)
        try:
            m.member_epoch = reconcile(m, g.assignment_epoch, g.target.get(replaced.member_id, {}),
                                       g.owners(replaced.member_id), _ids(sub.owned_partitions, topics))[0]
        except _Fenced:   # the replaced member's state is unknown: start the classic group afresh
            return to_classic_group(self.groups, g, {replaced.member_id}), None
        records = to_classic_group(self.groups, g, set(), (m, replaced.member_id))
        return records, (Errors.NONE, m.member_epoch, m.classic.protocol_name, "", m.member_id, [])

    # ---- SyncGroup ----

    def sync(self, g, member_id, instance_id, generation_id, protocol_type, protocol_name):
        """classicGroupSyncToConsumerGroup: (code, assignment bytes)."""
        m, code = self._member(g, member_id, instance_id)
        if code:
            return code, b""
        if m.member_epoch != generation_id:
            return Errors.ILLEGAL_GENERATION, b""
        if (protocol_type is not None and protocol_type != "consumer") or \
                (protocol_name is not None and protocol_name != m.classic.protocol_name):
            return Errors.INCONSISTENT_GROUP_PROTOCOL, b""
        if g.assignment_epoch > m.member_epoch and m.state.name != "UNREVOKED_PARTITIONS":
            self._arm_deadline(g, m, "did not rejoin within its rebalance timeout")
            return Errors.REBALANCE_IN_PROGRESS, b""
        self.c.runtime.cancel_timer(self.c.partition_for(g.group_id), ("cg-classic", g.group_id, m.member_id))
        self.groups._arm_session(g, m)
        return Errors.NONE, assignment_bytes(m.assigned, self.groups._topics(), m.classic.protocols)

    # ---- Heartbeat ----

    def heartbeat(self, g, member_id, instance_id, generation_id) -> int:
        """classicGroupHeartbeatToConsumerGroup."""
        from .consumer_group import MemberState
        m, code = self._member(g, member_id, instance_id)
        if code:
            return code
        if m.member_epoch != generation_id:
            return Errors.ILLEGAL_GENERATION
        self.groups._arm_session(g, m)
        behind = m.member_epoch < g.assignment_epoch or m.state is MemberState.UNREVOKED_PARTITIONS
        if not behind and m.state is MemberState.UNRELEASED_PARTITIONS:
            owners = g.owners(m.member_id)
            missing = [(tid, p) for tid, ps in g.target.get(m.member_id, {}).items() for p in ps
                       if p not in m.assigned.get(tid, ())]
            behind = not all(tp in owners for tp in missing)   # one was released: come and take it
        if behind:
            self._arm_deadline(g, m, "did not rejoin within its rebalance timeout")
            return Errors.REBALANCE_IN_PROGRESS
        return Errors.NONE

    # ---- LeaveGroup ----

    def leave(self, g, member_id, instance_id):
        """classicGroupLeaveToConsumerGroup for one member: its code, or a
        coroutine giving it once the records are written."""
        from .consumer_group import GroupSnapshot
        if instance_id is not None and not member_id:
            member_id = g.static.get(instance_id)
            if member_id is None:
                return Errors.UNKNOWN_MEMBER_ID
        m, code = self._member(g, member_id, instance_id, classic_only=False)
        if code:
            return code
        log.info("group %s: member %s left (LeaveGroup)", g.group_id, m.member_id)
        snap = GroupSnapshot(self.c, g.group_id, (m.member_id,))
        records = self.groups.fence_or_downgrade(g, m)
        return self.groups.write_result(snap, records, Errors.NONE, lambda code: code)

    # ---- helpers ----

    def _member(self, g, member_id, instance_id, classic_only=True):
        if instance_id is not None:
            sid = g.static.get(instance_id)
            if sid is None:
                return None, Errors.UNKNOWN_MEMBER_ID
            if sid != member_id:
                return None, Errors.FENCED_INSTANCE_ID
        m = g.members.get(member_id)
        if m is None or (classic_only and m.classic is None):
            return None, Errors.UNKNOWN_MEMBER_ID
        return m, Errors.NONE

    def _arm_deadline(self, g, m, why):
        """Kafka's sync and join timeouts: the member must sync (or rejoin)
        within its rebalance timeout, else it is fenced."""
        index = self.c.partition_for(g.group_id)
        key = ("cg-classic", g.group_id, m.member_id)
        rt = self.c.runtime
        if not rt.is_active(index) or rt.timer_deadline(index, key) is not None:
            return
        ms = max(m.rebalance_timeout_ms, 0)
        rt.schedule_timer(index, key, self.c.clock() + ms / 1000, self.groups._fence_timer, g.group_id,
                          m.member_id, f"classic member {why} ({ms} ms)")


def _join_error(code, member_id):
    return code, -1, None, "", member_id, []
