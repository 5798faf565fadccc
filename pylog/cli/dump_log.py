"""`pylog dump-log --transaction-log-decoder`: the records of a
`__transaction_state` segment decoded as Kafka's TransactionLogKey /
TransactionLogValue (shared/kafka-protocol-4.5/transaction-coordinator/),
printed after each record line as kafka-dump-log.sh's decoder prints them:
`key: {"type":"0","data":{...}} payload: {"version":"1","data":{...}}`
(payload `<DELETE>` for a tombstone), field names in Kafka's JSON form
(camelCase), tagged fields only when they differ from their defaults.

A key or value that does not decode is shown as unknown with its reason,
never a crash: the tool is for damaged files too.
"""
from __future__ import annotations

import json
import struct

from ..protocol.errors import ProtocolError
from ..protocol.types import (
    read_compact_nullable_array,
    read_compact_string,
    read_nullable_array,
    read_string,
    read_unsigned_varint,
)

__all__ = ["TRANSACTION_STATES", "decode_transaction_key", "decode_transaction_value",
           "transaction_log_text"]

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


def transaction_log_text(key, value) -> str:
    """The ` key: ... payload: ...` part of a record's line."""
    try:
        if key is None:
            raise ProtocolError("no key")
        kv, kdata = decode_transaction_key(bytes(key))
        key_text = _compact({"type": str(kv), "data": kdata})
    except (ProtocolError, struct.error, ValueError, IndexError) as e:
        key_text = f"unknown::{e}"
    if value is None:
        payload = "<DELETE>"
    else:
        try:
            vv, vdata = decode_transaction_value(bytes(value))
            payload = _compact({"version": str(vv), "data": vdata})
        except (ProtocolError, struct.error, ValueError, IndexError) as e:
            payload = f"unknown::{e}"
    return f" key: {key_text} payload: {payload}"
