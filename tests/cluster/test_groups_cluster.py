"""Consumer groups in a three-broker cluster (real ZooKeeper): __consumer_offsets
is created by the controller with replication factor 3, every broker names the
same coordinator (the leader of the group's offsets partition), and when the
coordinator broker stops another one takes the group over with its committed
offsets, while the members go on consuming without losing a message."""
from __future__ import annotations

import time

from pylog.client import Client
from pylog.client.wire import Connection
from pylog.groups import offsets_topic as ot
from pylog.protocol.messages import FindCoordinatorRequest, OffsetFetchRequest

from . import zkcluster
from .zkcluster import AdminClient, bootstrap, ck, create_topic, partition_md, wait_for

CLUSTER = {
    "replica.lag.time.max.ms": "2000",
    "replica.fetch.wait.max.ms": "100",
    "zookeeper.session.timeout.ms": "4000",
    "min.insync.replicas": "2",
    "default.replication.factor": "3",
    "num.partitions": "3",
    "auto.leader.rebalance.enable": "false",
    "offsets.topic.num.partitions": "6",
    "offsets.topic.replication.factor": "3",
    "group.initial.rebalance.delay.ms": "0",
}
GROUP = "g-failover"


def cluster(zk_connect, n=3, **extra):
    return zkcluster.cluster(zk_connect, n, base=CLUSTER, **extra)


def coordinators(brokers, group):
    """The coordinator each broker names for group (FindCoordinator)."""
    out = {}
    for b in brokers:
        c = Client(str(b), timeout=20)
        try:
            out[b.broker.broker_id] = c.find_coordinator(group, refresh=True)
        finally:
            c.close()
    return out


def produce(brokers, topic, values):
    p = ck.Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "linger.ms": 5})
    for v in values:
        p.produce(topic, str(v).encode(), key=str(v).encode())
    assert p.flush(30) == 0


