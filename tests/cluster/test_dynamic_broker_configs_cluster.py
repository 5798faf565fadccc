"""Dynamic broker configs in three-broker clusters (ZooKeeper and the embedded controller): a
change made through any broker reaches the controller (forwarded), is stored in its metadata
(/config/brokers/<default> and /config/brokers/<id> in ZooKeeper, as Kafka kept them) and is
applied on every broker it concerns: the cluster default everywhere, a per-broker one on that
broker only."""
from __future__ import annotations

import pytest

from pylog.client import Client
from pylog.testing import wait_until

from .zkcluster import bootstrap, cluster, create_topic, embedded_cluster

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

RESOURCE_BROKER = 4


@pytest.mark.parametrize("mode", ["zookeeper", "embedded"])
def test_a_change_through_any_broker_reaches_every_broker(request, mode):
    brokers = cluster(request.getfixturevalue("zk_connect")) if mode == "zookeeper" else embedded_cluster()
    with brokers as bs:
        ctl = next(b for b in bs if b.broker.controller is not None and b.broker.controller.is_active)
        other = next(b for b in bs if b is not ctl)
        # the cluster default, through a broker that is not the controller
        with Client(str(other)) as client:
            client.incremental_alter_configs(RESOURCE_BROKER, "", {"log.retention.ms": "600000",
                                                                   "max.connections": "5000"})
        wait_until(lambda: all(b.broker.config.retention_ms() == 600000
                               and b.broker.connection_quotas.max_connections == 5000 for b in bs),
                   what="the cluster default applied on every broker")

        # one broker's own: the admin client sends it to that broker, which forwards it
        admin = AdminClient({"bootstrap.servers": bootstrap(bs)})
        target = str(other.broker.broker_id)
        resource = ConfigResource(ResourceType.BROKER, target, incremental_configs=[
            ConfigEntry("log.retention.ms", "900000", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([resource])[resource].result(timeout=30)
        wait_until(lambda: other.broker.config.retention_ms() == 900000, what="the per-broker value applied")
        assert all(b.broker.config.retention_ms() == 600000 for b in bs if b is not other)

        for b in bs:
            r = ConfigResource(ResourceType.BROKER, str(b.broker.broker_id))
            entry = admin.describe_configs([r])[r].result(timeout=30)["log.retention.ms"]
            want = (("900000", ConfigSource.DYNAMIC_BROKER_CONFIG.value) if b is other
                    else ("600000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value))
            assert (entry.value, entry.source) == want

        # the controller's own elections follow the cluster default (no topic override)
        create_topic(bs, "unclean-default", 1, rf=3)
        assert not ctl.broker.controller._call(lambda: ctl.broker.controller._unclean_enabled("unclean-default"))
        with Client(str(other)) as client:
            client.incremental_alter_configs(RESOURCE_BROKER, "", {"unclean.leader.election.enable": "true"})
        assert ctl.broker.controller._call(lambda: ctl.broker.controller._unclean_enabled("unclean-default"))
        with Client(str(other)) as client:
            client.incremental_alter_configs(RESOURCE_BROKER, "", None, ["unclean.leader.election.enable"])

        stored = ctl.broker.metadata_store.broker_configs()
        assert stored == {"": {"log.retention.ms": "600000", "max.connections": "5000"},
                          target: {"log.retention.ms": "900000"}}
        if mode == "zookeeper":
            import json

            from kazoo.client import KazooClient
            zk = KazooClient(hosts=request.getfixturevalue("zk_connect"))
            zk.start(timeout=15)
            try:
                data, _ = zk.get("/config/brokers/<default>")
                assert json.loads(data)["config"] == {"log.retention.ms": "600000", "max.connections": "5000"}
            finally:
                zk.stop()
                zk.close()


def test_embedded_cluster_restarted_keeps_them(tmp_path):
    dirs = [str(tmp_path / f"b{i}") for i in range(1, 4)]
    with embedded_cluster(data_dirs=dirs) as bs:
        with Client(str(bs[2])) as client:
            client.incremental_alter_configs(RESOURCE_BROKER, "", {"log.retention.bytes": "5555555"})
        admin = AdminClient({"bootstrap.servers": bootstrap(bs)})
        resource = ConfigResource(ResourceType.BROKER, "2", incremental_configs=[
            ConfigEntry("log.segment.bytes", "3333333", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([resource])[resource].result(timeout=30)
        wait_until(lambda: bs[1].broker.config.get("log.segment.bytes") == 3333333, what="broker 2's own")
    with embedded_cluster(data_dirs=dirs) as bs:
        wait_until(lambda: all(b.broker.config.get("log.retention.bytes") == 5555555 for b in bs)
                   and bs[1].broker.config.get("log.segment.bytes") == 3333333, what="all of them back")
        assert [b.broker.config.get("log.segment.bytes") for b in (bs[0], bs[2])] == [1 << 30] * 2


def test_zookeeper_new_controller_keeps_them(zk_connect):
    with cluster(zk_connect) as bs:
        with Client(str(bs[0])) as client:
            client.incremental_alter_configs(RESOURCE_BROKER, "", {"log.retention.bytes": "7777777"})
        wait_until(lambda: all(b.broker.config.get("log.retention.bytes") == 7777777 for b in bs),
                   what="the default everywhere")
        old = next(b for b in bs if b.broker.controller.is_active)
        old.broker.stop_in_thread()
        survivors = [b for b in bs if b is not old]
        new = wait_until(lambda: next((b for b in survivors if b.broker.controller.is_active), None),
                         what="a new controller")
        assert new.broker.controller.broker_configs("") == {"log.retention.bytes": "7777777"}
        with Client(str(new)) as client:
            client.incremental_alter_configs(RESOURCE_BROKER, "", None, ["log.retention.bytes"])
        wait_until(lambda: all(b.broker.config.get("log.retention.bytes") == -1 for b in survivors),
                   what="the deletion through the new controller")


# -- the controller itself (a real store, recorded channel: tests/cluster/test_controller.py's harness) --

from .test_controller import alter_partition_request, cluster as controller_cluster, open_store  # noqa: E402,F401


def test_a_dynamic_unclean_default_elects_offline_partitions_at_once(controller_cluster):
    """Kafka's enableDefaultUncleanLeaderElection: the partition whose only live replica is out of
    sync gets it as leader when the cluster default turns unclean election on, without waiting
    for a broker to come or go."""
    c = controller_cluster()
    c.controller.create_topic("t", 1, 2, replica_assignment={0: [1, 2]})
    cur = c.admin.partition_state("t", 0)
    c.controller.alter_partition(alter_partition_request(1, "t", 0, cur.leader_epoch, cur.partition_epoch, [1]))
    c.kill_broker(1)
    wait_until(lambda: c.admin.partition_state("t", 0).leader == -1, what="offline")
    c.controller.alter_broker_configs("", {"unclean.leader.election.enable": "true"})
    s = c.admin.partition_state("t", 0)
    assert s.leader == 2 and s.isr == [2]
    assert c.admin.broker_configs() == {"": {"unclean.leader.election.enable": "true"}}
