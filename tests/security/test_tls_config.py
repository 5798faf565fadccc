"""The TLS keys as a broker reads them: Kafka's listener-prefix precedence,
what is refused at start (and why), ssl.principal.mapping.rules, and subject
DNs in the RFC 2253 form Java writes (checked against openssl's)."""
from __future__ import annotations

import shutil
import ssl
import subprocess

import pytest

from pylog.broker.config import BrokerConfig
from pylog.broker.tls import PrincipalMapper, ssl_settings, subject_dn
from pylog.errors import InvalidConfigError
from pylog.testing import TestCertificates

pytest.importorskip("cryptography")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return TestCertificates(tmp_path_factory.mktemp("certs"))


def test_a_listener_prefixed_key_wins_over_the_plain_one_key_by_key():
    props = {"ssl.client.auth": "required", "listener.name.internal.ssl.client.auth": "none",
             "ssl.keystore.type": "PEM"}
    assert ssl_settings(props, "INTERNAL")["ssl.client.auth"] == "none"
    assert ssl_settings(props, "INTERNAL")["ssl.keystore.type"] == "PEM"
    assert ssl_settings(props, "EXTERNAL")["ssl.client.auth"] == "required"
    assert ssl_settings({}, "X")["ssl.enabled.protocols"] == "TLSv1.2,TLSv1.3"   # Kafka's default


def test_two_ssl_listeners_with_their_own_client_auth(certs):
    cfg = BrokerConfig({
        "listeners": "INTERNAL://127.0.0.1:0,EXTERNAL://127.0.0.1:0",
        "listener.security.protocol.map": "INTERNAL:SSL,EXTERNAL:SSL",
        "inter.broker.listener.name": "INTERNAL",
        "ssl.keystore.type": "PEM", "ssl.keystore.location": certs.broker,
        "ssl.truststore.type": "PEM", "ssl.truststore.location": certs.ca,
        "listener.name.internal.ssl.client.auth": "required"})
    assert cfg.server_tls("INTERNAL").verify_mode == ssl.CERT_REQUIRED
    assert cfg.server_tls("EXTERNAL").verify_mode == ssl.CERT_NONE
    # the broker connects to INTERNAL with its key store and checks host names
    client = cfg.inter_broker_tls()
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED


def test_endpoint_identification_off_for_the_broker_as_a_client(certs):
    cfg = BrokerConfig({**certs.broker_config(), "security.inter.broker.protocol": "SSL",
                        "listener.security.protocol.map": "SSL:SSL",
                        "ssl.endpoint.identification.algorithm": ""})
    client = cfg.inter_broker_tls()
    assert not client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(InvalidConfigError, match="only https"):
        BrokerConfig({**certs.broker_config(), "security.inter.broker.protocol": "SSL",
                      "ssl.endpoint.identification.algorithm": "ldaps"})


@pytest.mark.parametrize("extra, message", [
    ({"ssl.keystore.password": "x"}, "password cannot be specified with PEM"),
    ({"ssl.truststore.password": "x", "ssl.client.auth": "required"}, "cannot be specified for PEM"),
    ({"ssl.keystore.type": "JKS"}, "JKS"),
    ({"ssl.keystore.type": "BCFKS"}, "PEM and PKCS12"),
    ({"ssl.client.auth": "maybe"}, "String must be one of: required, requested, none"),
    ({"ssl.enabled.protocols": "TLSv1.1"}, "TLSv1.2 and TLSv1.3 only"),
    ({"ssl.protocol": "SSLv3"}, "ssl.protocol=SSLv3"),
    ({"ssl.cipher.suites": "TLS_AES_128_GCM_SHA256"}, "cannot narrow the TLS 1.3 suites"),
    ({"ssl.cipher.suites": "NOT_A_SUITE"}, "NOT_A_SUITE is not a suite"),
    ({"ssl.cipher.suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TYPO_SUITE"}, "TYPO_SUITE is not a suite"),
    ({"ssl.principal.mapping.rules": "RULE:(/"}, "ssl.principal.mapping.rules"),
    ({"listener.name.other.ssl.client.auth": "required"}, "not an SSL listener"),
])
def test_refused_at_start(certs, extra, message):
    props = {**certs.broker_config(), **extra}
    with pytest.raises(InvalidConfigError, match=message):
        BrokerConfig(props)