def committed(bs, topic, partitions, timeout=20.0):
    """The group's committed offsets as a fresh consumer (not a member) reads them."""
    c = ck.Consumer({"bootstrap.servers": bs, "group.id": GROUP, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset for tp in c.committed(
            [ck.TopicPartition(topic, p) for p in range(partitions)], timeout=timeout)}
    finally:
        c.close()


def poll_and_commit(consumers, got, timeout=0.2):
    """Poll every member once; each commits synchronously what it got."""
    for c in consumers:
        msgs = [m for m in c.consume(num_messages=500, timeout=timeout) if not m.error()]
        if msgs:
            got.update(int(m.value()) for m in msgs)
            try:
                c.commit(asynchronous=False)
            except ck.KafkaException as e:  # a rebalance or the coordinator moving: commit next time
                print(f"commit failed: {e}")


def consume_until(consumers, got, expect, timeout=40.0):
    """Poll (and commit) until the values in `got` cover `expect`."""
    deadline = time.monotonic() + timeout
    while not expect <= got and time.monotonic() < deadline:
        poll_and_commit(consumers, got)
    missing = expect - got
    assert not missing, f"{len(missing)} messages never consumed, e.g. {sorted(missing)[:10]}"


def test_offsets_replicated_and_coordinator_fails_over(zk_connect):
    with cluster(zk_connect) as bs:
        create_topic(bs, "events", 3)
        produce(bs, "events", range(300))
        conf = {"bootstrap.servers": bootstrap(bs), "group.id": GROUP, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                "topic.metadata.refresh.interval.ms": 1000}
        consumers = [ck.Consumer({**conf, "client.id": f"member-{i}"}) for i in range(2)]
        try:
            for c in consumers:
                c.subscribe(["events"])
            got: set[int] = set()
            # A stable group of two before anything else: both members assigned.
            deadline = time.monotonic() + 30
            while not (all(c.assignment() for c in consumers)
                       and sum(len(c.assignment()) for c in consumers) == 3):
                assert time.monotonic() < deadline, "the group never settled with both members"
                poll_and_commit(consumers, got, timeout=0.1)
            consume_until(consumers, got, set(range(300)))
            # Whatever was consumed while settling is committed too.
            wait_for(lambda: sum(committed(bootstrap(bs), "events", 3).values()) == 300,
                     what="the first commits")

            # The offsets topic exists with the configured shape, fully replicated.
            admin = AdminClient({"bootstrap.servers": bootstrap(bs)})
            offsets_md = partition_md(admin, ot.TOPIC)
            assert len(offsets_md) == 6
            assert all(len(p.replicas) == 3 for p in offsets_md.values())
            # Every broker names the same coordinator: the leader of the group's partition.
            coords = coordinators(bs, GROUP)
            assert len(set(coords.values())) == 1, coords
            coord = next(iter(coords.values()))
            assert coord == offsets_md[ot.partition_for(GROUP, 6)].leader
            before = committed(bootstrap(bs), "events", 3)
            assert sum(before.values()) == 300, before
            # Only the coordinator serves the group: the others answer NOT_COORDINATOR.
            for b in bs:
                with Connection(b.broker.advertised_host, b.broker.advertised_port) as conn:
                    resp = conn.request(OffsetFetchRequest(group_id=GROUP, topics=[
                        OffsetFetchRequest.OffsetFetchRequestTopic(name="events", partition_indexes=[0, 1, 2])]),
                        api_version=3)
                if b.broker.broker_id == coord:
                    assert resp.error_code == 0
                    assert sum(p.committed_offset for t in resp.topics for p in t.partitions) == 300
                else:
                    assert resp.error_code == 16, resp

            victim = next(b for b in bs if b.broker.broker_id == coord)
            victim.broker.stop_in_thread()
            survivors = [b for b in bs if b is not victim]
            wait_for(lambda: len(set(coordinators(survivors, GROUP).values()) - {coord}) == 1
                     and coord not in coordinators(survivors, GROUP).values(), what="a new coordinator")
            new_coord = coordinators(survivors, GROUP)[survivors[0].broker.broker_id]
            assert new_coord != coord
            # The new coordinator has the group's offsets (replayed from its replica).
            assert committed(bootstrap(survivors), "events", 3) == before

            # The members carry on: new messages are consumed, none lost.
            produce(survivors, "events", range(300, 600))
            consume_until(consumers, got, set(range(600)))
            wait_for(lambda: sum(committed(bootstrap(survivors), "events", 3).values()) == 600,
                     what="the last commits")
        finally:
            for c in consumers:
                c.close()


def test_too_few_brokers_for_the_offsets_replication_factor(zk_connect):
    """As Kafka: no __consumer_offsets with fewer replicas than
    offsets.topic.replication.factor; FindCoordinator answers
    COORDINATOR_NOT_AVAILABLE (clients retry)."""
    with cluster(zk_connect, **{"offsets.topic.replication.factor": "4"}) as bs:
        for _ in range(3):
            for b in bs:
                with Connection(b.broker.advertised_host, b.broker.advertised_port) as conn:
                    resp = conn.request(FindCoordinatorRequest(key=GROUP, key_type=0), api_version=1)
                assert resp.error_code == 15, resp
            time.sleep(0.2)
        assert all(ot.TOPIC not in b.broker.metadata_cache.topics for b in bs)


def test_deleting_a_topic_forgets_its_committed_offsets(zk_connect):
    """As Kafka's coordinators do on UpdateMetadata: the group's committed
    offsets for a deleted topic are tombstoned, so a topic re-created under
    the name does not inherit them (the coordinator need not host a replica)."""
    with cluster(zk_connect) as bs:
        create_topic(bs, "gone", 3, rf=1)
        create_topic(bs, "kept", 1)
        c = ck.Consumer({"bootstrap.servers": bootstrap(bs), "group.id": GROUP, "enable.auto.commit": False})
        try:
            c.commit(offsets=[ck.TopicPartition("gone", p, 5 + p) for p in range(3)]
                     + [ck.TopicPartition("kept", 0, 7)], asynchronous=False)
        finally:
            c.close()
        assert committed(bootstrap(bs), "gone", 3) == {0: 5, 1: 6, 2: 7}
        admin = AdminClient({"bootstrap.servers": bootstrap(bs)})
        admin.delete_topics(["gone"])["gone"].result(20)
        wait_for(lambda: all("gone" not in b.broker.metadata_cache.topics for b in bs), what="the topic gone")
        assert committed(bootstrap(bs), "gone", 3) == {0: -1001, 1: -1001, 2: -1001}
        assert committed(bootstrap(bs), "kept", 1) == {0: 7}
        create_topic(bs, "gone", 3, rf=1)
        assert committed(bootstrap(bs), "gone", 3) == {0: -1001, 1: -1001, 2: -1001}
