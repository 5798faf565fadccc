"""The `__transaction_state` topic: one compacted record per transactional id.

Kafka's layouts (shared/kafka-protocol/transaction-coordinator): key = int16
version 0 + TransactionLogKey (transactional_id string); value = int16
version + TransactionLogValue: v0 (what this broker writes, as Kafka does
without transaction.version 2) or v1 (flexible, with tagged previous/next
producer ids and the client's transaction version; read, never written). A
null value is the tombstone of an expired id. The codegen cannot express
v1's tagged-only fields, so both layouts are written out here.

A transactional id lives in partition abs(String.hashCode) % partitions
(Kafka's TransactionStateManager.partitionFor), like a group in
__consumer_offsets.

Functions only; no state, so safe from any thread.
"""
from __future__ import annotations

import enum
import struct

from ..groups.offsets_topic import partition_for  # noqa: F401  (same placement rule)
from ..protocol import types as t

TOPIC = "__transaction_state"

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_VALUE_HEAD = struct.Struct(">qhib")   # producer_id, producer_epoch, timeout_ms, status
_TIMES = struct.Struct(">qq")          # last_update_ms, start_ms
KEY_VERSION, VALUE_VERSION = 0, 0


class TxnState(enum.IntEnum):
    """Kafka's TransactionState ids (the status byte of the value)."""
    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        return _NAMES[self]


_NAMES = {
    TxnState.EMPTY: "Empty", TxnState.ONGOING: "Ongoing", TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort", TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort", TxnState.DEAD: "Dead",
    TxnState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
BY_NAME = {name: state for state, name in _NAMES.items()}

# Kafka's TransactionState.validPreviousStates.
VALID_PREVIOUS = {
    TxnState.EMPTY: {TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT},
    TxnState.ONGOING: {TxnState.ONGOING, TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT},
    TxnState.PREPARE_COMMIT: {TxnState.ONGOING},
    TxnState.PREPARE_ABORT: {TxnState.ONGOING, TxnState.PREPARE_EPOCH_FENCE},
    TxnState.COMPLETE_COMMIT: {TxnState.PREPARE_COMMIT},
    TxnState.COMPLETE_ABORT: {TxnState.PREPARE_ABORT},
    TxnState.DEAD: {TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT},
    TxnState.PREPARE_EPOCH_FENCE: {TxnState.ONGOING},
}


class TxnRecord:
    """A decoded value (the fields a coordinator keeps); a plain value, any thread."""

    __slots__ = ("producer_id", "producer_epoch", "timeout_ms", "state", "partitions", "last_update_ms",
                 "start_ms", "prev_producer_id", "next_producer_id", "next_producer_epoch", "client_version")

    def __init__(self, producer_id, producer_epoch, timeout_ms, state, partitions, last_update_ms, start_ms,
                 prev_producer_id=-1, next_producer_id=-1, next_producer_epoch=-1, client_version=0):
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.timeout_ms = timeout_ms
        self.state = state
        self.partitions = partitions          # set of (topic, partition)
        self.last_update_ms = last_update_ms
        self.start_ms = start_ms
        self.prev_producer_id = prev_producer_id
        self.next_producer_id = next_producer_id
        self.next_producer_epoch = next_producer_epoch
        self.client_version = client_version


def encode_key(transactional_id: str) -> bytes:
    out = bytearray(_I16.pack(KEY_VERSION))
    t.write_string(out, transactional_id)
    return bytes(out)


def decode_key(key) -> str:
    key = bytes(key)
    version = _I16.unpack_from(key, 0)[0]
    if version != 0:
        raise ValueError(f"transaction log key version {version}")
    s, _ = t.read_string(key, 2)
    return s


def encode_value(producer_id: int, producer_epoch: int, timeout_ms: int, state: TxnState, partitions,
                 last_update_ms: int, start_ms: int) -> bytes:
    """Value v0. Kafka writes no partition list (null) for Empty."""
    out = bytearray(_I16.pack(VALUE_VERSION))
    out += _VALUE_HEAD.pack(producer_id, producer_epoch, timeout_ms, int(state))
    if state == TxnState.EMPTY:
        out += _I32.pack(-1)
    else:
        by_topic: dict[str, list[int]] = {}
        for topic, p in sorted(partitions):
            by_topic.setdefault(topic, []).append(p)
        out += _I32.pack(len(by_topic))
        for topic, ps in by_topic.items():
            t.write_string(out, topic)
            out += _I32.pack(len(ps))
            out += struct.pack(f">{len(ps)}i", *ps)
    out += _TIMES.pack(last_update_ms, start_ms)
    return bytes(out)


def decode_value(value) -> TxnRecord:
    value = bytes(value)
    version = _I16.unpack_from(value, 0)[0]
    if version == 0:
        return _decode_v0(value, 2)
    if version == 1:
        return _decode_v1(value, 2)
    raise ValueError(f"transaction log value version {version}")


def _decode_v0(buf, pos) -> TxnRecord:
    pid, epoch, timeout, status = _VALUE_HEAD.unpack_from(buf, pos)
    pos += _VALUE_HEAD.size
    n = _I32.unpack_from(buf, pos)[0]
    pos += 4
    parts = set()
    for _ in range(max(n, 0)):
        topic, pos = t.read_string(buf, pos)
        k = _I32.unpack_from(buf, pos)[0]
        pos += 4
        for p in struct.unpack_from(f">{k}i", buf, pos):
            parts.add((topic, p))
        pos += 4 * k
    last, start = _TIMES.unpack_from(buf, pos)
    return TxnRecord(pid, epoch, timeout, TxnState(status), parts, last, start)


def _decode_v1(buf, pos) -> TxnRecord:
    pid, epoch, timeout, status = _VALUE_HEAD.unpack_from(buf, pos)
    pos += _VALUE_HEAD.size
    n, pos = t.read_unsigned_varint(buf, pos)
    parts = set()
    for _ in range(max(n - 1, 0)):
        topic, pos = t.read_compact_string(buf, pos)
        k, pos = t.read_unsigned_varint(buf, pos)
        k -= 1
        for p in struct.unpack_from(f">{k}i", buf, pos):
            parts.add((topic, p))
        pos += 4 * k
        pos = _skip_tags(buf, pos)
    last, start = _TIMES.unpack_from(buf, pos)
    pos += _TIMES.size
    rec = TxnRecord(pid, epoch, timeout, TxnState(status), parts, last, start)
    count, pos = t.read_unsigned_varint(buf, pos)
    for _ in range(count):
        tag, pos = t.read_unsigned_varint(buf, pos)
        size, pos = t.read_unsigned_varint(buf, pos)
        if tag == 0:
            rec.prev_producer_id = struct.unpack_from(">q", buf, pos)[0]
        elif tag == 1:
            rec.next_producer_id = struct.unpack_from(">q", buf, pos)[0]
        elif tag == 2:
            rec.client_version = _I16.unpack_from(buf, pos)[0]
        elif tag == 3:
            rec.next_producer_epoch = _I16.unpack_from(buf, pos)[0]
        pos += size
    return rec


def _skip_tags(buf, pos) -> int:
    count, pos = t.read_unsigned_varint(buf, pos)
    for _ in range(count):
        _tag, pos = t.read_unsigned_varint(buf, pos)
        size, pos = t.read_unsigned_varint(buf, pos)
        pos += size
    return pos
