"""CreateAcls / DescribeAcls / DeleteAcls (30/29/31) through confluent-kafka's
AdminClient and the wire: stored, listed with Kafka's filter semantics,
deleted, kept across a restart; Kafka's errors without an authorizer, for bad
bindings, and for a principal without ALTER/DESCRIBE on the cluster."""
from __future__ import annotations

import pytest

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker

from .conftest import (ANON, AUTHZ, STANDARD_AUTHORIZER, AclBindingFilter, AclOperation, AclPermissionType,
                       AdminClient, ResourcePatternType, ResourceType, binding, ck, grant)

ANY_FILTER = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                              AclPermissionType.ANY)

DESCRIBE_ALL = m.DescribeAclsRequest(resource_type_filter=1, pattern_type_filter=1, operation=1, permission_type=1)


def _conn(b):
    host, port = str(b).rsplit(":", 1)
    return Connection(host, int(port), client_id="acl-test", timeout=30)


def test_create_describe_delete_with_kafkas_filters(admin, topic):
    lit = binding(ResourceType.TOPIC, topic, AclOperation.READ, principal="User:alice")
    pre = binding(ResourceType.TOPIC, topic[:10], AclOperation.WRITE, principal="User:alice",
                  pattern=ResourcePatternType.PREFIXED)
    deny = binding(ResourceType.TOPIC, topic, AclOperation.READ, AclPermissionType.DENY, principal="User:bob",
                   host="10.0.0.9")
    grp = binding(ResourceType.GROUP, topic, AclOperation.READ, principal="User:alice")
    grant(admin, lit, pre, deny, grp)
    everything = admin.describe_acls(ANY_FILTER, request_timeout=30).result()
    assert {lit, pre, deny, grp} <= set(everything)
    # MATCH: every pattern that applies to the name (literal and prefixed)
    match = admin.describe_acls(AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.MATCH, None, None,
                                                 AclOperation.ANY, AclPermissionType.ANY)).result()
    assert {lit, pre, deny} <= set(match) and grp not in match
    # ANY: the name exactly, any pattern type
    exact = admin.describe_acls(AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.ANY, None, None,
                                                 AclOperation.ANY, AclPermissionType.ANY)).result()
    assert set(exact) == {lit, deny}
    by_principal = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob",
                                                        None, AclOperation.ANY, AclPermissionType.ANY)).result()
    assert by_principal == [deny]
    # deleting with a filter returns what it removed
    f = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.MATCH, "User:alice", None, AclOperation.ANY,
                         AclPermissionType.ANY)
    [deleted] = admin.delete_acls([f]).values()
    assert set(deleted.result()) == {lit, pre}
    left = set(admin.describe_acls(ANY_FILTER).result())
    assert deny in left and grp in left and lit not in left and pre not in left
    [deleted] = admin.delete_acls([AclBindingFilter(ResourceType.ANY, topic, ResourcePatternType.ANY, None, None,
                                                    AclOperation.ANY, AclPermissionType.ANY)]).values()
    assert set(deleted.result()) == {deny, grp}


def test_bad_bindings_and_filters_are_invalid_request(acl_broker):
    C, D = m.CreateAclsRequest, m.DescribeAclsRequest
    with _conn(acl_broker) as c:
        r = c.request(C(creations=[
            C.AclCreation(resource_type=4, resource_name="not-the-cluster", resource_pattern_type=3,
                          principal=ANON, host="*", operation=7, permission_type=3),
            C.AclCreation(resource_type=2, resource_name="t", resource_pattern_type=2,   # MATCH: not storable
                          principal=ANON, host="*", operation=3, permission_type=3),
            C.AclCreation(resource_type=2, resource_name="t", resource_pattern_type=3,
                          principal="no-colon", host="*", operation=3, permission_type=3),
        ]), api_version=3)
        assert [x.error_code for x in r.results] == [Errors.INVALID_REQUEST] * 3
        assert "kafka-cluster" in r.results[0].error_message
        r = c.request(D(resource_type_filter=2, resource_name_filter=None, pattern_type_filter=0,
                        principal_filter=None, host_filter=None, operation=1, permission_type=1), api_version=2)
        assert r.error_code == Errors.INVALID_REQUEST


def test_api_versions_advertise_the_acl_apis_at_kafka_4s_versions(acl_broker):
    with _conn(acl_broker) as c:
        r = c.request(m.ApiVersionsRequest(client_software_name="t", client_software_version="1"), api_version=3)
    got = {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}
    assert got[29] == got[30] == got[31] == (1, 3)


def test_without_an_authorizer_the_acl_apis_answer_security_disabled(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d")) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        with _conn(b) as c:
            r = c.request(DESCRIBE_ALL, api_version=3)
        assert (r.error_code, r.error_message) == (Errors.SECURITY_DISABLED, "No Authorizer is configured.")
        [f] = admin.create_acls([binding(ResourceType.TOPIC, "t", AclOperation.READ)]).values()
        with pytest.raises(ck.KafkaException) as e:
            f.result()
        assert e.value.args[0].code() == ck.KafkaError.SECURITY_DISABLED
        # and nothing is checked: a client does what it likes
        md = admin.list_topics(timeout=30)
        assert len(md.brokers) == 1


def test_a_principal_without_alter_on_the_cluster_cannot_manage_acls(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config=AUTHZ) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        [f] = admin.create_acls([binding(ResourceType.TOPIC, "t", AclOperation.READ)]).values()
        with pytest.raises(ck.KafkaException) as e:
            f.result()
        assert e.value.args[0].code() == ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED
        with _conn(b) as c:
            assert c.request(DESCRIBE_ALL, api_version=3).error_code == Errors.CLUSTER_AUTHORIZATION_FAILED
        assert b.broker.authorizer.bindings() == frozenset()


def test_acls_survive_a_restart_and_super_users_bypass_them(tmp_path):
    data = str(tmp_path / "d")
    deny_all = binding(ResourceType.TOPIC, "*", AclOperation.ALL, AclPermissionType.DENY, principal="User:*")
    with running_broker(data_dir=data, config={**AUTHZ, "super.users": f"User:admin;{ANON}"}) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        grant(admin, deny_all)
        # a super user is not held back by a deny of everything
        admin.create_topics([ck.admin.NewTopic("kept", 1, 1)])["kept"].result()
        p = ck.Producer({"bootstrap.servers": str(b)})
        p.produce("kept", b"v")
        assert p.flush(30) == 0
        del p   # not left reconnecting to the stopped broker
    with running_broker(data_dir=data, config={**AUTHZ, "super.users": ANON}) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        assert admin.describe_acls(ANY_FILTER, request_timeout=30).result() == [deny_all]
    with running_broker(data_dir=data, config=AUTHZ) as b:   # no super user now: the deny applies
        with _conn(b) as c:
            r = c.request(m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name="kept")],
                                            allow_auto_topic_creation=False), api_version=9)
        assert [t.error_code for t in r.topics] == [Errors.TOPIC_AUTHORIZATION_FAILED]


def test_authorizer_class_names_both_start_a_broker(tmp_path):
    for name in (STANDARD_AUTHORIZER, "kafka.security.authorizer.AclAuthorizer"):
        with running_broker(data_dir=str(tmp_path / name), config={"authorizer.class.name": name}) as b:
            assert b.broker.authorizer is not None
