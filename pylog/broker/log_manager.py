"""LogManager: the broker's data directory, its topics and their partitions.

Layout (Kafka's): `<data dir>/<topic>-<partition>/` holds each partition's
segments and checkpoints; `meta.properties` names the broker and cluster;
`pylog-topics.json` keeps each topic's id, partition count, replication factor
and config overrides (what ZooKeeper or the metadata log holds in Kafka),
written atomically. Partition directories with no entry there (written by
pylog's embedded producer, or copied in) are adopted as topics with default
configs, so a broker can serve a directory written without one.

Replicas assigned by a controller (LeaderAndIsr) for a topic this broker
did not create: the topic's entry then lists the partitions hosted here
(`assigned`), since a broker of a cluster holds only some partitions of a
topic; such partitions start with no known leader (Partition
controller_managed) until the controller's state arrives. Their configs are
the broker's defaults (topic config overrides from the controller's store are
not applied yet).

Invariants: every topic in `topics` has exactly its hosted partitions open in
`partitions` (0..n-1 for a topic created here, `assigned` for one the
controller placed here); a deleted topic's directories are renamed `*-delete` before
being removed, so a crash mid-delete never resurrects it.

Not thread-safe: the broker's event loop owns it (deleting renamed
directories happens on a helper thread that touches nothing else).
"""
from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import uuid

from ..errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    LogLockedError,
    StorageError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from ..log.checkpoint import atomic_write, fsync_dir
from .config import (
    BrokerConfig,
    TopicConfig,
    validate_topic_configs,
    validate_topic_name,
)
from .partition import Partition

log = logging.getLogger("pylog.broker")

TOPICS_FILE = "pylog-topics.json"
META_FILE = "meta.properties"
DIR_LOCK_FILE = ".lock"
_PARTITION_DIR = re.compile(r"^(.+)-(\d+)$")


