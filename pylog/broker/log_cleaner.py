"""The broker's log cleaner: which compacted log to clean next and the threads
that clean them (Kafka's LogCleaner and LogCleanerManager; one round of one
log is pylog/log/cleaner.py's clean_log).

- log.cleaner.threads threads (0: none; log.cleaner.enable=false: none),
  never the event loop. Each owns one offset map of
  log.cleaner.dedupe.buffer.size / threads bytes (at most 2 GiB - 1, as Kafka
  splits it), made at its first round.
- A thread takes the filthiest log: among the hosted partitions whose
  cleanup.policy has compact, not paused, not being cleaned by another
  thread and not marked uncleanable, those whose dirty ratio (bytes of the
  dirty range over bytes of the clean and dirty ranges) exceeds
  min.cleanable.dirty.ratio, or whose oldest dirty segment is older than
  max.compaction.lag.ms, or whose tombstones' delete horizon has passed; the
  highest ratio first. With none, it sleeps log.cleaner.backoff.ms.
- The dirty range ends at the first uncleanable offset: the active
  segment's base, the first segment with a record newer than
  min.compaction.lag.ms, and the partition's last stable offset (taken on the
  event loop for the round), whichever is lowest.
- log.cleaner.io.max.bytes.per.second: one throttle shared by the threads
  over the bytes each round reads and writes, checked after every segment
  mapped and every output chunk (about 1 MiB) written.
- The first dirty offsets live in the data dir's cleaner-offset-checkpoint
  (pylog/log/checkpoint.py DirCheckpoints; the per-log file of an older
  release is taken in at open).
- Truncation, partition deletion and DeleteRecords pause the partition's
  cleaning and abort a round in progress (abort_and_pause / resume, Kafka's
  abortAndPauseCleaning / resumeCleaning), waiting until the round has
  stopped; a log whose round fails unexpectedly is marked uncleanable until
  the broker restarts or the partition goes, as Kafka does.
- One INFO line per round on logger pylog.log.cleaner.

Threads: the cleaner threads; abort_and_pause / resume / abort_cleaning from
any thread but a cleaner thread (the LogManager's file thread, the loop for a
deletion); stats() from any thread. The states are under _cond. The
partition table is listed with list(dict.items()) and Partition attributes
(config, log, high_watermark) read as single loads from the cleaner threads:
that relies on the GIL; the last stable offset and the producers' last batches
are read on the event loop (run_on_loop), which owns them.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from .. import _engine
from ..errors import LogClosedError
from ..log.cleaner import CleanerStats, LogCleaningAbortedError, clean_log

log = logging.getLogger("pylog.log.cleaner")

INT_MAX = 0x7FFFFFFF
CLEANER_NICE = 10
LOOP_TIMEOUT_S = 30.0


def check_offset_map(num_threads: int, map_bytes: int, load_factor: float) -> None:
    """Kafka's Cleaner: each thread's offset map must hold at least one key."""
    if num_threads and int(map_bytes / _engine.OffsetMap.bytes_per_entry * load_factor) < 1:
        from ..errors import InvalidConfigError
        raise InvalidConfigError(f"log.cleaner.dedupe.buffer.size gives each of the {num_threads} "
                                 f"cleaner threads {map_bytes} bytes: too small for even one key")


class Throttler:
    """Kafka's Throttler: the bytes observed per check interval (300 ms) kept
    at desired_rate on average by sleeping; a thread checks at most an
    interval's budget after the last check. Any thread (its own lock); the
    sleep ends early when stop is set."""

    def __init__(self, desired_rate: float, stop: threading.Event, check_interval_s: float = 0.3):
        self.desired_rate = desired_rate
        self.check_interval_s = check_interval_s
        self._stop = stop
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._observed = 0.0
        self.slept_s = 0.0

    @property
    def unlimited(self) -> bool:
        return self.desired_rate >= 1.7e308

    def maybe_throttle(self, n: int) -> None:
        if self.unlimited:
            return
        with self._lock:
            self._observed += n
            elapsed = time.monotonic() - self._start
            # Checked each interval, or sooner once an interval's worth is
            # through (a burst stays within one interval's budget).
            if elapsed < self.check_interval_s and self._observed < self.desired_rate * self.check_interval_s:
                return
            due = self._observed / self.desired_rate - elapsed
            if due > 0:
                # Held under the lock, as Kafka's: every thread waits its turn.
                self._stop.wait(due)
                self.slept_s += due
            self._start = time.monotonic()
            self._observed = 0.0


@dataclass(frozen=True)
class CleaningStatus:
    """What stats() reports of one compacted partition. Frozen: any thread."""

    dirty_ratio: float            # dirty bytes / (clean + dirty bytes) below the first uncleanable offset
    first_dirty_offset: int
    first_uncleanable_offset: int
    max_compaction_delay_ms: int  # how long past max.compaction.lag.ms its oldest dirty record is (0: not)
    state: str                    # "idle", "cleaning", "aborted", "paused" or "uncleanable"
    last_round: CleanerStats | None  # the last round that finished here, since the broker started
    last_round_ms: int            # when it finished (epoch ms), -1 if none


@dataclass
class _Candidate:
    tp: tuple
    partition: object
    ratio: float
    first_dirty: int
    first_uncleanable: int
    delay_ms: int
    horizon_due: bool


class LogCleaner:
    """The cleaner of one LogManager's partitions; see the module docstring
    for which threads call what."""

    def __init__(self, config, log_manager, submit_to_loop):
        """submit_to_loop(fn): a concurrent Future of fn() run on the event
        loop that owns the partitions."""
        self.log_manager = log_manager
        self._submit_to_loop = submit_to_loop
        self.enabled = config.get("log.cleaner.enable")
        self._stop = threading.Event()
        self._wake = threading.Event()
        # A reconfigure (stop, then start threads) and the broker's shutdown, one at a time:
        # no threads are started after the final shutdown.
        self._life = threading.Lock()
        self._closed = False
        self._configure(config)
        self._cond = threading.Condition()
        self._in_progress: dict[tuple, str] = {}   # tp -> "cleaning" | "aborted"
        self._paused: dict[tuple, int] = {}        # tp -> how many pauses hold it
        self._uncleanable: set[tuple] = set()
        self._last: dict[tuple, tuple[CleanerStats, int]] = {}
        # tp -> the delete horizon a round left in place without removing
        # anything (a tombstone in the batch a round keeps last): not a reason
        # for another round until it changes.
        self._stuck_horizon: dict[tuple, int] = {}
        self._threads: list[threading.Thread] = []

    def _configure(self, config) -> None:
        num_threads = config.get("log.cleaner.threads") if self.enabled else 0
        map_bytes = min(config.get("log.cleaner.dedupe.buffer.size") // max(num_threads, 1), INT_MAX)
        load_factor = config.get("log.cleaner.io.buffer.load.factor")
        check_offset_map(num_threads, map_bytes, load_factor)
        self.num_threads, self.map_bytes, self.load_factor = num_threads, map_bytes, load_factor
        self.backoff_s = config.get("log.cleaner.backoff.ms") / 1000.0
        self.throttler = Throttler(config.get("log.cleaner.io.max.bytes.per.second"), self._stop)

    def reconfigure(self, config) -> None:
        """New cleaner configs (dynamic broker configs): Kafka's LogCleaner.reconfigure
        stops the threads (rounds in progress are aborted) and starts new ones with
        them; pauses stay. Blocks while the threads stop: never on the event loop."""
        with self._life:
            if self._closed:
                return
            self._stop_threads()
            self._stop.clear()
            self._wake.clear()
            try:
                self._configure(config)
            finally:
                self.start()

    # ---- start and stop ----

    def start(self) -> None:
        for i in range(self.num_threads):
            t = threading.Thread(target=self._run, args=(i,), name=f"kafka-log-cleaner-thread-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.num_threads:
            log.info("log cleaner started: %d thread(s), %d bytes of offset map each", self.num_threads,
                     self.map_bytes)

    def shutdown(self) -> None:
        """Stop the threads (a round in progress is aborted: its output is dropped)."""
        with self._life:
            self._closed = True
            self._stop_threads()

    def _stop_threads(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._cond:
            for tp in self._in_progress:
                self._in_progress[tp] = "aborted"
        for t in self._threads:
            t.join()
        self._threads = []

    def wake(self) -> None:
        """Look for work now rather than after the backoff (tests, tools)."""
        self._wake.set()

    # ---- pausing (Kafka's abortAndPauseCleaning / resumeCleaning) ----

    def abort_and_pause(self, tp: tuple) -> None:
        """No round on tp until resume(tp); a round in progress is aborted and
        waited for. Pauses nest."""
        with self._cond:
            self._paused[tp] = self._paused.get(tp, 0) + 1
            if tp in self._in_progress:
                self._in_progress[tp] = "aborted"
                while tp in self._in_progress:
                    self._cond.wait()

    def resume(self, tp: tuple) -> None:
        with self._cond:
            n = self._paused.get(tp, 0) - 1
            if n > 0:
                self._paused[tp] = n
            else:
                self._paused.pop(tp, None)

    def paused(self, tp: tuple):
        """abort_and_pause(tp) ... resume(tp) as a with block."""
        return _Paused(self, tp)

    def abort_cleaning(self, tp: tuple) -> None:
        """The partition is leaving this broker (Kafka's abortCleaning): any
        round stopped, its state forgotten (its checkpoint entry goes with the
        data dir's, LogManager._forget_checkpoints)."""
        self.abort_and_pause(tp)
        with self._cond:
            self._paused.pop(tp, None)
            self._uncleanable.discard(tp)
            self._last.pop(tp, None)
            self._stuck_horizon.pop(tp, None)

    # ---- what the cleaner sees ----

    def stats(self, only=None) -> dict[tuple, CleaningStatus]:
        """Per hosted compacted partition (topic, index), or those of them in
        the set only: its dirty ratio, first dirty offset, first uncleanable
        offset (without the LSO bound, which only the loop knows), how far past
        max.compaction.lag.ms it is, its state, and the last round's
        CleanerStats with when it finished (epoch ms). Reads each log's segment
        list under its lock: any thread but the event loop."""
        now = _now_ms()
        out = {}
        for tp, p in list(self.log_manager.partitions.items()):
            if only is not None and tp not in only:
                continue
            c = self._measure(tp, p, now)
            if c is None:
                continue
            with self._cond:
                if tp in self._uncleanable:
                    state = "uncleanable"
                elif tp in self._in_progress:
                    state = self._in_progress[tp]
                else:
                    state = "paused" if tp in self._paused else "idle"
                last, when = self._last.get(tp, (None, -1))
            out[tp] = CleaningStatus(c.ratio, c.first_dirty, c.first_uncleanable, c.delay_ms, state, last, when)
        return out

    def _measure(self, tp, p, now) -> _Candidate | None:
        # Kafka's cleanableOffsets, cleanable ratio and maxCompactionDelay.
        if not getattr(p, "compacted", False):
            return None
        cfg, plog = p.config, p.log
        try:
            segs = plog.segments()
            first_dirty = plog.first_dirty_offset
        except LogClosedError:
            return None
        lag = cfg.get("min.compaction.lag.ms")
        first_uncleanable = min(segs[-1].base_offset, p.high_watermark)
        if lag > 0:
            for s in segs[:-1]:
                if s.max_timestamp > now - lag:
                    first_uncleanable = min(first_uncleanable, s.base_offset)
                    break
        first_dirty = min(max(first_dirty, plog.log_start_offset), max(first_uncleanable, plog.log_start_offset))
        clean = dirty = 0
        earliest = None
        for i, s in enumerate(segs):
            end = segs[i + 1].base_offset if i + 1 < len(segs) else s.next_offset
            if end <= first_dirty:
                clean += s.size
            elif s.base_offset < first_uncleanable and s is not segs[-1]:
                dirty += s.size
                if earliest is None:
                    earliest = s
        ratio = dirty / (clean + dirty) if clean + dirty else 0.0
        delay = 0
        max_lag = max(cfg.get("max.compaction.lag.ms"), 0)
        if earliest is not None and earliest.max_timestamp > 0:
            # Kafka takes the segment's first batch's timestamp; its largest
            # one is what the segment list keeps, a later time: this is never
            # early, at most one segment's span late.
            if earliest.max_timestamp < now - max_lag:
                delay = now - max_lag - earliest.max_timestamp
        horizon = getattr(plog, "_earliest_delete_horizon", None)
        horizon_due = bool(segs[:-1]) and horizon is not None and 0 <= horizon <= now and \
            self._stuck_horizon.get(tp) != horizon
        return _Candidate(tp, p, ratio, first_dirty, first_uncleanable, delay, horizon_due)

    def _grab_filthiest(self, now) -> _Candidate | None:
        # Kafka's grabFilthiestCompactedLog; marks the chosen one in progress.
        found = []
        for tp, p in list(self.log_manager.partitions.items()):
            with self._cond:
                if tp in self._in_progress or tp in self._paused or tp in self._uncleanable:
                    continue
            try:
                c = self._measure(tp, p, now)
            except Exception as e:  # noqa: BLE001 -- that log only
                log.warning("cannot measure %s-%d for cleaning: %s", tp[0], tp[1], e)
                continue
            if c is None:
                continue
            due = c.delay_ms > 0 and c.first_uncleanable > c.first_dirty
            if due or c.ratio > c.partition.config.get("min.cleanable.dirty.ratio") or c.horizon_due:
                found.append(c)
        found.sort(key=lambda c: c.ratio, reverse=True)  # Kafka: the highest ratio among the eligible
        with self._cond:
            for c in found:
                if c.tp not in self._in_progress and c.tp not in self._paused and c.tp not in self._uncleanable:
                    self._in_progress[c.tp] = "cleaning"
                    return c
        return None

    # ---- the threads ----

    def _run(self, thread_id: int) -> None:
        try:
            # The kernel's name of the thread too (top -H, /proc/<pid>/task):
            # Python 3.11 sets only its own. 15 characters at most.
            with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
                f.write(f"kafka-log-cleaner-thread-{thread_id}"[:15])
        except OSError:
            pass
        try:
            # Background work: the produce and fetch paths get the CPU first
            # when the cores are busy (Linux: a thread's own nice value).
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CLEANER_NICE)
        except (OSError, AttributeError):
            pass
        omap = None
        while not self._stop.is_set():
            try:
                c = self._grab_filthiest(_now_ms())
                if c is not None:
                    if omap is None:
                        omap = _engine.OffsetMap(self.map_bytes, self.load_factor)
                    if self._clean(thread_id, c, omap):
                        continue
                    # Nothing moved (an open transaction holds the LSO below
                    # the dirty range, a truncation, a round aborted): the
                    # backoff, not the same log again at once.
            except Exception:  # noqa: BLE001 -- the thread lives on (Kafka's CleanerThread)
                log.exception("log cleaner thread %d failed; going on after the backoff", thread_id)
            self._wake.wait(self.backoff_s)
            self._wake.clear()

    def _on_loop(self, fn):
        # Waits in slices: a loop stopping the cleaner (shutdown) is not
        # waited for by the thread it joins.
        fut = self._submit_to_loop(fn)
        deadline = time.monotonic() + LOOP_TIMEOUT_S
        while True:
            try:
                return fut.result(0.05)
            except TimeoutError:
                if self._stop.is_set() or time.monotonic() > deadline:
                    fut.cancel()
                    raise LogCleaningAbortedError("the event loop did not answer") from None

    def _check_abort(self, tp):
        if self._stop.is_set():
            raise LogCleaningAbortedError("the broker is stopping")
        with self._cond:
            if self._in_progress.get(tp) == "aborted":
                raise LogCleaningAbortedError(f"cleaning of {tp[0]}-{tp[1]} was aborted")

    def _clean(self, thread_id: int, c: _Candidate, omap) -> bool:
        """One round on c; True when it moved the log's first dirty offset or
        removed records."""
        tp, p = c.tp, c.partition
        try:
            try:
                lso, producers = self._on_loop(lambda: _loop_state(p))
            except Exception as e:  # noqa: BLE001 -- the loop is stopping: no round
                log.warning("no cleaning of %s-%d now: %s", tp[0], tp[1], e)
                return False
            if lso is None:
                return False  # truncating, or gone
            cfg = p.config

            def progress(n):
                self._check_abort(tp)
                self.throttler.maybe_throttle(n)

            self._check_abort(tp)
            stats = clean_log(p.log, delete_retention_ms=cfg.get("delete.retention.ms"),
                              min_compaction_lag_ms=cfg.get("min.compaction.lag.ms"),
                              last_stable_offset=lso, offset_map=omap, active_producers=producers,
                              progress=progress)
            p.log._remove_retired_soon()
            with self._cond:
                self._last[tp] = (stats, _now_ms())
                if stats.records_removed == 0:
                    self._stuck_horizon[tp] = p.log._earliest_delete_horizon
                else:
                    self._stuck_horizon.pop(tp, None)
            if stats.segments_cleaned:
                _log_round(thread_id, tp, stats)
            return stats.end_offset > stats.first_dirty_offset or stats.records_removed > 0
        except (LogCleaningAbortedError, LogClosedError) as e:
            log.info("log cleaner thread %d: cleaning of %s-%d stopped: %s", thread_id, tp[0], tp[1], e)
            return False
        except Exception:  # noqa: BLE001 -- that log only, until a restart (Kafka's uncleanable partitions)
            log.exception("log cleaner thread %d: cleaning %s-%d failed; it is marked uncleanable", thread_id,
                          tp[0], tp[1])
            with self._cond:
                self._uncleanable.add(tp)
            return False
        finally:
            with self._cond:
                self._in_progress.pop(tp, None)
                self._cond.notify_all()


class _Paused:
    def __init__(self, cleaner, tp):
        self.cleaner, self.tp = cleaner, tp

    def __enter__(self):
        self.cleaner.abort_and_pause(self.tp)

    def __exit__(self, *exc):
        self.cleaner.resume(self.tp)


def _loop_state(p):
    # On the event loop: the round's LSO bound and the producers' last data
    # batches (Kafka keeps each active producer's last batch for its state).
    if p.truncating or p.log.closed:
        return None, None
    producers = {pid: (e.batches[-1][3] if e.batches else -1, e.producer_epoch)
                 for pid, e in p.producer_state.producers.items()}
    return p.last_stable_offset, producers


def _log_round(thread_id, tp, s: CleanerStats) -> None:
    mb = 1e6
    secs = max(s.elapsed_s, 1e-9)
    # bytes_read counts both passes (the map's over the dirty range, the
    # copy's over every segment cleaned), as Kafka's figures do.
    log.info("log cleaner thread %d cleaned %s-%d [%d, %d): %.1f MB read, %.1f MB written in %.2f s "
             "(%.1f MB/s); %d of %d records kept; %d segments into %d; map %d keys "
             "(%.0f%% full)", thread_id, tp[0], tp[1], s.first_dirty_offset, s.end_offset, s.bytes_read / mb,
             s.bytes_written / mb, s.elapsed_s, (s.bytes_read + s.bytes_written) / mb / secs, s.records_kept,
             s.records_read, s.segments_cleaned, s.segments_written, s.map_entries,
             100.0 * s.map_entries * s.map_bytes_per_entry / s.map_memory_bytes if s.map_memory_bytes else 0.0)


def _now_ms() -> int:
    return int(time.time() * 1000)
