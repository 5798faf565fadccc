"""What Kafka's Java tools print that depends on Java itself: the iteration
order of java.util.HashMap (tools that print a map print it in that order)
and Kafka's exception class names and toString().

Pure functions; any thread.
"""
from __future__ import annotations

from ..client.errors import error_name
from ..protocol.error_codes import Errors

__all__ = ["exception_class", "exception_text", "java_hash_order", "java_int32", "java_string_hash",
           "java_topic_partition_hash"]

# Where Kafka's class name is not the error's name in CamelCase.
_CLASS_NAMES = {
    Errors.KAFKA_STORAGE_ERROR: "KafkaStorageException",
    Errors.CLUSTER_AUTHORIZATION_FAILED: "ClusterAuthorizationException",
    Errors.TOPIC_AUTHORIZATION_FAILED: "TopicAuthorizationException",
    Errors.GROUP_AUTHORIZATION_FAILED: "GroupAuthorizationException",
    Errors.UNKNOWN_SERVER_ERROR: "UnknownServerException",
    Errors.OFFSET_OUT_OF_RANGE: "OffsetOutOfRangeException",
}


def exception_class(code: int) -> str:
    """org.apache.kafka.common.errors.<Class> for a non-zero error code."""
    name = _CLASS_NAMES.get(code) or "".join(w.capitalize() for w in error_name(code).split("_")) + "Exception"
    return "org.apache.kafka.common.errors." + name


def exception_text(code: int, message: str | None = None) -> str:
    """Java's toString of the exception: `<class>: <message>`, the message the
    broker sent, else the error table's."""
    entry = Errors.for_code(code)
    text = message or (entry.message if entry is not None else f"error code {code}")
    return f"{exception_class(code)}: {text}"


def java_int32(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n & 0x80000000 else n


def java_string_hash(s: str) -> int:
    h = 0
    for unit in s.encode("utf-16-be").hex(" ", 2).split() if s else ():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return java_int32(h)


def java_topic_partition_hash(tp: tuple[str, int]) -> int:
    """org.apache.kafka.common.TopicPartition.hashCode()."""
    return java_int32((31 + tp[1]) * 31 + java_string_hash(tp[0]))


def java_hash_order(keys: list, hash_fn) -> list:
    """keys in the order a java.util.HashMap filled with them in this order
    iterates them: by bucket (the spread hash's low bits of a table of 16,
    doubled whenever more than 3/4 full), then by insertion within a bucket."""
    capacity = 16
    while len(keys) > capacity * 3 // 4:
        capacity *= 2

    def bucket(k):
        h = hash_fn(k) & 0xFFFFFFFF
        return (h ^ (h >> 16)) & (capacity - 1)
    return [k for _, k in sorted(((bucket(k), i), k) for i, k in enumerate(keys))]
