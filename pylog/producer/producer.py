"""pylog.Producer: batching, partitioning, acks, retries and idempotence, over
the network or straight into a local directory.

    with pylog.Producer(bootstrap_servers="127.0.0.1:9092") as p:
        p.send("orders", b"value", key=b"k", on_delivery=lambda err, md: ...)
        p.send_many("orders", values)          # whole batches built in C
        p.flush()

    with pylog.Producer(log_dir="data/") as p:  # embedded: no broker, same layout
        ...

    p = pylog.Producer(bootstrap_servers=..., transactional_id="app-1")
    p.init_transactions()                      # fences older producers of "app-1"
    p.begin_transaction()
    p.send("out", b"v")
    p.send_offsets_to_transaction(offsets, consumer.group_metadata())
    p.commit_transaction()                     # or abort_transaction()

Transactions (transactions.py) work in both modes: embedded, the
LocalStore's broker core is the transaction coordinator (the broker's own,
with its fencing, timeouts and markers), asked through its request handlers.

    p = pylog.Producer(log_dir="data/", transactional_id="app-1")

send() is the per-message path: the native accumulator (bindings/producer.pyx)
picks the partition (explicit; murmur2 of the key like the Java client and
librdkafka's murmur2_random; sticky for null keys, KIP-480; round robin or
xxhash on request) and encodes the record into its partition's open batch, all
in C. A background sender thread (sender.py) takes batches that are full, or
older than linger_ms, and writes them out (transport.py).

metrics_registry: a prometheus_client registry that gets Kafka's
producer-metrics (record-send, batch-size, request-latency; pylog/metrics/clients.py),
recorded per batch and per request by the sender thread.

Invariants: see Sender (ordering, idempotent retries, every batch ends once).
Thread-safety: send(), send_many(), flush() and close() may be called from
any thread; the transactional calls from one thread at a time (as Kafka's). Delivery callbacks run on the sender thread; keep them short.
"""
from __future__ import annotations

import threading
import time

from .. import _engine, errors
from ..metrics.clients import ProducerMetrics
from ..structs import RecordMetadata
from .delivery_headers import delivery_headers
from .sender import Sender
from .transactions import IllegalTransactionStateError, TransactionManager
from .transport import EmbeddedTransport, NetworkTransport, ProducerMetadata

__all__ = ["BatchResults", "FailedSend", "Producer"]

_ACKS = {"all": -1, -1: -1, "-1": -1, 1: 1, "1": 1, 0: 0, "0": 0}


class BatchResults:
    """What send_many() returns: the batches it made, in order."""

    def __init__(self, topic: str, batches):
        self.topic = topic
        self.batches = batches

    def done(self) -> bool:
        return all(b.done for b in self.batches)

    def get(self, timeout: float | None = None) -> list[RecordMetadata]:
        """One RecordMetadata per batch (offset of its first record); raises
        the first batch's error, or TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for b in self.batches:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            out.append(b.result(left))
        return out

    result = get

    @property
    def records_count(self) -> int:
        return sum(b.records_count for b in self.batches)


class FailedSend:
    """What send() returns for a record that never reached a batch: its
    topic's metadata could not be had within max_block_ms (the topic does not
    exist and may not be created, the brokers cannot be reached). Behaves as a
    DeliveryHandle that is already done with that error, as the Java client's
    send() returns a failed future instead of throwing.

    Thread-safety: immutable once made; any thread."""

    __slots__ = ("topic", "partition", "error")

    def __init__(self, topic: str, partition: int | None, error: BaseException):
        self.topic = topic
        self.partition = -1 if partition is None else partition
        self.error = error

    def done(self) -> bool:
        return True

    def get(self, timeout: float | None = None):
        raise self.error

    result = get

    def exception(self, timeout: float | None = None) -> BaseException:
        return self.error

    def add_done_callback(self, fn) -> None:
        fn(self)

    def __repr__(self) -> str:
        return f"FailedSend(topic={self.topic!r}, error={self.error!r})"


def _clean(exc: BaseException) -> BaseException:
    """exc without the internal exception it was raised while handling
    (NeedMetadata, a socket error): the caller sees one error that says what
    went wrong, not the producer's plumbing."""
    exc.__context__ = None
    exc.__cause__ = None
    exc.__suppress_context__ = True
    exc.__traceback__ = None
    return exc


