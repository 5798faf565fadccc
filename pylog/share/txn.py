"""share.isolation.level=read_committed for share groups (KIP-932; Kafka's
SharePartition.filterAbortedTransactionalAcquiredRecords is the model): which
of the records a share fetch acquired below the last stable offset belong to
aborted transactions, so the share-partition archives them instead of
handing them out. Commit and abort markers stay acquired: the consumer skips
control records and acknowledges them as it does in read_uncommitted.

Per batch: the transaction index (pylog/log/txn_index.py) is asked once per
fetch, and only the batches of producers with an aborted transaction in the
fetched range are looked at.
"""
from __future__ import annotations

from .._engine import batch_headers

_TRANSACTIONAL, _CONTROL = 0x10, 0x20


def aborted_runs(p, data, acquired) -> list[tuple[int, int]]:
    """The (base, last) offsets of the data batches of data (whole batches
    read from partition p) that aborted transactions wrote and that overlap
    the acquired ranges [(first, last, count)], ascending."""
    txns = p.txn_indexes
    if not txns or not acquired:
        return []
    # A producer has one transaction open at a time, so a batch of it lies in
    # an aborted one exactly when its offset falls between that transaction's
    # first offset and its ABORT marker.
    spans: dict[int, list[tuple[int, int]]] = {}
    for e in txns.collect(acquired[0][0], acquired[-1][1] + 1):
        spans.setdefault(e.producer_id, []).append((e.first_offset, e.last_offset))
    if not spans:
        return []
    out = []
    for _pos, base, delta, _ts, pid, _epoch, _seq, _count, attrs in batch_headers(data):
        if attrs & (_TRANSACTIONAL | _CONTROL) != _TRANSACTIONAL:
            continue
        for first, last in spans.get(pid, ()):
            if first <= base <= last:
                out.append((base, base + delta))
                break
    return out


def split(acquired, runs):
    """(kept, dropped): the acquired ranges [(first, last, count)] outside
    and inside the offsets of runs [(first, last)] (both ascending); dropped
    as (first, last) runs."""
    kept, dropped, i = [], [], 0
    for first, last, count in acquired:
        while i < len(runs) and runs[i][1] < first:
            i += 1
        j = i
        while first <= last and j < len(runs) and runs[j][0] <= last:
            lo, hi = runs[j]
            if lo > first:
                kept.append((first, lo - 1, count))
            dropped.append((max(first, lo), min(last, hi)))
            first = max(first, hi + 1)
            j += 1
        if first <= last:
            kept.append((first, last, count))
    return kept, dropped
