"""SASL on SASL_PLAINTEXT listeners (KAFKA-NOTES §12.1-12.3): the broker's
settings per listener, Kafka's JAAS syntax, and the per-connection
authenticator Kafka calls SaslServerAuthenticator.

Settings (Kafka's keys): `sasl.enabled.mechanisms` (a listener may override
it with `listener.name.<l>.sasl.enabled.mechanisms`), the JAAS entry of each
mechanism `listener.name.<l>.<mechanism>.sasl.jaas.config` (else
`sasl.jaas.config`), `connections.max.reauth.ms` (KIP-368) and
`connection.failed.authentication.delay.ms`. PLAIN users come from the JAAS
`user_<name>="<password>"` options; SCRAM credentials from the controller's
metadata (/config/users/<user>, pylog/broker/scram_apis.py writes them).

Before authenticating, a connection may send ApiVersions and SaslHandshake,
then SaslAuthenticate; anything else closes it. SaslHandshake v0 switches to
raw size-prefixed tokens (pre-KIP-152 clients). A failure answers
SASL_AUTHENTICATION_FAILED (or UNSUPPORTED_SASL_MECHANISM with the enabled
list), then the connection closes after connection.failed.authentication.delay.ms.
With connections.max.reauth.ms set, SaslAuthenticate v1+ tells the client its
session lifetime, the client re-authenticates on the same connection (same
mechanism, same principal), and a connection whose session ended is closed on
its next request.

Threads: the Authenticator runs on the broker's event loop; credential reads
from the metadata store run on worker threads.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import re
import struct
import threading
import time
import weakref

from ..errors import InvalidConfigError
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..protocol.errors import ProtocolError
from ..protocol.framing import decode_request, encode_response
from .quotas import USER, entity_path
from .sasl_oauthbearer import LOGIN_MODULE as OAUTH_LOGIN_MODULE
from .sasl_oauthbearer import OAUTHBEARER, OAuthBearerServer, OAuthFailure
from .sasl_oauthbearer import check_options as check_oauth_options
from .sasl_scram import MECHANISMS as SCRAM_MECHANISMS
from .sasl_scram import ScramAuthzError, ScramCredential, ScramError, ScramServer

log = logging.getLogger("pylog.broker.sasl")

PLAIN = "PLAIN"
SUPPORTED_MECHANISMS = (PLAIN, *SCRAM_MECHANISMS, OAUTHBEARER)
from .api_versions import API_VERSIONS, SASL_AUTHENTICATE, SASL_HANDSHAKE  # noqa: E402
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")   # SASL_SSL: TLS first (broker/tls.py), then SASL
LOGIN_MODULES = {
    PLAIN: "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    OAUTHBEARER: OAUTH_LOGIN_MODULE,
}
_I32 = struct.Struct(">i")


# ---- Kafka's JAAS text (JaasConfig: a StreamTokenizer over `Module flag k=v ...;`) ----

_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s=;"]+)|(=)|(;))', re.S)


def parse_jaas(key: str, text: str) -> list[tuple[str, str, dict[str, str]]]:
    """`<LoginModule> <flag> [name=value ...];` entries -> [(module, flag, options)],
    values bare words or double-quoted strings, as Kafka's JaasConfig reads them."""
    tokens, pos, text = [], 0, text.strip()
    while pos < len(text):
        mt = _TOKEN.match(text, pos)
        if mt is None or mt.end() == pos:
            raise InvalidConfigError(f"{key}: cannot read the JAAS configuration at {text[pos:pos + 20]!r}")
        pos = mt.end()
        if mt.group(1) is not None:
            tokens.append(("str", re.sub(r"\\(.)", r"\1", mt.group(1))))
        elif mt.group(2) is not None:
            tokens.append(("word", mt.group(2)))
        else:
            tokens.append(("punct", mt.group(3) or mt.group(4)))
        if pos < len(text) and text[pos:].strip() == "":
            break
    entries, i = [], 0
    while i < len(tokens):
        if i + 1 >= len(tokens) or tokens[i][0] != "word" or tokens[i + 1][0] != "word":
            raise InvalidConfigError(f"{key}: expected '<LoginModule> <flag>' in the JAAS configuration")
        module, flag = tokens[i][1], tokens[i + 1][1].lower()
        if flag not in ("required", "requisite", "sufficient", "optional"):
            raise InvalidConfigError(f"{key}: invalid control flag {tokens[i + 1][1]!r} in the JAAS configuration")
        i += 2
        options = {}
        while i < len(tokens) and tokens[i] != ("punct", ";"):
            if i + 2 >= len(tokens) or tokens[i][0] == "punct" or tokens[i + 1] != ("punct", "=") \
                    or tokens[i + 2][0] == "punct":
                raise InvalidConfigError(f"{key}: expected name=value options in the JAAS configuration")
            options[tokens[i][1]] = tokens[i + 2][1]
            i += 3
        if i >= len(tokens):
            raise InvalidConfigError(f"{key}: the JAAS configuration entry must end with ';'")
        i += 1
        entries.append((module, flag, options))
    if not entries:
        raise InvalidConfigError(f"{key}: the JAAS configuration is empty")
    return entries


