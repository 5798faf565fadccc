"""The kafka_broker fixture that installing pylog gives every pytest user."""
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition


def test_fixture_is_a_working_broker(kafka_broker):
    assert kafka_broker.startswith("127.0.0.1:")
    p = Producer({"bootstrap.servers": kafka_broker})
    p.produce("fx", b"hello", key=b"k")
    assert p.flush(10) == 0
    c = Consumer({"bootstrap.servers": kafka_broker, "group.id": "fx", "enable.auto.commit": False})
    c.assign([TopicPartition("fx", 0, 0)])
    msgs = c.consume(1, 10)
    c.close()
    assert [(m.key(), m.value()) for m in msgs] == [(b"k", b"hello")]


@pytest.mark.kafka_broker(config={"num.partitions": "3"})
def test_marker_sets_broker_config(kafka_broker):
    p = Producer({"bootstrap.servers": kafka_broker})
    p.produce("auto3", b"x")
    assert p.flush(10) == 0
    md = p.list_topics("auto3", timeout=10)
    assert sorted(md.topics["auto3"].partitions) == [0, 1, 2]
    assert (kafka_broker.broker.data_dir).endswith("kafka-data")


def test_plugin_is_registered_by_the_installed_package():
    from importlib.metadata import entry_points
    eps = [ep.value for ep in entry_points(group="pytest11") if ep.name == "pylog"]
    assert eps == ["pylog.pytest_plugin"]


def test_fixture_has_fast_group_settings_by_default(kafka_broker):
    """FAST_GROUP_CONFIG: a group's first rebalance waits 100 ms, not Kafka's 3 s."""
    from pylog.testing import FAST_GROUP_CONFIG
    cfg = kafka_broker.broker.config
    for key, value in FAST_GROUP_CONFIG.items():
        assert cfg.get(key) == int(value)
    assert cfg.get("offsets.topic.replication.factor") == 1


@pytest.mark.kafka_broker(config={"group.initial.rebalance.delay.ms": "3000"})
def test_marker_config_wins_over_the_fast_group_settings(kafka_broker):
    cfg = kafka_broker.broker.config
    assert cfg.get("group.initial.rebalance.delay.ms") == 3000
    assert cfg.get("group.min.session.timeout.ms") == 1000


def test_a_lone_broker_defaults_to_one_offsets_replica_and_a_cluster_to_kafkas_three():
    """Kafka's default is 3 (a cluster); a lone broker, as Kafka's shipped
    config/server.properties for one development broker, gets 1."""
    import argparse

    from pylog.broker.cli import add_broker_arguments, build_config
    from pylog.broker.config import BrokerConfig
    p = argparse.ArgumentParser()
    add_broker_arguments(p)
    assert BrokerConfig({}).get("offsets.topic.replication.factor") == 3
    assert build_config(p.parse_args([]))["offsets.topic.replication.factor"] == "1"
    zk = build_config(p.parse_args(["--override", "zookeeper.connect=127.0.0.1:1/x"]))
    assert "offsets.topic.replication.factor" not in zk
    given = build_config(p.parse_args(["--override", "offsets.topic.replication.factor=2"]))
    assert given["offsets.topic.replication.factor"] == "2"


def test_a_lone_broker_defaults_to_one_transaction_state_replica_and_a_cluster_to_kafkas():
    """The same for __transaction_state: Kafka's defaults (RF 3, min ISR 2)
    for a cluster, server.properties' 1 and 1 for a lone broker."""
    import argparse

    from pylog.broker.cli import add_broker_arguments, build_config
    from pylog.broker.config import BrokerConfig
    p = argparse.ArgumentParser()
    add_broker_arguments(p)
    assert BrokerConfig({}).get("transaction.state.log.replication.factor") == 3
    assert BrokerConfig({}).get("transaction.state.log.min.isr") == 2
    lone = build_config(p.parse_args([]))
    assert (lone["transaction.state.log.replication.factor"], lone["transaction.state.log.min.isr"]) == ("1", "1")
    zk = build_config(p.parse_args(["--override", "zookeeper.connect=127.0.0.1:1/x"]))
    assert "transaction.state.log.replication.factor" not in zk and "transaction.state.log.min.isr" not in zk
    given = build_config(p.parse_args(["--override", "transaction.state.log.min.isr=2"]))
    assert given["transaction.state.log.min.isr"] == "2"
