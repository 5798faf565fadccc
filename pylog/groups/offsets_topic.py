"""The `__consumer_offsets` topic: how groups and committed offsets are stored.

Records use Kafka's own layouts (shared/kafka-protocol/group-coordinator,
generated into protocol/group_records.py): key = int16 version + struct;
key v1 = OffsetCommitKey(group, topic, partition), key v2 =
GroupMetadataKey(group); values OffsetCommitValue v3 and GroupMetadataValue
v3; a null value is a tombstone. A group lives in partition
abs(java_hash(group_id)) % offsets.topic.num.partitions, whose leader is the
group's coordinator (KAFKA-NOTES §5.1), so a broker that leads a partition can
rebuild its groups by replaying it.

The topic is created on first need (FindCoordinator, JoinGroup, OffsetCommit)
with cleanup.policy=compact and segment.bytes=offsets.topic.segment.bytes
(100 MiB), as Kafka creates it; the broker's log cleaner compacts it
(pylog/broker/log_cleaner.py), so it holds about one record per group and
partition committed, plus what is not cleaned yet.

Not thread-safe: the broker's event loop owns it.
"""
from __future__ import annotations

import functools
import logging
import struct

from .. import _engine
from ..protocol import coordinator_records as cr
from ..protocol.group_records import (
    GroupMetadataKey, GroupMetadataValue, OffsetCommitKey, OffsetCommitValue,
)

log = logging.getLogger("pylog.groups")

TOPIC = "__consumer_offsets"
_I16 = struct.Struct(">h")
OFFSET_KEY_VERSION, GROUP_KEY_VERSION = 1, 2
OFFSET_VALUE_VERSION, GROUP_VALUE_VERSION = 3, 3


