"""ShareFetch and ShareAcknowledge on the partition leader: share sessions,
the share-partitions of this broker's led partitions, their acquisition
locks, and their persistence (Kafka's SharePartitionManager and
ShareSessionCache are the model; KAFKA-NOTES §11.3-11.5).

- **Sessions** are keyed by (group, member): epoch 0 opens one with the
  listed partitions, then each request carries the next epoch (1, 2, ...;
  after MAX, 1); -1 closes it and releases what the member holds.
- **Share-partitions** (partition.py) are loaded on first use from the share
  coordinator (ReadShareGroupState); one never initialized is initialized
  (InitializeShareGroupState) at share.auto.offset.reset: the high
  watermark (latest) or the log start (earliest).
- **Acquisition** reads whole log batches from the share-partition's next
  fetch offset, below the high watermark, and hands out the offsets it
  acquired with the batches' bytes; a fetch with nothing to hand out waits in
  the broker's purgatory up to MaxWaitMs for new data or released records.
- **Locks**: one loop timer per share-partition, at its earliest lock
  deadline; an expired lock makes the records Available again (or Archived
  at group.share.delivery.count.limit).
- **Persistence**: every change of acknowledged, released or expired records
  is written (WriteShareGroupState) before the acknowledgement is answered;
  acquisitions are not (as in Kafka: a lock does not survive its leader).

Threads: the event loop's thread only.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time

from ..broker.authorizer import READ, TOPIC
from ..broker.purgatory import HIGH_WATERMARK, DelayedOperation
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from . import delivery, txn
from .configs import share_group_config
from .dlq import DeadLetters
from .leaders import add_leaders
from .partition import RENEW, AckError, SharePartition

log = logging.getLogger("pylog.share")

# The purgatory event a share-partition fires when records become
# acquirable again (released, lock expired), for fetches waiting on it.
SHARE_AVAILABLE = "share_available"
MAX_EPOCH = (1 << 31) - 1
_NOT_READY = -1000          # internal: the share-partition's state is not loaded yet
NOT_READY_RETRY_S = 0.05
PREPARE_RETRY_S, PREPARE_TRIES = 0.1, 300
MAX_MEMBER_ID = 36


class ShareSession:
    __slots__ = ("group_id", "member_id", "epoch", "partitions", "connection")

    def __init__(self, group_id, member_id, connection):
        self.group_id, self.member_id = group_id, member_id
        self.connection = connection                # the connection of its last request
        self.epoch = 1                              # the epoch the next request must carry
        self.partitions: dict = {}                  # (topic id, index) -> None, in order


class _Held:
    """A loaded share-partition with its data partition's key and lock timer."""

    __slots__ = ("key", "sp", "topic", "index", "timer", "dx")

    def __init__(self, key, sp, topic, index):
        self.key, self.sp, self.topic, self.index = key, sp, topic, index
        self.timer = None
        self.dx = None                              # its delivery.DeliveryIndex (delays, priorities)


