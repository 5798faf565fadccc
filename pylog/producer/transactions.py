"""The transactional producer's client state machine (Kafka's client
TransactionManager, librdkafka's rdkafka_txnmgr.c): what a Producer with a
transactional_id does around its batches.

    UNINITIALIZED -init_transactions-> READY -begin_transaction-> IN_TRANSACTION
    IN_TRANSACTION -commit_transaction-> COMMITTING -> READY
    IN_TRANSACTION / ABORTABLE_ERROR -abort_transaction-> ABORTING -> READY
    any -fenced, unauthorised, unexpected-> FATAL_ERROR (only close() left)

Requests to the transaction coordinator (FindCoordinator key_type 1,
InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn) and the
TxnOffsetCommit to the group coordinator go over this object's own
connections, never the sender's produce connections; in embedded mode (a
LocalStore) they go to the store's broker core instead, through the same
handlers a broker runs for them on the wire (LocalCoordinator), so the
coordinator, its fencing and its markers are the broker's. Their errors are
sorted as Kafka's client sorts them:

- retried with retry_backoff_ms until the caller's timeout: NOT_COORDINATOR,
  COORDINATOR_NOT_AVAILABLE (the coordinator is looked up again),
  COORDINATOR_LOAD_IN_PROGRESS, CONCURRENT_TRANSACTIONS, a lost connection,
  UNKNOWN_TOPIC_OR_PARTITION while adding partitions;
- abortable (the transaction can only be aborted, then the producer goes on):
  a failed batch, TOPIC/GROUP_AUTHORIZATION_FAILED, OPERATION_NOT_ATTEMPTED,
  UNKNOWN_PRODUCER_ID / INVALID_PRODUCER_ID_MAPPING (with an epoch bump on
  abort), a consumer group's UNKNOWN_MEMBER_ID / ILLEGAL_GENERATION /
  FENCED_INSTANCE_ID on TxnOffsetCommit;
- fatal: PRODUCER_FENCED and INVALID_PRODUCER_EPOCH (both raised as
  ProducerFencedError), TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
  CLUSTER_AUTHORIZATION_FAILED, INVALID_TXN_STATE, anything unexpected.

Every error raised carries ``fatal`` and ``txn_requires_abort`` (the names
of confluent-kafka's KafkaError predicates).

Thread-safety: the user-facing methods (init_transactions, begin, commit,
abort, send_offsets_to_transaction) are meant for one user thread at a time,
as Kafka's are, and hold self._lock while they run; the sender thread calls
add_partitions(), batch_failed() and reads producer_id_and_epoch / state
(plain attribute reads, atomic under the GIL). Coordinator I/O is serialised
by self._io_lock, so the sender's AddPartitionsToTxn and a user's
AddOffsetsToTxn never share a socket at the same time.
"""
from __future__ import annotations

import logging
import threading
import time

from .. import errors
from ..client.client import Client
from ..client.errors import ConnectionClosedError, error_for
from ..client.wire import Connection
from ..protocol.error_codes import Errors
from ..protocol.messages import (
    AddOffsetsToTxnRequest,
    AddPartitionsToTxnRequest,
    EndTxnRequest,
    FindCoordinatorRequest,
    InitProducerIdRequest,
    TxnOffsetCommitRequest,
)

log = logging.getLogger("pylog.producer")

__all__ = ["ConsumerGroupMetadata", "IllegalTransactionStateError", "ProducerFencedError",
           "TransactionAbortedError", "TransactionManager"]

# The highest version of each request this client builds: the ones whose
# shape it fills in (InitProducerId v3+ carries the current producer id and
# epoch for an epoch bump; AddPartitionsToTxn v4+ is the broker-to-broker
# batched form; EndTxn v5 / InitProducerId v5+ are KIP-890 transaction
# version 2 and KIP-939, which this client does not speak).
_MAX_VERSIONS = {10: 3, 22: 4, 24: 3, 25: 3, 26: 4, 28: 3}

