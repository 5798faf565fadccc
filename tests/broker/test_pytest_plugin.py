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
