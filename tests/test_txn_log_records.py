"""`__transaction_state` records in Kafka's byte layout (TransactionLogKey v0,
TransactionLogValue v0 written, v0 and v1 read)."""
import struct

from pylog.transactions import log_records as lr
from pylog.transactions.log_records import TxnState


def test_key_and_value_v0_bytes_are_kafkas():
    assert lr.encode_key("tx") == b"\x00\x00" + b"\x00\x02tx"
    v = lr.encode_value(7, 3, 60000, TxnState.ONGOING, {("b", 1), ("a", 2), ("a", 0)}, 1000, 900)
    expected = (struct.pack(">hqhib", 0, 7, 3, 60000, 1)
                + struct.pack(">i", 2) + b"\x00\x01a" + struct.pack(">iii", 2, 0, 2)
                + b"\x00\x01b" + struct.pack(">ii", 1, 1) + struct.pack(">qq", 1000, 900))
    assert v == expected
    # Empty: no partition list (null), as Kafka writes it.
    assert lr.encode_value(7, 4, 60000, TxnState.EMPTY, set(), 1, -1)[17:21] == b"\xff\xff\xff\xff"
    r = lr.decode_value(v)
    assert (r.producer_id, r.producer_epoch, r.timeout_ms, r.state, r.partitions, r.last_update_ms,
            r.start_ms) == (7, 3, 60000, TxnState.ONGOING, {("a", 0), ("a", 2), ("b", 1)}, 1000, 900)
    assert lr.decode_key(lr.encode_key("tx")) == "tx"


def test_value_v1_with_tagged_fields_is_read():
    body = struct.pack(">hqhib", 1, 9, 2, 1000, 2)
    body += bytes([2]) + bytes([2]) + b"t" + bytes([2]) + struct.pack(">i", 4) + bytes([0])   # [(t, [4])], no tags
    body += struct.pack(">qq", 5, 4)
    body += bytes([2]) + bytes([0, 8]) + struct.pack(">q", 8) + bytes([2, 2]) + struct.pack(">h", 2)
    r = lr.decode_value(body)
    assert (r.producer_id, r.producer_epoch, r.state, r.partitions, r.prev_producer_id, r.client_version) == (
        9, 2, TxnState.PREPARE_COMMIT, {("t", 4)}, 8, 2)


def test_states_and_transitions_are_kafkas():
    assert [s.kafka_name for s in TxnState] == ["Empty", "Ongoing", "PrepareCommit", "PrepareAbort",
                                                "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"]
    assert lr.VALID_PREVIOUS[TxnState.PREPARE_ABORT] == {TxnState.ONGOING, TxnState.PREPARE_EPOCH_FENCE}
    assert TxnState.ONGOING not in lr.VALID_PREVIOUS[TxnState.EMPTY]