def test_ssl_keys_without_an_ssl_listener_are_refused(certs):
    with pytest.raises(InvalidConfigError, match="no listener uses the SSL security protocol"):
        BrokerConfig({"listeners": "PLAINTEXT://127.0.0.1:0", "ssl.keystore.type": "PEM",
                      "ssl.keystore.location": certs.broker})


def test_a_sasl_ssl_listener_needs_a_mechanism_pylog_has(certs):
    # (SASL_SSL itself works: tests/security/test_sasl_ssl.py)
    with pytest.raises(InvalidConfigError, match="SASL mechanism GSSAPI is not implemented"):
        BrokerConfig({**certs.broker_config(), "listeners": "SASL_SSL://127.0.0.1:0",
                      "listener.security.protocol.map": "SASL_SSL:SASL_SSL"})


def test_suites_by_iana_name_and_tls12_only(certs):
    cfg = BrokerConfig({**certs.broker_config(), "ssl.enabled.protocols": "TLSv1.2",
                        "ssl.cipher.suites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"})
    ctx = cfg.server_tls("SSL")
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    assert {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"} == {"ECDHE-ECDSA-AES128-GCM-SHA256"}


@pytest.mark.parametrize("rules, dn, name", [
    ("DEFAULT", "CN=alice,OU=test,O=pylog", "CN=alice,OU=test,O=pylog"),
    ("RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L,DEFAULT", "CN=Alice,OU=Test,O=pylog", "alice@test"),
    ("RULE:^CN=(.*?),OU=(.*?)$/$1/U, DEFAULT", "CN=bob,OU=x", "BOB"),
    ("RULE:^CN=(.*?),OU=(.*?)$/$1/U, DEFAULT", "CN=bob,O=x", "CN=bob,O=x"),
    ("RULE:^CN=([a-z]+)$/$1/", "CN=carol", "carol"),
    ("RULE:^CN=([a-z]+)$/$1/", "CN=Carol", None),   # no rule applies: authentication fails
    ("RULE:^CN=(.*)$/$12/", "CN=dan", "dan2"),    # $12 with one group: group 1, then a literal 2
])
def test_principal_mapping_rules_as_kafkas_ssl_principal_mapper(rules, dn, name):
    assert PrincipalMapper(rules).name(dn) == name


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_subject_dn_is_rfc2253_as_openssl_writes_it(tmp_path):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc."),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "ops+dev"),
        x509.NameAttribute(NameOID.COMMON_NAME, " lead space"),
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    path = tmp_path / "c.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-subject", "-nameopt", "RFC2253"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.startswith("subject=")
    mine = subject_dn(cert.public_bytes(serialization.Encoding.DER))
    assert mine == out[len("subject="):]
    assert mine == "DC=example,CN=\\ lead space,OU=ops\\+dev,O=Acme\\, Inc.,C=DE"


def test_the_readme_server_properties_starts_a_broker(certs, tmp_path):
    # the README's Security example, with this test's files and loopback ports
    import pathlib
    import re
    from pylog.broker.config import read_properties
    from pylog.testing import running_broker
    readme = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"### TLS listeners.*?```properties\n(.*?)```", readme, re.S).group(1)
    block = (block.replace("/etc/pylog/broker1.pem", certs.broker).replace("/etc/pylog/ca.pem", certs.ca)
             .replace("0.0.0.0:9093", "127.0.0.1:0").replace("0.0.0.0:9094", "127.0.0.1:0")
             .replace("broker1.example.com:9093", "127.0.0.1:0").replace("broker1.example.com:9094", "127.0.0.1:0"))
    path = tmp_path / "server.properties"
    path.write_text(block)
    props = read_properties(str(path))
    with running_broker(tmp_path / "d", config=props) as b:
        cfg = b.broker.config
        assert cfg.server_tls("INTERNAL").verify_mode == ssl.CERT_REQUIRED
        assert cfg.server_tls("CLIENT").verify_mode == ssl.CERT_NONE
        assert cfg.inter_broker_tls() is not None
