"""Share-group membership (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe
and the share groups in ListGroups (Kafka's GroupMetadataManager share-group
parts and its SimpleAssignor are the model; KAFKA-NOTES §11.2).

A share group lives on the group coordinator of its id (the broker leading
its __consumer_offsets partition). Members join with epoch 0 and a topic
list, heartbeat every group.share.heartbeat.interval.ms and leave with epoch
-1, or are removed after group.share.session.timeout.ms of silence. There is
no revocation phase: several members may share a partition.

- **Reconciliation** (Kafka's shareGroupHeartbeat, maybeUpdateTargetAssignment,
  maybeReconcile, ShareGroupAssignmentBuilder): a heartbeat that bumps the
  group epoch, or finds the target behind it, computes the group's target
  assignment (records 13 for the members whose target changed, 12); then
  only the heartbeating member moves to its target (its epoch and current
  assignment, record 14). Every other member keeps its epoch and partitions
  until its own next heartbeat. A member leaving bumps the group epoch
  without a new target; the next heartbeat computes it.

- **Records**: the group is written to __consumer_offsets in Kafka's layouts
  (types 10-15: member metadata, group epoch and metadata hash, target
  assignment, current assignment, state-partition metadata), through the
  coordinator runtime, and a heartbeat is answered once its records are
  committed; an append that fails puts the group back as its records were,
  while a write whose wait times out keeps its change (its records are in
  the log), as Kafka's runtime does. A load
  replays them, so after a coordinator restart members keep their ids,
  epochs and assignments (each with a fresh session, as Kafka arms them).
- **Initialize before assign**: a subscribed partition is first recorded as
  initializing (record 15), its share-partition state then initialized
  (share.auto.offset.reset, by the share-partition manager), then recorded as
  initialized; only initialized partitions are assigned, at the next
  heartbeat after that (Kafka's initializedAssignmentPending bumps the group
  epoch). An initialization still pending after 30 s (Kafka's
  group.share.initialize.retry.interval.ms default) is tried again.

Threads: the event loop's thread only.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time

from ..broker.authorizer import GROUP, NOT_ASKED, SUPPORTED_OPERATIONS
from ..errors import PylogError
from ..groups import offsets_topic as ot
from ..groups.metadata_hash import TopicHashes
from ..groups.coordinator import _group_store_error
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from .configs import share_group_config

log = logging.getLogger("pylog.share")

MAX_MEMBER_ID = 36
GROUP_OPERATIONS = sum(1 << op for op in SUPPORTED_OPERATIONS[GROUP])
INITIALIZE_RETRY_S = 30.0
STABLE = 0                                          # Kafka's MemberState.STABLE, record 14's State
_I16 = struct.Struct(">h")
# Tombstones go members' records first, the group epoch last (Kafka's order).
_TOMBSTONE_ORDER = (14, 13, 12, 10, 15, 11)


class ShareMember:
    __slots__ = ("member_id", "epoch", "previous_epoch", "rack_id", "topics", "client_id", "client_host",
                 "assignment", "timer")

    def __init__(self, member_id, client_id="", client_host=""):
        self.member_id = member_id
        self.epoch = 0
        self.previous_epoch = -1        # Kafka's ShareGroupMember default: 0 after the first reconciliation
        self.rack_id = None
        self.topics: list[str] = []
        self.client_id, self.client_host = client_id, client_host
        self.assignment: dict = {}      # topic id -> sorted partitions
        self.timer = None


class ShareGroup:
    __slots__ = ("group_id", "epoch", "metadata_hash", "assignment_epoch", "assignment_ms", "members", "target",
                 "initializing", "initialized", "deleting", "written", "memo")

    def __init__(self, group_id):
        self.group_id = group_id
        self.epoch = 0
        self.metadata_hash = 0          # of the subscribed topics the assignment was made for
        self.assignment_epoch = 0
        self.assignment_ms = 0
        self.members: dict[str, ShareMember] = {}
        self.target: dict[str, dict] = {}           # member id -> {topic id: sorted partitions}
        # Record 15: topic id -> [name, partitions, monotonic start] / [name, partitions] / name.
        self.initializing: dict = {}
        self.initialized: dict = {}
        self.deleting: dict = {}
        self.written: dict[bytes, bytes] = {}       # the group's records as last written: key -> value
        self.memo: dict = {}                        # (type, member id) -> (what it holds, key, value)

    @property
    def state(self) -> str:
        return "Stable" if self.members else "Empty"


def assign(members: list[ShareMember], image: dict) -> dict:
    """Kafka's simple assignor, balance first, over image {name: (topic id,
    [assignable partitions])}: per topic, M subscribed members and P
    partitions; with M <= P each partition goes to one member, round robin;
    with M > P member i shares partition i mod P, so every partition has a
    member and more members than partitions still consume.
    {member id: {topic id: [partitions]}}."""
    out = {mm.member_id: {} for mm in members}
    topics = sorted({t for mm in members for t in mm.topics})
    for name in topics:
        meta = image.get(name)
        if meta is None:
            continue
        tid, parts = meta
        subs = sorted(mm.member_id for mm in members if name in mm.topics)
        if not subs or not parts:
            continue
        if len(subs) <= len(parts):
            for i, p in enumerate(parts):
                out[subs[i % len(subs)]].setdefault(tid, []).append(p)
        else:
            for i, mid in enumerate(subs):
                out[mid].setdefault(tid, []).append(parts[i % len(parts)])
    return out


# ---- the group's records (Kafka's layouts, pylog/groups/offsets_topic.py SHARE_RECORDS) ----

def _key(kind, gid, mid=None) -> bytes:
    cls = ot.SHARE_RECORDS[kind][0]
    k = cls(group_id=gid) if mid is None else cls(group_id=gid, member_id=mid)
    return _I16.pack(kind) + cls.encode(k, 0)


def _value(kind, v) -> bytes:
    return _I16.pack(0) + ot.SHARE_RECORDS[kind][1].encode(v, 0)


def _tps(cls, assignment: dict) -> list:
    return [cls(topic_id=tid, partitions=list(ps)) for tid, ps in sorted(assignment.items())]


def _frozen(assignment: dict) -> tuple:
    return tuple((tid, tuple(ps)) for tid, ps in sorted(assignment.items()))


def records_of(g: ShareGroup) -> dict:
    """{key: value} of every record the group stands for now. Each record is
    encoded again only when what it holds changed (g.memo): a heartbeat that
    changes nothing costs no encoding, whatever the group's size."""
    R = {k: v for k, (_, v) in ot.SHARE_RECORDS.items()}
    memo, used = g.memo, {}

    def rec(kind, mid, sig, make):
        hit = memo.get((kind, mid))
        if hit is None or hit[0] != sig:
            hit = (sig, _key(kind, g.group_id, mid), _value(kind, make()))
        used[(kind, mid)] = hit
        out[hit[1]] = hit[2]

    out = {}
    rec(11, None, (g.epoch, g.metadata_hash), lambda: R[11](epoch=g.epoch, metadata_hash=g.metadata_hash))
    members = sorted(g.members.items())
    for mid, mm in members:
        rec(10, mid, (mm.rack_id, mm.client_id, mm.client_host, tuple(mm.topics)), lambda: R[10](
            rack_id=mm.rack_id, client_id=mm.client_id, client_host=mm.client_host,
            subscribed_topic_names=list(mm.topics)))
    for mid, _ in members:
        target = g.target.get(mid, {})
        rec(13, mid, _frozen(target), lambda: R[13](topic_partitions=_tps(R[13].TopicPartition, target)))
    rec(12, None, (g.assignment_epoch, g.assignment_ms), lambda: R[12](assignment_epoch=g.assignment_epoch,
                                                                       assignment_timestamp=g.assignment_ms))
    for mid, mm in members:
        rec(14, mid, (mm.epoch, mm.previous_epoch, _frozen(mm.assignment)), lambda: R[14](
            member_epoch=mm.epoch, previous_member_epoch=mm.previous_epoch, state=STABLE,
            assigned_partitions=_tps(R[14].TopicPartitions, mm.assignment)))
    if g.initializing or g.initialized or g.deleting:
        info, topic = R[15].TopicPartitionsInfo, R[15].TopicInfo
        sig = (tuple((tid, v[0], tuple(sorted(v[1]))) for tid, v in sorted(g.initializing.items())),
               tuple((tid, v[0], tuple(sorted(v[1]))) for tid, v in sorted(g.initialized.items())),
               tuple(sorted(g.deleting.items())))
        rec(15, None, sig, lambda: R[15](
            initializing_topics=[info(topic_id=tid, topic_name=n, partitions=list(ps)) for tid, n, ps in sig[0]],
            initialized_topics=[info(topic_id=tid, topic_name=n, partitions=list(ps)) for tid, n, ps in sig[1]],
            deleting_topics=[topic(topic_id=tid, topic_name=n) for tid, n in sig[2]]))
    g.memo = used
    return out


