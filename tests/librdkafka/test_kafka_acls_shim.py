"""The kafka-acls.sh stand-in that librdkafka's 0109, 0115 and 0119 call
through KAFKA_PATH, with their exact lines, against a real broker with the
authorizer on."""
import os
import pathlib
import subprocess
import sys

import pytest
from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

from pylog.testing import running_broker

SHIM = pathlib.Path(__file__).parent / "kafka_path" / "bin" / "kafka-acls.sh"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(data_dir=str(tmp_path_factory.mktemp("acl")), config={
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "true"}) as b:
        yield b


def _run(broker, line):
    env = {**os.environ, "PYLOG": str(pathlib.Path(sys.executable).parent / "pylog")}
    # test_kafka_cmd() hands the line to system(): the shell splits it.
    return subprocess.run(f"{SHIM} --bootstrap-server {broker} {line}", shell=True, env=env,
                          capture_output=True, text=True, timeout=120)


def _acls(broker, topic):
    f = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.ANY, None, None,
                         AclOperation.ANY, AclPermissionType.ANY)
    admin = AdminClient({"bootstrap.servers": str(broker)})
    found = admin.describe_acls(f, request_timeout=30).result()
    return {(b.principal, b.host, b.operation, b.permission_type) for b in found}


def test_add_then_remove_as_0119_does(broker):
    topic = "rdkafkatest_0119"
    add_allow = f"--add --allow-principal 'User:*' --operation Describe --allow-host '*' --topic '{topic}'"
    add_deny = f"--add --deny-principal 'User:*' --operation Read --deny-host '*' --topic '{topic}'"
    for line in (add_allow, add_deny):
        r = _run(broker, line)
        assert r.returncode == 0, r.stderr
    assert _acls(broker, topic) == {("User:*", "*", AclOperation.DESCRIBE, AclPermissionType.ALLOW),
                                    ("User:*", "*", AclOperation.READ, AclPermissionType.DENY)}
    for line in (add_allow, add_deny):
        r = _run(broker, line.replace("--add", "--remove --force"))
        assert r.returncode == 0, r.stderr
    assert _acls(broker, topic) == set()
