"""pylog Consumer's auto commit over the wire, with both group protocols,
as Java's consumer does it: poll() sends the commit and does not wait for
its answer; the commit before a revocation and the one at close() are
synchronous. The broker advertises an AnswerHoldingProxy, so a test can
hold the coordinator's OffsetCommit answers while the consumer polls."""
from __future__ import annotations

import itertools
import time

import pytest

from pylog.consumer import Consumer
from pylog.structs import TopicPartition
from pylog.testing import running_broker, wait_until

from .conftest import CLIENT_CONFIG, FAST_GROUP, create_topic, produce
from .faultproxy import AnswerHoldingProxy

OFFSET_COMMIT = 8
PROTOCOLS = ["classic", "consumer"]
_names = itertools.count()


@pytest.fixture(scope="module")
def held():
    """(bootstrap, proxy): a broker whose advertised address is the proxy,
    so every connection after the bootstrap goes through it."""
    port = AnswerHoldingProxy.reserve_port()
    config = {**CLIENT_CONFIG, "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
              "group.consumer.heartbeat.interval.ms": "500", "group.consumer.min.heartbeat.interval.ms": "500"}
    with running_broker(config=config) as b:
        proxy = AnswerHoldingProxy(b.broker.port, listen_port=port).start()
        try:
            yield f"127.0.0.1:{b.broker.port}", proxy
        finally:
            proxy.stop()


def topic_with_records(bootstrap, protocol, partitions, n):
    """(topic, group) named for this test: n records spread round-robin over the partitions."""
    i = next(_names)
    topic, group = f"ac-{protocol}-{i}", f"ac-{protocol}-{i}-g"
    create_topic(bootstrap, topic, partitions)
    produce(bootstrap, topic, [(k % partitions, None, b"r%d" % k, None, None) for k in range(n)])
    return topic, group


def member(bootstrap, topic, group, protocol, **kw):
    args = {"bootstrap_servers": bootstrap, "group_id": group, "group_protocol": protocol,
            "auto_offset_reset": "earliest"}
    if protocol == "classic":
        args.update(FAST_GROUP)
    args.update(kw)
    return Consumer(topic, **args)


def committed(bootstrap, group, tps):
    """The group's committed offsets as another client reads them (OffsetFetch)."""
    with Consumer(bootstrap_servers=bootstrap, group_id=group) as other:
        found = other.committed(list(tps))
    return {tp: (om.offset if om is not None else None) for tp, om in found.items()}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_poll_returns_records_while_the_auto_commit_answer_is_held(held, protocol):
    bootstrap, proxy = held
    topic, group = topic_with_records(bootstrap, protocol, 1, 300)
    tp = TopicPartition(topic, 0)
    c = member(bootstrap, topic, group, protocol, auto_commit_interval_ms=20, max_poll_records=5)
    got = []
    try:
        wait_until(lambda: got.extend(c.poll(0.1)) or len(got) >= 3, "the first records")
        proxy.hold_answers(OFFSET_COMMIT)

        def polled_while_held():
            # A poll that starts and ends with an OffsetCommit answer held and
            # its connection open, and returns records: it did not wait for
            # the answer. A poll that waits for it returns only once the
            # request timed out and the connection was closed.
            before = proxy.held
            records = c.poll(0.1)
            got.extend(records)
            return before and records and proxy.held
        wait_until(polled_while_held, "a poll returning records while an auto commit is unanswered", timeout=60)
        # More commits fall due while that one is unanswered: Java's classic
        # coordinator sends them; its consumer-protocol CommitRequestManager
        # waits for the answer.
        sent = proxy.requests[OFFSET_COMMIT]
        for _ in range(3):
            time.sleep(0.05)   # past the 20 ms interval
            got.extend(c.poll(0.1))
        assert proxy.held
        if protocol == "classic":
            assert proxy.requests[OFFSET_COMMIT] > sent
        else:
            assert proxy.requests[OFFSET_COMMIT] == sent
        proxy.hold_answers(None)
        # The commits reach the broker: what every poll returned, once all is read.
        wait_until(lambda: got.extend(c.poll(0.1)) or len(got) >= 300, "every record")
        wait_until(lambda: c.poll(0.05) == [] and committed(bootstrap, group, [tp]) == {tp: 300},
                   "the auto commit of offset 300")
        assert [r.offset for r in got] == list(range(300))
    finally:
        proxy.hold_answers(None)
        c.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_revocation_commits_first_so_the_new_owner_reads_nothing_again(held, protocol):
    bootstrap, _proxy = held
    topic, group = topic_with_records(bootstrap, protocol, 4, 200)
    # No auto commit on the interval before the rebalance: what is committed
    # when the partitions move is the commit before revocation.
    first = member(bootstrap, topic, group, protocol, auto_commit_interval_ms=600_000)
    second = None
    seen = {}
    try:
        wait_until(lambda: seen.setdefault("first", []).extend(first.poll(0.1)) or len(seen["first"]) >= 200,
                   "the first member reading everything")
        second = member(bootstrap, topic, group, protocol, auto_commit_interval_ms=600_000)

        def shared():
            seen["first"].extend(first.poll(0.05))
            seen.setdefault("second", []).extend(second.poll(0.05))
            mine, theirs = first.assignment(), second.assignment()
            return len(mine) == 2 and len(theirs) == 2 and not mine & theirs
        wait_until(shared, "the partitions shared between the two members")
        for _ in range(5):   # the new owner's fetches have run
            seen["second"].extend(second.poll(0.1))
        assert seen["second"] == []
        assert sorted((r.partition, r.offset) for r in seen["first"]) == sorted(
            (p, o) for p in range(4) for o in range(50))
        moved = second.assignment()
        assert committed(bootstrap, group, moved) == {tp: 50 for tp in moved}
    finally:
        first.close()
        if second is not None:
            second.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_close_commits_every_position(held, protocol):
    bootstrap, _proxy = held
    topic, group = topic_with_records(bootstrap, protocol, 2, 100)
    # Commits on the interval too, so some may be in flight at close.
    c = member(bootstrap, topic, group, protocol, auto_commit_interval_ms=10, max_poll_records=7)
    got = []
    try:
        wait_until(lambda: got.extend(c.poll(0.1)) or len(got) >= 100, "every record")
    finally:
        c.close()
    tps = [TopicPartition(topic, p) for p in range(2)]
    assert committed(bootstrap, group, tps) == {tp: 50 for tp in tps}
