"""Client quotas in a ZooKeeper cluster are stored as Kafka stores them
(/config/clients/<id>, /config/users/<user>/clients/<id>, with a change
notification under /config/changes), readable through any broker; the
controller mutation quota enforced by the active controller (KIP-599), the
other client quotas by every broker, whichever broker altered them."""
from __future__ import annotations

import json

from pylog.client.wire import Connection
from pylog.protocol import messages as m

from .zkcluster import cluster

THROTTLING_QUOTA_EXCEEDED = 89


def test_quotas_live_in_zookeeper_and_the_controller_enforces_them(zk_connect):
    with cluster(zk_connect, n=2, **{"controller.quota.window.num": "2",
                                     "controller.quota.window.size.seconds": "1"}) as bs:
        active = next(b for b in bs if b.broker.controller.is_active)
        other = next(b for b in bs if b is not active)
        Q = m.AlterClientQuotasRequest
        host, port = str(other).rsplit(":", 1)
        with Connection(host, int(port), client_id="admin", timeout=30) as c:
            r = c.request(Q(validate_only=False, entries=[
                Q.EntryData(entity=[Q.EntityData(entity_type="client-id", entity_name="storm")],
                            ops=[Q.OpData(key="controller_mutation_rate", value=1.0, remove=False)]),
                Q.EntryData(entity=[Q.EntityData(entity_type="user", entity_name="bob"),
                                    Q.EntityData(entity_type="client-id", entity_name=None)],
                            ops=[Q.OpData(key="controller_mutation_rate", value=3.0, remove=False)])]),
                api_version=1)
            assert [e.error_code for e in r.entries] == [0, 0]
        zk = active.broker.metadata_store.client
        assert json.loads(zk.get("/config/clients/storm")[0]) == {
            "version": 1, "config": {"controller_mutation_rate": "1.0"}}
        assert json.loads(zk.get("/config/users/bob/clients/<default>")[0])["config"] == {
            "controller_mutation_rate": "3.0"}
        changes = [json.loads(zk.get(f"/config/changes/{n}")[0]) for n in sorted(zk.get_children("/config/changes"))]
        assert {"version": 2, "entity_path": "clients/storm"} in changes
        T = m.CreateTopicsRequest
        host, port = str(active).rsplit(":", 1)
        with Connection(host, int(port), client_id="storm", timeout=60) as c:
            r = c.request(T(timeout_ms=30000, validate_only=False, topics=[
                T.CreatableTopic(name=f"z{i}", num_partitions=1, replication_factor=2, assignments=[], configs=[])
                for i in range(8)]), api_version=6)
        codes = [t.error_code for t in r.topics]
        assert 0 in codes and THROTTLING_QUOTA_EXCEEDED in codes and r.throttle_time_ms > 0


def test_embedded_cluster_brokers_forward_client_quotas_to_the_controller():
    """A broker of the embedded controller holds no store: it forwards
    AlterClientQuotas / DescribeClientQuotas to the controller, whose store
    keeps them."""
    from .zkcluster import embedded_cluster
    with embedded_cluster(n=2) as bs:
        Q, D = m.AlterClientQuotasRequest, m.DescribeClientQuotasRequest
        host, port = str(bs[1]).rsplit(":", 1)
        with Connection(host, int(port), client_id="admin", timeout=30) as c:
            r = c.request(Q(validate_only=False, entries=[Q.EntryData(
                entity=[Q.EntityData(entity_type="user", entity_name="carol")],
                ops=[Q.OpData(key="controller_mutation_rate", value=4.0, remove=False)])]), api_version=1)
            assert [e.error_code for e in r.entries] == [0]
            d = c.request(D(strict=True, components=[D.ComponentData(entity_type="user", match_type=0,
                                                                     match="carol")]), api_version=1)
        assert d.error_code == 0
        assert [[(v.key, v.value) for v in e.values] for e in d.entries] == [[("controller_mutation_rate", 4.0)]]
        assert bs[0].broker.metadata_store.client_quotas() == {"users/carol": {"controller_mutation_rate": "4.0"}}


def _enforced_everywhere(bs, client_id):
    """Every broker of the cluster holds the producer quota of client_id,
    whichever broker it was altered through (the table each broker reads:
    ZooKeeper, or the controller's answer to DescribeClientQuotas)."""
    from pylog.testing import wait_until
    for b in bs:
        wait_until(lambda b=b: b.broker.client_quotas._quota("producer_byte_rate", "User:ANONYMOUS",
                                                               client_id)[0] == 10000.0,
                   f"broker {b.broker.broker_id} enforces the quota")


def _alter_producer_quota(b, client_id):
    Q = m.AlterClientQuotasRequest
    host, port = str(b).rsplit(":", 1)
    with Connection(host, int(port), client_id="admin", timeout=30) as c:
        r = c.request(Q(validate_only=False, entries=[Q.EntryData(
            entity=[Q.EntityData(entity_type="client-id", entity_name=client_id)],
            ops=[Q.OpData(key="producer_byte_rate", value=10000.0, remove=False)])]), api_version=1)
    assert [e.error_code for e in r.entries] == [0]


def test_every_zookeeper_broker_enforces_a_quota_altered_through_another(zk_connect):
    with cluster(zk_connect, n=2) as bs:
        _alter_producer_quota(bs[0], "zk-slow")
        _enforced_everywhere(bs, "zk-slow")


def test_embedded_cluster_brokers_enforce_the_controllers_quotas():
    from .zkcluster import embedded_cluster
    with embedded_cluster(n=2) as bs:
        _alter_producer_quota(bs[1], "emb-slow")   # forwarded to the controller's store
        _enforced_everywhere(bs, "emb-slow")
        assert bs[1].broker.metadata_store is None
