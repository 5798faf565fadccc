"""A Consumer's records from a local broker data directory (embedded mode).

EmbeddedSource implements FetchSource over the process's LocalStore for the
directory (a broker core without a listener), or over a read-only reader of a
directory another process writes; LocalMembership implements the group membership interface for the
one member a local directory can have (one process owns the directory, so
there is nobody to share partitions with and no coordinator to ask).
"""
from __future__ import annotations

import asyncio
import time
import uuid

from ..broker.fetch_api import _DelayedFetch
from ..broker.purgatory import HIGH_WATERMARK, LOG_END
from ..embedded.reader import TAIL_POLL_S
from ..embedded.store import LocalStore
from ..errors import OffsetOutOfRangeError, PylogError
from ..structs import OffsetAndMetadata, TopicPartition
from .source import FetchedPartition

__all__ = ["EmbeddedSource", "LocalMembership"]

_NO_LIMIT = 0x7FFFFFFF


class EmbeddedSource:
    """FetchSource over a LocalStore: the same answers a broker on that
    directory would give, without sockets.

    A fetch first reads on the consumer's thread (LocalStore.read_here: the
    thread-safe Log, cut at the high watermark taken before the read) and
    returns at once when that answers it; otherwise (nothing new yet,
    read_committed, an offset only the loop can judge) it runs on the store's
    broker core's loop: it reads the partitions
    (Partition.read, as the Fetch handler does) and, with fewer than
    min_bytes, waits in the broker's one purgatory on the partitions' high
    watermark and log end listeners, with the Fetch long-poll's own delayed
    operation (a partition moved since it was read), until max_wait_ms; then
    it reads again. No other waiting mechanism. A read-only store
    (LocalStore.open(read_only=True), another process writing) has its own
    tail wait (pylog/embedded/reader.py).

    Invariants: answers never include records at or above the high watermark;
    each answer's records are whole batches starting with the one holding the
    position (the consumer drops the records below it, as from a broker).

    Thread-safety: fetch() and the other calls from the consumer's thread
    only, except wakeup(), which any thread may call (it only schedules work
    on the loop). `_woken` and `_op` are touched on the store's loop only.
    close() drops this source's store reference.
    """

    def __init__(self, log_dir, *, allow_auto_create_topics: bool = True, store=None, read_only: bool = False,
                 require_stable: bool = False, **store_options):
        """store_options go to LocalStore.open (auto_create_topics,
        num_partitions, config); store: an open LocalStore to share instead
        (this source takes its own reference). read_only: tail a directory
        another process writes (nothing is created, committed or locked).
        require_stable: committed offsets are read as a read_committed
        consumer asks for them (KIP-447: not while a transaction holds some
        of the group's offsets pending)."""
        self.require_stable = require_stable
        if store is None:
            store = LocalStore.open(log_dir, read_only=read_only, **store_options)
        else:
            store = LocalStore.open(store.data_dir)  # one more reference to the same store
        self.store = store
        self.read_only = read_only
        self.allow_auto_create_topics = allow_auto_create_topics and not read_only
        self._woken = False
        self._op = None        # the fetch waiting in the purgatory now, if any
        self._closed = False

    # ---- metadata ----

    def partitions_for(self, topic: str, refresh: bool = False) -> list[int] | None:
        # Nothing is cached, so every answer is fresh: refresh has nothing to do.
        return self.store.partitions_for(topic, create=self.allow_auto_create_topics)

    def topics(self) -> list[str]:
        return self.store.topics()

    # ---- fetching ----

    def fetch(self, positions: dict[TopicPartition, int], *, max_wait_ms: int, min_bytes: int = 1,
              max_bytes: int = 52428800, max_partition_bytes: int = 1048576,
              isolation_level: int = 0) -> dict[TopicPartition, FetchedPartition]:
        """Every position's partition: records (whole batches, bytes), the high
        watermark and log start offset, or an error (OffsetOutOfRangeError,
        UnknownTopicOrPartitionError). Waits up to max_wait_ms for min_bytes of
        records; returns at once on an error, and early on wakeup().
        isolation_level 1 (READ_COMMITTED) reads below the last stable offset
        and answers the aborted transactions, as the broker's Fetch does."""
        if self.read_only:
            return self._tail(dict(positions), max_wait_ms, min_bytes, max_bytes, max_partition_bytes,
                              isolation_level == 1)
        committed = isolation_level == 1
        if not committed and positions:
            # First read here, on the consumer's thread: a fetch that finds
            # its data (the common case when catching up) costs no trip to
            # the loop. Only a wait, or what only the loop can answer, goes
            # there (and reads again there).
            out, total, error = self._fetch_once(positions, max_bytes, max_partition_bytes, here=True)
            if out is not None and (error or total >= min_bytes or max_wait_ms <= 0):
                return out
        return self.store.call(self._fetch_on_loop, dict(positions), max_wait_ms, min_bytes, max_bytes,
                               max_partition_bytes, committed)

    async def _fetch_on_loop(self, positions, max_wait_ms, min_bytes, max_bytes, max_partition_bytes,
                             committed):
        store = self.store
        purgatory = store.broker.handlers.purgatory
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(max_wait_ms, 0) / 1000.0
        while True:
            out, total, error = self._fetch_once(positions, max_bytes, max_partition_bytes, committed)
            if error or total >= min_bytes or max_wait_ms <= 0 or not positions:
                return out
            if self._woken:
                self._woken = False   # this wakeup is used up; one during a data answer is kept
                return out
            remaining = deadline - loop.time()
            if remaining <= 0 or store.closed:
                return out
            # The partitions' positions as this read saw them, taken now:
            # whatever moves before the wait starts completes it at once.
            parts = [store.partition_on_loop(tp.topic, tp.partition) for tp in positions]
            op = self._op = _WakeableFetch(parts, store)
            try:
                moved = await purgatory.wait(op, parts, (HIGH_WATERMARK, LOG_END), remaining)
            finally:
                self._op = None
            if self._woken:
                self._woken = False
                return out
            if not moved or store.closed:
                return out

    def _tail(self, positions, max_wait_ms, min_bytes, max_bytes, max_partition_bytes, committed):
        """fetch() over a read-only store: another process appends, so no
        listener here can tell; look again every TAIL_POLL_S (reader.py)."""
        deadline = time.monotonic() + max(max_wait_ms, 0) / 1000.0
        while True:
            out, total, error = self._fetch_once(positions, max_bytes, max_partition_bytes, committed)
            if error or total >= min_bytes or max_wait_ms <= 0 or not positions or self._take_wakeup():
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.store.closed:
                return out
            time.sleep(min(TAIL_POLL_S, remaining))

    def _fetch_once(self, positions, max_bytes, max_partition_bytes, committed=False, here=False):
        """(answers, record bytes, any error), by the store's read_now and
        watermarks_now (on the loop for a LocalStore). here: on the calling
        thread by LocalStore.read_here instead (never committed); answers is
        None when a partition needs the loop (read_here said so)."""
        store = self.store
        budget = max_bytes if max_bytes > 0 else _NO_LIMIT
        total = 0
        error = False
        out = {}
        for tp, offset in positions.items():
            try:
                if budget > 0 or total == 0:
                    limit = min(max_partition_bytes if max_partition_bytes > 0 else _NO_LIMIT, budget)
                    if here:
                        # Zero-copy: the consumer decodes the records as
                        # views of the mapped segment (no ~1 MB copy per
                        # partition and fetch, each a fresh mmap in malloc).
                        got = store.read_here(tp.topic, tp.partition, offset, limit, copy=False)
                        if got is None:
                            return None, 0, False
                        data, hw, lso, aborted = got
                    else:
                        data, hw, lso, aborted = store.read_now(tp.topic, tp.partition, offset, limit, committed)
                    if total > 0 and len(data) > budget:
                        data = b""  # only the first partition may exceed the budget (KIP-74)
                else:
                    data, aborted = b"", ()
                    hw, lso = store.watermarks_now(tp.topic, tp.partition)
                out[tp] = FetchedPartition(data, hw, lso, None, aborted)
                total += len(data)
                budget -= len(data)
            except OffsetOutOfRangeError as e:
                error = True
                out[tp] = FetchedPartition(None, *store.watermarks_now(tp.topic, tp.partition), e)
            except PylogError as e:
                error = True
                out[tp] = FetchedPartition(None, -1, -1, e)
        return out, total, error

    def list_offsets(self, timestamps: dict[TopicPartition, int],
                     isolation_level: int = 0) -> dict[TopicPartition, tuple[int, int]]:
        return {tp: self.store.list_offset(tp.topic, tp.partition, ts, isolation_level)
                for tp, ts in timestamps.items()}

    # ---- committed offsets ----

    def commit_offsets(self, group_id: str, offsets: dict[TopicPartition, OffsetAndMetadata], *,
                       generation_id: int = -1, member_id: str = "",
                       group_instance_id: str | None = None, member_epoch: bool = False) -> None:
        # A classic local member is the group's only one: its commits need no
        # generation check, and are stored as standalone commits (which is
        # also what a broker started later expects of a group with no members).
        # A KIP-848 member is one of the store's coordinator's: it commits
        # with its member epoch.
        if member_epoch:
            self.store.commit_offsets(group_id, offsets, member_id=member_id, member_epoch=generation_id)
            return
        self.store.commit_offsets(group_id, offsets)

    def committed_offsets(self, group_id: str, partitions: list[TopicPartition],
                          timeout: float | None = None) -> dict[TopicPartition, OffsetAndMetadata | None]:
        # timeout bounds the wait for offsets an open transaction holds
        # unstable (default: the store's request timeout), as the network
        # source's; poll passes what is left of its own.
        if self.require_stable and not self.read_only:
            return self.store.committed_offsets(group_id, partitions, require_stable=True, timeout=timeout)
        return self.store.committed_offsets(group_id, partitions)

    # ---- lifecycle ----

    def wakeup(self) -> None:
        """Make the current (or else the next) fetch return at once."""
        if self.read_only:
            self._woken = True   # the tail wait looks at it (one attribute store: atomic under the GIL)
            return
        self.store.call_soon(self._wake)

    def _wake(self):
        self._woken = True
        op = self._op
        if op is not None:
            op.complete_now()

    def _take_wakeup(self) -> bool:
        woken, self._woken = self._woken, False
        return woken

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.store.close()


