"""Reading the records field of a Fetch response, as a consumer does.

A fetch answer holds whole record batches and may end with one batch cut
short (KIP-74: the broker stops at max_bytes mid-batch); that tail is legal and
dropped. A batch that is whole but fails its CRC is corruption and raises.
Control batches (transaction markers) are skipped, and records below the
fetch offset are dropped, since the broker answers from the start of the
batch that holds the fetch offset.

Functions only; no state, so safe from any thread.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from .. import _engine
from ..errors import CorruptRecordError
from ..protocol.batch_layout import LOG_OVERHEAD, LOG_PREFIX

__all__ = [
    "CREATE_TIME",
    "LOG_APPEND_TIME",
    "BatchHeader",
    "ConsumedRecord",
    "batch_headers",
    "consumed_records",
    "next_fetch_offset",
    "whole_batches",
]


_ATTR_TIMESTAMP_TYPE = 0x08
_ATTR_TRANSACTIONAL = 0x10
_ATTR_CONTROL = 0x20

CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"


class BatchHeader(NamedTuple):
    """What a consumer needs of a batch header (read in C by
    _engine.batch_headers, the broker's own header walk)."""

    position: int
    size: int
    base_offset: int
    last_offset_delta: int
    max_timestamp: int
    attributes: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _ATTR_CONTROL)

    @property
    def timestamp_type(self) -> str:
        return LOG_APPEND_TIME if self.attributes & _ATTR_TIMESTAMP_TYPE else CREATE_TIME


class ConsumedRecord(NamedTuple):
    """One record as a consumer sees it. key/value are bytes-like (slices of
    the response, no copies) or None; headers a sequence of (str, bytes-like)."""

    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key: object
    value: object
    headers: tuple


def whole_batches(records) -> memoryview:
    """The prefix of records made of whole, CRC-valid batches. Raises
    CorruptRecordError when a batch that is all there fails its checks."""
    if records is None:
        return memoryview(b"")
    view = memoryview(records)
    valid, _batches, _count, _last, stop_error = _engine.validate_batches(view)
    if stop_error is not None:
        rest = view[valid:]
        if len(rest) >= LOG_OVERHEAD:
            length = LOG_PREFIX.unpack_from(rest, 0)[1]
            if 0 <= length and length + LOG_OVERHEAD <= len(rest):
                raise CorruptRecordError(f"fetched batch at byte {valid}: {stop_error}",
                                         position=valid)
        # else: the KIP-74 partial trailing batch.
    return view[:valid]


def batch_headers(batches) -> list[BatchHeader]:
    """The header of every batch in `batches` (whole batches, e.g. from
    whole_batches)."""
    raw = _engine.batch_headers(batches)
    ends = [h[0] for h in raw[1:]] + [len(batches)]
    return [BatchHeader(pos, end - pos, base, delta, max_ts, attrs)
            for (pos, base, delta, max_ts, _pid, _epoch, _seq, _count, attrs), end in zip(raw, ends)]


def consumed_records(partition: int, records, fetch_offset: int) -> Iterator[ConsumedRecord]:
    """The data records at or after fetch_offset in a fetch response's records
    field, in offset order."""
    batches = whole_batches(records)
    for h in batch_headers(batches):
        if h.is_control or h.last_offset < fetch_offset:
            continue
        log_append = h.attributes & _ATTR_TIMESTAMP_TYPE
        ts_type = LOG_APPEND_TIME if log_append else CREATE_TIME
        for r in _engine.decode_batches(batches[h.position:h.position + h.size]):
            if r.offset < fetch_offset:
                continue
            # With LogAppendTime the broker stamps only the batch's
            # max_timestamp; every record takes that time.
            ts = h.max_timestamp if log_append else r.timestamp
            yield ConsumedRecord(partition, r.offset, ts, ts_type, r.key, r.value, tuple(r.headers))


def next_fetch_offset(records, fetch_offset: int) -> int:
    """Where the next fetch should start after this response: one past the
    last whole batch (control batches included), never before fetch_offset."""
    batches = whole_batches(records)
    headers = batch_headers(batches)
    return max(fetch_offset, headers[-1].last_offset + 1) if headers else fetch_offset
