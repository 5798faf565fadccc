"""LocalStore: a broker's data directory used in-process, with no broker.

The embedded Producer and Consumer read and write through it. It is the
broker's own storage code driven directly: a LogManager (pylog-topics.json,
meta.properties, `<topic>-<n>/` partition logs), its Partitions (leader epoch
stamping, idempotent-producer state, high watermark), the producer id blocks
in `pylog-producer-ids` (ProducerIdBlocks, the broker's class), a
GroupCoordinator for committed offsets (the same `__consumer_offsets`
records, partition placement and replay, written through the coordinator
runtime's BrokerPartitionWriter.local), and ListOffsets by the broker's own
per-partition body (Partition.list_offset_now / list_offset_by_time). So a
broker started on the directory afterwards serves everything written here,
committed group offsets included (topics and partitions added here are
adopted into its cluster metadata at its start, pylog/cluster/migration.py),
and a directory a broker wrote can be opened here.

Not yet shared (issue 12, point 4): topics are still created here through
LogManager.create_topic, not through the in-process Controller, because the
Controller applies its decisions to a Broker's handlers (LeaderAndIsr), which
this store does not run. The step after this one holds a listener-less
Broker on its own loop thread for topic creation, groups and the controller.

One LocalStore per directory per process: `LocalStore.open` hands out the
open one (reference counted) so a Producer and a Consumer on the same
directory share the same Log objects; `close()` drops a reference and the
last one closes the logs (flushed, with a clean-shutdown marker).

Exclusion: the store holds an flock on `<log_dir>/.lock` (the name Kafka uses
for a data directory's lock), and every partition Log holds the flock on its
own `.lock`. A broker on the same directory (in this process or another)
fails to open the partitions and its start raises LogLockedError; a store
opened on a directory a broker is serving raises LogLockedError the same way
(as soon as the directory has a topic), or at once when another LocalStore
process holds the directory.

Invariants: single replica, so high_watermark == log_end_offset once an
append returns; offsets are assigned by the log, contiguous across appends;
the committed offsets in memory equal what replaying `__consumer_offsets`
gives.

Thread-safety: every public method may be called from any thread. Appends
to and reads of one partition are serialised by that partition's lock (the
broker's Partition is not thread-safe: an append moves the log end offset
before the high watermark); topic creation and offset commits by the store
lock. Reads copy the batches out (one memcpy, no per-record loop) so no
view pins a segment after the call. `appended` (a Condition) is notified
after every append, for fetches that long-poll.

The append path stays on the caller's thread: handing each batch to a loop
thread (call_soon_threadsafe and a future to wait on) would cost a thread
switch per send, more than the append itself for small batches (bench J's
embedded send). So a store that holds a broker loop later must keep the
partitions it appends to out of that loop's hands (or make the loop take the
same partition lock), since Partition relies on having one owner; ListOffsets
by time reads the disk on the caller's thread, as the broker does on a
worker thread.
"""
from __future__ import annotations

import os
import threading
import time
from typing import ClassVar

