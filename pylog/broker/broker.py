"""The broker: configuration, the LogManager, the request handlers, the server
and the background tasks, started and stopped together.

Every broker is part of a cluster with one control plane: topics are
created, deleted, altered and reassigned by a Controller (pylog/cluster/
controller.py), which drives the brokers with LeaderAndIsr / UpdateMetadata /
StopReplica; the ReplicaManager (replication.py) applies them and Metadata is
answered from the MetadataCache. A broker started with neither
zookeeper.connect nor pylog.controller.id is a one-node cluster (Kafka's KRaft
combined mode): it keeps the metadata in <data dir>/pylog-cluster like the
embedded controller, runs the Controller in this process, and the controller
reaches this broker without a socket (InProcessBrokerChannel). Such a broker
neither serves nor advertises the inter-broker APIs on its listener.

Use `await Broker(config).start()` inside a running loop, `Broker.run()` for a
process (SIGTERM / Ctrl-C stop it cleanly), or `start_in_thread()` for an
in-process broker on its own loop thread (tests, pylog.testing).

Threads: everything except start_in_thread/stop_in_thread/call/create_topic
runs on the broker's loop; those four may be called from any other thread.
Controller work (store writes that fsync) runs on the controller's event
thread or a worker thread, never on the loop.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import resource
import signal
import threading
import time

from .. import _engine
from ..errors import InvalidConfigError, PylogError
from ..groups.api import GroupApis
from ..groups.coordinator import GroupCoordinator
from ..log.checkpoint import atomic_write
from ..metrics.broker import BrokerMetrics
from ..protocol.error_codes import Errors
from ..transactions.api import TransactionApis
from ..transactions.channel import MarkerChannel, TxnPartitionWriter
from ..transactions.coordinator import TransactionCoordinator
from . import api_versions as av
from . import authz_guard
from .acl_apis import AclApis
from .authorizer import Authorizer
from .config import BrokerConfig
from .controller_apis import ControllerApis
from .coordinator_writer import BrokerPartitionWriter
from .handlers import Handlers
from .log_cleaner import LogCleaner
from .log_manager import LogManager
from .metadata_cache import MetadataCache
from .producer_ids import PRODUCER_ID_BLOCK, PRODUCER_ID_FILE, ProducerIdBlocks
from .log_dirs_api import LogDirsApi
from .client_quotas import ClientQuotas, refresh as refresh_quotas
from .connection_quotas import ConnectionQuotas
from .quota_apis import QuotaApis, load_table
from .sasl import SaslApis, inter_broker_credentials, listener_credentials, listener_settings
from .scram_apis import ScramApis
from .quotas import ControllerMutationQuotas
from .replication import ReplicaManager
from .server import Server

log = logging.getLogger("pylog.broker")

# How long a starting broker waits to be registered with the embedded controller.
REGISTRATION_WAIT_S = 30.0
FLUSH_CHECK_S = 0.1
# Where a one-node cluster (and the embedded controller) keeps the metadata.
CLUSTER_DIR = "pylog-cluster"
# Kafka's ZooKeeper-era default for controlled.shutdown.max.retries is 3, each
# bounded by the request timeout; a stopping broker spends at most this on it,
# so a controller that is gone or stalled never holds up its exit for long.
CONTROLLED_SHUTDOWN_BUDGET_S = 20.0


class Broker:
    """Threads: the broker's event loop, except start_in_thread,
    stop_in_thread, call and create_topic, which any other thread may call
    (they hand work to the loop); see the module docstring.
    """

    def __init__(self, config: BrokerConfig | dict | None = None, data_dir: str | None = None, *,
                 listen: bool = True):
        """listen=False: a broker core without a listener (pylog's embedded
        store, pylog/embedded/store.py): the same logs, controller, handlers,
        coordinators and background tasks, reached only in-process. It leaves
        the process's open-file limit alone (the host program's, as Log.open
        does)."""
        self.listen = listen
        self.config = config if isinstance(config, BrokerConfig) else BrokerConfig(config or {})
        self.broker_id = self.config.broker_id
        self.log_manager = LogManager(self.config, data_dir)
        self.metadata_cache = MetadataCache(self.config.inter_broker_listener_name(),
                                            self.config.control_plane_listener_name())
        self.replica_manager = None
        self.log_cleaner = None
        self.handlers = None
        self.groups = None
        self.share = None
        self.transactions = None      # the transaction coordinator (pylog/transactions)
        self.server = None
        self.console = None  # the web console, with pylog.console.listener
        self.metrics = None           # a pylog.metrics.broker.BrokerMetrics with pylog.metrics.listener
        self.host, self.port = self.config.listener()
        self.advertised_host, self.advertised_port = self.host, self.port
        # (name, host, port) of every listener as bound (ports chosen), and as
        # advertised to clients and registered with the controller.
        self.bound_listeners: list[tuple[str, str, int]] = []
        self.endpoints: tuple = ()
        self.stopping = False
        self._tasks = []
        self._pid_next = 0
        self._pid_limit = 0
        self._pid_blocks = None       # in a cluster: claims a block of ids, returns (start, count)
        self._own_pid_blocks = None   # the data dir's own blocks (ProducerIdBlocks), before joining
        self._pid_lock = asyncio.Lock()
        self._loop = None
        self._thread = None
        self._stopped = None
        self.controller = None        # a pylog.cluster.controller.Controller on brokers that may control
        self.metadata_store = None    # ZooKeeper, or the embedded controller's LocalMetadataStore
        self.broker_registry = None   # on the embedded controller: the other brokers' registrations
        self.controller_client = None  # on the embedded controller's other brokers: registration, heartbeats
        self.local_channel = None     # how this broker's own Controller reaches it (InProcessBrokerChannel)
        # KIP-599, enforced where topics change: on the active controller.
        self.mutation_quotas = ControllerMutationQuotas(
            self.config, lambda: self.metadata_store.client_quotas() if self.metadata_store is not None else {})
        # Client quotas and connection limits, enforced by every broker on
        # the quota table refresh_quotas keeps (broker/client_quotas.py).
        self.client_quotas = ClientQuotas(self.config)
        self.connection_quotas = ConnectionQuotas(self.config, [ln.name for ln in self.config.listeners()],
                                                  self.config.inter_broker_listener_name())
        self.quotas_changed = None    # an asyncio.Event on the loop: set when this broker altered quotas
        self._too_few_warned = 0.0    # monotonic time of the last "too few brokers" warning
        # ACLs (authorizer.class.name): None means no check anywhere.
        self.authorizer = Authorizer.from_config(self.config) if self.config.authorizer_enabled() else None
        # What this broker authenticates with on other brokers' inter-broker
        # listener (replica fetchers, controller channels), None without SASL.
        self.inter_broker_sasl = inter_broker_credentials(self.config)
        self._refuse_scram_without_store()

    def _refuse_scram_without_store(self):
        """SCRAM credentials are read from the metadata store at each
        authentication; a broker of the embedded controller that is not the
        controller has no store (its metadata comes over the wire, without
        credentials), so it could never accept a SCRAM client: refused."""
        cfg = self.config
        if cfg.get("zookeeper.connect") or cfg.get("pylog.controller.id") in (None, self.broker_id):
            return
        for settings in listener_settings(cfg).values():
            scram = [x for x in settings.mechanisms if x.startswith("SCRAM-")]
            if scram:
                raise InvalidConfigError(
                    f"listener {settings.listener} enables {','.join(scram)}: SCRAM on a broker of the embedded "
                    f"controller that is not the controller (pylog.controller.id) is not built (its credentials "
                    f"live in the controller's store); use ZooKeeper, PLAIN, or enable SCRAM on the controller only")

    # Every broker is in a cluster (a lone one is a one-node cluster): topics,
    # leaders and replicas are the controller's. Kept as an attribute for the
    # group coordinator, which reads it.
    in_cluster = True

    @property
    def lone(self) -> bool:
        """A one-node cluster whose controller runs in this process (neither
        zookeeper.connect nor pylog.controller.id set)."""
        return not self.config.get("zookeeper.connect") and self.config.get("pylog.controller.id") is None

    def broker_epoch(self) -> int:
        """This broker's current epoch (KIP-380), -1 while not registered: the
        czxid of its ZooKeeper registration, or what the embedded controller
        gave it (the controller broker's own from its store)."""
        if self.controller_client is not None:
            return self.controller_client.broker_epoch
        if self.metadata_store is not None:
            return self.metadata_store.registered_broker_epoch()
        return -1

    @property
    def data_dir(self) -> str:
        return self.log_manager.data_dir

    @property
    def bootstrap(self) -> str:
        return f"{self.advertised_host}:{self.advertised_port}"

    # ---- producer ids: handed out in blocks reserved on disk first, so none
    # is ever reused after a restart or crash ----

    def next_producer_id(self) -> int:
        """The next id from this data directory's own blocks (before joining
        its cluster; the embedded store uses the same ProducerIdBlocks); a
        broker in a cluster uses allocate_producer_id."""
        if self._own_pid_blocks is None:
            self._own_pid_blocks = ProducerIdBlocks(self.data_dir)
        return self._own_pid_blocks.next_id()

    async def allocate_producer_id(self) -> int:
        """The next producer id. In a cluster the blocks come from the cluster
        (Kafka's /latest_producer_id_block, or the embedded controller), so two
        brokers never hand out the same id: a shared id would make one
        producer's batches look like duplicates of another's to a leader."""
        if self._pid_blocks is None:
            return self.next_producer_id()
        async with self._pid_lock:
            if self._pid_next >= self._pid_limit:
                start, count = await asyncio.get_running_loop().run_in_executor(
                    None, self._pid_blocks, PRODUCER_ID_BLOCK)
                self._pid_next, self._pid_limit = start, start + count
            pid = self._pid_next
            self._pid_next += 1
            return pid

    # ---- lifecycle on a running loop ----

    async def start(self):
        t0 = time.monotonic()
        self._loop = asyncio.get_running_loop()
        if self.listen:
            soft, hard = raise_nofile_limit()
            _engine.set_open_segment_limit()  # its share of the (raised) limit
            log.info("open files: limit %d (hard %d); at most %d segments open at once",
                     soft, hard, _engine.open_segments()[1])
        # The data dir's file work (meta.properties written and fsync'd, every
        # log opened) on a worker thread: nothing else on this loop (another
        # broker's, an embedding application's) waits on the disk meanwhile,
        # and nothing here touches the LogManager until it is done.
        await self._loop.run_in_executor(None, self.log_manager.open)
        self.log_cleaner = LogCleaner(self.config, self.log_manager, self._submit_to_loop)
        self.log_manager.cleaner = self.log_cleaner
        self.log_cleaner.start()
        self.replica_manager = ReplicaManager(self, self.metadata_cache)
        self.handlers = Handlers(self)
        self.coordinator_writer = BrokerPartitionWriter(self.log_manager, self, self.handlers.purgatory)
        self.groups = GroupCoordinator(self.config, self.coordinator_writer)
        group_apis = GroupApis(self.groups, self._endpoint_on)
        self.handlers.table.update(group_apis.table())
        from ..share.api import ShareApis   # here: pylog.share uses the broker package's purgatory
        self.share = ShareApis(self, self.groups, self.coordinator_writer, self.handlers.purgatory)
        self.handlers.table.update(self.share.table())
        self.handlers.table.update(self.share.persister_apis.table())
        group_apis.share_lookup = self.share.coordinator.coordinator_for
        self.txn_writer = TxnPartitionWriter(self.log_manager, self, self.handlers.purgatory)
        self.transactions = TransactionCoordinator(self.config, self.txn_writer)
        self.transactions.markers = MarkerChannel(self, self.transactions.is_current)
        self.transaction_apis = TransactionApis(self.transactions, self.groups, self.allocate_producer_id,
                                                dict(self.handlers.table))
        self.handlers.table.update(self.transaction_apis.table())
        self.handlers.table.update(ControllerApis(self).table())
        self.handlers.table.update(QuotaApis(self).table())
        self.handlers.table.update(SaslApis().table())
        self.handlers.table.update(ScramApis(self).table())
        self.handlers.table.update(LogDirsApi(self).table())
        self.acl_apis = AclApis(self)
        self.handlers.table.update(self.acl_apis.table())
        if self.lone:
            # A lone broker's controller reaches it in-process only: like a
            # listener that does not enable them in Kafka, its listener neither
            # advertises these nor answers them (the connection is closed), so
            # no client can delete its logs, rewrite its metadata or move its
            # leadership. WriteTxnMarkers stays: an admin on the broker's own
            # host aborts a hanging transaction with it (txn_partition_apis).
            for key in av.INTER_BROKER_APIS - {av.WRITE_TXN_MARKERS}:
                self.handlers.table.pop(key, None)
        if self.authorizer is not None:
            authz_guard.install(self.handlers.table, self.authorizer)
        self.groups.start()
        self.share.start()
        self.transactions.start()
        if self.config.get("pylog.metrics.listener") is not None:
            self.metrics = BrokerMetrics(self)   # before any connection: every request is timed
        if self.listen:
            self.server = Server(self)
        await self.acl_apis.preload()
        await self._bind_listeners()
        self.replica_manager.start()
        if self.config.get("zookeeper.connect"):
            await self._join_cluster()
        elif self.config.get("pylog.controller.id") is not None:
            await self._join_embedded_cluster()
        else:
            await self._join_as_one_node_cluster()
        await self.acl_apis.start()
        self._tasks.append(asyncio.ensure_future(self._housekeeping()))
        self._tasks.append(asyncio.ensure_future(self._flusher()))
        self.quotas_changed = asyncio.Event()
        self._tasks.append(asyncio.ensure_future(refresh_quotas(
            self, lambda: load_table(self), (self.client_quotas, self.connection_quotas))))
        if self.config.get("pylog.console.listener"):
            from ..console.server import start_broker_console
            try:
                self.console = await start_broker_console(self.config.get("pylog.console.listener"),
                                                          self.bootstrap)
            except BaseException:
                await self.stop()  # a broker that cannot serve what it was told to does not start
                raise
        if self.metrics is not None:
            self.metrics.start()
        log.info("broker %d %s with data in %s, started in %.0f ms", self.broker_id,
                 "listening on %s (advertised %s)" % (
                     ",".join(f"{n}://{h}:{p}" for n, h, p in self.bound_listeners),
                     ",".join(f"{n}://{h}:{p}" for n, h, p in self.endpoints)) if self.listen
                 else "without a listener", self.data_dir, (time.monotonic() - t0) * 1000)
        return self

    async def _bind_listeners(self):
        """Bind every listener (none when listen is False), then work out what is advertised. With one
        listener it serves everything; with several, only the inter-broker and
        control-plane listeners serve the inter-broker APIs (a client
        listener neither advertises nor answers them)."""
        cfg = self.config
        listeners = cfg.listeners()
        roles = {cfg.inter_broker_listener_name(), cfg.control_plane_listener_name()}
        if self.listen:
            ports = await self.server.start([(ln.name, ln.host, ln.port, len(listeners) == 1 or ln.name in roles)
                                             for ln in listeners])
        else:
            ports = [ln.port for ln in listeners]   # nothing bound: what the config names
        self.bound_listeners = [(ln.name, ln.host, port) for ln, port in zip(listeners, ports)]
        self.host, self.port = self.bound_listeners[0][1], self.bound_listeners[0][2]
        bound = {name: (host, port) for name, host, port in self.bound_listeners}
        endpoints = []
        for ln in cfg.advertised_listeners():
            host, port = ln.host, ln.port or bound[ln.name][1]   # port 0: the one bound
            if host in ("", "0.0.0.0", "::"):
                host = _default_host()
            endpoints.append((ln.name, host, port))
        self.endpoints = tuple(endpoints)
        self.advertised_host, self.advertised_port = endpoints[0][1], endpoints[0][2]

    def advertised_endpoint(self, listener: str | None) -> tuple[str, int] | None:
        """This broker's advertised host, port on listener (None: the first)."""
        for name, host, port in self.endpoints:
            if listener is None or name == listener:
                return host, port
        return None

    def _endpoint_on(self, broker_id: int, listener: str) -> tuple[str, int] | None:
        """broker_id's endpoint on listener, from the metadata cache (this
        broker's own before the first UpdateMetadata)."""
        ep = self.metadata_cache.node(broker_id, listener)
        if ep is not None:
            return ep.host, ep.port
        if broker_id == self.broker_id and not self.metadata_cache.brokers:
            return self.advertised_endpoint(listener)
        return None

    def _broker_info(self):
        from ..cluster.metadata_store import BrokerInfo
        protocols = self.config.security_protocol_map()
        return BrokerInfo(self.broker_id, self.advertised_host, self.advertised_port, self.config.get("broker.rack"),
                          endpoints=self.endpoints,
                          protocols=tuple((name, protocols.get(name, "PLAINTEXT")) for name, _h, _p in self.endpoints))

    # ---- cluster membership (zookeeper.connect set) ----

    async def _join_cluster(self):
        """Register in ZooKeeper (an ephemeral /brokers/ids/<id>) and run a
        Controller, which campaigns for /controller: whichever broker gets it
        drives the cluster, the others stand by (Kafka's ZooKeeper mode).
        Registration comes after the listener is up, since the controller
        starts sending LeaderAndIsr/UpdateMetadata as soon as it sees us."""
        from ..cluster.zk_store import ZkMetadataStore
        loop = asyncio.get_running_loop()
        cfg = self.config
        store = await loop.run_in_executor(None, lambda: ZkMetadataStore(
            cfg.get("zookeeper.connect"), session_timeout_ms=cfg.get("zookeeper.session.timeout.ms")))
        await self._register_in(store, self._broker_info())
        await self._start_controller(store)

    async def _join_embedded_cluster(self):
        """Without ZooKeeper: the broker whose id is pylog.controller.id keeps
        the cluster's metadata in <data dir>/pylog-cluster and runs the only
        Controller; every other broker registers with it over the wire and
        heartbeats (BrokerRegistration/BrokerHeartbeat). Not highly available:
        while the controller broker is down, leaders do not move and topics
        cannot be created, though the partitions keep serving."""
        from ..cluster.controller_client import ControllerClient
        from ..cluster.local_store import LocalMetadataStore
        from ..cluster.registry import BrokerRegistry
        loop = asyncio.get_running_loop()
        cfg = self.config
        info = self._broker_info()
        if cfg.get("pylog.controller.id") != self.broker_id:
            listener = cfg.get("pylog.controller.listener")
            if not listener:
                raise ValueError("pylog.controller.listener (host:port of the controller broker) must be set "
                                 "on every broker but the controller")
            client = ControllerClient(listener, info, cfg.get("broker.heartbeat.interval.ms"),
                                      ssl_context=cfg.inter_broker_tls(), sasl=self.inter_broker_sasl)
            self.controller_client = client
            self._pid_blocks = client.allocate_producer_ids
            client.start()
            # Like a KRaft broker, start serving once registered (the cluster's
            # id is then known and the controller can send LeaderAndIsr); a
            # controller that is down only delays this, up to the limit below.
            adopt = asyncio.ensure_future(self._adopt_cluster_id(client))
            try:
                await asyncio.wait_for(asyncio.shield(adopt), REGISTRATION_WAIT_S)
            except asyncio.TimeoutError:
                log.warning("broker %d: not registered with the controller at %s after %.0f s; serving "
                            "meanwhile, registering in the background", self.broker_id, listener,
                            REGISTRATION_WAIT_S)
                self._tasks.append(adopt)
            return
        path = os.path.join(self.data_dir, "pylog-cluster")
        store = await loop.run_in_executor(None, LocalMetadataStore, path)
        await self._register_in(store, info)
        self.broker_registry = BrokerRegistry(store.path, cfg.get("broker.session.timeout.ms")).start()
        await self._start_controller(store)

    async def _join_as_one_node_cluster(self):
        """A lone broker: the embedded controller's metadata store in its own
        data dir, this broker registered in it, and the Controller running
        here. Topics this data dir holds that the store does not know (a data
        dir written before the store existed: pylog-topics.json, partition
        directories written by pylog's embedded producer) are adopted into it
        first (pylog/cluster/migration.py). Start-up waits until the
        controller has made this broker the leader of every partition, so the
        first request after start is served as before a restart."""
        from ..cluster.local_store import LocalMetadataStore
        from ..cluster.migration import adopt_local_data
        loop = asyncio.get_running_loop()
        path = os.path.join(self.data_dir, CLUSTER_DIR)
        local = self.log_manager.local_topics()
        info = self._broker_info()
        pid_file = os.path.join(self.data_dir, PRODUCER_ID_FILE)
        cluster_id = self.log_manager.cluster_id

        def open_store():
            # One trip to a worker thread and one store batch (each file
            # written and fsync'd once) for everything before the controller
            # runs: the migration, the registration, and the election, which
            # the controller then finds already won by its own session.
            store = LocalMetadataStore(path)
            try:
                with store.batch():
                    adopt_local_data(store, local, self.broker_id, cluster_id, pid_file)
                    store.register_broker(info)
                    store.elect_controller(self.broker_id)
                    return store, store.cluster_id()
            except BaseException:
                store.close()
                raise

        store, cluster_id = await loop.run_in_executor(None, open_store)
        self._joined(store, cluster_id)
        # No disk or network in its start (the store is in memory): on the loop.
        await self._start_controller(store, start_on_loop=True)
        await asyncio.wrap_future(self.controller.barrier())
        await self.local_channel.drain()

    async def _register_in(self, store, info):
        """Join the cluster through its metadata store: its cluster id (not the
        one this data directory got when it first ran alone), this broker's
        registration, and producer ids from the cluster's blocks from now on."""
        loop = asyncio.get_running_loop()
        cluster_id = await loop.run_in_executor(None, store.cluster_id)
        await loop.run_in_executor(None, store.register_broker, info)
        self._joined(store, cluster_id)

    def _joined(self, store, cluster_id: str) -> None:
        self.metadata_store = store
        self.log_manager.cluster_id = cluster_id
        self._pid_blocks = lambda n: (self._claim_producer_ids(store, n), n)
        self._pid_limit = 0

    def _claim_producer_ids(self, store, n: int) -> int:
        """A block from the cluster (on a worker thread). On a lone broker the
        data dir's pylog-producer-ids is moved past it too: pylog's embedded
        store, which may open this directory later, hands out ids from that
        file and must never repeat one the broker gave."""
        start = store.next_producer_id_block(n)
        if self.lone:
            atomic_write(os.path.join(self.data_dir, PRODUCER_ID_FILE), str(start + n).encode())
        return start

    async def _start_controller(self, store, start_on_loop: bool = False):
        from ..cluster.controller import Controller, InProcessBrokerChannel, WireBrokerChannel
        cfg = self.config
        # This broker is reached in-process; the others (none when lone) over the wire.
        self.local_channel = InProcessBrokerChannel(self.broker_id, asyncio.get_running_loop(),
                                                    self._apply_from_controller,
                                                    None if self.lone else WireBrokerChannel(
                                                        listener=cfg.control_plane_listener_name(),
                                                        ssl_context=cfg.client_tls(
                                                            cfg.control_plane_listener_name()),
                                                        sasl=listener_credentials(
                                                            cfg, cfg.control_plane_listener_name())))
        self.local_channel.start()
        self.controller = Controller(
            self.broker_id, store, self.local_channel,
            unclean_leader_election_enable=cfg.get("unclean.leader.election.enable"),
            # One broker leads everything already: no imbalance to check for.
            auto_leader_rebalance_enable=cfg.get("auto.leader.rebalance.enable") and not self.lone,
            leader_imbalance_check_interval_seconds=cfg.get("leader.imbalance.check.interval.seconds"),
            inter_broker_listener=cfg.inter_broker_listener_name())
        if start_on_loop:
            self.controller.start()
        else:   # its watches are set over the network (ZooKeeper)
            await asyncio.get_running_loop().run_in_executor(None, self.controller.start)

    async def _apply_from_controller(self, req):
        """A controller request from this process's own Controller (on the
        loop): the same handler, admission (broker and controller epochs,
        KIP-380) included, as one that came over the wire."""
        from ..protocol import messages as m
        h = self.handlers
        fn = {m.LeaderAndIsrRequest: h.leader_and_isr, m.UpdateMetadataRequest: h.update_metadata,
              m.StopReplicaRequest: h.stop_replica}[type(req)]
        resp = fn(None, req)
        if asyncio.iscoroutine(resp):
            resp = await resp
        return resp

    # ---- topics through the controller (the only way topics change) ----

    async def create_topic_async(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                                 assignment: dict | None = None, configs: dict | None = None,
                                 validate_only: bool = False) -> tuple[int, str | None]:
        """Ask the active controller to create a topic (the one in this process
        directly, another one with CreateTopics on a worker thread); (error
        code, message). Once created by this process's controller, this
        broker has applied the new state before the answer."""
        n = num_partitions if num_partitions != -1 else self.config.get("num.partitions")
        rf = replication_factor if replication_factor != -1 else self.config.get("default.replication.factor")
        ctl = self.controller
        if ctl is not None and ctl.is_active:
            try:
                await asyncio.wrap_future(ctl.submit("create_topic", name, n, rf, assignment, configs, validate_only))
                code, msg = 0, None
            except PylogError as e:
                code, msg = e.error_code, str(e)
            await self.settled()
            return code, msg
        ep = self.metadata_cache.controller()
        if ep is None:
            return Errors.NOT_CONTROLLER, "no controller is known"
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, _create_topic_by_wire, ep.host, ep.port, self.broker_id, name, n, rf, configs or {},
                self.config.inter_broker_tls(), self.inter_broker_sasl)
        except Exception as e:  # the controller unreachable: the caller's client asks again
            log.warning("broker %d: asking controller %d to create %s failed: %s", self.broker_id, ep.id, name, e)
            return Errors.NOT_CONTROLLER, f"the controller cannot be reached: {e}"

    async def settled(self):
        """Wait until every request this process's own controller has sent to
        this broker so far was applied (nothing to wait for otherwise)."""
        if self.local_channel is not None:
            await self.local_channel.drain()

    def create_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                     configs: dict | None = None) -> None:
        """create_topic_async from another thread (tests, tools); raises the
        error the controller answered with."""
        code, msg = asyncio.run_coroutine_threadsafe(
            self.create_topic_async(name, num_partitions, replication_factor, None, configs), self._loop).result(60)
        if code:
            raise PylogError(f"creating topic {name} failed with error {code}: {msg}")

    async def ensure_internal_topic(self, name: str) -> int:
        """The one place internal topics are created (the group coordinator's
        __consumer_offsets; Metadata asking for it). Kafka's rule
        (DefaultAutoTopicCreationManager): with fewer live brokers than the
        topic's replication factor nothing is created and the answer is
        COORDINATOR_NOT_AVAILABLE, which clients retry. Returns 0 once the
        topic exists (or was created), else an error code."""
        cfg = self.config
        if name == OFFSETS_TOPIC:
            prefix, configs = "offsets.topic", self.groups.offsets_topic_configs()
        elif name == TRANSACTION_TOPIC:
            prefix, configs = "transaction.state.log", self.transactions.topic_configs()
        elif name == SHARE_STATE_TOPIC:
            prefix, configs = "share.coordinator.state.topic", self.share.coordinator.topic_configs()
        else:
            raise ValueError(f"{name} is not an internal topic this broker creates")
        n, rf = cfg.get(f"{prefix}.num.partitions"), cfg.get(f"{prefix}.replication.factor")
        if name in self.metadata_cache.topics:
            return 0
        live = len(self.metadata_cache.brokers)
        if live < rf:
            if time.monotonic() - self._too_few_warned > 10:
                self._too_few_warned = time.monotonic()
                log.warning("broker %d: %s not created: %d live brokers, %s.replication.factor=%d",
                            self.broker_id, name, live, prefix, rf)
            return Errors.COORDINATOR_NOT_AVAILABLE
        code, msg = await self.create_topic_async(name, n, rf, None, configs)
        if code == Errors.TOPIC_ALREADY_EXISTS:
            return 0
        if code:
            log.warning("broker %d: the controller refused to create %s: error %d (%s)", self.broker_id, name,
                        code, msg)
        else:
            log.info("broker %d: %s created (%d partitions, replication factor %d)", self.broker_id, name, n, rf)
        return code

    async def _adopt_cluster_id(self, client):
        while not client.registered.is_set():
            await asyncio.sleep(0.05)
        if client.cluster_id:
            self.log_manager.cluster_id = client.cluster_id

    async def _leave_cluster(self):
        """Controlled shutdown (leadership moved off this broker first, so
        clients see a new leader at once instead of after a session timeout),
        then stop the controller and close the ZooKeeper session, which
        removes the registration. A lone broker has nobody to hand over to."""
        loop = asyncio.get_running_loop()
        if self.config.get("controlled.shutdown.enable") and not self.lone:
            try:
                await loop.run_in_executor(None, self._controlled_shutdown)
            except Exception as e:  # the shutdown goes on: the controller will notice the session end
                log.warning("controlled shutdown failed: %s", e)
        if self.controller_client is not None:
            await loop.run_in_executor(None, self.controller_client.stop)
        if self.controller is not None:
            await loop.run_in_executor(None, self.controller.stop)
        if self.broker_registry is not None:
            await loop.run_in_executor(None, self.broker_registry.stop)
        if self.metadata_store is not None:
            await loop.run_in_executor(None, self.metadata_store.close)

    def _controlled_shutdown(self, attempts: int = 3, backoff_s: float = 0.5) -> None:
        """ControlledShutdown (7) v2 to the active controller, until it reports
        no partition left led by this broker (Kafka retries 3 times)."""
        from ..client.wire import Connection
        from ..protocol.messages import ControlledShutdownRequest
        deadline = time.monotonic() + CONTROLLED_SHUTDOWN_BUDGET_S
        for attempt in range(attempts):
            ctl = self.metadata_cache.controller()
            remaining = deadline - time.monotonic()
            if ctl is None or remaining <= 0:
                return   # no controller known (never joined), or out of time: nothing more to hand over
            if ctl.id == self.broker_id and self.controller is not None and self.controller.is_active:
                if not self.metadata_store.connected():
                    log.warning("controlled shutdown skipped: the metadata store is unreachable")
                    return
                # Bounded by what is left of the budget: with the store
                # unreachable the controller's event thread may never answer.
                resp = self.controller.submit("controlled_shutdown", self.broker_id, None).result(remaining)
            else:
                with Connection(ctl.host, ctl.port, client_id=f"broker-{self.broker_id}",
                                timeout=remaining, ssl_context=self.config.inter_broker_tls(),
                                sasl=self.inter_broker_sasl) as c:
                    resp = c.request(ControlledShutdownRequest(broker_id=self.broker_id,
                                                               broker_epoch=self.broker_epoch()), api_version=2)
            if resp.error_code == 0 and not resp.remaining_partitions:
                log.info("controlled shutdown: leadership moved off broker %d", self.broker_id)
                return
            log.info("controlled shutdown attempt %d: error %d, %d partition(s) still led here",
                     attempt + 1, resp.error_code, len(resp.remaining_partitions))
            time.sleep(backoff_s)

    def _submit_to_loop(self, fn) -> concurrent.futures.Future:
        """fn() run on this broker's loop, from another thread (the log cleaner's, a metrics scrape)."""
        fut = concurrent.futures.Future()

        def call():
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # noqa: BLE001 -- handed to the waiting thread
                    fut.set_exception(e)
        self._loop.call_soon_threadsafe(call)
        return fut

    async def _housekeeping(self):
        # Both at least 1 ms but the checkpoint interval, which Kafka lets be
        # 0: its checkpoint task then is not periodic (here it rides on the
        # retention check's rounds).
        intervals = [self.config.get("log.retention.check.interval.ms"),
                     self.config.get("log.flush.offset.checkpoint.interval.ms")]
        interval = min(i for i in intervals if i > 0) / 1000.0
        while True:
            await asyncio.sleep(interval)
            await self.log_manager.housekeeping()

    async def _flusher(self):
        """fdatasync logs whose flush.ms has passed (only topics that set it;
        Kafka's default leaves flushing to the OS). The sync runs on a worker
        thread so the loop keeps serving other partitions meanwhile."""
        loop = asyncio.get_running_loop()
        due = []
        while True:
            await asyncio.sleep(FLUSH_CHECK_S if due else 1.0)
            due = [p.log for p in self.log_manager.partitions.values() if p.log.flush_ms is not None]
            for plog in due:
                try:
                    await loop.run_in_executor(None, plog.maybe_flush)
                except Exception as e:  # a closed (deleted) log, a failed disk: next round
                    log.warning("time-based flush of %s failed: %s", plog.path, e)

    async def stop(self):
        """Stop accepting, finish responses in progress, flush and close every log."""
        if self.stopping:
            return
        self.stopping = True
        if self.metrics is not None:
            # Off the loop: the HTTP server's shutdown waits for its poll (0.5 s).
            await asyncio.get_running_loop().run_in_executor(None, self.metrics.stop)
        if self.replica_manager is not None:
            # Before anything that may wait (the controlled shutdown talks to a
            # controller that may be stopping too): a fetcher left running
            # retries a stopped leader every 200 ms for as long as that takes,
            # and its appends race the logs' close.
            await self.replica_manager.stop()
        try:
            await self._leave_cluster()
        except Exception:  # noqa: BLE001 - the logs are closed whatever the cluster's state
            log.exception("broker %d: leaving the cluster failed", self.broker_id)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.local_channel is not None:
            await self.local_channel.stop()
        if self.console is not None:
            # Before the listener: the console's pages in flight still reach it.
            await asyncio.get_running_loop().run_in_executor(None, self.console.stop)
        if self.server is not None:
            await self.server.stop()
        if self.share is not None:
            await self.share.stop()
        if self.groups is not None:
            await self.groups.stop()
            await self.coordinator_writer.stop()
        if self.transactions is not None:
            await self.transactions.stop()
            await self.txn_writer.stop()
            self.transaction_apis.verifier.close()
        if self.log_cleaner is not None:
            # Off the loop: the threads' rounds stop at their next segment or chunk.
            await asyncio.get_running_loop().run_in_executor(None, self.log_cleaner.shutdown)
        self.log_manager.close()
        log.info("broker %d stopped; logs flushed and closed", self.broker_id)

    # ---- a broker process ----

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT, then stop cleanly."""
        async def main():
            await self.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            print(f"pylog broker {self.broker_id} ready at {self.bootstrap} (data in {self.data_dir})", flush=True)
            await stop.wait()
            log.info("signal received: shutting down")
            await self.stop()
        _new_loop_runner(main, self.config.get("pylog.event.loop"))
        return 0

    # ---- an in-process broker on its own thread ----

    def start_in_thread(self, timeout: float = 120.0):
        # The bound only keeps a caller from hanging forever: a cluster member's
        # start waits for the controller and its log recovery, which on a loaded
        # 2-core machine has taken over 30 s.
        ready = threading.Event()
        error = []

        def target():
            loop = _new_loop(self.config.get("pylog.event.loop"))
            asyncio.set_event_loop(loop)
            self._stopped = asyncio.Event()
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:
                error.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._stopped.wait())
                loop.run_until_complete(self.stop())
            finally:
                loop.close()

        self._thread = threading.Thread(target=target, name=f"pylog-broker-{self.broker_id}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the broker did not start")
        if error:
            self._thread.join()
            raise error[0]
        return self

    def stop_in_thread(self, timeout: float = 30.0):
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)
        self._thread = None

    def call(self, fn, *args):
        """Run fn(*args) on the broker's loop thread and return its result (tests, tools)."""
        async def inner():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(inner(), self._loop).result(30)


