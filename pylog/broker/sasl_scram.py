"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them
(KAFKA-NOTES §12.2): the key derivation, the stored credential's text form,
and both ends of the exchange as small state machines over tokens, so the
broker's authenticator and pylog's clients (sync and asyncio) share them.

Kafka's rules kept: gs2 header `n,,` only (no channel binding), an
authorization id must equal the user, names escape `,` and `=` as `=2C` and
`=3D`, delegation-token extensions (`tokenauth`) are refused, and a failure is
never an `e=` server-final message: the broker answers
SASL_AUTHENTICATION_FAILED instead.

Pure functions and objects: no I/O, any thread.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
# AlterUserScramCredentials' wire numbers (ScramMechanism.type()).
MECHANISM_TYPES = {1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
TYPE_OF = {v: k for k, v in MECHANISM_TYPES.items()}
MIN_ITERATIONS, MAX_ITERATIONS = 4096, 16384   # Kafka's ScramMechanism bounds
DEFAULT_ITERATIONS = 4096


class ScramError(Exception):
    """The exchange failed; str() is for the broker's log, never the client."""


class ScramAuthzError(ScramError):
    """A failure whose message Kafka does send to the client."""


def hi(hash_name: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)


def _hmac(hash_name, key, msg):
    return hmac.new(key, msg, hash_name).digest()


def keys_from_salted(hash_name: str, salted: bytes) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of a SaltedPassword."""
    client_key = _hmac(hash_name, salted, b"Client Key")
    return hashlib.new(hash_name, client_key).digest(), _hmac(hash_name, salted, b"Server Key")


class ScramCredential:
    __slots__ = ("iterations", "salt", "server_key", "stored_key")

    def __init__(self, salt: bytes, stored_key: bytes, server_key: bytes, iterations: int):
        self.salt, self.stored_key, self.server_key, self.iterations = salt, stored_key, server_key, iterations

    @classmethod
    def from_password(cls, mechanism: str, password: str, iterations: int, salt: bytes | None = None):
        h = MECHANISMS[mechanism]
        salt = salt if salt is not None else os.urandom(32)
        return cls.from_salted(mechanism, salt, hi(h, password.encode(), salt, iterations), iterations)

    @classmethod
    def from_salted(cls, mechanism: str, salt: bytes, salted: bytes, iterations: int):
        stored, server = keys_from_salted(MECHANISMS[mechanism], salted)
        return cls(salt, stored, server, iterations)

    def to_text(self) -> str:
        """Kafka's ScramCredentialUtils.credentialToString (what ZooKeeper holds)."""
        b = base64.b64encode
        return (f"salt={b(self.salt).decode()},stored_key={b(self.stored_key).decode()},"
                f"server_key={b(self.server_key).decode()},iterations={self.iterations}")

    @classmethod
    def from_text(cls, text: str) -> "ScramCredential":
        f = dict(p.split("=", 1) for p in text.split(","))
        d = base64.b64decode
        return cls(d(f["salt"]), d(f["stored_key"]), d(f["server_key"]), int(f["iterations"]))


def _nonce() -> str:
    """Letters and digits, as Kafka's ScramFormatter.secureRandomString."""
    n = secrets.randbits(130)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(digits[r])
    return "".join(out) or "0"


def _attrs(message: str) -> list[tuple[str, str]]:
    out = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ScramError(f"invalid SCRAM attribute {part!r}")
        out.append((part[0], part[2:]))
    return out


def escape_name(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def unescape_name(name: str) -> str:
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    """One server-side exchange. first() takes the client-first message and
    returns the user name to look up; challenge() then gives server-first;
    final() checks the client-final and returns server-final."""

    def __init__(self, mechanism: str):
        self.mechanism = mechanism
        self.hash = MECHANISMS[mechanism]
        self.username = None
        self._bare = self._nonce = self._client_nonce = self._server_first = None
        self._cred = None

    def first(self, token: bytes) -> str:
        msg = token.decode("utf-8")
        if not msg.startswith("n,"):
            raise ScramError("only the gs2 header 'n' is supported (no channel binding)")
        _, authzid, bare = msg.split(",", 2)
        attrs = _attrs(bare)
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[1][1]:
            raise ScramError("invalid client-first message")
        if len(attrs) > 2:
            raise ScramError("SCRAM extensions (delegation tokens) are not supported")
        self.username = unescape_name(attrs[0][1])
        if authzid:
            if not authzid.startswith("a=") or unescape_name(authzid[2:]) != self.username:
                raise ScramAuthzError("Authentication failed: Client requested an authorization id that is "
                                      "different from username")
        self._bare = bare
        self._client_nonce = attrs[1][1]
        self._nonce = self._client_nonce + _nonce()
        return self.username

    def challenge(self, cred: ScramCredential | None) -> bytes:
        if cred is None:
            raise ScramError(f"no {self.mechanism} credential for user {self.username!r}")
        if cred.iterations < MIN_ITERATIONS:
            raise ScramError(f"Iterations {cred.iterations} is less than the minimum {MIN_ITERATIONS}")
        self._cred = cred
        self._server_first = f"r={self._nonce},s={base64.b64encode(cred.salt).decode()},i={cred.iterations}"
        return self._server_first.encode()

    def final(self, token: bytes) -> bytes:
        msg = token.decode("utf-8")
        head, sep, proof = msg.rpartition(",p=")
        if not sep:
            raise ScramError("client-final message without a proof")
        attrs = dict(_attrs(head))
        # librdkafka before 2.6.1 (kcat 1.7's 2.0.2 among them) sends its own
        # nonce again in front of the server's; Kafka 3.8.1-3.9 took that
        # (endsWith), 4.x refuses it. Taken here, as 3.9 did: the proof is
        # computed over the message as sent, so nothing is weakened.
        if attrs.get("r") not in (self._nonce, self._client_nonce + self._nonce):
            raise ScramError("Invalid client nonce in the final client message.")
        if attrs.get("c") != "biws":
            raise ScramError("invalid channel binding in the final client message")
        auth = f"{self._bare},{self._server_first},{head}".encode()
        c = self._cred
        signature = _hmac(self.hash, c.stored_key, auth)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature))
        if len(client_key) != len(signature) or \
                not hmac.compare_digest(hashlib.new(self.hash, client_key).digest(), c.stored_key):
            raise ScramError("Invalid client credentials")
        return b"v=" + base64.b64encode(_hmac(self.hash, c.server_key, auth))


