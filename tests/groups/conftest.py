"""Fixtures for the consumer-group tests: real brokers on ephemeral ports, real
clients (confluent-kafka, kafka-python, aiokafka) over real sockets.

Brokers here use short group timings so rebalances and expiries take well
under a second or two: group.initial.rebalance.delay.ms=100 and
group.min.session.timeout.ms=1000 (clients then use session timeouts of a
few seconds and heartbeat every 300 ms).

- ``gbroker``: one broker per test module, for tests that only use their own
  uniquely named topics and groups.
- ``fresh_gbroker``: a broker of its own, for tests that restart it.
- ``topic`` / ``group``: names unique to the test (nothing is created).
"""
from __future__ import annotations

import logging

import pytest

from pylog.testing import FAST_GROUP_CONFIG, running_broker

GROUP_CONFIG = {**FAST_GROUP_CONFIG, "num.partitions": "1"}


@pytest.fixture(scope="module")
def gbroker():
    with running_broker(config=GROUP_CONFIG) as b:
        yield b


@pytest.fixture
def fresh_gbroker():
    with running_broker(config=GROUP_CONFIG) as b:
        yield b


@pytest.fixture
def group_log(caplog):
    """The coordinator's log (logger "pylog.groups", INFO: state transitions,
    expiries) as captured records."""
    caplog.set_level(logging.INFO, logger="pylog.groups")
    return caplog
