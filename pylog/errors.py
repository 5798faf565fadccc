"""The one exception tree of pylog, shared by the library, the broker and clients.

Each class carries the Kafka wire ``error_code`` it stands for, a member of
the one error table (pylog.protocol.error_codes, generated from Kafka's
Errors.java), and takes ``retriable`` from that table; only client-side
classes with no wire code of their own say whether they are retriable.
``code_for(exc)`` turns any exception into a wire code (the broker's single
point of translation); ``for_code(code)`` goes the other way: the class
declared here for the codes pylog raises, a generic class named after the
table's entry for any other code Kafka defines. The native engine's PL_E*
codes are mapped to these classes in exactly one place, bindings/errors.pxi.

Classes and the code map are built at import; for_code may add a generic class
to the map later, a dict insert that relies on the GIL (idempotent: two threads
racing for one code may build two equal classes, and the first one stored wins).
"""
from __future__ import annotations

from .protocol.error_codes import Errors

__all__ = [
    "BufferFullError",
    "CommitFailedError",
    "CorruptRecordError",
    "DiskFullError",
    "DuplicateSequenceNumberError",
    "Errors",
    "InvalidConfigError",
    "InvalidPartitionsError",
    "InvalidProducerEpochError",
    "InvalidRecordError",
    "InvalidReplicaAssignmentError",
    "NoReassignmentInProgressError",
    "InvalidReplicationFactorError",
    "InvalidRequestError",
    "InvalidRequiredAcksError",
    "InvalidTimestampError",
    "InvalidTopicError",
    "InvalidTxnStateError",
    "LeaderNotAvailableError",
    "LogClosedError",
    "LogLockedError",
    "NoOffsetForPartitionError",
    "OffsetNotAvailableError",
    "NotEnoughReplicasAfterAppendError",
    "NotEnoughReplicasError",
    "NotLeaderOrFollowerError",
    "OffsetOutOfRangeError",
    "OutOfOrderSequenceNumberError",
    "PolicyViolationError",
    "ProducerClosedError",
    "PylogError",
    "RecordTooLargeError",
    "RequestTimedOutError",
    "StorageError",
    "TopicAlreadyExistsError",
    "TopicDeletionDisabledError",
    "UnknownProducerIdError",
    "UnknownTopicOrPartitionError",
    "UnsupportedCompressionError",
    "UnsupportedVersionError",
    "code_for",
    "for_code",
]

_BY_CODE: dict[int, type[PylogError]] = {}


class PylogError(Exception):
    """Base of every pylog error: Kafka's UNKNOWN_SERVER_ERROR."""

    error_code = Errors.UNKNOWN_SERVER_ERROR
    retriable = Errors.UNKNOWN_SERVER_ERROR.retriable

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "error_code" in cls.__dict__:
            entry = Errors(cls.error_code)  # ValueError for a code Kafka does not define
            if "retriable" in cls.__dict__ and cls.retriable != entry.retriable:
                raise TypeError(f"{cls.__name__}: {entry.name} is retriable={entry.retriable} in Kafka")
            cls.error_code = entry
            cls.retriable = entry.retriable
            # The first class declared for a code is the one for_code() returns.
            _BY_CODE.setdefault(entry, cls)


class OffsetOutOfRangeError(PylogError):
    """The offset is below log_start_offset or at/after log_end_offset."""

    error_code = Errors.OFFSET_OUT_OF_RANGE


class CorruptRecordError(PylogError):
    """Stored or received bytes fail a length, magic or CRC check.

    ``path`` and ``position`` name the file and byte position when known."""

    error_code = Errors.CORRUPT_MESSAGE

    def __init__(self, message, path=None, position=None):
        super().__init__(message)
        self.path = path
        self.position = position


class RecordTooLargeError(PylogError):
    error_code = Errors.MESSAGE_TOO_LARGE


class StorageError(PylogError, OSError):
    """A system call on the log's files failed; ``errno`` says why when known.
    Also an OSError, so code that handles I/O errors handles these too."""

    error_code = Errors.KAFKA_STORAGE_ERROR

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


class DiskFullError(StorageError):
    """The disk (or the file size limit) is full. Nothing partial was written; the
    log stays readable and appends may be retried once space is freed."""


class LogLockedError(PylogError):
    """Another process (or another open Log) holds the log directory's lock."""


class LogClosedError(PylogError):
    """The log or segment was closed."""


class UnsupportedCompressionError(PylogError):
    error_code = Errors.UNSUPPORTED_COMPRESSION_TYPE


class InvalidRecordError(PylogError):
    error_code = Errors.INVALID_RECORD



# ---- errors the broker returns on the wire (KAFKA-NOTES §8) ----

class UnknownTopicOrPartitionError(PylogError):
    error_code = Errors.UNKNOWN_TOPIC_OR_PARTITION


