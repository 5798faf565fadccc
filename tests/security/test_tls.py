"""SSL listeners with real clients over real sockets: confluent-kafka,
kafka-python, aiokafka and kcat produce and consume through TLS; mTLS
(ssl.client.auth=required) refuses a client without a certificate or with one
from another CA; the TLS principal is the certificate's subject DN."""
from __future__ import annotations

import asyncio
import pathlib
import shutil
import ssl
import subprocess
import uuid

import pytest

from pylog.testing import TestCertificates, wait_until

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient  # noqa: E402
pytest.importorskip("cryptography")


def _text(path):
    return pathlib.Path(path).read_text()


def _bytes(path):
    return pathlib.Path(path).read_bytes()


def _topic():
    return f"tls-{uuid.uuid4().hex[:10]}"


def _ssl_conf(broker, cert=None, key=None, ca=None, key_password=None):
    conf = {"bootstrap.servers": str(broker), "security.protocol": "SSL",
            "ssl.ca.location": ca or broker.certs.ca}
    if cert:
        conf.update({"ssl.certificate.location": cert, "ssl.key.location": key})
    if key_password:
        conf["ssl.key.password"] = key_password
    return conf


def _roundtrip(conf, n=200, size=100):
    """Produce n records with acks=all, consume them back; the values read."""
    topic = _topic()
    p = ck.Producer({**conf, "acks": "all"})
    for i in range(n):
        p.produce(topic, value=b"%06d" % i + b"x" * (size - 6))
    assert p.flush(60) == 0
    c = ck.Consumer({**conf, "group.id": "g-" + topic, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    try:
        def more():
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
            return len(got) >= n
        wait_until(more, "records consumed over TLS")
    finally:
        c.close()
    return got


def test_librdkafka_has_ssl():
    # a librdkafka built without OpenSSL refuses security.protocol=SSL here
    ck.Consumer({"group.id": "x", "security.protocol": "SSL"}).close()


@pytest.mark.kafka_broker(tls=True)
def test_confluent_kafka_produces_and_consumes_over_tls(kafka_broker):
    got = _roundtrip(_ssl_conf(kafka_broker))
    assert [v[:6] for v in got] == [b"%06d" % i for i in range(200)]


@pytest.mark.kafka_broker(tls=True)
def test_fetches_larger_than_the_sendfile_threshold_arrive_intact_over_tls(kafka_broker):
    # 64 KiB records: each fetch slice is over SENDFILE_MIN; sendfile would
    # put plaintext into the TLS stream and the client would fail to decrypt
    got = _roundtrip(_ssl_conf(kafka_broker), n=40, size=64 << 10)
    assert [v[:6] for v in got] == [b"%06d" % i for i in range(40)]
    assert all(len(v) == 64 << 10 for v in got)
    assert all(c.sock_fd == -1 for c in kafka_broker.broker.server.connections)


@pytest.mark.kafka_broker(tls=True)
def test_a_plaintext_client_cannot_talk_to_an_ssl_listener(kafka_broker):
    a = AdminClient({"bootstrap.servers": str(kafka_broker)})
    with pytest.raises(ck.KafkaException):
        a.list_topics(timeout=3)


@pytest.mark.kafka_broker(tls=True)
def test_kafka_python_over_tls(kafka_broker):
    kafka = pytest.importorskip("kafka")
    topic = _topic()
    common = dict(bootstrap_servers=str(kafka_broker), security_protocol="SSL",
                  ssl_cafile=kafka_broker.certs.ca)
    p = kafka.KafkaProducer(acks="all", **common)
    for i in range(50):
        p.send(topic, b"kp-%d" % i)
    p.flush(60)
    p.close()
    c = kafka.KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=30000, **common)
    got = []
    for m in c:
        got.append(m.value)
        if len(got) == 50:
            break
    c.close()
    assert got == [b"kp-%d" % i for i in range(50)]


@pytest.mark.kafka_broker(tls=True)
def test_aiokafka_over_tls(kafka_broker):
    aiokafka = pytest.importorskip("aiokafka")
    topic = _topic()

    async def run():
        ctx = ssl.create_default_context(cafile=kafka_broker.certs.ca)
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=str(kafka_broker), security_protocol="SSL",
                                      ssl_context=ctx, acks="all")
        await p.start()
        try:
            for i in range(30):
                await p.send_and_wait(topic, b"aio-%d" % i)
        finally:
            await p.stop()
        c = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=str(kafka_broker), security_protocol="SSL",
                                      ssl_context=ctx, auto_offset_reset="earliest")
        await c.start()
        got = []
        try:
            while len(got) < 30:
                batch = await asyncio.wait_for(c.getmany(timeout_ms=1000), 60)
                for msgs in batch.values():
                    got.extend(m.value for m in msgs)
        finally:
            await c.stop()
        return got

    assert asyncio.run(run()) == [b"aio-%d" % i for i in range(30)]


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
@pytest.mark.kafka_broker(tls="required")
def test_kcat_over_mtls(kafka_broker):
    topic = _topic()
    cert, key, _ = kafka_broker.certs.issue("kcat-user")
    tls = ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={kafka_broker.certs.ca}",
           "-X", f"ssl.certificate.location={cert}", "-X", f"ssl.key.location={key}"]
    lines = "".join(f"kcat-{i}\n" for i in range(20))
    subprocess.run(["kcat", "-b", str(kafka_broker), *tls, "-P", "-t", topic], input=lines, text=True,
                   check=True, timeout=120)
    r = subprocess.run(["kcat", "-b", str(kafka_broker), *tls, "-C", "-t", topic, "-o", "beginning", "-e",
                        "-c", "20"], capture_output=True, text=True, check=True, timeout=120)
    assert r.stdout.split() == [f"kcat-{i}" for i in range(20)]


