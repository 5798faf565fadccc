"""A partition the cluster has but this broker does not host: Fetch and
OffsetForLeaderEpoch answer NOT_LEADER_OR_FOLLOWER (the client refreshes its
metadata and goes to a replica), as Kafka's ReplicaManager.getPartitionOrError;
a partition the cluster does not have stays UNKNOWN_TOPIC_OR_PARTITION. Real
in-process brokers around the embedded controller, over loopback."""
from __future__ import annotations

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import wait_until

from .zkcluster import create_topic, embedded_cluster

F = m.FetchRequest
E = m.OffsetForLeaderEpochRequest


def _fetch_codes(port, topic, indexes, version):
    req = F(replica_id=-1, max_wait_ms=0, min_bytes=1, topics=[F.FetchTopic(topic=topic, partitions=[
        F.FetchPartition(partition=i, fetch_offset=0, partition_max_bytes=1 << 20) for i in indexes])])
    with Connection("127.0.0.1", port) as c:
        resp = c.request(req, api_version=version)
    return {p.partition_index: p.error_code for t in resp.responses for p in t.partitions}


def _epoch_codes(port, topic, indexes):
    req = E(replica_id=-1, topics=[E.OffsetForLeaderTopic(topic=topic, partitions=[
        E.OffsetForLeaderPartition(partition=i, current_leader_epoch=-1, leader_epoch=0) for i in indexes])])
    with Connection("127.0.0.1", port) as c:
        resp = c.request(req, api_version=3)
    return {p.partition: p.error_code for t in resp.topics for p in t.partitions}


def test_a_partition_hosted_elsewhere_is_not_leader_or_follower():
    with embedded_cluster() as bs:
        admin = create_topic(bs, "away", 3, rf=1)
        parts = admin.list_topics("away", timeout=10).topics["away"].partitions
        # A broker and a partition it does not host (rf=1: only its leader does).
        index, leader = next((i, p.leader) for i, p in sorted(parts.items()))
        other = next(b for b in bs if b.broker.broker_id != leader)
        wait_until(lambda: other.broker.metadata_cache.has_partition("away", index), "the metadata on the other broker")
        assert ("away", index) not in other.broker.log_manager.partitions
        for version in (4, 12):
            assert _fetch_codes(other.port, "away", [index, 7], version) == {
                index: Errors.NOT_LEADER_OR_FOLLOWER, 7: Errors.UNKNOWN_TOPIC_OR_PARTITION}
        assert _fetch_codes(other.port, "nosuch", [0], 12) == {0: Errors.UNKNOWN_TOPIC_OR_PARTITION}
        assert _epoch_codes(other.port, "away", [index, 7]) == {
            index: Errors.NOT_LEADER_OR_FOLLOWER, 7: Errors.UNKNOWN_TOPIC_OR_PARTITION}
        assert _epoch_codes(other.port, "nosuch", [0]) == {0: Errors.UNKNOWN_TOPIC_OR_PARTITION}