# Kafka's ADD_PARTITIONS_RETRY_BACKOFF_MS: the first AddPartitionsToTxn of a
# transaction answered CONCURRENT_TRANSACTIONS means the previous one is still
# completing; ask again soon rather than after retry_backoff_ms.
ADD_PARTITIONS_RETRY_BACKOFF_MS = 20

UNINITIALIZED, INITIALIZING, READY, IN_TRANSACTION, COMMITTING, ABORTING, ABORTABLE_ERROR, \
    FATAL_ERROR = ("UNINITIALIZED", "INITIALIZING", "READY", "IN_TRANSACTION",
                   "COMMITTING_TRANSACTION", "ABORTING_TRANSACTION", "ABORTABLE_ERROR",
                   "FATAL_ERROR")

# Answers after which the coordinator must be looked up again.
_FIND_AGAIN = frozenset({Errors.NOT_COORDINATOR, Errors.COORDINATOR_NOT_AVAILABLE})
# Answers that mean "the same request later".
_LATER = frozenset({Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.CONCURRENT_TRANSACTIONS})
_FENCED = frozenset({Errors.PRODUCER_FENCED, Errors.INVALID_PRODUCER_EPOCH})
# Produce answers that end the producer (Kafka's Sender: fenced or unauthorised).
_FATAL_PRODUCE = frozenset({Errors.PRODUCER_FENCED, Errors.INVALID_PRODUCER_EPOCH,
                            Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                            Errors.CLUSTER_AUTHORIZATION_FAILED})
# Produce answers after which the producer's sequence numbers no longer match
# the broker's: the abort that follows bumps the epoch (KIP-360).
_BUMP_PRODUCE = frozenset({Errors.OUT_OF_ORDER_SEQUENCE_NUMBER, Errors.UNKNOWN_PRODUCER_ID,
                           Errors.INVALID_PRODUCER_ID_MAPPING})

ProducerFencedError = errors.for_code(Errors.PRODUCER_FENCED)


class IllegalTransactionStateError(errors.PylogError):
    """A transactional method called in a state that does not allow it (Java's
    IllegalStateException): no broker code of its own."""

    retriable = False


class TransactionAbortedError(errors.PylogError):
    """A record's batch was failed because its transaction is being aborted
    (Java's TransactionAbortedException)."""

    retriable = False


class ConsumerGroupMetadata:
    """What a transaction needs to know of a consumer group member to commit
    its offsets (Java's ConsumerGroupMetadata): Consumer.group_metadata().
    Immutable; any thread."""

    __slots__ = ("group_id", "generation_id", "member_id", "group_instance_id")

    def __init__(self, group_id: str, generation_id: int = -1, member_id: str = "",
                 group_instance_id: str | None = None):
        self.group_id = group_id
        self.generation_id = generation_id
        self.member_id = member_id
        self.group_instance_id = group_instance_id

    def __repr__(self) -> str:
        return (f"ConsumerGroupMetadata(group_id={self.group_id!r}, generation_id={self.generation_id}, "
                f"member_id={self.member_id!r}, group_instance_id={self.group_instance_id!r})")


def _mark(exc: BaseException, *, fatal: bool = False, abortable: bool = False) -> BaseException:
    exc.fatal = fatal
    exc.txn_requires_abort = abortable
    return exc


def _fenced(detail: str) -> BaseException:
    exc = ProducerFencedError(
        f"PRODUCER_FENCED (90): {detail}: a newer producer with the same transactional_id "
        "has fenced this one; close it")
    exc.error_code = Errors.PRODUCER_FENCED
    return _mark(exc, fatal=True)


