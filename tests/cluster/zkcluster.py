"""Helpers for tests of in-process brokers forming a cluster, over ZooKeeper
(``cluster``) or around the embedded controller (``embedded_cluster``)."""
from __future__ import annotations

import contextlib
import time

import pytest

from pylog.testing import running_broker

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

CLUSTER = {
    "replica.lag.time.max.ms": "2000",
    "replica.fetch.wait.max.ms": "100",
    "zookeeper.session.timeout.ms": "4000",
    "min.insync.replicas": "2",
    "default.replication.factor": "3",
    "num.partitions": "3",
    "auto.leader.rebalance.enable": "false",
}


@contextlib.contextmanager
def cluster(zk_connect, n=3, base=None, **extra):
    with contextlib.ExitStack() as stack:
        brokers = [stack.enter_context(running_broker(config={
            "broker.id": str(i), "zookeeper.connect": zk_connect, **(base or CLUSTER), **extra}))
            for i in range(1, n + 1)]
        wait_for(lambda: sum(1 for b in brokers if b.broker.controller.is_active) == 1,
                 what="one active controller")
        active = next(b.broker.controller for b in brokers if b.broker.controller.is_active)
        wait_for(lambda: active.live_broker_ids() == set(range(1, n + 1)), what="every broker registered")
        wait_until_every_broker_knows_the_controller(brokers, active.broker_id)
        yield brokers


@contextlib.contextmanager
def embedded_cluster(n=3, base=None, data_dirs=None, **extra):
    """n brokers without ZooKeeper: broker 1 is the controller, the others
    register with it on its listener."""
    with contextlib.ExitStack() as stack:
        cfg = {**(base or CLUSTER), "pylog.controller.id": "1", **extra}
        dirs = data_dirs or [None] * n
        first = stack.enter_context(running_broker(data_dir=dirs[0], config={"broker.id": "1", **cfg}))
        cfg["pylog.controller.listener"] = str(first)
        brokers = [first] + [stack.enter_context(running_broker(data_dir=dirs[i - 1], config={
            "broker.id": str(i), **cfg})) for i in range(2, n + 1)]
        ctl = first.broker.controller
        wait_for(lambda: ctl.is_active and ctl.live_broker_ids() == set(range(1, n + 1)),
                 what="every broker registered with the embedded controller")
        wait_until_every_broker_knows_the_controller(brokers, 1)
        yield brokers


def wait_until_every_broker_knows_the_controller(brokers, controller_id):
    """The controller's UpdateMetadata reached every broker (its requests go
    out on per-broker threads, after registration is seen)."""
    wait_for(lambda: all(b.broker.metadata_cache.controller_id == controller_id for b in brokers),
             what="every broker's metadata naming the controller")


def wait_for(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def bootstrap(brokers):
    return ",".join(str(b) for b in brokers)


def partition_md(admin, topic):
    md = admin.list_topics(topic, timeout=10).topics.get(topic)
    return {} if md is None or md.error else md.partitions


def create_topic(brokers, name, partitions, rf=3):
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    admin.create_topics([NewTopic(name, partitions, rf)])[name].result(20)
    wait_for(lambda: len(partition_md(admin, name)) == partitions and all(
        p.leader >= 0 and len(p.isrs) == rf for p in partition_md(admin, name).values()),
        what=f"{name}: leaders and full ISRs")
    return admin


def produce_numbers(brokers, topic, n, keys=7):
    """0..n-1 as values (keyed i % keys) with an idempotent acks=all producer."""
    p = ck.Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "enable.idempotence": True,
                     "linger.ms": 5})
    for i in range(n):
        p.produce(topic, str(i).encode(), key=str(i % keys).encode())
    assert p.flush(30) == 0
