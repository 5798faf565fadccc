"""Kafka error codes as the client sees them: names, and the exception to raise.

``error_for(code, detail)`` builds a pylog.errors exception for a broker's
error code: the class ``pylog.errors.for_code(code)`` gives (PylogError for
codes pylog has no class of its own for), with the instance's ``error_code``
and ``retriable`` set to the broker's code and to Kafka's retriable flag for
it, so callers can always test ``exc.error_code`` whatever the class.
``check(code, detail)`` raises it unless code is 0 (NONE).

Nothing here is registered in pylog.errors' code table: a client-only class
must not change what ``for_code`` answers for the broker.
"""
from __future__ import annotations

from ..errors import PylogError, for_code

__all__ = ["ERROR_NAMES", "RETRIABLE", "ConnectionClosedError", "check", "error_for", "error_name"]

# Kafka's names (org.apache.kafka.common.protocol.Errors), so messages read
# like the Java tools' and can be searched for.
ERROR_NAMES = {
    -1: "UNKNOWN_SERVER_ERROR", 0: "NONE", 1: "OFFSET_OUT_OF_RANGE", 2: "CORRUPT_MESSAGE",
    3: "UNKNOWN_TOPIC_OR_PARTITION", 4: "INVALID_FETCH_SIZE", 5: "LEADER_NOT_AVAILABLE",
    6: "NOT_LEADER_OR_FOLLOWER", 7: "REQUEST_TIMED_OUT", 8: "BROKER_NOT_AVAILABLE",
    9: "REPLICA_NOT_AVAILABLE", 10: "MESSAGE_TOO_LARGE", 11: "STALE_CONTROLLER_EPOCH",
    12: "OFFSET_METADATA_TOO_LARGE", 13: "NETWORK_EXCEPTION", 14: "COORDINATOR_LOAD_IN_PROGRESS",
    15: "COORDINATOR_NOT_AVAILABLE", 16: "NOT_COORDINATOR", 17: "INVALID_TOPIC_EXCEPTION",
    18: "RECORD_LIST_TOO_LARGE", 19: "NOT_ENOUGH_REPLICAS", 20: "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    21: "INVALID_REQUIRED_ACKS", 22: "ILLEGAL_GENERATION", 23: "INCONSISTENT_GROUP_PROTOCOL",
    24: "INVALID_GROUP_ID", 25: "UNKNOWN_MEMBER_ID", 26: "INVALID_SESSION_TIMEOUT",
    27: "REBALANCE_IN_PROGRESS", 28: "INVALID_COMMIT_OFFSET_SIZE", 29: "TOPIC_AUTHORIZATION_FAILED",
    30: "GROUP_AUTHORIZATION_FAILED", 31: "CLUSTER_AUTHORIZATION_FAILED", 32: "INVALID_TIMESTAMP",
    33: "UNSUPPORTED_SASL_MECHANISM", 34: "ILLEGAL_SASL_STATE", 35: "UNSUPPORTED_VERSION",
    36: "TOPIC_ALREADY_EXISTS", 37: "INVALID_PARTITIONS", 38: "INVALID_REPLICATION_FACTOR",
    39: "INVALID_REPLICA_ASSIGNMENT", 40: "INVALID_CONFIG", 41: "NOT_CONTROLLER",
    42: "INVALID_REQUEST", 43: "UNSUPPORTED_FOR_MESSAGE_FORMAT", 44: "POLICY_VIOLATION",
    45: "OUT_OF_ORDER_SEQUENCE_NUMBER", 46: "DUPLICATE_SEQUENCE_NUMBER", 47: "INVALID_PRODUCER_EPOCH",
    48: "INVALID_TXN_STATE", 49: "INVALID_PRODUCER_ID_MAPPING", 50: "INVALID_TRANSACTION_TIMEOUT",
    51: "CONCURRENT_TRANSACTIONS", 52: "TRANSACTION_COORDINATOR_FENCED",
    53: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", 54: "SECURITY_DISABLED", 55: "OPERATION_NOT_ATTEMPTED",
    56: "KAFKA_STORAGE_ERROR", 57: "LOG_DIR_NOT_FOUND", 58: "SASL_AUTHENTICATION_FAILED",
    59: "UNKNOWN_PRODUCER_ID", 60: "REASSIGNMENT_IN_PROGRESS", 68: "NON_EMPTY_GROUP",
    69: "GROUP_ID_NOT_FOUND", 70: "FETCH_SESSION_ID_NOT_FOUND", 71: "INVALID_FETCH_SESSION_EPOCH",
    72: "LISTENER_NOT_FOUND", 73: "TOPIC_DELETION_DISABLED", 74: "FENCED_LEADER_EPOCH",
    75: "UNKNOWN_LEADER_EPOCH", 76: "UNSUPPORTED_COMPRESSION_TYPE", 77: "STALE_BROKER_EPOCH",
    78: "OFFSET_NOT_AVAILABLE", 79: "MEMBER_ID_REQUIRED", 80: "PREFERRED_LEADER_NOT_AVAILABLE",
    81: "GROUP_MAX_SIZE_REACHED", 82: "FENCED_INSTANCE_ID", 83: "ELIGIBLE_LEADERS_NOT_AVAILABLE",
    84: "ELECTION_NOT_NEEDED", 85: "NO_REASSIGNMENT_IN_PROGRESS", 86: "GROUP_SUBSCRIBED_TO_TOPIC",
    87: "INVALID_RECORD", 88: "UNSTABLE_OFFSET_COMMIT", 89: "THROTTLING_QUOTA_EXCEEDED",
    90: "PRODUCER_FENCED", 91: "RESOURCE_NOT_FOUND", 92: "DUPLICATE_RESOURCE",
    100: "UNKNOWN_TOPIC_ID", 103: "INCONSISTENT_TOPIC_ID", 120: "TRANSACTION_ABORTABLE",
}

# The codes whose Java exception is a RetriableException (including every
# InvalidMetadataException): a client may retry after refreshing metadata.
RETRIABLE = frozenset({2, 3, 5, 6, 7, 9, 13, 14, 15, 16, 19, 20, 41, 51, 56, 70, 71, 72, 74, 75,
                       78, 80, 83, 88, 89, 100})


class ConnectionClosedError(PylogError, ConnectionError):
    """The connection to a broker failed or was closed; requests in flight on
    it are lost (their outcome is unknown). No error_code of its own: it is
    not something a broker answers with."""

    retriable = True


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"UNKNOWN_CODE_{code}")


def error_for(code: int, detail: str | None = None) -> PylogError:
    """The exception for a broker's non-zero error code (not raised)."""
    text = f"{error_name(code)} ({code})"
    if detail:
        text = f"{text}: {detail}"
    exc = for_code(code)(text)
    # for_code falls back to PylogError (code -1) for codes pylog has no class
    # for; the caller must still see the broker's code and retriability.
    exc.error_code = code
    exc.retriable = code in RETRIABLE
    return exc


def check(code: int, detail: str | None = None) -> None:
    """Raise error_for(code, detail) unless code is 0."""
    if code:
        raise error_for(code, detail)
