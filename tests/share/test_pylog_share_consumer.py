"""pylog's own ShareConsumer against a real pylog broker over sockets:
implicit and explicit acknowledgement, RELEASE redelivery (delivery count 2),
REJECT never again, a group shared with confluent_kafka's ShareConsumer,
run(handler) with failing records, the errors of bad use, and the headers
Producer.send(deliver_at=, priority=) sets."""
from __future__ import annotations

import datetime
import threading
import time

import pytest
from confluent_kafka import Consumer as RdkConsumer
from confluent_kafka import ShareConsumer as RdkShareConsumer

from pylog import AcknowledgeType, Producer, ShareConsumer
from pylog.consumer.share_consumer import IllegalStateError
from pylog.testing import running_broker, wait_until

from .wire import CONFIG, create_topic, produce, set_group_configs, wait_all_assigned

TIMEOUT = 60.0
ACCEPT, RELEASE, REJECT = AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE, AcknowledgeType.REJECT


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def setup(b, topic, group, n, partitions=1):
    create_topic(b, topic, partitions)
    set_group_configs(b, group, share_auto_offset_reset="earliest")
    produce(b, topic, n, partitions)


def poll_until(c, cond, what, handle=None, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for r in c.poll(0.2):
            if handle is not None:
                handle(r)


def drain(c, seconds=2.0) -> list:
    """What c receives in the next few seconds (implicitly accepted)."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.extend(r.offset for r in c.poll(0.2))
    return out


def test_implicit_mode_delivers_each_record_once_and_accepts_at_the_next_poll(broker):
    topic, group = "psc-implicit", "psc-implicit-g"
    setup(broker, topic, group, 50)
    outcomes = []
    c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group,
                      acknowledgement_commit_callback=lambda offsets, err: outcomes.append((offsets, err)))
    got = []
    poll_until(c, lambda: len(got) >= 50, "50 records",
               lambda r: got.append((r.offset, bytes(r.value), r.delivery_count)))
    assert sorted(got) == [(i, b"v-%d" % i, 1) for i in range(50)]
    assert c.acquisition_lock_timeout_ms() == 15000
    assert c.assignment() == {(topic, 0)}
    c.commit_sync()   # the last poll's records: ACCEPTed
    accepted = set()
    for offsets, err in outcomes:
        assert err is None
        accepted |= offsets[(topic, 0)]
    assert accepted == set(range(50))
    c.close()
    # The group has accepted everything: a new member gets only new records.
    produce(broker, topic, 5, start=50)
    c2 = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    more = []
    poll_until(c2, lambda: len(more) >= 5, "the 5 new records", lambda r: more.append(r.offset))
    more += drain(c2)
    assert sorted(more) == list(range(50, 55))
    c2.close()


def test_one_member_reads_every_partition_of_a_topic(broker):
    topic, group = "psc-partitions", "psc-partitions-g"
    setup(broker, topic, group, 60, partitions=3)
    c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    got = []
    poll_until(c, lambda: len(got) >= 60, "60 records", lambda r: got.append((r.partition, bytes(r.value))))
    got += [(None, o) for o in drain(c, 1.0)]
    assert sorted(got) == sorted((i % 3, b"v-%d" % i) for i in range(60))
    assert c.assignment() == {(topic, 0), (topic, 1), (topic, 2)}
    assert set(c.commit_sync()) <= {(topic, 0), (topic, 1), (topic, 2)}
    c.close()


def test_transaction_markers_in_acquired_ranges_are_acknowledged_as_gaps(broker):
    from confluent_kafka import Producer as RdkProducer
    topic, group = "psc-gaps", "psc-gaps-g"
    create_topic(broker, topic, 1)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    p = RdkProducer({"bootstrap.servers": str(broker), "transactional.id": "psc-gaps-tx"})
    p.init_transactions(30)
    for t in range(2):   # offsets 0-4, marker 5, 6-10, marker 11
        p.begin_transaction()
        for i in range(5):
            p.produce(topic, b"t%d-%d" % (t, i))
        p.commit_transaction(30)
    outcomes = []
    c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group,
                      acknowledgement_commit_callback=lambda offsets, err: outcomes.append((offsets, err)))
    got = []
    poll_until(c, lambda: len(got) >= 10, "10 records", lambda r: got.append(r.offset))
    assert c.commit_sync() == {(topic, 0): None}
    assert [e for _, e in outcomes] == [None] * len(outcomes)
    assert set().union(*(o[(topic, 0)] for o, _ in outcomes)) == set(got)
    c.close()
    assert sorted(got) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    # Everything, markers included, is acknowledged: a new record is all that is left.
    produce(broker, topic, 1)
    c2 = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    more = []
    poll_until(c2, lambda: more, "the new record", lambda r: more.append(r.offset))
    assert more + drain(c2, 1.0) == [12]
    c2.close()


def test_explicit_release_comes_back_with_delivery_count_2_and_reject_never(broker):
    topic, group = "psc-explicit", "psc-explicit-g"
    setup(broker, topic, group, 6)
    c = ShareConsumer(config={"bootstrap.servers": str(broker), "group.id": group,
                              "share.acknowledgement.mode": "explicit"})
    c.subscribe([topic])
    deliveries = []

    def handle(r):
        deliveries.append((r.offset, r.delivery_count))
        if r.offset == 1 and r.delivery_count == 1:
            c.acknowledge(r, RELEASE)
        elif r.offset == 2:
            c.acknowledge(r, REJECT)
        else:
            c.acknowledge(r, ACCEPT)

    poll_until(c, lambda: (1, 2) in deliveries and len(deliveries) >= 7, "offset 1 delivered twice", handle)
    assert c.commit_sync() == {(topic, 0): None}
    deliveries += [(o, None) for o in drain(c)]
    assert sorted(deliveries) == [(0, 1), (1, 1), (1, 2), (2, 1), (3, 1), (4, 1), (5, 1)]
    c.close()
    # Nothing is left for the group: the rejected record never comes back.
    c2 = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    assert drain(c2, 3.0) == []
    c2.close()


def test_close_releases_what_the_member_holds_to_another_member_at_once(broker):
    topic, group = "psc-close", "psc-close-g"
    setup(broker, topic, group, 10)
    a = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group, share_acknowledgement_mode="explicit")
    got = []
    poll_until(a, lambda: len(got) >= 10, "10 records", got.append)
    for r in got[:4]:
        a.acknowledge(r, ACCEPT)    # processed: acknowledged by close()
    # The other 6 are held under 15 s locks; close's ShareAcknowledge (epoch
    # -1) hands them back, so b gets them long before the locks end.
    a.close()
    b = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    again = []
    poll_until(b, lambda: len(again) >= 6, "the 6 released records",
               lambda r: again.append((r.offset, r.delivery_count)), timeout=10)
    again += [(o, None) for o in drain(b, 1.0)]
    assert sorted(again) == [(o, 2) for o in range(4, 10)]
    b.close()


def test_commit_async_reports_to_the_callback_and_unsubscribe_releases_the_rest(broker):
    topic, group = "psc-async", "psc-async-g"
    setup(broker, topic, group, 10)
    outcomes = []
    c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group, share_acknowledgement_mode="explicit",
                      acknowledgement_commit_callback=lambda offsets, err: outcomes.append((offsets, err)))
    got = []
    poll_until(c, lambda: len(got) >= 10, "10 records", got.append)
    for r in got[:5]:
        c.acknowledge(r, ACCEPT)
    c.commit_async()
    assert outcomes == []            # not waited for: heard from a later call
    c.unsubscribe()                  # reads the answer, ends the session, leaves
    assert outcomes == [({(topic, 0): {0, 1, 2, 3, 4}}, None)]
    with pytest.raises(IllegalStateError, match="not subscribed"):
        c.poll(0)
    other = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    again = []
    poll_until(other, lambda: len(again) >= 5, "the 5 released records",
               lambda r: again.append((r.offset, r.delivery_count)), timeout=10)
    assert sorted(again) == [(o, 2) for o in range(5, 10)]
    other.close()
    c.close()


def test_pylog_and_confluent_share_consumers_share_one_partition(broker):
    topic, group = "psc-mixed", "psc-mixed-g"
    n = 400
    create_topic(broker, topic, 1)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    mine = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group, max_poll_records=20)
    theirs = RdkShareConsumer({"bootstrap.servers": str(broker), "group.id": group, "max.poll.records": 20})
    theirs.subscribe([topic])
    wait_until(lambda: mine.poll(0.1) == [] and mine.assignment(), "the pylog member assigned", timeout=30)

    wait_all_assigned(broker, group, 2, [theirs])
    # In batches of 10: a share-partition hands out whole log batches.
    for start in range(0, n, 10):
        produce(broker, topic, 10, start=start)
    by_mine, by_theirs = [], []
    deadline = time.monotonic() + TIMEOUT
    while len(by_mine) + len(by_theirs) < n:
        assert time.monotonic() < deadline, (len(by_mine), len(by_theirs))
        by_mine.extend(r.offset for r in mine.poll(0.2))
        for msg in theirs.poll(0.2):
            assert msg.error() is None, msg.error()
            by_theirs.append(msg.offset())
    mine.commit_sync()
    theirs.commit_sync()
    mine.close()
    theirs.close()
    assert sorted(by_mine + by_theirs) == list(range(n))     # each record once
    assert by_mine and by_theirs, (len(by_mine), len(by_theirs))


def test_run_accepts_releases_and_rejects_at_the_delivery_limit(broker):
    topic, group = "psc-run", "psc-run-g"
    setup(broker, topic, group, 10)
    c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    seen = []
    fired = []
    watchdog = threading.Timer(TIMEOUT, lambda: (fired.append(True), c.stop()))   # a failing test ends
    watchdog.start()

    def handler(r):
        seen.append((r.offset, r.delivery_count))
        if len(seen) >= 12:     # 8 good + offsets 3 and 7 twice each, then stop
            c.stop()
        if r.offset in (3, 7):
            raise ValueError(f"cannot handle {r.offset}")

    try:
        c.run(handler, max_delivery_count=2)
    finally:
        watchdog.cancel()
    assert not fired and len(seen) == 12   # stopped by the handler, not the watchdog
    assert sorted(seen) == sorted([(o, 1) for o in range(10)] + [(3, 2), (7, 2)])
    # Accepted and (at the 2nd delivery) rejected: nothing is left, while a
    # new record still comes.
    produce(broker, topic, 1, start=10)
    c2 = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    more = []
    poll_until(c2, lambda: more, "the new record", lambda r: more.append(r.offset))
    assert more + drain(c2, 1.0) == [10]
    c2.close()
    c.close()


def test_stopping_run_from_another_thread_releases_what_was_not_handled(broker):
    topic, group = "psc-stop", "psc-stop-g"
    create_topic(broker, topic, 1)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    produce(broker, topic, 20)   # one batch: one poll holds all 20
    c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    handled = []
    started = threading.Event()

    def handler(r):
        handled.append(r.offset)
        started.set()
        time.sleep(0.05)

    t = threading.Thread(target=c.run, args=(handler,))
    t.start()
    assert started.wait(TIMEOUT)
    c.stop()
    t.join(TIMEOUT)
    assert not t.is_alive()
    c.close()
    assert handled and len(handled) < 20
    c2 = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    rest = []
    poll_until(c2, lambda: len(rest) >= 20 - len(handled), "the records run() did not handle",
               lambda r: rest.append(r.offset), timeout=10)
    assert sorted(handled + rest + drain(c2, 1.0)) == list(range(20))
    c2.close()


def test_bad_use_is_refused_clearly(broker):
    b = str(broker)
    with pytest.raises(ValueError, match="auto.offset.reset cannot be set when using a share group"):
        ShareConsumer(config={"bootstrap.servers": b, "group.id": "x", "auto.offset.reset": "earliest"})
    with pytest.raises(ValueError, match="enable.auto.commit cannot be set when using a share group"):
        ShareConsumer(bootstrap_servers=b, group_id="x", enable_auto_commit=False)
    with pytest.raises(ValueError, match="unknown share consumer config.*share.delivery.limit"):
        ShareConsumer(config={"bootstrap.servers": b, "group.id": "x", "share.delivery.limit": "5"})
    with pytest.raises(ValueError, match="share.acknowledgement.mode must be implicit or explicit"):
        ShareConsumer(bootstrap_servers=b, group_id="x", share_acknowledgement_mode="sometimes")
    with pytest.raises(ValueError, match="record_limit is not supported"):
        ShareConsumer(bootstrap_servers=b, group_id="x", share_acquire_mode="record_limit")
    with pytest.raises(ValueError, match="needs a group_id"):
        ShareConsumer(bootstrap_servers=b)
    with pytest.raises(ValueError, match="exactly one of bootstrap_servers and log_dir"):
        ShareConsumer(group_id="x")
    with pytest.raises(ValueError, match="no connection to secure"):
        ShareConsumer(log_dir="unused", group_id="x", config={"security.protocol": "SASL_PLAINTEXT",
                                                               "sasl.mechanism": "PLAIN", "sasl.username": "u",
                                                               "sasl.password": "p"})

    topic, group = "psc-bad", "psc-bad-g"
    setup(broker, topic, group, 3)
    c = ShareConsumer(bootstrap_servers=b, group_id=group, share_acknowledgement_mode="explicit")
    with pytest.raises(IllegalStateError, match="not subscribed"):
        c.poll(0)
    c.subscribe(topic)
    got = []
    poll_until(c, lambda: len(got) >= 3, "3 records", got.append)
    with pytest.raises(IllegalStateError, match="All records must be acknowledged"):
        c.poll(0)
    with pytest.raises(ValueError, match="acknowledge type"):
        c.acknowledge(got[0], 7)
    c.acknowledge(got[0], ACCEPT)
    with pytest.raises(IllegalStateError, match="acknowledged already"):
        c.acknowledge(got[0], REJECT)
    c.acknowledge(got[1])
    c.acknowledge(got[2], RELEASE)
    c.commit_sync()
    with pytest.raises(IllegalStateError, match="acknowledged already"):
        c.acknowledge(got[1], ACCEPT)      # after its commit too
    again = []
    poll_until(c, lambda: again, "the released record", again.append)
    with pytest.raises(IllegalStateError, match="not delivered by the last poll"):
        c.acknowledge(got[0])
    assert [(r.offset, r.delivery_count) for r in again] == [(2, 2)]
    c.acknowledge(again[0])
    c.close()
    with pytest.raises(IllegalStateError, match="closed"):
        c.poll(0)

    implicit = ShareConsumer(topic, bootstrap_servers=b, group_id=group)
    with pytest.raises(IllegalStateError, match="Implicit acknowledgement"):
        implicit.acknowledge(got[0])
    implicit.close()


def test_a_group_id_of_a_consumer_group_is_a_clear_error_from_poll(broker):
    topic = "psc-wrong-type"
    create_topic(broker, topic, 1)
    produce(broker, topic, 1)
    rc = RdkConsumer({"bootstrap.servers": str(broker), "group.id": "psc-classic-g", "auto.offset.reset": "earliest"})
    rc.subscribe([topic])
    deadline = time.monotonic() + TIMEOUT
    while rc.poll(0.5) is None:
        assert time.monotonic() < deadline
    rc.commit(asynchronous=False)
    try:
        c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id="psc-classic-g")
        with pytest.raises(Exception, match="share group 'psc-classic-g'"):
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                c.poll(0.2)
        c.close()
    finally:
        rc.close()


def test_producer_send_sets_the_delivery_headers(broker):
    topic = "psc-headers"
    create_topic(broker, topic, 1)
    at = datetime.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.timezone.utc)
    p = Producer(str(broker))
    try:
        p.send(topic, b"a", deliver_at=1_900_000_000_123).get(30)
        p.send(topic, b"b", priority=9, headers=[("h", b"x")]).get(30)
        p.send(topic, b"c", deliver_at=at, priority=0).get(30)
        p.send(topic, b"d").get(30)
        for bad in (10, -1, True, "5", 2.0):
            with pytest.raises(ValueError, match="priority must be an int from 0 to 9"):
                p.send(topic, b"x", priority=bad)
        for bad in (-5, "soon", 1.5, datetime.datetime(2030, 1, 1)):
            with pytest.raises(ValueError, match="deliver_at"):
                p.send(topic, b"x", deliver_at=bad)
        with pytest.raises(ValueError, match="pylog.priority is given twice"):
            p.send(topic, b"x", priority=1, headers=[("pylog.priority", b"2")])
        assert p.flush(30) == 0
    finally:
        p.close()
    rc = RdkConsumer({"bootstrap.servers": str(broker), "group.id": "psc-headers-g", "auto.offset.reset": "earliest"})
    rc.subscribe([topic])
    got = {}
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 4:
        assert time.monotonic() < deadline
        msg = rc.poll(0.5)
        if msg is not None and msg.error() is None:
            got[msg.value()] = msg.headers()
    rc.close()
    assert got == {b"a": [("pylog.deliver.at", b"1900000000123")],
                   b"b": [("h", b"x"), ("pylog.priority", b"9")],
                   b"c": [("pylog.deliver.at", str(int(at.timestamp() * 1000)).encode()), ("pylog.priority", b"0")],
                   b"d": None}
