"""KIP-848 consumer groups (librdkafka, group.protocol=consumer) in a
three-broker cluster with real ZooKeeper: the coordinator's records are
replicated in __consumer_offsets, and when the coordinator broker stops,
the broker that takes its partition over rebuilds the group from them; the
members carry on with their member epochs and lose no message."""
from __future__ import annotations

import time

from pylog.groups import offsets_topic as ot

from .test_groups_cluster import CLUSTER, coordinators, produce
from .zkcluster import AdminClient, bootstrap, ck, create_topic, wait_for
from . import zkcluster

GROUP = "g-848-failover"
KIP848 = {
    "group.consumer.heartbeat.interval.ms": "500",
    "group.consumer.min.heartbeat.interval.ms": "500",
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.min.session.timeout.ms": "6000",
}


def consume(consumers, got, expect, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not expect <= got and time.monotonic() < deadline:
        for c in consumers:
            for msg in c.consume(num_messages=500, timeout=0.1):
                if not msg.error():
                    got.add(int(msg.value()))
            try:
                c.commit(asynchronous=False)
            except ck.KafkaException:   # nothing new, or the coordinator moving: next time
                pass
    assert expect <= got, f"{len(expect - got)} messages never consumed"


def test_consumer_group_fails_over_to_another_coordinator(zk_connect):
    with zkcluster.cluster(zk_connect, 3, base={**CLUSTER, **KIP848}) as bs:
        create_topic(bs, "events848", 6)
        produce(bs, "events848", range(300))
        conf = {"bootstrap.servers": bootstrap(bs), "group.id": GROUP, "group.protocol": "consumer",
                "enable.auto.commit": False, "auto.offset.reset": "earliest",
                "topic.metadata.refresh.interval.ms": 1000}
        consumers = [ck.Consumer({**conf, "client.id": f"m-{i}"}) for i in range(3)]
        try:
            for c in consumers:
                c.subscribe(["events848"])
            got: set[int] = set()
            consume(consumers, got, set(range(300)))

            def two_each():
                for c in consumers:
                    c.poll(0.1)
                return sorted(len(c.assignment()) for c in consumers) == [2, 2, 2]
            wait_for(two_each, what="two partitions each")
            coord = next(iter(coordinators(bs, GROUP).values()))
            victim = next(b for b in bs if b.broker.broker_id == coord)
            victim.broker.stop_in_thread()
            survivors = [b for b in bs if b is not victim]
            wait_for(lambda: coord not in coordinators(survivors, GROUP).values(), what="a new coordinator")
            produce(survivors, "events848", range(300, 600))
            consume(consumers, got, set(range(600)))
            # The group as the new coordinator rebuilt it: the same three members.
            admin = AdminClient({"bootstrap.servers": bootstrap(survivors)})
            d = admin.describe_consumer_groups([GROUP])[GROUP].result(30)
            assert sorted(mm.client_id for mm in d.members) == ["m-0", "m-1", "m-2"]
            assert ot.TOPIC in survivors[0].broker.metadata_cache.topics
        finally:
            for c in consumers:
                c.close()
