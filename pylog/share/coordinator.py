"""The share coordinator: the durable state of share-partitions in
__share_group_state, on the coordinator runtime (Kafka's ShareCoordinatorShard
and ShareCoordinatorService are the model; KAFKA-NOTES §11.6).

Each share-partition (group, topic id, partition) lives in partition
abs(javaHash("group:topicId:partition")) % share.coordinator.state.topic.num.partitions
of the topic, as Kafka's records: key = int16 record type + {GroupId,
TopicId, Partition}; value = int16 version 0 + ShareSnapshotValue (type 0) or
ShareUpdateValue (type 1). A write appends a ShareUpdate; after
share.coordinator.snapshot.update.records.per.snapshot updates the next write
is a ShareSnapshot of the merged state with SnapshotEpoch + 1. Delete writes
tombstones of both keys.

The operations are Kafka's persister RPCs (Initialize, Read, Write, Delete,
ReadSummary): each runs as an event of its state partition and answers once
the high watermark covers its records. This broker's share-partition leaders
reach them through the persister (persister.py), in-process when this broker
leads the state partition, else over the wire (persister_apis.py serves them).

Threads: the event loop's thread only.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import struct
import time
import uuid

from ..coordinator.runtime import CoordinatorRuntime, operation_error
from ..errors import PylogError
from ..groups.offsets_topic import java_string_hash
from ..protocol.error_codes import Errors
from ..protocol.share_records import ShareSnapshotKey, ShareSnapshotValue, ShareUpdateValue

log = logging.getLogger("pylog.share")

TOPIC = "__share_group_state"
SNAPSHOT, UPDATE = 0, 1
_I16 = struct.Struct(">h")


def topic_id_text(topic_id: uuid.UUID) -> str:
    """Kafka's Uuid.toString: URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).decode("ascii").rstrip("=")


def topic_id_from_text(text: str) -> uuid.UUID:
    """Kafka's Uuid.fromString (ValueError when it is not one)."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(text) != 22 or len(raw) != 16:
        raise ValueError(text)
    return uuid.UUID(bytes=raw)


def partition_for(group_id: str, topic_id: uuid.UUID, partition: int, num_partitions: int) -> int:
    h = java_string_hash(f"{group_id}:{topic_id_text(topic_id)}:{partition}")
    return (0 if h == -(1 << 31) else abs(h)) % num_partitions


class ShareState:
    __slots__ = ("snapshot_epoch", "state_epoch", "leader_epoch", "start_offset", "batches", "create_ts",
                 "updates", "delivery_complete")

    def __init__(self, snapshot_epoch, state_epoch, leader_epoch, start_offset, batches, create_ts):
        self.snapshot_epoch, self.state_epoch, self.leader_epoch = snapshot_epoch, state_epoch, leader_epoch
        self.start_offset, self.batches, self.create_ts = start_offset, batches, create_ts
        self.updates = 0    # ShareUpdate records since the last snapshot
        self.delivery_complete = None   # a summary from another broker: its DeliveryCompleteCount

    def delivery_complete_count(self) -> int:
        """Offsets from the start offset on delivered to completion
        (acknowledged or archived): ReadShareGroupStateSummary v1's count."""
        return sum(last - max(first, self.start_offset) + 1 for first, last, state, _ in self.batches
                   if state in (2, 4) and last >= self.start_offset)


def merge_batches(old: list, start: int, new: list) -> list:
    """old's batches from start on, overlaid by new's ranges (Kafka's
    ShareCoordinatorShard merge: an update's batch replaces what it covers)."""
    out = []
    for f, l, s, c in sorted(old):
        if l < start:
            continue
        out.append((max(f, start), l, s, c))
    for nf, nl, ns, nc in sorted(new):
        if nl < start:
            continue
        nf = max(nf, start)
        kept = []
        for f, l, s, c in out:
            if l < nf or f > nl:
                kept.append((f, l, s, c))
                continue
            if f < nf:
                kept.append((f, nf - 1, s, c))
            if l > nl:
                kept.append((nl + 1, l, s, c))
        kept.append((nf, nl, ns, nc))
        out = sorted(kept)
    return out


