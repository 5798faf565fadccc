"""Three brokers and a real ZooKeeper: a cluster forms (one controller
elected), topics are created with replication factor 3, confluent-kafka
produces with acks=all and reads everything back, and leadership moves when
the leader stops -- with nothing acknowledged lost."""
from __future__ import annotations

import threading
import time

import pytest

from .zkcluster import (
    AdminClient,
    NewTopic,
    bootstrap,
    ck,
    cluster,
    create_topic,
    partition_md,
    produce_numbers,
    wait_for,
)


def read_all(bs, topic, partitions, expect, timeout=30):
    c = ck.Consumer({"bootstrap.servers": bs, "group.id": "r", "enable.auto.commit": False})
    c.assign([ck.TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            got += [m for m in c.consume(num_messages=10000, timeout=0.5) if not m.error()]
        got += [m for m in c.consume(num_messages=10000, timeout=0.5) if not m.error()]
    finally:
        c.close()
    return got


def test_cluster_forms_replicates_and_serves_from_any_broker(zk_connect):
    with cluster(zk_connect) as bs:
        create_topic(bs, "orders", 3)
        produce_numbers(bs, "orders", 3000)
        got = read_all(str(bs[2]), "orders", 3, 3000)
        assert sorted(int(m.value()) for m in got) == list(range(3000))
        # Every replica holds the same log end offset for every partition.
        ends = {}
        for b in bs:
            for part in range(3):
                wait_for(lambda b=b, part=part: b.broker.log_manager.get_partition(
                    "orders", part).log_end_offset == b.broker.log_manager.get_partition(
                    "orders", part).high_watermark, what="follower caught up")
                ends.setdefault(part, set()).add(
                    b.broker.log_manager.get_partition("orders", part).log_end_offset)
        assert all(len(v) == 1 for v in ends.values()), ends
        assert sum(next(iter(v)) for v in ends.values()) == 3000


def test_a_non_controller_answers_not_controller_and_clients_find_the_controller(zk_connect):
    with cluster(zk_connect) as bs:
        others = [b for b in bs if not b.broker.controller.is_active]
        from pylog.client.wire import Connection
        from pylog.protocol.messages import CreateTopicsRequest as Q
        with Connection("127.0.0.1", others[0].port) as conn:
            resp = conn.request(Q(topics=[Q.CreatableTopic(name="direct", num_partitions=1,
                                                          replication_factor=1, assignments=[], configs=[])],
                                  timeout_ms=10000))
        assert resp.topics[0].error_code == 41   # NOT_CONTROLLER: nothing created here
        # AdminClient bootstrapped on a non-controller still gets the topic created:
        # Metadata names the controller, and CreateTopics goes there.
        create_topic(others[:1], "via-other", 2)
        # The offsets topic is the coordinators' to shape: other settings are refused.
        admin = AdminClient({"bootstrap.servers": bootstrap(bs)})
        with pytest.raises(ck.KafkaException, match="created by the group coordinators"):
            admin.create_topics([NewTopic("__consumer_offsets", 3, 1)])["__consumer_offsets"].result(20)


def test_producer_ids_are_unique_across_the_cluster(zk_connect):
    """Every broker answers InitProducerId (idempotent producers ask whichever
    broker they reach first), so the ids come from blocks claimed in ZooKeeper:
    two brokers handing out the same id would make a leader take one
    producer's batches for duplicates of another's and drop them."""
    from pylog.client.wire import Connection
    from pylog.protocol.messages import InitProducerIdRequest
    with cluster(zk_connect, n=2) as bs:
        ids = {}
        for b in bs:
            with Connection("127.0.0.1", b.port) as conn:
                for _ in range(3):
                    resp = conn.request(InitProducerIdRequest(transactional_id=None,
                                                              transaction_timeout_ms=60000),
                                        api_version=1)
                    assert resp.error_code == 0
                    ids.setdefault(resp.producer_id, []).append(b.broker.broker_id)
        assert len(ids) == 6, f"a producer id handed out twice: {ids}"


@pytest.mark.parametrize("controlled", [True, False], ids=["controlled-shutdown", "session-end"])
def test_leader_stop_moves_leadership_and_loses_nothing(zk_connect, controlled):
    with cluster(zk_connect, **{"controlled.shutdown.enable": str(controlled).lower()}) as bs:
        admin = create_topic(bs, "f", 1)
        acked, errors = [], []
        stop = threading.Event()

        def produce():
            p = ck.Producer({"bootstrap.servers": bootstrap(bs), "acks": "all", "enable.idempotence": True,
                             "linger.ms": 2, "message.timeout.ms": 60000})

            def cb(err, m):
                (errors if err else acked).append(err or int(m.value()))
            i = 0
            while not stop.is_set():
                p.produce("f", str(i).encode(), on_delivery=cb)
                p.poll(0)
                i += 1
                if i % 100 == 0:
                    time.sleep(0.005)
            assert p.flush(60) == 0
        t = threading.Thread(target=produce)
        t.start()
        try:
            wait_for(lambda: len(acked) > 2000, what="first acks")
            leader = partition_md(admin, "f")[0].leader
            victim = next(b for b in bs if b.broker.broker_id == leader)
            t0 = time.monotonic()
            victim.broker.stop_in_thread()
            survivors = [b for b in bs if b is not victim]
            admin2 = AdminClient({"bootstrap.servers": bootstrap(survivors)})
            wait_for(lambda: partition_md(admin2, "f").get(0) is not None
                     and partition_md(admin2, "f")[0].leader not in (-1, leader), what="a new leader")
            failover_s = time.monotonic() - t0
            n_before = len(acked)
            wait_for(lambda: len(acked) > n_before + 2000, what="acks after the failover")
        finally:
            stop.set()
            t.join(90)
        print(f"failover ({'controlled' if controlled else 'session end'}): new leader after "
              f"{failover_s * 1000:.0f} ms; {len(acked)} acknowledged")
        assert not t.is_alive()
        assert errors == []
        got = read_all(bootstrap(survivors), "f", 1, len(acked))
        values = [int(m.value()) for m in got]
        assert set(acked) <= set(values), f"{len(set(acked) - set(values))} acknowledged messages lost"
        assert len(values) == len(set(values)), "duplicates"
        assert [m.offset() for m in got] == list(range(len(got)))
