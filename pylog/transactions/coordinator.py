"""The transaction coordinator (KAFKA-NOTES §6.2; Kafka's TransactionCoordinator
and TransactionStateManager are the model, transaction.version 1 only).

It runs on a CoordinatorRuntime over the partitions of `__transaction_state`
this broker leads, as the group coordinator does over __consumer_offsets:
becoming leader replays a partition's records into `txns` (the last record of
an id wins, a tombstone removes it), losing it forgets them, and every request
about a transactional id runs as an event on the runtime's queue of the id's
partition. The coordinator epoch of a partition is its leader epoch when it
was loaded; markers carry it, so a partition leader refuses those of a
coordinator that has since lost the partition (TRANSACTION_COORDINATOR_FENCED).

A state change is written before it is applied, as Kafka does: the event
computes the next metadata (a transit), appends it, marks the id as having a
write in flight (`pending`: other requests for it are answered
CONCURRENT_TRANSACTIONS meanwhile) and applies it once the partition's high
watermark covers the record. A failed write leaves the metadata as it was.

State machine (log_records.VALID_PREVIOUS): InitProducerId moves Empty /
Complete* to Empty with the epoch bumped (a new producer id once the epoch is
exhausted), and an Ongoing transaction to PrepareAbort under a bumped epoch
(the epoch fence: the old incarnation is aborted, the caller gets
CONCURRENT_TRANSACTIONS and retries); AddPartitionsToTxn moves to Ongoing;
EndTxn moves Ongoing to PrepareCommit / PrepareAbort, answers once that is
written, then the marker channel writes the markers to every partition and
the coordinator writes CompleteCommit / CompleteAbort. A partition loaded with
transactions in Prepare* sends their markers again. Ongoing transactions
older than their timeout are aborted under a bumped epoch (checked every
transaction.abort.timed.out.transaction.cleanup.interval.ms); ids idle for
transactional.id.expiration.ms are removed with a tombstone.

Threads: the broker's event loop only, as the runtime; no locks.
"""
from __future__ import annotations

import logging
import time

from ..coordinator.runtime import CoordinatorRuntime
from ..protocol.error_codes import Errors
from . import log_records as lr
from .log_records import TxnState

log = logging.getLogger("pylog.transactions")

NO_PRODUCER_ID = -1
NO_EPOCH = -1
MAX_EPOCH = 32767               # Short.MaxValue
NEED_PRODUCER_ID = object()     # an event's answer: call again with a fresh producer id
WRITE_TIMEOUT_MS = 30000        # Kafka's request.timeout.ms default: how long a state write waits
_COMPLETE = (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
_PREPARE = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)


def epoch_exhausted(epoch: int) -> bool:
    """Kafka's TransactionMetadata.isEpochExhausted: one epoch is kept back for
    the fence a timeout or a new incarnation may need."""
    return epoch >= MAX_EPOCH - 1


def _now_ms() -> int:
    return int(time.time() * 1000)


