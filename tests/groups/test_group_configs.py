"""GROUP config resources (KIP-848, ConfigResource type 32): Kafka's GroupConfig checks against
the broker's group.consumer.* bounds (the wire tests are tests/cluster/test_group_configs.py)."""
from __future__ import annotations

import pytest

from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.groups.group_configs import effective_group_config, validate_group_configs

SESSION, HEARTBEAT = "consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"


# -- the checks, as Kafka's GroupConfig.validate -----------------------------------------------


def test_defaults_come_from_the_broker():
    assert effective_group_config(BrokerConfig({}), {}) == {SESSION: 45000, HEARTBEAT: 5000}
    broker = BrokerConfig({"group.consumer.session.timeout.ms": "50000"})
    assert effective_group_config(broker, {HEARTBEAT: "7000"}) == {SESSION: 50000, HEARTBEAT: 7000}


@pytest.mark.parametrize("overrides, message", [
    ({SESSION: "44999"}, "consumer.session.timeout.ms must be greater than or equal to "
                         "group.consumer.min.session.timeout.ms"),
    ({SESSION: "60001"}, "consumer.session.timeout.ms must be less than or equal to "
                         "group.consumer.max.session.timeout.ms"),
    ({HEARTBEAT: "4999"}, "consumer.heartbeat.interval.ms must be greater than or equal to "
                          "group.consumer.min.heartbeat.interval.ms"),
    ({HEARTBEAT: "15001"}, "consumer.heartbeat.interval.ms must be less than or equal to "
                           "group.consumer.max.heartbeat.interval.ms"),
    ({HEARTBEAT: "0"}, "Invalid value 0 for configuration consumer.heartbeat.interval.ms: Value must be at least 1"),
    ({SESSION: "soon"}, "Invalid value soon for configuration consumer.session.timeout.ms: Not a number of type INT"),
    ({SESSION: "4294967296"}, "Not a number of type INT"),
    ({"consumer.session.timeout": "50000"}, "Unknown group config name: consumer.session.timeout"),
    ({"group.consumer.session.timeout.ms": "50000"}, "Unknown group config name: group.consumer.session.timeout.ms"),
    ({"share.delivery.count.limit": "5"}, "pylog does not implement this share group config"),
    ({"streams.num.standby.replicas": "1"}, "pylog does not implement streams groups"),
    ({SESSION: None}, "Null value not supported for group configs: consumer.session.timeout.ms"),
])
def test_bad_overrides_are_kafkas_errors(overrides, message):
    with pytest.raises(InvalidConfigError) as e:
        validate_group_configs(BrokerConfig({}), overrides)
    assert message in str(e.value)


def test_session_must_exceed_heartbeat_with_wider_broker_bounds():
    broker = BrokerConfig({"group.consumer.min.session.timeout.ms": "6000",
                           "group.consumer.max.heartbeat.interval.ms": "30000"})
    assert validate_group_configs(broker, {SESSION: "12000", HEARTBEAT: "6000"}) == {
        SESSION: "12000", HEARTBEAT: "6000"}
    with pytest.raises(InvalidConfigError, match="consumer.session.timeout.ms must be greater than "
                                                 "consumer.heartbeat.interval.ms"):
        validate_group_configs(broker, {SESSION: "12000", HEARTBEAT: "12000"})
    # the missing key takes the broker's value (45000 here): 20000 is below it
    validate_group_configs(broker, {HEARTBEAT: "20000"})
    with pytest.raises(InvalidConfigError, match="must be greater than consumer.heartbeat.interval.ms"):
        validate_group_configs(broker, {SESSION: "10000"} | {HEARTBEAT: "10000"})


def test_values_are_normalised():
    assert validate_group_configs(BrokerConfig({}), {SESSION: " 50000 "}) == {SESSION: "50000"}
