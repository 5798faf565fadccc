"""The cluster controller (ZooKeeper-era Kafka semantics, KAFKA-NOTES §4.3-4.5):
it owns partition leadership and the ISR as written in the MetadataStore and
tells brokers about them with LeaderAndIsr (v5), UpdateMetadata (v7) and
StopReplica (v1).

Duties:
- becoming controller (store.elect_controller): load topics and partition
  states, elect leaders for partitions without a live one, send UpdateMetadata
  to every live broker and LeaderAndIsr to every live replica;
- broker death: elect a new leader for partitions it led (election.py, CAS
  writes), drop it from every ISR it is in, tell the replicas and everyone;
- broker start: UpdateMetadata to it (everything) and to the others (the new
  broker list), LeaderAndIsr for its replicas, elect leaders for partitions
  that were offline;
- topic creation (assignment.py), partition addition, deletion (StopReplica
  delete_partitions=true, then removal from the store);
- AlterPartition from leaders (ISR changes, checked against leader_epoch and
  partition_epoch), controlled shutdown, preferred leader election (manual and
  auto.leader.rebalance).

Threading: every piece of controller work runs on ONE thread, the event
thread, which takes events from a queue in order. Store watches, the
rebalance timer and the public methods only put events on that queue (the
public methods then wait for their event's result), so the controller's own
state (_epoch, _live, _topics, _states, _shutting_down) is touched by the
event thread alone and needs no lock. Requests to brokers are sent from the
event thread too, synchronously: a slow broker delays the controller, as one
controller-to-broker queue per broker would avoid (not done).

Invariants:
- _epoch is the controller epoch this store was elected with, or None when
  not the active controller; while None no request is sent and no state is
  written.
- _states mirrors the store: every write goes through store CAS
  (update_partition_state with the partition_epoch we last read); a lost race
  re-reads the state and decides again; a write refused for a newer controller
  epoch (ControllerMovedError) makes this controller resign.
- Every state this controller writes carries controller_epoch = _epoch.

Errors to callers: PylogError subclasses carrying Kafka codes
(NOT_CONTROLLER 41 when not active, TOPIC_ALREADY_EXISTS, ...).
"""
from __future__ import annotations

import abc
import concurrent.futures
import contextlib
import copy
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping

