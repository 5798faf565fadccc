"""The aborted-transaction index of a log: one `.txnindex` file per segment,
in Kafka's on-disk format (TransactionIndex / AbortedTxn, KAFKA-NOTES §6.3).

Each entry is 34 big-endian bytes: version int16 (0), producer_id int64,
first_offset int64 (the transaction's first offset on this partition),
last_offset int64 (its ABORT marker's offset), last_stable_offset int64 (the
LSO once the marker is in). An entry lives in the file of the segment that
holds its marker; a file exists only once a segment has one (as Kafka creates
it lazily). Entries are in marker order, last offsets strictly increasing.

What moves the files: an ABORT marker appends one entry (a write(2) of 34
bytes, like the segment append beside it; sync() makes them durable and runs
before a producer-state snapshot is written, off the event loop); truncation
drops the entries at or past the cut; the Log retires a segment's .txnindex
with its other files (retention, truncation); on load the entries from the
replay's first offset on are dropped and rebuilt from the markers replayed
(ProducerStateManager.load), which is how an unclean shutdown's missing or
torn entries come back. A torn last entry (size not a multiple of 34) is cut.

The entries are also kept in memory per segment, so a read_committed Fetch
collects them without reading a file on the event loop.

Thread-safety: the partition's owner (the broker's event loop, or the
embedded store under its partition lock) makes every call except sync(),
which any thread may run; the set of files to sync is handed over under a
lock.
"""
from __future__ import annotations

import bisect
import logging
import os
import struct
import threading

log = logging.getLogger("pylog.log")

TXN_INDEX_SUFFIX = ".txnindex"
ENTRY = struct.Struct(">hqqqq")   # version, producer_id, first_offset, last_offset, last_stable_offset
ENTRY_SIZE = ENTRY.size           # 34
CURRENT_VERSION = 0


class AbortedTxn:
    __slots__ = ("first_offset", "last_offset", "last_stable_offset", "producer_id")

    def __init__(self, producer_id: int, first_offset: int, last_offset: int, last_stable_offset: int):
        self.producer_id = producer_id
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.last_stable_offset = last_stable_offset

    def __repr__(self):
        return (f"AbortedTxn(producer_id={self.producer_id}, first_offset={self.first_offset}, "
                f"last_offset={self.last_offset}, last_stable_offset={self.last_stable_offset})")


def read_index_file(path: str) -> list[AbortedTxn]:
    """The whole entries of one .txnindex file (a torn tail is left out)."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    for pos in range(0, len(data) - ENTRY_SIZE + 1, ENTRY_SIZE):
        version, pid, first, last, lso = ENTRY.unpack_from(data, pos)
        if version > CURRENT_VERSION:
            raise ValueError(f"{path}: aborted transaction entry of unknown version {version}")
        out.append(AbortedTxn(pid, first, last, lso))
    return out


class TransactionIndexes:
    """The .txnindex files of one log directory, by segment base offset."""

    def __init__(self, log_dir: str):
        self.log_dir = log_dir
        self._bases: list[int] = []                  # sorted segment bases that have entries
        self._entries: dict[int, list[AbortedTxn]] = {}
        self._dirty: set[int] = set()
        self._dirty_lock = threading.Lock()
        self._load()

    def _path(self, base: int) -> str:
        return os.path.join(self.log_dir, f"{base:020d}{TXN_INDEX_SUFFIX}")

    def _load(self):
        for name in os.listdir(self.log_dir):
            stem = name[:-len(TXN_INDEX_SUFFIX)]
            if not name.endswith(TXN_INDEX_SUFFIX) or len(stem) != 20 or not stem.isdigit():
                continue
            base = int(stem)
            path = self._path(base)
            try:
                entries = read_index_file(path)
                if os.path.getsize(path) != len(entries) * ENTRY_SIZE:
                    log.warning("%s: cutting a torn entry at its end", path)
                    os.truncate(path, len(entries) * ENTRY_SIZE)
            except (OSError, ValueError) as exc:
                # Rebuilt from the log only from the replay's start: say so.
                log.warning("%s: unreadable transaction index (%s); its entries are lost", path, exc)
                continue
            if entries:
                self._entries[base] = entries
                bisect.insort(self._bases, base)

    # ---- changes ----

    def append(self, segment_base: int, producer_id: int, first_offset: int, last_offset: int,
               last_stable_offset: int):
        """An aborted transaction whose ABORT marker is at last_offset, in the
        segment starting at segment_base."""
        entries = self._entries.get(segment_base)
        if entries and entries[-1].last_offset >= last_offset:
            raise ValueError(f"aborted transaction at {last_offset} is not after the last one of "
                             f"{self._path(segment_base)} ({entries[-1].last_offset})")
        fd = os.open(self._path(segment_base), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, ENTRY.pack(CURRENT_VERSION, producer_id, first_offset, last_offset, last_stable_offset))
        finally:
            os.close(fd)
        if entries is None:
            entries = self._entries[segment_base] = []
            bisect.insort(self._bases, segment_base)
        entries.append(AbortedTxn(producer_id, first_offset, last_offset, last_stable_offset))
        with self._dirty_lock:
            self._dirty.add(segment_base)

    def truncate_to(self, offset: int):
        """Drop every entry whose marker is at or past offset (Kafka's
        TransactionIndex.truncateTo, for every segment at once)."""
        for base in list(self._bases):
            entries = self._entries[base]
            keep = 0
            while keep < len(entries) and entries[keep].last_offset < offset:
                keep += 1
            if keep == len(entries):
                continue
            path = self._path(base)
            try:
                if keep == 0 and base >= offset:
                    os.unlink(path)
                else:
                    os.truncate(path, keep * ENTRY_SIZE)
            except FileNotFoundError:
                pass  # its segment is gone already (the Log retires its files)
            if keep:
                del entries[keep:]
            else:
                del self._entries[base]
                self._bases.remove(base)

    def forget_below(self, first_segment_base: int):
        """Forget the entries of segments below the log's first one (deleted
        by retention or DeleteRecords; the Log removed their files)."""
        while self._bases and self._bases[0] < first_segment_base:
            del self._entries[self._bases.pop(0)]

    def sync(self):
        """fdatasync the files appended to since the last sync (any thread)."""
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        for base in dirty:
            try:
                fd = os.open(self._path(base), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)

    # ---- reads ----

    def collect(self, fetch_offset: int, upper_bound_offset: int) -> list[AbortedTxn]:
        """The aborted transactions overlapping [fetch_offset, upper_bound_offset)
        (Kafka's collectAbortedTransactions): from the segment holding
        fetch_offset on, stopping at the first entry whose LSO reaches the
        upper bound (no later entry can start below it)."""
        out = []
        i = max(bisect.bisect_right(self._bases, fetch_offset) - 1, 0)
        for base in self._bases[i:]:
            for e in self._entries[base]:
                if e.last_offset >= fetch_offset and e.first_offset < upper_bound_offset:
                    out.append(e)
                if e.last_stable_offset >= upper_bound_offset:
                    return out
        return out

    def all_entries(self) -> list[AbortedTxn]:
        return [e for base in self._bases for e in self._entries[base]]

    def __bool__(self):
        return bool(self._bases)
