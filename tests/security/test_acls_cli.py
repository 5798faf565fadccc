"""`pylog acls` (kafka-acls.sh's options and output) against a real broker
with the authorizer on: what it adds is enforced, --list prints Kafka's
text, --remove --force deletes, usage errors are Kafka's."""
from __future__ import annotations

import subprocess
import sys

from .conftest import ck


def acls(b, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "pylog", "acls", "--bootstrap-server", str(b), *args],
                          capture_output=True, text=True, timeout=120, input=stdin)


def _produce(b, topic):
    p = ck.Producer({"bootstrap.servers": str(b), "message.timeout.ms": 30000})
    out = []
    p.produce(topic, b"v", on_delivery=lambda err, msg: out.append(err))
    p.flush(60)
    return out[0] if out else "not delivered"


def test_producer_acls_added_listed_and_removed(acl_broker, topic):
    r = acls(acl_broker, "--add", "--allow-principal", "User:ANONYMOUS", "--producer", "--topic", topic)
    assert r.returncode == 0, r.stderr
    pattern = f"ResourcePattern(resourceType=TOPIC, name={topic}, patternType=LITERAL)"
    assert r.stdout.startswith(f"Adding ACLs for resource `{pattern}`: \n \t(principal=User:ANONYMOUS, host=*, "
                               f"operation=WRITE, permissionType=ALLOW)\n")
    assert "operation=CREATE" in r.stdout and "operation=DESCRIBE" in r.stdout
    assert _produce(acl_broker, topic) is None      # CREATE lets the producer create it on demand, WRITE write
    r = acls(acl_broker, "--list", "--topic", topic)
    assert r.returncode == 0
    assert r.stdout == (f"Current ACLs for resource `{pattern}`:\n"
                        "\t(principal=User:ANONYMOUS, host=*, operation=WRITE, permissionType=ALLOW)\n"
                        "\t(principal=User:ANONYMOUS, host=*, operation=CREATE, permissionType=ALLOW)\n"
                        "\t(principal=User:ANONYMOUS, host=*, operation=DESCRIBE, permissionType=ALLOW)\n\n")
    # adding it again says so
    r = acls(acl_broker, "--add", "--allow-principal", "User:ANONYMOUS", "--operation", "Write", "--topic", topic)
    assert "already exists" in r.stdout
    # --remove without --force asks; "n" keeps them
    r = acls(acl_broker, "--remove", "--topic", topic, stdin="n\n")
    assert f"Are you sure you want to delete all ACLs for resource filter `{pattern}`? (y/n)" in r.stdout
    assert "operation=WRITE" in acls(acl_broker, "--list", "--topic", topic).stdout
    r = acls(acl_broker, "--remove", "--allow-principal", "User:ANONYMOUS", "--operation", "Write", "--topic", topic,
             "--force")
    assert r.returncode == 0
    err = _produce(acl_broker, topic)
    assert err is not None and err.code() == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert acls(acl_broker, "--remove", "--topic", topic, "--force").returncode == 0
    assert acls(acl_broker, "--list", "--topic", topic).stdout == ""


def test_consumer_convenience_and_principal_listing(acl_broker, topic):
    r = acls(acl_broker, "--add", "--allow-principal", "User:carol", "--consumer", "--topic", topic, "--group", topic)
    assert r.returncode == 0, r.stderr
    out = acls(acl_broker, "--list", "--principal", "User:carol").stdout
    assert out.startswith("ACLs for principal `User:carol`\n")
    assert f"ResourcePattern(resourceType=GROUP, name={topic}, patternType=LITERAL)" in out
    assert out.count("principal=User:carol") == 3       # READ+DESCRIBE on the topic, READ on the group
    acls(acl_broker, "--remove", "--topic", topic, "--group", topic, "--force")


def test_usage_errors_are_kafkas(acl_broker):
    r = acls(acl_broker, "--add", "--topic", "x")
    assert r.returncode == 1 and "You must specify one of: --allow-principal, --deny-principal" in r.stderr
    r = acls(acl_broker, "--add", "--allow-principal", "User:a", "--operation", "IdempotentWrite", "--topic", "x")
    assert r.returncode == 1 and "ResourceType TOPIC only supports operations" in r.stderr
    r = acls(acl_broker, "--add", "--allow-principal", "User:a", "--resource-pattern-type", "match", "--topic", "x")
    assert r.returncode == 1 and "is not valid when adding acls" in r.stderr
    r = acls(acl_broker, "--add", "--allow-principal", "alice", "--topic", "x")
    assert r.returncode == 1 and r.stdout.startswith("Error while executing ACL command:")
