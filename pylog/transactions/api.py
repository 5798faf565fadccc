"""The transaction APIs on the wire: FindCoordinator with key_type 1,
InitProducerId (22), AddPartitionsToTxn (24), AddOffsetsToTxn (25), EndTxn
(26), TxnOffsetCommit (28, answered by the group coordinator),
DescribeTransactions (65), ListTransactions (66). Each turns a decoded request
into TransactionCoordinator calls (run as events of the transactional id's
partition) and a response; those that write return coroutines, answered
once the write is replicated.

PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH to the versions that
predate it (InitProducerId < 4; AddPartitionsToTxn, AddOffsetsToTxn, EndTxn
< 2), as Kafka's KafkaApis does.

Threads: the broker's event loop only.
"""
from __future__ import annotations

import asyncio
import logging

from ..coordinator.runtime import operation_error
from ..groups import offsets_topic as ot
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from .coordinator import NEED_PRODUCER_ID

log = logging.getLogger("pylog.transactions")

KEY_GROUP, KEY_TRANSACTION = 0, 1
FIND_COORDINATOR, INIT_PRODUCER_ID, ADD_PARTITIONS_TO_TXN, ADD_OFFSETS_TO_TXN = 10, 22, 24, 25
END_TXN, TXN_OFFSET_COMMIT, DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 26, 28, 65, 66


def _fenced_as(code: int, version: int, first_version_with_fenced: int) -> int:
    if code == Errors.PRODUCER_FENCED and version < first_version_with_fenced:
        return Errors.INVALID_PRODUCER_EPOCH
    return code


async def _then(coro, fn):
    return fn(await coro)


def _answer(out, fn):
    """fn(result) now, or a coroutine when the event's result is one."""
    if asyncio.iscoroutine(out) or isinstance(out, asyncio.Future) or hasattr(out, "__await__"):
        return _then(out, fn)
    return fn(out)


