"""Kafka's listeners on one broker: several named listeners bound at once,
listener.security.protocol.map (PLAINTEXT and SSL, tests/security; SASL is
refused at start), advertised.listeners, inter.broker.listener.name and
control.plane.listener.name checked as Kafka's KafkaConfig checks them, and
each client answered with the addresses of the listener it came in on. The
cluster side (replication and controller traffic on their own listeners) is
tests/cluster/test_listeners.py."""
from __future__ import annotations

import subprocess
import sys

import pytest
from kafkawire import Wire

from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.protocol import messages as m
from pylog.testing import running_broker

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import admin as ck_admin  # noqa: E402

TWO = {"listeners": "CLIENT://127.0.0.1:0,REPLICATION://127.0.0.1:0",
       "listener.security.protocol.map": "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT",
       "inter.broker.listener.name": "REPLICATION"}


def test_one_listener_of_any_name_is_every_role(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config={
            "listeners": "INTERNAL://127.0.0.1:0", "listener.security.protocol.map": "INTERNAL:PLAINTEXT",
            "inter.broker.listener.name": "internal"}) as b:
        assert b.broker.config.inter_broker_listener_name() == "INTERNAL"
        md = ck_admin.AdminClient({"bootstrap.servers": str(b)}).list_topics(timeout=10)
        assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", b.port)]


@pytest.mark.parametrize("props, words", [
    # Kafka's own rules and messages
    ({"inter.broker.listener.name": "INTERNAL"}, "must be a listener name defined in advertised.listeners"),
    ({"listeners": "CLIENT://127.0.0.1:0"}, "No security protocol defined for listener CLIENT"),
    ({"listeners": "PLAINTEXT://127.0.0.1:9000,PLAINTEXT://127.0.0.1:9001"}, "different name"),
    ({"listeners": "PLAINTEXT://127.0.0.1:9000,OTHER://127.0.0.1:9000",
      "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT"}, "different port"),
    # several listeners, none named PLAINTEXT, no inter-broker one named
    ({**TWO, "inter.broker.listener.name": None}, "must be a listener name defined in advertised.listeners"),
    ({**TWO, "advertised.listeners": "CLIENT://h:1,OTHER://h:2"}, "subset of the ones defined in listeners"),
    ({**TWO, "control.plane.listener.name": "REPLICATION"}, "should have a different value from the inter"),
    ({**TWO, "control.plane.listener.name": "CONTROL"}, "control.plane.listener.name must be a listener name"),
    # an SSL listener with no key store, a SASL one with no JAAS users, an
    # unknown protocol: refused, never served in the clear
    ({"listeners": "SSL://127.0.0.1:0"}, "listener SSL: a TLS listener needs a key store"),
    ({"listeners": "CLIENT://127.0.0.1:0", "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT",
      "sasl.enabled.mechanisms": "PLAIN"}, "listener CLIENT enables PLAIN but has no JAAS configuration"),
    ({"listeners": "CLIENT://127.0.0.1:0", "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT"},
     "SASL mechanism GSSAPI is not implemented by pylog"),
    ({"listeners": "CLIENT://127.0.0.1:0", "listener.security.protocol.map": "CLIENT:TLS"},
     "security protocol TLS: pylog speaks PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL"),
])
def test_listener_configs_kafka_refuses_are_refused_at_startup(props, words):
    with pytest.raises(InvalidConfigError, match=words):
        BrokerConfig({k: v for k, v in props.items() if v is not None})


def test_the_broker_command_refuses_a_tls_listener_without_a_key_store(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"),
                        "--config", "/dev/null", "--override", "listeners=SSL://127.0.0.1:0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "SSL" in r.stderr and "needs a key store" in r.stderr and "Traceback" not in r.stderr


def _ports(b):
    return {name: port for name, _host, port in b.broker.bound_listeners}


def test_each_listener_is_answered_with_its_own_addresses(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config={**TWO, "broker.id": "1"}) as b:
        ports = _ports(b)
        assert ports["CLIENT"] != ports["REPLICATION"]
        for name, port in ports.items():
            admin = ck_admin.AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
            admin.create_topics([ck_admin.NewTopic(f"t-{name}", 1, 1)])[f"t-{name}"].result(20)
            md = admin.list_topics(timeout=10)
            assert [(x.id, x.port) for x in md.brokers.values()] == [(1, port)], name
            assert md.topics[f"t-{name}"].partitions[0].leader == 1
        # A producer and a consumer on the client listener stay on it.
        p = ck.Producer({"bootstrap.servers": f"127.0.0.1:{ports['CLIENT']}"})
        p.produce("t-CLIENT", b"v")
        assert p.flush(20) == 0
        c = ck.Consumer({"bootstrap.servers": f"127.0.0.1:{ports['CLIENT']}", "group.id": "g",
                         "auto.offset.reset": "earliest"})
        c.subscribe(["t-CLIENT"])
        got = None
        for _ in range(60):
            got = c.poll(0.5)
            if got is not None and not got.error():
                break
        c.close()
        assert got is not None and got.value() == b"v"
        peers = {conn.listener.name for conn in b.broker.server.connections}
        assert peers <= {"CLIENT", "REPLICATION"}


def test_advertised_listeners_are_what_clients_are_told(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config={
            **TWO, "advertised.listeners": "CLIENT://client.example:1234,REPLICATION://127.0.0.1:0"}) as b:
        w = Wire(f"127.0.0.1:{_ports(b)['CLIENT']}")
        md = w.request(3, 5, m.MetadataRequest(topics=[], allow_auto_topic_creation=False))
        assert [(x.host, x.port) for x in md.brokers] == [("client.example", 1234)]
        w.close()


def test_a_client_listener_neither_advertises_nor_serves_the_broker_apis(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config={**TWO, "broker.id": "1"}) as b:
        ports = _ports(b)

        def keys(port):
            with Wire(f"127.0.0.1:{port}") as w:
                return {k.api_key for k in w.request(18, 3, m.ApiVersionsRequest(
                    client_software_name="t", client_software_version="1")).api_keys}
        broker_apis = {62, 63, 67}   # BrokerRegistration, BrokerHeartbeat, AllocateProducerIds
        assert not keys(ports["CLIENT"]) & broker_apis
        assert keys(ports["REPLICATION"]) >= broker_apis
        # Sent anyway on the client listener: the connection is closed unanswered.
        w = Wire(f"127.0.0.1:{ports['CLIENT']}")
        w.send(63, 0, m.BrokerHeartbeatRequest(broker_id=1, broker_epoch=0, current_metadata_offset=0,
                                               want_fence=False, want_shut_down=True))
        w.sock.settimeout(15)
        assert w.sock.recv(1) == b""
        w.close()
