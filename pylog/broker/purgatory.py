"""The purgatory: requests that wait on a partition, in one place.

Kafka's DelayedOperationPurgatory is the model. A delayed operation waits on
one or more partitions until its condition holds or its deadline passes:
acks=all produce (every appended offset below the high watermark), Fetch
long-poll (new data visible, for min_bytes/max_wait_ms) and coordinator writes
(the coordinator's records below the high watermark). A Partition fires a
listener where its state moves (partition.py):

  HIGH_WATERMARK  the high watermark advanced, or something that decides a
                  wait on it changed: the ISR, the leadership, the partition
                  closing;
  LOG_END         the log end offset advanced (followers long-poll on it).

Each firing re-checks the operations watching that (partition, event):
`try_complete()` is cheap (a few comparisons, no reads), so a check costs
little on the produce path; an operation that completes leaves every key it
watched. The deadline is a loop.call_at timer per operation, so a timeout
fires when it is due, not on a polling tick.

Threads: the event loop's thread only (Partition fires from the loop, where
its appends run). No locks, and no reliance on the GIL: the watcher lists are
touched only there.
"""
from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("pylog.broker")

HIGH_WATERMARK = "high_watermark"
LOG_END = "log_end"


class DelayedOperation:
    """Something that waits on partitions. Subclasses implement try_complete():
    True once the operation may be answered (the condition holds, or it can
    never hold: leadership lost, broker stopping). The answer itself is built
    by the waiter after Purgatory.wait returns. Event-loop thread only."""

    __slots__ = ("_future",)

    def try_complete(self) -> bool:
        raise NotImplementedError


class Purgatory:
    """Delayed operations keyed by (partition, event). Event-loop thread only."""

    def __init__(self):
        self._watchers: dict[tuple, dict[DelayedOperation, None]] = {}

    async def wait(self, op: DelayedOperation, partitions, events, timeout_s: float) -> bool:
        """Wait until op.try_complete() holds (True) or timeout_s passed
        (False). op is checked once before it waits; it watches each of
        partitions for each of events."""
        if op.try_complete():
            return True
        if timeout_s <= 0:
            return False
        loop = asyncio.get_running_loop()
        fut = op._future = loop.create_future()
        keys = []
        for p in partitions:
            p.purgatory = self
            for ev in events:
                key = (p, ev)
                self._watchers.setdefault(key, {})[op] = None
                keys.append(key)
        timer = loop.call_at(loop.time() + timeout_s, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            op._future = None
            for key in keys:
                ops = self._watchers.get(key)
                if ops is not None:
                    ops.pop(op, None)
                    if not ops:
                        del self._watchers[key]

    def check_and_complete(self, partition, event: str) -> int:
        """A listener fired: complete the operations watching (partition,
        event) whose condition now holds; how many completed."""
        ops = self._watchers.get((partition, event))
        if not ops:
            return 0
        n = 0
        for op in list(ops):
            fut = op._future
            if fut is None or fut.done():
                continue
            try:
                done = op.try_complete()
            except Exception:  # (a partition closed under it): the waiter reads again and answers
                log.exception("a delayed operation's check failed; completing it")
                done = True
            if done:
                fut.set_result(True)
                n += 1
        return n

    def watching(self, partition) -> int:
        """How many operations wait on partition."""
        ops = set()
        for ev in (HIGH_WATERMARK, LOG_END):
            ops.update(self._watchers.get((partition, ev), ()))
        return len(ops)

    def operations(self) -> dict[str, tuple[int, int]]:
        """Kafka's DelayedOperationPurgatory gauges: {"Produce"|"Fetch":
        (watches, operations)}. Coordinator and marker writes wait for the
        high watermark as Kafka's do in its Produce purgatory."""
        out = {}
        for ops in self._watchers.values():
            for op in ops:
                kind = "Fetch" if type(op).__name__ == "_DelayedFetch" else "Produce"
                watches, seen = out.get(kind, (0, set()))
                seen.add(op)
                out[kind] = (watches + 1, seen)
        return {k: (w, len(seen)) for k, (w, seen) in out.items()}

    def complete_all(self):
        """Shutdown: every waiting operation is re-checked now and answered
        (its try_complete sees the broker stopping)."""
        for ops in list(self._watchers.values()):
            for op in list(ops):
                fut = op._future
                if fut is not None and not fut.done():
                    fut.set_result(op.try_complete())


def _expire(fut):
    if not fut.done():
        fut.set_result(False)
