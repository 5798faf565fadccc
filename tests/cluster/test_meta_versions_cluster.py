"""Issue 17's protocol versions on a 3-broker cluster (the embedded
controller, no ZooKeeper; real in-process brokers on loopback): topic ids the
controller hands out, the same on every broker and new for a re-created
topic; Produce v10-11 answers that name the current leader (KIP-951); a
librdkafka consumer fetching with leader epochs from every leader."""
from __future__ import annotations

import uuid

from pylog import _engine
from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import wait_until

from .zkcluster import create_topic, embedded_cluster, produce_numbers

MR = m.MetadataRequest
P = m.ProduceRequest
ZERO = uuid.UUID(int=0)


def ids_everywhere(bs, topic):
    """{broker id: (error code, topic id)} from Metadata v12 on each broker."""
    out = {}
    for b in bs:
        with Connection("127.0.0.1", b.port) as c:
            t = c.request(MR(topics=[MR.MetadataRequestTopic(name=topic)], allow_auto_topic_creation=False),
                          api_version=12).topics[0]
        out[b.broker.broker_id] = (t.error_code, t.topic_id)
    return out


def one_id(bs, topic):
    got = ids_everywhere(bs, topic)
    found = {tid for code, tid in got.values() if code == 0}
    if len(found) == 1 and all(code == 0 for code, _ in got.values()):
        return found.pop()
    return None


def test_topic_ids_are_the_controllers_and_new_for_a_recreated_topic():
    with embedded_cluster() as bs:
        admin = create_topic(bs, "ids", 3)
        first = wait_until(lambda: one_id(bs, "ids"), "one id on every broker")
        assert first != ZERO
        admin.delete_topics(["ids"])["ids"].result(30)
        wait_until(lambda: all(code == Errors.UNKNOWN_TOPIC_OR_PARTITION
                               for code, _ in ids_everywhere(bs, "ids").values()), "the topic gone everywhere")
        create_topic(bs, "ids", 2)
        second = wait_until(lambda: one_id(bs, "ids"), "one id on every broker again")
        assert second not in (ZERO, first)
        # Looked up by id (v12) on any broker: the new id names it, the old one nothing.
        with Connection("127.0.0.1", bs[2].port) as c:
            resp = c.request(MR(topics=[MR.MetadataRequestTopic(topic_id=second, name=None),
                                        MR.MetadataRequestTopic(topic_id=first, name=None)],
                                allow_auto_topic_creation=False), api_version=12)
        got = {t.topic_id: (t.error_code, t.name, len(t.partitions)) for t in resp.topics}
        assert got == {second: (0, "ids", 2), first: (Errors.UNKNOWN_TOPIC_ID, None, 0)}


def test_produce_to_a_follower_names_the_leader_from_v10():
    with embedded_cluster() as bs:
        admin = create_topic(bs, "lead", 3, rf=1)
        parts = admin.list_topics("lead", timeout=10).topics["lead"].partitions
        by_id = {b.broker.broker_id: b for b in bs}
        # A partition and a broker that is not its leader.
        index, leader = next((i, p.leader) for i, p in sorted(parts.items()))
        other = next(b for bid, b in by_id.items() if bid != leader)
        # The leader's epoch once it has taken the partition over (its
        # LeaderAndIsr may be applied just after the metadata shows it).
        hosted = by_id[leader].broker.log_manager.partitions
        wait_until(lambda: ("lead", index) in hosted and hosted["lead", index].leader_epoch >= 0, "the leader's epoch")
        epoch = hosted["lead", index].leader_epoch
        batch = bytes(_engine.encode_batch([b"x"]))
        with Connection("127.0.0.1", other.port) as c:
            def produce(version):
                resp = c.request(P(transactional_id=None, acks=1, timeout_ms=10000, topic_data=[
                    P.TopicProduceData(name="lead", partition_data=[
                        P.PartitionProduceData(index=index, records=batch)])]), api_version=version)
                return resp, resp.responses[0].partition_responses[0]

            # The other broker learns the leader from the controller's
            # UpdateMetadata, which may come after the leader took over.
            wait_until(lambda: (lambda part: (part.error_code, part.current_leader.leader_id,
                                              part.current_leader.leader_epoch))(produce(11)[1])
                       == (Errors.NOT_LEADER_OR_FOLLOWER, leader, epoch), "the other broker knows the leader")
            for version in (8, 9, 10, 11):
                resp, part = produce(version)
                assert part.error_code == Errors.NOT_LEADER_OR_FOLLOWER
                if version >= 10:
                    assert (part.current_leader.leader_id, part.current_leader.leader_epoch) == (leader, epoch)
                    assert [(e.node_id, e.host, e.port) for e in resp.node_endpoints] == \
                        [(leader, "127.0.0.1", by_id[leader].port)]
                else:
                    assert part.current_leader.leader_id == -1 and resp.node_endpoints == []
            # The leader itself takes it.
        with Connection("127.0.0.1", by_id[leader].port) as c:
            resp = c.request(P(transactional_id=None, acks=1, timeout_ms=10000, topic_data=[
                P.TopicProduceData(name="lead", partition_data=[
                    P.PartitionProduceData(index=index, records=batch)])]), api_version=11)
            part = resp.responses[0].partition_responses[0]
            assert part.error_code == 0 and resp.node_endpoints == []


def test_librdkafka_round_trip_with_leader_epochs_on_a_cluster():
    from .test_cluster_zk import read_all
    with embedded_cluster() as bs:
        create_topic(bs, "epochs", 3)
        produce_numbers(bs, "epochs", 600)
        got = read_all(str(bs[1]), "epochs", 3, 600)
        assert sorted(int(x.value()) for x in got) == list(range(600))
        assert all(x.leader_epoch() is not None and x.leader_epoch() >= 0 for x in got)