# ---- settings ----

class ListenerSasl:
    """What one SASL listener accepts. Immutable once built."""

    def __init__(self, listener: str, mechanisms: list[str], jaas: dict[str, dict[str, str]],
                 reauth_ms: dict[str, int],
                 fail_delay_ms: int):
        self.listener = listener
        self.mechanisms = mechanisms
        self.jaas = jaas                  # mechanism -> its login module's options
        self.reauth_ms = reauth_ms        # mechanism -> connections.max.reauth.ms (0: off)
        self.fail_delay_ms = fail_delay_ms
        self.plain_users = {k[5:]: v for k, v in jaas.get(PLAIN, {}).items() if k.startswith("user_")}


def _mechanisms(config, listener: str) -> list[str]:
    key = f"listener.name.{listener.lower()}.sasl.enabled.mechanisms"
    text = config.props.get(key)
    if text is None:
        key, text = "sasl.enabled.mechanisms", config.get("sasl.enabled.mechanisms")
    mechs = [x.strip() for x in text.split(",") if x.strip()]
    for mech in mechs:
        if mech not in SUPPORTED_MECHANISMS:
            raise InvalidConfigError(
                f"{key}={text}: SASL mechanism {mech} is not implemented by pylog (it speaks "
                f"{', '.join(SUPPORTED_MECHANISMS)}); listener {listener} would refuse every client using it")
    if not mechs:
        raise InvalidConfigError(f"{key}: at least one SASL mechanism must be enabled on listener {listener}")
    return mechs


def _jaas_options(config, listener: str, mechanism: str) -> dict[str, str] | None:
    key = f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"
    text = config.props.get(key)
    if text is None:
        key, text = "sasl.jaas.config", config.props.get("sasl.jaas.config")
    if text is None:
        return None
    return jaas_login_options(key, text, mechanism)


def jaas_login_options(key: str, text: str, mechanism: str) -> dict[str, str]:
    """The options of the one login module of a mechanism's JAAS text."""
    entries = parse_jaas(key, text)
    if len(entries) != 1:
        raise InvalidConfigError(f"{key}: a JAAS configuration for one mechanism holds one login module, "
                                 f"found {len(entries)}")
    module, _flag, options = entries[0]
    if module != LOGIN_MODULES[mechanism]:
        raise InvalidConfigError(f"{key}: login module {module} cannot serve {mechanism} (expected "
                                 f"{LOGIN_MODULES[mechanism]})")
    return options


def listener_settings(config) -> dict[str, ListenerSasl]:
    """Every SASL listener's settings, checked at start (a bad or missing
    JAAS entry refuses the start, as Kafka fails to build the listener)."""
    out = {}
    protocols = config.security_protocol_map()
    for ln in config.listeners():
        if protocols.get(ln.name) not in SASL_PROTOCOLS:
            continue
        mechs = _mechanisms(config, ln.name)
        jaas = {}
        for mech in mechs:
            options = _jaas_options(config, ln.name, mech)
            if options is None and mech == PLAIN:
                raise InvalidConfigError(
                    f"listener {ln.name} enables PLAIN but has no JAAS configuration: set "
                    f"listener.name.{ln.name.lower()}.plain.sasl.jaas.config to {LOGIN_MODULES[PLAIN]} required "
                    f"user_<name>=\"<password>\" ...;")
            if mech == OAUTHBEARER:
                try:
                    check_oauth_options(f"listener {ln.name} OAUTHBEARER JAAS", options or {})
                except ValueError as e:
                    raise InvalidConfigError(str(e)) from None
            jaas[mech] = options or {}
        out[ln.name] = ListenerSasl(ln.name, mechs, jaas, {m: _reauth_ms(config, ln.name, m) for m in mechs},
                                    config.get("connection.failed.authentication.delay.ms"))
    return out


