"""ACLs are cluster metadata: created through any broker, stored by the
controller's store (ZooKeeper: Kafka's /kafka-acl trees and change
notifications), and seen by every broker's authorizer. The brokers talk as
User:ANONYMOUS, so it is a super user here, as Kafka's brokers are."""
from __future__ import annotations

import json

from cluster.conftest import zk_connect, zookeeper  # noqa: F401  (fixtures)
from cluster.zkcluster import cluster, embedded_cluster

from pylog.broker.authorizer import READ, TOPIC
from pylog.testing import wait_until

from .conftest import (ANON, STANDARD_AUTHORIZER, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                       ResourcePatternType, ResourceType, binding, grant)

AUTHZ = {"authorizer.class.name": STANDARD_AUTHORIZER, "super.users": ANON}
ALICE = "User:alice"


def _everywhere(brokers, decision):
    return all(b.broker.authorizer.authorize(ALICE, "10.0.0.1", READ, TOPIC, "orders-eu") is decision
               for b in brokers)


def _lifecycle(brokers):
    lit = binding(ResourceType.TOPIC, "orders-eu", AclOperation.READ, principal=ALICE)
    pre = binding(ResourceType.TOPIC, "orders-", AclOperation.READ, AclPermissionType.DENY, principal=ALICE,
                  pattern=ResourcePatternType.PREFIXED)
    grant(AdminClient({"bootstrap.servers": str(brokers[1])}), lit)
    wait_until(lambda: _everywhere(brokers, True), what="every broker allowing alice")
    grant(AdminClient({"bootstrap.servers": str(brokers[2])}), pre)
    wait_until(lambda: _everywhere(brokers, False), what="every broker applying the prefixed deny")
    admin = AdminClient({"bootstrap.servers": str(brokers[0])})
    [f] = admin.delete_acls([AclBindingFilter(ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, None,
                                              None, AclOperation.ANY, AclPermissionType.ANY)]).values()
    assert f.result() == [pre]
    wait_until(lambda: _everywhere(brokers, True), what="every broker without the deny")
    return lit, pre


def test_acls_replicate_through_zookeeper_as_kafka_stores_them(zk_connect):  # noqa: F811
    with cluster(zk_connect, n=3, **AUTHZ) as bs:
        _lifecycle(bs)
        zk = bs[0].broker.metadata_store.client
        assert json.loads(zk.get("/kafka-acl/Topic/orders-eu")[0]) == {"version": 1, "acls": [
            {"principal": ALICE, "permissionType": "Allow", "operation": "Read", "host": "*"}]}
        assert zk.exists("/kafka-acl-extended/prefixed/Topic/orders-") is None   # deleted with its last ACL
        notes = [zk.get(f"/kafka-acl-changes/{c}")[0] for c in zk.get_children("/kafka-acl-changes")]
        assert b"Topic:orders-eu" in notes
        notes = [json.loads(zk.get(f"/kafka-acl-extended-changes/{c}")[0])
                 for c in zk.get_children("/kafka-acl-extended-changes")]
        assert {"version": 1, "resourceType": "Topic", "name": "orders-", "patternType": "Prefixed"} in notes


def test_acls_reach_every_broker_of_the_embedded_controller():
    with embedded_cluster(n=3, **AUTHZ) as bs:
        lit, _ = _lifecycle(bs)
        # asked of a broker without the store: the same set
        admin = AdminClient({"bootstrap.servers": str(bs[2])})
        got = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                                   AclOperation.ANY, AclPermissionType.ANY)).result()
        assert got == [lit]