class TxnMetadata:
    """One transactional id as this coordinator knows it. Event-loop thread
    only (its coordinator's)."""

    __slots__ = ("transactional_id", "producer_id", "last_producer_id", "producer_epoch", "last_producer_epoch",
                 "timeout_ms", "state", "partitions", "start_ms", "last_update_ms", "pending",
                 "failed_epoch_fence")

    def __init__(self, transactional_id, producer_id, producer_epoch, timeout_ms, state, partitions=(),
                 start_ms=-1, last_update_ms=-1, last_producer_id=NO_PRODUCER_ID, last_producer_epoch=NO_EPOCH):
        self.transactional_id = transactional_id
        self.producer_id = producer_id
        self.last_producer_id = last_producer_id
        self.producer_epoch = producer_epoch
        self.last_producer_epoch = last_producer_epoch
        self.timeout_ms = timeout_ms
        self.state = state
        self.partitions = set(partitions)
        self.start_ms = start_ms
        self.last_update_ms = last_update_ms
        self.pending = None            # the transit being written, if any
        self.failed_epoch_fence = False

    def transit(self, state, **changes) -> "TxnMetadata":
        """A copy in `state` with the given fields changed (not yet written).
        Raises ValueError for a transition Kafka never makes."""
        if self.state not in lr.VALID_PREVIOUS[state]:
            raise ValueError(f"transactional id {self.transactional_id}: illegal transition "
                             f"{self.state.kafka_name} -> {state.kafka_name}")
        new = TxnMetadata(self.transactional_id, self.producer_id, self.producer_epoch, self.timeout_ms, state,
                          self.partitions, self.start_ms, _now_ms(), self.last_producer_id,
                          self.last_producer_epoch)
        for k, v in changes.items():
            setattr(new, k, v)
        return new

    def apply(self, tr: "TxnMetadata"):
        for k in ("producer_id", "last_producer_id", "producer_epoch", "last_producer_epoch", "timeout_ms",
                  "state", "start_ms", "last_update_ms"):
            setattr(self, k, getattr(tr, k))
        self.partitions = set(tr.partitions)

    def value(self) -> bytes:
        return lr.encode_value(self.producer_id, self.producer_epoch, self.timeout_ms, self.state, self.partitions,
                               self.last_update_ms, self.start_ms)


