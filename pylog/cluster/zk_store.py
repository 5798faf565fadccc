"""MetadataStore over ZooKeeper (kazoo), with Kafka's znodes and JSON.

Paths (under the chroot of the connect string, created if missing):
  /brokers/ids/<id>                          ephemeral, broker registration JSON v5
  /controller                                ephemeral {"version":1,"brokerid":N,"timestamp":"ms"}
  /controller_epoch                          "N" (plain integer)
  /brokers/topics/<t>                        {"version":3,"partitions":{"0":[1,2]},...,"topic_id":...}
  /brokers/topics/<t>/partitions/<p>/state   {"version":1,"leader":..,"leader_epoch":..,
                                              "controller_epoch":..,"isr":[..]}
  /config/topics/<t>                         {"version":1,"config":{...}}
  /cluster/id                                {"version":"1","id":"..."}
  /latest_producer_id_block                  {"version":1,"broker":N,"block_start":"0","block_end":"999"}
  /kafka-acl/<Type>/<name>                   LITERAL ACLs {"version":1,"acls":[{"principal","permissionType",
  /kafka-acl-extended/prefixed/<Type>/<name>  PREFIXED ACLs              "operation","host"}]}
  /kafka-acl-changes/acl_changes_<seq>       "<Type>:<name>" after a LITERAL change
  /kafka-acl-extended-changes/acl_changes_<seq>  {"version":1,"resourceType","name","patternType":"Prefixed"}
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import urllib.parse
from typing import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (BadVersionError, NodeExistsError, NoNodeError, NotEmptyError,
                              RolledBackError, RuntimeInconsistency)
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from pylog.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from .metadata_store import (INITIAL_CONTROLLER_EPOCH, PRODUCER_ID_BLOCK_SIZE, BrokerIdInUseError, BrokerInfo,
                             ControllerMovedError, MetadataStore, PartitionState, TopicAssignment,
                             new_cluster_id)

__all__ = ["ZkMetadataStore"]

log = logging.getLogger("pylog.cluster.zk")

BROKER_IDS = "/brokers/ids"
TOPICS = "/brokers/topics"
CONFIG_TOPICS = "/config/topics"
CONFIG_GROUPS = "/config/groups"
# Kafka's dynamic broker configs: /config/brokers/<broker id>, the cluster default at <default>.
CONFIG_BROKERS = "/config/brokers"
DEFAULT_BROKER_NODE = "<default>"
DELETE_TOPICS = "/admin/delete_topics"
CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
CLUSTER_ID = "/cluster/id"
PRODUCER_ID_BLOCK = "/latest_producer_id_block"
# Kafka's ZkAclStore / ZkAclChangeStore paths (AclAuthorizer).
ACL_ROOTS = {"LITERAL": "/kafka-acl", "PREFIXED": "/kafka-acl-extended/prefixed"}
ACL_CHANGES = {"LITERAL": "/kafka-acl-changes", "PREFIXED": "/kafka-acl-extended-changes"}
ACL_CHANGE_PREFIX = "acl_changes_"
# The persistent paths a Kafka broker creates at startup (KafkaZkClient.createTopLevelPaths).
PERSISTENT_PATHS = ("/consumers", BROKER_IDS, TOPICS, "/config/changes", CONFIG_TOPICS, "/config/clients",
                    "/config/users", "/config/brokers", "/admin/delete_topics", "/brokers/seqid",
                    "/isr_change_notification", "/latest_producer_id_block", "/log_dir_event_notification")


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _now_ms() -> str:
    return str(int(time.time() * 1000))


def _topic_path(t: str) -> str:
    return f"{TOPICS}/{t}"


def _state_path(t: str, p: int) -> str:
    return f"{TOPICS}/{t}/partitions/{p}/state"


def broker_json(info: BrokerInfo) -> dict:
    """Kafka's BrokerIdZNode v5 registration: every listener in `endpoints`
    and `listener_security_protocol_map`, host/port the first one."""
    eps = info.all_endpoints()
    obj = {"version": 5, "host": eps[0][1], "port": eps[0][2],
           "endpoints": [f"{name}://{_bracketed(host)}:{port}" for name, host, port in eps],
           "listener_security_protocol_map": {name: info.protocol(name) for name, _h, _p in eps},
           "jmx_port": -1, "timestamp": _now_ms(), "features": {}}
    if info.rack is not None:
        obj["rack"] = info.rack
    return obj


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def broker_from_json(broker_id: int, obj: dict) -> BrokerInfo:
    """A registration as Kafka writes it. Endpoints whose protocol (from
    listener_security_protocol_map; a name with none is its own protocol,
    as before the map existed) is none of Kafka's four (PLAINTEXT, SSL,
    SASL_PLAINTEXT, SASL_SSL) are left out: pylog cannot speak to them."""
    protocols = obj.get("listener_security_protocol_map") or {}
    endpoints, kinds = [], []
    for ep in obj.get("endpoints", []):
        name, _, addr = ep.partition("://")
        kind = protocols.get(name, name)
        if kind not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            continue
        h, _, p = addr.rpartition(":")
        endpoints.append((name.upper(), h.strip("[]"), int(p)))
        kinds.append((name.upper(), kind))
    if endpoints:
        host, port = endpoints[0][1], endpoints[0][2]
    else:   # the top-level host/port may be null/-1
        host, port = obj.get("host"), obj.get("port", -1)
    return BrokerInfo(broker_id=broker_id, host=host, port=int(port), rack=obj.get("rack"),
                      endpoints=tuple(endpoints), protocols=tuple(kinds))


def _split_chroot(connect: str) -> tuple[str, str]:
    hosts, sep, chroot = connect.partition("/")
    return hosts, ("/" + chroot.rstrip("/")) if sep and chroot.strip("/") else ""


class ZkMetadataStore(MetadataStore):
    """MetadataStore on one ZooKeeper session (one KazooClient).

    Invariants: ``_elected_epoch_version`` is None until this store wins an
    election; from then on it is the /controller_epoch node version written by
    that election, and every topic/config/partition-state write is one ZooKeeper
    transaction that first checks it (so it fails with ControllerMovedError as
    soon as anyone else has incremented the epoch). After a session expiry kazoo
    opens a new session; the store then re-creates its broker registration (as a
    Kafka broker does) but not the controller role: watchers of /controller see
    it vanish and the controller logic decides whether to run for election again.
    Thread-safe: kazoo is, and the store's own fields are guarded by ``_lock``.
    """

    def __init__(self, connect: str, session_timeout_ms: int = 18000, connection_timeout_s: float = 15.0):
        self.connect = connect
        hosts, chroot = _split_chroot(connect)
        if chroot:
            # kazoo does not create the chroot (and warns when it is missing); Kafka does.
            boot = KazooClient(hosts=hosts, timeout=session_timeout_ms / 1000)
            boot.start(timeout=connection_timeout_s)
            try:
                boot.ensure_path(chroot)
            finally:
                boot.stop()
                boot.close()
        self._lock = threading.Lock()
        self._registration: BrokerInfo | None = None
        self._broker_epoch = -1
        self._elected_epoch: int | None = None
        self._elected_epoch_version: int | None = None
        self._closed = False
        self._session_lost = False
        self._zk = KazooClient(hosts=connect, timeout=session_timeout_ms / 1000)
        self._zk.add_listener(self._on_state)
        self._zk.start(timeout=connection_timeout_s)
        for path in PERSISTENT_PATHS:
            self._zk.ensure_path(path)

    # -- session -----------------------------------------------------------------
    @property
    def session_id(self) -> int:
        return self._zk.client_id[0]

    @property
    def client(self) -> KazooClient:
        """The underlying kazoo client (tests and tools)."""
        return self._zk

    def _on_state(self, state) -> None:
        # Runs in kazoo's connection thread: must not block, so work is spawned.
        if state == KazooState.LOST:
            self._session_lost = True
        elif state == KazooState.CONNECTED and self._session_lost:
            self._session_lost = False
            self._zk.handler.spawn(self._reregister)

    def _reregister(self) -> None:
        with self._lock:
            info = None if self._closed else self._registration
        if info is None:
            return
        try:
            self._create_registration(info)
            log.info("broker %d registered again after its ZooKeeper session expired", info.broker_id)
        except Exception:
            log.exception("could not re-register broker %d after session expiry", info.broker_id)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # stop() closes the session, so the server drops our ephemeral nodes at once.
        self._zk.stop()
        self._zk.close()

    def connected(self) -> bool:
        return self._zk.state == KazooState.CONNECTED

    # -- brokers -----------------------------------------------------------------
    def register_broker(self, info: BrokerInfo) -> None:
        self._create_registration(info)
        with self._lock:
            self._registration = info

    def _create_registration(self, info: BrokerInfo) -> None:
        path = f"{BROKER_IDS}/{info.broker_id}"
        data = _dumps(broker_json(info))
        try:
            # Kafka's broker epoch is the registration's czxid (KIP-380).
            _, stat = self._zk.create(path, data, ephemeral=True, include_data=True)
        except NodeExistsError:
            try:
                _, stat = self._zk.get(path)
            except NoNodeError:
                return self._create_registration(info)
            if stat.ephemeralOwner != self.session_id:
                raise BrokerIdInUseError(f"broker id {info.broker_id} is registered by another session") from None
            self._zk.set(path, data)
        self._broker_epoch = stat.czxid

    def registered_broker_epoch(self) -> int:
        return self._broker_epoch

    def live_brokers(self) -> dict[int, BrokerInfo]:
        return self._read_brokers(self._zk.get_children(BROKER_IDS))

    def _read_brokers(self, children) -> dict[int, BrokerInfo]:
        pending = [(int(c), self._zk.get_async(f"{BROKER_IDS}/{c}")) for c in children if c.isdigit()]
        out = {}
        for bid, res in pending:
            try:
                data, stat = res.get()
            except NoNodeError:
                continue  # gone between the listing and the read
            out[bid] = dataclasses.replace(broker_from_json(bid, json.loads(data)), broker_epoch=stat.czxid)
        return dict(sorted(out.items()))

    def watch_brokers(self, callback: Callable[[dict[int, BrokerInfo]], None]) -> None:
        def on_children(children):
            if self._closed:
                return False  # ends the watch
            try:
                brokers = self._read_brokers(children)
            except Exception:
                log.exception("reading broker registrations failed")
                return None
            _safe_call(callback, brokers)
            return None
        ChildrenWatch(self._zk, BROKER_IDS, on_children)

    # -- controller ----------------------------------------------------------------
    def elect_controller(self, broker_id: int) -> int | None:
        while True:
            try:
                _, cstat = self._zk.get(CONTROLLER)
            except NoNodeError:
                pass
            else:
                if cstat.ephemeralOwner == self.session_id and self._elected_epoch is not None:
                    return self._elected_epoch
                return None
            try:
                data, estat = self._zk.get(CONTROLLER_EPOCH)
            except NoNodeError:
                try:
                    self._zk.create(CONTROLLER_EPOCH, str(INITIAL_CONTROLLER_EPOCH).encode())
                except NodeExistsError:
                    pass
                continue
            epoch = int(data) + 1
            # One transaction, as Kafka's registerControllerAndIncrementControllerEpoch:
            # the epoch moves only if we also got /controller, and only from the value we read.
            t = self._zk.transaction()
            t.set_data(CONTROLLER_EPOCH, str(epoch).encode(), version=estat.version)
            t.create(CONTROLLER, _dumps({"version": 1, "brokerid": broker_id, "timestamp": _now_ms()}),
                     ephemeral=True)
            r_epoch, r_ctrl = t.commit()
            if not isinstance(r_epoch, Exception) and not isinstance(r_ctrl, Exception):
                with self._lock:
                    self._elected_epoch = epoch
                    self._elected_epoch_version = r_epoch.version
                log.info("broker %d elected controller with epoch %d", broker_id, epoch)
                return epoch
            if isinstance(r_ctrl, NodeExistsError):
                return None
            if isinstance(r_epoch, (BadVersionError, NoNodeError)):
                continue  # someone else moved the epoch between our read and write: look again
            raise _first_error([r_epoch, r_ctrl])

    def resign_controller(self) -> None:
        try:
            _, stat = self._zk.get(CONTROLLER)
        except NoNodeError:
            return
        if stat.ephemeralOwner == self.session_id:
            try:
                self._zk.delete(CONTROLLER, version=stat.version)
            except (NoNodeError, BadVersionError):
                pass

    def controller_id(self) -> int | None:
        try:
            data, _ = self._zk.get(CONTROLLER)
        except NoNodeError:
            return None
        return _controller_from(data)

    def watch_controller(self, callback: Callable[[int | None], None]) -> None:
        def on_data(data, stat):
            if self._closed:
                return False
            _safe_call(callback, _controller_from(data) if stat is not None else None)
            return None
        DataWatch(self._zk, CONTROLLER, on_data)

    def controller_epoch(self) -> int:
        try:
            data, _ = self._zk.get(CONTROLLER_EPOCH)
        except NoNodeError:
            return INITIAL_CONTROLLER_EPOCH
        return int(data)

    def current_controller(self) -> tuple[int | None, int]:
        # sync first: this session's server may lag the one the new
        # controller wrote through, and a broker asks exactly when a request
        # names a controller epoch newer than any it has seen.
        self._zk.sync(CONTROLLER_EPOCH)
        return self.controller_id(), self.controller_epoch()

    @property
    def elected_epoch(self) -> int | None:
        """The controller epoch this store won, or None."""
        return self._elected_epoch

    # -- fenced writes ---------------------------------------------------------------
    def _commit(self, build) -> list:
        """Run build(transaction) in one transaction, preceded by the controller
        epoch check when this store was elected; returns the results of build's ops.
        ControllerMovedError when the check failed."""
        t = self._zk.transaction()
        version = self._elected_epoch_version
        if version is not None:
            t.check(CONTROLLER_EPOCH, version)
        build(t)
        results = t.commit()
        if version is not None:
            # A failed check reports BadVersion (or NoNode); RolledBack means a later op failed.
            if isinstance(results[0], (BadVersionError, NoNodeError)):
                raise ControllerMovedError(
                    f"controller epoch {self._elected_epoch} is no longer current "
                    f"(now {self.controller_epoch()})")
            results = results[1:]
        return results

    # -- topics --------------------------------------------------------------------
    def create_topic(self, assignment: TopicAssignment, configs: dict[str, str] | None = None) -> None:
        name = assignment.name
        if self._zk.exists(_topic_path(name)):
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        config_path = f"{CONFIG_TOPICS}/{name}"
        config_data = _dumps({"version": 1, "config": dict(configs or {})})
        # A config node can outlive its topic (deleted by an old tool): overwrite it.
        config_exists = self._zk.exists(config_path) is not None

        def build(t):
            if config_exists:
                t.set_data(config_path, config_data)
            else:
                t.create(config_path, config_data)
            t.create(_topic_path(name), _dumps(assignment.to_json()))
        results = self._commit(build)
        if isinstance(results[1], NodeExistsError):
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        if isinstance(results[0], (NodeExistsError, NoNodeError)):
            return self.create_topic(assignment, configs)  # raced with another config writer
        _raise_any(results)

    def topics(self) -> dict[str, TopicAssignment]:
        names = self._zk.get_children(TOPICS)
        pending = [(n, self._zk.get_async(_topic_path(n))) for n in names]
        out = {}
        for name, res in pending:
            try:
                data, _ = res.get()
            except NoNodeError:
                continue
            out[name] = TopicAssignment.from_json(name, json.loads(data))
        return dict(sorted(out.items()))

    def topic(self, name: str) -> TopicAssignment | None:
        try:
            data, _ = self._zk.get(_topic_path(name))
        except NoNodeError:
            return None
        return TopicAssignment.from_json(name, json.loads(data))

    def set_assignment(self, assignment: TopicAssignment) -> None:
        while True:
            try:
                data, stat = self._zk.get(_topic_path(assignment.name))
            except NoNodeError:
                raise UnknownTopicOrPartitionError(f"unknown topic {assignment.name!r}") from None
            stored = TopicAssignment.from_json(assignment.name, json.loads(data))
            new = TopicAssignment(assignment.name, stored.topic_id, dict(assignment.partitions),
                                  dict(assignment.adding), dict(assignment.removing))
            [r] = self._commit(lambda t: t.set_data(_topic_path(assignment.name), _dumps(new.to_json()),
                                                    version=stat.version))
            if isinstance(r, BadVersionError):
                continue
            if isinstance(r, NoNodeError):
                raise UnknownTopicOrPartitionError(f"unknown topic {assignment.name!r}")
            _raise_any([r])
            return

    def delete_topic(self, name: str) -> None:
        while True:
            root = _topic_path(name)
            if not self._zk.exists(root):
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            paths = self._subtree(root)  # parents before children
            extra = [p for p in (f"{CONFIG_TOPICS}/{name}", f"{DELETE_TOPICS}/{name}") if self._zk.exists(p)]

            def build(t):
                for p in reversed(paths):
                    t.delete(p)
                for p in extra:
                    t.delete(p)
            results = self._commit(build)
            if any(isinstance(r, (NotEmptyError, NoNodeError)) for r in results):
                continue  # a partition appeared or vanished meanwhile: list again
            _raise_any(results)
            return

    def _subtree(self, path: str) -> list[str]:
        out = [path]
        try:
            children = self._zk.get_children(path)
        except NoNodeError:
            return []
        for c in children:
            out.extend(self._subtree(f"{path}/{c}"))
        return out

    def topic_configs(self, name: str) -> dict[str, str]:
        try:
            data, _ = self._zk.get(f"{CONFIG_TOPICS}/{name}")
        except NoNodeError:
            if self._zk.exists(_topic_path(name)):
                return {}
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}") from None
        return dict(json.loads(data).get("config") or {})

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        path = f"{CONFIG_TOPICS}/{name}"
        data = _dumps({"version": 1, "config": dict(configs)})
        while True:
            exists = self._zk.exists(path) is not None

            def build(t):
                t.check(_topic_path(name), -1)  # the topic must exist
                if exists:
                    t.set_data(path, data)
                else:
                    t.create(path, data)
            results = self._commit(build)
            if isinstance(results[0], NoNodeError):
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            if isinstance(results[1], (NoNodeError, NodeExistsError)):
                continue
            _raise_any(results)
            return

    # -- partition states ----------------------------------------------------------------
    def partition_state(self, topic: str, partition: int) -> PartitionState | None:
        try:
            data, stat = self._zk.get(_state_path(topic, partition))
        except NoNodeError:
            return None
        return PartitionState.from_json(json.loads(data), stat.version)

    def create_partition_state(self, topic: str, partition: int, state: PartitionState) -> PartitionState:
        partitions = f"{_topic_path(topic)}/partitions"
        ppath = f"{partitions}/{partition}"
        spath = _state_path(topic, partition)
        data = _dumps(state.to_json())
        while True:
            if not self._zk.exists(_topic_path(topic)):
                raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
            # Kafka's empty intermediate nodes (/partitions, /partitions/<p>) are
            # created in the same transaction when missing.
            missing = [p for p in (partitions, ppath) if not self._zk.exists(p)]

            def build(t):
                for p in missing:
                    t.create(p, b"")
                t.create(spath, data)
            results = self._commit(build)
            if not any(isinstance(r, Exception) for r in results):
                return PartitionState(state.leader, state.leader_epoch, list(state.isr),
                                      state.controller_epoch, 0)
            if isinstance(results[-1], NodeExistsError):
                raise FileExistsError(f"partition state of {topic}-{partition} already exists")
            if any(isinstance(r, (NodeExistsError, NoNodeError)) for r in results):
                continue  # raced on an intermediate node (or the topic was deleted): look again
            _raise_any(results)

    def update_partition_state(self, topic: str, partition: int, new: PartitionState,
                               expected_partition_epoch: int) -> PartitionState | None:
        path = _state_path(topic, partition)
        [r] = self._commit(lambda t: t.set_data(path, _dumps(new.to_json()), version=expected_partition_epoch))
        if isinstance(r, BadVersionError):
            return None
        if isinstance(r, NoNodeError):
            raise UnknownTopicOrPartitionError(f"no partition state for {topic}-{partition}")
        _raise_any([r])
        return PartitionState(new.leader, new.leader_epoch, list(new.isr), new.controller_epoch, r.version)

    # -- client quotas: Kafka's /config/users and /config/clients ---------------------
    def client_quotas(self) -> dict[str, dict[str, str]]:
        out = {}

        def read(path):
            config = self._entity_config(f"/config/{path}")
            if config:
                out[path] = config
        for user in self._children("/config/users"):
            read(f"users/{user}")
            for client in self._children(f"/config/users/{user}/clients"):
                read(f"users/{user}/clients/{client}")
        for client in self._children("/config/clients"):
            read(f"clients/{client}")
        return out

    def _entity_config(self, path: str) -> dict[str, str]:
        """The settings a ConfigEntity node ({"version": 1, "config": {...}}) holds; {} for none."""
        try:
            data, _ = self._zk.get(path)
        except NoNodeError:
            return {}
        config = (json.loads(data) if data else {}).get("config") or {}
        return {k: str(v) for k, v in config.items()}

    def entity_config(self, entity_path: str) -> dict[str, str]:
        # One node read: SASL/SCRAM looks a user up on every authentication.
        return self._entity_config(f"/config/{entity_path}")

    def _children(self, path: str) -> list[str]:
        try:
            return sorted(self._zk.get_children(path))
        except NoNodeError:
            return []

    def set_client_quotas(self, entity_path: str, configs: dict[str, str]) -> None:
        """As Kafka's AdminZkClient.changeConfigs: the entity's node holds the
        settings (an empty config when none is left), then a change
        notification under /config/changes tells every broker."""
        path = f"/config/{entity_path}"
        data = _dumps({"version": 1, "config": dict(configs)})
        if self._zk.exists(path) is None:
            try:
                self._zk.create(path, data, makepath=True)
            except NodeExistsError:
                self._zk.set(path, data)
        else:
            self._zk.set(path, data)
        self._zk.create("/config/changes/config_change_", _dumps({"version": 2, "entity_path": entity_path}),
                        sequence=True, makepath=True)

    # -- ACLs: Kafka's /kafka-acl and /kafka-acl-extended trees ---------------------
    def acls(self) -> dict[tuple[str, str, str], list[dict]]:
        out = {}
        for pattern, root in ACL_ROOTS.items():
            for rtype in self._children(root):
                for name in self._children(f"{root}/{rtype}"):
                    entries = self._acl_entries(f"{root}/{rtype}/{name}")[0]
                    if entries:
                        out[(rtype, pattern, name)] = entries
        return out

    def acls_of(self, resource: tuple[str, str, str]) -> list[dict]:
        rtype, pattern, name = resource
        return self._acl_entries(f"{ACL_ROOTS[pattern]}/{rtype}/{name}")[0]

    def _acl_entries(self, path: str) -> tuple[list[dict], int | None]:
        try:
            data, stat = self._zk.get(path)
        except NoNodeError:
            return [], None
        return (json.loads(data).get("acls") or [] if data else []), stat.version

    def change_acls(self, resource: tuple[str, str, str], add: list[dict], remove: list[dict]) -> list[dict]:
        """A conditional update of the resource's node (retried when another
        broker changed it meanwhile), then a change notification as Kafka's
        AclAuthorizer writes one, which every broker's watch picks up."""
        rtype, pattern, name = resource
        path = f"{ACL_ROOTS[pattern]}/{rtype}/{name}"
        while True:
            current, version = self._acl_entries(path)
            new = [e for e in current if e not in remove]
            new += [e for e in add if e not in new]
            if new == current:
                return current
            data = _dumps({"version": 1, "acls": new})
            try:
                if version is None:
                    self._zk.create(path, data, makepath=True)
                elif new:
                    self._zk.set(path, data, version=version)
                else:
                    self._zk.delete(path, version=version)
            except (NodeExistsError, BadVersionError, NoNodeError):
                continue
            break
        note = (f"{rtype}:{name}".encode() if pattern == "LITERAL" else
                _dumps({"version": 1, "resourceType": rtype, "name": name, "patternType": "Prefixed"}))
        self._zk.create(f"{ACL_CHANGES[pattern]}/{ACL_CHANGE_PREFIX}", note, sequence=True, makepath=True)
        return new

    def watch_acls(self, callback: Callable[[tuple[str, str, str]], None]) -> None:
        """Kafka's ZkNodeChangeNotificationListener: each new notification
        names a changed resource; the ones present when the watch starts are
        old news (the caller loads everything first)."""
        for pattern, changes in ACL_CHANGES.items():
            self._zk.ensure_path(changes)
            seen: set[str] = set(self._children(changes))

            def on_children(children, pattern=pattern, changes=changes, seen=seen):
                for child in sorted(set(children) - seen):
                    seen.add(child)
                    try:
                        data, _ = self._zk.get(f"{changes}/{child}")
                    except NoNodeError:
                        continue
                    if pattern == "LITERAL":
                        rtype, _, name = data.decode().partition(":")
                    else:
                        obj = json.loads(data)
                        rtype, name = obj["resourceType"], obj["name"]
                    _safe_call(callback, (rtype, pattern, name))
                seen.intersection_update(children)
                return not self._closed
            ChildrenWatch(self._zk, changes, on_children)

    # -- group configs: /config/groups/<group id> ----------------------------------------
    # Kafka keeps group configs only in KRaft's metadata log; here they sit beside the topic
    # configs in Kafka's ConfigEntity JSON. A group id may hold any character, so the node name
    # is the id percent-encoded (Kafka's Sanitizer does the same for user and client ids).
    def group_configs(self) -> dict[str, dict[str, str]]:
        out = {}
        for node in self._children(CONFIG_GROUPS):
            config = self._entity_config(f"{CONFIG_GROUPS}/{node}")
            if config:
                out[urllib.parse.unquote(node)] = config
        return out

    def set_group_configs(self, group_id: str, configs: dict[str, str]) -> None:
        self._set_config_node(CONFIG_GROUPS, _group_node(group_id), configs)

    # -- dynamic broker configs: /config/brokers/<id> and /config/brokers/<default> (Kafka's) --
    def broker_configs(self) -> dict[str, dict[str, str]]:
        out = {}
        for node in self._children(CONFIG_BROKERS):
            config = self._entity_config(f"{CONFIG_BROKERS}/{node}")
            if config:
                out["" if node == DEFAULT_BROKER_NODE else node] = config
        return out

    def set_broker_configs(self, entity: str, configs: dict[str, str]) -> None:
        self._set_config_node(CONFIG_BROKERS, entity or DEFAULT_BROKER_NODE, configs)

    def _set_config_node(self, parent: str, node: str, configs: dict[str, str]) -> None:
        """Replace one ConfigEntity node's configs (none left: the node goes)."""
        path = f"{parent}/{node}"
        data = _dumps({"version": 1, "config": dict(configs)})
        self._zk.ensure_path(parent)
        while True:
            exists = self._zk.exists(path) is not None

            def build(t):
                if exists and configs:
                    t.set_data(path, data)
                elif exists:
                    t.delete(path)
                elif configs:
                    t.create(path, data)
            if not exists and not configs:
                return
            results = self._commit(build)
            if isinstance(results[0], (NoNodeError, NodeExistsError)):
                continue   # created or deleted by another writer in between: look again
            _raise_any(results)
            return

    # -- cluster-wide ----------------------------------------------------------------
    def cluster_id(self) -> str:
        while True:
            try:
                data, _ = self._zk.get(CLUSTER_ID)
                return json.loads(data)["id"]
            except NoNodeError:
                pass
            try:
                self._zk.create(CLUSTER_ID, _dumps({"version": "1", "id": new_cluster_id()}), makepath=True)
            except NodeExistsError:
                pass

    def next_producer_id_block(self, size: int = PRODUCER_ID_BLOCK_SIZE) -> int:
        broker = self._registration.broker_id if self._registration else -1
        while True:
            data, stat = self._zk.get(PRODUCER_ID_BLOCK)
            start = int(json.loads(data)["block_end"]) + 1 if data else 0
            block = _dumps({"version": 1, "broker": broker, "block_start": str(start),
                            "block_end": str(start + size - 1)})
            try:
                self._zk.set(PRODUCER_ID_BLOCK, block, version=stat.version)
            except BadVersionError:
                continue  # another broker claimed a block meanwhile
            return start

    def __repr__(self) -> str:
        return f"ZkMetadataStore({self.connect!r})"


def _group_node(group_id: str) -> str:
    node = urllib.parse.quote(group_id, safe="")
    # "." and ".." are not node names ZooKeeper allows.
    return node.replace(".", "%2E") if node in (".", "..") else node


def _controller_from(data: bytes | None) -> int | None:
    if not data:
        return None
    try:
        return int(json.loads(data)["brokerid"])
    except (ValueError, KeyError, TypeError):
        # Very old Kafka wrote a bare integer.
        try:
            return int(data)
        except ValueError:
            return None


def _safe_call(callback, value) -> None:
    try:
        callback(value)
    except Exception:
        log.exception("metadata watch callback %r failed", callback)


def _first_error(results) -> Exception:
    # The op that really failed, not the ones merely rolled back because of it.
    for r in results:
        if isinstance(r, Exception) and not isinstance(r, (RolledBackError, RuntimeInconsistency)):
            return r
    return next(r for r in results if isinstance(r, Exception))


def _raise_any(results) -> None:
    if any(isinstance(r, Exception) for r in results):
        raise _first_error(results)