def _reauth_ms(config, listener: str, mechanism: str) -> int:
    """connections.max.reauth.ms, or its listener-and-mechanism form
    listener.name.<l>.<mechanism>.connections.max.reauth.ms (Kafka's)."""
    key = f"listener.name.{listener.lower()}.{mechanism.lower()}.connections.max.reauth.ms"
    text = config.props.get(key)
    if text is None:
        return config.get("connections.max.reauth.ms")
    try:
        value = int(text)
    except ValueError:
        raise InvalidConfigError(f"Invalid value {text} for configuration {key}: Not a number of type LONG") from None
    if value < 0:
        raise InvalidConfigError(f"Invalid value {text} for configuration {key}: Value must be at least 0")
    return value


class ClientCredentials:
    """What a client (pylog's, or a broker talking to another) authenticates with."""

    __slots__ = ("mechanism", "password", "username")

    def __init__(self, mechanism: str, username: str, password: str):
        self.mechanism, self.username, self.password = mechanism, username, password

    def __repr__(self):
        return f"ClientCredentials({self.mechanism}, {self.username!r})"


def inter_broker_credentials(config) -> ClientCredentials | None:
    """The inter-broker listener's mechanism (sasl.mechanism.inter.broker.protocol)
    with the username and password of its JAAS entry, or None when brokers
    talk without SASL."""
    return listener_credentials(config, config.inter_broker_listener_name())


def listener_credentials(config, name: str) -> ClientCredentials | None:
    """What a broker authenticates with on another broker's listener name
    (the inter-broker or control-plane one), or None when it has no SASL."""
    if config.security_protocol_map().get(name) not in SASL_PROTOCOLS:
        return None
    mech = config.get("sasl.mechanism.inter.broker.protocol")
    enabled = _mechanisms(config, name)
    if mech not in enabled:
        raise InvalidConfigError(
            f"sasl.mechanism.inter.broker.protocol={mech} must be included in sasl.enabled.mechanisms "
            f"when SASL is used for inter-broker communication (listener {name} enables {','.join(enabled)})")
    lone = not config.get("zookeeper.connect") and config.get("pylog.controller.id") is None
    if mech == OAUTHBEARER:
        if lone:
            return None
        raise InvalidConfigError("sasl.mechanism.inter.broker.protocol=OAUTHBEARER: brokers cannot get tokens "
                                 "for each other in pylog (no login callback); use PLAIN or SCRAM between brokers")
    options = _jaas_options(config, name, mech) or {}
    if lone and ("username" not in options or "password" not in options):
        return None   # a one-node cluster never connects to another broker
    if "username" not in options or "password" not in options:
        raise InvalidConfigError(
            f"listener {name} carries the brokers' own traffic: its {mech} JAAS configuration "
            f"(listener.name.{name.lower()}.{mech.lower()}.sasl.jaas.config) needs username and password for "
            f"the brokers' own connections")
    return ClientCredentials(mech, options["username"], options["password"])


# ---- credentials ----

# store -> {(user, mechanism): credential text} of the last successful reads.
# While the store cannot be read (ZooKeeper's session lost or being
# re-established: a broker resumed after a pause, a ZooKeeper restart) users
# seen before still authenticate, as Kafka's brokers authenticate from their
# credential cache. Only existing credentials are kept, so unknown names
# cost no memory.
_known_credentials: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def scram_credential(store, user: str, mechanism: str) -> ScramCredential | None:
    """The stored credential (blocking: call on a worker thread); the last one
    read when the store is unreachable."""
    if store is None:
        return None
    key = (user, mechanism)
    try:
        # (A read while disconnected waits for the reconnection or the session's end.)
        if not store.connected():
            raise ConnectionError("the metadata store is not connected")
        text = store.entity_config(entity_path({USER: user})).get(mechanism)
    except Exception as e:
        with _known_lock:
            text = _known_credentials.get(store, {}).get(key)
        if text is None:
            raise
        log.info("SCRAM credential of %r: the metadata store is unreachable (%s), using the one read last",
                 user, e)
    else:
        with _known_lock:
            known = _known_credentials.setdefault(store, {})
            if text:
                known[key] = text
            else:
                known.pop(key, None)
    return ScramCredential.from_text(text) if text else None


