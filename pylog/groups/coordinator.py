"""The group coordinator: classic consumer groups (KAFKA-NOTES §5).

Each group is an explicit state machine:

    Empty --join--> PreparingRebalance --all joined / timeout--> CompletingRebalance
      ^                 ^        |                                       |
      |                 |        +--no members left--> Empty             | leader's SyncGroup
      |                 +------- member joins, leaves, dies, changes ----+--> Stable
      +---- last member leaves / expires (from any state) ; DeleteGroups --> Dead

JoinGroup and SyncGroup answers wait (futures) until the rebalance completes;
every other API answers at once. Membership follows Kafka: KIP-394 member ids
(MEMBER_ID_REQUIRED from JoinGroup v4), static members (group.instance.id:
a rejoin replaces the old member id, fences it with FENCED_INSTANCE_ID, and
causes no rebalance when the group is stable and the member's protocols are
unchanged), session timeouts (a member neither heartbeating nor waiting in a
join or sync is expelled), rebalance timeouts (members that do not rejoin are
dropped), group.initial.rebalance.delay.ms for a group's first rebalance.

Committed offsets and each group's metadata are appended to the group's
partition of __consumer_offsets before they are acknowledged, and replayed
on start-up. Empty groups' offsets expire after offsets.retention.minutes.

The coordinator runs on a CoordinatorRuntime (coordinator/runtime.py) and
sees its partitions only through a PartitionWriter (coordinator/writer.py):
it serves the groups whose partition of __consumer_offsets this broker leads
(a lone broker leads them all). Becoming leader of a partition replays it into
memory (a big one in slices, its groups' requests answered
COORDINATOR_LOAD_IN_PROGRESS meanwhile), losing it forgets its groups, and
every request for another group is answered NOT_COORDINATOR. Each request
about a group runs as an event on the runtime's queue of its partition. Offset commits and the leader's assignment are
answered only once the partition's high watermark covers them (acks=all), with
Kafka's error mapping (GroupMetadataManager): NOT_ENOUGH_REPLICAS(_AFTER_APPEND)
-> COORDINATOR_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER -> NOT_COORDINATOR.
Timers (sessions, join and sync deadlines, offset retention) are runtime
timers at each group's next deadline, not a polling tick.

Invariants: a group in Stable or CompletingRebalance has a leader among its
members and a protocol every member supports; generation_id grows by one per
completed rebalance; pending (KIP-394) members are not members.

Runs on the broker's event loop only; no locking. (The embedded store is a
broker without a listener: it runs this coordinator on its broker's loop too.)
"""
from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid

from ..coordinator.runtime import CoordinatorRuntime, Refused, operation_error
from ..errors import NotLeaderOrFollowerError, PylogError
from ..protocol.group_records import GroupMetadataValue
from ..protocol.error_codes import Errors
from ..protocol.errors import ProtocolError
from . import offsets_topic as ot
from .consumer_group import ConsumerGroup, ConsumerGroups
from .offsets_topic import OffsetAndMetadata

log = logging.getLogger("pylog.groups")


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


def _now_ms() -> int:
    return int(time.time() * 1000)


class Member:
    __slots__ = ("member_id", "group_instance_id", "client_id", "client_host", "session_timeout_ms",
                 "rebalance_timeout_ms", "protocol_type", "protocols", "assignment", "join_future",
                 "sync_future", "last_heartbeat")

    def __init__(self, member_id, group_instance_id, client_id, client_host, session_timeout_ms,
                 rebalance_timeout_ms, protocol_type, protocols):
        self.member_id = member_id
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.protocol_type = protocol_type
        self.protocols = protocols      # [(name, metadata bytes)] in preference order
        self.assignment = b""
        self.join_future = None         # set while its JoinGroup waits
        self.sync_future = None         # set while its SyncGroup waits
        self.last_heartbeat = time.monotonic()   # the runtime's clock

    def metadata_for(self, protocol):
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""

    def same_protocols(self, protocols) -> bool:
        return [(n, bytes(m)) for n, m in self.protocols] == [(n, bytes(m)) for n, m in protocols]


class Group:
    def __init__(self, group_id):
        self.group_id = group_id
        self.state = GroupState.EMPTY
        self.generation_id = 0
        self.protocol_type = None
        self.protocol_name = None
        self.leader_id = None
        self.members: dict[str, Member] = {}
        self.pending: dict[str, float] = {}        # KIP-394 member ids -> expiry (monotonic)
        self.static: dict[str, str] = {}           # group_instance_id -> member_id
        self.offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
        self.join_deadline = None                  # monotonic: when the join phase ends at the latest
        self.initial_delay_until = None            # first rebalance: wait this long for more members
        self.sync_deadline = None
        self.state_timestamp = _now_ms()
        self.empty_since = _now_ms()

    def transition(self, state: GroupState):
        if state is not self.state:
            log.info("group %s: %s -> %s (generation %d)", self.group_id, self.state.value, state.value,
                     self.generation_id)
            self.state = state
            self.state_timestamp = _now_ms()
            if state is GroupState.EMPTY:
                self.empty_since = self.state_timestamp

    def all_joined(self) -> bool:
        return all(m.join_future is not None for m in self.members.values())

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def supports(self, protocol_type, protocols) -> bool:
        """Whether a member with these protocols may join: same protocol type,
        and at least one protocol every member (it included) supports."""
        if not self.members:
            return True
        if protocol_type != self.protocol_type:
            return False
        common = {n for n, _ in protocols}
        for m in self.members.values():
            common &= {n for n, _ in m.protocols}
        return bool(common)

    def select_protocol(self) -> str:
        common = set.intersection(*({n for n, _ in m.protocols} for m in self.members.values()))
        votes = {}
        for m in self.members.values():
            first = next(n for n, _ in m.protocols if n in common)
            votes[first] = votes.get(first, 0) + 1
        # Most votes; ties go to the first member's preference order, as stable as Kafka's.
        order = [n for n, _ in next(iter(self.members.values())).protocols if n in common]
        return max(order, key=lambda n: (votes.get(n, 0), -order.index(n)))


class _MarkerWrite:
    """A COMMIT/ABORT marker appended to an offsets partition at offset, not
    yet known committed, with the producer's offsets it completes. Event-loop
    thread only, as the coordinator."""

    __slots__ = ("offset", "producer_id", "pending", "committed")

    def __init__(self, offset: int, producer_id: int, pending: dict, committed: bool):
        self.offset, self.producer_id, self.pending, self.committed = offset, producer_id, pending, committed


