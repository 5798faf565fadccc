"""Log: a directory of segments that reads and writes like one Kafka partition log.

On disk it is exactly Kafka's layout (KAFKA-NOTES §1): segments named by the
20-digit base offset (.log, .index, .timeindex) holding record batches v2, so a
broker can serve the bytes as they are. Beside them: the lock file, Kafka-format
checkpoints of the log start offset and the recovery point, and a clean-shutdown
marker written by close().

Invariants: log_start_offset <= log_end_offset; segments are ordered by base
offset, contiguous, and only the last (the active one) takes appends; the
recovery point (everything below it was fdatasync'd) only moves up, except by
truncation.

Thread-safety: every public method takes the log's lock (an RLock), so a Log may
be shared between threads; the lock's bookkeeping relies on the GIL (see
logcore.pyx's RLock). fdatasync, and the unlink of deleted segments, run outside
the lock, so a flushing thread never stalls appends. One writer per directory
across processes (the lock file refuses a second); other processes may follow
it with read_only=True. Segments are unmapped by their last view (segment.pyx),
so close, retention and truncation never wait for the user's views.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from .. import _engine
from ..protocol import batch_layout as L
from ..errors import (DiskFullError, LogClosedError, LogLockedError, OffsetOutOfRangeError,
                      RecordTooLargeError, StorageError)
from .flush_stats import FLUSHES
from .checkpoint import (CLEANER, LOG_START, RECOVERY_POINT, DirCheckpoints, fsync_dir, read_checkpoint,
                         topic_partition_of, write_checkpoint)

log = logging.getLogger("pylog.log")

LOCK_FILE = ".lock"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
LOG_START_CHECKPOINT = "log-start-offset-checkpoint"
RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
_LEFTOVER_SUFFIXES = (".deleted", ".tmp")
# .txnindex (txn_index.py, the aborted transactions of a segment) lives and dies with its segment.
_SEGMENT_SUFFIXES = (".log", ".index", ".timeindex", ".txnindex")
# Called after each rename of replace_segments with its step's name; a crash
# test sets it to end the process there. None in normal use.
_SWAP_STEP_HOOK = None
CHECKPOINT_INTERVAL_S = 60.0  # log.flush.offset.checkpoint.interval.ms
# How long appended bytes may sit in a Log's write buffer before a background
# thread pushes them to the OS (where a killed process no longer loses them).
WRITE_BUFFER_MAX_MS = 200


@dataclass(frozen=True)
class SegmentInfo:
    """Frozen: any thread."""

    base_offset: int
    next_offset: int
    size: int
    max_timestamp: int
    path: str


class Log(_engine.LogCore):
    """An append-only log of records with Kafka's on-disk format.

    Open with Log.open(path, ...); use as a context manager or call close().

    Threads: any. Every public method takes the log's lock (an RLock whose
    bookkeeping relies on the GIL, logcore.pyx); fdatasync, the sync of a
    rolled segment and the unlink of deleted segments run outside it. The
    one-flag hand-offs to flush_executor (_hand_off) rely on the GIL too.
    """

    # ---- opening ----

    @classmethod
    def open(cls, path, *, segment_bytes: int = 1 << 30, segment_ms: int | None = None,
             index_interval_bytes: int = 4096, segment_index_bytes: int = 10 << 20,
             retention_ms: int | None = None, retention_bytes: int | None = None,
             flush_messages: int | None = None, flush_ms: int | None = None,
             write_buffer_bytes: int = 64 << 10, recovery: str = "auto",
             leader_epoch: int = -1, cache_records: int = 1 << 22, create: bool = True,
             dir_checkpoints: DirCheckpoints | None = None, read_only: bool = False,
             max_inflated_bytes: int = -1) -> "Log":
        """Open (creating when create) the log in directory path.

        segment_bytes / segment_ms: roll conditions (Kafka's segment.bytes, segment.ms).
        retention_ms / retention_bytes: enforce_retention() deletes whole old segments.
        flush_messages / flush_ms: fdatasync after that many appended records or that
          long since the last flush; None for both leaves flushing to the OS.
        write_buffer_bytes: appends gather in a buffer of this size before reaching
          the OS (like a Python file); reads, flush() and close() push it out, and
          so does a background thread once bytes have waited WRITE_BUFFER_MAX_MS
          (200 ms; up to about 250 ms on a busy machine): a process that is
          killed loses at most that much of its appends (a machine crash loses
          what was not flushed). 0 writes every append through to the OS before
          returning.
        recovery: "auto" checks every batch after the recovery point when the last
          close was not clean; "full" checks every batch of every segment.
        dir_checkpoints: the data dir's shared checkpoint files (a broker's, as
          Kafka keeps them) instead of this log's own; the owner writes them.
          A log without an entry there reads its own files (today's layout).
        read_only: follow a log that another process (or another Log) writes,
          as Chronicle Queue's tailers do: no lock is taken and nothing on disk
          changes; refresh() (and each scan()) takes what the writer's appends
          and rolls brought since. The writer's buffered appends show once they
          reach the OS (within WRITE_BUFFER_MAX_MS). Appending and the other
          changes raise io.UnsupportedOperation.
        max_inflated_bytes: the most one stored compressed batch may inflate to
          when read (scan, read); past it the read raises CorruptRecordError.
          -1: pylog.codecs.READ_MAX_INFLATED (64 MiB, a broker's default
          pylog.message.max.decompressed.bytes).
        """
        if recovery not in ("auto", "full"):
            raise ValueError("recovery is 'auto' or 'full'")
        if segment_bytes < 1024:
            raise ValueError("segment_bytes must be at least 1024")
        self = cls.__new__(cls)
        self._dir_checkpoints = dir_checkpoints
        self._read_only = read_only
        if read_only:
            create, write_buffer_bytes, flush_messages, flush_ms = False, 0, None, None
        self._init(os.fspath(path), dict(
            segment_bytes=segment_bytes, segment_ms=-1 if segment_ms is None else segment_ms,
            index_max_bytes=segment_index_bytes, index_interval_bytes=index_interval_bytes,
            write_buffer_bytes=write_buffer_bytes, cache_records=cache_records,
            leader_epoch=leader_epoch, max_inflated=max_inflated_bytes),
            retention_ms, retention_bytes, flush_messages, flush_ms, recovery, create)
        return self

    def _init(self, path, seg_cfg, retention_ms, retention_bytes, flush_messages, flush_ms,
              recovery, create):
        self.path = path
        self._seg_cfg = seg_cfg
        self.retention_ms = retention_ms
        self.retention_bytes = retention_bytes
        self.flush_messages = flush_messages
        self._closed = True
        self.flush_ms = flush_ms
        self._unflushed = 0
        self._last_flush = self._last_checkpoint = time.monotonic()
        self._flusher = None
        self.flush_executor = None  # set: flush.messages fsyncs are submitted to it
        self._flush_queued = False
        self._roll_flush_queued = False
        self._truncations = 0       # moves on every truncation (see _sync)
        self._rolls = 0             # moves on every roll (see _sync's directory fsync)
        self._dir_synced_rolls = 0  # _rolls when the directory was last fsync'd
        self._retired = []          # renamed .deleted under the lock, removed outside it
        self._cleaning = False      # a compaction round is under way (cleaner.py)
        self._first_dirty = None    # the cleaner checkpoint, read at the first compact()
        # The earliest delete horizon of the cleaned part's tombstones and markers
        # (-1: none); None: not known since the open.
        self._earliest_delete_horizon = None
        if create:
            os.makedirs(path, exist_ok=True)
        elif not os.path.isdir(path):
            raise FileNotFoundError(f"log directory {path} does not exist")
        self._lock_fd = None if self._read_only else self._take_lock()
        try:
            # Held so that the open-segment budget (which parks segments of any
            # log, taking its lock without waiting) leaves the loading ones alone.
            with self._lock:
                self._load(recovery)
        except BaseException:
            for seg in self._segments:
                seg.close(trim=False)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            raise
        self._closed = False
        if seg_cfg["write_buffer_bytes"] > 0:
            _BufferDrainer.register(self)
        if flush_ms is not None:
            self._flusher = _Flusher(self, flush_ms / 1000.0)
            self._flusher.start()

    def _take_lock(self) -> int:
        fd = os.open(os.path.join(self.path, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogLockedError(f"log directory {self.path} is in use by another process "
                                 f"(or another open Log); close that one first") from None
        return fd

    def _load(self, recovery: str):
        if self._read_only:
            return self._load_read_only()
        self._finish_interrupted_swap()
        names = os.listdir(self.path)
        bases = sorted(int(n[:20]) for n in names if n.endswith(".log") and len(n) == 24 and n[:20].isdigit())
        base_set = set(bases)
        name_set = set(names)
        for name in names:
            if name.endswith(_SEGMENT_SUFFIXES[1:]) and name[:20].isdigit() and int(name[:20]) not in base_set:
                os.remove(os.path.join(self.path, name))  # an index without its .log
        clean_marker = os.path.join(self.path, CLEAN_SHUTDOWN_FILE)
        clean = os.path.exists(clean_marker)
        if clean:
            if self._dir_checkpoints is None:
                # A library log that is only read stays cleanly shut down: the
                # marker goes at the first change (_leave_pristine), and close()
                # of an unchanged log writes and syncs nothing.
                self._pristine = True
            else:
                os.remove(clean_marker)
        self._log_start_offset = self._checkpointed(LOG_START, 0)
        self._recovery_point = self._checkpointed(RECOVERY_POINT, 0)
        full = recovery == "full"
        for i, base in enumerate(bases):
            active = i == len(bases) - 1
            stem = f"{base:020d}"
            index_missing = stem + ".index" not in name_set or stem + ".timeindex" not in name_set
            next_base = bases[i + 1] if not active else None
            must_check = full or index_missing or (
                not clean and (next_base is None or next_base > self._recovery_point))
            if not must_check and not active:
                # Trusted (below the recovery point, or shut down cleanly): its
                # files open on first use (and are checked then), so a log of
                # many segments starts without a descriptor per segment file.
                size = os.stat(os.path.join(self.path, stem + ".log")).st_size
                self._append_segment(self._open_segment(base, False, defer=True, next_offset=next_base,
                                                        size=size))
                continue
            seg = self._open_segment(base, active)
            self._append_segment(seg)
            if not must_check:
                ok, _ = seg.load()
                if ok:
                    continue
                log.warning("%s: index or tail of segment %d fails its check; recovering it", self.path, base)
            valid, cut, batches, next_offset, reason = seg.recover()
            if not active:
                seg.sync()  # it may be parked (its files closed) before the final checkpoint
            if cut or (reason is not None and not active):
                log.warning("%s: recovery cut %d bytes at position %d of %s (%s); %d later segments dropped",
                            self.path, cut, valid, seg.path, reason or "end of segment", len(bases) - i - 1)
                for later in bases[i + 1:]:
                    self._delete_files(later)
                    log.warning("%s: dropped segment %020d after the cut", self.path, later)
                break
        if not self._segments:
            self._append_segment(self._open_segment(self._log_start_offset, True))
        self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)
        if self._log_start_offset > self.log_end_offset:
            self._log_start_offset = self.log_end_offset
        self._recovery_point = min(self._recovery_point, self.log_end_offset)
        if not clean:
            # What was checked now is as good as flushed for the next start.
            self._write_checkpoints(recovery_point=self.log_end_offset, sync_first=True)

    def _load_read_only(self):
        # Trusts what is there and changes nothing: a sealed segment whose
        # indexes fail their check is walked from its start instead of recovered.
        self._log_start_offset = self._checkpointed(LOG_START, 0)
        self._recovery_point = 0
        bases = self._segment_bases()
        for base in bases:
            self._attach_read_only(base, base == bases[-1])
        if not self._segments:
            raise FileNotFoundError(f"{self.path} holds no segment to follow")
        self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)

    def _segment_bases(self) -> list[int]:
        return sorted(int(n[:20]) for n in os.listdir(self.path)
                      if n.endswith(".log") and len(n) == 24 and n[:20].isdigit())

    def _attach_read_only(self, base: int, active: bool = True):
        # A segment with a later one was sealed (its index trimmed) before that
        # one was made: its indexes hold still. The active one's do not.
        cfg = dict(self._seg_cfg, index_max_bytes=-1) if active else self._seg_cfg
        seg = _engine.Segment(self.path, base, sealed=not active, owner_lock=self._lock, writable=False, **cfg)
        seg.refresh(True, active)
        self._append_segment(seg)

    def refresh(self) -> int:
        """A read-only log takes what the writer appended (and the segments it
        rolled) since the last refresh; returns log_end_offset."""
        with self._lock:
            self._check_open()
            if not self._read_only:
                return self.log_end_offset
            while True:
                end = self._segments[-1].refresh()
                # The writer rolls at its log end: the next segment is named by it.
                if not os.path.exists(os.path.join(self.path, f"{end:020d}.log")) or end == self._bases[-1]:
                    return end
                try:
                    self._attach_read_only(end)
                except StorageError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
                    return end  # its index files are not made yet: at the next refresh

    def _check_writable(self):
        if self._read_only:
            import io
            raise io.UnsupportedOperation(f"{self.path}: log opened read-only")
        if self._pristine:
            self._leave_pristine()

    def _leave_pristine(self):
        # Before the first change reaches the files: once the marker is gone
        # (durably), the next open checks what a crash may have left.
        with self._lock:
            if self._pristine:
                with _storage_errors(self.path):
                    os.remove(os.path.join(self.path, CLEAN_SHUTDOWN_FILE))
                    fsync_dir(self.path)
                self._pristine = False

    def _finish_interrupted_swap(self):
        """Complete or undo a replace_segments that a crash interrupted, by
        Kafka's LogLoader rules: .deleted and .tmp files go; a .cleaned file
        means step 1 was not finished, so it goes with every .swap file at or
        above the lowest .cleaned base offset (.cleaned files are renamed .swap
        highest base first); the .swap files left are a finished step 1: the old
        segment files in [lowest .swap base, highest .swap next offset) go and
        the .swap files take their final names."""
        names = os.listdir(self.path)
        cleaned, swaps = [], []
        for name in names:
            if name.endswith(_LEFTOVER_SUFFIXES):
                log.warning("%s: removing leftover %s from an interrupted operation", self.path, name)
                os.remove(os.path.join(self.path, name))
            elif name.endswith(".cleaned") and name[:20].isdigit():
                cleaned.append(name)
            elif name.endswith(".swap") and name[:20].isdigit():
                swaps.append(name)
        if not cleaned and not swaps:
            return
        min_cleaned = min((int(n[:20]) for n in cleaned), default=None)
        for name in cleaned + [n for n in swaps if min_cleaned is not None and int(n[:20]) >= min_cleaned]:
            log.warning("%s: removing %s of an unfinished segment swap", self.path, name)
            os.remove(os.path.join(self.path, name))
        swaps = [n for n in swaps if min_cleaned is None or int(n[:20]) < min_cleaned]
        ends = {}
        for n in swaps:
            if n.endswith(".log.swap"):
                ends[int(n[:20])] = _next_offset_of_file(os.path.join(self.path, n), int(n[:20]))
        # A .log.swap that is not whole batches to its end was not made by
        # replace_segments (which syncs the files before step 1): it goes.
        bad = {base for base, end in ends.items() if end is None}
        for name in [n for n in swaps if int(n[:20]) in bad]:
            log.warning("%s: removing %s, which is not a whole segment", self.path, name)
            os.remove(os.path.join(self.path, name))
            swaps.remove(name)
        ends = {base: end for base, end in ends.items() if end is not None}
        if ends:
            low, high = min(ends), max(ends.values())
            for name in os.listdir(self.path):
                if name.endswith(_SEGMENT_SUFFIXES) and name[:20].isdigit() and low <= int(name[:20]) < high:
                    log.warning("%s: removing %s, replaced by a swapped-in segment", self.path, name)
                    os.remove(os.path.join(self.path, name))
        for name in swaps:
            log.warning("%s: completing the swap of %s", self.path, name)
            os.rename(os.path.join(self.path, name), os.path.join(self.path, name[:-len(".swap")]))
        fsync_dir(self.path)

    def replace_segments(self, new_bases: list[int], old_bases: list[int]):
        """Replace the sealed segments old_bases by rewritten ones (what log
        compaction does): the caller wrote each new segment as
        <base>.log.cleaned (and .index.cleaned, .timeindex.cleaned) in this
        directory, covering the old segments' offsets. Crash-safe as Kafka's
        LocalLog.replaceSegments, so the next load sees the old segments or the
        new ones, never a mix, a loss or a doubling (_finish_interrupted_swap):
        1. each .cleaned file renamed .swap, highest base offset first;
        2. the old segments' files renamed .deleted;
        3. the .swap files renamed to their final names; the .deleted files go.
        Views of the old segments stay valid (their mappings go with the last)."""
        try:
            self._replace_segments(sorted(new_bases), sorted(old_bases))
        finally:
            self._remove_retired_soon()

    def _replace_segments(self, new_bases, old_bases):
        with self._lock:
            self._check_open()
            self._check_writable()
            if not new_bases or not old_bases:
                raise ValueError("replace_segments needs new and old segments")
            first = self._bases.index(old_bases[0]) if old_bases[0] in self._bases else -1
            if first < 0 or self._bases[first:first + len(old_bases)] != old_bases or \
                    first + len(old_bases) >= len(self._segments):
                raise ValueError(f"{old_bases} are not contiguous sealed segments of {self.path}")
            if new_bases[0] < old_bases[0] or new_bases[-1] >= self._segments[first + len(old_bases)].base_offset:
                raise ValueError("the new segments must lie within the offsets of the old ones")
            stems = [os.path.join(self.path, f"{b:020d}") for b in new_bases]
            for stem in stems:
                for suffix in _SEGMENT_SUFFIXES:
                    path = stem + suffix + ".cleaned"
                    if suffix == ".log" or os.path.exists(path):
                        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                        try:
                            os.fsync(fd)
                        finally:
                            os.close(fd)
            for stem in reversed(stems):  # 1
                for suffix in _SEGMENT_SUFFIXES:
                    if os.path.exists(stem + suffix + ".cleaned"):
                        os.rename(stem + suffix + ".cleaned", stem + suffix + ".swap")
                        _swap_step("cleaned-to-swap")
            fsync_dir(self.path)
            olds = self._segments[first:first + len(old_bases)]
            for seg in olds:  # 2
                seg.close(trim=False)
                self._retire_files(seg.base_offset, hook=True)
            fsync_dir(self.path)
            for stem in stems:  # 3
                for suffix in _SEGMENT_SUFFIXES:
                    if os.path.exists(stem + suffix + ".swap"):
                        os.rename(stem + suffix + ".swap", stem + suffix)
                        _swap_step("swap-to-final")
            fsync_dir(self.path)
            new = []
            for base in new_bases:
                seg = self._open_segment(base, False)
                new.append(seg)
                if not seg.load()[0]:
                    seg.recover()
                    seg.sync()
            self._segments[first:first + len(old_bases)] = new
            self._bases[first:first + len(old_bases)] = new_bases

    # ---- compaction (the rounds themselves: cleaner.py) ----

    def compact(self, now_ms: int | None = None, **settings):
        """One round of log compaction (cleanup.policy=compact): for each key only
        the latest record stays below the active segment (and below
        min_compaction_lag_ms), tombstones go delete_retention_ms after the round
        that first kept them, offsets never change. Settings (Kafka's):
        delete_retention_ms (delete.retention.ms, 1 day), min_compaction_lag_ms (0),
        dedupe_buffer_size (log.cleaner.dedupe.buffer.size, 128 MiB), load_factor
        (0.9), last_stable_offset (an owner's LSO; nothing at or past it is
        cleaned), first_dirty_offset (default: this log's cleaner-offset-checkpoint).
        Returns cleaner.CleanerStats. The files work runs on the caller's thread,
        the log's lock held only to plan and to swap the segments in."""
        from .cleaner import clean_log
        try:
            return clean_log(self, now_ms, **settings)
        finally:
            self._remove_retired_soon()

    @property
    def first_dirty_offset(self) -> int:
        """Where the next compaction round begins (the cleaner checkpoint)."""
        with self._lock:
            return max(self._cleaner_checkpoint(), self._log_start_offset)

    def _cleaner_checkpoint(self) -> int:
        # A library log keeps its own file; a broker's (dir_checkpoints) has
        # an entry in the data dir's one (the per-log file of an older release
        # read until then, see adopt_cleaner_checkpoint).
        if self._first_dirty is None:
            from .cleaner import read_cleaner_checkpoint
            found = None
            if self._dir_checkpoints is not None:
                found = self._dir_checkpoints.get(CLEANER, *topic_partition_of(self.path))
            self._first_dirty = found if found is not None else read_cleaner_checkpoint(self.path) or 0
        return self._first_dirty

    def adopt_cleaner_checkpoint(self) -> bool:
        """With dir_checkpoints: take this log's own cleaner-offset-checkpoint
        (an older release's) into the data dir's entries; True when there was
        one (the owner then writes the data dir's file and removes it)."""
        with self._lock:
            if self._dir_checkpoints is None or not os.path.exists(os.path.join(self.path, CLEANER)):
                return False
            topic, part = topic_partition_of(self.path)
            if self._dir_checkpoints.get(CLEANER, topic, part) is None:
                self._dir_checkpoints.set(CLEANER, topic, part, self._cleaner_checkpoint())
            return True

    def _cleaning_begin(self, now_ms, lag_ms, lso, first_dirty):
        # Under the lock: the round's range, and views pinning the segments it
        # reads (sealed ones below the first uncleanable offset; the others
        # only for the producers' walk, dropped right after it).
        from .cleaner import _Plan
        with self._lock:
            self._check_open()
            self._check_writable()
            if self._cleaning:
                raise RuntimeError(f"{self.path}: a compaction round is already under way")
            first_uncleanable = self._segments[-1].base_offset
            if lag_ms > 0:
                for seg in self._segments[:-1]:
                    if seg.max_timestamp > now_ms - lag_ms:
                        first_uncleanable = min(first_uncleanable, seg.base_offset)
                        break
            if lso is not None:
                first_uncleanable = min(first_uncleanable, lso)
            start = self._cleaner_checkpoint() if first_dirty is None else first_dirty
            if start > self.log_end_offset:
                # Kafka's cleanableOffsets: a checkpoint past the log end (a
                # log replaced under it) starts over from the log start.
                log.warning("%s: cleaner checkpoint %d is past the log end %d; cleaning from the log start",
                            self.path, start, self.log_end_offset)
                start = self._log_start_offset
            start = max(start, self._log_start_offset)
            segments, others, mtimes, txn = [], [], {}, []
            for seg in self._segments:
                size = seg.size
                view = seg.slice(0, size) if size > 0 else None
                if seg is not self._segments[-1] and seg.base_offset < first_uncleanable:
                    entries, time_entries = seg.index_entries if size > 0 else (0, 0)
                    segments.append([seg.base_offset, seg.next_offset, size, entries * 8, time_entries * 12, view])
                    stem = os.path.join(self.path, f"{seg.base_offset:020d}")
                    mtimes[seg.base_offset] = os.stat(stem + ".log").st_mtime_ns
                    if os.path.exists(stem + ".txnindex"):
                        txn.append(stem + ".txnindex")
                elif view is not None:
                    others.append(view)
            self._cleaning = True
            return _Plan(start, first_uncleanable, self._log_start_offset, (self._truncations,),
                         segments, others, txn, mtimes)

    def _cleaning_end(self, plan):
        with self._lock:
            self._cleaning = False
        for s in plan.segments:
            s[5] = None
        plan.other_views = []

    def _cleaning_swap(self, plan, new_bases, old_bases, end_offset):
        # Under the lock: the cleaned segments replace the old ones, unless the
        # log moved under the round (a truncation, or retention or DeleteRecords
        # removing segments it read): then the round's output is dropped.
        from .cleaner import LogCleaningAbortedError, write_cleaner_checkpoint
        with self._lock:
            self._check_open()
            if (self._truncations,) != plan.generation:
                raise LogCleaningAbortedError(f"{self.path}: the log was truncated during the compaction round")
            if not set(old_bases) <= set(self._bases):
                raise LogCleaningAbortedError(f"{self.path}: segments were deleted during the compaction round")
            self._replace_segments(new_bases, old_bases)
            self._first_dirty = end_offset
            dc = self._dir_checkpoints
            if dc is not None:
                dc.set(CLEANER, *topic_partition_of(self.path), end_offset)
            else:
                with _storage_errors(self.path):
                    write_cleaner_checkpoint(self.path, end_offset)
        if dc is not None:
            # Outside the log's lock: appends and reads go on while it syncs.
            # A crash before it only makes the next round clean again.
            with _storage_errors(self.path):
                dc.write()

    def _checkpointed(self, name: str, default: int) -> int:
        dc = self._dir_checkpoints
        if dc is not None:
            found = dc.get(name, *topic_partition_of(self.path))
            if found is not None:
                return found
        return self._read_offset(name, default)

    def _read_offset(self, name: str, default: int) -> int:
        try:
            entries = read_checkpoint(os.path.join(self.path, name))
        except (ValueError, OSError) as exc:
            log.warning("%s: ignoring unreadable %s (%s)", self.path, name, exc)
            return default
        return int(entries[0][-1]) if entries else default

    def _open_segment(self, base: int, active: bool, **deferred) -> _engine.Segment:
        # A sealed segment's trimmed indexes stay as they are; unseal() grows them.
        return _engine.Segment(self.path, base, sealed=not active, owner_lock=self._lock,
                               writable=not self._read_only, **self._seg_cfg, **deferred)

    def _append_segment(self, seg):
        self._segments.append(seg)
        self._bases.append(seg.base_offset)

    def _retire_files(self, base: int, hook: bool = False):
        # Under the lock only a rename (as Kafka's .deleted suffix): the unlink,
        # which can take long for a large file, runs in _remove_retired after
        # the lock is released. A crash in between leaves .deleted files, which
        # the next load removes.
        for suffix in _SEGMENT_SUFFIXES:
            path = os.path.join(self.path, f"{base:020d}{suffix}")
            try:
                os.rename(path, path + ".deleted")
            except FileNotFoundError:
                continue
            self._retired.append(path + ".deleted")
            if hook:
                _swap_step("old-to-deleted")

    def _remove_retired_soon(self):
        # Kafka unlinks .deleted files later, in a background task: with an
        # owner's flush_executor (the broker's, whose DeleteRecords and
        # truncations run on the event loop) the unlinks go there, else here.
        if not self._retired:
            return
        executor = self.flush_executor
        if executor is not None:
            try:
                executor.submit(self._remove_retired)
                return
            except RuntimeError:  # the owner is shutting its executor down
                pass
        self._remove_retired()

    def _remove_retired(self):
        with self._lock:
            doomed, self._retired = self._retired, []
        for path in doomed:
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    def _delete_files(self, base: int):
        for suffix in _SEGMENT_SUFFIXES:
            try:
                os.remove(os.path.join(self.path, f"{base:020d}{suffix}"))
            except FileNotFoundError:
                pass

    # ---- facts ----

    def segment_base_of(self, offset: int) -> int:
        """The base offset of the segment holding offset (the active one at or
        past the log end): where an index entry for offset belongs."""
        with self._lock:
            return self._bases[self._segment_index(offset)]

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def recovery_point(self) -> int:
        return self._recovery_point

    @property
    def closed(self) -> bool:
        return self._closed

    def segments(self) -> list[SegmentInfo]:
        with self._lock:
            self._check_open()
            return [SegmentInfo(s.base_offset, s.next_offset, s.size, s.max_timestamp, s.path)
                    for s in self._segments]

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    def __len__(self):
        return self.log_end_offset - self.log_start_offset

    def __repr__(self):
        state = "closed" if self._closed else f"[{self._log_start_offset}, {self.log_end_offset})"
        return f"Log({self.path!r}, {state})"

    # ---- appends ----

    def append_batches(self, data, leader_epoch: int = -1, assign_offsets: bool = True,
                       in_place: bool = False, crc_checked: bool = False, allow_control: bool = False):
        """Append record batches v2 as received (validated; offsets assigned and the
        leader epoch stamped unless assign_offsets is False). Returns (first, last).
        in_place: patch offsets into data itself (a writable buffer the caller is
        done with) instead of into a copy. crc_checked: the caller has just checked
        the CRC of these bytes (the broker's produce validation), not done twice.
        allow_control: control batches (a leader's transaction markers) accepted."""
        with self._lock:
            self._check_open()
            self._check_writable()
            seg = self._segments[-1]
            res = seg.append_batches(data, leader_epoch, assign_offsets, allow_control, in_place, crc_checked)
            rolled = res is None
            if rolled:
                res = self._roll().append_batches(data, leader_epoch, assign_offsets, allow_control, in_place,
                                                  crc_checked)
                if res is None:
                    raise RecordTooLargeError("batches do not fit an empty segment")
            due = self.flush_messages is not None and self._after_append(res[1] - res[0] + 1)
        if rolled:
            self._after_roll()
        if due:
            self._flush_due()
        return res

    def _after_append(self, n: int) -> bool:
        # Under the lock: counts, and says whether flush.messages is reached.
        self._unflushed += n
        return self._unflushed >= self.flush_messages

    def _flush_due(self):
        # Called after an append released the lock. The broker hands the
        # fdatasync to a worker (flush_executor) so the event loop never waits.
        self._hand_off("_flush_queued", self._sync, "flush after flush.messages")

    def _after_roll(self):
        # Called after a roll, once the lock is released (Kafka's "flush-log"
        # task of UnifiedLog.roll): the sealed segments, their indexes and the
        # directory entry of the new segment are made durable outside the
        # lock, on flush_executor when the owner has one (the broker: so an
        # append on the event loop never waits on the disk), else here. The
        # recovery point moves past them only once that sync is done.
        self._hand_off("_roll_flush_queued", self._sync_rolled, "flush of the rolled segment")

    def _sync_rolled(self):
        self._sync(rolled=True)

    def _hand_off(self, flag: str, sync, what: str):
        # At most one queued sync of each kind. The flag is set here and
        # cleared by the worker, both under the GIL: a lost race costs one
        # more queued sync, never a missed one.
        executor = self.flush_executor
        if executor is None:
            return self._run_sync(sync)
        if getattr(self, flag):
            return
        setattr(self, flag, True)

        def queued():
            setattr(self, flag, False)
            try:
                self._run_sync(sync)
            except Exception as exc:  # noqa: BLE001 -- a worker has nobody to raise to
                log.error("%s: %s failed: %s", self.path, what, exc)
        try:
            executor.submit(queued)
        except RuntimeError:  # the owner is shutting its executor down
            setattr(self, flag, False)
            self._run_sync(sync)

    @staticmethod
    def _run_sync(sync):
        try:
            sync()
        except LogClosedError:
            pass  # closed meanwhile: close() synced everything itself

    def roll(self):
        """Start a new segment at log_end_offset (unless the active one is empty)."""
        with self._lock:
            self._check_open()
            self._check_writable()
            rolled = self._segments[-1].size > 0
            if rolled:
                self._roll()
        if rolled:
            self._after_roll()

    def _roll(self) -> _engine.Segment:
        # Under the lock: seal and open only. The sealed segment is synced
        # (data, indexes, and the directory for the new one) by _after_roll,
        # which every caller runs once the lock is released; until then the
        # recovery point stays below it, so a crash recovers it from its bytes.
        old = self._segments[-1]
        if old.size == 0:
            return old
        old.seal()
        try:
            seg = self._open_segment(old.next_offset, True)
        except BaseException:
            # No new segment (out of descriptors, say): the old one stays the
            # active one, so the budget must not park it and appends go on there.
            old.unseal()
            raise
        self._append_segment(seg)
        self._rolls += 1
        return seg

    # ---- flushing ----

    def flush(self):
        """Make every appended record durable (fdatasync), and move the recovery point.
        The fdatasync runs outside the log's lock, so appends from other threads go
        on meanwhile; what is made durable is everything appended before the call."""
        self._sync()

    def _sync(self, due_ms=None, rolled=False):
        # Capture under the lock (buffered bytes pushed to the OS, the log end
        # offset, the descriptors, each segment pinned so its descriptor stays
        # open), fdatasync outside it, then record the result under it again.
        # A truncation meanwhile (_truncations moved) leaves the recovery point.
        # rolled: only the sealed segments (Kafka's flush up to the active
        # segment's base offset after a roll). A sealed segment's indexes are
        # fsync'd with it (a segment below the recovery point is trusted,
        # indexes too), and the directory when a roll created segment files
        # since it was last synced (Kafka's LocalLog.flush does the same).
        with self._lock:
            if due_ms is not None:
                if self._closed or (time.monotonic() - self._last_flush) * 1000 < due_ms or \
                        self._recovery_point >= self.log_end_offset:
                    return
            self._check_open()
            self._check_writable()
            leo = self._bases[-1] if rolled else self.log_end_offset
            if rolled and leo <= self._recovery_point and self._rolls == self._dir_synced_rolls:
                return
            generation = self._truncations
            rolls = self._rolls
            sync_dir = rolls != self._dir_synced_rolls
            active = self._segments[-1]
            pending = []
            try:
                for seg in self._segments[self._segment_index(self._recovery_point):]:
                    if rolled and seg is active:
                        break
                    fd, upto, index_fds = seg.sync_begin(seg is not active)
                    if fd >= 0 or index_fds:
                        pending.append((seg, fd, upto, index_fds))
            except BaseException:
                for seg, _, upto, _ in pending:
                    seg.sync_end(upto, False)
                raise
            if not rolled:
                self._unflushed = 0
                self._last_flush = time.monotonic()
        synced = False
        t0 = time.monotonic()
        try:
            for seg, fd, _, index_fds in pending:
                with _storage_errors(seg.path):
                    if fd >= 0:
                        os.fdatasync(fd)
                    for index_fd in index_fds:
                        os.fsync(index_fd)
            if sync_dir:
                with _storage_errors(self.path):
                    fsync_dir(self.path)
            synced = True
            if pending or sync_dir:
                FLUSHES.record((time.monotonic() - t0) * 1000)
        finally:
            with self._lock:
                same = synced and generation == self._truncations
                for seg, _, upto, index_fds in pending:
                    seg.sync_end(upto, synced, bool(index_fds) and same)
                checkpoint = False
                if synced and sync_dir and rolls > self._dir_synced_rolls:
                    self._dir_synced_rolls = rolls
                if same and leo > self._recovery_point:
                    self._recovery_point = leo
                    # Kafka writes the recovery-point checkpoint every 60 s, not per
                    # flush: a stale checkpoint only makes the next recovery scan more.
                    checkpoint = time.monotonic() - self._last_checkpoint >= CHECKPOINT_INTERVAL_S
        if checkpoint:
            self._write_checkpoints()

    def _flush_locked(self):
        # One fdatasync per segment with unsynced data (usually just the active
        # one). Sealed segments and their indexes were synced at roll; the active
        # segment's indexes are rebuilt by recovery, so they need no msync here.
        # (Only close() syncs under the lock: nothing may append after it anyway.)
        leo = self.log_end_offset
        for seg in self._segments[self._segment_index(self._recovery_point):]:
            seg.sync(indexes=False)
        self._unflushed = 0
        self._last_flush = time.monotonic()
        self._recovery_point = max(self._recovery_point, leo)

    def _drain_buffer(self):
        with self._lock:
            if not self._closed:
                self._segments[-1].flush_buffer()

    def checkpoint(self):
        """Write the recovery point and log start offset checkpoints now (with
        dir_checkpoints: record them there, for the owner's next write)."""
        with self._lock:
            self._check_open()
            self._check_writable()
            self._write_checkpoints()

    def _write_checkpoints(self, recovery_point=None, sync_first=False):
        self._last_checkpoint = time.monotonic()
        if sync_first:
            for seg in self._segments:
                seg.sync()
        if recovery_point is not None:
            self._recovery_point = recovery_point
        topic, part = topic_partition_of(self.path)
        dc = self._dir_checkpoints
        if dc is not None:  # the owner writes the files, off its event loop
            dc.set(RECOVERY_POINT, topic, part, self._recovery_point)
            dc.set(LOG_START, topic, part, self._log_start_offset)
            return
        with _storage_errors(self.path):
            write_checkpoint(os.path.join(self.path, RECOVERY_POINT_CHECKPOINT),
                             [(topic, part, self._recovery_point)])
            write_checkpoint(os.path.join(self.path, LOG_START_CHECKPOINT), [(topic, part, self._log_start_offset)])

    def maybe_flush(self):
        """Flush if flush_ms has passed since the last flush (the flusher thread, or
        the broker's flush task on a worker, calls this). Like flush(), the
        fdatasync does not hold the log's lock."""
        flush_ms = self.flush_ms
        if flush_ms is None:
            return
        self._sync(due_ms=flush_ms)

    # ---- reads ----

    def _check_open(self):
        if self._closed:
            raise LogClosedError(f"{self.path}: log is closed")

    def _check_range(self, offset: int):
        if offset < self._log_start_offset or offset >= self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is out of range [{self._log_start_offset}, {self.log_end_offset})")

    def scan(self, start_offset: int | None = None, end_offset: int | None = None) -> Iterator[_engine.Record]:
        """Records from start_offset (default: log_start_offset) up to end_offset
        (default: the log end offset when the scan starts), checking every batch's CRC."""
        return self._scan(start_offset, end_offset, False)

    def scan_values(self, start_offset: int | None = None, end_offset: int | None = None) -> Iterator:
        """Like scan, but only the values (zero-copy views, or None for tombstones)."""
        return self._scan(start_offset, end_offset, True)

    def _scan(self, start_offset, end_offset, values_only):
        if self._read_only:
            self.refresh()
        with self._lock:
            self._check_open()
            start = self._log_start_offset if start_offset is None else start_offset
            end = self.log_end_offset if end_offset is None else min(end_offset, self.log_end_offset)
            if start < self._log_start_offset or start > self.log_end_offset:
                raise OffsetOutOfRangeError(
                    f"offset {start} is out of range [{self._log_start_offset}, {self.log_end_offset}]")
        return _engine.Flatten(self._scan_batches(start, end, values_only))

    def _scan_batches(self, offset, end, values_only):
        # Yields one record iterator per batch. Each step takes the lock for one
        # batch, so appends may interleave with a long scan, and no lock is held
        # between batches.
        seg = position = None
        while offset < end:
            with self._lock:
                self._check_open()
                if seg is None or seg.closed or position is None:
                    if offset < self._log_start_offset:
                        raise OffsetOutOfRangeError(f"offset {offset} was deleted during the scan")
                    seg = self._segments[self._segment_index(offset)]
                    found = seg.find_batch(offset)
                    if found is None:
                        i = self._segment_index(offset) + 1
                        if i >= len(self._segments):
                            return
                        seg, position = self._segments[i], 0
                    else:
                        position = found[0]
                items, position, last = seg.scan_batch(position, offset, end, values_only)
                if last < 0:  # end of this segment: go on in the next
                    position = None
                    if seg is self._segments[-1]:
                        return
                    offset = max(offset, seg.next_offset)
                    continue
                offset = last + 1
            yield items

    def offset_for_time(self, timestamp: int) -> int | None:
        """The first offset at or after the log start whose record timestamp is
        >= timestamp (ms), or None."""
        found = self.offset_and_timestamp_for_time(timestamp)
        return None if found is None else found[0]

    def offset_and_timestamp_for_time(self, timestamp: int, max_inflated: int = 64 << 20):
        """Kafka's fetchOffsetByTimestamp: (offset, timestamp) of the first record
        at or after the log start whose timestamp is >= timestamp, or None. A
        compressed batch is inflated as a bounded stream only up to the answer
        (Segment.find_time_record); one batch at a time. Takes the log's lock,
        so it can run on a worker thread while the event loop goes on."""
        with self._lock:
            self._check_open()
            for seg in self._segments:
                if seg.max_timestamp >= timestamp and seg.next_offset > self._log_start_offset:
                    found = seg.find_time_record(timestamp, self._log_start_offset, max_inflated)
                    if found is not None:
                        return found
            return None

    def read_batches(self, offset: int, max_bytes: int = 1 << 20):
        """Whole stored batches from the one holding offset: a zero-copy FetchSlice of at
        most max_bytes (at least one batch), for serving fetches and tools."""
        with self._lock:
            self._check_open()
            self._check_range(offset)
            i = self._segment_index(offset)
            while True:
                data = self._segments[i].read_batches(offset, max_bytes)
                if data is not None or i + 1 >= len(self._segments):
                    return data
                # Nothing left at or past offset here (compaction emptied the
                # rest of the segment): the next segment's first batch, as
                # Kafka's read moves on to the next segment.
                i += 1

    def index_arrays(self):
        """[(base_offset, offset_index, time_index)] as numpy arrays over the mmap'ed
        index files (Kafka's big-endian layout). They pin their segments: truncation
        refuses while they live; close leaves the mappings to them."""
        import numpy as np
        off_dt = np.dtype([("relative_offset", ">i4"), ("position", ">i4")])
        time_dt = np.dtype([("timestamp", ">i8"), ("relative_offset", ">i4")])
        with self._lock:
            self._check_open()
            return [(s.base_offset, np.frombuffer(s.index_view(False), dtype=off_dt),
                     np.frombuffer(s.index_view(True), dtype=time_dt)) for s in self._segments]

    # ---- truncation and retention ----

    def truncate_to(self, offset: int):
        """Remove every record at or after offset (log_end_offset becomes offset)."""
        try:
            self._truncate_to(offset)
        finally:
            self._remove_retired_soon()

    def _truncate_to(self, offset: int):
        with self._lock:
            self._check_open()
            self._check_writable()
            if offset >= self.log_end_offset:
                return
            if offset < self._log_start_offset:
                raise OffsetOutOfRangeError(f"cannot truncate to {offset}, below log_start_offset "
                                            f"{self._log_start_offset}")
            i = self._segment_index(offset)
            seg = self._segments[i]
            self._truncations += 1
            # A cut inside a batch keeps the records before it: the batch is
            # re-appended holding only those, its producer fields and codec kept.
            kept = None
            found = seg.find_batch(offset)
            if found is not None and found[1] < offset:
                kept = self._cut_batch(seg, found[0], offset - found[1])
            # First the one step that may refuse (a live view past the cut, which
            # would read beyond the file): then nothing has changed yet. Views of
            # the later segments keep their mappings until they go.
            seg.truncate_to(offset)
            seg.unseal()
            for later in self._segments[i + 1:]:
                later.close(trim=False)
                self._retire_files(later.base_offset)
            del self._segments[i + 1:]
            del self._bases[i + 1:]
            if kept is not None:
                # Recompressed, the kept records may outgrow the segment.
                rolls = self._rolls
                if seg.append_batches(kept, -1, False) is None and \
                        self._roll().append_batches(kept, -1, False) is None:
                    raise RecordTooLargeError("the records kept by the truncation do not fit a segment")
                # They were durable before the cut: make their new copy durable
                # too (a rare path, synced under the lock, new segment included).
                if offset - 1 < self._recovery_point:
                    for s in self._segments[i:]:
                        s.sync(indexes=False)
                    if rolls != self._rolls:
                        with _storage_errors(self.path):
                            fsync_dir(self.path)
            if self._recovery_point > self.log_end_offset:
                self._recovery_point = self.log_end_offset
                self._write_checkpoints()
            if self._cleaner_checkpoint() > offset:
                # Kafka's maybeTruncateCheckpoint: the cleaned part ends at the cut.
                self._first_dirty = offset
                if self._dir_checkpoints is not None:
                    self._dir_checkpoints.set(CLEANER, *topic_partition_of(self.path), offset)
                elif os.path.exists(os.path.join(self.path, CLEANER)):
                    from .cleaner import write_cleaner_checkpoint
                    with _storage_errors(self.path):
                        write_cleaner_checkpoint(self.path, offset)

    def _cut_batch(self, seg, position: int, keep: int) -> bytes:
        """The batch at position in seg with only its first keep records (under the lock)."""
        head = seg.slice(position, L.HEADER_SIZE)
        total = L.LOG_PREFIX.unpack_from(head)[1] + L.LOG_OVERHEAD
        del head  # slices pin the segment, which is about to be cut
        batch = seg.slice(position, total)
        try:
            return _engine.cut_batch(batch, keep, self._seg_cfg["max_inflated"])
        finally:
            del batch

    def delete_records(self, offset: int) -> int:
        """Move log_start_offset up to offset (Kafka's DeleteRecords) and delete the
        segments wholly below it. Returns the new log_start_offset."""
        start = self.advance_log_start_offset(offset)
        self.delete_segments_below_log_start()
        return start

    def advance_log_start_offset(self, offset: int) -> int:
        """The first half of delete_records: log_start_offset moves up to
        offset (reads below it are out of range from now on); the segments
        below it stay until delete_segments_below_log_start. With
        dir_checkpoints no file is touched (the owner writes them), so the
        broker's loop calls it. Returns the new log_start_offset."""
        with self._lock:
            self._check_open()
            self._check_writable()
            if offset > self.log_end_offset:
                raise OffsetOutOfRangeError(f"offset {offset} is past log_end_offset {self.log_end_offset}")
            if offset > self._log_start_offset:
                self._log_start_offset = offset
                self._write_checkpoints()
            return self._log_start_offset

    def delete_segments_below_log_start(self) -> int:
        """The file half of delete_records: delete the segments wholly below
        log_start_offset (renamed *.deleted under the lock, unlinked later);
        the broker runs it on its file thread. Returns how many went."""
        try:
            with self._lock:
                self._check_open()
                self._check_writable()
                before = len(self._segments)
                self._delete_segments_below(self._log_start_offset)
                return before - len(self._segments)
        finally:
            self._remove_retired_soon()

    def _delete_segments_below(self, offset):
        while len(self._segments) > 1 and self._segments[1].base_offset <= offset:
            if not self._delete_oldest("below log start offset"):
                break

    def _delete_oldest(self, why: str) -> bool:
        seg = self._segments[0]
        # Live views of it keep its mapping (so their bytes) until the last goes.
        seg.close(trim=False)
        self._retire_files(seg.base_offset)
        del self._segments[0]
        del self._bases[0]
        self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)
        log.info("%s: deleted segment %020d (%s)", self.path, seg.base_offset, why)
        return True

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete whole segments past retention_ms or beyond retention_bytes (never
        the active one). Returns how many were deleted."""
        try:
            return self._enforce_retention(now_ms)
        finally:
            self._remove_retired_soon()

    def _enforce_retention(self, now_ms: int | None = None) -> int:
        with self._lock:
            self._check_open()
            self._check_writable()
            now = int(time.time() * 1000) if now_ms is None else now_ms
            deleted = 0
            if self.retention_ms is not None and self.retention_ms >= 0:
                while len(self._segments) > 1:
                    seg = self._segments[0]
                    ts = seg.max_timestamp
                    if ts < 0:
                        ts = int(os.stat(seg.path).st_mtime * 1000)
                    if now - ts <= self.retention_ms or not self._delete_oldest("retention.ms"):
                        break
                    deleted += 1
            if self.retention_bytes is not None and self.retention_bytes >= 0:
                total = sum(s.size for s in self._segments)
                while len(self._segments) > 1 and total - self._segments[0].size >= self.retention_bytes:
                    size = self._segments[0].size
                    if not self._delete_oldest("retention.bytes"):
                        break
                    total -= size
                    deleted += 1
            if deleted:
                self._write_checkpoints()
            return deleted

    # ---- closing ----

    def close(self):
        """Flush, trim the indexes, mark a clean shutdown and release the lock.
        Record and slice views still alive stay valid: each segment is unmapped
        when its last view goes."""
        with self._lock:
            if self._closed:
                return
            if self._read_only:
                self._closed = True
                for seg in self._segments:
                    seg.close(trim=False)
                return
            if self._pristine:
                # Nothing changed since a clean open: the files are as the last
                # close left them (the active index only grew; seal trims it back).
                self._closed = True
                self._pristine = False
                flusher, self._flusher = self._flusher, None
                for seg in self._segments:
                    if not seg.closed and not seg.parked:
                        seg.seal()
                    seg.close(trim=True)
                os.close(self._lock_fd)
                if flusher is not None:
                    flusher._stopped.set()
                return
        # Stop the flusher outside the lock: it takes the lock itself.
        flusher = self._flusher
        if flusher is not None:
            flusher.stop()
        with self._lock:
            if self._closed:
                return
            try:
                # Everything that can fail (a full disk, say) comes before the
                # segments close, so a failed close leaves a working, open log.
                self._flush_locked()
                for seg in self._segments:
                    seg.seal()
                    seg.sync()  # after a clean shutdown the indexes are trusted: make them durable
                self._write_checkpoints()
                with _storage_errors(self.path):
                    with open(os.path.join(self.path, CLEAN_SHUTDOWN_FILE), "w") as f:
                        f.write('{"version":0,"brokerEpoch":-1}')
                        f.flush()
                        os.fsync(f.fileno())
                    fsync_dir(self.path)
            except BaseException:
                if flusher is not None:
                    self._flusher = _Flusher(self, self.flush_ms / 1000.0)
                    self._flusher.start()
                raise
            self._release_files(trim=True)

    def _release_files(self, trim: bool):
        # Under the lock: the log is closed from here on, whatever fails.
        self._closed = True
        self._flusher = None
        try:
            for seg in self._segments:
                seg.close(trim=trim)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)

    def close_handlers(self):
        """Close the files without flushing, checkpointing or marking a clean
        shutdown (Kafka's closeHandlers): for a log whose directory is about to
        be deleted, so nothing is synced for data that is going. Views stay
        valid as after close()."""
        flusher = self._flusher
        if flusher is not None:
            flusher.stop()   # outside the lock: it takes the lock itself
        with self._lock:
            if self._closed:
                return
            self._pristine = False
            self._release_files(trim=False)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
            return
        # The block's own exception is the one the caller must see: a failure
        # to close on top of it (a full disk, say) is only logged.
        try:
            self.close()
        except Exception:  # noqa: BLE001
            log.exception("%s: closing after an exception in the with block failed", self.path)

    def __del__(self):
        # A Log dropped without close() is like a crash: nothing is flushed, and the
        # next open recovers. Only the lock is released here.
        fd = getattr(self, "_lock_fd", None)
        if fd is not None and not getattr(self, "_closed", True):
            try:
                os.close(fd)
            except OSError:
                pass


def _swap_step(name: str):
    if _SWAP_STEP_HOOK is not None:
        _SWAP_STEP_HOOK(name)


def _next_offset_of_file(path: str, base: int) -> int | None:
    """Last offset + 1 of the batches in a .log file (base when empty), from
    the batch headers alone: base offset (8 bytes), length (4), and the last
    offset delta at byte 23 (KAFKA-NOTES §2). None unless the file is whole
    batches to its end."""
    next_offset = base
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        while pos + 61 <= size:
            f.seek(pos)
            head = f.read(27)
            first, length = int.from_bytes(head[0:8], "big", signed=True), int.from_bytes(head[8:12], "big")
            if length < 49 or pos + 12 + length > size:
                break
            next_offset = first + int.from_bytes(head[23:27], "big", signed=True) + 1
            pos += 12 + length
    return next_offset if pos == size else None


@contextlib.contextmanager
def _storage_errors(path):
    """OSError from the log's own small files as pylog's StorageError/DiskFullError."""
    try:
        yield
    except OSError as exc:
        cls = DiskFullError if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else StorageError
        raise cls(f"{path}: {exc.strerror or exc}", errno=exc.errno) from exc


class _BufferDrainer(threading.Thread):
    """One daemon thread per process that pushes every buffered Log's write
    buffer to the OS every WRITE_BUFFER_MAX_MS, so appended bytes survive the
    process being killed within that bound. Holds each Log's lock only for the
    write(2) of its buffer (at most write_buffer_bytes). Logs are held weakly."""

    _instance = None
    _guard = threading.Lock()

    def __init__(self):
        super().__init__(name="pylog-write-buffer", daemon=True)
        import weakref
        self._logs = weakref.WeakSet()

    @classmethod
    def register(cls, owner: "Log"):
        with cls._guard:
            if cls._instance is None or not cls._instance.is_alive():
                cls._instance = cls()
                cls._instance.start()
            cls._instance._logs.add(owner)

    def run(self):
        while True:
            time.sleep(WRITE_BUFFER_MAX_MS / 1000.0)
            for owner in list(self._logs):
                try:
                    owner._drain_buffer()
                except Exception as exc:  # noqa: BLE001 -- a full disk: the next append reports it
                    log.debug("%s: pushing the write buffer failed: %s", owner.path, exc)
                del owner


class _Flusher(threading.Thread):
    """Calls Log.maybe_flush every flush_ms (Kafka's log.flush.interval.ms).

    Its own thread; stop() from any other thread.
    """

    def __init__(self, owner: Log, interval: float):
        super().__init__(name=f"pylog-flusher {owner.path}", daemon=True)
        import weakref
        self._owner = weakref.ref(owner)
        self._interval = interval
        self._stopped = threading.Event()

    def run(self):
        while not self._stopped.wait(self._interval):
            owner = self._owner()
            if owner is None:
                return
            owner.maybe_flush()
            del owner

    def stop(self):
        self._stopped.set()
        if self is not threading.current_thread():
            self.join()
