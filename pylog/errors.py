"""The one exception tree of pylog, shared by the library, the broker and clients.

Each class carries the Kafka wire ``error_code`` it stands for and whether a
client may retry. ``code_for(exc)`` turns any exception into a wire code (the
broker's single point of translation); ``for_code(code)`` goes the other way.
The native engine's PL_E* codes are mapped to these classes in exactly one
place, bindings/errors.pxi.
"""
from __future__ import annotations

__all__ = [
    "BufferFullError",
    "CommitFailedError",
    "CorruptRecordError",
    "DiskFullError",
    "DuplicateSequenceNumberError",
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
    """Base of every pylog error. error_code -1 is Kafka's UNKNOWN_SERVER_ERROR."""

    error_code = -1
    retriable = False

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        # The first class declared for a code is the one for_code() returns.
        if "error_code" in cls.__dict__:
            _BY_CODE.setdefault(cls.error_code, cls)


class OffsetOutOfRangeError(PylogError):
    """The offset is below log_start_offset or at/after log_end_offset."""

    error_code = 1


class CorruptRecordError(PylogError):
    """Stored or received bytes fail a length, magic or CRC check.

    ``path`` and ``position`` name the file and byte position when known."""

    error_code = 2  # CORRUPT_MESSAGE
    retriable = True

    def __init__(self, message, path=None, position=None):
        super().__init__(message)
        self.path = path
        self.position = position


class RecordTooLargeError(PylogError):
    error_code = 10  # MESSAGE_TOO_LARGE


class StorageError(PylogError, OSError):
    """A system call on the log's files failed; ``errno`` says why when known.
    Also an OSError, so code that handles I/O errors handles these too."""

    error_code = 56  # KAFKA_STORAGE_ERROR
    retriable = True

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
    error_code = 76  # UNSUPPORTED_COMPRESSION_TYPE


class InvalidRecordError(PylogError):
    error_code = 87  # INVALID_RECORD



# ---- errors the broker returns on the wire (KAFKA-NOTES §8) ----

class UnknownTopicOrPartitionError(PylogError):
    error_code = 3
    retriable = True


class LeaderNotAvailableError(PylogError):
    error_code = 5
    retriable = True


class NotLeaderOrFollowerError(PylogError):
    error_code = 6
    retriable = True


class RequestTimedOutError(PylogError):
    error_code = 7
    retriable = True


class OffsetNotAvailableError(PylogError):
    """A new leader cannot answer for its high watermark yet (KIP-207)."""

    error_code = 78
    retriable = True


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
    error_code = 17


class NotEnoughReplicasError(PylogError):
    error_code = 19
    retriable = True


class NotEnoughReplicasAfterAppendError(PylogError):
    error_code = 20
    retriable = True


class InvalidRequiredAcksError(PylogError):
    error_code = 21


class InvalidTimestampError(PylogError):
    error_code = 32


class UnsupportedVersionError(PylogError):
    error_code = 35


class TopicAlreadyExistsError(PylogError):
    error_code = 36


class InvalidPartitionsError(PylogError):
    error_code = 37


class InvalidReplicationFactorError(PylogError):
    error_code = 38


class InvalidReplicaAssignmentError(PylogError):
    error_code = 39


class InvalidConfigError(PylogError):
    error_code = 40


class NoReassignmentInProgressError(PylogError):
    """A cancellation for a partition that is not being reassigned."""
    error_code = 85


class InvalidRequestError(PylogError):
    error_code = 42


class PolicyViolationError(PylogError):
    error_code = 44


class OutOfOrderSequenceNumberError(PylogError):
    error_code = 45


class DuplicateSequenceNumberError(PylogError):
    error_code = 46


class InvalidProducerEpochError(PylogError):
    error_code = 47


class InvalidTxnStateError(PylogError):
    error_code = 48


class TopicDeletionDisabledError(PylogError):
    error_code = 73


class UnknownProducerIdError(PylogError):
    error_code = 59

_BY_CODE.setdefault(-1, PylogError)


def code_for(exc: BaseException) -> int:
    """The Kafka error code for exc (walks the class hierarchy; 0 for None)."""
    if exc is None:
        return 0
    for cls in type(exc).__mro__:
        code = cls.__dict__.get("error_code")
        if code is not None:
            return code
    return -1


def for_code(code: int) -> type[PylogError]:
    """The exception class for a Kafka error code (PylogError when unknown)."""
    return _BY_CODE.get(code, PylogError)
