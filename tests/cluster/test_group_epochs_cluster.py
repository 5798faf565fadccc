"""Committed leader epochs (OffsetCommit v6+, OffsetFetch v5+) survive the
group coordinator moving to another broker: the new coordinator replays
them from its replica of __consumer_offsets (OffsetCommitValue v3)."""
from __future__ import annotations

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from pylog.client.wire import Connection
from pylog.groups import offsets_topic as ot
from pylog.protocol.messages import OffsetFetchRequest

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

        def serving():
            # librdkafka's AdminClient crashes the process (a NULL consumer-group
            # handle dereferenced in its OffsetFetch error path, seen as SIGSEGV
            # or SIGABRT on a librdkafka thread) when OffsetFetch answers
            # NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE, which Kafka rightly
            # answers while a coordinator moves: its read waits until the
            # survivors agree on the new coordinator and it serves the group.
            try:
                named = set(coordinators(survivors, GROUP).values())
                if len(named) != 1 or coord in named:
                    return False
                new = next(b for b in survivors if b.broker.broker_id in named)
                with Connection(new.broker.advertised_host, new.broker.advertised_port) as conn:
                    resp = conn.request(OffsetFetchRequest(group_id=GROUP, topics=[
                        OffsetFetchRequest.OffsetFetchRequestTopic(name="ep", partition_indexes=[0, 1])]),
                        api_version=3)
                return resp.error_code == 0 and all(p.error_code == 0 for t in resp.topics for p in t.partitions)
            except Exception:   # no coordinator yet while the partition's leadership moves
                return False
        wait_for(serving, timeout=60, what="a new coordinator serving the group")
        assert _read(survivors) == {0: (11, 3), 1: (22, 5)}
