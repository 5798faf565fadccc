"""The cluster metadata interface the controller and brokers use, and its records.

Two backends implement ``MetadataStore``: ``ZkMetadataStore`` (ZooKeeper, Kafka's
own znodes and JSON, so Kafka's tools can read them) and ``LocalMetadataStore``
(embedded: files in one broker's data dir, registrations in memory).

Words as in Kafka: a store is one *session*; ephemeral state (a broker's
registration, the controller role) lives as long as that session. The
controller epoch increments on every election. partition_epoch is the version
of a partition's state record (the ZooKeeper node version) and is what
``update_partition_state`` compares and sets.

Fencing: a store that won an election remembers the controller epoch it was
elected with; from then on every write it makes to topics, configs and partition
states is conditional on that epoch still being current (in ZooKeeper: one
transaction that also checks the version of /controller_epoch, as Kafka's
KafkaZkClient.checkControllerAndEpoch does), and fails with
``ControllerMovedError`` once another controller has been elected. A store that
never won an election writes unconditionally (admin tools, tests).
"""
from __future__ import annotations

import abc
import base64
import contextlib
import dataclasses
import uuid
from typing import Callable

from pylog.errors import PylogError
from pylog.protocol.error_codes import Errors

__all__ = [
    "BrokerIdInUseError",
    "BrokerInfo",
    "ControllerMovedError",
    "MetadataStore",
    "PartitionState",
    "TopicAssignment",
    "INITIAL_CONTROLLER_EPOCH",
    "PRODUCER_ID_BLOCK_SIZE",
]

# /controller_epoch starts at 0, so the first controller ever elected has epoch 1.
INITIAL_CONTROLLER_EPOCH = 0
PRODUCER_ID_BLOCK_SIZE = 1000


class ControllerMovedError(PylogError):
    """A write was refused because the controller epoch this store was elected
    with is no longer current: another controller has been elected since.

    Any thread.
    """

    error_code = Errors.STALE_CONTROLLER_EPOCH


class BrokerIdInUseError(PylogError):
    """register_broker: another live session already registered this broker id.

    Any thread.
    """


# Kafka's SecurityProtocol ids, as BrokerRegistration and UpdateMetadata carry them.
SECURITY_PROTOCOL_IDS = {"PLAINTEXT": 0, "SSL": 1, "SASL_PLAINTEXT": 2, "SASL_SSL": 3}

@dataclasses.dataclass(frozen=True)
class BrokerInfo:
    """A live broker's registration.

    endpoints: (listener name, host, port) of every advertised listener
    (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; protocols maps a
    name to its protocol, PLAINTEXT when absent); host and port are the
    first of them (Kafka's ZooKeeper JSON keeps the first PLAINTEXT endpoint
    there too). Who talks to a broker picks the endpoint of the listener its
    own configuration names (address()): the controller its control-plane
    listener, replica fetchers the inter-broker one.

    broker_epoch (KIP-380) is new with every registration and grows: the
    czxid of the /brokers/ids/<id> znode in ZooKeeper, a counter of the
    embedded store. The controller puts the receiver's epoch in every request
    it sends, and a broker refuses one that names another epoch, so a request
    meant for an earlier life of the broker (or forged) changes nothing. -1
    until registered. Not part of equality: the same endpoint is the same
    broker to compare, whatever its epoch.

    Frozen: any thread.
    """

    broker_id: int
    host: str
    port: int
    rack: str | None = None
    broker_epoch: int = dataclasses.field(default=-1, compare=False)
    endpoints: tuple = ()
    protocols: tuple = dataclasses.field(default=(), compare=False)   # (listener name, security protocol)

    def __post_init__(self):
        if not self.endpoints:   # one unnamed endpoint: Kafka's default listener name
            object.__setattr__(self, "endpoints", (("PLAINTEXT", self.host, self.port),))
        else:
            object.__setattr__(self, "endpoints", tuple(tuple(e) for e in self.endpoints))

    def address(self, listener: str | None) -> tuple[str, int]:
        """host, port of this broker's listener named so; its first endpoint
        when it has none of that name (a registration from before listeners
        had names, or a broker configured differently)."""
        for name, host, port in self.endpoints:
            if name == listener:
                return host, port
        return self.host, self.port

    def all_endpoints(self) -> tuple:
        return self.endpoints

    def protocol(self, listener: str) -> str:
        """The security protocol of listener (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)."""
        return dict(self.protocols).get(listener, "PLAINTEXT")