class SharePartitionManager:
    """See the module docstring. `broker` gives the logs, metadata cache,
    config and purgatory; `coordinator` is the share coordinator (the
    persister); `groups` the share groups (their configs)."""

    def __init__(self, broker, purgatory, coordinator, groups):
        self.broker = broker
        self.purgatory = purgatory
        self.coordinator = coordinator      # the persister (persister.py): in-process or over the wire
        self.groups = groups
        cfg = broker.config
        self.delivery_limit = cfg.get("group.share.delivery.count.limit")
        self.max_locks = cfg.get("group.share.partition.max.record.locks")
        self.max_sessions = cfg.get("group.share.max.share.sessions")
        self.sessions: dict[tuple, ShareSession] = {}
        self.held: dict[tuple, _Held] = {}          # (group, topic id, index) -> _Held
        self._loading: dict[tuple, asyncio.Future] = {}
        self.dlq = DeadLetters(broker, self)
        delivery.remove_stale(broker.data_dir)

    # ---- ShareFetch ----

    def _checked(self, R, req):
        """(the group's lock duration, the top-level error answer or None):
        the checks ShareFetch and ShareAcknowledge share."""
        lock_ms = self._settings(req.group_id)["share.record.lock.duration.ms"] if req.group_id else 0

        def top(code, msg=None):
            return R(throttle_time_ms=0, error_code=code, error_message=msg, acquisition_lock_timeout_ms=lock_ms,
                     responses=[], node_endpoints=[])

        if not req.group_id:
            return lock_ms, top, top(Errors.INVALID_REQUEST, "GroupId must be set.")
        if not req.member_id or len(req.member_id) > MAX_MEMBER_ID:
            return lock_ms, top, top(Errors.INVALID_REQUEST,
                                     "MemberId must be a non-empty string of at most 36 characters.")
        return lock_ms, top, None

    async def share_fetch(self, ctx, req):
        R = m.ShareFetchResponse
        version = ctx.request_api_version
        lock_ms, top, refused = self._checked(R, req)
        if refused is not None:
            return refused
        if version >= 2 and req.is_renew_ack and (req.max_bytes or req.min_bytes or req.max_records
                                                  or req.max_wait_ms):
            return top(Errors.INVALID_REQUEST, "With IsRenewAck, MaxBytes, MinBytes, MaxRecords and MaxWaitMs "
                                               "must be 0.")
        if version >= 2 and req.share_acquire_mode not in (0, 1):
            return top(Errors.INVALID_REQUEST, f"Unknown ShareAcquireMode {req.share_acquire_mode}.")
        key = (req.group_id, req.member_id)
        epoch = req.share_session_epoch
        has_acks = any(p.acknowledgement_batches for t in req.topics for p in t.partitions)
        if epoch == 0:
            if has_acks:
                return top(Errors.INVALID_REQUEST, "Acknowledge data present on initial share fetch request.")
            old = self.sessions.pop(key, None)
            if old is not None:
                self._release_member(req.group_id, req.member_id)
            if len(self.sessions) >= self.max_sessions:
                # As Kafka: after MaxWaitMs, so a client retrying does not spin.
                await asyncio.sleep(max(req.max_wait_ms, 0) / 1000.0)
                return top(Errors.SHARE_SESSION_LIMIT_REACHED, "The share session cache is full.")
            session = self.sessions[key] = ShareSession(req.group_id, req.member_id, getattr(ctx, "connection", None))
        else:
            session = self.sessions.get(key)
            if session is None:
                return top(Errors.SHARE_SESSION_NOT_FOUND, f"Share session for {req.member_id} not found.")
            if epoch != -1 and epoch != session.epoch:
                return top(Errors.INVALID_SHARE_SESSION_EPOCH,
                           f"Share session epoch {epoch} is not the expected {session.epoch}.")
        if epoch != -1:
            session.connection = getattr(ctx, "connection", None)
            if epoch != 0:
                session.epoch = 1 if session.epoch == MAX_EPOCH else session.epoch + 1
            for t in req.topics:
                for p in t.partitions:
                    session.partitions[(t.topic_id, p.partition_index)] = None
            for t in req.forgotten_topics_data:
                for idx in t.partitions:
                    session.partitions.pop((t.topic_id, idx), None)

        out = {}                                    # (topic id, index) -> PartitionData
        # Acknowledgements first, with their own error per partition.
        acks = []
        for t in req.topics:
            for p in t.partitions:
                if p.acknowledgement_batches:
                    acks.append((t.topic_id, p.partition_index, p.acknowledgement_batches))
        unreadable = self._unreadable(ctx, {tid for tid, _ in session.partitions} | {tid for tid, _, _ in acks})
        ack_codes = await self._acknowledge(req.group_id, req.member_id, acks,
                                            version >= 2 and req.is_renew_ack, lock_ms, unreadable)
        for (tid, idx), (code, msg) in ack_codes.items():
            out[(tid, idx)] = R.PartitionData(partition_index=idx, acknowledge_error_code=code,
                                              acknowledge_error_message=msg, records=b"", acquired_records=[],
                                              current_leader=R.LeaderIdAndEpoch(leader_id=-1, leader_epoch=-1))
        if epoch == -1:
            self.sessions.pop(key, None)
            self._release_member(req.group_id, req.member_id)
        elif req.max_records > 0 and req.max_bytes > 0 and not (version >= 2 and req.is_renew_ack):
            # As Kafka: MaxBytes 0 (fetch.max.bytes=0) asks for no data, so
            # nothing is acquired and the answer does not wait.
            await self._fetch(req, session, out, lock_ms, unreadable)
        responses = {}
        for (tid, idx), pd in out.items():
            responses.setdefault(tid, []).append(pd)
        endpoints = add_leaders(self.broker, ctx, R, [(tid, pd) for (tid, _), pd in out.items()])
        return R(throttle_time_ms=0, error_code=0, acquisition_lock_timeout_ms=lock_ms, node_endpoints=endpoints,
                 responses=[R.ShareFetchableTopicResponse(topic_id=tid, partitions=ps)
                            for tid, ps in responses.items()])

    async def _fetch(self, req, session, out, lock_ms, unreadable):
        R = m.ShareFetchResponse
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(req.max_wait_ms, 0) / 1000.0
        # Read at every ShareFetch, as Kafka's KafkaApis does: an altered
        # share.isolation.level applies from the next fetch on.
        committed = self._settings(req.group_id)["share.isolation.level"] == "read_committed"
        wanted = []
        for tid, idx in session.partitions:
            if tid in unreadable:
                pd = out.get((tid, idx))
                if pd is None:
                    pd = out[(tid, idx)] = R.PartitionData(partition_index=idx, records=b"", acquired_records=[],
                                                           current_leader=R.LeaderIdAndEpoch(leader_id=-1,
                                                                                             leader_epoch=-1))
                pd.error_code = Errors.TOPIC_AUTHORIZATION_FAILED
            else:
                wanted.append((tid, idx))
        # As Kafka's SharePartitionManager: the partitions known to the
        # metadata, rotated round robin by the request's session epoch, so no
        # partition is always read first (it alone may exceed its byte share
        # and it takes MaxRecords first); the others only carry their errors.
        known, unknown = [], []
        for k in wanted:
            (known if self._known(*k) else unknown).append(k)
        wanted = _rotated(known, req.share_session_epoch) + unknown
        arrived = []        # share-partitions whose state loaded while this fetch waited, in that order
        while True:
            held, got, not_ready, loading, readable = [], 0, False, [], []
            late = set(arrived)
            for tid, idx in [k for k in wanted if k not in late] + arrived:
                pd = out.get((tid, idx))
                code, h, fut = self._lookup(req.group_id, tid, idx)
                if fut is not None:
                    loading.append(((tid, idx), fut))
                    code = _NOT_READY
                if pd is None:
                    pd = out[(tid, idx)] = R.PartitionData(partition_index=idx, records=b"", acquired_records=[],
                                                           current_leader=R.LeaderIdAndEpoch(leader_id=-1,
                                                                                             leader_epoch=-1))
                p = self._partition(tid, idx)
                if p is not None:
                    pd.current_leader = R.LeaderIdAndEpoch(leader_id=p.leader_id, leader_epoch=p.leader_epoch)
                if code == _NOT_READY:
                    not_ready = True   # its state is still being read or initialized: nothing yet
                    continue
                if code:
                    pd.error_code = code
                    continue
                held.append((h, p))
                # Kafka's acquirablePartitions (canAcquireRecords), with or
                # without new records: each one counts in the split. The
                # others read no log (delivery.acquire), but may still hand
                # out their due or prioritized records.
                readable.append((h, p, (tid, idx), pd, h.sp.next_fetch_offset() < h.sp.end or h.sp.can_grow()))
            # Kafka's ReplicaManager.readFromLog over the acquirable ones:
            # each reads at most its share and what is left of MaxBytes; until
            # one reads some bytes, a first batch above that still comes
            # whole (minOneMessage), after it such a partition gives nothing.
            left, min_one = req.max_bytes, True
            shares = iter(_uniform_max_bytes(req.max_bytes, sum(1 for r in readable if r[-1])))
            for h, p, key, pd, acquirable in readable:
                share = next(shares) if acquirable else 0
                if got >= req.max_records or (got and key in late):
                    # got: as Kafka's ShareFetchUtils, MaxRecords less what
                    # the partitions before took, nothing once it is reached.
                    # late: as Kafka's DelayedShareFetch, checked as each
                    # share-partition finishes loading, a fetch is answered
                    # with the first one loaded that has records, not held
                    # for the others still loading.
                    continue
                records, acquired, read = self._acquire(h, p, session.member_id, req.max_records - got,
                                                        min(share, left), min_one, lock_ms, committed)
                if read:
                    min_one = False
                # The bytes read from the log, as Kafka counts them; more when
                # due or prioritized records came from elsewhere in the log.
                left = max(0, left - max(read, len(records)))
                if acquired:
                    pd.records = records
                    pd.acquired_records = [R.AcquiredRecords(first_offset=f, last_offset=l, delivery_count=c)
                                           for f, l, c in acquired]
                    got += sum(l - f + 1 for f, l, c in acquired)
            remaining = deadline - loop.time()
            if got or remaining <= 0 or self.broker.stopping:
                return
            if loading:
                # Bounded so the share-partitions already held are looked at
                # again for new records meanwhile.
                arrived = await _first_loaded(loading, min(remaining, NOT_READY_RETRY_S))
                if arrived and not any((req.group_id, *k) in self.held for k in arrived):
                    # Failed loads (the share coordinator not ready): again shortly.
                    await asyncio.sleep(max(0.0, min(deadline - loop.time(), NOT_READY_RETRY_S)))
                continue
            arrived = []
            if not_ready or not held:
                # The share coordinator is loading (or its topic is being
                # created): look again shortly, within MaxWaitMs.
                await asyncio.sleep(min(remaining, NOT_READY_RETRY_S))
                continue
            await self.purgatory.wait(_DelayedShareFetch(held, self.broker, committed), [p for _, p in held],
                                      (HIGH_WATERMARK, SHARE_AVAILABLE), remaining)
            if loop.time() >= deadline and not _DelayedShareFetch(held, self.broker, committed).try_complete():
                return

    def _acquire(self, h: _Held, p, member, max_records, budget, min_one, lock_ms, committed=False):
        """(the records' bytes, the ranges acquired, the bytes read from the
        log for them)."""
        sp = h.sp
        if sp.archive_below(p.log_start_offset):
            self._persist(h)
        deadline = time.monotonic() + lock_ms / 1000.0
        data, acquired, read = delivery.acquire(h.dx, p, member, max_records, budget, deadline, committed,
                                                min_one)
        if committed and acquired:
            aborted = txn.aborted_runs(p, data, acquired)
            if aborted:
                # Only what this fetch acquired: another member's lock on
                # part of such a batch (taken before an alter) stays its own.
                acquired, dropped = txn.split(acquired, aborted)
                if dropped:
                    sp.archive_acquired(dropped)
                    self._persist(h)
        if acquired:
            self._arm(h)
        return data, acquired, read

    # ---- ShareAcknowledge ----

    async def share_acknowledge(self, ctx, req):
        R = m.ShareAcknowledgeResponse
        version = ctx.request_api_version
        lock_ms, top, refused = self._checked(R, req)
        if refused is not None:
            return refused
        key = (req.group_id, req.member_id)
        epoch = req.share_session_epoch
        if epoch == 0:
            return top(Errors.INVALID_SHARE_SESSION_EPOCH, "A ShareAcknowledge cannot open a share session.")
        session = self.sessions.get(key)
        if session is None:
            return top(Errors.SHARE_SESSION_NOT_FOUND, f"Share session for {req.member_id} not found.")
        if epoch != -1:
            if epoch != session.epoch:
                return top(Errors.INVALID_SHARE_SESSION_EPOCH,
                           f"Share session epoch {epoch} is not the expected {session.epoch}.")
            session.epoch = 1 if session.epoch == MAX_EPOCH else session.epoch + 1
            session.connection = getattr(ctx, "connection", None)
        acks = [(t.topic_id, p.partition_index, p.acknowledgement_batches) for t in req.topics for p in t.partitions]
        codes = await self._acknowledge(req.group_id, req.member_id, acks, version >= 2 and req.is_renew_ack,
                                        lock_ms, self._unreadable(ctx, {tid for tid, _, _ in acks}))
        if epoch == -1:
            self.sessions.pop(key, None)
            self._release_member(req.group_id, req.member_id)
        responses = {}
        for (tid, idx), (code, msg) in codes.items():
            p = self._partition(tid, idx)
            leader = R.LeaderIdAndEpoch(leader_id=p.leader_id if p else -1, leader_epoch=p.leader_epoch if p else -1)
            responses.setdefault(tid, []).append(R.PartitionData(partition_index=idx, error_code=code,
                                                                 error_message=msg, current_leader=leader))
        endpoints = add_leaders(self.broker, ctx, R, [(tid, pd) for tid, ps in responses.items() for pd in ps])
        return R(throttle_time_ms=0, error_code=0, acquisition_lock_timeout_ms=lock_ms, node_endpoints=endpoints,
                 responses=[R.ShareAcknowledgeTopicResponse(topic_id=tid, partitions=ps)
                            for tid, ps in responses.items()])

    async def _acknowledge(self, group_id, member_id, acks, renew_ok, lock_ms, unreadable=frozenset()) -> dict:
        """Apply each partition's acknowledgement batches: {(topic id, index): (code, message)}."""
        codes, writes = {}, []
        for tid, idx, batches in acks:
            bad = _invalid_batches(batches, renew_ok)
            if bad:
                codes[(tid, idx)] = (Errors.INVALID_REQUEST, bad)
                continue
            if tid in unreadable:
                codes[(tid, idx)] = (Errors.TOPIC_AUTHORIZATION_FAILED, None)
                continue
            code, h = await self._share_partition(group_id, tid, idx)
            if code:
                # Nothing acquired can be acknowledged before the state is loaded.
                codes[(tid, idx)] = (Errors.INVALID_RECORD_STATE if code == _NOT_READY else code, None)
                continue
            try:
                renews = [(b.first_offset, b.last_offset) for b in batches
                          if len(b.acknowledge_types) == 1 and b.acknowledge_types[0] == RENEW]
                others = [(b.first_offset, b.last_offset, list(b.acknowledge_types)) for b in batches
                          if not (len(b.acknowledge_types) == 1 and b.acknowledge_types[0] == RENEW)]
                if any(RENEW in types for _, _, types in others):
                    raise AckError(Errors.INVALID_REQUEST, "Renew must cover a whole acknowledgement batch.")
                deadline = time.monotonic() + lock_ms / 1000.0
                for f, l in renews:
                    h.sp.renew(member_id, f, l, deadline)
                if others:
                    h.sp.acknowledge(member_id, others)
            except AckError as e:
                codes[(tid, idx)] = (e.code, str(e))
                continue
            codes[(tid, idx)] = (0, None)
            if others:
                writes.append(((tid, idx), h))
                self._arm(h)
                self._wake(h)
        for where, h in writes:
            code = await self._persist(h)
            if code:
                codes[where] = (code, "The share-partition state could not be written.")
        return codes

    # ---- share-partitions ----

    def _unreadable(self, ctx, topic_ids) -> set:
        """The topic ids among these whose topics the request's principal may
        not READ: KafkaApis refuses their partitions, fetched or acknowledged,
        with TOPIC_AUTHORIZATION_FAILED (the group's READ was checked first)."""
        az = self.broker.authorizer
        if az is None:
            return set()
        name_of = self.broker.metadata_cache.topic_name
        return {tid for tid in topic_ids if (n := name_of(tid)) is not None and not az.allows(ctx, READ, TOPIC, n)}

    def _settings(self, group_id):
        return share_group_config(self.broker.config, self.broker.metadata_cache.group_configs.get(group_id))

    def _known(self, topic_id, index) -> bool:
        name = self.broker.metadata_cache.topic_name(topic_id)
        return name is not None and self.broker.metadata_cache.has_partition(name, index)

    def _partition(self, topic_id, index):
        name = self.broker.metadata_cache.topic_name(topic_id)
        if name is None:
            return None
        return self.broker.log_manager.partitions.get((name, index))

    async def initialize(self, group_id, topic_id, index, reset=None) -> int:
        """The share-partition's state made to exist (read back, or
        initialized at share.auto.offset.reset) before the group coordinator
        assigns it, so a group reading from `latest` starts where the log was
        then, not at its first fetch; 0 or the error. While the persister is
        not ready (its topic being created or loaded, the first time a share
        group is used), it tries again shortly. reset: "earliest" or
        "latest" instead of the group's share.auto.offset.reset."""
        for _ in range(PREPARE_TRIES):
            code, _h, _fut = self._lookup(group_id, topic_id, index, reset, load=False)
            if _fut is not None:
                code, _h = await asyncio.shield(_fut)
            elif code == 0 and _h is None:
                code = await self._made_to_exist(group_id, topic_id, index, reset)
            if code == Errors.NOT_LEADER_OR_FOLLOWER:
                # Another broker leads the partition: its state is initialized
                # as Kafka's coordinator does it, at 0 for a partition of a
                # topic the group knows, else UNINITIALIZED (-1), which the
                # leader resolves at share.auto.offset.reset when it loads it.
                code = await self.coordinator.initialize(group_id, topic_id, index, 0,
                                                         0 if reset == "earliest" else -1)
                return 0 if code == Errors.FENCED_STATE_EPOCH else code    # initialized already
            if code != _NOT_READY or self.broker.stopping:
                return code
            await asyncio.sleep(PREPARE_RETRY_S)
        return Errors.COORDINATOR_NOT_AVAILABLE

    async def _share_partition(self, group_id, topic_id, index, reset=None):
        """(error, _Held) for the share-partition, loading it first if needed."""
        code, h, fut = self._lookup(group_id, topic_id, index, reset)
        if fut is None:
            return code, h
        return await asyncio.shield(fut)

    def _lookup(self, group_id, topic_id, index, reset=None, load=True):
        """(error, _Held, None) for the share-partition, or (0, None, its
        load) while its state is being read; (0, None, None) if not loaded
        and load is False."""
        key = (group_id, topic_id, index)
        name = self.broker.metadata_cache.topic_name(topic_id)
        if name is None:
            return Errors.UNKNOWN_TOPIC_ID, None, None
        p = self.broker.log_manager.partitions.get((name, index))
        if p is None:
            return (Errors.NOT_LEADER_OR_FOLLOWER if self.broker.metadata_cache.has_partition(name, index)
                    else Errors.UNKNOWN_TOPIC_OR_PARTITION), None, None
        if not p.is_leader:
            return Errors.NOT_LEADER_OR_FOLLOWER, None, None
        h = self.held.get(key)
        if h is not None:
            return 0, h, None
        fut = self._loading.get(key)
        if fut is None:
            if not load:
                return 0, None, None
            fut = self._loading[key] = asyncio.ensure_future(self._load(key, name, index, p, reset))
            fut.add_done_callback(lambda _f: self._loading.pop(key, None))
        if fut.done():
            return (*fut.result(), None)
        return 0, None, fut

    async def _made_to_exist(self, group_id, topic_id, index, reset=None):
        """The state written (at reset, else share.auto.offset.reset) if the
        share coordinator has none, not loaded: as Kafka's leader, this one
        reads it at the first fetch, so a fetch over several new
        share-partitions is answered with the first one loaded. 0 or the error."""
        p = self._partition(topic_id, index)
        if p is None or not p.is_leader:
            return Errors.NOT_LEADER_OR_FOLLOWER
        code, _st = await self._state(group_id, topic_id, index, p, reset)
        return code

    async def _state(self, group_id, topic_id, index, p, reset=None):
        """(error, persisted state), initializing it first if there is none."""
        code, st = await self.coordinator.read(group_id, topic_id, index, p.leader_epoch)
        if code:
            return _retriable(code), None
        if st is None:
            reset = reset or self._settings(group_id)["share.auto.offset.reset"]
            start = p.log_start_offset if reset == "earliest" else p.high_watermark
            code = await self.coordinator.initialize(group_id, topic_id, index, 0, start)
            if code and code != Errors.FENCED_STATE_EPOCH:
                return _retriable(code), None
            code, st = await self.coordinator.read(group_id, topic_id, index, p.leader_epoch)
            if code or st is None:
                return _retriable(code or Errors.COORDINATOR_NOT_AVAILABLE), None
        return 0, st

    async def _load(self, key, name, index, p, reset=None):
        group_id, topic_id, _ = key
        code, st = await self._state(group_id, topic_id, index, p, reset)
        if code:
            return code, None
        h = self.held.get(key)
        if h is None:
            start, batches = st.start_offset, st.batches
            if start < 0:
                # Initialized by a group coordinator at Kafka's UNINITIALIZED
                # start offset: share.auto.offset.reset is resolved here, by
                # the leader, and written at once.
                reset = self._settings(group_id)["share.auto.offset.reset"]
                start, batches = (p.log_start_offset if reset == "earliest" else p.high_watermark), []
            sp = SharePartition(start, batches, delivery_limit=self.delivery_limit,
                                max_locks=self.max_locks, state_epoch=st.state_epoch,
                                dlq=lambda: self.dlq.enabled(group_id))
            h = self.held[key] = _Held(key, sp, name, index)
            h.dx = delivery.DeliveryIndex(sp, delivery.sidecar_path(self.broker.data_dir, group_id, name, index),
                                          lambda: self._wake(h))
            if st.start_offset < 0:
                self._persist(h)
            self.dlq.kick(h)    # records a crash left on their way to the dead-letter topic
            log.info("share group %s: %s-%d loaded at start offset %d, %d in flight", group_id, name, index,
                     sp.start, sp.end - sp.start)
        return 0, h

    def _persist(self, h: _Held):
        """Write the share-partition's state now; a future of the error code."""
        start, batches = h.sp.persisted_state()
        group_id, topic_id = h.key[:2]
        p = self.broker.log_manager.partitions.get((h.topic, h.index))
        epoch = p.leader_epoch if p is not None else -1
        fut = asyncio.ensure_future(self.coordinator.write(group_id, topic_id, h.index, h.sp.state_epoch, epoch,
                                                           start, batches))
        self.dlq.kick(h)        # new Archiving ranges: their dead letters, once this write is done
        fut.add_done_callback(lambda f: self._fenced(h, f))
        return fut

    def _fenced(self, h: _Held, fut):
        """A write fenced by a newer leader epoch (another broker leads now)
        or state epoch (AlterShareGroupOffsets re-initialized the state): what
        is held here is stale, and the next fetch reads the state back."""
        if not fut.cancelled() and fut.exception() is None and fut.result() in (
                Errors.FENCED_LEADER_EPOCH, Errors.FENCED_STATE_EPOCH) and self.held.get(h.key) is h:
            log.info("share group %s: %s-%d's state fenced (error %d): read again", h.key[0], h.topic, h.index,
                     fut.result())
            self.forget(h.key)

    # ---- locks ----

    def _arm(self, h: _Held):
        if h.timer is not None:
            h.timer.cancel()
            h.timer = None
        d = h.sp.earliest_deadline()
        if d is None:
            return
        h.timer = asyncio.get_running_loop().call_later(max(d - time.monotonic(), 0.0), self._expire, h)

    def _expire(self, h: _Held):
        h.timer = None
        if self.held.get(h.key) is not h:
            return
        n = h.sp.expire(time.monotonic())
        if n:
            log.debug("%s-%d: %d records' acquisition locks expired", h.topic, h.index, n)
            self._persist(h)
            self._wake(h)
        self._arm(h)

    def _wake(self, h: _Held):
        p = self.broker.log_manager.partitions.get((h.topic, h.index))
        if p is not None:
            self.purgatory.check_and_complete(p, SHARE_AVAILABLE)

    def _release_member(self, group_id, member_id):
        writes = []
        for (gid, _tid, _idx), h in list(self.held.items()):
            if gid == group_id and h.sp.release_member(member_id):
                writes.append(self._persist(h))
                self._arm(h)
                self._wake(h)
        if not any(k[0] == group_id for k in self.sessions):
            t = asyncio.ensure_future(self._group_empty(group_id, writes))
            t.add_done_callback(_ignore_outcome)

    async def _group_empty(self, group_id, writes):
        """The group's last share session here ended: once its releases are
        written, its share-partitions go (Kafka's onGroupEmpty), so a member
        coming later reads them back from the share coordinator, as
        AlterShareGroupOffsets or DeleteShareGroupOffsets (sent to the group
        coordinator, maybe another broker) may have left them."""
        await asyncio.gather(*writes, return_exceptions=True)
        self.forget_idle(group_id)

    def forget_idle(self, group_id):
        """Forget the group's share-partitions here with nothing acquired,
        when it has no share session here. One whose dead letters are being
        written stays until they are (dlq.py calls this again then): dropped
        meanwhile, its ranges would stay Archiving and the next load would
        write their dead letters a second time."""
        if any(k[0] == group_id for k in self.sessions):
            return
        for key, h in list(self.held.items()):
            if key[0] == group_id and h.sp.earliest_deadline() is None and not self.dlq.busy(key):
                self.forget(key)

    def forget(self, key):
        """Drop a loaded share-partition (its state was replaced at a new
        state epoch): the next fetch reads it back from the share coordinator."""
        h = self.held.pop(key, None)
        if h is not None:
            _drop(h)

    def connection_closed(self, connection):
        """A client's connection closed: the share sessions whose last
        request came on it end, and their members' records are released (as
        Kafka's ShareSessionCache does on a disconnect)."""
        for key, session in list(self.sessions.items()):
            if session.connection is connection:
                del self.sessions[key]
                self._release_member(*key)

    def on_resign(self, topic, index):
        """This broker no longer leads topic-index: its share-partitions go
        (the next leader reads them back from the share coordinator)."""
        for key, h in list(self.held.items()):
            if h.topic == topic and h.index == index:
                _drop(h)
                del self.held[key]

    def stop(self):
        self.dlq.stop()
        for h in self.held.values():
            _drop(h)


