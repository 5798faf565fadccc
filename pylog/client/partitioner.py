"""Kafka's default partitioner, so pylog's tools place keys where Java and
librdkafka ("murmur2_random") producers do.

Keyed records go to ``toPositive(murmur2(key)) % partition_count``; unkeyed
records are left to the caller (the tools stick to one partition per batch,
as Kafka's sticky partitioner does). Pure functions: safe from any thread.
"""
from __future__ import annotations

__all__ = ["murmur2", "partition_for_key"]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2: a signed 32-bit hash of data."""
    data = bytes(data)
    length = len(data)
    h = (_SEED ^ length) & _MASK
    end4 = length & ~3
    for i in range(0, end4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    # Java's switch falls through: case 3 then 2 then 1.
    if rest == 3:
        h ^= data[end4 + 2] << 16
    if rest >= 2:
        h ^= data[end4 + 1] << 8
    if rest >= 1:
        h ^= data[end4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partition_count: int) -> int:
    """The partition of a keyed record (Java's toPositive = & 0x7fffffff)."""
    return (murmur2(key) & 0x7FFFFFFF) % partition_count
