"""The authorizer's decisions on Kafka's ACL semantics (KAFKA-NOTES §12.5),
on the real Authorizer object: implied operations, DENY winning, wildcard
and prefixed patterns, hosts, super users, allow.everyone.if.no.acl.found,
and filters as DescribeAcls/DeleteAcls match them."""
from __future__ import annotations

import pytest

from pylog.broker.authorizer import (ALL, ALLOW, ALTER, ALTER_CONFIGS, ANY, CLUSTER, CLUSTER_NAME, CREATE, DELETE,
                                     DENY, DESCRIBE, DESCRIBE_CONFIGS, GROUP, LITERAL, MATCH, PREFIXED, READ, TOPIC,
                                     WRITE, AclBinding, AclFilter, Authorizer, from_stored, to_stored,
                                     validate_binding)
from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError

ALICE, BOB = "User:alice", "User:bob"


def acl(name, op, perm=ALLOW, principal=ALICE, host="*", rtype=TOPIC, pattern=LITERAL):
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def az(*bindings, supers=(), everyone=False):
    a = Authorizer(supers, everyone)
    a.replace(bindings)
    return a


def test_allow_needs_a_matching_acl_and_nothing_else_is_allowed():
    a = az(acl("orders", READ))
    assert a.authorize(ALICE, "10.0.0.1", READ, TOPIC, "orders")
    assert not a.authorize(ALICE, "10.0.0.1", WRITE, TOPIC, "orders")
    assert not a.authorize(BOB, "10.0.0.1", READ, TOPIC, "orders")
    assert not a.authorize(ALICE, "10.0.0.1", READ, TOPIC, "payments")     # no ACL: default deny
    assert not a.authorize(ALICE, "10.0.0.1", READ, GROUP, "orders")       # another resource type


@pytest.mark.parametrize("granted, implied", [(READ, DESCRIBE), (WRITE, DESCRIBE), (DELETE, DESCRIBE),
                                              (ALTER, DESCRIBE), (ALTER_CONFIGS, DESCRIBE_CONFIGS)])
def test_kafkas_implied_operations(granted, implied):
    a = az(acl("t", granted))
    assert a.authorize(ALICE, "h", implied, TOPIC, "t")
    assert not a.authorize(ALICE, "h", CREATE, TOPIC, "t")


def test_all_allows_every_operation_and_deny_all_denies_every_one():
    a = az(acl("t", ALL))
    assert all(a.authorize(ALICE, "h", op, TOPIC, "t") for op in (READ, WRITE, CREATE, DELETE, DESCRIBE))
    a = az(acl("t", ALL), acl("t", ALL, DENY))
    assert not any(a.authorize(ALICE, "h", op, TOPIC, "t") for op in (READ, WRITE, DESCRIBE))


def test_deny_wins_and_implies_nothing():
    a = az(acl("t", READ), acl("*", READ, DENY))
    assert not a.authorize(ALICE, "h", READ, TOPIC, "t")
    # DENY READ does not deny DESCRIBE (which the ALLOW READ implies)
    assert a.authorize(ALICE, "h", DESCRIBE, TOPIC, "t")


def test_wildcard_principal_resource_and_host():
    a = az(acl("*", WRITE, principal="User:*"))
    assert a.authorize(BOB, "1.2.3.4", WRITE, TOPIC, "anything")
    a = az(acl("t", WRITE, host="127.0.0.1"))
    assert a.authorize(ALICE, "127.0.0.1", WRITE, TOPIC, "t")
    assert not a.authorize(ALICE, "10.1.1.1", WRITE, TOPIC, "t")
    a = az(acl("t", WRITE), acl("t", WRITE, DENY, host="10.1.1.1"))
    assert a.authorize(ALICE, "127.0.0.1", WRITE, TOPIC, "t")
    assert not a.authorize(ALICE, "10.1.1.1", WRITE, TOPIC, "t")


def test_prefixed_patterns_match_names_starting_with_them():
    a = az(acl("sales-", READ, pattern=PREFIXED), acl("sales-eu-", READ, DENY, pattern=PREFIXED))
    assert a.authorize(ALICE, "h", READ, TOPIC, "sales-us-1")
    assert a.authorize(ALICE, "h", READ, TOPIC, "sales-")
    assert not a.authorize(ALICE, "h", READ, TOPIC, "sales-eu-1")
    assert not a.authorize(ALICE, "h", READ, TOPIC, "sales")
    assert not a.authorize(ALICE, "h", READ, TOPIC, "presales-1")