def _refused(conf):
    """True once a client with conf fails to get metadata (the handshake fails)."""
    a = AdminClient({**conf, "socket.timeout.ms": 5000})
    try:
        a.list_topics(timeout=5)
    except ck.KafkaException:
        return True
    return False


@pytest.mark.kafka_broker(tls="required")
def test_mtls_refuses_a_client_without_a_certificate_and_admits_one_with(kafka_broker):
    assert _refused(_ssl_conf(kafka_broker))
    cert, key, _ = kafka_broker.certs.issue("alice")
    got = _roundtrip(_ssl_conf(kafka_broker, cert, key), n=20)
    assert len(got) == 20


@pytest.mark.kafka_broker(tls="required")
def test_mtls_refuses_a_certificate_from_another_ca(kafka_broker, tmp_path):
    other = TestCertificates(tmp_path / "other-ca")
    cert, key, _ = other.issue("mallory")
    # trusts the broker, but its own certificate is signed by a CA the broker does not trust
    assert _refused(_ssl_conf(kafka_broker, cert, key))


@pytest.mark.kafka_broker(tls=True)
def test_a_client_trusting_another_ca_refuses_the_broker(kafka_broker, tmp_path):
    other = TestCertificates(tmp_path / "other-ca")
    assert _refused(_ssl_conf(kafka_broker, ca=other.ca))


def _produces_as(broker, principal, cn=None):
    """A producer with a certificate for cn (none when None) writes; the
    broker then holds a connection whose principal is principal."""
    cert, key = broker.certs.issue(cn)[:2] if cn else (None, None)
    p = ck.Producer(_ssl_conf(broker, cert, key))
    p.produce(_topic(), b"x")
    assert p.flush(60) == 0
    wait_until(lambda: principal in {c.principal for c in broker.broker.server.connections},
               f"a connection with principal {principal}")


@pytest.mark.kafka_broker(tls="requested")
def test_the_tls_principal_is_the_certificate_subject_dn(kafka_broker):
    _produces_as(kafka_broker, "User:CN=bob,OU=test,O=pylog", "bob")
    # requested, not required: a client without a certificate is ANONYMOUS
    _produces_as(kafka_broker, "User:ANONYMOUS")


@pytest.mark.kafka_broker(tls="required", config={
    "ssl.principal.mapping.rules": "RULE:^CN=([a-z]+),OU=test,O=pylog$/$1/U,DEFAULT"})
def test_principal_mapping_rules_apply(kafka_broker):
    _produces_as(kafka_broker, "User:CAROL", "carol")


def test_an_encrypted_broker_key_with_ssl_key_password(tmp_path):
    from pylog.testing import running_broker
    certs = TestCertificates(tmp_path / "certs")
    _cert, _key, both = certs.issue("broker-enc", hosts=("127.0.0.1",), key_password="s3cret")
    cfg = {**certs.broker_config(), "ssl.keystore.location": both, "ssl.key.password": "s3cret"}
    with running_broker(tmp_path / "d", config=cfg) as b:
        b.certs = certs
        assert len(_roundtrip(_ssl_conf(b), n=10)) == 10


