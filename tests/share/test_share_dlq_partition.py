"""The Archiving state of KIP-1191 in a share-partition: rejected and
exhausted records wait there (not acquirable, the start offset held) until
their dead letters are written, and a state read back with Archiving ranges
hands them to the dead-letter writer again."""
from __future__ import annotations

import pytest

from pylog.share.partition import (ACCEPT, ACKNOWLEDGED, ARCHIVED, ARCHIVING, AVAILABLE, EXHAUSTED, GAP, REJECT,
                                   REJECTED, RELEASE, AckError, SharePartition)


def sp(dlq=True, limit=2):
    return SharePartition(0, delivery_limit=limit, max_locks=1000, dlq=lambda: dlq)


def test_reject_with_a_dead_letter_topic_holds_the_records_archiving():
    s = sp()
    assert s.acquire("m", [(0, 4)], 10, 100.0) == [(0, 4, 1)]
    s.acknowledge("m", [(0, 0, [ACCEPT]), (1, 2, [REJECT]), (3, 3, [GAP]), (4, 4, [ACCEPT])])
    # The start offset stops at the Archiving records; GAP has nothing to dead-letter.
    assert s.start == 1
    assert s.persisted_state() == (1, [(1, 2, ARCHIVING, 1), (3, 3, ARCHIVED, 1), (4, 4, ACKNOWLEDGED, 1)])
    assert s.next_fetch_offset() == 5
    assert s.take_archiving() == [(1, 2, 1, REJECTED)]
    assert s.take_archiving() == []          # taken once
    s.archive(1, 2)
    assert s.start == 5 and s.persisted_state() == (5, [])


def test_the_delivery_limit_by_release_and_by_expiry_leads_to_archiving():
    s = sp(limit=2)
    s.acquire("m", [(0, 1)], 10, 100.0)
    s.acknowledge("m", [(0, 1, [RELEASE])])
    assert s.acquire("m", [(0, 1)], 10, 100.0) == [(0, 1, 2)]
    s.acknowledge("m", [(0, 0, [RELEASE])])
    assert s.expire(200.0) == 1
    assert s.take_archiving() == [(0, 1, 2, EXHAUSTED)]


def test_without_a_dead_letter_topic_reject_archives_at_once():
    s = sp(dlq=False)
    s.acquire("m", [(0, 2)], 10, 100.0)
    s.acknowledge("m", [(0, 2, [REJECT])])
    assert s.start == 3 and s.take_archiving() == []


def test_an_untaken_range_is_handed_out_again_and_a_loaded_one_too():
    s = sp()
    s.acquire("m", [(0, 2)], 10, 100.0)
    s.acknowledge("m", [(0, 2, [REJECT])])
    assert s.take_archiving() == [(0, 2, 1, REJECTED)]
    s.untake(0, 2)
    assert s.take_archiving() == [(0, 2, 1, REJECTED)]
    # After a restart the persister gives the range back Archiving, its reason unknown.
    again = SharePartition(0, [(0, 2, ARCHIVING, 1), (3, 5, AVAILABLE, 0)], delivery_limit=2, max_locks=1000,
                           dlq=lambda: True)
    assert again.start == 0 and again.next_fetch_offset() == 3
    assert again.take_archiving() == [(0, 2, 1, None)]
    again.archive(0, 2)
    assert again.start == 3


def test_archiving_offsets_cannot_be_acknowledged_or_acquired():
    s = sp()
    s.acquire("m", [(0, 0)], 10, 100.0)
    s.acknowledge("m", [(0, 0, [REJECT])])
    with pytest.raises(AckError, match="not acquired"):
        s.acknowledge("m", [(0, 0, [ACCEPT])])
    assert s.acquire("n", [(0, 0)], 10, 100.0) == []
    assert s.ranges[0].state == ARCHIVING
