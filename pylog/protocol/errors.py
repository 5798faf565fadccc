"""Errors raised by the wire-protocol layer.

Each class carries the Kafka error code a broker answers with when a request
fails this way, so the broker can map it without a table of its own.
"""

from .error_codes import Errors

__all__ = ["ProtocolError", "UnsupportedVersionError"]


class ProtocolError(Exception):
    """Bytes that cannot be a valid message: truncated, a bad length, a null
    where the schema forbids one, invalid UTF-8, trailing garbage; or an object
    that cannot be encoded (wrong type, value out of range)."""

    error_code = Errors.INVALID_REQUEST
    retriable = Errors.INVALID_REQUEST.retriable
    header = None  # the RequestHeader, when the failing request's header was read


class UnsupportedVersionError(ProtocolError):
    """An api key or version this build has no schema for.

    `header` is set when the request header itself was readable, so the broker
    can still answer: an ApiVersions request must get a v0 error reply, never
    a disconnect (KIP-511).
    """

    error_code = Errors.UNSUPPORTED_VERSION

    def __init__(self, message, header=None):
        super().__init__(message)
        self.header = header
