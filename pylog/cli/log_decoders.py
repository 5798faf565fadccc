"""The record decoders of `pylog dump-log`, as kafka-dump-log.sh's
--transaction-log-decoder and --offsets-decoder print them (Kafka 4's
CoordinatorRecordMessageParser): after a record's metadata,
`key: {"type":"<record type>","data":{...}} payload: {"version":"<v>","data":{...}}`
(payload `<DELETE>` for a tombstone), field names in Kafka's JSON form
(camelCase), tagged fields only when they differ from their defaults, bytes
as base64.

- __transaction_state: TransactionLogKey / TransactionLogValue
  (shared/kafka-protocol-4.5/transaction-coordinator/), hand-decoded below.
- __consumer_offsets: the group coordinator's records by their type (the
  key's first int16): 0/1 offset commits, 2 classic group metadata (whose
  members' subscription and assignment are shown decoded when the protocol
  type is "consumer", as Kafka does), 3-8 and 16 the KIP-848 consumer group
  records, 10-15 share and 17-23 streams group records; decoded with the
  generated classes of pylog/protocol/group_records.py and
  coordinator_records.py.

A record that does not decode is shown as Kafka shows it (`Unknown record
type N at offset O, skipping.` or `Error at offset O, skipping. <why>` in
place of the key, no payload), never a crash: the tool is for damaged files
too.

Functions only; safe from any thread.
"""
from __future__ import annotations

import base64
import json
import struct
import uuid

from ..protocol.errors import ProtocolError
from ..protocol.types import (
    read_compact_nullable_array,
    read_compact_string,
    read_nullable_array,
    read_string,
    read_unsigned_varint,
)

__all__ = ["TRANSACTION_STATES", "decode_offsets_record", "decode_transaction_key",
           "decode_transaction_value", "message_json", "offsets_text", "transaction_log_text"]

# TransactionState ids as the coordinator stores them (TransactionState.java).
TRANSACTION_STATES = {0: "Empty", 1: "Ongoing", 2: "PrepareCommit", 3: "PrepareAbort",
                      4: "CompleteCommit", 5: "CompleteAbort", 6: "Dead", 7: "PrepareEpochFence"}

_KEY_V0 = 0
_VALUE_VERSIONS = (0, 1)
# Tagged fields of TransactionLogValue v1: tag -> (JSON name, struct format, default).
_VALUE_TAGS = {0: ("previousProducerId", ">q", -1), 1: ("nextProducerId", ">q", -1),
               2: ("clientTransactionVersion", ">h", 0), 3: ("nextProducerEpoch", ">h", -1)}


def _unpack(fmt: str, buf, pos: int):
    size = struct.calcsize(fmt)
    if pos + size > len(buf):
        raise ProtocolError(f"truncated at byte {pos}: {size} more bytes needed")
    return struct.unpack_from(fmt, buf, pos)[0], pos + size


def decode_transaction_key(buf) -> tuple[int, dict]:
    """(key version, {"transactionalId": ...}); ProtocolError when it is not one."""
    version, pos = _unpack(">h", buf, 0)
    if version != _KEY_V0:
        raise ProtocolError(f"unknown TransactionLogKey version {version}")
    tid, pos = read_string(buf, pos)
    if pos != len(buf):
        raise ProtocolError(f"{len(buf) - pos} bytes after the key")
    return version, {"transactionalId": tid}


