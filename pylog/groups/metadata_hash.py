"""The metadata hash of a KIP-848 consumer group or a KIP-932 share group:
the MetadataHash of ConsumerGroupMetadataValue / ShareGroupMetadataValue
(KIP-1101), whose change bumps the group epoch.

Kafka's Utils.computeTopicHash and computeGroupHash, byte for byte: XXH3-64
with seed 0 (hash4j's Hashing.xxh3_64(), the same function as the reference
XXH3_64bits) over a stream written with hash4j's HashStream64 layout, which
is little-endian throughout: putByte one byte, putInt four, putLong eight,
putString(s) the UTF-16 code units of s (two bytes each) then putInt(the
number of code units). So the records carry the value Kafka writes for the
same topics.

Threads: the owning coordinator's (a TopicHashes is not shared between threads).
"""
from __future__ import annotations

import struct
import uuid
from typing import Iterable, Sequence

import xxhash

# Utils.TOPIC_HASH_MAGIC_BYTE: the version of the topic hash's layout.
TOPIC_HASH_MAGIC_BYTE = 0

_I32 = struct.Struct("<i")
_HEAD = struct.Struct("<bqq")         # the magic byte, the topic id's two halves
_LONGS: dict[int, struct.Struct] = {}


def _string(s: str) -> tuple[bytes, int]:
    """hash4j's putString of s, and s.length() (Java's: UTF-16 code units)."""
    units = s.encode("utf-16-le", "surrogatepass")
    n = len(units) // 2
    return units + _I32.pack(n), n


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def compute_topic_hash(name: str, topic_id: uuid.UUID, partition_racks: Sequence[Iterable[str]]) -> int:
    """Kafka's computeTopicHash of an existing topic: partition_racks[i] the
    racks of partition i's replicas (a rack once per replica on it, as
    KRaftCoordinatorMetadataImage.partitionRacks lists them)."""
    v = topic_id.int
    msb, lsb = _signed64(v >> 64), _signed64(v & 0xFFFFFFFFFFFFFFFF)
    out = [_HEAD.pack(TOPIC_HASH_MAGIC_BYTE, msb, lsb), _string(name)[0], _I32.pack(len(partition_racks))]
    for i, racks in enumerate(partition_racks):
        out.append(_I32.pack(i))
        # Java's String order is UTF-16 code unit order, which UTF-16-BE bytes sort by.
        for rack in sorted(racks, key=lambda r: r.encode("utf-16-be", "surrogatepass")):
            # The length before each rack (on top of putString's own, after
            # it) keeps ["a,b"] and ["a", "b"] apart, as Kafka writes it.
            s, n = _string(rack)
            out.append(_I32.pack(n))
            out.append(s)
    return _signed64(xxhash.xxh3_64_intdigest(b"".join(out)))


def compute_group_hash(topic_hashes: dict[str, int]) -> int:
    """Kafka's computeGroupHash: 0 without topics, else XXH3-64 of the topic
    hashes in the order of their names."""
    if not topic_hashes:
        return 0
    n = len(topic_hashes)
    fmt = _LONGS.get(n) or _LONGS.setdefault(n, struct.Struct(f"<{n}q"))
    # Java's String order (compareTo): UTF-16 code units.
    names = sorted(topic_hashes, key=lambda t: t.encode("utf-16-be", "surrogatepass"))
    return _signed64(xxhash.xxh3_64_intdigest(fmt.pack(*(topic_hashes[t] for t in names))))


class TopicHashes:
    """Kafka's topicHashCache: the hash of each subscribed topic, kept while
    the cluster's metadata stays as it was. Kafka drops a topic's entry when
    a metadata delta changes that topic; here the whole cache goes when the
    writer's metadata_version() moves (any UpdateMetadata): a heartbeat then
    pays for each subscribed topic once, and otherwise for none."""

    def __init__(self, writer_of):
        self._writer_of = writer_of       # () -> the coordinator's PartitionWriter
        self._hashes: dict[str, int] = {}
        self._version = None

    def group_hash(self, topics: dict) -> int:
        """computeMetadataHash of {name: (topic id, partition count)}: the
        subscribed topics that exist (the caller leaves the others out)."""
        if not topics:
            return 0
        writer = self._writer_of()
        version = writer.metadata_version()
        if version != self._version:
            self._hashes.clear()
            self._version = version
        hashes = {}
        for name, (tid, count) in topics.items():
            h = self._hashes.get(name)
            if h is None:
                h = self._hashes[name] = compute_topic_hash(name, tid, writer.partition_racks(name, count))
            hashes[name] = h
        return compute_group_hash(hashes)
