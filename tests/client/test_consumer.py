"""pylog Consumer without group membership (assign) against a real pylog
broker, with confluent-kafka as the producer and as the other group client."""
from __future__ import annotations

import time

import confluent_kafka
import pytest

from pylog.consumer import Consumer, NoOffsetForPartitionError, OffsetAndTimestamp
from pylog.errors import OffsetOutOfRangeError
from pylog.structs import OffsetAndMetadata, TopicPartition
from pylog.testing import wait_until

from .conftest import create_topic, produce


def poll_until(consumer, n, timeout=20.0, max_records=None):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(consumer.poll(0.5, max_records=max_records))
    return out


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_assign_reads_exactly_what_confluent_produced(cbroker, topic, compression):
    create_topic(cbroker, topic, 3)
    base_ts = 1_700_000_000_000
    messages = [(i % 3, f"key-{i}".encode(), f"value-{i}-".encode() * (i % 7 + 1),
                 [("h1", f"{i}".encode()), ("h2", b"\x00\xff" * (i % 3))], base_ts + i)
                for i in range(10_000)]
    delivered = produce(cbroker, topic, messages, **{"compression.type": compression})
    assert len(delivered) == 10_000

    with Consumer(bootstrap_servers=cbroker, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic, p) for p in range(3)])
        got = poll_until(c, 10_000)
        assert c.poll(0.2) == []  # nothing more
    assert len(got) == 10_000
    by_partition: dict[int, list[int]] = {}
    for r in got:
        assert r.topic == topic
        key, value, headers, ts = delivered[(r.partition, r.offset)]
        assert (r.key, r.value, r.timestamp, r.timestamp_type) == (key, value, ts, 0)
        assert [(k, bytes(v)) for k, v in r.headers] == [(k, bytes(v)) for k, v in headers]
        by_partition.setdefault(r.partition, []).append(r.offset)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))  # in order, contiguous, no duplicates


def test_seek_position_and_offset_lookups(cbroker, topic):
    create_topic(cbroker, topic, 1)
    tp = TopicPartition(topic, 0)
    produce(cbroker, topic, [(0, None, b"v%d" % i, None, 1_000_000 + 10 * i) for i in range(30)])
    with Consumer(bootstrap_servers=cbroker, auto_offset_reset="earliest") as c:
        c.assign([tp])
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 30}
        assert c.offsets_for_times({tp: 1_000_055}) == {tp: OffsetAndTimestamp(6, 1_000_060)}
        assert c.offsets_for_times({tp: 2_000_000}) == {tp: None}
        assert c.position(tp) == 0
        c.seek(tp, 10)
        assert c.position(tp) == 10
        assert poll_until(c, 1, max_records=1)[0].offset == 10
        assert c.position(tp) == 11
        c.seek_to_end()
        assert c.position(tp) == 30
        assert c.poll(0.2) == []
        c.seek_to_beginning(tp)
        assert c.position(tp) == 0
        records = poll_until(c, 30)
        assert [r.offset for r in records] == list(range(30))
        assert c.partitions_for_topic(topic) == [0]
        assert c.partitions_for_topic("no-such-topic-" + topic) is None
        assert topic in c.topics()


