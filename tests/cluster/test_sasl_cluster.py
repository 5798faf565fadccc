"""Three brokers over ZooKeeper whose only listener is SASL_PLAINTEXT: replica
fetchers, the controller's channels and forwarded requests authenticate as
the JAAS user of the inter-broker mechanism (issue 19). A record acknowledged
with acks=all survives its leader's death; a SCRAM user created through one
broker authenticates on the others (credentials live in ZooKeeper)."""
from __future__ import annotations

import time

import pytest

from pylog.broker.sasl import ClientCredentials
from pylog.client import Client
from pylog.testing import SASL_ADMIN, sasl_config

from .zkcluster import CLUSTER, bootstrap, cluster, partition_md, wait_for

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import admin as ck_admin  # noqa: E402

USERS = {"alice": "alice-secret"}


@pytest.mark.parametrize("protocol, inter_broker", [("SASL_PLAINTEXT", "PLAIN"),
                                                   ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
                                                   ("SASL_SSL", "SCRAM-SHA-256")])
def test_sasl_cluster_replicates_and_survives_a_broker(zk_connect, tmp_path, protocol, inter_broker):
    mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    base = {**CLUSTER, **sasl_config(USERS, mechanisms, protocol=protocol),
            "sasl.mechanism.inter.broker.protocol": inter_broker, "security.inter.broker.protocol": protocol}
    tls = {}
    if protocol == "SASL_SSL":
        pytest.importorskip("cryptography")
        from pylog.testing import TestCertificates
        certs = TestCertificates(tmp_path / "certs")
        base.update({k: v for k, v in certs.broker_config("SASL_SSL").items() if k.startswith("ssl.")})
        base["listener.security.protocol.map"] = "SASL_SSL:SASL_SSL"
        tls = {"ssl.ca.location": certs.ca}
    if inter_broker.startswith("SCRAM"):
        # The brokers' own SCRAM credential must exist before they talk:
        # Kafka's way is kafka-configs against ZooKeeper before the start.
        from kazoo.client import KazooClient

        from pylog.broker.sasl_scram import ScramCredential
        import json
        zk = KazooClient(hosts=zk_connect)
        zk.start(timeout=15)
        try:
            text = ScramCredential.from_password(inter_broker, SASL_ADMIN[1], 4096).to_text()
            zk.create(f"/config/users/{SASL_ADMIN[0]}", json.dumps(
                {"version": 1, "config": {inter_broker: text}}).encode(), makepath=True)
        finally:
            zk.stop()
            zk.close()
    with cluster(zk_connect, base=base) as bs:
        conf = {"bootstrap.servers": bootstrap(bs), "security.protocol": protocol,
                "sasl.mechanism": "PLAIN", "sasl.username": "alice", "sasl.password": "alice-secret", **tls}
        admin = ck_admin.AdminClient(conf)
        for f in admin.create_topics([ck_admin.NewTopic("s", 1, 3)]).values():
            f.result(timeout=30)
        wait_for(lambda: len(partition_md(admin, "s").get(0, None).isrs or []) == 3
                 if partition_md(admin, "s").get(0) else False, timeout=60, what="three in-sync replicas")

        p = ck.Producer({**conf, "acks": "all", "enable.idempotence": True})
        for i in range(200):
            p.produce("s", str(i).encode())
        assert p.flush(60) == 0

        # a SCRAM user created through the cluster is known by every broker
        carol = ck_admin.UserScramCredentialUpsertion(
            "carol", ck_admin.ScramCredentialInfo(ck_admin.ScramMechanism.SCRAM_SHA_256, 4096), b"carol-secret")
        for f in admin.alter_user_scram_credentials([carol]).values():
            f.result(timeout=30)
        for b in bs:
            if protocol == "SASL_PLAINTEXT":
                with Client(str(b), sasl=ClientCredentials("SCRAM-SHA-256", "carol", "carol-secret")) as c:
                    assert len(c.metadata(None).brokers) == 3
            else:   # pylog's client has no TLS: librdkafka, to this broker alone
                md = ck_admin.AdminClient({**conf, "bootstrap.servers": str(b), "sasl.mechanism": "SCRAM-SHA-256",
                                           "sasl.username": "carol", "sasl.password": "carol-secret"}
                                          ).list_topics(timeout=30)
                assert len(md.brokers) == 3

        leader = partition_md(admin, "s")[0].leader
        victim = next(b for b in bs if b.broker.broker_id == leader)
        victim.broker.stop_in_thread()
        survivors = [b for b in bs if b is not victim]
        conf2 = {**conf, "bootstrap.servers": bootstrap(survivors)}
        admin2 = ck_admin.AdminClient(conf2)
        wait_for(lambda: partition_md(admin2, "s").get(0) is not None
                 and partition_md(admin2, "s")[0].leader not in (-1, leader), timeout=60, what="a new leader")
        p2 = ck.Producer({**conf2, "acks": "all"})
        for i in range(200, 300):
            p2.produce("s", str(i).encode())
        assert p2.flush(60) == 0

        c = ck.Consumer({**conf2, "group.id": "r", "enable.auto.commit": False})
        c.assign([ck.TopicPartition("s", 0, 0)])
        got = []
        deadline = time.monotonic() + 60
        try:
            while len(got) < 300 and time.monotonic() < deadline:
                got += [int(m.value()) for m in c.consume(num_messages=1000, timeout=0.5) if not m.error()]
        finally:
            c.close()
        assert got == list(range(300))
