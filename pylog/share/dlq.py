"""Dead-letter topics of share groups (KIP-1191, Kafka 4.4; Kafka's
ShareGroupDLQStateManager and SharePartition.initiateDLQAndArchive are the
model).

A share group with the group config `errors.deadletterqueue.topic.name`
(GROUP resource, IncrementalAlterConfigs) sends each record a consumer
REJECTs, and each record whose delivery count runs out (RELEASE or lock
expiry at `group.share.delivery.count.limit`), to that topic before it is
archived. In three steps, per range of offsets:

1. The share-partition moves the range to Archiving (state 3, partition.py)
   and persists it (the acknowledgement is answered after that write).
2. Here: one record per offset is appended to the dead-letter topic, at
   partition `source partition % its partition count`, and we wait until it
   is committed (the high watermark passes it, acks=all). When another
   broker leads that partition, Kafka's way: a Produce with acks=all to it
   over the inter-broker listener, whose answer means committed; the leader
   is looked up in the metadata cache at each attempt, so a retry follows it.
3. The range becomes Archived and is persisted again.

A crash between 1 and 3 leaves the range Archiving in __share_group_state;
the next load of the share-partition writes it to the dead-letter topic
again (step 2 may then have happened twice: at least once, never lost).

The record written: Kafka's headers (`__dlq.errors.topic`, `.partition`,
`.offset`, `.group`, `.delivery.count`, `.message`; values UTF-8 text,
numbers in decimal), timestamp the time of the write (CreateTime), and the
source record's key and value only with the group config
`errors.deadletterqueue.copy.record.enable=true` (default false: headers
only). The source record's own headers are not copied (as in Kafka).

Checked at each write, as Kafka's validateDlqTopic does (a failure is logged
and counted, and the records archived anyway, as Kafka does): the name does
not start with "__"; an existing topic has `errors.deadletterqueue.group.enable=true`;
a missing one is created only with the broker config
`errors.deadletterqueue.auto.create.topics.enable=true` (num.partitions,
default.replication.factor, the group-enable flag and CreateTime); the name
starts with `errors.deadletterqueue.topic.name.prefix` (default "dlq.";
"" allows any). Transient errors (not leader, timeouts, the topic being
created) are retried 5 times, backing off from 1 s to at most 30 s.

Kafka needs share.version=2 for all of this; a lone pylog broker serves it
as that feature level (it has no feature levels to finalize).

The records to copy are read from the log one read of whole batches at a
time; this is the rare path, so picking the few rejected records out of
those batches is a loop here, never on the ShareFetch path.

Threads: the event loop's thread only.
"""
from __future__ import annotations

import asyncio
import logging
import time

from .. import _engine
from ..broker.config import TopicConfig
from ..broker.replica_fetcher import LeaderConnection
from ..errors import PylogError
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..protocol.pylog_tags import share_dlq_stats_field
from .partition import EXHAUSTED, REJECTED

log = logging.getLogger("pylog.share.dlq")

# Kafka's header names (ShareGroupDLQStateManager.ProduceRequestHandler).
HEADER_TOPIC = "__dlq.errors.topic"
HEADER_PARTITION = "__dlq.errors.partition"
HEADER_OFFSET = "__dlq.errors.offset"
HEADER_GROUP = "__dlq.errors.group"
HEADER_DELIVERY_COUNT = "__dlq.errors.delivery.count"
HEADER_MESSAGE = "__dlq.errors.message"
# Kafka's ShareGroupDLQManager causes.
MESSAGES = {REJECTED: "Offset rejected by client.", EXHAUSTED: "Offset delivery count exceeded the threshold."}

TOPIC_KEY = "errors.deadletterqueue.topic.name"
COPY_KEY = "errors.deadletterqueue.copy.record.enable"
ENABLE_KEY = "errors.deadletterqueue.group.enable"
AUTO_CREATE_KEY = "errors.deadletterqueue.auto.create.topics.enable"
PREFIX_KEY = "errors.deadletterqueue.topic.name.prefix"

# Kafka's REQUEST_BACKOFF_MS, REQUEST_BACKOFF_MAX_MS, MAX_REQUEST_ATTEMPTS.
BACKOFF_S, BACKOFF_MAX_S, ATTEMPTS = 1.0, 30.0, 5
PERSIST_RETRY_S = 0.5
COMMIT_TIMEOUT_S = 30.0
READ_BYTES = 1 << 20            # Kafka's DLQ_MAX_FETCH_BYTES
PRODUCE_VERSION = 9             # flexible, answers with error_message; every pylog broker serves it
# Kafka's DLQ writer retries these (a leader moving, the ISR short, the
# topic's metadata not on the leader yet); other errors are final.
_REMOTE_RETRIABLE = frozenset({Errors.NOT_LEADER_OR_FOLLOWER, Errors.NOT_ENOUGH_REPLICAS,
                               Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND, Errors.REQUEST_TIMED_OUT,
                               Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.LEADER_NOT_AVAILABLE})
