"""One topic id per topic (KIP-516), the controller's: it reaches every
replica in LeaderAndIsr v5 and is kept in the replica's partition.metadata
(Kafka's file), and the broker's LogManager, its MetadataCache and every
Metadata v12 answer give that same id; a re-created topic gets a new one
everywhere. On a 3-broker cluster (ZooKeeper, and the embedded controller)
and on a lone broker; real brokers, real files, real sockets."""
from __future__ import annotations

import os
import uuid

import pytest

from pylog.broker.partition_metadata import FILE_NAME, read_topic_id
from pylog.broker.replication import leader_and_isr_response
from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker, wait_until

from .zkcluster import AdminClient, NewTopic, cluster, create_topic, embedded_cluster

MR = m.MetadataRequest
ZERO = uuid.UUID(int=0)


@pytest.fixture(params=["zookeeper", "embedded"])
def three_brokers(request):
    if request.param == "zookeeper":
        with cluster(request.getfixturevalue("zk_connect")) as bs:
            yield bs
    else:
        with embedded_cluster() as bs:
            yield bs


def metadata_id(b, topic):
    with Connection("127.0.0.1", b.port) as c:
        t = c.request(MR(topics=[MR.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False),
                      api_version=12).topics[0]
    return t.topic_id if t.error_code == 0 else None


def ids_seen(bs, topic):
    """Every id each broker gives topic: its Metadata answer, its metadata
    cache, its LogManager and the partition.metadata of each replica it
    hosts (read from the data dir)."""
    seen = set()
    for b in bs:
        seen.add(("metadata", metadata_id(b, topic)))
        seen.add(("cache", b.broker.call(lambda b=b: b.broker.metadata_cache.topic_ids.get(topic))))
        lm = b.broker.log_manager
        meta = b.broker.call(lambda lm=lm: lm.topics.get(topic))
        if meta is not None:
            seen.add(("log manager", meta.topic_id))
            for i in meta.hosted:
                seen.add(("file", read_topic_id(os.path.join(lm.data_dir, f"{topic}-{i}"))))
    return seen


def replica_count(bs, topic):
    return sum(1 for b in bs for (t, _i) in list(b.broker.log_manager.partitions) if t == topic)


def one_id(bs, topic, replicas):
    """The one id every source gives topic once each of its replicas is
    open (None until then)."""
    if replica_count(bs, topic) != replicas:
        return None
    ids = {tid for _src, tid in ids_seen(bs, topic)}
    return ids.pop() if len(ids) == 1 else None


def test_one_topic_id_on_every_broker_and_a_new_one_when_recreated(three_brokers):
    bs = three_brokers
    admin = create_topic(bs, "tid", 3, rf=2)
    first = wait_until(lambda: one_id(bs, "tid", 6), "one id for tid everywhere")
    assert first != ZERO
    # The file is Kafka's: two lines, the id in its base64 form.
    lm = next(b.broker.log_manager for b in bs if ("tid", 0) in b.broker.log_manager.partitions)
    with open(os.path.join(lm.data_dir, "tid-0", FILE_NAME)) as f:
        lines = f.read().splitlines()
    assert lines[0] == "version: 0" and lines[1].startswith("topic_id: ") and len(lines) == 2
    admin.delete_topics(["tid"])["tid"].result(30)
    wait_until(lambda: replica_count(bs, "tid") == 0 and all(metadata_id(b, "tid") is None for b in bs),
               "tid gone everywhere")
    admin.create_topics([NewTopic("tid", 2, 3)])["tid"].result(30)
    second = wait_until(lambda: one_id(bs, "tid", 6), "one id for the new tid everywhere")
    assert second not in (ZERO, first)


def test_lone_broker_keeps_the_controllers_id_across_a_restart(tmp_path):
    data = tmp_path / "data"
    with running_broker(data_dir=data) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        admin.create_topics([NewTopic("solo", 2, 1)])["solo"].result(30)
        first = wait_until(lambda: one_id([b], "solo", 2), "one id for solo")
        admin.delete_topics(["solo"])["solo"].result(30)
        wait_until(lambda: replica_count([b], "solo") == 0 and metadata_id(b, "solo") is None, "solo gone")
        admin.create_topics([NewTopic("solo", 2, 1)])["solo"].result(30)
        second = wait_until(lambda: one_id([b], "solo", 2), "one id for the new solo")
        assert second not in (ZERO, first)
    with running_broker(data_dir=data) as b:
        assert wait_until(lambda: one_id([b], "solo", 2), "solo's id after the restart") == second


def test_a_replica_of_another_incarnation_is_inconsistent_topic_id(tmp_path):
    """A LeaderAndIsr v5 naming another id than the replica's partition.metadata
    (a topic re-created while this replica's directory survived) changes
    nothing and answers INCONSISTENT_TOPIC_ID (Kafka's becomeLeaderOrFollower);
    the right id is applied. Its v5 answer groups errors by topic id."""
    with running_broker(data_dir=tmp_path / "data") as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        admin.create_topics([NewTopic("inc", 1, 1)])["inc"].result(30)
        tid = wait_until(lambda: one_id([b], "inc", 1), "one id for inc")
        p = b.broker.log_manager.partitions[("inc", 0)]
        epoch = wait_until(lambda: p.leader_epoch >= 0 and p.leader_epoch + 1, "the leader epoch")
        Q = m.LeaderAndIsrRequest

        def request(topic_id, leader_epoch):
            return Q(controller_id=b.broker.broker_id, controller_epoch=1, broker_epoch=-1, topic_states=[
                Q.LeaderAndIsrTopicState(topic_name="inc", topic_id=topic_id, partition_states=[
                    Q.LeaderAndIsrPartitionState(partition_index=0, controller_epoch=1,
                                                 leader=b.broker.broker_id, leader_epoch=leader_epoch,
                                                 isr=[b.broker.broker_id], replicas=[b.broker.broker_id])])])
        rm = b.broker.replica_manager
        other = uuid.uuid4()
        bad = request(other, epoch + 5)
        assert b.broker.call(lambda: rm.become_leader_or_follower(bad)) == [
            ("inc", 0, Errors.INCONSISTENT_TOPIC_ID)]
        assert p.leader_epoch == epoch - 1 and read_topic_id(p.path) == tid
        R = m.LeaderAndIsrResponse
        resp = R.decode(R.encode(leader_and_isr_response(bad, 0, [("inc", 0, Errors.INCONSISTENT_TOPIC_ID)], 5), 5),
                        5)
        assert [(t.topic_id, [(e.partition_index, e.error_code) for e in t.partition_errors])
                for t in resp.topics] == [(other, [(0, Errors.INCONSISTENT_TOPIC_ID)])]
        good = request(tid, epoch + 5)
        assert b.broker.call(lambda: rm.become_leader_or_follower(good)) == [("inc", 0, 0)]
        assert p.leader_epoch == epoch + 5