class TransactionApis:
    """Wire handlers over a TransactionCoordinator; `groups` the group
    coordinator (AddOffsetsToTxn's placement, TxnOffsetCommit), `previous`
    the handlers these replace for what is not transactional (FindCoordinator
    of groups, InitProducerId without a transactional id). Event-loop thread
    only."""

    def __init__(self, coordinator, groups, allocate_producer_id, previous: dict):
        self.coordinator = coordinator
        self.groups = groups
        self.allocate_producer_id = allocate_producer_id
        self.previous = previous
        self.verifier = PartitionVerifier(coordinator)

    def table(self):
        return {FIND_COORDINATOR: self.find_coordinator, INIT_PRODUCER_ID: self.init_producer_id,
                ADD_PARTITIONS_TO_TXN: self.add_partitions_to_txn, ADD_OFFSETS_TO_TXN: self.add_offsets_to_txn,
                END_TXN: self.end_txn, TXN_OFFSET_COMMIT: self.txn_offset_commit,
                DESCRIBE_TRANSACTIONS: self.describe_transactions, LIST_TRANSACTIONS: self.list_transactions}

    # ---- FindCoordinator (10), key_type 1 ----

    def find_coordinator(self, header, req):
        if header.request_api_version >= 4:   # batched keys: the group APIs answer each, with this lookup
            return self.previous[FIND_COORDINATOR](header, req, {KEY_TRANSACTION: self.coordinator.coordinator_for})
        if req.key_type != KEY_TRANSACTION or header.request_api_version == 0:   # v0: groups only
            return self.previous[FIND_COORDINATOR](header, req)
        code, node_id, host, port = self.coordinator.coordinator_for(req.key)
        return m.FindCoordinatorResponse(throttle_time_ms=0, error_code=code, error_message=None,
                                         node_id=node_id, host=host, port=port)

    # ---- InitProducerId (22) ----

    def init_producer_id(self, header, req):
        if req.transactional_id is None:
            return self.previous[INIT_PRODUCER_ID](header, req)
        version = header.request_api_version
        tid = req.transactional_id
        pid, epoch = (req.producer_id, req.producer_epoch) if version >= 3 else (-1, -1)
        R = m.InitProducerIdResponse

        def respond(result):
            code, p, e = result
            return R(throttle_time_ms=0, error_code=_fenced_as(code, version, 4), producer_id=p, producer_epoch=e)

        c = self.coordinator
        if not tid or not c.validate_timeout(req.transaction_timeout_ms):
            return respond(c.init_producer_id(tid, req.transaction_timeout_ms, pid, epoch))
        wrong = c.coordinator_error(tid)
        if wrong:
            return respond((wrong, -1, -1))
        out = c.event(tid, c.init_producer_id, tid, req.transaction_timeout_ms, pid, epoch)
        if out is NEED_PRODUCER_ID or hasattr(out, "__await__"):
            return self._init_slow(tid, req.transaction_timeout_ms, pid, epoch, out, respond)
        return respond(out)

    async def _init_slow(self, tid, timeout_ms, pid, epoch, out, respond):
        c = self.coordinator
        if out is not NEED_PRODUCER_ID:
            out = await out
        if out is NEED_PRODUCER_ID:
            try:
                fresh = await self.allocate_producer_id()
            except Exception as e:  # the cluster's store unreachable: the client retries
                log.warning("no producer id for transactional id %s: %s", tid, e)
                return respond((Errors.COORDINATOR_NOT_AVAILABLE, -1, -1))
            out = c.event(tid, c.init_producer_id, tid, timeout_ms, pid, epoch, fresh)
            if hasattr(out, "__await__"):
                out = await out
            if out is NEED_PRODUCER_ID:   # cannot happen: the id was given
                out = (Errors.CONCURRENT_TRANSACTIONS, -1, -1)
        return respond(out)

    # ---- AddPartitionsToTxn (24) ----

    def add_partitions_to_txn(self, header, req):
        version = header.request_api_version
        if version >= 4:
            return self._verify_partitions(req)
        R = m.AddPartitionsToTxnResponse
        parts = [(t.name, p) for t in req.v3_and_below_topics for p in t.partitions]

        def respond(codes):
            by_topic: dict[str, list] = {}
            for (topic, p), code in codes.items():
                by_topic.setdefault(topic, []).append(R.AddPartitionsToTxnPartitionResult(
                    partition_index=p, partition_error_code=_fenced_as(code, version, 2)))
            return R(throttle_time_ms=0, error_code=0, results_by_topic_v3_and_below=[
                R.AddPartitionsToTxnTopicResult(name=t, results_by_partition=rs) for t, rs in by_topic.items()])

        writer = self.coordinator.writer
        missing = {tp for tp in parts if not writer.partition_exists(*tp)}
        if missing:
            # Kafka's KafkaApis: nothing is added when any partition is unknown.
            return respond({tp: Errors.UNKNOWN_TOPIC_OR_PARTITION if tp in missing else Errors.OPERATION_NOT_ATTEMPTED
                            for tp in parts})
        return self._add(req.v3_and_below_transactional_id, req.v3_and_below_producer_id,
                         req.v3_and_below_producer_epoch, parts, lambda code: respond({tp: code for tp in parts}))

    def _add(self, tid, pid, epoch, parts, respond):
        c = self.coordinator
        wrong = c.coordinator_error(tid) if tid else Errors.INVALID_REQUEST
        if wrong:
            return respond(wrong)
        return _answer(c.event(tid, c.add_partitions, tid, pid, epoch, parts), respond)

    def _verify_partitions(self, req):
        """v4+: from brokers, verify_only (Kafka's
        handleVerifyPartitionsInTransaction); adding through v4 is KIP-890
        part 2, which this broker does not serve."""
        R = m.AddPartitionsToTxnResponse
        c = self.coordinator
        results = []
        for txn in req.transactions:
            parts = [(t.name, p) for t in txn.topics for p in t.partitions]
            if not txn.verify_only:
                codes = {tp: Errors.UNSUPPORTED_VERSION for tp in parts}
            else:
                wrong = c.coordinator_error(txn.transactional_id) if txn.transactional_id else Errors.INVALID_REQUEST
                out = wrong or c.event(txn.transactional_id, c.verify_partitions, txn.transactional_id,
                                       txn.producer_id, txn.producer_epoch, parts)
                codes = out if isinstance(out, dict) else {tp: out for tp in parts}
            by_topic: dict[str, list] = {}
            for (topic, p), code in codes.items():
                by_topic.setdefault(topic, []).append(R.AddPartitionsToTxnPartitionResult(
                    partition_index=p, partition_error_code=code))
            results.append(R.AddPartitionsToTxnResult(transactional_id=txn.transactional_id, topic_results=[
                R.AddPartitionsToTxnTopicResult(name=t, results_by_partition=rs) for t, rs in by_topic.items()]))
        return R(throttle_time_ms=0, error_code=0, results_by_transaction=results)

    # ---- AddOffsetsToTxn (25) ----

    def add_offsets_to_txn(self, header, req):
        version = header.request_api_version

        def respond(code):
            return m.AddOffsetsToTxnResponse(throttle_time_ms=0, error_code=_fenced_as(code, version, 2))

        if not req.group_id:
            return respond(Errors.INVALID_GROUP_ID)
        self.groups.ensure_offsets_topic()
        tp = (ot.TOPIC, self.groups.partition_for(req.group_id))
        return self._add(req.transactional_id, req.producer_id, req.producer_epoch, [tp], respond)

    # ---- EndTxn (26) ----

    def end_txn(self, header, req):
        version = header.request_api_version

        def respond(code):
            return m.EndTxnResponse(throttle_time_ms=0, error_code=_fenced_as(code, version, 2),
                                    producer_id=-1, producer_epoch=-1)

        c = self.coordinator
        tid = req.transactional_id
        wrong = c.coordinator_error(tid) if tid else Errors.INVALID_REQUEST
        if wrong:
            return respond(wrong)
        return _answer(c.event(tid, c.end_txn, tid, req.producer_id, req.producer_epoch, req.committed), respond)

    # ---- TxnOffsetCommit (28) ----

    def txn_offset_commit(self, header, req):
        version = header.request_api_version
        R = m.TxnOffsetCommitResponse
        offsets = [(t.name, p.partition_index, p.committed_offset,
                    p.committed_leader_epoch if version >= 2 else -1, p.committed_metadata)
                   for t in req.topics for p in t.partitions]

        def respond(codes):
            return R(throttle_time_ms=0, topics=[R.TxnOffsetCommitResponseTopic(name=t.name, partitions=[
                R.TxnOffsetCommitResponsePartition(partition_index=p.partition_index,
                                                   error_code=codes[(t.name, p.partition_index)])
                for p in t.partitions]) for t in req.topics])

        g = self.groups
        wrong = g.coordinator_error(req.group_id) if req.group_id else Errors.INVALID_GROUP_ID
        if wrong:
            return respond({(t, p): wrong for t, p, *_ in offsets})
        args = (req.transactional_id, req.group_id, req.producer_id, req.producer_epoch,
                req.generation_id if version >= 3 else -1, req.member_id if version >= 3 else "",
                req.group_instance_id if version >= 3 else None, offsets)
        return self._verified_commit(req, args, respond)

    async def _verified_commit(self, req, args, respond):
        """KIP-890 part 1 (Kafka's transaction.partition.verification.enable,
        on by default): the group's __consumer_offsets partition must be in the
        producer's transaction (AddOffsetsToTxn) before its offsets are
        written; else INVALID_TXN_STATE, and nothing is written."""
        g = self.groups
        tp = (ot.TOPIC, g.partition_for(req.group_id))
        code = await self.verifier.verify(req.transactional_id, req.producer_id, req.producer_epoch, tp)
        if code:
            return respond({(t, p): code for t, p, *_ in args[-1]})
        out = g.runtime.schedule(tp[1], g.txn_commit_offsets, *args, failed=lambda code: {
            (t, p): operation_error(code) for t, p, *_ in args[-1]})
        if hasattr(out, "__await__"):
            out = await out
        return respond(out)

    # ---- DescribeTransactions (65) / ListTransactions (66) ----

    def describe_transactions(self, header, req):
        R = m.DescribeTransactionsResponse
        out = []
        for tid in req.transactional_ids:
            code, meta = self.coordinator.describe(tid)
            if meta is None:
                out.append(R.TransactionState(error_code=code, transactional_id=tid, transaction_state="",
                                              transaction_timeout_ms=0, transaction_start_time_ms=-1,
                                              producer_id=-1, producer_epoch=-1, topics=[]))
                continue
            by_topic: dict[str, list[int]] = {}
            for topic, p in sorted(meta.partitions):
                by_topic.setdefault(topic, []).append(p)
            out.append(R.TransactionState(
                error_code=0, transactional_id=tid, transaction_state=meta.state.kafka_name,
                transaction_timeout_ms=meta.timeout_ms, transaction_start_time_ms=meta.start_ms,
                producer_id=meta.producer_id, producer_epoch=meta.producer_epoch,
                topics=[R.TopicData(topic=t, partitions=ps) for t, ps in by_topic.items()]))
        return R(throttle_time_ms=0, transaction_states=out)

    def list_transactions(self, header, req):
        R = m.ListTransactionsResponse
        duration = req.duration_filter if header.request_api_version >= 1 else -1
        code, unknown, metas = self.coordinator.list_transactions(req.state_filters, req.producer_id_filters,
                                                                  duration)
        return R(throttle_time_ms=0, error_code=code, unknown_state_filters=unknown, transaction_states=[
            R.TransactionState(transactional_id=meta.transactional_id, producer_id=meta.producer_id,
                               transaction_state=meta.state.kafka_name) for meta in metas])


