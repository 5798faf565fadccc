"""Committed leader epochs (OffsetCommit v6+, OffsetFetch v5+) survive the
group coordinator moving to another broker: the new coordinator replays
them from its replica of __consumer_offsets (OffsetCommitValue v3)."""
from __future__ import annotations

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from pylog.groups import offsets_topic as ot

from . import zkcluster
from .test_groups_cluster import CLUSTER, coordinators
from .zkcluster import AdminClient, bootstrap, create_topic, partition_md, wait_for

GROUP = "g-epochs"


def _read(bs):
    """{partition: (offset, leader_epoch)} as librdkafka's ListConsumerGroupOffsets reads them."""
    a = AdminClient({"bootstrap.servers": bootstrap(bs)})
    fs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(
        GROUP, [TopicPartition("ep", 0), TopicPartition("ep", 1)])], request_timeout=20)
    return {tp.partition: (tp.offset, tp.leader_epoch) for tp in fs[GROUP].result(30).topic_partitions}


def test_committed_leader_epochs_survive_a_coordinator_move(zk_connect):
    with zkcluster.cluster(zk_connect, 3, base=CLUSTER) as bs:
        create_topic(bs, "ep", 2)
        a = AdminClient({"bootstrap.servers": bootstrap(bs)})
        tps = [TopicPartition("ep", 0, 11, leader_epoch=3), TopicPartition("ep", 1, 22, leader_epoch=5)]
        a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(GROUP, tps)], request_timeout=20)[GROUP] \
            .result(30)
        assert _read(bs) == {0: (11, 3), 1: (22, 5)}
        coord = partition_md(a, ot.TOPIC)[ot.partition_for(GROUP, 6)].leader
        victim = next(b for b in bs if b.broker.broker_id == coord)
        victim.broker.stop_in_thread()
        survivors = [b for b in bs if b is not victim]

        def moved():
            try:
                return coord not in coordinators(survivors, GROUP).values()
            except Exception:   # no coordinator yet while the partition's leadership moves
                return False
        wait_for(moved, timeout=60, what="a new coordinator")
        assert _read(survivors) == {0: (11, 3), 1: (22, 5)}
