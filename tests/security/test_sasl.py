"""SASL on a SASL_PLAINTEXT listener with real clients (confluent-kafka,
kafka-python, aiokafka, kcat, pylog's own) and raw sockets for the broker's
side of the state machine (KAFKA-NOTES §12.1-12.2)."""
from __future__ import annotations

import asyncio
import os
import shutil
import struct
import subprocess
import uuid

import pytest

from pylog.broker.sasl import ClientCredentials
from pylog.client import Client
from pylog.errors import PylogError
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.protocol.framing import encode_request
from pylog.testing import wait_until

from .saslwire import Raw, close_all, confluent_roundtrip

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import admin as ck_admin  # noqa: E402

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
KCAT = shutil.which("kcat")
pytestmark = pytest.mark.kafka_broker(sasl_users=USERS)


def _topic():
    return f"sasl-{uuid.uuid4().hex[:8]}"


def test_librdkafka_has_sasl_plain_and_scram():
    # librdkafka refuses a client whose required builtin.features it lacks
    ck.Producer({"bootstrap.servers": "127.0.0.1:1", "builtin.features": "sasl_plain,sasl_scram"}).flush(0)


# ---- real clients, each mechanism ----

@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_confluent_kafka_produce_consume(kafka_broker, mechanism):
    values = [f"v{i}".encode() for i in range(5)]
    assert confluent_roundtrip(kafka_broker.sasl_client_config(mechanism, "alice"), values) == values


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python_produce_consume(kafka_broker, mechanism):
    kafka = pytest.importorskip("kafka")
    topic = _topic()
    conf = dict(bootstrap_servers=str(kafka_broker), security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                sasl_plain_username="bob", sasl_plain_password="bob-secret")
    p = kafka.KafkaProducer(acks="all", **conf)
    for i in range(3):
        p.send(topic, f"kp{i}".encode()).get(timeout=30)
    p.close()
    c = kafka.KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=20000,
                            group_id=f"g-{topic}", **conf)
    got = []
    for msg in c:
        got.append(msg.value)
        if len(got) == 3:
            break
    c.close()
    assert got == [b"kp0", b"kp1", b"kp2"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_aiokafka_produce_consume(kafka_broker, mechanism):
    aiokafka = pytest.importorskip("aiokafka")
    topic = _topic()
    conf = dict(bootstrap_servers=str(kafka_broker), security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                sasl_plain_username="alice", sasl_plain_password="alice-secret")

    async def run():
        p = aiokafka.AIOKafkaProducer(acks="all", **conf)
        await p.start()
        try:
            for i in range(3):
                await p.send_and_wait(topic, f"ak{i}".encode())
        finally:
            await p.stop()
        c = aiokafka.AIOKafkaConsumer(topic, auto_offset_reset="earliest", group_id=f"g-{topic}", **conf)
        await c.start()
        got = []
        try:
            while len(got) < 3:
                batch = await asyncio.wait_for(c.getmany(timeout_ms=500), 60)
                for records in batch.values():
                    got.extend(r.value for r in records)
        finally:
            await c.stop()
        return got
    assert asyncio.run(run()) == [b"ak0", b"ak1", b"ak2"]


@pytest.mark.skipif(KCAT is None and not os.environ.get("PYLOG_CI"), reason="kcat is not installed")
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kcat_produce_consume(kafka_broker, mechanism):
    topic = _topic()
    conf = kafka_broker.sasl_client_config(mechanism, "alice")
    args = [KCAT, "-b", str(kafka_broker)]
    for k in ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password"):
        args += ["-X", f"{k}={conf[k]}"]

    def run(*more, stdin=None):
        out = subprocess.run([*args, *more], input=stdin, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    run("-t", topic, "-P", "-K:", stdin="k1:one\nk2:two\n")
    assert run("-t", topic, "-C", "-e", "-f", "%k=%s\n").splitlines() == ["k1=one", "k2=two"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_pylog_client(kafka_broker, mechanism):
    with Client(str(kafka_broker), sasl=ClientCredentials(mechanism, "bob", "bob-secret")) as c:
        assert kafka_broker.broker.broker_id in c.metadata(None).brokers


# ---- failures as clients see them ----

@pytest.mark.parametrize("mechanism, message", [
    ("PLAIN", "Authentication failed: Invalid username or password"),
    ("SCRAM-SHA-256", "Authentication failed during authentication due to invalid credentials with SASL "
                      "mechanism SCRAM-SHA-256"),
])
def test_wrong_password_is_a_clear_authentication_error(kafka_broker, mechanism, message):
    errors = []
    p = ck.Producer({**kafka_broker.sasl_client_config(mechanism, "alice", "not-her-password"),
                     "error_cb": errors.append})

    def failed():
        p.poll(0.2)
        return any(e.code() == ck.KafkaError._AUTHENTICATION for e in errors)
    wait_until(failed, "librdkafka reporting the authentication failure")
    assert any(message in e.str() for e in errors), [e.str() for e in errors]
    with pytest.raises(PylogError, match="SASL_AUTHENTICATION_FAILED") as e:
        Client(str(kafka_broker), sasl=ClientCredentials(mechanism, "alice", "not-her-password"))
    assert message in str(e.value)


@pytest.fixture(autouse=True)
def _close_raw_sockets():
    yield
    close_all()


def test_wrong_password_answer_then_close(kafka_broker):
    raw = Raw(kafka_broker)
    assert raw.request(m.SaslHandshakeRequest(mechanism="PLAIN"), 1).error_code == 0
    resp = raw.request(m.SaslAuthenticateRequest(auth_bytes=b"\0alice\0wrong"), 2)
    assert resp.error_code == Errors.SASL_AUTHENTICATION_FAILED
    assert resp.error_message == "Authentication failed: Invalid username or password"
    assert raw.closed_by_broker()


def test_unknown_mechanism_gets_the_enabled_list_then_close(kafka_broker):
    raw = Raw(kafka_broker)
    resp = raw.request(m.SaslHandshakeRequest(mechanism="GSSAPI"), 1)
    assert resp.error_code == Errors.UNSUPPORTED_SASL_MECHANISM
    assert list(resp.mechanisms) == MECHANISMS
    assert raw.closed_by_broker()


def test_request_before_authentication_closes_the_connection(kafka_broker):
    raw = Raw(kafka_broker)
    versions = raw.request(m.ApiVersionsRequest(), 0)   # allowed first
    assert {17, 36} <= {k.api_key for k in versions.api_keys}
    raw.sock.sendall(encode_request(9, 3, 1, m.MetadataRequest(topics=None), "raw"))
    assert raw.closed_by_broker()
    # and a SaslAuthenticate before any handshake too
    raw = Raw(kafka_broker)
    raw.sock.sendall(encode_request(1, 36, 1, m.SaslAuthenticateRequest(auth_bytes=b"\0alice\0alice-secret"), "raw"))
    assert raw.closed_by_broker()


def test_handshake_v0_raw_tokens(kafka_broker):
    raw = Raw(kafka_broker)
    assert raw.request(m.SaslHandshakeRequest(mechanism="PLAIN"), 0).error_code == 0
    token = b"\0alice\0alice-secret"
    raw.sock.sendall(struct.pack(">i", len(token)) + token)
    assert raw.read_frame() == b""     # PLAIN's empty server token, size-prefixed
    md = raw.request(m.MetadataRequest(topics=None), 1)
    assert [b.node_id for b in md.brokers] == [kafka_broker.broker.broker_id]


def test_sasl_apis_after_authentication_are_illegal_state(kafka_broker):
    raw = Raw(kafka_broker)
    raw.request(m.SaslHandshakeRequest(mechanism="PLAIN"), 1)
    assert raw.request(m.SaslAuthenticateRequest(auth_bytes=b"\0alice\0alice-secret"), 1).error_code == 0
    assert raw.request(m.SaslHandshakeRequest(mechanism="PLAIN"), 1).error_code == Errors.ILLEGAL_SASL_STATE


def test_the_principal_is_the_user(kafka_broker):
    with Client(str(kafka_broker), sasl=ClientCredentials("SCRAM-SHA-512", "bob", "bob-secret")) as c:
        c.metadata(None)
        principals = kafka_broker.broker.call(
            lambda: {conn.principal for conn in kafka_broker.broker.server.connections})
    assert "User:bob" in principals


def test_sasl_handshake_on_a_plaintext_listener_is_illegal_state(tmp_path):
    from pylog.testing import running_broker
    with running_broker(tmp_path / "d") as b:
        raw = Raw(b)
        assert raw.request(m.SaslHandshakeRequest(mechanism="PLAIN"), 1).error_code == Errors.ILLEGAL_SASL_STATE


# ---- SCRAM users through the admin API ----

def _admin(kafka_broker, user="alice"):
    return ck_admin.AdminClient(kafka_broker.sasl_client_config("PLAIN", user))


def test_user_created_with_alter_user_scram_credentials_then_deleted(kafka_broker):
    admin = _admin(kafka_broker)
    carol = ck_admin.UserScramCredentialUpsertion(
        "carol", ck_admin.ScramCredentialInfo(ck_admin.ScramMechanism.SCRAM_SHA_256, 8192), b"carol-secret")
    for f in admin.alter_user_scram_credentials([carol]).values():
        f.result(timeout=30)
    info = admin.describe_user_scram_credentials(["carol"])["carol"].result(timeout=30).scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in info] == [(ck_admin.ScramMechanism.SCRAM_SHA_256, 8192)]

    conf = kafka_broker.sasl_client_config("SCRAM-SHA-256", "carol", "carol-secret")
    topic = _topic()
    p = ck.Producer(conf)
    p.produce(topic, b"from carol")
    assert p.flush(30) == 0

    for f in admin.alter_user_scram_credentials([ck_admin.UserScramCredentialDeletion(
            "carol", ck_admin.ScramMechanism.SCRAM_SHA_256)]).values():
        f.result(timeout=30)
    with pytest.raises(PylogError, match="SASL_AUTHENTICATION_FAILED"):
        Client(str(kafka_broker), sasl=ClientCredentials("SCRAM-SHA-256", "carol", "carol-secret"))
    # deleting it again: Kafka's RESOURCE_NOT_FOUND
    fut = admin.alter_user_scram_credentials([ck_admin.UserScramCredentialDeletion(
        "carol", ck_admin.ScramMechanism.SCRAM_SHA_256)])["carol"]
    with pytest.raises(ck.KafkaException, match="does not exist"):
        fut.result(timeout=30)


def test_alter_refusals_are_kafkas(kafka_broker):
    raw = Raw(kafka_broker)
    raw.request(m.SaslHandshakeRequest(mechanism="PLAIN"), 1)
    assert raw.request(m.SaslAuthenticateRequest(auth_bytes=b"\0alice\0alice-secret"), 1).error_code == 0
    R = m.AlterUserScramCredentialsRequest
    up = R.ScramCredentialUpsertion
    resp = raw.request(R(deletions=[], upsertions=[
        up(name="few", mechanism=1, iterations=1000, salt=b"s", salted_password=b"x" * 32),
        up(name="many", mechanism=2, iterations=20000, salt=b"s", salted_password=b"x" * 64),
        up(name="odd", mechanism=3, iterations=4096, salt=b"s", salted_password=b"x" * 32),
        up(name="", mechanism=1, iterations=4096, salt=b"s", salted_password=b"x" * 32),
        up(name="twice", mechanism=1, iterations=4096, salt=b"s", salted_password=b"x" * 32),
        up(name="twice", mechanism=1, iterations=4096, salt=b"s", salted_password=b"x" * 32),
    ]), 0)
    got = {r.user: (r.error_code, r.error_message) for r in resp.results}
    assert got == {
        "few": (Errors.UNACCEPTABLE_CREDENTIAL, "Too few iterations"),
        "many": (Errors.UNACCEPTABLE_CREDENTIAL, "Too many iterations"),
        "odd": (Errors.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism"),
        "": (Errors.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"),
        "twice": (Errors.DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request"),
    }
    D = m.DescribeUserScramCredentialsRequest
    resp = raw.request(D(users=[D.UserName(name="nobody")]), 0)
    assert [(r.user, r.error_code) for r in resp.results] == [("nobody", Errors.RESOURCE_NOT_FOUND)]


def test_restart_keeps_credentials(kafka_broker):
    admin = _admin(kafka_broker)
    dave = ck_admin.UserScramCredentialUpsertion(
        "dave", ck_admin.ScramCredentialInfo(ck_admin.ScramMechanism.SCRAM_SHA_512, 4096), b"dave-secret")
    for f in admin.alter_user_scram_credentials([dave]).values():
        f.result(timeout=30)
    kafka_broker.restart()
    with Client(str(kafka_broker), sasl=ClientCredentials("SCRAM-SHA-512", "dave", "dave-secret")) as c:
        assert c.metadata(None).brokers
