"""SASL/OAUTHBEARER (RFC 7628) with Kafka's unsecured-JWS validator
(OAuthBearerUnsecuredValidatorCallbackHandler; KAFKA-NOTES §12.3): what a
broker without a custom callback handler accepts.

The client's first message is `n,[a=<authzid>],^Aauth=Bearer <token>^A[k=v^A...]^A`.
The token is an unsigned JWS: base64url(header) "." base64url(claims) "."
with `alg` `none`; its claims need `exp` (seconds) and the principal claim
(`sub` unless unsecuredValidatorPrincipalClaimName says otherwise); `iat`
and the scope claim (`scope`) are optional. JAAS options on the listener's
OAuthBearerLoginModule entry: unsecuredValidatorPrincipalClaimName,
unsecuredValidatorScopeClaimName, unsecuredValidatorRequiredScope,
unsecuredValidatorAllowableClockSkewMs. A bad token gets Kafka's JSON
challenge (`{"status":"invalid_token"}`, or `insufficient_scope` with the
scope); the client answers a single 0x01, and only then does the exchange
fail. The session ends at the token's `exp` (KIP-368's credential lifetime).

Pure: no I/O, any thread.
"""
from __future__ import annotations

import base64
import json
import re
import time

OAUTHBEARER = "OAUTHBEARER"
LOGIN_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
_CTRL_A = "\x01"
_AUTH = re.compile(r"(\w+) +([-_~+/.a-zA-Z0-9]+=*)")


class OAuthFailure(Exception):
    """str() is the message the client gets (SASL_AUTHENTICATION_FAILED)."""


class InvalidToken(Exception):
    def __init__(self, why: str, scope: str | None = None):
        super().__init__(why)
        self.scope = scope


def check_options(key: str, options: dict[str, str]) -> None:
    """The JAAS options this validator reads; others (unsecuredLoginStringClaim_*,
    the client side's) are the login module's and allowed."""
    skew = options.get("unsecuredValidatorAllowableClockSkewMs", "0")
    if not skew.isdigit():
        raise ValueError(f"{key}: unsecuredValidatorAllowableClockSkewMs={skew!r} is not a non-negative integer")


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def validate(token: str, options: dict[str, str], now: float | None = None) -> tuple[str, float]:
    """(principal, expiry in epoch seconds) of an unsecured JWS, or InvalidToken."""
    now = time.time() if now is None else now
    principal_claim = options.get("unsecuredValidatorPrincipalClaimName") or "sub"
    scope_claim = options.get("unsecuredValidatorScopeClaimName") or "scope"
    required = (options.get("unsecuredValidatorRequiredScope") or "").split()
    skew = int(options.get("unsecuredValidatorAllowableClockSkewMs") or 0) / 1000.0
    parts = token.split(".")
    if len(parts) != 3 or parts[2]:
        raise InvalidToken("not an unsecured JWS (three parts, an empty signature)")
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidToken(f"unreadable JOSE header or claims: {e}") from None
    if not isinstance(header, dict) or header.get("alg") != "none" or not isinstance(claims, dict):
        raise InvalidToken("the JOSE header's alg must be none")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise InvalidToken("the exp claim is missing or not a number")
    principal = claims.get(principal_claim)
    if not isinstance(principal, str) or not principal.strip():
        raise InvalidToken(f"the principal claim {principal_claim} is missing or empty")
    iat = claims.get("iat")
    if iat is not None:
        if not isinstance(iat, (int, float)) or isinstance(iat, bool):
            raise InvalidToken("the iat claim is not a number")
        if iat > now + skew:
            raise InvalidToken("the token was issued in the future")
        if exp <= iat:
            raise InvalidToken("the token expires before it was issued")
    if exp + skew <= now:
        raise InvalidToken("the token has expired")
    if required:
        scope = claims.get(scope_claim)
        have = scope.split() if isinstance(scope, str) else scope if isinstance(scope, list) else []
        missing = [s for s in required if s not in have]
        if missing:
            raise InvalidToken(f"the token lacks the required scope {missing}", scope=" ".join(required))
    return principal, float(exp)


class OAuthBearerServer:
    """One server-side exchange; evaluate() -> the server's token, principal
    set once complete."""

    def __init__(self, options: dict[str, str]):
        self.options = options
        self.principal = None
        self.expires_at = None       # epoch seconds
        self._error = None

    def evaluate(self, token: bytes) -> bytes:
        if token == b"\x01" and self._error is not None:
            raise OAuthFailure(self._error)
        self._error = None
        try:
            msg = token.decode("utf-8")
        except UnicodeDecodeError:
            raise OAuthFailure("Invalid OAUTHBEARER client first message") from None
        mt = re.fullmatch(r"n,(?:a=([^,]*))?,\x01((?:[^\x01=]+=[^\x01]*\x01)*)\x01", msg, re.S)
        if mt is None:
            raise OAuthFailure("Invalid OAUTHBEARER client first message")
        authzid = mt.group(1) or ""
        pairs = dict(kv.split("=", 1) for kv in mt.group(2).split(_CTRL_A) if kv)
        auth = _AUTH.fullmatch(pairs.get("auth", ""))
        if auth is None or auth.group(1).lower() != "bearer":
            raise OAuthFailure("Invalid OAUTHBEARER client first message: no auth=Bearer <token>")
        try:
            principal, exp = validate(auth.group(2), self.options)
        except InvalidToken as e:
            status = "insufficient_scope" if e.scope is not None else "invalid_token"
            self._error = f'{{"status":"{status}"' + (f', "scope":"{e.scope}"' if e.scope is not None else "") + "}"
            self.reason = str(e)
            return self._error.encode()
        if authzid and authzid != principal:
            raise OAuthFailure(f"Authentication failed: Client requested an authorization id ({authzid}) that is "
                               f"different from the token's principal name ({principal})")
        self.principal, self.expires_at = principal, exp
        return b""
