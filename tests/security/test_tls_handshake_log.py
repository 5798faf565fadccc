"""Failed TLS handshakes are logged as Kafka's Selector logs a failed
authentication: INFO, the peer's address and port, the reason; a TCP
connection closed before any TLS is not (a health check). Real sockets, real
OpenSSL on both sides, the broker in this process (its log is caplog's)."""
from __future__ import annotations

import logging
import socket
import ssl
import struct
import time

import pytest

from pylog.broker.tls import HandshakeFailureLog
from pylog.testing import TestCertificates, running_broker, wait_until

pytest.importorskip("cryptography")

# An ApiVersions v0 request, as a client configured for PLAINTEXT sends first.
_API_VERSIONS = struct.pack(">ihhih", 14, 18, 0, 1, 4) + b"test"


@pytest.fixture
def tls_broker(tmp_path):
    certs = TestCertificates(tmp_path / "certs")
    with running_broker(config=certs.broker_config("SSL", client_auth="required")) as b:
        b.certs = certs
        yield b


def _failures(caplog, port):
    return [r for r in caplog.records if r.name == "pylog.broker" and r.levelno == logging.INFO
            and r.getMessage().startswith(f"Failed authentication with 127.0.0.1:{port} ")]


def _closed_by_broker(sock):
    sock.settimeout(30)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass


def test_a_plaintext_client_on_a_tls_listener_is_logged_with_its_address(tls_broker, caplog):
    caplog.set_level(logging.INFO, logger="pylog.broker")
    with socket.create_connection(("127.0.0.1", tls_broker.port)) as s:
        port = s.getsockname()[1]
        s.sendall(_API_VERSIONS)
        _closed_by_broker(s)
    [rec] = wait_until(lambda: _failures(caplog, port), what="the failed handshake logged")
    msg = rec.getMessage()
    assert "on listener SSL (SSL handshake failed: " in msg and msg.endswith(")"), msg
    assert "WRONG_VERSION_NUMBER" in msg or "wrong version" in msg.lower() or "HTTP" in msg, msg


def test_a_client_without_the_required_certificate_is_logged(tls_broker, caplog):
    caplog.set_level(logging.INFO, logger="pylog.broker")
    ctx = ssl.create_default_context(cafile=tls_broker.certs.ca)
    with socket.create_connection(("127.0.0.1", tls_broker.port)) as raw:
        port = raw.getsockname()[1]
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                # TLS 1.3: the client is done before the broker checked its
                # certificate; the broker's alert arrives at the first read.
                s.sendall(_API_VERSIONS)
                _closed_by_broker(s)
        except (ssl.SSLError, OSError):
            pass
    [rec] = wait_until(lambda: _failures(caplog, port), what="the failed handshake logged")
    assert "CERTIFICATE" in rec.getMessage().upper(), rec.getMessage()


def test_a_client_that_does_not_trust_the_broker_is_logged(tls_broker, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="pylog.broker")
    other = TestCertificates(tmp_path / "other", ca_name="another CA")
    ctx = ssl.create_default_context(cafile=other.ca)
    with socket.create_connection(("127.0.0.1", tls_broker.port)) as raw:
        port = raw.getsockname()[1]
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    [rec] = wait_until(lambda: _failures(caplog, port), what="the failed handshake logged")
    assert "UNKNOWN_CA" in rec.getMessage().upper(), rec.getMessage()


def test_a_tcp_connection_closed_before_any_tls_is_not_a_failure(tls_broker, caplog):
    caplog.set_level(logging.INFO, logger="pylog.broker")
    with socket.create_connection(("127.0.0.1", tls_broker.port)) as s:
        quiet = s.getsockname()[1]
    # Then a failing one: once it is logged, the quiet one was handled long before.
    with socket.create_connection(("127.0.0.1", tls_broker.port)) as s:
        loud = s.getsockname()[1]
        s.sendall(_API_VERSIONS)
        _closed_by_broker(s)
    wait_until(lambda: _failures(caplog, loud), what="the failed handshake logged")
    assert _failures(caplog, quiet) == []


def test_failures_beyond_the_limit_are_counted_not_logged(caplog):
    caplog.set_level(logging.INFO, logger="pylog.broker")
    failures = HandshakeFailureLog()
    failures.LIMIT, failures.WINDOW_S = 3, 0.5
    for i in range(10):
        failures.failed(f"10.0.0.1:{i}", "SSL", "WRONG_VERSION_NUMBER")
    assert [r.getMessage().split(" on ")[0] for r in caplog.records] == [
        f"Failed authentication with 10.0.0.1:{i}" for i in range(3)]
    caplog.clear()
    time.sleep(failures.WINDOW_S + 0.1)   # the next window
    failures.failed("10.0.0.2:1", "SSL", "UNKNOWN_CA")
    assert [r.getMessage() for r in caplog.records] == [
        "7 more failed TLS handshakes were not logged in the last 0.5 s",
        "Failed authentication with 10.0.0.2:1 on listener SSL (SSL handshake failed: UNKNOWN_CA)"]
