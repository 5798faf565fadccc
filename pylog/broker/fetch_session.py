"""Incremental fetch sessions (KIP-227), kept as Kafka's FetchManager and
FetchSessionCache keep them.

A Fetch (v7+) names a session and an epoch:
  session_id 0, epoch 0     full request; the broker may create a session
                            and answers with its id (0: none was created);
  session_id S, epoch 0/-1  full request; session S is closed first; with
                            epoch -1 (FINAL) no new session is made;
  session_id S, epoch E>0   incremental: the partitions listed are added or
                            updated in S, forgotten_topics_data removed, and
                            the answer holds only the partitions whose
                            answer changed (records, high watermark, log
                            start offset, an error, a preferred read replica
                            or a diverging epoch).
Errors (top level, session id 0): FETCH_SESSION_ID_NOT_FOUND for an unknown
S, INVALID_FETCH_SESSION_EPOCH for E other than the session's next epoch,
FETCH_SESSION_TOPIC_ID_ERROR when a session made with topic ids (v13+) is
continued without them or the other way round.

A session holds at most max(SESSION_PARTITIONS_FLOOR, the partitions this
broker knows of) partitions, so made-up partitions cannot grow the cache
without bound (Kafka has no such limit; no real fetcher reaches it): a full
request naming more is answered without a session, an incremental one that
would grow past it closes the session (FETCH_SESSION_ID_NOT_FOUND; the
fetcher starts again with a full request).

The cache has Kafka's shape: max.incremental.fetch.session.cache.slots split
over 8 shards (integer division, as Kafka's broker does), each owning a
range of session ids; new sessions go to the shards in turn. A full shard
makes room by evicting a session unused for more than 120 s (the least
recently used first), else the lowest (privileged, partition count, id)
session among those created more than 120 s ago, when the new one ranks at
least as high; a follower's session (privileged) may also evict any
consumer's session. Otherwise the full request is answered without a
session (session id 0), which clients accept.

Threads: the broker's event loop only (FetchManager, the shards and the
sessions are unsynchronized; the loop is their lock).
"""
from __future__ import annotations

import random
import time

from ..protocol.error_codes import Errors

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
NUM_SHARDS = 8                 # Kafka's NumFetchSessionCacheShards
EVICTION_MS = 120_000          # Kafka's MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS
_INT_MAX = 0x7FFFFFFF
SESSION_ID_RANGE = _INT_MAX // NUM_SHARDS
SESSION_PARTITIONS_FLOOR = 1000


def next_epoch(epoch: int) -> int:
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch == _INT_MAX else epoch + 1


class CachedPartition:
    """One partition of a session: the request fields last sent for it
    (named as the request's FetchPartition, so the read loop serves both)
    and what the last answer that included it said."""

    __slots__ = ("topic_id", "partition", "partition_max_bytes", "fetch_offset", "current_leader_epoch",
                 "log_start_offset", "last_fetched_epoch", "high_watermark", "local_log_start_offset")

    def __init__(self, topic_id, fp):
        self.topic_id = topic_id
        self.partition = fp.partition
        self.update(fp)
        self.high_watermark = -1
        self.local_log_start_offset = -1

    def update(self, fp):
        self.partition_max_bytes = fp.partition_max_bytes
        self.fetch_offset = fp.fetch_offset
        self.current_leader_epoch = fp.current_leader_epoch
        self.log_start_offset = fp.log_start_offset
        self.last_fetched_epoch = fp.last_fetched_epoch

    def must_respond(self, code, hw, lss, has_records, preferred, diverging) -> bool:
        """Whether an incremental answer includes this partition; records
        what it then tells the fetcher (Kafka's maybeUpdateResponseData)."""
        respond = has_records or preferred >= 0 or diverging is not None
        if self.high_watermark != hw:
            respond = True
            self.high_watermark = hw
        if self.local_log_start_offset != lss:
            respond = True
            self.local_log_start_offset = lss
        if code:
            # Sent again once the error is gone.
            self.high_watermark = -1
            respond = True
        return respond


