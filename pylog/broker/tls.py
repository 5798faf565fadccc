"""TLS for listeners and for the broker's own connections to other brokers.

Kafka's keys (SslConfigs, BrokerSecurityConfigs), read per listener with
Kafka's precedence: `listener.name.<lowercase name>.ssl.<key>` wins over
`ssl.<key>`, key by key. server_context() builds the SSLContext an SSL (or,
later, SASL_SSL) listener accepts with; client_context() the one the broker
connects to another broker's inter-broker listener with, from the same keys
(its keystore is its client certificate for mTLS, its truststore checks the
other broker). principal_of() turns a verified peer certificate into Kafka's
principal through ssl.principal.mapping.rules.

Key stores: PEM (a file with the key and the chain, or the inline
ssl.keystore.certificate.chain + ssl.keystore.key) and PKCS12 (read with the
`cryptography` package). JKS is a Java format: refused, naming the
conversion. Anything unreadable raises InvalidConfigError at start, before
a socket is bound.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import tempfile
import time

from ..errors import InvalidConfigError
from .tls_client_ca import der_certificates, name_trusted_issuers

# Kafka's defaults for the keys pylog honours (SslConfigs / BrokerSecurityConfigs).
SSL_DEFAULTS: dict[str, str | None] = {
    "ssl.protocol": "TLSv1.3",
    "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
    "ssl.cipher.suites": "",
    "ssl.keystore.type": "JKS",
    "ssl.keystore.location": None,
    "ssl.keystore.password": None,
    "ssl.keystore.certificate.chain": None,
    "ssl.keystore.key": None,
    "ssl.key.password": None,
    "ssl.truststore.type": "JKS",
    "ssl.truststore.location": None,
    "ssl.truststore.password": None,
    "ssl.truststore.certificates": None,
    "ssl.client.auth": "none",
    "ssl.endpoint.identification.algorithm": "https",
    "ssl.principal.mapping.rules": "DEFAULT",
}

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

# Kafka names cipher suites as the JVM does (IANA names); OpenSSL has its own
# names for TLS 1.2 suites. The suites a modern JVM and OpenSSL share:
_IANA_TO_OPENSSL = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256": "DHE-RSA-AES128-GCM-SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384": "DHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384": "ECDHE-ECDSA-AES256-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384": "ECDHE-RSA-AES256-SHA384",
}
# Python's ssl module cannot narrow the TLS 1.3 suites (OpenSSL's
# SSL_CTX_set_ciphersuites is not exposed): a list naming only some of them
# is refused rather than quietly allowing the others.
_TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"})


def listener_prefix(listener: str) -> str:
    """Kafka's ListenerName.configPrefix: `listener.name.<lowercase>.`"""
    return f"listener.name.{listener.lower()}."


def ssl_settings(props: dict[str, str], listener: str) -> dict[str, str | None]:
    """The ssl.* keys that apply to listener: the listener-prefixed value,
    else the plain one, else Kafka's default."""
    prefix = listener_prefix(listener)
    out = {}
    for key, default in SSL_DEFAULTS.items():
        if prefix + key in props:
            out[key] = props[prefix + key]
        elif key in props:
            out[key] = props[key]
        else:
            out[key] = default
    return out


def server_context(props: dict[str, str], listener: str, sasl: bool = False) -> ssl.SSLContext:
    """The context a TLS listener accepts with. For a SASL_SSL listener
    (sasl=True) ssl.client.auth applies only when listener-prefixed, as in
    Kafka (SslFactory / ChannelBuilders): the client authenticates with SASL."""
    s = ssl_settings(props, listener)
    if sasl and listener_prefix(listener) + "ssl.client.auth" not in props:
        s["ssl.client.auth"] = "none"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(ctx, s, listener)
    if not _has_keystore(s):
        raise InvalidConfigError(f"listener {listener}: a TLS listener needs a key store (ssl.keystore.location, "
                                 f"or ssl.keystore.certificate.chain with ssl.keystore.key)")
    _load_keystore(ctx, s, listener)
    auth = (s["ssl.client.auth"] or "none").strip().lower()
    if auth not in _CLIENT_AUTH:
        raise InvalidConfigError(f"Invalid value {s['ssl.client.auth']} for configuration ssl.client.auth: "
                                 f"String must be one of: required, requested, none")
    ctx.verify_mode = _CLIENT_AUTH[auth]
    if auth != "none":
        try:
            import cryptography  # noqa: F401  (subject_dn reads client certificates with it)
        except ImportError:
            raise InvalidConfigError(f"listener {listener}: ssl.client.auth={auth} needs the `cryptography` "
                                     f"package to read client certificates (pip install cryptography)") from None
        trusted = _load_truststore(ctx, s, listener)
        # A Java broker names its trust store's subjects when it asks for
        # the client's certificate; clients pick their certificate by them.
        name_trusted_issuers(ctx, trusted, listener)
    return ctx


