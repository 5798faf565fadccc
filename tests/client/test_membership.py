"""pylog Consumer group membership against a real pylog broker: joining,
sharing and taking over partitions, the heartbeat thread, rebalance
callbacks, cooperative rebalancing, and a mixed pylog / confluent-kafka group."""
from __future__ import annotations

import time

import confluent_kafka
import pytest

from pylog.consumer import Consumer
from pylog.errors import CommitFailedError
from pylog.protocol.error_codes import Errors
from pylog.structs import TopicPartition

from .conftest import FAST_GROUP, create_topic, produce


def group_consumer(bootstrap, topic, group, **kw):
    args = {"bootstrap_servers": bootstrap, "group_id": group, "auto_offset_reset": "earliest", **FAST_GROUP}
    args.update(kw)
    return Consumer(topic, **args)


def poll_all(consumers, until, timeout=20.0, seen=None):
    """Poll each consumer in turn (one thread: joins do not block past a
    poll's timeout) until until() is true; returns records per consumer."""
    seen = seen if seen is not None else {id(c): [] for c in consumers}
    refused = set()
    deadline = time.monotonic() + timeout
    while not until() or refused:   # a refused commit is made again before returning
        assert time.monotonic() < deadline, "condition not reached in time"
        for c in consumers:
            records = c.poll(0.05)
            seen.setdefault(id(c), []).extend(records)
            if (records or id(c) in refused) and not c.enable_auto_commit:
                try:
                    c.commit()
                    refused.discard(id(c))
                except CommitFailedError as e:
                    # Kafka's coordinator refuses a commit that reaches it
                    # between a JoinGroup and its SyncGroup (REBALANCE_IN_PROGRESS),
                    # and the consumer's own heartbeat thread can be rejoining
                    # then; as a Java user does with RebalanceInProgressException,
                    # poll (finishing the rebalance) and commit again.
                    if e.error_code != Errors.REBALANCE_IN_PROGRESS:
                        raise
                    refused.add(id(c))
    return seen


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "sticky", "cooperative-sticky"])
def test_three_consumers_split_six_partitions_and_take_over(cbroker, topic, group, strategy):
    create_topic(cbroker, topic, 6)
    produce(cbroker, topic, [(i % 6, None, b"a%d" % i, None, None) for i in range(300)])
    consumers = [group_consumer(cbroker, topic, group, enable_auto_commit=False,
                                partition_assignment_strategy=[strategy]) for _ in range(3)]
    try:
        seen = poll_all(consumers, lambda: sorted(len(c.assignment()) for c in consumers) == [2, 2, 2]
                        and len(set().union(*(c.assignment() for c in consumers))) == 6)
        leaving = consumers.pop(0)
        leaving.close()
        produce(cbroker, topic, [(i % 6, None, b"b%d" % i, None, None) for i in range(300)])
        everything = lambda: sum(len(v) for v in seen.values()) >= 600
        poll_all(consumers, lambda: sorted(len(c.assignment()) for c in consumers) == [3, 3]
                 and everything(), seen=seen)
        records = [(r.partition, r.offset) for rs in seen.values() for r in rs]
        # Every consumer commits right after each poll, and commits before it
        # gives a partition up: nothing lost, nothing read twice.
        assert len(records) == len(set(records)) == 600
        probe = consumers[0]
        tps = [TopicPartition(topic, p) for p in range(6)]
        assert {tp: om.offset for tp, om in probe.committed(tps).items()} == {tp: 100 for tp in tps}
    finally:
        for c in consumers:
            c.close()


def test_heartbeats_keep_membership_while_not_polling(cbroker, topic, group):
    create_topic(cbroker, topic, 2)
    events = []
    c = group_consumer(cbroker, topic, group, session_timeout_ms=1500, heartbeat_interval_ms=200,
                       max_poll_interval_ms=20000,
                       on_assign=lambda cons, tps: events.append(("assign", sorted(tps))),
                       on_revoke=lambda cons, tps: events.append(("revoke", sorted(tps))),
                       on_lost=lambda cons, tps: events.append(("lost", sorted(tps))))
    try:
        poll_all([c], lambda: len(c.assignment()) == 2)
        generation = c._membership.generation()
        time.sleep(4.0)  # well past the session timeout, within max_poll_interval
        c.poll(0.2)
        assert c._membership.generation() == generation
        assert [e[0] for e in events] == ["assign"]
    finally:
        c.close()


