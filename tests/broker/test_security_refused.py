"""Kafka's security settings, tried as a new user would try them, while pylog
has no TLS, SASL or ACLs (issue 19): the broker refuses to start and names the
key, instead of warning "supplied but not used" and serving every client in
plaintext without authentication. Settings that ask for nothing still start."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.testing import running_broker

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import admin as ck_admin  # noqa: E402

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@pytest.mark.parametrize("key, value", [
    ("sasl.enabled.mechanisms", "PLAIN"),
    ("sasl.mechanism.inter.broker.protocol", "PLAIN"),
    ("authorizer.class.name", STANDARD_AUTHORIZER),
    ("super.users", "User:admin"),
    ("allow.everyone.if.no.acl.found", "false"),
    ("ssl.keystore.type", "PEM"),
    ("ssl.keystore.location", "/etc/kafka/broker.pem"),
    ("ssl.client.auth", "required"),
    ("ssl.truststore.certificates", "-----BEGIN CERTIFICATE-----"),
    ("listener.name.sasl_plaintext.plain.sasl.jaas.config",
     'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret";'),
    ("principal.builder.class", "x.Builder"),
    ("connections.max.reauth.ms", "3600000"),
    ("delegation.token.secret.key", "s"),
])
def test_each_security_key_refuses_the_start_and_names_itself(key, value):
    with pytest.raises(InvalidConfigError) as e:
        BrokerConfig({key: value})
    assert key in str(e.value) and "does not implement" in str(e.value)


def test_security_inter_broker_protocol_other_than_plaintext_is_refused():
    with pytest.raises(InvalidConfigError, match="security.inter.broker.protocol=SSL: pylog has no TLS"):
        BrokerConfig({"security.inter.broker.protocol": "SSL"})


def test_both_ways_of_naming_the_inter_broker_listener_is_kafkas_error():
    with pytest.raises(InvalidConfigError, match="Only one of inter.broker.listener.name and "
                                                 "security.inter.broker.protocol should be set"):
        BrokerConfig({"security.inter.broker.protocol": "PLAINTEXT", "inter.broker.listener.name": "PLAINTEXT"})


def test_settings_that_ask_for_no_security_still_start(tmp_path):
    # Kafka's defaults written out: no authorizer, PLAINTEXT between brokers
    config = {"authorizer.class.name": "", "security.inter.broker.protocol": "PLAINTEXT",
              "listeners": "PLAINTEXT://127.0.0.1:0"}
    with running_broker(data_dir=str(tmp_path / "d"), config=config) as b:
        assert b.broker.config.inter_broker_listener_name() == "PLAINTEXT"
        md = ck_admin.AdminClient({"bootstrap.servers": str(b)}).list_topics(timeout=10)
        assert len(md.brokers) == 1


def test_the_broker_command_refuses_the_issues_server_properties(tmp_path):
    # what a Kafka user copies from the security docs: SASL listener,
    # mechanisms, authorizer and super users
    props = tmp_path / "server.properties"
    props.write_text("listeners=SASL_PLAINTEXT://127.0.0.1:0\n"
                     "sasl.enabled.mechanisms=PLAIN\n"
                     f"authorizer.class.name={STANDARD_AUTHORIZER}\n"
                     "super.users=User:admin\n")
    r = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"),
                        "--config", str(props)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "does not implement" in r.stderr and "Traceback" not in r.stderr
    # without the listener line the other keys still refuse the start
    props.write_text("super.users=User:admin\n")
    r = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"),
                        "--config", str(props)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "super.users is a security setting" in r.stderr and "Traceback" not in r.stderr
