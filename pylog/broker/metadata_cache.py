"""MetadataCache: this broker's copy of the cluster's metadata, as the
controller last sent it with UpdateMetadata (KAFKA-NOTES §4.5).

It holds the live brokers (id, rack and an endpoint per listener), the controller's id and
epoch, and every partition's state (leader, leader_epoch, replicas, isr,
offline_replicas, zk_version = partition_epoch). Metadata responses are built
from it once the broker is part of a cluster (`in_cluster`: an UpdateMetadata
arrived); until then the broker answers from its local single-broker view.

Invariants: controller_epoch never decreases (older requests are refused by
the handlers before they reach the cache); a partition state is replaced only
by one with a leader_epoch at least as new.

Listeners: `brokers` holds each live broker's endpoint on this broker's
inter-broker listener (replica fetchers and leaders' forwards use it);
`controller()` is the controller's control-plane endpoint (KIP-291: broker
-> controller requests go there, as Kafka's BrokerToControllerChannelManager
does); `nodes(listener)` / `node(id, listener)` answer clients with the
endpoints of the listener their request came in on (Kafka's
getAliveBrokerNodes): a broker without that listener is left out.

Not thread-safe: the broker's event loop owns it.
"""
from __future__ import annotations

import uuid

from ..protocol.pylog_tags import broker_configs_of, group_configs_of, topic_configs_of

_ZERO_UUID = uuid.UUID(int=0)


class BrokerEndpoint:
    """Immutable once made: any thread."""

    __slots__ = ("host", "id", "port", "rack")

    def __init__(self, broker_id: int, host: str, port: int, rack: str | None = None):
        self.id = broker_id
        self.host = host
        self.port = port
        self.rack = rack

    def __repr__(self):
        return f"BrokerEndpoint({self.id}, {self.host}:{self.port}, rack={self.rack})"


class PartitionState:
    """Threads: the broker's event loop only (inside the MetadataCache)."""

    __slots__ = ("isr", "leader", "leader_epoch", "offline_replicas", "partition_epoch", "replicas")

    def __init__(self, leader, leader_epoch, replicas, isr, offline_replicas=(), partition_epoch=0):
        self.leader = leader
        self.leader_epoch = leader_epoch
        self.replicas = list(replicas)
        self.isr = list(isr)
        self.offline_replicas = list(offline_replicas)
        self.partition_epoch = partition_epoch


