"""LogManager: the logs on disk of a data directory (a broker's, or pylog's
embedded store's) and the partitions open over them.

What topics exist is not decided here. On a broker the Controller decides
(every broker is in a cluster; a lone one is a one-node cluster): the
LeaderAndIsr / StopReplica it sends make this LogManager open, create or
delete the replicas it is told to (open_replicas off the loop, then
register_replicas; delete_partition), and pylog-topics.json is
this data dir's list of hosted replicas and their last known configs, which the
one-node cluster adopts into its metadata at start (pylog/cluster/migration.py).
pylog's embedded store is a broker without a listener, so the same holds there.

Layout (Kafka's): `<data dir>/<topic>-<partition>/` holds each partition's
segments and checkpoints; `meta.properties` names the broker and cluster;
`<topic>-<partition>/partition.metadata` holds the topic id the replica belongs
to (Kafka's file, partition_metadata.py), the controller's, and wins over
pylog-topics.json's at start;
`pylog-topics.json` keeps each topic's id, partition count, replication factor
and config overrides (what ZooKeeper or the metadata log holds in Kafka),
written atomically. Partition directories with no entry there (written by
pylog's embedded producer, or copied in) are adopted as topics with default
configs, so a broker can serve a directory written without one.

Replicas assigned by a controller (LeaderAndIsr) for a topic this broker
did not create: the topic's entry then lists the partitions hosted here
(`assigned`), since a broker of a cluster holds only some partitions of a
topic; such partitions start with no known leader (Partition
controller_managed) until the controller's state arrives; their config
overrides are the controller's (carried by LeaderAndIsr and UpdateMetadata).

Invariants: every topic in `topics` has exactly its hosted partitions open in
`partitions` (0..n-1 for a topic created here, `assigned` for one the
controller placed here); a deleted topic's directories are renamed `*-delete` before
being removed, so a crash mid-delete never resurrects it.

Threads: not thread-safe; the broker's event loop owns it. open_replicas,
write_topics and the file work of delete_partition
(closing the log, the rename) run on file_executor's one thread and touch no
shared state but the topics file (under _topics_lock); so do the file halves
of a follower's truncation and of a leader-epoch-checkpoint write that the
replica fetcher starts (Partition.truncate), and DeleteRecords' segment
deletion and checkpoint write (delete_below_log_start); removing renamed
directories happens on a helper thread that touches nothing else; Log syncs
(flush.messages, rolled segments) run on the flush executor's thread.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    LogClosedError,
    LogLockedError,
    StorageError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from ..log.checkpoint import DIR_FILES, DirCheckpoints, atomic_write, fsync_dir
from .config import (
    BrokerConfig,
    TopicConfig,
    check_compaction_lags,
    validate_topic_configs,
    validate_topic_name,
)
from .partition import Partition
from .partition_metadata import read_topic_id, write_topic_id

log = logging.getLogger("pylog.broker")

TOPICS_FILE = "pylog-topics.json"
META_FILE = "meta.properties"
DIR_LOCK_FILE = ".lock"
# Kafka's controller refuses a CreateTopics (or CreatePartitions) that would
# add more partitions than this in one request, before any work
# (ReplicationControlManager.MAX_PARTITIONS_PER_BATCH, POLICY_VIOLATION).
MAX_PARTITIONS_PER_BATCH = 10_000
_PARTITION_DIR = re.compile(r"(.+)-(\d+)", re.DOTALL)  # fullmatch: a name may not end in a newline


class TopicMeta:
    """Threads: the broker's event loop (through its LogManager) only."""

    __slots__ = ("assigned", "configs", "name", "num_partitions", "offline", "replication_factor", "topic_id")

    def __init__(self, name, topic_id, num_partitions, replication_factor=1, configs=None, assigned=None):
        self.name = name
        self.topic_id = topic_id
        self.num_partitions = num_partitions
        self.replication_factor = replication_factor
        self.configs = dict(configs or {})
        # None: a topic created here (every partition hosted); else the sorted
        # partition indexes the controller assigned to this broker.
        self.assigned = None if assigned is None else sorted(assigned)
        # Partitions hosted here whose log could not be opened at start (not
        # saved: they are tried again at the next start).
        self.offline: set[int] = set()

    @property
    def hosted(self):
        return range(self.num_partitions) if self.assigned is None else list(self.assigned)

    def to_json(self):
        doc = {"id": str(self.topic_id), "partitions": self.num_partitions,
               "replication_factor": self.replication_factor, "configs": self.configs}
        if self.assigned is not None:
            doc["assigned"] = self.assigned
        return doc


