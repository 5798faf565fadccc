"""share.isolation.level=read_committed (KIP-932 group config): a real
transactional confluent_kafka Producer and an unmodified
confluent_kafka.ShareConsumer against a real pylog broker. Committed records
are delivered, aborted ones never (archived at acquisition, as Kafka does),
an open transaction holds back everything from its first offset until it
ends, and an alter of the group config applies from the next fetch."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer, ShareConsumer

from pylog.testing import running_broker

from .wire import (CONFIG, acquired, connect, create_topic, join_assigned, member_id, set_group_configs,
                   share_fetch)

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def txn_producer(b, tid):
    p = Producer({"bootstrap.servers": str(b), "transactional.id": tid, "linger.ms": 5})
    p.init_transactions(30)
    return p


def transaction(p, topic, values, commit=True):
    p.begin_transaction()
    for v in values:
        p.produce(topic, v)
    assert p.flush(30) == 0     # an abort purges what is not sent yet: these must be in the log
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)


def plain(b, topic, values):
    p = Producer({"bootstrap.servers": str(b), "acks": "all"})
    for v in values:
        p.produce(topic, v)
    assert p.flush(30) == 0


def consumer(b, group, topic):
    c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group})
    c.subscribe([topic])
    return c


def values(n, prefix):
    return [b"%s-%d" % (prefix.encode(), i) for i in range(n)]


def poll_for(c, want, got, timeout=TIMEOUT):
    """Poll until every value of want is in got (a list the records' values go to)."""
    deadline = time.monotonic() + timeout
    while not set(want) <= set(got):
        assert time.monotonic() < deadline, f"timed out: missing {sorted(set(want) - set(got))[:5]}"
        for msg in c.poll(0.2):
            assert msg.error() is None, msg.error()
            got.append(msg.value())


def poll_quiet(c, got, seconds):
    """Poll for a while, collecting whatever comes."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for msg in c.poll(0.2):
            assert msg.error() is None, msg.error()
            got.append(msg.value())


def setup(b, topic, group, level):
    create_topic(b, topic)
    set_group_configs(b, group, share_auto_offset_reset="earliest", share_isolation_level=level)


def test_committed_delivered_aborted_never(broker):
    topic, group = "rc-basic", "rc-basic-g"
    setup(broker, topic, group, "read_committed")
    p = txn_producer(broker, "rc-basic-tx")
    transaction(p, topic, values(5, "c1"))
    transaction(p, topic, values(5, "a1"), commit=False)
    plain(broker, topic, values(3, "n"))
    transaction(p, topic, values(5, "a2"), commit=False)
    transaction(p, topic, values(5, "c2"))
    c = consumer(broker, group, topic)
    got = []
    want = values(5, "c1") + values(3, "n") + values(5, "c2")
    poll_for(c, want, got)
    # Past the last committed record: an aborted one would have come with it
    # or before it; poll on a little in case one is handed out later.
    poll_quiet(c, got, 3)
    assert sorted(got) == sorted(want)
    c.commit_sync()
    c.close()
    # Aborted records are archived, not left available: the group's start
    # offset is past everything once the rest is accepted.
    conn = connect(broker)
    try:
        deadline = time.monotonic() + TIMEOUT
        while (start := _start_offset(conn, group, topic)) != 27:     # 5 batches, 4 markers
            assert time.monotonic() < deadline, f"the share start offset is {start}, not at the log end 27"
            time.sleep(0.1)
    finally:
        conn.close()


def _start_offset(conn, group, topic):
    from pylog.protocol import messages as m
    R = m.DescribeShareGroupOffsetsRequest
    r = conn.request(R(groups=[R.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=[
        R.DescribeShareGroupOffsetsRequestTopic(topic_name=topic, partitions=[0])])]), api_version=0)
    return r.groups[0].topics[0].partitions[0].start_offset


def test_open_transaction_held_until_commit(broker):
    topic, group = "rc-open", "rc-open-g"
    setup(broker, topic, group, "read_committed")
    p = txn_producer(broker, "rc-open-tx")
    plain(broker, topic, values(2, "before"))
    p.begin_transaction()
    for v in values(4, "open"):
        p.produce(topic, v)
    assert p.flush(30) == 0
    plain(broker, topic, values(2, "after"))     # past the open transaction's first offset: held too
    c = consumer(broker, group, topic)
    got = []
    poll_for(c, values(2, "before"), got)
    poll_quiet(c, got, 3)
    assert sorted(got) == sorted(values(2, "before"))
    p.commit_transaction(30)
    poll_for(c, values(4, "open") + values(2, "after"), got)
    assert sorted(got) == sorted(values(2, "before") + values(4, "open") + values(2, "after"))
    c.close()


def test_read_uncommitted_delivers_aborted_and_an_alter_applies_to_the_next_fetch(broker):
    # The level is read once per ShareFetch, as Kafka does: a fetch waiting
    # when the alter lands keeps the old one. The consumer is closed over
    # each alter, so no fetch of it spans one.
    topic, group = "rc-switch", "rc-switch-g"
    setup(broker, topic, group, "read_uncommitted")
    p = txn_producer(broker, "rc-switch-tx")
    transaction(p, topic, values(3, "a1"), commit=False)
    transaction(p, topic, values(3, "c1"))
    got = []
    c = consumer(broker, group, topic)
    poll_for(c, values(3, "a1") + values(3, "c1"), got)     # read_uncommitted: aborted records too
    c.commit_sync()
    c.close()
    set_group_configs(broker, group, share_isolation_level="read_committed")
    transaction(p, topic, values(3, "a2"), commit=False)
    transaction(p, topic, values(3, "c2"))
    c = consumer(broker, group, topic)
    poll_for(c, values(3, "c2"), got)
    poll_quiet(c, got, 2)
    assert not set(values(3, "a2")) & set(got)
    c.commit_sync()
    c.close()
    set_group_configs(broker, group, share_isolation_level="read_uncommitted")
    transaction(p, topic, values(3, "a3"), commit=False)
    c = consumer(broker, group, topic)
    poll_for(c, values(3, "a3"), got)
    assert not set(values(3, "a2")) & set(got)      # archived for good, whatever the level now
    c.close()


def test_a_share_fetch_acquires_below_the_lso_and_archives_an_aborted_batch(broker):
    """The raw ShareFetch: acquisition stops before an open transaction; once
    it aborts, its record is archived and the rest (the ABORT marker too, as
    Kafka acquires control batches) acquired."""
    topic, group = "rc-wire", "rc-wire-g"
    setup(broker, topic, group, "read_committed")
    plain(broker, topic, values(3, "n"))                # offsets 0-2
    p = txn_producer(broker, "rc-wire-tx")
    p.begin_transaction()
    p.produce(topic, b"open")                           # offset 3, open
    assert p.flush(30) == 0
    plain(broker, topic, values(2, "m"))                # offsets 4-5
    conn = connect(broker)
    try:
        mid = member_id()
        (tp,) = join_assigned(conn, group, mid, [topic]).assignment.topic_partitions
        key = (tp.topic_id, 0)
        got = _fetch_some(conn, group, mid, 0, key)
        assert got == [(0, 2, 1)]
        assert acquired(share_fetch(conn, group, mid, 1, [key], max_wait_ms=300)) == {}
        p.abort_transaction(30)                         # marker at 6
        assert _fetch_some(conn, group, mid, 2, key) == [(4, 6, 1)]
        assert _start_offset(conn, group, topic) == 0   # 0-2 and 4-6 still acquired
    finally:
        conn.close()


def _fetch_some(conn, group, mid, epoch, key):
    deadline = time.monotonic() + TIMEOUT
    while True:
        r = share_fetch(conn, group, mid, epoch, [key])
        assert r.error_code == 0, r
        got = acquired(r).get(key)
        if got:
            return got
        assert time.monotonic() < deadline, "nothing acquired"
        epoch += 1


def test_split_keeps_what_lies_outside_the_aborted_batches():
    from pylog.share.txn import split
    acquired = [(0, 9, 1), (12, 20, 2), (30, 31, 1)]
    kept, dropped = split(acquired, [(3, 4), (8, 13), (15, 15), (25, 26), (31, 40)])
    assert kept == [(0, 2, 1), (5, 7, 1), (14, 14, 2), (16, 20, 2), (30, 30, 1)]
    assert dropped == [(3, 4), (8, 9), (12, 13), (15, 15), (31, 31)]
    assert split(acquired, []) == (acquired, [])


def test_archive_acquired_moves_the_start_past_aborted_records():
    from pylog.share.partition import ACQUIRED, ARCHIVED, SharePartition
    sp = SharePartition(0, delivery_limit=5, max_locks=100)
    assert sp.acquire("m", [(0, 4), (5, 9), (10, 10)], 100, None) == [(0, 10, 1)]
    sp.archive_acquired([(0, 4)])
    assert sp.start == 5 and sp.state_of(5) == ACQUIRED
    sp.archive_acquired([(7, 8)])
    assert sp.state_of(7) == ARCHIVED and sp.state_of(6) == ACQUIRED and sp.state_of(9) == ACQUIRED
