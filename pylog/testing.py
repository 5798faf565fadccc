"""A real, in-process Kafka-protocol broker for tests: the embedded Kafka.

    from pylog.testing import running_broker
    with running_broker() as broker:          # temp dir, ephemeral port
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})

With pytest, installing pylog provides the `kafka_broker` fixture (see
pylog.pytest_plugin), which yields the same handle. The handle is a str (the
bootstrap address), so it can be passed straight to any client, and has
.broker (the Broker), .data_dir, .bootstrap and restart().
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time

from .broker import Broker, BrokerConfig

__all__ = ["FAST_GROUP_CONFIG", "SINGLE_BROKER_CONFIG", "BrokerHandle", "free_port", "running_broker",
           "wait_until"]

# Broker settings for tests with consumer groups: the first rebalance waits
# 100 ms instead of 3 s, and clients may use session timeouts down to 1 s.
# The kafka_broker fixture uses them unless its marker's config says otherwise.
FAST_GROUP_CONFIG = {
    "group.initial.rebalance.delay.ms": "100",
    "group.min.session.timeout.ms": "1000",
}

# What a single broker for tests has unless config says otherwise: one
# replica of __consumer_offsets and of __transaction_state, min ISR 1 (Kafka's
# defaults are 3 and 2; its shipped config/server.properties sets 1 for a
# single development broker too).
SINGLE_BROKER_CONFIG = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
}


class BrokerHandle(str):
    """The bootstrap address "host:port" of a running in-process broker."""

    broker: Broker
    data_dir: str

    def __new__(cls, broker: Broker, config: dict):
        self = super().__new__(cls, broker.bootstrap)
        self.broker = broker
        self.data_dir = broker.data_dir
        self._config = config
        return self

    @property
    def bootstrap(self) -> str:
        return str(self)

    @property
    def port(self) -> int:
        return self.broker.advertised_port

    def restart(self) -> BrokerHandle:
        """Stop the broker cleanly and start it again on the same port and data."""
        self.broker.stop_in_thread()
        cfg = dict(self._config)
        # Every listener again on the port it had.
        cfg["listeners"] = ",".join(f"{name}://{host}:{port}" for name, host, port in self.broker.bound_listeners)
        self.broker = Broker(BrokerConfig(cfg)).start_in_thread()
        return self


def free_port() -> int:
    """A loopback port free at the time of the call, for a broker process a
    test starts itself (running_broker binds port 0 and needs none)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_broker(data_dir=None, config: dict | None = None, port: int = 0):
    """Start a broker on 127.0.0.1:port (0: a free port) with its data in data_dir
    (a temporary directory, removed afterwards, when None), Kafka's defaults
    but SINGLE_BROKER_CONFIG under config's keys; yield its
    BrokerHandle; stop it (flushing and closing every log) on exit."""
    tmp = None
    if data_dir is None:
        tmp = data_dir = tempfile.mkdtemp(prefix="pylog-broker-")
    cfg = {"log.dirs": str(data_dir), "listeners": f"PLAINTEXT://127.0.0.1:{port}", **SINGLE_BROKER_CONFIG}
    cfg.update(config or {})
    broker = Broker(BrokerConfig(cfg)).start_in_thread()
    handle = BrokerHandle(broker, cfg)
    try:
        yield handle
    finally:
        handle.broker.stop_in_thread()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def wait_until(cond, what="condition", timeout=60.0):
    """cond()'s first true value, polled every 50 ms; AssertionError naming
    what after timeout seconds (a deadline for a loaded machine, not a bound)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
