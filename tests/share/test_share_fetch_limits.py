"""How a ShareFetch's MaxBytes bounds what the broker acquires, as Kafka's
SharePartitionManager does it: raw ShareFetch requests over a real socket
against a real pylog broker."""
from __future__ import annotations

import pytest

from pylog.testing import running_broker

from .wire import CONFIG, acquired, connect, create_topic, join_assigned, member_id, produce, set_group_configs, \
    share_fetch


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def test_max_bytes_zero_acquires_nothing(broker):
    """fetch.max.bytes=0 (librdkafka's 0180 test_fetch_max_bytes_zero_returns_no_records):
    Kafka completes such a ShareFetch at once with no records, so none is
    acquired and a later fetch with room gets them all at delivery count 1."""
    with connect(broker) as conn:
        _max_bytes_zero(broker, conn)


def _max_bytes_zero(broker, conn):
    group, topic = "fl-zero-g", "fl-zero"
    create_topic(broker, topic)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    produce(broker, topic, 10)
    mid = member_id()
    tid = join_assigned(conn, group, mid, [topic]).assignment.topic_partitions[0].topic_id
    for epoch in range(3):
        r = share_fetch(conn, group, mid, epoch, [(tid, 0)], max_bytes=0)
        assert r.error_code == 0, r
        assert acquired(r) == {}, r
    r = share_fetch(conn, group, mid, 3, [(tid, 0)], max_wait_ms=5000)
    assert r.error_code == 0, r
    got = acquired(r)[(tid, 0)]
    assert sorted(o for f, l, _ in got for o in range(f, l + 1)) == list(range(10)), r
    assert {c for _, _, c in got} == {1}, r


def test_first_fetch_is_answered_with_the_first_share_partition_loaded(broker):
    """librdkafka's 0179 do_test_destroy_with_explicit_ack: two new
    share-partitions of 50 records each, one ShareFetch for both. As Kafka's
    leader, pylog reads a share-partition's state at its first fetch and
    answers as soon as one has records (DelayedShareFetch is checked as each
    finishes loading), so the first answer carries one partition's 50 and the
    next the other's."""
    with connect(broker) as conn:
        group, topic = "fl-split-g", "fl-split"
        create_topic(broker, topic, 2)
        set_group_configs(broker, group, share_auto_offset_reset="earliest")
        produce(broker, topic, 100, partitions=2)
        mid = member_id()
        tid = join_assigned(conn, group, mid, [topic], 2).assignment.topic_partitions[0].topic_id
        parts = [(tid, 0), (tid, 1)]
        r = share_fetch(conn, group, mid, 0, parts, max_wait_ms=5000)
        assert r.error_code == 0, r
        first = acquired(r)
        assert len(first) == 1, r
        (tp, ranges), = first.items()
        assert sum(l - f + 1 for f, l, _ in ranges) == 50, r
        r = share_fetch(conn, group, mid, 1, parts, max_wait_ms=5000)
        assert r.error_code == 0, r
        second = acquired(r)
        assert list(second) == [k for k in parts if k != tp], r
        assert sum(l - f + 1 for f, l, _ in second[list(second)[0]]) == 50, r