def test_super_users_bypass_every_acl():
    a = az(acl("t", ALL, DENY, principal="User:*"), supers=["User:admin"])
    assert a.authorize("User:admin", "h", DELETE, TOPIC, "t")
    assert not a.authorize(ALICE, "h", DELETE, TOPIC, "t")


def test_allow_everyone_if_no_acl_found_only_where_no_acl_exists():
    a = az(acl("guarded", READ, principal=BOB), everyone=True)
    assert a.authorize(ALICE, "h", WRITE, TOPIC, "open")            # no ACL on it
    assert not a.authorize(ALICE, "h", READ, TOPIC, "guarded")      # an ACL exists (for someone else)
    assert a.authorize(BOB, "h", READ, TOPIC, "guarded")


def test_decisions_follow_changes_of_one_resource():
    a = az(acl("t", READ))
    assert a.authorize(ALICE, "h", READ, TOPIC, "t")            # cached
    resource, entry = to_stored(acl("t", READ, DENY))
    a.set_resource(resource, [to_stored(acl("t", READ))[1], entry])
    assert not a.authorize(ALICE, "h", READ, TOPIC, "t")
    a.set_resource(resource, [])
    assert a.bindings() == frozenset()
    assert from_stored(resource, [entry]) == [acl("t", READ, DENY)]


def test_filters_match_as_kafkas_resource_pattern_filter():
    lit, star, pre = acl("sales-1", READ), acl("*", READ), acl("sales-", READ, pattern=PREFIXED)
    a = az(lit, star, pre, acl("g", READ, rtype=GROUP))
    assert a.describe(AclFilter(TOPIC, "sales-1", MATCH)) == sorted([lit, star, pre])
    assert a.describe(AclFilter(TOPIC, "sales-1", ANY)) == [lit]
    assert a.describe(AclFilter(TOPIC, "sales-", LITERAL)) == []
    assert a.describe(AclFilter(TOPIC, None, PREFIXED)) == [pre]
    assert len(a.describe(AclFilter())) == 4
    assert a.describe(AclFilter(principal=BOB)) == []
    assert a.describe(AclFilter(GROUP, operation=READ, permission=ALLOW)) == [acl("g", READ, rtype=GROUP)]


def test_invalid_bindings_are_named():
    assert validate_binding(acl("t", READ)) is None
    assert "CLUSTER" in validate_binding(acl("other", ALTER, rtype=CLUSTER))
    assert validate_binding(acl(CLUSTER_NAME, ALTER, rtype=CLUSTER)) is None
    assert "principal" in validate_binding(acl("t", READ, principal="alice"))
    assert "patternType" in validate_binding(acl("t", READ, pattern=MATCH))
    assert "operation" in validate_binding(acl("t", ANY))


def test_lookup_is_indexed_not_a_scan_of_every_acl():
    # 10,000 literal + prefixed ACLs: a decision probes the name's own entries,
    # the '*' ones and one dictionary entry per prefix length present.
    bindings = [acl(f"topic-{i}", WRITE) for i in range(5000)]
    bindings += [acl(f"team{i}-", WRITE, pattern=PREFIXED) for i in range(5000)]
    a = az(*bindings)
    groups = a._matching(TOPIC, "team42-orders")
    assert sum(len(g) for g in groups) == 1
    assert a.authorize(ALICE, "h", WRITE, TOPIC, "team42-orders")
    assert not a.authorize(ALICE, "h", WRITE, TOPIC, "nobody")


@pytest.mark.parametrize("name", ["org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                                  "kafka.security.authorizer.AclAuthorizer"])
def test_both_kafka_acl_authorizers_are_accepted(name):
    cfg = BrokerConfig({"authorizer.class.name": name, "super.users": "User:admin;User:ops",
                        "allow.everyone.if.no.acl.found": "true"})
    a = Authorizer.from_config(cfg)
    assert cfg.authorizer_enabled() and a.super_users == {"User:admin", "User:ops"} and a.allow_if_no_acl


def test_other_authorizer_classes_are_refused():
    with pytest.raises(InvalidConfigError, match="authorizer.class.name: 'com.example.MyAuthorizer' is not "
                                                 "supported"):
        BrokerConfig({"authorizer.class.name": "com.example.MyAuthorizer"})
    assert not BrokerConfig({}).authorizer_enabled()
