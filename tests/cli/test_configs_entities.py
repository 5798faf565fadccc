"""`pylog configs` for topics, brokers, groups and clients against a real
broker: kafka-configs.sh's lines (dynamic and --all descriptions with
synonyms, Completed updating ...), and the configs really changed."""
from __future__ import annotations

import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pylog.testing import running_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(tmp_path_factory.mktemp("data")) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})   # kept alive until the result is in
        admin.create_topics([NewTopic("cfg", 1, 1)])["cfg"].result(20)
        b.admin = admin
        yield b


def configs(broker, *args, rc=0):
    r = subprocess.run([sys.executable, "-m", "pylog", "configs", "--bootstrap-server", str(broker), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == rc, (args, r.stdout, r.stderr)
    return r.stdout, r.stderr


def test_topic_configs_altered_and_described_as_kafka_configs(broker):
    out, _ = configs(broker, "--entity-type", "topics", "--entity-name", "cfg", "--alter",
                     "--add-config", "retention.ms=123456,cleanup.policy=[compact,delete]")
    assert out == "Completed updating config for topic cfg.\n"
    res = ConfigResource("topic", "cfg")
    got = broker.admin.describe_configs([res])[res].result(10)
    assert got["retention.ms"].value == "123456" and got["cleanup.policy"].value == "compact,delete"
    out, _ = configs(broker, "--entity-type", "topics", "--entity-name", "cfg", "--describe")
    lines = out.splitlines()
    assert lines[0] == "Dynamic configs for topic cfg are:"
    assert lines[1].startswith("  cleanup.policy=compact,delete sensitive=false "
                               "synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete")
    assert lines[2].startswith("  retention.ms=123456 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=123456")
    assert len(lines) == 3
    configs(broker, "--entity-type", "topics", "--entity-name", "cfg", "--alter", "--delete-config", "retention.ms")
    out, _ = configs(broker, "--entity-type", "topics", "--entity-name", "cfg", "--describe", "--all")
    names = [x.split("=")[0].strip() for x in out.splitlines()[1:]]
    assert out.startswith("All configs for topic cfg are:\n") and names == sorted(names) and "segment.bytes" in names
    assert "  retention.ms=604800000 sensitive=false synonyms={DEFAULT_CONFIG:" in out


def test_broker_group_and_client_entities(broker):
    out, _ = configs(broker, "--entity-type", "brokers", "--entity-name", "1", "--describe", "--all")
    assert out.startswith("All configs for broker 1 are:\n") and "  num.partitions=" in out
    out, _ = configs(broker, "--entity-type", "brokers", "--describe")
    assert out.splitlines()[0] == "Dynamic configs for broker 1 are:"
    _, err = configs(broker, "--entity-type", "brokers", "--entity-name", "one", "--describe", rc=1)
    assert "must be a valid integer broker id, found: one" in err
    out, _ = configs(broker, "--entity-type", "groups", "--entity-name", "g1", "--alter",
                     "--add-config", "consumer.session.timeout.ms=50000")
    assert out == "Completed updating config for group g1.\n"
    out, _ = configs(broker, "--entity-type", "groups", "--entity-name", "g1", "--describe")
    assert out.splitlines() == ["Dynamic configs for group g1 are:",
                                "  consumer.session.timeout.ms=50000 sensitive=false "
                                "synonyms={GROUP_CONFIG:consumer.session.timeout.ms=50000, "
                                "DEFAULT_CONFIG:group.consumer.session.timeout.ms=45000}"]
    out, _ = configs(broker, "--entity-type", "clients", "--entity-name", "app", "--alter",
                     "--add-config", "controller_mutation_rate=10")
    assert out == "Completed updating config for client app.\n"
    out, _ = configs(broker, "--entity-type", "clients", "--entity-name", "app", "--describe")
    assert out == "Quota configs for client-id 'app' are controller_mutation_rate=10.0\n"