class FetchSession:
    __slots__ = ("id", "privileged", "partitions", "uses_topic_ids", "creation_ms", "last_used_ms", "epoch",
                 "cached_size", "evictable_by_all", "evictable_by_privileged")

    def __init__(self, session_id, privileged, partitions, uses_topic_ids, now_ms):
        self.id = session_id
        self.privileged = privileged
        # (topic key, partition) -> CachedPartition, in fetch order; the key is
        # the topic id for sessions made at v13+, else the topic name.
        self.partitions: dict = partitions
        self.uses_topic_ids = uses_topic_ids
        self.creation_ms = now_ms
        self.last_used_ms = now_ms
        self.epoch = next_epoch(INITIAL_EPOCH)
        self.cached_size = -1
        self.evictable_by_all = False
        self.evictable_by_privileged = False

    def evictable_key(self):
        return (self.privileged, self.cached_size, self.id)

    def update(self, wanted, forgotten):
        """Add or update the partitions listed; remove the forgotten ones."""
        parts = self.partitions
        for key, topic_id, fps in wanted:
            for fp in fps:
                cached = parts.get((key, fp.partition))
                if cached is None:
                    parts[(key, fp.partition)] = CachedPartition(topic_id, fp)
                else:
                    cached.update(fp)
        for key, indexes in forgotten:
            for index in indexes:
                parts.pop((key, index), None)


class FetchSessionCacheShard:
    """Up to max_entries sessions whose ids lie in this shard's range."""

    def __init__(self, max_entries: int, shard_num: int, eviction_ms: int = EVICTION_MS):
        self.max_entries = max_entries
        self.shard_num = shard_num
        self.eviction_ms = eviction_ms
        self.sessions: dict[int, FetchSession] = {}
        self.num_partitions = 0
        self.evictions = 0

    def new_session_id(self) -> int:
        lo = max(1, self.shard_num * SESSION_ID_RANGE)
        hi = (self.shard_num + 1) * SESSION_ID_RANGE
        while True:
            sid = random.randrange(lo, hi)
            if sid not in self.sessions:
                return sid

    def maybe_create(self, now_ms, privileged, size, uses_topic_ids, partitions) -> int:
        """A new session's id, or INVALID_SESSION_ID when there is no room."""
        if len(self.sessions) < self.max_entries or self._try_evict(privileged, (privileged, size, 0), now_ms):
            session = FetchSession(self.new_session_id(), privileged, partitions(), uses_topic_ids, now_ms)
            self.sessions[session.id] = session
            self.touch(session, now_ms)
            return session.id
        return INVALID_SESSION_ID

    def _try_evict(self, privileged, key, now_ms) -> bool:
        if not self.sessions:
            return False
        # A stale session goes first, the least recently used one (shards are
        # small: a scan, where Kafka keeps ordered maps).
        oldest = min(self.sessions.values(), key=lambda s: (s.last_used_ms, s.id))
        if now_ms - oldest.last_used_ms > self.eviction_ms:
            self.remove(oldest)
            self.evictions += 1
            return True
        flag = "evictable_by_privileged" if privileged else "evictable_by_all"
        candidates = [s for s in self.sessions.values() if getattr(s, flag)]
        if not candidates:
            return False
        weakest = min(candidates, key=FetchSession.evictable_key)
        if key < weakest.evictable_key():
            return False
        self.remove(weakest)
        self.evictions += 1
        return True

    def get(self, session_id):
        return self.sessions.get(session_id)

    def remove(self, session) -> bool:
        if self.sessions.pop(session.id, None) is None:
            return False
        self.num_partitions -= max(session.cached_size, 0)
        return True

    def touch(self, session, now_ms):
        """A session used now: its place among the least recently used, its
        size and whether it may be evicted, as of now."""
        session.last_used_ms = now_ms
        if session.cached_size != -1:
            self.num_partitions -= session.cached_size
        session.cached_size = len(session.partitions)
        old_enough = now_ms - session.creation_ms > self.eviction_ms
        session.evictable_by_privileged = (not session.privileged) or old_enough
        session.evictable_by_all = old_enough
        self.num_partitions += session.cached_size


