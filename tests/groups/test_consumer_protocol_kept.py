"""pylog's Consumer (group_protocol="consumer") reads on the partitions that
stay while its group reconciles a join, as Kafka's consumer does: only the
partitions taken away are revoked; the kept ones are not revoked, assigned
again, paused or rewound, and the very poll that runs the revoke callback
returns their records. (librdkafka pauses every assigned
partition while a rebalance callback is pending; bench O measures both
under load.)"""
from __future__ import annotations

import pytest

from pylog import Consumer as PylogConsumer
from pylog.testing import running_broker, wait_until

from .helpers import create_topic, produce
from .kip848 import CONFIG


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def test_partitions_that_stay_are_read_on_through_a_join(broker):
    topic, group = "p-kept", "p-kept-g"
    create_topic(broker, topic, 4)
    produce(broker, topic, 400, 4)
    calls = []
    read = {p: [] for p in range(4)}

    def callback(kind):
        return lambda _c, parts: calls.append((kind, sorted(tp.partition for tp in parts)))

    # One record a poll: what each fetch brought stays in the consumer's buffers.
    a = PylogConsumer(topic, bootstrap_servers=str(broker), group_id=group, group_protocol="consumer",
                      auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=1,
                      on_assign=callback("assign"), on_revoke=callback("revoke"))
    b = None
    revoke_polls = []

    def poll_a():
        seen = len(calls)
        records = a.poll(0.05)
        for r in records:
            read[r.partition].append(r.offset)
        if any(kind == "revoke" for kind, _ in calls[seen:]):
            revoke_polls.append(records)

    try:
        wait_until(lambda: (poll_a(), all(read.values()))[1], "a reading all four partitions")
        assert calls == [("assign", [0, 1, 2, 3])]
        b = PylogConsumer(topic, bootstrap_servers=str(broker), group_id=group, group_protocol="consumer",
                          auto_offset_reset="earliest", enable_auto_commit=False)

        def moved():
            poll_a()
            b.poll(0.05)
            return len(a.assignment()) == 2 and len(b.assignment()) == 2
        wait_until(moved, "b owning two of a's partitions")
        given = {p for kind, parts in calls if kind == "revoke" for p in parts}
        kept = set(range(4)) - given
        assert {tp.partition for tp in b.assignment()} == given
        assert {tp.partition for tp in a.assignment()} == kept
        # Kept partitions: never revoked, never assigned again...
        assert [c for c in calls if c[0] == "assign"] == [("assign", [0, 1, 2, 3])]
        # ...never paused: the poll that ran the revoke callback returned one of
        # their records...
        assert revoke_polls[0] and revoke_polls[0][0].partition in kept
        assert not a.paused()
        # ...and never rewound (nothing was committed: a reset would start at 0 again).
        for _ in range(20):
            poll_a()
        for p in kept:
            assert read[p] == list(range(len(read[p]))), p
            assert len(read[p]) > 1
    finally:
        a.close()
        if b is not None:
            b.close()