def client_context(props: dict[str, str], listener: str) -> ssl.SSLContext:
    """The context this broker connects to another broker's `listener` with
    (the inter-broker or control-plane listener): the same keys as that
    listener's server side, as Kafka's inter-broker channel builder uses."""
    s = ssl_settings(props, listener)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _common(ctx, s, listener)
    algo = (s["ssl.endpoint.identification.algorithm"] or "").strip().lower()
    if algo not in ("", "https"):
        raise InvalidConfigError(f"ssl.endpoint.identification.algorithm={algo}: only https (verify the host "
                                 f"name) or empty (do not) exist")
    ctx.check_hostname = algo == "https"
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_truststore(ctx, s, listener)
    if _has_keystore(s):
        _load_keystore(ctx, s, listener)
    return ctx


def _common(ctx: ssl.SSLContext, s: dict, listener: str) -> None:
    protocol = (s["ssl.protocol"] or "").strip()
    if protocol not in ("TLS", "TLSv1.2", "TLSv1.3"):
        raise InvalidConfigError(f"ssl.protocol={protocol}: pylog speaks TLS, TLSv1.2 and TLSv1.3")
    enabled = [p.strip() for p in (s["ssl.enabled.protocols"] or "").split(",") if p.strip()]
    unknown = [p for p in enabled if p not in _VERSIONS]
    if not enabled or unknown:
        raise InvalidConfigError(f"ssl.enabled.protocols={s['ssl.enabled.protocols']}: pylog enables TLSv1.2 "
                                 f"and TLSv1.3 only (older versions are broken; OpenSSL refuses them)")
    versions = sorted(_VERSIONS[p] for p in enabled)
    # The JVM's SSLContext.getInstance("TLSv1.2") speaks nothing newer.
    if protocol == "TLSv1.2":
        versions = [v for v in versions if v <= ssl.TLSVersion.TLSv1_2]
        if not versions:
            raise InvalidConfigError("ssl.protocol=TLSv1.2 with ssl.enabled.protocols=TLSv1.3: no version left")
    ctx.minimum_version, ctx.maximum_version = versions[0], versions[-1]
    suites = [c.strip() for c in (s["ssl.cipher.suites"] or "").split(",") if c.strip()]
    if suites:
        tls13 = {c for c in suites if c in _TLS13_SUITES}
        if tls13 and tls13 != _TLS13_SUITES and ctx.maximum_version >= ssl.TLSVersion.TLSv1_3:
            raise InvalidConfigError(
                f"ssl.cipher.suites names {','.join(sorted(tls13))}: pylog cannot narrow the TLS 1.3 suites; "
                f"name all of {','.join(sorted(_TLS13_SUITES))} or none, or disable TLSv1.3")
        tls12 = [_IANA_TO_OPENSSL.get(c, c) for c in suites if c not in _TLS13_SUITES]
        # OpenSSL takes a list if any one name is known; each must be, or it
        # would be accepted and ignored.
        scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        for name, openssl_name in zip([c for c in suites if c not in _TLS13_SUITES], tls12):
            try:
                scratch.set_ciphers(openssl_name)
            except ssl.SSLError:
                raise InvalidConfigError(f"ssl.cipher.suites: {name} is not a suite pylog knows (IANA names of "
                                         f"the ECDHE/DHE AES-GCM/ChaCha20 suites, or OpenSSL names)") from None
        if tls12:
            ctx.set_ciphers(":".join(tls12))
        elif ctx.maximum_version < ssl.TLSVersion.TLSv1_3:
            raise InvalidConfigError("ssl.cipher.suites names only TLS 1.3 suites and TLSv1.3 is not enabled")
        else:
            # Only TLS 1.3 suites named: TLS 1.2 gets none, so it is off.
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3


def _has_keystore(s: dict) -> bool:
    return bool(s["ssl.keystore.location"] or s["ssl.keystore.certificate.chain"] or s["ssl.keystore.key"])