class TopicMeta:
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
    def __init__(self, config: BrokerConfig, data_dir: str | None = None):
        self.config = config
        self.data_dir = os.path.abspath(data_dir or config.log_dir)
        self.broker_id = config.broker_id
        self.topics: dict[str, TopicMeta] = {}
        self.partitions: dict[tuple[str, int], Partition] = {}
        self.cluster_id = ""
        self._dir_lock_fd: int | None = None

    # ---- start and stop ----

    def open(self):
        os.makedirs(self.data_dir, exist_ok=True)
        self._lock_dir()
        try:
            self.cluster_id = self._load_meta()
            self._load_topics()
            for meta in self.topics.values():
                for i in meta.hosted:
                    try:
                        self._open_partition(meta, i)
                    except Exception as e:  # noqa: BLE001 -- any failure: that partition only
                        # Kafka takes a failed log dir offline and serves the
                        # rest; here the unit is one partition's directory.
                        meta.offline.add(i)
                        log.error("partition %s-%d is offline: its log in %s could not be opened: %s",
                                  meta.name, i, self.data_dir, e, exc_info=not isinstance(e, OSError))
        except BaseException:
            # A start that fails half way must not keep partitions (and
            # their file locks) open until the garbage collector runs.
            self.close()
            raise
        offline = sum(len(t.offline) for t in self.topics.values())
        log.info("opened %d topics, %d partitions in %s%s", len(self.topics), len(self.partitions),
                 self.data_dir, f" ({offline} offline)" if offline else "")

    def close(self):
        errors = []
        for p in list(self.partitions.values()):
            try:
                p.close()
            except Exception as e:  # close the others all the same
                errors.append(e)
                log.error("closing %s failed: %s", p, e)
        self.partitions.clear()
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
                self.topics[name] = TopicMeta(name, uuid.UUID(t["id"]), t["partitions"],
                                              t.get("replication_factor", 1), t.get("configs", {}),
                                              t.get("assigned"))
        adopted = {}
        for entry in os.listdir(self.data_dir):
            m = _PARTITION_DIR.match(entry)
            if not m or not os.path.isdir(os.path.join(self.data_dir, entry)):
                continue
            name, idx = m.group(1), int(m.group(2))
            if name not in self.topics:
                adopted[name] = max(adopted.get(name, 0), idx + 1)
        for name, n in adopted.items():
            try:
                validate_topic_name(name)
            except InvalidTopicError:
                log.warning("ignoring directory %s: %s is not a legal topic name", name, name)
                continue
            log.info("adopting topic %s (%d partitions found in %s)", name, n, self.data_dir)
            self.topics[name] = TopicMeta(name, uuid.uuid4(), n)
        if adopted:
            self._save_topics()

    def _save_topics(self):
        doc = {"version": 1, "topics": {n: t.to_json() for n, t in sorted(self.topics.items())}}
        atomic_write(os.path.join(self.data_dir, TOPICS_FILE),
                      json.dumps(doc, indent=1, sort_keys=True).encode())

    def _open_partition(self, meta: TopicMeta, index: int) -> Partition:
        path = os.path.join(self.data_dir, f"{meta.name}-{index}")
        p = Partition(meta.name, index, path, TopicConfig(self.config, meta.configs), self.broker_id,
                      self.config.get("producer.id.expiration.ms"),
                      controller_managed=meta.assigned is not None)
        self.partitions[(meta.name, index)] = p
        meta.offline.discard(index)
        return p

    # ---- lookups ----

    def offline_partition(self, topic: str, index: int) -> "OfflinePartition":
        """What Metadata says of a hosted partition whose log could not be
        opened: no leader (Kafka elects none when the only replica's log dir
        is offline), this broker its replica, out of the ISR."""
        return OfflinePartition(self.broker_id)

    def get_partition(self, topic: str, index: int) -> Partition:
        p = self.partitions.get((topic, index))
        if p is None:
            meta = self.topics.get(topic)
            if meta is not None and index in meta.offline:
                # Kafka's answer for a replica in an offline log dir.
                raise StorageError(f"partition {topic}-{index} is offline: its log could not be opened")
            raise UnknownTopicOrPartitionError(f"this broker does not host {topic}-{index}")
        return p

    def topic_config(self, name: str) -> TopicConfig:
        meta = self.topics.get(name)
        if meta is None:
            raise UnknownTopicOrPartitionError(f"topic {name} does not exist")
        return TopicConfig(self.config, meta.configs)

    # ---- topic management (the embedded controller's decisions) ----

    def create_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                     configs: dict | None = None, validate_only: bool = False) -> TopicMeta:
        validate_topic_name(name)
        if name in self.topics:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        if num_partitions == -1:
            num_partitions = self.config.get("num.partitions")
        if replication_factor == -1:
            replication_factor = self.config.get("default.replication.factor")
        if num_partitions <= 0:
            raise InvalidPartitionsError(f"number of partitions must be larger than 0, not {num_partitions}")
        if replication_factor <= 0:
            raise InvalidReplicationFactorError(
                f"replication factor must be larger than 0, not {replication_factor}")
        if replication_factor > 1:
            raise InvalidReplicationFactorError(
                f"replication factor {replication_factor} is larger than the 1 available broker")
        overrides = {k: v for k, v in validate_topic_configs(configs or {}).items() if v is not None}
        meta = TopicMeta(name, uuid.uuid4(), num_partitions, replication_factor, overrides)
        if validate_only:
            return meta
        self.topics[name] = meta
        try:
            for i in range(num_partitions):
                self._open_partition(meta, i)
        except BaseException:
            self._drop_partitions(name, range(num_partitions))
            del self.topics[name]
            raise
        self._save_topics()
        log.info("created topic %s with %d partitions, configs %s", name, num_partitions, overrides)
        return meta

    def delete_topic(self, name: str):
        meta = self.topics.get(name)
        if meta is None:
            raise UnknownTopicOrPartitionError(f"topic {name} does not exist")
        del self.topics[name]
        self._save_topics()
        self._drop_partitions(name, meta.hosted)
        log.info("deleted topic %s", name)

    # ---- replicas assigned by the controller ----

    def ensure_assigned_partition(self, name: str, index: int, topic_id=None,
                                  configs: dict | None = None) -> Partition:
        """The local replica of name-index that the controller assigned here,
        created (directory and an `assigned` entry in pylog-topics.json) when
        missing. A topic created locally keeps its entry as it is. configs,
        when given, are the topic's overrides as the controller has them: a
        new topic starts with them, an existing one takes them if they changed."""
        if configs is not None:
            configs = {k: v for k, v in validate_topic_configs(configs).items() if v is not None}
            self.sync_topic_configs(name, configs)
        p = self.partitions.get((name, index))
        if p is not None:
            return p
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
        try:
            p = self._open_partition(meta, index)
        except BaseException:
            if index in meta.offline:
                raise  # hosted all along; still offline
            meta.assigned.remove(index)
            if not meta.assigned:
                del self.topics[name]
            raise
        self._save_topics()
        log.info("created replica %s-%d (assigned by the controller)", name, index)
        return p

    def delete_partition(self, name: str, index: int):
        """Remove the local replica name-index and its data (StopReplica with
        delete_partitions); the topic's entry goes with its last replica."""
        meta = self.topics.get(name)
        if meta is None or (name, index) not in self.partitions:
            raise UnknownTopicOrPartitionError(f"this broker does not host {name}-{index}")
        hosted = [i for i in meta.hosted if i != index]
        if hosted:
            meta.assigned = hosted
        else:
            del self.topics[name]
        self._save_topics()
        self._drop_partitions(name, [index])
        log.info("deleted replica %s-%d", name, index)

    def _drop_partitions(self, name, indexes):
        doomed = []
        for i in indexes:
            p = self.partitions.pop((name, i), None)
            if p is not None:
                p.close()
            path = os.path.join(self.data_dir, f"{name}-{i}")
            if os.path.exists(path):
                gone = f"{path}.{uuid.uuid4().hex}-delete"
                os.rename(path, gone)
                doomed.append(gone)
        if doomed:
            fsync_dir(self.data_dir)
            threading.Thread(target=_remove_all, args=(doomed,), name="pylog-delete", daemon=True).start()

    def create_partitions(self, name: str, count: int, validate_only: bool = False):
        meta = self.topics.get(name)
        if meta is None:
            raise UnknownTopicOrPartitionError(f"topic {name} does not exist")
        if count < meta.num_partitions:
            raise InvalidPartitionsError(
                f"topic {name} has {meta.num_partitions} partitions; the count can only grow, not to {count}")
        if count == meta.num_partitions:
            raise InvalidPartitionsError(f"topic {name} already has {count} partitions")
        if validate_only:
            return
        old = meta.num_partitions
        for i in range(old, count):
            self._open_partition(meta, i)
        meta.num_partitions = count
        self._save_topics()
        log.info("topic %s: partitions %d -> %d", name, old, count)

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

    # ---- upkeep ----

    def housekeeping(self):
        for p in list(self.partitions.values()):
            try:
                p.housekeeping()
            except Exception as e:
                log.error("housekeeping of %s failed: %s", p, e)

    def flush_all(self):
        for p in self.partitions.values():
            p.log.flush()


class OfflinePartition:
    """Stands in for an offline partition in Metadata answers."""
    __slots__ = ("isr", "leader_epoch", "leader_id", "replicas")

    def __init__(self, broker_id):
        self.leader_id, self.leader_epoch = -1, -1
        self.replicas, self.isr = [broker_id], []


def merge_overrides(current: dict, changes: dict, incremental: bool) -> dict:
    """A topic's overrides after AlterConfigs (changes replace them all) or
    IncrementalAlterConfigs (merged in; a None value deletes one), validated."""
    new = dict(current) if incremental else {}
    for k, v in validate_topic_configs(changes).items():
        if v is None:
            new.pop(k, None)
        else:
            new[k] = v
    return new


def _remove_all(paths):
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
