"""Leader epochs of one partition replica (KIP-101, KIP-279; KAFKA-NOTES §4.2).

LeaderEpochCache maps each leader epoch to the first offset written in it, kept
in Kafka's `leader-epoch-checkpoint` file; follower_truncation_offset is the
follower's side of the OffsetForLeaderEpoch exchange (where to cut a log that
may have diverged from the new leader's) as a pure function, so the replica
fetcher only has to send the requests and apply the answers.
"""
from __future__ import annotations

import bisect
import logging
import os
from dataclasses import dataclass
from typing import Sequence, Union

from .checkpoint import read_checkpoint, write_checkpoint

log = logging.getLogger("pylog.log")

LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
# OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET.
UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


def end_offset_for(entries: Sequence[tuple[int, int]], requested_epoch: int,
                   log_end_offset: int) -> tuple[int, int]:
    """(epoch, end_offset) for requested_epoch over sorted (epoch, start_offset) entries,
    as Kafka's LeaderEpochFileCache.endOffsetFor:

    - requested == UNDEFINED_EPOCH, or above every cached epoch, or an empty
      cache: (-1, -1);
    - requested == the latest epoch: (latest, log_end_offset), the epoch is still
      being written;
    - else end_offset is the start offset of the smallest epoch > requested, and
      the epoch is the largest cached epoch <= requested, or requested itself when
      it is below every cached epoch (that part of the log is gone: answering the
      first start offset lets a follower replicate from there).
    """
    if requested_epoch == UNDEFINED_EPOCH or not entries:
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    if entries[-1][0] == requested_epoch:
        return requested_epoch, log_end_offset
    i = bisect.bisect_right(entries, requested_epoch, key=_epoch)  # entries[i] = smallest epoch > requested
    if i == len(entries):
        return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
    higher_start = entries[i][1]
    if i == 0:
        return requested_epoch, higher_start
    return entries[i - 1][0], higher_start


def _epoch(entry):
    return entry[0]


