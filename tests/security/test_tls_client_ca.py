"""An SSL listener with ssl.client.auth names its trust store's subjects in
its certificate request, as a Java broker does, so clients choose their
certificate by them: librdkafka then sends no certificate the broker would
not trust, and meets handshake_failure (alert 40, what Java 23+ sends for a
missing client certificate; librdkafka's 0097 accepts 40 or 42) instead of
OpenSSL's unknown_ca (48) for a foreign certificate."""
from __future__ import annotations

import shutil
import subprocess
import threading

import pytest

from pylog.testing import TestCertificates, wait_until

ck = pytest.importorskip("confluent_kafka")
pytest.importorskip("cryptography")

TLS12 = {"ssl.protocol": "TLSv1.2", "ssl.enabled.protocols": "TLSv1.2"}


def _acceptable_ca_names(broker, version_flag):
    host, port = str(broker).rsplit(":", 1)
    out = subprocess.run(["openssl", "s_client", "-connect", f"{host}:{port}", version_flag,
                          "-CAfile", broker.certs.ca],
                         input=b"", capture_output=True, timeout=60).stdout.decode(errors="replace")
    assert "Acceptable client certificate CA names" in out, out
    return out.split("Acceptable client certificate CA names", 1)[1].split("---", 1)[0]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.kafka_broker(tls="required")
def test_the_certificate_request_names_the_trust_store_subjects(kafka_broker):
    for flag in ("-tls1_2", "-tls1_3"):
        names = _acceptable_ca_names(kafka_broker, flag)
        assert "CN = pylog test CA" in names, (flag, names)


@pytest.mark.kafka_broker(tls="required", config=TLS12)
def test_librdkafka_sends_no_foreign_certificate_and_gets_handshake_failure(kafka_broker, tmp_path):
    other = TestCertificates(tmp_path / "other-ca", ca_name="some other CA")
    cert, key, _ = other.issue("mallory")
    errors, logs = [], []
    lock = threading.Lock()

    class Logs:
        def log(self, level, fmt, *args):
            with lock:
                logs.append(fmt % args if args else fmt)

        def __getattr__(self, name):   # librdkafka's logger gets debug/info/... too
            return lambda *a, **k: None

    p = ck.Producer({"bootstrap.servers": str(kafka_broker), "security.protocol": "SSL",
                     "ssl.ca.location": kafka_broker.certs.ca,
                     "ssl.certificate.location": cert, "ssl.key.location": key,
                     "error_cb": lambda e: errors.append(e), "logger": Logs()})
    try:
        def ssl_error():
            p.poll(0.2)
            return any(e.code() == ck.KafkaError._SSL for e in errors)
        wait_until(ssl_error, "an SSL error from the producer", timeout=60)
    finally:
        p.flush(0)
    text = [e.str() for e in errors if e.code() == ck.KafkaError._SSL]
    assert any("alert number 40" in t for t in text), text
    assert not any("alert number 48" in t for t in text), text
    assert any("not sending any client certificates" in line for line in logs), logs