def test_exceeding_max_poll_interval_loses_partitions_then_rejoins(cbroker, topic, group):
    create_topic(cbroker, topic, 2)
    events = []
    c = group_consumer(cbroker, topic, group, session_timeout_ms=3000, heartbeat_interval_ms=100,
                       max_poll_interval_ms=1000,
                       on_assign=lambda cons, tps: events.append(("assign", sorted(tps))),
                       on_revoke=lambda cons, tps: events.append(("revoke", sorted(tps))),
                       on_lost=lambda cons, tps: events.append(("lost", sorted(tps))))
    try:
        poll_all([c], lambda: len(c.assignment()) == 2)
        first_generation = c._membership.generation()[0]
        time.sleep(2.0)  # the heartbeat thread leaves the group
        assert c._membership.generation()[0] == -1
        poll_all([c], lambda: len(c.assignment()) == 2 and c._membership.generation()[0] > first_generation)
        both = sorted(TopicPartition(topic, p) for p in range(2))
        assert events == [("assign", both), ("lost", both), ("assign", both)]
    finally:
        c.close()


def test_eager_callbacks_revoke_before_assign(cbroker, topic, group):
    create_topic(cbroker, topic, 4)
    events = []
    a = group_consumer(cbroker, topic, group,
                       on_assign=lambda cons, tps: events.append(("assign", len(tps))),
                       on_revoke=lambda cons, tps: events.append(("revoke", len(tps))))
    b = group_consumer(cbroker, topic, group)
    try:
        poll_all([a], lambda: len(a.assignment()) == 4)
        poll_all([a, b], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
        assert events == [("assign", 4), ("revoke", 4), ("assign", 2)]
    finally:
        a.close()
        b.close()


def test_cooperative_sticky_revokes_only_what_moves(cbroker, topic, group):
    create_topic(cbroker, topic, 4)
    events = []
    kw = {"partition_assignment_strategy": ["cooperative-sticky"]}
    a = group_consumer(cbroker, topic, group,
                       on_assign=lambda cons, tps: events.append(("assign", sorted(tps))),
                       on_revoke=lambda cons, tps: events.append(("revoke", sorted(tps))), **kw)
    b = group_consumer(cbroker, topic, group, **kw)
    try:
        poll_all([a], lambda: len(a.assignment()) == 4)
        owned_before = a.assignment()
        poll_all([a, b], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
        revokes = [tps for kind, tps in events if kind == "revoke"]
        assert len(revokes) == 1 and len(revokes[0]) == 2  # only the two that moved
        assert set(revokes[0]) | a.assignment() == owned_before
        assert not (a.assignment() & b.assignment())
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_pylog_and_confluent_consumers_share_a_group(cbroker, topic, group, strategy):
    create_topic(cbroker, topic, 4)
    produce(cbroker, topic, [(i % 4, None, b"x%d" % i, None, None) for i in range(40)])
    mine = group_consumer(cbroker, topic, group, partition_assignment_strategy=[strategy])
    theirs = confluent_kafka.Consumer({
        "bootstrap.servers": cbroker, "group.id": group, "auto.offset.reset": "earliest",
        "partition.assignment.strategy": strategy, "session.timeout.ms": 3000,
        "heartbeat.interval.ms": 200})
    theirs.subscribe([topic])
    got_theirs = []
    try:
        deadline = time.monotonic() + 25
        got_mine = []
        while True:
            got_mine.extend(mine.poll(0.05))
            for m in theirs.consume(num_messages=100, timeout=0.05):
                if not m.error():
                    got_theirs.append((m.partition(), m.offset()))
            theirs_now = {(tp.topic, tp.partition) for tp in theirs.assignment()}
            if (len(mine.assignment()) == 2 and len(theirs_now) == 2
                    and not (mine.assignment() & theirs_now)
                    and len(got_mine) + len(got_theirs) >= 40):
                break
            assert time.monotonic() < deadline, (mine.assignment(), theirs_now)
        mine_parts = {tp.partition for tp in mine.assignment()}
        assert {r.partition for r in got_mine} <= mine_parts
    finally:
        mine.close()
        theirs.close()


def test_pattern_subscription_and_iteration(cbroker, topic, group):
    for suffix in ("a", "b"):
        create_topic(cbroker, f"{topic}-{suffix}", 1)
        produce(cbroker, f"{topic}-{suffix}", [(0, None, suffix.encode(), None, None)])
    create_topic(cbroker, f"other-{topic}", 1)
    c = Consumer(bootstrap_servers=cbroker, group_id=group, auto_offset_reset="earliest", **FAST_GROUP)
    try:
        c.subscribe("^" + topic.replace(".", r"\.") + "-.*")
        got = []
        for record in c:
            got.append((record.topic, record.value))
            if len(got) == 2:
                break
        assert sorted(got) == [(f"{topic}-a", b"a"), (f"{topic}-b", b"b")]
        assert {tp.topic for tp in c.assignment()} == {f"{topic}-a", f"{topic}-b"}
        c.unsubscribe()
        assert c.assignment() == set()
    finally:
        c.close()