class LeaderNotAvailableError(PylogError):
    error_code = Errors.LEADER_NOT_AVAILABLE


class NotLeaderOrFollowerError(PylogError):
    error_code = Errors.NOT_LEADER_OR_FOLLOWER


class RequestTimedOutError(PylogError):
    error_code = Errors.REQUEST_TIMED_OUT


class OffsetNotAvailableError(PylogError):
    """A new leader cannot answer for its high watermark yet (KIP-207)."""

    error_code = Errors.OFFSET_NOT_AVAILABLE


class BufferFullError(PylogError, TimeoutError):
    """Client side: a producer's buffer_memory stayed full for max_block_ms.
    No wire code of its own (Kafka's TimeoutException)."""

    retriable = True


class ProducerClosedError(PylogError):
    """Client side: send() on a closed producer."""


class CommitFailedError(PylogError):
    """Client side: an offset commit the group refused because the member's
    generation is stale or it is no longer a member (a rebalance happened in
    between); the partitions may already belong to another member, so it is
    not retried. error_code is the broker's code."""


class NoOffsetForPartitionError(OffsetOutOfRangeError):
    """Client side: auto_offset_reset="none" and a partition has no
    committed offset to start from (Java's NoOffsetForPartitionException)."""


class InvalidTopicError(PylogError):
    error_code = Errors.INVALID_TOPIC_EXCEPTION


class NotEnoughReplicasError(PylogError):
    error_code = Errors.NOT_ENOUGH_REPLICAS


class NotEnoughReplicasAfterAppendError(PylogError):
    error_code = Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND


class InvalidRequiredAcksError(PylogError):
    error_code = Errors.INVALID_REQUIRED_ACKS


class InvalidTimestampError(PylogError):
    error_code = Errors.INVALID_TIMESTAMP


class UnsupportedVersionError(PylogError):
    error_code = Errors.UNSUPPORTED_VERSION


class TopicAlreadyExistsError(PylogError):
    error_code = Errors.TOPIC_ALREADY_EXISTS


class InvalidPartitionsError(PylogError):
    error_code = Errors.INVALID_PARTITIONS


class InvalidReplicationFactorError(PylogError):
    error_code = Errors.INVALID_REPLICATION_FACTOR


class InvalidReplicaAssignmentError(PylogError):
    error_code = Errors.INVALID_REPLICA_ASSIGNMENT


class InvalidConfigError(PylogError):
    error_code = Errors.INVALID_CONFIG


class NoReassignmentInProgressError(PylogError):
    """A cancellation for a partition that is not being reassigned."""
    error_code = Errors.NO_REASSIGNMENT_IN_PROGRESS


class InvalidRequestError(PylogError):
    error_code = Errors.INVALID_REQUEST


class PolicyViolationError(PylogError):
    error_code = Errors.POLICY_VIOLATION


class OutOfOrderSequenceNumberError(PylogError):
    error_code = Errors.OUT_OF_ORDER_SEQUENCE_NUMBER


class DuplicateSequenceNumberError(PylogError):
    error_code = Errors.DUPLICATE_SEQUENCE_NUMBER


class InvalidProducerEpochError(PylogError):
    error_code = Errors.INVALID_PRODUCER_EPOCH


class InvalidTxnStateError(PylogError):
    error_code = Errors.INVALID_TXN_STATE


class TopicDeletionDisabledError(PylogError):
    error_code = Errors.TOPIC_DELETION_DISABLED


class UnknownProducerIdError(PylogError):
    error_code = Errors.UNKNOWN_PRODUCER_ID

_BY_CODE.setdefault(Errors.UNKNOWN_SERVER_ERROR, PylogError)


def code_for(exc: BaseException) -> int:
    """The Kafka error code for exc (walks the class hierarchy; 0 for None)."""
    if exc is None:
        return Errors.NONE
    for cls in type(exc).__mro__:
        code = cls.__dict__.get("error_code")
        if code is not None:
            return code
    return Errors.UNKNOWN_SERVER_ERROR


def _generic_class(entry: Errors) -> type[PylogError]:
    # INVALID_TOPIC_EXCEPTION reads InvalidTopicError, not InvalidTopicExceptionError.
    words = entry.name.removesuffix("_EXCEPTION").removesuffix("_ERROR").split("_")
    name = "".join(w.capitalize() for w in words) + "Error"
    return type(name, (PylogError,), {"error_code": entry, "__module__": __name__,
                                      "__doc__": entry.message})


def for_code(code: int) -> type[PylogError]:
    """The exception class for a Kafka error code: pylog's own class for the
    codes it raises, a generic one named from the table for other codes Kafka
    defines, PylogError for codes Kafka does not define (and for NONE)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        entry = Errors.for_code(code)
        if entry is None or entry is Errors.NONE:
            return PylogError
        _generic_class(entry)  # registers itself through __init_subclass__ (first one wins)
        cls = _BY_CODE[entry]
    return cls
