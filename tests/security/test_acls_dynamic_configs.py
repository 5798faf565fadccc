"""BROKER and BROKER_LOGGER config changes need ALTER_CONFIGS on the cluster, as Kafka's
ConfigAdminManager asks (CLUSTER_AUTHORIZATION_FAILED without it), and a refused resource
changes nothing."""
from __future__ import annotations

import pytest

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors

from .conftest import AclOperation, ResourceType, binding, grant, revoke


@pytest.fixture
def conn(acl_broker):
    host, port = str(acl_broker).rsplit(":", 1)
    with Connection(host, int(port), client_id="acl-test", timeout=30) as c:
        yield c


def test_broker_and_logger_configs_need_alter_configs_on_the_cluster(acl_broker, admin, conn):
    A = m.IncrementalAlterConfigsRequest

    def alter():
        r = conn.request(A(resources=[
            A.AlterConfigsResource(resource_type=4, resource_name="1", configs=[
                A.AlterableConfig(name="log.retention.bytes", config_operation=0, value="4444444")]),
            A.AlterConfigsResource(resource_type=8, resource_name="1", configs=[
                A.AlterableConfig(name="pylog.broker", config_operation=0, value="INFO")])], validate_only=False),
            api_version=1)
        return {x.resource_type: x.error_code for x in r.responses}
    assert alter() == {4: Errors.CLUSTER_AUTHORIZATION_FAILED, 8: Errors.CLUSTER_AUTHORIZATION_FAILED}
    assert acl_broker.broker.config.get("log.retention.bytes") == -1
    acl = binding(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER_CONFIGS)
    grant(admin, acl)
    try:
        assert alter() == {4: 0, 8: 0}
        assert acl_broker.broker.config.get("log.retention.bytes") == 4444444
    finally:
        revoke(admin, acl)


def test_a_client_naming_itself_a_forwarding_broker_is_still_checked(acl_broker, admin):
    """The forwarding client id is no pass: without CLUSTER_ACTION the named broker's
    checks still run (here: a per-broker resource naming another broker)."""
    A = m.IncrementalAlterConfigsRequest
    host, port = str(acl_broker).rsplit(":", 1)
    acl = binding(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER_CONFIGS)
    grant(admin, acl)
    try:
        with Connection(host, int(port), client_id="pylog-forward", timeout=30) as c:
            r = c.request(A(resources=[A.AlterConfigsResource(resource_type=4, resource_name="7", configs=[
                A.AlterableConfig(name="log.retention.bytes", config_operation=0, value="5555555")])],
                validate_only=False), api_version=1)
        (res,) = r.responses
        assert res.error_code == Errors.INVALID_REQUEST, res
        assert "Unexpected broker id" in res.error_message
    finally:
        revoke(admin, acl)
