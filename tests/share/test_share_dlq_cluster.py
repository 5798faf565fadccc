"""Dead-letter topics (KIP-1191) in a 3-broker cluster: the dead-letter
partition led by another broker than the share-partition's leader, so the
dead letters go over the inter-broker listener as a Produce with acks=all
(Kafka's ShareGroupDLQStateManager), with an unmodified
confluent_kafka.ShareConsumer rejecting records."""
from __future__ import annotations

import time

from confluent_kafka import AcknowledgeType
from confluent_kafka.admin import AdminClient, NewTopic

from tests.cluster.zkcluster import bootstrap, embedded_cluster, wait_for

from .test_share_cluster import BASE, TIMEOUT, consumer, leaders, produce
from .test_share_dlq import read_topic
from .wire import set_group_configs

REJECTED = b"Offset rejected by client."


def create(brokers, name, assignment, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    admin.create_topics([NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment,
                                  config=config or {})])[name].result(30)
    # Every broker's metadata has the leaders and full ISRs (the share-partition
    # leader looks the dead-letter partition's leader up in its own cache).
    wait_for(lambda: all(leaders(b, name) == {i: r[0] for i, r in enumerate(assignment)}
                         and all(len(b.broker.metadata_cache.topics[name][i].isr) == 3
                                 for i in range(len(assignment))) for b in brokers),
             TIMEOUT, f"{name}'s leaders and full ISRs")


def test_a_dead_letter_goes_to_a_partition_led_by_another_broker():
    with embedded_cluster(3, base=BASE) as brokers:
        topic, group, dlq = "sdc-src", "sdc-g", "dlq.sdc"
        create(brokers, topic, [[1, 2, 3]])
        # The dead-letter partition led by broker 2, not by the share-partition's leader 1.
        create(brokers, dlq, [[2, 3, 1]], {"errors.deadletterqueue.group.enable": "true"})
        set_group_configs(brokers[0], group, share_auto_offset_reset="earliest",
                          errors_deadletterqueue_topic_name=dlq)
        produce(brokers, topic, range(6), partition=0)
        c = consumer(brokers, group, share_acknowledgement_mode="explicit")
        c.subscribe([topic])
        got = []

        def decide(cons, msg):
            got.append((msg.offset(), msg.delivery_count()))
            cons.acknowledge(msg, AcknowledgeType.REJECT if msg.offset() in (1, 4) else AcknowledgeType.ACCEPT)
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 6:
            assert time.monotonic() < deadline, f"deliveries so far {got}"
            for msg in c.poll(0.2):
                assert msg.error() is None, msg.error()
                decide(c, msg)
        c.commit_sync()
        letters = read_topic(bootstrap(brokers), dlq, 2, then_s=2)  # one dead letter per rejected offset
        assert len(letters) == 2
        for msg, offset in zip(letters, (1, 4)):
            assert msg.headers() == [("__dlq.errors.topic", topic.encode()), ("__dlq.errors.partition", b"0"),
                                     ("__dlq.errors.offset", str(offset).encode()),
                                     ("__dlq.errors.group", group.encode()),
                                     ("__dlq.errors.delivery.count", b"1"), ("__dlq.errors.message", REJECTED)]
            assert msg.key() is None and msg.value() is None
        # Written on broker 2's partition by broker 1's share-partition, then archived:
        # counted as written, none failed, and the share-partition's start offset past them.
        sp_leader = brokers[0].broker
        assert sp_leader.broker_id == 1 and leaders(brokers[0], topic) == {0: 1} and leaders(brokers[0], dlq) == {0: 2}
        tid = sp_leader.metadata_cache.topic_ids[topic]
        wait_for(lambda: sp_leader.share.manager.dlq.stats(group, tid, 0) == (2, 0), TIMEOUT,
                 "two dead letters counted as written on broker 1")
        # The rejected records never come back; the accepted ones neither.
        end = time.monotonic() + 3
        while time.monotonic() < end:
            again = [(msg.offset(), msg.delivery_count()) for msg in c.poll(0.2)]
            got.extend(again)
        c.close()
        assert sorted(got) == [(i, 1) for i in range(6)]


def test_a_dead_letter_follows_its_partitions_new_leader():
    with embedded_cluster(3, base=BASE) as brokers:
        topic, group, dlq = "sdc-move", "sdc-move-g", "dlq.sdc-move"
        create(brokers, topic, [[1, 2, 3]])
        create(brokers, dlq, [[2, 3, 1]], {"errors.deadletterqueue.group.enable": "true"})
        set_group_configs(brokers[0], group, share_auto_offset_reset="earliest",
                          errors_deadletterqueue_topic_name=dlq)
        produce(brokers, topic, range(4), partition=0)
        c = consumer(brokers, group, share_acknowledgement_mode="explicit", max_poll_records=1)
        c.subscribe([topic])
        got = []

        def reject_until(n):
            deadline = time.monotonic() + TIMEOUT
            while len(got) < n:
                assert time.monotonic() < deadline, f"deliveries so far {got}"
                for msg in c.poll(0.2):
                    assert msg.error() is None, msg.error()
                    got.append((msg.offset(), msg.delivery_count()))
                    c.acknowledge(msg, AcknowledgeType.REJECT)
            c.commit_sync()
        sp_leader = brokers[0].broker
        tid = sp_leader.metadata_cache.topic_ids[topic]
        reject_until(1)
        # The first dead letter went to broker 2 (broker 1 keeps a connection to it).
        wait_for(lambda: sp_leader.share.manager.dlq.stats(group, tid, 0)[0] >= 1, TIMEOUT, "a dead letter written")
        brokers[1].broker.stop_in_thread()
        wait_for(lambda: leaders(brokers[0], dlq)[0] in (1, 3), TIMEOUT, "a new leader of the dead-letter partition")
        reject_until(4)
        wait_for(lambda: sp_leader.share.manager.dlq.stats(group, tid, 0) == (4, 0), TIMEOUT,
                 "every dead letter written, none failed")
        c.close()
        letters = read_topic(bootstrap([brokers[0], brokers[2]]), dlq, 4, then_s=2)
        assert sorted(int(dict(msg.headers())["__dlq.errors.offset"]) for msg in letters) == [0, 1, 2, 3]
        assert sorted(got) == [(i, 1) for i in range(4)]