def _changes(before: dict, now: dict) -> list:
    """[(key, value or None)]: tombstones of what went, then what is new or changed."""
    gone = sorted((k for k in before if k not in now), key=lambda k: _TOMBSTONE_ORDER.index(_I16.unpack_from(k)[0]))
    return [(k, None) for k in gone] + [(k, v) for k, v in now.items() if before.get(k) != v]


class ShareGroups:
    """The share groups this broker coordinates. `coordinator` is the group
    coordinator: its partitions decide which broker coordinates an id, its
    runtime writes and replays the groups' records, and its groups share the
    id space."""

    def __init__(self, config, coordinator, group_configs):
        self.config = config
        self.coordinator = coordinator
        self.group_configs = group_configs          # group id -> its GROUP overrides (a callable)
        self.groups: dict[str, ShareGroup] = {}
        self.max_size = config.get("group.share.max.size")
        self.share_state_topic = None               # asks for __share_group_state if it does not exist
        # (group id, topic id, partition, reset) -> coroutine: the share-partition's
        # state made to exist (at reset, else share.auto.offset.reset); 0 or an error.
        self.initialize = None
        self.has_state = None                       # group id -> whether the share coordinator has its state
        self.delete_state = None                    # group id -> coroutine: its state deleted, an error code
        self.topic_hashes = TopicHashes(lambda: coordinator.writer)

    def settings(self, group_id) -> dict:
        return share_group_config(self.config, self.group_configs(group_id))

    # ---- ShareGroupHeartbeat ----

    def heartbeat(self, ctx, req):
        R = m.ShareGroupHeartbeatResponse
        c = self.coordinator
        gid = req.group_id

        def error(code, msg=None):
            return R(throttle_time_ms=0, error_code=code, error_message=msg, member_id=None, member_epoch=0,
                     heartbeat_interval_ms=0, assignment=None)

        if not gid:
            return error(Errors.INVALID_REQUEST, "GroupId can't be empty.")
        if not req.member_id:
            return error(Errors.INVALID_REQUEST, "MemberId can't be empty.")
        if len(req.member_id) > MAX_MEMBER_ID:
            return error(Errors.INVALID_REQUEST, f"MemberId can't be longer than {MAX_MEMBER_ID} characters.")
        if req.member_epoch < -1:
            return error(Errors.INVALID_REQUEST, f"MemberEpoch is {req.member_epoch}, but must be >= -1.")
        if req.member_epoch == 0 and not req.subscribed_topic_names:
            return error(Errors.INVALID_REQUEST, "SubscribedTopicNames must be set in first request.")
        code = c.coordinator_error(gid)
        if code:
            return error(code)
        if self.share_state_topic is not None:
            self.share_state_topic()   # asked for now, so the members' first fetches find the persister
        other = c.groups.get(gid)
        if other is not None and gid not in self.groups:
            return error(Errors.GROUP_ID_NOT_FOUND, f"Group {gid} is not a share group.")
        s = self.settings(gid)
        interval = s["share.heartbeat.interval.ms"]
        g = self.groups.get(gid)
        member = g.members.get(req.member_id) if g is not None else None

        if req.member_epoch == -1:
            if member is None:
                return error(Errors.UNKNOWN_MEMBER_ID, f"Member {req.member_id} is not a member of group {gid}.")
            before = dict(g.written)
            self._remove(g, member)
            return self._commit(g, before, R(throttle_time_ms=0, error_code=0, member_id=req.member_id,
                                             member_epoch=-1, heartbeat_interval_ms=interval, assignment=None),
                                error)

        if req.member_epoch == 0:
            if g is None:
                g = self.groups[gid] = ShareGroup(gid)
            before = dict(g.written)
            if member is None:
                if len(g.members) >= self.max_size:
                    return error(Errors.GROUP_MAX_SIZE_REACHED,
                                 f"The share group has reached its maximum capacity of {self.max_size} members.")
                member = g.members[req.member_id] = ShareMember(req.member_id)
        else:
            if member is None:
                return error(Errors.UNKNOWN_MEMBER_ID, f"Member {req.member_id} is not a member of group {gid}.")
            if req.member_epoch not in (member.epoch, member.previous_epoch):
                return error(Errors.FENCED_MEMBER_EPOCH,
                             f"The share group member has a smaller or larger member epoch "
                             f"({req.member_epoch}) than the one known by the group coordinator ({member.epoch}).")
            before = dict(g.written)
        member.client_id = ctx.client_id or ""
        member.client_host = "/" + (getattr(ctx, "peer_host", "") or "")
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        bump = False
        if req.subscribed_topic_names is not None and sorted(set(req.subscribed_topic_names)) != member.topics:
            member.topics = sorted(set(req.subscribed_topic_names))
            bump = True
        held = member.assignment
        bump = self._update_target(g, bump)
        # Kafka forces the member's assignment to its subscription whenever
        # the group epoch was bumped at this heartbeat.
        self._reconcile(g, member, bump)
        pending = self._to_initialize(g)
        self._arm(g, member, s["share.session.timeout.ms"])
        # Kafka sends the assignment on a (re)join, a full request (topics
        # set) or when this heartbeat changed the member's partitions.
        assignment = None
        if req.member_epoch == 0 or req.subscribed_topic_names is not None or member.assignment != held:
            assignment = R.Assignment(topic_partitions=[
                R.TopicPartitions(topic_id=tid, partitions=list(ps)) for tid, ps in sorted(member.assignment.items())])
        answer = R(throttle_time_ms=0, error_code=0, member_id=member.member_id, member_epoch=member.epoch,
                   heartbeat_interval_ms=interval, assignment=assignment)
        return self._commit(g, before, answer, error,
                            then=(lambda: self._start_initialize(gid, pending)) if pending else None)

    def _update_target(self, g: ShareGroup, bump: bool) -> bool:
        """The group epoch bumped when a member's subscription changed, the
        subscribed topics' metadata changed (created, more partitions), or
        initialized partitions wait to be assigned (Kafka's
        initializedAssignmentPending); then, if the target assignment is
        behind the group epoch, a new one. Members' current assignments are
        not touched: each moves at its own heartbeat. Whether the epoch was
        bumped."""
        image = self._image(g)
        h = self.topic_hashes.group_hash(image)
        if h != g.metadata_hash:
            g.metadata_hash = h
            bump = True
        if g.assignment_epoch >= g.epoch and self._assignment_pending(g, image):
            bump = True
        if bump:
            g.epoch += 1
        if g.assignment_epoch >= g.epoch:
            return bump
        assignable = {}
        for name, (tid, count) in image.items():
            done = g.initialized.get(tid)
            if done is not None:
                assignable[name] = (tid, sorted(p for p in done[1] if p < count))
        target = assign(list(g.members.values()), assignable)
        for mid in g.members:
            g.target[mid] = {tid: sorted(ps) for tid, ps in target[mid].items()}
        g.assignment_epoch = g.epoch
        g.assignment_ms = int(time.time() * 1000)
        return bump

    def _reconcile(self, g: ShareGroup, member: ShareMember, subscription_changed: bool):
        """The member moved to its target (Kafka's ShareGroupAssignmentBuilder):
        a target of another epoch becomes its assignment and epoch (the
        previous epoch kept for a lost answer); a changed subscription at the
        same epoch refreshes its partitions alone. Either way the partitions
        of topics it no longer subscribes to are left out."""
        if not subscription_changed and member.epoch == g.assignment_epoch:
            return
        image = self.coordinator.writer.topic_image()
        subscribed = {image[n][0] for n in member.topics if n in image}
        target = {tid: ps for tid, ps in g.target.get(member.member_id, {}).items() if tid in subscribed}
        if member.epoch != g.assignment_epoch:
            member.previous_epoch, member.epoch = member.epoch, g.assignment_epoch
        member.assignment = target

    def _assignment_pending(self, g: ShareGroup, image: dict) -> bool:
        if not g.members or not g.initialized:
            return False
        assigned = {}
        for a in g.target.values():
            for tid, ps in a.items():
                assigned.setdefault(tid, set()).update(ps)
        subscribed = {tid for tid, _ in image.values()}
        return any(tid in subscribed and assigned.get(tid) != set(parts)
                   for tid, (_name, parts) in g.initialized.items())

    def _image(self, g):
        """{name: (topic id, partition count)} of the topics the members subscribe to."""
        names = {t for mm in g.members.values() for t in mm.topics}
        image = self.coordinator.writer.topic_image()
        return {n: image[n] for n in sorted(names) if n in image and not n.startswith("__")}

    # ---- initialize before assign ----

    def _to_initialize(self, g: ShareGroup) -> dict:
        """Subscribed partitions neither initialized nor initializing (or
        initializing for longer than the retry interval), now recorded as
        initializing: {topic id: (name, partitions, reset)}. As Kafka, the
        new partitions of a topic the group already knows start at the log
        start (records written to them before their initialization are not
        skipped); a topic new to the group starts at share.auto.offset.reset
        (reset None)."""
        now = time.monotonic()
        pending = {}
        for name, (tid, count) in self._image(g).items():
            have = set(g.initialized.get(tid, ("", set()))[1])
            ini = g.initializing.get(tid)
            if ini is not None and now - ini[2] < INITIALIZE_RETRY_S:
                have |= ini[1]
            missing = set(range(count)) - have
            if missing:
                known = tid in g.initialized or tid in g.initializing
                pending[tid] = (name, missing, "earliest" if known else None)
        for tid, (name, parts, _reset) in pending.items():
            old = g.initializing.get(tid)
            g.initializing[tid] = [name, (old[1] if old is not None else set()) | parts, now]
            g.deleting.pop(tid, None)
        return pending

    def _start_initialize(self, gid, pending):
        task = asyncio.ensure_future(self._initialize(gid, pending))
        task.add_done_callback(_ignore_outcome)

    async def _initialize(self, gid, pending):
        """Each pending share-partition's state initialized; those that are
        recorded as initialized (record 15), assignable from the next heartbeat."""
        done = {}
        for tid, (name, parts, reset) in pending.items():
            for idx in sorted(parts):
                code = await self.initialize(gid, tid, idx, reset)
                if code:
                    log.info("share group %s: %s-%d not initialized (error %d): tried again later", gid, name, idx,
                             code)
                else:
                    done.setdefault(tid, (name, set()))[1].add(idx)
        g = self.groups.get(gid)
        if g is None or not done or self.coordinator.coordinator_error(gid):
            return
        before = dict(g.written)
        for tid, (name, parts) in done.items():
            ini = g.initializing.get(tid)
            if ini is not None:
                ini[1] -= parts
                if not ini[1]:
                    del g.initializing[tid]
            g.initialized.setdefault(tid, [name, set()])[1].update(parts)
        self._commit(g, before)

    def initialized(self, gid, topic_id, name, partitions):
        """AlterShareGroupOffsets initialized these share-partitions anew: recorded as initialized."""
        g = self.groups.get(gid)
        if g is None:
            return
        before = dict(g.written)
        g.initialized.setdefault(topic_id, [name, set()])[1].update(partitions)
        ini = g.initializing.get(topic_id)
        if ini is not None:
            ini[1] -= set(partitions)
            if not ini[1]:
                del g.initializing[topic_id]
        self._commit(g, before)

    def uninitialized(self, gid, topic_id):
        """DeleteShareGroupOffsets deleted a topic's state: a member
        subscribing again initializes it again (share.auto.offset.reset)."""
        g = self.groups.get(gid)
        if g is None:
            return
        before = dict(g.written)
        g.initialized.pop(topic_id, None)
        g.initializing.pop(topic_id, None)
        g.deleting.pop(topic_id, None)
        self._commit(g, before)

    # ---- writing the records ----

    def _commit(self, g: ShareGroup, before: dict, answer=None, failed=None, then=None):
        """Write what the event changed in g's records (against before); the
        answer once committed, else failed(the write's error as Kafka maps
        it). Without an answer (timers, initializations) the write goes on
        in the background.

        Only an append that fails puts the group back as its records were
        (nothing of it is in the log). Records appended stay applied when
        their wait fails (timed out, leadership lost), as in Kafka's runtime:
        they commit once the followers catch up, or go with the leadership
        and the next leader replays its log. Reverting them would leave the
        leader's state behind the log its followers replay."""
        now = records_of(g) if g.group_id in self.groups else {}
        records = _changes(before, now)
        g.written = now
        if not records:
            if then is not None:
                then()
            return answer
        gid, c = g.group_id, self.coordinator

        def outcome(code):
            if code:
                return failed(_group_store_error(code)) if failed is not None else None
            if then is not None:
                then()
            return answer
        try:
            last = c._store(gid, [k for k, _ in records], [v for _, v in records])
        except (PylogError, OSError) as e:
            log.warning("share group %s: records not stored (%s): group state reverted", gid, e)
            self._revert(gid, before)
            return outcome(getattr(e, "error_code", Errors.NOT_COORDINATOR))
        code = c.runtime.committed_now(c.partition_for(gid), last)
        if code is not None:
            return outcome(code)

        async def later():
            return outcome(await c._wait_committed_raw(gid, last))
        if answer is None:
            asyncio.ensure_future(later()).add_done_callback(_ignore_outcome)
            return None
        return later()

    def _revert(self, gid, before: dict):
        """The group back as its records were before an append that failed
        (within the same event: nothing wrote since)."""
        self._drop(gid)      # (a deletion dropped it already: it comes back)
        for k, v in before.items():
            out = ot.decode_record(k, v)
            if out is not None:
                self.replay(out[1][0], out[1][1], out[2])
        g = self.groups.get(gid)
        if g is not None:
            self._arm_all(g)

    # ---- replay and load ----

    def replay(self, kind: int, key, value):
        """One ShareGroup* record of __consumer_offsets (types 10-15)."""
        gid = key.group_id
        g = self.groups.get(gid)
        if g is None:
            if value is None:
                return
            g = self.groups[gid] = ShareGroup(gid)
        mid = getattr(key, "member_id", None)
        k = _key(kind, gid, mid)
        if value is None:
            g.written.pop(k, None)
        else:
            g.written[k] = _value(kind, value)
        if kind == 11:
            if value is None:
                self._drop(gid)
            else:
                g.epoch, g.metadata_hash = value.epoch, value.metadata_hash
        elif kind == 12:
            g.assignment_epoch, g.assignment_ms = (0, 0) if value is None else (value.assignment_epoch,
                                                                                value.assignment_timestamp)
        elif kind == 15:
            g.initializing, g.initialized, g.deleting = {}, {}, {}
            if value is not None:
                # Initializations a restart cut short are tried again at once.
                g.initializing = {t.topic_id: [t.topic_name, set(t.partitions), -INITIALIZE_RETRY_S]
                                  for t in value.initializing_topics}
                g.initialized = {t.topic_id: [t.topic_name, set(t.partitions)] for t in value.initialized_topics}
                g.deleting = {t.topic_id: t.topic_name for t in value.deleting_topics}
        elif value is None:
            if kind == 10:
                mm = g.members.pop(mid, None)
                if mm is not None and mm.timer is not None:
                    mm.timer.cancel()
            elif kind == 13:
                g.target.pop(mid, None)
            elif kind == 14 and mid in g.members:
                g.members[mid].assignment = {}
        else:
            mm = g.members.get(mid)
            if mm is None:
                mm = g.members[mid] = ShareMember(mid)
            if kind == 10:
                mm.rack_id, mm.client_id, mm.client_host = value.rack_id, value.client_id, value.client_host
                mm.topics = sorted(value.subscribed_topic_names)
            elif kind == 13:
                g.target[mid] = {tp.topic_id: sorted(tp.partitions) for tp in value.topic_partitions}
            elif kind == 14:
                mm.epoch, mm.previous_epoch = value.member_epoch, value.previous_member_epoch
                mm.assignment = {tp.topic_id: sorted(tp.partitions) for tp in value.assigned_partitions}

    def loaded(self, index: int):
        """A __consumer_offsets partition replayed: its groups' members get a
        fresh session each, to find the coordinator again."""
        for g in [g for g in self.groups.values() if self.coordinator.partition_for(g.group_id) == index]:
            self._arm_all(g)

    def unloaded(self, index: int):
        for gid in [gid for gid in self.groups if self.coordinator.partition_for(gid) == index]:
            self._drop(gid)

    def _drop(self, gid):
        g = self.groups.pop(gid, None)
        if g is not None:
            for mm in g.members.values():
                if mm.timer is not None:
                    mm.timer.cancel()

    # ---- sessions ----

    def _arm_all(self, g):
        session_ms = self.settings(g.group_id)["share.session.timeout.ms"]
        for mm in g.members.values():
            self._arm(g, mm, session_ms)

    def _arm(self, g, member, session_ms):
        if member.timer is not None:
            member.timer.cancel()
        member.timer = asyncio.get_running_loop().call_later(session_ms / 1000.0, self._expire, g.group_id,
                                                             member.member_id)

    def _expire(self, gid, mid):
        g = self.groups.get(gid)
        member = g.members.get(mid) if g is not None else None
        if member is not None:
            log.info("share group %s: member %s removed: session timed out", gid, mid)
            before = dict(g.written)
            self._remove(g, member)
            self._commit(g, before)

    def _remove(self, g, member):
        # Its share sessions stay: a leaving client sends its last
        # acknowledgements with ShareAcknowledge epoch -1 alongside this
        # heartbeat (Kafka releases a session on that, or on its connection).
        if member.timer is not None:
            member.timer.cancel()
        del g.members[member.member_id]
        g.target.pop(member.member_id, None)
        # Kafka's shareGroupFenceMember: the group epoch bumped with the
        # metadata hash of what the others subscribe to, no new target (the
        # next heartbeat computes it); the last member going brings the
        # assignment epoch along, with no time, as a new group has.
        image = self._image(g)
        g.metadata_hash = self.topic_hashes.group_hash(image)
        g.epoch += 1
        if not g.members:
            g.assignment_epoch, g.assignment_ms = g.epoch, 0

    def has_group(self, gid) -> bool:
        """Whether gid is a share group here (with members, or only a state)."""
        return gid in self.groups or (self.has_state is not None and self.has_state(gid))

    async def delete_group(self, gid) -> int:
        """DeleteGroups of a share group: refused while it has members; else
        its state goes (DeleteShareGroupState), then its records (tombstones)."""
        code = self.coordinator.coordinator_error(gid)
        if code:
            return code
        g = self.groups.get(gid)
        if g is not None and g.members:
            return Errors.NON_EMPTY_GROUP
        code = await self.delete_state(gid)
        g = self.groups.get(gid)
        if code or g is None:
            return code
        if g.members:
            return Errors.NON_EMPTY_GROUP
        before = dict(g.written)
        self._drop(gid)
        result = self._commit(g, before, 0, lambda code, msg=None: code)
        return await result if asyncio.iscoroutine(result) else result

    def is_member(self, gid, mid) -> bool:
        g = self.groups.get(gid)
        return g is not None and mid in g.members

    # ---- ShareGroupDescribe, ListGroups ----

    def describe(self, ctx, req):
        R = m.ShareGroupDescribeResponse
        # Every group operation, as Kafka without an authorizer answers; with
        # one, the broker's authz_guard puts the principal's own instead.
        ops = GROUP_OPERATIONS if req.include_authorized_operations else NOT_ASKED
        out = []
        names = {tid: n for n, (tid, _) in self.coordinator.writer.topic_image().items()}
        for gid in req.group_ids:
            code = self.coordinator.coordinator_error(gid)
            g = self.groups.get(gid)
            if code:
                out.append(R.DescribedGroup(error_code=code, group_id=gid, group_state="", assignor_name=""))
                continue
            if g is None:
                msg = (f"Group {gid} is not a share group." if gid in self.coordinator.groups
                       else f"Group {gid} not found.")
                out.append(R.DescribedGroup(error_code=Errors.GROUP_ID_NOT_FOUND, error_message=msg, group_id=gid,
                                            group_state="Dead", assignor_name=""))
                continue
            members = [R.Member(
                member_id=mm.member_id, rack_id=mm.rack_id, member_epoch=mm.epoch, client_id=mm.client_id,
                client_host=mm.client_host, subscribed_topic_names=list(mm.topics),
                assignment=R.Assignment(topic_partitions=[
                    R.TopicPartitions(topic_id=tid, topic_name=names.get(tid, ""), partitions=list(ps))
                    for tid, ps in sorted(mm.assignment.items())]))
                for mm in g.members.values()]
            out.append(R.DescribedGroup(error_code=0, group_id=gid, group_state=g.state, group_epoch=g.epoch,
                                        assignment_epoch=g.assignment_epoch, assignor_name="simple",
                                        members=members,
                                        authorized_operations=ops))
        return R(throttle_time_ms=0, groups=out)

    def listed(self, index, states, types) -> list:
        """ListGroups' entries for the share groups of __consumer_offsets partition index."""
        if types is not None and "share" not in types:
            return []
        R = m.ListGroupsResponse
        return [R.ListedGroup(group_id=g.group_id, protocol_type="share", group_state=g.state, group_type="share")
                for g in self.groups.values() if self.coordinator.partition_for(g.group_id) == index
                and (states is None or g.state.lower() in states)]

    def stop(self):
        for g in self.groups.values():
            for mm in g.members.values():
                if mm.timer is not None:
                    mm.timer.cancel()


def _ignore_outcome(task):
    # A background write or initialization: its failure is logged where it
    # happens, and the next heartbeat tries again.
    if not task.cancelled():
        task.exception()