from ..broker.config import BrokerConfig, read_properties
from ..broker.coordinator_writer import BrokerPartitionWriter
from ..broker.handlers import INTERNAL_TOPICS
from ..broker.log_manager import META_FILE, LogManager
from ..broker.producer_ids import ProducerIdBlocks
from ..client.errors import check
from ..errors import (
    InvalidRequestError,
    InvalidTopicError,
    LogClosedError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from ..groups import offsets_topic as ot
from ..groups.coordinator import GroupCoordinator, GroupState
from ..structs import OffsetAndMetadata, TopicPartition

__all__ = ["LocalStore"]



class LocalStore:
    """A broker data directory opened in this process (see the module docstring).

    Create with LocalStore.open(log_dir, ...), never directly. Thread-safe.
    """

    _registry: ClassVar[dict[str, LocalStore]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def open(cls, log_dir, *, auto_create_topics: bool = True, num_partitions: int = 1,
             config: dict | None = None) -> LocalStore:
        """The process's store for log_dir, opened on first use. config: broker
        settings under Kafka's keys (log.segment.bytes, offsets.topic.num.partitions,
        ...). A store already open keeps the settings of its first opener."""
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
        try:
            props = {k: str(v) for k, v in (config or {}).items()}
            props.setdefault("num.partitions", str(num_partitions))
            props.setdefault("auto.create.topics.enable", str(bool(auto_create_topics)).lower())
            props["log.dirs"] = path
            stored_id = _stored_broker_id(path)
            if stored_id is not None:
                # The directory belongs to that broker id; LogManager refuses another.
                props["broker.id"] = stored_id
            self.config = BrokerConfig(props)
            self.data_dir = path
            self.log_manager = LogManager(self.config, path, standalone=True)
            self.log_manager.open()
            self._groups = GroupCoordinator(self.config, BrokerPartitionWriter.local(self.log_manager))
            if ot.TOPIC in self.log_manager.topics:
                self._load_groups()
        except BaseException:
            if getattr(self, "log_manager", None) is not None:
                self.log_manager.close()
            raise
        self.auto_create_topics = self.config.get("auto.create.topics.enable")
        self._refs = 1
        self._lock = threading.RLock()
        self._partition_locks: dict[tuple[str, int], threading.Lock] = {}
        self._producer_ids = ProducerIdBlocks(path)
        self._housekeeping_interval_s = min(self.config.get("log.retention.check.interval.ms"),
                                            self.config.get("log.flush.offset.checkpoint.interval.ms")) / 1000.0
        self._last_housekeeping: dict[tuple[str, int], float] = {}
        self._closed = False
        self.appended = threading.Condition(threading.Lock())
        self.append_count = 0   # appends so far, under `appended`: long polls watch it

    # ---- facts ----

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self):
        return f"LocalStore({self.data_dir!r}, refs={self._refs}{', closed' if self._closed else ''})"

    # ---- topics ----

    def create_topic(self, name: str, partitions: int = 1, config: dict | None = None) -> None:
        """Create a topic (TopicAlreadyExistsError, InvalidTopicError,
        InvalidPartitionsError, InvalidConfigError as the broker raises them)."""
        if name in INTERNAL_TOPICS:
            raise InvalidRequestError(f"{name} is an internal topic; it is not created by clients")
        with self._lock:
            self._check_open()
            self.log_manager.create_topic(name, partitions, 1, config)

    def create_partitions(self, name: str, count: int) -> None:
        """Grow topic name to count partitions (Kafka's CreatePartitions)."""
        with self._lock:
            self._check_open()
            self.log_manager.create_partitions(name, count)

    def partitions_for(self, topic: str, create: bool = False) -> list[int] | None:
        """The topic's partition ids; None when it does not exist (after
        creating it with num.partitions when create and auto_create_topics)."""
        with self._lock:
            self._check_open()
            meta = self.log_manager.topics.get(topic)
            if meta is None and create and self.auto_create_topics and topic not in INTERNAL_TOPICS:
                try:
                    meta = self.log_manager.create_topic(topic)
                except TopicAlreadyExistsError:  # pragma: no cover - the lock rules it out
                    meta = self.log_manager.topics[topic]
            return None if meta is None else list(range(meta.num_partitions))

    def topics(self) -> list[str]:
        """Every topic except the internal ones, sorted."""
        with self._lock:
            self._check_open()
            return sorted(t for t in self.log_manager.topics if t not in INTERNAL_TOPICS)

    # ---- records ----

    def append(self, topic: str, partition: int, batch) -> tuple[int, int]:
        """Append the record batches in batch (v2, as a producer builds them) as
        the broker appends a Produce request's: validated, offsets assigned, the
        leader epoch stamped, idempotent producer fields checked. A retried
        idempotent batch is not written again: its original offset comes back.
        Returns (base_offset, log_append_time) with log_append_time -1
        (CreateTime topics only, like the broker)."""
        if topic in INTERNAL_TOPICS:
            raise InvalidTopicError(f"{topic} is an internal topic: clients cannot produce to it")
        p = self._partition(topic, partition)
        with self._partition_lock(topic, partition):
            r = p.append_as_leader(batch, -1)
            # No broker runs the background task here: the writer does it,
            # for the partition it writes, as often as the broker would.
            now = time.monotonic()
            last = self._last_housekeeping.setdefault((topic, partition), now)
            if now - last >= self._housekeeping_interval_s:
                self._last_housekeeping[(topic, partition)] = now
                p.housekeeping()
        with self.appended:
            self.append_count += 1
            self.appended.notify_all()
        return r.first_offset, r.log_append_time

    def read(self, topic: str, partition: int, offset: int, max_bytes: int):
        """(records, high_watermark, log_start_offset): whole batches from the one
        holding offset, at most max_bytes unless the first batch alone is larger
        (KIP-74), as bytes; b"" when offset is the high watermark.
        OffsetOutOfRangeError outside [log_start_offset, high_watermark]."""
        return self.read_committed(topic, partition, offset, max_bytes, False)[:3]

    def read_committed(self, topic: str, partition: int, offset: int, max_bytes: int, committed: bool = True):
        """read for isolation_level READ_COMMITTED, by the broker's Fetch body:
        below the last stable offset, and a fourth item, the aborted
        transactions (producer_id, first_offset) the caller must drop."""
        p = self._partition(topic, partition)
        with self._partition_lock(topic, partition):
            hw, lso = p.high_watermark, p.log_start_offset
            fs = p.read(offset, max_bytes, committed)
            aborted = tuple(p.aborted_transactions(offset)) if committed and fs is not None else ()
        if fs is None:
            return b"", hw, lso, ()
        # Copied out so no segment stays pinned by a caller's records.
        data = bytes(fs)
        del fs
        return data, hw, lso, aborted

    def list_offset(self, topic: str, partition: int, timestamp: int,
                    isolation_level: int = 0) -> tuple[int, int]:
        """ListOffsets for one partition, by the broker's own body
        (Partition.list_offset_now, then list_offset_by_time): -2 earliest,
        -1 latest (the high watermark; the last stable offset under
        isolation_level 1), else the first offset whose timestamp is >=
        timestamp. (offset, timestamp); (-1, -1) when no record is that late.
        The lookup by time reads the disk on the calling (user) thread, as the
        broker does on a worker thread."""
        p = self._partition(topic, partition)
        with self._partition_lock(topic, partition):
            now = p.list_offset_now(timestamp, isolation_level == 1)
            if now is not None:
                return now
            return p.list_offset_by_time(timestamp, p.last_stable_offset if isolation_level == 1 else None)

    def high_watermark(self, topic: str, partition: int) -> int:
        return self._partition(topic, partition).high_watermark

    def log_start_offset(self, topic: str, partition: int) -> int:
        return self._partition(topic, partition).log_start_offset

    # ---- committed offsets (__consumer_offsets, as the group coordinator keeps them) ----

    def commit_offsets(self, group_id: str, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Store offsets for group_id as a standalone commit (no generation: a
        local directory has one consumer process) in the group's partition of
        __consumer_offsets, written before this returns. Raises the pylog error
        of the first partition refused (UnknownTopicOrPartitionError,
        OffsetMetadataTooLarge's code, ...); the others are stored."""
        if not offsets:
            return
        items = [(tp.topic, tp.partition, om.offset, om.leader_epoch, om.metadata)
                 for tp, om in offsets.items()]
        with self._lock:
            self._check_open()
            result = self._groups.commit_offsets(group_id, -1, "", None, items)
        for (topic, partition), code in sorted(result.items()):
            check(code, f"committing {topic}-{partition} for group {group_id}")

    def committed_offsets(self, group_id: str, partitions) -> dict[TopicPartition, OffsetAndMetadata | None]:
        with self._lock:
            self._check_open()
            got = self._groups.fetch_offsets(group_id, [(tp[0], tp[1]) for tp in partitions])
        return {TopicPartition(t, p): None if om is None else
                OffsetAndMetadata(om.offset, om.metadata or "", om.leader_epoch)
                for (t, p), om in got.items()}

    def _load_groups(self):
        self._groups.load()
        # Members restored from a broker's group metadata are gone (this
        # process holds the directory, so no broker serves them): forget them in
        # memory so standalone commits are accepted. Nothing is written; a broker
        # started later restores and expires them as after any restart.
        for g in self._groups.groups.values():
            if g.members:
                g.members.clear()
                g.static.clear()
                g.state = GroupState.EMPTY

    # ---- idempotent producers ----

    def init_producer_id(self) -> tuple[int, int]:
        """(producer_id, producer_epoch) for a new idempotent producer, from the
        broker's on-disk id blocks, so no id is handed out twice across
        embedded and broker use of the directory."""
        with self._lock:
            self._check_open()
            return self._producer_ids.next_id(), 0

    # ---- durability and closing ----

    def flush(self) -> None:
        """fdatasync every partition written since the last flush."""
        with self._lock:
            self._check_open()
            parts = list(self.log_manager.partitions.items())
        for key, p in parts:
            with self._partition_lock(*key):
                p.log.flush()

    def housekeeping(self, now_ms: int | None = None) -> None:
        """What the broker's background task does, for every partition now:
        retention, producer-id expiry, producer-state snapshots, high
        watermark checkpoints. (append() does it for the partition it writes
        every log.retention.check.interval.ms.)"""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            self._check_open()
            parts = list(self.log_manager.partitions.items())
        for key, p in parts:
            with self._partition_lock(*key):
                p.housekeeping(now_ms)

    def close(self) -> None:
        """Drop one reference; the last closes every log (flushed, clean
        shutdown) and unlocks the directory. Closing twice is harmless."""
        cls = type(self)
        with cls._registry_lock:
            if self._closed:
                return
            self._refs -= 1
            if self._refs > 0:
                return
            if cls._registry.get(self.data_dir) is self:
                del cls._registry[self.data_dir]
            with self._lock:
                self._closed = True
                self.log_manager.close()   # releases the directory lock too
        with self.appended:
            self.appended.notify_all()  # long polls return and see the store closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- internals ----

    def _check_open(self):
        if self._closed:
            raise LogClosedError(f"{self!r} is closed")

    def _partition(self, topic, partition):
        with self._lock:
            self._check_open()
            p = self.log_manager.partitions.get((topic, partition))
        if p is None:
            raise UnknownTopicOrPartitionError(f"{topic}-{partition} does not exist in {self.data_dir}")
        return p

    def _partition_lock(self, topic, partition):
        if topic in INTERNAL_TOPICS:
            # The coordinator appends to __consumer_offsets under the store lock.
            return self._lock
        lk = self._partition_locks.get((topic, partition))
        if lk is None:
            lk = self._partition_locks.setdefault((topic, partition), threading.Lock())
        return lk


def _stored_broker_id(path: str) -> str | None:
    meta = os.path.join(path, META_FILE)
    if not os.path.exists(meta):
        return None
    props = read_properties(meta)
    return props.get("broker.id") or props.get("node.id")