class GroupCoordinator:
    """The group state machine, run by a CoordinatorRuntime over the
    partitions of __consumer_offsets this broker leads (coordinator/runtime.py).
    It reaches its partitions only through the runtime and the narrow
    PartitionWriter (coordinator/writer.py), never the broker.

    Threads: the event loop's thread only, as the runtime (the embedded
    store's too: it is a broker core on its own loop thread).
    """

    def __init__(self, config, writer):
        self.config = config
        self.writer = writer
        self.groups: dict[str, Group] = {}
        self.completed_rebalances = 0   # Kafka's group-completed-rebalance-count (pylog/metrics)
        c = config
        self.num_partitions = c.get("offsets.topic.num.partitions")
        self.min_session = c.get("group.min.session.timeout.ms")
        self.max_session = c.get("group.max.session.timeout.ms")
        self.initial_delay_ms = c.get("group.initial.rebalance.delay.ms")
        self.max_size = c.get("group.max.size")
        self.metadata_max_bytes = c.get("offset.metadata.max.bytes")
        self.retention_ms = c.get("offsets.retention.minutes") * 60000
        self.retention_check_ms = c.get("offsets.retention.check.interval.ms")
        self.replication_factor = c.get("offsets.topic.replication.factor")
        self.runtime = CoordinatorRuntime(ot.TOPIC, writer, self,
                                          write_timeout_ms=c.get("offsets.commit.timeout.ms"))
        self.clock = self.runtime.clock
        # TxnOffsetCommit: offsets written but not yet committed, per offsets
        # partition and producer id: {index: {producer_id: {(group, topic, partition): OffsetAndMetadata}}}.
        self.txn_offsets: dict[int, dict[int, dict]] = {}
        # Markers appended here not yet known committed: {index: [_MarkerWrite]};
        # their offsets still count as pending (OffsetFetch require_stable).
        self.txn_completing: dict[int, list] = {}
        self._settling: set = set()     # the waits of timed-out markers (_settle_when_committed)
        # OffsetCommits and COMMIT markers' offsets appended and not yet known
        # committed, in log order: {group id: [_WrittenOffsets]}. They apply
        # once the high watermark passes them, also after their request was
        # answered with a timeout.
        self.written_offsets: dict[str, list] = {}
        # KIP-848 groups share self.groups with the classic ones (one id, one group).
        self.consumer = ConsumerGroups(self, config)
        # The share groups (pylog/share/groups.py, set by pylog/share/api.py): kept
        # apart, yet an id is one group of one type, so each side refuses the other's.
        self.share = None

    # ---- start-up and shutdown ----

    def start(self):
        """Load the partitions led here now (a lone broker: all of them)."""
        self.load()

    def load(self):
        """Replay every partition of the topic this broker leads (idempotent)."""
        self.runtime.load_led_partitions()

    async def stop(self):
        await self.runtime.stop()
        for g in self.groups.values():
            for m in () if isinstance(g, ConsumerGroup) else g.members.values():
                for fut in (m.join_future, m.sync_future):
                    if fut is not None and not fut.done():
                        fut.cancel()

    # ---- the shard: what the runtime drives ----

    def replay(self, index: int, rec):
        if getattr(rec, "producer_id", -1) >= 0:   # transactional (batches.TxnRecordView)
            self._replay_transactional(index, rec)
            return
        out = ot.decode(rec, f"{ot.TOPIC}-{index}")
        if out is None:
            return
        kind, key, value = out
        if kind == "consumer":
            self.consumer.replay(key[0], key[1], value)
        elif kind == "share":
            if self.share is not None:
                self.share.replay(key[0], key[1], value)
        elif kind == "offset":
            group_id, topic, partition = key
            g = self._group(group_id, create=value is not None)
            if g is None:
                return
            if value is None:
                g.offsets.pop((topic, partition), None)
            else:
                value.record_offset = rec.offset
                g.offsets[(topic, partition)] = value
        elif value is None:
            # Offsets outlive the group's metadata (a conversion to a consumer
            # group writes this tombstone and keeps them), as in Kafka.
            g = self.groups.get(key)
            if isinstance(g, ConsumerGroup):
                pass
            elif g is not None and g.offsets:
                self.groups[key] = Group(key)
                self.groups[key].offsets = g.offsets
            else:
                self.groups.pop(key, None)
        else:
            self._restore_group(key, value)

    def loaded(self, index: int):
        for gid in [gid for gid, g in self.groups.items() if self.partition_for(gid) == index]:
            g = self.groups[gid]
            if isinstance(g, ConsumerGroup):
                self.consumer.arm_all(g)   # empty ones stay: their epochs go on
            elif not g.members and not g.offsets:
                del self.groups[gid]
            else:
                self._arm(g)
        self._arm_retention(index)
        if self.share is not None:
            self.share.loaded(index)

    def unloaded(self, index: int):
        if self.share is not None:
            self.share.unloaded(index)
        self._forget_partition(index, Errors.NOT_COORDINATOR)
        for gid in [gid for gid in self.written_offsets if self.partition_for(gid) == index]:
            del self.written_offsets[gid]    # the next load replays what was committed
        self.txn_offsets.pop(index, None)
        self.txn_completing.pop(index, None)

    # ---- leadership of the topic's partitions (the replica manager tells) ----

    def on_become_leader(self, index: int):
        self.runtime.on_become_leader(index)

    def on_resign(self, index: int):
        self.runtime.on_resign(index)

    def offsets_partition_count(self) -> int:
        """The topic's partition count (the configured one until it exists)."""
        return self.writer.partition_count(ot.TOPIC) or self.num_partitions

    def coordinator_error(self, group_id) -> int:
        """NONE when this broker coordinates group_id (its partition is loaded
        here); COORDINATOR_LOAD_IN_PROGRESS while its partition is being
        replayed here; NOT_COORDINATOR when another broker does (or should)."""
        if self.writer.partition_count(ot.TOPIC) is None:
            self.ensure_offsets_topic()
        return self.runtime.partition_error(self.partition_for(group_id))

    def _forget_partition(self, index: int, code: int) -> int:
        gone = [g for gid, g in self.groups.items() if self.partition_for(gid) == index]
        for g in gone:
            for mm in () if isinstance(g, ConsumerGroup) else g.members.values():
                for fut in (mm.join_future, mm.sync_future):
                    if fut is not None and not fut.done():
                        fut.set_result(code)
                mm.join_future = mm.sync_future = None
            del self.groups[g.group_id]
        return len(gone)

    def coordinator_for(self, group_id):
        """FindCoordinator: (error, node_id, host, port) of the leader of the
        group's partition; COORDINATOR_NOT_AVAILABLE while the topic does not
        exist (its creation is then asked for) or the partition has no live
        leader."""
        if self.writer.partition_count(ot.TOPIC) is None:
            self.ensure_offsets_topic()
            if self.writer.partition_count(ot.TOPIC) is None:
                return Errors.COORDINATOR_NOT_AVAILABLE, -1, "", -1
        ep = self.writer.leader_endpoint(ot.TOPIC, self.partition_for(group_id))
        if ep is None:
            return Errors.COORDINATOR_NOT_AVAILABLE, -1, "", -1
        return (Errors.NONE, *ep)

    def offsets_topic_configs(self) -> dict:
        return {"cleanup.policy": "compact", "segment.bytes": str(self.config.get("offsets.topic.segment.bytes")),
                "max.message.bytes": str(self.config.get("socket.request.max.bytes"))}

    def _restore_group(self, group_id, v: GroupMetadataValue):
        old = self.groups.get(group_id)
        if isinstance(old, ConsumerGroup):   # converted back to classic (JoinGroup on an empty one)
            self.groups[group_id] = Group(group_id)
            self.groups[group_id].offsets = old.offsets
        g = self._group(group_id, create=True)
        g.generation_id = v.generation
        g.protocol_type = v.protocol_type or None
        g.protocol_name = v.protocol
        g.leader_id = v.leader
        g.members = {}
        g.static = {}
        for mm in v.members:
            m = Member(mm.member_id, mm.group_instance_id, mm.client_id, mm.client_host, mm.session_timeout,
                       mm.rebalance_timeout if mm.rebalance_timeout >= 0 else mm.session_timeout,
                       g.protocol_type, [(g.protocol_name, bytes(mm.subscription))])
            m.assignment = bytes(mm.assignment)
            g.members[m.member_id] = m
            if m.group_instance_id:
                g.static[m.group_instance_id] = m.member_id
        # Members get a fresh session timeout to find the restarted coordinator.
        g.state = GroupState.STABLE if g.members else GroupState.EMPTY
        if v.current_state_timestamp > 0:
            g.state_timestamp = v.current_state_timestamp
            if not g.members:
                g.empty_since = v.current_state_timestamp

    # ---- the offsets topic ----

    def partition_for(self, group_id: str) -> int:
        # The topic's real partition count (it may predate a config change):
        # the placement must stay what it was when the offsets were written.
        return ot.partition_for(group_id, self.offsets_partition_count())

    def ensure_offsets_topic(self):
        """Ask for the topic if it does not exist (a lone broker has it at
        once and loads its partitions; a cluster's leaders load them as
        leadership arrives)."""
        if self.writer.partition_count(ot.TOPIC) is None:
            self.writer.create_topic(ot.TOPIC, self.num_partitions, self.replication_factor,
                                     self.offsets_topic_configs())
            self.load()

    def _store(self, group_id, keys, values):
        """Append, as an event of the group's partition; the offset of the last
        record written. Raises NotCoordinatorError when the partition is not
        loaded here."""
        index = self.partition_for(group_id)
        if not self.runtime.is_active(index):
            self.ensure_offsets_topic()
        return self.runtime.append(index, keys, values)

    async def _wait_committed(self, group_id, last_offset) -> int:
        """After _store: wait until the high watermark covers last_offset.
        The error code as Kafka's runtime maps it: 0, NOT_COORDINATOR
        (leadership lost) or COORDINATOR_NOT_AVAILABLE (timed out)."""
        return _store_error(await self._wait_committed_raw(group_id, last_offset))

    async def _wait_committed_raw(self, group_id, last_offset) -> int:
        """After _store: the write's own outcome (0, or the partition's error)."""
        return await self.runtime.committed(self.partition_for(group_id), last_offset)

    def _store_group(self, g: Group, assignment: dict | None = None):
        """Append g's GroupMetadata record; assignment (member id -> bytes)
        replaces the members' current ones in it (a leader's SyncGroup)."""
        members = [GroupMetadataValue.MemberMetadata(
            member_id=m.member_id, group_instance_id=m.group_instance_id, client_id=m.client_id,
            client_host=m.client_host, rebalance_timeout=m.rebalance_timeout_ms,
            session_timeout=m.session_timeout_ms, subscription=m.metadata_for(g.protocol_name),
            assignment=m.assignment if assignment is None else assignment.get(m.member_id, b""))
            for m in g.members.values()]
        value = GroupMetadataValue(protocol_type=g.protocol_type or "", generation=g.generation_id,
                                   protocol=g.protocol_name, leader=g.leader_id,
                                   current_state_timestamp=g.state_timestamp, members=members)
        return self._store(g.group_id, [ot.group_key(g.group_id)], [ot.group_value(value)])

    # ---- lookups ----

    def is_share_group(self, group_id) -> bool:
        return self.share is not None and self.share.has_group(group_id)

    def _group(self, group_id, create=False):
        g = self.groups.get(group_id)
        if g is None and create:
            g = self.groups[group_id] = Group(group_id)
        return g

    # ---- JoinGroup ----

    async def join_group(self, version, group_id, member_id, group_instance_id, client_id, client_host,
                         session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols, reason=None):
        """Returns (error_code, generation_id, protocol_name, leader, member_id,
        members), and a seventh item, skip_assignment, when it is true (a
        static leader's return, JoinGroup v9). reason (v8+) is the client's,
        logged with the rebalance it causes."""
        because = f" (client reason: {reason})" if reason else ""
        if not group_id:
            return _join_error(Errors.INVALID_GROUP_ID, member_id)
        if self.is_share_group(group_id):
            return _join_error(Errors.INCONSISTENT_GROUP_PROTOCOL, "")   # Kafka's classicGroupJoin
        if not self.min_session <= session_timeout_ms <= self.max_session:
            return _join_error(Errors.INVALID_SESSION_TIMEOUT, member_id)
        if not protocols or not protocol_type:
            return _join_error(Errors.INCONSISTENT_GROUP_PROTOCOL, member_id)
        self.ensure_offsets_topic()
        g = self.groups.get(group_id)
        if isinstance(g, ConsumerGroup) and g.members:
            code, answer = await self._maybe_downgrade_on_replace(
                g, member_id, group_instance_id, client_id, client_host, session_timeout_ms, rebalance_timeout_ms,
                protocol_type, protocols)
            if code:
                return _join_error(code, member_id)
            if answer is not None:
                return answer
            g = self.groups.get(group_id)
        if isinstance(g, ConsumerGroup):
            if g.members:
                # A classic member of a consumer group (online migration, classic_members.py).
                result = self.consumer.classic.join(version, g, member_id, group_instance_id, client_id,
                                                    client_host, session_timeout_ms, rebalance_timeout_ms,
                                                    protocol_type, protocols)
                return (await result) if asyncio.iscoroutine(result) else result
            self._consumer_to_classic(g)
        g = self._group(group_id, create=not member_id)
        if g is None or g.state is GroupState.DEAD:
            return _join_error(Errors.UNKNOWN_MEMBER_ID if member_id else Errors.COORDINATOR_NOT_AVAILABLE, member_id)
        if not g.supports(protocol_type, protocols):
            return _join_error(Errors.INCONSISTENT_GROUP_PROTOCOL, member_id)
        protocols = [(n, bytes(md)) for n, md in protocols]

        if not member_id:
            new_id = f"{group_instance_id or client_id}-{uuid.uuid4()}"
            if group_instance_id is not None:
                old_id = g.static.get(group_instance_id)
                if old_id is not None and old_id in g.members:
                    return await self._rejoin_static(version, g, old_id, new_id, client_id, client_host,
                                                     session_timeout_ms, rebalance_timeout_ms, protocols)
            elif version >= 4:
                # KIP-394: hand out the id first; the member joins with it.
                g.pending[new_id] = self.clock() + session_timeout_ms / 1000
                self._arm(g)
                return _join_error(Errors.MEMBER_ID_REQUIRED, new_id)
            if self.max_size and len(g.members) >= self.max_size:
                return _join_error(Errors.GROUP_MAX_SIZE_REACHED, "")
            m = Member(new_id, group_instance_id, client_id, client_host, session_timeout_ms,
                       rebalance_timeout_ms, protocol_type, protocols)
            return await self._add_and_wait(g, m, because)

        if member_id in g.pending:
            del g.pending[member_id]
            if self.max_size and len(g.members) >= self.max_size:
                return _join_error(Errors.GROUP_MAX_SIZE_REACHED, member_id)
            m = Member(member_id, group_instance_id, client_id, client_host, session_timeout_ms,
                       rebalance_timeout_ms, protocol_type, protocols)
            return await self._add_and_wait(g, m, because)

        m = g.members.get(member_id)
        if m is None:
            if group_instance_id is not None and group_instance_id in g.static:
                return _join_error(Errors.FENCED_INSTANCE_ID, member_id)
            return _join_error(Errors.UNKNOWN_MEMBER_ID, member_id)
        if group_instance_id is not None and g.static.get(group_instance_id) != member_id:
            return _join_error(Errors.FENCED_INSTANCE_ID, member_id)
        m.last_heartbeat = self.clock()
        if g.state is GroupState.PREPARING_REBALANCE:
            m.protocols = protocols
            m.session_timeout_ms, m.rebalance_timeout_ms = session_timeout_ms, rebalance_timeout_ms
            return await self._wait_join(g, m)
        if g.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE) and m.same_protocols(protocols) \
                and (g.state is GroupState.COMPLETING_REBALANCE or member_id != g.leader_id):
            # Nothing changed: the member only lost its answer; give it again.
            members = self._members_for(g) if member_id == g.leader_id else []
            return Errors.NONE, g.generation_id, g.protocol_name, g.leader_id, member_id, members
        m.protocols = protocols
        m.session_timeout_ms, m.rebalance_timeout_ms = session_timeout_ms, rebalance_timeout_ms
        self._prepare_rebalance(g, f"member {member_id} rejoined with new metadata or as leader{because}")
        return await self._wait_join(g, m)

    async def _maybe_downgrade_on_replace(self, g: ConsumerGroup, member_id, group_instance_id, *join) -> tuple:
        """A classic static member replacing the consumer group's last
        consumer-protocol member: the group turns classic first (its records
        written before the join goes on; undone if they cannot be appended). (the
        write's error else 0, the join's answer when the conversion gave it
        else None)."""
        from .consumer_group import GroupSnapshot
        snap = GroupSnapshot(self, g.group_id)
        out = self.consumer.classic.downgrade_on_replace(g, member_id, group_instance_id, *join)
        if not out:
            return Errors.NONE, None
        records, answer = out
        snap.done(self)
        try:
            last = self._store(g.group_id, [k for k, _ in records], [v for _, v in records])
        except (PylogError, OSError) as e:
            # Not in the log: undone (once appended it stays, see write_result).
            snap.restore(self.consumer)
            return _group_store_error(getattr(e, "error_code", -1)), None
        code = await self._wait_committed_raw(g.group_id, last)
        if code:
            return _group_store_error(code), None
        return Errors.NONE, answer

    def _consumer_to_classic(self, g: ConsumerGroup):
        """An empty consumer group becomes a classic one (Kafka converts
        empty groups whatever the policy): its records go, its offsets stay."""
        records = self.consumer.delete_records(g)
        self._store(g.group_id, [k for k, _ in records], [v for _, v in records])
        cg = self.groups[g.group_id] = Group(g.group_id)
        cg.offsets = g.offsets
        log.info("group %s: empty consumer group converted to a classic group", g.group_id)

    async def _rejoin_static(self, version, g, old_id, new_id, client_id, client_host, session_timeout_ms,
                             rebalance_timeout_ms, protocols):
        old = g.members.pop(old_id)
        m = Member(new_id, old.group_instance_id, client_id, client_host, session_timeout_ms,
                   rebalance_timeout_ms, old.protocol_type, protocols)
        m.assignment = old.assignment
        g.members[new_id] = m
        g.static[old.group_instance_id] = new_id
        for fut in (old.join_future, old.sync_future):
            if fut is not None and not fut.done():
                fut.set_result(Errors.FENCED_INSTANCE_ID)
        answered_leader = g.leader_id
        if g.leader_id == old_id:
            g.leader_id = new_id
        log.info("group %s: static member %s rejoined as %s (was %s)", g.group_id, old.group_instance_id,
                 new_id, old_id)
        if g.state is GroupState.STABLE and g.select_protocol() == g.protocol_name:
            # KIP-345: a known static member coming back changes nothing unless
            # the group's protocol would change. Before JoinGroup v9 the answer
            # names the previous leader id and no members, so a returning
            # leader does not compute an assignment a stable group would not
            # hand out anyway; from v9 (KIP-814) a returning leader is named
            # leader, gets the members, and skip_assignment tells it not to
            # assign (it still learns the members, to watch their topics).
            # As Kafka, the answer waits until the new member id is stored;
            # if that fails, the old id is the instance's again.
            generation = g.generation_id
            try:
                code = await self._wait_committed_raw(g.group_id, self._store_group(g))
            except (PylogError, OSError) as e:
                code = getattr(e, "error_code", -1)
            if code:
                code = _group_store_error(code)
                log.warning("group %s: static member %s not stored (error %d): back to %s", g.group_id,
                            old.group_instance_id, code, old_id)
                if self.groups.get(g.group_id) is g and g.members.get(new_id) is m and \
                        g.generation_id == generation:
                    del g.members[new_id]
                    g.members[old_id] = old
                    g.static[old.group_instance_id] = old_id
                    if g.leader_id == new_id:
                        g.leader_id = old_id
                return code, g.generation_id, g.protocol_name, answered_leader, "", []
            if version >= 9:
                leader = new_id == g.leader_id
                return (Errors.NONE, g.generation_id, g.protocol_name, g.leader_id, new_id,
                        self._members_for(g) if leader else [], leader)
            return Errors.NONE, g.generation_id, g.protocol_name, answered_leader, new_id, []
        if g.state is GroupState.PREPARING_REBALANCE:
            return await self._wait_join(g, m)
        self._prepare_rebalance(g, f"static member {old.group_instance_id} rejoined with new metadata")
        return await self._wait_join(g, m)

    async def _add_and_wait(self, g: Group, m: Member, because=""):
        if not g.members:
            g.protocol_type = m.protocol_type
        g.members[m.member_id] = m
        if m.group_instance_id is not None:
            g.static[m.group_instance_id] = m.member_id
        if g.state is GroupState.PREPARING_REBALANCE and g.initial_delay_until is not None:
            # Still gathering the first members: wait a little longer for more (bounded).
            g.initial_delay_until = min(self.clock() + self.initial_delay_ms / 1000, g.join_deadline)
        self._prepare_rebalance(g, f"member {m.member_id} joined{because}")
        return await self._wait_join(g, m)

    async def _wait_join(self, g: Group, m: Member):
        loop = asyncio.get_running_loop()
        if m.join_future is not None and not m.join_future.done():
            m.join_future.set_result(Errors.REBALANCE_IN_PROGRESS)  # superseded by this request
        fut = m.join_future = loop.create_future()
        self._maybe_complete_join(g)
        self._arm(g)
        result = await fut
        if isinstance(result, int):
            return _join_error(result, m.member_id)
        return result

    def _members_for(self, g: Group):
        return [(m.member_id, m.group_instance_id, m.metadata_for(g.protocol_name)) for m in g.members.values()]

    def _prepare_rebalance(self, g: Group, why: str):
        if g.state is GroupState.PREPARING_REBALANCE:
            return
        if g.state is GroupState.COMPLETING_REBALANCE:
            # Members waiting in SyncGroup must rejoin.
            for m in g.members.values():
                if m.sync_future is not None and not m.sync_future.done():
                    m.sync_future.set_result(Errors.REBALANCE_IN_PROGRESS)
                m.sync_future = None
        now = self.clock()
        first = g.state is GroupState.EMPTY
        g.join_deadline = now + max(g.rebalance_timeout_ms(), 1) / 1000
        g.initial_delay_until = now + self.initial_delay_ms / 1000 if first and self.initial_delay_ms > 0 else None
        if g.initial_delay_until is not None:
            g.join_deadline = max(g.join_deadline, g.initial_delay_until)
        log.info("group %s: preparing rebalance: %s", g.group_id, why)
        g.transition(GroupState.PREPARING_REBALANCE)
        self._arm(g)

    def _maybe_complete_join(self, g: Group, deadline_passed=False):
        if g.state is not GroupState.PREPARING_REBALANCE:
            return
        now = self.clock()
        if g.initial_delay_until is not None and now < g.initial_delay_until and not deadline_passed:
            return
        if not g.all_joined() and not deadline_passed and now < g.join_deadline:
            return
        # Members that did not rejoin in time are out.
        for mid in [mid for mid, m in g.members.items() if m.join_future is None]:
            self._remove_member(g, mid, "did not rejoin within the rebalance timeout", rebalance=False)
        g.initial_delay_until = None
        g.generation_id += 1
        if not g.members:
            g.protocol_name = g.leader_id = None
            g.transition(GroupState.EMPTY)
            self._store_group(g)
            return
        g.protocol_name = g.select_protocol()
        if g.leader_id not in g.members:
            g.leader_id = next(iter(g.members))
        g.transition(GroupState.COMPLETING_REBALANCE)
        g.sync_deadline = now + max(g.rebalance_timeout_ms(), 1) / 1000
        members = self._members_for(g)
        for m in g.members.values():
            fut, m.join_future = m.join_future, None
            m.last_heartbeat = now
            if fut is not None and not fut.done():
                fut.set_result((Errors.NONE, g.generation_id, g.protocol_name, g.leader_id, m.member_id,
                                members if m.member_id == g.leader_id else []))
        self._arm(g)

    # ---- SyncGroup ----

    async def sync_group(self, group_id, generation_id, member_id, group_instance_id, assignments,
                         protocol_type=None, protocol_name=None):
        """Returns (error_code, assignment bytes). protocol_type and
        protocol_name (SyncGroup v5, KIP-559), when given, must be the group's:
        INCONSISTENT_GROUP_PROTOCOL otherwise."""
        g = self.groups.get(group_id)
        if isinstance(g, ConsumerGroup):
            return self.consumer.classic.sync(g, member_id, group_instance_id, generation_id, protocol_type,
                                              protocol_name)
        if g is None or g.state is GroupState.DEAD:
            return Errors.UNKNOWN_MEMBER_ID, b""
        m = g.members.get(member_id)
        if m is None:
            return (Errors.FENCED_INSTANCE_ID if group_instance_id in g.static else Errors.UNKNOWN_MEMBER_ID), b""
        if group_instance_id is not None and g.static.get(group_instance_id) != member_id:
            return Errors.FENCED_INSTANCE_ID, b""
        if generation_id != g.generation_id:
            return Errors.ILLEGAL_GENERATION, b""
        if _inconsistent(protocol_type, g.protocol_type) or _inconsistent(protocol_name, g.protocol_name):
            return Errors.INCONSISTENT_GROUP_PROTOCOL, b""
        m.last_heartbeat = self.clock()
        if g.state is GroupState.PREPARING_REBALANCE:
            return Errors.REBALANCE_IN_PROGRESS, b""
        if g.state is GroupState.STABLE:
            return Errors.NONE, m.assignment
        if g.state is GroupState.EMPTY:
            return Errors.UNKNOWN_MEMBER_ID, b""
        # CompletingRebalance: wait for the leader's assignment. A SyncGroup sent
        # again by the same member supersedes the earlier one, which is answered.
        if m.sync_future is not None and not m.sync_future.done():
            m.sync_future.set_result(Errors.REBALANCE_IN_PROGRESS)
        fut = m.sync_future = asyncio.get_running_loop().create_future()
        if member_id == g.leader_id:
            # Kafka's order (GroupMetadataManager.classicGroupSyncGroup): the
            # record carries the leader's assignment (members it left out get
            # an empty one); the members get it, and the group turns Stable,
            # only once the write is committed. Until then the group stays in
            # CompletingRebalance and every member's SyncGroup waits.
            given = {mid: bytes(a) for mid, a in assignments}
            assignment = {mid: given.get(mid, b"") for mid in g.members}
            generation = g.generation_id
            try:
                last = self._store_group(g, assignment)
            except (PylogError, OSError) as e:
                log.error("group %s: storing the assignment failed: %s", g.group_id, e)
                code = _group_store_error(getattr(e, "error_code", -1))
                self._assignment_failed(g, code)
                return code, b""
            code = await self._wait_committed_raw(group_id, last)
            # A rebalance, an unload or a newer SyncGroup meanwhile answered
            # the waiting members already.
            current = self.groups.get(group_id) is g and g.generation_id == generation and \
                g.state is GroupState.COMPLETING_REBALANCE
            if current and code:
                code = _group_store_error(code)
                log.warning("group %s: the assignment was not stored: error %d", g.group_id, code)
                self._assignment_failed(g, code)
                return code, b""
            if current:
                for mid, mm in g.members.items():
                    mm.assignment = assignment.get(mid, b"")
                g.transition(GroupState.STABLE)
                self.completed_rebalances += 1
                g.sync_deadline = None
                for mm in g.members.values():
                    f, mm.sync_future = mm.sync_future, None
                    if f is not None and not f.done():
                        f.set_result((Errors.NONE, mm.assignment))
                self._arm(g)
        else:
            self._arm(g)
        result = await fut
        if isinstance(result, int):
            return result, b""
        return result

    def _assignment_failed(self, g: Group, code: int):
        """Kafka's answer to a failed assignment write: every member's
        assignment is reset to empty, every waiting SyncGroup gets the error,
        and the group prepares a rebalance (or completes the join when it can
        no longer rebalance)."""
        for mm in g.members.values():
            mm.assignment = b""
            f, mm.sync_future = mm.sync_future, None
            if f is not None and not f.done():
                f.set_result(code)
        self._prepare_rebalance(g, f"error {code} when storing the group assignment")
        self._maybe_complete_join(g)

    # ---- Heartbeat / LeaveGroup ----

    def heartbeat(self, group_id, generation_id, member_id, group_instance_id):
        g = self.groups.get(group_id)
        if isinstance(g, ConsumerGroup):
            return self.consumer.classic.heartbeat(g, member_id, group_instance_id, generation_id)
        if g is None or g.state in (GroupState.DEAD, GroupState.EMPTY):
            return Errors.UNKNOWN_MEMBER_ID
        m = g.members.get(member_id)
        if m is None:
            return Errors.FENCED_INSTANCE_ID if group_instance_id in g.static else Errors.UNKNOWN_MEMBER_ID
        if group_instance_id is not None and g.static.get(group_instance_id) != member_id:
            return Errors.FENCED_INSTANCE_ID
        if generation_id != g.generation_id:
            return Errors.ILLEGAL_GENERATION
        m.last_heartbeat = self.clock()
        self._arm(g)
        if g.state is GroupState.PREPARING_REBALANCE:
            return Errors.REBALANCE_IN_PROGRESS
        return Errors.NONE

    def leave_group(self, group_id, member_id, group_instance_id=None, reason=None):
        """One member's LeaveGroup, in Kafka's order of checks: an empty
        member id with a group.instance.id removes that static member (how an
        admin removes one, KIP-345), a pending member id leaves at once, any
        other must be the member (and the instance's member). A consumer
        group's member: its code, or a coroutine giving it once written."""
        g = self.groups.get(group_id)
        if isinstance(g, ConsumerGroup):
            return self.consumer.classic.leave(g, member_id, group_instance_id)
        if g is None or g.state is GroupState.DEAD:
            return Errors.UNKNOWN_MEMBER_ID
        why = f"left the group (reason: {reason or 'not provided'})"
        if not member_id:
            static_id = g.static.get(group_instance_id) if group_instance_id is not None else None
            if static_id is None or static_id not in g.members:
                return Errors.UNKNOWN_MEMBER_ID
            member_id = static_id
        elif member_id in g.pending:
            del g.pending[member_id]
            log.info("group %s: pending member %s %s", g.group_id, member_id, why)
            return Errors.NONE
        else:
            code = _member_error(g, member_id, group_instance_id)
            if code:
                return code
        self._remove_member(g, member_id, why)
        self._arm(g)
        return Errors.NONE

    def _remove_member(self, g: Group, member_id: str, why: str, rebalance=True):
        m = g.members.pop(member_id, None)
        if m is None:
            return
        log.info("group %s: member %s %s", g.group_id, member_id, why)
        if m.group_instance_id is not None and g.static.get(m.group_instance_id) == member_id:
            del g.static[m.group_instance_id]
        for fut in (m.join_future, m.sync_future):
            if fut is not None and not fut.done():
                fut.set_result(Errors.UNKNOWN_MEMBER_ID)
        if not rebalance:
            return
        if g.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(g, f"member {member_id} {why}")
        self._maybe_complete_join(g)

    # ---- offsets ----

    def commit_offsets_replicated(self, group_id, generation_id, member_id, group_instance_id, offsets,
                                  version=8):
        """An OffsetCommit: the offsets are appended now and answered (and
        cached) once the offsets partition's high watermark covers them. The
        result ({(topic, partition): error_code}) when that is already so (a
        lone replica), else a coroutine that waits for it; Refused(result)
        when the group's checks refuse it (Kafka's commitOffset throws) or
        every partition's topic is unknown (Kafka's KafkaApis answers those
        before the coordinator)."""
        self.ensure_offsets_topic()  # before the checks: loading the partition resets its groups
        result, g, keys, values, accepted = self._check_commit(
            group_id, generation_id, member_id, group_instance_id, offsets, version)
        if not keys:
            if g is None or all(c == Errors.UNKNOWN_TOPIC_OR_PARTITION for c in result.values()):
                return Refused(result)
            return result
        index = self.partition_for(group_id)
        tps = [tp for tp, _ in accepted]
        try:
            last = self._store(group_id, keys, values)
        except (PylogError, OSError) as e:
            return _answer_all(result, tps, _store_error(getattr(e, "error_code", -1)))
        _stamp(accepted, last)
        w = _WrittenOffsets(last, accepted, g.offsets)
        self.written_offsets.setdefault(group_id, []).append(w)
        code = self.runtime.committed_now(index, last)
        if code is not None:
            return _answer_all(result, tps, self._commit_outcome(group_id, w, code))
        return self._commit_wait(result, group_id, w, tps)

    async def _commit_wait(self, result, group_id, w, tps):
        code = await self._wait_committed_raw(group_id, w.last)
        return _answer_all(result, tps, self._commit_outcome(group_id, w, code))

    def _commit_outcome(self, group_id, w, code) -> int:
        """A commit's write is decided for its request (code): its answer.
        Committed: its offsets apply (after every commit before it). Timed
        out: its records stay in the log, as Kafka keeps a timed-out write,
        and its offsets apply once they commit (a later commit's success, a
        read of the group's offsets, or one more wait finds that)."""
        if code == Errors.NONE:
            self._apply_written(group_id, w.last)
            # Unloaded, or the group replaced meanwhile: the next load replays it.
            return Errors.NONE if w.applied else Errors.NOT_COORDINATOR
        if code == Errors.REQUEST_TIMED_OUT:
            asyncio.ensure_future(self._apply_when_committed(group_id, w))
        else:
            self._drop_written(group_id, w)   # leadership lost: the partition unloads
        return _store_error(code)

    async def _apply_when_committed(self, group_id, w):
        if await self._wait_committed_raw(group_id, w.last) == Errors.NONE:
            self._apply_written(group_id, w.last)

    def _apply_written(self, group_id, upto: int):
        """Apply the written commits of group_id up to offset upto (the high
        watermark passed it, so it passed every one before), in log order."""
        queue = self.written_offsets.get(group_id)
        if not queue:
            return
        while queue and queue[0].last <= upto:
            w = queue.pop(0)
            # A marker's offsets for a group that did not exist when it was
            # written create it, as the marker's replay does; otherwise they
            # go to the same group (a conversion keeps its offsets).
            g = self._group(group_id, create=True) if w.offsets is None else self.groups.get(group_id)
            if g is not None and (w.offsets is None or g.offsets is w.offsets):
                for tp, om in w.accepted:
                    if not w.transactional or _newer(om, g.offsets.get(tp)):
                        g.offsets[tp] = om
                w.applied = True
        if not queue:
            del self.written_offsets[group_id]

    def _drain_written(self, group_id):
        """Apply the written commits of group_id already committed (a read of
        its offsets sees what the log holds as committed)."""
        queue = self.written_offsets.get(group_id)
        if queue:
            index = self.partition_for(group_id)
            upto = -1
            for w in queue:
                if self.runtime.committed_now(index, w.last) != Errors.NONE:
                    break
                upto = w.last
            if upto >= 0:
                self._apply_written(group_id, upto)

    def _drop_written(self, group_id, w):
        queue = self.written_offsets.get(group_id, [])
        if w in queue:
            queue.remove(w)
        if not queue:
            self.written_offsets.pop(group_id, None)

    def _supersede_written(self, group_id, tps):
        """Tombstones for tps were appended after the written commits: those
        no longer apply to tps."""
        gone = set(tps)
        for w in self.written_offsets.get(group_id, ()):
            w.accepted = [(tp, om) for tp, om in w.accepted if tp not in gone]

    def _topic_partition_exists(self, topic, partition) -> bool:
        return self.writer.partition_exists(topic, partition)

    def _check_commit(self, group_id, generation_id, member_id, group_instance_id, offsets, version=8):
        """The checks of an offset commit, as Kafka 4's group coordinator makes
        them for a classic group (OffsetMetadataManager, ClassicGroup
        .validateOffsetCommit): (result so far, group, keys, values,
        [(tp, OffsetAndMetadata)] to store). generation_id is OffsetCommit
        v9's generation_id_or_member_epoch: a classic group's generation."""
        def all_(code):
            return {(t, p): code for t, p, *_ in offsets}
        def fail(code):
            return all_(code), None, [], [], []
        if not group_id:
            return fail(Errors.INVALID_GROUP_ID)
        if self.is_share_group(group_id):
            return fail(Errors.GROUP_ID_NOT_FOUND)   # Kafka's ShareGroup.validateOffsetCommit, every version
        g = self.groups.get(group_id)
        if g is None or g.state is GroupState.DEAD:
            if generation_id >= 0:
                # v9 names the missing group; older versions keep their answer.
                return fail(Errors.GROUP_ID_NOT_FOUND if version >= 9 else Errors.ILLEGAL_GENERATION)
            # A standalone consumer or an admin (assign + commit): a simple group.
            g = self.groups[group_id] = Group(group_id)
        if isinstance(g, ConsumerGroup):
            code = self.consumer.commit_error(g, member_id, generation_id, version, self._validated(offsets))
            if code:
                return fail(code)
        elif generation_id < 0 and g.state is GroupState.EMPTY:
            pass   # a simple group's commit, or any while the group is empty
        elif generation_id >= 0 or member_id or group_instance_id is not None:
            code = _member_error(g, member_id, group_instance_id)
            if code:
                return fail(code)
            if generation_id != g.generation_id:
                return fail(Errors.ILLEGAL_GENERATION)
            g.members[member_id].last_heartbeat = self.clock()
        else:
            return fail(Errors.UNKNOWN_MEMBER_ID)   # no member named, group not empty
        if g.state is GroupState.COMPLETING_REBALANCE:
            return fail(Errors.REBALANCE_IN_PROGRESS)
        result, keys, values, accepted = self._offset_records(group_id, offsets)
        return result, g, keys, values, accepted

    def _validated(self, offsets) -> list:
        """The (topic, partition) pairs of a commit that a consumer group's
        per-partition epoch check sees: Kafka answers an unknown partition
        before the coordinator, and one with oversized metadata before the
        check."""
        return [(t, p) for t, p, _o, _e, md in offsets
                if len((md or "").encode()) <= self.metadata_max_bytes and self._topic_partition_exists(t, p)]

    def _offset_records(self, group_id, offsets):
        """The offsets' records: (codes of the refused ones, keys, values,
        [((topic, partition), OffsetAndMetadata)] accepted)."""
        result, keys, values, accepted = {}, [], [], []
        now = _now_ms()
        for topic, partition, offset, leader_epoch, metadata in offsets:
            metadata = metadata or ""
            if len(metadata.encode()) > self.metadata_max_bytes:
                result[(topic, partition)] = Errors.OFFSET_METADATA_TOO_LARGE
                continue
            if not self._topic_partition_exists(topic, partition):
                result[(topic, partition)] = Errors.UNKNOWN_TOPIC_OR_PARTITION
                continue
            om = OffsetAndMetadata(offset, leader_epoch, metadata, now)
            keys.append(ot.offset_key(group_id, topic, partition))
            values.append(ot.offset_value(om))
            accepted.append(((topic, partition), om))
        return result, keys, values, accepted

    def fetch_offsets(self, group_id, partitions=None, latest=False):
        """{(topic, partition): OffsetAndMetadata or None}; all committed ones
        when partitions is None. latest: commits written but not yet known
        committed too."""
        self._drain_written(group_id)
        g = self.groups.get(group_id)
        offsets = g.offsets if g is not None else {}
        if latest and self.written_offsets.get(group_id):
            offsets = dict(offsets)
            for w in self.written_offsets[group_id]:
                if w.offsets is None or (g is not None and w.offsets is g.offsets):
                    offsets.update((tp, om) for tp, om in w.accepted
                                   if not w.transactional or _newer(om, offsets.get(tp)))
        if partitions is None:
            return dict(offsets)
        return {tp: offsets.get(tp) for tp in partitions}

    def pending_txn_offsets(self, group_id) -> set:
        """{(topic, partition)} of group_id with a transactional offset written
        by a transaction not yet completed (Kafka's
        hasPendingTransactionalOffsets): OffsetFetch with require_stable
        answers them UNSTABLE_OFFSET_COMMIT (KIP-447)."""
        out = set()
        index = self.partition_for(group_id)
        self._settle_markers(index)
        held = list(self.txn_offsets.get(index, {}).values())
        held += [w.pending for w in self.txn_completing.get(index, ())]
        for pending in held:
            out.update((t, p) for g, t, p in pending if g == group_id)
        return out

    def topic_deleted(self, topic: str):
        """Forget (with tombstones) every committed offset of a deleted topic,
        as Kafka does, so a topic re-created under the name starts clean."""
        for g in list(self.groups.values()):
            gone = [tp for tp in g.offsets if tp[0] == topic]
            if not gone:
                continue
            self._store(g.group_id, [ot.offset_key(g.group_id, t, p) for t, p in gone], [None] * len(gone))
            self._supersede_written(g.group_id, gone)
            for tp in gone:
                del g.offsets[tp]
            if g.state is GroupState.EMPTY and not g.members and not g.offsets:
                self._drop_group(g)

    # ---- admin ----

    def describe(self, group_id):
        return self.groups.get(group_id)

    def list_groups(self):
        return [g for g in self.groups.values() if g.state is not GroupState.DEAD]

    def delete_group(self, group_id):
        g = self.groups.get(group_id)
        if g is None or g.state is GroupState.DEAD:
            return Errors.GROUP_ID_NOT_FOUND
        if isinstance(g, ConsumerGroup):
            if g.members:
                return Errors.NON_EMPTY_GROUP
        elif g.members or g.state is not GroupState.EMPTY:
            return Errors.NON_EMPTY_GROUP
        try:
            last = self._drop_group(g)
        except (PylogError, OSError) as e:
            return _store_error(getattr(e, "error_code", -1))
        # Answered once the tombstones are committed, like an offset commit.
        code = self.runtime.committed_now(self.partition_for(group_id), last)
        if code is not None:
            return _store_error(code)
        return self._wait_committed(group_id, last)

    def delete_offsets(self, group_id, partitions):
        """OffsetDelete (KIP-496): (top-level code, {(topic, partition): code})
        or a coroutine giving it once the tombstones are committed. As Kafka's
        coordinator: GROUP_ID_NOT_FOUND for an unknown group, NON_EMPTY_GROUP
        for an active classic group not using the consumer protocol, and per
        partition GROUP_SUBSCRIBED_TO_TOPIC while a member subscribes to its
        topic; partitions without an offset are answered NONE, nothing written."""
        g = self.groups.get(group_id)
        if g is None or (not isinstance(g, ConsumerGroup) and g.state is GroupState.DEAD) or \
                (isinstance(g, ConsumerGroup) and g.dead):
            return Errors.GROUP_ID_NOT_FOUND, {}
        if not isinstance(g, ConsumerGroup) and g.state is not GroupState.EMPTY and g.protocol_type != "consumer":
            return Errors.NON_EMPTY_GROUP, {}
        subscribed = self._subscribed_topics(g)
        codes, gone = {}, []
        for tp in partitions:
            if tp[0] in subscribed:
                codes[tp] = Errors.GROUP_SUBSCRIBED_TO_TOPIC
            else:
                codes[tp] = Errors.NONE
                if tp in g.offsets:
                    gone.append(tp)
        if not gone:
            return Errors.NONE, codes
        try:
            last = self._store(group_id, [ot.offset_key(group_id, t, p) for t, p in gone], [None] * len(gone))
        except (PylogError, OSError) as e:
            return _store_error(getattr(e, "error_code", -1)), {}
        self._supersede_written(group_id, gone)
        for tp in gone:
            g.offsets.pop(tp, None)
        code = self.runtime.committed_now(self.partition_for(group_id), last)
        if code is not None:   # committed already (0) or refused: the per-partition codes go with NONE only
            return (_store_error(code), {}) if code else (Errors.NONE, codes)

        async def answered():
            code = await self._wait_committed(group_id, last)
            return (code, {}) if code else (Errors.NONE, codes)
        return answered()

    def _subscribed_topics(self, g) -> set:
        """The topics g's members subscribe to: a consumer group's names and
        resolved regexes, a classic consumer-protocol group's members'
        subscriptions (Kafka's isSubscribedToTopic; none for other protocols)."""
        if isinstance(g, ConsumerGroup):
            out = {t for m in g.members.values() for t in m.subscribed_topic_names}
            for m in g.members.values():
                regex = m.subscribed_topic_regex
                if regex:
                    out.update(g.regexes.get(regex, ()))
            return out
        if g.protocol_type != "consumer" or not g.members:
            return set()
        # Imported here: the consumer-protocol codecs are built on first use,
        # and a broker's start must not build them (tests/protocol/test_lazy_messages.py).
        from ..consumer.assignors import decode_subscription
        out = set()
        for m in g.members.values():
            try:
                out.update(decode_subscription(m.metadata_for(g.protocol_name)).topics)
            except (ProtocolError, KeyError, TypeError):
                continue
        return out

    def _drop_group(self, g: Group) -> int:
        """Tombstones for g's offsets and metadata, and g forgotten; the
        offset of the last tombstone."""
        written = {tp for w in self.written_offsets.pop(g.group_id, ()) for tp, _ in w.accepted}
        keys = [ot.offset_key(g.group_id, t, p) for t, p in g.offsets.keys() | written]
        if isinstance(g, ConsumerGroup):
            keys += [k for k, _ in self.consumer.delete_records(g)]
            g.dead = True
        else:
            keys.append(ot.group_key(g.group_id))
        last = self._store(g.group_id, keys, [None] * len(keys))
        if not isinstance(g, ConsumerGroup):
            g.transition(GroupState.DEAD)
        del self.groups[g.group_id]
        return last

    # ---- timers: sessions, join and sync deadlines, offset retention ----
    #
    # One runtime timer per group, at the group's earliest deadline (a pending
    # member id's expiry, the end of the join phase or the initial delay, the
    # end of the sync phase, a member's session). Events that move a deadline
    # earlier re-arm it; one that only moves deadlines later (a heartbeat) lets
    # the timer fire, find nothing due, and re-arm at the new earliest.

    def _next_deadline(self, g: Group):
        times = list(g.pending.values())
        if g.state is GroupState.PREPARING_REBALANCE:
            times.append(g.join_deadline)
            if g.initial_delay_until is not None:
                times.append(g.initial_delay_until)
        if g.state is GroupState.COMPLETING_REBALANCE and g.sync_deadline is not None:
            times.append(g.sync_deadline)
        for m in g.members.values():
            waiting = (m.join_future is not None and not m.join_future.done()) or \
                (m.sync_future is not None and not m.sync_future.done())
            if not waiting:
                times.append(m.last_heartbeat + m.session_timeout_ms / 1000)
        return min(times, default=None)

    def _arm(self, g: Group):
        """(Re-)arm the group's timer at its earliest deadline, unless it
        already fires no later. Needs the loop."""
        index = self.partition_for(g.group_id)
        if not self.runtime.is_active(index) or isinstance(g, ConsumerGroup):
            return
        key = ("group", g.group_id)
        when = self._next_deadline(g)
        if when is None:
            self.runtime.cancel_timer(index, key)
            return
        armed = self.runtime.timer_deadline(index, key)
        if armed is not None and armed <= when:
            return
        self.runtime.schedule_timer(index, key, when, self._group_timer, g.group_id)

    def _group_timer(self, group_id):
        g = self.groups.get(group_id)
        if g is None or isinstance(g, ConsumerGroup):
            return
        try:
            self._tick_group(g, self.clock())
        finally:
            if self.groups.get(group_id) is g:
                self._arm(g)

    def _arm_retention(self, index: int):
        self.runtime.schedule_timer(index, "retention", self.clock() + self.retention_check_ms / 1000,
                                    self._retention_timer, index)

    def _retention_timer(self, index: int):
        try:
            self.expire_offsets(partition=index)
        finally:
            self._arm_retention(index)

    def _tick_group(self, g, now):
        for mid, expiry in list(g.pending.items()):
            if now >= expiry:
                del g.pending[mid]
        if g.state is GroupState.PREPARING_REBALANCE:
            self._maybe_complete_join(g, deadline_passed=now >= g.join_deadline)
        for mid, m in list(g.members.items()):
            waiting = (m.join_future is not None and not m.join_future.done()) or \
                (m.sync_future is not None and not m.sync_future.done())
            if not waiting and now >= m.last_heartbeat + m.session_timeout_ms / 1000:
                self._remove_member(g, mid, f"expired (no heartbeat for {m.session_timeout_ms} ms)")
        if g.state is GroupState.COMPLETING_REBALANCE and g.sync_deadline is not None and now >= g.sync_deadline:
            # The leader never sent the assignment: start over without the laggards.
            for mid in [mid for mid, m in g.members.items() if m.sync_future is None]:
                self._remove_member(g, mid, "did not sync within the rebalance timeout", rebalance=False)
            self._prepare_rebalance(g, "the leader's assignment did not arrive in time")
            self._maybe_complete_join(g)

    # ---- transactional offset commits (TxnOffsetCommit; KAFKA-NOTES §6.2) ----

    def txn_commit_offsets(self, transactional_id, group_id, producer_id, producer_epoch, generation_id,
                           member_id, group_instance_id, offsets):
        """TxnOffsetCommit, as an event of the group's partition (Kafka's
        handleTxnCommitOffsets): the offsets are written as one transactional
        batch of the producer and held pending until its transaction's marker
        (write_txn_marker). {(topic, partition): code}, or a coroutine
        giving it once the batch is replicated."""
        def all_(code):
            # Kafka's commitTransactionalOffset throws these: answered at once.
            return Refused({(t, p): code for t, p, *_ in offsets})
        wrong = self.coordinator_error(group_id)
        if wrong:
            return all_(wrong)
        if self.is_share_group(group_id):
            return all_(Errors.GROUP_ID_NOT_FOUND)
        code = self._txn_commit_error(self.groups.get(group_id), generation_id, member_id, group_instance_id,
                                      offsets)
        if code:
            return all_(code)
        result, keys, values, accepted = self._offset_records(group_id, offsets)
        accepted = [((group_id, *tp), om) for tp, om in accepted]
        if not accepted:
            return result
        index = self.partition_for(group_id)
        try:
            last = self.runtime.append_with(index, self.writer.append_transactional, ot.TOPIC, index, producer_id,
                                            producer_epoch, keys, values)
        except Exception as e:  # a fenced producer epoch, leadership lost, a storage error
            from ..errors import code_for
            code = _txn_store_error(code_for(e))
            result.update({(t, p): code for (_g, t, p), _ in accepted})
            return result
        _stamp(accepted, last)
        pending = self.txn_offsets.setdefault(index, {}).setdefault(producer_id, {})
        pending.update(accepted)
        return self._txn_commit_wait(result, index, producer_id, accepted, last)

    def _txn_commit_error(self, g, generation_id, member_id, group_instance_id, offsets) -> int:
        """The member checks of a TxnOffsetCommit (a consumer group's are its
        own: the generation is a member epoch). TxnOffsetCommit before v6
        (all pylog serves) answers a stale member epoch ILLEGAL_GENERATION,
        as Kafka does (KIP-1319)."""
        if isinstance(g, ConsumerGroup):
            code = self.consumer.commit_error(g, member_id, generation_id, 9, self._validated(offsets),
                                              transactional=True)
            return Errors.ILLEGAL_GENERATION if code == Errors.STALE_MEMBER_EPOCH else code
        if g is not None and g.state is GroupState.DEAD:
            return Errors.COORDINATOR_NOT_AVAILABLE
        static = g.static.get(group_instance_id) if g is not None and group_instance_id is not None else None
        if static is not None and static != member_id:
            return Errors.FENCED_INSTANCE_ID
        if member_id and (g is None or member_id not in g.members):
            return Errors.UNKNOWN_MEMBER_ID
        if generation_id >= 0 and generation_id != (g.generation_id if g is not None else 0):
            return Errors.ILLEGAL_GENERATION
        return Errors.NONE

    async def _txn_commit_wait(self, result, index, producer_id, accepted, last):
        code = self.runtime.committed_now(index, last)
        if code is None:
            code = await self.runtime.committed(index, last)
        # Appended, they stay pending whatever the wait says (as Kafka's
        # timeline keeps them): the marker, whose record follows theirs,
        # completes them; a lost leadership unloads them with the partition.
        code = _txn_store_error(code)
        result.update({(t, p): code for (_g, t, p), _ in accepted})
        return result

    def write_txn_marker(self, index: int, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                         committed: bool):
        """WriteTxnMarkers for __consumer_offsets-index (Kafka's
        GroupCoordinator.completeTransaction): as an event of the partition,
        append the marker and take the producer's pending offsets in the same
        step, so the marker applies exactly where it sits in the log: after
        every transactional offset record before it, before any after it.
        Refused while the partition loads (or is not coordinated here) with
        NOT_LEADER_OR_FOLLOWER, as Kafka translates COORDINATOR_LOAD_IN_PROGRESS
        and NOT_COORDINATOR for the transaction coordinator, which retries: a
        marker is then never written under a load's log scan (whose end is
        fixed when it starts), so the replay meets every marker a loaded
        partition did not apply itself. (offset, write) for
        txn_marker_replicated; raises the append's error."""
        return self.runtime.schedule(index, self._write_txn_marker, index, producer_id, producer_epoch,
                                     coordinator_epoch, committed)

    def _write_txn_marker(self, index, producer_id, producer_epoch, coordinator_epoch, committed):
        code = self.runtime.partition_error(index)
        if code:
            raise NotLeaderOrFollowerError(
                f"{ot.TOPIC}-{index}: the group coordinator is "
                f"{'loading it' if code == Errors.COORDINATOR_LOAD_IN_PROGRESS else 'not here'}")
        offset = self.runtime.append_with(index, self.writer.append_txn_marker, ot.TOPIC, index, producer_id,
                                          producer_epoch, coordinator_epoch, committed)
        pending = self.txn_offsets.get(index, {}).pop(producer_id, None) or {}
        write = _MarkerWrite(offset, producer_id, pending, committed)
        # Still pending (OffsetFetch require_stable answers UNSTABLE) until the
        # marker commits; a COMMIT's offsets then apply in log order with the
        # plain commits around it, as Kafka's timeline applies the marker at
        # its offset (a later retry of the marker finds nothing to apply).
        self.txn_completing.setdefault(index, []).append(write)
        if committed:
            by_group: dict[str, list] = {}
            for (group_id, topic, partition), om in pending.items():
                by_group.setdefault(group_id, []).append(((topic, partition), om))
            for group_id, accepted in by_group.items():
                g = self.groups.get(group_id)
                self.written_offsets.setdefault(group_id, []).append(
                    _WrittenOffsets(offset, accepted, g.offsets if g is not None else None, transactional=True))
        return offset, write

    def txn_marker_replicated(self, index: int, write, code: int):
        """The wait for the marker of write_txn_marker ended with code. Once
        committed its offsets become the groups' committed offsets (a COMMIT)
        or go. Timed out, it stays, as Kafka keeps a timed-out write: it
        applies once the high watermark passes it (one more wait, or a read
        of the pending offsets or of the groups' offsets finds that). Another
        error means the partition is no longer led here and unloads (its next
        load replays the log). Nothing when it was unloaded meanwhile."""
        if not any(w is write for w in self.txn_completing.get(index, ())):
            return
        if code == Errors.NONE:
            self._settle_markers(index)
        elif code == Errors.REQUEST_TIMED_OUT:
            # Held until done: the loop keeps only a weak reference to a task.
            task = asyncio.ensure_future(self._settle_when_committed(index, write))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def _settle_when_committed(self, index: int, write):
        if await self.runtime.committed(index, write.offset) == Errors.NONE:
            self._settle_markers(index)

    def _settle_markers(self, index: int):
        """Complete the markers of partition index the high watermark passed:
        they no longer hold their offsets pending, and a COMMIT's apply, with
        every commit of their groups before them."""
        writes = self.txn_completing.get(index)
        while writes and self.runtime.committed_now(index, writes[0].offset) == Errors.NONE:
            write = writes.pop(0)
            if write.committed:
                for group_id in {g for g, _t, _p in write.pending}:
                    self._apply_written(group_id, write.offset)
        if not writes:
            self.txn_completing.pop(index, None)

    def _complete_txn_offsets(self, index: int, producer_id: int, committed: bool):
        pending = self.txn_offsets.get(index, {}).pop(producer_id, None)
        if pending and committed:
            for (group_id, topic, partition), om in pending.items():
                g = self._group(group_id, create=True)
                if g is not None and _newer(om, g.offsets.get((topic, partition))):
                    g.offsets[(topic, partition)] = om

    def _replay_transactional(self, index: int, rec):
        if rec.marker is not None:
            self._complete_txn_offsets(index, rec.producer_id, rec.marker)
            return
        out = ot.decode(rec, f"{ot.TOPIC}-{index}")
        if out is not None and out[0] == "offset" and out[2] is not None:
            out[2].record_offset = rec.offset
            self.txn_offsets.setdefault(index, {}).setdefault(rec.producer_id, {})[out[1]] = out[2]

    def expire_offsets(self, now_ms=None, partition=None):
        """Offset retention (offsets.retention.minutes), as Kafka applies it:
        a group that uses a protocol loses its offsets once it has been Empty
        that long; a standalone group (assign + commit, no protocol) loses each
        offset that long after it was committed. Empty groups left with no
        offsets are forgotten."""
        now_ms = _now_ms() if now_ms is None else now_ms
        for g in list(self.groups.values()):
            if partition is not None and self.partition_for(g.group_id) != partition:
                continue
            if isinstance(g, ConsumerGroup):
                # As a classic group with a protocol: empty that long, it goes with its offsets.
                if not g.members and now_ms - g.empty_since > self.retention_ms:
                    log.info("group %s: expired (empty consumer group, offsets past retention)", g.group_id)
                    self._drop_group(g)
                continue
            if g.members or g.pending or g.state is not GroupState.EMPTY:
                continue
            if g.protocol_type is None:
                old = [tp for tp, om in g.offsets.items() if now_ms - om.commit_timestamp > self.retention_ms]
                if old and len(old) < len(g.offsets):
                    self._store(g.group_id, [ot.offset_key(g.group_id, t, p) for t, p in old], [None] * len(old))
                    self._supersede_written(g.group_id, old)
                    for tp in old:
                        del g.offsets[tp]
                    continue
                expired = bool(old) or not g.offsets
            else:
                expired = now_ms - g.empty_since > self.retention_ms or not g.offsets
            if expired:
                if g.offsets or g.generation_id:
                    log.info("group %s: expired (empty, offsets past retention)", g.group_id)
                self._drop_group(g)