from ..broker.config import validate_topic_configs, validate_topic_name
from ..errors import (
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    InvalidReplicationFactorError,
    NoReassignmentInProgressError,
    PylogError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from ..protocol.error_codes import Errors
from ..protocol.messages import (
    AlterPartitionRequest,
    AlterPartitionResponse,
    ControlledShutdownResponse,
    LeaderAndIsrRequest,
    StopReplicaRequest,
    UpdateMetadataRequest,
)
from ..protocol.pylog_tags import broker_configs_field, group_configs_field, reassignment_throttle_field, topic_configs_field
from . import election
from .assignment import assign_replicas
from .metadata_store import (
    SECURITY_PROTOCOL_IDS,
    BrokerInfo,
    ControllerMovedError,
    MetadataStore,
    PartitionState,
    TopicAssignment,
)

__all__ = [
    "LEADER_AND_ISR_VERSION",
    "UPDATE_METADATA_VERSION",
    "STOP_REPLICA_VERSION",
    "LEADER_DURING_DELETE",
    "BrokerChannel",
    "WireBrokerChannel",
    "InProcessBrokerChannel",
    "Controller",
    "NotControllerError",
]

log = logging.getLogger(__name__)

# Inter-broker versions. LeaderAndIsr v4 and UpdateMetadata v6 are the first
# flexible ones: their topic states carry each topic's config overrides in a
# pylog tagged field (pylog/protocol/pylog_tags.py), which brokers need when
# they create a replica and whenever the overrides change. UpdateMetadata v7
# carries each topic's id (KIP-516), which every broker's Metadata v10+ and
# Fetch v13+ answer with; LeaderAndIsr v5 carries it too, and each replica
# keeps it in its partition.metadata (one id per topic on every broker, new
# when the topic is re-created).
LEADER_AND_ISR_VERSION = 5
UPDATE_METADATA_VERSION = 7
STOP_REPLICA_VERSION = 1

# Kafka's LeaderAndIsr.LeaderDuringDelete: UpdateMetadata partitions with this
# leader tell brokers to drop the topic from their metadata cache.
LEADER_DURING_DELETE = -2

# Kafka's SecurityProtocol ids (the wire's security_protocol fields).

# A CAS write lost to a concurrent writer (a leader's ISR change through the
# store, another controller) is re-decided this many times before giving up.
MAX_CAS_RETRIES = 10


class NotControllerError(PylogError):
    """This broker is not (or no longer) the active controller.

    Raised on the controller's event thread, carried to any caller.
    """

    error_code = Errors.NOT_CONTROLLER


# --- talking to brokers ------------------------------------------------------------------

class BrokerChannel(abc.ABC):
    """How the controller reaches brokers: one request, one response.

    send raises ConnectionError (or OSError) when the broker cannot be
    reached; the controller logs it and goes on (the broker gets the whole
    state again when it re-registers). post is what the controller calls: here
    send, its failure and any error code logged; a channel may instead queue
    the request and send it later, in order per broker. update_brokers is told
    the live broker set whenever it changes, so a channel can open and close
    connections.

    Threads: send is called on the controller's event thread only; an
    implementation hands the request to the broker's own loop or socket.
    """

    @abc.abstractmethod
    def send(self, broker_id: int, request, api_version: int):
        ...

    def post(self, broker_id: int, request, api_version: int) -> None:
        _send_and_log(self, broker_id, request, api_version)

    def update_brokers(self, live: Mapping[int, BrokerInfo]) -> None:  # noqa: B027 (optional hook)
        pass

    def close(self) -> None:  # noqa: B027
        pass


class WireBrokerChannel(BrokerChannel):
    """BrokerChannel over pylog.client.wire.Connection: one synchronous
    connection per live broker, opened on first use, dropped when the broker
    leaves or the connection fails (the next send reconnects). post queues the
    request for the broker's own sender thread (Kafka's RequestSendThread), so
    a broker that is slow or stopped (SIGSTOP) holds up only its own requests,
    not the controller's event thread and every other broker's.

    Invariants: a broker's requests are sent in the order posted; one thread
    uses a broker's connection at a time (its sender, or a direct send; a
    replaced sender still sending holds send_lock until it is done);
    requests still queued for a broker that leaves the live set are dropped.
    Thread-safety: every method may be called from any thread (one lock)."""

    def __init__(self, live_brokers: Mapping[int, BrokerInfo] | None = None, timeout: float = 30.0,
                 client_id: str = "pylog-controller", listener: str | None = None, ssl_context=None,
                 sasl=None):
        # Each broker is reached on its endpoint of this listener (the
        # control-plane one, else the inter-broker one: KIP-291).
        self._listener = listener
        self._ssl = ssl_context   # that listener's client SSLContext; None for PLAINTEXT
        self._brokers: dict[int, BrokerInfo] = dict(live_brokers or {})
        self._conns: dict = {}
        self._senders: dict[int, _BrokerSender] = {}
        self._closed = False
        self._lock = threading.Lock()
        # broker id -> held across a whole send to it: a sender stopped when
        # its broker left the live set may still be sending when the broker
        # is back and a new sender starts; without this both used the one
        # connection at once and both requests failed (the broker then never
        # got the metadata that made it see the other brokers).
        self._send_locks: dict[int, threading.Lock] = {}
        self._timeout = timeout
        self._client_id = client_id
        self._sasl = sasl   # the inter-broker listener's SASL credentials, or None

    def send_lock(self, broker_id: int) -> threading.Lock:
        with self._lock:
            return self._send_locks.setdefault(broker_id, threading.Lock())

    def update_brokers(self, live: Mapping[int, BrokerInfo]) -> None:
        gone = []
        with self._lock:
            self._brokers = dict(live)
            for broker_id in list(self._conns):
                info = self._brokers.get(broker_id)
                conn = self._conns[broker_id]
                if info is None or info.address(self._listener) != (conn.host, conn.port):
                    gone.append(self._conns.pop(broker_id))
            for broker_id in list(self._senders):
                if broker_id not in self._brokers:
                    self._senders.pop(broker_id).stop(drop=True)
        for conn in gone:   # a sender blocked on it gets an error and moves on
            conn.close()

    def send(self, broker_id: int, request, api_version: int):
        from ..client.wire import Connection
        with self._lock:
            if self._closed:
                raise ConnectionError("the controller's channel is closed")
            conn = self._conns.get(broker_id)
            info = self._brokers.get(broker_id)
        if conn is None or conn.closed:
            if info is None:
                raise ConnectionError(f"broker {broker_id} is not live")
            conn = Connection(*info.address(self._listener), client_id=self._client_id, timeout=self._timeout,
                              ssl_context=self._ssl, sasl=self._sasl)
            with self._lock:
                now = self._brokers.get(broker_id)
                # Kept only while the broker is still live at that address and
                # the channel open: no connection may outlive update_brokers/close.
                keep = not self._closed and now is not None and now.address(self._listener) == info.address(
                    self._listener)
                old = self._conns.get(broker_id) if keep else None
                if keep:
                    self._conns[broker_id] = conn
            if old is not None and old is not conn:
                old.close()
            if not keep:
                conn.close()
                raise ConnectionError(f"broker {broker_id} left while being connected to")
        try:
            return conn.request(request, api_version)
        except BaseException:
            with self._lock:
                if self._conns.get(broker_id) is conn:
                    del self._conns[broker_id]
            conn.close()
            raise

    def reaches(self, broker_id: int) -> bool:
        """Whether a request to broker_id may still be sent: the channel is
        open and the broker live."""
        with self._lock:
            return not self._closed and broker_id in self._brokers

    def post(self, broker_id: int, request, api_version: int) -> None:
        with self._lock:
            if broker_id not in self._brokers:
                log.warning("controller: %s to broker %s dropped: not live", type(request).__name__, broker_id)
                return
            sender = self._senders.get(broker_id)
            if sender is None:
                sender = self._senders[broker_id] = _BrokerSender(self, broker_id)
        sender.put(request, api_version)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every request posted so far was sent (or failed)."""
        with self._lock:
            senders = list(self._senders.values())
        deadline = time.monotonic() + timeout
        return all(s.join_queue(max(0.0, deadline - time.monotonic())) for s in senders)

    def close(self) -> None:
        """Send what is queued (up to 5 s per broker), then close everything."""
        with self._lock:
            senders, self._senders = list(self._senders.values()), {}
        for s in senders:
            s.stop()
        deadline = time.monotonic() + 5
        for s in senders:
            s.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:   # also ends a send still blocked on a silent broker
            conn.close()


class InProcessBrokerChannel(BrokerChannel):
    """Reaches the broker in this very process without a socket (Kafka's KRaft
    combined mode): requests for ``broker_id`` are handed to ``apply`` (a
    coroutine function taking the request) on that broker's event loop, one
    at a time in the order posted, as a broker's connection would serve them.
    The requests carry the broker epoch (Controller._send fills it), so the
    broker admits them exactly as it admits one from the wire. Requests for
    other brokers go to ``others`` (a WireBrokerChannel), or are dropped when
    there is none (a one-node cluster).

    Threads: post, send, update_brokers and close may be called from any
    thread (the controller's event thread); start, drain and stop run on the
    broker's loop, and so does every apply."""

    def __init__(self, broker_id: int, loop, apply, others: BrokerChannel | None = None):
        import asyncio
        self.broker_id = broker_id
        self._loop = loop
        self._apply = apply
        self._others = others
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task = None
        self._closed = False

    def start(self) -> None:
        import asyncio
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        import asyncio
        while True:
            request = await self._queue.get()
            try:
                resp = await self._apply(request)
                if getattr(resp, "error_code", 0):
                    log.warning("controller: broker %s answered %s with error %s", self.broker_id,
                                type(request).__name__, resp.error_code)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next request is still applied
                log.exception("controller: applying %s on broker %s failed", type(request).__name__, self.broker_id)
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until everything posted so far was applied."""
        await self._queue.join()

    async def stop(self) -> None:
        import asyncio
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def send(self, broker_id: int, request, api_version: int):
        import asyncio
        if broker_id != self.broker_id:
            if self._others is None:
                raise ConnectionError(f"broker {broker_id} is not reachable from a one-node cluster")
            return self._others.send(broker_id, request, api_version)
        return asyncio.run_coroutine_threadsafe(self._apply(request), self._loop).result(30)

    def post(self, broker_id: int, request, api_version: int) -> None:
        if broker_id != self.broker_id:
            if self._others is not None:
                self._others.post(broker_id, request, api_version)
            else:
                log.warning("controller: %s to broker %s dropped: not in this one-node cluster",
                            type(request).__name__, broker_id)
            return
        if self._closed:
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, request)
        except RuntimeError:   # the loop is closed: the broker is gone
            pass

    def update_brokers(self, live: Mapping[int, BrokerInfo]) -> None:
        if self._others is not None:
            self._others.update_brokers({b: i for b, i in live.items() if b != self.broker_id})

    def close(self) -> None:
        self._closed = True
        if self._others is not None:
            self._others.close()


class _BrokerSender:
    """One broker's queue of controller requests and the thread sending them."""

    def __init__(self, channel: WireBrokerChannel, broker_id: int):
        self.channel = channel
        self.broker_id = broker_id
        self._queue: queue.Queue = queue.Queue()
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name=f"controller-to-broker-{broker_id}", daemon=True)
        self._thread.start()

    def put(self, request, api_version: int) -> None:
        self._queue.put((request, api_version))

    def stop(self, drop: bool = False) -> None:
        """End the thread after the queued requests; drop: without sending
        them (the broker left: its stale requests must not reach it, nor race a
        new sender's if it comes back)."""
        self._dropping = self._dropping or drop
        self._queue.put(None)

    def join(self, timeout: float) -> None:
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def join_queue(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                # Kafka's RequestSendThread: a request that could not be sent
                # or answered (the broker closed an idle connection, a broker
                # busy past the timeout) is sent again, on a new connection,
                # until it goes through or the broker leaves the live set;
                # dropping it left the broker without a partition's
                # LeaderAndIsr for good.
                while not self._dropping:
                    with self.channel.send_lock(self.broker_id):
                        # Re-checked under the lock: a dropped sender's request
                        # must not follow the new sender's (stale metadata).
                        if self._dropping or _send_and_log(self.channel, self.broker_id, *item) is not _FAILED:
                            break
                    if not self.channel.reaches(self.broker_id):
                        break
                    time.sleep(_RESEND_BACKOFF_S)
            finally:
                self._queue.task_done()


# Kafka's RequestSendThread backs off 100 ms before sending a request again.
_RESEND_BACKOFF_S = 0.1
_FAILED = object()


def _send_and_log(channel: BrokerChannel, broker_id: int, request, api_version: int):
    try:
        resp = channel.send(broker_id, request, api_version)
    except Exception as e:  # noqa: BLE001
        # A queued request is sent again (_BrokerSender); a broker that
        # left gets the full state when it registers again. Any exception: a connection closed under a sender by update_brokers or
        # close fails in whatever way the socket read does, and a sender
        # thread that died would leave its broker's queue unsent for good.
        log.warning("controller: %s to broker %s failed: %r", type(request).__name__, broker_id, e)
        return _FAILED
    if resp is not None and getattr(resp, "error_code", 0):
        log.warning("controller: broker %s answered %s with error %s",
                    broker_id, type(request).__name__, resp.error_code)
    return resp


# --- the controller -----------------------------------------------------------------------

TopicPartition = tuple[str, int]


class Controller:
    """One broker's controller (see the module doc for duties, threading and
    invariants). start() registers the watches and tries to become the active
    controller; stop() ends the event thread (and resigns)."""

    def __init__(self, broker_id: int, store: MetadataStore, channel: BrokerChannel, *,
                 unclean_leader_election_enable: bool = False,
                 auto_leader_rebalance_enable: bool = True,
                 leader_imbalance_check_interval_seconds: float = 300,
                 leader_imbalance_per_broker_percentage: int = election.LEADER_IMBALANCE_PER_BROKER_PERCENTAGE,
                 call_timeout: float = 60.0, inter_broker_listener: str | None = None):
        self.broker_id = broker_id
        # LeaderAndIsr's live_leaders name each leader's endpoint on this
        # listener: the one followers fetch from (Kafka's interBrokerListenerName).
        self.inter_broker_listener = inter_broker_listener
        self.store = store
        self.channel = channel
        self.unclean_leader_election_enable = unclean_leader_election_enable
        self.auto_leader_rebalance_enable = auto_leader_rebalance_enable
        self.leader_imbalance_check_interval_seconds = leader_imbalance_check_interval_seconds
        self.leader_imbalance_per_broker_percentage = leader_imbalance_per_broker_percentage
        self.call_timeout = call_timeout
        # Event-thread state (see the class doc).
        self._epoch: int | None = None
        self._live: dict[int, BrokerInfo] = {}
        self._topics: dict[str, TopicAssignment] = {}
        self._configs: dict[str, dict[str, str]] = {}   # topic config overrides, as in the store
        self._group_configs: dict[str, dict[str, str]] = {}   # group config overrides, as in the store
        # Dynamic broker configs ("" the cluster default, else a broker id), as in the store.
        self._broker_configs: dict[str, dict[str, str]] = {}
        # Partitions being reassigned: target replicas and the copy throttle
        # (bytes/s for the adding replicas; None: unthrottled). The target is
        # also in the store (replicas minus removing); the throttle is not.
        self._reassigning: dict[TopicPartition, tuple[list[int], int | None]] = {}
        self._states: dict[TopicPartition, PartitionState] = {}
        self._shutting_down: set[int] = set()
        self._events: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._timer: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> "Controller":
        self._thread = threading.Thread(target=self._run, name=f"controller-{self.broker_id}", daemon=True)
        self._thread.start()
        self.store.watch_controller(lambda cid: self._put(self._on_controller_change, cid))
        self.store.watch_brokers(lambda live: self._put(self._on_broker_change, dict(live)))
        self._put(self._try_elect)
        if self.auto_leader_rebalance_enable:
            self._timer = threading.Thread(target=self._rebalance_timer, daemon=True,
                                           name=f"controller-{self.broker_id}-rebalance")
            self._timer.start()
        return self

    # How long stop() waits for the event thread, at each of its steps. Every
    # wait is bounded: with ZooKeeper unreachable a kazoo call on the event
    # thread blocks until the session comes back, which may be never, and a
    # broker sent SIGTERM must exit whatever the store's state.
    STOP_WAIT_S = 10.0

    def stop(self) -> None:
        """Resign (when the store is reachable), then end the event thread. When
        the store is unreachable, resigning does not answer in STOP_WAIT_S, or
        the thread is still busy after STOP_WAIT_S (a store call that does not
        return), the store is closed, which fails its calls in progress (kazoo:
        ConnectionClosedError), and the thread gets STOP_WAIT_S more; past that
        it is left behind (a daemon thread: it does not hold up the exit).
        Called from any thread but the event thread (which it joins)."""
        if self._thread is None:
            return
        blocked = not self.store.connected()   # its calls would not return: no resigning through it
        if not self._stopping.is_set() and not blocked:
            try:
                self._put(self._resign, True).result(self.STOP_WAIT_S)
            except concurrent.futures.TimeoutError:
                blocked = True
                log.warning("controller %s: no answer to resigning in %.0f s; stopping anyway",
                            self.broker_id, self.STOP_WAIT_S)
            except Exception as e:  # noqa: BLE001 - stopping goes on; the store ends the role with the session
                log.warning("controller %s: resigning failed (%r); stopping anyway", self.broker_id, e)
        self._stopping.set()
        self._events.put(None)
        # Blocked: only long enough for an idle thread to take the None.
        self._thread.join(0.5 if blocked else self.STOP_WAIT_S)
        if self._thread.is_alive():
            log.warning("controller %s: the event thread is blocked (store unreachable?); closing the store",
                        self.broker_id)
            try:
                self.store.close()
            except Exception as e:  # noqa: BLE001
                log.warning("controller %s: closing the store failed: %r", self.broker_id, e)
            self._thread.join(self.STOP_WAIT_S)
            if self._thread.is_alive():
                log.warning("controller %s: the event thread did not end; leaving it", self.broker_id)
        if self._timer is not None:
            self._timer.join(self.STOP_WAIT_S)   # it waits on _stopping: ends at once
        self.channel.close()

    @property
    def is_active(self) -> bool:
        return self._epoch is not None

    def offline_partition_count(self) -> int:
        """Kafka's OfflinePartitionsCount: partitions without a live leader.
        Any thread: reads copies (a dict copy is atomic under the GIL)."""
        live, states = dict(self._live), dict(self._states)
        return sum(1 for s in states.values() if s.leader < 0 or s.leader not in live)

    def event_queue_size(self) -> int:
        """Kafka's ControllerEventManager EventQueueSize. Any thread."""
        return self._events.qsize()

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def live_broker_ids(self) -> set[int]:
        """The brokers the controller currently considers live."""
        return self._call(lambda: set(self._live))

    def sync(self) -> None:
        """Wait until every event queued so far has been handled."""
        self._call(lambda: None)

    def barrier(self) -> concurrent.futures.Future:
        """A Future done once every event queued so far has been handled (for
        callers on an asyncio loop: asyncio.wrap_future(controller.barrier()))."""
        return self._put(lambda: None)

    # -- public operations (thread-safe: they run on the event thread) ------------------------

    def create_topic(self, name: str, num_partitions: int, replication_factor: int,
                     replica_assignment: Mapping[int, list[int]] | None = None,
                     configs: Mapping[str, str] | None = None, validate_only: bool = False) -> TopicAssignment:
        return self._call(self._create_topic, name, num_partitions, replication_factor,
                          replica_assignment, configs, validate_only)

    def create_partitions(self, name: str, total_count: int,
                          replica_assignment: Mapping[int, list[int]] | None = None,
                          validate_only: bool = False) -> TopicAssignment:
        return self._call(self._create_partitions, name, total_count, replica_assignment, validate_only)

    def delete_topic(self, name: str) -> None:
        return self._call(self._delete_topic, name)

    def alter_topic_configs(self, name: str, configs: Mapping[str, str]) -> None:
        """Replace the topic's config overrides (already validated) and tell
        every broker (UpdateMetadata carries them)."""
        return self._call(self._alter_topic_configs, name, configs)

    def topic_configs(self, name: str) -> dict[str, str]:
        return self._call(lambda: dict(self._configs.get(name, {})))

    def alter_group_configs(self, group_id: str, configs: Mapping[str, str]) -> None:
        """Replace a group's config overrides (already validated) and tell every broker
        (UpdateMetadata carries all groups' overrides)."""
        return self._call(self._alter_group_configs, group_id, configs)

    def group_configs(self, group_id: str) -> dict[str, str]:
        return self._call(lambda: dict(self._group_configs.get(group_id, {})))

    def alter_broker_configs(self, entity: str, configs: Mapping[str, str]) -> None:
        """Replace one entity's dynamic broker configs (already validated) and tell every
        broker (UpdateMetadata carries them all)."""
        return self._call(self._alter_broker_configs, entity, configs)

    def update_broker_configs(self, entity: str, compute: Callable[[dict], dict], validate_only: bool = False) -> None:
        """compute(current configs) -> new ones, on the event thread, so no other change comes
        in between (what it raises is the caller's answer); stored unless validate_only."""
        return self._call(self._update_broker_configs, entity, compute, validate_only)

    def broker_configs(self, entity: str) -> dict[str, str]:
        return self._call(lambda: dict(self._broker_configs.get(entity, {})))

    def reassign_partitions(self, targets: Mapping[TopicPartition, list[int] | None],
                            throttle: int | None = None) -> dict[TopicPartition, PylogError | None]:
        """Start moving each partition to its target replicas (None cancels a
        reassignment in progress); {partition: error or None}. The move ends
        by itself once the target replicas are all in sync."""
        return self._call(self._reassign, dict(targets), throttle)

    def reassignments(self) -> dict[TopicPartition, tuple[list[int], list[int], list[int]]]:
        """Partitions being reassigned: (replicas, adding, removing)."""
        return self._call(self._list_reassignments)

    def alter_partition(self, request: AlterPartitionRequest, api_version: int = 0,
                        check_broker_epoch: bool = False) -> AlterPartitionResponse:
        """check_broker_epoch: the request came over the wire, so its
        broker_epoch must be the sender's current one (in-process callers are
        this broker's own code and tests)."""
        return self._call(self._alter_partition, request, api_version, check_broker_epoch)

    def controlled_shutdown(self, broker_id: int, broker_epoch: int | None = None) -> ControlledShutdownResponse:
        """broker_epoch: the one the request carried (over the wire), which
        must be the broker's current one; None for an in-process caller."""
        return self._call(self._controlled_shutdown, broker_id, broker_epoch)

    def elect_preferred_leaders(self, partitions: Iterable[TopicPartition] | None = None
                                ) -> dict[TopicPartition, int]:
        """Preferred election for the given partitions (all when None);
        {partition: new leader} for those that moved."""
        return self._call(self._elect_preferred, None if partitions is None else list(partitions))

    def check_leader_imbalance(self) -> dict[TopicPartition, int]:
        """One auto.leader.rebalance round now (the timer calls it every interval)."""
        return self._call(self._check_imbalance)

    def submit(self, fn_name: str, *args) -> concurrent.futures.Future:
        """Queue a public operation by name and return its Future at once (for
        callers on an asyncio loop: asyncio.wrap_future(controller.submit(...)))."""
        fn = {"alter_partition": self._alter_partition, "controlled_shutdown": self._controlled_shutdown,
              "create_topic": self._create_topic, "delete_topic": self._delete_topic,
              "create_partitions": self._create_partitions,
              "alter_topic_configs": self._alter_topic_configs,
              "alter_group_configs": self._alter_group_configs,
              "alter_broker_configs": self._alter_broker_configs,
              "update_broker_configs": self._update_broker_configs,
              "reassign_partitions": self._reassign,
              "reassignments": self._list_reassignments,
              "elect_leaders": self._elect_leaders}[fn_name]
        return self._put(fn, *args)

    # -- snapshots for tests / tools (copies; safe from any thread after sync()) -----------

    def partition_states(self) -> dict[TopicPartition, PartitionState]:
        return self._call(lambda: dict(self._states))

    # -- event machinery ---------------------------------------------------------------

    def _put(self, fn: Callable, *args) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if self._stopping.is_set():
            fut.set_exception(NotControllerError("controller stopped"))
            return fut
        self._events.put((fn, args, fut))
        return fut

    def _call(self, fn: Callable, *args):
        if threading.current_thread() is self._thread:
            return fn(*args)
        if self._thread is None:
            raise NotControllerError("controller not started")
        return self._put(fn, *args).result(self.call_timeout)

    def _run(self) -> None:
        while True:
            item = self._events.get()
            if item is None:
                return
            fn, args, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except ControllerMovedError as e:
                log.warning("controller %s: a newer controller wrote first (%s); resigning", self.broker_id, e)
                self._resign(False)
                fut.set_exception(NotControllerError(str(e)))
            except BaseException as e:  # noqa: BLE001 - the caller gets it; the loop must go on
                if not isinstance(e, PylogError):
                    log.exception("controller %s: event %s failed", self.broker_id, getattr(fn, "__name__", fn))
                fut.set_exception(e)
            else:
                fut.set_result(result)

    def _rebalance_timer(self) -> None:
        while not self._stopping.wait(self.leader_imbalance_check_interval_seconds):
            self._put(self._check_imbalance_if_active)

    def _require_active(self) -> int:
        if self._epoch is None:
            raise NotControllerError(f"broker {self.broker_id} is not the active controller")
        return self._epoch

    # -- election and resignation ------------------------------------------------------------

    def _on_controller_change(self, controller_id: int | None) -> None:
        # Notifications are snapshots and may be stale: ask the store again.
        current = self.store.controller_id()
        if current is None:
            if self._epoch is not None:
                # Our role is gone (session expired, resigned): whatever we
                # hold is stale; start again from the store if re-elected.
                self._resign(False)
            self._try_elect()
        elif current != self.broker_id and self._epoch is not None:
            self._resign(False)

    def _try_elect(self) -> None:
        if self._epoch is not None or self._stopping.is_set():
            return
        epoch = self.store.elect_controller(self.broker_id)
        if epoch is None:
            return
        log.info("broker %s is the controller, epoch %s", self.broker_id, epoch)
        self._epoch = epoch
        self._on_controller_failover()

    def _resign(self, voluntary: bool) -> None:
        was_active = self._epoch is not None
        self._epoch = None
        self._live, self._topics, self._states = {}, {}, {}
        self._shutting_down = set()
        if voluntary and was_active:
            self.store.resign_controller()

    def _on_controller_failover(self) -> None:
        self._live = dict(self.store.live_brokers())
        self.channel.update_brokers(self._live)
        self._topics = dict(self.store.topics())
        self._configs = {name: dict(self.store.topic_configs(name)) for name in self._topics}
        self._group_configs = self.store.group_configs()
        self._broker_configs = self.store.broker_configs()
        # A reassignment a previous controller started goes on (its throttle
        # was that controller's: unthrottled from here).
        self._reassigning = {(name, p): ([r for r in replicas if r not in topic.removing.get(p, ())], None)
                             for name, topic in self._topics.items() for p, replicas in topic.partitions.items()
                             if topic.adding.get(p) or topic.removing.get(p)}
        self._states = {}
        missing: list[TopicPartition] = []
        for name, topic in self._topics.items():
            for p in topic.partitions:
                state = self.store.partition_state(name, p)
                if state is None:
                    missing.append((name, p))
                else:
                    self._states[(name, p)] = state
        # A topic created just before a controller died may lack states.
        for tp in missing:
            self._initialize_partition(tp)
        self._send_update_metadata(self._live, self._states)
        changed = self._elect_offline_partitions()
        targets = set(self._states)
        self._send_leader_and_isr(targets)
        if changed:
            self._send_update_metadata(self._live, changed)

    # -- broker membership --------------------------------------------------------------------

    def _on_broker_change(self, live: dict[int, BrokerInfo]) -> None:
        if self._epoch is None:
            return
        old = self._live
        new_ids = {b for b in live if b not in old}
        dead_ids = {b for b in old if b not in live}
        # Same id with a new endpoint or a new broker epoch: it restarted (or
        # registered again) between two watch events (KIP-380).
        bounced = {b for b in live if b in old and (_where(live[b]) != _where(old[b])
                                                    or live[b].broker_epoch != old[b].broker_epoch)}
        if bounced:
            # A restarted broker lost its replica state: first handle it as
            # dead (leadership moves away, it leaves ISRs), then as new.
            self._live = {b: i for b, i in live.items() if b not in bounced}
            self.channel.update_brokers(self._live)
            self._on_broker_failure(bounced)
        self._live = dict(live)
        self.channel.update_brokers(self._live)
        if new_ids or bounced:
            self._on_broker_startup(new_ids | bounced)
        if dead_ids:
            self._on_broker_failure(dead_ids)

    def _on_broker_startup(self, new_ids: set[int]) -> None:
        self._shutting_down -= new_ids
        others = {b: i for b, i in self._live.items() if b not in new_ids}
        self._send_update_metadata(others, {})
        self._send_update_metadata({b: self._live[b] for b in new_ids}, self._states)
        on_new = {tp for tp, tA in self._replicas_by_partition().items() if new_ids & set(tA)}
        self._send_leader_and_isr(on_new, only_brokers=new_ids)
        changed = self._elect_offline_partitions()
        if changed:
            self._send_leader_and_isr(set(changed))
            self._send_update_metadata(self._live, changed)

    def _on_broker_failure(self, dead_ids: set[int]) -> None:
        self._shutting_down -= dead_ids
        changed = self._elect_offline_partitions()
        # Then every dead replica leaves the ISRs it is still in (Kafka's
        # OfflineReplica transition: removeReplicasFromIsr).
        for tp in sorted(self._states):
            for replica in sorted(dead_ids):
                if replica in self._states[tp].isr:
                    new = self._cas(tp, lambda s, r=replica: election.remove_replica_from_isr(s, r, self._epoch))
                    if new is not None:
                        changed[tp] = new
        if changed:
            self._send_leader_and_isr(set(changed))
            self._send_update_metadata(self._live, changed)
        for tp in list(self._reassigning):
            self._maybe_complete_reassignment(tp)

    def _electable(self) -> set[int]:
        # Kafka's isReplicaOnline: live and not shutting down.
        return {b for b in self._live if b not in self._shutting_down}

    def _unclean_enabled(self, topic: str) -> bool:
        value = self.store.topic_configs(topic).get("unclean.leader.election.enable")
        if value is None:
            return self._unclean_default()
        return str(value).strip().lower() == "true"

    def _unclean_default(self) -> bool:
        """Kafka's controller: its own dynamic config, then the cluster default, then its static one."""
        for entity in (str(self.broker_id), ""):
            value = self._broker_configs.get(entity, {}).get("unclean.leader.election.enable")
            if value is not None:
                return str(value).strip().lower() == "true"
        return self.unclean_leader_election_enable

    def _elect_offline_partitions(self) -> dict[TopicPartition, PartitionState]:
        """Elect a leader for every partition whose leader is not live."""
        changed = {}
        unclean_by_topic: dict[str, bool] = {}
        for tp in sorted(self._states):
            state = self._states[tp]
            if state.leader in self._live and state.leader >= 0:
                continue
            topic = tp[0]
            if topic not in unclean_by_topic:
                unclean_by_topic[topic] = self._unclean_enabled(topic)
            assignment = self._topics[topic].partitions[tp[1]]
            new = self._cas(tp, lambda s, a=assignment, u=unclean_by_topic[topic]: (
                None if (s.leader in self._live and s.leader >= 0)
                else election.elect_offline(s, a, self._electable(), self._epoch, u)))
            if new is not None:
                changed[tp] = new
            else:
                log.warning("controller: no leader electable for %s-%s (isr %s)", tp[0], tp[1], state.isr)
        return changed

    # -- CAS writes ----------------------------------------------------------------------

    def _cas(self, tp: TopicPartition, decide: Callable[[PartitionState], PartitionState | None]
             ) -> PartitionState | None:
        """Write decide(current state) with compare-and-set, re-reading and
        re-deciding when another writer got there first; the written state, or
        None when decide says there is nothing to write."""
        epoch = self._require_active()
        state = self._states[tp]
        for _ in range(MAX_CAS_RETRIES):
            new = decide(state)
            if new is None:
                return None
            written = self.store.update_partition_state(tp[0], tp[1], new, state.partition_epoch)
            if written is not None:
                self._states[tp] = written
                return written
            state = self.store.partition_state(tp[0], tp[1])
            if state is None:
                raise UnknownTopicOrPartitionError(f"{tp[0]}-{tp[1]} disappeared")
            if state.controller_epoch > epoch:
                raise ControllerMovedError(
                    f"{tp[0]}-{tp[1]} written by controller epoch {state.controller_epoch} > {epoch}")
            self._states[tp] = state
        raise PylogError(f"{tp[0]}-{tp[1]}: compare-and-set lost {MAX_CAS_RETRIES} times")

    def _initialize_partition(self, tp: TopicPartition) -> PartitionState | None:
        """NewPartition -> OnlinePartition: leader = first live replica, ISR =
        the live replicas, leader_epoch 0. Nothing written when none is live."""
        epoch = self._require_active()
        replicas = self._topics[tp[0]].partitions[tp[1]]
        live = [r for r in replicas if r in self._live]
        if not live:
            log.warning("controller: no live replica for new partition %s-%s %s", tp[0], tp[1], replicas)
            return None
        state = PartitionState(leader=live[0], leader_epoch=0, isr=live, controller_epoch=epoch)
        written = self.store.create_partition_state(tp[0], tp[1], state)
        self._states[tp] = written
        return written

    # -- topics --------------------------------------------------------------------------

    def _live_broker_list(self) -> list[BrokerInfo]:
        return [self._live[b] for b in sorted(self._live)]

    def _check_manual_assignment(self, assignment: Mapping[int, list[int]], first: int, count: int) -> None:
        if sorted(assignment) != list(range(first, first + count)):
            raise InvalidReplicaAssignmentError(
                f"partitions {sorted(assignment)} are not {first}..{first + count - 1}")
        sizes = {len(r) for r in assignment.values()}
        if len(sizes) != 1 or 0 in sizes:
            raise InvalidReplicaAssignmentError("every partition needs the same, non-zero replica count")
        for replicas in assignment.values():
            if len(set(replicas)) != len(replicas):
                raise InvalidReplicaAssignmentError(f"duplicate replicas in {replicas}")
            unknown = [b for b in replicas if b not in self._live]
            if unknown:
                # KRaft's ReplicationControlManager: only registered brokers.
                raise InvalidReplicaAssignmentError(f"replicas {replicas}: brokers {unknown} are not registered")

    def _create_topic(self, name, num_partitions, replication_factor, replica_assignment, configs,
                      validate_only=False):
        """Kafka's checks, in its order (an illegal name, an existing topic, the
        counts, the assignment, the configs), then the topic; validate_only:
        the checks alone."""
        epoch = self._require_active()
        validate_topic_name(name)
        if name in self._topics or name in self.store.topics():
            raise TopicAlreadyExistsError(f"Topic '{name}' already exists.")
        if replica_assignment:
            assignment = {int(p): [int(b) for b in r] for p, r in replica_assignment.items()}
            self._check_manual_assignment(assignment, 0, len(assignment))
        else:
            if num_partitions <= 0:
                raise InvalidPartitionsError(f"number of partitions must be larger than 0, not {num_partitions}")
            if replication_factor <= 0:
                raise InvalidReplicationFactorError(
                    f"replication factor must be larger than 0, not {replication_factor}")
            assignment = assign_replicas(self._live_broker_list(), num_partitions, replication_factor)
        configs = {k: v for k, v in validate_topic_configs(dict(configs or {})).items() if v is not None}
        if validate_only:
            return None
        topic = TopicAssignment(name=name, topic_id=uuid.uuid4(), partitions=assignment)
        created = {}
        # One batch: the topic and its partition states reach the disk with one
        # write (one fsync, not one per partition) before anyone is told.
        with self._store_batch(name):
            self.store.create_topic(topic, configs)
            self._topics[name] = topic
            self._configs[name] = configs
            for p in sorted(assignment):
                state = self._initialize_partition((name, p))
                if state is not None:
                    created[(name, p)] = state
        log.info("controller epoch %s created %s %s", epoch, name, assignment)
        self._send_leader_and_isr(set(created), is_new=True)
        self._send_update_metadata(self._live, created)
        return topic

    def _create_partitions(self, name, total_count, replica_assignment, validate_only=False):
        self._require_active()
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"Topic '{name}' does not exist.")
        existing = len(topic.partitions)
        if total_count <= existing:
            raise InvalidPartitionsError(f"Topic currently has {existing} partitions, "
                                         f"{total_count} would not be an increase.")
        rf = len(topic.partitions[0])
        if replica_assignment:
            added = {int(p): [int(b) for b in r] for p, r in replica_assignment.items()}
            self._check_manual_assignment(added, existing, total_count - existing)
        else:
            brokers = self._live_broker_list()
            if rf > len(brokers):
                raise InvalidReplicationFactorError(
                    f"Replication factor: {rf} larger than available brokers: {len(brokers)}.")
            # Kafka (AdminZkClient.createPartitions): continue the round robin
            # from partition 0's preferred leader.
            ids = [b.broker_id for b in brokers]
            start_index = next((i for i, b in enumerate(ids) if b >= topic.partitions[0][0]), 0)
            added = assign_replicas(brokers, total_count - existing, rf, start_partition=existing,
                                    fixed_start_index=start_index)
        if validate_only:
            return None
        new_topic = TopicAssignment(name=name, topic_id=topic.topic_id, partitions={**topic.partitions, **added},
                                    adding=topic.adding, removing=topic.removing)
        created = {}
        with self._store_batch(name):
            self.store.set_assignment(new_topic)
            self._topics[name] = new_topic
            for p in sorted(added):
                state = self._initialize_partition((name, p))
                if state is not None:
                    created[(name, p)] = state
        self._send_leader_and_isr(set(created), is_new=True)
        self._send_update_metadata(self._live, created)
        return new_topic

    @contextlib.contextmanager
    def _store_batch(self, topic: str):
        """store.batch() for writes to one topic. When the batch fails (its
        writes reached the disk partly or not at all), this controller's view
        of the topic is read back from the store, which re-read its files."""
        try:
            with self.store.batch():
                yield
        except BaseException:
            self._reload_topic(topic)
            raise

    def _reload_topic(self, name: str) -> None:
        for tp in [tp for tp in self._states if tp[0] == name]:
            del self._states[tp]
        topic = self.store.topic(name)
        if topic is None:
            self._topics.pop(name, None)
            self._configs.pop(name, None)
            return
        self._topics[name] = topic
        self._configs[name] = dict(self.store.topic_configs(name))
        for p in topic.partitions:
            state = self.store.partition_state(name, p)
            if state is not None:
                self._states[(name, p)] = state

    def _delete_topic(self, name: str) -> None:
        epoch = self._require_active()
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"Topic '{name}' does not exist.")
        # Brokers first forget the topic (leader -2), then delete its logs.
        deleting = {(name, p): PartitionState(leader=LEADER_DURING_DELETE,
                                              leader_epoch=self._states.get((name, p), _NO_STATE).leader_epoch,
                                              isr=[], controller_epoch=epoch)
                    for p in topic.partitions}
        self._send_update_metadata(self._live, deleting, replicas_of={tp: topic.partitions[tp[1]] for tp in deleting})
        by_broker: dict[int, list[int]] = {}
        for p, replicas in topic.partitions.items():
            for b in replicas:
                by_broker.setdefault(b, []).append(p)
        for b, parts in sorted(by_broker.items()):
            if b not in self._live:
                # A dead replica keeps its files (Kafka would wait for it).
                log.warning("controller: %s replicas on dead broker %s not deleted", name, b)
                continue
            req = StopReplicaRequest(controller_id=self.broker_id, controller_epoch=epoch, broker_epoch=-1,
                                     delete_partitions=True,
                                     topics=[StopReplicaRequest.StopReplicaTopicV1(
                                         name=name, partition_indexes=sorted(parts))])
            self._send(b, req, STOP_REPLICA_VERSION)
        self.store.delete_topic(name)
        del self._topics[name]
        self._configs.pop(name, None)
        for tp in [tp for tp in self._reassigning if tp[0] == name]:
            del self._reassigning[tp]
        for p in topic.partitions:
            self._states.pop((name, p), None)

    def _alter_topic_configs(self, name: str, configs: Mapping[str, str]) -> None:
        self._require_active()
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"Topic '{name}' does not exist.")
        configs = dict(configs)
        self.store.set_topic_configs(name, configs)
        self._configs[name] = configs
        log.info("controller: %s config overrides now %s", name, configs)
        self._send_update_metadata(self._live, {(name, p): self._states[(name, p)] for p in topic.partitions
                                                if (name, p) in self._states})

    def _alter_group_configs(self, group_id: str, configs: Mapping[str, str]) -> None:
        self._alter_entity_configs(self._group_configs, self.store.set_group_configs, group_id, configs)

    def _update_broker_configs(self, entity: str, compute: Callable[[dict], dict], validate_only: bool) -> None:
        self._require_active()
        new = compute(dict(self._broker_configs.get(entity, {})))
        if not validate_only:
            self._alter_broker_configs(entity, new)

    def _alter_broker_configs(self, entity: str, configs: Mapping[str, str]) -> None:
        unclean_before = self._unclean_default()
        self._alter_entity_configs(self._broker_configs, self.store.set_broker_configs, entity, configs)
        if self._unclean_default() and not unclean_before:
            # Kafka's enableDefaultUncleanLeaderElection: offline partitions may take an
            # out-of-sync leader now, not only at the next broker change.
            changed = self._elect_offline_partitions()
            if changed:
                self._send_leader_and_isr(set(changed))
                self._send_update_metadata(self._live, changed)

    def _alter_entity_configs(self, table: dict, store_write: Callable, entity: str,
                              configs: Mapping[str, str]) -> None:
        """Group and dynamic broker configs: stored, then every broker told (UpdateMetadata
        carries each table whole)."""
        self._require_active()
        configs = dict(configs)
        store_write(entity, configs)
        if configs:
            table[entity] = configs
        else:
            table.pop(entity, None)
        log.info("controller: configs of %r now %s", entity, configs)
        self._send_update_metadata(self._live, {})

    # -- partition reassignment (KIP-455; Kafka's steps in ZooKeeper mode) ---------------------
    #
    # Start: replicas = target + original (distinct), with adding/removing kept
    # in the store; the leader epoch is bumped and LeaderAndIsr sent, so the
    # adding replicas start fetching and the leader counts them. Completion,
    # checked whenever the ISR changes: once every target replica is in sync,
    # the leader is re-elected from the target if it is not in it, the ISR and
    # the replicas become the target's, and the removed replicas are stopped
    # and deleted. Cancelling is reassigning back to the original replicas.

    def _reassign(self, targets, throttle):
        self._require_active()
        results = {}
        for tp, target in sorted(targets.items()):
            try:
                if target is None:
                    topic = self._topic_of(tp)
                    if not (topic.adding.get(tp[1]) or topic.removing.get(tp[1])):
                        raise NoReassignmentInProgressError(f"{tp[0]}-{tp[1]} is not being reassigned")
                    original = [r for r in topic.partitions[tp[1]] if r not in topic.adding.get(tp[1], ())]
                    self._start_reassignment(tp, original, None)
                else:
                    self._start_reassignment(tp, [int(b) for b in target], throttle)
                results[tp] = None
            except PylogError as e:
                results[tp] = e
        return results

    def _topic_of(self, tp: TopicPartition) -> TopicAssignment:
        topic = self._topics.get(tp[0])
        if topic is None or tp[1] not in topic.partitions:
            raise UnknownTopicOrPartitionError(f"{tp[0]}-{tp[1]} does not exist")
        return topic

    def _start_reassignment(self, tp, target: list[int], throttle: int | None) -> None:
        epoch = self._require_active()
        topic = self._topic_of(tp)
        p = tp[1]
        if not target or len(set(target)) != len(target):
            raise InvalidReplicaAssignmentError(f"{tp[0]}-{p}: replicas {target} are empty or repeat")
        unknown = [b for b in target if b not in self._live]
        if unknown:
            raise InvalidReplicaAssignmentError(f"{tp[0]}-{p}: brokers {unknown} are not registered")
        current = topic.partitions[p]
        original = [r for r in current if r not in topic.adding.get(p, ())]
        if target == original and tp not in self._reassigning:
            return   # already there
        # A move replacing one in progress (a cancel included) keeps every
        # current replica until it completes: the ones left out are removed then.
        replicas = list(dict.fromkeys(target + current))
        adding = [r for r in target if r not in original]
        removing = [r for r in current if r not in target]
        self._set_partition_assignment(tp, replicas, adding, removing)
        self._reassigning[tp] = (list(target), throttle)
        log.info("controller epoch %s: reassigning %s-%d from %s to %s (throttle %s)", epoch, tp[0], p,
                 original, target, f"{throttle} B/s" if throttle else "none")
        if tp in self._states:
            new = self._cas(tp, lambda s: election._new_leader_and_isr(s, s.leader, list(s.isr), epoch))
            self._send_leader_and_isr({tp})
            self._send_update_metadata(self._live, {tp: new if new is not None else self._states[tp]})
        self._maybe_complete_reassignment(tp)

    def _set_partition_assignment(self, tp, replicas, adding, removing) -> None:
        topic = self._topics[tp[0]]
        p = tp[1]
        new = TopicAssignment(
            name=topic.name, topic_id=topic.topic_id, partitions={**topic.partitions, p: list(replicas)},
            adding={**{k: v for k, v in topic.adding.items() if k != p}, **({p: adding} if adding else {})},
            removing={**{k: v for k, v in topic.removing.items() if k != p}, **({p: removing} if removing else {})})
        self.store.set_assignment(new)
        self._topics[tp[0]] = new

    def _maybe_complete_reassignment(self, tp) -> None:
        entry = self._reassigning.get(tp)
        state = self._states.get(tp)
        if entry is None or state is None:
            return
        target, _ = entry
        if not set(target) <= set(state.isr):
            return
        epoch = self._require_active()
        electable = self._electable()

        def decide(s):
            leader = s.leader if s.leader in target and s.leader in electable else \
                election.reassign_partition_leader(target, s.isr, electable)
            if leader is None:
                return None
            return election._with(s, leader=leader, leader_epoch=s.leader_epoch + 1,
                                  isr=[r for r in s.isr if r in target], controller_epoch=epoch)
        new = self._cas(tp, decide)
        if new is None:
            log.warning("controller: %s-%d: no target replica can lead yet; reassignment waits", tp[0], tp[1])
            return
        removed = [r for r in self._topics[tp[0]].partitions[tp[1]] if r not in target]
        self._set_partition_assignment(tp, target, [], [])
        del self._reassigning[tp]
        log.info("controller: %s-%d reassigned to %s (leader %d)", tp[0], tp[1], target, new.leader)
        self._send_leader_and_isr({tp})
        for b in removed:
            if b in self._live:
                self._send(b, StopReplicaRequest(
                    controller_id=self.broker_id, controller_epoch=epoch, broker_epoch=-1, delete_partitions=True,
                    topics=[StopReplicaRequest.StopReplicaTopicV1(name=tp[0], partition_indexes=[tp[1]])]),
                    STOP_REPLICA_VERSION)
        self._send_update_metadata(self._live, {tp: new})

    def _list_reassignments(self):
        out = {}
        for tp in sorted(self._reassigning):
            topic = self._topics[tp[0]]
            out[tp] = (list(topic.partitions[tp[1]]), list(topic.adding.get(tp[1], [])),
                       list(topic.removing.get(tp[1], [])))
        return out

    # -- AlterPartition (leader -> controller ISR changes) ------------------------------------

    def _alter_partition(self, request: AlterPartitionRequest, api_version: int = 0,
                         check_broker_epoch: bool = False) -> AlterPartitionResponse:
        resp = AlterPartitionResponse()
        if self._epoch is None:
            resp.error_code = Errors.NOT_CONTROLLER
            return resp
        # Kafka's order: an unknown broker, or not its current epoch (-1
        # included: every AlterPartition version carries it), is STALE_BROKER_EPOCH.
        if request.broker_id not in self._live or (
                check_broker_epoch and request.broker_epoch != self._live[request.broker_id].broker_epoch):
            resp.error_code = Errors.STALE_BROKER_EPOCH
            return resp
        changed = {}
        for topic_data in request.topics:
            out_topic = AlterPartitionResponse.TopicData(topic_name=topic_data.topic_name,
                                                        topic_id=topic_data.topic_id)
            resp.topics.append(out_topic)
            for pd in topic_data.partitions:
                tp = (topic_data.topic_name, pd.partition_index)
                new_isr = (list(pd.new_isr) if api_version < 3
                           else [b.broker_id for b in pd.new_isr_with_epochs])
                error, state = self._alter_one(tp, request.broker_id, pd.leader_epoch, pd.partition_epoch,
                                               new_isr, api_version)
                out = AlterPartitionResponse.PartitionData(partition_index=pd.partition_index, error_code=error)
                if state is not None:
                    out.leader_id, out.leader_epoch = state.leader, state.leader_epoch
                    out.isr, out.partition_epoch = list(state.isr), state.partition_epoch
                    if error == Errors.NONE:
                        changed[tp] = state
                out_topic.partitions.append(out)
        if changed:
            self._send_update_metadata(self._live, changed)
        for tp in changed:
            if tp in self._reassigning:   # an adding replica may just have caught up
                self._maybe_complete_reassignment(tp)
        return resp

    def _alter_one(self, tp, broker_id, leader_epoch, partition_epoch, new_isr, api_version):
        """(error code, state to answer with) for one partition, Kafka's order
        of checks (KafkaController.processAlterPartition)."""
        current = self._states.get(tp)
        if current is None:
            return Errors.UNKNOWN_TOPIC_OR_PARTITION, None
        if partition_epoch > current.partition_epoch or leader_epoch > current.leader_epoch:
            # The leader knows a newer state than ours: we are likely no
            # longer the controller; NOT_CONTROLLER makes it look again.
            return Errors.NOT_CONTROLLER, None
        if leader_epoch < current.leader_epoch:
            return Errors.FENCED_LEADER_EPOCH, None
        if broker_id != current.leader:
            return Errors.INVALID_REQUEST, None
        if list(new_isr) == list(current.isr):
            # Already so: answer with it (idempotent retries), before the
            # partition_epoch fence.
            return Errors.NONE, current
        if partition_epoch < current.partition_epoch:
            return Errors.INVALID_UPDATE_VERSION, None
        replicas = self._topics[tp[0]].partitions[tp[1]]
        if current.leader not in new_isr or len(set(new_isr)) != len(new_isr):
            return Errors.INVALID_REQUEST, None
        if any(b not in replicas or b not in self._live or b in self._shutting_down for b in new_isr):
            return (Errors.INELIGIBLE_REPLICA if api_version >= 1 else Errors.OPERATION_NOT_ATTEMPTED), None
        new = PartitionState(leader=current.leader, leader_epoch=current.leader_epoch, isr=list(new_isr),
                             controller_epoch=self._epoch, partition_epoch=current.partition_epoch)
        written = self.store.update_partition_state(tp[0], tp[1], new, current.partition_epoch)
        if written is None:
            reread = self.store.partition_state(tp[0], tp[1])
            if reread is not None:
                self._states[tp] = reread
            return Errors.INVALID_UPDATE_VERSION, None
        self._states[tp] = written
        return Errors.NONE, written

    # -- controlled shutdown ------------------------------------------------------------------

    def _controlled_shutdown(self, broker_id: int, broker_epoch: int | None = None) -> ControlledShutdownResponse:
        if self._epoch is None:
            return ControlledShutdownResponse(error_code=Errors.NOT_CONTROLLER)
        if broker_id not in self._live:
            return ControlledShutdownResponse(error_code=Errors.BROKER_NOT_AVAILABLE)
        # ControlledShutdown v2 (the only version served) carries the epoch:
        # one that is not the broker's current one (-1 included) is refused,
        # so no one but the broker itself moves its leadership away.
        if broker_epoch is not None and broker_epoch != self._live[broker_id].broker_epoch:
            log.warning("controlled shutdown of broker %d refused: broker epoch %d, current %d", broker_id,
                        broker_epoch, self._live[broker_id].broker_epoch)
            return ControlledShutdownResponse(error_code=Errors.STALE_BROKER_EPOCH)
        self._shutting_down.add(broker_id)
        changed: dict[TopicPartition, PartitionState] = {}
        stop_follower: list[TopicPartition] = []
        for tp in sorted(self._states):
            replicas = self._topics[tp[0]].partitions[tp[1]]
            state = self._states[tp]
            if broker_id not in replicas or len(replicas) <= 1 or state.leader < 0:
                continue
            if state.leader == broker_id:
                new = self._cas(tp, lambda s, a=replicas: (
                    election.elect_controlled_shutdown(s, a, self._electable(), self._shutting_down, self._epoch)
                    if s.leader == broker_id else None))
            else:
                # A follower leaves the ISR now and stops fetching.
                new = self._cas(tp, lambda s: election.remove_replica_from_isr(s, broker_id, self._epoch))
                stop_follower.append(tp)
            if new is not None:
                changed[tp] = new
        if changed:
            self._send_leader_and_isr(set(changed), exclude_brokers={broker_id})
            self._send_update_metadata(self._live, changed)
        if stop_follower:
            by_topic: dict[str, list[int]] = {}
            for t, p in stop_follower:
                by_topic.setdefault(t, []).append(p)
            req = StopReplicaRequest(controller_id=self.broker_id, controller_epoch=self._epoch, broker_epoch=-1,
                                     delete_partitions=False,
                                     topics=[StopReplicaRequest.StopReplicaTopicV1(name=t, partition_indexes=ps)
                                             for t, ps in sorted(by_topic.items())])
            self._send(broker_id, req, STOP_REPLICA_VERSION)
        remaining = [ControlledShutdownResponse.RemainingPartition(topic_name=t, partition_index=p)
                     for (t, p), s in sorted(self._states.items())
                     if s.leader == broker_id and len(self._topics[t].partitions[p]) > 1]
        return ControlledShutdownResponse(error_code=Errors.NONE, remaining_partitions=remaining)

    # -- preferred leader election ------------------------------------------------------------

    def _elect_preferred(self, partitions: list[TopicPartition] | None) -> dict[TopicPartition, int]:
        self._require_active()
        targets = sorted(self._states) if partitions is None else sorted(partitions)
        changed = {}
        for tp in targets:
            if tp not in self._states:
                continue
            assignment = self._topics[tp[0]].partitions[tp[1]]
            live = self._electable()
            new = self._cas(tp, lambda s, a=assignment: election.elect_preferred(s, a, live, self._epoch))
            if new is not None:
                changed[tp] = new
        if changed:
            self._send_leader_and_isr(set(changed))
            self._send_update_metadata(self._live, changed)
        return {tp: s.leader for tp, s in changed.items()}

    def _elect_leaders(self, unclean: bool, partitions: list[TopicPartition] | None
                       ) -> dict[TopicPartition, tuple[int, str | None]]:
        """ElectLeaders (KIP-183, KIP-460): {partition: (error code, message)}.
        As Kafka's ReplicationControlManager.electLeaders: ELECTION_NOT_NEEDED
        when the preferred replica already leads (preferred) or the partition
        has a live leader (unclean); PREFERRED_LEADER_NOT_AVAILABLE /
        ELIGIBLE_LEADERS_NOT_AVAILABLE when nobody can be elected. With
        partitions None every partition is tried and those that needed no
        election are left out of the answer."""
        self._require_active()
        every = partitions is None
        targets = sorted(self._states) if every else list(partitions)
        results: dict[TopicPartition, tuple[int, str | None]] = {}
        changed = {}
        for tp in targets:
            if tp not in self._states:
                results[tp] = (Errors.UNKNOWN_TOPIC_OR_PARTITION, f"No such partition as {tp[0]}-{tp[1]}")
                continue
            assignment = self._topics[tp[0]].partitions[tp[1]]
            state = self._states[tp]
            has_leader = state.leader >= 0 and state.leader in self._live
            if (not unclean and assignment and state.leader == assignment[0] and has_leader) or (unclean and has_leader):
                if not every:
                    results[tp] = (Errors.ELECTION_NOT_NEEDED, None)
                continue
            live = self._electable()
            if unclean:
                new = self._cas(tp, lambda s, a=assignment: (
                    None if (s.leader >= 0 and s.leader in self._live)
                    else election.elect_offline(s, a, live, self._epoch, True)))
            else:
                new = self._cas(tp, lambda s, a=assignment: election.elect_preferred(s, a, live, self._epoch))
            if new is None:
                results[tp] = ((Errors.ELIGIBLE_LEADERS_NOT_AVAILABLE, None) if unclean
                               else (Errors.PREFERRED_LEADER_NOT_AVAILABLE, None))
            else:
                changed[tp] = new
                results[tp] = (Errors.NONE, None)
        if changed:
            self._send_leader_and_isr(set(changed))
            self._send_update_metadata(self._live, changed)
        return results

    def _check_imbalance(self) -> dict[TopicPartition, int]:
        self._require_active()
        assignments = {(t, p): r for t, topic in self._topics.items() for p, r in topic.partitions.items()}
        candidates = election.preferred_election_candidates(
            assignments, self._states, self._live, self.leader_imbalance_per_broker_percentage)
        if not candidates:
            return {}
        return self._elect_preferred(candidates)

    def _check_imbalance_if_active(self) -> None:
        if self._epoch is not None:
            self._check_imbalance()

    # -- requests to brokers --------------------------------------------------------------------

    def _replicas_by_partition(self) -> dict[TopicPartition, list[int]]:
        return {(t, p): r for t, topic in self._topics.items() for p, r in topic.partitions.items()}

    def _send(self, broker_id: int, request, api_version: int) -> None:
        # Every controller request carries the receiver's broker epoch as
        # this controller knows it (KIP-380): a broker that has restarted since
        # refuses it, and so does one that was sent a forged request.
        info = self._live.get(broker_id)
        if info is not None:
            request = copy.copy(request)
            request.broker_epoch = info.broker_epoch
        self.channel.post(broker_id, request, api_version)

    def _send_leader_and_isr(self, partitions: set[TopicPartition], is_new: bool = False,
                             only_brokers: set[int] | None = None, exclude_brokers: set[int] = frozenset()):
        """LeaderAndIsr to every live replica of each partition (optionally
        only some brokers), one request per broker."""
        epoch = self._require_active()
        per_broker: dict[int, list[TopicPartition]] = {}
        for tp in partitions:
            if tp not in self._states:
                continue
            for b in self._topics[tp[0]].partitions[tp[1]]:
                if b in self._live and b not in exclude_brokers and (only_brokers is None or b in only_brokers):
                    per_broker.setdefault(b, []).append(tp)
        for b, tps in sorted(per_broker.items()):
            by_topic: dict[str, list] = {}
            leaders = set()
            for t, p in sorted(tps):
                s = self._states[(t, p)]
                leaders.add(s.leader)
                topic = self._topics[t]
                throttle = self._reassigning.get((t, p), (None, None))[1]
                by_topic.setdefault(t, []).append(LeaderAndIsrRequest.LeaderAndIsrPartitionState(
                    partition_index=p, controller_epoch=s.controller_epoch, leader=s.leader,
                    leader_epoch=s.leader_epoch, isr=list(s.isr), partition_epoch=s.partition_epoch,
                    replicas=list(topic.partitions[p]), adding_replicas=list(topic.adding.get(p, [])),
                    removing_replicas=list(topic.removing.get(p, [])), is_new=is_new,
                    _unknown_tagged_fields=[reassignment_throttle_field(throttle)] if throttle else None))
            req = LeaderAndIsrRequest(
                controller_id=self.broker_id, controller_epoch=epoch, broker_epoch=-1,
                topic_states=[LeaderAndIsrRequest.LeaderAndIsrTopicState(
                    topic_name=t, topic_id=self._topic_id(t), partition_states=ps,
                    _unknown_tagged_fields=self._configs_field(t))
                    for t, ps in by_topic.items()],
                live_leaders=[LeaderAndIsrRequest.LeaderAndIsrLiveLeader(
                    broker_id=l, host_name=self._live[l].address(self.inter_broker_listener)[0],
                    port=self._live[l].address(self.inter_broker_listener)[1])
                    for l in sorted(leaders) if l in self._live])
            self._send(b, req, LEADER_AND_ISR_VERSION)

    def _send_update_metadata(self, brokers: Mapping[int, BrokerInfo], states: Mapping[TopicPartition, PartitionState],
                              replicas_of: Mapping[TopicPartition, list[int]] | None = None):
        """UpdateMetadata with these partition states and every live broker's
        endpoint to each broker in ``brokers``."""
        epoch = self._require_active()
        if not brokers:
            return
        by_topic: dict[str, list] = {}
        for (t, p), s in sorted(states.items()):
            replicas = (replicas_of or {}).get((t, p)) or self._topics[t].partitions[p]
            by_topic.setdefault(t, []).append(UpdateMetadataRequest.UpdateMetadataPartitionState(
                partition_index=p, controller_epoch=s.controller_epoch, leader=s.leader,
                leader_epoch=s.leader_epoch, isr=list(s.isr), zk_version=s.partition_epoch,
                replicas=list(replicas), offline_replicas=[r for r in replicas if r not in self._live]))
        live_brokers = [UpdateMetadataRequest.UpdateMetadataBroker(
            id=b, endpoints=[UpdateMetadataRequest.UpdateMetadataEndpoint(
                port=port, host=host, listener=name, security_protocol=SECURITY_PROTOCOL_IDS[info.protocol(name)])
                for name, host, port in info.all_endpoints()],
            rack=info.rack) for b, info in sorted(self._live.items())]
        req = UpdateMetadataRequest(
            controller_id=self.broker_id, controller_epoch=epoch, broker_epoch=-1,
            topic_states=[UpdateMetadataRequest.UpdateMetadataTopicState(
                topic_name=t, topic_id=self._topic_id(t), partition_states=ps,
                _unknown_tagged_fields=self._configs_field(t))
                for t, ps in by_topic.items()],
            live_brokers=live_brokers,
            _unknown_tagged_fields=[group_configs_field(self._group_configs),
                                    broker_configs_field(self._broker_configs)])
        for b in sorted(brokers):
            self._send(b, req, UPDATE_METADATA_VERSION)


    def _topic_id(self, topic: str) -> uuid.UUID:
        # Carried by UpdateMetadata v7+ and LeaderAndIsr v5+.
        t = self._topics.get(topic)
        return t.topic_id if t is not None else uuid.UUID(int=0)

    def _configs_field(self, topic: str):
        configs = self._configs.get(topic)
        return None if configs is None else [topic_configs_field(configs)]


def _where(info: BrokerInfo) -> tuple:
    return info.host, info.port, info.endpoints


_NO_STATE = PartitionState(leader=-1, leader_epoch=0, isr=[], controller_epoch=0)
