"""Inter-broker TLS: three brokers on ZooKeeper with one SSL listener each
(security.inter.broker.protocol=SSL, ssl.client.auth=required), so replica
fetchers, the controller's requests, AlterPartition and the rest reach the
other brokers only through TLS, each presenting its own key store as its
client certificate. Data produced with acks=all survives the loss of the
leader."""
from __future__ import annotations

import pytest

from pylog.testing import TestCertificates, wait_until

from cluster.conftest import zk_connect, zookeeper  # noqa: F401  (fixtures)
from cluster.zkcluster import cluster, ck, embedded_cluster, partition_md

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

pytest.importorskip("cryptography")

BROKER_PRINCIPAL = "User:CN=broker,OU=test,O=pylog"


@pytest.mark.parametrize("mode", ["zookeeper", "embedded"])
def test_three_brokers_replicate_over_mtls_and_survive_a_leader_loss(mode, request, tmp_path):
    certs = TestCertificates(tmp_path / "certs")
    cert, key, _ = certs.issue("app")
    client = {"security.protocol": "SSL", "ssl.ca.location": certs.ca,
              "ssl.certificate.location": cert, "ssl.key.location": key}
    tls = {**certs.broker_config(client_auth="required"), "security.inter.broker.protocol": "SSL"}
    del tls["listener.security.protocol.map"]   # Kafka's default map has SSL:SSL
    if mode == "zookeeper":
        brokers = cluster(request.getfixturevalue("zk_connect"), **tls)
    else:
        # the other brokers register with broker 1's controller over TLS too
        brokers = embedded_cluster(**tls)
    with brokers as bs:
        boot = ",".join(str(b) for b in bs)
        admin = AdminClient({"bootstrap.servers": boot, **client})
        # led by broker 2: in the embedded mode broker 1 is the controller, which is not highly available
        admin.create_topics([NewTopic("secure", num_partitions=1, replica_assignment=[[2, 3, 1]])])["secure"].result(60)
        wait_until(lambda: len((partition_md(admin, "secure").get(0) or _NoIsr).isrs) == 3, "3 in-sync replicas")
        # the followers' fetchers (and the controller's channels) are TLS
        # connections authenticated by the brokers' own certificate
        leader_id = partition_md(admin, "secure")[0].leader
        leader = next(b for b in bs if b.broker.broker_id == leader_id)
        wait_until(lambda: sum(1 for c in leader.broker.server.connections
                               if c.principal == BROKER_PRINCIPAL and not c.closed) >= 2,
                   "the two followers' fetchers connected with the broker certificate")

        p = ck.Producer({"bootstrap.servers": boot, "acks": "all", "enable.idempotence": True, **client})
        for i in range(500):
            p.produce("secure", b"%d" % i)
        assert p.flush(60) == 0

        leader.broker.stop_in_thread()
        survivors = [b for b in bs if b is not leader]
        boot2 = ",".join(str(b) for b in survivors)
        admin2 = AdminClient({"bootstrap.servers": boot2, **client})
        wait_until(lambda: (partition_md(admin2, "secure").get(0) or _NoLeader).leader not in (-1, leader_id),
                   "a new leader among the survivors")
        # read by assignment: the test's __consumer_offsets has one replica,
        # which may have been on the stopped broker
        c = ck.Consumer({"bootstrap.servers": boot2, "group.id": "g-secure", "enable.auto.commit": False,
                         **client})
        c.assign([ck.TopicPartition("secure", 0, ck.OFFSET_BEGINNING)])
        got = []
        try:
            def more():
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    got.append(int(m.value()))
                return len(got) >= 500
            wait_until(more, "every acknowledged record from the new leader")
        finally:
            c.close()
        assert sorted(got) == list(range(500))


class _NoIsr:
    isrs = ()


class _NoLeader:
    leader = -1