class _WrittenOffsets:
    """An OffsetCommit's records appended at last (their last offset): the
    offsets to apply once committed, into `offsets` (its group's, which a
    reload or a drop replaces)."""

    __slots__ = ("last", "accepted", "offsets", "applied", "transactional")

    def __init__(self, last, accepted, offsets, transactional=False):
        self.last, self.accepted, self.offsets, self.applied = last, accepted, offsets, False
        # A COMMIT marker's (last is the marker's offset): each offset applies
        # only over an older one, as Kafka's replayEndTransactionMarker does.
        self.transactional = transactional


def _stamp(accepted, last):
    """The offsets of accepted, written as one batch ending at last: their
    record offsets."""
    first = last - len(accepted) + 1
    for i, (_tp, om) in enumerate(accepted):
        om.record_offset = first + i


def _newer(om, existing) -> bool:
    """A transaction's committed offset replaces the group's only when its
    record is the more recent (Kafka keeps the most recent of transactional
    and plain commits, also across a compaction of the topic)."""
    return existing is None or om.record_offset > existing.record_offset


def _answer_all(result, tps, code):
    for tp in tps:
        result[tp] = code
    return result


def _join_error(code, member_id):
    return code, -1, None, "", member_id, []


def _member_error(g: Group, member_id, group_instance_id) -> int:
    """Kafka's ClassicGroup.validateMember: a group.instance.id must name a
    static member whose member id this is (else UNKNOWN_MEMBER_ID, or
    FENCED_INSTANCE_ID for another id), and the member must exist."""
    if group_instance_id is not None:
        static_id = g.static.get(group_instance_id)
        if static_id is None:
            return Errors.UNKNOWN_MEMBER_ID
        if static_id != member_id:
            return Errors.FENCED_INSTANCE_ID
    return Errors.NONE if member_id in g.members else Errors.UNKNOWN_MEMBER_ID