class AuthenticationFailed(Exception):
    """str() is the message the client gets."""


# ---- the per-connection authenticator ----

_HANDSHAKE, _AUTHENTICATE, _DONE, _FAILED = range(4)


class Authenticator:
    """One connection's SASL state (Kafka's SaslServerAuthenticator).

    The Connection asks admit(frame) for every frame while `gate` is set and
    for SaslHandshake/SaslAuthenticate frames afterwards: True means serve it
    as usual; False means this object answered it or closed the connection.
    Threads: the broker's event loop only.
    """

    def __init__(self, settings: ListenerSasl, broker):
        self.settings = settings
        self.broker = broker
        self.gate = True            # every frame comes through admit() until authenticated
        self.state = _HANDSHAKE
        self.raw = False            # SaslHandshake v0: tokens without Kafka headers
        self.mechanism = None
        self.principal = None       # "User:<name>" once authenticated
        self.expires_at = None      # monotonic end of the session (KIP-368), None without one
        self.reauthenticating = False
        self._server = None
        self._scram_step = 0
        self._next_mechanism = None
        self._bad_reauth_mechanism = None
        self._credential_expiry = None   # epoch seconds: an OAUTHBEARER token's exp
        self.completed = False

    def admit(self, conn, frame) -> bool:
        state = self.state
        if state == _FAILED:
            return False
        if self.raw and state == _AUTHENTICATE:
            self._run(conn, self._raw_step(conn, bytes(frame)))
            return False
        key = (frame[0] << 8 | frame[1]) if len(frame) >= 2 else -1
        if state == _DONE:
            if key == SASL_HANDSHAKE and self.expires_at is not None:
                self.reauthenticating = True
                self.state = state = _HANDSHAKE
            elif key in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
                return True   # ILLEGAL_SASL_STATE from the handler, as Kafka's KafkaApis answers
            elif self.expires_at is not None and time.monotonic() > self.expires_at:
                log.info("closing connection from %s: its SASL session for %s expired (connections.max.reauth.ms)",
                         conn.peer, self.principal)
                conn.close()
                return False
            else:
                return True
        if key == API_VERSIONS and state == _HANDSHAKE and not self.reauthenticating:
            return True
        if self.reauthenticating and key not in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
            return True   # requests keep flowing under the session being renewed
        try:
            header, req = decode_request(frame)
        except ProtocolError as e:
            log.warning("closing connection from %s during SASL authentication: %s", conn.peer, e)
            conn.close()
            return False
        if key == SASL_HANDSHAKE and state == _HANDSHAKE:
            self._handshake(conn, header, req)
        elif key == SASL_AUTHENTICATE and state == _AUTHENTICATE and not self.raw:
            self._run(conn, self._authenticate(conn, header, req))
        else:
            log.warning("closing connection from %s: unexpected Kafka request of type %d during SASL %s on "
                        "listener %s", conn.peer, key, "handshake" if state == _HANDSHAKE else "authentication",
                        self.settings.listener)
            conn.close()
        return False

    # ---- SaslHandshake (17) ----

    def _handshake(self, conn, header, req):
        enabled = self.settings.mechanisms
        R = m.SaslHandshakeResponse
        if req.mechanism not in enabled:
            log.info("closing connection from %s: SASL mechanism %r is not enabled on listener %s (enabled: %s)",
                     conn.peer, req.mechanism, self.settings.listener, ",".join(enabled))
            _emit(conn, encode_response(header.correlation_id, SASL_HANDSHAKE, header.request_api_version,
                                        R(error_code=Errors.UNSUPPORTED_SASL_MECHANISM, mechanisms=list(enabled))))
            self._fail(conn)
            return
        if self.reauthenticating and req.mechanism != self.mechanism:
            # Kafka answers the handshake, then fails the first token.
            self._bad_reauth_mechanism = req.mechanism
        self.mechanism = req.mechanism if not self.reauthenticating else self.mechanism
        if req.mechanism in SCRAM_MECHANISMS:
            self._server = ScramServer(req.mechanism)
        elif req.mechanism == OAUTHBEARER:
            self._server = OAuthBearerServer(self.settings.jaas.get(OAUTHBEARER, {}))
        else:
            self._server = None
        self._next_mechanism = req.mechanism
        self._scram_step = 0
        self.raw = header.request_api_version == 0
        self.state = _AUTHENTICATE
        _emit(conn, encode_response(header.correlation_id, SASL_HANDSHAKE, header.request_api_version,
                                    R(error_code=0, mechanisms=list(enabled))))

    # ---- tokens ----

    def _run(self, conn, coro):
        """Serve one token off the request path: reading stops until it is
        answered (a credential read may go to ZooKeeper)."""
        conn._muted = True
        conn._pause_reading()

        async def run():
            try:
                await coro
            finally:
                if not conn.closed and self.state != _FAILED:
                    conn._muted = False
                    conn._maybe_resume_reading()
        asyncio.ensure_future(run())

    async def _evaluate(self, token: bytes) -> bytes:
        """The server's answer to one client token; raises AuthenticationFailed."""
        mech = self._next_mechanism
        if self._bad_reauth_mechanism:
            raise AuthenticationFailed(
                f"SASL mechanism '{self._bad_reauth_mechanism}' requested by client is not supported for "
                f"re-authentication of mechanism '{self.mechanism}'")
        text = "re-authentication" if self.reauthenticating else "authentication"
        generic = f"Authentication failed during {text} due to invalid credentials with SASL mechanism {mech}"
        if mech == PLAIN:
            user = _check_plain(token, self.settings.plain_users)
            self._complete(user)
            return b""
        srv = self._server
        if mech == OAUTHBEARER:
            try:
                out = srv.evaluate(token)
            except OAuthFailure as e:
                raise AuthenticationFailed(str(e)) from e
            if srv.principal is not None:
                self._complete(srv.principal)
                self._credential_expiry = srv.expires_at
            else:
                log.info("SASL OAUTHBEARER token refused: %s", getattr(srv, "reason", "?"))
            return out
        try:
            if self._scram_step == 0:
                user = srv.first(token)
                store = getattr(self.broker, "metadata_store", None)
                try:
                    cred = await asyncio.get_running_loop().run_in_executor(None, scram_credential, store, user, mech)
                except Exception as e:  # noqa: BLE001 - the store unreachable: this client fails, not the broker
                    log.warning("SCRAM credential of %r could not be read: %s", user, e)
                    raise ScramError("credentials could not be obtained") from e
                self._scram_step = 1
                return srv.challenge(cred)
            out = srv.final(token)
            self._complete(srv.username)
            return out
        except ScramAuthzError as e:
            raise AuthenticationFailed(str(e)) from e
        except (ScramError, UnicodeDecodeError, ValueError) as e:
            log.info("SASL %s %s of %r failed: %s", mech, text, srv.username, e)
            raise AuthenticationFailed(generic) from e

    def _complete(self, user: str) -> None:
        principal = f"User:{user}"
        if self.reauthenticating and principal != self.principal:
            p = self.principal.split(":", 1)
            raise AuthenticationFailed(f"Cannot change principals during re-authentication from {p[0]}.{p[1]}: "
                                       f"User.{user}")
        self.principal = principal
        self.completed = True

    def _session_lifetime_ms(self) -> int:
        """Kafka's rule: the shorter of connections.max.reauth.ms and the
        credential's remaining life (an OAUTHBEARER token's exp), 0 with neither."""
        ms = self.settings.reauth_ms[self.mechanism]
        expiry, self._credential_expiry = self._credential_expiry, None
        if expiry is not None:
            left = max(0, int((expiry - time.time()) * 1000))
            ms = min(ms, left) if ms > 0 else left
        elif ms <= 0:
            self.expires_at = None
            return 0
        self.expires_at = time.monotonic() + ms / 1000.0
        return ms

    def _finish(self, conn):
        log.debug("connection from %s %s as %s", conn.peer,
                  "re-authenticated" if self.reauthenticating else "authenticated", self.principal)
        self.state = _DONE
        self.reauthenticating = False
        self.gate = self.expires_at is not None
        conn.principal = self.principal
        self.completed = False

    async def _authenticate(self, conn, header, req):
        R = m.SaslAuthenticateResponse
        version = header.request_api_version
        self.completed = False
        try:
            out = await self._evaluate(bytes(req.auth_bytes))
        except AuthenticationFailed as e:
            log.info("closing connection from %s: SASL %s failed on listener %s: %s", conn.peer,
                     self._next_mechanism, self.settings.listener, e)
            _emit(conn, encode_response(header.correlation_id, SASL_AUTHENTICATE, version, R(
                error_code=Errors.SASL_AUTHENTICATION_FAILED, error_message=str(e), auth_bytes=b"",
                session_lifetime_ms=0)))
            self._fail(conn)
            return
        lifetime = self._session_lifetime_ms() if self.completed else 0
        _emit(conn, encode_response(header.correlation_id, SASL_AUTHENTICATE, version, R(
            error_code=0, error_message=None, auth_bytes=out, session_lifetime_ms=lifetime)))
        if self.completed:
            self._finish(conn)

    async def _raw_step(self, conn, token):
        self.completed = False
        try:
            out = await self._evaluate(token)
        except AuthenticationFailed as e:
            log.info("closing connection from %s: SASL %s failed on listener %s: %s", conn.peer,
                     self._next_mechanism, self.settings.listener, e)
            self._fail(conn)
            return
        _emit(conn, _I32.pack(len(out)) + out)
        if self.completed:
            self._session_lifetime_ms()
            self.raw = False
            self._finish(conn)

    def _fail(self, conn):
        """Kafka closes a failed connection after
        connection.failed.authentication.delay.ms, so a client retrying a
        wrong password cannot spin the broker; nothing more is read."""
        self.state = _FAILED
        conn._muted = True
        conn._pause_reading()
        delay = self.settings.fail_delay_ms / 1000.0

        def close():
            if not conn.closed:
                conn.closed = True
                conn.transport.close()   # what was written still goes out
        asyncio.get_running_loop().call_later(delay, close)


