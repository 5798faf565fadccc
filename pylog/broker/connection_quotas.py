"""Connection limits: Kafka's ConnectionQuotas (SocketServer.scala).

Broker keys (Kafka's names and defaults, 2147483647 meaning no limit):
- max.connections: connections the broker holds at once, over every listener
  but the inter-broker one (when there are several listeners, Kafka's
  "protected" listener); listener.name.<l>.max.connections for one listener.
- max.connection.creation.rate: new connections per second accepted, broker
  wide (the inter-broker listener apart, as above);
  listener.name.<l>.max.connection.creation.rate for one listener.
- max.connections.per.ip, and max.connections.per.ip.overrides
  ("host:count,host:count", a host an address or a name resolved at start).
- connection_creation_rate of an `ip` quota entity (AlterClientQuotas; the
  default ip entity for every address without its own).

What happens over each limit is what Kafka's acceptor does:
- max.connections (broker or listener) and the creation rates delay
  accepting. Kafka's acceptor thread stops calling accept() until a slot
  frees, or for the throttle time of the rate ((rate - bound) / bound x
  window, capped at one window), leaving newer connections in the kernel's
  backlog behind it. asyncio accepts every connection itself, so pylog holds
  the accepted one instead: it reads nothing from it, and the connections
  behind it on its listener wait in arrival order, until Kafka's acceptor
  would have taken it. A held connection is not yet counted. The client sees
  what it sees with Kafka: a TCP connection that gets no answer yet.
- max.connections.per.ip: once accepted, a connection from an address that
  already holds its maximum is closed at once (Kafka's
  TooManyConnectionsException).
- an ip's connection_creation_rate: a connection that puts the address over
  its rate is not counted, taken back out of the rate, and closed once the
  throttle time has passed (Kafka's ConnectionThrottledException and its
  delayed close), so a client reconnecting in a loop is slowed down too.

Rates are quota_rate.Rate over quota.window.num samples of
quota.window.size.seconds, as Kafka's connection rate sensors.

Not done as Kafka: when the inter-broker listener pushes the broker over
max.connections, Kafka closes the least recently used connection of another
listener; pylog lets the broker stay over its limit until connections close.

Threads: the broker's event loop only.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import deque

from ..errors import InvalidConfigError
from .quota_rate import Rate
from .quotas import CONNECTION_CREATION_RATE, IP, entity_of

log = logging.getLogger("pylog.broker.quotas")

UNLIMITED = (1 << 31) - 1   # Kafka's Int.MaxValue: no limit


def normalize_ip(host: str) -> str:
    """The one spelling of an address (an IPv4-mapped IPv6 peer is its IPv4
    address), so overrides and quotas match whatever the socket reported."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def parse_overrides(text: str) -> dict[str, int]:
    """max.connections.per.ip.overrides: "host:count,..." -> {ip: count};
    InvalidConfigError for what Kafka refuses."""
    out: dict[str, int] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, count = item.rpartition(":")
        host = host.strip().strip("[]")
        try:
            n = int(count)
        except ValueError:
            n = -1
        if not sep or not host or n < 0:
            raise InvalidConfigError(f"Invalid value {text!r} for configuration max.connections.per.ip.overrides: "
                                     f"expected host:count entries with count >= 0, not {item!r}")
        try:
            ip = normalize_ip(str(ipaddress.ip_address(host)))
        except ValueError:
            try:
                ip = normalize_ip(socket.gethostbyname(host))
            except OSError:
                raise InvalidConfigError(f"max.connections.per.ip.overrides contains invalid addresses : {host}") \
                    from None
        out[ip] = n
    return out


class _Listener:
    __slots__ = ("count", "held", "max_connections", "name", "protected", "rate", "rate_bound", "releasing")

    def __init__(self, name, max_connections, rate_bound, protected, rate):
        self.name = name
        self.max_connections = max_connections
        self.rate_bound = rate_bound
        self.rate = rate
        self.protected = protected
        self.count = 0
        self.held: deque = deque()     # connections accepted, not yet let in, in arrival order
        self.releasing = None          # the timer letting the head of held in after its throttle


