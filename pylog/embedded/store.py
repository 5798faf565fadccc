"""LocalStore: a broker's data directory used in-process: a broker without a listener.

The embedded Producer and Consumer read and write through it. It holds a
`pylog.Broker` started with `listen=False` on its own loop thread: the same
LogManager, the same one-node cluster on the in-process Controller (the
metadata in `<data dir>/pylog-cluster`), the same request handlers, group
coordinator (on the coordinator runtime and the broker's partition writer),
purgatory and background tasks (retention, checkpoints, time-based flushes)
as `python -m pylog.broker` on the directory; only the socket server is
missing. So:

- topics are created, grown and deleted by the handlers' CreateTopics,
  CreatePartitions and DeleteTopics bodies through the Controller (auto
  creation too, with num.partitions), never by LogManager directly;
- offsets are committed and fetched by the OffsetCommit / OffsetFetch
  handlers, as events of the group coordinator's runtime;
- ListOffsets is the handler's ListOffsets; producer ids come from the
  InitProducerId handler;
- transactions run on the broker's transaction coordinator: the embedded
  transactional producer's InitProducerId, AddPartitionsToTxn,
  AddOffsetsToTxn, EndTxn and TxnOffsetCommit are the handlers' (handle()),
  its batches carry its transactional id into the Produce body, and the
  markers are written by the broker's marker channel (in-process, as for a
  lone broker), with its fencing, transaction.timeout.ms aborts and
  recovery from `__transaction_state` when the directory is opened again;
- appends run the Produce handler's per-partition body
  (Handlers.produce_partition: the same record validation, producer
  sequence and transaction checks as a request on the wire), and a fetch with nothing to return waits in the
  broker's purgatory like a Fetch long-poll (pylog/consumer/embedded_source.py).

A broker started on the directory afterwards serves everything written here
(the same files, metadata included), and a directory a broker wrote opens
here.

One LocalStore per directory per process: `LocalStore.open` hands out the
open one (reference counted) so a Producer and a Consumer on the same
directory share one broker core; `close()` drops a reference and the last
one stops it (logs flushed, with a clean-shutdown marker).

Exclusion: the broker's LogManager holds an flock on `<log_dir>/.lock` (the
name Kafka uses for a data directory's lock), and every partition Log holds
the flock on its own `.lock`: a broker (or another process's store) on the
same directory fails with LogLockedError. Readers in other processes use
`LocalStore.open(..., read_only=True)`, which is pylog/embedded/reader.py.

Threads: every public method may be called from any thread except the store's
own loop thread (`pylog-broker-<id>`), where no user code runs. Writes and
everything that needs the broker's serialisation (appends, topics, offsets,
ListOffsets, read_committed) hand their work to that loop (one thread switch
per call: the embedded producer hands it all the batches of one drain at
once, `append_many`) and wait for the answer; the Partitions' methods, the
purgatory and the coordinator run on the loop only, as in the broker. Reads
of committed records (read(), an embedded fetch's first look: read_here) run
on the caller's thread instead: the Log is thread-safe by its own lock, and
they read a Partition's high_watermark and log_start_offset as single int
attribute loads, which relies on the GIL (a free-threaded build needs those
two published atomically). Nothing else here relies on the GIL beyond the
registry lock and concurrent.futures.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
from typing import ClassVar

from .. import _engine
from ..broker.api_versions import (
    ADVERTISED,
    CONSUMER_GROUP_HEARTBEAT,
    PRODUCE,
    SHARE_ACKNOWLEDGE,
    SHARE_FETCH,
    SHARE_GROUP_HEARTBEAT,
)
from ..broker.broker import Broker
from ..broker.config import BrokerConfig, read_properties
from ..broker.handlers import INTERNAL_TOPICS, produce_refused
from ..broker.log_manager import META_FILE
from ..client.errors import check
from ..coordinator.runtime import _chain as chain
from ..errors import (
    InvalidRequestError,
    LogClosedError,
    PylogError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
)
from ..groups.consumer_group import ConsumerGroup
from ..groups.coordinator import GroupState
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..structs import OffsetAndMetadata, TopicPartition
from ..transactions import api as txn_api

__all__ = ["LocalStore"]

# How long a call waits for the broker core's answer: far above any append or
# topic creation; a broker core that does not answer in that time is wedged.
CALL_TIMEOUT_S = 300.0


# The Produce version whose rules the embedded appends follow: the newest the
# broker serves.
PRODUCE_VERSION = ADVERTISED[PRODUCE][1]

_NOT_READY = frozenset({Errors.COORDINATOR_NOT_AVAILABLE, Errors.COORDINATOR_LOAD_IN_PROGRESS,
                        Errors.NOT_COORDINATOR})
# And for an OffsetFetch with require_stable: a transaction's offsets pending.
_NOT_STABLE = _NOT_READY | {Errors.UNSTABLE_OFFSET_COMMIT}


# What handle() serves: the transaction APIs' handlers (and FindCoordinator),
# all of which take a decoded request (Produce, for one, takes a frame).
_COORDINATOR_APIS = frozenset({txn_api.FIND_COORDINATOR, txn_api.INIT_PRODUCER_ID, txn_api.ADD_PARTITIONS_TO_TXN,
                               txn_api.ADD_OFFSETS_TO_TXN, txn_api.END_TXN, txn_api.TXN_OFFSET_COMMIT,
                               txn_api.DESCRIBE_TRANSACTIONS, txn_api.LIST_TRANSACTIONS,
                               CONSUMER_GROUP_HEARTBEAT,    # KIP-848 members of the store's groups
                               # ShareConsumer(log_dir=...): members of the store's share groups
                               SHARE_GROUP_HEARTBEAT, SHARE_FETCH, SHARE_ACKNOWLEDGE})

# How long a commit or offset fetch asks again while the group coordinator is
# not ready (the offsets topic being created and loaded: well under a second).
COORDINATOR_WAIT_S = 30.0


class _Header:
    """The request context fields the handlers read (server.RequestContext's),
    for in-process requests: no listener, and a throttle (KIP-599) that
    nothing acts on, as no connection is there to mute."""

    __slots__ = ("request_api_version", "correlation_id", "client_id", "peer_host", "listener", "throttle_ms")

    def __init__(self, version: int):
        self.request_api_version = version
        self.correlation_id = 0
        self.client_id = "pylog-embedded"
        self.peer_host = "in-process"
        self.listener = None
        self.throttle_ms = 0


class LocalStore:
    """A broker data directory opened in this process (see the module docstring).

    Create with LocalStore.open(log_dir, ...), never directly. Thread-safe:
    any thread but the store's own loop thread; *_now and partition_on_loop
    on the loop only (read_here and the high_watermark / log_start_offset
    reads on any thread; see the module docstring).
    """

    _registry: ClassVar[dict[str, LocalStore]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def open(cls, log_dir, *, auto_create_topics: bool = True, num_partitions: int = 1,
             config: dict | None = None, read_only: bool = False):
        """The process's store for log_dir, opened on first use. config: broker
        settings under Kafka's keys (log.segment.bytes, offsets.topic.num.partitions,
        ...). A store already open keeps the settings of its first opener.
        read_only: a reader of a directory another process may be writing
        (pylog/embedded/reader.py); it neither locks nor writes anything."""
        if read_only:
            from .reader import ReadOnlyStore
            return ReadOnlyStore(log_dir)
        path = os.path.realpath(os.fspath(log_dir))
        with cls._registry_lock:
            store = cls._registry.get(path)
            if store is None:
                store = cls(path, auto_create_topics, num_partitions, config)
                cls._registry[path] = store
            else:
                store._refs += 1
            return store

    def __init__(self, path, auto_create_topics, num_partitions, config):
        os.makedirs(path, exist_ok=True)
        props = {k: str(v) for k, v in (config or {}).items()}
        props.setdefault("num.partitions", str(num_partitions))
        props.setdefault("auto.create.topics.enable", str(bool(auto_create_topics)).lower())
        props["log.dirs"] = path
        # A one-node cluster: its internal topics have one replica and
        # need one in sync (Kafka's single-broker configs set the same),
        # unless the caller says otherwise.
        props.setdefault("offsets.topic.replication.factor", "1")
        props.setdefault("transaction.state.log.replication.factor", "1")
        props.setdefault("transaction.state.log.min.isr", "1")
        props.setdefault("share.coordinator.state.topic.replication.factor", "1")
        props.setdefault("share.coordinator.state.topic.min.isr", "1")
        stored_id = _stored_broker_id(path)
        if stored_id is not None:
            # The directory belongs to that broker id; LogManager refuses another.
            props["broker.id"] = stored_id
        self.config = BrokerConfig(props)
        self.data_dir = path
        self.auto_create_topics = self.config.get("auto.create.topics.enable")
        # A big directory opens every partition before the start returns.
        self.broker = Broker(self.config, path, listen=False).start_in_thread(CALL_TIMEOUT_S)
        self._loop = self.broker._loop
        self._refs = 1
        self._closed = False
        try:
            self._call(self._forget_members)
        except BaseException:
            self.broker.stop_in_thread()
            raise

    # ---- facts ----

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def log_manager(self):
        return self.broker.log_manager

    def __repr__(self):
        return f"LocalStore({self.data_dir!r}, refs={self._refs}{', closed' if self._closed else ''})"

    # ---- the broker core's loop ----

    def _check_open(self):
        if self._closed:
            raise LogClosedError(f"{self!r} is closed")

    def _call(self, fn, *args):
        """fn(*args) on the broker core's loop; its result (a coroutine or
        awaitable it returns is awaited there). Raises what fn raised."""
        self._check_open()
        fut = concurrent.futures.Future()

        def run():
            try:
                out = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                fut.set_exception(e)
                return
            if not inspect.isawaitable(out):
                fut.set_result(out)
                return
            chain(out, fut)
        try:
            self._loop.call_soon_threadsafe(run)
        except RuntimeError as e:   # the loop closed under us: the store was closed
            raise LogClosedError(f"{self!r} is closed") from e
        return fut.result(CALL_TIMEOUT_S)

    def call_soon(self, fn, *args) -> None:
        """fn(*args) on the broker core's loop, not waited for (wakeups)."""
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass   # closed: nothing left to wake

    # ---- topics: the handlers' bodies, through the controller ----

    def create_topic(self, name: str, partitions: int = 1, config: dict | None = None) -> None:
        """Create a topic (TopicAlreadyExistsError, InvalidTopicError,
        InvalidPartitionsError, InvalidConfigError as the broker raises them)."""
        if name in INTERNAL_TOPICS:
            raise InvalidRequestError(f"{name} is an internal topic; it is not created by clients")
        self._create_topic(name, partitions, config)

    def _create_topic(self, name, partitions, config):
        Q = m.CreateTopicsRequest
        req = Q(topics=[Q.CreatableTopic(
            name=name, num_partitions=partitions, replication_factor=-1, assignments=[],
            configs=[Q.CreatableTopicConfig(name=k, value=str(v)) for k, v in (config or {}).items()])],
            timeout_ms=int(CALL_TIMEOUT_S * 1000), validate_only=False)
        r = self._call(self.broker.handlers.create_topics, _Header(7), req).topics[0]
        check(r.error_code, r.error_message)

    def create_partitions(self, name: str, count: int) -> None:
        """Grow topic name to count partitions (Kafka's CreatePartitions)."""
        Q = m.CreatePartitionsRequest
        req = Q(topics=[Q.CreatePartitionsTopic(name=name, count=count, assignments=None)],
                timeout_ms=int(CALL_TIMEOUT_S * 1000), validate_only=False)
        r = self._call(self.broker.handlers.create_partitions, _Header(3), req).results[0]
        check(r.error_code, r.error_message)

    def delete_topic(self, name: str) -> None:
        """Delete a topic (Kafka's DeleteTopics; delete.topic.enable applies)."""
        req = m.DeleteTopicsRequest(topics=[], topic_names=[name], timeout_ms=int(CALL_TIMEOUT_S * 1000))
        r = self._call(self.broker.handlers.delete_topics, _Header(5), req).responses[0]
        check(r.error_code, r.error_message)

    def partitions_for(self, topic: str, create: bool = False) -> list[int] | None:
        """The topic's partition ids; None when it does not exist (after
        creating it with num.partitions when create and auto_create_topics)."""
        parts = self._call(self._partition_ids, topic)
        if parts is None and create and self.auto_create_topics and topic not in INTERNAL_TOPICS:
            try:
                self._create_topic(topic, -1, None)
            except TopicAlreadyExistsError:
                pass   # created meanwhile by another caller
            parts = self._call(self._partition_ids, topic)
        return parts

    def _partition_ids(self, topic):
        states = self.broker.metadata_cache.topics.get(topic)
        return sorted(states) if states else None

    def topics(self) -> list[str]:
        """Every topic except the internal ones, sorted."""
        return self._call(lambda: sorted(t for t in self.broker.metadata_cache.topics if t not in INTERNAL_TOPICS))

    # ---- records ----

    def append(self, topic: str, partition: int, batch) -> tuple[int, int]:
        """Append the record batches in batch (v2, as a producer builds them)
        through the Produce handler's per-partition body: every record
        validated as Kafka's LogValidator does (CorruptRecordError,
        InvalidRecordError, InvalidTimestampError, ... with the error code the
        wire answers, nothing appended), offsets assigned, the leader epoch
        stamped, idempotent producer fields checked; a transactional batch is
        refused (TRANSACTIONAL_ID_AUTHORIZATION_FAILED: no transactional id
        here; the transactional producer uses append_many). A retried
        idempotent batch is not written again: its original offset comes back.
        Returns (base_offset, log_append_time) with log_append_time -1
        (CreateTime topics only, like the broker)."""
        out = self.append_many([(topic, partition, batch)])[0]
        if isinstance(out, BaseException):
            raise out
        return out

    def append_many(self, batches, transactional_id: str | None = None) -> list:
        """append() for each (topic, partition, batch), in one trip to the
        loop: (base_offset, log_append_time) or the exception, per batch.
        transactional_id: a Produce request's field of that name (the
        transactional producer's batches carry it; without it a
        transactional batch is refused, as on the wire)."""
        return self._call(self._append_on_loop, batches, transactional_id)

    def _append_on_loop(self, batches, transactional_id):
        # The Produce handler's own per-partition body, as for a request of the
        # newest Produce version with that transactional id and acks=all,
        # which a one-node cluster's high watermark covers at once.
        body = self.broker.handlers.produce_partition
        refused = produce_refused(transactional_id, [(t, [(p, b)]) for t, p, b in batches])
        out = []
        for topic, partition, batch in batches:
            try:
                _p, r = body(topic, partition, batch, -1, PRODUCE_VERSION, refused)
                out.append((r.first_offset, r.log_append_time))
            except Exception as e:  # noqa: BLE001 - per batch, as a Produce answer per partition
                out.append(e)
        return out

    def read(self, topic: str, partition: int, offset: int, max_bytes: int):
        """(records, high_watermark, log_start_offset): whole batches from the one
        holding offset, at most max_bytes unless the first batch alone is larger
        (KIP-74), as bytes; b"" when offset is the high watermark.
        OffsetOutOfRangeError outside [log_start_offset, high_watermark]."""
        self._check_open()
        out = self.read_here(topic, partition, offset, max_bytes)
        if out is None:
            out = self._call(self.read_now, topic, partition, offset, max_bytes)
        return out[:3]

    def read_committed(self, topic: str, partition: int, offset: int, max_bytes: int, committed: bool = True):
        """read for isolation_level READ_COMMITTED, by the broker's Fetch body:
        below the last stable offset, and a fourth item, the aborted
        transactions (producer_id, first_offset) the caller must drop."""
        return self._call(self.read_now, topic, partition, offset, max_bytes, committed)

    def read_here(self, topic, partition, offset, max_bytes, copy=True):
        """read_now(committed=False) on the calling thread, without a trip to
        the loop (a fetch's first read, the public read()): the Log is
        thread-safe (its lock), and the Partition's high_watermark and log
        start are ints read once each (atomic under the GIL; the loop only
        moves them forward, except truncation and DeleteRecords, which the
        range check below leaves to the loop). The high watermark is taken
        before the log is read and the copy is cut there, so no record at or
        above it is handed out even while the loop appends. None when only the
        loop can answer: an offset outside [log_start_offset, high_watermark]
        (the errors and edge cases of Partition.read), a partition unknown,
        closed or being deleted; the caller then asks read_now there.
        copy=False: the records are a view of the mapped segment, not a copy
        (the embedded consumer's fetch: its records then keep the segment
        mapped while they live, as Log views do; truncation, which a
        one-node store never runs on its leaders, would refuse meanwhile)."""
        p = self.broker.log_manager.partitions.get((topic, partition))
        if p is None:
            return None
        hw, lso = p.high_watermark, p.log_start_offset
        if not lso <= offset <= hw:
            return None
        if offset == hw:
            return b"", hw, lso, ()
        plog = p.log
        try:
            fs = plog.read_batches(offset, max(max_bytes, 1))
        except PylogError:   # closed, deleted or truncated meanwhile
            return None
        if copy:
            # Copied out so no segment stays pinned by a caller's records.
            data = bytes(fs)
            del fs
        else:
            data = memoryview(fs)
        if plog.log_end_offset > hw:
            data = _cut_at(data, hw)
        return data, hw, lso, ()

    def read_now(self, topic, partition, offset, max_bytes, committed=False):
        """read_committed() on the loop only (the embedded source's fetch runs
        there): (records, high_watermark, log_start_offset, aborted)."""
        p = self.partition_on_loop(topic, partition)
        hw, lso = p.high_watermark, p.log_start_offset
        fs = p.read(offset, max_bytes, committed)
        aborted = tuple(p.aborted_transactions(offset)) if committed and fs is not None else ()
        if fs is None:
            return b"", hw, lso, ()
        # Copied out so no segment stays pinned by a caller's records.
        data = bytes(fs)
        del fs
        return data, hw, lso, aborted

    def watermarks_now(self, topic, partition) -> tuple[int, int]:
        """(high_watermark, log_start_offset), on the loop only."""
        p = self.partition_on_loop(topic, partition)
        return p.high_watermark, p.log_start_offset

    def partition_on_loop(self, topic, partition):
        """The Partition. Its methods run on the loop only; any thread may
        read its high_watermark and log_start_offset (one int each)."""
        p = self.broker.log_manager.partitions.get((topic, partition))
        if p is None:
            raise UnknownTopicOrPartitionError(f"{topic}-{partition} does not exist in {self.data_dir}")
        return p

    def list_offset(self, topic: str, partition: int, timestamp: int,
                    isolation_level: int = 0) -> tuple[int, int]:
        """ListOffsets for one partition, by the broker's ListOffsets handler:
        -2 earliest, -1 latest (the high watermark; the last stable offset
        under isolation_level 1), else the first offset whose timestamp is >=
        timestamp (looked up on a worker thread, as the broker does).
        (offset, timestamp); (-1, -1) when no record is that late."""
        Q = m.ListOffsetsRequest
        req = Q(replica_id=-1, isolation_level=isolation_level, timeout_ms=0, topics=[Q.ListOffsetsTopic(
            name=topic, partitions=[Q.ListOffsetsPartition(partition_index=partition, current_leader_epoch=-1,
                                                           timestamp=timestamp, max_num_offsets=1)])])
        r = self._call(self.broker.handlers.list_offsets, _Header(7), req).topics[0].partitions[0]
        check(r.error_code, f"listing offsets of {topic}-{partition}")
        return r.offset, r.timestamp

    def high_watermark(self, topic: str, partition: int) -> int:
        # One int read, on the calling thread (atomic under the GIL).
        self._check_open()
        return self.partition_on_loop(topic, partition).high_watermark

    def log_start_offset(self, topic: str, partition: int) -> int:
        self._check_open()
        return self.partition_on_loop(topic, partition).log_start_offset

    def _partition(self, topic, partition):
        """The Partition object (tests; touch it on the loop only: `call`)."""
        return self._call(self.partition_on_loop, topic, partition)

    def call(self, fn, *args):
        """fn(*args) on the broker core's loop (tests, tools)."""
        return self._call(fn, *args)

    # ---- committed offsets: the OffsetCommit / OffsetFetch handlers ----

    def commit_offsets(self, group_id: str, offsets: dict[TopicPartition, OffsetAndMetadata], *,
                       member_id: str = "", member_epoch: int = -1) -> None:
        """Store offsets for group_id as a standalone commit (no generation: a
        local directory has one consumer process), or as a KIP-848 member's
        (member_id and member_epoch: OffsetCommit v9), answered once written.
        Raises the pylog error of the first partition refused
        (UnknownTopicOrPartitionError, OffsetMetadataTooLarge's code, ...);
        the others are stored."""
        if not offsets:
            return
        Q = m.OffsetCommitRequest
        by_topic: dict[str, list] = {}
        for tp, om in offsets.items():
            by_topic.setdefault(tp.topic, []).append(Q.OffsetCommitRequestPartition(
                partition_index=tp.partition, committed_offset=om.offset, committed_leader_epoch=om.leader_epoch,
                commit_timestamp=-1, committed_metadata=om.metadata))
        req = Q(group_id=group_id, generation_id_or_member_epoch=member_epoch, member_id=member_id,
                group_instance_id=None, retention_time_ms=-1,
                topics=[Q.OffsetCommitRequestTopic(name=t, partitions=ps) for t, ps in by_topic.items()])
        r = self._call(self._group_request, 8, 9 if member_id else 8, req,
                       lambda r: [p.error_code for t in r.topics for p in t.partitions])
        for code, t, p in sorted((p.error_code, t.name, p.partition_index) for t in r.topics for p in t.partitions):
            check(code, f"committing {t}-{p} for group {group_id}")

    def committed_offsets(self, group_id: str, partitions, require_stable: bool = False,
                          timeout: float | None = None) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """OffsetFetch for partitions of group_id. require_stable (KIP-447:
        what a read_committed consumer asks): while a transaction holds
        offsets of the group pending (TxnOffsetCommit, no marker yet), the
        handler answers UNSTABLE_OFFSET_COMMIT; asked again until the
        transaction ends, or timeout seconds (default COORDINATOR_WAIT_S, the
        request timeout), then that error is raised (retriable), as the
        network consumer does: a consumer's poll passes what is left of its
        own timeout and leaves those partitions without a position."""
        Q = m.OffsetFetchRequest
        by_topic: dict[str, list] = {}
        for tp in partitions:
            by_topic.setdefault(tp[0], []).append(tp[1])
        req = Q(group_id=group_id, topics=[Q.OffsetFetchRequestTopic(name=t, partition_indexes=ps)
                                           for t, ps in by_topic.items()], groups=[],
                require_stable=require_stable)
        r = self._call(self._group_request, 9, 7, req,
                       lambda r: [r.error_code] + [p.error_code for t in r.topics for p in t.partitions],
                       _NOT_STABLE if require_stable else _NOT_READY, timeout)
        check(r.error_code, f"fetching the committed offsets of group {group_id}")
        out = {TopicPartition(tp[0], tp[1]): None for tp in partitions}
        for t in r.topics:
            for p in t.partitions:
                check(p.error_code, f"fetching the committed offset of {t.name}-{p.partition_index}")
                if p.committed_offset >= 0:
                    out[TopicPartition(t.name, p.partition_index)] = OffsetAndMetadata(
                        p.committed_offset, p.metadata or "", p.committed_leader_epoch)
        return out

    async def _group_request(self, key, version, req, codes_of, again=_NOT_READY, unstable_timeout=None):
        """A group API's handler, asked again (as a client would) while the
        answer is that the coordinator is not ready (codes in again): the
        offsets topic is being created (on first use, as a broker creates
        it) or loaded. An answer of UNSTABLE_OFFSET_COMMIT is asked again
        only for unstable_timeout seconds when given (the caller's own
        deadline, shorter than the coordinator's)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COORDINATOR_WAIT_S
        unstable_deadline = deadline if unstable_timeout is None else loop.time() + unstable_timeout
        handler = self.broker.handlers.table[key]
        backoff = 0.005
        while True:
            out = handler(_Header(version), req)
            if inspect.isawaitable(out):
                out = await out
            codes = codes_of(out)
            if loop.time() > deadline or not any(c in again for c in codes):
                return out
            if loop.time() > unstable_deadline and not any(c in again and c != Errors.UNSTABLE_OFFSET_COMMIT
                                                           for c in codes):
                return out   # only unstable offsets hold it: the caller's time is up
            await asyncio.sleep(backoff)
            # Up to Kafka's retry.backoff.ms: a transaction may hold the
            # offsets unstable for seconds.
            backoff = min(backoff * 2, 0.1)

    async def _forget_members(self):
        """Members restored from a broker's group metadata are gone (this
        process holds the directory, so no broker serves them): forget them in
        memory, once the offsets partitions are loaded, so standalone commits
        are accepted. Nothing is written; a broker started later restores and
        expires them as after any restart."""
        runtime = self.broker.groups.runtime
        while runtime.loading_partitions():
            await asyncio.sleep(0.01)
        for g in self.broker.groups.groups.values():
            if isinstance(g, ConsumerGroup):   # KIP-848: no futures, its state follows its members
                g.members.clear()
                g.static.clear()
                g.target.clear()
                continue
            if g.members and g.state is not GroupState.DEAD:
                for mm in g.members.values():
                    for fut in (mm.join_future, mm.sync_future):
                        if fut is not None and not fut.done():
                            fut.cancel()
                g.members.clear()
                g.static.clear()
                g.state = GroupState.EMPTY

    # ---- idempotent producers ----

    def init_producer_id(self) -> tuple[int, int]:
        """(producer_id, producer_epoch) for a new idempotent producer, by the
        InitProducerId handler: no id is handed out twice across embedded and
        broker use of the directory."""
        req = m.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=-1, producer_id=-1,
                                      producer_epoch=-1)
        r = self._call(self.broker.handlers.init_producer_id, _Header(4), req)
        check(r.error_code, "allocating a producer id")
        return r.producer_id, r.producer_epoch

    # ---- transactions: the coordinators' handlers, as on the wire ----

    def api_versions(self) -> dict[int, tuple[int, int]]:
        """{api key: (min, max)} this store's broker core serves, as its
        ApiVersions would answer on a listener."""
        return dict(ADVERTISED)

    def handle(self, body, version: int):
        """The response of the broker core's handler for body's API key (a
        decoded request, e.g. InitProducerIdRequest, EndTxnRequest,
        TxnOffsetCommitRequest, FindCoordinatorRequest), at that version,
        answered once the handler's writes are replicated, as a request on
        the wire is: the embedded transactional producer's coordinator calls
        (pylog.producer.transactions.LocalCoordinator). Error codes come back
        in the response; UnsupportedVersionError for a version not served."""
        api_key = body.API_KEY
        if api_key not in _COORDINATOR_APIS:
            raise InvalidRequestError(f"api key {api_key} is not a coordinator request; LocalStore has a "
                                      "method for it")
        lo, hi = ADVERTISED.get(api_key, (0, -1))
        if not lo <= version <= hi:
            raise UnsupportedVersionError(f"api key {api_key} v{version} is not served (v{lo}-{hi})")
        return self._call(self.broker.handlers.table[api_key], _Header(version), body)

    # ---- durability and closing ----

    def flush(self) -> None:
        """fdatasync every partition written since the last flush (on a
        worker thread, as the broker's flusher does)."""
        logs = self._call(lambda: [p.log for p in self.broker.log_manager.partitions.values()])
        for plog in logs:
            plog.flush()

    def housekeeping(self, now_ms: int | None = None) -> None:
        """What the broker's background task does every
        log.retention.check.interval.ms, now: retention, producer-id expiry,
        producer-state snapshots, checkpoints."""
        self._call(self.broker.log_manager.housekeeping, now_ms)

    def close(self) -> None:
        """Drop one reference; the last stops the broker core (every log
        flushed and closed, the directory unlocked). Closing twice is harmless."""
        cls = type(self)
        with cls._registry_lock:
            if self._closed:
                return
            self._refs -= 1
            if self._refs > 0:
                return
            if cls._registry.get(self.data_dir) is self:
                del cls._registry[self.data_dir]
            self._closed = True
            # Fetches waiting in the purgatory see the store closed and answer.
            self.call_soon(self.broker.handlers.purgatory.complete_all)
            self.broker.stop_in_thread(CALL_TIMEOUT_S)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _cut_at(data: bytes, bound: int) -> bytes:
    """data without its batches at or above offset bound (a high watermark:
    it falls on a batch boundary). Per batch, in C (batch_headers)."""
    for h in _engine.batch_headers(data):
        if h[1] >= bound:
            return data[:h[0]]
    return data


def _stored_broker_id(path: str) -> str | None:
    meta = os.path.join(path, META_FILE)
    if not os.path.exists(meta):
        return None
    props = read_properties(meta)
    return props.get("broker.id") or props.get("node.id")
