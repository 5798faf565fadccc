"""pylog's own clients over SASL_SSL (TLS, then PLAIN or SCRAM): Producer to
Consumer in both group protocols, a transactional producer, the admin
Client; librdkafka's keys and the Java client's sasl.jaas.config; a wrong
password and a wrong CA fail at once."""
from __future__ import annotations

import uuid

import pytest

pytest.importorskip("cryptography")

from pylog.client import Client  # noqa: E402
from pylog.client.errors import SslAuthenticationError  # noqa: E402
from pylog.client.security import security_settings  # noqa: E402
from pylog.consumer import Consumer  # noqa: E402
from pylog.errors import PylogError  # noqa: E402
from pylog.producer import Producer  # noqa: E402
from pylog.protocol.error_codes import Errors  # noqa: E402
from pylog.testing import TestCertificates, wait_until  # noqa: E402

pytestmark = pytest.mark.kafka_broker(tls=True, sasl_users={"alice": "alice-secret"},
                                      config={"num.partitions": "2"})


def settings(broker, mechanism, **over) -> dict:
    conf = broker.sasl_client_config(mechanism, "alice")
    conf.pop("bootstrap.servers")
    assert conf["security.protocol"] == "SASL_SSL"
    conf.update(over)
    return security_settings(conf)


def consume(bootstrap, kw, topic, n, group_protocol="classic", **extra) -> list[bytes]:
    got = []
    c = Consumer(topic, bootstrap_servers=bootstrap, group_id=f"g-{uuid.uuid4().hex[:6]}",
                 auto_offset_reset="earliest", group_protocol=group_protocol, **extra, **kw)
    try:
        def read_all():
            got.extend(bytes(r.value) for r in c.poll(0.5))
            return len(got) >= n
        wait_until(read_all, f"{n} records over SASL_SSL", timeout=90)
        c.commit()
    finally:
        c.close()
    return got


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("group_protocol", ["classic", "consumer"])
def test_producer_to_consumer_over_sasl_ssl(kafka_broker, mechanism, group_protocol):
    kw = settings(kafka_broker, mechanism)
    topic = f"ss-{mechanism}-{group_protocol}".lower()
    with Producer(str(kafka_broker), linger_ms=1, **kw) as p:
        handles = [p.send(topic, b"m%d" % i, key=b"%d" % i) for i in range(100)]
        assert p.flush(60) == 0
        assert all(h.get(30).offset >= 0 for h in handles)
    got = consume(str(kafka_broker), kw, topic, 100, group_protocol)
    assert sorted(got) == sorted(b"m%d" % i for i in range(100))


def test_jaas_config_and_transactions_over_sasl_ssl(kafka_broker):
    jaas = ('org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" '
            'password="alice-secret";')
    kw = security_settings({"security.protocol": "SASL_SSL", "ssl.truststore.type": "PEM",
                            "ssl.truststore.location": kafka_broker.certs.ca, "sasl.mechanism": "SCRAM-SHA-256",
                            "sasl.jaas.config": jaas})
    with Producer(str(kafka_broker), transactional_id="tx-ss", **kw) as p:
        p.init_transactions(60)
        p.begin_transaction()
        for i in range(10):
            p.send("tx-ss", b"t%d" % i)
        p.commit_transaction(60)
    got = consume(str(kafka_broker), kw, "tx-ss", 10, isolation_level="read_committed")
    assert sorted(got) == sorted(b"t%d" % i for i in range(10))


def test_admin_client_over_sasl_ssl(kafka_broker):
    with Client(str(kafka_broker), **settings(kafka_broker, "SCRAM-SHA-512")) as client:
        client.create_topics("ss-admin", partitions=3)
        assert client.wait_for_leaders("ss-admin", timeout=30).partitions.keys() == {0, 1, 2}
        client.create_partitions("ss-admin", 4)
        wait_until(lambda: len(client.topic("ss-admin", refresh=True).partitions) == 4, "4 partitions")
        assert "retention.ms" in client.describe_configs("ss-admin")


def test_wrong_password_and_wrong_ca_fail_at_once(kafka_broker, tmp_path):
    with pytest.raises(PylogError) as e:
        Producer(str(kafka_broker), max_block_ms=600_000,
                 **settings(kafka_broker, "SCRAM-SHA-256", **{"sasl.password": "nope"}))
    assert e.value.error_code == Errors.SASL_AUTHENTICATION_FAILED
    other = TestCertificates(tmp_path / "other", ca_name="another CA")
    with pytest.raises(SslAuthenticationError, match="not trusted"):
        Consumer("t", bootstrap_servers=str(kafka_broker), group_id="g", request_timeout_ms=600_000,
                 **settings(kafka_broker, "PLAIN", **{"ssl.ca.location": other.ca}))
