"""KIP-368 re-authentication with connections.max.reauth.ms: the session
lifetime in SaslAuthenticate v1+, a request after the session ended closes
the connection, a re-authentication on the same connection renews it (same
principal only), and librdkafka keeps producing across several lifetimes."""
from __future__ import annotations

import logging
import time
import uuid

import pytest

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import wait_until

from .saslwire import Raw, close_all

ck = pytest.importorskip("confluent_kafka")

LIFETIME_MS = 3000   # long enough that a loaded machine never stalls a whole session away
pytestmark = pytest.mark.kafka_broker(sasl_users={"alice": "alice-secret", "bob": "bob-secret"},
                                      config={"connections.max.reauth.ms": str(LIFETIME_MS)})


@pytest.fixture
def raw(kafka_broker):
    yield Raw(kafka_broker)
    close_all()


def test_session_lifetime_then_close_on_the_next_request(raw):
    resp = raw.login("alice", "alice-secret")
    assert resp.error_code == 0 and resp.session_lifetime_ms == LIFETIME_MS
    raw.request(m.MetadataRequest(topics=None), 1)    # within the session
    time.sleep(LIFETIME_MS / 1000 + 0.3)
    with pytest.raises(ConnectionError):
        raw.request(m.MetadataRequest(topics=None), 1)


def test_reauthentication_renews_the_session(raw):
    assert raw.login("alice", "alice-secret").error_code == 0
    for _ in range(3):
        time.sleep(LIFETIME_MS / 2000)
        resp = raw.login("alice", "alice-secret")
        assert resp.error_code == 0 and resp.session_lifetime_ms == LIFETIME_MS
        raw.request(m.MetadataRequest(topics=None), 1)


def test_reauthentication_cannot_change_the_principal(raw):
    assert raw.login("alice", "alice-secret").error_code == 0
    resp = raw.login("bob", "bob-secret")
    assert resp.error_code == Errors.SASL_AUTHENTICATION_FAILED
    assert resp.error_message == "Cannot change principals during re-authentication from User.alice: User.bob"


def test_librdkafka_reauthenticates_and_keeps_producing(kafka_broker, caplog):
    caplog.set_level(logging.DEBUG, logger="pylog.broker.sasl")
    topic = f"reauth-{uuid.uuid4().hex[:8]}"
    p = ck.Producer({**kafka_broker.sasl_client_config("SCRAM-SHA-256", "alice"), "acks": "all"})
    delivered = []
    deadline = time.monotonic() + 3 * LIFETIME_MS / 1000
    i = 0
    while time.monotonic() < deadline:
        p.produce(topic, str(i).encode(), on_delivery=lambda err, msg: delivered.append(err))
        p.poll(0.05)
        i += 1
    assert p.flush(30) == 0
    assert delivered and all(err is None for err in delivered)
    wait_until(lambda: len(delivered) == i, "every delivery report")
    # librdkafka renewed its sessions on the same connections (at 90 % of the
    # lifetime) before the broker had to close one
    messages = [r.getMessage() for r in caplog.records if r.name == "pylog.broker.sasl"]
    assert any("re-authenticated as User:alice" in x for x in messages), messages
    assert not any("expired" in x for x in messages), messages
