"""Committed offsets: resumption across consumer and broker restarts
(confluent-kafka), kafka-python commits with metadata, standalone (assign())
commits, and offset retention of empty groups."""
from __future__ import annotations

import time

from confluent_kafka import OFFSET_INVALID, ConsumerGroupTopicPartitions, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from .helpers import (
    TIMEOUT,
    Pump,
    admin,
    close_all,
    committed,
    create_topic,
    group_consumer,
    group_state,
    produce,
)


def _consume(c, n, timeout=TIMEOUT):
    """The next n messages from a consumer (errors fail the test)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"got {len(got)} of {n} messages"
        msg = c.poll(0.1)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg)
    return got


def _quiet(c, seconds=0.5):
    """Poll for a while; nothing may arrive."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        msg = c.poll(0.1)
        assert msg is None or msg.error() is None, msg.error()
        assert msg is None, f"unexpected message {msg.partition()}@{msg.offset()}"


def _positions(msgs, base=None):
    """{partition: next offset} after these messages (starting from base)."""
    pos = dict(base or {})
    for m in msgs:
        pos[m.partition()] = max(pos.get(m.partition(), 0), m.offset() + 1)
    return pos


def _commit(c, topic, pos):
    res = c.commit(offsets=[TopicPartition(topic, p, o) for p, o in pos.items()], asynchronous=False)
    for tp in res:
        assert tp.error is None, tp.error


def _check_resumes_at(msgs, start, sent, upto=None):
    """Per partition, msgs are exactly the offsets start[p].. (contiguous, in
    order), with the values produced there."""
    by_part: dict[int, list] = {}
    for m in msgs:
        by_part.setdefault(m.partition(), []).append(m)
    for p, ms in by_part.items():
        offs = [m.offset() for m in ms]
        first = start.get(p, 0)
        assert offs == list(range(first, first + len(offs))), (p, first, offs)
        assert [m.value() for m in ms] == sent[p][first:first + len(offs)]
        if upto is not None:
            assert first + len(offs) == upto[p], (p, first, len(offs), upto[p])
    if upto is not None:
        for p in upto:
            if p not in by_part:
                assert start.get(p, 0) == upto[p], (p, start, upto)