class ConnectionQuotas:
    """Threads: the broker's event loop only."""

    def __init__(self, config, listener_names, inter_broker_listener, clock=time.monotonic):
        self._clock = clock
        self.samples = config.get("quota.window.num")
        self.window_s = config.get("quota.window.size.seconds")
        self.max_throttle_ms = self.window_s * 1000
        self.max_connections = config.get("max.connections")
        self.per_ip = config.get("max.connections.per.ip")
        self.per_ip_overrides = parse_overrides(config.get("max.connections.per.ip.overrides"))
        now = clock() * 1000.0
        self.rate_bound = config.get("max.connection.creation.rate")
        self.rate = Rate(self.samples, self.window_s, now) if self.rate_bound < UNLIMITED else None
        names = list(dict.fromkeys(listener_names))
        self.listeners: dict[str, _Listener] = {}
        for name in names:
            mc = config.listener_int(name, "max.connections")
            rb = config.listener_int(name, "max.connection.creation.rate")
            self.listeners[name] = _Listener(
                name, mc, rb, name == inter_broker_listener and len(names) > 1,
                Rate(self.samples, self.window_s, now) if rb < UNLIMITED else None)
        self.total = 0
        self.by_ip: dict[str, int] = {}
        self.ip_rates: dict[str, Rate] = {}
        self.ip_bounds: dict[str, int] = {}
        self.ip_default = None

    def reconfigure(self, config) -> None:
        """New limits from a dynamic broker config change (Kafka's
        ConnectionQuotas.updateMaxConnections / updateBrokerMaxConnectionRate /
        updateMaxConnectionsPerIp): connections already in stay; held ones get in
        if the new limits let them. On the event loop."""
        now = self._clock() * 1000.0
        self.max_connections = config.get("max.connections")
        self.per_ip = config.get("max.connections.per.ip")
        self.per_ip_overrides = parse_overrides(config.get("max.connections.per.ip.overrides"))
        bound = config.get("max.connection.creation.rate")
        if bound != self.rate_bound:
            self.rate_bound = bound
            if bound >= UNLIMITED:
                self.rate = None
            elif self.rate is None:
                self.rate = Rate(self.samples, self.window_s, now)
        for lq in self.listeners.values():
            lq.max_connections = config.listener_int(lq.name, "max.connections")
            rb = config.listener_int(lq.name, "max.connection.creation.rate")
            if rb != lq.rate_bound:
                lq.rate_bound = rb
                lq.rate = None if rb >= UNLIMITED else (lq.rate or Rate(self.samples, self.window_s, now))
        for lq in self.listeners.values():
            if lq.held and lq.releasing is None:
                self._drain(lq)

    # ---- ip quotas (AlterClientQuotas entity "ip") ----

    def set_table(self, table: dict) -> None:
        bounds: dict[str, int] = {}
        default = None
        for path, configs in table.items():
            if not path.startswith("ips/") or CONNECTION_CREATION_RATE not in configs:
                continue
            try:
                value = int(float(configs[CONNECTION_CREATION_RATE]))
            except ValueError:
                continue
            name = entity_of(path)[IP]
            if name is None:
                default = value
            else:
                bounds[normalize_ip(name)] = value
        self.ip_bounds, self.ip_default = bounds, default

    def _ip_bound(self, ip):
        bound = self.ip_bounds.get(ip, self.ip_default)
        return None if bound is None or bound >= UNLIMITED else bound

    def sweep(self) -> None:
        now = self._clock() * 1000.0
        for ip in [ip for ip, r in self.ip_rates.items() if r.idle(now)]:
            del self.ip_rates[ip]

    # ---- connections ----

    def accepted(self, conn) -> None:
        """A connection was accepted on conn.listener: let it in now, hold
        it, or close it (module doc). conn.hold() / conn.admit() /
        conn.close() / conn.close_after(ms) do what is decided."""
        lq = self.listeners.get(conn.listener.name)
        if lq is None:
            lq = self.listeners[conn.listener.name] = _Listener(conn.listener.name, UNLIMITED, UNLIMITED, False, None)
        conn.quota_recorded = False
        conn.quota_waiting = True
        lq.held.append(conn)
        self._drain(lq)
        if conn.quota_waiting:
            conn.hold()

    def _released(self, lq) -> None:
        """The head connection's creation throttle is over: it gets in as
        soon as a slot is free, and the connections behind it follow."""
        lq.releasing = None
        self._drain(lq)

    def _drain(self, lq) -> None:
        """Let in the held connections of lq, in arrival order, while Kafka's
        acceptor would take them: each one's creation is recorded when it
        reaches the head (the acceptor's accept()), it waits out the
        throttle that gives, then for a free slot."""
        while lq.held and lq.releasing is None:
            conn = lq.held[0]
            if conn.closed:
                lq.held.popleft()
                continue
            if not conn.quota_recorded:
                conn.quota_recorded = True
                throttle = self._record_creation(lq)
                if throttle > 0:
                    lq.releasing = asyncio.get_running_loop().call_later(throttle / 1000.0, self._released, lq)
                    return
            if not self._slot_available(lq):
                return
            lq.held.popleft()
            conn.quota_waiting = False
            self._let_in(lq, conn)

    def _record_creation(self, lq) -> int:
        """Kafka's recordConnectionAndGetThrottleTimeMs: the broker-wide rate
        (not for the protected listener) and the listener's, the longer
        delay, capped at one window."""
        now = self._clock() * 1000.0
        throttle = 0
        if self.rate is not None and not lq.protected:
            throttle = self.rate.record_and_throttle(1, self.rate_bound, now)
        if lq.rate is not None:
            throttle = max(throttle, lq.rate.record_and_throttle(1, lq.rate_bound, now))
        return min(throttle, self.max_throttle_ms)

    def _slot_available(self, lq) -> bool:
        if lq.count >= lq.max_connections:
            return False
        return lq.protected or self.total < self.max_connections

    def _let_in(self, lq, conn) -> None:
        ip = normalize_ip(conn.peer_host)
        bound = self._ip_bound(ip)
        if bound is not None:
            now = self._clock() * 1000.0
            rate = self.ip_rates.get(ip)
            if rate is None:
                rate = self.ip_rates[ip] = Rate(self.samples, self.window_s, now)
            throttle = min(rate.record_and_throttle(1, bound, now), self.max_throttle_ms)
            if throttle > 0:
                # Taken back out of every rate it was counted in (Kafka's
                # updateListenerMetrics), then closed after the delay.
                rate.record(-1, now)
                if self.rate is not None and not lq.protected:
                    self.rate.record(-1, now)
                if lq.rate is not None:
                    lq.rate.record(-1, now)
                log.debug("throttling connections from %s for %d ms (connection_creation_rate=%d)",
                          ip, throttle, bound)
                conn.close_after(throttle)
                return
        count = self.by_ip.get(ip, 0)
        limit = self.per_ip_overrides.get(ip, self.per_ip)
        if count >= limit:
            log.info("Rejected connection from %s, address already has the configured maximum of %d connections.",
                     ip, limit)
            conn.close()
            return
        self.by_ip[ip] = count + 1
        self.total += 1
        lq.count += 1
        conn.quota_ip = ip
        conn.admit()

    def closed(self, conn) -> None:
        """conn is gone: its slot (if it had one) goes to a held connection."""
        lq = self.listeners.get(conn.listener.name)
        ip = getattr(conn, "quota_ip", None)
        if ip is None:
            if lq is not None and lq.held and lq.held[0] is conn and lq.releasing is None:
                self._drain(lq)  # the head gave up waiting: the next one may get in
            return
        conn.quota_ip = None
        n = self.by_ip.get(ip, 0) - 1
        if n > 0:
            self.by_ip[ip] = n
        else:
            self.by_ip.pop(ip, None)
        self.total -= 1
        if lq is not None:
            lq.count -= 1
        # A slot freed: held connections of this listener, then of the others
        # (the broker-wide limit is shared).
        for other in ([lq] if lq is not None else []) + [x for x in self.listeners.values() if x is not lq]:
            if other.held and other.releasing is None:
                self._drain(other)
