"""Kafka's client security settings -> what pylog's clients connect with.

    kw = security_settings({"security.protocol": "SASL_SSL", "ssl.ca.location": "ca.pem",
                            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice",
                            "sasl.password": "alice-secret"})
    Producer("broker:9093", **kw)      # kw == {"ssl_context": SSLContext, "sasl": ClientCredentials}

security.protocol is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. TLS takes
both dialects Kafka users have in their client configs:
- librdkafka's (confluent-kafka, kcat): ssl.ca.location / ssl.ca.pem,
  ssl.certificate.location / ssl.certificate.pem with ssl.key.location /
  ssl.key.pem and ssl.key.password;
- the Java client's (Kafka's tools' --command-config): ssl.truststore.* and
  ssl.keystore.* as PEM (or PKCS12), ssl.protocol, ssl.enabled.protocols,
  ssl.cipher.suites; read by the broker's own reader (pylog/broker/tls.py),
  so a client file and a server.properties mean the same.
ssl.endpoint.identification.algorithm defaults to https (the broker's
certificate must name the host connected to), as in both; empty or none
turns that check off. SASL keys are pylog/client/sasl.py's.

A key pylog does not honour, or a TLS key without a TLS protocol, raises
ValueError naming it: a client asked for security must not quietly connect
without it.
"""
from __future__ import annotations

import ssl

from ..errors import InvalidConfigError
from .sasl import credentials_from_properties

__all__ = ["CLIENT_TLS_KEYS", "security_settings", "ssl_context_from_properties"]

# librdkafka's TLS keys -> what they stand for in the Java client's terms.
_LIBRDKAFKA_KEYS = ("ssl.ca.location", "ssl.ca.pem", "ssl.certificate.location", "ssl.certificate.pem",
                    "ssl.key.location", "ssl.key.pem")
# The Java client's TLS keys pylog reads (the broker's less the server-only ones).
_JAVA_KEYS = ("ssl.protocol", "ssl.enabled.protocols", "ssl.cipher.suites", "ssl.keystore.type",
              "ssl.keystore.location", "ssl.keystore.password", "ssl.keystore.certificate.chain",
              "ssl.keystore.key", "ssl.key.password", "ssl.truststore.type", "ssl.truststore.location",
              "ssl.truststore.password", "ssl.truststore.certificates", "ssl.endpoint.identification.algorithm")
CLIENT_TLS_KEYS = frozenset(_LIBRDKAFKA_KEYS + _JAVA_KEYS)
_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_WHERE = "client"   # the name broker/tls.py puts in its messages


def security_settings(props: dict[str, str]) -> dict:
    """{"ssl_context": ..., "sasl": ...} for Producer, Consumer, Client and
    Connection from Kafka client properties (other keys are left alone)."""
    protocol = props.get("security.protocol", "PLAINTEXT").strip().upper()
    tls_keys = sorted(k for k in props if k.startswith("ssl."))
    unknown = [k for k in tls_keys if k not in CLIENT_TLS_KEYS]
    if unknown:
        raise ValueError(f"TLS settings not supported by pylog's client: {', '.join(unknown)} (it takes "
                         f"{', '.join(sorted(CLIENT_TLS_KEYS))})")
    context = None
    if protocol in _TLS_PROTOCOLS:
        context = ssl_context_from_properties(props)
    elif tls_keys:
        raise ValueError(f"{', '.join(tls_keys)} set with security.protocol={protocol}: the client would not use "
                         f"TLS; set security.protocol=SSL (or SASL_SSL)")
    return {"ssl_context": context, "sasl": credentials_from_properties(props)}


def ssl_context_from_properties(props: dict[str, str]) -> ssl.SSLContext:
    """The client SSLContext the ssl.* keys describe (either dialect, not both
    for the same store). Unreadable files or keys raise ValueError."""
    from ..broker.tls import client_context
    java = {k: v for k, v in props.items() if k in _JAVA_KEYS}
    rdk = {k: v for k, v in props.items() if k in _LIBRDKAFKA_KEYS}
    algo = java.get("ssl.endpoint.identification.algorithm")
    if algo is not None and algo.strip().lower() == "none":
        java["ssl.endpoint.identification.algorithm"] = ""   # librdkafka's spelling of "off"
    _trust_from_librdkafka(rdk, java)
    _identity_from_librdkafka(rdk, java)
    try:
        return client_context(java, _WHERE)
    except InvalidConfigError as e:
        text = str(e)
        prefix = f"listener {_WHERE}: "
        raise ValueError(text[len(prefix):] if text.startswith(prefix) else text) from None


def _trust_from_librdkafka(rdk: dict, java: dict) -> None:
    location, inline = rdk.get("ssl.ca.location"), rdk.get("ssl.ca.pem")
    if location is None and inline is None:
        return
    clash = [k for k in ("ssl.truststore.location", "ssl.truststore.certificates") if k in java]
    if clash or (location is not None and inline is not None):
        raise ValueError(f"the CA is named twice ({', '.join(['ssl.ca.location', 'ssl.ca.pem', *clash])}): "
                         f"set one of them")
    java["ssl.truststore.type"] = "PEM"
    if location is not None:
        java["ssl.truststore.location"] = location
    else:
        java["ssl.truststore.certificates"] = inline


def _identity_from_librdkafka(rdk: dict, java: dict) -> None:
    """ssl.certificate.* + ssl.key.* -> an inline PEM key store (the files are
    read here, so both dialects load through one path)."""
    cert = _pem(rdk, "ssl.certificate.location", "ssl.certificate.pem")
    key = _pem(rdk, "ssl.key.location", "ssl.key.pem")
    if cert is None and key is None:
        return
    if cert is None or key is None:
        have = "a certificate" if cert is not None else "a key"
        raise ValueError(f"a client certificate needs both ssl.certificate.location (or .pem) and "
                         f"ssl.key.location (or .pem); only {have} was given")
    clash = [k for k in ("ssl.keystore.location", "ssl.keystore.certificate.chain", "ssl.keystore.key") if k in java]
    if clash:
        raise ValueError(f"the client certificate is named twice (ssl.certificate.*/ssl.key.* and "
                         f"{', '.join(clash)}): set one of them")
    java["ssl.keystore.type"] = "PEM"
    java["ssl.keystore.certificate.chain"] = cert
    java["ssl.keystore.key"] = key


def _pem(rdk: dict, location_key: str, pem_key: str) -> str | None:
    location, inline = rdk.get(location_key), rdk.get(pem_key)
    if location is not None and inline is not None:
        raise ValueError(f"set {location_key} or {pem_key}, not both")
    if location is None:
        return inline
    try:
        with open(location, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {location_key}={location}: {getattr(e, 'strerror', None) or e}") from None
