"""Where the producer's sender thread puts finished batches.

    ClusterMetadata-backed NetworkTransport: Produce requests to leaders
    EmbeddedTransport: appends to a local directory (pylog.embedded)

Both give the sender the same small surface: send(batches, now) -> failures,
waitables() / receive(waitable) for answers that arrive later, poll_done()
for batches finished during send, init_producer_id(), invalidate(topic),
close(). Results are (batch, error_code or exception, base_offset,
log_append_time).

ProducerMetadata is shared by user threads (send() of a topic whose
partition count is not known yet) and the sender thread; it has its own
lock and its own connection, so it never touches the sender's sockets.
"""
from __future__ import annotations

import collections
import logging
import threading
import time

from .. import errors
from ..client.client import Client
from ..client.errors import ConnectionClosedError, SslAuthenticationError, error_for
from ..client.wire import Connection
from ..protocol.error_codes import Errors
from ..protocol.messages import InitProducerIdRequest
from ..protocol.produce import encode_produce_request

log = logging.getLogger("pylog.producer")

__all__ = ["EmbeddedTransport", "NetworkTransport", "ProducerMetadata"]

PRODUCE = 0
_PRODUCE_VERSIONS = (3, 8)   # magic-2 batches; v9+ is flexible (not hand-encoded)