class MetadataCache:
    """Threads: the broker's event loop only; other threads (the embedded
    controller's) reach it through requests the loop applies.
    """

    def __init__(self, inter_broker_listener: str = "PLAINTEXT", control_plane_listener: str | None = None):
        self.inter_broker_listener = inter_broker_listener
        self.control_plane_listener = control_plane_listener or inter_broker_listener
        # broker id -> {listener name -> BrokerEndpoint}
        self.listeners: dict[int, dict[str, BrokerEndpoint]] = {}
        self.in_cluster = False
        self.controller_id = -1
        self.controller_epoch = -1
        self.brokers: dict[int, BrokerEndpoint] = {}
        # The rack of every broker ever live here, kept after it goes: Kafka's
        # cluster image keeps a stopped (fenced) broker's registration, so the
        # racks in a group's metadata hash (partitionRacks) do not move when a
        # replica's broker restarts.
        self.broker_racks: dict[int, str | None] = {}
        # Moves at every update: what the group coordinators' topic hashes were computed at.
        self.version = 0
        # topic -> {partition index -> PartitionState}
        self.topics: dict[str, dict[int, PartitionState]] = {}
        self.topic_ids: dict[str, uuid.UUID] = {}
        self._by_id: dict[uuid.UUID, str] | None = None   # topic_ids inverted, built on demand
        # Config overrides of every topic (the controller's, in UpdateMetadata):
        # DescribeConfigs answers from here on brokers without a replica.
        self.topic_configs: dict[str, dict[str, str]] = {}
        # Every group's config overrides (KIP-848 GROUP resources), complete in each UpdateMetadata.
        self.group_configs: dict[str, dict[str, str]] = {}
        # Dynamic broker configs ("" the cluster default, else a broker id), complete in each UpdateMetadata.
        self.broker_configs: dict[str, dict[str, str]] = {}
        # Leaders named in LeaderAndIsr (live_leaders): how a follower finds
        # its leader even before the UpdateMetadata that lists it arrives.
        self.leader_endpoints: dict[int, BrokerEndpoint] = {}

    def update(self, req) -> list[str]:
        """Apply an UpdateMetadata request (v5+: topic_states grouping).
        Returns the topics it removed (known before, every partition now
        LeaderDuringDelete): the ones the controller is deleting."""
        self.in_cluster = True
        self.version += 1
        self.controller_id = req.controller_id
        self.controller_epoch = max(self.controller_epoch, req.controller_epoch)
        brokers, listeners = {}, {}
        for b in req.live_brokers:
            eps = {ep.listener.upper(): BrokerEndpoint(b.id, ep.host, ep.port, b.rack) for ep in b.endpoints}
            if not eps:
                eps = {"PLAINTEXT": BrokerEndpoint(b.id, b.v0_host, b.v0_port, b.rack)}
            listeners[b.id] = eps
            # A broker registered without this broker's inter-broker listener
            # (a mixed configuration) is still reached, at its first endpoint.
            brokers[b.id] = eps.get(self.inter_broker_listener) or next(iter(eps.values()))
            self.broker_racks[b.id] = b.rack
        self.brokers = brokers
        self.listeners = listeners
        group_configs = group_configs_of(req)
        if group_configs is not None:
            self.group_configs = group_configs
        broker_configs = broker_configs_of(req)
        if broker_configs is not None:
            self.broker_configs = broker_configs
        removed = []
        for ts in req.topic_states:
            known = ts.topic_name in self.topics
            tid = getattr(ts, "topic_id", None)
            if tid is not None and tid.int != 0:
                old = self.topic_ids.get(ts.topic_name)
                if old is not None and old != tid:
                    # Deleted and re-created (this broker missed the deletion):
                    # the new topic's epochs start again, so the old topic's
                    # partition states must not outrank them.
                    self.topics.pop(ts.topic_name, None)
                self.topic_ids[ts.topic_name] = tid
                self._by_id = None
            parts = self.topics.setdefault(ts.topic_name, {})
            configs = topic_configs_of(ts)
            if configs is not None:
                self.topic_configs[ts.topic_name] = configs
            for ps in ts.partition_states:
                if ps.leader == -2:
                    # LeaderDuringDelete: the topic is being deleted.
                    parts.pop(ps.partition_index, None)
                    continue
                cur = parts.get(ps.partition_index)
                if cur is not None and ps.leader_epoch < cur.leader_epoch:
                    continue
                parts[ps.partition_index] = PartitionState(ps.leader, ps.leader_epoch, ps.replicas, ps.isr,
                                                           ps.offline_replicas, ps.zk_version)
            if not parts:
                del self.topics[ts.topic_name]
                self.topic_ids.pop(ts.topic_name, None)
                self._by_id = None
                self.topic_configs.pop(ts.topic_name, None)
                if known:
                    removed.append(ts.topic_name)
        return removed

    def note_live_leaders(self, live_leaders) -> None:
        for ll in live_leaders:
            self.leader_endpoints[ll.broker_id] = BrokerEndpoint(ll.broker_id, ll.host_name, ll.port)

    def endpoint(self, broker_id: int) -> BrokerEndpoint | None:
        return self.brokers.get(broker_id) or self.leader_endpoints.get(broker_id)

    def controller(self) -> BrokerEndpoint | None:
        if self.controller_id < 0:
            return None
        return self.listeners.get(self.controller_id, {}).get(self.control_plane_listener) or \
            self.brokers.get(self.controller_id)

    def node(self, broker_id: int, listener: str | None) -> BrokerEndpoint | None:
        """broker_id's endpoint on listener (None: the inter-broker one); None
        when it is not live or has no such listener."""
        if listener is None:
            return self.brokers.get(broker_id)
        return self.listeners.get(broker_id, {}).get(listener)

    def nodes(self, listener: str | None) -> list[BrokerEndpoint]:
        """Every live broker's endpoint on listener, by id; brokers without it left out."""
        if listener is None:
            return [e for _id, e in sorted(self.brokers.items())]
        return [eps[listener] for _id, eps in sorted(self.listeners.items()) if listener in eps]

    def partition(self, topic: str, index: int) -> PartitionState | None:
        return self.topics.get(topic, {}).get(index)

    def has_partition(self, topic: str, index: int) -> bool:
        """Whether the cluster has topic-index (Kafka's MetadataCache.contains):
        a replica not hosted here answers NOT_LEADER_OR_FOLLOWER then, not
        UNKNOWN_TOPIC_OR_PARTITION."""
        return index in self.topics.get(topic, ())

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        """The topic whose id is topic_id (Metadata v12 lookups by id), or None."""
        return self._names_by_id().get(topic_id)

    def _names_by_id(self) -> dict:
        # Rebuilt only after topic_ids changed (update); lookups by id are rare.
        if self._by_id is None:
            self._by_id = {tid: name for name, tid in self.topic_ids.items()}
        return self._by_id

    def topic_id(self, topic: str) -> uuid.UUID:
        # The zero id when the controller sent none (UpdateMetadata < v7).
        return self.topic_ids.get(topic, _ZERO_UUID)
