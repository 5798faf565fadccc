"""Kafka's security settings pylog does not implement yet (ACLs, the SASL
mechanisms and callbacks it lacks, the JVM's TLS providers), tried as a new
user would try them: the broker refuses to start and names the key, instead
of warning "supplied but not used" and serving every client in plaintext
without authentication. Settings that ask for nothing still start. (What is
built: tests/security/test_tls*.py and test_sasl*.py.)"""
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
    ("sasl.kerberos.service.name", "kafka"),
    ("sasl.server.callback.handler.class", "x.Handler"),
    ("sasl.oauthbearer.jwks.endpoint.url", "https://idp/keys"),
    ("listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class", "x.Handler"),
    # TLS keys pylog does not honour (JVM providers and factories)
    ("ssl.keymanager.algorithm", "SunX509"),
    ("ssl.trustmanager.algorithm", "PKIX"),
    ("ssl.provider", "BC"),
    ("ssl.engine.factory.class", "x.Factory"),
    ("ssl.secure.random.implementation", "SHA1PRNG"),
    ("listener.name.ssl.ssl.keymanager.algorithm", "SunX509"),
    ("principal.builder.class", "x.Builder"),
    ("delegation.token.secret.key", "s"),
])
def test_each_security_key_refuses_the_start_and_names_itself(key, value):
    with pytest.raises(InvalidConfigError) as e:
        BrokerConfig({key: value})
    assert key in str(e.value) and "does not implement" in str(e.value)


@pytest.mark.parametrize("key", ["listener.name.SSL.ssl.client.auth", "listener.name.EXTERNAL.max.connections"])
def test_a_listener_prefixed_key_with_an_upper_case_listener_name_is_refused(key):
    # Kafka reads listener.name.<listener lower-cased>.*: this key would be accepted and never used.
    with pytest.raises(InvalidConfigError, match="the listener name in listener.name.<listener>.\\* keys is lower case"):
        BrokerConfig({key: "required" if "ssl" in key else "5"})


def test_an_unknown_security_inter_broker_protocol_is_refused():
    with pytest.raises(InvalidConfigError, match="security.inter.broker.protocol=TLS: not a security protocol"):
        BrokerConfig({"security.inter.broker.protocol": "TLS"})


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
    # mechanisms, authorizer and super users; all built now, but without the
    # listener's JAAS users the broker refuses with what to set
    props = tmp_path / "server.properties"
    props.write_text("listeners=SASL_PLAINTEXT://127.0.0.1:0\n"
                     "sasl.enabled.mechanisms=PLAIN\n"
                     f"authorizer.class.name={STANDARD_AUTHORIZER}\n"
                     "super.users=User:admin\n")
    r = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"),
                        "--config", str(props)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "has no JAAS configuration" in r.stderr and "Traceback" not in r.stderr
    # without the listener line the other keys still refuse the start
    props.write_text("principal.builder.class=x.Builder\n")
    r = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"),
                        "--config", str(props)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "principal.builder.class is a security setting" in r.stderr and "Traceback" not in r.stderr
