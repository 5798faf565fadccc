"""The share-partition state machine (pylog/share/partition.py) and the share
coordinator's merge of state updates, on their own: Kafka's transitions,
the window's bounds, and what is persisted."""
from __future__ import annotations

import pytest

from pylog.protocol.error_codes import Errors
from pylog.share.coordinator import merge_batches, partition_for
from pylog.share.partition import (ACCEPT, ACKNOWLEDGED, ARCHIVED, AVAILABLE, GAP, REJECT, RELEASE, AckError,
                                   SharePartition)


def sp(start=0, batches=(), limit=5, locks=2000):
    return SharePartition(start, batches, delivery_limit=limit, max_locks=locks)


def test_acquire_takes_whole_batches_until_max_records_is_passed():
    s = sp()
    got = s.acquire("a", [(0, 3), (4, 7), (8, 9)], 5, deadline=10)
    assert got == [(0, 7, 1)]              # the second batch passes 5: the third is left
    assert s.end == 8 and s.next_fetch_offset() == 8
    assert s.acquire("b", [(8, 9)], 5, deadline=10) == [(8, 9, 1)]
    assert s.acquire("b", [(0, 3), (4, 7), (8, 9)], 5, deadline=10) == []   # all held


def test_accept_moves_the_start_past_leading_done_records():
    s = sp()
    s.acquire("a", [(0, 9)], 100, deadline=10)
    s.acknowledge("a", [(3, 5, [ACCEPT])])
    assert s.start == 0                    # 0-2 still acquired
    s.acknowledge("a", [(0, 2, [REJECT])])
    assert s.start == 6
    s.acknowledge("a", [(6, 9, [GAP])])
    assert s.start == s.end == 10 and s.ranges == []


def test_release_makes_records_available_with_their_count_and_the_limit_archives():
    s = sp(limit=2)
    s.acquire("a", [(0, 1)], 10, deadline=10)
    s.acknowledge("a", [(0, 1, [RELEASE])])
    assert s.next_fetch_offset() == 0
    assert s.acquire("b", [(0, 1)], 10, deadline=10) == [(0, 1, 2)]
    s.acknowledge("b", [(0, 0, [RELEASE]), (1, 1, [ACCEPT])])
    assert s.start == 2                    # 0 reached the limit: archived, not available


def test_per_offset_types_split_a_range():
    s = sp()
    s.acquire("a", [(10, 13)], 10, deadline=10)   # a window starting at the first batch read
    s.acknowledge("a", [(10, 13, [ACCEPT, RELEASE, REJECT, RELEASE])])
    assert s.acquire("a", [(10, 13)], 10, deadline=10) == [(11, 11, 2), (13, 13, 2)]


def test_acknowledging_records_not_acquired_by_the_member_is_refused_whole():
    s = sp()
    s.acquire("a", [(0, 4)], 10, deadline=10)
    for member, batches in (("b", [(0, 0, [ACCEPT])]), ("a", [(0, 5, [ACCEPT])]),
                            ("a", [(0, 1, [ACCEPT]), (7, 7, [ACCEPT])])):
        with pytest.raises(AckError) as e:
            s.acknowledge(member, batches)
        assert e.value.code == Errors.INVALID_RECORD_STATE
    assert s.start == 0 and s.held_by("a") == 5          # nothing of the refused ones applied
    s.acknowledge("a", [(0, 4, [ACCEPT])])
    with pytest.raises(AckError):
        s.acknowledge("a", [(0, 0, [ACCEPT])])           # final: below the start now


def test_lock_expiry_and_a_member_leaving_release_only_theirs():
    s = sp()
    s.acquire("a", [(0, 1)], 1, deadline=5)
    s.acquire("b", [(2, 3)], 1, deadline=9)
    assert s.earliest_deadline() == 5
    assert s.expire(6) == 2 and s.held_by("a") == 0 and s.held_by("b") == 2
    assert s.release_member("b") == 2
    assert s.acquire("c", [(0, 1), (2, 3)], 10, deadline=20) == [(0, 3, 2)]


