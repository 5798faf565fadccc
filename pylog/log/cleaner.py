"""Log compaction of one Log (Kafka's Cleaner; KAFKA-NOTES §7): for each key only
the latest record stays in the cleaned part, offsets never change.

One round (clean_log, which Log.compact calls):
1. Under the log's lock: the dirty range [first dirty offset, first uncleanable
   offset), where the first uncleanable offset is the lowest of the active
   segment's base, the first segment with records newer than
   min.compaction.lag.ms, and the last stable offset when the owner gives one.
   The segments to read are pinned (views), so nothing moves under the walks.
2. Outside the lock: each producer's last batch (headers only, every segment);
   the aborted transactions (.txnindex files); the offset map built over the
   dirty range (engine/cleaner.c; it may fill up, then the round stops where it
   did, as Kafka's does).
3. The segments from the log start up to the map's end, grouped up to
   segment.bytes (and the index size), each group filtered into one new
   segment written in a scratch directory with its indexes, then moved into
   the log directory as <base>.log.cleaned (.index, .timeindex, .txnindex).
4. Under the lock: Log.replace_segments swaps every group in at once
   (.cleaned -> .swap -> rename; a crash at any step leaves the old segments
   or the new ones after the next open), unless a truncation or a deletion
   moved the log meanwhile (then the round is dropped); the cleaner checkpoint
   moves to the map's end.

Threads: clean_log runs on the caller's thread (a cleaner thread) and takes
the log's lock only for steps 1 and 4; appends, reads and flushes go on
meanwhile. Two rounds on one log at once are refused (the log's _cleaning flag,
set and cleared under its lock).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass

from .. import _engine
from ..errors import PylogError
from .checkpoint import read_checkpoint, topic_partition_of, write_checkpoint
from .txn_index import ENTRY, TXN_INDEX_SUFFIX, read_index_file

log = logging.getLogger("pylog.log.cleaner")

CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"
SCRATCH_DIR = "cleaner-scratch"
# Kafka's defaults: log.cleaner.dedupe.buffer.size, log.cleaner.io.buffer.load.factor,
# delete.retention.ms, min.compaction.lag.ms.
DEDUPE_BUFFER_SIZE = 128 << 20
LOAD_FACTOR = 0.9
DELETE_RETENTION_MS = 86_400_000
MIN_COMPACTION_LAG_MS = 0
# Called with a step's name between the steps of a round ("cleaned-written"
# once the .cleaned files are complete); a crash test sets it. None normally.
_STEP_HOOK = None


class LogCleaningAbortedError(PylogError):
    """The log moved under a round (a truncation, or segments deleted): its
    output was dropped; the next round starts over (Kafka's
    LogCleaningAbortedException)."""


@dataclass(frozen=True)
class CleanerStats:
    """What one round did. Frozen: any thread."""

    first_dirty_offset: int       # where the dirty range began
    end_offset: int               # the next round's first dirty offset
    first_uncleanable_offset: int
    segments_cleaned: int
    segments_written: int
    bytes_read: int               # log bytes read: the map's walk plus the filtering
    bytes_written: int
    records_read: int
    records_kept: int
    records_removed: int
    map_entries: int
    map_memory_bytes: int
    map_bytes_per_entry: int      # 16: a 64-bit key hash and a 64-bit offset
    map_full: bool
    elapsed_s: float

    @property
    def map_bytes_per_key(self) -> float:
        """The map's memory over the keys it held (its slots bytes per key)."""
        return self.map_memory_bytes / self.map_entries if self.map_entries else 0.0

    @property
    def mb_per_s(self) -> float:
        return (self.bytes_read + self.bytes_written) / 1e6 / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _note(step: str):
    if _STEP_HOOK is not None:
        _STEP_HOOK(step)


def read_cleaner_checkpoint(log_dir: str) -> int | None:
    try:
        entries = read_checkpoint(os.path.join(log_dir, CLEANER_CHECKPOINT))
    except (OSError, ValueError) as exc:
        log.warning("%s: ignoring unreadable %s (%s)", log_dir, CLEANER_CHECKPOINT, exc)
        return None
    return int(entries[0][-1]) if entries else None


def write_cleaner_checkpoint(log_dir: str, offset: int):
    topic, part = topic_partition_of(log_dir)
    write_checkpoint(os.path.join(log_dir, CLEANER_CHECKPOINT), [(topic, part, offset)])


