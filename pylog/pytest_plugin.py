"""pytest plugin (registered by installing pylog): a real Kafka-protocol broker per test.

    def test_roundtrip(kafka_broker):
        p = confluent_kafka.Producer({"bootstrap.servers": kafka_broker})
        ...

`kafka_broker` starts an in-process pylog broker on 127.0.0.1 with an
ephemeral port and its data in the test's tmp_path, yields its handle (a str
equal to the bootstrap address, with .broker, .data_dir and .restart()), and
stops it afterwards. Broker settings use Kafka's keys, through a marker:

    @pytest.mark.kafka_broker(config={"num.partitions": "3"})

The broker has pylog.testing.FAST_GROUP_CONFIG (the first rebalance after
100 ms instead of Kafka's 3 s, session timeouts from 1 s) and one replica of
__consumer_offsets; a key in the marker's config wins, e.g.
config={"group.initial.rebalance.delay.ms": "3000"} for Kafka's delay.

A TLS broker: tls=True (or tls="required" / "requested" for
ssl.client.auth) makes a throw-away CA and broker certificate
(pylog.testing.TestCertificates, in tmp_path) and serves one SSL listener;
the handle's .certs has the CA file (ca.pem) and issue() for client
certificates:

    @pytest.mark.kafka_broker(tls="required")
    def test_mtls(kafka_broker):
        cert, key, _ = kafka_broker.certs.issue("alice")
        confluent_kafka.Producer({"bootstrap.servers": kafka_broker, "security.protocol": "SSL",
                                  "ssl.ca.location": kafka_broker.certs.ca,
                                  "ssl.certificate.location": cert, "ssl.key.location": key})

A SASL_PLAINTEXT broker (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; each user with
a SCRAM credential too; handle.sasl_client_config(mechanism, user) gives
librdkafka's settings); with tls=True as well, a SASL_SSL one:

    @pytest.mark.kafka_broker(sasl_users={"alice": "alice-secret"})
"""
from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "kafka_broker(config=None, tls=False, sasl_users=None, sasl_mechanisms=None): Kafka config "
                   "keys for the kafka_broker fixture's broker; tls=True|'requested'|'required' serves an SSL "
                   "listener with test certificates; sasl_users a SASL_PLAINTEXT (with tls, SASL_SSL) one")


@pytest.fixture
def kafka_broker(request, tmp_path):
    from .testing import FAST_GROUP_CONFIG, TestCertificates, running_broker
    marker = request.node.get_closest_marker("kafka_broker")
    tls = marker.kwargs.get("tls", False) if marker else False
    kw = {k: marker.kwargs[k] for k in ("sasl_users", "sasl_mechanisms") if marker and marker.kwargs.get(k)}
    certs = None
    config = dict(FAST_GROUP_CONFIG)
    if tls:
        certs = TestCertificates(tmp_path / "certs")
        if kw.get("sasl_users") is not None:
            config.update(certs.broker_config("SASL_SSL"), **{"listener.security.protocol.map": "SASL_SSL:SASL_SSL"})
            kw["sasl_protocol"] = "SASL_SSL"
        else:
            config.update(certs.broker_config(client_auth=tls if isinstance(tls, str) else "none"))
    config.update((marker.kwargs.get("config") or {}) if marker else {})
    with running_broker(tmp_path / "kafka-data", config=config, **kw) as handle:
        handle.certs = certs
        yield handle
