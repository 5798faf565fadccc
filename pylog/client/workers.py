"""A bounded worker pool behind a consumer, committing only what is finished.

    processor = ConcurrentProcessor(consumer, handle, workers=8, max_in_flight=1000)
    processor.subscribe(["orders"])          # or consumer.assign(...) yourself
    processor.run(stop_event)                # returns after draining and a last commit

The poll loop hands each message to a ``ThreadPoolExecutor``; handlers finish
in any order, so the offset committed for a partition is the *low-water mark of
unfinished work*, tracked by ``OffsetTracker``.

Invariants
----------
- Commit safety: for every partition, a committed offset ``c`` satisfies
  ``c <= o`` for every offset ``o`` received from ``poll()`` whose handling has
  not finished (handler returned, or raised and ``on_error`` returned). Kafka's
  committed offset is "the next offset to read", so everything below ``c`` is
  done. Offsets never delivered (gaps left by compaction, transaction markers)
  never hold the commit back. Delivery is therefore at-least-once: a crash
  re-delivers at most the unfinished window.
- Bounded work: at most ``max_in_flight`` handlers are submitted to the pool
  and not yet finished. Fetching is paused (``consumer.pause``) once the
  messages held (in the pool plus a small backlog of messages that arrived
  after pausing) reach ``max_in_flight``, and resumed when they fall to the
  low-water mark ``resume_at`` (default ``max_in_flight // 2``). (librdkafka
  discards prefetched messages of a paused partition and re-fetches them after
  resume, so size max_in_flight for pauses to be the exception.)
- A partition given up (``on_revoke``) is drained first: its backlog is
  dropped (not processed, so not committed: the next owner re-reads it), its
  running handlers are waited for (up to ``drain_timeout_s``), its finished
  prefix is committed, and its state is forgotten. A partition lost
  (``on_lost``: the group already gave it away) is forgotten without a commit.
  Handlers of a forgotten partition that finish later are ignored (a
  per-partition generation number), so a re-assignment starts clean.

Thread-safety
-------------
``OffsetTracker`` is plain, single-threaded data: callers serialise access
(``ConcurrentProcessor`` does so under its own lock, because handlers finish on
worker threads).

``ConcurrentProcessor`` touches the consumer only from the thread running
``run()`` (``on_revoke``/``on_lost`` are called by the consumer from inside
``poll()`` on that same thread), so a consumer that is not thread-safe is fine.
Handlers and ``on_error`` run on the pool's threads. ``close()`` may be called
from any thread: while ``run()`` is active it only asks the loop to stop and
waits for it.

Consumer adapter surface
------------------------
The consumer needs: ``poll(timeout) -> msg | None`` with ``msg.topic()``,
``msg.partition()``, ``msg.offset()``, ``msg.error()``; ``assignment()``;
``pause(tps)``; ``resume(tps)``; ``commit(offsets=tps, asynchronous=False)``
(may raise; may return the list with a per-partition ``.error``); and, for
``subscribe()`` only, ``subscribe(topics, on_revoke=..., on_lost=...)``. Objects
in ``tps`` are built with the ``topic_partition(topic, partition[, offset])``
factory (default: ``confluent_kafka.TopicPartition``) and read back through
``.topic``/``.partition``. confluent-kafka's Consumer fits as is; a
``pylog.Consumer`` is wrapped in ``PylogConsumerAdapter`` automatically (its
poll returns lists of records with attributes, not one message with methods),
and handlers then receive pylog's ConsumerRecord objects.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Hashable, Iterable

__all__ = ["ConcurrentProcessor", "OffsetTracker", "ProcessorStats"]

log = logging.getLogger(__name__)

TP = Hashable   # a partition key; the processor uses (topic, partition)

_PARTITION_EOF = -191   # librdkafka's _PARTITION_EOF: an event, not a failure


class _PartitionState:
    __slots__ = ("pending", "open", "last")

    def __init__(self) -> None:
        # Started offsets, in order, not yet retired. The head is always
        # unfinished (retiring pops finished heads), so the commit point is
        # pending[0]; entries behind it may be finished already.
        self.pending: collections.deque[int] = collections.deque()
        self.open: set[int] = set()   # started and not done
        self.last = -1                # highest started offset


class OffsetTracker:
    """Per partition, which handed-out offsets are finished, and how far a
    commit may go.

    ``started(tp, offset)`` must be called in increasing offset order per
    partition (gaps allowed); ``done(tp, offset)`` in any order, once per
    started offset. ``committable()`` gives, for every partition that has
    started anything, one past the highest offset below which every started
    offset is done: the first unfinished offset, or ``last started + 1`` when
    none is unfinished. Each message costs amortised O(1): it is appended once
    and popped once; ``committable()`` is O(partitions).

    Not thread-safe (see the module docstring).
    """

    def __init__(self) -> None:
        self._parts: dict[TP, _PartitionState] = {}

    def started(self, tp: TP, offset: int) -> None:
        st = self._parts.get(tp)
        if st is None:
            st = self._parts[tp] = _PartitionState()
        elif offset <= st.last:
            # A rewind would make the "first unfinished" order wrong; the
            # caller must forget() the partition first.
            raise ValueError(f"{tp!r}: offset {offset} after {st.last} (forget() before rewinding)")
        st.pending.append(offset)
        st.open.add(offset)
        st.last = offset

    def done(self, tp: TP, offset: int) -> None:
        st = self._parts.get(tp)
        if st is None or offset not in st.open:
            raise ValueError(f"{tp!r}: offset {offset} is not in flight")
        st.open.remove(offset)
        pending = st.pending
        while pending and pending[0] not in st.open:
            pending.popleft()

    def forget(self, tp: TP) -> None:
        """Drop all state of tp (revoked or lost); unknown tp is fine."""
        self._parts.pop(tp, None)

    def committable(self) -> dict[TP, int]:
        return {tp: (st.pending[0] if st.pending else st.last + 1) for tp, st in self._parts.items()}

    def in_flight(self, tp: TP | None = None) -> int:
        """Unfinished offsets of tp (or of all partitions)."""
        if tp is not None:
            st = self._parts.get(tp)
            return len(st.open) if st else 0
        return sum(len(st.open) for st in self._parts.values())

    def last_started(self, tp: TP) -> int | None:
        st = self._parts.get(tp)
        return None if st is None else st.last

    def partitions(self) -> list[TP]:
        return list(self._parts)


@dataclasses.dataclass
class ProcessorStats:
    received: int = 0        # messages taken from poll (errors/EOF events excluded)
    processed: int = 0       # handlers finished (ok or failed)
    failed: int = 0          # handlers that raised
    commits: int = 0         # successful commit calls
    commit_errors: int = 0
    pauses: int = 0
    resumes: int = 0
    max_running: int = 0     # highest number of submitted-and-unfinished handlers seen
    dropped: int = 0         # backlog messages dropped at revoke/shutdown (re-read later)


def _default_topic_partition() -> Callable[..., Any]:
    try:
        from confluent_kafka import TopicPartition
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise TypeError("pass topic_partition=... (confluent_kafka is not installed)") from e
    return TopicPartition


def _read_confluent(msg):
    return msg.error(), msg.topic(), msg.partition(), msg.offset()


def _is_pylog_consumer(consumer) -> bool:
    from ..consumer import Consumer
    return isinstance(consumer, Consumer)


class _Offset:
    """The topic_partition factory for pylog consumers (topic, partition, offset)."""

    __slots__ = ("topic", "partition", "offset")

    def __init__(self, topic, partition, offset=-1001):
        self.topic, self.partition, self.offset = topic, partition, offset


class PylogConsumerAdapter:
    """pylog.Consumer behind the confluent-style surface the processor uses:
    poll(timeout) hands out one record at a time from pylog's batches,
    pause/resume take lists, commit takes objects with .offset.

    Thread-safety: none; the processor's loop thread is its only user."""

    def __init__(self, consumer):
        self.consumer = consumer
        self._buffer: collections.deque = collections.deque()

    @staticmethod
    def read(record):
        return None, record.topic, record.partition, record.offset

    def poll(self, timeout: float):
        if not self._buffer:
            self._buffer.extend(self.consumer.poll(timeout))
            if not self._buffer:
                return None
        return self._buffer.popleft()

    def assignment(self):
        return list(self.consumer.assignment())

    def pause(self, tps) -> None:
        from ..structs import TopicPartition
        parts = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        self.consumer.pause(*parts)
        # Records already handed over by pylog's poll stay in the buffer: the
        # processor keeps what arrives after pausing in its own backlog.

    def resume(self, tps) -> None:
        from ..structs import TopicPartition
        self.consumer.resume(*[TopicPartition(tp.topic, tp.partition) for tp in tps])

    def commit(self, offsets, asynchronous: bool = False):
        from ..structs import OffsetAndMetadata, TopicPartition
        self.consumer.commit({TopicPartition(o.topic, o.partition): OffsetAndMetadata(o.offset)
                              for o in offsets}, asynchronous=asynchronous)
        return None

    def subscribe(self, topics, on_revoke=None, on_lost=None) -> None:
        self.consumer.subscribe(topics, on_revoke=on_revoke, on_lost=on_lost)


