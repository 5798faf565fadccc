"""A broker's link to the embedded controller (no ZooKeeper): it registers
(BrokerRegistration, 62), heartbeats (BrokerHeartbeat, 63) and claims
producer-id blocks (AllocateProducerIds, 67), the APIs a KRaft broker uses
with its controller. pylog's controller answers them on its ordinary listener
(KRaft has a separate controller listener); pylog.controller.listener names it.
"""
from __future__ import annotations

import logging
import threading
import uuid

from ..client.errors import error_for
from ..errors import PylogError
from ..protocol.error_codes import Errors
from ..protocol.pylog_tags import controller_epoch_of
from ..protocol.messages import (
    AllocateProducerIdsRequest,
    BrokerHeartbeatRequest,
    BrokerRegistrationRequest,
    MetadataRequest,
)
from .metadata_store import SECURITY_PROTOCOL_IDS
from .metadata_store import BrokerInfo

__all__ = ["ControllerClient"]

log = logging.getLogger("pylog.cluster.client")

RETRY_BACKOFF_S = 0.5


class ControllerClient:
    """Registration and heartbeats of one broker with the embedded controller.

    Invariants: broker_epoch is -1 until a registration succeeds and again
    whenever the controller stops knowing this broker (its restart, or a missed
    session), which makes the next round register anew with the same
    incarnation id; ``registered`` is set once the first registration succeeded.
    Thread-safety: the client's own thread registers and heartbeats; other
    threads may call allocate_producer_ids; one lock serializes the connection.
    """

    def __init__(self, controller: str, info: BrokerInfo, heartbeat_interval_ms: int = 2000,
                 request_timeout_s: float = 10.0, ssl_context=None, sasl=None):
        host, _, port = controller.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"pylog.controller.listener must be host:port, not {controller!r}")
        self.controller_host, self.controller_port = host, int(port)
        self.info = info
        self._ssl = ssl_context   # the inter-broker listener's client SSLContext; None for PLAINTEXT
        self._sasl = sasl   # the inter-broker listener's SASL credentials, or None
        self.incarnation_id = uuid.uuid4()
        self.broker_epoch = -1
        self.cluster_id: str | None = None
        self.registered = threading.Event()
        self._interval_s = heartbeat_interval_ms / 1000.0
        self._timeout_s = request_timeout_s
        self._lock = threading.Lock()
        self._conn = None
        self._closed = False     # stopped: no connection is opened again
        self._failing = False
        self._stop = threading.Event()
        self._wake = threading.Event()   # stop() or poke(): the thread's wait ends early
        # The controller epoch its last answer carried (pylog's tagged field),
        # and how many answers carried one: the broker checks a new controller
        # epoch against an answer that came after it asked (poke).
        self.controller_epoch: int | None = None
        self.epoch_answers = 0
        self._thread = threading.Thread(target=self._run, name=f"pylog-controller-client-{info.broker_id}",
                                        daemon=True)

    def start(self) -> "ControllerClient":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop heartbeating; a registered broker says it is shutting down, so
        the controller drops it at once instead of after its session timeout."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._timeout_s + 1)
        if self.broker_epoch >= 0:
            try:
                self._heartbeat(want_shut_down=True)
            except (OSError, PylogError) as e:
                log.info("broker %d: no goodbye to the controller: %s", self.info.broker_id, e)
        with self._lock:
            self._close()
            self._closed = True

    # ---- requests ----

    def allocate_producer_ids(self, size: int) -> tuple[int, int]:
        """(first id, count) of a block of producer ids claimed by the
        controller for this broker; the controller chooses the count."""
        resp = self._request(AllocateProducerIdsRequest(broker_id=self.info.broker_id,
                                                        broker_epoch=self.broker_epoch), 0)
        if resp.error_code:
            raise error_for(resp.error_code, "the controller gave no producer id block")
        return resp.producer_id_start, resp.producer_id_len

    def poke(self) -> None:
        """Heartbeat now rather than at the next interval (any thread): its
        answer brings the controller's current epoch. Only the client's own
        thread uses its connection."""
        self._wake.set()

    def _note_epoch(self, resp) -> None:
        epoch = controller_epoch_of(resp) if resp.error_code == 0 else None
        if epoch is not None:
            self.controller_epoch = epoch
            self.epoch_answers += 1

    def _register(self) -> None:
        i = self.info
        req = BrokerRegistrationRequest(
            broker_id=i.broker_id, cluster_id=self.cluster_id or "", incarnation_id=self.incarnation_id,
            listeners=[BrokerRegistrationRequest.Listener(name=name, host=host, port=port,
                                                          security_protocol=SECURITY_PROTOCOL_IDS[i.protocol(name)])
                       for name, host, port in i.all_endpoints()],
            features=[], rack=i.rack)
        resp = self._request(req, 0)
        if resp.error_code:
            raise error_for(resp.error_code, f"the controller refused broker {i.broker_id}'s registration")
        # At once: the controller may already be sending requests with it.
        self._note_epoch(resp)
        self.broker_epoch = resp.broker_epoch
        md = self._request(MetadataRequest(topics=[], allow_auto_topic_creation=False), 5)
        self.cluster_id = md.cluster_id
        log.info("broker %d registered with the controller at %s:%d (epoch %d, cluster %s)", i.broker_id,
                 self.controller_host, self.controller_port, self.broker_epoch, self.cluster_id)
        self.registered.set()

    def _heartbeat(self, want_shut_down: bool = False) -> int:
        resp = self._request(BrokerHeartbeatRequest(
            broker_id=self.info.broker_id, broker_epoch=self.broker_epoch, current_metadata_offset=0,
            want_fence=False, want_shut_down=want_shut_down), 0)
        self._note_epoch(resp)
        return resp.error_code

    def _request(self, body, version: int):
        from ..client.wire import Connection
        with self._lock:
            if self._closed:
                # A producer-id block asked for on a worker thread as the broker
                # stops: a connection opened now would never be closed.
                raise ConnectionError("the controller client is stopped")
            try:
                if self._conn is None:
                    self._conn = Connection(self.controller_host, self.controller_port,
                                            client_id=f"broker-{self.info.broker_id}", timeout=self._timeout_s,
                                            ssl_context=self._ssl, sasl=self._sasl)
                return self._conn.request(body, api_version=version)
            except BaseException:
                self._close()   # a half-read answer must not be taken for the next one's
                raise

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # ---- the client's thread ----

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self._interval_s
            try:
                if self.broker_epoch < 0 or not self.registered.is_set():
                    self._register()   # again after a failed cluster id read: same incarnation, same epoch
                else:
                    code = self._heartbeat()
                    if code in (Errors.BROKER_ID_NOT_REGISTERED, Errors.STALE_BROKER_EPOCH):
                        # The controller restarted or let this broker's session
                        # lapse: register again now (same incarnation).
                        log.warning("broker %d: the controller answered the heartbeat with error %d; "
                                    "registering again", self.info.broker_id, code)
                        self.broker_epoch = -1
                        wait = 0
                    elif code:
                        log.warning("broker %d: heartbeat error %d", self.info.broker_id, code)
                if self._failing:
                    log.info("broker %d: the controller at %s:%d answers again", self.info.broker_id,
                             self.controller_host, self.controller_port)
                    self._failing = False
            except (OSError, PylogError) as e:
                if not self._failing:   # once per outage, not every retry
                    log.warning("broker %d: controller at %s:%d unreachable or refusing: %s",
                                self.info.broker_id, self.controller_host, self.controller_port, e)
                    self._failing = True
                wait = RETRY_BACKOFF_S if self.broker_epoch < 0 else self._interval_s
            self._wake.wait(wait)
            self._wake.clear()
