"""How one ShareFetch divides its work among the partitions of its share
session, as Kafka's SharePartitionManager and DelayedShareFetch do it: the
partitions rotated round robin by the request's session epoch
(PartitionRotateStrategy), MaxBytes split evenly among the acquirable ones
(PartitionMaxBytesStrategy UNIFORM), the first partition that reads any
bytes alone allowed a first batch above its share (minOneMessage), and
MaxRecords taken in the rotated order (ShareFetchUtils). Raw ShareFetch
requests over a real socket against a real pylog broker."""
from __future__ import annotations

import pytest
from confluent_kafka import Producer

from pylog.testing import running_broker

from .wire import CONFIG, acquired, connect, create_topic, join_assigned, member_id, set_group_configs, share_fetch


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def _produce_batches(b, topic, partitions, per_partition, size):
    """per_partition records of size bytes to each partition, each record in
    its own batch, so the bytes of a fetch count whole records."""
    p = Producer({"bootstrap.servers": str(b), "acks": "all", "linger.ms": 0, "batch.num.messages": 1})
    for i in range(per_partition):
        for part in range(partitions):
            p.produce(topic, b"x" * size, partition=part)
            assert p.flush(30) == 0


def _setup(broker, conn, name, partitions, per_partition, size):
    """The topic with its records, a share group reading from the earliest,
    the share-partitions' states loaded on the leader (each by a member of
    its own, which keeps one record acquired: a first ShareFetch is answered
    with the first share-partition loaded, so the session under test starts
    with every one loaded). (group, member under test, session partitions)."""
    group, topic = f"{name}-g", name
    create_topic(broker, topic, partitions)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    _produce_batches(broker, topic, partitions, per_partition, size)
    mid = member_id()
    tid = join_assigned(conn, group, mid, [topic], partitions).assignment.topic_partitions[0].topic_id
    parts = [(tid, i) for i in range(partitions)]
    for part in parts:
        r = share_fetch(conn, group, member_id(), 0, [part], max_records=1, max_wait_ms=10000)
        assert r.error_code == 0, r
        assert list(acquired(r)) == [part], r
    return group, mid, parts


def _records_bytes(resp):
    return {(t.topic_id, p.partition_index): len(p.records) for t in resp.responses for p in t.partitions
            if p.acquired_records}


def test_partitions_rotate_by_session_epoch(broker):
    """Three partitions with records in one-record batches, MaxRecords 1:
    each fetch takes its record from the partition its epoch rotates to the
    front (epoch % 3 places left: epoch 0 keeps the session's order), as
    Kafka's round robin does; filling in session order took every record
    from the first partition."""
    with connect(broker) as conn:
        group, mid, parts = _setup(broker, conn, "split-rotate", 3, 8, 10)
        firsts = []
        for epoch in range(7):
            r = share_fetch(conn, group, mid, epoch, parts, max_records=1, max_wait_ms=10000)
            assert r.error_code == 0, r
            got = acquired(r)
            assert len(got) == 1, r
            firsts.append(next(iter(got)))
        assert firsts == [parts[e % 3] for e in range(7)], firsts


def test_max_bytes_is_shared_among_partitions(broker):
    """Three partitions each with many batches of about 1 KB, MaxBytes
    8001: each partition reads at most 8001 / 3 = 2667 bytes, so one fetch
    brings two batches from each. Filling in session order gave the first
    partition seven and the second one (its first batch read above what was
    left), the third none."""
    with connect(broker) as conn:
        group, mid, parts = _setup(broker, conn, "split-bytes", 3, 10, 1000)
        r = share_fetch(conn, group, mid, 0, parts, max_bytes=8001, max_wait_ms=10000)
        assert r.error_code == 0, r
        sizes = _records_bytes(r)
        assert set(sizes) == set(parts), r
        assert all(0 < n <= 8001 // 3 for n in sizes.values()), sizes
        assert {sum(l - f + 1 for f, l, _ in ranges) for ranges in acquired(r).values()} == {2}, r


def test_only_the_first_partition_read_may_exceed_its_share(broker):
    """Two partitions whose next batch is about 5 KB, MaxBytes 6000 (3000
    each): the first partition read takes its batch above its share (Kafka's
    minOneMessage, so a large record is never stuck); the second, with 1000
    bytes left, reads nothing. The next fetch (epoch 1) rotates the second to
    the front and it takes its batch then. Filling from one budget took both
    batches in the first fetch."""
    with connect(broker) as conn:
        group, mid, parts = _setup(broker, conn, "split-minone", 2, 2, 5000)
        r = share_fetch(conn, group, mid, 0, parts, max_bytes=6000, max_wait_ms=10000)
        assert r.error_code == 0, r
        assert list(acquired(r)) == [parts[0]], r
        assert _records_bytes(r)[parts[0]] > 5000, r
        r = share_fetch(conn, group, mid, 1, parts, max_bytes=6000, max_wait_ms=10000)
        assert r.error_code == 0, r
        assert list(acquired(r)) == [parts[1]], r
