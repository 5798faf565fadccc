"""A small synchronous Kafka client: metadata, admin requests, produce, fetch.

    client = Client("127.0.0.1:9092")
    client.create_topics("t", partitions=3)
    err, base_offset = client.produce("t", 0, _engine.encode_batch([b"v"]))
    err, high_watermark, log_start_offset, records = client.fetch("t", 0, 0)

Routing follows Kafka's: Produce, Fetch, ListOffsets and DeleteRecords go to
the partition's leader, CreateTopics / DeleteTopics / CreatePartitions to the
controller, Metadata and DescribeConfigs / AlterConfigs of topics to any
broker (the bootstrap connection), the group requests (OffsetFetch,
OffsetCommit, ConsumerGroupDescribe, DescribeGroups, DeleteGroups) to the
group's coordinator found with FindCoordinator, ListGroups to every broker. One Connection per broker
id, opened on first use, reused after.

Group requests are retried, until the client's timeout, while the answer is
COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR
(the coordinator is looked up again for the last two), as Kafka's admin
client does; any other error is raised (or returned, where documented).

Errors: admin calls and list_offsets raise pylog.errors exceptions (see
client/errors.py: ``exc.error_code`` is the broker's code). produce() and
fetch() return the partition's error_code instead, because callers that
stream (the console tools, perf) decide per code whether to retry, refresh
metadata or stop; ``check(code)`` turns one into the exception. They still
raise when the request cannot be routed (a topic or partition missing from
the metadata) or the connection fails (ConnectionClosedError).

The metadata cache is refreshed by metadata(); leader lookups refresh it once
when a partition or its leader is unknown. A leader change is not detected
by itself: callers refresh on NOT_LEADER_OR_FOLLOWER.

Thread-safety: none; a Client and its connections belong to one thread.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import PylogError
from ..protocol.error_codes import Errors
from ..protocol.errors import ProtocolError
from ..protocol.messages import (
    AlterConfigsRequest,
    ConsumerGroupDescribeRequest,
    ConsumerProtocolAssignment,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteGroupsRequest,
    DeleteRecordsRequest,
    DeleteTopicsRequest,
    DescribeConfigsRequest,
    DescribeGroupsRequest,
    FetchRequest,
    FindCoordinatorRequest,
    IncrementalAlterConfigsRequest,
    ListGroupsRequest,
    ListOffsetsRequest,
    MetadataRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    ProduceRequest,
)
from ..protocol.types import INT16, ZERO_UUID
from .errors import COORDINATOR_ERRORS, ConnectionClosedError, SslAuthenticationError, check, error_for
from .wire import Connection

__all__ = [
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "RESOURCE_TOPIC",
    "BrokerMetadata",
    "Client",
    "ClusterMetadata",
    "ConfigEntry",
    "FetchedPartition",
    "GroupDescription",
    "GroupListing",
    "GroupMember",
    "PartitionMetadata",
    "TopicMetadata",
    "consumer_assignment",
    "parse_bootstrap",
]

LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
RESOURCE_TOPIC = 2          # DescribeConfigs/AlterConfigs resource_type
RESOURCE_GROUP = 32         # KIP-848 group configs
DYNAMIC_TOPIC_CONFIG = 1    # DescribeConfigs config_source (v1+)
DEFAULT_CONFIG = 5

# Answers while a new topic's partitions are still getting leaders: wait on.
_LEADER_WAIT_ERRORS = frozenset({Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.LEADER_NOT_AVAILABLE,
                                 Errors.NOT_LEADER_OR_FOLLOWER})


@dataclass
class BrokerMetadata:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass
class PartitionMetadata:
    partition: int
    leader_id: int
    replicas: list[int]
    isr: list[int]
    offline_replicas: list[int] = field(default_factory=list)
    leader_epoch: int = -1
    error_code: int = 0


@dataclass
class TopicMetadata:
    name: str
    error_code: int
    is_internal: bool
    partitions: dict[int, PartitionMetadata]
    topic_id: object = None  # uuid.UUID when the Metadata version carries one (v10+)


@dataclass
class ClusterMetadata:
    brokers: dict[int, BrokerMetadata]
    controller_id: int
    cluster_id: str | None
    topics: dict[str, TopicMetadata]


@dataclass
class ConfigEntry:
    name: str
    value: str | None
    read_only: bool
    config_source: int  # Kafka's ConfigSource id; 5 = DEFAULT_CONFIG, 1 = DYNAMIC_TOPIC_CONFIG
    is_sensitive: bool

    @property
    def is_default(self) -> bool:
        return self.config_source == DEFAULT_CONFIG


@dataclass
class FetchedPartition:
    topic: str
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: object  # bytes-like, may end with a partial batch; see client/records.py


@dataclass
class GroupListing:
    group_id: str
    protocol_type: str
    state: str | None  # None when the broker's ListGroups version has no group_state (< v4)
    group_type: str | None = None  # "classic", "consumer"...; None before ListGroups v5


@dataclass
class GroupMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes  # the protocol's bytes; consumer_assignment() reads the consumer protocol's

    # A member of a KIP-848 consumer group (ConsumerGroupDescribe) has no protocol bytes: its
    # epoch and its current and target assignments as (topic, partition)s instead.
    member_epoch: int | None = None
    partitions: list[tuple[str, int]] | None = None
    target_partitions: list[tuple[str, int]] | None = None
    upgraded: bool | None = None   # KIP-1099 MemberType: None unknown, False classic, True consumer

    def assigned_partitions(self) -> list[tuple[str, int]]:
        """The (topic, partition)s assigned to the member (a classic member's from its
        consumer-protocol assignment bytes)."""
        if self.partitions is not None:
            return list(self.partitions)
        return consumer_assignment(self.assignment)


@dataclass
class GroupDescription:
    group_id: str
    state: str          # Empty, PreparingRebalance, CompletingRebalance, Stable or Dead; a consumer
                        # group's Empty, Assigning, Reconciling, Stable
    protocol_type: str  # "consumer" for consumer groups; "" for a group with offsets only
    protocol: str       # the chosen assignor (protocol name), "" when none
    members: list[GroupMember]
    coordinator: BrokerMetadata | None = None
    group_type: str = "classic"   # "consumer" when described by ConsumerGroupDescribe
    group_epoch: int | None = None              # consumer groups only
    target_assignment_epoch: int | None = None  # consumer groups only


# ConsumerGroupDescribe v1 MemberType (KIP-1099) -> Kafka's ConsumerGroupDescription.upgraded().
_MEMBER_TYPES = {0: False, 1: True}
# Kafka's GroupState names of a consumer group's states (its Admin parses them case-insensitively).
_CONSUMER_GROUP_STATES = {s.lower(): s for s in ("Empty", "Assigning", "Reconciling", "Stable", "Dead")}


def consumer_assignment(data) -> list[tuple[str, int]]:
    """The (topic, partition)s in a consumer-protocol Assignment (int16
    version + ConsumerProtocolAssignment, KAFKA-NOTES §5.4), in their order;
    [] for empty bytes (a member not assigned yet). A version above the
    codec's is read as its known prefix, as Kafka's readers do."""
    if data is None or len(data) == 0:
        return []
    mv = memoryview(data)
    if len(mv) < 2:
        raise ProtocolError(f"consumer protocol assignment of {len(mv)} byte(s)")
    version = INT16.unpack_from(mv, 0)[0]
    if version < 0:
        raise ProtocolError(f"consumer protocol assignment version {version}")
    hi = ConsumerProtocolAssignment.VALID_VERSIONS[1]
    assignment, _ = ConsumerProtocolAssignment.decode_from(mv, 2, min(version, hi))
    return [(tp.topic, p) for tp in assignment.assigned_partitions for p in tp.partitions]


def parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """"host:port,host2:port2" -> [(host, port), ...]; [v6]:port allowed."""
    out = []
    for item in bootstrap.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"bootstrap server {item!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError("no bootstrap server given")
    return out


class Client:
    """A client of one Kafka cluster (see the module doc)."""

    def __init__(self, bootstrap: str, client_id: str = "pylog", timeout: float = 30.0, ssl_context=None,
                 sasl=None):
        """ssl_context: TLS to every broker (SSL, SASL_SSL); sasl: ClientCredentials every
        connection authenticates with; both from Kafka's client keys with
        pylog.client.security.security_settings."""
        self.client_id = client_id
        self.sasl = sasl
        self.timeout = timeout
        self.ssl_context = ssl_context   # None for PLAINTEXT and SASL_PLAINTEXT
        self._bootstrap_servers = parse_bootstrap(bootstrap)
        self._bootstrap: Connection | None = None
        self._connections: dict[int, Connection] = {}
        self._coordinators: dict[str, int] = {}  # group id -> coordinator node id
        self.cluster: ClusterMetadata | None = None
        self._bootstrap_connection()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
        if self._bootstrap is not None:
            self._bootstrap.close()
            self._bootstrap = None

    # --- connections ----------------------------------------------------------

    def _bootstrap_connection(self) -> Connection:
        if self._bootstrap is not None and not self._bootstrap.closed:
            return self._bootstrap
        errors = []
        refused = None
        for host, port in self._bootstrap_servers:
            try:
                self._bootstrap = self.open_connection(host, port)
                return self._bootstrap
            except ConnectionClosedError as e:
                errors.append(str(e))
                if isinstance(e, SslAuthenticationError):
                    refused = e
        if refused is not None:   # not a server down: the settings are wrong, say so as such
            raise SslAuthenticationError("; ".join(errors)) from refused
        raise ConnectionClosedError("no bootstrap server reachable: " + "; ".join(errors))

    def connection(self, node_id: int) -> Connection:
        """The connection to broker node_id (opened on first use)."""
        conn = self._connections.get(node_id)
        if conn is not None and not conn.closed:
            return conn
        if self.cluster is None or node_id not in self.cluster.brokers:
            self.metadata([])
        broker = self.cluster.brokers.get(node_id)
        if broker is None:
            raise error_for(Errors.BROKER_NOT_AVAILABLE, f"broker {node_id} is not in the cluster metadata")
        conn = self._connections[node_id] = self.open_connection(broker.host, broker.port)
        return conn

    def open_connection(self, host: str, port: int, timeout: float | None = None) -> Connection:
        """A new Connection to host:port with this client's id, TLS and SASL
        (the caller owns it), for the consumer's and producer's own sockets."""
        return Connection(host, port, self.client_id, self.timeout if timeout is None else timeout,
                          self.ssl_context, sasl=self.sasl)

    def any_connection(self) -> Connection:
        return self._bootstrap_connection()

    def controller_connection(self) -> Connection:
        """The active controller's connection. A cluster forming (or electing
        a new controller) answers Metadata without one for a moment: ask again
        until one is named, up to this client's timeout."""
        if self.cluster is None:
            self.metadata([])
        deadline = time.monotonic() + self.timeout
        while self.cluster.controller_id < 0:
            if time.monotonic() >= deadline:
                raise error_for(Errors.NOT_CONTROLLER, "the cluster metadata names no controller")
            time.sleep(0.1)
            self.metadata([])
        node = self.cluster.controller_id
        try:
            return self.connection(node)
        except ConnectionClosedError as e:
            b = self.cluster.brokers.get(node)
            where = f" ({b.host}:{b.port})" if b is not None else ""
            raise ConnectionClosedError(
                f"broker {node}{where} is the controller and cannot be reached: it is down ({e}); "
                f"topics cannot be created, deleted or changed until it is back") from None

    # --- metadata -------------------------------------------------------------

    def metadata(self, topics=None, allow_auto_topic_creation: bool = False) -> ClusterMetadata:
        """Metadata for `topics` (None = all topics, [] = brokers only). The
        answer replaces the cached brokers and merges into the cached topics.
        Per-topic errors are left in TopicMetadata.error_code."""
        names = None if topics is None else [MetadataRequest.MetadataRequestTopic(name=t)
                                             for t in topics]
        resp = self._bootstrap_connection().request(
            MetadataRequest(topics=names, allow_auto_topic_creation=allow_auto_topic_creation))
        brokers = {b.node_id: BrokerMetadata(b.node_id, b.host, b.port, b.rack) for b in resp.brokers}
        found = {}
        for t in resp.topics:
            parts = {p.partition_index: PartitionMetadata(
                p.partition_index, p.leader_id, list(p.replica_nodes), list(p.isr_nodes),
                list(p.offline_replicas), p.leader_epoch, p.error_code) for p in t.partitions}
            topic_id = t.topic_id if t.topic_id != ZERO_UUID else None
            found[t.name] = TopicMetadata(t.name, t.error_code, t.is_internal, parts, topic_id)
        old_topics = {} if self.cluster is None or topics is None else self.cluster.topics
        self.cluster = ClusterMetadata(brokers, resp.controller_id, resp.cluster_id,
                                       {**old_topics, **found})
        return ClusterMetadata(brokers, resp.controller_id, resp.cluster_id, found)

    def topic(self, name: str, refresh: bool = False) -> TopicMetadata:
        """One topic's metadata; raises for a topic-level error."""
        t = None if refresh or self.cluster is None else self.cluster.topics.get(name)
        if t is None or t.error_code:
            t = self.metadata([name]).topics.get(name)
        if t is None:
            raise error_for(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} is not in the metadata response")
        check(t.error_code, f"topic {name!r}")
        return t

    def partitions_for(self, name: str) -> list[int]:
        return sorted(self.topic(name).partitions)

    def leader_for(self, topic: str, partition: int) -> int:
        """The node id of the partition's leader; refreshes the metadata once
        if the partition or its leader is unknown."""
        for refresh in (False, True):
            t = self.topic(topic, refresh=refresh)
            p = t.partitions.get(partition)
            if p is not None and p.leader_id >= 0 and not p.error_code:
                return p.leader_id
        if p is None:
            raise error_for(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"{topic}-{partition} does not exist")
        raise error_for(p.error_code or Errors.LEADER_NOT_AVAILABLE, f"{topic}-{partition} has no leader")

    def wait_for_leaders(self, topic: str, timeout: float = 10.0) -> TopicMetadata:
        """Poll Metadata until every partition of topic has a leader (a topic
        just created or auto-created may briefly have none)."""
        deadline = time.monotonic() + timeout
        while True:
            t = self.metadata([topic]).topics.get(topic)
            if t is not None and not t.error_code and t.partitions and all(
                    p.leader_id >= 0 and not p.error_code for p in t.partitions.values()):
                return t
            if t is None:
                code = Errors.UNKNOWN_TOPIC_OR_PARTITION
            else:
                code = t.error_code or Errors.LEADER_NOT_AVAILABLE
            if time.monotonic() >= deadline or code not in _LEADER_WAIT_ERRORS:
                raise error_for(code, f"topic {topic!r}: partitions without a leader after "
                                      f"{timeout:g} s")
            time.sleep(0.05)

    # --- admin ----------------------------------------------------------------

    def create_topics(self, name: str, partitions: int = -1, replication_factor: int = -1,
                      configs: dict | None = None, timeout_ms: int = 30000,
                      validate_only: bool = False, assignment: dict[int, list[int]] | None = None) -> None:
        """CreateTopics for one topic (-1 = the broker's default count/factor;
        assignment {partition: [broker ids]} places the replicas by hand, with
        partitions and replication_factor left at -1, as Kafka requires)."""
        topic = CreateTopicsRequest.CreatableTopic(
            name=name, num_partitions=partitions, replication_factor=replication_factor,
            assignments=[CreateTopicsRequest.CreatableReplicaAssignment(partition_index=p, broker_ids=list(b))
                         for p, b in (assignment or {}).items()],
            configs=[CreateTopicsRequest.CreatableTopicConfig(name=k, value=None if v is None else str(v))
                     for k, v in (configs or {}).items()])
        resp = self.controller_connection().request(CreateTopicsRequest(
            topics=[topic], timeout_ms=timeout_ms, validate_only=validate_only))
        for r in resp.topics:
            check(r.error_code, r.error_message or f"topic {r.name!r}")

    def delete_topics(self, names, timeout_ms: int = 30000) -> None:
        """DeleteTopics for one name or a list of names."""
        names = [names] if isinstance(names, str) else list(names)
        resp = self.controller_connection().request(DeleteTopicsRequest(topic_names=names,
                                                                         timeout_ms=timeout_ms))
        for r in resp.responses:
            check(r.error_code, r.error_message or f"topic {r.name!r}")
        if self.cluster is not None:
            for n in names:
                self.cluster.topics.pop(n, None)

    def create_partitions(self, name: str, total_count: int, timeout_ms: int = 30000,
                          validate_only: bool = False, assignments: list[list[int]] | None = None) -> None:
        """CreatePartitions: grow topic `name` to total_count partitions
        (assignments: the new partitions' replicas, in order; None = the
        controller places them)."""
        resp = self.controller_connection().request(CreatePartitionsRequest(
            topics=[CreatePartitionsRequest.CreatePartitionsTopic(
                name=name, count=total_count, assignments=None if assignments is None else [
                    CreatePartitionsRequest.CreatePartitionsAssignment(broker_ids=list(b)) for b in assignments])],
            timeout_ms=timeout_ms, validate_only=validate_only))
        for r in resp.results:
            check(r.error_code, r.error_message or f"topic {r.name!r}")

    def describe_configs(self, topic: str, keys=None, resource_type: int = RESOURCE_TOPIC) -> dict[str, ConfigEntry]:
        """The topic's configs by name (keys=None: all of them); with resource_type
        RESOURCE_GROUP, a group's (KIP-848)."""
        resp = self.any_connection().request(DescribeConfigsRequest(resources=[
            DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=resource_type, resource_name=topic,
                configuration_keys=None if keys is None else list(keys))]))
        out = {}
        for r in resp.results:
            what = "topic" if resource_type == RESOURCE_TOPIC else "group"
            check(r.error_code, r.error_message or f"configs of {what} {topic!r}")
            for c in r.configs:
                out[c.name] = ConfigEntry(c.name, c.value, c.read_only, c.config_source, c.is_sensitive)
        return out

    def alter_configs(self, topic: str, configs: dict, validate_only: bool = False) -> None:
        """AlterConfigs: the topic's dynamic configs become exactly `configs`
        (Kafka's non-incremental semantics: a key left out returns to its
        default). To change one key, merge with dynamic_configs() first."""
        resp = self.any_connection().request(AlterConfigsRequest(resources=[
            AlterConfigsRequest.AlterConfigsResource(
                resource_type=RESOURCE_TOPIC, resource_name=topic,
                configs=[AlterConfigsRequest.AlterableConfig(name=k, value=None if v is None else str(v))
                         for k, v in configs.items()])], validate_only=validate_only))
        for r in resp.responses:
            check(r.error_code, r.error_message or f"configs of topic {topic!r}")

    def incremental_alter_configs(self, resource_type: int, name: str, set_configs: dict | None = None,
                                  delete: list | None = None, validate_only: bool = False) -> None:
        """IncrementalAlterConfigs on one resource: SET each of set_configs, DELETE each key of
        delete; the resource's other configs stay."""
        ops = [IncrementalAlterConfigsRequest.AlterableConfig(name=k, config_operation=0, value=str(v))
               for k, v in (set_configs or {}).items()]
        ops += [IncrementalAlterConfigsRequest.AlterableConfig(name=k, config_operation=1, value=None)
                for k in delete or ()]
        resp = self.any_connection().request(IncrementalAlterConfigsRequest(resources=[
            IncrementalAlterConfigsRequest.AlterConfigsResource(
                resource_type=resource_type, resource_name=name, configs=ops)], validate_only=validate_only))
        for r in resp.responses:
            check(r.error_code, r.error_message or f"configs of {name!r}")

    def dynamic_configs(self, topic: str) -> dict[str, str]:
        """The configs set on the topic itself (source DYNAMIC_TOPIC_CONFIG)."""
        return {name: e.value for name, e in self.describe_configs(topic).items()
                if e.config_source == DYNAMIC_TOPIC_CONFIG}

    # --- data -----------------------------------------------------------------

    def produce_request(self, topic: str, partition: int, batch, acks: int = -1,
                        timeout_ms: int = 30000) -> ProduceRequest:
        return ProduceRequest(acks=acks, timeout_ms=timeout_ms, topic_data=[
            ProduceRequest.TopicProduceData(name=topic, partition_data=[
                ProduceRequest.PartitionProduceData(index=partition, records=batch)])])

    def produce(self, topic: str, partition: int, batch, acks: int = -1,
                timeout_ms: int = 30000) -> tuple[int, int]:
        """Append one encoded record batch (or several concatenated) to the
        partition's leader: (error_code, base_offset); (0, -1) for acks=0."""
        conn = self.connection(self.leader_for(topic, partition))
        resp = conn.request(self.produce_request(topic, partition, batch, acks, timeout_ms))
        if resp is None:
            return 0, -1
        p = _only_partition(resp.responses, "partition_responses", topic, partition, "index")
        return p.error_code, p.base_offset

    def fetch_request(self, offsets, max_wait_ms: int = 500, min_bytes: int = 1,
                      max_bytes: int = 52428800, partition_max_bytes: int = 1048576,
                      isolation_level: int = 0) -> FetchRequest:
        """A sessionless consumer Fetch for {(topic, partition): fetch_offset}."""
        by_topic: dict[str, list] = {}
        for (topic, partition), offset in offsets.items():
            by_topic.setdefault(topic, []).append(FetchRequest.FetchPartition(
                partition=partition, fetch_offset=offset, partition_max_bytes=partition_max_bytes))
        return FetchRequest(
            replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=min_bytes, max_bytes=max_bytes,
            isolation_level=isolation_level, session_id=0, session_epoch=-1,
            topics=[FetchRequest.FetchTopic(topic=t, partitions=ps) for t, ps in by_topic.items()])

    def fetch_from(self, node_id: int, offsets, **kw) -> dict[tuple[str, int], FetchedPartition]:
        """One Fetch to broker node_id for {(topic, partition): fetch_offset}
        (partitions it leads); keyword arguments as fetch_request()."""
        resp = self.connection(node_id).request(self.fetch_request(offsets, **kw))
        check(resp.error_code, f"fetch from broker {node_id}")
        return fetched_partitions(resp)

    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int = 1048576,
              max_wait_ms: int = 500, min_bytes: int = 1, isolation_level: int = 0):
        """(error_code, high_watermark, log_start_offset, records) for one
        partition; records may end with a partial batch."""
        got = self.fetch_from(self.leader_for(topic, partition), {(topic, partition): offset},
                              max_wait_ms=max_wait_ms, min_bytes=min_bytes, max_bytes=max_bytes,
                              partition_max_bytes=max_bytes, isolation_level=isolation_level)
        p = got.get((topic, partition))
        if p is None:
            raise error_for(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"fetch response has no {topic}-{partition}")
        return p.error_code, p.high_watermark, p.log_start_offset, p.records

    def list_offsets(self, topic: str, partition: int, timestamp: int,
                     isolation_level: int = 0) -> int:
        """The offset for timestamp: -1 (LATEST_TIMESTAMP) = high watermark,
        -2 (EARLIEST_TIMESTAMP) = log_start_offset, else the first offset
        whose timestamp is >= timestamp (-1 if none)."""
        conn = self.connection(self.leader_for(topic, partition))
        resp = conn.request(ListOffsetsRequest(replica_id=-1, isolation_level=isolation_level, topics=[
            ListOffsetsRequest.ListOffsetsTopic(name=topic, partitions=[
                ListOffsetsRequest.ListOffsetsPartition(partition_index=partition,
                                                        timestamp=timestamp)])]))
        p = _only_partition(resp.topics, "partitions", topic, partition, "partition_index")
        check(p.error_code, f"list offsets of {topic}-{partition}")
        return p.offset

    def list_offsets_many(self, timestamps: dict, isolation_level: int = 0) -> dict:
        """ListOffsets for {(topic, partition): timestamp} (timestamps as
        list_offsets'), one request per leader: {(topic, partition):
        (error_code, offset)}. A partition that cannot be routed (unknown
        topic or partition, no leader) gets that error code, not an exception."""
        by_leader: dict[int, dict[str, list]] = {}
        out = {}
        for (topic, partition), ts in timestamps.items():
            try:
                leader = self.leader_for(topic, partition)
            except ConnectionClosedError:
                raise
            except PylogError as e:
                out[(topic, partition)] = (getattr(e, "error_code", -1), -1)
                continue
            by_leader.setdefault(leader, {}).setdefault(topic, []).append(
                ListOffsetsRequest.ListOffsetsPartition(partition_index=partition, timestamp=ts))
        for node_id, topics in by_leader.items():
            resp = self.connection(node_id).request(ListOffsetsRequest(
                replica_id=-1, isolation_level=isolation_level,
                topics=[ListOffsetsRequest.ListOffsetsTopic(name=t, partitions=ps)
                        for t, ps in topics.items()]))
            for t in resp.topics:
                for p in t.partitions:
                    out[(t.name, p.partition_index)] = (p.error_code, p.offset)
        for tp in timestamps:
            out.setdefault(tp, (3, -1))  # asked but not answered
        return out

    def delete_records(self, topic: str, offsets: dict[int, int],
                       timeout_ms: int = 30000) -> dict[int, int]:
        """DeleteRecords below {partition: offset} (-1 = the high watermark);
        returns each partition's new low watermark (log_start_offset). All
        partitions must share a leader per request, so one request per leader."""
        by_leader: dict[int, list] = {}
        for partition, offset in offsets.items():
            by_leader.setdefault(self.leader_for(topic, partition), []).append(
                DeleteRecordsRequest.DeleteRecordsPartition(partition_index=partition, offset=offset))
        out = {}
        for node_id, parts in by_leader.items():
            resp = self.connection(node_id).request(DeleteRecordsRequest(timeout_ms=timeout_ms, topics=[
                DeleteRecordsRequest.DeleteRecordsTopic(name=topic, partitions=parts)]))
            for t in resp.topics:
                for p in t.partitions:
                    check(p.error_code, f"delete records of {t.name}-{p.partition_index}")
                    out[p.partition_index] = p.low_watermark
        return out


    # --- consumer groups ------------------------------------------------------

    def find_coordinator(self, group_id: str, refresh: bool = False) -> int:
        """The node id of the group's coordinator (FindCoordinator, cached)."""
        if not refresh and group_id in self._coordinators:
            return self._coordinators[group_id]
        deadline = time.monotonic() + self.timeout
        while True:
            resp = self.any_connection().request(FindCoordinatorRequest(key=group_id, key_type=0))
            if resp.error_code == Errors.NONE:
                self._coordinators[group_id] = resp.node_id
                return resp.node_id
            if resp.error_code not in COORDINATOR_ERRORS or time.monotonic() >= deadline:
                check(resp.error_code, resp.error_message or f"coordinator of group {group_id!r}")
            time.sleep(0.1)

    def coordinator(self, group_id: str) -> BrokerMetadata | None:
        """The coordinator's broker entry (None if it is not in the metadata)."""
        node_id = self.find_coordinator(group_id)
        if self.cluster is None or node_id not in self.cluster.brokers:
            self.metadata([])
        return self.cluster.brokers.get(node_id)

    def _group_request(self, group_id: str, body, error_of):
        """Send body to the group's coordinator; send it again (to a coordinator
        looked up afresh) while error_of(response) is a coordinator error."""
        deadline = time.monotonic() + self.timeout
        refresh = False
        while True:
            resp = self.connection(self.find_coordinator(group_id, refresh)).request(body)
            code = error_of(resp)
            if code not in COORDINATOR_ERRORS or time.monotonic() >= deadline:
                return resp
            refresh = code != Errors.COORDINATOR_LOAD_IN_PROGRESS  # same coordinator, later
            time.sleep(0.1)

    def list_groups(self, states=None, types=None) -> list[GroupListing]:
        """ListGroups on every broker, merged (sorted by group id). `states`
        (e.g. ["Stable", "Empty"]) filters on the broker (ListGroups v4+),
        `types` (e.g. ["classic"]) too (v5+)."""
        self.metadata([])
        out: dict[str, GroupListing] = {}
        for node_id in sorted(self.cluster.brokers):
            conn = self.connection(node_id)
            version = conn.version_for(ListGroupsRequest.API_KEY)
            if states and version < 4:
                raise error_for(Errors.UNSUPPORTED_VERSION,
                                f"broker {node_id} answers ListGroups v{version}, "
                                "and filtering on states needs v4")
            if types and version < 5:
                raise error_for(Errors.UNSUPPORTED_VERSION,
                                f"broker {node_id} answers ListGroups v{version}, "
                                "and filtering on types needs v5")
            resp = conn.request(ListGroupsRequest(states_filter=list(states or ()),
                                                  types_filter=list(types or ())), version)
            check(resp.error_code, f"list groups on broker {node_id}")
            for g in resp.groups:
                out[g.group_id] = GroupListing(g.group_id, g.protocol_type,
                                               g.group_state if version >= 4 else None,
                                               (g.group_type or None) if version >= 5 else None)
        return [out[g] for g in sorted(out)]

    def describe_group(self, group_id: str) -> GroupDescription:
        """One group, as Kafka's Admin.describeConsumerGroups finds it: ConsumerGroupDescribe
        when the coordinator serves it (a KIP-848 consumer group), else DescribeGroups. A group
        the coordinator does not know is state "Dead" with no members (older brokers answer
        that; GROUP_ID_NOT_FOUND from newer ones is read the same way)."""
        if ConsumerGroupDescribeRequest.API_KEY in self.connection(self.find_coordinator(group_id)).api_versions:
            described = self._describe_consumer_group(group_id)
            if described is not None:
                return described
        return self._describe_classic_group(group_id)

    def _describe_consumer_group(self, group_id: str) -> GroupDescription | None:
        """ConsumerGroupDescribe; None when the group is no consumer group (GROUP_ID_NOT_FOUND:
        unknown, or of another type), which DescribeGroups then answers."""
        resp = self._group_request(group_id, ConsumerGroupDescribeRequest(group_ids=[group_id]),
                                   lambda r: next((g.error_code for g in r.groups), 0))
        g = next((g for g in resp.groups if g.group_id == group_id), None)
        if g is None:
            raise error_for(Errors.UNKNOWN_SERVER_ERROR,
                            f"ConsumerGroupDescribe response has no group {group_id!r}")
        if g.error_code == Errors.GROUP_ID_NOT_FOUND:
            return None
        check(g.error_code, g.error_message or f"describe consumer group {group_id!r}")

        def partitions(assignment):
            return sorted((t.topic_name, p) for t in assignment.topic_partitions for p in t.partitions)
        members = [GroupMember(m.member_id, m.instance_id, m.client_id, m.client_host, b"", b"",
                               member_epoch=m.member_epoch, partitions=partitions(m.assignment),
                               target_partitions=partitions(m.target_assignment),
                               upgraded=_MEMBER_TYPES.get(getattr(m, "member_type", -1)))
                   for m in g.members]
        state = _CONSUMER_GROUP_STATES.get(g.group_state.lower(), g.group_state)
        return GroupDescription(g.group_id, state, "consumer", g.assignor_name, members,
                                self.coordinator(group_id), group_type="consumer",
                                group_epoch=g.group_epoch, target_assignment_epoch=g.assignment_epoch)

    def _describe_classic_group(self, group_id: str) -> GroupDescription:
        resp = self._group_request(group_id, DescribeGroupsRequest(groups=[group_id]),
                                   lambda r: next((g.error_code for g in r.groups), 0))
        g = next((g for g in resp.groups if g.group_id == group_id), None)
        if g is None:
            raise error_for(Errors.UNKNOWN_SERVER_ERROR, f"DescribeGroups response has no group {group_id!r}")
        coordinator = self.coordinator(group_id)
        if g.error_code == Errors.GROUP_ID_NOT_FOUND:
            return GroupDescription(group_id, "Dead", "", "", [], coordinator)
        check(g.error_code, f"describe group {group_id!r}")
        members = [GroupMember(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                               bytes(m.member_metadata), bytes(m.member_assignment))
                   for m in g.members]
        return GroupDescription(g.group_id, g.group_state, g.protocol_type, g.protocol_data,
                                members, coordinator)

    def committed_offsets(self, group_id: str, partitions=None) -> dict[tuple[str, int], int]:
        """OffsetFetch: {(topic, partition): committed offset} for the given
        (topic, partition)s, or for every partition the group committed when
        partitions is None (OffsetFetch v2+). Partitions without a committed
        offset are left out."""
        if partitions is None:
            topics = None
            conn = self.connection(self.find_coordinator(group_id))
            version = conn.version_for(OffsetFetchRequest.API_KEY)
            if version < 2:
                raise error_for(Errors.UNSUPPORTED_VERSION,
                                f"the coordinator of group {group_id!r} answers OffsetFetch "
                                f"v{version}; listing every committed partition needs v2")
        else:
            by_topic: dict[str, list[int]] = {}
            for topic, partition in partitions:
                by_topic.setdefault(topic, []).append(partition)
            topics = [OffsetFetchRequest.OffsetFetchRequestTopic(name=t, partition_indexes=ps)
                      for t, ps in by_topic.items()]

        def error_of(r):
            # v1 has no top-level error_code: coordinator errors come per partition.
            return r.error_code or next((p.error_code for t in r.topics for p in t.partitions
                                         if p.error_code in COORDINATOR_ERRORS), 0)

        resp = self._group_request(group_id, OffsetFetchRequest(group_id=group_id, topics=topics),
                                   error_of)
        check(resp.error_code, f"fetch committed offsets of group {group_id!r}")
        out = {}
        for t in resp.topics:
            for p in t.partitions:
                check(p.error_code, f"committed offset of group {group_id!r} for "
                                    f"{t.name}-{p.partition_index}")
                if p.committed_offset >= 0:
                    out[(t.name, p.partition_index)] = p.committed_offset
        return out

    def commit_offsets(self, group_id: str, offsets: dict, generation_id: int = -1,
                       member_id: str = "", metadata: str = "") -> None:
        """OffsetCommit {(topic, partition): offset} for the group. The
        defaults (generation -1, member id "") are the admin-client form,
        which a coordinator accepts only for a group without active members."""
        by_topic: dict[str, list] = {}
        for (topic, partition), offset in offsets.items():
            by_topic.setdefault(topic, []).append(OffsetCommitRequest.OffsetCommitRequestPartition(
                partition_index=partition, committed_offset=offset, committed_metadata=metadata))
        body = OffsetCommitRequest(
            group_id=group_id, generation_id_or_member_epoch=generation_id, member_id=member_id,
            topics=[OffsetCommitRequest.OffsetCommitRequestTopic(name=t, partitions=ps)
                    for t, ps in by_topic.items()])
        resp = self._group_request(group_id, body, lambda r: next(
            (p.error_code for t in r.topics for p in t.partitions
             if p.error_code in COORDINATOR_ERRORS), 0))
        for t in resp.topics:
            for p in t.partitions:
                check(p.error_code, f"commit offset of group {group_id!r} for "
                                    f"{t.name}-{p.partition_index}")

    def delete_groups(self, group_ids) -> dict[str, int]:
        """DeleteGroups, each group at its coordinator: {group id: error_code}
        (0 = deleted; NON_EMPTY_GROUP (68) while it has members,
        GROUP_ID_NOT_FOUND (69) for an unknown group)."""
        out = {}
        for group_id in ([group_ids] if isinstance(group_ids, str) else group_ids):
            resp = self._group_request(group_id, DeleteGroupsRequest(groups_names=[group_id]),
                                       lambda r: next((g.error_code for g in r.results), 0))
            out[group_id] = next((g.error_code for g in resp.results if g.group_id == group_id), -1)
        return out


def fetched_partitions(resp) -> dict[tuple[str, int], FetchedPartition]:
    return {(t.topic, p.partition_index): FetchedPartition(
        t.topic, p.partition_index, p.error_code, p.high_watermark, p.last_stable_offset,
        p.log_start_offset, p.records) for t in resp.responses for p in t.partitions}


def _only_partition(topics, parts_attr, topic, partition, index_attr):
    """The entry for (topic, partition) in a one-partition response."""
    for t in topics:
        if t.name == topic:
            for p in getattr(t, parts_attr):
                if getattr(p, index_attr) == partition:
                    return p
    raise error_for(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"response has no entry for {topic}-{partition}")
