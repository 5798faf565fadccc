"""The KIP-848 broker keys (group.consumer.*, group.coordinator.rebalance.protocols): Kafka's
names, defaults and GroupCoordinatorConfig checks; what pylog does not serve refuses the start."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.testing import running_broker

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import admin as ck_admin  # noqa: E402

UNIFORM_CLASS = "org.apache.kafka.coordinator.group.assignor.UniformAssignor"
RANGE_CLASS = "org.apache.kafka.coordinator.group.assignor.RangeAssignor"


def test_defaults_are_kafkas():
    c = BrokerConfig({})
    assert c.get("group.consumer.session.timeout.ms") == 45000
    assert c.get("group.consumer.min.session.timeout.ms") == 45000
    assert c.get("group.consumer.max.session.timeout.ms") == 60000
    assert c.get("group.consumer.heartbeat.interval.ms") == 5000
    assert c.get("group.consumer.min.heartbeat.interval.ms") == 5000
    assert c.get("group.consumer.max.heartbeat.interval.ms") == 15000
    assert c.get("group.consumer.max.size") == 2147483647
    assert c.consumer_group_assignors() == ("uniform", "range")
    # Kafka 4.0's default (4.1+ adds streams, which pylog does not serve)
    assert c.group_rebalance_protocols() == {"classic", "consumer"}
    assert c.get("group.consumer.migration.policy") == "bidirectional"   # Kafka's GroupCoordinatorConfig


def test_assignors_by_name_or_kafka_class_name_first_is_default():
    c = BrokerConfig({"group.consumer.assignors": f"range , {UNIFORM_CLASS}"})
    assert c.consumer_group_assignors() == ("range", "uniform")
    assert BrokerConfig({"group.consumer.assignors": RANGE_CLASS}).consumer_group_assignors() == ("range",)
    # a Python list from a fixture or test reads back as Kafka's comma-separated form
    assert BrokerConfig({"group.consumer.assignors": ["range"]}).props["group.consumer.assignors"] == "range"


@pytest.mark.parametrize("value, message", [
    ("sticky", "Class sticky cannot be found"),
    ("com.example.MyAssignor", "Class com.example.MyAssignor cannot be found"),
    ("", "Configuration 'group.consumer.assignors' must not be empty. Valid values include: any non-empty value"),
    ("uniform,uniform", "Configuration 'group.consumer.assignors' values must not be duplicated."),
    ("uniform,,range", "Configuration 'group.consumer.assignors' values must not be empty."),
])
def test_bad_assignors_refuse_the_start(value, message):
    with pytest.raises(InvalidConfigError) as e:
        BrokerConfig({"group.consumer.assignors": value})
    assert message in str(e.value)


@pytest.mark.parametrize("value, message", [
    ("consumer", "Disabling the 'CLASSIC' protocol is not supported."),
    ("", "Configuration 'group.coordinator.rebalance.protocols' must not be empty. Valid values include: "
         "[consumer, classic, share, streams]"),
    ("classic,Consumer", "Invalid value Consumer for configuration group.coordinator.rebalance.protocols: "
                         "String must be one of: consumer, classic, share, streams"),
    ("classic,classic", "values must not be duplicated"),
    ("classic,consumer,streams", "pylog does not implement streams groups"),
])
def test_rebalance_protocols_checked_as_kafka(value, message):
    with pytest.raises(InvalidConfigError) as e:
        BrokerConfig({"group.coordinator.rebalance.protocols": value})
    assert message in str(e.value)


def test_share_is_accepted_with_kafkas_deprecation_warning(caplog):
    with caplog.at_level("WARNING", logger="pylog.broker"):
        cfg = BrokerConfig({"group.coordinator.rebalance.protocols": "classic,consumer,share"})
    assert cfg.group_rebalance_protocols() == {"classic", "consumer", "share"}
    assert "'SHARE' in `group.coordinator.rebalance.protocols` is deprecated. Share groups are controlled " \
           "by the 'share.version' feature." in caplog.text


def test_classic_alone_is_accepted():
    assert BrokerConfig({"group.coordinator.rebalance.protocols": "classic"}).group_rebalance_protocols() == {
        "classic"}


@pytest.mark.parametrize("value", ["disabled", "DISABLED", "bidirectional", "upgrade", "Downgrade"])
def test_every_migration_policy_is_served(value):
    assert BrokerConfig({"group.consumer.migration.policy": value}).get("group.consumer.migration.policy") == value


def test_migration_policy_unknown_value_is_kafkas_error():
    with pytest.raises(InvalidConfigError, match=r"String must be one of \(case insensitive\): bidirectional, "
                                                 "upgrade, downgrade, disabled"):
        BrokerConfig({"group.consumer.migration.policy": "sideways"})


@pytest.mark.parametrize("props, message", [
    ({"group.consumer.session.timeout.ms": "0"},
     "Invalid value 0 for configuration group.consumer.session.timeout.ms: Value must be at least 1"),
    ({"group.consumer.max.size": "0"},
     "Invalid value 0 for configuration group.consumer.max.size: Value must be at least 1"),
    ({"group.consumer.session.timeout.ms": "30000"},
     "group.consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"),
    ({"group.consumer.session.timeout.ms": "70000"},
     "group.consumer.session.timeout.ms must be less than or equal to group.consumer.max.session.timeout.ms"),
    ({"group.consumer.min.session.timeout.ms": "50000", "group.consumer.max.session.timeout.ms": "46000"},
     "group.consumer.max.session.timeout.ms must be greater than or equal to "
     "group.consumer.min.session.timeout.ms"),
    ({"group.consumer.heartbeat.interval.ms": "1000"},
     "group.consumer.heartbeat.interval.ms must be greater than or equal to "
     "group.consumer.min.heartbeat.interval.ms"),
    ({"group.consumer.heartbeat.interval.ms": "20000"},
     "group.consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms"),
    ({"group.consumer.min.heartbeat.interval.ms": "9000", "group.consumer.max.heartbeat.interval.ms": "8000"},
     "group.consumer.max.heartbeat.interval.ms must be greater than or equal to "
     "group.consumer.min.heartbeat.interval.ms"),
    ({"group.consumer.session.timeout.ms": "10000", "group.consumer.min.session.timeout.ms": "1000",
      "group.consumer.heartbeat.interval.ms": "10000", "group.consumer.max.heartbeat.interval.ms": "20000"},
     "group.consumer.heartbeat.interval.ms must be less than group.consumer.session.timeout.ms"),
    ({"group.consumer.heartbeat.interval.ms": "soon"}, "is not an integer"),
])
def test_timeouts_checked_as_kafkas_group_coordinator_config(props, message):
    with pytest.raises(InvalidConfigError) as e:
        BrokerConfig(props)
    assert message in str(e.value)


def test_tighter_bounds_are_accepted():
    c = BrokerConfig({"group.consumer.session.timeout.ms": "6000", "group.consumer.min.session.timeout.ms": "6000",
                      "group.consumer.heartbeat.interval.ms": "500",
                      "group.consumer.min.heartbeat.interval.ms": "500"})
    assert c.get("group.consumer.session.timeout.ms") == 6000
    assert c.get("group.consumer.heartbeat.interval.ms") == 500


def test_the_broker_command_refuses_an_unknown_assignor(tmp_path):
    props = tmp_path / "server.properties"
    props.write_text("listeners=PLAINTEXT://127.0.0.1:0\ngroup.consumer.assignors=uniform,sticky\n")
    r = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"),
                        "--config", str(props)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "Class sticky cannot be found" in r.stderr and "Traceback" not in r.stderr


def test_describe_configs_shows_the_keys_as_kafka_does(tmp_path):
    config = {"listeners": "PLAINTEXT://127.0.0.1:0", "group.consumer.assignors": "range,uniform"}
    with running_broker(data_dir=str(tmp_path / "d"), config=config) as b:
        admin = ck_admin.AdminClient({"bootstrap.servers": str(b)})
        resource = ck_admin.ConfigResource(ck_admin.ResourceType.BROKER, str(b.broker.broker_id))
        entries = admin.describe_configs([resource])[resource].result(timeout=30)
        assert entries["group.consumer.assignors"].value == "range,uniform"
        assert not entries["group.consumer.assignors"].is_default
        assert entries["group.coordinator.rebalance.protocols"].value == "classic,consumer"
        assert entries["group.coordinator.rebalance.protocols"].is_default
        assert entries["group.consumer.session.timeout.ms"].value == "45000"