def test_the_window_stops_growing_at_max_record_locks():
    s = sp(locks=4)
    assert s.acquire("a", [(0, 3), (4, 7)], 100, deadline=10) == [(0, 3, 1)]
    assert not s.can_grow()
    s.acknowledge("a", [(0, 3, [ACCEPT])])
    assert s.can_grow() and s.acquire("a", [(4, 7)], 100, deadline=10) == [(4, 7, 1)]


def test_persisted_state_writes_acquired_as_available_and_reloads():
    s = sp(start=100)
    s.acquire("a", [(100, 104), (105, 109)], 100, deadline=10)
    s.acknowledge("a", [(102, 103, [ACCEPT]), (105, 105, [REJECT])])
    start, batches = s.persisted_state()
    assert start == 100
    assert batches == [(100, 101, AVAILABLE, 1), (102, 103, ACKNOWLEDGED, 1), (104, 104, AVAILABLE, 1),
                       (105, 105, ARCHIVED, 1), (106, 109, AVAILABLE, 1)]
    again = sp(start, batches)
    assert again.end == 110 and again.next_fetch_offset() == 100
    assert again.acquire("b", [(100, 104), (105, 109)], 100, deadline=10) == [
        (100, 101, 2), (104, 104, 2), (106, 109, 2)]


def test_offsets_below_the_log_start_are_archived():
    s = sp()
    s.acquire("a", [(0, 9)], 100, deadline=10)
    assert s.archive_below(5) and s.start == 5
    assert s.archive_below(50) and s.start == s.end == 50


def test_merge_overlays_updates_and_drops_below_the_start():
    old = [(0, 9, AVAILABLE, 1), (10, 19, ACKNOWLEDGED, 1)]
    assert merge_batches(old, 5, [(8, 12, ARCHIVED, 2)]) == [
        (5, 7, AVAILABLE, 1), (8, 12, ARCHIVED, 2), (13, 19, ACKNOWLEDGED, 1)]


def test_state_partition_is_kafkas_hash_of_group_topic_id_partition():
    import uuid
    tid = uuid.UUID(int=0)
    # "g:AAAAAAAAAAAAAAAAAAAAAA:0": the id in Kafka's base64 text form.
    from pylog.groups.offsets_topic import java_string_hash
    h = java_string_hash("g:AAAAAAAAAAAAAAAAAAAAAA:0")
    assert partition_for("g", tid, 0, 50) == abs(h) % 50


def test_records_near_the_limit_are_isolated_in_halving_batches():
    # Kafka's example: limit 6 throttles records already delivered 3 times; a batch of 8.
    s = sp(limit=6)
    batch = [(0, 7)]
    for _ in range(3):
        [(f, l, c)] = s.acquire("a", batch, 100, deadline=1)
        s.acknowledge("a", [(f, l, [RELEASE])])
    assert (f, l, c) == (0, 7, 3)                                     # whole batches until then
    assert s.acquire("a", batch, 100, deadline=1) == [(0, 3, 4)]      # 8 >> 1
    s.acknowledge("a", [(0, 3, [RELEASE])])
    assert s.acquire("a", batch, 100, deadline=1) == [(0, 1, 5)]      # 8 >> 2
    s.acknowledge("a", [(0, 1, [RELEASE])])
    assert s.acquire("a", batch, 100, deadline=1) == [(0, 0, 6)]      # the last attempt: alone
    s.acknowledge("a", [(0, 0, [RELEASE])])                           # archived now
    assert s.start == 1
    assert s.acquire("a", batch, 100, deadline=1) == [(1, 1, 6)]      # the next one on its last attempt
    s.acknowledge("a", [(1, 1, [ACCEPT])])
    assert s.acquire("a", batch, 100, deadline=1) == [(2, 3, 5)]      # 8 >> 2 again


def test_fresh_records_are_not_throttled_after_others():
    s = sp(limit=5)
    s.acquire("a", [(0, 1)], 100, deadline=1)
    s.acknowledge("a", [(0, 1, [RELEASE])])
    assert s.acquire("a", [(0, 1), (2, 5)], 100, deadline=1) == [(0, 1, 2), (2, 5, 1)]
