"""pylog's tools and client objects against a SASL broker: `pylog configs`
for users (kafka-configs.sh's options and output), produce/consume/topics with
--command-config / --producer.config / --consumer.config, and the Producer and
Consumer classes with credentials."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from pylog.client.sasl import credentials_from_properties
from pylog.consumer import Consumer
from pylog.producer import Producer
from pylog.testing import wait_until

pytestmark = pytest.mark.kafka_broker(sasl_users={"alice": "alice-secret"})
SCRAM_JAAS = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="{u}" password="{p}";'


def pylog(*args, stdin=None, ok=True):
    r = subprocess.run([sys.executable, "-m", "pylog", *args], input=stdin, capture_output=True, text=True,
                       timeout=120)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def properties(tmp_path, name, mechanism, user, password, jaas=False):
    path = tmp_path / name
    lines = ["security.protocol=SASL_PLAINTEXT", f"sasl.mechanism={mechanism}"]
    if jaas:
        lines.append("sasl.jaas.config=" + SCRAM_JAAS.format(u=user, p=password))
    else:
        lines += [f"sasl.username={user}", f"sasl.password={password}"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_configs_users_alter_describe_delete(kafka_broker, tmp_path):
    admin = properties(tmp_path, "admin.properties", "SCRAM-SHA-512", "admin", "admin-secret", jaas=True)
    base = ["configs", "--bootstrap-server", str(kafka_broker), "--command-config", admin, "--entity-type", "users"]
    r = pylog(*base, "--entity-name", "erin", "--alter", "--add-config",
              "SCRAM-SHA-256=[iterations=8192,password=erin-secret],SCRAM-SHA-512=[password=erin-secret]")
    assert r.stdout == "Completed updating config for user erin.\n"
    r = pylog(*base, "--entity-name", "erin", "--describe")
    assert r.stdout == ("SCRAM credential configs for user-principal 'erin' are SCRAM-SHA-256=iterations=8192, "
                        "SCRAM-SHA-512=iterations=4096\n")
    # erin can now use the tools with her own credential
    erin = properties(tmp_path, "erin.properties", "SCRAM-SHA-256", "erin", "erin-secret")
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    pylog("topics", "create", "--bootstrap-server", str(kafka_broker), "--command-config", erin, "--topic", topic)
    assert topic in pylog("topics", "list", "--bootstrap-server", str(kafka_broker),
                          "--command-config", erin).stdout.split()
    pylog("produce", "--bootstrap-server", str(kafka_broker), "--producer.config", erin, "--topic", topic,
          stdin="one\ntwo\n")
    r = pylog("consume", "--bootstrap-server", str(kafka_broker), "--consumer.config", erin, "--topic", topic,
              "--from-beginning", "--max-messages", "2", "--timeout-ms", "30000")
    assert r.stdout.splitlines() == ["one", "two"]

    r = pylog(*base, "--entity-name", "erin", "--alter", "--delete-config", "SCRAM-SHA-256")
    assert r.stdout == "Completed updating config for user erin.\n"
    r = pylog("topics", "list", "--bootstrap-server", str(kafka_broker), "--command-config", erin, ok=False)
    assert r.returncode != 0 and "SASL_AUTHENTICATION_FAILED" in r.stderr and "Traceback" not in r.stderr
    r = pylog(*base, "--entity-name", "nobody", "--describe")
    assert r.stdout == ("Error retrieving SCRAM credential configs for user-principal 'nobody': "
                        "ResourceNotFoundException: Attempt to describe a user credential that does not exist: "
                        "nobody\n")


@pytest.mark.parametrize("config, message", [
    ("SCRAM-SHA-256=[iterations=1000,password=x]", "Iterations 1000 is less than the minimum 4096"),
    ("SCRAM-SHA-1=[password=x]", "Unexpected config names: SCRAM-SHA-1"),
    ("SCRAM-SHA-256=[password=x],controller_mutation_rate=5", "Cannot alter both quota and SCRAM"),
])
def test_configs_refusals_are_kafkas(kafka_broker, tmp_path, config, message):
    admin = properties(tmp_path, "admin.properties", "PLAIN", "admin", "admin-secret")
    r = pylog("configs", "--bootstrap-server", str(kafka_broker), "--command-config", admin, "--entity-type",
              "users", "--entity-name", "x", "--alter", "--add-config", config, ok=False)
    assert r.returncode != 0 and message in r.stderr


def test_tools_refuse_unknown_sasl_keys(kafka_broker, tmp_path):
    path = tmp_path / "bad.properties"
    r = pylog("consume", "--bootstrap-server", str(kafka_broker), "--topic", "t", "--consumer-property",
              "sasl.kerberos.service.name=k", ok=False)
    assert r.returncode != 0 and "security settings are not supported" in r.stderr, r.stderr
    for text, message in [("security.protocol=SASL_SSL\n", "GSSAPI"),
                          ("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\nsasl.kerberos.service.name=k\n",
                           "sasl.kerberos.service.name"),
                          ("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\n", "GSSAPI")]:
        path.write_text(text)
        r = pylog("topics", "list", "--bootstrap-server", str(kafka_broker), "--command-config", str(path), ok=False)
        assert r.returncode != 0 and message in r.stderr, r.stderr


def test_credentials_from_client_properties():
    c = credentials_from_properties({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                                     "sasl.jaas.config": SCRAM_JAAS.format(u="a", p="b c")})
    assert (c.mechanism, c.username, c.password) == ("SCRAM-SHA-256", "a", "b c")
    assert credentials_from_properties({}) is None
    with pytest.raises(ValueError, match="security.protocol=PLAINTEXT"):
        credentials_from_properties({"sasl.mechanism": "PLAIN"})


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_producer_and_consumer_classes(kafka_broker, mechanism):
    creds = credentials_from_properties({**kafka_broker.sasl_client_config(mechanism, "alice")})
    topic = f"cls-{uuid.uuid4().hex[:8]}"
    p = Producer(str(kafka_broker), sasl=creds)
    try:
        for i in range(3):
            p.send(topic, f"r{i}".encode()).get(timeout=30)
    finally:
        p.close()
    c = Consumer(topic, bootstrap_servers=str(kafka_broker), group_id=f"g-{topic}", auto_offset_reset="earliest",
                 sasl=creds)
    got = []
    try:
        def three():
            got.extend(r.value for r in c.poll(0.5))
            return len(got) >= 3
        wait_until(three, "three records consumed over SASL")
    finally:
        c.close()
    assert got == [b"r0", b"r1", b"r2"]
