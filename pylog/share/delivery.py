"""Delayed delivery and priority for share groups (pylog's own; Pulsar's
deliverAt and RabbitMQ's priority queues are the models). The log is the
truth: every due time and priority is derived again from record headers and
timestamps, so nothing here needs to be durable.

- **Due time** of a record: the header `pylog.deliver.at` (epoch ms), or
  `pylog.deliver.after` (ms after the record's timestamp: CreateTime, or
  LogAppendTime in such a topic), the later of the two when both; and at
  least its timestamp + the topic's `pylog.delivery.delay.ms`. Before it, share
  consumers cannot acquire the record; plain consumers read the log as it is.
- **Priority**: the header `pylog.priority` (0-9, larger first; absent: the
  topic's `pylog.priority.default`, D, 0 unless set). A fetch takes records
  that came due first, then any source whose oldest record has waited
  `pylog.priority.max.wait.ms` (the starvation bound: it counts as top
  priority, oldest first), then priorities 9..D+1, then the log in offset
  order (the records without the header, and those with D), then D-1..0.
  Priority orders first deliveries; a released record comes back in offset
  order. D is read at every fetch, so an alter applies to every record not
  yet delivered: headers are indexed whatever D is.

Per share-partition a DeliveryIndex reads the log ahead of the in-flight
window (SCAN_BYTES per fetch, one C call per batch, engine/delivery.c, and
nothing more for batches without these headers), and notes:
- records with a due time in the future, in a DelaySidecar: (due, offset)
  pairs of which only a window of the earliest lives in memory, the rest in
  a file (rebuilt at each load, from the log);
- records with a priority header, per priority (offset, timestamp) arrays.
The in-flight window parks a not-yet-due record (partition.PARKED) when
acquisition reaches it, and a record of priority below D not yet delivered
(the offset-order path leaves it to its own level; that level's take
unparks it); a timer at the earliest due time unparks what came due and
wakes the fetches waiting in the purgatory. The topic delay is
applied per batch on the offset-order path (a batch waits for its newest
record's time) and per record on the priority path.

Threads: the event loop's; the sidecar's file work on one worker thread.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import struct
import time
from bisect import bisect_left
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._engine import batch_headers, find_headers, trim_batch
from ..errors import PylogError
from .partition import AVAILABLE, PARKED

log = logging.getLogger("pylog.share")

DELIVER_AT, DELIVER_AFTER, PRIORITY = b"pylog.deliver.at", b"pylog.deliver.after", b"pylog.priority"
_KEYS = (DELIVER_AT, DELIVER_AFTER, PRIORITY)
_K_AT, _K_AFTER, _K_PRIORITY = 0, 1, 2
TOP = 9
SCAN_BYTES = 4 << 20            # log read ahead per fetch: bounds one fetch's work
SCAN_READ = 1 << 20
WINDOW = 16384                  # delayed entries kept in memory (between WINDOW/4 and 2*WINDOW)
_CHUNK = 1 << 18                # entries per read of the sidecar file
_INF = (1 << 63) - 1
_DIR = ".share-delivery"        # under the data dir; no topic-partition name matches it
_EMPTY = np.empty((0, 2), np.int64)

_executor: ThreadPoolExecutor | None = None


def _worker() -> ThreadPoolExecutor:
    # One thread for every sidecar file: its appends and refills stay in order.
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(1, thread_name_prefix="pylog-share-delay")
    return _executor


def now_ms() -> int:
    return int(time.time() * 1000)


def sidecar_path(data_dir, group_id, topic, index) -> str:
    g = hashlib.sha1(group_id.encode()).hexdigest()[:16]
    return os.path.join(data_dir, _DIR, f"{g}-{topic}-{index}.delays")


def _hits(data):
    """(hits as an (n, 4) array: offset, key, timestamp, value; end offset; bytes walked)."""
    raw, end, used = find_headers(data, _KEYS)
    return np.frombuffer(raw, np.int64).reshape(-1, 4), end, used


def _due_times(hits, topic_delay):
    """(offsets, due ms) of the records with a delay header, one each, sorted by offset."""
    d = hits[hits[:, 1] != _K_PRIORITY]
    if not len(d):
        return d[:, 0], d[:, 0]
    due = np.where(d[:, 1] == _K_AT, d[:, 3], d[:, 2] + d[:, 3])
    if topic_delay:
        due = np.maximum(due, d[:, 2] + topic_delay)
    order = np.lexsort((due, d[:, 0]))
    offs, due = d[order, 0], due[order]
    last = np.append(offs[1:] != offs[:-1], True)    # the later due time of a record's two headers
    return offs[last], due[last]


def runs_of(offsets) -> list[tuple[int, int]]:
    """Sorted unique offsets as [(first, last)] runs."""
    if not len(offsets):
        return []
    offsets = np.asarray(offsets)
    cut = np.flatnonzero(np.diff(offsets) != 1) + 1
    firsts = np.concatenate(([offsets[0]], offsets[cut]))
    lasts = np.concatenate((offsets[cut - 1], [offsets[-1]]))
    return list(zip(firsts.tolist(), lasts.tolist()))


class DelaySidecar:
    """(due ms, offset) pairs: every pair with due < horizon in memory, the
    others in a file of native int64 pairs. The memory window stays between
    WINDOW/4 (a refill from the file then starts, on the worker thread) and
    2 * WINDOW (the latest half then moves to the file)."""

    def __init__(self, path, on_refill, window=WINDOW):
        self.path, self.on_refill, self.window = path, on_refill, window
        self.win = _EMPTY
        self.horizon = _INF
        self.on_disk = 0
        self.held: list = []            # pairs for the file while a refill rewrites it
        self.refilling = False
        self.closed = False
        _worker().submit(_reset, path)

    def __len__(self):
        return len(self.win) + self.on_disk + sum(len(h) for h in self.held)

    def add(self, pairs) -> None:
        low = pairs[:, 0] < self.horizon
        if low.any():
            self.win = np.concatenate((self.win, pairs[low]))
        if not low.all():
            self._spill(pairs[~low])
        if len(self.win) > 2 * self.window:
            k = self.window
            part = np.argpartition(self.win[:, 0], k)
            keep, out = self.win[part[:k]], self.win[part[k:]]
            self.win = keep
            self.horizon = min(self.horizon, int(out[:, 0].min()))
            self._spill(out)

    def _spill(self, pairs) -> None:
        if self.refilling:
            self.held.append(pairs)
            return
        self.on_disk += len(pairs)
        _worker().submit(_append, self.path, np.ascontiguousarray(pairs).tobytes())

    def next_due(self):
        if len(self.win):
            return int(self.win[:, 0].min())
        return self.horizon if self.on_disk or self.held else None

    def pop_due(self, now) -> np.ndarray:
        """The offsets due by now, sorted; starts a refill when the window runs low."""
        out = np.empty(0, np.int64)
        if len(self.win):
            m = self.win[:, 0] <= now
            if m.any():
                out = np.sort(self.win[m, 1])
                self.win = self.win[~m]
        if len(self.win) < self.window // 4 and self.on_disk and not self.refilling and not self.closed:
            self.refilling = True
            fut = asyncio.get_running_loop().run_in_executor(_worker(), _take_smallest, self.path, self.window)
            fut.add_done_callback(self._refilled)
        return out

    def _refilled(self, fut) -> None:
        self.refilling = False
        if self.closed:
            return
        if fut.cancelled() or fut.exception() is not None:
            log.warning("delayed-delivery sidecar %s: refill failed: %s", self.path,
                        None if fut.cancelled() else fut.exception())
            self.on_refill()
            return
        got, rest, low = fut.result()
        self.on_disk = rest
        self.horizon = low
        self.win = np.concatenate((self.win, got))
        held, self.held = self.held, []
        for pairs in held:
            self.add(pairs)
        self.on_refill()

    def close(self) -> None:
        self.closed = True
        _worker().submit(_remove, self.path)


def _reset(path) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _remove(path)


def _remove(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _append(path, data) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _take_smallest(path, n):
    """Worker thread: move the pairs with the n smallest due times (ties
    included) out of the file: (those pairs, pairs left, their least due)."""
    try:
        size = os.path.getsize(path) // 16
    except FileNotFoundError:
        return _EMPTY, 0, _INF
    best = np.empty(0, np.int64)
    for at in range(0, size, _CHUNK):
        dues = np.fromfile(path, np.int64, count=2 * min(_CHUNK, size - at), offset=16 * at)[0::2]
        best = np.concatenate((best, dues))
        if len(best) > n:
            best = np.partition(best, n - 1)[:n]
    if not len(best):
        return _EMPTY, 0, _INF
    cut = int(best.max())
    got, rest, low = [], 0, _INF
    tmp = path + ".tmp"
    with open(tmp, "wb") as out:
        for at in range(0, size, _CHUNK):
            pairs = np.fromfile(path, np.int64, count=2 * min(_CHUNK, size - at), offset=16 * at).reshape(-1, 2)
            m = pairs[:, 0] <= cut
            got.append(pairs[m])
            left = pairs[~m]
            if len(left):
                out.write(left.tobytes())
                rest += len(left)
                low = min(low, int(left[:, 0].min()))
    os.replace(tmp, path)
    return np.concatenate(got) if got else _EMPTY, rest, low


class DeliveryIndex:
    """See the module docstring. One per loaded share-partition (`sp`);
    `wake` is called when records became acquirable (came due)."""

    def __init__(self, sp, path, wake):
        self.sp, self.wake = sp, wake
        self.scan_pos = sp.start             # the log is indexed below this offset
        self.sidecar = DelaySidecar(path, self._arm)
        self.any_delayed = False             # a delay header was met: acquisition checks for them
        self.seen = 0                        # bit lv: a pylog.priority header of lv was met
        self.due: deque = deque()            # arrays of offsets that came due
        self.levels = [deque() for _ in range(TOP + 1)]   # priority -> arrays (2, n): offsets, timestamps
        self.blocked = None                  # (offset, due ms): a batch the topic delay holds back
        self.timer = None
        self.timer_at = None

    # ---- indexing ----

    def scan(self, p, now, topic_delay) -> None:
        """Index the log from scan_pos toward the high watermark, SCAN_BYTES at most."""
        budget = SCAN_BYTES
        self.scan_pos = max(self.scan_pos, p.log_start_offset, self.sp.start)
        while self.scan_pos < p.high_watermark and budget > 0:
            try:
                data = p.read(self.scan_pos, min(budget, SCAN_READ))
            except PylogError as e:
                log.warning("delivery index of %s-%d at %d: %s", p.topic, p.index, self.scan_pos, e)
                return
            if data is None:
                return
            hits, end, used = _hits(data)
            if end <= self.scan_pos:
                return
            if len(hits):
                self._index(hits[hits[:, 0] >= self.scan_pos], now, topic_delay)
            self.scan_pos = end
            budget -= used

    def _index(self, hits, now, topic_delay) -> None:
        offs, due = _due_times(hits, topic_delay)
        later = due > now
        if later.any():
            self.any_delayed = True
            self.sidecar.add(np.column_stack((due[later], offs[later])))
            self._arm()
        pr = hits[hits[:, 1] == _K_PRIORITY]
        if len(pr):
            pr = pr[~np.isin(pr[:, 0], offs[later])]   # a delayed record comes first when due anyway
            level = np.clip(pr[:, 3], 0, TOP)
            for lv in np.unique(level).tolist():
                self.seen |= 1 << lv
                sel = pr[level == lv]
                self.levels[lv].append(np.ascontiguousarray(sel[:, [0, 2]].T))

    # ---- choosing ----

    def sources(self, now, max_wait, head_ts, default=0):
        """The order to take from: 'due', then sources whose oldest record has
        waited max_wait (oldest first; None is the offset-order path, whose
        oldest record's timestamp is head_ts or None), then priorities
        9..default+1, then None, then default..0 (default's entries are the
        log path's too: after it, they are mostly dropped as taken)."""
        aged, rest = [], []
        start = self.sp.start
        for lv in range(TOP, -1, -1):
            if lv == default:
                if head_ts is not None and now - head_ts >= max_wait:
                    aged.append((head_ts, None))
                else:
                    rest.append(None)
            q = self.levels[lv]
            while q and int(q[0][0, -1]) < start:     # entries behind the start can never be taken
                q.popleft()
            if q:
                ts = int(q[0][1, 0])
                if now - ts >= max_wait:
                    aged.append((ts, lv))
                else:
                    rest.append(lv)
        aged.sort(key=lambda a: (a[0], -1 if a[1] is None else a[1]))    # a tie: the log's head, lower offsets
        return ["due"] + [lv for _, lv in aged] + rest

    def take(self, source, quota, now, topic_delay, end=None) -> list[int]:
        """Up to quota offsets of source that the window can acquire now
        (Available, or past its end), in offset order; entries that can
        never be acquired from here (done, held, below the start) dropped.
        Parked offsets of these sources (a priority below the default, met by
        the offset-order path) are unparked: their turn has come. end: the
        last stable offset of a read_committed group; entries from it on wait."""
        sp = self.sp
        out: list[int] = []
        parked: list[int] = []
        q = self.due if source == "due" else self.levels[source]
        while q and len(out) < quota:
            arr = q[0]
            offs = arr if source == "due" else arr[0]
            i = 0
            while i < len(offs) and len(out) < quota:
                o = int(offs[i])
                if end is not None and o >= end:
                    break
                if source != "due" and topic_delay and int(arr[1, i]) + topic_delay > now:
                    break
                st = sp.state_of(o)
                if o >= sp.start and (st is None or st == AVAILABLE or st == PARKED) and o < self.scan_pos:
                    out.append(o)
                    if st == PARKED:
                        parked.append(o)
                i += 1
            if i == len(offs):
                q.popleft()
            else:
                q[0] = arr[i:] if source == "due" else arr[:, i:]
                break
        out.sort()
        if parked:
            sp.unpark(runs_of(sorted(parked)))
        return out

    def ready(self, p, now, topic_delay, committed=False) -> bool:
        """Whether a waiting fetch may find something now (the purgatory's
        check); committed: below the last stable offset only."""
        sp = self.sp
        end = p.last_stable_offset if committed else p.high_watermark
        if self.due and int(self.due[0][0]) < end:
            return True
        default = p.config.get("pylog.priority.default")
        for lv in range(TOP + 1):
            if lv == default:
                continue                # the offset-order path's, checked below
            q = self.levels[lv]
            if q and int(q[0][0, 0]) < end and (not topic_delay or int(q[0][1, 0]) + topic_delay <= now):
                return True
        offset = sp.next_fetch_offset()
        if self.blocked is not None and self.blocked[0] <= offset and now < self.blocked[1]:
            return False
        return offset < min(sp.end, end) or (end > sp.end and sp.can_grow())

    def block(self, offset, due) -> None:
        self.blocked = (offset, due)
        self._arm()

    # ---- time ----

    def _arm(self) -> None:
        due = self.sidecar.next_due()
        if self.blocked is not None:
            due = self.blocked[1] if due is None else min(due, self.blocked[1])
        if due is None or (self.timer is not None and self.timer_at == due):
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = due
        self.timer = asyncio.get_running_loop().call_later(max(due - now_ms(), 0) / 1000.0, self._fire)

    def _fire(self) -> None:
        self.timer = self.timer_at = None
        now = now_ms()
        if self.blocked is not None and self.blocked[1] <= now:
            self.blocked = None
        offs = self.sidecar.pop_due(now)
        if len(offs):
            self.sp.unpark(runs_of(offs))
            self.due.append(offs)
        self._arm()
        self.wake()

    def pending(self) -> int:
        """Delayed records not due yet (for describe and the bench)."""
        return len(self.sidecar)

    def stats(self):
        """(delayed records not due yet, ms until the earliest due time or None)
        for `share-groups describe`; None when no delay was ever met here."""
        due = self.sidecar.next_due()
        if self.blocked is not None:
            due = self.blocked[1] if due is None else min(due, self.blocked[1])
        if not self.any_delayed and due is None:
            return None
        return self.pending(), None if due is None else max(due - now_ms(), 0)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.sidecar.close()


def acquire(dx: DeliveryIndex, p, member, max_records, budget, deadline, committed=False, min_one=True):
    """The share fetch's acquisition from one share-partition with delays and
    priorities: (the bytes of the batches holding acquired records, in offset
    order; the (first, last, delivery count) ranges acquired; the bytes read
    from the log at the next fetch offset). committed: the group's
    share.isolation.level is read_committed, so nothing at or past the last
    stable offset (Kafka's FetchIsolation.TXN_COMMITTED read). min_one: a
    first batch above budget is read whole (Kafka's minOneMessage); else
    nothing is read then."""
    sp = dx.sp
    now = now_ms()
    topic_delay = p.config.get("pylog.delivery.delay.ms")
    max_wait = p.config.get("pylog.priority.max.wait.ms")
    default = p.config.get("pylog.priority.default")
    dx.scan(p, now, topic_delay)
    if dx.blocked is not None and now >= dx.blocked[1]:
        dx.blocked = None
    parts: dict[int, tuple] = {}
    got: list = []
    offset = sp.next_fetch_offset()
    end = p.last_stable_offset if committed else p.high_watermark
    data, headers = None, ()
    if offset < min(end, dx.scan_pos) and (offset < sp.end or sp.can_grow()):
        try:
            if min_one or budget > 0:
                data = p.read(offset, budget, committed)
        except PylogError as e:
            log.warning("share fetch of %s-%d at %d failed: %s", p.topic, p.index, offset, e)
        if data is not None and not min_one and len(data) > budget:
            data = None     # only its first batch was read, above budget
        if data is not None:
            headers = batch_headers(data)
    head_ts = _first_timestamp(data, headers[0]) if headers else None
    quota = max_records
    for source in dx.sources(now, max_wait, head_ts, default):
        if quota <= 0:
            break
        if source is None:
            if headers:
                acquired = _acquire_in_order(dx, p, member, data, headers, quota, deadline, now, topic_delay,
                                             default, parts)
                got += acquired
                quota -= sum(l - f + 1 for f, l, _ in acquired)
            continue
        offs = dx.take(source, quota, now, topic_delay, end if committed else None)
        if not offs:
            continue
        acquired = sp.acquire_runs(member, runs_of(offs), deadline, quota)
        if acquired:
            _collect(p, acquired, parts)
            got += acquired
            quota -= sum(l - f + 1 for f, l, _ in acquired)
    read = len(data) if data is not None else 0
    if not got:
        return b"", [], read
    got.sort()
    return b"".join(_trimmed(parts[k], got) for k in sorted(parts)), got, read


_CONTROL = 0x20
_LOG_APPEND_TIME = 0x08


def _first_timestamp(data, header) -> int:
    """The timestamp of a batch's first record: its base timestamp (offset 27
    of the header), or for LogAppendTime the one every record has. Not the
    batch's max timestamp: a batch whose first records are low-priority and
    whose later ones came seconds after would make the low ones wait that
    much past the max wait."""
    if header[8] & _LOG_APPEND_TIME:
        return header[3]
    return struct.unpack_from(">q", data, header[0] + 27)[0]


def _trimmed(part, got) -> bytes:
    """A batch as the fetch sends it: nothing when none of its records was
    acquired (a batch read past on the way to the acquired ones); cut down to
    the records acquired (engine/delivery.c pl_batch_cut) when they are at
    most half of it, so a fetch cut from a big batch costs the wire, the
    client's decoding and its skipping what it was not given only for what
    it was given. A compressed batch's cut goes uncompressed (inflating once
    beats every client inflating it all), unless that is larger than the
    whole. Control batches (one record) go as they are."""
    data, base, last, count, attributes = part
    i = max(bisect_left(got, (base,)) - 1, 0)
    keep, n = [], 0
    while i < len(got) and got[i][0] <= last:
        f, l = max(got[i][0], base), min(got[i][1], last)
        if f <= l:
            keep.append((f, l))
            n += l - f + 1
        i += 1
    if not n:
        return b""
    if count <= 1 or attributes & _CONTROL or 2 * n > count:
        return data
    try:
        cut = trim_batch(data, keep)
    except (PylogError, ValueError) as e:
        # Sent as stored: the client's own checks judge it, as from Kafka.
        log.warning("share fetch: batch at offset %d not cut: %s", base, e)
        return data
    return cut if len(cut) < len(data) else data


def _acquire_in_order(dx, p, member, data, headers, quota, deadline, now, topic_delay, default, parts):
    sp = dx.sp
    batches, end = [], 0
    for i, hd in enumerate(headers):
        last = hd[1] + hd[2]
        if last >= dx.scan_pos:
            break
        if topic_delay and hd[3] + topic_delay > now:
            dx.block(hd[1], hd[3] + topic_delay)
            break
        batches.append((hd[1], last))
        end = headers[i + 1][0] if i + 1 < len(headers) else len(data)
    if not batches:
        return []
    below = dx.seen & ((1 << default) - 1)     # headers of a priority below the default were met
    if dx.any_delayed or below:
        hits, _, _ = _hits(memoryview(data)[:end])
        if dx.any_delayed:
            offs, due = _due_times(hits, topic_delay)
            later = offs[(due > now) & (offs >= sp.start)]
            if len(later):
                sp.park(runs_of(later))
        if below:
            low = np.unique(hits[(hits[:, 1] == _K_PRIORITY) & (hits[:, 3] < default), 0])
            low = low[low >= sp.start]
            if len(low):
                sp.park(runs_of(low), fresh=True)
    # Past a header above the default a fetch takes no more than asked, so
    # a large batch of default ones does not crowd out what comes next.
    acquired = sp.acquire(member, batches, quota, deadline, exact=bool(dx.seen >> (default + 1)))
    if acquired:
        last = acquired[-1][1]
        mv = memoryview(data)
        for i, hd in enumerate(headers):
            if hd[1] > last:
                break
            nxt = headers[i + 1][0] if i + 1 < len(headers) else len(data)
            if hd[1] not in parts:
                parts[hd[1]] = _part(mv[hd[0]:nxt], hd)
    return acquired


def _part(mv, hd):
    # (bytes, base offset, last offset, records count, attributes) of one batch
    return bytes(mv), hd[1], hd[1] + hd[2], hd[7], hd[8]


def _collect(p, acquired, parts) -> None:
    """The bytes of the batches holding the acquired ranges, into parts."""
    i = 0
    while i < len(acquired):
        first = acquired[i][0]
        try:
            data = p.read(first, 1)
        except PylogError:
            return
        if data is None:
            return
        mv = memoryview(data)
        headers = batch_headers(data)
        reach = first - 1
        for j, hd in enumerate(headers):
            nxt = headers[j + 1][0] if j + 1 < len(headers) else len(data)
            if hd[1] not in parts:
                parts[hd[1]] = _part(mv[hd[0]:nxt], hd)
            reach = hd[1] + hd[2]
        while i < len(acquired) and acquired[i][1] <= reach:
            i += 1
        if i < len(acquired) and acquired[i][0] <= reach:
            acquired_first = reach + 1
            # a range runs on past what was read: read again from there
            acquired = acquired[:i] + [(acquired_first, acquired[i][1], acquired[i][2])] + acquired[i + 1:]


def remove_stale(data_dir) -> None:
    """The sidecars of an earlier run go (each load rebuilds its own from the
    log), on the worker thread: before any new sidecar's first write."""
    _worker().submit(shutil.rmtree, os.path.join(data_dir, _DIR), True)
