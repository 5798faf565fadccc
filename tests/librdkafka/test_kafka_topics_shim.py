"""The kafka-topics.sh stand-in that librdkafka's tests call through KAFKA_PATH
(0045, 0052, 0077), with the exact argument shapes of librdkafka's test.c,
against a real broker."""
import os
import pathlib
import subprocess
import sys

import confluent_kafka.admin

from pylog.testing import wait_until

SHIM = pathlib.Path(__file__).parent / "kafka_path" / "bin" / "kafka-topics.sh"


def _run(broker, *args):
    env = {**os.environ, "PYLOG": str(pathlib.Path(sys.executable).parent / "pylog")}
    # test_kafka_topics() hands the line to system(): the shell splits it.
    line = f"{SHIM} --bootstrap-server {broker} " + " ".join(args)
    return subprocess.run(line, shell=True, env=env, capture_output=True, text=True, timeout=120)


def _describe(broker, topic):
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": str(broker)})
    md = admin.list_topics(topic, timeout=30).topics[topic]
    res = confluent_kafka.admin.ConfigResource(confluent_kafka.admin.ResourceType.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(timeout=30)
    return md, configs


def test_create_with_configs_alter_and_delete(kafka_broker):
    r = _run(kafka_broker, '--create --topic "shim-t" --replication-factor 1 --partitions 1',
             "--config message.timestamp.type=LogAppendTime --config cleanup.policy=compact")
    assert r.returncode == 0, r.stderr
    md, configs = _describe(kafka_broker, "shim-t")
    assert len(md.partitions) == 1
    assert configs["message.timestamp.type"].value == "LogAppendTime"
    assert configs["cleanup.policy"].value == "compact"

    r = _run(kafka_broker, "--alter --topic shim-t --partitions 4")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: len(_describe(kafka_broker, "shim-t")[0].partitions) == 4, what="4 partitions")

    r = _run(kafka_broker, '--delete --topic "shim-t" ')
    assert r.returncode == 0, r.stderr
    admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": str(kafka_broker)})
    wait_until(lambda: "shim-t" not in admin.list_topics(timeout=30).topics, what="topic gone")


def test_without_an_action_it_fails(kafka_broker):
    r = _run(kafka_broker, "--topic x")
    assert r.returncode == 2
    assert "--create" in r.stderr