def test_max_records_respected_across_polls(cbroker, topic):
    create_topic(cbroker, topic, 2)
    produce(cbroker, topic, [(i % 2, None, b"x", None, None) for i in range(200)])
    with Consumer(bootstrap_servers=cbroker, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 200 and time.monotonic() < deadline:
            batch = c.poll(0.5, max_records=7)
            assert len(batch) <= 7
            got.extend(batch)
        assert len(got) == 200
        for p in (0, 1):
            assert [r.offset for r in got if r.partition == p] == list(range(100))


def test_pause_and_resume(cbroker, topic):
    create_topic(cbroker, topic, 2)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    produce(cbroker, topic, [(i % 2, None, b"x", None, None) for i in range(40)])
    with Consumer(bootstrap_servers=cbroker, auto_offset_reset="earliest") as c:
        c.assign([tp0, tp1])
        # Buffer some of tp0 first, so pausing must also hold back buffered records.
        first = poll_until(c, 1, max_records=1)
        c.pause(tp0)
        assert c.paused() == {tp0}
        got = first + poll_until(c, 40, timeout=2.0)
        assert all(r.partition == 1 for r in got[1:])
        assert sum(r.partition == 1 for r in got) == 20
        c.resume(tp0)
        assert c.paused() == set()
        rest = poll_until(c, 40 - len(got))
        offsets0 = [r.offset for r in got + rest if r.partition == 0]
        assert offsets0 == list(range(20))


def test_auto_offset_reset(cbroker, topic):
    create_topic(cbroker, topic, 1)
    tp = TopicPartition(topic, 0)
    produce(cbroker, topic, [(0, None, b"old", None, None) for _ in range(5)])
    with Consumer(bootstrap_servers=cbroker, auto_offset_reset="earliest") as c:
        c.assign([tp])
        assert poll_until(c, 1, max_records=1)[0].offset == 0
        c.seek(tp, 1000)  # out of range: reset to the beginning
        assert poll_until(c, 1, max_records=1)[0].offset == 0
    with Consumer(bootstrap_servers=cbroker, auto_offset_reset="latest") as c:
        c.assign([tp])
        assert c.position(tp) == 5
        assert c.poll(0.3) == []
        produce(cbroker, topic, [(0, None, b"new", None, None)])
        assert [(r.offset, r.value) for r in poll_until(c, 1)] == [(5, b"new")]
    with Consumer(bootstrap_servers=cbroker, group_id=topic + "-none", auto_offset_reset="none") as c:
        c.assign([tp])
        with pytest.raises(NoOffsetForPartitionError):
            c.poll(0.2)
        c.seek(tp, 1000)
        with pytest.raises(OffsetOutOfRangeError):
            poll_until(c, 1)


def test_commit_sync_async_and_committed(cbroker, topic, group):
    create_topic(cbroker, topic, 1)
    tp = TopicPartition(topic, 0)
    produce(cbroker, topic, [(0, None, b"x", None, None) for _ in range(50)])
    with Consumer(bootstrap_servers=cbroker, group_id=group, auto_offset_reset="earliest",
                  enable_auto_commit=False) as c:
        c.assign([tp])
        assert c.committed(tp) is None
        poll_until(c, 10, max_records=10)
        assert c.commit() == {tp: OffsetAndMetadata(10)}
        assert c.committed(tp) == OffsetAndMetadata(10, "", -1)

        calls = []
        c.commit({tp: 20}, asynchronous=True, callback=lambda err, offs: calls.append((err, offs)))
        c.commit({tp: OffsetAndMetadata(25, "meta")}, asynchronous=True,
                 callback=lambda err, offs: calls.append((err, offs)))
        assert calls == []  # asynchronous: nothing done yet
        c.poll(0)
        assert calls == [(None, {tp: OffsetAndMetadata(20)}), (None, {tp: OffsetAndMetadata(25, "meta")})]
        assert c.committed([tp]) == {tp: OffsetAndMetadata(25, "meta", -1)}

        # A synchronous commit completes the asynchronous ones issued before it.
        calls.clear()
        c.commit({tp: 30}, asynchronous=True, callback=lambda err, offs: calls.append("async"))
        c.commit({tp: 31}, callback=lambda err, offs: calls.append("sync"))
        assert calls == ["async", "sync"]
        assert c.committed(tp).offset == 31
    # A new consumer of the group starts at the committed offset.
    with Consumer(bootstrap_servers=cbroker, group_id=group, auto_offset_reset="earliest") as c:
        c.assign([tp])
        assert c.position(tp) == 31


def test_auto_commit_commits_what_earlier_polls_returned(cbroker, topic, group):
    create_topic(cbroker, topic, 1)
    tp = TopicPartition(topic, 0)
    produce(cbroker, topic, [(0, None, b"x", None, None) for _ in range(20)])
    c = Consumer(bootstrap_servers=cbroker, group_id=group, auto_offset_reset="earliest",
                 auto_commit_interval_ms=100)
    c.assign([tp])
    assert len(poll_until(c, 5, max_records=5)) == 5
    time.sleep(0.15)
    c.poll(0, max_records=5)  # commits the 5 returned before, then returns 5 more
    with Consumer(bootstrap_servers=cbroker, group_id=group) as other:
        # Sent by that poll, which did not wait for the answer (as Java's).
        wait_until(lambda: other.committed(tp) is not None, "the auto commit")
        assert other.committed(tp).offset == 5
    c.close()  # auto commit on close: everything returned
    with Consumer(bootstrap_servers=cbroker, group_id=group) as other:
        assert other.committed(tp).offset == 10


def test_confluent_and_pylog_resume_from_each_others_commits(cbroker, topic, group):
    create_topic(cbroker, topic, 1)
    tp = TopicPartition(topic, 0)
    produce(cbroker, topic, [(0, None, b"m%d" % i, None, None) for i in range(100)])
    # pylog commits 40 -> confluent-kafka resumes at 40.
    with Consumer(bootstrap_servers=cbroker, group_id=group, enable_auto_commit=False) as c:
        c.assign([tp])
        c.commit({tp: 40})
    ck = confluent_kafka.Consumer({"bootstrap.servers": cbroker, "group.id": group,
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                   "session.timeout.ms": 3000, "heartbeat.interval.ms": 200})
    try:
        ck.subscribe([topic])
        msg = None
        deadline = time.monotonic() + 20
        while msg is None and time.monotonic() < deadline:
            msg = ck.poll(0.2)
            if msg is not None and msg.error():
                msg = None
        assert msg is not None and msg.offset() == 40 and msg.value() == b"m40"
        ck.commit(offsets=[confluent_kafka.TopicPartition(topic, 0, 60)], asynchronous=False)
    finally:
        ck.close()
    # confluent-kafka committed 60 -> a subscribed pylog consumer resumes at 60.
    with Consumer(topic, bootstrap_servers=cbroker, group_id=group, session_timeout_ms=3000,
                  heartbeat_interval_ms=200, auto_offset_reset="earliest") as c:
        first = poll_until(c, 1, max_records=1)
        assert (first[0].offset, first[0].value) == (60, b"m60")
