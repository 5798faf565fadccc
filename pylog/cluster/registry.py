"""The embedded controller's broker registry: registrations kept alive by
heartbeats, standing in for ZooKeeper's ephemeral /brokers/ids/<id> nodes.

A broker that is not the controller registers over the wire (BrokerRegistration,
api key 62) and then heartbeats (BrokerHeartbeat, 63) every
broker.heartbeat.interval.ms, as a KRaft broker does. Each registration is held
by a LocalMetadataStore session of its own on the controller's metadata
directory, so when a broker misses its heartbeats for broker.session.timeout.ms
its session is closed and the Controller sees the broker die exactly as it sees a
ZooKeeper session end (its broker watch fires, leaders move).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

from ..protocol.error_codes import Errors
from .local_store import LocalMetadataStore
from .metadata_store import BrokerIdInUseError, BrokerInfo

__all__ = ["BrokerRegistry"]

log = logging.getLogger("pylog.cluster.registry")


@dataclasses.dataclass
class _Registration:
    """Threads: any, under the BrokerRegistry's lock only."""

    session: LocalMetadataStore
    incarnation_id: uuid.UUID
    broker_epoch: int
    deadline: float


class BrokerRegistry:
    """Registrations of the brokers other than the controller's own.

    Invariants: at most one registration (one store session) per broker id; a
    broker's epoch is new with every new incarnation of it, so heartbeats from a
    process that was replaced are refused (STALE_BROKER_EPOCH); a registration
    whose deadline passed is closed within one check interval.
    Thread-safety: every method may be called from any thread (one lock); the
    expiry runs on the registry's own thread. Sessions are closed outside the
    lock, since closing one notifies the Controller's watchers.
    """

    CHECK_INTERVAL_S = 0.2

    def __init__(self, path: str, session_timeout_ms: int, clock=time.monotonic):
        self.path = path
        self.session_timeout_s = session_timeout_ms / 1000.0
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[int, _Registration] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._expire_loop, name="pylog-broker-registry", daemon=True)

    def start(self) -> "BrokerRegistry":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Drop every registration (the controller is going away: its brokers
        re-register with the next one)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        with self._lock:
            held, self._by_id = list(self._by_id.values()), {}
        for r in held:
            r.session.close()

    def register(self, info: BrokerInfo, incarnation_id: uuid.UUID) -> tuple[int, int]:
        """(error_code, broker_epoch). The same incarnation registering again (a
        retried request) gets its epoch back; a new incarnation replaces the old
        registration; an id held elsewhere (the controller broker's own, or a
        ZooKeeper-style session on the same store) is DUPLICATE_BROKER_REGISTRATION."""
        replaced = None
        with self._lock:
            if self._stop.is_set():   # this controller is going away: register with the next one
                return Errors.NOT_CONTROLLER, -1
            now = self._clock()
            held = self._by_id.get(info.broker_id)
            if held is not None and held.incarnation_id == incarnation_id:
                held.deadline = now + self.session_timeout_s
                return 0, held.broker_epoch
            if held is not None:
                replaced = self._by_id.pop(info.broker_id)
        if replaced is not None:
            log.info("broker %d registers again as a new incarnation: its old registration is dropped",
                     info.broker_id)
            replaced.session.close()
        session = LocalMetadataStore(self.path)
        try:
            session.register_broker(info)
        except BrokerIdInUseError:
            session.close()
            return Errors.DUPLICATE_BROKER_REGISTRATION, -1
        except BaseException:
            session.close()
            raise
        # The store hands out the epoch (one counter with the controller
        # broker's own registration), and the controller reads it there.
        epoch = session.registered_broker_epoch()
        with self._lock:
            stopped = self._stop.is_set()
            if not stopped:
                reg = _Registration(session, incarnation_id, epoch, self._clock() + self.session_timeout_s)
                raced = self._by_id.get(info.broker_id)
                self._by_id[info.broker_id] = reg
        if stopped:
            # stop() ran while the store wrote this registration: nobody would
            # ever close its session, and the next controller (in this process)
            # would find the id held and refuse the broker for good.
            session.close()
            return Errors.NOT_CONTROLLER, -1
        if raced is not None:   # two registrations of one id at once: the later one wins
            raced.session.close()
        log.info("broker %d registered at %s:%d with epoch %d", info.broker_id, info.host, info.port,
                 reg.broker_epoch)
        return 0, reg.broker_epoch

    def heartbeat(self, broker_id: int, broker_epoch: int, want_shut_down: bool = False) -> int:
        """An error code: 0, BROKER_ID_NOT_REGISTERED (register again) or
        STALE_BROKER_EPOCH (a replaced incarnation). want_shut_down ends the
        registration at once (the broker has already moved its leadership away
        by controlled shutdown), so the controller does not wait out its session."""
        with self._lock:
            held = self._by_id.get(broker_id)
            if held is None:
                return Errors.BROKER_ID_NOT_REGISTERED
            if held.broker_epoch != broker_epoch:
                return Errors.STALE_BROKER_EPOCH
            if not want_shut_down:
                held.deadline = self._clock() + self.session_timeout_s
                return 0
            del self._by_id[broker_id]
        log.info("broker %d is shutting down: registration dropped", broker_id)
        held.session.close()
        return 0

    def broker_epoch(self, broker_id: int) -> int | None:
        with self._lock:
            held = self._by_id.get(broker_id)
            return held.broker_epoch if held is not None else None

    def registered(self) -> set[int]:
        with self._lock:
            return set(self._by_id)

    def expire(self) -> list[int]:
        """Close the registrations whose heartbeats stopped; returns their ids."""
        with self._lock:
            now = self._clock()
            gone = [bid for bid, r in self._by_id.items() if r.deadline < now]
            dropped = [self._by_id.pop(bid) for bid in gone]
        for bid, r in zip(gone, dropped):
            log.warning("broker %d sent no heartbeat for %.1f s: registration dropped", bid,
                        self.session_timeout_s)
            r.session.close()
        return gone

    def _expire_loop(self) -> None:
        while not self._stop.wait(self.CHECK_INTERVAL_S):
            try:
                self.expire()
            except Exception:  # never let the expiry thread die: brokers would never be declared dead
                log.exception("broker registry expiry failed")
