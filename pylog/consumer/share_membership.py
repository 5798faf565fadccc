"""ShareMembership: a ShareConsumer's membership of a share group (KIP-932),
by ShareGroupHeartbeat v1 to the group coordinator.

The broker assigns (a share group's partitions may be given to several
members at once); the member only heartbeats and takes what it is given.
A background thread sends the heartbeats, every heartbeat interval the
broker names, so a member whose application works long between polls keeps
its membership (share groups have no max.poll.interval.ms). It stores the
latest assignment ({topic id: partitions}); the user thread reads it with
take_assignment() in poll().

The member makes its id once (a UUID, as Kafka's clients do for v1) and
keeps it across rejoins. UNKNOWN_MEMBER_ID / FENCED_MEMBER_EPOCH start it
again at epoch 0; the coordinator errors find the coordinator again; any
other error is fatal and raised from the next poll (as librdkafka and
Kafka's client do).

With local_store (ShareConsumer(log_dir=...)), the same member talks to the
embedded store's own group coordinator in-process (LocalStore.handle), so
share consumers of one process share a group, as ConsumerProtocolMembership
does for KIP-848 groups.

Thread-safety: public methods are for the user's thread; the heartbeat
thread shares only the fields under self._lock.
"""
from __future__ import annotations

import logging
import threading
import uuid

from ..client.errors import COORDINATOR_ERRORS, ConnectionClosedError, SslAuthenticationError, error_for
from ..errors import PylogError
from ..protocol.error_codes import Errors
from ..protocol.messages import ShareGroupHeartbeatRequest

__all__ = ["HEARTBEAT_VERSION", "ShareMembership"]

log = logging.getLogger("pylog.consumer.share")

HEARTBEAT_VERSION = 1
JOIN, LEAVE = 0, -1
_REJOIN = frozenset({Errors.FENCED_MEMBER_EPOCH, Errors.UNKNOWN_MEMBER_ID})


class ShareMembership:
    """See the module docstring. coordinator(refresh) -> (host, port) of
    the group coordinator and connect(host, port) -> Connection are the
    network transport's (ignored with local_store)."""

    def __init__(self, group_id: str, *, coordinator=None, connect=None, local_store=None, client_rack=None,
                 request_timeout_ms: int = 30000, retry_backoff_ms: int = 100, member_id: str | None = None,
                 release=None):
        self.group_id = group_id
        self.member_id = member_id or str(uuid.uuid4())
        self.client_rack = client_rack
        self.request_timeout = request_timeout_ms / 1000
        self.retry_backoff = retry_backoff_ms / 1000
        self._find = coordinator
        self._connect = connect
        self._local = local_store
        self._release = release      # frees what coordinator/connect used, once the thread ended
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._topics: list[str] = []
        self._send_topics = True     # the next heartbeat names the subscription
        self._epoch = JOIN
        self._interval = 0.0
        self._given = None           # the latest assignment, not yet taken by the user thread
        self._fatal = None
        self._thread: threading.Thread | None = None

    # --- the user thread ----------------------------------------------------------

    def subscribe(self, topics) -> None:
        with self._lock:
            topics = sorted(set(topics))
            if topics != self._topics:
                self._topics = topics
                self._send_topics = True
        self._wake.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"pylog-share-heartbeat-{self.group_id}",
                                            daemon=True)
            self._thread.start()

    def epoch(self) -> int:
        with self._lock:
            return self._epoch

    def take_assignment(self):
        """The assignment the broker gave since the last call ({topic id:
        [partitions]}), else None; raises a fatal heartbeat error."""
        with self._lock:
            fatal, given, self._given = self._fatal, self._given, None
        if fatal is not None:
            raise fatal
        return given

    def close(self) -> None:
        """Stop heartbeating and leave the group (epoch -1), best effort."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.request_timeout + 1)
        with self._lock:
            epoch, self._epoch = self._epoch, JOIN
        try:
            if epoch > 0:
                req = self._request(LEAVE)
                if self._local is not None:
                    self._local.handle(req, HEARTBEAT_VERSION)
                else:
                    host, port = self._find(False)
                    with self._connect(host, port) as conn:
                        conn.request(req, HEARTBEAT_VERSION)
        except Exception as e:  # noqa: BLE001 - leaving is best effort: the session times out anyway
            log.info("leaving share group %s failed: %s", self.group_id, e)
        finally:
            if self._release is not None:
                self._release()

    # --- the heartbeat thread -------------------------------------------------------

    def _request(self, epoch: int) -> ShareGroupHeartbeatRequest:
        with self._lock:
            topics = list(self._topics) if (self._send_topics or epoch == JOIN) else None
            self._send_topics = False
        return ShareGroupHeartbeatRequest(group_id=self.group_id, member_id=self.member_id, member_epoch=epoch,
                                          rack_id=self.client_rack if epoch == JOIN else None,
                                          subscribed_topic_names=topics)

    def _loop(self) -> None:
        conn = None
        refresh = False
        try:
            while not self._closing.is_set():
                with self._lock:
                    epoch, sent_topics = self._epoch, self._send_topics
                req = self._request(epoch)
                try:
                    if self._local is not None:
                        resp = self._local.handle(req, HEARTBEAT_VERSION)
                    else:
                        if conn is None or conn.closed or refresh:
                            if conn is not None:
                                conn.close()
                            conn = None
                            conn = self._connect(*self._find(refresh))
                            refresh = False
                        resp = conn.request(req, HEARTBEAT_VERSION)
                except ConnectionClosedError as e:
                    log.log(logging.WARNING if isinstance(e, SslAuthenticationError) else logging.INFO,
                            "share group heartbeat of %s failed: %s", self.group_id, e)
                    conn, refresh = None, True
                    self._retry(sent_topics)
                    continue
                except PylogError as e:
                    if self._local is not None:   # the embedded store closed
                        log.info("share group %s: the embedded store stopped answering: %s", self.group_id, e)
                        return
                    log.info("share group %s: coordinator not found yet: %s", self.group_id, e)
                    refresh = True
                    self._retry(sent_topics)
                    continue
                except Exception:  # noqa: BLE001 - a dead heartbeat thread would silently lose the membership
                    log.exception("share group %s: heartbeat failed; trying again", self.group_id)
                    if conn is not None:
                        conn.close()
                    conn, refresh = None, True
                    self._retry(sent_topics)
                    continue
                code = resp.error_code
                if code:
                    if code in COORDINATOR_ERRORS:
                        refresh = code != Errors.COORDINATOR_LOAD_IN_PROGRESS
                    elif code in _REJOIN:
                        log.info("share group %s: member %s rejoins (error %d)", self.group_id, self.member_id, code)
                        with self._lock:
                            self._epoch, self._given = JOIN, {}
                    else:
                        with self._lock:
                            self._fatal = error_for(code, f"share group {self.group_id!r}: "
                                                          f"{resp.error_message or 'heartbeat refused'}")
                        return
                    self._retry(sent_topics)
                    continue
                with self._lock:
                    self._epoch = resp.member_epoch
                    self._interval = resp.heartbeat_interval_ms / 1000
                    if resp.assignment is not None:
                        self._given = {tp.topic_id: sorted(tp.partitions) for tp in resp.assignment.topic_partitions}
                    interval = self._interval
                if self._wake.wait(interval):
                    self._wake.clear()
        finally:
            if conn is not None:
                conn.close()

    def _retry(self, sent_topics: bool) -> None:
        with self._lock:
            self._send_topics = self._send_topics or sent_topics   # a lost request's subscription goes again
        if self._wake.wait(self.retry_backoff):
            self._wake.clear()
