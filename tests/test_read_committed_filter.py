"""read_committed in _engine.decode_fetched: batches of aborted transactions
are dropped whole by producer id and offset range (Kafka's CompletedFetch),
control batches always; batches built here as a broker would store them.

The filter itself is i15-data's (decode_fetched's `aborted` argument); on a
tree without it these tests skip, saying so."""
from __future__ import annotations

import struct

import pytest

from pylog import _engine

try:
    _engine.decode_fetched(b"", "t", 0, 0, True, -1, ())
except TypeError:
    pytest.skip("decode_fetched has no aborted argument in this tree (it comes with i15-data)",
                allow_module_level=True)

TRANSACTIONAL = 0x10
CONTROL = 0x20
ABORT, COMMIT = 0, 1


def txn_batch(values, base_offset, producer_id, attributes=TRANSACTIONAL, keys=None) -> bytes:
    """A batch of producer_id at base_offset, attribute bits set, CRC resealed."""
    b = bytearray(_engine.encode_batch(values, keys=keys, timestamps=[1000] * len(values),
                                       base_offset=base_offset))
    struct.pack_into(">h", b, 21, struct.unpack_from(">h", b, 21)[0] | attributes)
    struct.pack_into(">qhi", b, 43, producer_id, 0, 0)
    struct.pack_into(">I", b, 17, _engine.crc32c(bytes(b[21:])))
    return bytes(b)


def marker(offset, producer_id, kind) -> bytes:
    """A control batch: one record, key (version 0, type), value (version 0, coordinator epoch 0)."""
    return txn_batch([struct.pack(">hi", 0, 0)], offset, producer_id, TRANSACTIONAL | CONTROL,
                     keys=[struct.pack(">hh", 0, kind)])


def values(recs):
    return [bytes(r.value) for r in recs]


def test_aborted_transaction_skipped_committed_kept():
    # pid 7 aborts [0, 2); pid 8 commits [2, 3); pid 7 commits a later one.
    data = (txn_batch([b"a0", b"a1"], 0, 7) + txn_batch([b"c0"], 2, 8) + marker(3, 7, ABORT)
            + marker(4, 8, COMMIT) + txn_batch([b"c1"], 5, 7) + marker(6, 7, COMMIT)
            + _engine.encode_batch([b"plain"], timestamps=[1], base_offset=7))
    recs, nxt = _engine.decode_fetched(data, "t", 0, 0, True, -1, [(7, 0)])
    assert values(recs) == [b"c0", b"c1", b"plain"]
    assert nxt == 8
    # read_uncommitted (no aborted list): everything but the markers.
    recs, _ = _engine.decode_fetched(data, "t", 0, 0)
    assert values(recs) == [b"a0", b"a1", b"c0", b"c1", b"plain"]


def test_abort_marker_ends_the_aborted_range():
    # pid 5 aborted at offset 0, committed from offset 3 on: its later batch stays.
    data = txn_batch([b"x"], 0, 5) + marker(1, 5, ABORT) + txn_batch([b"y"], 2, 5) + marker(3, 5, COMMIT)
    recs, nxt = _engine.decode_fetched(data, "t", 0, 0, True, -1, [(5, 0)])
    assert values(recs) == [b"y"] and nxt == 4


def test_aborted_entry_starting_later_hides_only_from_its_first_offset():
    data = txn_batch([b"kept"], 0, 9) + marker(1, 9, COMMIT) + txn_batch([b"gone"], 2, 9) + marker(3, 9, ABORT)
    recs, _ = _engine.decode_fetched(data, "t", 0, 0, True, -1, [(9, 2)])
    assert values(recs) == [b"kept"]


def test_non_transactional_batch_of_same_producer_id_is_not_dropped():
    data = txn_batch([b"idem"], 0, 4, attributes=0) + txn_batch([b"t"], 1, 4) + marker(2, 4, ABORT)
    recs, _ = _engine.decode_fetched(data, "t", 0, 0, True, -1, [(4, 0)])
    assert values(recs) == [b"idem"]


def test_aborted_pairs_unsorted():
    data = (txn_batch([b"p1"], 0, 1) + txn_batch([b"p2"], 1, 2) + marker(2, 2, ABORT)
            + marker(3, 1, ABORT) + txn_batch([b"p3"], 4, 3) + marker(5, 3, COMMIT))
    recs, nxt = _engine.decode_fetched(data, "t", 0, 0, True, -1, [(2, 1), (1, 0)])
    assert values(recs) == [b"p3"] and nxt == 6


def test_fetch_of_only_aborted_batches_moves_past_them():
    data = txn_batch([b"a"] * 3, 10, 6) + marker(13, 6, ABORT)
    recs, nxt = _engine.decode_fetched(data, "t", 0, 10, True, -1, [(6, 10)])
    assert recs == [] and nxt == 14
