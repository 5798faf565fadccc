"""Connection limits on a real broker over real sockets, as Kafka's
ConnectionQuotas: max.connections.per.ip (and its overrides) closes the
connection past the limit, max.connections holds a new connection unanswered
until one closes, max.connection.creation.rate lets connections in at that
rate, an ip's connection_creation_rate (AlterClientQuotas, entity "ip")
closes the connections past it; all of it with confluent-kafka still working
within the limits."""
from __future__ import annotations

import socket
import struct
import time

import pytest

from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.protocol import messages as m
from pylog.testing import running_broker, wait_until

# The autouse fixture closes what conn opened and what is put in _open, here too.
from .test_controller_mutation_quota import _close_connections, _open, alter, conn, describe  # noqa: F401

SHORT_WINDOWS = {"quota.window.num": "2", "quota.window.size.seconds": "1"}
# ApiVersions v0, correlation id 7, client id "raw": one whole request frame.
API_VERSIONS = struct.pack(">hhih", 18, 0, 7, 3) + b"raw"
API_VERSIONS = struct.pack(">i", len(API_VERSIONS)) + API_VERSIONS

def raw(b, timeout=30.0):
    host, port = str(b).rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    _open.append(s)
    return s


def answered(s) -> bool:
    """Send ApiVersions on s: True when answered, False when the broker closed it."""
    try:
        s.sendall(API_VERSIONS)
        head = s.recv(8)
    except (ConnectionError, OSError):
        return False
    return len(head) == 8 and struct.unpack(">ii", head)[1] == 7


def usable(c) -> bool:
    return c.request(m.ApiVersionsRequest(), api_version=0).error_code == 0


def test_max_connections_per_ip_closes_the_fourth_while_three_stay_usable():
    with running_broker(config={"max.connections.per.ip": "3"}) as b:
        three = [conn(b, f"c{i}") for i in range(3)]
        assert all(usable(c) for c in three)
        assert not answered(raw(b))   # Kafka: "address already has the configured maximum of 3 connections"
        assert all(usable(c) for c in three)
        # One closes: a new one gets its slot.
        three[0].close()
        wait_until(lambda: answered(raw(b)), "a slot freed")


def test_max_connections_per_ip_overrides():
    with running_broker(config={"max.connections.per.ip": "1",
                                "max.connections.per.ip.overrides": "127.0.0.1:2,10.1.2.3:7"}) as b:
        assert usable(conn(b, "c")) and usable(conn(b, "c"))
        assert not answered(raw(b))
    with pytest.raises(InvalidConfigError, match="can be set to zero only if"):
        BrokerConfig({"max.connections.per.ip": "0"})
    BrokerConfig({"max.connections.per.ip": "0", "max.connections.per.ip.overrides": "localhost:5"})
    with pytest.raises(InvalidConfigError, match="max.connections.per.ip.overrides"):
        BrokerConfig({"max.connections.per.ip.overrides": "127.0.0.1"})


def test_max_connections_holds_a_new_connection_until_one_closes():
    ck_admin = pytest.importorskip("confluent_kafka.admin")
    with running_broker(config={"max.connections": "2"}) as b:
        first, second = conn(b, "c"), conn(b, "c")
        assert usable(first) and usable(second)
        waiting = raw(b, timeout=60)
        waiting.sendall(API_VERSIONS)
        waiting.settimeout(1.0)
        with pytest.raises(socket.timeout):   # accepted by the kernel, not by the broker yet
            waiting.recv(8)
        first.close()
        waiting.settimeout(60)
        head = waiting.recv(8)
        assert struct.unpack(">ii", head)[1] == 7
        second.close()
        waiting.close()
        # A real client within the limit works.
        admin = ck_admin.AdminClient({"bootstrap.servers": str(b)})
        assert admin.list_topics(timeout=30).brokers


def test_listener_max_connections_override():
    cfg = BrokerConfig({"max.connections": "10", "listener.name.plaintext.max.connections": "1"})
    assert cfg.listener_int("PLAINTEXT", "max.connections") == 1
    assert cfg.listener_int("OTHER", "max.connections") == 10
    with pytest.raises(InvalidConfigError, match="Invalid max.connections 0"):
        BrokerConfig({"listener.name.plaintext.max.connections": "0"})
    with running_broker(config={"listener.name.plaintext.max.connections": "1"}) as b:
        assert usable(conn(b, "c"))
        waiting = raw(b)
        waiting.sendall(API_VERSIONS)
        waiting.settimeout(1.0)
        with pytest.raises(socket.timeout):
            waiting.recv(8)


def test_max_connection_creation_rate_takes_connections_at_that_rate():
    rate = 10
    with running_broker(config={**SHORT_WINDOWS, "max.connection.creation.rate": str(rate)}) as b:
        times = []
        for _ in range(130):
            s = raw(b, timeout=60)
            assert answered(s)
            times.append(time.monotonic())
            s.close()
            _open.remove(s)
        # Past the first window's burst, connections get in at the rate,
        # measured over 100 of them (about 10 s).
        steady = times[-101:]
        measured = 100 / (steady[-1] - steady[0])
        assert 0.9 * rate <= measured <= 1.1 * rate, measured


def test_ip_connection_creation_rate_quota():
    with running_broker(config=SHORT_WINDOWS) as b:
        admin = conn(b, "admin")
        assert alter(admin, [([("ip", "127.0.0.1")], [("connection_creation_rate", 2.0)]),
                             ([("ip", None)], [("connection_creation_rate", 100.0)])]) == [(0, None)] * 2
        assert describe(admin, [("ip", 2, None)]) == [
            ((("ip", "127.0.0.1"),), (("connection_creation_rate", 2.0),)),
            ((("ip", None),), (("connection_creation_rate", 100.0),))]
        wait_until(lambda: b.broker.connection_quotas.ip_bounds.get("127.0.0.1") == 2, "the ip quota enforced")
        outcomes = []
        for _ in range(10):
            s = raw(b)
            outcomes.append(answered(s))
            s.close()
            _open.remove(s)
        # A couple get in; the rest are closed (after the throttle time).
        assert 1 <= outcomes.count(True) <= 6 and outcomes.count(False) >= 4, outcomes
        assert usable(admin)   # connections already in are not touched
        assert alter(admin, [([("ip", "127.0.0.1")], [("connection_creation_rate", None)])]) == [(0, None)]
        wait_until(lambda: "127.0.0.1" not in b.broker.connection_quotas.ip_bounds, "the ip quota removed")
        for _ in range(10):
            s = raw(b)
            assert answered(s)
            s.close()
            _open.remove(s)
