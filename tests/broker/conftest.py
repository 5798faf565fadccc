"""Fixtures for the broker tests: real brokers on ephemeral ports, real clients.

- ``broker``: one broker per test module (num.partitions=3, auto-creation on),
  for tests that only create their own uniquely named topics.
- ``broker_no_auto``: one broker per module with auto.create.topics.enable=false.
- ``fresh_broker``: a broker of its own, for tests that restart it.
- ``topic``: a topic name unique to the test (not created).
"""
from __future__ import annotations

import re
import uuid

import pytest

from pylog.testing import running_broker


@pytest.fixture(scope="module")
def broker():
    with running_broker(config={"num.partitions": "3"}) as b:
        yield b


@pytest.fixture(scope="module")
def broker_no_auto():
    with running_broker(config={"num.partitions": "1", "auto.create.topics.enable": "false"}) as b:
        yield b


@pytest.fixture
def fresh_broker():
    with running_broker(config={"num.partitions": "1"}) as b:
        yield b


@pytest.fixture
def topic(request):
    base = re.sub(r"[^a-zA-Z0-9._-]", "_", request.node.name)[:60]
    return f"{base}-{uuid.uuid4().hex[:8]}"
