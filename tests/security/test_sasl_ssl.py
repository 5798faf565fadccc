"""SASL_SSL: TLS first (the listener's ssl.* keys, no client certificate
asked), then SASL; the principal is SASL's. confluent-kafka and kcat with
PLAIN and SCRAM; a wrong password over TLS fails as over plaintext."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid

import pytest

pytest.importorskip("cryptography")
ck = pytest.importorskip("confluent_kafka")

from pylog.testing import wait_until  # noqa: E402

from .saslwire import confluent_roundtrip  # noqa: E402

KCAT = shutil.which("kcat")
pytestmark = pytest.mark.kafka_broker(tls=True, sasl_users={"alice": "alice-secret"})


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_kafka_over_sasl_ssl(kafka_broker, mechanism, caplog):
    caplog.set_level(logging.DEBUG, logger="pylog.broker.sasl")
    conf = kafka_broker.sasl_client_config(mechanism, "alice")
    assert conf["security.protocol"] == "SASL_SSL"
    values = [b"s0", b"s1", b"s2"]
    assert confluent_roundtrip(conf, values) == values
    authenticated = [r.getMessage() for r in caplog.records if r.name == "pylog.broker.sasl"]
    assert any(x.endswith("authenticated as User:alice") for x in authenticated), authenticated


def test_wrong_password_over_tls(kafka_broker):
    errors = []
    p = ck.Producer({**kafka_broker.sasl_client_config("PLAIN", "alice", "nope"), "error_cb": errors.append})

    def failed():
        p.poll(0.2)
        return any(e.code() == ck.KafkaError._AUTHENTICATION for e in errors)
    wait_until(failed, "the authentication failure over TLS")
    assert any("Invalid username or password" in e.str() for e in errors)


@pytest.mark.skipif(KCAT is None and not os.environ.get("PYLOG_CI"), reason="kcat is not installed")
def test_kcat_over_sasl_ssl(kafka_broker):
    conf = kafka_broker.sasl_client_config("SCRAM-SHA-256", "alice")
    args = [KCAT, "-b", str(kafka_broker)]
    for k in ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location"):
        args += ["-X", f"{k}={conf[k]}"]
    topic = f"sk-{uuid.uuid4().hex[:8]}"
    r = subprocess.run([*args, "-t", topic, "-P"], input="x\ny\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*args, "-t", topic, "-C", "-e"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["x", "y"]


def test_admin_tool_over_sasl_ssl(kafka_broker, tmp_path):
    conf = kafka_broker.sasl_client_config("SCRAM-SHA-512", "alice")
    props = tmp_path / "admin.properties"
    props.write_text(f"security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=alice\n"
                     f"sasl.password={conf['sasl.password']}\nssl.truststore.type=PEM\n"
                     f"ssl.truststore.location={conf['ssl.ca.location']}\n")
    base = [sys.executable, "-m", "pylog", "topics"]
    r = subprocess.run([*base, "create", "--bootstrap-server", str(kafka_broker), "--command-config", str(props),
                        "--topic", "over-sasl-ssl"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*base, "list", "--bootstrap-server", str(kafka_broker), "--command-config", str(props)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "over-sasl-ssl" in r.stdout.split(), r.stderr