def _create_topic_by_wire(host, port, broker_id, name, n, rf, configs, ssl_context=None,
                          sasl=None) -> tuple[int, str | None]:
    """CreateTopics for one topic sent to the controller at host:port (on a
    worker thread, as Kafka's AutoTopicCreationManager forwards it); its
    (error code, message)."""
    from ..client.wire import Connection
    from ..protocol.messages import CreateTopicsRequest as Q
    req = Q(topics=[Q.CreatableTopic(
        name=name, num_partitions=n, replication_factor=rf, assignments=[],
        configs=[Q.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()])], timeout_ms=30000)
    with Connection(host, port, client_id=f"{INTERNAL_CLIENT_ID}-{broker_id}", timeout=30,
                    ssl_context=ssl_context, sasl=sasl) as c:
        resp = c.request(req)
    return resp.topics[0].error_code, resp.topics[0].error_message


# The client id a broker uses when it asks the controller for a topic (a name
# in the controller's logs; it grants nothing).
INTERNAL_CLIENT_ID = "pylog-broker"
OFFSETS_TOPIC = "__consumer_offsets"
TRANSACTION_TOPIC = "__transaction_state"
SHARE_STATE_TOPIC = "__share_group_state"


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (soft, hard) after. A
    broker owns its process, and every connection costs a descriptor; the logs
    themselves stay within a share of whatever the limit is (the open-segment
    budget), so this only makes room. The library (Log.open) leaves the limit
    alone: it is the host program's, and code using select() breaks past 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                target = int(f.read())
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, e)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def _default_host() -> str:
    import socket
    return socket.gethostname()


def _new_loop(kind: str = "auto"):
    """uvloop when installed (or asked for), else the stdlib loop. Measured on
    bench G the two cost the same CPU per message; the stdlib loop's transport
    lets fetch answers use os.sendfile."""
    if kind not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"pylog.event.loop={kind!r}: use auto, asyncio or uvloop")
    if kind != "asyncio":
        try:
            import uvloop
            return uvloop.new_event_loop()
        except ImportError:
            if kind == "uvloop":
                raise
    return asyncio.new_event_loop()


def _new_loop_runner(main, kind: str = "auto"):
    loop = _new_loop(kind)
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
