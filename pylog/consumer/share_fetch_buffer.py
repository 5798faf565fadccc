"""ShareFetchBuffer: records acquired for a ShareConsumer that no poll has
returned yet (Kafka's ShareFetchBuffer, and ShareFetchCollector's cut).

One ShareFetch answer may hold more than a poll's worth: several partitions,
several leaders answering one poll's fetches, whole log batches past
max.poll.records. poll() takes up to max.poll.records from here, extended to
the end of the log batch it stops in (share.acquire.mode=batch_optimized: a
batch is never split between polls unless it is bigger than a poll), and the
rest waits for the next poll, still acquired for this member: its
acquisition locks run meanwhile, and ending the share session (close,
unsubscribe) releases it on the broker. No ShareFetch goes while this holds
records (share_consumer.py), so it never holds more than one answer per
leader, as Kafka's client.

Thread-safety: the consumer's thread only.
"""
from __future__ import annotations

import bisect
from collections import deque

__all__ = ["Completed", "ShareFetchBuffer"]


def _offset(record):
    return record.offset


class Completed:
    """One partition's part of a ShareFetch answer, or what is left of it.

    records: the acquired records, in offset order, delivery counts set;
    ranges: the acquired (first, last, delivery count) runs they came from;
    gaps: acquired offsets with no record (acknowledged as GAP);
    batch_ends: the last offset of every log batch of the answer, sorted."""

    __slots__ = ("node", "key", "records", "ranges", "gaps", "batch_ends")

    def __init__(self, node, key, records, ranges, gaps, batch_ends):
        self.node = node
        self.key = key
        self.records = records
        self.ranges = ranges
        self.gaps = gaps
        self.batch_ends = batch_ends

    def split(self, n: int) -> "Completed | None":
        """Keep the first n records, extended to the end of the log batch the
        n-th is in (with the acquired offsets before the next record); return
        the rest, or None when nothing is left after them."""
        last = self.records[n - 1].offset
        i = bisect.bisect_left(self.batch_ends, last)
        if i < len(self.batch_ends):
            n = bisect.bisect_right(self.records, self.batch_ends[i], n, key=_offset)
        if n >= len(self.records):
            return None
        cut = self.records[n].offset          # the rest starts here
        rest = Completed(self.node, self.key, self.records[n:],
                         [(max(f, cut), l, c) for f, l, c in self.ranges if l >= cut],
                         {o for o in self.gaps if o >= cut}, self.batch_ends)
        self.records = self.records[:n]
        self.ranges = [(f, min(l, cut - 1), c) for f, l, c in self.ranges if f < cut]
        self.gaps = {o for o in self.gaps if o < cut}
        return rest


class ShareFetchBuffer:
    def __init__(self):
        self._queue: deque = deque()

    def __bool__(self) -> bool:
        return bool(self._queue)

    def __len__(self) -> int:
        """Records held (for tests and repr)."""
        return sum(len(c.records) for c in self._queue)

    def add(self, completed: Completed) -> None:
        self._queue.append(completed)

    def take(self, max_records: int) -> list:
        """The Completed parts a poll returns: up to max_records records,
        the last log batch whole; parts holding only gaps go with them."""
        out: list = []
        left = max_records
        while self._queue and left > 0:
            c = self._queue[0]
            if len(c.records) > left:
                rest = c.split(left)
                if rest is not None:
                    self._queue[0] = rest
                    out.append(c)
                    break
            self._queue.popleft()
            out.append(c)
            left -= len(c.records)
        return out

    def clear(self) -> None:
        """Forget what is held (its share session ended: released on the broker)."""
        self._queue.clear()
