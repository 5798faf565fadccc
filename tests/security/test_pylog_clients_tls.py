"""pylog's own clients (Producer, Consumer in both group protocols, the admin
Client, pylog.aio) against real SSL listeners, configured with Kafka's client
keys (librdkafka's and the Java client's); mutual TLS; the certificate
failures (unknown CA, wrong host name, no client certificate) fail at once
with SslAuthenticationError; responses pipelined into one TLS record are
read without waiting (wait_readable)."""
from __future__ import annotations

import asyncio
import uuid

import pytest

pytest.importorskip("cryptography")

from pylog.aio import Consumer as AioConsumer  # noqa: E402
from pylog.aio import Producer as AioProducer  # noqa: E402
from pylog.client import Client  # noqa: E402
from pylog.client.errors import ConnectionClosedError, SslAuthenticationError  # noqa: E402
from pylog.client.security import security_settings  # noqa: E402
from pylog.client.wire import Connection, wait_readable  # noqa: E402
from pylog.consumer import Consumer  # noqa: E402
from pylog.producer import Producer  # noqa: E402
from pylog.protocol.messages import MetadataRequest  # noqa: E402
from pylog.testing import FAST_GROUP_CONFIG, TestCertificates, running_broker, wait_until  # noqa: E402


def ssl_props(broker, **extra) -> dict:
    return {"security.protocol": "SSL", "ssl.ca.location": broker.certs.ca, **extra}


def roundtrip(bootstrap, kw, topic, group_protocol="classic", n=200) -> list[bytes]:
    """Produce n values with pylog's Producer, read them back with a group consumer."""
    values = [b"v%d" % i for i in range(n)]
    p = Producer(bootstrap, linger_ms=1, **kw)
    try:
        handles = [p.send(topic, v, key=b"k%d" % (i % 7)) for i, v in enumerate(values)]
        assert p.flush(60) == 0
        for h in handles:
            h.get(30)
    finally:
        p.close()
    got = []
    c = Consumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{uuid.uuid4().hex[:6]}",
                 auto_offset_reset="earliest", group_protocol=group_protocol, **kw)
    try:
        def read_all():
            got.extend(bytes(r.value) for r in c.poll(0.5))
            return len(got) >= n
        wait_until(read_all, f"{n} records over TLS", timeout=90)
        c.commit()
    finally:
        c.close()
    return got


@pytest.mark.kafka_broker(tls=True, config={"num.partitions": "3"})
@pytest.mark.parametrize("group_protocol", ["classic", "consumer"])
def test_producer_to_consumer_over_ssl(kafka_broker, group_protocol):
    kw = security_settings(ssl_props(kafka_broker))
    got = roundtrip(str(kafka_broker), kw, f"tls-{group_protocol}", group_protocol)
    assert sorted(got) == sorted(b"v%d" % i for i in range(200))


@pytest.mark.kafka_broker(tls=True)
def test_admin_client_calls_over_ssl(kafka_broker):
    kw = security_settings(ssl_props(kafka_broker))
    with Client(str(kafka_broker), **kw) as client:
        client.create_topics("admin-tls", partitions=2)
        client.wait_for_leaders("admin-tls", timeout=30)
        assert client.partitions_for("admin-tls") == [0, 1]
        client.commit_offsets("admin-group", {("admin-tls", 0): 0, ("admin-tls", 1): 0})
        assert client.committed_offsets("admin-group") == {("admin-tls", 0): 0, ("admin-tls", 1): 0}
        assert "admin-group" in [g.group_id for g in client.list_groups()]
        assert client.describe_group("admin-group").state == "Empty"
        assert client.delete_groups(["admin-group"]) == {"admin-group": 0}
        client.delete_topics("admin-tls")


@pytest.mark.kafka_broker(tls="required")
@pytest.mark.parametrize("group_protocol", ["classic", "consumer"])
def test_mutual_tls_with_librdkafka_keys(kafka_broker, group_protocol):
    cert, key, _ = kafka_broker.certs.issue("alice", key_password="alice-key-pw")
    kw = security_settings(ssl_props(kafka_broker, **{"ssl.certificate.location": cert, "ssl.key.location": key,
                                                      "ssl.key.password": "alice-key-pw"}))
    got = roundtrip(str(kafka_broker), kw, f"mtls-{group_protocol}", group_protocol, n=50)
    assert sorted(got) == sorted(b"v%d" % i for i in range(50))