class _WakeableFetch(_DelayedFetch):
    """The Fetch long-poll's delayed operation (broker/handlers.py), which
    also completes when the store closes or a wakeup ends it. Loop only."""

    __slots__ = ("store",)

    def __init__(self, parts, store):
        super().__init__(parts, store.broker)
        self.store = store

    def try_complete(self) -> bool:
        return self.store.closed or super().try_complete()

    def complete_now(self):
        fut = self._future
        if fut is not None and not fut.done():
            fut.set_result(True)


class LocalMembership:
    """Group membership with one member: this process, the only one that can
    open the directory. Same interface as the network GroupMembership.

    Every partition of the subscribed topics is assigned to it. A change of
    subscription or of the topics' partitions (new partitions, a topic
    created) is a rebalance: the generation grows by one and the listener
    hears of it, eagerly (all revoked, then all assigned) unless every
    assignor is COOPERATIVE (then only the difference), as a Kafka consumer
    with those assignors would. There are no sessions, so
    on_lost is never called.

    Invariants: assignment() is exactly the partitions of the subscribed
    topics as of the last ensure_active(); generation() is (-1, "") until the
    first ensure_active() and after close().

    Thread-safety: not thread-safe; the consumer's thread only. Listener
    callbacks run on the thread calling ensure_active() or close().
    """

    def __init__(self, group_id: str, *, listener, assignors=(), session_timeout_ms: int = 45000,
                 rebalance_timeout_ms: int = 300000, heartbeat_interval_ms: int = 3000,
                 group_instance_id: str | None = None, source: EmbeddedSource, client_id: str = "pylog",
                 **_ignored):
        self.group_id = group_id
        self.listener = listener
        self.source = source
        self.group_instance_id = group_instance_id
        self.cooperative = _is_cooperative(assignors)
        self._member_id = f"{group_instance_id or client_id}-{uuid.uuid4()}"
        self._subscription: set[str] = set()
        self._assignment: set[TopicPartition] = set()
        self._generation_id = 0
        self._joined = False
        self._closed = False

    def subscribe(self, topics: set[str]) -> None:
        topics = set(topics)
        if topics != self._subscription:
            self._subscription = topics
            self._joined = False  # a rejoin, on the next ensure_active

    def ensure_active(self, timeout_s: float = 0.0) -> bool:
        """Bring the assignment up to date with the subscription and the
        topics' partitions, calling the listener for a change. True unless closed."""
        if self._closed:
            return False
        target = self._target()
        if not self._joined or target != self._assignment:
            self._rebalance(target)
        return True

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def generation(self) -> tuple[int, str]:
        if not self._joined or self._closed:
            return -1, ""
        return self._generation_id, self._member_id

    def note_poll(self) -> None:
        # max.poll.interval.ms evicts a member so others can take its
        # partitions; a sole local member has nobody to hand them to.
        pass

    def close(self, leave: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        owned, self._assignment = self._assignment, set()
        if owned and leave:
            self.listener.on_revoke(sorted(owned))

    # ---- internals ----

    def _target(self) -> set[TopicPartition]:
        out = set()
        for topic in self._subscription:
            for p in self.source.partitions_for(topic, refresh=True) or ():
                out.add(TopicPartition(topic, p))
        return out

    def _rebalance(self, target: set[TopicPartition]):
        old = self._assignment
        if self.cooperative:
            revoked, assigned = old - target, target - old
        else:
            revoked, assigned = old, target
        if revoked:
            self.listener.on_revoke(sorted(revoked))
        # State first: a listener that raises still leaves a consistent member.
        self._assignment = set(target)
        self._generation_id += 1
        self._joined = True
        self.listener.on_assign(sorted(assigned))


def _is_cooperative(assignors) -> bool:
    # As Java (and the network GroupMembership): cooperative (KIP-429) only
    # when every configured assignor is.
    return bool(assignors) and all(getattr(a, "protocol", "EAGER") == "COOPERATIVE" for a in assignors)