def decode_transaction_value(buf) -> tuple[int, dict]:
    """(value version, fields in Kafka's JSON names)."""
    version, pos = _unpack(">h", buf, 0)
    if version not in _VALUE_VERSIONS:
        raise ProtocolError(f"unknown TransactionLogValue version {version}")
    flexible = version >= 1
    out: dict = {}
    out["producerId"], pos = _unpack(">q", buf, pos)
    out["producerEpoch"], pos = _unpack(">h", buf, pos)
    out["transactionTimeoutMs"], pos = _unpack(">i", buf, pos)
    out["transactionStatus"], pos = _unpack(">b", buf, pos)

    def partitions(b, p):
        topic, p = (read_compact_string if flexible else read_string)(b, p)
        ids, p = (read_compact_nullable_array if flexible else read_nullable_array)(
            b, p, lambda bb, pp: _unpack(">i", bb, pp))
        if flexible:
            p = _skip_tags(b, p)
        return {"topic": topic, "partitionIds": ids or []}, p

    parts, pos = (read_compact_nullable_array if flexible else read_nullable_array)(buf, pos, partitions)
    out["transactionPartitions"] = parts
    out["transactionLastUpdateTimestampMs"], pos = _unpack(">q", buf, pos)
    out["transactionStartTimestampMs"], pos = _unpack(">q", buf, pos)
    if flexible:
        n, pos = read_unsigned_varint(buf, pos)
        for _ in range(n):
            tag, pos = read_unsigned_varint(buf, pos)
            size, pos = read_unsigned_varint(buf, pos)
            known = _VALUE_TAGS.get(tag)
            if known is not None and struct.calcsize(known[1]) == size:
                value, _ = _unpack(known[1], buf, pos)
                if value != known[2]:
                    out[known[0]] = value
            pos += size
    if pos != len(buf):
        raise ProtocolError(f"{len(buf) - pos} bytes after the value")
    return version, out


def _skip_tags(buf, pos: int) -> int:
    n, pos = read_unsigned_varint(buf, pos)
    for _ in range(n):
        _tag, pos = read_unsigned_varint(buf, pos)
        size, pos = read_unsigned_varint(buf, pos)
        pos += size
    return pos


