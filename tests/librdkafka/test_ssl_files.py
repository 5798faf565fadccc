"""ssl_files.py, the certificates of run_suite.sh's SSL=1 runs: a real broker
with the broker files and ssl.client.auth=required lets in a librdkafka client
(confluent-kafka) with the test.conf keys, and refuses one with a certificate
of the unused CA; the SSL_* files are the forms 0097 loads."""
import pathlib
import subprocess
import sys

import confluent_kafka
import confluent_kafka.admin
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from pylog.testing import FAST_GROUP_CONFIG, running_broker, wait_until

SCRIPT = pathlib.Path(__file__).parent / "ssl_files.py"


def _files(directory):
    out = subprocess.run([sys.executable, str(SCRIPT), str(directory)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    env, conf = {}, {}
    for line in out.splitlines():
        k, v = line.split("=", 1)
        if k.startswith("conf:"):
            conf[k[5:]] = v
        else:
            env[k] = v
    return env, conf


def _broker_config(env):
    return {"listeners": "SSL://127.0.0.1:0",
            "ssl.keystore.type": "PEM", "ssl.keystore.location": env["broker_keystore"],
            "ssl.truststore.type": "PEM", "ssl.truststore.location": env["broker_truststore"],
            "ssl.client.auth": "required", "ssl.protocol": "TLSv1.2", "ssl.enabled.protocols": "TLSv1.2"}


def test_client_with_test_conf_is_let_in_and_foreign_certificate_refused(tmp_path):
    env, conf = _files(tmp_path / "ssl")
    with running_broker(tmp_path / "data", config={**FAST_GROUP_CONFIG, **_broker_config(env)}) as b:
        bootstrap = str(b)
        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SSL",
                                                   **conf})
        assert admin.list_topics(timeout=60).brokers

        # The unused CA is trusted by nobody: its certificate is refused.
        foreign = tmp_path / "ssl" / "unused-ca" / "broker.pem"
        errors = []
        refused = confluent_kafka.admin.AdminClient({
            "bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": conf["ssl.ca.location"],
            "ssl.certificate.location": str(foreign), "ssl.key.location": str(foreign),
            "error_cb": errors.append})
        with pytest.raises(confluent_kafka.KafkaException):
            refused.list_topics(timeout=5)
        # The broker's refusal (an alert in the handshake), not some other failure:
        # the client sends no certificate the broker's request does not name, and
        # the broker answers handshake_failure, as 0097 expects (error_cb runs from poll()).
        wait_until(lambda: refused.poll(0.1) is not None and any("alert number 40" in e.str() for e in errors),
                   "the broker's handshake_failure alert")


def test_files_have_the_forms_0097_loads(tmp_path):
    env, conf = _files(tmp_path / "ssl")
    ca = x509.load_pem_x509_certificate(pathlib.Path(env["SSL_ca_pem"]).read_bytes())
    assert x509.load_der_x509_certificate(pathlib.Path(env["SSL_ca_der"]).read_bytes()) == ca
    # Two CAs in one PEM, the real one last (as trivup's all_cas.pem).
    all_cas = x509.load_pem_x509_certificates(pathlib.Path(env["SSL_all_cas_pem"]).read_bytes())
    assert len(all_cas) == 2 and all_cas[1] == ca and all_cas[0] != ca
    key, cert, chain = pkcs12.load_key_and_certificates(pathlib.Path(env["SSL_pkcs"]).read_bytes(),
                                                        env["SSL_password"].encode())
    assert key is not None and cert.issuer == ca.subject and chain == [ca]
    pub = x509.load_pem_x509_certificates(pathlib.Path(env["SSL_pub_pem"]).read_bytes())
    assert pub == [cert, ca]
    assert x509.load_der_x509_certificate(pathlib.Path(env["SSL_pub_der"]).read_bytes()) == cert
    assert env["SSL_client_auth"] == "required"
    assert conf["ssl.key.password"] == env["SSL_password"]
