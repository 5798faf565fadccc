"""Compaction and transactions, by Kafka's rules (Cleaner.cleanInto,
CleanedTransactionMetadata): an aborted transaction's records go, the ABORT
marker stays (and its .txnindex entry moves to the cleaned segment) while the
round still saw records of it, a committed transaction's records are compacted
as any others, and the producer's last batch stays as an empty batch (records
count 0, its producer id, epoch, sequence and offsets kept) for its state."""
from __future__ import annotations

import os
import struct

from pylog.log.log import Log
from pylog.log.txn_index import ENTRY, read_index_file
from pylog.protocol import batch_layout as L
from pylog.protocol.control_records import build_end_txn_marker
from pylog.transactions.batches import transactional_batch

NOW = 10_000_000


def _batches(log):
    out, off = [], log.log_start_offset
    while off < log.log_end_offset:
        data = bytes(log.read_batches(off, 1))
        base, length = struct.unpack_from(">qi", data)
        attrs, last_delta = struct.unpack_from(">hi", data, L.ATTRIBUTES_OFFSET)
        pid, epoch, seq, count = struct.unpack_from(">qhii", data, L.PRODUCER_ID_OFFSET)
        out.append((base, base + last_delta, attrs & (L.ATTR_TRANSACTIONAL | L.ATTR_CONTROL), pid, count))
        off = base + last_delta + 1
    return out


def test_aborted_records_go_and_the_producers_last_batch_stays_empty(tmp_path):
    path = os.fspath(tmp_path / "t-0")
    with Log.open(path) as log:
        log.append_batches(transactional_batch([b"k1", b"k2"], [b"aborted", b"aborted"], 7, 0))     # 0-1
        log.append_batches(build_end_txn_marker(7, 0, 0, False, NOW), allow_control=True)          # 2 ABORT
        with open(os.path.join(path, f"{0:020d}.txnindex"), "wb") as f:
            f.write(ENTRY.pack(0, 7, 0, 2, 3))
        log.append_batches(transactional_batch([b"k1", b"k3"], [b"old", b"c1"], 8, 0))            # 3-4
        log.append_batches(build_end_txn_marker(8, 0, 0, True, NOW), allow_control=True)           # 5 COMMIT
        log.append(b"new", b"k1", timestamp=NOW)                                                    # 6
        log.roll()
        before = _batches(log)
        stats = log.compact(now_ms=NOW)
        after = _batches(log)
        keyed = [(r.offset, bytes(r.key), bytes(r.value)) for r in log.scan()
                 if r.key is not None and bytes(r.key)[:1] == b"k"]
    assert stats.records_removed >= 3
    # k1@0, k2@1 aborted: gone; k1@3 superseded by k1@6; k3@4 committed, kept.
    assert keyed == [(4, b"k3", b"c1"), (6, b"k1", b"new")]
    tc = L.ATTR_TRANSACTIONAL | L.ATTR_CONTROL
    assert before[0] == (0, 1, L.ATTR_TRANSACTIONAL, 7, 2)
    # Producer 7's last data batch stays, empty, with its offsets and producer id.
    assert after[0] == (0, 1, L.ATTR_TRANSACTIONAL, 7, 0)
    # The ABORT marker stays (this round saw the transaction's records), so does the COMMIT.
    assert (2, 2, tc, 7, 1) in after and (5, 5, tc, 8, 1) in after
    entries = read_index_file(os.path.join(path, f"{0:020d}.txnindex"))
    assert [(t.producer_id, t.first_offset, t.last_offset) for t in entries] == [(7, 0, 2)]