class ShareCoordinator:
    """The shard the runtime drives over __share_group_state, and the
    persister operations. Event-loop thread only."""

    def __init__(self, config, writer):
        self.config = config
        self.writer = writer
        self.num_partitions = config.get("share.coordinator.state.topic.num.partitions")
        self.replication_factor = config.get("share.coordinator.state.topic.replication.factor")
        self.per_snapshot = config.get("share.coordinator.snapshot.update.records.per.snapshot")
        self.states: dict[tuple, ShareState] = {}
        self.runtime = CoordinatorRuntime(TOPIC, writer, self,
                                          write_timeout_ms=config.get("share.coordinator.write.timeout.ms"))

    # ---- the shard ----

    def replay(self, index, rec):
        if rec.key is None or len(rec.key) < 2:
            return
        kind = _I16.unpack_from(rec.key, 0)[0]
        if kind not in (SNAPSHOT, UPDATE):
            return
        k = ShareSnapshotKey.decode(memoryview(rec.key)[2:], 0)
        key = (k.group_id, k.topic_id, k.partition)
        if rec.value is None:
            self.states.pop(key, None)
            return
        body = memoryview(rec.value)[2:]
        if kind == SNAPSHOT:
            v = ShareSnapshotValue.decode(body, 0)
            self.states[key] = ShareState(v.snapshot_epoch, v.state_epoch, v.leader_epoch, v.start_offset,
                                          _batches(v.state_batches), v.create_timestamp)
        else:
            v = ShareUpdateValue.decode(body, 0)
            st = self.states.get(key)
            if st is None:
                return   # an update without its snapshot (Kafka ignores it too)
            self._apply_update(st, v.leader_epoch, v.start_offset, _batches(v.state_batches))

    def loaded(self, index):
        pass

    def unloaded(self, index):
        for key in [k for k in self.states if self.partition_of(*k) == index]:
            del self.states[key]

    def on_become_leader(self, index):
        self.runtime.on_become_leader(index)

    def on_resign(self, index):
        self.runtime.on_resign(index)

    def start(self):
        self.runtime.load_led_partitions()

    async def stop(self):
        await self.runtime.stop()

    def topic_configs(self) -> dict:
        # KIP-932's (ShareCoordinatorService): kept forever, as the latest
        # snapshot of a share-partition may be old.
        return {"cleanup.policy": "delete", "compression.type": "producer", "retention.ms": "-1",
                "segment.bytes": str(self.config.get("share.coordinator.state.topic.segment.bytes")),
                "min.insync.replicas": str(self.config.get("share.coordinator.state.topic.min.isr"))}

    def partition_of(self, group_id, topic_id, partition) -> int:
        n = self.writer.partition_count(TOPIC) or self.num_partitions
        return partition_for(group_id, topic_id, partition, n)

    def ensure_topic(self) -> bool:
        """Ask for the topic when it does not exist; whether it exists."""
        if self.writer.partition_count(TOPIC) is None:
            self.writer.create_topic(TOPIC, self.num_partitions, self.replication_factor, self.topic_configs())
            return False
        return True

    def coordinator_for(self, key: str):
        """FindCoordinator key type 2: the leader of the state partition of
        "groupId:topicId:partition", as (error, node_id, host, port);
        INVALID_REQUEST for a key not of that form (Kafka's
        SharePartitionKey.validate), COORDINATOR_NOT_AVAILABLE while the topic
        is being created or the partition has no live leader."""
        tokens = key.split(":")
        try:
            if len(tokens) != 3 or not tokens[0].strip():
                raise ValueError(key)
            topic_id = topic_id_from_text(tokens[1])
            partition = int(tokens[2])
            if partition < 0:
                raise ValueError(key)
        except ValueError:
            return Errors.INVALID_REQUEST, -1, "", -1
        if not self.ensure_topic():
            return Errors.COORDINATOR_NOT_AVAILABLE, -1, "", -1
        ep = self.writer.leader_endpoint(TOPIC, self.partition_of(tokens[0].strip(), topic_id, partition))
        if ep is None:
            return Errors.COORDINATOR_NOT_AVAILABLE, -1, "", -1
        return (Errors.NONE, *ep)

    def coordinator_error(self, group_id, topic_id, partition) -> int:
        if not self.ensure_topic():
            return Errors.COORDINATOR_NOT_AVAILABLE
        return self.runtime.partition_error(self.partition_of(group_id, topic_id, partition))

    # ---- the persister operations ----

    async def initialize(self, group_id, topic_id, partition, state_epoch, start_offset) -> int:
        return await self._run(group_id, topic_id, partition, self._initialize, state_epoch, start_offset)

    async def read(self, group_id, topic_id, partition, leader_epoch):
        """(error, ShareState or None when never initialized). A read at a
        newer leader epoch records that epoch first (a ShareUpdate without
        batches, as Kafka's readStateAndMaybeUpdateLeaderEpoch), so the
        previous leader's writes are fenced from then on. Kafka runs it as a
        write operation: one that writes nothing is answered once the
        partition's pending write commits, or with that write's error."""
        return await self._run(group_id, topic_id, partition, self._read, leader_epoch, failed=_no_state)

    async def read_summary(self, group_id, topic_id, partition):
        """(error, ShareState or None): what ReadShareGroupStateSummary
        answers. Nothing is written, but Kafka runs it as a write operation
        too (read-share-group-state-summary): it waits for the pending write."""
        return await self._run(group_id, topic_id, partition, self._read_summary, failed=_no_state)

    async def write(self, group_id, topic_id, partition, state_epoch, leader_epoch, start_offset, batches) -> int:
        return await self._run(group_id, topic_id, partition, self._write, state_epoch, leader_epoch, start_offset,
                               batches)

    async def delete(self, group_id, topic_id, partition) -> int:
        return await self._run(group_id, topic_id, partition, self._delete)

    async def _run(self, group_id, topic_id, partition, event, *args, failed=operation_error):
        key = (group_id, topic_id, partition)
        code = self.coordinator_error(*key)
        if code:
            return failed(code)
        index = self.partition_of(*key)
        try:
            # Kafka runs each as a write operation: one that writes nothing
            # (a refusal, a state already so, a read) waits for the pending write.
            out = self.runtime.schedule(index, event, index, key, *args, failed=failed)
            if asyncio.iscoroutine(out):
                out = await out
        except (PylogError, OSError) as e:
            # The append failed: nothing of the event is in the log or the state.
            return failed(getattr(e, "error_code", Errors.KAFKA_STORAGE_ERROR))
        return out

    def _read(self, index, key, leader_epoch):
        st = self.states.get(key)
        if st is None:
            return Errors.NONE, None
        if leader_epoch < st.leader_epoch:
            return Errors.FENCED_LEADER_EPOCH, None
        if leader_epoch == st.leader_epoch:
            return Errors.NONE, _copy(st)
        out = self._new_leader_epoch(index, key, leader_epoch)
        # The answer is the state as this event leaves it (Kafka builds it
        # in the operation), whatever later writes do while it waits.
        seen = _copy(st)
        if not asyncio.iscoroutine(out):
            return (out, None) if out else (Errors.NONE, seen)

        async def answer():
            code = await out
            return (code, None) if code else (Errors.NONE, seen)
        return answer()

    def _read_summary(self, index, key):
        st = self.states.get(key)
        return Errors.NONE, None if st is None else _copy(st)

    def _initialize(self, index, key, state_epoch, start_offset):
        st = self.states.get(key)
        if st is not None and state_epoch <= st.state_epoch:
            return Errors.FENCED_STATE_EPOCH
        now = _now_ms()
        value = ShareSnapshotValue(snapshot_epoch=0, state_epoch=state_epoch, leader_epoch=-1,
                                   start_offset=start_offset, create_timestamp=now, write_timestamp=now,
                                   state_batches=[])
        last = self.runtime.append(index, [_key(SNAPSHOT, key)], [_value(ShareSnapshotValue, value)])
        self.states[key] = ShareState(0, state_epoch, -1, start_offset, [], now)
        return self._committed(index, last)

    def _write(self, index, key, state_epoch, leader_epoch, start_offset, batches):
        st = self.states.get(key)
        if st is None:
            return Errors.INVALID_REQUEST
        if leader_epoch < st.leader_epoch:
            return Errors.FENCED_LEADER_EPOCH
        if state_epoch < st.state_epoch:
            return Errors.FENCED_STATE_EPOCH
        SB = ShareUpdateValue.StateBatch
        wire = [SB(first_offset=f, last_offset=l, delivery_state=s, delivery_count=c) for f, l, s, c in batches]
        if st.updates >= self.per_snapshot:
            merged = ShareState(st.snapshot_epoch + 1, st.state_epoch, max(leader_epoch, st.leader_epoch),
                                start_offset, merge_batches(st.batches, start_offset, batches), st.create_ts)
            SS = ShareSnapshotValue.StateBatch
            value = ShareSnapshotValue(
                snapshot_epoch=merged.snapshot_epoch, state_epoch=merged.state_epoch,
                leader_epoch=merged.leader_epoch, start_offset=merged.start_offset,
                create_timestamp=merged.create_ts, write_timestamp=_now_ms(),
                state_batches=[SS(first_offset=f, last_offset=l, delivery_state=s, delivery_count=c)
                               for f, l, s, c in merged.batches])
            last = self.runtime.append(index, [_key(SNAPSHOT, key)], [_value(ShareSnapshotValue, value)])
            self.states[key] = merged
        else:
            value = ShareUpdateValue(snapshot_epoch=st.snapshot_epoch, leader_epoch=leader_epoch,
                                     start_offset=start_offset, state_batches=wire)
            last = self.runtime.append(index, [_key(UPDATE, key)], [_value(ShareUpdateValue, value)])
            self._apply_update(st, leader_epoch, start_offset, batches)
        return self._committed(index, last)

    def _new_leader_epoch(self, index, key, leader_epoch):
        st = self.states.get(key)
        if st is None or leader_epoch <= st.leader_epoch:
            return Errors.NONE if st is None or leader_epoch == st.leader_epoch else Errors.FENCED_LEADER_EPOCH
        value = ShareUpdateValue(snapshot_epoch=st.snapshot_epoch, leader_epoch=leader_epoch,
                                 start_offset=st.start_offset, state_batches=[])
        last = self.runtime.append(index, [_key(UPDATE, key)], [_value(ShareUpdateValue, value)])
        self._apply_update(st, leader_epoch, st.start_offset, [])
        return self._committed(index, last)

    def _delete(self, index, key):
        if key not in self.states:
            return Errors.NONE
        last = self.runtime.append(index, [_key(SNAPSHOT, key), _key(UPDATE, key)], [None, None])
        del self.states[key]
        return self._committed(index, last)

    def _apply_update(self, st, leader_epoch, start_offset, batches):
        if start_offset >= 0:
            st.start_offset = max(st.start_offset, start_offset)
        st.leader_epoch = max(st.leader_epoch, leader_epoch)
        st.batches = merge_batches(st.batches, st.start_offset, batches)
        st.updates += 1

    def _committed(self, index, last):
        # A failed wait as Kafka's handleOperationException maps it (a
        # timeout: COORDINATOR_NOT_AVAILABLE); the change stays applied.
        code = self.runtime.committed_now(index, last)
        if code is not None:
            return operation_error(code)

        async def wait():
            return operation_error(await self.runtime.committed(index, last))
        return wait()


def _no_state(code):
    """A read's answer when its operation fails (Kafka's handleOperationException)."""
    return operation_error(code), None


def _copy(st: ShareState) -> ShareState:
    out = ShareState(st.snapshot_epoch, st.state_epoch, st.leader_epoch, st.start_offset, list(st.batches),
                     st.create_ts)
    out.updates, out.delivery_complete = st.updates, st.delivery_complete
    return out


def _batches(wire) -> list:
    return [(b.first_offset, b.last_offset, b.delivery_state, b.delivery_count) for b in wire or ()]


def _key(kind, key) -> bytes:
    group_id, topic_id, partition = key
    return _I16.pack(kind) + ShareSnapshotKey.encode(
        ShareSnapshotKey(group_id=group_id, topic_id=topic_id, partition=partition), 0)


def _value(cls, value) -> bytes:
    return _I16.pack(0) + cls.encode(value, 0)


def _now_ms() -> int:
    return int(time.time() * 1000)
