"""The client side of SASL (PLAIN, SCRAM-SHA-256/512) on a Kafka connection:
SaslHandshake v1 then SaslAuthenticate tokens (KIP-152), for pylog's
synchronous wire.Connection and for the broker's asyncio connections to other
brokers alike (the token exchange is a generator both drive).

Settings are Kafka's client keys: security.protocol=SASL_PLAINTEXT,
sasl.mechanism, and either librdkafka's sasl.username / sasl.password or the
Java client's sasl.jaas.config (PlainLoginModule / ScramLoginModule with
username and password).

Pure functions; a Connection uses them from its own thread.
"""
from __future__ import annotations

from ..broker.sasl import PLAIN, SUPPORTED_MECHANISMS, ClientCredentials, jaas_login_options
from ..broker.sasl_scram import MECHANISMS as SCRAM_MECHANISMS
from ..broker.sasl_scram import ScramClient, ScramError
from ..protocol.error_codes import Errors
from ..protocol.messages import SaslAuthenticateRequest, SaslHandshakeRequest
from .errors import error_for, error_name

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
CLIENT_KEYS = ("security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
               "sasl.jaas.config")


def credentials_from_properties(props: dict[str, str]) -> ClientCredentials | None:
    """Kafka client properties -> what to authenticate with; None for
    PLAINTEXT and SSL (the TLS part is the caller's). Anything pylog cannot
    honour (GSSAPI, OAUTHBEARER, a SASL key without a SASL protocol) raises
    ValueError."""
    protocol = props.get("security.protocol", "PLAINTEXT").strip().upper()
    sasl_keys = sorted(k for k in props if k.startswith("sasl."))
    if protocol in ("PLAINTEXT", "SSL"):
        if sasl_keys:
            raise ValueError(f"{', '.join(sasl_keys)} set with security.protocol={protocol}: the client would "
                             f"not authenticate; set security.protocol=SASL_PLAINTEXT (or SASL_SSL)")
        return None
    if protocol not in ("SASL_PLAINTEXT", "SASL_SSL"):
        raise ValueError(f"security.protocol={protocol}: not a security protocol")
    other = [k for k in sasl_keys if k not in CLIENT_KEYS]
    if other:
        raise ValueError(f"SASL settings not supported by pylog's client: {', '.join(other)}")
    mech = (props.get("sasl.mechanism") or props.get("sasl.mechanisms") or "GSSAPI").strip()
    if mech not in SUPPORTED_MECHANISMS or mech == "OAUTHBEARER":
        raise ValueError(f"sasl.mechanism={mech}: pylog's client speaks PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512")
    user, password = props.get("sasl.username"), props.get("sasl.password")
    if "sasl.jaas.config" in props:
        options = jaas_login_options("sasl.jaas.config", props["sasl.jaas.config"], mech)
        user, password = options.get("username", user), options.get("password", password)
    if user is None or password is None:
        raise ValueError(f"SASL {mech} needs a username and a password (sasl.username and sasl.password, or "
                         f"sasl.jaas.config)")
    return ClientCredentials(mech, user, password)


def exchange(creds: ClientCredentials):
    """The client's tokens: a generator yielding each token to send and
    receiving the server's answer to it."""
    if creds.mechanism == PLAIN:
        yield b"\x00" + creds.username.encode() + b"\x00" + creds.password.encode()
        return
    if creds.mechanism not in SCRAM_MECHANISMS:
        raise ValueError(f"SASL mechanism {creds.mechanism} is not supported")
    client = ScramClient(creds.mechanism, creds.username, creds.password)
    server_first = yield client.first()
    server_final = yield client.respond(server_first)
    client.verify(server_final)


def handshake_failed(resp, creds, where: str):
    return error_for(resp.error_code, f"SASL mechanism {creds.mechanism} refused by {where} (it enables "
                                      f"{', '.join(resp.mechanisms) or 'none'})")


def auth_failed(resp, where: str):
    return error_for(resp.error_code, f"SASL authentication with {where} failed: "
                                      f"{resp.error_message or error_name(resp.error_code)}")


def authenticate(conn, creds: ClientCredentials) -> int:
    """Authenticate a fresh wire.Connection (after ApiVersions); the session
    lifetime the broker gave (0: none). Raises the broker's error."""
    where = f"{conn.host}:{conn.port}"
    resp = conn.request(SaslHandshakeRequest(mechanism=creds.mechanism), api_version=1)
    if resp.error_code:
        raise handshake_failed(resp, creds, where)
    version = min(2, conn.api_versions.get(SASL_AUTHENTICATE, (0, 0))[1])
    steps = exchange(creds)
    token = next(steps)
    while True:
        resp = conn.request(SaslAuthenticateRequest(auth_bytes=token), api_version=version)
        if resp.error_code:
            raise auth_failed(resp, where)
        try:
            token = steps.send(bytes(resp.auth_bytes))
        except StopIteration:
            return getattr(resp, "session_lifetime_ms", 0) or 0
        except ScramError as e:
            raise error_for(Errors.SASL_AUTHENTICATION_FAILED, f"SASL with {where}: {e}") from e