def _drop(h: _Held):
    if h.timer is not None:
        h.timer.cancel()
    h.dx.close()


class _DelayedShareFetch(DelayedOperation):
    """A ShareFetch with nothing to hand out yet: done when one of its
    share-partitions has records to acquire (new data below the high
    watermark, or records released), or it can never have (not leader,
    broker stopping)."""

    __slots__ = ("held", "broker", "committed")

    def __init__(self, held, broker, committed=False):
        self.held, self.broker, self.committed = held, broker, committed

    def try_complete(self) -> bool:
        if self.broker.stopping:
            return True
        for h, p in self.held:
            if not p.is_leader:
                return True
            if h.dx.ready(p, delivery.now_ms(), p.config.get("pylog.delivery.delay.ms"), self.committed):
                return True
        return False


def _invalid_batches(batches, renew_ok) -> str | None:
    """Kafka's per-partition INVALID_REQUEST checks of acknowledgement batches."""
    prev_last = None
    for b in batches:
        if b.first_offset > b.last_offset:
            return f"FirstOffset {b.first_offset} is after LastOffset {b.last_offset}."
        if prev_last is not None and b.first_offset <= prev_last:
            return "Acknowledgement batches overlap or are out of order."
        prev_last = b.last_offset
        types = b.acknowledge_types
        if not types or (len(types) != 1 and len(types) != b.last_offset - b.first_offset + 1):
            return "AcknowledgeTypes must hold one type or one per offset."
        for t in types:
            if not 0 <= t <= 4 or (t == RENEW and not renew_ok):
                return f"Invalid acknowledge type {t}."
    return None


