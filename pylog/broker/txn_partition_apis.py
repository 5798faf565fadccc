"""The partition side of transactions: WriteTxnMarkers (27), which a
transaction coordinator sends to partition leaders to end a transaction, and
DescribeProducers (61), an admin's view of a partition's producer state
(KAFKA-NOTES §6.2, §6.3; Kafka's KafkaApis handlers of the same names).

WriteTxnMarkers is inter-broker. Kafka serves it to principals with
CLUSTER_ACTION on the cluster (coordinators, and admins aborting a hanging
transaction with kafka-transactions.sh abort); pylog has no authorizer yet,
so a broker answers it only to a peer whose address is one of the live
brokers' (the metadata cache's endpoints, resolved off the loop; a lone
broker: its own), and answers anyone else CLUSTER_AUTHORIZATION_FAILED for
every partition, as Kafka answers a principal without CLUSTER_ACTION.
Nothing is written then. This stops a client on another host; a client on a
broker's own host is only stopped once authorization exists (the security
issue). A lone broker's coordinator calls write_markers in-process.

Each marker is one control batch appended on the leader with the producer's
id and epoch (Partition.append_txn_marker), answered once the high watermark
passed it (the purgatory, as acks=all), so a coordinator never counts a
marker that a leader change could lose. A `__consumer_offsets` marker is
appended by the group coordinator (GroupCoordinator.write_txn_marker, Kafka's
completeTransaction), which applies it where it sits in the log and refuses
it with NOT_LEADER_OR_FOLLOWER while it loads the partition; once replicated
the transaction's offsets become the group's (committed) or are dropped.

Runs on the broker's event loop only.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

from ..errors import NotLeaderOrFollowerError, PylogError, code_for
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from .purgatory import HIGH_WATERMARK, DelayedOperation

log = logging.getLogger("pylog.broker")

OFFSETS_TOPIC = "__consumer_offsets"
# Kafka appends markers with the broker's request.timeout.ms (default 30000).
MARKER_APPEND_TIMEOUT_S = 30.0


class TxnPartitionApis:
    def __init__(self, broker, purgatory):
        self.broker = broker
        self.purgatory = purgatory
        self._resolved: dict[str, frozenset] = {}   # broker host -> its addresses

    def table(self, api_versions) -> dict:
        return {api_versions.WRITE_TXN_MARKERS: self.write_txn_markers,
                api_versions.DESCRIBE_PRODUCERS: self.describe_producers}

    # ---- WriteTxnMarkers (27) ----

    def write_txn_markers(self, header, req):
        """The wire handler."""
        async def checked():
            if not await self._from_a_broker(header.peer_host):
                log.warning("WriteTxnMarkers from %s refused: not the address of a live broker",
                            header.peer_host)
                return _refuse_all(req, Errors.CLUSTER_AUTHORIZATION_FAILED)
            return await self.write_markers(req)
        return checked()

    async def _from_a_broker(self, peer_host: str) -> bool:
        brokers = self.broker.metadata_cache.brokers
        if not peer_host or not brokers:
            return False
        loop = asyncio.get_running_loop()
        for ep in list(brokers.values()):
            addrs = self._resolved.get(ep.host)
            if addrs is None:
                addrs = await loop.run_in_executor(None, _addresses_of, ep.host)
                self._resolved[ep.host] = addrs
            if peer_host in addrs:
                return True
        return False

    async def write_markers(self, req):
        """The body (the in-process coordinator's entry too): append every
        marker of req (a WriteTxnMarkersRequest) on the partitions this broker
        leads; a WriteTxnMarkersResponse once each is replicated or failed."""
        R = m.WriteTxnMarkersResponse
        results = []
        waiting = []   # (Partition, marker offset, partition result, marker, topic name)
        for marker in req.markers:
            topics = []
            for t in marker.topics:
                parts = []
                for index in t.partition_indexes:
                    res = R.WritableTxnMarkerPartitionResult(partition_index=index, error_code=0)
                    parts.append(res)
                    try:
                        p = self.broker.log_manager.get_partition(t.name, index)
                        if t.name == OFFSETS_TOPIC:
                            # Through the group coordinator, which applies it in log order.
                            out = self.broker.groups.write_txn_marker(
                                index, marker.producer_id, marker.producer_epoch, marker.coordinator_epoch,
                                marker.transaction_result)
                            offset, write = (await out) if asyncio.iscoroutine(out) else out
                        else:
                            offset = p.append_txn_marker(marker.producer_id, marker.producer_epoch,
                                                         marker.coordinator_epoch, marker.transaction_result).last_offset
                            write = None
                    except (PylogError, OSError) as e:
                        res.error_code = code_for(e)
                        log.info("marker for producer %d on %s-%d refused: %s", marker.producer_id, t.name,
                                 index, e)
                        continue
                    waiting.append((p, offset, res, write))
                topics.append(R.WritableTxnMarkerTopicResult(name=t.name, partitions=parts))
            results.append(R.WritableTxnMarkerResult(producer_id=marker.producer_id, topics=topics))
        if waiting:
            op = _DelayedMarkers(waiting, self.broker)
            await self.purgatory.wait(op, {w[0] for w in waiting}, (HIGH_WATERMARK,), MARKER_APPEND_TIMEOUT_S)
            for p, offset, res, write in waiting:
                code = p.produce_outcome(offset)
                res.error_code = Errors.REQUEST_TIMED_OUT if code is None else code
                if write is not None:
                    self.broker.groups.txn_marker_replicated(p.index, write, res.error_code)
        return R(markers=results)

    # ---- DescribeProducers (61) ----

    def describe_producers(self, header, req):
        """Per partition this broker leads: its active producers (Kafka's
        ReplicaManager.activeProducerState)."""
        R = m.DescribeProducersResponse
        topics = []
        for t in req.topics:
            parts = []
            for index in t.partition_indexes:
                try:
                    p = self.broker.log_manager.get_partition(t.name, index)
                    if not p.is_leader:
                        raise NotLeaderOrFollowerError(f"this broker is not the leader of {p.topic}-{p.index}")
                    producers = [R.ProducerState(
                        producer_id=e.producer_id, producer_epoch=e.producer_epoch, last_sequence=e.last_sequence,
                        last_timestamp=e.last_timestamp, coordinator_epoch=e.coordinator_epoch,
                        current_txn_start_offset=e.current_txn_first_offset)
                        for e in p.producer_state.producers.values()]
                    parts.append(R.PartitionResponse(partition_index=index, error_code=0, error_message=None,
                                                     active_producers=producers))
                except PylogError as e:
                    parts.append(R.PartitionResponse(partition_index=index, error_code=code_for(e),
                                                     error_message=str(e) or None, active_producers=[]))
            topics.append(R.TopicResponse(name=t.name, partitions=parts))
        return R(throttle_time_ms=0, topics=topics)


class _DelayedMarkers(DelayedOperation):
    """Markers appended: complete once each has an outcome (committed, ISR
    too small, leadership lost) or the broker stops. Event-loop thread only."""

    __slots__ = ("broker", "waiting")

    def __init__(self, waiting, broker):
        self.waiting = waiting
        self.broker = broker

    def try_complete(self) -> bool:
        if self.broker.stopping:
            return True
        return all(p.produce_outcome(offset) is not None for p, offset, _r, _w in self.waiting)


def _refuse_all(req, code):
    R = m.WriteTxnMarkersResponse
    return R(markers=[R.WritableTxnMarkerResult(producer_id=mk.producer_id, topics=[
        R.WritableTxnMarkerTopicResult(name=t.name, partitions=[
            R.WritableTxnMarkerPartitionResult(partition_index=i, error_code=code) for i in t.partition_indexes])
        for t in mk.topics]) for mk in req.markers])


def _addresses_of(host: str) -> frozenset:
    """host's addresses (a worker thread: resolving may wait on DNS)."""
    try:
        ipaddress.ip_address(host)
        return frozenset({host})
    except ValueError:
        pass
    try:
        return frozenset(info[4][0] for info in socket.getaddrinfo(host, None))
    except OSError:
        return frozenset()
