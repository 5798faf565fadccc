"""auto.create.topics.enable in a 3-broker cluster (ZooKeeper and the embedded
controller): a producer to a topic nobody created delivers, as librdkafka's
test 0008 expects. Before the control plane was one, a cluster broker answered
UNKNOWN_TOPIC_OR_PARTITION for it and the producer's messages timed out."""
from __future__ import annotations

from .zkcluster import CLUSTER, AdminClient, bootstrap, ck, cluster, embedded_cluster, partition_md, wait_for

BASE = {**CLUSTER, "min.insync.replicas": "1"}


def _produce_to_a_new_topic(brokers, topic):
    p = ck.Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "message.timeout.ms": "60000"})
    delivered, failed = [], []
    for i in range(10):
        p.produce(topic, str(i).encode(),
                  on_delivery=lambda err, msg: (failed if err else delivered).append(err or msg.offset()))
    assert p.flush(90) == 0
    assert not failed, failed
    assert len(delivered) == 10
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    # Created with the cluster's defaults (num.partitions 3, replication factor 3).
    wait_for(lambda: len(partition_md(admin, topic)) == 3 and all(
        len(pm.replicas) == 3 for pm in partition_md(admin, topic).values()), what=f"{topic} with 3x3 replicas")


def test_a_producer_to_a_new_topic_delivers_in_a_zookeeper_cluster(zk_connect):
    with cluster(zk_connect, base=BASE) as brokers:
        _produce_to_a_new_topic(brokers, "auto-zk")


def test_a_producer_to_a_new_topic_delivers_in_an_embedded_controller_cluster():
    with embedded_cluster(base=BASE) as brokers:
        # Through a broker that is not the controller: it asks the controller.
        _produce_to_a_new_topic(brokers[1:], "auto-embedded")


def test_metadata_does_not_create_when_the_broker_forbids_it():
    with embedded_cluster(base=BASE, **{"auto.create.topics.enable": "false"}) as brokers:
        admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
        md = admin.list_topics("not-created", timeout=10)
        assert md.topics["not-created"].error is not None
        assert "not-created" not in brokers[0].broker.metadata_cache.topics
