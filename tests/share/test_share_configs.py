"""The share keys: the broker's group.share.* / share.coordinator.* checked as
Kafka's ShareGroupConfig checks them, and a group's share.* overrides."""
from __future__ import annotations

import pytest

from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.share.configs import share_group_config, validate_share_group_configs


def cfg(**kv):
    return BrokerConfig({"log.dirs": "/nonexistent", **{k.replace("_", "."): v for k, v in kv.items()}})


def test_broker_defaults_are_kafkas():
    c = cfg()
    assert (c.get("group.share.record.lock.duration.ms"), c.get("group.share.delivery.count.limit"),
            c.get("group.share.partition.max.record.locks"), c.get("group.share.max.size"),
            c.get("share.coordinator.state.topic.num.partitions")) == (30000, 5, 2000, 200, 50)


@pytest.mark.parametrize("key, value, words", [
    ("group.share.delivery.count.limit", "1", "between 2 and 10"),
    ("group.share.record.lock.duration.ms", "999", "between 1000 and 3600000"),
    ("group.share.partition.max.record.locks", "50", "between 100 and 10000"),
    ("group.share.min.record.lock.duration.ms", "30000", None),      # allowed: equal to the default
    ("group.share.max.record.lock.duration.ms", "30000", None),
])
def test_broker_ranges(key, value, words):
    if words is None:
        assert cfg(**{key: value}).get(key) == int(value)
        return
    with pytest.raises(InvalidConfigError, match=words):
        cfg(**{key: value})


def test_broker_requires_between_keys():
    with pytest.raises(InvalidConfigError, match="greater than or equal to group.share.min.record.lock"):
        BrokerConfig({"log.dirs": "/x", "group.share.min.record.lock.duration.ms": "20000",
                      "group.share.record.lock.duration.ms": "15000"})


def test_group_overrides_within_the_brokers_bounds():
    c = cfg()
    assert validate_share_group_configs(c, {"share.record.lock.duration.ms": " 20000 "}) == \
        {"share.record.lock.duration.ms": "20000"}
    with pytest.raises(InvalidConfigError, match="greater than or equal to group.share.min.record.lock"):
        validate_share_group_configs(c, {"share.record.lock.duration.ms": "1000"})
    with pytest.raises(InvalidConfigError, match="Unknown group config name"):
        validate_share_group_configs(c, {"share.nope": "1"})
    assert share_group_config(c, {"share.auto.offset.reset": "earliest"}) == {
        "share.session.timeout.ms": 45000, "share.heartbeat.interval.ms": 5000,
        "share.record.lock.duration.ms": 30000, "share.auto.offset.reset": "earliest",
        "share.isolation.level": "read_uncommitted", "errors.deadletterqueue.topic.name": "",
        "errors.deadletterqueue.copy.record.enable": "false"}