def _rotated(keys, epoch):
    """Kafka's PartitionRotateStrategy round robin: keys moved left by the
    session epoch modulo their number; the initial (0) and final (-1) epochs
    keep them as they are."""
    if len(keys) < 2 or epoch < 1:
        return keys
    at = epoch % len(keys)
    return keys[at:] + keys[:at]


def _uniform_max_bytes(max_bytes, n):
    """Kafka's PartitionMaxBytesStrategy UNIFORM for n acquirable
    share-partitions, in order: max_bytes // n each, the remainder to one
    chosen at random; with fewer bytes than partitions, 1 byte to max_bytes
    of them in a row from a random one, 0 to the others."""
    if n == 0:
        return []
    if max_bytes >= n:
        shares = [max_bytes // n] * n
        shares[random.randrange(n)] += max_bytes % n
        return shares
    shares = [0] * n
    at = random.randrange(n)
    for i in range(max_bytes):
        shares[(at + i) % n] = 1
    return shares


async def _first_loaded(loading, timeout_s):
    """Until one of the loads ends (or timeout_s): the keys of those that
    ended, in the order they did."""
    ended = []
    woken = asyncio.get_running_loop().create_future()

    def done(key):
        ended.append(key)
        if not woken.done():
            woken.set_result(None)

    cbs = []
    for key, fut in loading:
        cb = (lambda _f, key=key: done(key))
        fut.add_done_callback(cb)
        cbs.append((fut, cb))
    try:
        await asyncio.wait([woken], timeout=timeout_s)
    finally:
        for fut, cb in cbs:
            fut.remove_done_callback(cb)
    return ended


def _retriable(code):
    # The persister cannot answer yet (its topic being created or loaded):
    # the share-partition is not ready, and a fetch hands out nothing from it
    # rather than an error librdkafka would take as fatal.
    if code in (Errors.NOT_COORDINATOR, Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.COORDINATOR_NOT_AVAILABLE,
                Errors.REQUEST_TIMED_OUT):
        return _NOT_READY
    return code


def _ignore_outcome(task):
    # A background task whose error the next fetch meets (and reports) again.
    if not task.cancelled():
        task.exception()