def group_segments(segs, max_bytes: int, max_index_bytes: int, upper_bound: int):
    """Kafka's groupSegmentsBySize: consecutive segments whose .log sizes (and
    index sizes) add up to at most max_bytes (max_index_bytes), and whose
    offsets fit int32 relative to the group's base. segs: [(base, size,
    index_bytes, time_index_bytes)]."""
    groups, i = [], 0
    while i < len(segs):
        group = [segs[i]]
        size, ix, tix = segs[i][1], segs[i][2], segs[i][3]
        i += 1
        while i < len(segs):
            base, sz, ixb, tixb = segs[i]
            last = segs[i + 1][0] - 1 if i + 1 < len(segs) else upper_bound - 1
            if size + sz > max_bytes or ix + ixb > max_index_bytes or tix + tixb > max_index_bytes or \
                    (sz > 0 and last - group[0][0] > 0x7FFFFFFF):
                break
            group.append(segs[i])
            size, ix, tix = size + sz, ix + ixb, tix + tixb
            i += 1
        groups.append(group)
    return groups


def clean_log(lg, now_ms: int | None = None, *, delete_retention_ms: int = DELETE_RETENTION_MS,
              min_compaction_lag_ms: int = MIN_COMPACTION_LAG_MS, dedupe_buffer_size: int = DEDUPE_BUFFER_SIZE,
              load_factor: float = LOAD_FACTOR, last_stable_offset: int | None = None,
              first_dirty_offset: int | None = None, offset_map=None,
              active_producers: dict | None = None, progress=None) -> CleanerStats:
    """One cleaning round of lg (a pylog Log); see the module docstring.
    active_producers: {producer_id: (last_data_offset or -1, epoch)} from an
    owner that tracks producer state; None: every producer with a batch in the
    log counts as active (its last batch stays, as an empty batch if need be).
    offset_map: an _engine.OffsetMap to reuse (its size then bounds memory).
    progress: called with a byte count after each segment mapped or filtered
    and each output chunk written (an owner's I/O throttle); whatever it
    raises ends the round with nothing swapped in."""
    started = time.monotonic()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if delete_retention_ms < 0 or min_compaction_lag_ms < 0:
        raise ValueError("delete.retention.ms and min.compaction.lag.ms must be >= 0")
    plan = lg._cleaning_begin(now, min_compaction_lag_ms, last_stable_offset, first_dirty_offset)
    try:
        return _clean(lg, plan, now, started, delete_retention_ms, dedupe_buffer_size, load_factor,
                      offset_map, active_producers, progress or _no_progress)
    finally:
        lg._cleaning_end(plan)


@dataclass
class _Plan:
    """What step 1 saw, under the log's lock."""
    first_dirty: int
    first_uncleanable: int
    log_start: int
    generation: tuple
    segments: list          # [base, next_offset, size, index_bytes, time_index_bytes, view or None] below it
    other_views: list       # the later segments' bytes so far, the active one's too (for the producers)
    txn_paths: list         # .txnindex files of the segments below first_uncleanable
    mtimes: dict            # base -> .log mtime


def _no_progress(n):
    pass