def test_inline_pem_key_store_and_trust_store(tmp_path):
    from pylog.testing import running_broker
    certs = TestCertificates(tmp_path / "certs")
    cert, key, _ = certs.issue("broker-inline", hosts=("127.0.0.1",))
    cfg = {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.type": "PEM",
           "ssl.keystore.certificate.chain": _text(cert), "ssl.keystore.key": _text(key),
           "ssl.truststore.type": "PEM", "ssl.truststore.certificates": _text(certs.ca),
           "ssl.client.auth": "required"}
    with running_broker(tmp_path / "d", config=cfg) as b:
        b.certs = certs
        c, k, _ = certs.issue("dave")
        assert len(_roundtrip(_ssl_conf(b, c, k), n=10)) == 10


def test_a_pkcs12_key_store(tmp_path):
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, load_pem_private_key, pkcs12
    from cryptography import x509
    from pylog.testing import running_broker
    certs = TestCertificates(tmp_path / "certs")
    cert, key, _ = certs.issue("broker-p12", hosts=("127.0.0.1",))
    p12 = pkcs12.serialize_key_and_certificates(
        b"broker", load_pem_private_key(_bytes(key), None),
        x509.load_pem_x509_certificate(_bytes(cert)), None, BestAvailableEncryption(b"storepw"))
    (tmp_path / "broker.p12").write_bytes(p12)
    cfg = {"listeners": "SSL://127.0.0.1:0", "ssl.keystore.type": "PKCS12",
           "ssl.keystore.location": str(tmp_path / "broker.p12"), "ssl.keystore.password": "storepw"}
    with running_broker(tmp_path / "d", config=cfg) as b:
        b.certs = certs
        assert len(_roundtrip(_ssl_conf(b), n=10)) == 10


def test_a_java_keystore_is_refused_with_the_way_out(tmp_path):
    from pylog.broker.config import BrokerConfig
    from pylog.errors import InvalidConfigError
    (tmp_path / "ks.jks").write_bytes(b"\xfe\xed\xfe\xed")
    with pytest.raises(InvalidConfigError, match="JKS.*convert it.*PKCS12"):
        BrokerConfig({"listeners": "SSL://127.0.0.1:0", "ssl.keystore.location": str(tmp_path / "ks.jks")})


def test_the_broker_refuses_to_start_on_a_missing_or_unreadable_key_store(tmp_path):
    import subprocess as sp
    import sys
    props = tmp_path / "server.properties"
    props.write_text("listeners=SSL://127.0.0.1:0\nssl.keystore.type=PEM\n"
                     f"ssl.keystore.location={tmp_path / 'nope.pem'}\n")
    r = sp.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"),
                "--config", str(props)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "cannot read ssl.keystore.location" in r.stderr and "nope.pem" in r.stderr
    # a file that is not a key store
    (tmp_path / "junk.pem").write_text("hello\n")
    props.write_text("listeners=SSL://127.0.0.1:0\nssl.keystore.type=PEM\n"
                     f"ssl.keystore.location={tmp_path / 'junk.pem'}\n")
    r = sp.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"),
                "--config", str(props)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "holds no private key" in r.stderr and "Traceback" not in r.stderr


def test_a_wrong_key_password_refuses_the_start(tmp_path):
    from pylog.broker.config import BrokerConfig
    from pylog.errors import InvalidConfigError
    certs = TestCertificates(tmp_path / "certs")
    _c, _k, both = certs.issue("enc", key_password="right")
    with pytest.raises(InvalidConfigError, match="cannot be loaded"):
        BrokerConfig({**certs.broker_config(), "ssl.keystore.location": both, "ssl.key.password": "wrong"})
    with pytest.raises(InvalidConfigError, match="encrypted and ssl.key.password is not set"):
        BrokerConfig({**certs.broker_config(), "ssl.keystore.location": both})


@pytest.mark.kafka_broker(tls="required", config={"ssl.principal.mapping.rules": "RULE:^CN=admin,.*$/admin/"})
def test_a_certificate_no_mapping_rule_applies_to_is_refused(kafka_broker):
    cert, key, _ = kafka_broker.certs.issue("eve")
    assert _refused(_ssl_conf(kafka_broker, cert, key))
    _produces_as(kafka_broker, "User:admin", "admin")
