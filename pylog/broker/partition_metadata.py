"""partition.metadata: the topic id a partition's directory belongs to
(KIP-516), in Kafka's format (its PartitionMetadataFile):

    version: 0
    topic_id: <the id's url-safe base64 form, unpadded>

Written once, when a replica first learns its topic's id from the
controller's LeaderAndIsr (v5+); read when the replica is opened. A
LeaderAndIsr naming another id for it is refused with INCONSISTENT_TOPIC_ID
(Kafka's ReplicaManager.becomeLeaderOrFollower): the directory holds another
incarnation of the topic.

Threads: plain functions of the file system, called off the event loop (the
LogManager's file thread, or its open() before the broker serves).
"""
from __future__ import annotations

import base64
import binascii
import os
import uuid

from ..log.checkpoint import atomic_write

FILE_NAME = "partition.metadata"
VERSION = 0


class MalformedPartitionMetadata(OSError):
    """The file exists but is not one Kafka (or pylog) wrote: the replica is
    not opened (Kafka fails the log dir on it)."""


def read_topic_id(partition_dir: str) -> uuid.UUID | None:
    """The id in partition_dir's partition.metadata; None when there is none."""
    path = os.path.join(partition_dir, FILE_NAME)
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except FileNotFoundError:
        return None
    fields = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            raise MalformedPartitionMetadata(f"{path}: malformed line {line!r}")
        fields[key] = value.strip()
    if fields.get("version") != str(VERSION) or "topic_id" not in fields:
        raise MalformedPartitionMetadata(f"{path}: not a version {VERSION} file with a topic_id")
    text = fields["topic_id"]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise MalformedPartitionMetadata(f"{path}: topic_id {text!r} is not a Uuid")
    return uuid.UUID(bytes=raw)


def write_topic_id(partition_dir: str, topic_id: uuid.UUID) -> None:
    """Write partition_dir's partition.metadata durably (atomic rename, fsyncs)."""
    text = base64.urlsafe_b64encode(topic_id.bytes).rstrip(b"=").decode("ascii")
    atomic_write(os.path.join(partition_dir, FILE_NAME), f"version: {VERSION}\ntopic_id: {text}\n".encode())
