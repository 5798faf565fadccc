"""ConsumerProtocolMembership: a Consumer's membership of a KIP-848 consumer
group (group_protocol="consumer"; KAFKA-NOTES §10), over the network.

The broker computes the assignment; the member only heartbeats
(ConsumerGroupHeartbeat v1) and applies what it is given. A background thread
sends the heartbeats, every heartbeat interval the broker names, at once when
the user thread has applied a new assignment (the "ack" carrying what it now
owns), on a connection of its own. It never calls the listener: it stores the
latest assignment (topic ids) and flags (lost, fatal) that ensure_active(),
on the user's poll thread, acts on: it resolves the ids to names, calls
on_revoke for what was taken away and on_assign for what was added, then
asks the thread for the ack. Partitions kept across assignments are never
revoked.

With local_store (an embedded store, Consumer(log_dir=...)), the same
member talks to the store's own group coordinator in-process instead of over
a connection, so consumers of one process share a KIP-848 group.

Same interface as GroupMembership (membership.py). Thread-safety: public
methods are for the user's thread; the heartbeat thread shares only the
fields under self._lock.
"""
from __future__ import annotations

import base64
import logging
import threading
import time
import uuid

from ..client.errors import COORDINATOR_ERRORS, ConnectionClosedError, SslAuthenticationError, error_for
from ..client.wire import Connection
from ..protocol.error_codes import Errors
from ..protocol.messages import ConsumerGroupHeartbeatRequest
from ..structs import TopicPartition
from .membership import coordinator_connection

__all__ = ["ConsumerProtocolMembership"]

log = logging.getLogger("pylog.consumer")

HEARTBEAT_VERSION = 1
JOIN, LEAVE, LEAVE_STATIC = 0, -1, -2
_LOCAL = (-1, "in-process", -1)   # the embedded store's coordinator: no address
# Errors after which the member starts again from epoch 0 with nothing owned.
_REJOIN = frozenset({Errors.FENCED_MEMBER_EPOCH, Errors.UNKNOWN_MEMBER_ID})


