"""Idempotent and transactional producer state of one partition
(KAFKA-NOTES §6.1, §6.3; Kafka's ProducerStateManager and ProducerAppendInfo).

For each producer id the manager keeps the current epoch and the metadata of
the last 5 batches appended (first/last sequence, first/last offset, max
timestamp): clients keep at most 5 requests in flight per connection, so a
retried batch is always among them and gets its ORIGINAL offsets back instead
of being written twice. For transactions it also keeps, per producer, the
epoch of the last coordinator that wrote a marker and the first offset of its
ongoing transaction; per partition the ongoing transactions and the completed
ones whose marker is not yet below the high watermark, which together give
the first unstable offset (the last stable offset is min(it, HW)).

Invariants: for every producer, cached batches are in append order with
consecutive sequences (mod 2**31); the state equals what replaying every batch
of the log from `log_start_offset` would give, except for producers expired
after producer.id.expiration.ms (never one with an ongoing transaction);
`ongoing` holds exactly the producers whose current_txn_first_offset >= 0.

Persistence: `<offset>.snapshot` files (JSON with a CRC32C, written atomically)
hold the state as of `offset`, ongoing transactions included; on open the
newest snapshot at or below the log end offset is loaded and the batches after
it are replayed from their headers (only a marker's one record is read), which
also rebuilds the aborted-transaction index entries of those markers. A
missing or damaged snapshot only costs a longer replay.

Not thread-safe: the partition's owner (the broker's event loop, or the
embedded store under its partition lock) is its only user; write_snapshot
alone runs on a worker thread, on data prepared by its owner.
"""
from __future__ import annotations

import json
import logging
import os
from collections import deque

from .. import _engine
from ..errors import (InvalidProducerEpochError, InvalidTxnStateError, OutOfOrderSequenceNumberError,
                      for_code)
from ..log.checkpoint import atomic_write
from ..protocol import batch_layout as L
from ..protocol.control_records import ABORT, end_txn_marker
from ..protocol.error_codes import Errors

log = logging.getLogger("pylog.broker")

SNAPSHOT_SUFFIX = ".snapshot"
BATCHES_KEPT = 5
_INT32_MAX = (1 << 31) - 1
TransactionCoordinatorFencedError = for_code(Errors.TRANSACTION_COORDINATOR_FENCED)


def _next_seq(last_seq: int) -> int:
    return 0 if last_seq == _INT32_MAX else last_seq + 1


def _last_seq(base_seq: int, last_offset_delta: int) -> int:
    # Sequences wrap to 0 after INT32_MAX, as the Java client does.
    if base_seq < 0:
        return -1  # a coordinator's batch without sequences
    s = base_seq + last_offset_delta
    return s - _INT32_MAX - 1 if s > _INT32_MAX else s


class ProducerEntry:
    __slots__ = ("batches", "coordinator_epoch", "current_txn_first_offset", "last_timestamp", "producer_epoch",
                 "producer_id")

    def __init__(self, producer_id: int, producer_epoch: int):
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        # (first_seq, last_seq, first_offset, last_offset, max_timestamp)
        self.batches: deque = deque(maxlen=BATCHES_KEPT)
        self.last_timestamp = -1
        self.coordinator_epoch = -1
        self.current_txn_first_offset = -1

    @property
    def last_sequence(self) -> int:
        return self.batches[-1][1] if self.batches else -1

    def find_duplicate(self, first_seq: int, last_seq: int):
        for b in self.batches:
            if b[0] == first_seq and b[1] == last_seq:
                return b
        return None

    def set_epoch(self, epoch: int):
        # Kafka's maybeUpdateProducerEpoch: a new epoch starts its sequences afresh.
        if epoch != self.producer_epoch:
            self.producer_epoch = epoch
            self.batches.clear()


class CompletedTxn:
    """A transaction ended by a marker at last_offset (Kafka's CompletedTxn)."""

    __slots__ = ("aborted", "first_offset", "last_offset", "producer_id")

    def __init__(self, producer_id: int, first_offset: int, last_offset: int, aborted: bool):
        self.producer_id = producer_id
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.aborted = aborted


