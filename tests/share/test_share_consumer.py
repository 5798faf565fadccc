"""An unmodified confluent_kafka.ShareConsumer (librdkafka's KIP-932 client)
against a real pylog broker: joining a share group, implicit and explicit
acknowledgement (ACCEPT, RELEASE, REJECT), two consumers sharing one
partition, and a broker restart resuming where the group was."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import AcknowledgeType, ShareConsumer

from pylog.testing import running_broker

from .wire import CONFIG, create_topic, produce, set_group_configs, wait_all_assigned

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def share_consumer(b, group, **conf):
    c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group, **{k.replace("_", "."): v
                                                                          for k, v in conf.items()}})
    return c


def poll_until(consumers, cond, what, handle=None, timeout=TIMEOUT):
    """Poll every consumer in turn until cond() holds; handle(consumer, msg) sees each record."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for c in consumers:
            for msg in c.poll(0.2):
                assert msg.error() is None, msg.error()
                if handle is not None:
                    handle(c, msg)


def setup(b, topic, group, n, partitions=1):
    create_topic(b, topic, partitions)
    set_group_configs(b, group, share_auto_offset_reset="earliest")
    produce(b, topic, n, partitions)


def test_implicit_mode_receives_every_record_once_and_accepts_them(broker):
    topic, group = "sc-implicit", "sc-implicit-g"
    setup(broker, topic, group, 50)
    c = share_consumer(broker, group)
    c.subscribe([topic])
    got = []
    poll_until([c], lambda: len(got) >= 50, "50 records", lambda _c, m: got.append((m.offset(), m.value())))
    assert sorted(got) == [(i, b"v-%d" % i) for i in range(50)]
    # librdkafka 2.16 sends the last poll's implicit ACCEPTs on the next poll
    # or commit; its close() sends none.
    c.commit_sync()
    c.close()
    # The group has accepted everything: a new member of it gets only new records.
    produce(broker, topic, 5, start=50)
    c2 = share_consumer(broker, group)
    c2.subscribe([topic])
    more = []
    poll_until([c2], lambda: len(more) >= 5, "the 5 new records", lambda _c, m: more.append(m.offset()))
    end = time.monotonic() + 2
    while time.monotonic() < end:
        more.extend(m.offset() for m in c2.poll(0.2))
    assert sorted(more) == list(range(50, 55))
    c2.close()


def test_explicit_release_redelivers_and_reject_does_not(broker):
    topic, group = "sc-explicit", "sc-explicit-g"
    setup(broker, topic, group, 6)
    c = share_consumer(broker, group, share_acknowledgement_mode="explicit")
    c.subscribe([topic])
    deliveries = []

    def handle(consumer, m):
        deliveries.append((m.offset(), m.delivery_count()))
        first = m.delivery_count() == 1
        if m.offset() % 3 == 0:
            kind = AcknowledgeType.ACCEPT
        elif m.offset() % 3 == 1:
            kind = AcknowledgeType.RELEASE if first else AcknowledgeType.ACCEPT
        else:
            kind = AcknowledgeType.REJECT
        consumer.acknowledge(m, kind)

    poll_until([c], lambda: sum(1 for _, n in deliveries if n == 2) >= 2, "the released records again", handle)
    c.commit_sync()
    end = time.monotonic() + 2
    while time.monotonic() < end:
        for m in c.poll(0.2):
            handle(c, m)
    c.commit_sync()
    # Offsets 1 and 4 were released once and came back with delivery count 2;
    # the rejected 2 and 5 and the accepted 0 and 3 were delivered once.
    assert sorted(deliveries) == [(0, 1), (1, 1), (1, 2), (2, 1), (3, 1), (4, 1), (4, 2), (5, 1)]
    c.close()


