"""`pylog share-groups` (kafka-share-groups.sh) against a real broker with a
share group that real ShareConsumer traffic built."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from confluent_kafka import Producer, ShareConsumer

from pylog.testing import running_broker

from .test_share_wire import ACCEPT, fetch_until
from .wire import (CONFIG, acquired, connect, create_topic, heartbeat, join_assigned, member_id, produce,
                   set_group_configs, share_ack)


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def tool(broker, *args):
    r = subprocess.run([sys.executable, "-m", "pylog", "share-groups", *args, "--bootstrap-server", str(broker)],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def test_list_describe_reset_and_delete(broker):
    group, topic = "cli-g", "cli-t"
    create_topic(broker, topic, 2)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    produce(broker, topic, 6, partitions=2)
    conn = connect(broker)
    mid = member_id()
    r = join_assigned(conn, group, mid, [topic], 2)
    tid = r.assignment.topic_partitions[0].topic_id
    tp = (tid, 0)
    f, epoch = fetch_until(conn, group, mid, 0, [tp], True)
    assert acquired(f) == {tp: [(0, 2, 1)]}
    share_ack(conn, group, mid, epoch, {tp: [(0, 0, [ACCEPT])]})

    code, out, _ = tool(broker, "list")
    assert code == 0 and group in out.split()
    code, out, _ = tool(broker, "describe", group)
    assert code == 0
    lines = [line.split() for line in out.strip().splitlines()]
    assert lines[0] == ["GROUP", "TOPIC", "PARTITION", "START-OFFSET", "LAG"]
    assert sorted(lines[1:]) == [[group, topic, "0", "1", "2"], [group, topic, "1", "0", "3"]]
    code, out, _ = tool(broker, "describe", group, "--members")
    assert code == 0 and mid in out and f"{topic}:0,1" in out
    code, out, _ = tool(broker, "describe", group, "--state")
    assert code == 0 and out.split()[-2:] == ["Stable", "1"]
    code, _, err = tool(broker, "describe", "cli-nope")
    assert code == 1 and "does not exist" in err

    # Not while it has a member.
    code, _, err = tool(broker, "reset-offsets", "--group", group, "--topic", topic, "--to-latest", "--execute")
    assert code == 1 and "NON_EMPTY_GROUP" in err
    heartbeat(conn, group, mid, -1)
    share_ack(conn, group, mid, -1, {})
    code, out, _ = tool(broker, "reset-offsets", "--group", group, "--topic", f"{topic}:0", "--to-latest",
                        "--execute")
    assert code == 0 and out.splitlines()[1].split() == [group, topic, "0", "3"]
    code, out, _ = tool(broker, "describe", group)
    assert [group, topic, "0", "3", "0"] in [line.split() for line in out.splitlines()]
    code, out, _ = tool(broker, "delete", "--group", group)
    assert code == 0 and "successful" in out
    code, out, _ = tool(broker, "list")
    assert group not in out.split()
    conn.close()


def delayed_then_plain(bootstrap_servers, topic, delayed, plain, partitions=(0,)):
    """delayed records due in 10 minutes, then plain ones, on each of partitions."""
    p = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all", "linger.ms": 5})
    for part in partitions:
        for i in range(delayed):
            p.produce(topic, b"later-%d" % i, partition=part, headers=[("pylog.deliver.after", b"600000")])
        for i in range(plain):
            p.produce(topic, b"now-%d" % i, partition=part)
    assert p.flush(30) == 0


def poll_n(c, n):
    got = []
    deadline = time.monotonic() + 60
    while len(got) < n:
        assert time.monotonic() < deadline, f"polled {got}"
        got += [m.value() for m in c.poll(0.2) if m.error() is None]
    return got


def offsets_rows(out):
    lines = [line.split() for line in out.strip().splitlines()]
    return lines[0], {(r[1], r[2]): dict(zip(lines[0], r)) for r in lines[1:]}


def test_describe_shows_the_leaders_delay_statistics(broker):
    group, topic = "cli-delay-g", "cli-delay-t"
    create_topic(broker, topic, 2)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    delayed_then_plain(str(broker), topic, 5, 3, partitions=(0,))
    delayed_then_plain(str(broker), topic, 0, 3, partitions=(1,))
    c = ShareConsumer({"bootstrap.servers": str(broker), "group.id": group})
    c.subscribe([topic])
    try:
        assert sorted(poll_n(c, 6)) == sorted([b"now-%d" % i for i in range(3)] * 2)
        c.commit_sync()
        # The share-partitions stay loaded on their leader while the member's session lives.
        code, out, err = tool(broker, "describe", group, "--offsets")
        assert code == 0, err
        header, rows = offsets_rows(out)
        assert header == ["GROUP", "TOPIC", "PARTITION", "START-OFFSET", "LAG", "DELAYED", "NEXT-DUE-MS"]
        assert rows[(topic, "0")]["DELAYED"] == "5"
        assert 0 < int(rows[(topic, "0")]["NEXT-DUE-MS"]) <= 600000
        assert (rows[(topic, "1")]["DELAYED"], rows[(topic, "1")]["NEXT-DUE-MS"]) == ("-", "-")
    finally:
        c.close()


def test_in_a_cluster_the_delay_statistics_come_from_the_partitions_leader():
    from tests.cluster.zkcluster import bootstrap, embedded_cluster

    from .test_share_cluster import BASE, create_topic as create_led, group_coordinator
    with embedded_cluster(3, base=BASE) as brokers:
        group, topic = "cli-delay-cl-g", "cli-delay-cl-t"
        gc = group_coordinator(brokers, group).broker.broker_id
        leader = next(b for b in (1, 2, 3) if b != gc)
        create_led(brokers, topic, [[leader, *(b for b in (1, 2, 3) if b != leader)]])
        set_group_configs(brokers[0], group, share_auto_offset_reset="earliest")
        delayed_then_plain(bootstrap(brokers), topic, 4, 2)
        c = ShareConsumer({"bootstrap.servers": bootstrap(brokers), "group.id": group})
        c.subscribe([topic])
        try:
            assert sorted(poll_n(c, 2)) == [b"now-0", b"now-1"]
            c.commit_sync()
            r = subprocess.run([sys.executable, "-m", "pylog", "share-groups", "describe", group,
                                "--bootstrap-server", bootstrap(brokers)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            header, rows = offsets_rows(r.stdout)
            # The group coordinator (another broker) holds none of it: the leader answered.
            assert header[-2:] == ["DELAYED", "NEXT-DUE-MS"], r.stdout
            assert rows[(topic, "0")]["DELAYED"] == "4"
            assert rows[(topic, "0")]["START-OFFSET"] == "0"
        finally:
            c.close()
