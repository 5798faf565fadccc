"""The state of one share-partition: which offsets of a topic-partition a
share group has handed out, to whom, how often, and which are done (KIP-932;
Kafka's SharePartition and InFlightState are the model; KAFKA-NOTES §11.5).

The in-flight window runs from the share-partition start offset (SPSO,
`start`) up to `end` (SPEO + 1: the first offset never acquired). It is kept
as a sorted list of ranges that cover [start, end) without gaps, each with one
state, delivery count, holder and lock deadline, so the work is per range,
split only where an acquisition or an acknowledgement cuts one:

    Available -> Acquired                 (acquire: delivery count + 1, locked)
    Acquired  -> Acknowledged             (Accept)
    Acquired  -> Archived                 (Reject, Gap; Release/expiry at the limit)
    Acquired  -> Available                (Release, lock expiry, holder gone)
    Available <-> Parked                  (delayed delivery: not due yet / due)

With a dead-letter topic (KIP-1191; dlq.py), Reject and the limit lead to
Archiving instead: persisted as such, written to the dead-letter topic, and
only then Archived (archive()); Archiving is not final, so the SPSO waits.
Acknowledged and Archived are final; leading final ranges move the SPSO.
Parked is pylog's (delivery.py): a record whose delivery time has not come;
it is written as Available (the log says again when it is due) and does not
count against max_locks.

No I/O here: the partition manager (manager.py) reads the log, runs the
lock timers and persists `persisted_state()` through the share coordinator.
Threads: the event loop's thread only.
"""
from __future__ import annotations

from bisect import bisect_right

from ..protocol.error_codes import Errors

AVAILABLE, ACQUIRED, ACKNOWLEDGED, ARCHIVING, ARCHIVED = 0, 1, 2, 3, 4
PARKED = 8
GAP, ACCEPT, RELEASE, REJECT, RENEW = 0, 1, 2, 3, 4
# Why a range is Archiving (the dead-letter record's reason); None when read
# back from the persister, which does not keep it.
REJECTED, EXHAUSTED = "rejected", "exhausted"
_TAKEN = object()   # the member of an Archiving range whose dead-letter write is under way

__all__ = ["AVAILABLE", "ACQUIRED", "ACKNOWLEDGED", "ARCHIVING", "ARCHIVED", "PARKED", "GAP", "ACCEPT", "RELEASE",
           "REJECT", "RENEW", "REJECTED", "EXHAUSTED", "SharePartition", "AckError"]