def _inconsistent(asked, the_groups) -> bool:
    """SyncGroup v5: a protocol type or name given that is not the group's."""
    return asked is not None and the_groups is not None and asked != the_groups


def _store_error(code: int) -> int:
    """A failed write of offsets as the OffsetCommit (DeleteGroups,
    OffsetDelete) error: Kafka 4's group coordinator maps it as any write
    operation's (a timeout COORDINATOR_NOT_AVAILABLE, too-large records
    UNKNOWN_SERVER_ERROR)."""
    return operation_error(code)


def _group_store_error(code: int) -> int:
    """A failed write of a group's metadata as the SyncGroup error: the
    runtime's mapping (too-large records are UNKNOWN_SERVER_ERROR here, a
    timeout COORDINATOR_NOT_AVAILABLE)."""
    return operation_error(code)


def _txn_store_error(code: int) -> int:
    """A failed transactional offset write (Kafka's storeOffsets mapping, which
    passes the producer's own errors through)."""
    if code in (Errors.INVALID_PRODUCER_EPOCH, Errors.PRODUCER_FENCED, Errors.INVALID_TXN_STATE,
                Errors.TRANSACTION_COORDINATOR_FENCED, Errors.INVALID_PRODUCER_ID_MAPPING):
        return code
    return _store_error(code)