@pytest.mark.kafka_broker(tls="required")
def test_mutual_tls_with_java_keys(kafka_broker):
    """Kafka's Java client keys as a --command-config carries them: PEM trust and key stores."""
    _, _, both = kafka_broker.certs.issue("bob")
    kw = security_settings({"security.protocol": "SSL", "ssl.truststore.type": "PEM",
                            "ssl.truststore.location": kafka_broker.certs.ca, "ssl.keystore.type": "PEM",
                            "ssl.keystore.location": both})
    got = roundtrip(str(kafka_broker), kw, "mtls-java", n=20)
    assert sorted(got) == sorted(b"v%d" % i for i in range(20))


@pytest.mark.kafka_broker(tls="required")
def test_missing_or_untrusted_client_certificate_fails_clearly(kafka_broker, tmp_path):
    """The broker refuses the client after the client's side of a TLS 1.3
    handshake is done, with an alert (the broker's TLS layer sends it): the
    client raises an SslAuthenticationError saying which of the two it is, at
    construction, not later, and does not retry it."""
    stranger = TestCertificates(tmp_path / "stranger", ca_name="a CA the broker does not trust")
    cert, key, _ = stranger.issue("mallory")
    for props, why in ((ssl_props(kafka_broker), "requires a client certificate"),
                       (ssl_props(kafka_broker, **{"ssl.certificate.location": cert, "ssl.key.location": key}),
                        "refused this client's certificate")):
        kw = security_settings(props)
        with pytest.raises(SslAuthenticationError, match=why) as e:
            Producer(str(kafka_broker), request_timeout_ms=600_000, **kw)
        assert not e.value.retriable
        with pytest.raises(SslAuthenticationError, match=why):
            Consumer("t", bootstrap_servers=str(kafka_broker), group_id="g", request_timeout_ms=600_000, **kw)


@pytest.mark.kafka_broker(tls=True)
def test_wrong_ca_fails_clearly(kafka_broker, tmp_path):
    other = TestCertificates(tmp_path / "other", ca_name="some other CA")
    kw = security_settings({"security.protocol": "SSL", "ssl.ca.location": other.ca})
    # Not retried as a lost connection: the first attempt's error, at once.
    with pytest.raises(SslAuthenticationError, match="not trusted") as e:
        Producer(str(kafka_broker), max_block_ms=600_000, request_timeout_ms=600_000, **kw)
    assert not e.value.retriable
    with pytest.raises(SslAuthenticationError, match="not trusted"):
        Consumer("t", bootstrap_servers=str(kafka_broker), group_id="g", request_timeout_ms=600_000, **kw)
    with pytest.raises(SslAuthenticationError, match="not trusted"):
        Client(str(kafka_broker), timeout=600, **kw)


def test_hostname_is_verified_unless_turned_off(tmp_path):
    certs = TestCertificates(tmp_path / "certs", hosts=("broker.example.com",))
    with running_broker(tmp_path / "data", config={**FAST_GROUP_CONFIG, **certs.broker_config()}) as b:
        with pytest.raises(SslAuthenticationError, match="does not name 127.0.0.1"):
            Producer(str(b), **security_settings({"security.protocol": "SSL", "ssl.ca.location": certs.ca}))
        # librdkafka's "none" and Java's empty value turn the check off (the CA still is checked)
        for off in ("none", ""):
            kw = security_settings({"security.protocol": "SSL", "ssl.ca.location": certs.ca,
                                    "ssl.endpoint.identification.algorithm": off})
            with Client(str(b), **kw) as client:
                assert client.metadata([]).brokers


def test_plaintext_listener_with_tls_client_fails_not_hangs(tmp_path):
    certs = TestCertificates(tmp_path / "certs")
    with running_broker(tmp_path / "data") as b:
        kw = security_settings({"security.protocol": "SSL", "ssl.ca.location": certs.ca})
        with pytest.raises(ConnectionClosedError, match="TLS handshake"):
            Client(str(b), timeout=600, **kw)


