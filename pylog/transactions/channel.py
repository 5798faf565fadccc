"""The marker channel (Kafka's TransactionMarkerChannelManager and
TransactionMarkerRequestCompletionHandler): writes a transaction's COMMIT or
ABORT marker to the leader of each of its partitions with WriteTxnMarkers
(API 27), retried until every one is written, then tells the coordinator.

Markers pending for one broker go out together in one request, at most one
request in flight per broker; a partition this broker leads is written
in-process through the WriteTxnMarkers handler's own body (a lone broker does
not serve the API on its listener). The leader is looked up in the metadata
cache each time a marker is (re)sent, so a marker follows its partition
across leader changes. Per partition result, as Kafka's completion handler:
NONE done; NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
NOT_ENOUGH_REPLICAS(_AFTER_APPEND), REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR
(and a failed request) retried after a backoff; a partition whose topic is
gone, or UNSUPPORTED_FOR_MESSAGE_FORMAT / UNSUPPORTED_VERSION, is given up
(done); INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_FENCED drop the
whole transaction's markers (a newer coordinator or epoch owns it). A
transaction whose coordinator partition was unloaded (or loaded again under
another coordinator epoch) is dropped: its next coordinator resumes it.

Also here: the broker side of the coordinator's PartitionWriter, which adds
the leader epoch of a `__transaction_state` partition (the coordinator epoch).

Threads: the broker's event loop only.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..broker.coordinator_writer import BrokerPartitionWriter
from ..broker.replica_fetcher import LeaderConnection
from ..protocol import messages as m
from ..protocol.error_codes import Errors

log = logging.getLogger("pylog.transactions")

RETRY_BACKOFF_S = 0.1
REQUEST_TIMEOUT_S = 30.0
WRITE_TXN_MARKERS = 27

_RETRY = frozenset({Errors.NOT_LEADER_OR_FOLLOWER, Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.NOT_ENOUGH_REPLICAS,
                    Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND, Errors.REQUEST_TIMED_OUT, Errors.KAFKA_STORAGE_ERROR,
                    Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.UNKNOWN_SERVER_ERROR,
                    Errors.CLUSTER_AUTHORIZATION_FAILED})
_GIVE_UP = frozenset({Errors.UNSUPPORTED_FOR_MESSAGE_FORMAT, Errors.UNSUPPORTED_VERSION})
_FENCED = frozenset({Errors.INVALID_PRODUCER_EPOCH, Errors.TRANSACTION_COORDINATOR_FENCED})


class TxnPartitionWriter(BrokerPartitionWriter):
    """The coordinator writer of __transaction_state: also the leader epoch of
    a partition led here (Kafka's coordinator epoch). Event-loop thread only."""

    def leader_epoch(self, topic: str, index: int) -> int:
        p = self.logs.partitions.get((topic, index))
        return p.leader_epoch if p is not None else -1


class _Txn:
    """One transaction's markers still to write. Event-loop thread only."""

    __slots__ = ("index", "coordinator_epoch", "transactional_id", "producer_id", "producer_epoch", "commit",
                 "remaining", "inflight", "done", "dropped")

    def __init__(self, index, coordinator_epoch, transactional_id, producer_id, producer_epoch, commit,
                 partitions, done):
        self.index, self.coordinator_epoch = index, coordinator_epoch
        self.transactional_id, self.producer_id, self.producer_epoch = transactional_id, producer_id, producer_epoch
        self.commit = commit
        self.remaining = set(partitions)
        self.inflight: set = set()
        self.done = done
        self.dropped = False


class MarkerChannel:
    """See the module docstring. `is_current(index, coordinator_epoch)` says
    whether the coordinator still owns a transaction's partition under that
    epoch. Event-loop thread only."""

    def __init__(self, broker, is_current):
        self.broker = broker
        self.is_current = is_current
        self._txns: list[_Txn] = []
        self._busy: set[int] = set()          # brokers with a request in flight
        self._conns: dict[int, LeaderConnection] = {}
        self._wake = None
        self._task = None
        self._sends: set = set()
        self._failure_logged: dict[int, float] = {}   # broker id -> when a failure was last logged

    # ---- what the coordinator calls ----

    def send(self, index, coordinator_epoch, transactional_id, producer_id, producer_epoch, commit, partitions,
             done):
        txn = _Txn(index, coordinator_epoch, transactional_id, producer_id, producer_epoch, commit, partitions,
                   done)
        self._txns.append(txn)
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.ensure_future(self._run())
        self._wake.set()

    def forget(self, index: int):
        """The coordinator partition was unloaded: its transactions' markers
        are its next coordinator's to send."""
        for txn in self._txns:
            if txn.index == index:
                txn.dropped = True
        self._txns = [t for t in self._txns if not t.dropped]

    async def stop(self):
        tasks = [t for t in (self._task, *self._sends) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        for c in self._conns.values():
            c.close()
        self._conns.clear()

    def pending(self) -> int:
        return len(self._txns)

    # ---- the loop ----

    async def _run(self):
        while True:
            await self._wake.wait()
            self._wake.clear()
            unresolved = self._dispatch()
            if unresolved:
                asyncio.get_running_loop().call_later(RETRY_BACKOFF_S, self._wake.set)

    def _dispatch(self) -> bool:
        """Start a request to every broker that is idle and leads a partition
        with a pending marker; True when some partition has no leader now."""
        cache = self.broker.metadata_cache
        by_broker: dict[int, dict[_Txn, list]] = {}
        unresolved = False
        for txn in list(self._txns):
            if txn.dropped:
                continue
            if not self.is_current(txn.index, txn.coordinator_epoch):
                self._drop(txn, "its coordinator moved")
                continue
            for tp in list(txn.remaining - txn.inflight):
                topic, part = tp
                st = cache.topics.get(topic, {}).get(part)
                if st is None:
                    # Deleted (or never was): Kafka skips such partitions.
                    txn.remaining.discard(tp)
                    continue
                leader = st.leader
                if leader < 0 or (leader != self.broker.broker_id and leader not in cache.brokers):
                    unresolved = True
                    continue
                by_broker.setdefault(leader, {}).setdefault(txn, []).append(tp)
            self._maybe_finish(txn)
        for broker_id, items in by_broker.items():
            if broker_id in self._busy:
                continue
            self._busy.add(broker_id)
            for txn, tps in items.items():
                txn.inflight.update(tps)
            t = asyncio.ensure_future(self._send_to(broker_id, items))
            self._sends.add(t)
            t.add_done_callback(self._sends.discard)
        return unresolved

    def _request(self, items) -> m.WriteTxnMarkersRequest:
        R = m.WriteTxnMarkersRequest
        markers = []
        for txn, tps in items.items():
            by_topic: dict[str, list[int]] = {}
            for topic, p in sorted(tps):
                by_topic.setdefault(topic, []).append(p)
            markers.append(R.WritableTxnMarker(
                producer_id=txn.producer_id, producer_epoch=txn.producer_epoch, transaction_result=txn.commit,
                topics=[R.WritableTxnMarkerTopic(name=t, partition_indexes=ps) for t, ps in by_topic.items()],
                coordinator_epoch=txn.coordinator_epoch))
        return R(markers=markers)

    async def _send_to(self, broker_id, items):
        retry = False
        try:
            req = self._request(items)
            try:
                resp = await self._call(broker_id, req)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker unreachable, the connection lost: all again
                now = time.monotonic()
                if now - self._failure_logged.get(broker_id, -60.0) >= 10.0:   # retried every 100 ms
                    self._failure_logged[broker_id] = now
                    log.info("WriteTxnMarkers to broker %d failed: %s; retrying", broker_id, e)
                conn = self._conns.pop(broker_id, None)
                if conn is not None:
                    conn.close()
                retry = True
                return
            retry = self._handle(items, resp)
        finally:
            for txn, tps in items.items():
                txn.inflight.difference_update(tps)
            self._busy.discard(broker_id)
            if self._wake is not None:
                if retry:
                    asyncio.get_running_loop().call_later(RETRY_BACKOFF_S, self._wake.set)
                else:
                    self._wake.set()

    async def _call(self, broker_id, req):
        if broker_id == self.broker.broker_id:
            return await self.broker.handlers.txn_partition_apis.write_markers(req)
        ep = self.broker.metadata_cache.brokers.get(broker_id)
        if ep is None:
            raise ConnectionError(f"broker {broker_id} is not known")
        conn = self._conns.get(broker_id)
        if conn is None or (conn.host, conn.port) != (ep.host, ep.port):
            if conn is not None:
                conn.close()
            conn = self._conns[broker_id] = LeaderConnection(ep.host, ep.port, f"txn-markers-{self.broker.broker_id}",
                                                             self.broker.config.inter_broker_tls(),
                                                             self.broker.inter_broker_sasl)
        from ..broker import api_versions as av
        version = min(1, av.ADVERTISED.get(WRITE_TXN_MARKERS, (0, 0))[1])
        return await conn.request(req, version, REQUEST_TIMEOUT_S)

    def _handle(self, items, resp) -> bool:
        """Apply one response; True when something must be retried."""
        retry = False
        results = {}
        for mr in resp.markers:
            for t in mr.topics:
                for p in t.partitions:
                    results[(mr.producer_id, t.name, p.partition_index)] = p.error_code
        for txn, tps in items.items():
            if txn.dropped:
                continue
            for tp in tps:
                code = results.get((txn.producer_id, *tp), Errors.UNKNOWN_SERVER_ERROR)
                if code == Errors.NONE or code in _GIVE_UP:
                    if code:
                        log.warning("transactional id %s: marker on %s-%d given up: error %d",
                                    txn.transactional_id, tp[0], tp[1], code)
                    txn.remaining.discard(tp)
                elif code in _FENCED:
                    self._drop(txn, f"error {code} on {tp[0]}-{tp[1]}")
                    break
                else:
                    if code not in _RETRY:
                        log.warning("transactional id %s: marker on %s-%d: unexpected error %d; retrying",
                                    txn.transactional_id, tp[0], tp[1], code)
                    retry = True
            self._maybe_finish(txn)
        return retry

    def _maybe_finish(self, txn: _Txn):
        if txn.dropped or txn.remaining:
            return
        txn.dropped = True
        self._txns = [t for t in self._txns if t is not txn]
        txn.done(txn.index, txn.coordinator_epoch, txn.transactional_id, txn.producer_id, txn.producer_epoch,
                 txn.commit)

    def _drop(self, txn: _Txn, why: str):
        log.info("transactional id %s: markers of producer %d epoch %d dropped: %s", txn.transactional_id,
                 txn.producer_id, txn.producer_epoch, why)
        txn.dropped = True
        self._txns = [t for t in self._txns if t is not txn]

