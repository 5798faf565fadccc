"""pylog transactions / dump-log --transaction-log-decoder parts that need no
broker: option checks as kafka-transactions.sh makes them, its table layout,
and __transaction_state records decoded from a segment file built here."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys

import pytest

from pylog import _engine
from pylog.cli.dump_log import decode_transaction_key, decode_transaction_value
from pylog.cli.transactions import pretty_table
from pylog.errors import InvalidConfigError
from pylog.producer import Producer


def run(*argv):
    return subprocess.run([sys.executable, "-m", "pylog", *argv], capture_output=True, text=True, timeout=60)


def key_v0(tid: str) -> bytes:
    raw = tid.encode()
    return struct.pack(">hh", 0, len(raw)) + raw


def value_v0(pid, epoch, timeout, status, parts, last_update, start) -> bytes:
    out = struct.pack(">hqhib", 0, pid, epoch, timeout, status)
    if parts is None:
        out += struct.pack(">i", -1)
    else:
        out += struct.pack(">i", len(parts))
        for topic, ids in parts:
            out += struct.pack(">h", len(topic)) + topic.encode() + struct.pack(">i", len(ids))
            out += b"".join(struct.pack(">i", i) for i in ids)
    return out + struct.pack(">qq", last_update, start)


def value_v1(pid, epoch, timeout, status, parts, last_update, start, tags) -> bytes:
    """Flexible: compact strings / arrays (length + 1 as an unsigned varint, all < 128 here)."""
    out = struct.pack(">hqhib", 1, pid, epoch, timeout, status)
    out += bytes([len(parts) + 1])
    for topic, ids in parts:
        out += bytes([len(topic) + 1]) + topic.encode() + bytes([len(ids) + 1])
        out += b"".join(struct.pack(">i", i) for i in ids) + b"\0"
    out += struct.pack(">qq", last_update, start)
    out += bytes([len(tags)])
    for tag, data in tags:
        out += bytes([tag, len(data)]) + data
    return out


def test_decode_value_v0_and_v1():
    assert decode_transaction_key(key_v0("app-1")) == (0, {"transactionalId": "app-1"})
    v, d = decode_transaction_value(value_v0(7, 2, 60000, 1, [("out", [0, 3])], 1700, 1600))
    assert v == 0 and d == {"producerId": 7, "producerEpoch": 2, "transactionTimeoutMs": 60000,
                            "transactionStatus": 1,
                            "transactionPartitions": [{"topic": "out", "partitionIds": [0, 3]}],
                            "transactionLastUpdateTimestampMs": 1700, "transactionStartTimestampMs": 1600}
    v, d = decode_transaction_value(value_v1(7, 3, 1000, 4, [], 5, -1,
                                             [(0, struct.pack(">q", 6)), (2, struct.pack(">h", 2)),
                                              (1, struct.pack(">q", -1))]))
    assert v == 1 and d["previousProducerId"] == 6 and d["clientTransactionVersion"] == 2
    assert "nextProducerId" not in d   # at its default: not shown
    assert d["transactionPartitions"] == [] and d["transactionStatus"] == 4


def test_dump_log_transaction_log_decoder(tmp_path):
    seg = tmp_path / "00000000000000000000.log"
    batch = _engine.encode_batch(
        [value_v0(7, 0, 60000, 1, [("out", [0])], 20, 10), None, b"\x00\x09junk"],
        keys=[key_v0("app-1"), key_v0("app-2"), key_v0("app-3")], timestamps=[1, 2, 3])
    seg.write_bytes(batch)
    r = run("dump-log", str(seg), "--transaction-log-decoder")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("| offset")]
    assert len(lines) == 3
    key_part = lines[0].split(" key: ")[1].split(" payload: ")
    assert json.loads(key_part[0]) == {"type": "0", "data": {"transactionalId": "app-1"}}
    payload = json.loads(key_part[1])
    assert payload["version"] == "0" and payload["data"]["producerId"] == 7
    assert payload["data"]["transactionPartitions"] == [{"topic": "out", "partitionIds": [0]}]
    assert lines[1].endswith("payload: <DELETE>")
    # Kafka's CoordinatorRecordMessageParser: the reason in place of the key, no payload.
    assert lines[2].endswith(" key: Error at offset 2, skipping. unknown TransactionLogValue version 9")


def test_pretty_table_is_kafkas_layout():
    out = io.StringIO()
    pretty_table(("TransactionalId", "Coordinator"), [("a-much-longer-id", "1")], out)
    assert out.getvalue() == "TransactionalId \tCoordinator\t\na-much-longer-id\t1          \t\n"


def test_abort_needs_start_offset_or_producer_fields():
    r = run("transactions", "abort", "--topic", "t", "--partition", "0")
    assert r.returncode == 1 and "--start-offset (for brokers on 3.0 or above)" in r.stderr
    r = run("transactions", "abort", "--topic", "t", "--partition", "0", "--producer-id", "5",
            "--producer-epoch", "1")
    assert r.returncode == 1 and "Missing required argument --coordinator-epoch" in r.stderr
    r = run("transactions", "describe")
    assert r.returncode == 2 and "--transactional-id" in r.stderr


def test_producer_refuses_transactional_id_where_it_cannot_work(tmp_path):
    # Embedded transactions work (tests/client/test_embedded_txn.py); both
    # modes refuse a transactional id without idempotence, as Kafka does.
    with pytest.raises(InvalidConfigError, match="enable_idempotence"):
        Producer(log_dir=str(tmp_path), transactional_id="t1", enable_idempotence=False)
    with pytest.raises(InvalidConfigError, match="enable_idempotence"):
        Producer("127.0.0.1:1", transactional_id="t1", enable_idempotence=False)
