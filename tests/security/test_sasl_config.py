"""The broker's SASL settings as Kafka reads them (JAAS syntax, enabled
mechanisms, the inter-broker mechanism), and the start refused, naming the
key, for what pylog cannot honour."""
from __future__ import annotations

import pytest

from pylog.broker.config import BrokerConfig
from pylog.broker.sasl import inter_broker_credentials, listener_settings, parse_jaas
from pylog.errors import InvalidConfigError

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
JAAS_KEY = "listener.name.sasl_plaintext.plain.sasl.jaas.config"


def sasl(**extra):
    return {"listeners": "SASL_PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            JAAS_KEY: f'{PLAIN_MODULE} required username="admin" password="admin-secret" user_admin="admin-secret";',
            **extra}


def test_jaas_syntax_as_kafka_reads_it():
    text = (f'{PLAIN_MODULE} required\n  username=admin password="a b;c" user_alice="x\\"y" '
            f'user_bob=plain ;')
    assert parse_jaas("k", text) == [(PLAIN_MODULE, "required", {
        "username": "admin", "password": "a b;c", "user_alice": 'x"y', "user_bob": "plain"})]
    assert len(parse_jaas("k", f"{PLAIN_MODULE} required; {SCRAM_MODULE} optional a=b;")) == 2


@pytest.mark.parametrize("text, why", [
    (f'{PLAIN_MODULE} required user_alice="x"', "must end with ';'"),
    (f'{PLAIN_MODULE} user_alice="x";', "control flag"),
    (f'{PLAIN_MODULE} required user_alice;', "name=value"),
    ("", "empty"),
])
def test_bad_jaas_refuses_the_start(text, why):
    with pytest.raises(InvalidConfigError, match=why):
        BrokerConfig(sasl(**{JAAS_KEY: text}))


def test_plain_users_and_the_brokers_own_login():
    cfg = BrokerConfig(sasl(**{JAAS_KEY: f'{PLAIN_MODULE} required username="admin" password="admin-secret" '
                                         f'user_admin="admin-secret" user_alice="alice-secret";',
                               "zookeeper.connect": "127.0.0.1:1"}))
    settings = listener_settings(cfg)["SASL_PLAINTEXT"]
    assert settings.plain_users == {"admin": "admin-secret", "alice": "alice-secret"}
    creds = inter_broker_credentials(cfg)
    assert (creds.mechanism, creds.username, creds.password) == ("PLAIN", "admin", "admin-secret")


@pytest.mark.parametrize("extra, message", [
    ({"sasl.enabled.mechanisms": "GSSAPI"}, "GSSAPI is not implemented"),
    ({"sasl.enabled.mechanisms": "PLAIN,DIGEST-MD5"}, "DIGEST-MD5 is not implemented"),
    ({"sasl.enabled.mechanisms": "PLAIN,OAUTHBEARER", "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
      "zookeeper.connect": "127.0.0.1:1"}, "brokers cannot get tokens"),
    ({"listener.name.sasl_plaintext.sasl.enabled.mechanisms": "GSSAPI"}, "GSSAPI is not implemented"),
    ({JAAS_KEY: f'{SCRAM_MODULE} required;'}, "cannot serve PLAIN"),
    ({"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256"}, "must be included in sasl.enabled.mechanisms"),
    ({"listeners": "SASL_SSL://127.0.0.1:0"}, "a TLS listener needs a key store"),
    ({"zookeeper.connect": "127.0.0.1:1",
      JAAS_KEY: f'{PLAIN_MODULE} required user_admin="admin-secret";'}, "needs username and password"),
])
def test_what_pylog_cannot_honour_refuses_the_start(extra, message):
    with pytest.raises(InvalidConfigError, match=message):
        BrokerConfig(sasl(**extra))


def test_plain_without_any_jaas_is_refused():
    cfg = sasl()
    del cfg[JAAS_KEY]
    with pytest.raises(InvalidConfigError, match="enables PLAIN but has no JAAS configuration"):
        BrokerConfig(cfg)


def test_default_gssapi_is_fine_without_a_sasl_listener():
    BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", "sasl.enabled.mechanisms": "GSSAPI"})


def test_reauth_ms_per_listener_and_mechanism():
    cfg = BrokerConfig(sasl(**{"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256", "connections.max.reauth.ms": "60000",
                               "listener.name.sasl_plaintext.scram-sha-256.connections.max.reauth.ms": "5000"}))
    assert listener_settings(cfg)["SASL_PLAINTEXT"].reauth_ms == {"PLAIN": 60000, "SCRAM-SHA-256": 5000}
    with pytest.raises(InvalidConfigError, match="Value must be at least 0"):
        BrokerConfig(sasl(**{"listener.name.sasl_plaintext.plain.connections.max.reauth.ms": "-1"}))
