"""Transaction markers: the COMMIT/ABORT control record of a control batch
(KAFKA-NOTES §2.4; Kafka's EndTransactionMarker and ControlRecordType), read
where the partition's producer state and a coordinator's replay need its
fields, and built where a leader writes one (WriteTxnMarkers).

Functions only; safe from any thread.
"""
from __future__ import annotations

import struct

from .. import _engine
from . import batch_layout as L
from .errors import ProtocolError
from .types import read_varint, read_varlong

# Control record types (the others are KRaft's own).
ABORT, COMMIT = 0, 1

_MARKER_VALUE = struct.Struct(">hi")


def end_txn_marker(data, pos: int):
    """(control type, coordinator epoch, record timestamp) of the control batch
    at pos of data, or None when it is not a COMMIT/ABORT marker (an empty
    control batch left by the cleaner, a KRaft control record, a compressed
    or unreadable one: Kafka's EndTransactionMarker fields)."""
    try:
        data = memoryview(data).cast("B")
        if struct.unpack_from(">h", data, pos + L.ATTRIBUTES_OFFSET)[0] & L.ATTR_COMPRESSION_MASK:
            return None
        base_ts = struct.unpack_from(">q", data, pos + L.BASE_TIMESTAMP_OFFSET)[0]
        if struct.unpack_from(">i", data, pos + L.RECORDS_COUNT_OFFSET)[0] < 1:
            return None
        r = pos + L.RECORDS_OFFSET
        _length, r = read_varint(data, r)
        r += 1  # record attributes
        ts_delta, r = read_varlong(data, r)
        _offset_delta, r = read_varint(data, r)
        key_len, r = read_varint(data, r)
        if key_len < 4:
            return None
        _key_version, ctype = struct.unpack_from(">hh", data, r)
        r += key_len
        if ctype not in (ABORT, COMMIT):
            return None
        value_len, r = read_varint(data, r)
        if value_len < 6:
            return None
        _value_version, coordinator_epoch = _MARKER_VALUE.unpack_from(data, r)
        return ctype, coordinator_epoch, base_ts + ts_delta
    except (IndexError, ProtocolError, struct.error):
        return None


def build_end_txn_marker(producer_id: int, producer_epoch: int, coordinator_epoch: int, commit: bool,
                         timestamp_ms: int) -> bytes:
    """One control batch holding a COMMIT or ABORT marker (KAFKA-NOTES §2.4):
    transactional and control attributes, the producer's id and epoch, no
    sequence, one record whose key is version 0 + type and whose value is
    version 0 + coordinator epoch. Offsets and leader epoch are stamped by the
    log's append; the CRC is computed here."""
    key = struct.pack(">hh", 0, COMMIT if commit else ABORT)
    value = _MARKER_VALUE.pack(0, coordinator_epoch)
    # attributes 0, timestamp delta 0, offset delta 0, key 4 bytes, value 6 bytes, no headers
    body = bytes([0, 0, 0, 8]) + key + bytes([12]) + value + bytes([0])
    record = bytes([len(body) << 1]) + body
    after_crc = struct.pack(">hiqqqhii", L.ATTR_TRANSACTIONAL | L.ATTR_CONTROL, 0, timestamp_ms, timestamp_ms,
                            producer_id, producer_epoch, -1, 1) + record
    crc = _engine.crc32c(after_crc)
    head = struct.pack(">qiibI", 0, 4 + 1 + 4 + len(after_crc), -1, 2, crc)
    return head + after_crc