def _load_keystore(ctx: ssl.SSLContext, s: dict, listener: str) -> None:
    kind = (s["ssl.keystore.type"] or "JKS").strip().upper()
    location = s["ssl.keystore.location"]
    chain, key = s["ssl.keystore.certificate.chain"], s["ssl.keystore.key"]
    where = f"listener {listener}"
    _check_store_type("ssl.keystore.type", kind, where)
    if location and (chain or key):
        raise InvalidConfigError(f"{where}: set ssl.keystore.location or ssl.keystore.certificate.chain + "
                                 f"ssl.keystore.key, not both")
    key_password = s["ssl.key.password"]
    if kind == "PKCS12":
        if not location:
            raise InvalidConfigError(f"{where}: ssl.keystore.type=PKCS12 needs ssl.keystore.location")
        pem = _pkcs12_to_pem(location, s["ssl.keystore.password"], where)
        _load_pem_chain(ctx, pem, None, where)
        return
    if s["ssl.keystore.password"] is not None:
        raise InvalidConfigError(f"{where}: SSL key store password cannot be specified with PEM format, only "
                                 f"key password may be specified (ssl.key.password)")
    if location:
        pem = _read(location, "ssl.keystore.location", where)
    else:
        if not chain or not key:
            raise InvalidConfigError(f"{where}: an inline PEM key store needs both ssl.keystore.certificate.chain "
                                     f"and ssl.keystore.key")
        pem = key.strip().encode() + b"\n" + chain.strip().encode() + b"\n"
    _load_pem_chain(ctx, pem, key_password, where)


