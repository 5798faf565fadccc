"""Small value types shared by pylog's Producer, Consumer and their users.

Plain immutable tuples: hashable, cheap, safe to share between threads.
Names follow Kafka's Java client (TopicPartition, OffsetAndMetadata,
RecordMetadata) so code reads the same as with the other clients.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["OffsetAndMetadata", "RecordMetadata", "TopicPartition"]


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class OffsetAndMetadata(NamedTuple):
    """A committed position: the next offset to read (Kafka's convention),
    the caller's metadata string, and the leader epoch of the record before
    it when known (-1 otherwise)."""

    offset: int
    metadata: str = ""
    leader_epoch: int = -1


class RecordMetadata(NamedTuple):
    """Where an acknowledged record went. offset is -1 with acks=0 (no answer
    to learn it from); timestamp is the broker's LogAppendTime when the topic
    uses it, else the record's CreateTime."""

    topic: str
    partition: int
    offset: int
    timestamp: int
