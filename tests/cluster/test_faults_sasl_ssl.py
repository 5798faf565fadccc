"""test_faults.py's replication fault scenarios on a secured cluster (issue 19).

Each broker's only listener is SASL_SSL, and it is the inter-broker one: the
replica fetchers, the controller's LeaderAndIsr / UpdateMetadata / StopReplica
channels, AlterPartition-style ISR changes and controlled shutdown all go
through TLS and SCRAM-SHA-512 as User:admin. The authorizer is on with no ACL
for User:admin, so those requests pass only because it is in super.users
(CLUSTER_ACTION, as Kafka asks of them). The test's clients (confluent-kafka
producer, consumer and admin; pylog's Connection for the watcher and the raw
produces) connect over SASL_SSL as User:alice, allowed only what ACLs give it.

The scenarios are the ones that exercise the inter-broker paths, each run with
the same bodies as in test_faults.py: leader SIGKILL (unclean restart,
follower catch-up) and SIGTERM (controlled shutdown, clean restart), controller
failover, a paused leader fenced when it resumes, and the ISR shrinking to the
leader and growing back (NOT_ENOUGH_REPLICAS).
"""
from __future__ import annotations

import ssl

import pytest

from pylog.broker.sasl import ClientCredentials
from pylog.testing import SASL_ADMIN, sasl_config

from .test_faults import (  # noqa: F401  (the fixtures and scenarios collected here again)
    TOPIC,
    Plaintext,
    cluster,
    load,
    test_a_paused_leader_is_fenced_when_it_resumes,
    test_acks_all_with_only_the_leader_in_sync_is_not_enough_replicas,
    test_killing_the_controller_loses_nothing,
    test_killing_the_leader_repeatedly_loses_nothing,
)

pytest.importorskip("cryptography")

MECHANISM = "SCRAM-SHA-512"
CLIENT = ("alice", "alice-secret")
AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"


class SaslSsl(Plaintext):
    name = "SASL_SSL"

    def __init__(self, directory):
        from pylog.testing import TestCertificates
        certs = TestCertificates(directory)
        tls = certs.broker_config("SASL_SSL")
        self.broker_config = {
            **sasl_config({}, (MECHANISM,), protocol="SASL_SSL"),
            **{k: v for k, v in tls.items() if k.startswith("ssl.")},
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL",
            "security.inter.broker.protocol": "SASL_SSL",
            "authorizer.class.name": AUTHORIZER,
            "super.users": f"User:{SASL_ADMIN[0]}",
        }
        self.ck_config = {"security.protocol": "SASL_SSL", "sasl.mechanism": MECHANISM,
                          "sasl.username": CLIENT[0], "sasl.password": CLIENT[1], "ssl.ca.location": certs.ca}
        self.ssl_context = ssl.create_default_context(cafile=certs.ca)
        self.sasl = ClientCredentials(MECHANISM, *CLIENT)

    def prepare(self, zk_connect: str) -> None:
        """As Kafka's operators do before a SCRAM cluster's first start
        (kafka-configs and kafka-acls against ZooKeeper): the SCRAM credentials
        of the brokers' user and of the client, and the client's ACLs."""
        from pylog.broker.quotas import USER, entity_path
        from pylog.broker.sasl_scram import ScramCredential
        from pylog.cluster.zk_store import ZkMetadataStore
        store = ZkMetadataStore(zk_connect)
        try:
            for user, password in (SASL_ADMIN, CLIENT):
                store.set_client_quotas(entity_path({USER: user}), {
                    MECHANISM: ScramCredential.from_password(MECHANISM, password, 4096).to_text()})
            principal = f"User:{CLIENT[0]}"
            store.change_acls(("Topic", "LITERAL", TOPIC), add=[
                {"principal": principal, "permissionType": "Allow", "operation": "All", "host": "*"}], remove=[])
            store.change_acls(("Group", "LITERAL", "*"), add=[
                {"principal": principal, "permissionType": "Allow", "operation": "Read", "host": "*"}], remove=[])
        finally:
            store.close()


@pytest.fixture
def security(tmp_path):
    return SaslSsl(tmp_path / "certs")


def test_scram_clients_authenticate_while_zookeeper_is_unreachable(own_zookeeper):
    """A broker whose ZooKeeper connection is lost (a resumed SIGSTOPped broker,
    a ZooKeeper restart) still authenticates SCRAM users it knows, as Kafka's
    brokers do from their credential cache: refusing them with "invalid
    credentials" fails the clients for good (authentication errors are not
    retried), where a produce to that broker should get a retriable error."""
    from pylog.client.wire import Connection
    from pylog.testing import running_broker
    zk = own_zookeeper
    with running_broker(config={"zookeeper.connect": zk.connect, "zookeeper.session.timeout.ms": "30000"},
                        sasl_users=dict([CLIENT]), sasl_mechanisms=(MECHANISM,)) as b:
        creds = ClientCredentials(MECHANISM, *CLIENT)
        with Connection("127.0.0.1", b.port, sasl=creds):
            pass
        zk.process.kill()
        zk.process.wait(30)
        zk.process = None
        with Connection("127.0.0.1", b.port, sasl=creds, timeout=30):
            pass
        # A user the broker never looked up gets the same answer as before the loss
        # would have given (the store cannot be asked): refused, not hung.
        with pytest.raises(Exception, match="SASL_AUTHENTICATION_FAILED|invalid credentials"):
            Connection("127.0.0.1", b.port, sasl=ClientCredentials(MECHANISM, "mallory", "x"), timeout=30)