class ConsumerProtocolMembership:
    """This consumer's membership of a KIP-848 group (module docstring).

    Invariants: the listener is called only from ensure_active() and close();
    assignment() is what the user owns now; generation() is (member epoch,
    member id), the epoch 0 until the broker accepted the member."""

    def __init__(self, group_id: str, *, listener, source, rebalance_timeout_ms: int,
                 group_instance_id: str | None, client_id: str = "pylog", request_timeout_ms: int = 30000,
                 retry_backoff_ms: int = 100, remote_assignor: str | None = None, client_rack: str | None = None,
                 max_poll_interval_ms: int | None = None, local_store=None, **_classic_only):
        self.group_id = group_id
        self.listener = listener
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.request_timeout = request_timeout_ms / 1000
        self.retry_backoff = retry_backoff_ms / 1000
        self.remote_assignor = remote_assignor
        # As Java: max.poll.interval.ms is also the rebalance timeout it sends.
        self.max_poll_interval = (max_poll_interval_ms or rebalance_timeout_ms) / 1000
        self.client_rack = client_rack
        self._source = source
        self._local = local_store
        # As librdkafka and Java: the member makes its id once and keeps it across rejoins.
        self.member_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self._assignment: set[TopicPartition] = set()
        self._owned_ids: dict = {}                  # what the user owns, by topic id (the heartbeat's report)
        self._names: dict = {}                      # topic id -> name
        # Shared with the heartbeat thread.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._topics: list[str] = []
        self._epoch = JOIN
        self._interval = 0.0
        self._given = None        # the latest assignment from the broker ({topic id: partitions}), not applied
        self._full = True         # the next heartbeat carries every field
        self._lost = False
        self._fatal = None
        self._coordinator = None
        self._last_poll = time.monotonic()
        self._idle_left = False   # left for not polling: no heartbeats until the next poll
        self._thread: threading.Thread | None = None

    # --- public ---------------------------------------------------------------

    def subscribe(self, topics: set[str]) -> None:
        with self._lock:
            if sorted(topics) != self._topics:
                self._topics = sorted(topics)
                self._full = True
        self._wake.set()

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def generation(self) -> tuple[int, str]:
        with self._lock:
            return self._epoch, self.member_id

    def note_poll(self) -> None:
        with self._lock:
            self._last_poll = time.monotonic()
            rejoin, self._idle_left = self._idle_left, False
            if rejoin:
                self._full = True
        if rejoin:
            self._wake.set()

    def ensure_active(self, timeout_s: float) -> bool:
        with self._lock:
            fatal, lost, given = self._fatal, self._lost, self._given
            self._lost, self._given = False, None
            need_coordinator = self._coordinator is None
        if fatal is not None:
            raise fatal
        if need_coordinator:
            try:
                coordinator = _LOCAL if self._local is not None else \
                    self._source.find_coordinator(self.group_id, refresh=True)
            except Exception as e:  # noqa: BLE001 - retried on the next poll
                log.info("coordinator of group %s not found yet: %s", self.group_id, e)
                time.sleep(min(self.retry_backoff, max(timeout_s, 0)))
                return False
            with self._lock:
                self._coordinator = coordinator
            self._start()
        if lost:
            gone = set(self._assignment)
            self._assignment.clear()
            self._owned_ids = {}
            if gone:
                self.listener.on_lost(sorted(gone))
        if given is not None:
            self._apply(given)
        with self._lock:
            return self._epoch > 0

    def close(self, leave: bool = True) -> None:
        if self._assignment:
            self._revoke(set(self._assignment))
        self._closing.set()
        self._wake.set()
        t = self._thread
        if t is not None:
            t.join(self.request_timeout + 1)
        with self._lock:
            epoch, coordinator = self._epoch, self._coordinator
        if leave and epoch > 0 and coordinator is not None:
            try:
                leave_req = self._request(LEAVE_STATIC if self.group_instance_id else LEAVE, full=False)
                if self._local is not None:
                    self._local.handle(leave_req, HEARTBEAT_VERSION)
                else:
                    with coordinator_connection(self._source, coordinator[1], coordinator[2],
                                                self.request_timeout) as conn:
                        conn.request(leave_req, HEARTBEAT_VERSION)
            except Exception as e:  # noqa: BLE001 - leaving is best effort: the session expires anyway
                log.info("leaving group %s failed: %s", self.group_id, e)
        with self._lock:
            self._epoch = JOIN

    # --- the user thread's side -------------------------------------------------

    def _apply(self, given: dict) -> None:
        """Revoke what the broker no longer gives, assign what it adds, then
        have the thread report what is owned now."""
        unknown = [tid for tid in given if tid not in self._names]
        if unknown:
            self._names = self._topic_names()
        target = {TopicPartition(self._names[tid], p) for tid, ps in given.items() if tid in self._names
                  for p in ps}
        revoked = self._assignment - target
        added = target - self._assignment
        if revoked:
            self._revoke(revoked)
        if added:
            self._assignment |= added
            self.listener.on_assign(sorted(added))
        ids = {name: tid for tid, name in self._names.items()}
        owned: dict = {}
        for tp in self._assignment:
            owned.setdefault(ids[tp.topic], []).append(tp.partition)
        with self._lock:
            changed = owned != self._owned_ids
            self._owned_ids = owned
            self._full = self._full or changed      # the ack: what is owned now
        if changed:
            self._wake.set()

    def _topic_names(self) -> dict:
        """{topic id: name} of the cluster's topics (the assignment names ids)."""
        if self._local is not None:
            cache = self._local.broker.metadata_cache
            return self._local.call(lambda: {tid: name for name, tid in cache.topic_ids.items()})
        return {t.topic_id: name for name, t in self._source.client.metadata(None).topics.items()
                if t.topic_id is not None}

    def _revoke(self, partitions: set[TopicPartition]) -> None:
        self._assignment -= partitions
        self.listener.on_revoke(sorted(partitions))

    # --- the heartbeat thread -----------------------------------------------------

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name=f"pylog-cg-heartbeat-{self.group_id}",
                                            daemon=True)
            self._thread.start()

    def _request(self, epoch: int, full: bool) -> ConsumerGroupHeartbeatRequest:
        T = ConsumerGroupHeartbeatRequest.TopicPartitions
        with self._lock:
            topics, owned = list(self._topics), {t: sorted(ps) for t, ps in self._owned_ids.items()}
        join = epoch == JOIN
        return ConsumerGroupHeartbeatRequest(
            group_id=self.group_id, member_id=self.member_id, member_epoch=epoch,
            instance_id=self.group_instance_id, rack_id=self.client_rack,
            rebalance_timeout_ms=self.rebalance_timeout_ms if full or join else -1,
            subscribed_topic_names=topics if full or join else None, subscribed_topic_regex=None,
            server_assignor=self.remote_assignor,
            topic_partitions=[] if join else ([T(topic_id=t, partitions=ps) for t, ps in owned.items()]
                                              if full else None))

    def _loop(self) -> None:
        conn: Connection | None = None
        address = None
        try:
            while not self._closing.is_set():
                with self._lock:
                    coordinator, epoch, full, idle_left = self._coordinator, self._epoch, self._full, self._idle_left
                    idle = time.monotonic() - self._last_poll
                    if not idle_left:
                        self._full = False
                if idle_left or coordinator is None:
                    self._wake.wait(self.retry_backoff)
                    self._wake.clear()
                    continue
                if self._local is not None:
                    if not self._local_heartbeat(epoch, full, idle):
                        return
                    continue
                try:
                    if conn is None or conn.closed or address != coordinator:
                        if conn is not None:
                            conn.close()
                        address = coordinator
                        conn = coordinator_connection(self._source, coordinator[1], coordinator[2],
                                                      self.request_timeout)
                    if epoch > 0 and idle > self.max_poll_interval:
                        self._leave_for_poll_timeout(conn, idle)
                        continue
                    resp = conn.request(self._request(epoch, full), HEARTBEAT_VERSION)
                except ConnectionClosedError as e:
                    # A TLS refusal is logged louder: retrying will not cure it.
                    log.log(logging.WARNING if isinstance(e, SslAuthenticationError) else logging.INFO,
                            "consumer group heartbeat to %s:%s failed: %s", coordinator[1], coordinator[2], e)
                    conn = None
                    self._on_error(Errors.COORDINATOR_NOT_AVAILABLE, full)
                    continue
                self._on_response(resp, full)
                with self._lock:
                    interval = self._interval if self._epoch > 0 else self.retry_backoff
                if self._wake.wait(interval):
                    self._wake.clear()
        finally:
            if conn is not None:
                conn.close()

    def _local_heartbeat(self, epoch: int, full: bool, idle: float) -> bool:
        """One heartbeat to the embedded store's coordinator, then the wait
        until the next; False once the store is closed."""
        from ..errors import PylogError
        try:
            if epoch > 0 and idle > self.max_poll_interval:
                self._leave_for_poll_timeout(None, idle)
                return True
            resp = self._local.handle(self._request(epoch, full), HEARTBEAT_VERSION)
        except PylogError as e:
            log.info("group %s: the embedded store stopped answering: %s", self.group_id, e)
            return False
        self._on_response(resp, full)
        with self._lock:
            interval = self._interval if self._epoch > 0 else self.retry_backoff
        if self._wake.wait(interval):
            self._wake.clear()
        return True

    def _leave_for_poll_timeout(self, conn: Connection | None, idle: float) -> None:
        """As Java's consumer: a member that stopped polling leaves so the
        group can move on; its partitions are lost, the next poll joins again."""
        log.warning("poll() not called for %.1f s (max.poll.interval.ms %d): leaving group %s", idle,
                    int(self.max_poll_interval * 1000), self.group_id)
        leave = self._request(LEAVE_STATIC if self.group_instance_id else LEAVE, full=False)
        try:
            if conn is None:
                self._local.handle(leave, HEARTBEAT_VERSION)
            else:
                conn.request(leave, HEARTBEAT_VERSION)
        except Exception as e:  # noqa: BLE001 - the session ends it anyway
            log.info("leaving group %s failed: %s", self.group_id, e)
        with self._lock:
            self._epoch, self._lost, self._given, self._owned_ids = JOIN, True, None, {}
            self._idle_left = True

    def _on_response(self, resp, full: bool) -> None:
        code = resp.error_code
        if code:
            self._on_error(code, full, resp.error_message)
            return
        with self._lock:
            self._epoch = resp.member_epoch
            self._interval = resp.heartbeat_interval_ms / 1000
            if resp.assignment is not None:
                self._given = {tp.topic_id: list(tp.partitions) for tp in resp.assignment.topic_partitions}

    def _on_error(self, code: int, full: bool, message: str | None = None) -> None:
        with self._lock:
            self._full = self._full or full     # what a lost request carried goes again
            if code in _REJOIN:
                log.info("group %s: member %s must rejoin (error %d)", self.group_id, self.member_id, code)
                self._epoch, self._lost, self._full, self._given = JOIN, True, True, None
                self._owned_ids = {}
            elif code in COORDINATOR_ERRORS:
                if code != Errors.COORDINATOR_LOAD_IN_PROGRESS:
                    self._coordinator = None
            else:
                # INVALID_REQUEST, UNSUPPORTED_ASSIGNOR, UNRELEASED_INSTANCE_ID,
                # GROUP_MAX_SIZE_REACHED, GROUP_ID_NOT_FOUND...: fatal, as in librdkafka.
                self._fatal = error_for(code, f"group {self.group_id!r}: {message or 'heartbeat refused'}")
                self._closing.set()
        time.sleep(self.retry_backoff)
