"""Fixtures for the ACL tests: real brokers with the authorizer on, real
clients. Every client here is User:ANONYMOUS (PLAINTEXT), so allow and deny
are exercised through ACLs naming User:ANONYMOUS (or others), hosts and
super.users.

- ``acl_broker``: one broker per module, authorizer on, no super users, no
  ACL but User:ANONYMOUS's ALTER and DESCRIBE on the cluster (to manage
  ACLs). That ACL was created while User:ANONYMOUS was a super user, before
  a restart: the fixture's start already depends on ACLs surviving it.
- ``admin``: a confluent-kafka AdminClient on it; ``grant``/``revoke`` helpers.
"""
from __future__ import annotations

import re
import uuid

import pytest

from pylog.testing import running_broker

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,  # noqa: E402
                                   AdminClient, ResourcePatternType, ResourceType)

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ANON = "User:ANONYMOUS"
AUTHZ = {"authorizer.class.name": STANDARD_AUTHORIZER, "num.partitions": "1"}


def binding(rtype, name, op, perm=AclPermissionType.ALLOW, principal=ANON, host="*",
            pattern=ResourcePatternType.LITERAL):
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def grant(admin, *bindings):
    for f in admin.create_acls(list(bindings), request_timeout=30).values():
        f.result()


def revoke(admin, *bindings):
    for f in admin.delete_acls([AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                                                 b.operation, b.permission_type) for b in bindings],
                               request_timeout=30).values():
        f.result()


ADMIN_ACLS = (binding(ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER),
              binding(ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE))


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("acl"))
    with running_broker(data_dir=data, config={**AUTHZ, "super.users": ANON}) as b:
        grant(AdminClient({"bootstrap.servers": str(b)}), *ADMIN_ACLS)
    with running_broker(data_dir=data, config=AUTHZ) as b:
        yield b


@pytest.fixture
def admin(acl_broker):
    return AdminClient({"bootstrap.servers": str(acl_broker)})


@pytest.fixture
def topic(request):
    base = re.sub(r"[^a-zA-Z0-9._-]", "_", request.node.name)[:50]
    return f"{base}-{uuid.uuid4().hex[:8]}"