def test_two_consumers_share_one_partition_and_no_record_is_accepted_twice(broker):
    topic, group = "sc-two", "sc-two-g"
    n = 400
    create_topic(broker, topic, 1)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    a = share_consumer(broker, group, max_poll_records=20)
    b = share_consumer(broker, group, max_poll_records=20)
    a.subscribe([topic])
    b.subscribe([topic])
    wait_all_assigned(broker, group, 2, (a, b))
    # In batches of 10: a share-partition hands out whole log batches (Kafka's
    # batch-optimized acquisition), so one big batch would go to one member.
    for start in range(0, n, 10):
        produce(broker, topic, 10, start=start)
    by = {a: [], b: []}
    poll_until([a, b], lambda: len(by[a]) + len(by[b]) >= n, f"{n} records",
               lambda c, m: by[c].append(m.offset()))
    a.close()
    b.close()
    every = by[a] + by[b]
    assert sorted(every) == list(range(n))          # each offset once: nothing handed out twice
    assert by[a] and by[b], (len(by[a]), len(by[b]))   # more consumers than partitions, both consume


def test_a_broker_restart_resumes_where_the_group_was(tmp_path):
    topic, group = "sc-restart", "sc-restart-g"
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        setup(b, topic, group, 30)
        c = share_consumer(b, group, share_acknowledgement_mode="explicit", max_poll_records=10)
        c.subscribe([topic])
        accepted = []

        def accept_first_20(consumer, m):
            if len(accepted) < 20:
                consumer.acknowledge(m, AcknowledgeType.ACCEPT)
                accepted.append(m.offset())
            else:
                consumer.acknowledge(m, AcknowledgeType.RELEASE)

        poll_until([c], lambda: len(accepted) >= 20, "20 accepted records", accept_first_20)
        c.commit_sync()
        c.close()
        b.restart()
        c = share_consumer(b, group)
        c.subscribe([topic])
        after = []
        poll_until([c], lambda: len(after) >= 10, "the 10 records not accepted", lambda _c, m: after.append(m.offset()))
        end = time.monotonic() + 2
        while time.monotonic() < end:
            after.extend(m.offset() for m in c.poll(0.2))
        c.close()
    assert sorted(accepted) == list(range(20))
    assert sorted(after) == list(range(20, 30))     # nothing accepted comes back, nothing else is lost


def test_records_held_by_a_killed_consumer_come_back_when_its_connection_drops(broker):
    """Kafka releases a share session's records when its connection closes,
    not only when their locks (60 s here) run out."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    topic, group = "sc-killed", "sc-killed-g"
    setup(broker, topic, group, 10)
    set_group_configs(broker, group, share_record_lock_duration_ms=60000)
    code = textwrap.dedent(f"""
        import sys
        from confluent_kafka import ShareConsumer
        c = ShareConsumer({{"bootstrap.servers": "{broker}", "group.id": "{group}"}})
        c.subscribe(["{topic}"])
        while True:
            got = [m for m in c.poll(0.5) if m.error() is None]
            if got:
                print(len(got), flush=True)
                sys.stdin.read()          # holds them, never acknowledging, until killed
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as child:
        try:
            assert int(child.stdout.readline()) == 10
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
    c = share_consumer(broker, group)
    c.subscribe([topic])
    got = {}

    def keep(_c, m):
        got[m.offset()] = m.delivery_count()

    # Well within the 60 s lock: the disconnect released them.
    poll_until([c], lambda: len(got) >= 10, "the killed consumer's records again", keep, timeout=30)
    c.commit_sync()
    c.close()
    assert got == {i: 2 for i in range(10)}


def test_a_consumer_carries_on_across_a_broker_restart(tmp_path):
    """The running consumer goes on with the records produced meanwhile (its
    membership is replayed from __consumer_offsets: test_share_members.py)."""
    topic, group = "sc-carry", "sc-carry-g"
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        setup(b, topic, group, 10)
        c = share_consumer(b, group)
        c.subscribe([topic])
        got = []
        poll_until([c], lambda: len(got) >= 10, "the first 10", lambda _c, m: got.append(m.offset()))
        c.commit_sync()
        b.restart()
        produce(b, topic, 10, start=10)
        poll_until([c], lambda: len(got) >= 20, "the 10 produced after the restart",
                   lambda _c, m: got.append(m.offset()))
        c.commit_sync()
        c.close()
    assert sorted(got) == list(range(20))