@pytest.mark.kafka_broker(tls=True)
def test_pipelined_responses_in_one_tls_record_are_not_waited_for(kafka_broker):
    """The broker answers a burst of requests in few TLS records: after one
    response is read the next may sit decrypted in the SSL object, where
    select() on the socket cannot see it. wait_readable must report it (with
    a select alone each such response would wait out the 60 s timeout and
    come back empty)."""
    ctx = security_settings(ssl_props(kafka_broker))["ssl_context"]
    with Connection("127.0.0.1", kafka_broker.port, ssl_context=ctx) as conn:
        buffered = 0
        for _ in range(3):
            for _ in range(50):
                conn.send(MetadataRequest(topics=[]))
            for _ in range(50):
                buffered += conn.has_buffered()
                ready, _ = wait_readable([conn], (), 60)
                assert ready == [conn]
                assert conn.receive().brokers
        assert conn.in_flight == 0


@pytest.mark.kafka_broker(tls=True)
def test_asyncio_clients_over_ssl(kafka_broker):
    kw = security_settings(ssl_props(kafka_broker))

    async def main():
        async with AioProducer(bootstrap_servers=str(kafka_broker), **kw) as p:
            for i in range(10):
                await p.send("aio-tls", b"a%d" % i)
        got = []
        async with AioConsumer("aio-tls", bootstrap_servers=str(kafka_broker), group_id="aio",
                               auto_offset_reset="earliest", **kw) as c:
            for _ in range(120):
                got.extend(bytes(r.value) for r in await c.getmany(timeout_ms=500))
                if len(got) >= 10:
                    break
        return got
    assert sorted(asyncio.run(main())) == sorted(b"a%d" % i for i in range(10))


@pytest.mark.parametrize("props, message", [
    ({"security.protocol": "PLAINTEXT", "ssl.ca.location": "/x"}, "set security.protocol=SSL"),
    ({"security.protocol": "SSL", "ssl.engine.factory.class": "x"}, "not supported"),
    ({"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"}, "cannot read"),
    ({"security.protocol": "SSL", "ssl.certificate.pem": "x"}, "needs both"),
    ({"security.protocol": "SSL", "ssl.truststore.location": "/x"}, "JKS"),
    ({"security.protocol": "SSL", "ssl.ca.location": "/x", "ssl.truststore.location": "/y"}, "named twice"),
    ({"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "ldap"}, "ssl.endpoint"),
    ({"security.protocol": "SASL_SSL"}, "GSSAPI"),
])
def test_settings_pylog_cannot_honour_are_refused(props, message):
    with pytest.raises(ValueError, match=message):
        security_settings(props)


def test_security_settings_shapes(tmp_path):
    assert security_settings({}) == {"ssl_context": None, "sasl": None}
    certs = TestCertificates(tmp_path / "certs")
    kw = security_settings({"security.protocol": "sasl_ssl", "ssl.ca.location": certs.ca,
                            "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "p"})
    assert kw["ssl_context"].check_hostname and kw["sasl"].username == "u"


@pytest.mark.kafka_broker(tls=True, config={"num.partitions": "4"})
@pytest.mark.parametrize("group_protocol", ["classic", "consumer"])
def test_two_members_share_partitions_over_ssl(kafka_broker, group_protocol):
    """A rebalance over TLS: the second member's join holds the first one's
    JoinGroup (classic) or heartbeats (consumer protocol) until both have a share."""
    kw = security_settings(ssl_props(kafka_broker))
    with Client(str(kafka_broker), **kw) as client:
        client.create_topics("shared", partitions=4)
        client.wait_for_leaders("shared", timeout=30)
    members = [Consumer("shared", bootstrap_servers=str(kafka_broker), group_id=f"two-{group_protocol}",
                        group_protocol=group_protocol, **kw) for _ in range(2)]
    try:
        def split():
            for c in members:
                c.poll(0.2)
            a, b = (c.assignment() for c in members)
            return a and b and not (a & b) and len(a | b) == 4
        wait_until(split, "4 partitions split between 2 members over TLS", timeout=120)
    finally:
        for c in members:
            c.close()