_BATCH_OVERHEAD = 61
_RECORD_OVERHEAD = 32           # a record's varints and attributes, at most


class DlqError(Exception):
    """A dead-letter write that cannot succeed as configured (not retried)."""


class _Retry(Exception):
    """A dead-letter write that may succeed later."""


class DeadLetters:
    """The broker's dead-letter writer. `manager` is the share-partition
    manager: its share-partitions, persistence and wake-ups."""

    def __init__(self, broker, manager):
        self.broker = broker
        self.manager = manager
        self.written: dict[tuple, int] = {}      # (group, topic id, index) -> records written
        self.failed: dict[tuple, int] = {}       # (group, topic id, index) -> records archived unwritten
        self._draining: dict[tuple, asyncio.Task] = {}
        self._conns: dict[int, LeaderConnection] = {}   # leader broker id -> connection for remote writes
        self._locks: dict[int, asyncio.Lock] = {}

    def _group_config(self, group_id) -> dict:
        return self.broker.metadata_cache.group_configs.get(group_id) or {}

    def enabled(self, group_id) -> bool:
        """Kafka's isDLQEnabledForGroup: a non-blank dead-letter topic name."""
        return bool(self._group_config(group_id).get(TOPIC_KEY, "").strip())

    def stats(self, group_id, topic_id, index) -> tuple[int, int]:
        key = (group_id, topic_id, index)
        return self.written.get(key, 0), self.failed.get(key, 0)

    def tag_stats(self, entry, group_id, topic_id, index) -> None:
        """Put the counts on a DescribeShareGroupOffsets partition entry (a
        pylog tagged field) when the group has a dead-letter topic or had one."""
        written, failed = self.stats(group_id, topic_id, index)
        if written or failed or self.enabled(group_id):
            entry._unknown_tagged_fields = [share_dlq_stats_field(written, failed)]

    def kick(self, h) -> None:
        """Start writing h's Archiving ranges unless a writer is on them already."""
        if not h.sp.archiving or h.key in self._draining or self.broker.stopping:
            return
        self._draining[h.key] = asyncio.ensure_future(self._drain(h))

    def stop(self) -> None:
        for task in self._draining.values():
            task.cancel()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def busy(self, key) -> bool:
        """Whether dead letters of share-partition key are being written here."""
        return key in self._draining

    async def _drain(self, h):
        try:
            written = await self._drain_ranges(h)
        finally:
            # Here, not in a done callback: a kick in between would find the
            # key taken and start nothing. Only this writer's own entry: a
            # share-partition loaded again meanwhile may have its own.
            if self._draining.get(h.key) is asyncio.current_task():
                del self._draining[h.key]
        if self.broker.stopping:
            return
        now = self.manager.held.get(h.key)
        if now is not h:
            if now is not None:
                self.kick(now)      # loaded again while this writer ran: its kick found the key taken
            return
        if written is not None:
            # The Archived ranges stored before the share-partition may go:
            # the next load reads them back.
            await asyncio.gather(written, return_exceptions=True)
        # The group may have emptied meanwhile (manager.forget_idle kept the
        # share-partition for this writer).
        self.manager.forget_idle(h.key[0])

    async def _drain_ranges(self, h):
        """Write h's Archiving ranges' dead letters, archive them; the future
        of the last state write, None when none was made."""
        group_id, _topic_id, index = h.key
        written = None
        while self.manager.held.get(h.key) is h and not self.broker.stopping:
            items = h.sp.take_archiving()
            if not items:
                return written
            # Step 1 done durably, whoever made the ranges Archiving (an
            # acknowledgement waits for its own write; a lock expiry does not).
            code = await self.manager._persist(h)
            if code:
                for first, last, *_ in items:
                    h.sp.untake(first, last)
                await asyncio.sleep(PERSIST_RETRY_S)
                continue
            for first, last, count, why in items:
                if why is None:   # read back from the persister: Kafka infers it the same way
                    why = EXHAUSTED if count >= h.sp.delivery_limit else REJECTED
                n = last - first + 1
                try:
                    await self._write_with_retries(group_id, h.topic, index, first, last, count, why)
                    self.written[h.key] = self.written.get(h.key, 0) + n
                except (DlqError, PylogError) as e:
                    if self.broker.stopping:
                        return  # left Archiving: written at the next start
                    self.failed[h.key] = self.failed.get(h.key, 0) + n
                    log.error("share group %s: offsets %d-%d of %s-%d archived without a dead letter: %s",
                              group_id, first, last, h.topic, index, e)
                if self.manager.held.get(h.key) is not h:
                    return      # no longer led here: the next leader finds the range Archiving
                h.sp.archive(first, last)
            written = self.manager._persist(h)
            self.manager._wake(h)
        return written

    async def _write_with_retries(self, group_id, topic, index, first, last, count, why):
        delay = BACKOFF_S
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._write(group_id, topic, index, first, last, count, why)
            except _Retry as e:
                if attempt == ATTEMPTS or self.broker.stopping:
                    raise DlqError(f"{e} (after {attempt} attempts)") from None
                log.info("share group %s: dead-letter write of %s-%d %d-%d: %s; again in %.0f s", group_id, topic,
                         index, first, last, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    def _checked_topic(self, group_id) -> tuple[str, bool]:
        """(the dead-letter topic, whether it exists), or DlqError: Kafka's
        validateDlqTopic checks and messages, in its order."""
        name = self._group_config(group_id).get(TOPIC_KEY, "").strip()
        if not name:
            raise DlqError(f"Configured DLQ topic name in share group: {group_id} is empty.")
        if name.startswith("__"):
            raise DlqError(f"Configured DLQ topic name in share group: {group_id} cannot start with __, "
                           f"topic: {name}.")
        cache = self.broker.metadata_cache
        exists = name in cache.topics
        if exists and not TopicConfig(self.broker.config, cache.topic_configs.get(name, {})).get(ENABLE_KEY):
            raise DlqError(f"DLQ is not enabled on configured DLQ topic for share group: {group_id}, "
                           f"topic: {name}.")
        if not exists and not self.broker.config.get(AUTO_CREATE_KEY):
            raise DlqError(f"DLQ topic does not exist and auto create is disabled on cluster for share group: "
                           f"{group_id}, topic: {name}.")
        prefix = self.broker.config.get(PREFIX_KEY) or ""
        if prefix and not name.startswith(prefix):
            raise DlqError(f"Configured DLQ topic name does not comply with the DLQ topic prefix in share group: "
                           f"{group_id}, topic: {name}, prefix: {prefix}.")
        return name, exists

    async def _write(self, group_id, topic, index, first, last, count, why):
        name, exists = self._checked_topic(group_id)
        broker = self.broker
        if not exists:
            code, msg = await broker.create_topic_async(name, -1, -1, None, {ENABLE_KEY: "true",
                                                                             "message.timestamp.type": "CreateTime"})
            if code and code != Errors.TOPIC_ALREADY_EXISTS:
                if code in (Errors.NOT_CONTROLLER, Errors.THROTTLING_QUOTA_EXCEEDED, Errors.REQUEST_TIMED_OUT):
                    raise _Retry(f"creating {name}: error {code} ({msg})")
                raise DlqError(f"creating {name} failed: error {code} ({msg})")
            log.info("share group %s: dead-letter topic %s created", group_id, name)
        parts = broker.metadata_cache.topics.get(name)
        if not parts:
            raise _Retry(f"{name} has no partitions yet")
        target = index % (max(parts) + 1)
        st = parts.get(target)
        if st is None or st.leader < 0:
            raise _Retry(f"{name}-{target} has no leader")
        copies = self._source_records(group_id, topic, index, first, last)
        if st.leader != broker.broker_id:
            max_bytes = TopicConfig(broker.config, broker.metadata_cache.topic_configs.get(name, {})).get(
                "max.message.bytes")
            for batch in self._batches(group_id, topic, index, first, last, count, why, copies, max_bytes):
                await self._produce_remote(st.leader, name, target, batch)
            return
        p = broker.log_manager.partitions.get((name, target))
        if p is None or not p.is_leader:
            raise _Retry(f"this broker does not lead {name}-{target} yet")
        max_bytes = p.max_message_bytes
        for batch in self._batches(group_id, topic, index, first, last, count, why, copies, max_bytes):
            try:
                _p, r = broker.handlers.produce_partition(name, target, batch, -1, None, False)
            except PylogError as e:
                if e.error_code in (Errors.NOT_LEADER_OR_FOLLOWER, Errors.NOT_ENOUGH_REPLICAS):
                    raise _Retry(f"appending to {name}-{target}: {e}") from None
                raise DlqError(f"appending to {name}-{target}: {e}") from None
            code = await broker.coordinator_writer.wait_committed(name, target, r.last_offset, COMMIT_TIMEOUT_S)
            if code:
                raise _Retry(f"{name}-{target} did not commit offset {r.last_offset}: error {code}")

    async def _produce_remote(self, node, name, target, batch):
        """Kafka's way for every dead letter: a Produce with acks=all to the
        partition's leader over the inter-broker listener, so its answer means
        committed. One request at a time per broker (one connection each)."""
        broker = self.broker
        ep = broker.metadata_cache.brokers.get(node)
        if ep is None:
            raise _Retry(f"the leader of {name}-{target}, broker {node}, is not known")
        lock = self._locks.setdefault(node, asyncio.Lock())
        async with lock:
            conn = self._conns.get(node)
            if conn is None or (conn.host, conn.port) != (ep.host, ep.port):
                if conn is not None:
                    conn.close()
                conn = self._conns[node] = LeaderConnection(
                    ep.host, ep.port, f"share-dlq-{broker.broker_id}", broker.config.inter_broker_tls(),
                    broker.inter_broker_sasl)
            req = m.ProduceRequest(acks=-1, timeout_ms=int(COMMIT_TIMEOUT_S * 1000), topic_data=[
                m.ProduceRequest.TopicProduceData(name=name, partition_data=[
                    m.ProduceRequest.PartitionProduceData(index=target, records=batch)])])
            try:
                resp = await conn.request(req, PRODUCE_VERSION, COMMIT_TIMEOUT_S + 5)
            except (OSError, EOFError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                conn.close()
                raise _Retry(f"producing to {name}-{target} on broker {node}: {e!r}") from None
        rows = [p for t in resp.responses if t.name == name for p in t.partition_responses if p.index == target]
        code = rows[0].error_code if rows else Errors.UNKNOWN_SERVER_ERROR
        if code in _REMOTE_RETRIABLE:
            raise _Retry(f"producing to {name}-{target} on broker {node}: error {code}")
        if code:
            msg = rows[0].error_message if rows else None
            raise DlqError(f"producing to {name}-{target} on broker {node}: error {code} ({msg})")

    def _source_records(self, group_id, topic, index, first, last) -> dict:
        """{offset: (key, value)} of first-last as the log has them, when the
        group copies records; offsets the log no longer has are left out
        (their dead letters carry the headers only, as in Kafka)."""
        if self._group_config(group_id).get(COPY_KEY, "false") != "true":
            return {}
        p = self.broker.log_manager.partitions.get((topic, index))
        out = {}
        at = first
        while p is not None and at <= last:
            try:
                data = p.read(at, READ_BYTES)
            except PylogError as e:
                log.warning("share group %s: reading %s-%d at %d to copy dead letters: %s", group_id, topic,
                            index, at, e)
                break
            if not data:
                break
            nxt = at
            for rec in _engine.decode_batches(data):
                if first <= rec.offset <= last:
                    out[rec.offset] = (None if rec.key is None else bytes(rec.key),
                                       None if rec.value is None else bytes(rec.value))
                nxt = max(nxt, rec.offset + 1)
            headers = _engine.batch_headers(data)
            if headers:
                nxt = max(nxt, headers[-1][1] + headers[-1][2] + 1)
            if nxt <= at:
                break
            at = nxt
        return out

    def _batches(self, group_id, topic, index, first, last, count, why, copies, max_bytes):
        """The dead letters of first-last as record batches, each within the
        dead-letter topic's max.message.bytes (a lone record over it goes
        alone, and the append says why it cannot)."""
        fixed = [(HEADER_TOPIC, topic.encode()), (HEADER_PARTITION, str(index).encode())]
        tail = [(HEADER_GROUP, group_id.encode()), (HEADER_DELIVERY_COUNT, str(count).encode()),
                (HEADER_MESSAGE, MESSAGES[why].encode())]
        head_size = sum(len(k) + len(v) + 4 for k, v in fixed + tail) + 30
        keys, values, headers, stamps, size = [], [], [], [], _BATCH_OVERHEAD
        for offset in range(first, last + 1):
            key, value = copies.get(offset, (None, None))
            rec_size = _RECORD_OVERHEAD + head_size + len(key or b"") + len(value or b"")
            if keys and size + rec_size > max_bytes:
                yield _engine.encode_batch(values, keys=keys, headers=headers, timestamps=stamps)
                keys, values, headers, stamps, size = [], [], [], [], _BATCH_OVERHEAD
            keys.append(key)
            values.append(value)
            headers.append(fixed + [(HEADER_OFFSET, str(offset).encode())] + tail)
            stamps.append(int(time.time() * 1000))
            size += rec_size
        if keys:
            yield _engine.encode_batch(values, keys=keys, headers=headers, timestamps=stamps)
