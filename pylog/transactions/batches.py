"""Transactional record batches the broker writes itself: a group
coordinator's TxnOffsetCommit records in __consumer_offsets carry the
producer's id and epoch and the transactional bit, without sequences (-1, as
Kafka's coordinator-origin appends), so the partition tracks them as part of
the producer's transaction and the COMMIT/ABORT marker ends them.

Functions only; safe from any thread.
"""
from __future__ import annotations

import struct

from .. import _engine
from ..protocol import batch_layout as L
from ..protocol.control_records import COMMIT, end_txn_marker

_PRODUCER = struct.Struct(">qhi")     # producer_id, producer_epoch, base_sequence at PRODUCER_ID_OFFSET


def transactional_batch(keys: list, values: list, producer_id: int, producer_epoch: int) -> bytes:
    """One uncompressed batch of the records, marked transactional for the producer."""
    b = bytearray(_engine.encode_batch(values, keys=keys))
    attrs = struct.unpack_from(">h", b, L.ATTRIBUTES_OFFSET)[0] | L.ATTR_TRANSACTIONAL
    struct.pack_into(">h", b, L.ATTRIBUTES_OFFSET, attrs)
    _PRODUCER.pack_into(b, L.PRODUCER_ID_OFFSET, producer_id, producer_epoch, -1)
    struct.pack_into(">I", b, L.CRC_OFFSET, _engine.crc32c(bytes(b[L.CRC_START:])))
    return bytes(b)


def is_transactional(attributes: int) -> bool:
    return bool(attributes & L.ATTR_TRANSACTIONAL)


class TxnRecordView:
    """A record of a transactional data batch, or a control batch's marker
    (`marker` True for COMMIT, False for ABORT, None for data), with the
    batch's producer id: what a coordinator's replay needs to hold the
    records back until the marker. A plain value, any thread."""

    __slots__ = ("offset", "key", "value", "producer_id", "marker")

    def __init__(self, offset, key, value, producer_id, marker=None):
        self.offset, self.key, self.value = offset, key, value
        self.producer_id, self.marker = producer_id, marker


READ_CHUNK = 1 << 20


def scan_with_transactions(log):
    """Every record of a log from its start, in offset order, as log.scan()
    gives them, except that records of transactional batches come as
    TxnRecordView (with their producer id) and each control batch as one
    TxnRecordView with its marker. A generator: closing it releases the
    stored bytes it holds."""
    offset = log.log_start_offset
    end = log.log_end_offset
    while offset < end:
        view = memoryview(log.read_batches(offset, READ_CHUNK))
        try:
            headers = _engine.batch_headers(view)
            if not headers:
                return
            ends = [h[0] for h in headers[1:]] + [len(view)]
            for (pos, base, delta, _ts, pid, _epoch, _seq, _count, attrs), stop in zip(headers, ends):
                last = base + delta
                if last < offset:
                    continue
                if attrs & L.ATTR_CONTROL:
                    # The marker's fields are read where the partition reads them.
                    marker = end_txn_marker(view, pos)
                    if marker is not None:
                        yield TxnRecordView(base, None, None, pid, marker[0] == COMMIT)
                    offset = last + 1
                    continue
                records = _engine.decode_batches(view[pos:stop])
                if attrs & L.ATTR_TRANSACTIONAL:
                    for r in records:
                        yield TxnRecordView(r.offset, r.key, r.value, pid)
                else:
                    yield from records
                offset = last + 1
                del records
        finally:
            try:
                view.release()
            except BufferError:
                pass   # slices a caller still holds keep the bytes pinned until they go
