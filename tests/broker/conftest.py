"""Fixtures for the broker tests: real brokers on ephemeral ports, real clients.

- ``broker``: one broker per test module (num.partitions=3, auto-creation on),
  for tests that only create their own uniquely named topics.
- ``broker_no_auto``: one broker per module with auto.create.topics.enable=false.
- ``fresh_broker``: a broker of its own, for tests that restart it.
- ``topic``: a topic name unique to the test (not created).
"""
from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
import warnings

import pytest

from pylog.testing import running_broker


def _import_kafka_python():
    """kafka-python 3 loads its protocol schemas with importlib.resources.read_text,
    deprecated in Python 3.11; import all of it once with that warning silenced
    (the test-suite turns warnings into errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            importlib.import_module("kafka")
        except ImportError:
            return
        for group in ("admin", "consumer", "metadata", "producer"):
            pkg = importlib.import_module(f"kafka.protocol.{group}")
            for info in pkgutil.iter_modules(pkg.__path__):
                importlib.import_module(f"kafka.protocol.{group}.{info.name}")


_import_kafka_python()


def pytest_collection_modifyitems(items):
    # ... and in case a module is only imported lazily, while a test runs.
    for item in items:
        if "tests/broker/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings(
                "ignore:read_text is deprecated:DeprecationWarning"))


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