class Producer:
    """A Kafka producer (see the module doc). Exactly one of bootstrap_servers
    (network mode) and log_dir (embedded mode) must be given."""

    def __init__(self, bootstrap_servers: str | None = None, *, log_dir=None,
                 client_id: str = "pylog", acks="all", batch_size: int = 1_000_000,
                 linger_ms: int = 5, buffer_memory: int = 64 * 1024 * 1024,
                 max_block_ms: int = 60_000, compression_type: str | None = None,
                 retries: int = 2_147_483_647, retry_backoff_ms: int = 100,
                 request_timeout_ms: int = 30_000, delivery_timeout_ms: int = 120_000,
                 enable_idempotence: bool = True, partitioner: str = "murmur2",
                 allow_auto_create_topics: bool = True, metadata_max_age_ms: int = 300_000,
                 num_partitions: int = 1, transactional_id: str | None = None,
                 transaction_timeout_ms: int = 60_000, metrics_registry=None, ssl_context=None, sasl=None):
        # ssl_context (SSL, SASL_SSL) and sasl (SASL_*): from Kafka's client
        # keys with pylog.client.security.security_settings.
        if (bootstrap_servers is None) == (log_dir is None):
            raise ValueError("give exactly one of bootstrap_servers (network) or log_dir (embedded)")
        if transactional_id is not None:
            if not enable_idempotence:
                raise errors.InvalidConfigError(
                    "transactional_id needs enable_idempotence=True (as Kafka's "
                    "transactional.id requires enable.idempotence)")
            if not isinstance(transactional_id, str) or not transactional_id:
                raise errors.InvalidConfigError("transactional_id must be a non-empty string")
            if transaction_timeout_ms <= 0:
                raise errors.InvalidConfigError("transaction_timeout_ms must be positive")
        if acks not in _ACKS:
            raise ValueError(f"acks must be 0, 1 or 'all', not {acks!r}")
        self.acks = _ACKS[acks]
        if enable_idempotence and self.acks != -1:
            raise errors.InvalidConfigError(
                "enable_idempotence needs acks='all' (set enable_idempotence=False for acks=0/1)")
        if compression_type not in (None, "none", "lz4", "gzip", "snappy", "zstd"):
            raise ValueError(f"unknown compression_type {compression_type!r}")
        if batch_size <= 0 or buffer_memory < batch_size:
            raise ValueError("batch_size must be > 0 and <= buffer_memory")
        self.max_block_ms = max_block_ms
        self._batch_size = batch_size
        # Kafka's producer-metrics in this prometheus_client registry (pylog/metrics/clients.py).
        self._metrics_registry = metrics_registry
        self._metrics = None if metrics_registry is None else ProducerMetrics(client_id, metrics_registry)
        self._space = threading.Condition()
        self._closed = False
        self._blocked = 0   # send() calls waiting for buffer space
        self._acc = _engine.RecordAccumulator(
            batch_size, buffer_memory, None if compression_type == "none" else compression_type,
            self._wakeup, partitioner)
        if log_dir is not None:
            from ..embedded import LocalStore
            self._store = LocalStore.open(log_dir, auto_create_topics=allow_auto_create_topics,
                                          num_partitions=num_partitions)
            self._metadata = None
            transport = EmbeddedTransport(self._store, transactional_id=transactional_id,
                                          request_timeout_ms=request_timeout_ms)
        else:
            self._store = None
            self._metadata = ProducerMetadata(bootstrap_servers, client_id,
                                              request_timeout_ms / 1000,
                                              allow_auto_create_topics, metadata_max_age_ms,
                                              ssl_context=ssl_context, sasl=sasl)
            transport = NetworkTransport(self._metadata, client_id=client_id, acks=self.acks,
                                         request_timeout_ms=request_timeout_ms,
                                         transactional_id=transactional_id)
            transport.metrics = self._metrics
        self._txn = None
        if transactional_id is not None:
            self._txn = TransactionManager(
                bootstrap_servers, transactional_id, transaction_timeout_ms=transaction_timeout_ms,
                client_id=client_id, request_timeout_ms=request_timeout_ms,
                retry_backoff_ms=retry_backoff_ms, store=self._store,
                ssl_context=ssl_context, sasl=sasl)
        self._sender = Sender(self._acc, transport, linger_ms=linger_ms, retries=retries,
                              retry_backoff_ms=retry_backoff_ms,
                              delivery_timeout_ms=delivery_timeout_ms,
                              idempotent=enable_idempotence, on_progress=self._space_freed,
                              txn=self._txn, metrics=self._metrics)
        self._sender.start()
        # The per-message path: a bound method of the native accumulator, and
        # send() itself in C (an instance attribute over the method below,
        # which documents it and does the same in Python).
        self._append = self._acc.append
        self._send_path = _engine.SendPath(self._acc, self._send_slow, self._refuse, delivery_headers)
        self.send = self._send_path.send
        if self._txn is not None:
            # Records go out only inside a transaction: one state check per
            # send() in Python before the native path (Kafka checks there too).
            self.send = self._send_transactional

    def _send_transactional(self, topic: str, value=None, key=None, partition: int | None = None,
                            timestamp: int | None = None, headers=None, on_delivery=None, *, deliver_at=None,
                            priority=None):
        self._txn.check_can_send()
        return self._send_path.send(topic, value, key, partition, timestamp, headers, on_delivery,
                                    deliver_at=deliver_at, priority=priority)

    def _wakeup(self) -> None:
        self._sender.wakeup()

    def _space_freed(self) -> None:
        """Called by the sender after batches end (their bytes released)."""
        if self._blocked:
            with self._space:
                self._space.notify_all()

    # ---- sending ----------------------------------------------------------------

    def send(self, topic: str, value=None, key=None, partition: int | None = None,
             timestamp: int | None = None, headers=None, on_delivery=None, *, deliver_at=None, priority=None):
        """Queue one record; returns a DeliveryHandle (get(timeout) ->
        RecordMetadata). on_delivery(err, metadata) runs on the sender thread
        once the record is acknowledged or has failed. Blocks up to
        max_block_ms when the topic's metadata is not known yet or
        buffer_memory is full. When the topic's metadata cannot be had in
        that time (the topic does not exist and auto-creation is off, no
        broker answers) the record is not queued: the returned handle has
        already failed with that error (get() raises it) and on_delivery has
        been called with it, as the Java client does. A full buffer raises
        BufferFullError (a TimeoutError).

        deliver_at (epoch ms or an aware datetime) and priority (0-9) add the
        headers pylog.deliver.at and pylog.priority, which a pylog broker's
        share groups act on (delayed delivery, priority; delivery_headers.py)."""
        if deliver_at is not None or priority is not None:
            headers = delivery_headers(headers, deliver_at, priority)
        try:
            return self._append(topic, -1 if partition is None else partition, key, value,
                                timestamp, headers, on_delivery)
        except (_engine.NeedMetadata, _engine.BufferFull) as e:
            return self._send_slow(e, topic, partition, key, value, timestamp, headers,
                                   on_delivery)

    def _send_slow(self, first, topic, partition, key, value, timestamp, headers, on_delivery):
        self._check_open()
        deadline = time.monotonic() + self.max_block_ms / 1000
        exc = first
        while True:
            if isinstance(exc, _engine.NeedMetadata):
                try:
                    self._learn_partitions(topic, deadline)
                except errors.ProducerClosedError:
                    raise
                except (errors.PylogError, OSError) as e:
                    return self._failed(topic, partition, _clean(e), on_delivery)
            else:
                self._wait_for_space(deadline)
            self._check_open()
            try:
                return self._append(topic, -1 if partition is None else partition, key, value,
                                    timestamp, headers, on_delivery)
            except (_engine.NeedMetadata, _engine.BufferFull) as e:
                exc = e

    @staticmethod
    def _failed(topic, partition, exc, on_delivery) -> FailedSend:
        if on_delivery is not None:
            on_delivery(exc, None)
        return FailedSend(topic, partition, exc)

    def send_many(self, topic: str, values, keys=None, partition: int | None = None,
                  timestamp: int | None = None) -> BatchResults:
        """Queue many records at once, built into whole batches in C (the
        bulk path: no per-record Python work). values (and keys, if given)
        are lists of bytes. With keys, each record goes to its key's
        partition; without, full batches rotate over the partitions."""
        if self._txn is not None:
            self._txn.check_can_send()
        if not isinstance(values, list):
            values = list(values)
        if keys is not None and not isinstance(keys, list):
            keys = list(keys)
        deadline = time.monotonic() + self.max_block_ms / 1000
        p = -1 if partition is None else partition
        if keys is not None or not values:
            return BatchResults(topic, self._append_many(topic, p, values, keys, timestamp,
                                                         deadline))
        # About one batch per call: the sender writes each batch out (without
        # the GIL where it can) while the next one is encoded.
        step = max(1, self._batch_size // (len(values[0]) + 8))
        batches = []
        for i in range(0, len(values), step):
            batches += self._append_many(topic, p, values, None, timestamp, deadline, i, i + step)
        return BatchResults(topic, batches)

    def _append_many(self, topic, p, values, keys, timestamp, deadline, start=0, stop=-1):
        while True:
            self._check_open()
            try:
                batches = self._acc.append_many(topic, p, values, keys, timestamp, start, stop)
            except _engine.NeedMetadata:
                need_metadata = True
            except _engine.BufferFull:
                need_metadata = False
            else:
                self._sender.wakeup()
                return batches
            # Outside the except clause: an error raised while waiting is not
            # chained under the internal NeedMetadata / BufferFull.
            if need_metadata:
                self._learn_partitions(topic, deadline)
            else:
                self._wait_for_space(deadline)

    def _learn_partitions(self, topic: str, deadline: float) -> None:
        left = max(0.0, deadline - time.monotonic())
        if self._store is not None:
            parts = self._store.partitions_for(topic, create=True)
            if parts is None:
                raise errors.UnknownTopicOrPartitionError(
                    f"topic {topic!r} does not exist; auto creation is off")
            self._acc.set_partition_count(topic, len(parts))
            return
        count = self._metadata.partition_count(topic, left)
        self._acc.set_partition_count(topic, count)

    def _wait_for_space(self, deadline: float) -> None:
        with self._space:
            self._blocked += 1
            try:
                self._wait_locked(deadline)
            finally:
                self._blocked -= 1

    def _wait_locked(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise errors.BufferFullError(
                f"buffer_memory full for max_block_ms={self.max_block_ms} "
                f"({self._acc.buffered_bytes()} bytes waiting to be sent)")
        # The sender notifies after every batch it ends; the short timeout
        # covers a release that raced with the caller's failed append.
        self._space.wait(min(left, 0.05))

    def _refuse(self, *args) -> None:
        raise errors.ProducerClosedError("the producer is closed")

    def _check_open(self) -> None:
        if self._closed:
            raise errors.ProducerClosedError("the producer is closed")
        if self._sender.fatal is not None:
            raise errors.ProducerClosedError(
                f"the producer's sender thread died: {self._sender.fatal!r}")

    # ---- transactions (a Producer made with transactional_id) ------------------------

    def _transaction_manager(self) -> TransactionManager:
        self._check_open()
        if self._txn is None:
            raise IllegalTransactionStateError(
                "this producer has no transactional_id: transactions are not enabled")
        return self._txn

    def init_transactions(self, timeout: float | None = None) -> None:
        """Register the transactional_id with its coordinator: fences every
        earlier producer with the same id and completes (aborts) its open
        transaction. Call once, before the first begin_transaction()."""
        self._transaction_manager().init_transactions(self._timeout(timeout))

    def begin_transaction(self) -> None:
        """Start a transaction: send() is allowed until commit or abort."""
        self._transaction_manager().begin_transaction()

    def send_offsets_to_transaction(self, offsets, group_metadata, timeout: float | None = None) -> None:
        """Commit a consumer group's offsets as part of the open transaction
        (consume-transform-produce): offsets {TopicPartition or (topic,
        partition): OffsetAndMetadata or int (the next offset to consume)},
        group_metadata from Consumer.group_metadata() (or a group id)."""
        self._transaction_manager().send_offsets_to_transaction(
            offsets, group_metadata, self._timeout(timeout))

    def commit_transaction(self, timeout: float | None = None) -> None:
        """Flush, then commit: every record sent in the transaction becomes
        visible to read_committed consumers. After a timeout the call may be
        repeated; after an abortable error only abort_transaction() is left."""
        txn = self._transaction_manager()
        timeout = self._timeout(timeout)
        deadline = time.monotonic() + timeout
        txn.begin_commit()
        left = self._sender.flush(timeout)
        if left:
            raise errors.RequestTimedOutError(
                f"commit_transaction: {left} batch(es) not acknowledged within {timeout} s; "
                "call commit_transaction() again")
        if txn.has_error:
            raise txn.last_error
        txn.end_transaction(True, max(0.0, deadline - time.monotonic()))

    def abort_transaction(self, timeout: float | None = None) -> None:
        """Abort: records not sent yet are failed (TransactionAbortedError),
        those in flight are waited for, then the coordinator writes abort
        markers and read_committed consumers never see the transaction."""
        txn = self._transaction_manager()
        timeout = self._timeout(timeout)
        deadline = time.monotonic() + timeout
        txn.begin_abort()
        self._sender.wakeup()
        left = self._sender.flush(timeout)
        if left:
            raise errors.RequestTimedOutError(
                f"abort_transaction: {left} batch(es) still in flight after {timeout} s; "
                "call abort_transaction() again")
        txn.end_transaction(False, max(0.0, deadline - time.monotonic()))

    def _timeout(self, timeout: float | None) -> float:
        # Kafka's default for the transactional calls is max.block.ms.
        return self.max_block_ms / 1000 if timeout is None else timeout

    # ---- the rest ---------------------------------------------------------------

    def partitions_for(self, topic: str) -> list[int]:
        if self._store is not None:
            parts = self._store.partitions_for(topic, create=False)
            if parts is None:
                raise errors.UnknownTopicOrPartitionError(f"topic {topic!r} does not exist")
            return sorted(parts)
        return list(range(self._metadata.partition_count(topic, self.max_block_ms / 1000)))

    def flush(self, timeout: float | None = None) -> int:
        """Send everything queued now (linger ignored) and wait until all of
        it is acknowledged or failed. Returns the number of batches still
        outstanding when timeout passed (0 = everything done)."""
        return self._sender.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to timeout; None = wait for everything), then fail what
        is still queued and stop the sender thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._append = self._refuse   # later send() calls fail at once
        self._send_path.close()
        try:
            self._sender.close(timeout)
        finally:
            if self._metadata is not None:
                self._metadata.close()
            if self._txn is not None:
                self._txn.close()
            if self._store is not None:
                self._store.close()
            self._acc.trim_pool()
            if self._metrics is not None:
                self._metrics.close(self._metrics_registry)
            with self._space:
                self._space.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # A constructor that raised (no broker reachable, a refused TLS
        # handshake) left no sender to stop.
        if not getattr(self, "_closed", True) and hasattr(self, "_send_path"):
            self.close(0)
