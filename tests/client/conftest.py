"""Fixtures for the Consumer tests: a real pylog broker on an ephemeral port,
real confluent-kafka clients over real sockets.

The broker uses short group timings (group.initial.rebalance.delay.ms=100,
group.min.session.timeout.ms=1000, as tests/groups does) so rebalances take
well under a second; consumers in these tests use session timeouts of a few
seconds and heartbeat every few hundred ms.

- ``cbroker``: one broker per test module (num.partitions=3); tests use
  their own uniquely named topics and groups.
- ``topic`` / ``group``: names unique to the test (nothing is created).
- ``produce(bootstrap, topic, messages, **config)``: confluent-kafka
  producer; returns the delivered messages' (partition, offset, key, value,
  headers, timestamp) in delivery order.
"""
from __future__ import annotations

import confluent_kafka
import pytest

from pylog.testing import FAST_GROUP_CONFIG, running_broker

CLIENT_CONFIG = {**FAST_GROUP_CONFIG, "num.partitions": "3"}

# Consumer settings for group tests: fast failure detection, fast heartbeats.
FAST_GROUP = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 200}


@pytest.fixture(scope="module")
def cbroker():
    with running_broker(config=CLIENT_CONFIG) as b:
        yield b


def produce(bootstrap, topic, messages, **config):
    """Produce (partition, key, value, headers, timestamp_ms) tuples with
    confluent-kafka and wait for every delivery; returns
    {(partition, offset): (key, value, headers, timestamp)}."""
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 5}
    conf.update(config)
    p = confluent_kafka.Producer(conf)
    delivered = {}
    errors = []

    def on_delivery(err, msg, headers):
        if err is not None:
            errors.append(err)
            return
        # Delivery reports carry no headers: keep the ones sent.
        delivered[(msg.partition(), msg.offset())] = (
            msg.key(), msg.value(), headers or [], msg.timestamp()[1])

    for partition, key, value, headers, ts in messages:
        while True:
            try:
                p.produce(topic, value=value, key=key, partition=partition, headers=headers,
                          timestamp=ts or 0,
                          on_delivery=lambda err, msg, h=headers: on_delivery(err, msg, h))
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(30) == 0
    assert not errors, errors[:3]
    return delivered


def create_topic(bootstrap, topic, partitions=3):
    from pylog.client import Client
    with Client(bootstrap) as c:
        c.create_topics(topic, partitions=partitions)
        c.wait_for_leaders(topic)
