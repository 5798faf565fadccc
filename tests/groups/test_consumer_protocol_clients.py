"""librdkafka consumers with group.protocol=consumer (KIP-848) against a real
pylog broker: server-side assignment, members joining, leaving and dying,
static members, regex subscriptions, commits with member epochs, and the
admin client's view of the group."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType, TopicPartition

from pylog.testing import running_broker, wait_until

from .helpers import admin, create_topic, produce
from .kip848 import CONFIG, assigned, consumer, poll_all, wait_balanced


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def close_all(consumers):
    for c in consumers:
        c.close()


@pytest.mark.parametrize("members", [1, 2, 3, 7])
def test_six_partitions_are_dealt_once_and_evenly(broker, members):
    topic, group = f"c-deal-{members}", f"c-deal-{members}-g"
    create_topic(broker, topic, 6)
    cs = [consumer(broker, group) for _ in range(members)]
    try:
        for c in cs:
            c.subscribe([topic])
        sets = wait_balanced(cs, topic, 6)
        assert sorted(len(s) for s in sets) == sorted([6 // members + (1 if i < 6 % members else 0)
                                                       for i in range(members)])
    finally:
        close_all(cs)


def test_a_member_joins_and_one_leaves(broker):
    topic, group = "c-churn", "c-churn-g"
    create_topic(broker, topic, 6)
    a, b = consumer(broker, group), consumer(broker, group)
    a.subscribe([topic])
    b.subscribe([topic])
    c = None
    try:
        wait_balanced([a, b], topic, 6)
        c = consumer(broker, group)
        c.subscribe([topic])
        wait_balanced([a, b, c], topic, 6)
        a.close()
        a = None
        wait_balanced([b, c], topic, 6)
    finally:
        close_all([x for x in (a, b, c) if x is not None])


_CHILD = textwrap.dedent("""
    import sys
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "group.protocol": "consumer",
                  "auto.offset.reset": "earliest"})
    c.subscribe([sys.argv[3]])
    while True:
        c.poll(0.2)
        if c.assignment():
            print("assigned", flush=True)
""")


def test_a_killed_member_is_expelled_after_its_session(broker):
    topic, group = "c-kill", "c-kill-g"
    create_topic(broker, topic, 6)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(broker), group, topic], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    survivor = consumer(broker, group)
    try:
        assert child.stdout.readline().strip() == "assigned"
        survivor.subscribe([topic])
        # The two share the partitions; then the child dies without leaving.
        wait_until(lambda: poll_all([survivor]) or 0 < len(assigned(survivor, topic)) < 6, "the partitions shared")
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        t0 = time.monotonic()
        wait_until(lambda: poll_all([survivor]) or len(assigned(survivor, topic)) == 6,
                   "the survivor owning every partition", timeout=90)
        # Not before the dead member's session (6 s) ran out.
        assert time.monotonic() - t0 >= 3
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        survivor.close()


def test_a_static_member_restarts_without_moving_partitions(broker):
    topic, group = "c-static", "c-static-g"
    create_topic(broker, topic, 6)
    a = consumer(broker, group, {"group.instance.id": "inst-a"})
    b = consumer(broker, group, {"group.instance.id": "inst-b"})
    a.subscribe([topic])
    b.subscribe([topic])
    try:
        sa, sb = wait_balanced([a, b], topic, 6)
        a.close()            # a static member leaves with epoch -2: its partitions wait for it
        a = consumer(broker, group, {"group.instance.id": "inst-a"})
        a.subscribe([topic])

        def back():
            poll_all([a, b])
            assert {p for _t, p in assigned(b, topic)} == sb    # b never gains or loses one
            return {p for _t, p in assigned(a, topic)} == sa
        wait_until(back, "the static member back with its partitions")
        for _ in range(10):     # and it stays so
            back()
        adm = admin(broker)    # must outlive its futures
        desc = adm.describe_consumer_groups([group])[group].result(30)
        assert sorted(mm.group_instance_id for mm in desc.members) == ["inst-a", "inst-b"]
    finally:
        close_all([a, b])


def test_a_regex_subscription_picks_up_a_topic_created_later(broker):
    group = "c-regex-g"
    create_topic(broker, "c-rx-one", 2)
    create_topic(broker, "c-other", 2)
    c = consumer(broker, group)
    c.subscribe(["^c-rx-.*"])
    try:
        wait_until(lambda: poll_all([c]) or assigned(c) == {("c-rx-one", 0), ("c-rx-one", 1)},
                   "the regex's first topic assigned")
        create_topic(broker, "c-rx-two", 3)
        wait_until(lambda: poll_all([c]) or assigned(c) == {("c-rx-one", 0), ("c-rx-one", 1), ("c-rx-two", 0),
                                                           ("c-rx-two", 1), ("c-rx-two", 2)},
                   "the topic created later assigned too")
    finally:
        c.close()


def test_commits_with_member_epochs_and_resume(broker):
    topic, group = "c-commit", "c-commit-g"
    create_topic(broker, topic, 1)
    produce(broker, topic, 30, 1)
    c = consumer(broker, group)
    c.subscribe([topic])
    got = []
    try:
        def take():
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                got.append(msg.offset())
            return len(got) >= 10
        wait_until(take, "ten messages")
        c.commit(offsets=[TopicPartition(topic, 0, got[9] + 1)], asynchronous=False)
        assert c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset == got[9] + 1
    finally:
        c.close()
    c = consumer(broker, group)
    c.subscribe([topic])
    try:
        first = wait_until(lambda: (lambda msg: msg if msg is not None and not msg.error() else None)(c.poll(0.2)),
                           "a message after the restart")
        assert first.offset() == 10
    finally:
        c.close()


def test_admin_describes_the_consumer_group(broker):
    topic, group = "c-describe", "c-describe-g"
    create_topic(broker, topic, 4)
    cs = [consumer(broker, group, {"client.id": f"cli-{i}"}) for i in range(2)]
    for c in cs:
        c.subscribe([topic])
    try:
        wait_balanced(cs, topic, 4)

        adm = admin(broker)    # must outlive its futures

        def stable():
            d = adm.describe_consumer_groups([group])[group].result(30)
            return d if d.state == ConsumerGroupState.STABLE else None
        d = wait_until(stable, "a stable description")
        assert d.type == ConsumerGroupType.CONSUMER
        assert sorted(mm.client_id for mm in d.members) == ["cli-0", "cli-1"]
        owned = sorted((tp.topic, tp.partition) for mm in d.members for tp in mm.assignment.topic_partitions)
        assert owned == [(topic, p) for p in range(4)]
        listed = adm.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(30)
        assert group in {g.group_id for g in listed.valid}
    finally:
        close_all(cs)


def test_transactional_offsets_of_a_consumer_group_member(broker):
    from confluent_kafka import Producer
    topic, group = "c-eos", "c-eos-g"
    create_topic(broker, topic, 1)
    produce(broker, topic, 10, 1)
    c = consumer(broker, group)
    c.subscribe([topic])
    p = Producer({"bootstrap.servers": str(broker), "transactional.id": "c-eos-tx"})
    try:
        p.init_transactions(30)
        got = []

        def five():
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                got.append(msg)
            return len(got) >= 5
        wait_until(five, "five records")
        p.begin_transaction()
        # The group metadata carries the member id and epoch; the coordinator checks them.
        p.send_offsets_to_transaction([TopicPartition(topic, 0, got[-1].offset() + 1)],
                                      c.consumer_group_metadata(), 30)
        p.commit_transaction(30)
        assert c.committed([TopicPartition(topic, 0)], timeout=30)[0].offset == got[-1].offset() + 1
    finally:
        c.close()
