"""GroupMembership: a Consumer's membership of a classic consumer group.

Java's model (KAFKA-NOTES §5.2): JoinGroup and SyncGroup run on the user's
thread inside poll() (ensure_active), without blocking past the poll's
timeout: a JoinGroup the coordinator holds stays in flight and is picked up
by a later poll. A background thread sends Heartbeat every
heartbeat_interval_ms on a connection of its own, so processing between
polls does not cost the membership; when poll() has not been called for
max_poll_interval_ms that thread leaves the group, and the next poll joins
again with its partitions lost.

The heartbeat thread never calls the listener: it only sets flags
(rejoin needed, partitions lost, fenced) that ensure_active() acts on.
Rebalance protocols: EAGER revokes the whole assignment before joining;
COOPERATIVE (KIP-429) keeps owned partitions while joining, revokes only
what the new assignment takes away, and joins once more when it revoked
something so those partitions can be given to their new owner.
"""
from __future__ import annotations

import logging
import threading
import time

from ..client.errors import COORDINATOR_ERRORS, ConnectionClosedError, error_for
from ..client.wire import Connection, wait_readable
from ..protocol.error_codes import Errors
from ..protocol.messages import (
    ConsumerProtocolSubscription,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    SyncGroupRequest,
)
from ..protocol.types import INT16
from ..structs import TopicPartition

__all__ = ["GroupMembership", "subscribed_topics"]

log = logging.getLogger("pylog.consumer")

JOIN_GROUP_VERSION = 5
SYNC_GROUP_VERSION = 3
HEARTBEAT_VERSION = 3
LEAVE_GROUP_VERSION = 1


_UNJOINED, _JOINING, _SYNCING, _STABLE = "unjoined", "joining", "syncing", "stable"


def subscribed_topics(metadata) -> list[str]:
    """The topics in a member's ConsumerProtocolSubscription bytes (int16
    version + body; a version above ours is read as its known prefix)."""
    mv = memoryview(metadata)
    if len(mv) < 2:
        return []
    version = min(INT16.unpack_from(mv, 0)[0], ConsumerProtocolSubscription.VALID_VERSIONS[1])
    sub, _ = ConsumerProtocolSubscription.decode_from(mv, 2, max(version, 0))
    return list(sub.topics)