@functools.lru_cache(maxsize=4096)   # asked for each group request; group ids repeat
def java_string_hash(s: str) -> int:
    """Java's String.hashCode over UTF-16 code units, as an int32."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, num_partitions: int) -> int:
    h = java_string_hash(group_id)
    # Kafka's Utils.abs maps Integer.MIN_VALUE to 0.
    return (0 if h == -(1 << 31) else abs(h)) % num_partitions


class OffsetAndMetadata:
    """record_offset: the offset of its record in the topic (Kafka's
    OffsetAndMetadata.recordOffset), -1 until written."""

    __slots__ = ("offset", "leader_epoch", "metadata", "commit_timestamp", "record_offset")

    def __init__(self, offset, leader_epoch=-1, metadata="", commit_timestamp=-1, record_offset=-1):
        self.offset = offset
        self.leader_epoch = leader_epoch
        self.metadata = metadata
        self.commit_timestamp = commit_timestamp
        self.record_offset = record_offset

    def __eq__(self, other):
        return isinstance(other, OffsetAndMetadata) and (
            self.offset, self.leader_epoch, self.metadata) == (other.offset, other.leader_epoch, other.metadata)

    def __repr__(self):
        return f"OffsetAndMetadata({self.offset}, {self.metadata!r})"


# ---- record encoding ----

def offset_key(group, topic, partition) -> bytes:
    return _I16.pack(OFFSET_KEY_VERSION) + OffsetCommitKey.encode(
        OffsetCommitKey(group=group, topic=topic, partition=partition), OFFSET_KEY_VERSION)


def offset_value(om: OffsetAndMetadata) -> bytes:
    return _I16.pack(OFFSET_VALUE_VERSION) + OffsetCommitValue.encode(OffsetCommitValue(
        offset=om.offset, leader_epoch=om.leader_epoch, metadata=om.metadata or "",
        commit_timestamp=om.commit_timestamp), OFFSET_VALUE_VERSION)


def group_key(group) -> bytes:
    return _I16.pack(GROUP_KEY_VERSION) + GroupMetadataKey.encode(GroupMetadataKey(group=group), GROUP_KEY_VERSION)


def group_value(value: GroupMetadataValue) -> bytes:
    return _I16.pack(GROUP_VALUE_VERSION) + GroupMetadataValue.encode(value, GROUP_VALUE_VERSION)


# KIP-848 consumer groups' record types (Kafka's CoordinatorRecordType):
# type -> (key class, value class); keys are v0, values version 0.
CONSUMER_RECORDS = {
    3: (cr.ConsumerGroupMetadataKey, cr.ConsumerGroupMetadataValue),
    4: (cr.ConsumerGroupPartitionMetadataKey, cr.ConsumerGroupPartitionMetadataValue),
    5: (cr.ConsumerGroupMemberMetadataKey, cr.ConsumerGroupMemberMetadataValue),
    6: (cr.ConsumerGroupTargetAssignmentMetadataKey, cr.ConsumerGroupTargetAssignmentMetadataValue),
    7: (cr.ConsumerGroupTargetAssignmentMemberKey, cr.ConsumerGroupTargetAssignmentMemberValue),
    8: (cr.ConsumerGroupCurrentMemberAssignmentKey, cr.ConsumerGroupCurrentMemberAssignmentValue),
    16: (cr.ConsumerGroupRegularExpressionKey, cr.ConsumerGroupRegularExpressionValue),
}


# KIP-932 share groups' record types (types 10-15): written and replayed by
# pylog/share/groups.py; keys are v0, values version 0.
SHARE_RECORDS = {
    10: (cr.ShareGroupMemberMetadataKey, cr.ShareGroupMemberMetadataValue),
    11: (cr.ShareGroupMetadataKey, cr.ShareGroupMetadataValue),
    12: (cr.ShareGroupTargetAssignmentMetadataKey, cr.ShareGroupTargetAssignmentMetadataValue),
    13: (cr.ShareGroupTargetAssignmentMemberKey, cr.ShareGroupTargetAssignmentMemberValue),
    14: (cr.ShareGroupCurrentMemberAssignmentKey, cr.ShareGroupCurrentMemberAssignmentValue),
    15: (cr.ShareGroupStatePartitionMetadataKey, cr.ShareGroupStatePartitionMetadataValue),
}


def consumer_key(kind: int, group_id: str, member_id: str | None = None, **fields) -> bytes:
    cls = CONSUMER_RECORDS[kind][0]
    k = cls(group_id=group_id, **fields) if member_id is None else cls(group_id=group_id, member_id=member_id)
    return _I16.pack(kind) + cls.encode(k, 0)


def consumer_value(kind: int, value) -> bytes:
    return _I16.pack(0) + CONSUMER_RECORDS[kind][1].encode(value, 0)


def decode_record(key, value):
    """("offset", (group, topic, partition), OffsetAndMetadata or None),
    ("group", group_id, GroupMetadataValue or None) or ("consumer", (type,
    key struct), value struct or None) for a KIP-848 group's record,
    ("share", ...) alike for a share group's; None for keys of kinds this
    broker does not use (streams groups)."""
    key = bytes(key)
    kv = _I16.unpack_from(key, 0)[0]
    if kv in (0, 1):
        k = OffsetCommitKey.decode(key[2:], kv)
        if value is None:
            return "offset", (k.group, k.topic, k.partition), None
        value = bytes(value)
        vv = _I16.unpack_from(value, 0)[0]
        v = OffsetCommitValue.decode(value[2:], vv)
        return "offset", (k.group, k.topic, k.partition), OffsetAndMetadata(
            v.offset, getattr(v, "leader_epoch", -1), v.metadata, v.commit_timestamp)
    if kv == 2:
        k = GroupMetadataKey.decode(key[2:], kv)
        if value is None:
            return "group", k.group, None
        value = bytes(value)
        vv = _I16.unpack_from(value, 0)[0]
        return "group", k.group, GroupMetadataValue.decode(value[2:], vv)
    for kind, records in (("consumer", CONSUMER_RECORDS), ("share", SHARE_RECORDS)):
        if kv in records:
            kcls, vcls = records[kv]
            k = kcls.decode(key[2:], 0)
            if value is None:
                return kind, (kv, k), None
            value = bytes(value)
            return kind, (kv, k), vcls.decode(value[2:], _I16.unpack_from(value, 0)[0])
    return None


def decode(rec, where=""):
    """One record of the topic decoded (see decode_record); None for a record
    without a key, of a kind not used here, or unreadable (logged: one bad
    record must not lose the others)."""
    if rec.key is None:
        return None
    try:
        return decode_record(rec.key, rec.value)
    except Exception as e:
        log.warning("%s: offset %d: unreadable group record skipped: %s", where, rec.offset, e)
        return None


def append(partition, keys, values):
    """Append one batch of (key, value) records to a Partition of the topic;
    a value of None is a tombstone. Returns the offset of the last record."""
    batch = _engine.encode_batch(values, keys=keys)
    r = partition.append_as_leader(batch, -1)
    return r.last_offset
