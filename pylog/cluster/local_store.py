"""MetadataStore in one process: the embedded backend (no ZooKeeper).

Durable state lives in JSON files under ``path`` (the controller broker puts it
in <data dir>/pylog-cluster/), each replaced atomically on every change:
  cluster.json        {"version":1,"cluster_id":..,"controller_epoch":N,"latest_producer_id_block":{..}}
  topics/<t>.json     {"version":1,"name":<t>,"topic":<Kafka's /brokers/topics/<t> JSON>,"config":{..},
                       "partitions":{"0":{"partition_epoch":V,"state":<Kafka's partition state JSON>}}}
Broker registrations and the controller role are ephemeral: held in memory and
dropped when the LocalMetadataStore that made them closes (or the process ends).

Several LocalMetadataStore objects opened on the same path in one process share
one state (each object is a "session", as a ZooKeeper client would be), so
election and fencing behave as with ZooKeeper. Another process cannot open the
same path at the same time (an flock on <path>/.lock).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import queue
import threading
import time
from typing import Callable

from pylog.errors import LogLockedError, TopicAlreadyExistsError, UnknownTopicOrPartitionError
from pylog.log.checkpoint import atomic_write

from .metadata_store import (INITIAL_CONTROLLER_EPOCH, PRODUCER_ID_BLOCK_SIZE, BrokerIdInUseError, BrokerInfo,
                             ControllerMovedError, MetadataStore, PartitionState, TopicAssignment,
                             new_cluster_id)

__all__ = ["LocalMetadataStore", "read_acls"]

log = logging.getLogger("pylog.cluster.local")

_registry: dict[str, "_Shared"] = {}
_registry_lock = threading.Lock()


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _topic_file(name: str) -> str:
    """A topic's file name: <name>.json, or for a name too long for that plus
    the temporary suffix (topic names go up to 249 characters, file names to
    255 bytes) a prefix and a hash of it; the record holds the name."""
    if len(name) <= 200:
        return name + ".json"
    import hashlib  # rarely needed: not paid for at every start-up
    return f"{name[:180]}~{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"


def _acl_table(stored: dict) -> dict[tuple[str, str, str], list[dict]]:
    out = {}
    for key, entries in stored.items():
        pattern, rtype, name = key.split("/", 2)
        out[(rtype, pattern, name)] = [dict(e) for e in entries]
    return out


def read_acls(path: str) -> dict[tuple[str, str, str], list[dict]]:
    """The ACLs a store at path holds, read from its file without opening
    the store (no lock, no session): what a broker loads before it serves."""
    try:
        with open(os.path.join(path, "cluster.json"), "rb") as f:
            return _acl_table(json.loads(f.read()).get("acls") or {})
    except FileNotFoundError:
        return {}


class _Shared:
    """The state behind every LocalMetadataStore open on one path.

    Invariants: the files always hold the durable fields as they are in memory
    (memory changes only after its file was written); ``lock`` guards every field;
    callbacks run only on the ``_notifier`` thread, in the order of the changes.
    """

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.RLock()
        self.sessions = 0
        # Broker epochs grow across restarts of the process too, so a broker's
        # old epoch is never handed out again: wall-clock ms, then +1 per use.
        self.last_broker_epoch = time.time_ns() // 1_000_000
        os.makedirs(os.path.join(path, "topics"), exist_ok=True)
        self._lock_fd = os.open(os.path.join(path, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise LogLockedError(f"{path} is used by another process") from None
        self.cluster = {"version": 1, "cluster_id": None, "controller_epoch": INITIAL_CONTROLLER_EPOCH,
                        "latest_producer_id_block": None}
        try:
            with open(os.path.join(path, "cluster.json"), "rb") as f:
                self.cluster.update(json.loads(f.read()))
        except FileNotFoundError:
            pass
        self.topics: dict[str, dict] = {}
        tdir = os.path.join(path, "topics")
        for fn in sorted(os.listdir(tdir)):
            if fn.endswith(".json"):
                with open(os.path.join(tdir, fn), "rb") as f:
                    rec = json.loads(f.read())
                self.topics[rec.get("name", fn[:-5])] = rec
        self.batch_depth = 0
        self.dirty_cluster = False
        self.dirty_topics: set[str] = set()
        self.brokers: dict[int, tuple[BrokerInfo, object]] = {}
        self.controller: tuple[int, object] | None = None
        self.broker_watchers: list[tuple[object, Callable]] = []
        self.controller_watchers: list[tuple[object, Callable]] = []
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._notifier = threading.Thread(target=self._deliver, name=f"pylog-local-metadata:{path}", daemon=True)
        self._notifier.start()

    # Durable writes: file first, memory after. Inside a batch (one thread,
    # holding ``lock`` throughout, so no other thread sees memory ahead of the
    # files) memory changes first and each changed file is written once, when
    # the batch ends: one fsync per file per batch instead of one per change.
    def write_cluster(self, **changes) -> None:
        new = {**self.cluster, **changes}
        if self.batch_depth:
            self.cluster = new
            self.dirty_cluster = True
            return
        atomic_write(os.path.join(self.path, "cluster.json"), _dumps(new))
        self.cluster = new

    def write_topic(self, name: str, record: dict | None) -> None:
        if record is not None:
            record = {**record, "name": name}
        if self.batch_depth:
            if record is None:
                self.topics.pop(name, None)
            else:
                self.topics[name] = record
            self.dirty_topics.add(name)
            return
        self._write_topic_file(name, record)
        if record is None:
            del self.topics[name]
        else:
            self.topics[name] = record

    def _write_topic_file(self, name: str, record: dict | None) -> None:
        fpath = os.path.join(self.path, "topics", _topic_file(name))
        if record is None:
            try:
                os.unlink(fpath)
            except FileNotFoundError:   # created and deleted within one batch
                return
            fd = os.open(os.path.dirname(fpath), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            atomic_write(fpath, _dumps(record))

    def begin_batch(self) -> None:
        """Called with ``lock`` held (and kept until end_batch)."""
        self.batch_depth += 1

    def end_batch(self) -> None:
        """Write what the outermost batch changed. On a failed write, memory is
        read back from the files, so it never stays ahead of them."""
        self.batch_depth -= 1
        if self.batch_depth:
            return
        dirty_topics, self.dirty_topics = sorted(self.dirty_topics), set()
        dirty_cluster, self.dirty_cluster = self.dirty_cluster, False
        try:
            if dirty_cluster:
                atomic_write(os.path.join(self.path, "cluster.json"), _dumps(self.cluster))
            for name in dirty_topics:
                self._write_topic_file(name, self.topics.get(name))
        except BaseException:
            self._reload(dirty_cluster, dirty_topics)
            raise

    def _reload(self, cluster: bool, names: list[str]) -> None:
        if cluster:
            try:
                with open(os.path.join(self.path, "cluster.json"), "rb") as f:
                    self.cluster = {**self.cluster, **json.loads(f.read())}
            except (OSError, ValueError):
                log.exception("metadata store %s: cluster.json unreadable after a failed write", self.path)
        for name in names:
            try:
                with open(os.path.join(self.path, "topics", _topic_file(name)), "rb") as f:
                    self.topics[name] = json.loads(f.read())
            except FileNotFoundError:
                self.topics.pop(name, None)
            except (OSError, ValueError):
                log.exception("metadata store %s: topic %s unreadable after a failed write", self.path, name)

    # Notifications.
    def brokers_changed(self) -> None:
        snapshot = {bid: info for bid, (info, _) in sorted(self.brokers.items())}
        for owner, cb in self.broker_watchers:
            self._events.put((owner, cb, snapshot))

    def controller_changed(self) -> None:
        value = self.controller[0] if self.controller else None
        for owner, cb in self.controller_watchers:
            self._events.put((owner, cb, value))

    def post(self, owner, cb, value) -> None:
        self._events.put((owner, cb, value))

    def _deliver(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            owner, cb, value = item
            if owner._closed:
                continue  # queued before its store closed: a closed store's watchers stay silent
            try:
                cb(value)
            except Exception:
                log.exception("metadata watch callback %r failed", cb)

    def shutdown(self) -> None:
        self._events.put(None)
        if threading.current_thread() is not self._notifier:
            self._notifier.join(timeout=10)
        os.close(self._lock_fd)


class LocalMetadataStore(MetadataStore):
    """One session on the local metadata under ``path``.

    Invariants: after close() the store's registration and controller role are
    gone and its watchers never fire again. Once elected, every topic/config/
    partition-state write checks that the controller epoch is still the one this
    store was elected with (ControllerMovedError otherwise). Thread-safe: all
    state is in the shared object, under its lock. A batch() holds that lock
    from its start until its writes are on disk, so only the thread inside it
    ever sees changes not yet written.
    """

    def __init__(self, path: str):
        self.path = os.path.realpath(path)
        with _registry_lock:
            shared = _registry.get(self.path)
            if shared is None:
                shared = _registry[self.path] = _Shared(self.path)
            shared.sessions += 1
        self._s = shared
        self._closed = False
        self._elected_epoch: int | None = None
        self._broker_id: int | None = None

    def close(self) -> None:
        s = self._s
        with _registry_lock:
            with s.lock:
                if self._closed:
                    return
                self._closed = True
                before = len(s.brokers)
                s.brokers = {b: v for b, v in s.brokers.items() if v[1] is not self}
                s.broker_watchers = [w for w in s.broker_watchers if w[0] is not self]
                s.controller_watchers = [w for w in s.controller_watchers if w[0] is not self]
                if len(s.brokers) != before:
                    s.brokers_changed()
                if s.controller and s.controller[1] is self:
                    s.controller = None
                    s.controller_changed()
                s.sessions -= 1
                last = s.sessions == 0
            if last:
                del _registry[self.path]
        if last:
            s.shutdown()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("LocalMetadataStore is closed")

    def _check_epoch(self) -> None:
        # Called under the lock before every fenced write.
        self._check_open()
        if self._elected_epoch is not None and self._elected_epoch != self._s.cluster["controller_epoch"]:
            raise ControllerMovedError(f"controller epoch {self._elected_epoch} is no longer current "
                                       f"(now {self._s.cluster['controller_epoch']})")

    @contextlib.contextmanager
    def batch(self):
        """The writes made inside reach the disk together when it ends (each
        changed file written and fsync'd once), before it returns: callers
        acknowledge nothing written inside until then. Other threads wait for
        the store meanwhile (the lock is held throughout)."""
        s = self._s
        with s.lock:
            s.begin_batch()
            try:
                yield self
            finally:
                s.end_batch()

    # -- brokers -----------------------------------------------------------------
    def register_broker(self, info: BrokerInfo) -> None:
        s = self._s
        with s.lock:
            self._check_open()
            held = s.brokers.get(info.broker_id)
            if held is not None and held[1] is not self:
                raise BrokerIdInUseError(f"broker id {info.broker_id} is registered by another session")
            if held is not None:
                epoch = held[0].broker_epoch   # the same registration, updated (as a znode's czxid stays)
            else:
                epoch = s.last_broker_epoch = max(s.last_broker_epoch + 1, time.time_ns() // 1_000_000)
            info = dataclasses.replace(info, broker_epoch=epoch)
            s.brokers[info.broker_id] = (info, self)
            self._broker_id = info.broker_id
            s.brokers_changed()

    def registered_broker_epoch(self) -> int:
        with self._s.lock:
            held = self._s.brokers.get(self._broker_id) if self._broker_id is not None else None
            return held[0].broker_epoch if held is not None and held[1] is self else -1

    def live_brokers(self) -> dict[int, BrokerInfo]:
        with self._s.lock:
            return {bid: info for bid, (info, _) in sorted(self._s.brokers.items())}

    def watch_brokers(self, callback: Callable[[dict[int, BrokerInfo]], None]) -> None:
        s = self._s
        with s.lock:
            self._check_open()
            s.broker_watchers.append((self, callback))
            s.post(self, callback, {bid: info for bid, (info, _) in sorted(s.brokers.items())})

    # -- controller ----------------------------------------------------------------
    def elect_controller(self, broker_id: int) -> int | None:
        s = self._s
        with s.lock:
            self._check_open()
            if s.controller is not None:
                return self._elected_epoch if s.controller[1] is self else None
            epoch = s.cluster["controller_epoch"] + 1
            s.write_cluster(controller_epoch=epoch)
            s.controller = (broker_id, self)
            self._elected_epoch = epoch
            s.controller_changed()
            log.info("broker %d elected controller with epoch %d", broker_id, epoch)
            return epoch

    def resign_controller(self) -> None:
        s = self._s
        with s.lock:
            if s.controller is not None and s.controller[1] is self:
                s.controller = None
                s.controller_changed()

    def controller_id(self) -> int | None:
        with self._s.lock:
            return self._s.controller[0] if self._s.controller else None

    def watch_controller(self, callback: Callable[[int | None], None]) -> None:
        s = self._s
        with s.lock:
            self._check_open()
            s.controller_watchers.append((self, callback))
            s.post(self, callback, s.controller[0] if s.controller else None)

    def controller_epoch(self) -> int:
        with self._s.lock:
            return self._s.cluster["controller_epoch"]

    @property
    def elected_epoch(self) -> int | None:
        return self._elected_epoch

    # -- topics --------------------------------------------------------------------
    def _topic(self, name: str) -> dict:
        rec = self._s.topics.get(name)
        if rec is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        return rec

    def create_topic(self, assignment: TopicAssignment, configs: dict[str, str] | None = None) -> None:
        s = self._s
        with s.lock:
            self._check_epoch()
            if assignment.name in s.topics:
                raise TopicAlreadyExistsError(f"topic {assignment.name!r} already exists")
            s.write_topic(assignment.name, {"version": 1, "topic": assignment.to_json(),
                                            "config": dict(configs or {}), "partitions": {}})

    def topics(self) -> dict[str, TopicAssignment]:
        with self._s.lock:
            return {n: TopicAssignment.from_json(n, rec["topic"]) for n, rec in sorted(self._s.topics.items())}

    def topic(self, name: str) -> TopicAssignment | None:
        with self._s.lock:
            rec = self._s.topics.get(name)
            return TopicAssignment.from_json(name, rec["topic"]) if rec else None

    def set_assignment(self, assignment: TopicAssignment) -> None:
        s = self._s
        with s.lock:
            self._check_epoch()
            rec = self._topic(assignment.name)
            stored = TopicAssignment.from_json(assignment.name, rec["topic"])
            new = TopicAssignment(assignment.name, stored.topic_id, dict(assignment.partitions),
                                  dict(assignment.adding), dict(assignment.removing))
            s.write_topic(assignment.name, {**rec, "topic": new.to_json()})

    def delete_topic(self, name: str) -> None:
        s = self._s
        with s.lock:
            self._check_epoch()
            self._topic(name)
            s.write_topic(name, None)

    def topic_configs(self, name: str) -> dict[str, str]:
        with self._s.lock:
            return dict(self._topic(name)["config"])

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        s = self._s
        with s.lock:
            self._check_epoch()
            rec = self._topic(name)
            s.write_topic(name, {**rec, "config": dict(configs)})

    # -- partition states ----------------------------------------------------------------
    def partition_state(self, topic: str, partition: int) -> PartitionState | None:
        with self._s.lock:
            rec = self._s.topics.get(topic)
            entry = rec["partitions"].get(str(partition)) if rec else None
            return PartitionState.from_json(entry["state"], entry["partition_epoch"]) if entry else None

    def create_partition_state(self, topic: str, partition: int, state: PartitionState) -> PartitionState:
        s = self._s
        with s.lock:
            self._check_epoch()
            rec = self._topic(topic)
            if str(partition) in rec["partitions"]:
                raise FileExistsError(f"partition state of {topic}-{partition} already exists")
            parts = {**rec["partitions"], str(partition): {"partition_epoch": 0, "state": state.to_json()}}
            s.write_topic(topic, {**rec, "partitions": parts})
            return PartitionState(state.leader, state.leader_epoch, list(state.isr), state.controller_epoch, 0)

    def update_partition_state(self, topic: str, partition: int, new: PartitionState,
                               expected_partition_epoch: int) -> PartitionState | None:
        s = self._s
        with s.lock:
            self._check_epoch()
            rec = self._topic(topic)
            entry = rec["partitions"].get(str(partition))
            if entry is None:
                raise UnknownTopicOrPartitionError(f"no partition state for {topic}-{partition}")
            if entry["partition_epoch"] != expected_partition_epoch:
                return None
            version = expected_partition_epoch + 1
            parts = {**rec["partitions"], str(partition): {"partition_epoch": version, "state": new.to_json()}}
            s.write_topic(topic, {**rec, "partitions": parts})
            return PartitionState(new.leader, new.leader_epoch, list(new.isr), new.controller_epoch, version)

    # -- cluster-wide ----------------------------------------------------------------
    def cluster_id(self) -> str:
        s = self._s
        with s.lock:
            if not s.cluster["cluster_id"]:
                s.write_cluster(cluster_id=new_cluster_id())
            return s.cluster["cluster_id"]

    def adopt_cluster_id(self, cluster_id: str) -> str:
        """The cluster's id, taking cluster_id when it has none yet (a data dir
        that ran alone before the store existed keeps the id it had)."""
        s = self._s
        with s.lock:
            if not s.cluster["cluster_id"] and cluster_id:
                s.write_cluster(cluster_id=cluster_id)
        return self.cluster_id()

    def reserve_producer_ids_below(self, next_id: int) -> None:
        """Make every block handed out from now on start at next_id or later
        (ids a data dir gave before the store existed are never reused)."""
        s = self._s
        with s.lock:
            last = s.cluster["latest_producer_id_block"]
            if next_id <= 0 or (last and int(last["block_end"]) + 1 >= next_id):
                return
            s.write_cluster(latest_producer_id_block={
                "version": 1, "broker": self._broker_id if self._broker_id is not None else -1,
                "block_start": str(next_id - 1), "block_end": str(next_id - 1)})

    # Entity configs (client quotas, group configs): {entity: {key: value}} tables in cluster.json.
    def _entity_table(self, table: str) -> dict[str, dict[str, str]]:
        with self._s.lock:
            return {k: dict(v) for k, v in (self._s.cluster.get(table) or {}).items()}

    def _set_entity(self, table: str, entity: str, configs: dict[str, str], fenced: bool) -> None:
        s = self._s
        with s.lock:
            if fenced:
                self._check_epoch()
            entries = dict(s.cluster.get(table) or {})
            if configs:
                entries[entity] = dict(configs)
            else:
                entries.pop(entity, None)
            s.write_cluster(**{table: entries})

    def client_quotas(self) -> dict[str, dict[str, str]]:
        return self._entity_table("client_quotas")

    def set_client_quotas(self, entity_path: str, configs: dict[str, str]) -> None:
        self._set_entity("client_quotas", entity_path, configs, fenced=False)

    def group_configs(self) -> dict[str, dict[str, str]]:
        return self._entity_table("group_configs")

    def set_group_configs(self, group_id: str, configs: dict[str, str]) -> None:
        # Written by the controller only, so fenced like its topic writes.
        self._set_entity("group_configs", group_id, configs, fenced=True)

    def broker_configs(self) -> dict[str, dict[str, str]]:
        return self._entity_table("broker_configs")

    def set_broker_configs(self, entity: str, configs: dict[str, str]) -> None:
        self._set_entity("broker_configs", entity, configs, fenced=True)

    # ACLs live in cluster.json under "acls": {"<PATTERN>/<Type>/<name>": [entries]}.
    def acls(self) -> dict[tuple[str, str, str], list[dict]]:
        with self._s.lock:
            return _acl_table(self._s.cluster.get("acls") or {})

    def acls_of(self, resource: tuple[str, str, str]) -> list[dict]:
        rtype, pattern, name = resource
        with self._s.lock:
            return [dict(e) for e in (self._s.cluster.get("acls") or {}).get(f"{pattern}/{rtype}/{name}", [])]

    def change_acls(self, resource: tuple[str, str, str], add: list[dict], remove: list[dict]) -> list[dict]:
        rtype, pattern, name = resource
        key = f"{pattern}/{rtype}/{name}"
        s = self._s
        with s.lock:
            table = dict(s.cluster.get("acls") or {})
            current = list(table.get(key) or [])
            new = [e for e in current if e not in remove]
            new += [e for e in add if e not in new]
            if new != current:
                if new:
                    table[key] = new
                else:
                    table.pop(key, None)
                s.write_cluster(acls=table)
            return new

    def watch_acls(self, callback) -> None:
        """Only this process writes the store, and its writer updates its own
        authorizer: nothing to watch."""

    def next_producer_id_block(self, size: int = PRODUCER_ID_BLOCK_SIZE) -> int:
        s = self._s
        with s.lock:
            last = s.cluster["latest_producer_id_block"]
            start = int(last["block_end"]) + 1 if last else 0
            s.write_cluster(latest_producer_id_block={
                "version": 1, "broker": self._broker_id if self._broker_id is not None else -1,
                "block_start": str(start), "block_end": str(start + size - 1)})
            return start

    def __repr__(self) -> str:
        return f"LocalMetadataStore({self.path!r})"
