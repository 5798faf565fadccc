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

A SASL_PLAINTEXT broker (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; each user with
a SCRAM credential too; handle.sasl_client_config(mechanism, user) gives
librdkafka's settings):

    @pytest.mark.kafka_broker(sasl_users={"alice": "alice-secret"})
"""
from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "kafka_broker(config=None, sasl_users=None, sasl_mechanisms=None): Kafka config keys for the "
                   "kafka_broker fixture's broker; SASL users (a SASL_PLAINTEXT listener)")


@pytest.fixture
def kafka_broker(request, tmp_path):
    from .testing import FAST_GROUP_CONFIG, running_broker
    marker = request.node.get_closest_marker("kafka_broker")
    config = {**FAST_GROUP_CONFIG, **((marker.kwargs.get("config") or {}) if marker else {})}
    kw = {k: marker.kwargs[k] for k in ("sasl_users", "sasl_mechanisms") if marker and marker.kwargs.get(k)}
    with running_broker(tmp_path / "kafka-data", config=config, **kw) as handle:
        yield handle