class ProducerStateManager:
    def __init__(self, log_dir: str, expiration_ms: int = 86400000):
        self.log_dir = log_dir
        self.expiration_ms = expiration_ms
        self.producers: dict[int, ProducerEntry] = {}
        # first offset -> producer id, of every ongoing transaction
        self.ongoing: dict[int, int] = {}
        # first offset -> marker offset, of completed transactions whose marker
        # the high watermark has not passed yet (they still hold the LSO back)
        self.unreplicated: dict[int, int] = {}
        self._snapshot_offset = -1   # offset of the state on disk
        self._changed = False
        self.txn_indexes = None      # the partition's TransactionIndexes, from load()

    # ---- the last stable offset (KAFKA-NOTES §6.3) ----

    def first_unstable_offset(self, high_watermark: int):
        """The first offset of the oldest transaction that is ongoing, or
        completed by a marker not yet below high_watermark; None when none is."""
        if self.unreplicated:
            for first in [f for f, last in self.unreplicated.items() if last < high_watermark]:
                del self.unreplicated[first]
        if not self.ongoing and not self.unreplicated:
            return None
        return min(min(self.ongoing, default=high_watermark), min(self.unreplicated, default=high_watermark))

    def last_stable_offset_at(self, completed: CompletedTxn) -> int:
        """The LSO recorded with an aborted transaction in the index: the first
        offset of the oldest other ongoing transaction, else the marker's next
        offset (Kafka's ProducerStateManager.lastStableOffset)."""
        others = [f for f, pid in self.ongoing.items() if pid != completed.producer_id]
        return min(others) if others else completed.last_offset + 1

    def complete_txn(self, completed: CompletedTxn):
        self.ongoing.pop(completed.first_offset, None)
        self.unreplicated[completed.first_offset] = completed.last_offset

    # ---- checks on append (leader) ----

    def check(self, headers, client: bool = True):
        """Validate the producer fields of data batches about to be appended,
        given as _engine.batch_headers tuples. Returns the cached metadata
        (first_seq, last_seq, first_offset, last_offset, max_timestamp) of a
        duplicate batch (the request must then not be appended), else None.
        client: a client's Produce (sequences checked); else the broker's own
        batches (a coordinator's: epochs only, as Kafka's AppendOrigin).
        Raises InvalidProducerEpochError / OutOfOrderSequenceNumberError /
        InvalidTxnStateError. Changes nothing: update() records the batches
        once appended."""
        # pid -> (epoch, last_seq, in a transaction) within this request
        pending: dict[int, tuple[int, int, bool]] = {}
        for (_pos, _base, delta, _ts, pid, epoch, base_seq, _count, attrs) in headers:
            if pid < 0 or attrs & L.ATTR_CONTROL:
                continue
            last_seq = _last_seq(base_seq, delta)
            entry = self.producers.get(pid)
            if pid in pending:
                cur_epoch, cur_last, in_txn = pending[pid]
                known = True
            elif entry is not None:
                cur_epoch = entry.producer_epoch
                cur_last = entry.last_sequence
                in_txn = entry.current_txn_first_offset >= 0
                known = True
                if epoch == cur_epoch and client and base_seq >= 0:
                    dup = entry.find_duplicate(base_seq, last_seq)
                    if dup is not None:
                        return dup
            else:
                known = in_txn = False
            if known:
                if epoch < cur_epoch:
                    raise InvalidProducerEpochError(
                        f"producer {pid}: epoch {epoch} is older than the current epoch {cur_epoch}")
                if not client or base_seq < 0:
                    pass
                elif epoch > cur_epoch:
                    if base_seq != 0:
                        raise OutOfOrderSequenceNumberError(
                            f"producer {pid}: a new epoch {epoch} must start at sequence 0, not {base_seq}")
                elif cur_last == -1:
                    if base_seq != 0:
                        raise OutOfOrderSequenceNumberError(
                            f"producer {pid}: expected sequence 0, got {base_seq}")
                elif base_seq != _next_seq(cur_last):
                    raise OutOfOrderSequenceNumberError(
                        f"producer {pid} epoch {epoch}: expected sequence {_next_seq(cur_last)}, "
                        f"got {base_seq}")
            # Unknown producers (new, or expired) may start at any sequence (KIP-360).
            transactional = bool(attrs & L.ATTR_TRANSACTIONAL)
            if in_txn and not transactional:
                raise InvalidTxnStateError(
                    f"producer {pid} has a transaction open on this partition: expected a transactional batch")
            pending[pid] = (epoch, last_seq, in_txn or transactional)
        return None

    def check_marker(self, producer_id: int, producer_epoch: int, coordinator_epoch: int):
        """A coordinator's marker for producer_id may be written (Kafka's
        appendEndTxnMarker checks): its epoch is not older than the producer's
        (InvalidProducerEpochError), its coordinator epoch not older than the
        last marker's (TRANSACTION_COORDINATOR_FENCED)."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return
        if producer_epoch < entry.producer_epoch:
            raise InvalidProducerEpochError(
                f"marker for producer {producer_id}: epoch {producer_epoch} is older than the current epoch "
                f"{entry.producer_epoch}")
        if coordinator_epoch < entry.coordinator_epoch:
            raise TransactionCoordinatorFencedError(
                f"marker for producer {producer_id}: coordinator epoch {coordinator_epoch} is older than "
                f"{entry.coordinator_epoch}, the epoch of the coordinator that wrote its last marker")

    # ---- recording appended batches (leader, follower, replay) ----

    def update(self, headers, first_offset: int, data=None) -> list:
        """Record batches appended with offsets from first_offset on (the
        headers as received, before offsets were assigned), or, first_offset
        -1, at the offsets their headers hold (as stored). data: the batches'
        bytes, read for markers (control batches). Returns the transactions
        the markers among them completed (CompletedTxn, in offset order);
        the caller indexes the aborted ones, then calls complete_txn."""
        offset = first_offset
        completed = []
        for (pos, base, delta, ts, pid, epoch, base_seq, _count, attrs) in headers:
            if first_offset < 0:
                offset = base
            if pid >= 0:
                if attrs & L.ATTR_CONTROL:
                    marker = end_txn_marker(data, pos) if data is not None else None
                    if marker is not None:
                        done = self._end_txn(pid, epoch, offset, *marker)
                        if done is not None:
                            completed.append(done)
                else:
                    self._append_data(pid, epoch, base_seq, delta, ts, offset, attrs & L.ATTR_TRANSACTIONAL)
            offset += delta + 1
        return completed

    def _append_data(self, pid, epoch, base_seq, delta, ts, offset, transactional):
        entry = self.producers.get(pid)
        if entry is None:
            entry = self.producers[pid] = ProducerEntry(pid, epoch)
        elif epoch < entry.producer_epoch:
            return  # an old epoch found while replaying: fenced, keep the newer
        entry.set_epoch(epoch)
        entry.batches.append((base_seq, _last_seq(base_seq, delta), offset, offset + delta, ts))
        entry.last_timestamp = max(entry.last_timestamp, ts)
        if transactional and entry.current_txn_first_offset < 0:
            # The producer's first batch of a transaction opens it here.
            entry.current_txn_first_offset = offset
            self.ongoing[offset] = pid
        self._changed = True

    def _end_txn(self, pid, epoch, offset, ctype, coordinator_epoch, timestamp):
        entry = self.producers.get(pid)
        if entry is None:
            entry = self.producers[pid] = ProducerEntry(pid, epoch)
        done = None
        if entry.current_txn_first_offset >= 0:
            # A marker without data here ends nothing: no LSO or index change.
            done = CompletedTxn(pid, entry.current_txn_first_offset, offset, ctype == ABORT)
        entry.set_epoch(epoch)
        entry.coordinator_epoch = coordinator_epoch
        entry.last_timestamp = timestamp
        entry.current_txn_first_offset = -1
        self._changed = True
        return done

    def expire(self, now_ms: int) -> int:
        """Forget producers idle for longer than expiration_ms, except those
        with an ongoing transaction (Kafka's isProducerExpired); how many."""
        dead = [pid for pid, e in self.producers.items()
                if e.current_txn_first_offset < 0 and e.last_timestamp >= 0
                and now_ms - e.last_timestamp > self.expiration_ms]
        for pid in dead:
            del self.producers[pid]
        if dead:
            self._changed = True
        return len(dead)

    # ---- persistence ----

    def _snapshots(self) -> list[int]:
        out = []
        for name in os.listdir(self.log_dir):
            if name.endswith(SNAPSHOT_SUFFIX):
                stem = name[:-len(SNAPSHOT_SUFFIX)]
                if stem.isdigit():
                    out.append(int(stem))
        return sorted(out)

    def _path(self, offset: int) -> str:
        return os.path.join(self.log_dir, f"{offset:020d}{SNAPSHOT_SUFFIX}")

    def take_snapshot(self, log_end_offset: int, force: bool = False) -> bool:
        """Write the state as of log_end_offset (when changed since the last one)
        and delete older snapshots. True when a file was written."""
        snapshot = self.prepare_snapshot(log_end_offset, force)
        if snapshot is None:
            return False
        self.write_snapshot(snapshot)
        return True

    def prepare_snapshot(self, log_end_offset: int, force: bool = False):
        """The in-memory half of take_snapshot (on the thread that owns this
        state): the snapshot to write, or None when nothing changed. The state
        counts as snapshotted from here on."""
        if not force and (not self._changed or log_end_offset == self._snapshot_offset):
            return None
        # Version 2 adds each producer's coordinator epoch and the first offset
        # of its ongoing transaction (Kafka's snapshot fields of the same names).
        body = json.dumps({"version": 2, "offset": log_end_offset, "producers": [
            [e.producer_id, e.producer_epoch, e.last_timestamp, [list(b) for b in e.batches],
             e.coordinator_epoch, e.current_txn_first_offset]
            for e in self.producers.values()]}, separators=(",", ":")).encode()
        self._snapshot_offset = log_end_offset
        self._changed = False
        return log_end_offset, b"%08x\n" % _engine.crc32c(body) + body

    def write_snapshot(self, snapshot) -> None:
        """The file half of take_snapshot (any thread; blocks on the disk):
        write it, then delete older snapshots. The partition's aborted-
        transaction index (given to load) is synced first: its entries below
        a snapshot's offset are never rebuilt from the log."""
        log_end_offset, data = snapshot
        if self.txn_indexes is not None:
            self.txn_indexes.sync()
        atomic_write(self._path(log_end_offset), data)
        for old in self._snapshots():
            if old != log_end_offset:
                try:
                    os.unlink(self._path(old))
                except FileNotFoundError:
                    pass

    def _load_snapshot(self, offset: int) -> bool:
        path = self._path(offset)
        try:
            with open(path, "rb") as f:
                data = f.read()
            crc, _, body = data.partition(b"\n")
            if int(crc, 16) != _engine.crc32c(body):
                raise ValueError("CRC mismatch")
            doc = json.loads(body)
            if doc.get("version") not in (1, 2) or doc.get("offset") != offset:
                raise ValueError("unknown version or wrong offset")
            producers = {}
            for fields in doc["producers"]:
                pid, epoch, last_ts, batches = fields[:4]
                e = ProducerEntry(pid, epoch)
                e.last_timestamp = last_ts
                if len(fields) >= 6:
                    e.coordinator_epoch, e.current_txn_first_offset = int(fields[4]), int(fields[5])
                for b in batches:
                    e.batches.append(tuple(b))
                producers[pid] = e
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: producer state snapshot unreadable (%s); rebuilding from the log", path, exc)
            return False
        self.producers = producers
        self.ongoing = {e.current_txn_first_offset: e.producer_id for e in producers.values()
                        if e.current_txn_first_offset >= 0}
        return True

    def load(self, plog, txn_indexes=None) -> None:
        """Rebuild the state for plog (a pylog Log): newest usable snapshot, then
        replay of the batch headers after it. txn_indexes (the partition's
        TransactionIndexes): their entries from the replay's first offset on
        are dropped and written again from the markers replayed, as Kafka's
        LogLoader rebuilds the index of the segments it recovers."""
        leo = plog.log_end_offset
        start = plog.log_start_offset
        self.txn_indexes = txn_indexes
        self.producers = {}
        self.ongoing = {}
        # Truncation or a reload happens at or below the high watermark: no
        # completed transaction is left waiting for replication.
        self.unreplicated = {}
        from_offset = start
        for snap in reversed(self._snapshots()):
            if snap <= leo and snap >= start and self._load_snapshot(snap):
                from_offset = snap
                break
            if snap > leo:  # the log was cut below it (an unclean shutdown)
                os.unlink(self._path(snap))
        if txn_indexes is not None:
            txn_indexes.truncate_to(from_offset)
        replayed = self._replay(plog, from_offset, leo, txn_indexes)
        self._snapshot_offset = from_offset if replayed == 0 else -1
        self._changed = replayed > 0
        if replayed:
            log.info("%s: producer state rebuilt from offset %d (%d batches replayed, %d producers)",
                     self.log_dir, from_offset, replayed, len(self.producers))

    def _replay(self, plog, offset: int, end: int, txn_indexes=None) -> int:
        n = 0
        while offset < end:
            fs = plog.read_batches(offset, 4 << 20)
            headers = _engine.batch_headers(fs)
            if not headers:
                del fs
                break
            headers = [h for h in headers if h[1] + h[2] >= offset]
            for done in self.update(headers, -1, fs):
                if done.aborted and txn_indexes is not None:
                    txn_indexes.append(plog.segment_base_of(done.last_offset), done.producer_id,
                                       done.first_offset, done.last_offset, self.last_stable_offset_at(done))
                self.complete_txn(done)
            del fs
            n += len(headers)
            last = headers[-1]
            offset = last[1] + last[2] + 1
        return n