class PartitionVerifier:
    """Asks the transaction coordinator of an id whether a partition is in
    the producer's transaction (Kafka's AddPartitionsToTxnManager): this
    broker's own coordinator in-process, another broker's with
    AddPartitionsToTxn v4 verify_only. Codes as Kafka gives them to a client
    of the pre-KIP-890-part-2 versions: TRANSACTION_ABORTABLE (not in the
    transaction) as INVALID_TXN_STATE, PRODUCER_FENCED as
    INVALID_PRODUCER_EPOCH. Event-loop thread only; one request at a time per
    broker connection."""

    VERSION = 4

    def __init__(self, coordinator):
        self.coordinator = coordinator
        self._conns: dict = {}    # (host, port) -> (LeaderConnection, asyncio.Lock)

    async def verify(self, transactional_id, producer_id, producer_epoch, tp) -> int:
        c = self.coordinator
        if not transactional_id:
            return Errors.INVALID_REQUEST
        code, node_id, host, port = c.coordinator_for(transactional_id)
        if code:
            return code
        if node_id == c.writer.node_id:
            out = c.verify_partitions(transactional_id, producer_id, producer_epoch, [tp])
        else:
            try:
                out = await self._remote(host, port, transactional_id, producer_id, producer_epoch, tp)
            except Exception as e:  # the coordinator unreachable: the client retries
                log.info("verifying %s in %s's transaction at %s:%d failed: %s", tp, transactional_id, host,
                         port, e)
                return Errors.COORDINATOR_NOT_AVAILABLE
        code = out.get(tp, Errors.UNKNOWN_SERVER_ERROR) if isinstance(out, dict) else out
        if code == Errors.PRODUCER_FENCED:
            return Errors.INVALID_PRODUCER_EPOCH
        if code == Errors.TRANSACTION_ABORTABLE:
            return Errors.INVALID_TXN_STATE
        return code

    async def _remote(self, host, port, transactional_id, producer_id, producer_epoch, tp):
        from ..broker.replica_fetcher import LeaderConnection
        R = m.AddPartitionsToTxnRequest
        req = R(transactions=[R.AddPartitionsToTxnTransaction(
            transactional_id=transactional_id, producer_id=producer_id, producer_epoch=producer_epoch,
            verify_only=True, topics=[R.AddPartitionsToTxnTopic(name=tp[0], partitions=[tp[1]])])])
        entry = self._conns.get((host, port))
        if entry is None:
            entry = self._conns[(host, port)] = (LeaderConnection(
                host, port, "txn-verify", self.coordinator.config.inter_broker_tls(),
                getattr(self.coordinator.writer.broker, "inter_broker_sasl", None)), asyncio.Lock())
        conn, lock = entry
        async with lock:
            resp = await conn.request(req, self.VERSION)
        if resp.error_code:
            return resp.error_code
        for txn in resp.results_by_transaction:
            for t in txn.topic_results:
                for p in t.results_by_partition:
                    if (t.name, p.partition_index) == tp:
                        return {tp: p.partition_error_code}
        return Errors.UNKNOWN_SERVER_ERROR

    def close(self):
        for conn, _lock in self._conns.values():
            conn.close()
        self._conns.clear()