class ScramClient:
    """The client side: first() -> client-first; respond(server-first) ->
    client-final; verify(server-final) raises unless the server proved it
    knows the credential."""

    def __init__(self, mechanism: str, username: str, password: str):
        self.hash = MECHANISMS[mechanism]
        self.username, self.password = username, password
        self._nonce = _nonce()
        self._bare = f"n={escape_name(username)},r={self._nonce}"
        self._signature = None

    def first(self) -> bytes:
        return ("n,," + self._bare).encode()

    def respond(self, server_first: bytes) -> bytes:
        sf = server_first.decode("utf-8")
        attrs = dict(_attrs(sf))
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s"), int(attrs.get("i", "0"))
        if not nonce.startswith(self._nonce) or salt is None or iterations <= 0:
            raise ScramError(f"invalid server-first message {sf!r}")
        salted = hi(self.hash, self.password.encode(), base64.b64decode(salt), iterations)
        client_key = _hmac(self.hash, salted, b"Client Key")
        stored = hashlib.new(self.hash, client_key).digest()
        head = f"c=biws,r={nonce}"
        auth = f"{self._bare},{sf},{head}".encode()
        proof = bytes(a ^ b for a, b in zip(client_key, _hmac(self.hash, stored, auth)))
        self._signature = _hmac(self.hash, _hmac(self.hash, salted, b"Server Key"), auth)
        return f"{head},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        attrs = dict(_attrs(server_final.decode("utf-8")))
        if "e" in attrs:
            raise ScramError(f"the server refused: {attrs['e']}")
        if not hmac.compare_digest(base64.b64decode(attrs.get("v", "")), self._signature or b""):
            raise ScramError("the server's signature is wrong: it does not hold this user's credential")