class FetchContext:
    """What one Fetch reads and how its answer is made. wanted: the
    partitions to read, [(topic key, topic id, [partition requests])] in
    order; error: a session error answered at once with no partitions."""

    __slots__ = ("kind", "wanted", "error", "session", "expected_epoch", "manager", "privileged",
                 "uses_topic_ids")

    def __init__(self, kind, wanted, error=0, session=None, manager=None, privileged=False, uses_topic_ids=False):
        self.kind = kind
        self.wanted = wanted
        self.error = error
        self.session = session
        self.expected_epoch = session.epoch if session is not None else 0
        self.manager = manager
        self.privileged = privileged
        self.uses_topic_ids = uses_topic_ids

    def answer(self, parts):
        """(error code, session id, the parts to send) for the partitions read;
        each part is (topic key, topic id, fp, code, hw, lss, has_records,
        preferred, diverging, ...). Creates the full request's session, and
        updates an incremental one, so call it once, for the answer sent."""
        if self.kind == "sessionless":
            return 0, INVALID_SESSION_ID, parts
        if self.kind == "full":
            manager = self.manager

            def partitions():
                return {(p[0], p[2].partition): _cached_from(p) for p in parts}
            if not manager.may_hold(len(parts)):
                return 0, INVALID_SESSION_ID, parts
            sid = manager.next_shard().maybe_create(_now_ms(), self.privileged, len(parts),
                                                    self.uses_topic_ids, partitions)
            return 0, sid, parts
        session = self.session
        if session.epoch != self.expected_epoch:
            # Another request of this session ran meanwhile (a duplicate).
            return Errors.INVALID_FETCH_SESSION_EPOCH, session.id, []
        out = []
        moved = []
        cached_of = session.partitions
        for p in parts:
            k = (p[0], p[2].partition)
            cached = cached_of.get(k)
            if cached is None:
                continue
            if cached.must_respond(p[3], p[4], p[5], p[6], p[7], p[8]):
                out.append(p)
                if p[6]:
                    moved.append(k)
        # Partitions that returned records go to the end of the session's
        # order, so the next fetches serve the others first.
        for k in moved:
            cached_of[k] = cached_of.pop(k)
        return 0, session.id, out

    def throttled(self):
        """(error code, session id) of an answer a quota withholds (Kafka's
        getThrottledResponse): it carries no partitions; a full request
        creates no session, an incremental one keeps its session as it was."""
        if self.kind == "incremental":
            session = self.session
            if session.epoch != self.expected_epoch:
                return Errors.INVALID_FETCH_SESSION_EPOCH, session.id
            return 0, session.id
        return 0, INVALID_SESSION_ID


def _cached_from(p):
    c = CachedPartition(p[1], p[2])
    c.high_watermark = p[4]
    c.local_log_start_offset = p[5]
    return c


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class FetchManager:
    """Kafka's FetchManager.newContext over a sharded FetchSessionCache."""

    def __init__(self, slots: int, eviction_ms: int = EVICTION_MS, known_partitions=lambda: 0):
        per_shard = slots // NUM_SHARDS
        self.shards = [FetchSessionCacheShard(per_shard, n, eviction_ms) for n in range(NUM_SHARDS)]
        self._next = 0
        self._known_partitions = known_partitions

    def may_hold(self, size: int) -> bool:
        """Whether a session may have size partitions (counted only past the floor)."""
        return size <= SESSION_PARTITIONS_FLOOR or size <= self._known_partitions()

    def shard_of(self, session_id: int) -> FetchSessionCacheShard | None:
        n = session_id // SESSION_ID_RANGE
        return self.shards[n] if 0 <= n < NUM_SHARDS else None

    def next_shard(self) -> FetchSessionCacheShard:
        shard = self.shards[self._next % NUM_SHARDS]
        self._next += 1
        return shard

    def size(self) -> int:
        return sum(len(s.sessions) for s in self.shards)

    def new_context(self, version, session_id, epoch, privileged, wanted, forgotten) -> FetchContext:
        """wanted: [(topic key, topic id, [fp])] of the request; forgotten:
        [(topic key, [partition index])]."""
        uses_ids = version >= 13
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if session_id != INVALID_SESSION_ID:
                shard = self.shard_of(session_id)
                session = shard.get(session_id) if shard is not None else None
                if session is not None:
                    shard.remove(session)
            if epoch == FINAL_EPOCH:
                return FetchContext("sessionless", wanted)
            return FetchContext("full", wanted, manager=self, privileged=privileged, uses_topic_ids=uses_ids)
        shard = self.shard_of(session_id)
        session = shard.get(session_id) if shard is not None else None
        if session is None:
            return FetchContext("error", [], error=Errors.FETCH_SESSION_ID_NOT_FOUND)
        if session.epoch != epoch:
            return FetchContext("error", [], error=Errors.INVALID_FETCH_SESSION_EPOCH)
        if session.uses_topic_ids != uses_ids:
            return FetchContext("error", [], error=Errors.FETCH_SESSION_TOPIC_ID_ERROR)
        session.update(wanted, forgotten)
        if not self.may_hold(len(session.partitions)):
            shard.remove(session)
            return FetchContext("error", [], error=Errors.FETCH_SESSION_ID_NOT_FOUND)
        if not session.partitions:
            shard.remove(session)
            return FetchContext("sessionless", wanted)
        shard.touch(session, _now_ms())
        session.epoch = next_epoch(session.epoch)
        return FetchContext("incremental", _session_wanted(session), session=session)


def _session_wanted(session):
    """The session's partitions in its order, as runs of one topic."""
    wanted = []
    last = None
    for (key, _index), cached in session.partitions.items():
        if key != last:
            wanted.append((key, cached.topic_id, [cached]))
            last = key
        else:
            wanted[-1][2].append(cached)
    return wanted
