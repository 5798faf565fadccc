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

__all__ = ["FAST_GROUP_CONFIG", "SINGLE_BROKER_CONFIG", "BrokerHandle", "TestCertificates", "add_scram_user",
           "free_port", "running_broker", "sasl_config", "wait_until"]

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
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
}


class BrokerHandle(str):
    """The bootstrap address "host:port" of a running in-process broker."""

    broker: Broker
    data_dir: str
    certs = None   # the TestCertificates of a TLS broker made by the kafka_broker fixture

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
        conf = {"bootstrap.servers": str(self), "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
                "sasl.username": user,
                "sasl.password": password if password is not None else self.sasl_users[user]}
        if self._config.get("listeners", "").startswith("SASL_SSL:"):
            conf["security.protocol"] = "SASL_SSL"
            if self.certs is not None:
                conf["ssl.ca.location"] = self.certs.ca
        return conf

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


def sasl_config(users: dict[str, str], mechanisms=SASL_MECHANISMS, port: int = 0,
                protocol: str = "SASL_PLAINTEXT") -> dict:
    """Broker settings for one SASL_PLAINTEXT listener enabling mechanisms:
    PLAIN knows users (and SASL_ADMIN) through its JAAS entry; the brokers
    authenticate to each other as SASL_ADMIN with the first mechanism. SCRAM
    users must still get credentials (add_scram_user, or running_broker's
    sasl_users)."""
    admin, secret = SASL_ADMIN
    cfg = {"listeners": f"{protocol}://127.0.0.1:{port}", "sasl.enabled.mechanisms": ",".join(mechanisms),
           "sasl.mechanism.inter.broker.protocol": mechanisms[0]}
    for mech in mechanisms:
        if mech == "PLAIN":
            plain_users = " ".join(f'user_{u}="{p}"' for u, p in {admin: secret, **users}.items())
            jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{admin}" '
                    f'password="{secret}" {plain_users};')
        elif mech == "OAUTHBEARER":   # Kafka's unsecured-JWS validator, its default options
            jaas = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
        else:
            jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{admin}" '
                    f'password="{secret}";')
        cfg[f"listener.name.{protocol.lower()}.{mech.lower()}.sasl.jaas.config"] = jaas
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
                   sasl_mechanisms=SASL_MECHANISMS, sasl_protocol: str = "SASL_PLAINTEXT"):
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
        cfg.update(sasl_config(sasl_users, tuple(sasl_mechanisms), port, sasl_protocol))
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


class TestCertificates:
    """A throw-away certificate authority in directory, with the `cryptography`
    package: ca.pem (its certificate, the trust store of brokers and clients),
    broker.pem (the broker's key + certificate for hosts, Kafka's PEM
    ssl.keystore.location) and client certificates from client(). EC P-256
    keys: quick to make on a loaded machine."""

    __test__ = False   # not a pytest test class despite the name

    def __init__(self, directory, hosts=("127.0.0.1", "localhost"), ca_name: str = "pylog test CA"):
        import os
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._ca_key = _ec_key()
        self._ca_cert = _certificate(ca_name, self._ca_key, self._ca_key, None, ca=True)
        self.ca = self._write("ca.pem", _pem_cert(self._ca_cert))
        self.broker = self.issue("broker", hosts=hosts)[2]

    def issue(self, common_name: str, hosts=(), key_password: str | None = None, org_unit: str = "test"):
        """A certificate for common_name signed by this CA: (cert path, key
        path, path of both in one file), the key encrypted (PKCS#8) with
        key_password when given. Subject: CN=<name>,OU=<org_unit>,O=pylog."""
        key = _ec_key()
        cert = _certificate(common_name, key, self._ca_key, self._ca_cert, hosts=hosts, org_unit=org_unit)
        key_pem = _pem_key(key, key_password)
        cert_path = self._write(f"{common_name}.crt", _pem_cert(cert))
        key_path = self._write(f"{common_name}.key", key_pem)
        both = self._write(f"{common_name}.pem", key_pem + _pem_cert(cert))
        return cert_path, key_path, both

    def broker_config(self, listener: str = "SSL", client_auth: str = "none") -> dict:
        """Broker keys for an SSL listener named listener on 127.0.0.1, an
        ephemeral port, this CA's certificates."""
        return {"listeners": f"{listener}://127.0.0.1:0",
                "listener.security.protocol.map": f"{listener}:SSL",
                "ssl.keystore.type": "PEM", "ssl.keystore.location": self.broker,
                "ssl.truststore.type": "PEM", "ssl.truststore.location": self.ca,
                "ssl.client.auth": client_auth}

    def _write(self, name: str, data: bytes) -> str:
        import os
        path = os.path.join(self.dir, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
        return path


def _ec_key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(common_name, key, issuer_key, issuer_cert, ca=False, hosts=(), org_unit="test"):
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pylog"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, org_unit),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject)
         .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False, encipher_only=False,
                                          decipher_only=False), critical=True)
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                            critical=False)
    if hosts:
        names = []
        for h in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key, password: str | None) -> bytes:
    from cryptography.hazmat.primitives import serialization
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