def _clean(lg, plan: _Plan, now, started, delete_retention_ms, dedupe_buffer_size, load_factor, offset_map,
           active_producers, progress) -> CleanerStats:
    empty = CleanerStats(plan.first_dirty, plan.first_dirty, plan.first_uncleanable, 0, 0, 0, 0, 0, 0, 0, 0,
                         0, _engine.OffsetMap.bytes_per_entry, False, time.monotonic() - started)
    dirty = [s for s in plan.segments if s[0] < plan.first_uncleanable and s[1] > plan.first_dirty and s[2] > 0]
    if plan.first_dirty >= plan.first_uncleanable or not dirty:
        dirty = []
        # Nothing new, but tombstones or markers of the cleaned part may be past
        # their delete horizon: a round with an empty map, over the whole
        # cleanable part (Kafka's cleaner waits for new dirty bytes to pick the
        # log; removing them sooner is within delete.retention.ms's promise).
        # The earliest horizon decides: with the latest, a tombstone already
        # due would wait for the last one kept. Unknown after an open: due.
        horizon = lg._earliest_delete_horizon
        if not plan.segments or (horizon is not None and (horizon < 0 or horizon > now)):
            return empty
    omap = offset_map if offset_map is not None else _engine.OffsetMap(dedupe_buffer_size, load_factor)
    omap.clear()
    # The filtering keeps the last batch of the cleaned range (Kafka keeps the
    # round's last batch "so that last offset information is not lost"): here
    # the last batch of the last segment cleaned, so the new segments always
    # reach the end of the old ones (which the .swap recovery relies on).
    cleaning = _engine.Cleaning(now, delete_retention_ms, plan.first_uncleanable, lg._seg_cfg.get("max_inflated", -1))
    if active_producers is None:
        for s in plan.segments:
            if s[5] is not None:
                cleaning.note_producers(s[5])
        for view in plan.other_views:
            cleaning.note_producers(view)
    else:
        for pid, (last_data, epoch) in active_producers.items():
            cleaning.set_producer(pid, last_data, epoch)
    plan.other_views = []
    aborted = []
    for path in plan.txn_paths:
        aborted.extend(read_index_file(path))
    cleaning.set_aborted([(t.producer_id, t.first_offset, t.last_offset) for t in aborted])
    # 1. the map over the dirty range
    full = False
    by_base = {s[0]: s for s in plan.segments}
    bases = [s[0] for s in plan.segments]
    for s in dirty:
        full = cleaning.map_segment(omap, s[5], plan.first_dirty)
        progress(s[2])
        if full:
            break
        i = bases.index(s[0])
        next_start = bases[i + 1] if i + 1 < len(bases) else plan.first_uncleanable
        omap.latest_offset = min(next_start, plan.first_uncleanable) - 1
    if not dirty:
        omap.latest_offset = max(plan.first_dirty, min(plan.first_uncleanable, plan.segments[-1][1])) - 1
    end_offset = omap.latest_offset + 1
    map_stats = cleaning.stats()
    # 2. filter the segments up to the map's end, group by group
    todo = [s for s in plan.segments if s[0] < end_offset]
    while todo and todo[-1][2] == 0:
        todo.pop()  # an empty last segment: nothing to keep its end (see above)
    if not todo:
        return empty
    cleaning.set_upper_bound(todo[-1][1])
    cleaning.reset_txns()
    groups = group_segments([(s[0], s[2], s[3], s[4]) for s in todo], lg._seg_cfg["segment_bytes"],
                            lg._seg_cfg["index_max_bytes"], end_offset)
    scratch = os.path.join(lg.path, SCRATCH_DIR)
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    new_bases = []
    try:
        for group in groups:
            base = group[0][0]
            _write_group(lg, cleaning, omap, scratch, base, [by_base[g[0]] for g in group], aborted,
                         plan.mtimes.get(group[-1][0]), progress)
            new_bases.append(base)
            _note("group-written")
        for s in plan.segments:
            s[5] = None  # the old segments' views go before their files are swapped out
        _note("cleaned-written")
        lg._cleaning_swap(plan, new_bases, [s[0] for s in todo], end_offset)
    except BaseException:
        for base in new_bases:
            for suffix in (".log", ".index", ".timeindex", TXN_INDEX_SUFFIX):
                try:
                    os.remove(os.path.join(lg.path, f"{base:020d}{suffix}.cleaned"))
                except FileNotFoundError:
                    pass
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    st = cleaning.stats()
    lg._earliest_delete_horizon = st["earliest_delete_horizon"]
    read = st["records_read"]
    return CleanerStats(plan.first_dirty, end_offset, plan.first_uncleanable, len(todo), len(new_bases),
                        map_stats["map_bytes"] + st["bytes_read"], st["bytes_written"], read,
                        st["records_kept"], read - st["records_kept"], omap.entries, omap.memory_bytes,
                        _engine.OffsetMap.bytes_per_entry, full, time.monotonic() - started)


def _write_group(lg, cleaning, omap, scratch, base, group, aborted, mtime, progress):
    cfg = lg._seg_cfg
    out = _engine.Segment(scratch, base, segment_bytes=0x7FFFFFFF - (2 << 20), index_max_bytes=cfg["index_max_bytes"],
                          index_interval_bytes=cfg["index_interval_bytes"], write_buffer_bytes=1 << 20,
                          cache_records=0)
    try:
        def sink(view):
            if out.append_batches(view, -1, False, True) is None:
                raise OverflowError(f"{lg.path}: cleaned segment {base} outgrew its limits")
            progress(len(view))
        for s in group:
            cleaning.filter_segment(omap, s[5], sink)
            progress(s[2])
        kept = cleaning.take_retained_aborted()
        out.seal()
        out.sync()
    finally:
        out.close(trim=True)
    stem = os.path.join(scratch, f"{base:020d}")
    if kept:
        with open(stem + TXN_INDEX_SUFFIX, "wb") as f:
            for i in kept:
                t = aborted[i]
                f.write(ENTRY.pack(0, t.producer_id, t.first_offset, t.last_offset, t.last_stable_offset))
            f.flush()
            os.fsync(f.fileno())
    if mtime is not None:
        os.utime(stem + ".log", ns=(mtime, mtime))
    for suffix in (".log", ".index", ".timeindex", TXN_INDEX_SUFFIX):
        if os.path.exists(stem + suffix):
            os.rename(stem + suffix, os.path.join(lg.path, f"{base:020d}{suffix}.cleaned"))
