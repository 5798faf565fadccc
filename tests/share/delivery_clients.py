"""What the delay and priority tests share: a module's broker, wall-clock
milliseconds (record timestamps are wall-clock), a producer."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from pylog.testing import running_broker

from .wire import CONFIG, create_topic, set_group_configs

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def now_ms():
    return int(time.time() * 1000)


def producer(b):
    return Producer({"bootstrap.servers": str(b), "acks": "all", "linger.ms": 5})


def setup(b, topic, group):
    """A one-partition topic and a share group reading it from the start: a producer to it."""
    create_topic(b, topic)
    set_group_configs(b, group, share_auto_offset_reset="earliest")
    return producer(b)