class LeaderEpochCache:
    """(leader_epoch, start_offset) entries of one replica's log, persisted in
    <partition dir>/leader-epoch-checkpoint (version 0, count, "epoch start_offset"
    lines: Kafka's format, so Kafka and the Partition code of before read it).

    Invariants: entries are strictly increasing in epoch AND in start offset
    (assign removes whatever would break that, as Kafka does); no epoch or start
    offset is negative. The file never lacks an entry the log may hold data for:
    assign writes through when it changes the cache, while truncations only mark
    the cache dirty for flush() (Kafka flushes those asynchronously): after a
    crash the file may keep entries beyond the log's ends, so the owner calls
    truncate_from_end(log_end_offset) and truncate_from_start(log_start_offset)
    after opening the log, as Kafka does on log load.

    path None keeps the cache in memory only (simulations and tests).

    Not thread-safe: the broker's event loop owns it (through the Partition);
    write_file alone may run on any thread (the broker writes a new leader's
    entries on its file thread before applying the LeaderAndIsr, a
    follower's before appending batches of a new epoch, and a truncated
    cache's (take_unwritten) before the log is cut: note_written).
    """

    def __init__(self, path: str | None):
        self.path = path
        self._entries: list[tuple[int, int]] = []
        self._dirty = False
        self._warn = True
        if path is not None:
            for fields in read_checkpoint(path):
                if len(fields) != 2:
                    raise ValueError(f"{path}: entry {' '.join(fields)!r} is not 'epoch start_offset'")
                # Replayed through assign as Kafka does: a hand-edited or stale
                # file cannot break the monotonic invariant.
                self._assign(int(fields[0]), int(fields[1]))
            self._dirty = False
        # What the file holds as far as this cache knows (flush skips a write
        # of the same entries: see note_written).
        self._written = list(self._entries)

    @classmethod
    def in_dir(cls, partition_dir: str) -> "LeaderEpochCache":
        return cls(os.path.join(partition_dir, LEADER_EPOCH_CHECKPOINT))

    def __repr__(self):
        return f"LeaderEpochCache({self._entries})"

    def __len__(self):
        return len(self._entries)

    # ---- reads ----

    def epoch_entries(self) -> list[tuple[int, int]]:
        return list(self._entries)

    def latest_epoch(self) -> int:
        return self._entries[-1][0] if self._entries else UNDEFINED_EPOCH

    def latest_entry(self) -> tuple[int, int] | None:
        return self._entries[-1] if self._entries else None

    def earliest_entry(self) -> tuple[int, int] | None:
        return self._entries[0] if self._entries else None

    def previous_epoch(self, epoch: int | None = None) -> int:
        """The largest cached epoch below epoch (default: below the latest); -1 if none."""
        if epoch is None:
            if len(self._entries) < 2:
                return UNDEFINED_EPOCH
            return self._entries[-2][0]
        i = bisect.bisect_left(self._entries, epoch, key=_epoch)
        return self._entries[i - 1][0] if i else UNDEFINED_EPOCH

    def epoch_for_offset(self, offset: int) -> int:
        """The epoch the record at offset was written in (the last entry starting at
        or before it); -1 when offset is below every entry."""
        i = bisect.bisect_right([s for _, s in self._entries], offset)
        return self._entries[i - 1][0] if i else UNDEFINED_EPOCH

    def end_offset_for(self, requested_epoch: int, log_end_offset: int) -> tuple[int, int]:
        """See the module function end_offset_for: the OffsetForLeaderEpoch answer."""
        return end_offset_for(self._entries, requested_epoch, log_end_offset)

    # ---- writes ----

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that epoch starts at start_offset (a new leader: its epoch at its log
        end offset; a follower: the epoch of each appended batch at its base offset).

        As Kafka's LeaderEpochFileCache.assign: nothing changes when epoch is the
        latest and start_offset is not below its start (the first assignment of an
        epoch stands). Otherwise the entries from the end whose epoch >= epoch or whose
        start_offset >= start_offset are removed (a warning when that drops more than
        an entry without data) and (epoch, start_offset) appended, so an equal epoch
        with an earlier start moves it back, and a lower epoch truncates the later
        entries. Writes the file through when something changed; returns whether it did.
        """
        changed = self._assign(epoch, start_offset)
        if changed and self.path is not None:
            self.flush()
        return changed

    def assign_all(self, assignments) -> bool:
        """assign each (epoch, start_offset) in turn, writing the file once at
        the end (when something changed; not at all when it holds the result
        already: note_written). Returns whether the cache changed."""
        changed = False
        for epoch, start_offset in assignments:
            changed |= self._assign(epoch, start_offset)
        if changed and self.path is not None:
            self.flush()
        return changed

    def entries_if_assigned(self, epoch: int, start_offset: int) -> list[tuple[int, int]] | None:
        """The entries assign(epoch, start_offset) would leave (None: it would
        change nothing), without changing this cache."""
        return self.entries_after([(epoch, start_offset)])

    def entries_after(self, assignments) -> list[tuple[int, int]] | None:
        """The entries assign of each (epoch, start_offset) in turn would leave
        (None: they would change nothing), without changing this cache."""
        probe = LeaderEpochCache(None)
        probe._warn = False
        probe._entries = list(self._entries)
        changed = False
        for epoch, start_offset in assignments:
            changed |= probe._assign(epoch, start_offset)
        return probe._entries if changed else None

    def take_unwritten(self) -> list[tuple[int, int]] | None:
        """What flush() would write now (None: nothing), for a caller that
        writes it on another thread (write_file, then note_written; mark_dirty
        when that failed). The cache counts as flushed from here on."""
        entries = None
        if self._dirty and self.path is not None and self._entries != self._written:
            entries = list(self._entries)
        self._dirty = False
        return entries

    def mark_dirty(self):
        """The next flush writes the file (a write of take_unwritten failed)."""
        self._written = None
        self._dirty = True

    def note_written(self, entries: list[tuple[int, int]]):
        """The file now holds entries, written by write_file on another thread
        (the broker's file thread, before a LeaderAndIsr is applied): an assign
        or flush that leaves exactly these entries writes nothing."""
        self._written = list(entries)

    @staticmethod
    def write_file(path: str, entries: list[tuple[int, int]]):
        """Write a checkpoint of entries at path (any thread; touches no cache)."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        write_checkpoint(path, entries)

    def _assign(self, epoch: int, start_offset: int) -> bool:
        if epoch < 0 or start_offset < 0:
            raise ValueError(f"invalid leader epoch entry ({epoch}, {start_offset})")
        entries = self._entries
        if entries and entries[-1][0] == epoch and start_offset >= entries[-1][1]:
            return False
        removed = []
        while entries and (entries[-1][0] >= epoch or entries[-1][1] >= start_offset):
            removed.append(entries.pop())
        # Removing one entry that starts where the new one does is routine (a leader
        # elected and replaced before writing anything); anything else means the
        # log held data under epochs that the new entry contradicts.
        if self._warn and (len(removed) > 1 or (removed and removed[0][1] != start_offset)):
            log.warning("%s: new epoch entry (%d, %d) removed conflicting entries %s",
                        self.path, epoch, start_offset, removed[::-1])
        entries.append((epoch, start_offset))
        self._dirty = True
        return True

    def truncate_from_end(self, end_offset: int) -> list[tuple[int, int]]:
        """The log was truncated to end_offset: drop entries starting at or after it.
        A negative end_offset (undefined) changes nothing. Call it even when the log
        truncation itself was a no-op (end_offset == log_end_offset): an entry a
        replica assigned as leader without writing data under it must go before the
        replica appends what it fetches. Returns the removed entries; flush() persists."""
        removed = []
        if end_offset >= 0:
            while self._entries and self._entries[-1][1] >= end_offset:
                removed.append(self._entries.pop())
        if removed:
            self._dirty = True
        return removed[::-1]

    def truncate_from_start(self, start_offset: int) -> list[tuple[int, int]]:
        """The log start moved to start_offset: entries starting at or below it are
        removed and the last of them comes back starting at start_offset (it covers
        the new first record), as Kafka's truncateFromStart; so truncating to an
        entry's own start changes nothing. Returns the removed entries; flush() persists."""
        removed = []
        while self._entries and self._entries[0][1] <= start_offset:
            removed.append(self._entries.pop(0))
        if removed:
            self._entries.insert(0, (removed[-1][0], start_offset))
            if removed != [self._entries[0]]:
                self._dirty = True
            else:
                removed = []
        return removed

    def clear(self):
        """Drop every entry (the log was truncated fully); flush() persists."""
        if self._entries:
            self._entries.clear()
            self._dirty = True

    def flush(self):
        """Write the file atomically if anything changed since the last write
        (and it does not hold these entries already: note_written)."""
        if self._dirty and self.path is not None and self._entries != self._written:
            self.write_file(self.path, self._entries)
            self._written = list(self._entries)
        self._dirty = False


# ---- follower truncation (KIP-279 loop) ----

@dataclass(frozen=True)
class TruncationStep:
    """One step of a follower's truncation: cut the log to `offset` (always <= its
    log end offset; cut the epoch cache with truncate_from_end(offset) too, even
    when the log is already that short). Then, if done, fetch from `offset`;
    otherwise ask the leader (OffsetForLeaderEpoch) for `next_epoch`.

    Immutable once made: any thread.
    """

    offset: int
    done: bool
    next_epoch: int = UNDEFINED_EPOCH


Local = Union[LeaderEpochCache, Sequence[tuple[int, int]]]


def _entries_of(local: Local) -> Sequence[tuple[int, int]]:
    return local.epoch_entries() if isinstance(local, LeaderEpochCache) else local


def _latest_epoch_below(entries, offset):
    """The latest epoch left once the cache is truncated to offset."""
    for epoch, start in reversed(entries):
        if start < offset:
            return epoch
    return UNDEFINED_EPOCH


def follower_truncation_start(local: Local, log_end_offset: int, high_watermark: int) -> TruncationStep:
    """The first step on becoming a follower: ask the leader for our latest epoch
    that holds data. An entry starting at our log end offset (we were elected and
    replaced before writing) goes first: the truncation to log_end_offset drops it,
    and asking about it would compare the leader's answer with a cache that no
    longer has it. A replica without epochs cannot ask and falls back to its high
    watermark, as Kafka's AbstractFetcherThread does for partitions without epochs."""
    latest = _latest_epoch_below(_entries_of(local), log_end_offset)
    if latest == UNDEFINED_EPOCH:
        return TruncationStep(min(high_watermark, log_end_offset), True)
    return TruncationStep(log_end_offset, False, latest)


def follower_truncation_offset(local: Local, log_end_offset: int, high_watermark: int,
                               leader_epoch: int, leader_end_offset: int) -> TruncationStep:
    """Where to truncate after the leader answered (leader_epoch, leader_end_offset)
    to our OffsetForLeaderEpoch request; Kafka's getOffsetTruncationState:

    - end offset undefined (the leader does not know the epoch): the high watermark;
    - epoch undefined but an offset (a v0 answer): min(leader end offset, our LEO);
    - the leader's epoch is one we have (or is below all we have): min(leader end
      offset, our end offset for that epoch, our LEO), done;
    - an epoch we lack: cut to our end offset of the largest epoch we have below
      it, and ask again for the latest epoch left (KIP-279). The epoch asked
      strictly decreases, so the loop ends;
    - we have no epoch <= the leader's: min(leader end offset, our LEO).

    local is the state after the previous step was applied (log and cache truncated,
    log_end_offset updated). Usage, in the replica fetcher:

        step = follower_truncation_start(cache, leo, hw)
        while True:
            truncate(step.offset)          # log.truncate_to + cache.truncate_from_end
            if step.done: break            # fetch from step.offset
            epoch, end = ask_leader(step.next_epoch)
            step = follower_truncation_offset(cache, leo, hw, epoch, end)
    """
    entries = _entries_of(local)
    if leader_end_offset == UNDEFINED_EPOCH_OFFSET:
        return TruncationStep(min(high_watermark, log_end_offset), True)
    if leader_epoch == UNDEFINED_EPOCH:
        return TruncationStep(min(leader_end_offset, log_end_offset), True)
    follower_epoch, follower_end = end_offset_for(entries, leader_epoch, log_end_offset)
    if follower_end == UNDEFINED_EPOCH_OFFSET:
        return TruncationStep(min(leader_end_offset, log_end_offset), True)
    if follower_epoch != leader_epoch:
        offset = min(follower_end, log_end_offset)
        next_epoch = _latest_epoch_below(entries, offset)
        if next_epoch == UNDEFINED_EPOCH:
            # Nothing left to ask about: Kafka truncates such a partition to its
            # fetch offset, which is now `offset`.
            return TruncationStep(offset, True)
        return TruncationStep(offset, False, next_epoch)
    return TruncationStep(min(follower_end, leader_end_offset, log_end_offset), True)
