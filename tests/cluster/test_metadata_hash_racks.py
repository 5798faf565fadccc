"""A KIP-848 group's metadata hash over racks in a three-broker cluster with
racks r0-r2 and a real ZooKeeper: the hash written is Kafka's over the
replicas' racks, and a replica's broker stopping does not move the group
epoch, as a fenced broker keeps its registration (and rack) in Kafka's
cluster image while pylog's UpdateMetadata lists only the live brokers."""
from __future__ import annotations

from contextlib import closing

from pylog.groups import metadata_hash as mh

from tests.groups.kip848 import CONFIG as KIP848, connect, describe, heartbeat, member_id, metadata_hashes, owned

from .test_groups_cluster import coordinators
from .test_read_replica import rack_cluster
from .zkcluster import bootstrap, create_topic, wait_for

GROUP = "g-mh-racks"
OFFSETS_PARTITIONS = 6
# __consumer_offsets on every broker, so that stopping one leaves the group's partition readable.
CONFIG = {**KIP848, "offsets.topic.num.partitions": str(OFFSETS_PARTITIONS), "offsets.topic.replication.factor": "3"}


def test_a_stopped_replicas_rack_stays_in_the_group_metadata_hash(zk_connect):
    with rack_cluster(zk_connect, **CONFIG) as bs:
        create_topic(list(bs.values()), "mh-racks", 2, rf=3)
        [coord] = set(coordinators(list(bs.values()), GROUP).values())
        controller = next(i for i, b in bs.items() if b.broker.controller.is_active)
        with closing(connect(bs[coord])) as conn:
            mid = member_id()
            r = heartbeat(conn, GROUP, mid, 0, ["mh-racks"])
            assert r.error_code == 0, r.error_message
            [tp] = r.assignment.topic_partitions
            every_rack = mh.compute_group_hash({"mh-racks": mh.compute_topic_hash(
                "mh-racks", tp.topic_id, [["r0", "r1", "r2"]] * 2)})
            assert metadata_hashes(bootstrap(bs.values()), GROUP, OFFSETS_PARTITIONS) == [every_rack]

            victim = next(i for i in bs if i not in (coord, controller))
            bs[victim].broker.stop_in_thread()
            live = [b for i, b in bs.items() if i != victim]
            # A controlled shutdown leaves nothing for the broker's death to
            # change, and pylog's controller then sends no UpdateMetadata
            # (Kafka's sends one to every broker): a new topic brings one.
            create_topic(live, "mh-racks-after", 1, rf=2)
            cache = bs[coord].broker.metadata_cache
            wait_for(lambda: victim not in bs[coord].broker.call(lambda: set(cache.brokers)),
                     timeout=60, what="the coordinator's metadata without the stopped broker")
            again = heartbeat(conn, GROUP, mid, r.member_epoch, owned=owned(r))
            assert again.error_code == 0 and again.member_epoch == r.member_epoch
            assert describe(conn, GROUP).group_epoch == r.member_epoch
        assert metadata_hashes(bootstrap(live), GROUP, OFFSETS_PARTITIONS) == [every_rack]
