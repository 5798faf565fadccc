"""The producer's background thread: drains the accumulator, writes batches
out, completes them, retries what may be retried.

One loop serves both modes; only the transport differs:

    NetworkTransport   Produce requests to each partition's leader, pipelined
                       up to max_in_flight per connection, answers read as
                       their sockets become readable
    EmbeddedTransport  appends to a local directory through pylog.embedded's
                       LocalStore, in this thread (no sockets)

Invariants
----------
- Order: at most one batch of a partition is in flight at a time, and a
  failed batch that will be retried goes back to the *head* of its
  partition's queue, so batches reach the log in send order even across
  retries (max.in.flight.requests.per.connection=1 per partition, as Kafka's
  ordering guarantee without idempotence needs).
- Idempotence: a batch gets its producer id, epoch and base_sequence the
  first time it is built; a retry resends the identical bytes, so the
  broker recognises a batch it already appended and answers with its
  original offset (no duplicate).
- Every batch taken out of the accumulator ends exactly once: complete()
  with its base offset, or fail() with an exception (retries exhausted,
  delivery_timeout_ms passed, a non-retriable error, or close() aborting),
  then release() gives its bytes back to buffer_memory.

Thread-safety: the sender thread is the only user of the transport and of
its queues. The accumulator is shared with user threads calling send();
its methods are GIL-atomic (see bindings/producer.pyx). wakeup() may be
called from any thread.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time

from .. import errors
from ..client.errors import RETRIABLE, ConnectionClosedError, error_for
from ..client.wire import wait_readable
from ..protocol.error_codes import Errors
from . import transactions as _txn

log = logging.getLogger("pylog.producer")

__all__ = ["Sender"]

# Errors after which the leader may have moved: refresh metadata first.
_METADATA_ERRORS = frozenset({Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.LEADER_NOT_AVAILABLE,
                              Errors.NOT_LEADER_OR_FOLLOWER})
_DUPLICATE_SEQUENCE = 46


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Sender(threading.Thread):
    """Drains `accumulator` into `transport` until close()."""

    def __init__(self, accumulator, transport, *, linger_ms: int, retries: int,
                 retry_backoff_ms: int, delivery_timeout_ms: int, idempotent: bool,
                 on_progress=None, name: str = "pylog-producer-sender", txn=None, metrics=None):
        super().__init__(name=name, daemon=True)
        self.acc = accumulator
        self.transport = transport
        self.linger_ms = linger_ms
        self.retries = retries
        self.retry_backoff_ms = retry_backoff_ms
        self.delivery_timeout_ms = delivery_timeout_ms
        self.idempotent = idempotent
        self.txn = txn   # a TransactionManager for a transactional producer, else None
        self.metrics = metrics   # a pylog.metrics.clients.ProducerMetrics, or None
        self._on_progress = on_progress
        self._queues: dict[tuple[str, int], collections.deque] = {}
        self._in_flight: set[tuple[str, int]] = set()
        self._not_before: dict[tuple[str, int], int] = {}   # retry backoff per partition
        self._sequences: dict[tuple[str, int], int] = {}
        self._producer_id = -1
        self._producer_epoch = -1
        self._rpipe, self._wpipe = os.pipe()
        os.set_blocking(self._wpipe, False)
        self._signalled = False
        self._flushing = 0
        self._closing = False
        self._abort: BaseException | None = None
        self._done = threading.Condition()
        self.fatal: BaseException | None = None

    # ---- called from user threads ------------------------------------------

    def wakeup(self) -> None:
        if not self._signalled:
            self._signalled = True
            try:
                os.write(self._wpipe, b"x")
            except (BlockingIOError, OSError):
                pass

    def outstanding(self) -> int:
        """Batches not yet completed: still in the accumulator, queued here
        or in flight."""
        return (self.acc.pending_count() + sum(len(q) for q in list(self._queues.values()))
                + len(self._in_flight))

    def flush(self, timeout: float | None) -> int:
        """Send everything buffered now (ignoring linger) and wait until it
        is all acknowledged or failed; returns the batches still outstanding
        when timeout passed (0: all done)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            self._flushing += 1
        try:
            self.wakeup()
            with self._done:
                while True:
                    left = self.outstanding()
                    if left == 0 or not self.is_alive():
                        return left
                    wait = None if deadline is None else deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        return left
                    self._done.wait(0.1 if wait is None else min(wait, 0.1))
        finally:
            with self._done:
                self._flushing -= 1

    def close(self, timeout: float | None) -> None:
        """Flush up to timeout, then fail whatever is left and stop."""
        left = self.flush(timeout) if self.is_alive() else self.outstanding()
        if left:
            self._abort = errors.RequestTimedOutError(
                f"producer closed with {left} batch(es) not yet acknowledged")
        self._closing = True
        self.wakeup()
        self.join()
        os.close(self._rpipe)
        os.close(self._wpipe)

    # ---- the loop ------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # a bug: fail everything rather than hang callers
            log.exception("producer sender thread failed")
            self.fatal = e
            self._fail_everything(e)
        finally:
            try:
                self.transport.close()
            finally:
                with self._done:
                    self._done.notify_all()

    def _loop(self) -> None:
        transport = self.transport
        while True:
            if self._abort is not None:
                self._fail_everything(self._abort)
                return
            now = _now_ms()
            flush = self._flushing > 0 or self._closing
            for b in self.acc.drain(now, self.linger_ms, flush):
                tp = (b.topic, b.partition)
                q = self._queues.get(tp)
                if q is None:
                    q = self._queues[tp] = collections.deque()
                q.append(b)
            self._expire(now)
            self._dispatch(now)
            done = transport.poll_done()
            if done:
                self._handle(done)
                continue
            if self._closing and not self._queues and not self._in_flight \
                    and self.acc.pending_count() == 0:
                return
            timeout = self._wait_ms(now)
            ready, woken = wait_readable(transport.waitables(), [self._rpipe],
                                         None if timeout is None else timeout / 1000)
            if woken:
                os.read(self._rpipe, 4096)
                self._signalled = False
            for c in ready:
                self._handle(transport.receive(c))

    def _wait_ms(self, now: int):
        """How long select() may sleep: until the next linger deadline, retry
        backoff or delivery timeout; None = until woken."""
        waits = []
        if self.acc.has_ready() or (self._flushing and self.acc.pending_count()):
            return 0
        deadline = self.acc.next_linger_deadline()
        if deadline >= 0:
            waits.append(max(0, deadline - now))
        for tp, q in self._queues.items():
            if tp in self._in_flight or not q:
                continue
            nb = self._not_before.get(tp, 0)
            waits.append(max(0, nb - now))
        if self._queues or self._in_flight:
            waits.append(100)   # delivery timeouts and reconnect attempts
        return min(waits) if waits else None

    def _dispatch(self, now: int) -> None:
        """Send the head batch of every partition with nothing in flight."""
        ready = []
        for tp, q in self._queues.items():
            if not q or tp in self._in_flight or self._not_before.get(tp, 0) > now:
                continue
            ready.append(q[0])
        if self.txn is not None:
            ready = self._transactional(ready, now)
        if not ready:
            return
        if self.idempotent and self._producer_id < 0:
            try:
                self._producer_id, self._producer_epoch = self.transport.init_producer_id()
            except errors.PylogError as e:
                if not getattr(e, "retriable", False):   # ConnectionClosedError is, but not a TLS refusal
                    self._fail_everything(e)
                else:
                    for b in ready:
                        self._not_before[(b.topic, b.partition)] = now + self.retry_backoff_ms
                return
        for b in ready:
            if b.base_sequence < 0 and self.idempotent:
                tp = (b.topic, b.partition)
                seq = self._sequences.get(tp, 0)
                b.base_sequence = seq
                self._sequences[tp] = (seq + b.records_count) & 0x7FFFFFFF
        sendable = []
        transactional = self.txn is not None
        # The batch's final bytes are made here, once, so a batch no broker
        # could take fails alone. A transport that writes in this process
        # takes the sealed buffer itself (seal(): no copy into a new bytes
        # object, which cost a memcpy and fresh pages per batch).
        in_place = getattr(self.transport, "appends_in_place", False)
        for b in ready:
            try:
                if in_place:
                    b.seal(self._producer_id, self._producer_epoch, b.base_sequence, transactional)
                else:
                    b.build(self._producer_id, self._producer_epoch, b.base_sequence, transactional)
            except Exception as e:   # a record the broker could never take
                self._queues[(b.topic, b.partition)].popleft()
                self._finish(b, e)
                continue
            sendable.append(b)
        for b in sendable:
            self._in_flight.add((b.topic, b.partition))
            b.attempts += 1
        failed = self.transport.send(sendable, now)
        if self.metrics is not None:
            self.metrics.batches_sent(sendable)
        for b, exc in failed:
            self._retry_or_fail(b, exc, now)

    def _transactional(self, ready: list, now: int) -> list:
        """The ready batches that may go out now in the open transaction:
        their partitions are added to it first (AddPartitionsToTxn). In an
        aborting or failed transaction nothing goes out: what is not in
        flight yet is failed instead (Kafka's abortUndrainedBatches)."""
        txn = self.txn
        state = txn.state
        if state in (_txn.ABORTING, _txn.ABORTABLE_ERROR, _txn.FATAL_ERROR):
            exc = txn.last_error
            if exc is None:
                exc = _txn.TransactionAbortedError(
                    "the transaction is being aborted; the record was not sent")
            self._fail_undrained(exc)
            return []
        pid, epoch = txn.producer_id_and_epoch
        if pid != self._producer_id or epoch != self._producer_epoch:
            # A new epoch (init_transactions, or the bump after an abort):
            # sequences start again at 0 for every partition.
            self._producer_id, self._producer_epoch = pid, epoch
            self._sequences.clear()
        tps = {(b.topic, b.partition) for b in ready}
        try:
            added, backoff = txn.add_partitions(tps, self.transport.request_timeout_ms / 1000)
        except errors.PylogError as e:
            self._fail_undrained(e)
            return []
        if len(added) < len(tps):
            for tp in tps - added:
                self._not_before[tp] = now + max(1, int(backoff * 1000))
        return [b for b in ready if (b.topic, b.partition) in added]

    def _fail_undrained(self, exc: BaseException) -> None:
        """Fail every batch not in flight (queued here or still in the
        accumulator); in-flight batches end with their answers."""
        for tp in list(self._queues):
            q = self._queues[tp]
            keep = q.popleft() if q and tp in self._in_flight else None
            while q:
                b = q.popleft()
                if not b.done:
                    self._finish(b, exc)
            if keep is not None:
                q.append(keep)
            else:
                del self._queues[tp]
        for b in self.acc.drain(_now_ms(), 0, True):
            self._finish(b, exc)
        self.acc.abort_all(exc)
        self._notify()

    def _handle(self, results) -> None:
        """results: [(batch, error_code_or_exception, base_offset, log_append_time)]."""
        now = _now_ms()
        for b, err, base_offset, append_time in results:
            tp = (b.topic, b.partition)
            self._in_flight.discard(tp)
            if err == 0 or err == _DUPLICATE_SEQUENCE:
                q = self._queues.get(tp)
                if q and q[0] is b:
                    q.popleft()
                    if not q:
                        del self._queues[tp]
                b.complete(base_offset, append_time)
                b.release()
                self._notify()
            else:
                self._retry_or_fail(b, err, now)

    def _retry_or_fail(self, b, err, now: int) -> None:
        tp = (b.topic, b.partition)
        self._in_flight.discard(tp)
        if isinstance(err, BaseException):
            exc = err
            retriable = getattr(err, "retriable", False)   # ConnectionClosedError is, but not a TLS refusal
            code = getattr(err, "error_code", -1)
        else:
            code = err
            retriable = code in RETRIABLE
            exc = error_for(code, f"producing to {b.topic}-{b.partition}")
        expired = now - b.created_ms >= self.delivery_timeout_ms
        if retriable and b.attempts <= self.retries and not expired and not self._closing_hard():
            self._not_before[tp] = now + self.retry_backoff_ms
            if isinstance(err, ConnectionClosedError) or code in _METADATA_ERRORS:
                self.transport.invalidate(b.topic)
            log.debug("retrying %s-%d after %s (attempt %d)", b.topic, b.partition, exc, b.attempts)
            return
        q = self._queues.get(tp)
        if q and q[0] is b:
            q.popleft()
            if not q:
                del self._queues[tp]
        if expired and retriable:
            exc = errors.RequestTimedOutError(
                f"{b.records_count} record(s) for {b.topic}-{b.partition} not acknowledged within "
                f"delivery_timeout_ms={self.delivery_timeout_ms} (last error: {exc})")
        self._finish(b, exc)

    def _closing_hard(self) -> bool:
        return self._abort is not None

    def _expire(self, now: int) -> None:
        """Fail queued (not in-flight) batches older than delivery_timeout_ms."""
        for tp in list(self._queues):
            q = self._queues[tp]
            while q and tp not in self._in_flight and now - q[0].created_ms >= self.delivery_timeout_ms:
                b = q.popleft()
                self._finish(b, errors.RequestTimedOutError(
                    f"{b.records_count} record(s) for {b.topic}-{b.partition} expired after "
                    f"delivery_timeout_ms={self.delivery_timeout_ms} ({b.attempts} attempt(s))"))
            if not q:
                del self._queues[tp]

    def _finish(self, b, exc: BaseException) -> None:
        if self.txn is not None and not isinstance(exc, _txn.TransactionAbortedError):
            exc = self.txn.batch_failed(exc)
        b.fail(exc)
        if self.metrics is not None:
            self.metrics.batch_failed(b.records_count)
        b.release()
        self._notify()

    def _fail_everything(self, exc: BaseException) -> None:
        for q in list(self._queues.values()):
            for b in q:
                if not b.done:
                    self._finish(b, exc)
        self._queues.clear()
        self._in_flight.clear()
        for b in self.acc.drain(_now_ms(), 0, True):
            self._finish(b, exc)
        self.acc.abort_all(exc)
        self._notify()

    def _notify(self) -> None:
        with self._done:
            self._done.notify_all()
        if self._on_progress is not None:
            self._on_progress()