class AckError(Exception):
    """An acknowledgement refused as a whole, with Kafka's error code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class _Range:
    __slots__ = ("first", "last", "state", "count", "member", "deadline", "why")

    def __init__(self, first, last, state, count, member=None, deadline=None, why=None):
        self.first, self.last, self.state, self.count = first, last, state, count
        self.member, self.deadline, self.why = member, deadline, why

    def copy_from(self, first, last):
        return _Range(first, last, self.state, self.count, self.member, self.deadline, self.why)

    def __repr__(self):
        return f"[{self.first}-{self.last} s{self.state} c{self.count} {self.member}]"


class SharePartition:
    """See the module docstring. `delivery_limit` is
    group.share.delivery.count.limit, `max_locks` is
    group.share.partition.max.record.locks. `dlq`: whether the group has a
    dead-letter topic now (a callable; None: never)."""

    def __init__(self, start: int, batches=(), *, delivery_limit: int, max_locks: int, state_epoch: int = 0,
                 dlq=None):
        self.start = start
        self.dlq = dlq
        self.archiving = False      # some Archiving range may be untaken (a cheap test for every write)
        self.state_epoch = state_epoch
        self.delivery_limit = delivery_limit
        self.max_locks = max_locks
        self.ranges: list[_Range] = []
        at = start
        for first, last, state, count in sorted(batches):
            if last < at:
                continue
            first = max(first, at)
            if first > at:
                self.ranges.append(_Range(at, first - 1, AVAILABLE, 0))
            # A record acquired when the state was written is available again:
            # its lock did not survive the leader that held it.
            self.ranges.append(_Range(first, last, AVAILABLE if state == ACQUIRED else state, count))
            self.archiving |= state == ARCHIVING
            at = last + 1
        self.end = at
        self._advance()

    # ---- reading ----

    def next_fetch_offset(self) -> int:
        """Where acquisition reads the log next: the first Available offset in
        the window, else the end of the window."""
        for r in self.ranges:
            if r.state == AVAILABLE:
                return r.first
        return self.end

    def can_grow(self) -> bool:
        return self.end - self.start - self.parked() < self.max_locks

    def parked(self) -> int:
        return sum(r.last - r.first + 1 for r in self.ranges if r.state == PARKED)

    def state_of(self, offset):
        """The state of offset in the window, None outside it."""
        if offset < self.start or offset >= self.end:
            return None
        return self.ranges[self._index_of(offset)].state

    def earliest_deadline(self):
        ds = [r.deadline for r in self.ranges if r.state == ACQUIRED]
        return min(ds) if ds else None

    def held_by(self, member) -> int:
        return sum(r.last - r.first + 1 for r in self.ranges if r.state == ACQUIRED and r.member == member)

    def persisted_state(self) -> tuple[int, list]:
        """(start offset, [(first, last, state, count)]) as the share
        coordinator stores it: Acquired is written as Available (a lock is
        not durable), neighbours of equal state and count merged."""
        out = []
        for r in self.ranges:
            state = AVAILABLE if r.state in (ACQUIRED, PARKED) else r.state
            if out and out[-1][2] == state and out[-1][3] == r.count and out[-1][1] + 1 == r.first:
                out[-1][1] = r.last
            else:
                out.append([r.first, r.last, state, r.count])
        return self.start, [tuple(b) for b in out]

    # ---- acquiring ----

    def acquire(self, member, batches, max_records: int, deadline, exact=False) -> list[tuple[int, int, int]]:
        """Acquire for member from the log batches read at next_fetch_offset()
        ([(base_offset, last_offset)] in order), whole batches until more than
        max_records are taken (exact: no more than max_records, cutting a
        batch; delivery.py's choice when priorities are in play, so a fetch
        does not take a large batch of low ones): the (first, last, delivery
        count) ranges acquired, in offset order."""
        got: list[tuple[int, int, int]] = []
        taken = 0
        for base, last in batches:
            if taken >= max_records:
                break
            lo = max(base, self.start)
            if last < lo:
                continue
            # The part of the batch inside the window: its Available ranges.
            if lo < self.end:
                hi = min(last, self.end - 1)
                self._split_at(lo)
                self._split_at(hi + 1)
                avail = [r for r in self._ranges_in(lo, hi) if r.state == AVAILABLE]
                throttled = next((r.count for r in avail if r.count >= self._throttle_from()), None)
                if throttled is not None:
                    # Records failing again and again: fewer at a time, so
                    # one poison record does not take its neighbours to the
                    # limit with it. Nothing else in this fetch.
                    if not taken:
                        got += self._acquire_throttled(member, avail, last - base + 1, throttled, deadline)
                    break
                for r in avail:
                    if exact and taken >= max_records:
                        break
                    if exact and r.last - r.first + 1 > max_records - taken:
                        self._split_at(r.first + max_records - taken)
                    r.state, r.count, r.member, r.deadline = ACQUIRED, r.count + 1, member, deadline
                    got.append((r.first, r.last, r.count))
                    taken += r.last - r.first + 1
            # The part past the window: new records, while the window may grow.
            if last >= self.end and self.can_grow() and not (exact and taken >= max_records):
                first = max(lo, self.end)
                if exact:
                    last = min(last, first + max_records - taken - 1)
                if first > self.end:   # offsets the log no longer has (compacted): nothing to hand out
                    self.ranges.append(_Range(self.end, first - 1, ARCHIVED, 0))
                self.ranges.append(_Range(first, last, ACQUIRED, 1, member, deadline))
                self.end = last + 1
                got.append((first, last, 1))
                taken += last - first + 1
        self._merge()
        return _coalesce(got)

    def _throttle_from(self) -> int:
        # Kafka's throttleRecordsDeliveryLimit: half the limit, at least 2.
        return max(2, -(-self.delivery_limit // 2))

    def _acquire_throttled(self, member, avail, batch_size, count, deadline) -> list:
        """Kafka's isolation near the delivery limit: at most batch_size
        halved once per delivery past the throttle point, and a record on its
        last attempt alone."""
        cap = max(1, batch_size >> (count - self._throttle_from() + 1))
        got, n = [], 0
        for r in avail:
            if n >= cap:
                break
            last_try = self.delivery_limit > 2 and r.count + 1 == self.delivery_limit
            if last_try and n:
                break
            k = 1 if last_try else min(cap - n, r.last - r.first + 1)
            self._split_at(r.first + k)
            r.state, r.count, r.member, r.deadline = ACQUIRED, r.count + 1, member, deadline
            got.append((r.first, r.last, r.count))
            n += k
            if last_try:
                break
        return got

    # ---- delayed and prioritized records (delivery.py) ----

    def park(self, runs, fresh=False) -> None:
        """Make the Available offsets of runs [(first, last)] (ascending)
        Parked; runs past the window extend it (the gap before them Available,
        never delivered). fresh: only offsets never delivered (a released
        record comes back in offset order, whatever its priority)."""
        for first, last in runs:
            self._mark(first, last, AVAILABLE, PARKED, fresh)
        self._merge()

    def unpark(self, runs) -> None:
        for first, last in runs:
            if last >= self.start and first < self.end:
                self._mark(max(first, self.start), min(last, self.end - 1), PARKED, AVAILABLE)
        self._merge()

    def acquire_runs(self, member, runs, deadline, max_records) -> list[tuple[int, int, int]]:
        """Acquire for member the Available offsets of runs [(first, last)]
        (ascending), extending the window past its end when a run lies there
        (a priority record may be far ahead of the window; max_locks bounds the
        window's growth in offset order only). Records near the delivery limit
        are left to acquire(), which isolates them."""
        got, taken = [], 0
        for first, last in runs:
            if taken >= max_records or last < self.start:
                continue
            first = max(first, self.start)
            if last >= self.end:
                self._grow(last + 1)
            self._split_at(first)
            self._split_at(last + 1)
            for r in list(self._ranges_in(first, last)):
                if r.state != AVAILABLE or r.count >= self._throttle_from() or taken >= max_records:
                    continue
                if r.last - r.first + 1 > max_records - taken:
                    self._split_at(r.first + max_records - taken)
                r.state, r.count, r.member, r.deadline = ACQUIRED, r.count + 1, member, deadline
                got.append((r.first, r.last, r.count))
                taken += r.last - r.first + 1
        self._merge()
        return _coalesce(sorted(got))

    def _grow(self, end) -> None:
        if end > self.end:
            self.ranges.append(_Range(self.end, end - 1, AVAILABLE, 0))
            self.end = end

    def _mark(self, first, last, old, new, fresh=False) -> None:
        if last < self.start:
            return
        first = max(first, self.start)
        self._grow(last + 1)
        self._split_at(first)
        self._split_at(last + 1)
        for r in self._ranges_in(first, last):
            if r.state == old and not (fresh and r.count):
                r.state = new

    # ---- acknowledging ----

    def acknowledge(self, member, batches) -> None:
        """Apply [(first, last, [types])] of member, all or nothing: AckError
        (INVALID_RECORD_STATE) when an offset is not Acquired by member."""
        work = []
        for first, last, types in batches:
            if len(types) == 1:
                work.append((first, last, types[0]))
            else:
                for i, t in enumerate(types):
                    o = first + i
                    if work and work[-1][2] == t and work[-1][1] == o - 1:
                        work[-1] = (work[-1][0], o, t)
                    else:
                        work.append((o, o, t))
        for first, last, _t in work:
            if first < self.start or last >= self.end:
                raise AckError(Errors.INVALID_RECORD_STATE,
                               f"offsets {first}-{last} are outside the in-flight window {self.start}-{self.end - 1}")
            for r in self._ranges_in(first, last):
                if r.state != ACQUIRED or r.member != member:
                    raise AckError(Errors.INVALID_RECORD_STATE,
                                   f"offsets {max(first, r.first)}-{min(last, r.last)} are not acquired by this member")
        for first, last, t in work:
            self._split_at(first)
            self._split_at(last + 1)
            for r in self._ranges_in(first, last):
                if t == ACCEPT:
                    r.state = ACKNOWLEDGED
                elif t == RELEASE:
                    r.state = self._failed(r, EXHAUSTED) if r.count >= self.delivery_limit else AVAILABLE
                elif t == REJECT:
                    r.state = self._failed(r, REJECTED)
                else:   # GAP: no record there to dead-letter
                    r.state = ARCHIVED
                r.member = r.deadline = None
        self._advance()

    def _failed(self, r, why) -> int:
        # Kafka's recordStateWithDlq / tryUpdateState: Archiving while the
        # group has a dead-letter topic.
        if self.dlq is not None and self.dlq():
            r.why = why
            self.archiving = True
            return ARCHIVING
        return ARCHIVED

    def renew(self, member, first, last, deadline) -> None:
        for r in self._ranges_in(first, last):
            if r.state != ACQUIRED or r.member != member:
                raise AckError(Errors.INVALID_RECORD_STATE, f"offsets {first}-{last} are not acquired by this member")
        for r in self._ranges_in(first, last):
            r.deadline = deadline

    # ---- locks ----

    def expire(self, now) -> int:
        """Release the ranges whose lock ran out by now; how many offsets."""
        return self._release(lambda r: r.deadline is not None and r.deadline <= now)

    def release_member(self, member) -> int:
        """Release everything member holds (its share session closed)."""
        return self._release(lambda r: r.member == member)

    def _release(self, which) -> int:
        n = 0
        for r in self.ranges:
            if r.state == ACQUIRED and which(r):
                r.state = self._failed(r, EXHAUSTED) if r.count >= self.delivery_limit else AVAILABLE
                r.member = r.deadline = None
                n += r.last - r.first + 1
        if n:
            self._advance()
        return n

    # ---- dead letters ----

    def take_archiving(self) -> list[tuple[int, int, int, str | None]]:
        """The Archiving ranges no dead-letter write has taken yet, as
        (first, last, delivery count, why), now taken."""
        out = []
        self.archiving = False
        for r in self.ranges:
            if r.state == ARCHIVING and r.member is None:
                r.member = _TAKEN
                out.append((r.first, r.last, r.count, r.why))
        return out

    def untake(self, first, last) -> None:
        """A dead-letter write of first-last will be tried again: the ranges go back."""
        for r in self._ranges_in(first, last):
            if r.state == ARCHIVING:
                r.member = None
                self.archiving = True
        self._merge()

    def archive(self, first, last) -> None:
        """first-last went to the dead-letter topic (or could not): Archived."""
        self._split_at(first)
        self._split_at(last + 1)
        for r in self._ranges_in(first, last):
            if r.state == ARCHIVING:
                r.state, r.member, r.why = ARCHIVED, None, None
        self._advance()

    def archive_acquired(self, runs) -> None:
        """Runs [(first, last)] (ascending) a read_committed fetch has just
        acquired are records of aborted transactions: Archived, never
        delivered (Kafka archives them the same way right after acquisition)."""
        for first, last in runs:
            if last < self.start or first >= self.end:
                continue
            first, last = max(first, self.start), min(last, self.end - 1)
            self._split_at(first)
            self._split_at(last + 1)
            for r in self._ranges_in(first, last):
                if r.state == ACQUIRED:
                    r.state, r.member, r.deadline = ARCHIVED, None, None
        self._advance()

    def archive_below(self, offset: int) -> bool:
        """Offsets below the log start are gone: archived, and the SPSO moves
        past them. True when anything changed."""
        if offset <= self.start:
            return False
        if offset >= self.end:
            self.ranges = []
            self.start = self.end = offset
            return True
        self._split_at(offset)
        for r in self._ranges_in(self.start, offset - 1):
            r.state, r.member, r.deadline, r.why = ARCHIVED, None, None, None
        self._advance()
        return True

    # ---- ranges ----

    def _index_of(self, offset) -> int:
        return bisect_right(self.ranges, offset, key=_first) - 1

    def _split_at(self, offset) -> None:
        """Make offset the first of a range (when inside the window)."""
        if offset <= self.start or offset >= self.end:
            return
        i = self._index_of(offset)
        r = self.ranges[i]
        if r.first == offset:
            return
        self.ranges.insert(i + 1, r.copy_from(offset, r.last))
        r.last = offset - 1

    def _ranges_in(self, first, last):
        i = max(self._index_of(first), 0)
        while i < len(self.ranges) and self.ranges[i].first <= last:
            r = self.ranges[i]
            if r.last >= first:
                yield r
            i += 1

    def _advance(self) -> None:
        i = 0
        while i < len(self.ranges) and self.ranges[i].state in (ACKNOWLEDGED, ARCHIVED):
            i += 1
        if i:
            self.start = self.ranges[i - 1].last + 1
            del self.ranges[:i]
        self._merge()

    def _merge(self) -> None:
        out: list[_Range] = []
        for r in self.ranges:
            p = out[-1] if out else None
            if (p is not None and r.state != ACQUIRED and p.state == r.state and p.count == r.count
                    and p.member is r.member and p.why == r.why and p.last + 1 == r.first):
                p.last = r.last
            else:
                out.append(r)
        self.ranges = out


def _first(r):
    return r.first


def _coalesce(got):
    out = []
    for first, last, count in got:
        if out and out[-1][2] == count and out[-1][1] + 1 == first:
            out[-1] = (out[-1][0], last, count)
        else:
            out.append((first, last, count))
    return out
