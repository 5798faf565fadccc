"""SASL/OAUTHBEARER with Kafka's unsecured-JWS validator: librdkafka's
unsecured tokens (enable.sasl.oauthbearer.unsecure.jwt) produce and consume
as their principal; a bad or expired token gets Kafka's JSON challenge, then
SASL_AUTHENTICATION_FAILED; the session ends with the token (KIP-368)."""
from __future__ import annotations

import base64
import logging
import json
import time

import pytest

from pylog.broker.sasl_oauthbearer import InvalidToken, validate
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors

from .saslwire import Raw, close_all, confluent_roundtrip

ck = pytest.importorskip("confluent_kafka")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "OAUTHBEARER")
pytestmark = pytest.mark.kafka_broker(sasl_users={"alice": "alice-secret"}, sasl_mechanisms=MECHANISMS)


@pytest.fixture(autouse=True)
def _close_raw_sockets():
    yield
    close_all()


def jws(claims, alg="none"):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': alg})}.{part(claims)}."


def first_message(token, authzid=""):
    return f"n,{'a=' + authzid if authzid else ''},\x01auth=Bearer {token}\x01\x01".encode()


def test_librdkafka_unsecured_token_produces_and_consumes(kafka_broker, caplog):
    caplog.set_level(logging.DEBUG, logger="pylog.broker.sasl")
    conf = {"bootstrap.servers": str(kafka_broker), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "enable.sasl.oauthbearer.unsecure.jwt": True,
            "sasl.oauthbearer.config": "principal=carol"}
    assert confluent_roundtrip(conf, [b"bearer"]) == [b"bearer"]
    authenticated = [r.getMessage() for r in caplog.records if r.name == "pylog.broker.sasl"]
    assert any(x.endswith("authenticated as User:carol") for x in authenticated), authenticated


def test_expired_token_gets_the_json_challenge_then_failure(kafka_broker):
    raw = Raw(kafka_broker)
    assert raw.request(m.SaslHandshakeRequest(mechanism="OAUTHBEARER"), 1).error_code == 0
    token = jws({"sub": "dave", "exp": time.time() - 60, "iat": time.time() - 120})
    resp = raw.request(m.SaslAuthenticateRequest(auth_bytes=first_message(token)), 1)
    assert resp.error_code == 0 and bytes(resp.auth_bytes) == b'{"status":"invalid_token"}'
    resp = raw.request(m.SaslAuthenticateRequest(auth_bytes=b"\x01"), 1)
    assert resp.error_code == Errors.SASL_AUTHENTICATION_FAILED
    assert resp.error_message == '{"status":"invalid_token"}'
    assert raw.closed_by_broker()


def test_session_lifetime_is_the_tokens(kafka_broker):
    raw = Raw(kafka_broker)
    raw.request(m.SaslHandshakeRequest(mechanism="OAUTHBEARER"), 1)
    token = jws({"sub": "erin", "exp": time.time() + 3})
    resp = raw.request(m.SaslAuthenticateRequest(auth_bytes=first_message(token, "erin")), 1)
    assert resp.error_code == 0 and 0 < resp.session_lifetime_ms <= 3000
    raw.request(m.MetadataRequest(topics=None), 1)
    time.sleep(3.3)
    with pytest.raises(ConnectionError):
        raw.request(m.MetadataRequest(topics=None), 1)


def test_authzid_must_be_the_principal(kafka_broker):
    raw = Raw(kafka_broker)
    raw.request(m.SaslHandshakeRequest(mechanism="OAUTHBEARER"), 1)
    token = jws({"sub": "erin", "exp": time.time() + 60})
    resp = raw.request(m.SaslAuthenticateRequest(auth_bytes=first_message(token, "mallory")), 1)
    assert resp.error_code == Errors.SASL_AUTHENTICATION_FAILED
    assert "authorization id (mallory) that is different from the token's principal name (erin)" in \
        resp.error_message


@pytest.mark.parametrize("claims, header_alg, options, why", [
    ({"sub": "a", "exp": 2e9}, "RS256", {}, "alg must be none"),
    ({"exp": 2e9}, "none", {}, "principal claim sub"),
    ({"sub": "a"}, "none", {}, "exp claim"),
    ({"sub": "a", "exp": 2e9, "iat": 2e9 + 10}, "none", {}, "issued in the future"),
    ({"sub": "a", "exp": 2e9, "scope": "read"}, "none", {"unsecuredValidatorRequiredScope": "write"},
     "required scope"),
    ({"user": "a", "exp": 2e9}, "none", {"unsecuredValidatorPrincipalClaimName": "name"}, "principal claim name"),
])
def test_validator_rules(claims, header_alg, options, why):
    with pytest.raises(InvalidToken, match=why):
        validate(jws(claims, header_alg), options, now=1.9e9)


def test_validator_accepts_with_skew_and_scope():
    token = jws({"sub": "a", "exp": 1.9e9 - 1, "scope": "read write"})
    assert validate(token, {"unsecuredValidatorAllowableClockSkewMs": "5000",
                            "unsecuredValidatorRequiredScope": "write"}, now=1.9e9) == ("a", 1.9e9 - 1)
