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

_ATTRIBUTES_AT, _CRC_AT = 21, 17
_PRODUCER = struct.Struct(">qhi")     # producer_id, producer_epoch, base_sequence at byte 43
_PRODUCER_AT = 43
_ATTR_TRANSACTIONAL = 0x10


def transactional_batch(keys: list, values: list, producer_id: int, producer_epoch: int) -> bytes:
    """One uncompressed batch of the records, marked transactional for the producer."""
    b = bytearray(_engine.encode_batch(values, keys=keys))
    attrs = struct.unpack_from(">h", b, _ATTRIBUTES_AT)[0] | _ATTR_TRANSACTIONAL
    struct.pack_into(">h", b, _ATTRIBUTES_AT, attrs)
    _PRODUCER.pack_into(b, _PRODUCER_AT, producer_id, producer_epoch, -1)
    struct.pack_into(">I", b, _CRC_AT, _engine.crc32c(bytes(b[_ATTRIBUTES_AT:])))
    return bytes(b)


def is_transactional(attributes: int) -> bool:
    return bool(attributes & _ATTR_TRANSACTIONAL)


class TxnRecordView:
    """A record of a transactional data batch, or a control batch's marker
    (`marker` True for COMMIT, False for ABORT, None for data), with the
    batch's producer id: what a coordinator's replay needs to hold the
    records back until the marker. A plain value, any thread."""

    __slots__ = ("offset", "key", "value", "producer_id", "marker")

    def __init__(self, offset, key, value, producer_id, marker=None):
        self.offset, self.key, self.value = offset, key, value
        self.producer_id, self.marker = producer_id, marker


_ATTR_CONTROL = 0x20
_CONTROL_KEY = struct.Struct(">hh")
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
                records = _engine.decode_batches(view[pos:stop])
                if attrs & _ATTR_CONTROL:
                    for r in records:
                        if r.key is not None and len(r.key) >= 4:
                            kind = _CONTROL_KEY.unpack_from(bytes(r.key), 0)[1]
                            if kind in (0, 1):
                                yield TxnRecordView(r.offset, None, None, pid, kind == 1)
                elif attrs & _ATTR_TRANSACTIONAL:
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