class LogManager:
    """Threads: the broker's event loop, but the file-work methods named in
    the module docstring, which run on file_executor's one thread; the
    flush executor's thread runs Log syncs only. The topics/partitions maps
    are loop-only; _topics_lock guards the topics
    file writes, which any thread may make.
    """

    def __init__(self, config: BrokerConfig, data_dir: str | None = None):
        self.config = config
        self.data_dir = os.path.abspath(data_dir or config.log_dir)
        self.broker_id = config.broker_id
        self.topics: dict[str, TopicMeta] = {}
        self.partitions: dict[tuple[str, int], Partition] = {}
        # The topic id in each open replica's partition.metadata (none there:
        # not in this map). Loop-only, like partitions.
        self.topic_ids_on_disk: dict[tuple[str, int], uuid.UUID] = {}
        self.cluster_id = ""
        self._dir_lock_fd: int | None = None
        self._closing = False
        self._files = None  # the one thread doing topic file work, in order (see file_executor)
        # pylog-topics.json is written from the loop or from file_executor's
        # thread: each snapshot has a number, and an older one never
        # overwrites a newer one.
        self._topics_lock = threading.Lock()
        self._topics_seq = 0
        self._topics_written = 0
        self.checkpoints: DirCheckpoints | None = None  # the data dir's, once open
        self.cleaner = None  # the broker's LogCleaner (log_cleaner.py), set once open
        # fdatasyncs due by flush.messages (found by an append on the loop) run here.
        self._flush_executor = ThreadPoolExecutor(1, thread_name_prefix="pylog-flush")

    # ---- start and stop ----

    def open(self):
        os.makedirs(self.data_dir, exist_ok=True)
        self._lock_dir()
        try:
            self.cluster_id = self._load_meta()
            self._load_topics()
            self.checkpoints = DirCheckpoints(self.data_dir)
            ids_changed = False
            progress = _LoadProgress(self.data_dir, [self._partition_path(meta.name, i)
                                                     for meta in self.topics.values() for i in meta.hosted])
            for meta in self.topics.values():
                for i in meta.hosted:
                    try:
                        disk_id = read_topic_id(self._partition_path(meta.name, i))
                        progress.opening(self._partition_path(meta.name, i))
                        self._open_partition(meta, i)
                        if disk_id is not None:
                            self.topic_ids_on_disk[(meta.name, i)] = disk_id
                            if disk_id != meta.topic_id:
                                meta.topic_id = disk_id
                                ids_changed = True
                    except Exception as e:  # noqa: BLE001 -- any failure: that partition only
                        # Kafka takes a failed log dir offline and serves the
                        # rest; here the unit is one partition's directory.
                        meta.offline.add(i)
                        log.error("partition %s-%d is offline: its log in %s could not be opened: %s",
                                  meta.name, i, self.data_dir, e, exc_info=not isinstance(e, OSError))
            progress.done()
            self._migrate_checkpoints()
            if ids_changed:
                self._save_topics()
        except BaseException:
            # A start that fails half way must not keep partitions (and
            # their file locks) open until the garbage collector runs.
            self.close()
            raise
        offline = sum(len(t.offline) for t in self.topics.values())
        log.info("opened %d topics, %d partitions in %s%s", len(self.topics), len(self.partitions),
                 self.data_dir, f" ({offline} offline)" if offline else "")

    def close(self):
        # A creation running off the loop sees _closing, rolls back and ends.
        self._closing = True
        if self._files is not None:
            self._files.shutdown(wait=True)
            self._files = None
        self._flush_executor.shutdown(wait=True)
        errors = []
        for p in list(self.partitions.values()):
            try:
                p.close()
            except Exception as e:  # close the others all the same
                errors.append(e)
                log.error("closing %s failed: %s", p, e)
        self.partitions.clear()
        if self.checkpoints is not None:
            try:
                self.checkpoints.write()
            except OSError as e:
                errors.append(e)
                log.error("writing the checkpoints of %s failed: %s", self.data_dir, e)
        if self._dir_lock_fd is not None:
            os.close(self._dir_lock_fd)   # releases the flock
            self._dir_lock_fd = None
        if errors:
            raise errors[0]

    def _lock_dir(self) -> None:
        """flock <data_dir>/.lock (the name Kafka gives a data directory's
        lock): one broker, or one embedded pylog.embedded.LocalStore, per
        directory, whether it has topics yet or not."""
        fd = os.open(os.path.join(self.data_dir, DIR_LOCK_FILE),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogLockedError(f"data directory {self.data_dir} is in use (by another broker "
                                 "or an embedded producer/consumer)") from None
        self._dir_lock_fd = fd

    def _load_meta(self) -> str:
        path = os.path.join(self.data_dir, META_FILE)
        props = {}
        if os.path.exists(path):
            from .config import read_properties
            props = read_properties(path)
            stored = props.get("broker.id") or props.get("node.id")
            if stored is not None and int(stored) != self.broker_id:
                raise RuntimeError(
                    f"{path} says broker.id={stored} but this broker is configured with "
                    f"broker.id={self.broker_id}; use the matching id or another data dir")
        cluster_id = self.config.get("cluster.id") or props.get("cluster.id")
        if not cluster_id:
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if props.get("cluster.id") != cluster_id or "broker.id" not in props:
            text = f"version=0\nbroker.id={self.broker_id}\ncluster.id={cluster_id}\n"
            atomic_write(path, text.encode())
        return cluster_id

    def _load_topics(self):
        path = os.path.join(self.data_dir, TOPICS_FILE)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            for name, t in doc.get("topics", {}).items():
                try:
                    validate_topic_name(name)
                except InvalidTopicError:
                    # Written by an older broker that let it through: its
                    # directory stays on disk, unserved, and the broker starts.
                    log.error("ignoring topic %r in %s: not a legal topic name", name, path)
                    continue
                self.topics[name] = TopicMeta(name, uuid.UUID(t["id"]), t["partitions"],
                                              t.get("replication_factor", 1), t.get("configs", {}),
                                              t.get("assigned"))
        found: dict[str, set[int]] = {}
        for entry in os.listdir(self.data_dir):
            m = _PARTITION_DIR.fullmatch(entry)
            if not m or not os.path.isdir(os.path.join(self.data_dir, entry)):
                continue
            name, idx = m.group(1), int(m.group(2))
            if name not in self.topics:
                found.setdefault(name, set()).add(idx)
        adopted = {}
        for name, indexes in found.items():
            try:
                validate_topic_name(name)
            except InvalidTopicError:
                log.warning("ignoring the directories of %r: not a legal topic name", name)
                continue
            n = len(indexes)
            if max(indexes) != n - 1:
                # Only a topic whose partitions are all there is adopted: one
                # stray directory named t-99999999 would otherwise create a
                # hundred million partitions at start.
                log.warning("ignoring the directories of %r: partitions %s are not 0..%d", name,
                            sorted(indexes)[:10], n - 1)
                continue
            adopted[name] = n
        for name, n in adopted.items():
            log.info("adopting topic %s (%d partitions found in %s)", name, n, self.data_dir)
            self.topics[name] = TopicMeta(name, uuid.uuid4(), n)
        if adopted:
            self._save_topics()

    def _save_topics(self):
        """pylog-topics.json as it is now. On a broker (whose loop owns this
        LogManager) the write (two fsyncs) queues on file_executor's thread,
        behind the file work asked before it; close() waits for it."""
        snapshot = self.topics_snapshot()
        try:
            self.file_executor.submit(self._write_topics_logged, *snapshot)
            return
        except (LogClosedError, RuntimeError):
            pass   # stopping: written here
        self.write_topics(*snapshot)

    def _write_topics_logged(self, seq, data):
        try:
            self.write_topics(seq, data)
        except OSError as e:   # the next change writes it again
            log.error("writing %s in %s failed: %s", TOPICS_FILE, self.data_dir, e)

    def topics_snapshot(self) -> tuple[int, bytes]:
        """pylog-topics.json as it should be now (on the loop), for write_topics."""
        doc = {"version": 1, "topics": {n: t.to_json() for n, t in sorted(self.topics.items())}}
        self._topics_seq += 1
        return self._topics_seq, json.dumps(doc, indent=1, sort_keys=True).encode()

    def write_topics(self, seq: int, data: bytes) -> bool:
        """Write a topics_snapshot (any thread) unless a newer one is written;
        True when written (then the data dir was fsync'd after it)."""
        with self._topics_lock:
            if seq <= self._topics_written:
                return False
            atomic_write(os.path.join(self.data_dir, TOPICS_FILE), data)
            self._topics_written = seq
            return True

    def _partition_path(self, name: str, index: int) -> str:
        # Every way into the data dir passes here: a name with a '/', a
        # newline or '..' never becomes a path.
        validate_topic_name(name)
        return os.path.join(self.data_dir, f"{name}-{index}")

    def _new_partition(self, meta: TopicMeta, index: int) -> Partition:
        p = Partition(meta.name, index, self._partition_path(meta.name, index),
                         TopicConfig(self.config, meta.configs), self.broker_id,
                         self.config.get("producer.id.expiration.ms"),
                         controller_managed=meta.assigned is not None,
                         dir_checkpoints=self.checkpoints)
        p.log.flush_executor = self._flush_executor
        p.cleaner_pause = self._cleaner_paused
        return p

    def _cleaner_paused(self, topic: str, index: int):
        """The cleaning of topic-index paused (a round aborted) for a with block
        (Kafka's abortAndPauseCleaning / resumeCleaning): a truncation,
        DeleteRecords' segment deletion. Any thread but a cleaner thread."""
        if self.cleaner is None:
            return contextlib.nullcontext()
        return self.cleaner.paused((topic, index))

    def _migrate_checkpoints(self):
        """Kafka keeps one recovery-point, log-start and replication-offset
        checkpoint per data dir; the release before kept them in each
        partition's directory. Each log read its own file when the data dir's
        had no entry for it (Log._checkpointed): the data dir's files are
        written with every open partition's offsets, then the old ones go."""
        for p in self.partitions.values():
            p.log.checkpoint()
            p.checkpoint_high_watermark()
            p.log.adopt_cleaner_checkpoint()
        legacy = [os.path.join(p.path, name) for p in self.partitions.values() for name in DIR_FILES
                  if os.path.exists(os.path.join(p.path, name))]
        if not legacy:
            self.checkpoints.write()  # only files whose entries changed
            return
        self.checkpoints.write(force=True)
        for path in legacy:
            os.remove(path)
        for d in {os.path.dirname(path) for path in legacy}:
            fsync_dir(d)
        if legacy:
            log.info("moved the checkpoints of %d partitions into %s's own files", len(
                {os.path.dirname(path) for path in legacy}), self.data_dir)

    def _open_partition(self, meta: TopicMeta, index: int) -> Partition:
        p = self._new_partition(meta, index)
        self.partitions[(meta.name, index)] = p
        meta.offline.discard(index)
        return p

    # ---- lookups ----

    def get_partition(self, topic: str, index: int) -> Partition:
        p = self.partitions.get((topic, index))
        if p is None:
            meta = self.topics.get(topic)
            if meta is not None and index in meta.offline:
                # Kafka's answer for a replica in an offline log dir.
                raise StorageError(f"partition {topic}-{index} is offline: its log could not be opened")
            raise UnknownTopicOrPartitionError(f"this broker does not host {topic}-{index}")
        return p

    def offline(self, name: str) -> set[int]:
        """The partitions of name hosted here whose log could not be opened."""
        meta = self.topics.get(name)
        return meta.offline if meta is not None else set()

    def local_topics(self) -> list:
        """What this data dir holds, for the cluster's metadata to adopt at
        start (pylog/cluster/migration.py); taken on the loop."""
        from ..cluster.migration import LocalTopic
        out = []
        for name, meta in sorted(self.topics.items()):
            epochs = {}
            for i in meta.hosted:
                p = self.partitions.get((name, i))
                if p is not None:
                    epochs[i] = p.epoch_cache.latest_epoch()
            out.append(LocalTopic(name, meta.topic_id, meta.num_partitions, list(meta.hosted),
                                  dict(meta.configs), epochs))
        return out

    def topic_config(self, name: str) -> TopicConfig:
        meta = self.topics.get(name)
        if meta is None:
            raise UnknownTopicOrPartitionError(f"topic {name} does not exist")
        return TopicConfig(self.config, meta.configs)

    # Topics are created, grown and deleted only by the controller (pylog/cluster):
    # its LeaderAndIsr makes this broker open the replicas (open_replicas).

    @property
    def file_executor(self) -> ThreadPoolExecutor:
        """One thread for topic file work, so creations and deletions reach
        the disk in the order they were asked for."""
        if self._closing:
            raise LogClosedError("the broker is stopping")
        if self._files is None:
            self._files = ThreadPoolExecutor(1, thread_name_prefix="pylog-topic-files")
        return self._files

    # ---- replicas assigned by the controller ----

    def _note_assigned(self, name, index, topic_id, configs) -> TopicMeta:
        """The topic entry listing index as hosted here (created when missing)."""
        validate_topic_name(name)
        meta = self.topics.get(name)
        if meta is None:
            tid = topic_id if topic_id is not None and topic_id.int != 0 else uuid.uuid4()
            meta = self.topics[name] = TopicMeta(name, tid, index + 1, 1, dict(configs or {}), assigned=[])
        elif meta.assigned is None:
            # A locally created topic gaining a partition it did not have:
            # from now on it lists what is hosted.
            meta.assigned = list(meta.hosted)
        meta.assigned = sorted(set(meta.assigned) | {index})
        meta.num_partitions = max(meta.num_partitions, index + 1)
        return meta

    # New replicas off the loop: open_replicas (the file work, on
    # file_executor's thread; touches no shared state), then register_replicas
    # (on the loop), then the topics file written off the loop.

    def open_replicas(self, specs) -> list:
        """specs: (topic, index, topic_id, config overrides); for each, its new
        Partition and the topic id in its partition.metadata (written from
        topic_id when there was none; None when neither has one), or the
        exception opening it raised."""
        out = []
        for name, index, topic_id, configs in specs:
            if self._closing:
                raise LogClosedError("the broker is stopping")
            try:
                overrides = {k: v for k, v in validate_topic_configs(configs or {}).items() if v is not None}
                p = Partition(name, index, self._partition_path(name, index),
                              TopicConfig(self.config, overrides), self.broker_id,
                              self.config.get("producer.id.expiration.ms"), controller_managed=True,
                              dir_checkpoints=self.checkpoints)
                p.log.flush_executor = self._flush_executor
                p.cleaner_pause = self._cleaner_paused
                try:
                    disk_id = read_topic_id(p.path)
                    if disk_id is None and topic_id is not None and topic_id.int != 0:
                        write_topic_id(p.path, topic_id)
                        disk_id = topic_id
                except BaseException:
                    p.close()
                    raise
                out.append((p, disk_id))
            except Exception as e:  # noqa: BLE001 - that replica only; the loop tries it again and reports it
                out.append(e)
            time.sleep(0)  # off the loop: let the loop thread have the GIL between partitions
        return out

    def close_unregistered(self, opened) -> None:
        """Close what open_replicas opened and will not be registered."""
        self._close_opened([o[0] for o in opened if not isinstance(o, BaseException)])

    def register_replicas(self, specs, opened) -> None:
        """Make the replicas open_replicas opened visible (on the loop); one
        already there meanwhile keeps its own, the new one is closed."""
        for (name, index, topic_id, configs), opened_one in zip(specs, opened):
            if isinstance(opened_one, BaseException):
                p = opened_one
                if (name, index) not in self.partitions:
                    # Assigned, but its log cannot be opened: offline until the
                    # controller's next LeaderAndIsr tries it again (off the loop).
                    self._note_assigned(name, index, topic_id, configs).offline.add(index)
                    log.error("replica %s-%d is offline: its log in %s could not be opened: %s", name, index,
                              self.data_dir, p)
                continue
            p, disk_id = opened_one
            if (name, index) in self.partitions:
                self._close_opened([p])
                continue
            meta = self._note_assigned(name, index, disk_id or topic_id, configs)
            self.partitions[(name, index)] = p
            meta.offline.discard(index)
            if disk_id is not None:
                self.note_topic_id(name, index, disk_id)
            log.info("created replica %s-%d (assigned by the controller)", name, index)

    def topic_ids_to_write(self, wanted) -> list:
        """Of wanted ((topic, index, topic id) from a LeaderAndIsr), the open
        replicas whose directory has no partition.metadata yet (written by an
        older pylog, or before the controller sent ids): (topic, index, path,
        topic id) for write_topic_ids."""
        out = []
        for name, index, tid in wanted:
            p = self.partitions.get((name, index))
            if p is not None and tid.int != 0 and (name, index) not in self.topic_ids_on_disk:
                out.append((name, index, p.path, tid))
        return out

    @staticmethod
    def write_topic_ids(jobs) -> list:
        """On file_executor's thread: write each job's partition.metadata;
        the jobs written (a failure is logged; the next LeaderAndIsr tries again)."""
        done = []
        for job in jobs:
            try:
                write_topic_id(job[2], job[3])
                done.append(job)
            except OSError as e:
                log.error("writing the topic id of %s-%d failed: %s", job[0], job[1], e)
        return done

    def note_topic_id(self, name: str, index: int, topic_id: uuid.UUID) -> None:
        """On the loop: name-index's partition.metadata holds topic_id, which
        is then the topic's id here (pylog-topics.json written off the loop)."""
        self.topic_ids_on_disk[(name, index)] = topic_id
        meta = self.topics.get(name)
        if meta is not None and meta.topic_id != topic_id:
            meta.topic_id = topic_id
            self._save_topics()

    def delete_partition(self, name: str, index: int) -> Future:
        """Remove the local replica name-index and its data (StopReplica with
        delete_partitions); the topic's entry goes with its last replica.
        On the loop, the replica leaves this LogManager at once (a new one of
        the same name may be created meanwhile: its file work queues behind
        this one's); the file work runs on file_executor's thread (Kafka's
        asyncDelete): its log's files closed without a flush (its data is
        going), its directory renamed *-delete and the topics file written,
        whose directory fsync makes the rename durable too; then the directory
        is removed in the background. Returns the Future of that file work,
        done once the deletion is durable."""
        meta = self.topics.get(name)
        if meta is None or (name, index) not in self.partitions:
            raise UnknownTopicOrPartitionError(f"this broker does not host {name}-{index}")
        hosted = [i for i in meta.hosted if i != index]
        if hosted:
            meta.assigned = hosted
        else:
            del self.topics[name]
        p = self.partitions.pop((name, index))
        self.topic_ids_on_disk.pop((name, index), None)
        self._forget_checkpoints([p])
        snapshot = self.topics_snapshot()
        try:
            return self.file_executor.submit(self._delete_replica_files, p, snapshot)
        except (LogClosedError, RuntimeError):   # stopping: done here, as close() would
            done = Future()
            try:
                done.set_result(self._delete_replica_files(p, snapshot))
            except Exception as e:  # noqa: BLE001 -- the caller reports it
                done.set_exception(e)
            return done

    def _delete_replica_files(self, p: Partition, snapshot):
        # On file_executor's thread: touches nothing of this LogManager but the
        # topics file (under _topics_lock).
        if self.cleaner is not None:
            self.cleaner.abort_cleaning((p.topic, p.index))
        p.log.close_handlers()
        self._retire_dirs([p.path], sync=False)
        if not self.write_topics(*snapshot):   # a newer one was written, maybe before the rename
            fsync_dir(self.data_dir)
        log.info("deleted replica %s-%d", p.topic, p.index)

    def _forget_checkpoints(self, parts):
        # Entries of deleted partitions leave the data dir's files at their next write.
        if self.checkpoints is not None:
            for p in parts:
                self.checkpoints.remove(p.topic, p.index)

    def _retire_dirs(self, paths, background=True, sync=True):
        """Rename each existing directory *-delete (a crash from here on never
        resurrects it), then remove it (on a helper thread when background).
        sync=False: the caller's next write in the data dir fsyncs it."""
        doomed = []
        for path in paths:
            if os.path.exists(path):
                gone = f"{path}.{uuid.uuid4().hex}-delete"
                os.rename(path, gone)
                doomed.append(gone)
        if doomed:
            if sync:
                fsync_dir(self.data_dir)
            if background:
                threading.Thread(target=_remove_all, args=(doomed,), name="pylog-delete", daemon=True).start()
            else:
                _remove_all(doomed)

    @staticmethod
    def _close_opened(parts) -> list[str]:
        for p in parts:
            try:
                p.close()
            except Exception as e:
                log.error("closing %s: %s", p, e)
        return [p.path for p in parts]

    def sync_topic_configs(self, name: str, configs: dict) -> bool:
        """Take the controller's overrides for a topic hosted here (no-op when
        not hosted or unchanged); True when they changed."""
        meta = self.topics.get(name)
        if meta is None:
            return False
        configs = {k: v for k, v in validate_topic_configs(configs).items() if v is not None}
        if meta.configs == configs:
            return False
        self.alter_configs(name, configs)
        log.info("topic %s: config overrides from the controller: %s", name, configs)
        return True

    def alter_configs(self, name: str, configs: dict, validate_only: bool = False, incremental=False):
        """Replace the topic's overrides with configs (AlterConfigs semantics), or
        merge them when incremental (a None value deletes one)."""
        meta = self.topics.get(name)
        if meta is None:
            raise UnknownTopicOrPartitionError(f"topic {name} does not exist")
        new = merge_overrides(meta.configs, configs, incremental)
        if validate_only:
            return
        meta.configs = new
        self._save_topics()
        cfg = TopicConfig(self.config, new)
        for i in meta.hosted:
            p = self.partitions.get((name, i))
            if p is not None:  # None: offline
                p.apply_config(cfg)

    def refresh_topic_defaults(self) -> None:
        """The broker's topic-config defaults changed (a dynamic broker config):
        every hosted partition takes them where its topic has no override."""
        for name, meta in self.topics.items():
            cfg = TopicConfig(self.config, meta.configs)
            for i in meta.hosted:
                p = self.partitions.get((name, i))
                if p is not None:  # None: offline
                    p.apply_config(cfg)

    # ---- upkeep ----

    async def housekeeping(self, now_ms: int | None = None):
        """The broker's periodic upkeep (Kafka's retention check and checkpoint
        tasks). Runs on the event loop, which owns the partitions' in-memory
        state: producer expiry, the epoch cache's start and the high watermarks
        change here; the file work (retention's segment deletion, producer
        snapshots, the data dir's checkpoint files) runs on file_executor's
        thread meanwhile, so the loop never waits on the disk. A log start moved
        by this round's retention reaches the epoch cache in the next round."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        jobs = []
        for p in list(self.partitions.values()):
            if p.truncating:
                continue   # its log and producer state are being rebuilt off the loop
            try:
                p.epoch_cache.truncate_from_start(p.log.log_start_offset)
                # Entries of segments retention or DeleteRecords removed (collect
                # never reads below the fetch offset's segment; this frees them).
                p.txn_indexes.forget_below(p.log.segment_base_of(p.log.log_start_offset))
                p.producer_state.expire(now_ms)
                jobs.append((p, p.producer_state.prepare_snapshot(p.log.log_end_offset)))
                p.checkpoint_high_watermark()
            except Exception as e:  # noqa: BLE001 -- one partition's failure stops no other
                log.error("housekeeping of %s failed: %s", p, e)
        try:
            executor = self.file_executor
        except LogClosedError:
            return
        await asyncio.get_running_loop().run_in_executor(executor, self._housekeeping_files, jobs, now_ms)

    def _housekeeping_files(self, jobs, now_ms):
        # On file_executor's thread. Log methods take the log's lock; a partition
        # deleted meanwhile answers LogClosedError and is skipped.
        for p, snapshot in jobs:
            try:
                p.log.enforce_retention(now_ms)
                if snapshot is not None:
                    p.producer_state.write_snapshot(snapshot)
            except LogClosedError:
                pass
            except Exception as e:  # noqa: BLE001
                log.error("housekeeping of %s failed: %s", p, e)
        try:
            self.checkpoints.write()
        except OSError as e:
            log.error("writing the checkpoints of %s failed: %s", self.data_dir, e)

    def delete_below_log_start(self, p: Partition) -> Future | None:
        """DeleteRecords' file work for p, whose log start the loop moved:
        on file_executor's thread, the segments wholly below it are deleted
        and the data dir's checkpoints written, so the new log start is
        durable when the Future is done. None when the broker is stopping
        (close() writes the checkpoints; the segments go at the next
        DeleteRecords or retention)."""
        try:
            return self.file_executor.submit(self._delete_below_log_start, p)
        except (LogClosedError, RuntimeError):
            return None

    def _delete_below_log_start(self, p: Partition) -> None:
        # On file_executor's thread (a partition deleted meanwhile is closed:
        # LogClosedError, nothing to do).
        try:
            with self._cleaner_paused(p.topic, p.index):
                p.log.delete_segments_below_log_start()
        except LogClosedError:
            return
        self.checkpoints.write()

    def flush_all(self):
        for p in self.partitions.values():
            p.log.flush()


def merge_overrides(current: dict, changes: dict, incremental: bool) -> dict:
    """A topic's overrides after AlterConfigs (changes replace them all) or
    IncrementalAlterConfigs (merged in; a None value deletes one), validated."""
    new = dict(current) if incremental else {}
    for k, v in validate_topic_configs(changes).items():
        if v is None:
            new.pop(k, None)
        else:
            new[k] = v
    check_compaction_lags(new)
    return new


def _remove_all(paths):
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)


# How often the start-up's partition loading reports its progress.
LOAD_PROGRESS_INTERVAL_S = 5.0


class _LoadProgress:
    """Start-up progress over a data dir's partitions, by the bytes of their
    segments: a log line every LOAD_PROGRESS_INTERVAL_S while loading (and
    recovering) takes that long, as Kafka's LogManager reports "k/n completed"
    while it loads a log dir. Only the opening thread uses it."""

    def __init__(self, data_dir: str, paths):
        self.data_dir = data_dir
        self.sizes = {path: _dir_bytes(path) for path in paths}
        self.total = sum(self.sizes.values())
        self.done_bytes = 0
        self.count = 0
        self.started = time.monotonic()
        self.last_report = self.started
        self.reported = False

    def opening(self, path: str) -> None:
        """Called before each partition opens: counts the ones before it."""
        now = time.monotonic()
        if self.count and now - self.last_report >= LOAD_PROGRESS_INTERVAL_S:
            self._report("loading")
            self.last_report = now
        self.count += 1
        self.done_bytes += self.sizes.get(path, 0)

    def done(self) -> None:
        if self.reported:
            self._report("loaded")

    def _report(self, what: str) -> None:
        self.reported = True
        pct = 100.0 if self.total == 0 else 100.0 * self.done_bytes / self.total
        log.info("%s logs in %s: %.0f%% done (%d/%d partitions, %d of %d bytes) after %.1f s", what,
                 self.data_dir, pct, self.count, len(self.sizes), self.done_bytes, self.total,
                 time.monotonic() - self.started)


def _dir_bytes(path: str) -> int:
    try:
        return sum(e.stat().st_size for e in os.scandir(path) if e.name.endswith(".log"))
    except OSError:
        return 0
