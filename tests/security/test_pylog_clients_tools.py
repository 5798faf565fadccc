"""pylog's data tools over SSL, mutual TLS and SASL_SSL (PLAIN and SCRAM),
configured as Kafka's tools are: --producer.config, --consumer.config and
--command-config properties files, in librdkafka's TLS keys or the Java
client's. Each tool runs as a user runs it (a `python -m pylog` process)
against a real broker; a wrong CA makes a tool fail at once with a message
saying so."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("cryptography")

from pylog.testing import TestCertificates  # noqa: E402

USERS = {"alice": "alice-secret"}


def pylog(*args, input=None, ok=True, timeout=180):
    out = subprocess.run([sys.executable, "-m", "pylog", *args], input=input, capture_output=True, text=True,
                         timeout=timeout, check=False)
    if ok:
        assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-3000:])
    return out


def write_props(path, props: dict) -> str:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return str(path)


def client_props(broker, mode: str) -> dict:
    certs = broker.certs
    if mode == "ssl":        # librdkafka's keys
        return {"security.protocol": "SSL", "ssl.ca.location": certs.ca}
    if mode == "mtls":       # the Java client's, as kafka-*.sh take them
        _, _, both = certs.issue("tool-user", key_password="pw")
        return {"security.protocol": "SSL", "ssl.truststore.type": "PEM", "ssl.truststore.location": certs.ca,
                "ssl.keystore.type": "PEM", "ssl.keystore.location": both, "ssl.key.password": "pw"}
    if mode == "sasl_ssl_plain":
        return {"security.protocol": "SASL_SSL", "ssl.ca.location": certs.ca, "sasl.mechanism": "PLAIN",
                "sasl.username": "alice", "sasl.password": USERS["alice"]}
    assert mode == "sasl_ssl_scram"
    return {"security.protocol": "SASL_SSL", "ssl.truststore.type": "PEM", "ssl.truststore.location": certs.ca,
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required '
                                f'username="alice" password="{USERS["alice"]}";'}


def events(stdout: str, name: str) -> list[dict]:
    out = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("name") == name:
                out.append(e)
    return out


MODES = [
    pytest.param("ssl", marks=pytest.mark.kafka_broker(tls=True)),
    pytest.param("mtls", marks=pytest.mark.kafka_broker(tls="required")),
    pytest.param("sasl_ssl_plain", marks=pytest.mark.kafka_broker(tls=True, sasl_users=USERS)),
    pytest.param("sasl_ssl_scram", marks=pytest.mark.kafka_broker(tls=True, sasl_users=USERS)),
]


@pytest.mark.parametrize("mode", MODES)
def test_every_data_tool(kafka_broker, tmp_path, mode):
    b = str(kafka_broker)
    cfg = write_props(tmp_path / "client.properties", client_props(kafka_broker, mode))
    group_protocol = "consumer" if mode in ("mtls", "sasl_ssl_scram") else "classic"

    # console producer and consumer (standalone and in a group)
    pylog("produce", "--bootstrap-server", b, "--topic", "lines", "--producer.config", cfg, input="a\nb\nc\n")
    out = pylog("consume", "--bootstrap-server", b, "--topic", "lines", "--from-beginning", "--max-messages", "3",
                "--consumer.config", cfg)
    assert out.stdout.split() == ["a", "b", "c"]
    out = pylog("consume", "--bootstrap-server", b, "--topic", "lines", "--group", "console-g", "--from-beginning",
                "--max-messages", "3", "--consumer.config", cfg)
    assert sorted(out.stdout.split()) == ["a", "b", "c"]

    # perf tools
    out = pylog("perf", "produce", "--bootstrap-server", b, "--topic", "perf", "--num-records", "2000",
                "--record-size", "100", "--throughput", "-1", "--producer.config", cfg)
    assert "2000 records sent" in out.stdout, out.stdout
    out = pylog("perf", "consume", "--bootstrap-server", b, "--topic", "perf", "--messages", "2000",
                "--consumer.config", cfg, "--timeout", "60000")
    assert out.stdout.strip(), out.stdout

    # the system-test tools
    out = pylog("verifiable-producer", "--bootstrap-server", b, "--topic", "vp", "--max-messages", "30",
                "--command-config", cfg)
    assert len(events(out.stdout, "producer_send_success")) == 30, out.stdout[-2000:]
    out = pylog("verifiable-consumer", "--bootstrap-server", b, "--topic", "vp", "--group-id", "vg",
                "--group-protocol", group_protocol, "--max-messages", "30", "--reset-policy", "earliest",
                "--command-config", cfg)
    assert sum(e["count"] for e in events(out.stdout, "records_consumed")) == 30, out.stdout[-2000:]

    # offsets and records
    out = pylog("get-offsets", "--bootstrap-server", b, "--topic", "lines", "--command-config", cfg)
    assert out.stdout.split() == ["lines:0:3"]
    offsets = tmp_path / "offsets.json"
    offsets.write_text(json.dumps({"version": 1, "partitions": [{"topic": "lines", "partition": 0, "offset": 2}]}))
    pylog("delete-records", "--bootstrap-server", b, "--offset-json-file", str(offsets), "--command-config", cfg)
    out = pylog("get-offsets", "--bootstrap-server", b, "--topic", "lines", "--time", "-2", "--command-config", cfg)
    assert out.stdout.split() == ["lines:0:2"]
    out = pylog("groups", "describe", "--bootstrap-server", b, "--group", "console-g", "--command-config", cfg)
    assert "lines" in out.stdout


@pytest.mark.kafka_broker(tls=True)
def test_a_wrong_ca_fails_each_tool_clearly(kafka_broker, tmp_path):
    other = TestCertificates(tmp_path / "other", ca_name="not the broker's CA")
    cfg = write_props(tmp_path / "bad.properties", {"security.protocol": "SSL", "ssl.ca.location": other.ca})
    b = str(kafka_broker)
    for args in (["produce", "--topic", "t", "--producer.config", cfg],
                 ["consume", "--topic", "t", "--consumer.config", cfg, "--max-messages", "1"],
                 ["perf", "produce", "--topic", "t", "--num-records", "1", "--record-size", "1", "--throughput", "-1",
                  "--producer.config", cfg],
                 ["perf", "consume", "--topic", "t", "--messages", "1", "--consumer.config", cfg],
                 ["get-offsets", "--topic", "t", "--command-config", cfg],
                 ["topics", "list", "--command-config", cfg]):
        out = pylog(*args, "--bootstrap-server", b, "--request-timeout-ms", "600000", input="x\n", ok=False)
        assert out.returncode != 0 and "certificate is not trusted" in out.stderr, (args, out.stderr[-2000:])
    out = pylog("verifiable-producer", "--bootstrap-server", b, "--topic", "t", "--max-messages", "1",
                "--command-config", cfg, ok=False)
    assert out.returncode != 0 and "certificate is not trusted" in out.stdout + out.stderr, out.stderr[-2000:]