class TransactionCoordinator:
    """Transactional ids of the __transaction_state partitions led here (see
    the module docstring). `markers` is the marker channel
    (channel.MarkerChannel): `send(txn_partition, coordinator_epoch, meta,
    commit, done)` writes the markers and calls done(). Event-loop thread only.
    """

    def __init__(self, config, writer, markers=None):
        self.config = config
        self.writer = writer
        self.markers = markers
        self.num_partitions = config.get("transaction.state.log.num.partitions")
        self.replication_factor = config.get("transaction.state.log.replication.factor")
        self.max_timeout_ms = config.get("transaction.max.timeout.ms")
        self.expiration_ms = config.get("transactional.id.expiration.ms")
        self.abort_interval_ms = config.get("transaction.abort.timed.out.transaction.cleanup.interval.ms")
        self.expire_interval_ms = config.get("transaction.remove.expired.transaction.cleanup.interval.ms")
        self.txns: dict[str, TxnMetadata] = {}
        self.coordinator_epochs: dict[int, int] = {}
        # Kafka's TransactionStateManager appends with acks=all.
        self.runtime = CoordinatorRuntime(lr.TOPIC, writer, self, write_timeout_ms=WRITE_TIMEOUT_MS, acks_all=True)
        self.clock = self.runtime.clock

    # ---- start-up, shutdown, leadership ----

    def start(self):
        self.runtime.load_led_partitions()

    async def stop(self):
        await self.runtime.stop()
        if self.markers is not None:
            await self.markers.stop()

    def is_current(self, index: int, coordinator_epoch: int) -> bool:
        """Whether partition index is still loaded here under that epoch."""
        return self.coordinator_epochs.get(index) == coordinator_epoch

    def on_become_leader(self, index: int):
        self.runtime.on_become_leader(index)

    def on_resign(self, index: int):
        self.runtime.on_resign(index)

    # ---- the shard ----

    def replay(self, index: int, rec):
        if rec.key is None:
            return
        try:
            tid = lr.decode_key(rec.key)
            if rec.value is None:
                self.txns.pop(tid, None)
                return
            v = lr.decode_value(rec.value)
        except Exception as e:  # one bad record must not lose the others
            log.warning("%s-%d: offset %d: unreadable transaction record skipped: %s", lr.TOPIC, index,
                        rec.offset, e)
            return
        meta = self.txns.get(tid)
        if meta is None:
            meta = self.txns[tid] = TxnMetadata(tid, v.producer_id, v.producer_epoch, v.timeout_ms, v.state)
        elif meta.producer_id != v.producer_id:
            meta.last_producer_id = meta.producer_id
        meta.producer_id, meta.producer_epoch, meta.timeout_ms = v.producer_id, v.producer_epoch, v.timeout_ms
        meta.state, meta.partitions = v.state, v.partitions
        meta.start_ms, meta.last_update_ms = v.start_ms, v.last_update_ms
        if v.prev_producer_id >= 0:
            meta.last_producer_id = v.prev_producer_id

    def loaded(self, index: int):
        epoch = self.writer.leader_epoch(lr.TOPIC, index)
        self.coordinator_epochs[index] = epoch
        for meta in self._of_partition(index):
            if meta.state in _PREPARE:
                # Written before this coordinator (or its previous life) sent
                # every marker: send them all again, as Kafka does (a second
                # marker where the transaction already ended ends nothing).
                self._send_markers(index, epoch, meta, meta.state == TxnState.PREPARE_COMMIT)
        if self.runtime.writer.loads_in_steps:
            now = self.clock()
            self.runtime.schedule_timer(index, "abort-timed-out", now + self.abort_interval_ms / 1000,
                                        self._abort_timed_out, index)
            self.runtime.schedule_timer(index, "expire-ids", now + self.expire_interval_ms / 1000,
                                        self._expire_ids, index)

    def unloaded(self, index: int):
        self.coordinator_epochs.pop(index, None)
        for meta in self._of_partition(index):
            del self.txns[meta.transactional_id]
        if self.markers is not None:
            self.markers.forget(index)

    def _of_partition(self, index: int) -> list[TxnMetadata]:
        return [m for tid, m in self.txns.items() if self.partition_for(tid) == index]

    # ---- placement ----

    def partition_count(self) -> int:
        return self.writer.partition_count(lr.TOPIC) or self.num_partitions

    def partition_for(self, transactional_id: str) -> int:
        return lr.partition_for(transactional_id, self.partition_count())

    def ensure_topic(self):
        if self.writer.partition_count(lr.TOPIC) is None:
            self.writer.create_topic(lr.TOPIC, self.num_partitions, self.replication_factor, self.topic_configs())
            self.runtime.load_led_partitions()

    def topic_configs(self) -> dict:
        c = self.config
        return {"cleanup.policy": "compact",
                "min.insync.replicas": str(c.get("transaction.state.log.min.isr")),
                "segment.bytes": str(c.get("transaction.state.log.segment.bytes")),
                "unclean.leader.election.enable": "false"}

    def coordinator_for(self, transactional_id):
        """FindCoordinator(key_type 1): (error, node_id, host, port)."""
        if self.writer.partition_count(lr.TOPIC) is None:
            self.ensure_topic()
            if self.writer.partition_count(lr.TOPIC) is None:
                return Errors.COORDINATOR_NOT_AVAILABLE, -1, "", -1
        ep = self.writer.leader_endpoint(lr.TOPIC, self.partition_for(transactional_id))
        if ep is None:
            return Errors.COORDINATOR_NOT_AVAILABLE, -1, "", -1
        return (Errors.NONE, *ep)

    def coordinator_error(self, transactional_id) -> int:
        if self.writer.partition_count(lr.TOPIC) is None:
            self.ensure_topic()
        return self.runtime.partition_error(self.partition_for(transactional_id))

    def event(self, transactional_id, fn, *args):
        """fn(*args) as an event of the id's partition."""
        return self.runtime.schedule(self.partition_for(transactional_id), fn, *args)

    # ---- writing a transit ----

    def _write(self, meta: TxnMetadata, tr: TxnMetadata):
        """Within an event: append tr for meta and mark meta pending. A
        coroutine giving the error code once the write is decided (0: tr is
        applied to meta), or the code at once when the append failed."""
        index = self.partition_for(meta.transactional_id)
        epoch = self.coordinator_epochs.get(index)
        try:
            last = self.runtime.append(index, [lr.encode_key(meta.transactional_id)], [tr.value()])
        except Exception as e:  # not the leader any more, a storage error
            from ..errors import code_for
            return _write_error(code_for(e))
        meta.pending = tr
        return self._await_write(meta, tr, index, epoch, last)

    async def _await_write(self, meta, tr, index, epoch, last) -> int:
        code = self.runtime.committed_now(index, last)
        if code is None:
            code = await self.runtime.committed(index, last)
        if meta.pending is tr:
            meta.pending = None
        if code == 0 and (self.coordinator_epochs.get(index) != epoch or self.txns.get(meta.transactional_id)
                          is not meta):
            code = Errors.NOT_COORDINATOR     # the partition moved (or reloaded) meanwhile
        if code == 0:
            meta.apply(tr)
            return 0
        log.warning("transactional id %s: writing %s failed: error %d", meta.transactional_id,
                    tr.state.kafka_name, code)
        return _write_error(code)

    # ---- InitProducerId ----

    def validate_timeout(self, timeout_ms: int) -> bool:
        return 0 < timeout_ms <= self.max_timeout_ms

    def init_producer_id(self, transactional_id, timeout_ms, expected_pid, expected_epoch, fresh_pid=None):
        """An event: (error, producer_id, epoch), NEED_PRODUCER_ID (call again
        with fresh_pid), or a coroutine giving the tuple."""
        if not transactional_id:
            return Errors.INVALID_REQUEST, -1, -1
        if not self.validate_timeout(timeout_ms):
            return Errors.INVALID_TRANSACTION_TIMEOUT, -1, -1
        wrong = self.runtime.partition_error(self.partition_for(transactional_id))
        if wrong:
            return wrong, -1, -1
        meta = self.txns.get(transactional_id)
        if meta is None:
            if fresh_pid is None:
                return NEED_PRODUCER_ID
            meta = self.txns[transactional_id] = TxnMetadata(transactional_id, fresh_pid, NO_EPOCH, timeout_ms,
                                                             TxnState.EMPTY, last_update_ms=_now_ms())
            fresh_pid = None
        if meta.pending is not None:
            return Errors.CONCURRENT_TRANSACTIONS, -1, -1
        expected = expected_pid != NO_PRODUCER_ID
        if expected and not (meta.producer_epoch == NO_EPOCH or expected_pid == meta.producer_id or (
                expected_pid == meta.last_producer_id and epoch_exhausted(expected_epoch))):
            return Errors.PRODUCER_FENCED, -1, -1
        st = meta.state
        if st in _PREPARE or st in (TxnState.PREPARE_EPOCH_FENCE, TxnState.DEAD):
            return Errors.CONCURRENT_TRANSACTIONS, -1, -1
        if st == TxnState.ONGOING:
            # Abort the previous incarnation's transaction under a bumped epoch;
            # the caller retries, and its retry bumps the epoch again.
            out = self._abort_fenced(meta, answer=Errors.CONCURRENT_TRANSACTIONS)
            return (out, -1, -1) if isinstance(out, int) else _code_only(out)
        if epoch_exhausted(meta.producer_epoch) and (not expected or expected_epoch == meta.producer_epoch):
            if fresh_pid is None:
                return NEED_PRODUCER_ID
            tr = meta.transit(TxnState.EMPTY, producer_id=fresh_pid, last_producer_id=meta.producer_id,
                              producer_epoch=0, last_producer_epoch=meta.producer_epoch if expected else NO_EPOCH,
                              timeout_ms=timeout_ms, partitions=set(), start_ms=-1)
        else:
            bumped = meta.producer_epoch + 1
            if not expected:
                epochs = (bumped, NO_EPOCH)
            elif meta.producer_epoch == NO_EPOCH or expected_epoch == meta.producer_epoch:
                epochs = (bumped, meta.producer_epoch)
            elif expected_epoch == meta.last_producer_epoch:
                epochs = (meta.producer_epoch, meta.last_producer_epoch)   # a retry of a bump that succeeded
            else:
                return Errors.PRODUCER_FENCED, -1, -1
            tr = meta.transit(TxnState.EMPTY, producer_epoch=epochs[0], last_producer_epoch=epochs[1],
                              timeout_ms=timeout_ms, partitions=set(), start_ms=-1)
        out = self._write(meta, tr)
        if isinstance(out, int):
            return out, -1, -1
        return self._init_answer(out, tr)

    async def _init_answer(self, writing, tr):
        code = await writing
        return (code, tr.producer_id, tr.producer_epoch) if code == 0 else (code, -1, -1)

    def _lookup(self, transactional_id):
        """(0, metadata or None) when this broker coordinates the id, else
        (INVALID_REQUEST / NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS, None)."""
        if not transactional_id:
            return Errors.INVALID_REQUEST, None
        wrong = self.runtime.partition_error(self.partition_for(transactional_id))
        if wrong:
            return wrong, None
        return 0, self.txns.get(transactional_id)

    def _producer_of(self, transactional_id, producer_id, producer_epoch):
        """(0, metadata) when the request's producer is the id's current one;
        else (Kafka's error, None): a request from a client must carry the
        current producer id and exactly the current epoch."""
        code, meta = self._lookup(transactional_id)
        if code:
            return code, None
        if meta is None or meta.producer_id != producer_id:
            return Errors.INVALID_PRODUCER_ID_MAPPING, None
        if meta.producer_epoch != producer_epoch:
            return Errors.PRODUCER_FENCED, None
        return 0, meta

    # ---- AddPartitionsToTxn / AddOffsetsToTxn ----

    def add_partitions(self, transactional_id, producer_id, producer_epoch, partitions):
        """An event: an error code for every partition, or a coroutine giving it."""
        code, meta = self._producer_of(transactional_id, producer_id, producer_epoch)
        if code:
            return code
        if meta.pending is not None or meta.state in _PREPARE:
            return Errors.CONCURRENT_TRANSACTIONS
        if meta.state == TxnState.ONGOING and set(partitions) <= meta.partitions:
            return Errors.NONE
        if meta.state not in lr.VALID_PREVIOUS[TxnState.ONGOING]:
            return Errors.INVALID_TXN_STATE   # PrepareEpochFence, Dead: never reached by a client
        now = _now_ms()
        start = now if meta.state in (TxnState.EMPTY, *_COMPLETE) else meta.start_ms
        tr = meta.transit(TxnState.ONGOING, partitions=meta.partitions | set(partitions), start_ms=start,
                          last_update_ms=now)
        return self._write(meta, tr)

    def verify_partitions(self, transactional_id, producer_id, producer_epoch, partitions) -> dict | int:
        """AddPartitionsToTxn v4 verify_only (Kafka's
        handleVerifyPartitionsInTransaction): {partition: code}, or one code."""
        code, meta = self._producer_of(transactional_id, producer_id, producer_epoch)
        if code:
            return code
        if meta.state in _PREPARE:
            return Errors.CONCURRENT_TRANSACTIONS
        return {tp: (Errors.NONE if tp in meta.partitions else Errors.TRANSACTION_ABORTABLE) for tp in partitions}

    # ---- EndTxn ----

    def end_txn(self, transactional_id, producer_id, producer_epoch, commit: bool):
        """An event (client EndTxn): an error code, or a coroutine giving it."""
        code, meta = self._producer_of(transactional_id, producer_id, producer_epoch)
        if code:
            return code
        if meta.pending is not None:
            return Errors.CONCURRENT_TRANSACTIONS
        st = meta.state
        if st == TxnState.ONGOING:
            tr = meta.transit(TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT)
            return self._prepare(meta, tr, commit, Errors.NONE)
        if st == TxnState.COMPLETE_COMMIT:
            return Errors.NONE if commit else Errors.INVALID_TXN_STATE
        if st == TxnState.COMPLETE_ABORT:
            return Errors.NONE if not commit else Errors.INVALID_TXN_STATE
        if st == TxnState.PREPARE_COMMIT:
            return Errors.CONCURRENT_TRANSACTIONS if commit else Errors.INVALID_TXN_STATE
        if st == TxnState.PREPARE_ABORT:
            return Errors.CONCURRENT_TRANSACTIONS if not commit else Errors.INVALID_TXN_STATE
        return Errors.INVALID_TXN_STATE

    def _abort_fenced(self, meta: TxnMetadata, answer: int):
        """Ongoing -> PrepareAbort under a bumped epoch (Kafka's
        prepareFenceProducerEpoch + endTransaction(ABORT) from the
        coordinator): the old incarnation's batches and requests are fenced.
        After a fence whose write failed the epoch is not bumped again."""
        epoch = meta.producer_epoch if meta.failed_epoch_fence or meta.producer_epoch >= MAX_EPOCH \
            else meta.producer_epoch + 1
        tr = meta.transit(TxnState.PREPARE_ABORT, producer_epoch=epoch, last_producer_epoch=NO_EPOCH)
        return self._prepare(meta, tr, False, answer, fence=True)

    def _prepare(self, meta, tr, commit, answer, fence=False):
        out = self._write(meta, tr)
        if isinstance(out, int):
            if fence:
                meta.failed_epoch_fence = True
            return out
        return self._prepared(meta, tr, commit, answer, out, fence)

    async def _prepared(self, meta, tr, commit, answer, writing, fence):
        code = await writing
        if code:
            if fence:
                meta.failed_epoch_fence = True
            return code
        meta.failed_epoch_fence = False
        index = self.partition_for(meta.transactional_id)
        self._send_markers(index, self.coordinator_epochs[index], meta, commit)
        return answer

    # ---- markers and completion ----

    def _send_markers(self, index, coordinator_epoch, meta, commit):
        if self.markers is None:
            return
        self.markers.send(index, coordinator_epoch, meta.transactional_id, meta.producer_id, meta.producer_epoch,
                          commit, sorted(meta.partitions), self._markers_written)

    def _markers_written(self, index, coordinator_epoch, transactional_id, producer_id, producer_epoch, commit):
        """Every marker is written: write Complete* (an event of the id's
        partition; retried while the write fails for a reason other than this
        broker losing the partition)."""
        if self.coordinator_epochs.get(index) != coordinator_epoch:
            return
        out = self.runtime.schedule(index, self._complete, index, coordinator_epoch, transactional_id,
                                    producer_id, producer_epoch, commit)
        if hasattr(out, "__await__"):
            import asyncio
            asyncio.ensure_future(out)

    def _complete(self, index, coordinator_epoch, transactional_id, producer_id, producer_epoch, commit):
        meta = self.txns.get(transactional_id)
        want = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        if (meta is None or self.coordinator_epochs.get(index) != coordinator_epoch or meta.state != want
                or meta.producer_id != producer_id or meta.producer_epoch != producer_epoch):
            return None
        if meta.pending is not None:
            return self._retry_complete(index, coordinator_epoch, transactional_id, producer_id, producer_epoch,
                                        commit, None)
        tr = meta.transit(TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT, partitions=set())
        out = self._write(meta, tr)
        return self._retry_complete(index, coordinator_epoch, transactional_id, producer_id, producer_epoch,
                                    commit, out)

    async def _retry_complete(self, index, coordinator_epoch, transactional_id, producer_id, producer_epoch,
                              commit, writing):
        import asyncio
        code = Errors.CONCURRENT_TRANSACTIONS if writing is None else (
            writing if isinstance(writing, int) else await writing)
        if code == 0:
            log.debug("transactional id %s: %s", transactional_id, "CompleteCommit" if commit else "CompleteAbort")
            return
        if code == Errors.NOT_COORDINATOR or self.coordinator_epochs.get(index) != coordinator_epoch:
            return   # the next coordinator resumes it from Prepare*
        await asyncio.sleep(0.1)
        self._markers_written(index, coordinator_epoch, transactional_id, producer_id, producer_epoch, commit)

    # ---- timers ----

    def _abort_timed_out(self, index: int):
        """Abort (under a bumped epoch) every Ongoing transaction of the
        partition older than its timeout, then re-arm."""
        now = _now_ms()
        for meta in self._of_partition(index):
            if (meta.state == TxnState.ONGOING and meta.pending is None
                    and meta.start_ms + meta.timeout_ms < now):
                log.info("transactional id %s: transaction of producer %d epoch %d timed out after %d ms: "
                         "aborting it", meta.transactional_id, meta.producer_id, meta.producer_epoch,
                         meta.timeout_ms)
                out = self._abort_fenced(meta, Errors.NONE)
                if not isinstance(out, int):
                    import asyncio
                    asyncio.ensure_future(out)
        self.runtime.schedule_timer(index, "abort-timed-out", self.clock() + self.abort_interval_ms / 1000,
                                    self._abort_timed_out, index)

    def _expire_ids(self, index: int):
        """Remove the ids idle for transactional.id.expiration.ms (a
        tombstone each; Kafka's removeExpiredTransactionalIds), then re-arm."""
        now = _now_ms()
        for meta in self._of_partition(index):
            if (meta.state in (TxnState.EMPTY, *_COMPLETE) and meta.pending is None
                    and meta.last_update_ms + self.expiration_ms <= now):
                self._expire(index, meta)
        self.runtime.schedule_timer(index, "expire-ids", self.clock() + self.expire_interval_ms / 1000,
                                    self._expire_ids, index)

    def _expire(self, index, meta):
        import asyncio
        try:
            last = self.runtime.append(index, [lr.encode_key(meta.transactional_id)], [None])
        except Exception as e:
            log.warning("transactional id %s: expiring failed: %s", meta.transactional_id, e)
            return
        tr = meta.transit(TxnState.DEAD)
        meta.pending = tr

        async def done():
            code = self.runtime.committed_now(index, last)
            if code is None:
                code = await self.runtime.committed(index, last)
            if meta.pending is tr:
                meta.pending = None
            if code == 0 and self.txns.get(meta.transactional_id) is meta:
                del self.txns[meta.transactional_id]
                log.info("transactional id %s expired", meta.transactional_id)
        asyncio.ensure_future(done())

    # ---- DescribeTransactions / ListTransactions ----

    def describe(self, transactional_id):
        """(error, TxnMetadata or None)."""
        code, meta = self._lookup(transactional_id)
        if code:
            return code, None
        if meta is None or meta.state == TxnState.DEAD or (
                meta.pending is not None and meta.pending.state == TxnState.DEAD):
            return Errors.TRANSACTIONAL_ID_NOT_FOUND, None
        return Errors.NONE, meta

    def list_transactions(self, states, producer_ids, duration_ms=-1):
        """(error, unknown state names, [TxnMetadata]) as Kafka's
        listTransactionStates filters them."""
        if self.runtime.loading_partitions():
            return Errors.COORDINATOR_LOAD_IN_PROGRESS, [], []
        wanted, unknown = set(), []
        for name in states or ():
            s = lr.BY_NAME.get(name)
            if s is None:
                unknown.append(name)
            else:
                wanted.add(s)
        pids = set(producer_ids or ())
        now = _now_ms()
        out = []
        for meta in self.txns.values():
            if meta.state == TxnState.DEAD:
                continue
            if pids and meta.producer_id not in pids:
                continue
            if states and meta.state not in wanted:
                continue
            if duration_ms >= 0 and now - meta.start_ms <= duration_ms:
                continue
            out.append(meta)
        return Errors.NONE, unknown, out


async def _code_only(writing):
    return await writing, -1, -1


def _write_error(code: int) -> int:
    """A failed state write as Kafka's TransactionStateManager answers it."""
    if code in (Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.NOT_ENOUGH_REPLICAS,
                Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND, Errors.REQUEST_TIMED_OUT):
        return Errors.COORDINATOR_NOT_AVAILABLE
    if code in (Errors.NOT_LEADER_OR_FOLLOWER, Errors.KAFKA_STORAGE_ERROR, Errors.NOT_COORDINATOR):
        return Errors.NOT_COORDINATOR
    if code in (Errors.MESSAGE_TOO_LARGE, Errors.RECORD_LIST_TOO_LARGE):
        return Errors.UNKNOWN_SERVER_ERROR
    return code
