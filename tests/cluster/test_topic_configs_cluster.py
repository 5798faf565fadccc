"""Topic config overrides in a cluster are the controller's: given at
creation or changed later through any broker, every replica applies them (a
topic's min.insync.replicas is what its leader enforces) and every broker
describes them -- with ZooKeeper and with the embedded controller."""
from __future__ import annotations

import contextlib

import pytest
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from .zkcluster import (
    AdminClient,
    NewTopic,
    bootstrap,
    ck,
    cluster,
    embedded_cluster,
    partition_md,
    wait_for,
)


@contextlib.contextmanager
def three_brokers(request, mode):
    if mode == "zookeeper":
        with cluster(request.getfixturevalue("zk_connect")) as bs:
            yield bs
    else:
        with embedded_cluster() as bs:
            yield bs


def described(admin, topic, key):
    res = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    entry = next(iter(res.values())).result(20)[key]
    return entry.value, entry.source


def overrides_everywhere(bs, topic):
    return [b.broker.log_manager.topic_config(topic).overrides for b in bs]


@pytest.mark.parametrize("mode", ["zookeeper", "embedded"])
def test_overrides_reach_every_replica_and_every_broker(request, mode):
    with three_brokers(request, mode) as bs:
        admin = AdminClient({"bootstrap.servers": bootstrap(bs)})
        admin.create_topics([NewTopic("c", 1, 3, config={"min.insync.replicas": "3",
                                                         "retention.ms": "3600000"})])["c"].result(20)
        want = {"min.insync.replicas": "3", "retention.ms": "3600000"}
        wait_for(lambda: len(partition_md(admin, "c")) == 1 and partition_md(admin, "c")[0].leader >= 0,
                 what="a leader")
        wait_for(lambda: overrides_everywhere(bs, "c") == [want] * 3, what="the overrides on every replica")
        for b in bs:   # each broker answers from the controller's overrides
            value, source = described(AdminClient({"bootstrap.servers": str(b)}), "c", "min.insync.replicas")
            assert value == "3" and int(getattr(source, "value", source)) == 1   # DYNAMIC_TOPIC_CONFIG
        p = ck.Producer({"bootstrap.servers": bootstrap(bs), "acks": "all"})
        p.produce("c", b"with three in sync")
        assert p.flush(20) == 0

        # Changed through a broker that is not the controller: forwarded.
        ctl_id = next(b.broker.broker_id for b in bs if b.broker.controller is not None
                      and b.broker.controller.is_active)
        other = next(b for b in bs if b.broker.broker_id != ctl_id)
        via = AdminClient({"bootstrap.servers": str(other)})
        res = ConfigResource(ResourceType.TOPIC, "c", incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("min.insync.replicas", None, incremental_operation=AlterConfigOpType.DELETE)])
        for f in via.incremental_alter_configs([res]).values():
            f.result(20)
        wait_for(lambda: overrides_everywhere(bs, "c") == [{"retention.ms": "7200000"}] * 3,
                 what="the changed overrides on every replica")
        assert described(via, "c", "retention.ms")[0] == "7200000"
        assert described(via, "c", "min.insync.replicas")[0] == "2"    # the brokers' default again
        # A bad value is refused by whoever receives it; nothing changes.
        bad = ConfigResource(ResourceType.TOPIC, "c", incremental_configs=[
            ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
        with pytest.raises(ck.KafkaException):
            for f in via.incremental_alter_configs([bad]).values():
                f.result(20)
        assert overrides_everywhere(bs, "c") == [{"retention.ms": "7200000"}] * 3


def test_a_topics_min_insync_replicas_is_what_its_leader_enforces(zk_connect):
    """min.insync.replicas=3 on the topic (the brokers' default is 2): with one
    follower stopped the leader refuses acks=all writes once the ISR shrinks."""
    with cluster(zk_connect) as bs:
        admin = AdminClient({"bootstrap.servers": bootstrap(bs)})
        admin.create_topics([NewTopic("strict", 1, 3, config={"min.insync.replicas": "3"})])["strict"].result(20)
        wait_for(lambda: len(partition_md(admin, "strict")) == 1 and
                 len(partition_md(admin, "strict")[0].isrs) == 3, what="a full ISR")
        leader = partition_md(admin, "strict")[0].leader
        victim = next(b for b in bs if b.broker.broker_id != leader and
                      not (b.broker.controller is not None and b.broker.controller.is_active))
        victim.broker.stop_in_thread()
        survivors = [b for b in bs if b is not victim]
        admin2 = AdminClient({"bootstrap.servers": bootstrap(survivors)})
        wait_for(lambda: len(partition_md(admin2, "strict")[0].isrs) == 2, what="the ISR shrunk to 2")
        errors = []
        p = ck.Producer({"bootstrap.servers": bootstrap(survivors), "acks": "all", "retries": 0,
                         "message.timeout.ms": 5000})
        p.produce("strict", b"x", on_delivery=lambda err, msg: errors.append(err))
        p.flush(20)
        assert len(errors) == 1 and errors[0] is not None
        assert errors[0].code() in (ck.KafkaError.NOT_ENOUGH_REPLICAS,
                                    ck.KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND), errors
