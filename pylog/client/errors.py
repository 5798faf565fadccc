"""Kafka error codes as the client sees them: names, and the exception to raise.

``error_for(code, detail)`` builds a pylog.errors exception for a broker's
error code: the class ``pylog.errors.for_code(code)`` gives (a generic class
named from Kafka's table for codes pylog has no class of its own for), with
the instance's ``error_code`` and ``retriable`` set to the broker's code and to
Kafka's retriable flag for it (pylog.protocol.error_codes), so callers can
always test ``exc.error_code`` whatever the class.
``check(code, detail)`` raises it unless code is 0 (NONE).

Nothing here is registered in pylog.errors' code table: a client-only class
must not change what ``for_code`` answers for the broker.
"""
from __future__ import annotations

from ..errors import Errors, PylogError, for_code

__all__ = ["COORDINATOR_ERRORS", "RETRIABLE", "ConnectionClosedError", "SslAuthenticationError", "check", "error_for",
           "error_name"]

# The codes whose Java exception is a RetriableException (including every
# InvalidMetadataException): a client may retry after refreshing metadata.
RETRIABLE = frozenset(e for e in Errors if e.retriable)

# The answers that mean "find the group coordinator again" (Kafka's
# ConsumerCoordinator marks the coordinator unknown on each).
COORDINATOR_ERRORS = frozenset({Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.COORDINATOR_NOT_AVAILABLE,
                                Errors.NOT_COORDINATOR})


class ConnectionClosedError(PylogError, ConnectionError):
    """The connection to a broker failed or was closed; requests in flight on
    it are lost (their outcome is unknown). No error_code of its own: it is
    not something a broker answers with."""

    retriable = True


class SslAuthenticationError(ConnectionClosedError):
    """The TLS handshake with a broker failed: its certificate is not signed by
    a trusted CA, does not name the host connected to, or the broker refused
    this client's certificate. A ConnectionClosedError, so every path that
    cleans up after a lost connection does so for it too, but not retriable:
    trying again cannot help, so the clients give up at once (Kafka's
    SslAuthenticationException is fatal likewise)."""

    retriable = False


def error_name(code: int) -> str:
    """Kafka's name for code (org.apache.kafka.common.protocol.Errors), so
    messages read like the Java tools' and can be searched for."""
    entry = Errors.for_code(code)
    return entry.name if entry is not None else f"UNKNOWN_CODE_{code}"


def error_for(code: int, detail: str | None = None) -> PylogError:
    """The exception for a broker's non-zero error code (not raised)."""
    text = f"{error_name(code)} ({code})"
    if detail:
        text = f"{text}: {detail}"
    exc = for_code(code)(text)
    # for_code falls back to PylogError (UNKNOWN_SERVER_ERROR) for a code Kafka
    # does not define; the caller must still see the broker's code.
    entry = Errors.for_code(code)
    exc.error_code = code if entry is None else entry
    exc.retriable = entry is not None and entry.retriable
    return exc


def check(code: int, detail: str | None = None) -> None:
    """Raise error_for(code, detail) unless code is 0."""
    if code:
        raise error_for(code, detail)
