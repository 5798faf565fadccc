"""The certificates of run_suite.sh's SSL=1 runs, as librdkafka's trivup
set-up (SslApp + LibrdkafkaTestApp) lays them out for the test-runner.

    python ssl_files.py DIR

writes into DIR a CA and the broker's certificate (pylog.testing.TestCertificates),
a second, unused CA (SSL_all_cas_pem holds it first, then the real one: 0097
loads a multi-CA PEM), and the client's certificate in every form 0097 reads
(PEM, DER, PKCS#12). It prints KEY=VALUE lines: the SSL_* environment of the
test-runner (trivup's names), then the client's test.conf keys prefixed with
"conf:"."""
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from pylog.testing import TestCertificates

# trivup's default ssl_key_pass.
PASSWORD = "12345678"


def main(directory: str) -> None:
    certs = TestCertificates(directory)
    unused = TestCertificates(os.path.join(directory, "unused-ca"), ca_name="pylog unused test CA")
    cert_path, key_path, _ = certs.issue("librdkafka", key_password=PASSWORD)

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    def write(name, data):
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    ca_pem, cert_pem, key_pem = read(certs.ca), read(cert_path), read(key_path)
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, PASSWORD.encode())
    env = {
        "SSL_ca_pem": certs.ca,
        "SSL_ca_der": write("ca.der", ca.public_bytes(serialization.Encoding.DER)),
        "SSL_all_cas_pem": write("all_cas.pem", read(unused.ca) + ca_pem),
        # As trivup: the client certificate followed by its chain.
        "SSL_pub_pem": write("librdkafka-pub.pem", cert_pem + ca_pem),
        "SSL_pub_der": write("librdkafka-pub.der", cert.public_bytes(serialization.Encoding.DER)),
        "SSL_priv_pem": key_path,
        "SSL_priv_der": write("librdkafka-priv.der", key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        "SSL_pkcs": write("librdkafka.pfx", pkcs12.serialize_key_and_certificates(
            b"librdkafka", key, cert, [ca], serialization.BestAvailableEncryption(PASSWORD.encode()))),
        "SSL_password": PASSWORD,
        "SSL_client_auth": "required",
    }
    conf = {
        "ssl.ca.location": certs.ca,
        "ssl.certificate.location": env["SSL_pub_pem"],
        "ssl.key.location": key_path,
        "ssl.key.password": PASSWORD,
    }
    # The broker's key store and trust store, for run_suite.sh.
    print(f"broker_keystore={certs.broker}")
    print(f"broker_truststore={certs.ca}")
    for k, v in env.items():
        print(f"{k}={v}")
    for k, v in conf.items():
        print(f"conf:{k}={v}")


if __name__ == "__main__":
    main(sys.argv[1])