class ProducerMetadata:
    """Topic partition counts and leaders, from Metadata requests.

    Thread-safety: every method takes the lock; the Client inside is used
    by one thread at a time."""

    def __init__(self, bootstrap_servers: str, client_id: str, timeout: float,
                 allow_auto_create: bool, metadata_max_age_ms: int, ssl_context=None, sasl=None):
        self._client = Client(bootstrap_servers, client_id=client_id, timeout=timeout, ssl_context=ssl_context,
                              sasl=sasl)
        self._lock = threading.Lock()
        self._allow_auto_create = allow_auto_create
        self._max_age_ms = metadata_max_age_ms
        self._leaders: dict[str, dict[int, int]] = {}
        self._brokers: dict[int, tuple[str, int]] = {}
        self._fetched_at: dict[str, float] = {}
        self._stale: set[str] = set()

    def refresh(self, topic: str) -> tuple[int, int | None]:
        """Ask for topic (auto-creating it if allowed): (error_code, partition count or None)."""
        with self._lock:
            meta = self._client.metadata([topic], allow_auto_topic_creation=self._allow_auto_create)
            self._brokers = {n: (b.host, b.port) for n, b in self._client.cluster.brokers.items()}
            t = meta.topics.get(topic)
            if t is None:
                return 3, None
            if t.error_code:
                return t.error_code, None
            self._leaders[topic] = {p.partition: (p.leader_id if not p.error_code else -1)
                                    for p in t.partitions.values()}
            self._fetched_at[topic] = time.monotonic()
            self._stale.discard(topic)
            return 0, len(t.partitions)

    def partition_count(self, topic: str, timeout: float) -> int:
        """The topic's partition count, waiting (up to timeout) while it is
        being created or has no leaders yet. Raises a clear error when the
        topic does not exist and cannot be created."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                code, count = self.refresh(topic)
            except SslAuthenticationError:
                raise   # waiting cannot cure a refused certificate
            except ConnectionClosedError as e:
                code, count, last = Errors.UNKNOWN_SERVER_ERROR, None, e
            else:
                last = None
            if count:
                return count
            if code not in (Errors.UNKNOWN_SERVER_ERROR, Errors.UNKNOWN_TOPIC_OR_PARTITION,
                            Errors.LEADER_NOT_AVAILABLE) or time.monotonic() >= deadline:
                if code == Errors.UNKNOWN_TOPIC_OR_PARTITION:
                    how = ("auto creation is off" if not self._allow_auto_create
                           else "the broker did not create it (auto.create.topics.enable=false?)")
                    raise errors.UnknownTopicOrPartitionError(
                        f"topic {topic!r} does not exist; {how}")
                if last is not None:
                    raise last
                raise error_for(code, f"metadata for topic {topic!r}")
            time.sleep(0.05)

    def leader(self, topic: str, partition: int) -> tuple[int, tuple[str, int] | None]:
        """(node_id, (host, port)) of the partition's leader, refreshing when
        the topic is marked stale or old; node_id -1 when none is known."""
        with self._lock:
            leaders = self._leaders.get(topic)
            age_ms = (time.monotonic() - self._fetched_at.get(topic, 0)) * 1000
            fresh = leaders is not None and topic not in self._stale and age_ms < self._max_age_ms
        if not fresh:
            try:
                self.refresh(topic)
            except ConnectionClosedError as e:
                log.warning("metadata refresh for %s failed: %s", topic, e)
        with self._lock:
            node = self._leaders.get(topic, {}).get(partition, -1)
            return node, self._brokers.get(node)

    def invalidate(self, topic: str) -> None:
        with self._lock:
            self._stale.add(topic)

    def open_connection(self, host: str, port: int, timeout: float) -> Connection:
        """A connection with the producer's client id, TLS and SASL, for the sender's own sockets."""
        return self._client.open_connection(host, port, timeout)

    def init_producer_id(self) -> tuple[int, int]:
        with self._lock:
            conn = self._client.any_connection()
            resp = conn.request(InitProducerIdRequest(transactional_id=None,
                                                      transaction_timeout_ms=60000),
                                api_version=min(1, conn.api_versions.get(22, (0, 0))[1]))
        if resp.error_code:
            raise error_for(resp.error_code, "InitProducerId")
        return resp.producer_id, resp.producer_epoch

    def close(self) -> None:
        with self._lock:
            self._client.close()


class NetworkTransport:
    """Produce requests, one per leader per dispatch round, pipelined on one
    connection per broker. Used by the sender thread only."""

    def __init__(self, metadata: ProducerMetadata, *, client_id: str, acks: int,
                 request_timeout_ms: int, transactional_id: str | None = None):
        self.metadata = metadata
        self.client_id = client_id
        self.acks = acks
        self.request_timeout_ms = request_timeout_ms
        self.transactional_id = transactional_id
        self._conns: dict[int, Connection] = {}
        self._pending: dict[Connection, collections.deque] = {}   # (cid, sent_at_ms, batches)
        self._done: list = []
        self.metrics = None   # a pylog.metrics.clients.ProducerMetrics, or None

    def _connection(self, node: int, address) -> Connection:
        conn = self._conns.get(node)
        if conn is None or conn.closed:
            host, port = address
            conn = self.metadata.open_connection(host, port, self.request_timeout_ms / 1000)
            self._conns[node] = conn
            self._pending[conn] = collections.deque()
        return conn

    def send(self, batches, now: int):
        failed = []
        by_node: dict[int, list] = {}
        addresses = {}
        for b in batches:
            node, address = self.metadata.leader(b.topic, b.partition)
            if node < 0 or address is None:
                failed.append((b, error_for(Errors.LEADER_NOT_AVAILABLE, f"{b.topic}-{b.partition} has no leader")))
                continue
            by_node.setdefault(node, []).append(b)
            addresses[node] = address
        for node, group in by_node.items():
            try:
                conn = self._connection(node, addresses[node])
                lo, hi = conn.api_versions.get(PRODUCE, (0, -1))
                version = min(hi, _PRODUCE_VERSIONS[1])
                if version < max(lo, _PRODUCE_VERSIONS[0]):
                    raise errors.UnsupportedVersionError(
                        f"broker {node} speaks Produce v{lo}-{hi}; pylog needs v3-v8")
                group.sort(key=lambda b: b.topic)
                bufs = encode_produce_request(
                    conn.next_correlation_id, version, self.client_id, self.acks,
                    self.request_timeout_ms, [(b.topic, b.partition, b.build(b.producer_id, b.producer_epoch, b.base_sequence,
                                                            b.transactional))
                     for b in group],
                    self.transactional_id)
                cid = conn.send_buffers(PRODUCE, version, bufs, expect_response=self.acks != 0)
            except (ConnectionClosedError, OSError) as e:
                self._drop(node, e)
                failed.extend((b, e if isinstance(e, ConnectionClosedError)
                               else ConnectionClosedError(str(e))) for b in group)
                continue
            except errors.PylogError as e:
                failed.extend((b, e) for b in group)
                continue
            if self.acks == 0:
                self._done.extend((b, 0, -1, -1) for b in group)
            else:
                self._pending[conn].append((cid, now, group))
        return failed

    def waitables(self):
        return [c for c, q in self._pending.items() if q and not c.closed]

    def receive(self, conn):
        q = self._pending[conn]
        _cid, sent, group = q[0]
        try:
            resp = conn.receive()
        except (ConnectionClosedError, Exception) as e:   # the stream is unusable
            exc = e if isinstance(e, ConnectionClosedError) else ConnectionClosedError(str(e))
            results = [(b, exc, -1, -1) for _cid, _sent, g in q for b in g]
            del self._pending[conn]
            for node, c in list(self._conns.items()):
                if c is conn:
                    del self._conns[node]
            conn.close()
            return results
        q.popleft()
        if self.metrics is not None:
            self.metrics.request_done(time.time_ns() // 1_000_000 - sent)
        answers = {}
        for t in resp.responses:
            for p in t.partition_responses:
                answers[(t.name, p.index)] = p
        results = []
        for b in group:
            p = answers.get((b.topic, b.partition))
            if p is None:
                results.append((b, errors.InvalidRequestError(
                    f"Produce response has no {b.topic}-{b.partition}"), -1, -1))
            elif p.error_code and getattr(p, "error_message", None):
                # Produce v8+: the broker says why (the limit and the key that
                # raises it, for MESSAGE_TOO_LARGE); keep that in the error.
                results.append((b, error_for(p.error_code, f"producing to {b.topic}-{b.partition}: "
                                                           f"{p.error_message}"), -1, -1))
            else:
                results.append((b, p.error_code, p.base_offset, p.log_append_time_ms))
        return results

    def poll_done(self):
        """Batches finished without an answer to wait for (acks=0), and those
        on connections given up: a request unanswered for request_timeout_ms
        closes its connection (the answer can no longer be matched), failing
        everything in flight on it retriably, as the Java client does."""
        now = time.time_ns() // 1_000_000
        for node, conn in list(self._conns.items()):
            q = self._pending.get(conn)
            if q and now - q[0][1] >= self.request_timeout_ms:
                self._drop(node, f"no answer within request_timeout_ms={self.request_timeout_ms}")
        done, self._done = self._done, []
        return done

    def init_producer_id(self) -> tuple[int, int]:
        return self.metadata.init_producer_id()

    def invalidate(self, topic: str) -> None:
        self.metadata.invalidate(topic)

    def _drop(self, node: int, exc) -> None:
        """Close node's connection; requests still awaiting answers on it are
        lost with it, so their batches fail (retriably) too."""
        conn = self._conns.pop(node, None)
        if conn is not None:
            conn.close()
            lost = ConnectionClosedError(f"connection to broker {node} lost: {exc}")
            for _cid, _sent, group in self._pending.pop(conn, ()):
                self._done.extend((b, lost, -1, -1) for b in group)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        self._pending.clear()


class EmbeddedTransport:
    """Appends batches to a local directory: the batches of one send() go to
    the LocalStore's broker core in one trip (LocalStore.append_many), so a
    drain costs one thread switch, not one per batch; results are ready at
    once (poll_done). The sender thread only."""

    appends_in_place = True   # the Sender seals batches for it instead of building bytes

    def __init__(self, store, *, transactional_id: str | None = None, request_timeout_ms: int = 30_000):
        self.store = store
        # Sent with every append, as a Produce request's field of that name.
        self.transactional_id = transactional_id
        self.request_timeout_ms = request_timeout_ms   # the transactional sender's AddPartitionsToTxn wait
        self._done: list = []

    def send(self, batches, now: int):
        done = self._done
        # seal(), not build(): the log appends the batch's own buffer in
        # place (no copy into a bytes object, none into the log's scratch),
        # which is then freed at once rather than with the batch.
        sealed = [b.seal(b.producer_id, b.producer_epoch, b.base_sequence, b.transactional) for b in batches]
        try:
            results = self.store.append_many([(b.topic, b.partition, data) for b, data in zip(batches, sealed)],
                                             self.transactional_id)
        except errors.PylogError as e:   # the store closed: every batch fails
            results = [e] * len(batches)
        for b, data, r in zip(batches, sealed, results):
            if isinstance(r, BaseException):
                done.append((b, r, -1, -1))   # the buffer stays: a retry seals it again
            else:
                done.append((b, 0, r[0], r[1]))
                if isinstance(data, memoryview):
                    data.release()
                    b.drop_buffer()   # kept instead while anything else still views it
        return []

    def waitables(self):
        return []

    def receive(self, conn):   # pragma: no cover - nothing to wait for
        return []

    def poll_done(self):
        done, self._done = self._done, []
        return done

    def init_producer_id(self) -> tuple[int, int]:
        return self.store.init_producer_id()

    def invalidate(self, topic: str) -> None:
        pass

    def close(self) -> None:
        pass
