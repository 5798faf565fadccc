"""Idempotent-producer state of one partition (KAFKA-NOTES §6.1).

For each producer id the manager keeps the current epoch and the metadata of
the last 5 batches appended (first/last sequence, first/last offset, max
timestamp): clients keep at most 5 requests in flight per connection, so a
retried batch is always among them and gets its ORIGINAL offsets back instead
of being written twice.

Invariants: for every producer, cached batches are in append order with
consecutive sequences (mod 2**31); the state equals what replaying every batch
of the log from `log_start_offset` would give, except for producers expired
after producer.id.expiration.ms.

Persistence: `<offset>.snapshot` files (JSON with a CRC32C, written atomically)
hold the state as of `offset`; on open the newest snapshot at or below the
log end offset is loaded and the batches after it are replayed from their
headers (no record is decoded). A missing or damaged snapshot only costs a
longer replay.

Not thread-safe: the broker's event loop is its only user.
"""
from __future__ import annotations

import json
import logging
import os
from collections import deque

from .. import _engine
from ..errors import InvalidProducerEpochError, OutOfOrderSequenceNumberError
from ..log.checkpoint import atomic_write

log = logging.getLogger("pylog.broker")

SNAPSHOT_SUFFIX = ".snapshot"
BATCHES_KEPT = 5
_INT32_MAX = (1 << 31) - 1
_ATTR_CONTROL = 0x20


def _next_seq(last_seq: int) -> int:
    return 0 if last_seq == _INT32_MAX else last_seq + 1


def _last_seq(base_seq: int, last_offset_delta: int) -> int:
    # Sequences wrap to 0 after INT32_MAX, as the Java client does.
    s = base_seq + last_offset_delta
    return s - _INT32_MAX - 1 if s > _INT32_MAX else s


class ProducerEntry:
    __slots__ = ("batches", "last_timestamp", "producer_epoch", "producer_id")

    def __init__(self, producer_id: int, producer_epoch: int):
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        # (first_seq, last_seq, first_offset, last_offset, max_timestamp)
        self.batches: deque = deque(maxlen=BATCHES_KEPT)
        self.last_timestamp = -1

    def find_duplicate(self, first_seq: int, last_seq: int):
        for b in self.batches:
            if b[0] == first_seq and b[1] == last_seq:
                return b
        return None


class ProducerStateManager:
    def __init__(self, log_dir: str, expiration_ms: int = 86400000):
        self.log_dir = log_dir
        self.expiration_ms = expiration_ms
        self.producers: dict[int, ProducerEntry] = {}
        self._snapshot_offset = -1   # offset of the state on disk
        self._changed = False

    # ---- checks on append (leader, client origin) ----

    def check(self, headers):
        """Validate the producer fields of batches about to be appended, given as
        _engine.batch_headers tuples. Returns the cached metadata
        (first_seq, last_seq, first_offset, last_offset, max_timestamp) of a
        duplicate batch (the request must then not be appended), else None.
        Raises InvalidProducerEpochError / OutOfOrderSequenceNumberError.
        Changes nothing: update() records the batches once appended."""
        pending: dict[int, tuple[int, int]] = {}  # pid -> (epoch, last_seq) within this request
        for (_pos, _base, delta, _ts, pid, epoch, base_seq, _count, attrs) in headers:
            if pid < 0 or attrs & _ATTR_CONTROL:
                continue
            last_seq = _last_seq(base_seq, delta)
            entry = self.producers.get(pid)
            if pid in pending:
                cur_epoch, cur_last = pending[pid]
                known = True
            elif entry is not None:
                cur_epoch = entry.producer_epoch
                cur_last = entry.batches[-1][1] if entry.batches else -1
                known = True
                if epoch == cur_epoch:
                    dup = entry.find_duplicate(base_seq, last_seq)
                    if dup is not None:
                        return dup
            else:
                known = False
            if known:
                if epoch < cur_epoch:
                    raise InvalidProducerEpochError(
                        f"producer {pid}: epoch {epoch} is older than the current epoch {cur_epoch}")
                if epoch > cur_epoch:
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
            pending[pid] = (epoch, last_seq)
        return None

    def update(self, headers, first_offset: int):
        """Record batches appended with offsets from first_offset on (the
        headers as received, before offsets were assigned, or as stored)."""
        offset = first_offset
        for (_pos, base, delta, ts, pid, epoch, base_seq, _count, attrs) in headers:
            if first_offset < 0:
                offset = base
            if pid >= 0 and not attrs & _ATTR_CONTROL:
                entry = self.producers.get(pid)
                if entry is None or epoch != entry.producer_epoch:
                    if entry is not None and epoch < entry.producer_epoch:
                        offset += delta + 1
                        continue  # an old epoch found while replaying: fenced, keep the newer
                    entry = self.producers[pid] = ProducerEntry(pid, epoch)
                entry.batches.append((base_seq, _last_seq(base_seq, delta), offset, offset + delta, ts))
                entry.last_timestamp = max(entry.last_timestamp, ts)
                self._changed = True
            offset += delta + 1

    def expire(self, now_ms: int) -> int:
        """Forget producers idle for longer than expiration_ms; how many."""
        dead = [pid for pid, e in self.producers.items()
                if e.last_timestamp >= 0 and now_ms - e.last_timestamp > self.expiration_ms]
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
        body = json.dumps({"version": 1, "offset": log_end_offset, "producers": [
            [e.producer_id, e.producer_epoch, e.last_timestamp, [list(b) for b in e.batches]]
            for e in self.producers.values()]}, separators=(",", ":")).encode()
        self._snapshot_offset = log_end_offset
        self._changed = False
        return log_end_offset, b"%08x\n" % _engine.crc32c(body) + body

    def write_snapshot(self, snapshot) -> None:
        """The file half of take_snapshot (any thread; blocks on the disk):
        write it, then delete older snapshots."""
        log_end_offset, data = snapshot
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
            if doc.get("version") != 1 or doc.get("offset") != offset:
                raise ValueError("unknown version or wrong offset")
            producers = {}
            for pid, epoch, last_ts, batches in doc["producers"]:
                e = ProducerEntry(pid, epoch)
                e.last_timestamp = last_ts
                for b in batches:
                    e.batches.append(tuple(b))
                producers[pid] = e
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: producer state snapshot unreadable (%s); rebuilding from the log", path, exc)
            return False
        self.producers = producers
        return True

    def load(self, plog) -> None:
        """Rebuild the state for plog (a pylog Log): newest usable snapshot, then
        replay of the batch headers after it."""
        leo = plog.log_end_offset
        start = plog.log_start_offset
        self.producers = {}
        from_offset = start
        for snap in reversed(self._snapshots()):
            if snap <= leo and snap >= start and self._load_snapshot(snap):
                from_offset = snap
                break
            if snap > leo:  # the log was cut below it (an unclean shutdown)
                os.unlink(self._path(snap))
        replayed = self._replay(plog, from_offset, leo)
        self._snapshot_offset = from_offset if replayed == 0 else -1
        self._changed = replayed > 0
        if replayed:
            log.info("%s: producer state rebuilt from offset %d (%d batches replayed, %d producers)",
                     self.log_dir, from_offset, replayed, len(self.producers))

    def _replay(self, plog, offset: int, end: int) -> int:
        n = 0
        while offset < end:
            fs = plog.read_batches(offset, 4 << 20)
            headers = _engine.batch_headers(fs)
            del fs
            if not headers:
                break
            headers = [h for h in headers if h[1] + h[2] >= offset]
            self.update(headers, -1)
            n += len(headers)
            last = headers[-1]
            offset = last[1] + last[2] + 1
        return n