def _compact(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


class _UnknownType(Exception):
    pass


def _record_text(decode_key, decode_value, key, value, offset: int) -> str:
    """` key: ... payload: ...` for one record; decode_key(bytes) -> (type,
    data); decode_value(type, bytes) -> (version, data)."""
    if key is None:
        # Kafka ends the whole dump here; one bad record should not hide the rest.
        return (f" key: Failed to decode message at offset {offset} using the specified decoder "
                "(message had a missing key)")
    try:
        rtype, kdata = decode_key(bytes(key))
        text = " key: " + _compact({"type": str(rtype), "data": kdata})
        if value is None:
            return text + " payload: <DELETE>"
        vv, vdata = decode_value(rtype, bytes(value))
        return text + " payload: " + _compact({"version": str(vv), "data": vdata})
    except _UnknownType as e:
        return f" key: Unknown record type {e} at offset {offset}, skipping."
    except (ProtocolError, struct.error, ValueError, IndexError, UnicodeDecodeError, TypeError) as e:
        return f" key: Error at offset {offset}, skipping. {e}"


def _transaction_key(buf):
    return decode_transaction_key(buf)


def _transaction_value(_rtype, buf):
    return decode_transaction_value(buf)


def transaction_log_text(key, value, offset: int = -1) -> str:
    """The ` key: ... payload: ...` part of a __transaction_state record's line."""
    return _record_text(_transaction_key, _transaction_value, key, value, offset)


# --- __consumer_offsets --------------------------------------------------------

def _group_record_classes() -> dict:
    """record type -> (key class, value class), Kafka's CoordinatorRecordType ids."""
    from ..protocol import coordinator_records as c
    from ..protocol import group_records as g
    return {
        0: (c.LegacyOffsetCommitKey, c.LegacyOffsetCommitValue),
        1: (g.OffsetCommitKey, g.OffsetCommitValue),
        2: (g.GroupMetadataKey, g.GroupMetadataValue),
        3: (c.ConsumerGroupMetadataKey, c.ConsumerGroupMetadataValue),
        4: (c.ConsumerGroupPartitionMetadataKey, c.ConsumerGroupPartitionMetadataValue),
        5: (c.ConsumerGroupMemberMetadataKey, c.ConsumerGroupMemberMetadataValue),
        6: (c.ConsumerGroupTargetAssignmentMetadataKey, c.ConsumerGroupTargetAssignmentMetadataValue),
        7: (c.ConsumerGroupTargetAssignmentMemberKey, c.ConsumerGroupTargetAssignmentMemberValue),
        8: (c.ConsumerGroupCurrentMemberAssignmentKey, c.ConsumerGroupCurrentMemberAssignmentValue),
        10: (c.ShareGroupMemberMetadataKey, c.ShareGroupMemberMetadataValue),
        11: (c.ShareGroupMetadataKey, c.ShareGroupMetadataValue),
        12: (c.ShareGroupTargetAssignmentMetadataKey, c.ShareGroupTargetAssignmentMetadataValue),
        13: (c.ShareGroupTargetAssignmentMemberKey, c.ShareGroupTargetAssignmentMemberValue),
        14: (c.ShareGroupCurrentMemberAssignmentKey, c.ShareGroupCurrentMemberAssignmentValue),
        15: (c.ShareGroupStatePartitionMetadataKey, c.ShareGroupStatePartitionMetadataValue),
        16: (c.ConsumerGroupRegularExpressionKey, c.ConsumerGroupRegularExpressionValue),
        17: (c.StreamsGroupMetadataKey, c.StreamsGroupMetadataValue),
        19: (c.StreamsGroupMemberMetadataKey, c.StreamsGroupMemberMetadataValue),
        20: (c.StreamsGroupTargetAssignmentMetadataKey, c.StreamsGroupTargetAssignmentMetadataValue),
        21: (c.StreamsGroupTargetAssignmentMemberKey, c.StreamsGroupTargetAssignmentMemberValue),
        22: (c.StreamsGroupCurrentMemberAssignmentKey, c.StreamsGroupCurrentMemberAssignmentValue),
        23: (c.StreamsGroupTopologyKey, c.StreamsGroupTopologyValue),
    }


_GROUP_RECORDS: dict | None = None


def _classes(rtype: int):
    global _GROUP_RECORDS
    if _GROUP_RECORDS is None:
        _GROUP_RECORDS = _group_record_classes()
    pair = _GROUP_RECORDS.get(rtype)
    if pair is None:
        raise _UnknownType(rtype)
    return pair


def _decode_whole(cls, buf, pos: int, version: int):
    if not cls.VALID_VERSIONS[0] <= version <= cls.VALID_VERSIONS[1]:
        raise ProtocolError(f"unknown {cls.__name__} version {version}")
    obj, end = cls.decode_from(buf, pos, version)
    if end != len(buf):
        raise ProtocolError(f"{len(buf) - end} bytes after the {cls.__name__}")
    return obj


def _offsets_key(buf):
    rtype, pos = _unpack(">h", buf, 0)
    key_cls, _ = _classes(rtype)
    # A key's own version is not on the wire: its layout is its first one.
    obj = _decode_whole(key_cls, buf, pos, key_cls.VALID_VERSIONS[0])
    return rtype, message_json(obj, key_cls.VALID_VERSIONS[0])


def _offsets_value(rtype, buf):
    version, pos = _unpack(">h", buf, 0)
    _, value_cls = _classes(rtype)
    obj = _decode_whole(value_cls, buf, pos, version)
    data = message_json(obj, version)
    if rtype == 2 and data.get("protocolType") == "consumer":
        for member in data.get("members", ()):
            for name, member_obj in (("subscription", "ConsumerProtocolSubscription"),
                                     ("assignment", "ConsumerProtocolAssignment")):
                member[name] = _consumer_protocol(member_obj, getattr(_raw_member(obj, member), name),
                                                  member[name])
    return version, data


def _raw_member(obj, member_json):
    for mm in obj.members:
        if mm.member_id == member_json.get("memberId"):
            return mm
    raise ProtocolError("member not found")


def _consumer_protocol(cls_name: str, raw, shown):
    """The embedded ConsumerProtocol bytes as their JSON, or as they were
    (base64) when they do not decode: Kafka keeps the bytes then too."""
    from ..protocol import messages as m
    cls = getattr(m, cls_name)
    try:
        version, pos = _unpack(">h", raw, 0)
        # Newer versions than the schema knows are read as its newest, as
        # Kafka's ConsumerProtocol does (fields are only ever appended).
        v = min(version, cls.VALID_VERSIONS[1])
        obj, _end = cls.decode_from(bytes(raw), pos, v)
        return message_json(obj, v)
    except (ProtocolError, struct.error, ValueError, IndexError, UnicodeDecodeError):
        return shown


def decode_offsets_record(key, value) -> tuple:
    """((type, key data), (version, value data) or None) of a __consumer_offsets
    record; ProtocolError (or _UnknownType) when it is not one."""
    k = _offsets_key(bytes(key))
    return k, None if value is None else _offsets_value(k[0], bytes(value))


def offsets_text(key, value, offset: int = -1) -> str:
    """The ` key: ... payload: ...` part of a __consumer_offsets record's line."""
    return _record_text(_offsets_key, _offsets_value, key, value, offset)


# --- Kafka's JSON form of a generated message ------------------------------------

def _camel(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _is_default(value, default) -> bool:
    if default == ():
        return not value
    return value == default


def message_json(obj, version: int) -> dict:
    """obj as Kafka's generated JsonConverter writes it for `version`."""
    from ..protocol.schema import version_in
    out = {}
    for f in type(obj).FIELDS:
        if not version_in(f.versions, version):
            continue
        value = getattr(obj, f.name)
        if f.tagged_versions is not None and version_in(f.tagged_versions, version) \
                and _is_default(value, f.default):
            continue
        out[_camel(f.name)] = _json_value(value, version)
    return out


def _json_value(value, version: int):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, uuid.UUID):
        # Kafka's Uuid.toString: URL-safe base64 of the 16 bytes, unpadded.
        return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")
    if isinstance(value, (list, tuple)):
        return [_json_value(v, version) for v in value]
    if hasattr(type(value), "FIELDS"):
        return message_json(value, version)
    return str(value)


# --- kafka-console-consumer's coordinator formatters ------------------------------

def _offsets_value_raw(rtype, buf):
    version, pos = _unpack(">h", buf, 0)
    _, value_cls = _classes(rtype)
    return version, message_json(_decode_whole(value_cls, buf, pos, version), version)


def coordinator_formatter_json(log: str, key, value, allowed=None, offset: int = -1) -> str | None:
    """One record as Kafka 4's CoordinatorRecordMessageFormatter writes it
    (OffsetsMessageFormatter, GroupMetadataMessageFormatter,
    TransactionLogMessageFormatter): {"key":{"type":T,"data":{...}},
    "value":{"version":V,"data":{...}}} (value null for a tombstone), the
    embedded consumer-protocol bytes left as they are. None for what the
    formatter skips: no key, a record type it does not show or does not
    know. log is "offsets" or "transactions". ValueError (Kafka's "Could not
    read record at offset O due to: ...") for a record that does not decode."""
    if key is None:
        return None
    decode_key, decode_value = ((_offsets_key, _offsets_value_raw) if log == "offsets"
                                else (_transaction_key, _transaction_value))
    try:
        rtype, kdata = decode_key(bytes(key))
        if allowed is not None and rtype not in allowed:
            return None
        out = {"key": {"type": rtype, "data": kdata}, "value": None}
        if value is not None:
            version, vdata = decode_value(rtype, bytes(value))
            out["value"] = {"version": version, "data": vdata}
    except _UnknownType:
        return None
    except (ProtocolError, struct.error, ValueError, IndexError, UnicodeDecodeError, TypeError) as e:
        raise ValueError(f"Could not read record at offset {offset} due to: {e}") from None
    return _compact(out)