class ConcurrentProcessor:
    """Run ``handler(msg)`` for every polled message on a bounded thread pool
    and commit, per partition, only offsets below which all work is done.

    ``on_error(msg, exc)`` is called (on the worker thread) when the handler
    raises. Default: log the exception and count the message as done, i.e. a
    failing message is skipped rather than blocking its partition's commits
    forever; retries or a dead-letter topic belong in ``on_error``. If
    ``on_error`` itself raises, the failure counts as *not handled*: that
    offset is never marked done (so never committed past), the loop stops, and
    ``run()`` re-raises that exception after draining and a last commit.

    The caller owns the consumer: this class never subscribes (except through
    ``subscribe()``), assigns or closes it.
    """

    def __init__(self, consumer, handler: Callable[[Any], Any], *, workers: int = 8,
                 max_in_flight: int = 1000, commit_interval_s: float = 1.0,
                 on_error: Callable[[Any, BaseException], Any] | None = None,
                 resume_at: int | None = None, poll_timeout_s: float = 0.1,
                 drain_timeout_s: float = 30.0,
                 topic_partition: Callable[..., Any] | None = None) -> None:
        if workers < 1 or max_in_flight < 1:
            raise ValueError("workers and max_in_flight must be >= 1")
        self._resume_at = max_in_flight // 2 if resume_at is None else resume_at
        if not 0 <= self._resume_at < max_in_flight:
            raise ValueError("resume_at must be in [0, max_in_flight)")
        if _is_pylog_consumer(consumer):
            consumer = PylogConsumerAdapter(consumer)
            topic_partition = topic_partition or _Offset
        self._consumer = consumer
        self._read = consumer.read if isinstance(consumer, PylogConsumerAdapter) else _read_confluent
        self._handler = handler
        self._on_error = on_error or self._log_error
        self._max = max_in_flight
        self._commit_interval = commit_interval_s
        self._poll_timeout = poll_timeout_s
        self._drain_timeout = drain_timeout_s
        self._tp = topic_partition or _default_topic_partition()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                           thread_name_prefix="pylog-worker")
        self.stats = ProcessorStats()

        # Everything below is guarded by _cond (its lock); the consumer itself
        # is only used by the loop thread.
        self._cond = threading.Condition()
        self._tracker = OffsetTracker()
        self._gen: dict[TP, int] = {}             # bumped when a partition is forgotten
        self._running = 0                          # submitted, not finished
        self._running_per_tp: collections.Counter = collections.Counter()
        self._backlog: collections.deque = collections.deque()   # (msg, tp, gen, offset)
        self._last_committed: dict[TP, int] = {}
        self._paused = False
        self._paused_tps: set[TP] = set()
        self._fatal: BaseException | None = None

        self._stop = threading.Event()
        self._loop_active = False
        self._loop_exited = threading.Event()
        self._shut = False

    # -- public API ---------------------------------------------------------

    def subscribe(self, topics: list[str]) -> None:
        """consumer.subscribe(topics) with this processor's rebalance callbacks.
        If you need your own callbacks, call on_revoke/on_lost from them."""
        self._consumer.subscribe(topics, on_revoke=self.on_revoke, on_lost=self.on_lost)

    def run(self, stop_event: threading.Event | None = None) -> None:
        """Poll, dispatch and commit until stop_event is set or close() is
        called; then wait for in-flight work (up to drain_timeout_s) and commit
        once more."""
        with self._cond:
            if self._loop_active or self._shut:
                raise RuntimeError("run() is already active or the processor is closed")
            self._loop_active = True
        try:
            next_commit = time.monotonic() + self._commit_interval
            while not self._stop.is_set() and not (stop_event is not None and stop_event.is_set()):
                if self._fatal is not None:
                    break
                msg = self._poll_step()
                if msg is not None:
                    self._accept(msg)
                if time.monotonic() >= next_commit:
                    self.commit()
                    next_commit = time.monotonic() + self._commit_interval
        finally:
            try:
                self._shutdown(self._drain_timeout)
            finally:
                self._loop_exited.set()
        if self._fatal is not None:
            raise self._fatal

    def close(self, timeout: float | None = None) -> None:
        """Stop: if run() is active (on another thread), ask it to stop and wait
        up to timeout for its drain and final commit; otherwise drain and commit
        here. The consumer is left open (and resumed)."""
        self._stop.set()
        with self._cond:
            active = self._loop_active
        if active:
            if not self._loop_exited.wait(timeout):
                log.warning("close(): run() did not finish within %ss", timeout)
        else:
            self._shutdown(self._drain_timeout if timeout is None else timeout)

    def commit(self, only: Iterable[TP] | None = None) -> bool:
        """Commit the safe offsets that changed since the last commit (of the
        partitions in `only`, or all). Loop thread only. False on failure (the
        next call retries)."""
        with self._cond:
            safe = self._tracker.committable()
            if only is not None:
                keep = set(only)
                safe = {tp: o for tp, o in safe.items() if tp in keep}
            todo = {tp: o for tp, o in safe.items() if self._last_committed.get(tp) != o}
            gens = {tp: self._gen.get(tp) for tp in todo}
        if not todo:
            return True
        try:
            result = self._consumer.commit(offsets=[self._tp(t, p, o) for (t, p), o in todo.items()],
                                           asynchronous=False)
        except Exception as e:
            # E.g. a rebalance in progress: nothing is lost, the offsets are
            # recomputed and retried at the next interval (or on revoke).
            self.stats.commit_errors += 1
            log.warning("commit of %s failed: %s", todo, e)
            return False
        failed = {(r.topic, r.partition) for r in (result or []) if getattr(r, "error", None)}
        with self._cond:
            for tp, o in todo.items():
                if tp not in failed and self._gen.get(tp) == gens[tp]:   # not forgotten meanwhile
                    self._last_committed[tp] = o
        self.stats.commits += 1
        if failed:
            self.stats.commit_errors += 1
            log.warning("commit failed for %s", sorted(failed))
            return False
        return True

    def on_revoke(self, consumer, partitions) -> None:
        """Rebalance callback (consumer.subscribe(..., on_revoke=...)): drain
        the revoked partitions, commit them, forget them. Runs on the loop
        thread, inside poll(), before the consumer gives them up."""
        tps = {(tp.topic, tp.partition) for tp in partitions}
        self._drain(tps, self._drain_timeout)
        self.commit(only=tps)
        self._unpause(tps)
        self._forget(tps)

    def on_lost(self, consumer, partitions) -> None:
        """The partitions already belong to someone else: committing would be
        refused (or clobber the new owner's progress), so only forget them."""
        tps = {(tp.topic, tp.partition) for tp in partitions}
        with self._cond:
            self._drop_backlog(tps)
        self._unpause(tps)
        self._forget(tps)

    # -- the loop -----------------------------------------------------------

    def _poll_step(self):
        with self._cond:
            self._submit_backlog()
            load = self._running + len(self._backlog)
            pause = not self._paused and load >= self._max
            resume = self._paused and load <= self._resume_at
        if pause:
            self._pause_all()
        elif resume:
            self._resume_all()
        if self._paused:
            # Fetching is paused: wait for completions (poll() could not be
            # woken by them), then poll(0) so rebalance callbacks and the
            # consumer's liveness (max.poll.interval.ms) are still served.
            with self._cond:
                self._cond.wait_for(lambda: self._running + len(self._backlog) <= self._resume_at
                                    or self._stop.is_set() or self._fatal is not None,
                                    timeout=self._poll_timeout)
            return self._consumer.poll(0)
        return self._consumer.poll(self._poll_timeout)

    def _accept(self, msg) -> None:
        err, topic, partition, offset = self._read(msg)
        if err is not None:
            code = err.code() if callable(getattr(err, "code", None)) else None
            if code != _PARTITION_EOF:
                log.warning("consumer error: %s", err)
            return
        tp = (topic, partition)
        with self._cond:
            last = self._tracker.last_started(tp)
            rewind_wait = last is not None and offset <= last
        if rewind_wait:
            # The consumer went back (seek, offset reset): drain and start the
            # partition afresh, without committing (the rewind was wanted).
            log.info("%s rewound to %d; restarting its tracking", tp, offset)
            self._drain({tp}, self._drain_timeout)
            self._forget({tp})
        with self._cond:
            gen = self._gen.setdefault(tp, 0)
            self._tracker.started(tp, offset)
            self.stats.received += 1
            self._backlog.append((msg, tp, gen, offset))
            self._submit_backlog()
            need_pause = self._paused and tp not in self._paused_tps
        if need_pause:
            # A partition assigned after we paused: pause it too, so the
            # backlog stays bounded by what the consumer had already fetched.
            self._pause([tp])

    def _submit_backlog(self) -> None:
        # Called with _cond held. FIFO keeps per-partition start order.
        while self._backlog and self._running < self._max and not self._shut:
            msg, tp, gen, offset = self._backlog.popleft()
            self._running += 1
            self._running_per_tp[tp] += 1
            if self._running > self.stats.max_running:
                self.stats.max_running = self._running
            self._pool.submit(self._work, msg, tp, gen, offset)

    def _work(self, msg, tp, gen, offset) -> None:
        handled = False
        try:
            try:
                self._handler(msg)
            except Exception as exc:
                with self._cond:
                    self.stats.failed += 1
                try:
                    self._on_error(msg, exc)
                except Exception as fatal:
                    log.exception("on_error raised for %s@%d: stopping the processor", tp, offset)
                    with self._cond:
                        if self._fatal is None:
                            self._fatal = fatal
                    return
            handled = True
        finally:
            with self._cond:
                self._running -= 1
                self._running_per_tp[tp] -= 1
                if self._running_per_tp[tp] <= 0:
                    del self._running_per_tp[tp]
                self.stats.processed += 1
                # A stale generation means the partition was revoked/lost
                # meanwhile: its new state must not see this offset.
                if handled and self._gen.get(tp) == gen:
                    self._tracker.done(tp, offset)
                self._cond.notify_all()

    # -- pausing ------------------------------------------------------------

    def _pause_all(self) -> None:
        try:
            assigned = [(tp.topic, tp.partition) for tp in self._consumer.assignment()]
        except Exception as e:
            log.warning("assignment() failed: %s", e)
            assigned = []
        with self._cond:
            self._paused = True
        self.stats.pauses += 1
        self._pause(assigned)

    def _pause(self, tps) -> None:
        if not tps:
            return
        try:
            self._consumer.pause([self._tp(t, p) for t, p in tps])
        except Exception as e:
            log.warning("pause(%s) failed: %s", tps, e)
            return
        with self._cond:
            self._paused_tps.update(tps)

    def _resume_all(self) -> None:
        with self._cond:
            tps = sorted(self._paused_tps)
            self._paused_tps.clear()
            self._paused = False
        self.stats.resumes += 1
        if not tps:
            return
        try:
            assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
            tps = [tp for tp in tps if tp in assigned]
            if tps:
                self._consumer.resume([self._tp(t, p) for t, p in tps])
        except Exception as e:
            log.warning("resume(%s) failed: %s", tps, e)

    def _unpause(self, tps: set) -> None:
        # librdkafka keeps a partition's pause flag across unassign/assign: a
        # partition revoked while paused and given back to us would stay
        # paused forever once forgotten here, so resume it while still ours.
        with self._cond:
            mine = sorted(tp for tp in tps if tp in self._paused_tps)
            self._paused_tps.difference_update(mine)
        if mine:
            try:
                self._consumer.resume([self._tp(t, p) for t, p in mine])
            except Exception as e:
                log.warning("resume(%s) failed: %s", mine, e)

    # -- draining -----------------------------------------------------------

    def _drop_backlog(self, tps: set) -> None:
        # Called with _cond held. Dropped messages stay unfinished in the
        # tracker until forgotten, so nothing is committed past them.
        kept = [item for item in self._backlog if item[1] not in tps]
        self.stats.dropped += len(self._backlog) - len(kept)
        self._backlog = collections.deque(kept)

    def _drain(self, tps: set, timeout: float) -> bool:
        with self._cond:
            self._drop_backlog(tps)
            ok = self._cond.wait_for(lambda: not any(self._running_per_tp.get(tp) for tp in tps),
                                     timeout=timeout)
        if not ok:
            log.warning("handlers of %s still running after %ss; their results will not be "
                        "committed (the next owner re-processes them)", sorted(tps), timeout)
        return ok

    def _forget(self, tps: set) -> None:
        with self._cond:
            for tp in tps:
                self._tracker.forget(tp)
                if tp in self._gen:
                    self._gen[tp] += 1
                self._last_committed.pop(tp, None)
                self._paused_tps.discard(tp)

    def _shutdown(self, timeout: float | None) -> None:
        with self._cond:
            if self._shut:
                return
            self._shut = True
            # Backlog messages were never started by a handler: leave them
            # unfinished (the final commit stops before them; re-read later).
            self.stats.dropped += len(self._backlog)
            self._backlog.clear()
            drained = self._cond.wait_for(lambda: self._running == 0, timeout=timeout)
        if not drained:
            log.warning("shutdown: %d handlers still running after %ss", self._running, timeout)
        if self._paused:
            self._resume_all()
        self.commit()
        # cancel_futures: only matters when the drain timed out.
        self._pool.shutdown(wait=drained, cancel_futures=True)

    def _log_error(self, msg, exc: BaseException) -> None:
        _err, topic, partition, offset = self._read(msg)
        log.error("handler failed for %s[%d]@%d (counted as done): %r", topic, partition, offset, exc)
