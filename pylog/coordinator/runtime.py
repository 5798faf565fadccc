"""The coordinator runtime: runs a coordinator over the partitions of its
internal topic that this broker leads (Kafka's coordinator-common
CoordinatorRuntime is the model; the group coordinator runs on it, the
transaction and share coordinators will).

For each partition of the topic the runtime keeps a context:

- **load**: when this broker becomes the partition's leader (LeaderAndIsr,
  or a lone broker leading every partition) the runtime replays the
  partition from its log start into the shard (`replay`), then marks it
  active (`loaded`). A partition moving here again is replayed again.
- **unload**: when leadership goes, its timers are cancelled and the shard
  forgets the partition (`unloaded`): waiting requests get NOT_COORDINATOR.
- **events**: a request or a timer for the partition runs as one event, a
  synchronous call on the event loop's thread (the shard's methods between
  two awaits), so the events of a partition run one at a time, in the order
  they were issued, and a write's state change and its append are never split
  by another event. Appending for a partition not active here raises
  NotCoordinatorError (NOT_COORDINATOR); the shard checks `is_active` first.
- **writes**: an event appends its records with `append` (as leader); the
  request is answered only once `committed` says the high watermark covers
  them (the broker's purgatory completes that wait), so an acknowledged
  commit survives the leader's loss.
- **timers**: `schedule_timer` runs an event at its deadline (loop.call_at
  through the runtime's clock), not on a polling tick; a timer of a partition
  that unloads never fires.

The replay runs on the event loop in one go, so a partition's state is in
memory before the next request is served (no COORDINATOR_LOAD_IN_PROGRESS).
A very large partition stalls the loop meanwhile; loading in steps is left
for when compaction keeps these partitions small or it shows up.

Threads: the event loop's thread only, every method; no locks, and nothing
relies on the GIL (no other thread touches a runtime). Without a running loop
(the embedded store, one thread at a time under its own lock) only
load/unload and events run; timers and `committed` need the loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from ..errors import PylogError

log = logging.getLogger("pylog.coordinator")

NOT_COORDINATOR = 16
REQUEST_TIMED_OUT = 7


class CoordinatorShard(Protocol):
    """The state machine a runtime drives (Kafka's CoordinatorShard)."""

    def replay(self, index: int, record) -> None:
        """Apply one record of partition index, in offset order."""

    def loaded(self, index: int) -> None:
        """Partition index is replayed and active: arm its timers."""

    def unloaded(self, index: int) -> None:
        """Partition index is no longer led here: forget its state and answer
        whatever waits on it with NOT_COORDINATOR."""


class NotCoordinatorError(PylogError):
    """An event for a partition of the topic this broker does not coordinate."""

    error_code = NOT_COORDINATOR


class _Context:
    """One partition of the topic led here. Event-loop thread only."""

    __slots__ = ("index", "timers")

    def __init__(self, index: int):
        self.index = index
        self.timers: dict = {}      # key -> (asyncio.TimerHandle, deadline in the runtime's clock)


class CoordinatorRuntime:
    """Runs `shard` over the partitions of `topic` this broker leads (see the
    module docstring). Event-loop thread only."""

    def __init__(self, topic: str, writer, shard: CoordinatorShard, *, write_timeout_ms: int,
                 clock=time.monotonic):
        self.topic = topic
        self.writer = writer
        self.shard = shard
        self.write_timeout_s = write_timeout_ms / 1000.0
        # The time source of every deadline given to schedule_timer; the loop's
        # own clock may differ (uvloop), so timers convert to a delay.
        self.clock = clock
        self._contexts: dict[int, _Context] = {}

    # ---- leadership ----

    def on_become_leader(self, index: int) -> bool:
        """This broker now leads partition index: replay it and activate it.
        False when it already was active here."""
        if index in self._contexts:
            return False
        t0 = time.monotonic()
        self.shard.unloaded(index)     # leftovers of an earlier leadership, if any
        n = 0
        for rec in self.writer.read(self.topic, index):
            self.shard.replay(index, rec)
            n += 1
        self._contexts[index] = _Context(index)
        self.shard.loaded(index)
        log.log(logging.INFO if n else logging.DEBUG, "node %d: coordinator for %s-%d: %d records replayed in %.0f ms", self.writer.node_id,
                 self.topic, index, n, (time.monotonic() - t0) * 1000)
        return True

    def on_resign(self, index: int) -> bool:
        """This broker no longer leads partition index: unload it."""
        ctx = self._contexts.pop(index, None)
        if ctx is None:
            return False
        for h, _ in ctx.timers.values():
            h.cancel()
        ctx.timers.clear()
        self.shard.unloaded(index)
        log.info("node %d: no longer coordinator for %s-%d", self.writer.node_id, self.topic, index)
        return True

    def load_led_partitions(self):
        """Load every partition the writer says this broker leads now (start-up,
        and after the topic was created by a lone broker)."""
        for index in self.writer.led_partitions(self.topic):
            self.on_become_leader(index)

    def is_active(self, index: int) -> bool:
        return index in self._contexts

    def active_partitions(self) -> list[int]:
        return sorted(self._contexts)

    # ---- writes ----

    def append(self, index: int, keys: list, values: list) -> int:
        """Within an event: append records to the partition as leader; the
        offset of the last one (for `committed`)."""
        if index not in self._contexts:
            raise NotCoordinatorError(f"node {self.writer.node_id} does not coordinate {self.topic}-{index}")
        return self.writer.append(self.topic, index, keys, values)

    def committed_now(self, index: int, last_offset: int) -> int | None:
        """After an event appended up to last_offset: its outcome if already
        known (0 when the high watermark covers it: a lone replica at once),
        None while it must wait (`committed`)."""
        return self.writer.commit_outcome(self.topic, index, last_offset)

    async def committed(self, index: int, last_offset: int) -> int:
        """After an event appended up to last_offset: wait until the high
        watermark covers it; 0, NOT_COORDINATOR when the partition unloaded
        meanwhile, or the writer's error."""
        code = await self.writer.wait_committed(self.topic, index, last_offset, self.write_timeout_s)
        if code == 0 and index not in self._contexts:
            return NOT_COORDINATOR
        return code

    # ---- timers ----

    def schedule_timer(self, index: int, key, deadline: float, event, *args):
        """Run event(*args) as an event of partition index at `deadline` (the
        runtime's clock), replacing the timer of the same key. Ignored when
        the partition is not active here (it has no timers)."""
        ctx = self._contexts.get(index)
        if ctx is None:
            return
        old = ctx.timers.pop(key, None)
        if old is not None:
            old[0].cancel()
        delay = max(deadline - self.clock(), 0.0)
        loop = asyncio.get_running_loop()
        ctx.timers[key] = (loop.call_at(loop.time() + delay, self._fire, ctx, key, event, args), deadline)

    def cancel_timer(self, index: int, key):
        ctx = self._contexts.get(index)
        if ctx is not None:
            t = ctx.timers.pop(key, None)
            if t is not None:
                t[0].cancel()

    def timer_deadline(self, index: int, key) -> float | None:
        """When the timer `key` fires, in the runtime's clock; None if unset."""
        ctx = self._contexts.get(index)
        t = ctx.timers.get(key) if ctx is not None else None
        return None if t is None else t[1]

    def _fire(self, ctx: _Context, key, event, args):
        if self._contexts.get(ctx.index) is not ctx:
            return  # unloaded (and perhaps loaded again) since it was armed
        ctx.timers.pop(key, None)
        try:
            event(*args)
        except Exception:  # one timer's failure must not stop the partition's other timers
            log.exception("%s-%d: timer %r failed", self.topic, ctx.index, key)

    async def stop(self):
        """Cancel every timer; the partitions stay as they are (their logs
        close with the broker)."""
        for ctx in self._contexts.values():
            for h, _ in ctx.timers.values():
                h.cancel()
            ctx.timers.clear()
