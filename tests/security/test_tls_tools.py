"""pylog's admin tools over TLS: --command-config takes the TLS keys of
Kafka's own tools (security.protocol=SSL, ssl.truststore.*, ssl.keystore.*),
mTLS included (the data tools: tests/security/test_pylog_clients_tools.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("cryptography")


def pylog(broker, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "pylog", *args, "--bootstrap-server", str(broker)],
                         capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def _props(path, **keys):
    path.write_text("".join(f"{k.replace('_', '.')}={v}\n" for k, v in keys.items()))
    return str(path)


@pytest.mark.kafka_broker(tls="required")
def test_topics_create_and_list_over_mtls(kafka_broker, tmp_path):
    certs = kafka_broker.certs
    cert, key, both = certs.issue("admin")
    cfg = _props(tmp_path / "admin.properties", security_protocol="SSL", ssl_truststore_type="PEM",
                 ssl_truststore_location=certs.ca, ssl_keystore_type="PEM", ssl_keystore_location=both)
    pylog(kafka_broker, "topics", "create", "--topic", "over-tls", "--partitions", "2", "--command-config", cfg)
    assert "over-tls" in pylog(kafka_broker, "topics", "list", "--command-config", cfg).stdout.split()
    # without its certificate the broker refuses the tool
    bare = _props(tmp_path / "bare.properties", security_protocol="SSL", ssl_truststore_type="PEM",
                  ssl_truststore_location=certs.ca)
    out = pylog(kafka_broker, "topics", "list", "--command-config", bare, "--request-timeout-ms", "5000",
                check=False)
    assert out.returncode != 0


def test_tls_keys_without_security_protocol_ssl_are_refused(tmp_path):
    cfg = _props(tmp_path / "a.properties", ssl_truststore_type="PEM", ssl_truststore_location="/x")
    out = pylog("127.0.0.1:1", "topics", "list", "--command-config", cfg, check=False)
    assert out.returncode != 0 and "set security.protocol=SSL" in out.stderr
    out = pylog("127.0.0.1:1", "consume", "--topic", "t", "--consumer-property", "ssl.truststore.location=/x",
                check=False)
    assert out.returncode != 0 and "set security.protocol=SSL" in out.stderr
