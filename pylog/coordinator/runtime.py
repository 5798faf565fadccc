"""The coordinator runtime: runs a coordinator over the partitions of its
internal topic that this broker leads (Kafka's coordinator-common
CoordinatorRuntime is the model; the group coordinator runs on it, the
transaction and share coordinators will).

For each partition of the topic the runtime keeps a context:

- **load**: when this broker becomes the partition's leader (LeaderAndIsr,
  or a lone broker leading every partition) the runtime replays the
  partition from its log start into the shard (`replay`), then marks it
  active (`loaded`). A partition moving here again is replayed again. The
  replay runs in slices of LOAD_SLICE records: the first at once (a small
  partition is active before on_become_leader returns), the rest in a task
  that yields to the loop between slices, so a big partition does not stall
  the broker's other connections. Meanwhile the partition is *loading*:
  `partition_error` says COORDINATOR_LOAD_IN_PROGRESS (retriable), as
  Kafka's runtime answers for a context in its LOADING state.
- **unload**: when leadership goes (or a load fails), its timers are
  cancelled and the shard forgets the partition (`unloaded`): waiting
  requests get NOT_COORDINATOR. An unload during a load ends the load.
- **events**: `schedule(index, event, *args)` runs a request or a timer of a
  partition as one event on that partition's queue. Events of one partition
  run one at a time, in the order they were scheduled; events of different
  partitions are independent. An event may be a coroutine function: it is
  driven at once up to its first suspension (its state change is applied
  then, before the next event of the partition starts), and what it awaits
  afterwards (the rebalance, the high watermark covering its write) only
  defers its answer, as Kafka applies a write's records at once and
  completes the response when they are committed. So a Heartbeat pipelined
  behind a JoinGroup on one connection sees the member the JoinGroup added.
- **writes**: an event appends its records with `append` (as leader); the
  request is answered only once `committed` says the high watermark covers
  them (the broker's purgatory completes that wait), so an acknowledged
  commit survives the leader's loss.
- **a failed write**, as Kafka's runtime: only an append that fails undoes
  the event's change (nothing of it is in the log). A write appended but not
  committed within the write timeout is answered with the timeout's error
  and keeps its change: its records are in the log, commit when the
  followers catch up (or go with the leadership, and the next leader
  reloads from its log), and the partition's last written offset stays
  ahead of the committed one until they do. So the state always is what the
  log replays to.
- **write operations that write nothing**: an event scheduled with `failed`
  (a request Kafka runs as a write operation: a heartbeat, a join, a
  commit) that appends no records answered from state earlier events
  changed; while the partition's last appended offset is not committed its
  answer waits for it, and gets failed(the error) when that wait fails
  (timed out, leadership lost), as Kafka's CoordinatorWriteEvent with empty
  records. Nothing pending: answered at once. An event returns
  `Refused(answer)` for what Kafka's operation throws (a request refused by
  its checks): answered at once. With `own_answer` (JoinGroup, SyncGroup,
  whose operations Kafka hands a response future) an answer the event gives
  goes when given; only while none is given does the pending write's
  failure answer failed(error). Events without `failed` are reads and
  never wait.
- **timers**: `schedule_timer` runs an event at its deadline (loop.call_at
  through the runtime's clock), not on a polling tick; a timer of a partition
  that unloads never fires. A timer's event goes through the partition's
  queue like a request's.

Threads: the event loop's thread only, every method; no locks, and nothing
relies on the GIL (no other thread touches a runtime; the embedded store is
a broker core on its own loop thread, so it runs the runtime there too).
Without a running loop (a writer whose loads_in_steps is False) only
load/unload and synchronous events run, and a load runs to its end at once;
timers and `committed` need the loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Protocol

from ..errors import PylogError
from ..protocol.error_codes import Errors

log = logging.getLogger("pylog.coordinator")

# Records replayed per slice of a load before yielding to the loop: a few
# milliseconds of decoding, so other connections wait at most that long.
LOAD_SLICE = 2000

LOADING, ACTIVE = "loading", "active"


class CoordinatorShard(Protocol):
    """The state machine a runtime drives (Kafka's CoordinatorShard)."""

    def replay(self, index: int, record) -> None:
        """Apply one record of partition index, in offset order."""

    def loaded(self, index: int) -> None:
        """Partition index is replayed and active: arm its timers."""

    def unloaded(self, index: int) -> None:
        """Partition index is no longer led here: forget its state and answer
        whatever waits on it with NOT_COORDINATOR."""


class Refused:
    """What a write operation answers when its checks refuse the request
    (Kafka's operation throws, and the runtime completes it with the error at
    once): given at once, even behind a pending write."""

    __slots__ = ("answer",)

    def __init__(self, answer):
        self.answer = answer


def operation_error(code: int) -> int:
    """A write operation's failure as its answer's error code (Kafka's
    CoordinatorOperationExceptionHelper.handleOperationException).
    NOT_ENOUGH_REPLICAS_AFTER_APPEND (pylog's high watermark passed with an
    ISR below min.insync.replicas, where Kafka's holds back until the write
    times out) is answered as that timeout."""
    if code == Errors.NETWORK_EXCEPTION:
        return Errors.COORDINATOR_LOAD_IN_PROGRESS
    if code in (Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.NOT_ENOUGH_REPLICAS, Errors.REQUEST_TIMED_OUT,
                Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND):
        return Errors.COORDINATOR_NOT_AVAILABLE
    if code in (Errors.NOT_LEADER_OR_FOLLOWER, Errors.KAFKA_STORAGE_ERROR):
        return Errors.NOT_COORDINATOR
    if code in (Errors.MESSAGE_TOO_LARGE, Errors.RECORD_LIST_TOO_LARGE, Errors.INVALID_FETCH_SIZE):
        return Errors.UNKNOWN_SERVER_ERROR
    return code


class NotCoordinatorError(PylogError):
    """An event for a partition of the topic this broker does not coordinate."""

    error_code = Errors.NOT_COORDINATOR


class _Context:
    """One partition of the topic led here. Event-loop thread only."""

    __slots__ = ("index", "timers", "state", "load_task", "records", "appends", "last_written")

    def __init__(self, index: int):
        self.index = index
        self.appends = 0            # appends so far: tells whether an event wrote
        self.last_written = -1      # offset of the last record appended; -1 once known committed
        self.timers: dict = {}      # key -> (asyncio.TimerHandle, deadline in the runtime's clock)
        self.state = LOADING
        self.load_task = None
        self.records = None         # the log scan a load is part way through

    def end_load(self):
        """Stop a load part way: cancel its task and close its log scan now
        (a suspended scan holds a record view, which would keep the log from
        closing; a task cancelled before its first step never reaches its
        own cleanup)."""
        if self.load_task is not None:
            self.load_task.cancel()
            self.load_task = None
        records, self.records = self.records, None
        if records is not None and hasattr(records, "close"):
            records.close()


class _EventQueue:
    """The events of one partition waiting to run, and whether one runs now.
    Event-loop thread only."""

    __slots__ = ("pending", "running")

    def __init__(self):
        self.pending: deque = deque()
        self.running = False


class _Resume:
    """Awaitable that carries on driving a coroutine the runtime started by
    hand (`_run_event`), from the future it suspended on: the coroutine's
    first step ran inside its event, the rest runs in the awaiting task."""

    __slots__ = ("coro", "waiting")

    def __init__(self, coro, waiting):
        self.coro, self.waiting = coro, waiting

    def __await__(self):
        coro, waiting = self.coro, self.waiting
        self.coro = self.waiting = None
        while True:
            try:
                value = yield waiting
            except BaseException as e:  # cancellation (or a throw) goes into the coroutine
                try:
                    waiting = coro.throw(e)
                except StopIteration as done:
                    return done.value
                continue
            try:
                waiting = coro.send(value)
            except StopIteration as done:
                return done.value


async def _finish(resume: _Resume):
    return await resume


class CoordinatorRuntime:
    """Runs `shard` over the partitions of `topic` this broker leads (see the
    module docstring). Event-loop thread only."""

    def __init__(self, topic: str, writer, shard: CoordinatorShard, *, write_timeout_ms: int,
                 clock=time.monotonic, acks_all=False):
        self.topic = topic
        # A write is committed once the high watermark passes it (Kafka's
        # runtime listens to the high watermark alone), even with an ISR
        # below min.insync.replicas; acks_all: as an acks=all produce, which
        # is then told NOT_ENOUGH_REPLICAS_AFTER_APPEND (Kafka's transaction
        # coordinator writes that way, outside the runtime).
        self._after_append_error = Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND if acks_all else 0
        self.writer = writer
        self.shard = shard
        self.write_timeout_s = write_timeout_ms / 1000.0
        # The time source of every deadline given to schedule_timer; the loop's
        # own clock may differ (uvloop), so timers convert to a delay.
        self.clock = clock
        self._contexts: dict[int, _Context] = {}
        self._queues: dict[int, _EventQueue] = {}
        # Tests only: an async callable awaited (with the partition index)
        # before each slice of a load after the first, to hold a load part way.
        self.before_load_slice = None

    # ---- leadership ----

    def on_become_leader(self, index: int) -> bool:
        """This broker now leads partition index: replay it and activate it
        (see the module docstring: at once when it is small, else in slices
        while it answers COORDINATOR_LOAD_IN_PROGRESS). False when it already
        was loaded or loading here."""
        if index in self._contexts:
            return False
        ctx = self._contexts[index] = _Context(index)
        self.shard.unloaded(index)     # leftovers of an earlier leadership, if any
        t0 = time.monotonic()
        try:
            records = ctx.records = iter(self.writer.read(self.topic, index))
            n, more = self._replay_slice(index, records)
        except Exception as e:
            self._load_failed(ctx, e)
            return True
        if not more:
            self._activate(ctx, n, t0)
        elif not self.writer.loads_in_steps or _running_loop() is None:
            # No loop of ours to yield to (a writer that does not load in
            # steps, or no running loop): the rest at once.
            try:
                while more:
                    k, more = self._replay_slice(index, records)
                    n += k
            except Exception as e:
                self._load_failed(ctx, e)
                return True
            self._activate(ctx, n, t0)
        else:
            ctx.load_task = asyncio.ensure_future(self._load_rest(ctx, records, n, t0))
        return True

    def _replay_slice(self, index, records) -> tuple[int, bool]:
        """Replay up to LOAD_SLICE records; (how many, whether more remain)."""
        replay = self.shard.replay
        n = 0
        for rec in records:
            replay(index, rec)
            n += 1
            if n == LOAD_SLICE:
                return n, True
        return n, False

    async def _load_rest(self, ctx: _Context, records, n: int, t0: float):
        more = True
        try:
            while more:
                await asyncio.sleep(0)     # the other connections' turn
                if self.before_load_slice is not None:
                    await self.before_load_slice(ctx.index)
                if self._contexts.get(ctx.index) is not ctx:
                    return                 # unloaded meanwhile: on_resign cleaned up
                k, more = self._replay_slice(ctx.index, records)
                n += k
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if self._contexts.get(ctx.index) is ctx:
                self._load_failed(ctx, e)
            return
        finally:
            ctx.load_task = None
            ctx.end_load()
        if self._contexts.get(ctx.index) is ctx:
            self._activate(ctx, n, t0)

    def _activate(self, ctx: _Context, n: int, t0: float):
        ctx.records = None
        ctx.state = ACTIVE
        self.shard.loaded(ctx.index)
        log.log(logging.INFO if n else logging.DEBUG, "node %d: coordinator for %s-%d: %d records replayed in %.0f ms",
                self.writer.node_id, self.topic, ctx.index, n, (time.monotonic() - t0) * 1000)

    def _load_failed(self, ctx: _Context, e: Exception):
        # As Kafka's FAILED context: requests get NOT_COORDINATOR; a later
        # leadership change loads it again.
        log.error("node %d: loading %s-%d failed: %s", self.writer.node_id, self.topic, ctx.index, e)
        ctx.end_load()
        self._contexts.pop(ctx.index, None)
        self.shard.unloaded(ctx.index)

    def on_resign(self, index: int) -> bool:
        """This broker no longer leads partition index: unload it."""
        ctx = self._contexts.pop(index, None)
        if ctx is None:
            return False
        ctx.end_load()
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
        ctx = self._contexts.get(index)
        return ctx is not None and ctx.state is ACTIVE

    def partition_error(self, index: int) -> int:
        """0 when partition index is active here, COORDINATOR_LOAD_IN_PROGRESS
        while it loads, NOT_COORDINATOR when it is not led here."""
        ctx = self._contexts.get(index)
        if ctx is None:
            return Errors.NOT_COORDINATOR
        return 0 if ctx.state is ACTIVE else Errors.COORDINATOR_LOAD_IN_PROGRESS

    def active_partitions(self) -> list[int]:
        return sorted(i for i, ctx in self._contexts.items() if ctx.state is ACTIVE)

    def loading_partitions(self) -> list[int]:
        return sorted(i for i, ctx in self._contexts.items() if ctx.state is LOADING)

    # ---- events ----

    def schedule(self, index: int, event, *args, failed=None, own_answer=False):
        """Run event(*args) as an event of partition index (module
        docstring). Its result when it completes at once; a coroutine giving
        its result when it suspended (or when it had to queue behind an event
        of the same partition that scheduled it, or when it wrote nothing and
        must wait for an earlier write: `failed`). An exception the event
        raises before suspending propagates. own_answer: see the module
        docstring (JoinGroup, SyncGroup)."""
        q = self._queues.get(index)
        if q is None:
            q = self._queues[index] = _EventQueue()
        if q.running:
            # Scheduled from inside one of this partition's events: it runs
            # when that one has applied its state change.
            fut = asyncio.get_running_loop().create_future()
            q.pending.append((event, args, (failed, own_answer), fut))
            return _await_future(fut)
        q.running = True
        try:
            return self._run(index, event, args, (failed, own_answer))
        finally:
            # Also when the event raised: what it scheduled before raising
            # runs now, in order, not behind some later event (or never).
            try:
                self._drain(index, q)
            finally:
                q.running = False

    def _drain(self, index: int, q: _EventQueue):
        """Run the events scheduled from inside the event that just ran, and
        those they schedule, each completing its caller's future."""
        while q.pending:
            ev, a, f, fut = q.pending.popleft()
            try:
                r = self._run(index, ev, a, f)
            except Exception as e:
                fut.set_exception(e)
                continue
            if asyncio.iscoroutine(r):
                _chain(r, fut)
            else:
                fut.set_result(r)

    def _run(self, index: int, event, args, kind):
        """_run_event, and for a write operation (failed given) that appended
        nothing, its answer held behind the partition's pending write."""
        failed, own_answer = kind
        ctx = self._contexts.get(index)
        if failed is None:
            return _run_event(event, args)
        appends = ctx.appends if ctx is not None else 0
        out = _run_event(event, args)
        if isinstance(out, Refused):
            return out.answer
        if ctx is None or ctx.appends != appends or ctx.last_written < 0 or self._contexts.get(index) is not ctx:
            return out
        if own_answer and not asyncio.iscoroutine(out):
            return out       # given by the event itself: it goes now
        last = ctx.last_written
        code = self._outcome(self.writer.commit_outcome(self.topic, index, last))
        if code == 0:
            self._settled(index, last)   # committed: later events no longer rest on it
            return out
        if own_answer:
            return self._first_of(index, last, out, failed, code)
        if code is None or asyncio.iscoroutine(out):
            return self._after_write(index, last, out, failed)
        return failed(code)

    async def _after_write(self, index: int, last: int, out, failed):
        # A suspended event still runs to its end (what it awaits may change
        # state, as a join waiting for its rebalance); only its answer goes.
        result = (await out) if asyncio.iscoroutine(out) else out
        if isinstance(result, Refused):
            return result.answer
        code = await self.committed(index, last)
        return failed(code) if code else result

    async def _first_of(self, index: int, last: int, out, failed, code):
        """An own_answer event still waiting for its answer: the answer when
        it comes first, failed(code) when the pending write fails first (the
        event still runs to its end; its late answer goes nowhere, as Kafka
        completes a response future only once)."""
        answer = asyncio.ensure_future(out)
        if code is None:
            waiting = asyncio.ensure_future(self.committed(index, last))
            await asyncio.wait((answer, waiting), return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                waiting.cancel()
            code = 0 if answer.done() else waiting.result()
        if code == 0 or answer.done():
            result = await answer
            return result.answer if isinstance(result, Refused) else result
        answer.add_done_callback(_retrieved)
        return failed(code)

    # ---- writes ----

    def append(self, index: int, keys: list, values: list) -> int:
        """Within an event: append records to the partition as leader; the
        offset of the last one (for `committed`)."""
        return self.append_with(index, self.writer.append, self.topic, index, keys, values)

    def append_with(self, index: int, write, *args) -> int:
        """Within an event: write(*args) appends to the partition as leader
        in another form (a transactional batch, a transaction marker) and
        gives its last offset; counted as `append` is, so later events rest
        on it too (Kafka's runtime moves its last written offset for those
        as well)."""
        if not self.is_active(index):
            raise NotCoordinatorError(f"node {self.writer.node_id} does not coordinate {self.topic}-{index}")
        ctx = self._contexts[index]
        # Counted before it can fail: an event that tried to write answers
        # with its own outcome, never a read's.
        ctx.appends += 1
        last = ctx.last_written = write(*args)
        return last

    def _outcome(self, code):
        return self._after_append_error if code == Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND else code

    def _settled(self, index: int, offset: int):
        """offset is committed: events no longer rest on it. (A write that
        timed out is not settled: its records stay applied and in the log,
        and the events after it still wait for them, as Kafka's runtime
        keeps its last written offset ahead of the committed one.)"""
        ctx = self._contexts.get(index)
        if ctx is not None and ctx.last_written == offset:
            ctx.last_written = -1

    def committed_now(self, index: int, last_offset: int) -> int | None:
        """After an event appended up to last_offset: its outcome if already
        known (0 when the high watermark covers it: a lone replica at once),
        None while it must wait (`committed`)."""
        code = self._outcome(self.writer.commit_outcome(self.topic, index, last_offset))
        if code == 0:
            self._settled(index, last_offset)
        return code

    async def committed(self, index: int, last_offset: int) -> int:
        """After an event appended up to last_offset: wait until the high
        watermark covers it; 0, NOT_COORDINATOR when the partition unloaded
        meanwhile, or the writer's error."""
        code = self._outcome(await self.writer.wait_committed(self.topic, index, last_offset, self.write_timeout_s))
        if code == 0 and index not in self._contexts:
            return Errors.NOT_COORDINATOR
        if code == 0:
            self._settled(index, last_offset)
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
            out = self.schedule(ctx.index, event, *args)
        except Exception:  # one timer's failure must not stop the partition's other timers
            log.exception("%s-%d: timer %r failed", self.topic, ctx.index, key)
            return
        if asyncio.iscoroutine(out):
            asyncio.ensure_future(out)

    async def stop(self):
        """Cancel every timer and load; the partitions stay as they are (their
        logs close with the broker)."""
        loads = [ctx.load_task for ctx in self._contexts.values() if ctx.load_task is not None]
        for ctx in self._contexts.values():
            ctx.end_load()       # their log scans end before the logs close
        await asyncio.gather(*loads, return_exceptions=True)
        for ctx in self._contexts.values():
            for h, _ in ctx.timers.values():
                h.cancel()
            ctx.timers.clear()


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _run_event(event, args):
    """Call event(*args); a coroutine it returns is driven by hand up to its
    first suspension (Python 3.11 has no eager tasks), so its state change is
    applied now. The result, or a coroutine that finishes it."""
    out = event(*args)
    if not asyncio.iscoroutine(out):
        return out
    try:
        waiting = out.send(None)
    except StopIteration as done:
        return done.value
    return _finish(_Resume(out, waiting))


def _retrieved(task):
    if not task.cancelled():
        task.exception()   # its outcome is no one's: retrieved so asyncio does not report it


async def _await_future(fut):
    return await fut


def _chain(coro, fut):
    """Finish coro in a task and hand its outcome to fut."""
    def done(t):
        if fut.done():
            return
        if t.cancelled():
            fut.cancel()
        elif t.exception() is not None:
            fut.set_exception(t.exception())
        else:
            fut.set_result(t.result())
    asyncio.ensure_future(coro).add_done_callback(done)