def test_committed_offsets_survive_consumer_and_broker_restart(fresh_gbroker, topic, group):
    b = fresh_gbroker
    create_topic(b, topic, 3)
    sent = produce(b, topic, 150, 3)
    ends = {p: len(v) for p, v in sent.items()}

    # Consumer 1: reads 60, commits after the first 40, closes without committing the last 20.
    c1 = group_consumer(b, group, {"client.id": "first"})
    try:
        c1.subscribe([topic])
        first = _consume(c1, 40)
        commit1 = _positions(first)
        _commit(c1, topic, commit1)
        more = _consume(c1, 20)
        assert committed(c1, topic, range(3)) == {p: commit1.get(p, OFFSET_INVALID) for p in range(3)}
    finally:
        c1.close()
    _check_resumes_at(first + more, {}, sent)

    # Consumer 2, same group: resumes exactly at the commits. The 20 uncommitted ones come again
    # (the only duplicates), nothing is skipped.
    c2 = group_consumer(b, group, {"client.id": "second"})
    try:
        c2.subscribe([topic])
        remaining = sum(ends.values()) - sum(commit1.values())
        second = _consume(c2, remaining)
        _check_resumes_at(second, commit1, sent, upto=ends)
        dups = {(m.partition(), m.offset()) for m in second} & {(m.partition(), m.offset()) for m in first + more}
        assert dups == {(m.partition(), m.offset()) for m in more}
        _quiet(c2)
        # Commit only part of what it read: up to half way through each partition's rest.
        commit2 = {p: commit1.get(p, 0) + (ends[p] - commit1.get(p, 0)) // 2 for p in range(3)}
        _commit(c2, topic, commit2)
    finally:
        c2.close()

    g = b.broker.groups.groups[group]
    assert {tp[1]: om.offset for tp, om in g.offsets.items()} == commit2

    b.restart()
    g = b.broker.groups.groups[group]
    assert g.state.value == "Empty", group_state(b, group)
    assert {tp[1]: om.offset for tp, om in g.offsets.items()} == commit2

    # Consumer 3 after the broker restart: resumes at consumer 2's commits.
    c3 = group_consumer(b, group, {"client.id": "third"})
    try:
        assert committed(c3, topic, range(3)) == commit2
        c3.subscribe([topic])
        third = _consume(c3, sum(ends.values()) - sum(commit2.values()))
        _check_resumes_at(third, commit2, sent, upto=ends)
        _quiet(c3)
    finally:
        c3.close()


def test_kafka_python_commit_keeps_metadata(gbroker, topic, group):
    create_topic(gbroker, topic, 2)
    produce(gbroker, topic, 20, 2)
    c = KafkaConsumer(bootstrap_servers=str(gbroker), group_id=group, client_id="kp-member",
                      enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=6000,
                      heartbeat_interval_ms=300, request_timeout_ms=30000, consumer_timeout_ms=10000)
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 20 and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                got.extend(recs)
        assert len(got) == 20
        assert {tp.partition for tp in c.assignment()} == {0, 1}
        tp0, tp1 = KTopicPartition(topic, 0), KTopicPartition(topic, 1)
        c.commit({tp0: OffsetAndMetadata(7, "my-meta", -1), tp1: OffsetAndMetadata(3, "other-meta", -1)})
        assert c.committed(tp0) == 7
        om = c.committed(tp0, metadata=True)
        assert (om.offset, om.metadata) == (7, "my-meta")
        om = c.committed(tp1, metadata=True)
        assert (om.offset, om.metadata) == (3, "other-meta")
        g = gbroker.broker.groups.groups[group]
        assert g.state.value == "Stable" and len(g.members) == 1
    finally:
        c.close()

    # The metadata as other clients see it.
    ka = KafkaAdminClient(bootstrap_servers=str(gbroker))
    try:
        offs = ka.list_group_offsets(group)[group]
    finally:
        ka.close()
    assert {(tp.partition, om.offset, om.metadata) for tp, om in offs.items()} == \
        {(0, 7, "my-meta"), (1, 3, "other-meta")}
    a = admin(gbroker)  # must outlive its futures
    res = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(TIMEOUT)
    # Offsets only: confluent-kafka's metadata strings were once read past
    # their end under load (UnicodeDecodeError at byte 11 of a 7- or 10-byte
    # string, a client-side read); the exact metadata bytes the broker
    # returns are checked with kafka-python just above.
    assert {(tp.partition, tp.offset) for tp in res.topic_partitions} == {(0, 7), (1, 3)}


def test_standalone_consumer_commits_with_assign(gbroker, topic, group):
    create_topic(gbroker, topic, 3)
    produce(gbroker, topic, 30, 3)
    c = group_consumer(gbroker, group)
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        c.assign(tps)  # no subscribe(): no group membership
        assert committed(c, topic, range(3)) == {p: OFFSET_INVALID for p in range(3)}
        _commit(c, topic, {0: 5, 2: 9})
        assert committed(c, topic, range(3)) == {0: 5, 1: OFFSET_INVALID, 2: 9}
        g = gbroker.broker.groups.groups[group]
        assert g.state.value == "Empty" and not g.members and g.generation_id == 0
        # Recommitting moves it (also backwards).
        _commit(c, topic, {0: 2})
        assert committed(c, topic, range(3)) == {0: 2, 1: OFFSET_INVALID, 2: 9}
    finally:
        c.close()
    # Another standalone consumer of the group reads them, and starts there.
    c2 = group_consumer(gbroker, group, {"auto.offset.reset": "error"})
    try:
        assert committed(c2, topic, range(3)) == {0: 2, 1: OFFSET_INVALID, 2: 9}
        c2.assign([TopicPartition(topic, 2)])
        msgs = _consume(c2, 1)
        assert (msgs[0].partition(), msgs[0].offset()) == (2, 9)
    finally:
        c2.close()


def test_empty_group_offsets_expire_and_stay_gone(fresh_gbroker, topic, group):
    b = fresh_gbroker
    create_topic(b, topic, 2)
    produce(b, topic, 10, 2)
    active_group = group + "-active"
    gone = group_consumer(b, group)
    try:
        gone.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        _commit(gone, topic, {0: 3, 1: 4})
    finally:
        gone.close()
    live = group_consumer(b, active_group)
    pump = Pump(live)
    try:
        live.subscribe([topic])
        pump.until(lambda: len(live.assignment()) == 2, "the live member's assignment",
                   describe=lambda: group_state(b, active_group))
        _commit(live, topic, {0: 1, 1: 2})
        coord = b.broker.groups

        # Not yet: empty for less than offsets.retention.minutes.
        b.broker.call(coord.expire_offsets, int(time.time() * 1000))
        assert group in coord.groups
        assert committed(live, topic, [0, 1]) == {0: 1, 1: 2}

        far_future_ms = int(time.time() * 1000) + 365 * 24 * 3600 * 1000
        b.broker.call(coord.expire_offsets, far_future_ms)
        assert group not in coord.groups
        # A group with a live member keeps its offsets, however old.
        assert active_group in coord.groups
        assert {tp[1]: om.offset for tp, om in coord.groups[active_group].offsets.items()} == {0: 1, 1: 2}
        pump.run_for(0.5)
    finally:
        close_all(live)

    def check():
        c = group_consumer(b, group)
        try:
            assert committed(c, topic, [0, 1]) == {0: OFFSET_INVALID, 1: OFFSET_INVALID}
        finally:
            c.close()
        ka = admin(b)
        listed = {g.group_id for g in ka.list_consumer_groups().result(TIMEOUT).valid}
        assert group not in listed and active_group in listed
    check()
    b.restart()
    assert group not in b.broker.groups.groups
    check()
    # The active group's offsets were not expired, and survive the restart.
    assert {tp[1]: om.offset for tp, om in b.broker.groups.groups[active_group].offsets.items()} == {0: 1, 1: 2}