class GroupMembership:
    """This consumer's membership of group_id, over the network.

    Invariants: the listener is called only from ensure_active() and close(),
    i.e. on the user's poll thread; assignment() is the set of partitions the
    user currently owns (after on_assign, before on_revoke / on_lost);
    generation() is (-1, member id or "") whenever this member holds no valid
    generation. Thread-safety: every public method is for the user's thread;
    the heartbeat thread shares only the fields under self._lock.
    """

    def __init__(self, group_id: str, *, listener, assignors: list, session_timeout_ms: int,
                 rebalance_timeout_ms: int, heartbeat_interval_ms: int,
                 group_instance_id: str | None, source, client_id: str = "pylog",
                 request_timeout_ms: int = 30000, retry_backoff_ms: int = 100,
                 max_poll_interval_ms: int | None = None):
        if not assignors:
            raise ValueError("at least one partition assignment strategy is needed")
        self.group_id = group_id
        self.listener = listener
        self.assignors = list(assignors)
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval = heartbeat_interval_ms / 1000
        # Java sends max.poll.interval.ms as the rebalance timeout; the two
        # are the same unless a caller says otherwise.
        self.max_poll_interval = (max_poll_interval_ms or rebalance_timeout_ms) / 1000
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.request_timeout = request_timeout_ms / 1000
        self.retry_backoff = retry_backoff_ms / 1000
        self._source = source
        self._topics: set[str] = set()
        self._assignment: set[TopicPartition] = set()
        self._state = _UNJOINED
        self._conn: Connection | None = None       # the user thread's coordinator connection
        self._coordinator: tuple[int, str, int] | None = None
        self._protocol: str | None = None
        self._retry_at = 0.0
        # Shared with the heartbeat thread.
        self._lock = threading.Lock()
        self._generation = -1
        self._member_id = ""
        self._rejoin_needed = True
        self._lost = False
        self._fenced = None
        self._last_poll = time.monotonic()
        self._closing = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None

    # --- public ---------------------------------------------------------------

    def subscribe(self, topics: set[str]) -> None:
        topics = set(topics)
        if topics != self._topics:
            self._topics = topics
            with self._lock:
                self._rejoin_needed = True

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def generation(self) -> tuple[int, str]:
        with self._lock:
            return self._generation, self._member_id

    def note_poll(self) -> None:
        with self._lock:
            self._last_poll = time.monotonic()

    def ensure_active(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            with self._lock:
                fenced, lost, rejoin = self._fenced, self._lost, self._rejoin_needed
                self._lost = False
            if fenced is not None:
                raise fenced
            if lost:
                self._partitions_lost()
            if self._state == _STABLE and not rejoin:
                return True
            if self._state == _STABLE:
                self._state = _UNJOINED
            if self._state == _UNJOINED:
                now = time.monotonic()
                if self._retry_at > now:
                    if self._retry_at > deadline:
                        time.sleep(max(0.0, deadline - now))
                        return False
                    time.sleep(self._retry_at - now)
                if not self._send_join():
                    continue  # backing off (_retry_at) or out of time
            remaining = deadline - time.monotonic()
            if not self._response_ready(max(0.0, remaining)):
                return False
            self._handle_response()
            if self._state != _STABLE and time.monotonic() >= deadline:
                return False

    def close(self, leave: bool = True) -> None:
        self._closing.set()
        t = self._heartbeat_thread
        if t is not None:
            t.join(self.request_timeout + 1)
        if self._assignment:
            generation, _ = self.generation()
            if generation >= 0:
                self._revoke(set(self._assignment))
            else:
                self._partitions_lost()
        generation, member_id = self.generation()
        # A static member keeps its place (KIP-345): LeaveGroup v1 cannot name
        # an instance id, and Java does not send one either.
        if leave and member_id and self.group_instance_id is None:
            try:
                conn = self._fresh_connection()
                resp = conn.request(LeaveGroupRequest(group_id=self.group_id, member_id=member_id),
                                    LEAVE_GROUP_VERSION)
                if resp.error_code:
                    log.info("LeaveGroup of %s: error %d", self.group_id, resp.error_code)
            except Exception as e:  # noqa: BLE001 - leaving is best effort: the session expires anyway
                log.info("LeaveGroup of %s failed: %s", self.group_id, e)
        with self._lock:
            self._generation, self._member_id = -1, ""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- listener steps -------------------------------------------------------

    def _revoke(self, partitions: set[TopicPartition]) -> None:
        self._assignment -= partitions
        self.listener.on_revoke(sorted(partitions))

    def _partitions_lost(self) -> None:
        lost = set(self._assignment)
        self._assignment.clear()
        if lost:
            self.listener.on_lost(sorted(lost))

    def _protocol_type_of(self, name: str | None):
        for a in self.assignors:
            if a.name == name:
                return a
        return self.assignors[0]

    # --- coordinator connection -----------------------------------------------

    def _fresh_connection(self) -> Connection:
        if self._conn is not None and not self._conn.closed and not self._conn.in_flight:
            return self._conn
        if self._conn is not None:
            self._conn.close()
        if self._coordinator is None:
            self._coordinator = self._source.find_coordinator(self.group_id)
        _node, host, port = self._coordinator
        # A JoinGroup may be held for the whole rebalance timeout.
        timeout = max(self.request_timeout, self.rebalance_timeout_ms / 1000 + 5)
        self._conn = coordinator_connection(self._source, host, port, timeout)
        return self._conn

    def _coordinator_lost(self, why) -> None:
        log.info("coordinator of group %s lost: %s", self.group_id, why)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._coordinator = None
        self._state = _UNJOINED
        self._retry_at = time.monotonic() + self.retry_backoff

    def _response_ready(self, timeout: float) -> bool:
        conn = self._conn
        if conn is None or conn.closed:
            self._state = _UNJOINED
            return False
        ready, _ = wait_readable([conn], (), timeout)
        return bool(ready)

    # --- join / sync ----------------------------------------------------------

    def _send_join(self) -> bool:
        """Prepare (revoke under EAGER) and send JoinGroup; False if the
        coordinator could not be reached (retried after a backoff)."""
        generation, member_id = self.generation()
        if self._assignment:
            # As Java: cooperative only when every configured assignor is.
            eager = any(a.protocol == "EAGER" for a in self.assignors)
            if generation < 0:
                self._partitions_lost()
            elif eager:
                self._revoke(set(self._assignment))
        with self._lock:
            self._rejoin_needed = False
        owned = sorted(self._assignment)
        topics = sorted(self._topics)
        protocols = [JoinGroupRequest.JoinGroupRequestProtocol(
            name=a.name, metadata=a.subscription_metadata(topics, owned, generation))
            for a in self.assignors]
        body = JoinGroupRequest(
            group_id=self.group_id, session_timeout_ms=self.session_timeout_ms,
            rebalance_timeout_ms=self.rebalance_timeout_ms, member_id=member_id,
            group_instance_id=self.group_instance_id, protocol_type="consumer", protocols=protocols)
        try:
            self._fresh_connection().send(body, JOIN_GROUP_VERSION)
        except Exception as e:
            if not isinstance(e, (ConnectionClosedError,)) and getattr(e, "error_code", None) not in COORDINATOR_ERRORS:
                raise
            self._coordinator_lost(e)
            with self._lock:
                self._rejoin_needed = True
            return False
        self._state = _JOINING
        return True

    def _handle_response(self) -> None:
        try:
            resp = self._conn.receive()
        except ConnectionClosedError as e:
            self._coordinator_lost(e)
            return
        if self._state == _JOINING:
            self._on_join(resp)
        else:
            self._on_sync(resp)

    def _on_error(self, code: int, what: str) -> None:
        """The common handling of a JoinGroup / SyncGroup error: go back to
        UNJOINED with the member state the error calls for."""
        self._state = _UNJOINED
        if code in COORDINATOR_ERRORS:
            self._coordinator_lost(f"{what}: error {code}")
            return
        if code == Errors.FENCED_INSTANCE_ID:
            with self._lock:
                self._fenced = error_for(code, f"{what}: group instance id {self.group_instance_id!r} "
                                               "is used by another consumer")
            raise self._fenced
        with self._lock:
            if code == Errors.UNKNOWN_MEMBER_ID:
                self._generation, self._member_id = -1, ""
            elif code == Errors.ILLEGAL_GENERATION:
                self._generation = -1
            elif code != Errors.REBALANCE_IN_PROGRESS:
                raise error_for(code, f"{what} of group {self.group_id!r}")
        log.info("%s of group %s: error %d, joining again", what, self.group_id, code)

    def _on_join(self, resp) -> None:
        code = resp.error_code
        if code == Errors.MEMBER_ID_REQUIRED:
            # KIP-394: the coordinator named our member id; join again with it.
            with self._lock:
                self._member_id = resp.member_id
            self._state = _UNJOINED
            return
        if code:
            self._on_error(code, "JoinGroup")
            return
        with self._lock:
            self._generation, self._member_id = resp.generation_id, resp.member_id
        self._protocol = resp.protocol_name
        assignments = []
        if resp.leader == resp.member_id:
            assignments = self._assign(resp.protocol_name, resp.members)
        body = SyncGroupRequest(group_id=self.group_id, generation_id=resp.generation_id,
                                member_id=resp.member_id, group_instance_id=self.group_instance_id,
                                assignments=assignments)
        try:
            self._conn.send(body, SYNC_GROUP_VERSION)
        except ConnectionClosedError as e:
            self._coordinator_lost(e)
            return
        self._state = _SYNCING

    def _assign(self, protocol: str, members) -> list:
        """Leader only: run the chosen assignor over every member's topics."""
        assignor = self._protocol_type_of(protocol)
        subscriptions = {m.member_id: bytes(m.metadata) for m in members}
        topics = set()
        for metadata in subscriptions.values():
            topics.update(subscribed_topics(metadata))
        counts: dict[str, int] = {}
        for t in sorted(topics):
            parts = self._source.partitions_for(t, refresh=True)
            if parts:
                counts[t] = len(parts)
        instance_ids = {m.member_id: m.group_instance_id for m in members}
        result = assignor.assign(counts, subscriptions, instance_ids)
        return [SyncGroupRequest.SyncGroupRequestAssignment(member_id=m, assignment=bytes(a))
                for m, a in result.items()]

    def _on_sync(self, resp) -> None:
        code = resp.error_code
        if code:
            self._on_error(code, "SyncGroup")
            return
        from .assignors import decode_assignment
        assigned = set(decode_assignment(bytes(resp.assignment)))
        owned = set(self._assignment)
        revoked = owned - assigned
        added = assigned - owned
        self._state = _STABLE
        self._start_heartbeats()
        if revoked:
            self._revoke(revoked)
            # KIP-429: the revoked partitions go to their new owner in a
            # follow-up rebalance.
            with self._lock:
                self._rejoin_needed = True
        self._assignment = assigned
        self.listener.on_assign(sorted(added))

    # --- heartbeats -----------------------------------------------------------

    def _start_heartbeats(self) -> None:
        if self._heartbeat_thread is None or not self._heartbeat_thread.is_alive():
            self._heartbeat_thread = threading.Thread(
                target=self._heartbeat_loop, name=f"pylog-heartbeat-{self.group_id}", daemon=True)
            self._heartbeat_thread.start()

    def _heartbeat_loop(self) -> None:
        conn: Connection | None = None
        address = None
        try:
            while not self._closing.wait(self.heartbeat_interval):
                if self._state not in (_STABLE, _SYNCING):
                    continue
                coordinator = self._coordinator
                if coordinator is None:
                    continue
                with self._lock:
                    generation, member_id = self._generation, self._member_id
                    idle = time.monotonic() - self._last_poll
                if generation < 0:
                    continue
                try:
                    if conn is None or conn.closed or address != coordinator:
                        if conn is not None:
                            conn.close()
                        address = coordinator
                        conn = coordinator_connection(self._source, coordinator[1], coordinator[2],
                                                      self.request_timeout)
                    if idle > self.max_poll_interval:
                        self._leave_for_poll_timeout(conn, member_id, idle)
                        continue
                    resp = conn.request(HeartbeatRequest(
                        group_id=self.group_id, generation_id=generation, member_id=member_id,
                        group_instance_id=self.group_instance_id), HEARTBEAT_VERSION)
                except ConnectionClosedError as e:
                    log.info("heartbeat to %s:%s failed: %s", coordinator[1], coordinator[2], e)
                    conn = None
                    continue
                self._on_heartbeat(resp.error_code, generation)
        finally:
            if conn is not None:
                conn.close()

    def _on_heartbeat(self, code: int, generation: int) -> None:
        if code == Errors.NONE:
            return
        with self._lock:
            if self._generation != generation:
                return  # answered for a generation we have already left
            if code == Errors.REBALANCE_IN_PROGRESS:
                self._rejoin_needed = True
            elif code in (Errors.ILLEGAL_GENERATION, Errors.UNKNOWN_MEMBER_ID):
                self._generation = -1
                if code == Errors.UNKNOWN_MEMBER_ID:
                    self._member_id = ""
                self._lost = self._rejoin_needed = True
            elif code == Errors.FENCED_INSTANCE_ID:
                self._fenced = error_for(code, f"group instance id {self.group_instance_id!r} "
                                               "is used by another consumer")
            elif code in COORDINATOR_ERRORS:
                self._rejoin_needed = True
            else:
                log.warning("heartbeat of group %s: error %d", self.group_id, code)
        if code in COORDINATOR_ERRORS:
            self._coordinator = None
        log.debug("heartbeat of group %s: error %d", self.group_id, code)

    def _leave_for_poll_timeout(self, conn: Connection, member_id: str, idle: float) -> None:
        """As Java: a member that stopped polling gives its partitions up so
        the group can move on; the next poll joins again."""
        log.warning("poll() not called for %.1f s (max.poll.interval.ms %d): leaving group %s",
                    idle, int(self.max_poll_interval * 1000), self.group_id)
        if self.group_instance_id is None:
            try:
                conn.request(LeaveGroupRequest(group_id=self.group_id, member_id=member_id),
                             LEAVE_GROUP_VERSION)
            except ConnectionClosedError:
                pass
        with self._lock:
            self._generation = -1
            self._member_id = ""
            self._lost = self._rejoin_needed = True


def coordinator_connection(source, host: str, port: int, timeout: float) -> Connection:
    """A connection to the group coordinator with the consumer's client id,
    TLS and SASL (those of the network source's client); the classic and the
    consumer-protocol memberships open theirs here."""
    return source.client.open_connection(host, port, timeout)
