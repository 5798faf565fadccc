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

__all__ = ["FAST_GROUP_CONFIG", "SINGLE_BROKER_CONFIG", "BrokerHandle", "add_scram_user", "free_port",
           "running_broker", "sasl_config", "wait_until"]

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
        self.sasl_users: dict[str, str] = {}
        return self

    @property
    def bootstrap(self) -> str:
        return str(self)

    def sasl_client_config(self, mechanism: str, user: str, password: str | None = None) -> dict:
        """librdkafka's (confluent-kafka's, kcat's) settings to reach this
        SASL broker as user (its password from sasl_users unless given)."""
        return {"bootstrap.servers": str(self), "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
                "sasl.username": user,
                "sasl.password": password if password is not None else self.sasl_users[user]}

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


SASL_ADMIN = ("admin", "admin-secret")   # the brokers' own user in sasl_config
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def sasl_config(users: dict[str, str], mechanisms=SASL_MECHANISMS, port: int = 0) -> dict:
    """Broker settings for one SASL_PLAINTEXT listener enabling mechanisms:
    PLAIN knows users (and SASL_ADMIN) through its JAAS entry; the brokers
    authenticate to each other as SASL_ADMIN with the first mechanism. SCRAM
    users must still get credentials (add_scram_user, or running_broker's
    sasl_users)."""
    admin, secret = SASL_ADMIN
    cfg = {"listeners": f"SASL_PLAINTEXT://127.0.0.1:{port}", "sasl.enabled.mechanisms": ",".join(mechanisms),
           "sasl.mechanism.inter.broker.protocol": mechanisms[0]}
    for mech in mechanisms:
        if mech == "PLAIN":
            plain_users = " ".join(f'user_{u}="{p}"' for u, p in {admin: secret, **users}.items())
            jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{admin}" '
                    f'password="{secret}" {plain_users};')
        else:
            jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{admin}" '
                    f'password="{secret}";')
        cfg[f"listener.name.sasl_plaintext.{mech.lower()}.sasl.jaas.config"] = jaas
    return cfg


def add_scram_user(broker: Broker, user: str, password: str, mechanism: str = "SCRAM-SHA-256",
                   iterations: int = 4096) -> None:
    """Give user a SCRAM credential in the broker's metadata store, as
    AlterUserScramCredentials would (for tests that need one before any
    client can connect)."""
    from .broker.quotas import USER, entity_path
    from .broker.sasl_scram import ScramCredential
    store = broker.metadata_store
    path = entity_path({USER: user})
    config = store.entity_config(path)
    config[mechanism] = ScramCredential.from_password(mechanism, password, iterations).to_text()
    store.set_client_quotas(path, config)


@contextlib.contextmanager
def running_broker(data_dir=None, config: dict | None = None, port: int = 0, sasl_users: dict | None = None,
                   sasl_mechanisms=SASL_MECHANISMS):
    """Start a broker on 127.0.0.1:port (0: a free port) with its data in data_dir
    (a temporary directory, removed afterwards, when None), Kafka's defaults
    but SINGLE_BROKER_CONFIG under config's keys; yield its
    BrokerHandle; stop it (flushing and closing every log) on exit.
    sasl_users {user: password}: the listener is SASL_PLAINTEXT with
    sasl_mechanisms (sasl_config), and each user (SASL_ADMIN too) has a
    credential for every SCRAM mechanism enabled."""
    tmp = None
    if data_dir is None:
        tmp = data_dir = tempfile.mkdtemp(prefix="pylog-broker-")
    cfg = {"log.dirs": str(data_dir), "listeners": f"PLAINTEXT://127.0.0.1:{port}", **SINGLE_BROKER_CONFIG}
    if sasl_users is not None:
        cfg.update(sasl_config(sasl_users, tuple(sasl_mechanisms), port))
    cfg.update(config or {})
    broker = Broker(BrokerConfig(cfg)).start_in_thread()
    handle = BrokerHandle(broker, cfg)
    if sasl_users is not None:
        handle.sasl_users = {SASL_ADMIN[0]: SASL_ADMIN[1], **sasl_users}
        for mech in sasl_mechanisms:
            if mech.startswith("SCRAM-"):
                for user, password in handle.sasl_users.items():
                    add_scram_user(broker, user, password, mech)
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