class TransactionManager:
    """One transactional producer's transaction state (see the module doc)."""

    def __init__(self, bootstrap_servers: str | None, transactional_id: str, *,
                 transaction_timeout_ms: int, client_id: str, request_timeout_ms: int,
                 retry_backoff_ms: int, store=None, ssl_context=None, sasl=None):
        """bootstrap_servers: network mode; store (a LocalStore) instead:
        embedded mode, every request answered by the store's broker core."""
        if not transactional_id:
            raise errors.InvalidConfigError("transactional_id must be a non-empty string")
        self.transactional_id = transactional_id
        self.transaction_timeout_ms = transaction_timeout_ms
        self.retry_backoff = retry_backoff_ms / 1000
        self._request_timeout = request_timeout_ms / 1000
        # Exactly one of the two: the in-process coordinators, or a client of
        # the cluster whose FindCoordinator answers name the connections.
        self._local = LocalCoordinator(store) if store is not None else None
        self._client = None if store is not None else Client(bootstrap_servers, client_id=client_id,
                                                             timeout=self._request_timeout,
                                                             ssl_context=ssl_context, sasl=sasl)
        self._lock = threading.RLock()
        self._io_lock = threading.Lock()
        self._coordinator: Connection | None = None
        self._group_conns: dict[str, Connection] = {}
        self.state = UNINITIALIZED
        self.producer_id_and_epoch = (-1, -1)
        self.last_error: BaseException | None = None
        self.partitions: set[tuple[str, int]] = set()   # added to the open transaction
        self._offsets_added = False
        self._epoch_bump_required = False

    # ---- coordinator I/O (under _io_lock) ---------------------------------------

    def _version(self, conn: Connection, api_key: int) -> int:
        lo, hi = conn.api_versions.get(api_key, (0, -1))
        version = min(hi, _MAX_VERSIONS[api_key])
        if version < lo:
            raise _mark(errors.UnsupportedVersionError(
                f"broker {conn.host}:{conn.port} does not speak api key {api_key} in a version "
                f"this client builds (it speaks v{lo}-{hi})"), fatal=True)
        return version

    def _find(self, key: str, key_type: int, deadline: float) -> Connection:
        """A connection to the coordinator of key (FindCoordinator), retried
        while the cluster has none yet."""
        while True:
            try:
                conn = self._local or self._client.any_connection()
                resp = conn.request(FindCoordinatorRequest(key=key, key_type=key_type),
                                    api_version=self._version(conn, 10))
                if resp.error_code == Errors.NONE:
                    # In-process, the answer's host and port name a listener
                    # the store's broker core does not have: it is the coordinator.
                    return self._local or self._client.open_connection(resp.host, resp.port)
                code = resp.error_code
            except ConnectionClosedError as e:
                if self._client is not None:
                    self._client.close()   # the next any_connection() connects afresh
                code, last = None, e   # no answer: look the coordinator up again
            else:
                last = None
            if code == Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
                raise _mark(error_for(code, f"transactional id {key!r}"), fatal=True)
            if code == Errors.GROUP_AUTHORIZATION_FAILED:
                raise _mark(error_for(code, f"group {key!r}"), abortable=True)
            if code not in (None, Errors.COORDINATOR_NOT_AVAILABLE, Errors.COORDINATOR_LOAD_IN_PROGRESS,
                            Errors.NOT_COORDINATOR):
                raise _mark(error_for(code, f"FindCoordinator for {key!r}"), fatal=True)
            self._wait_or_timeout(deadline, f"finding the coordinator of {key!r}", last)

    @staticmethod
    def _wait_or_timeout(deadline: float, what: str, last=None, backoff: float = 0.1) -> None:
        if time.monotonic() + backoff > deadline:
            exc = errors.RequestTimedOutError(f"timed out {what}" + (f" (last: {last})" if last else ""))
            raise _mark(exc)
        time.sleep(backoff)

    def _txn_request(self, build, api_key: int, error_of, deadline: float, what: str,
                     backoff: float | None = None):
        """Send build(version) to the transaction coordinator until the answer
        is not a retriable one; returns (response, error code)."""
        backoff = self.retry_backoff if backoff is None else backoff
        while True:
            with self._io_lock:
                try:
                    if self._coordinator is None or self._coordinator.closed:
                        self._coordinator = self._find(self.transactional_id, 1, deadline)
                    conn = self._coordinator
                    resp = conn.request(build(self._version(conn, api_key)),
                                        api_version=self._version(conn, api_key))
                    code = error_of(resp)
                    last = None
                except ConnectionClosedError as e:
                    self._drop_coordinator()
                    code, last = Errors.COORDINATOR_NOT_AVAILABLE, e
                if code in _FIND_AGAIN:
                    self._drop_coordinator()
            if code not in _FIND_AGAIN and code not in _LATER:
                return resp, code
            log.debug("%s: %s; retrying", what, last or Errors.for_code(code).name)
            self._wait_or_timeout(deadline, what, last or Errors.for_code(code).name, backoff)

    def _drop_coordinator(self) -> None:
        if self._coordinator is not None:
            self._coordinator.close()
            self._coordinator = None

    # ---- state -----------------------------------------------------------------

    def _fail_if_fatal(self) -> None:
        if self.state == FATAL_ERROR:
            raise self.last_error

    def _require(self, *states, what: str) -> None:
        self._fail_if_fatal()
        if self.state not in states:
            if self.state == ABORTABLE_ERROR:
                exc = IllegalTransactionStateError(
                    f"cannot {what}: the transaction failed ({self.last_error!r}) and can only be aborted")
                raise _mark(exc, abortable=True)
            raise IllegalTransactionStateError(f"cannot {what} in state {self.state}")

    def _fatal(self, exc: BaseException) -> BaseException:
        _mark(exc, fatal=True)
        self.state = FATAL_ERROR
        self.last_error = exc
        return exc

    def _abortable(self, exc: BaseException, bump: bool = False) -> BaseException:
        _mark(exc, abortable=True)
        if self.state != FATAL_ERROR:
            self.state = ABORTABLE_ERROR
            self.last_error = exc
            self._epoch_bump_required |= bump
        return exc

    def check_can_send(self) -> None:
        """Raise unless records may be sent now (Java's failIfNotReadyForSend)."""
        state = self.state
        if state == IN_TRANSACTION:
            return
        if state in (FATAL_ERROR, ABORTABLE_ERROR):
            exc = IllegalTransactionStateError(
                f"cannot send: a previous transactional request failed ({self.last_error!r})")
            raise _mark(exc, fatal=state == FATAL_ERROR, abortable=state == ABORTABLE_ERROR)
        raise IllegalTransactionStateError(f"cannot send in state {state}: call begin_transaction() first")

    @property
    def has_error(self) -> bool:
        return self.state in (ABORTABLE_ERROR, FATAL_ERROR)

    # ---- the user's calls --------------------------------------------------------

    def init_transactions(self, timeout: float) -> None:
        """InitProducerId with the transactional id: fences older producers
        with the same id and completes their open transaction (the broker
        answers CONCURRENT_TRANSACTIONS meanwhile: retried)."""
        with self._lock:
            self._fail_if_fatal()
            if self.state not in (UNINITIALIZED, INITIALIZING):
                raise IllegalTransactionStateError(
                    f"init_transactions() was already called (state {self.state})")
            self.state = INITIALIZING
            self._init_producer_id(time.monotonic() + timeout, bump=False)
            self.state = READY

    def _init_producer_id(self, deadline: float, bump: bool) -> None:
        pid, epoch = self.producer_id_and_epoch if bump else (-1, -1)
        resp, code = self._txn_request(lambda v: InitProducerIdRequest(
            transactional_id=self.transactional_id,
            transaction_timeout_ms=self.transaction_timeout_ms,
            producer_id=pid if v >= 3 else -1, producer_epoch=epoch if v >= 3 else -1),
            22, lambda r: r.error_code, deadline, "InitProducerId")
        if code == Errors.NONE:
            self.producer_id_and_epoch = (resp.producer_id, resp.producer_epoch)
            self._epoch_bump_required = False
            log.info("transactional id %r: producer id %d epoch %d", self.transactional_id,
                     resp.producer_id, resp.producer_epoch)
            return
        if code in _FENCED:
            raise self._fatal(_fenced("InitProducerId"))
        raise self._fatal(error_for(code, f"InitProducerId for transactional id {self.transactional_id!r}"))

    def begin_transaction(self) -> None:
        with self._lock:
            self._require(READY, what="begin a transaction")
            self.partitions = set()
            self._offsets_added = False
            self.state = IN_TRANSACTION

    def send_offsets_to_transaction(self, offsets, group_metadata, timeout: float) -> None:
        """AddOffsetsToTxn (the group's __consumer_offsets partition joins the
        transaction), then TxnOffsetCommit to the group's coordinator: the
        offsets become visible when the transaction commits."""
        with self._lock:
            self._require(IN_TRANSACTION, what="send offsets to the transaction")
            if isinstance(group_metadata, str):
                group_metadata = ConsumerGroupMetadata(group_metadata)
            group_id = group_metadata.group_id
            if not group_id:
                raise errors.InvalidRequestError("send_offsets_to_transaction needs a consumer group id")
            deadline = time.monotonic() + timeout
            pid, epoch = self.producer_id_and_epoch
            resp, code = self._txn_request(lambda v: AddOffsetsToTxnRequest(
                transactional_id=self.transactional_id, producer_id=pid, producer_epoch=epoch,
                group_id=group_id), 25, lambda r: r.error_code, deadline, "AddOffsetsToTxn")
            if code != Errors.NONE:
                raise self._classify_txn_error(code, f"AddOffsetsToTxn for group {group_id!r}")
            self._offsets_added = True
            self._txn_offset_commit(offsets, group_metadata, deadline)

    def _txn_offset_commit(self, offsets, gm: ConsumerGroupMetadata, deadline: float) -> None:
        pending = {}
        for tp, om in offsets.items():
            topic, partition = (tp.topic, tp.partition) if hasattr(tp, "topic") else tp
            if isinstance(om, int):
                pending[(topic, partition)] = (om, -1, "")
            else:
                pending[(topic, partition)] = (om.offset, getattr(om, "leader_epoch", -1),
                                               getattr(om, "metadata", "") or "")
        pid, epoch = self.producer_id_and_epoch
        while pending:
            by_topic: dict[str, list] = {}
            for (topic, partition), (offset, leader_epoch, metadata) in pending.items():
                by_topic.setdefault(topic, []).append(
                    TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition(
                        partition_index=partition, committed_offset=offset,
                        committed_leader_epoch=leader_epoch, committed_metadata=metadata))
            body = TxnOffsetCommitRequest(
                transactional_id=self.transactional_id, group_id=gm.group_id, producer_id=pid,
                producer_epoch=epoch, generation_id=gm.generation_id, member_id=gm.member_id,
                group_instance_id=gm.group_instance_id,
                topics=[TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(name=t, partitions=ps)
                        for t, ps in by_topic.items()])
            find_again = False
            with self._io_lock:
                try:
                    conn = self._group_conns.get(gm.group_id)
                    if conn is None or conn.closed:
                        conn = self._group_conns[gm.group_id] = self._find(gm.group_id, 0, deadline)
                    resp = conn.request(body, api_version=self._version(conn, 28))
                except ConnectionClosedError:
                    resp, find_again = None, True
            if resp is not None:
                for t in resp.topics:
                    for p in t.partitions:
                        code = p.error_code
                        key = (t.name, p.partition_index)
                        if code == Errors.NONE:
                            pending.pop(key, None)
                        elif code in (Errors.COORDINATOR_NOT_AVAILABLE, Errors.NOT_COORDINATOR,
                                      Errors.REQUEST_TIMED_OUT):
                            find_again = True
                        elif code in (Errors.UNKNOWN_TOPIC_OR_PARTITION,
                                      Errors.COORDINATOR_LOAD_IN_PROGRESS):
                            continue
                        elif code in (Errors.GROUP_AUTHORIZATION_FAILED, Errors.FENCED_INSTANCE_ID):
                            raise self._abortable(error_for(code, f"TxnOffsetCommit for group {gm.group_id!r}"))
                        elif code in (Errors.UNKNOWN_MEMBER_ID, Errors.ILLEGAL_GENERATION):
                            exc = errors.CommitFailedError(
                                f"TxnOffsetCommit for group {gm.group_id!r} failed: the consumer group "
                                f"metadata does not match ({Errors.for_code(code).name})")
                            raise self._abortable(exc)
                        elif code in _FENCED:
                            raise self._fatal(_fenced("TxnOffsetCommit"))
                        else:
                            raise self._fatal(error_for(code, f"TxnOffsetCommit for group {gm.group_id!r}"))
            if find_again:
                with self._io_lock:
                    conn = self._group_conns.pop(gm.group_id, None)
                    if conn is not None:
                        conn.close()
            if pending:
                self._wait_or_timeout(deadline, f"committing offsets of group {gm.group_id!r}",
                                      backoff=self.retry_backoff)

    def _classify_txn_error(self, code: int, what: str) -> BaseException:
        """AddOffsetsToTxn / EndTxn answers that are not retried."""
        if code in _FENCED:
            return self._fatal(_fenced(what))
        if code in (Errors.UNKNOWN_PRODUCER_ID, Errors.INVALID_PRODUCER_ID_MAPPING):
            return self._abortable(error_for(code, what), bump=True)
        if code == Errors.GROUP_AUTHORIZATION_FAILED:
            return self._abortable(error_for(code, what))
        return self._fatal(error_for(code, what))

    def begin_commit(self) -> None:
        with self._lock:
            self._require(IN_TRANSACTION, COMMITTING, what="commit the transaction")
            self.state = COMMITTING

    def begin_abort(self) -> None:
        with self._lock:
            self._require(IN_TRANSACTION, ABORTABLE_ERROR, ABORTING, what="abort the transaction")
            self.state = ABORTING

    def end_transaction(self, commit: bool, timeout: float) -> None:
        """EndTxn once the transaction's batches are done (the producer
        flushed or aborted them first). A transaction that never added a
        partition or offsets ends here without a request, as Kafka's does."""
        with self._lock:
            what = "commit" if commit else "abort"
            if commit and self.state == ABORTABLE_ERROR:
                raise _mark(IllegalTransactionStateError(
                    f"cannot commit: the transaction failed ({self.last_error!r}) and must be aborted"),
                    abortable=True)
            self._fail_if_fatal()
            deadline = time.monotonic() + timeout
            if self.partitions or self._offsets_added:
                pid, epoch = self.producer_id_and_epoch
                _resp, code = self._txn_request(lambda v: EndTxnRequest(
                    transactional_id=self.transactional_id, producer_id=pid, producer_epoch=epoch,
                    committed=commit), 26, lambda r: r.error_code, deadline, f"EndTxn({what})")
                if code != Errors.NONE:
                    raise self._classify_txn_error(code, f"EndTxn({what})")
            if not commit and self._epoch_bump_required:
                self._init_producer_id(deadline, bump=True)
            self.partitions = set()
            self._offsets_added = False
            self.last_error = None
            self.state = READY

    # ---- called by the sender thread -----------------------------------------------

    def add_partitions(self, tps, timeout: float) -> tuple[set, float]:
        """AddPartitionsToTxn for tps not yet in the transaction (one round).
        Returns (partitions now in the transaction, backoff seconds before the
        others may be asked again). Raises (after moving to the error state)
        for abortable and fatal answers."""
        new = [tp for tp in tps if tp not in self.partitions]
        if not new:
            return set(tps), 0.0
        by_topic: dict[str, list[int]] = {}
        for topic, partition in new:
            by_topic.setdefault(topic, []).append(partition)
        pid, epoch = self.producer_id_and_epoch
        first = not self.partitions
        try:
            resp, code = self._txn_request(lambda v: AddPartitionsToTxnRequest(
                v3_and_below_transactional_id=self.transactional_id, v3_and_below_producer_id=pid,
                v3_and_below_producer_epoch=epoch,
                v3_and_below_topics=[AddPartitionsToTxnRequest.AddPartitionsToTxnTopic(name=t, partitions=ps)
                                     for t, ps in by_topic.items()]),
                24, self._add_partitions_error, time.monotonic() + timeout, "AddPartitionsToTxn",
                backoff=ADD_PARTITIONS_RETRY_BACKOFF_MS / 1000 if first else None)
        except errors.RequestTimedOutError:
            return self.partitions & set(tps), self.retry_backoff
        if code == Errors.NONE:
            self.partitions.update(new)
            return set(tps), 0.0
        if code == Errors.UNKNOWN_TOPIC_OR_PARTITION:
            return self.partitions & set(tps), self.retry_backoff
        if code in _FENCED:
            raise self._fatal(_fenced("AddPartitionsToTxn"))
        if code in (Errors.UNKNOWN_PRODUCER_ID, Errors.INVALID_PRODUCER_ID_MAPPING):
            raise self._abortable(error_for(code, "AddPartitionsToTxn"), bump=True)
        if code in (Errors.TOPIC_AUTHORIZATION_FAILED, Errors.OPERATION_NOT_ATTEMPTED):
            raise self._abortable(error_for(code, f"AddPartitionsToTxn {sorted(new)}"))
        raise self._fatal(error_for(code, "AddPartitionsToTxn"))

    @staticmethod
    def _add_partitions_error(resp) -> int:
        """The one code that decides the answer: a retriable one first (the
        whole request is sent again), then the worst of the rest."""
        codes = [p.partition_error_code for t in resp.results_by_topic_v3_and_below
                 for p in t.results_by_partition]
        for c in codes:
            if c in _FIND_AGAIN or c in _LATER:
                return c
        for c in codes:
            if c not in (Errors.NONE, Errors.OPERATION_NOT_ATTEMPTED):
                return c
        return Errors.OPERATION_NOT_ATTEMPTED if codes and any(codes) else Errors.NONE

    def batch_failed(self, exc: BaseException) -> BaseException:
        """A batch of the open transaction failed for good: the transaction
        must be aborted, or the producer is fenced. Returns the error to fail
        the batch with."""
        code = getattr(exc, "error_code", None)
        if code in _FENCED:
            return self._fatal(_fenced("Produce"))
        if code in _FATAL_PRODUCE:
            return self._fatal(exc)
        if self.state in (IN_TRANSACTION, COMMITTING, ABORTABLE_ERROR):
            # A batch that never reached the broker leaves no sequence gap
            # there; one the broker may have half-seen (timed out, out of
            # order) needs the epoch bumped on abort.
            self._abortable(exc, bump=code in _BUMP_PRODUCE or isinstance(exc, errors.RequestTimedOutError))
        return exc

    def close(self) -> None:
        with self._io_lock:
            self._drop_coordinator()
            for conn in self._group_conns.values():
                conn.close()
            self._group_conns.clear()
            if self._client is not None:
                self._client.close()


class LocalCoordinator:
    """The transaction and group coordinators of a LocalStore, standing in
    for the coordinator Connection of network mode (request(body,
    api_version), api_versions, closed, close()): a request is handed,
    decoded, to the handler the store's broker core runs for its API key on
    the wire (LocalStore.handle), so the answers, errors and versions are a
    broker's. Nothing to connect or close: the store's life is the
    producer's. Any thread but the store's loop (LocalStore's rule)."""

    host, port = "in-process", -1
    closed = False

    def __init__(self, store):
        self.store = store
        self.api_versions = store.api_versions()

    def request(self, body, api_version: int):
        try:
            return self.store.handle(body, api_version)
        except errors.LogClosedError as e:   # the store closed under the producer
            raise ConnectionClosedError(str(e)) from e

    def close(self) -> None:
        pass