def _load_truststore(ctx: ssl.SSLContext, s: dict, listener: str) -> list[bytes]:
    """Load the trust store into ctx; its certificates (DER)."""
    kind = (s["ssl.truststore.type"] or "JKS").strip().upper()
    location, inline = s["ssl.truststore.location"], s["ssl.truststore.certificates"]
    where = f"listener {listener}"
    if not location and not inline:
        ctx.load_default_certs()   # as the JVM falls back to its cacerts
        return ctx.get_ca_certs(binary_form=True)
    _check_store_type("ssl.truststore.type", kind, where)
    if location and inline:
        raise InvalidConfigError(f"{where}: set ssl.truststore.location or ssl.truststore.certificates, not both")
    if kind == "PEM" and s["ssl.truststore.password"] is not None:
        raise InvalidConfigError(f"{where}: SSL trust store password cannot be specified for PEM format")
    if kind == "PKCS12":
        if not location:
            raise InvalidConfigError(f"{where}: ssl.truststore.type=PKCS12 needs ssl.truststore.location")
        pem = _pkcs12_certs(location, s["ssl.truststore.password"], where)
    else:
        pem = _read(location, "ssl.truststore.location", where) if location else inline.encode()
    try:
        ctx.load_verify_locations(cadata=pem.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as e:
        raise InvalidConfigError(f"{where}: no certificate could be read from the trust store "
                                 f"({location or 'ssl.truststore.certificates'}): {e}") from None
    return der_certificates(pem)


def _check_store_type(key: str, kind: str, where: str) -> None:
    if kind == "JKS":
        raise InvalidConfigError(
            f"{where}: {key}=JKS (Kafka's default) is a Java key store pylog cannot read; convert it "
            f"(keytool -importkeystore -deststoretype PKCS12) and set {key}=PKCS12, or use PEM")
    if kind not in ("PEM", "PKCS12"):
        raise InvalidConfigError(f"{where}: {key}={kind}: pylog reads PEM and PKCS12 stores")


def _read(path: str, key: str, where: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InvalidConfigError(f"{where}: cannot read {key}={path}: {e.strerror or e}") from None


def _load_pem_chain(ctx: ssl.SSLContext, pem: bytes, password: str | None, where: str) -> None:
    """load_cert_chain reads files only: the PEM goes through an anonymous
    memory file (no copy of a private key on disk), or a private temporary
    file removed at once where memfd does not exist."""
    if b"PRIVATE KEY" not in pem:
        raise InvalidConfigError(f"{where}: the key store holds no private key")
    if b"CERTIFICATE" not in pem:
        raise InvalidConfigError(f"{where}: the key store holds no certificate")
    if password is None and b"ENCRYPTED PRIVATE KEY" in pem:
        raise InvalidConfigError(f"{where}: the private key is encrypted and ssl.key.password is not set")
    pw = password.encode() if password is not None else None
    try:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("pylog-keystore", getattr(os, "MFD_CLOEXEC", 1))
            try:
                os.write(fd, pem)
                path = f"/proc/self/fd/{fd}"
                ctx.load_cert_chain(path, path, password=pw)
            finally:
                os.close(fd)
        else:
            with tempfile.NamedTemporaryFile() as f:
                f.write(pem)
                f.flush()
                ctx.load_cert_chain(f.name, f.name, password=pw)
    except ssl.SSLError as e:
        raise InvalidConfigError(f"{where}: the key store's key and certificate cannot be loaded (wrong "
                                 f"ssl.key.password, a key that does not match the certificate, or bad PEM): "
                                 f"{e.reason or e}") from None


def _load_pkcs12(path: str, password: str | None, where: str):
    try:
        from cryptography.hazmat.primitives.serialization import pkcs12
    except ImportError:
        raise InvalidConfigError(f"{where}: PKCS12 stores need the `cryptography` package "
                                 f"(pip install cryptography), or use PEM") from None
    data = _read(path, "location", where)
    try:
        return pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError as e:
        raise InvalidConfigError(f"{where}: cannot read the PKCS12 store {path} (wrong password?): {e}") from None


def _pkcs12_to_pem(path: str, password: str | None, where: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    key, cert, extra = _load_pkcs12(path, password, where)
    if key is None or cert is None:
        raise InvalidConfigError(f"{where}: the PKCS12 key store {path} holds no private key and certificate")
    out = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    for c in [cert, *extra]:
        out += c.public_bytes(serialization.Encoding.PEM)
    return out


def _pkcs12_certs(path: str, password: str | None, where: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    _key, cert, extra = _load_pkcs12(path, password, where)
    certs = ([cert] if cert is not None else []) + list(extra)
    if not certs:
        raise InvalidConfigError(f"{where}: the PKCS12 trust store {path} holds no certificate")
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# ---- principals ----

class PrincipalMapper:
    """Kafka's ssl.principal.mapping.rules (SslPrincipalMapper): a
    comma-separated list of DEFAULT (the whole DN) and
    RULE:pattern/replacement/[L|U]; the first rule whose pattern matches the
    whole DN gives the name."""

    _RULE = r"(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?).*?|(.*?)"
    _SPLIT = re.compile(r"\s*(" + _RULE + r")\s*(?:,\s*|$)")
    _PARSE = re.compile(_RULE)

    def __init__(self, text: str | None):
        self.rules = []
        text = (text if text is not None else "DEFAULT").strip()
        for m in self._SPLIT.finditer(text):
            if m.end() == m.start() and m.start() == len(text):
                break
            rule = m.group(1)
            p = self._PARSE.match(rule)
            if p is None or p.end() != len(rule):
                raise InvalidConfigError(f"ssl.principal.mapping.rules: Invalid rule: {rule}")
            if p.group(1):
                self.rules.append(None)
            elif p.group(2) is not None and rule.startswith("RULE:"):
                try:
                    pattern = re.compile(p.group(2))
                except re.error as e:
                    raise InvalidConfigError(f"ssl.principal.mapping.rules: bad pattern in {rule}: {e}") from None
                # Java's $n back references; one beyond the groups stays literal.
                repl = re.sub(r"\$(\d+)", lambda g: _backref(g.group(1), pattern.groups), p.group(3))
                self.rules.append((pattern, repl, p.group(4)))
            elif rule.strip():
                raise InvalidConfigError(f"ssl.principal.mapping.rules: Invalid rule: {rule}")

    def name(self, dn: str) -> str | None:
        """The mapped name, or None when no rule applies (Kafka then fails
        the authentication)."""
        for rule in self.rules:
            if rule is None:
                return dn
            pattern, repl, case = rule
            if pattern.fullmatch(dn):
                out = pattern.sub(repl, dn)
                return out.lower() if case == "L" else out.upper() if case == "U" else out
        return None


def _backref(num: str, groups: int) -> str:
    if num.startswith("0"):
        return "$" + num
    n = int(num)
    while n > groups and n >= 10:
        n //= 10
    if n > groups:
        return "$" + num
    return "\\g<%d>%s" % (n, num[len(str(n)):])


def principal_of(ssl_object, mapper: PrincipalMapper) -> str | None:
    """Kafka's principal for a finished handshake: User:ANONYMOUS without a
    peer certificate, else User: + the mapped subject DN; None when no
    mapping rule applies."""
    from .quotas import ANONYMOUS_PRINCIPAL
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return ANONYMOUS_PRINCIPAL
    name = mapper.name(subject_dn(der))
    return None if name is None else "User:" + name


# The attribute keywords Java's X500Principal.getName(RFC2253) writes; any
# other attribute is written as OID=#<hex of its DER value>.
_RFC2253_KEYWORDS = {"2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
                     "2.5.4.6": "C", "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC",
                     "0.9.2342.19200300.100.1.1": "UID"}


def subject_dn(der: bytes) -> str:
    """A DER certificate's subject in RFC 2253 form, as Java's
    X500Principal.getName() writes it: the last RDN first, multi-valued RDNs
    joined with '+', special characters escaped with a backslash."""
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    rdns = []
    for rdn in reversed(list(cert.subject.rdns)):
        parts = []
        for attr in rdn:
            oid = attr.oid.dotted_string
            keyword = _RFC2253_KEYWORDS.get(oid)
            if keyword is None:
                parts.append(f"{oid}=#{_der_value(attr).hex()}")
            else:
                parts.append(f"{keyword}={_escape(attr.value)}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _der_value(attr) -> bytes:
    tag = attr._type.value if getattr(attr, "_type", None) is not None else 12
    body = attr.value.encode("utf-8") if isinstance(attr.value, str) else bytes(attr.value)
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


# ---- the TLS layer of a listener's connections ----

log = logging.getLogger("pylog.broker")

# Ciphertext read per receive: up to 16 full TLS records, decrypted in one
# pass straight into the connection's own buffer.
CIPHERTEXT_READ = 256 << 10


def receive_buffer() -> memoryview:
    """The ciphertext buffer every TLS connection of one event loop receives
    into: the transport fills it and hands it to buffer_updated in one
    callback, which copies it into the connection's BIO at once, so one
    buffer serves them all (not 256 KB per connection)."""
    return memoryview(bytearray(CIPHERTEXT_READ))


class HandshakeFailureLog:
    """Failed TLS handshakes logged as Kafka's Selector logs a failed
    authentication (INFO, the peer and the reason), at most LIMIT lines per
    WINDOW_S seconds per server: a port scanner or a client configured for
    PLAINTEXT retrying in a loop must not flood the log. What was left out is
    counted in the next line."""

    LIMIT = 20
    WINDOW_S = 10.0

    def __init__(self):
        self._window_start = -1e9
        self._logged = 0
        self._suppressed = 0

    def failed(self, peer: str, listener: str, reason: str) -> None:
        now = time.monotonic()
        if now - self._window_start >= self.WINDOW_S:
            if self._suppressed:
                log.info("%d more failed TLS handshakes were not logged in the last %g s",
                         self._suppressed, self.WINDOW_S)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged >= self.LIMIT:
            self._suppressed += 1
            return
        self._logged += 1
        log.info("Failed authentication with %s on listener %s (SSL handshake failed: %s)", peer, listener, reason)


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        return e.reason or e.strerror or str(e)
    return str(e) or type(e).__name__


class TlsProtocol(asyncio.BufferedProtocol):
    """Server-side TLS for one accepted connection, over the event loop's
    plain TCP transport with OpenSSL memory BIOs, wrapping the connection's
    own protocol (server.Connection), to which it is the transport.

    Why not the loop's SSL transport: a handshake that fails there ends
    without a word to the protocol (it is created only after the handshake),
    so the broker could not log it as Kafka does; and here the records of one
    receive are decrypted in one pass straight into the connection's receive
    buffer, so the requests of one read are parsed, and their responses
    encrypted and sent, together."""

    def __init__(self, context: ssl.SSLContext, app, listener: str, failures: HandshakeFailureLog,
                 handshake_timeout_s: float, receive: memoryview):
        self._app = app
        self._listener = listener
        self._failures = failures
        self._handshake_timeout_s = handshake_timeout_s
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        # The C object under ssl.SSLObject: clients such as librdkafka send a
        # request as many small TLS records, one read call each, so the
        # Python wrapper's frame per call is a cost per record.
        self._sslobj = getattr(self._ssl, "_sslobj", self._ssl)
        self._raw = None
        self._view = receive   # shared: see receive_buffer()
        self._handshaking = True
        self._timer = None
        self._reading = True        # the connection wants plaintext
        self._corked = False        # writes collect in the outgoing BIO until uncorked
        self._closed = False
        self._peer = "?"

    # ---- the TCP transport's protocol ----

    def connection_made(self, transport):
        self._raw = transport
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._timer = asyncio.get_running_loop().call_later(self._handshake_timeout_s, self._handshake_timed_out)

    def get_buffer(self, sizehint):
        return self._view

    def buffer_updated(self, nbytes):
        self._incoming.write(self._view[:nbytes])
        if self._handshaking:
            self._handshake()
            if self._handshaking or self._closed:
                return
        self._decrypt()

    def eof_received(self):
        return False   # the transport closes; connection_lost follows

    def connection_lost(self, exc):
        was_closed, self._closed = self._closed, True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._handshaking:
            if not was_closed:
                # A TCP connection closed before any TLS (a health check, a
                # port probe) is no failed authentication (Kafka: debug).
                log.debug("connection from %s on listener %s closed during the TLS handshake", self._peer,
                          self._listener)
            return
        self._app.connection_lost(exc)

    def pause_writing(self):
        if not self._handshaking:
            self._app.pause_writing()

    def resume_writing(self):
        if not self._handshaking:
            self._app.resume_writing()

    # ---- the handshake ----

    def _handshake(self):
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ValueError) as e:
            self._flush()   # the alert telling the client why
            self._fail(_reason(e))
            return
        self._handshaking = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()
        self._app.connection_made(self)

    def _handshake_timed_out(self):
        self._timer = None
        if self._handshaking and not self._closed:
            self._fail(f"not finished within {self._handshake_timeout_s:g} s")

    def _fail(self, reason: str):
        self._failures.failed(self._peer, self._listener, reason)
        self._closed = True
        # What the alert needs is already written; close() sends it first.
        self._raw.close()

    # ---- records in ----

    def _decrypt(self):
        """Decrypt what arrived into the connection's buffer, one
        buffer_updated per pass (all the records of a receive, or what fits)."""
        app = self._app
        ssl_read = self._sslobj.read
        self._corked = True
        try:
            while self._reading and not self._closed:
                buf = app.get_buffer(-1)
                want = len(buf)
                got = 0
                eof = False
                try:
                    while got < want:
                        n = ssl_read(want - got, buf[got:]) if got else ssl_read(want, buf)
                        if n == 0:
                            eof = True
                            break
                        got += n
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLZeroReturnError:
                    eof = True
                except ssl.SSLError as e:
                    log.info("closing connection from %s on listener %s: TLS error: %s", self._peer,
                             self._listener, _reason(e))
                    self._closed = True
                    self._raw.abort()
                    return
                if got:
                    app.buffer_updated(got)
                if eof:
                    self.close()
                    return
                if got < want:
                    break   # everything received is decrypted
        finally:
            self._corked = False
            self._flush()

    # ---- the connection's transport ----

    def write(self, data):
        if self._closed:
            return
        self._encrypt(data)
        if not self._corked:
            self._flush()

    def writelines(self, parts):
        """Encrypted in turn, sent in one write: a fetch answer's segment
        slices are read by the cipher straight from their mapping."""
        if self._closed:
            return
        for data in parts:
            self._encrypt(data)
        if not self._corked:
            self._flush()

    def _encrypt(self, data):
        write = self._sslobj.write
        n = write(data)   # into a memory BIO: all of it, in records of up to 16 KB
        if n < len(data):
            view = memoryview(data)[n:]
            while view:
                view = view[write(view):]

    def _flush(self):
        if self._outgoing.pending and not self._raw.is_closing():
            self._raw.write(self._outgoing.read())

    def pause_reading(self):
        self._reading = False
        self._raw.pause_reading()

    def resume_reading(self):
        if self._reading or self._closed:
            return
        self._reading = True
        self._raw.resume_reading()
        # Records decrypted-but-unread or received while paused wait in the BIO.
        asyncio.get_running_loop().call_soon(self._decrypt_if_reading)

    def _decrypt_if_reading(self):
        if self._reading and not self._closed and not self._handshaking:
            self._decrypt()

    def get_write_buffer_size(self):
        return self._raw.get_write_buffer_size() + self._outgoing.pending

    def is_closing(self):
        return self._closed or self._raw.is_closing()

    def get_extra_info(self, name, default=None):
        if name == "ssl_object":
            return self._ssl
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "cipher":
            return self._ssl.cipher()
        return self._raw.get_extra_info(name, default)

    def close(self):
        """What was written goes out, then a close_notify, then the TCP close."""
        if self._closed:
            return
        self._closed = True
        try:
            self._ssl.unwrap()
        except (ssl.SSLError, ValueError):
            pass   # close_notify written; the client's is not awaited
        self._flush()
        self._raw.close()

    def abort(self):
        self._closed = True
        self._raw.abort()