@dataclasses.dataclass(frozen=True)
class PartitionState:
    """Leader and ISR of one partition, as in /brokers/topics/<t>/partitions/<p>/state.

    partition_epoch is not stored in the record itself: it is the record's version
    (ZooKeeper node version; a counter in the local store), 0 when created.

    Frozen: any thread.
    """

    leader: int
    leader_epoch: int
    isr: list[int]
    controller_epoch: int
    partition_epoch: int = 0

    def to_json(self) -> dict:
        # Exactly Kafka's TopicPartitionStateZNode JSON (no partition_epoch: it is the version).
        return {"version": 1, "leader": self.leader, "leader_epoch": self.leader_epoch,
                "controller_epoch": self.controller_epoch, "isr": list(self.isr)}

    @classmethod
    def from_json(cls, obj: dict, partition_epoch: int) -> "PartitionState":
        return cls(leader=int(obj["leader"]), leader_epoch=int(obj["leader_epoch"]),
                   isr=[int(b) for b in obj["isr"]], controller_epoch=int(obj["controller_epoch"]),
                   partition_epoch=partition_epoch)


@dataclasses.dataclass(frozen=True)
class TopicAssignment:
    """A topic's id and replica assignment: partition -> replicas, preferred
    leader first. During a reassignment a partition's replicas are the target
    and the original together, with adding (target minus original) and
    removing (original minus target) listed apart, as Kafka keeps them.

    Frozen (its dicts are not changed once made, by convention): any thread.
    """

    name: str
    topic_id: uuid.UUID
    partitions: dict[int, list[int]]
    adding: dict[int, list[int]] = dataclasses.field(default_factory=dict)
    removing: dict[int, list[int]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        # Kafka's TopicZNode JSON; topic ids are written as Kafka's Uuid.toString
        # (URL-safe base64 of the 16 bytes, no padding).
        return {"version": 3,
                "partitions": {str(p): list(r) for p, r in sorted(self.partitions.items())},
                "adding_replicas": {str(p): list(r) for p, r in sorted(self.adding.items()) if r},
                "removing_replicas": {str(p): list(r) for p, r in sorted(self.removing.items()) if r},
                "topic_id": uuid_to_kafka(self.topic_id)}

    @classmethod
    def from_json(cls, name: str, obj: dict) -> "TopicAssignment":
        tid = obj.get("topic_id")
        def parts(key):
            return {int(p): [int(b) for b in r] for p, r in (obj.get(key) or {}).items()}
        return cls(name=name, topic_id=uuid_from_kafka(tid) if tid else uuid.UUID(int=0),
                   partitions=parts("partitions"), adding=parts("adding_replicas"),
                   removing=parts("removing_replicas"))


def uuid_to_kafka(u: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(u.bytes).rstrip(b"=").decode("ascii")


def uuid_from_kafka(s: str) -> uuid.UUID:
    return uuid.UUID(bytes=base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))


def new_cluster_id() -> str:
    # Kafka's cluster ids are random Uuids in their base64 form (22 characters).
    return uuid_to_kafka(uuid.uuid4())


class MetadataStore(abc.ABC):
    """One session on the cluster's metadata.

    Callbacks given to watch_* are called once with the current value (possibly
    before watch_* returns), then after every change, in order, from a thread of
    the store's (ZooKeeper: the first call may run in the caller's thread). They
    must not block for long; they may call the store. A value may repeat, and
    changes in quick succession may be seen only as their end result (as with
    ZooKeeper watches), so a callback should act on the value, not count calls.
    Values passed to callbacks are snapshots (a dict of BrokerInfo, or the
    controller's broker id / None). Missing topics raise
    UnknownTopicOrPartitionError. Every method is thread-safe.
    """

    # -- brokers -----------------------------------------------------------------
    @abc.abstractmethod
    def register_broker(self, info: BrokerInfo) -> None:
        """Register this broker; the registration lives as long as this store's session."""

    def current_controller(self) -> tuple[int | None, int]:
        """(the active controller's id or None, the current controller epoch),
        as up to date as the store can make them."""
        return self.controller_id(), self.controller_epoch()

    def registered_broker_epoch(self) -> int:
        """The broker epoch of this session's current registration, -1 when
        none (a registration made again after a lost session has a new one)."""
        return -1

    @abc.abstractmethod
    def live_brokers(self) -> dict[int, BrokerInfo]:
        ...

    @abc.abstractmethod
    def watch_brokers(self, callback: Callable[[dict[int, BrokerInfo]], None]) -> None:
        ...

    # -- controller ----------------------------------------------------------------
    @abc.abstractmethod
    def elect_controller(self, broker_id: int) -> int | None:
        """Try to become the controller. On success the controller epoch is
        incremented and the new epoch returned (this store's writes are then fenced
        by it); None when another broker is the controller."""

    @abc.abstractmethod
    def resign_controller(self) -> None:
        """Give up the controller role if this store holds it (Kafka's
        onControllerResignation + deleteController). The store's writes stay
        fenced by its old epoch, so they fail once someone else is elected."""

    @abc.abstractmethod
    def controller_id(self) -> int | None:
        ...

    @abc.abstractmethod
    def watch_controller(self, callback: Callable[[int | None], None]) -> None:
        ...

    @abc.abstractmethod
    def controller_epoch(self) -> int:
        """The current controller epoch (0 before any election)."""

    # -- topics --------------------------------------------------------------------
    @abc.abstractmethod
    def create_topic(self, assignment: TopicAssignment, configs: dict[str, str] | None = None) -> None:
        """TopicAlreadyExistsError when a topic of that name exists."""

    @abc.abstractmethod
    def topics(self) -> dict[str, TopicAssignment]:
        ...

    @abc.abstractmethod
    def set_assignment(self, assignment: TopicAssignment) -> None:
        """Replace an existing topic's assignment (e.g. partitions added); the
        topic_id stays the stored one."""

    @abc.abstractmethod
    def delete_topic(self, name: str) -> None:
        """Remove the topic, its partition states and its configs."""

    @abc.abstractmethod
    def topic_configs(self, name: str) -> dict[str, str]:
        ...

    @abc.abstractmethod
    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        ...

    # -- partition states ----------------------------------------------------------------
    @abc.abstractmethod
    def partition_state(self, topic: str, partition: int) -> PartitionState | None:
        ...

    @abc.abstractmethod
    def create_partition_state(self, topic: str, partition: int, state: PartitionState) -> PartitionState:
        """Create the partition's first state; returns it with partition_epoch 0.
        FileExistsError when it already exists."""

    @abc.abstractmethod
    def update_partition_state(self, topic: str, partition: int, new: PartitionState,
                               expected_partition_epoch: int) -> PartitionState | None:
        """Compare-and-set: write ``new`` if the stored partition_epoch is still
        ``expected_partition_epoch``; return the stored state (with its new
        partition_epoch), or None when someone else changed it first."""

    # -- cluster-wide ----------------------------------------------------------------
    def client_quotas(self) -> dict[str, dict[str, str]]:
        """Every client quota entity with its settings: {Kafka's entity path
        ("users/alice", "clients/<default>", "users/a/clients/c"): {key: value}}."""
        raise NotImplementedError

    def set_client_quotas(self, entity_path: str, configs: dict[str, str]) -> None:
        """Replace an entity's quota settings (empty: it has none left)."""
        raise NotImplementedError

    # -- ACLs: resources are (Kafka's type name "Topic", "LITERAL" | "PREFIXED",
    # name); entries Kafka's JSON {"principal","permissionType","operation","host"}.
    def acls(self) -> dict[tuple[str, str, str], list[dict]]:
        """Every resource that has ACLs, with its entries."""
        raise NotImplementedError

    def acls_of(self, resource: tuple[str, str, str]) -> list[dict]:
        """One resource's entries (empty when it has none)."""
        raise NotImplementedError

    def change_acls(self, resource: tuple[str, str, str], add: list[dict], remove: list[dict]) -> list[dict]:
        """Add and remove entries of one resource atomically (against other
        brokers' changes too); the resource's entries after the change."""
        raise NotImplementedError

    def watch_acls(self, callback: Callable[[tuple[str, str, str]], None]) -> None:
        """callback(resource) after another session changed that resource's
        ACLs (stores whose only writer is this process need not call it)."""

    def group_configs(self) -> dict[str, dict[str, str]]:
        """Every group's config overrides (KIP-848 GROUP resources): {group id: {key: value}}."""
        raise NotImplementedError

    def set_group_configs(self, group_id: str, configs: dict[str, str]) -> None:
        """Replace a group's config overrides (empty: it has none left). A fenced write."""
        raise NotImplementedError

    def broker_configs(self) -> dict[str, dict[str, str]]:
        """Dynamic broker configs: {broker id as text, or "" for the cluster default: {key: value}}."""
        raise NotImplementedError

    def set_broker_configs(self, entity: str, configs: dict[str, str]) -> None:
        """Replace one entity's dynamic broker configs (empty: none left). A fenced write."""
        raise NotImplementedError

    def entity_config(self, entity_path: str) -> dict[str, str]:
        """One entity's settings: its quotas and, for a user, its SCRAM
        credentials (Kafka keeps both in /config/users/<user>)."""
        return dict(self.client_quotas().get(entity_path, {}))

    @abc.abstractmethod
    def cluster_id(self) -> str:
        """The cluster id, created by the first caller ever."""

    @abc.abstractmethod
    def next_producer_id_block(self, size: int = PRODUCER_ID_BLOCK_SIZE) -> int:
        """Claim the next block of ``size`` producer ids; returns its first id.
        Blocks never overlap, whichever store claims them."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the session: its registration and controller role disappear."""

    def batch(self):
        """A context manager: the writes made inside may be made durable
        together when it ends (before it returns). Stores whose writes are
        durable one by one need nothing: the default does nothing."""
        return contextlib.nullcontext(self)

    def connected(self) -> bool:
        """Whether calls are answered now (False: a remote store whose server
        is unreachable, whose calls would block until it comes back)."""
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