def _emit(conn, frame: bytes) -> None:
    """A whole response frame, behind any answer still queued."""
    if conn.closed:
        return
    if conn._pending:
        conn._queue(None, frame)
    elif conn._out is not None:
        conn._out.append(frame)
    else:
        conn.transport.write(frame)


def _check_plain(token: bytes, users: dict[str, str]) -> str:
    """Kafka's PlainSaslServer: authzid NUL user NUL password."""
    parts = token.split(b"\x00")
    if len(parts) != 3:
        raise AuthenticationFailed(f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(parts)}")
    try:
        authzid, user, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise AuthenticationFailed("Authentication failed: Invalid username or password") from None
    if not user:
        raise AuthenticationFailed("Authentication failed: username not specified")
    if not password:
        raise AuthenticationFailed("Authentication failed: password not specified")
    expected = users.get(user)
    if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
        raise AuthenticationFailed("Authentication failed: Invalid username or password")
    if authzid and authzid != user:
        raise AuthenticationFailed("Authentication failed: Client requested an authorization id that is different "
                                   "from username")
    return user


class SaslApis:
    """SaslHandshake and SaslAuthenticate outside an authentication: on a
    listener without SASL, or on a connection already authenticated that may
    not re-authenticate, Kafka's KafkaApis answers ILLEGAL_SASL_STATE."""

    def table(self) -> dict:
        return {SASL_HANDSHAKE: self.sasl_handshake, SASL_AUTHENTICATE: self.sasl_authenticate}

    def sasl_handshake(self, header, req):
        return m.SaslHandshakeResponse(error_code=Errors.ILLEGAL_SASL_STATE, mechanisms=[])

    def sasl_authenticate(self, header, req):
        return m.SaslAuthenticateResponse(
            error_code=Errors.ILLEGAL_SASL_STATE, auth_bytes=b"", session_lifetime_ms=0,
            error_message="SaslAuthenticate request received after successful authentication")
