"""Share-group configs (Kafka's GroupConfig share.* keys and ShareGroupConfig
broker keys; KAFKA-NOTES §11.7): a group's GROUP-resource overrides checked
against the broker's bounds, and the effective values the share group and
its share-partitions use.

Served: share.session.timeout.ms, share.heartbeat.interval.ms,
share.record.lock.duration.ms, share.auto.offset.reset (latest | earliest),
share.isolation.level (read_uncommitted | read_committed: txn.py), and KIP-1191's
errors.deadletterqueue.topic.name and errors.deadletterqueue.copy.record.enable
(dead-letter topics, dlq.py). Refused with INVALID_CONFIG, not
stored and ignored: share.auto.offset.reset=by_duration:..., and Kafka 4.3's group-level
share.delivery.count.limit, share.partition.max.record.locks,
share.renew.acknowledge.enable.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidConfigError

# group key -> (the broker key of its default, the broker keys of its bounds or None)
SHARE_GROUP_KEYS: dict[str, tuple] = {
    "share.session.timeout.ms": ("group.share.session.timeout.ms",
                                 ("group.share.min.session.timeout.ms", "group.share.max.session.timeout.ms")),
    "share.heartbeat.interval.ms": ("group.share.heartbeat.interval.ms",
                                    ("group.share.min.heartbeat.interval.ms", "group.share.max.heartbeat.interval.ms")),
    "share.record.lock.duration.ms": ("group.share.record.lock.duration.ms",
                                      ("group.share.min.record.lock.duration.ms",
                                       "group.share.max.record.lock.duration.ms")),
    "share.auto.offset.reset": (None, None),
    "share.isolation.level": (None, None),
    "errors.deadletterqueue.topic.name": (None, None),
    "errors.deadletterqueue.copy.record.enable": (None, None),
}
STRING_DEFAULTS = {"share.auto.offset.reset": "latest", "share.isolation.level": "read_uncommitted",
                    "errors.deadletterqueue.topic.name": "", "errors.deadletterqueue.copy.record.enable": "false"}
_NOT_BUILT = ("share.delivery.count.limit", "share.partition.max.record.locks", "share.renew.acknowledge.enable")


def validate_share_group_configs(broker_config, overrides: Mapping[str, str]) -> dict[str, str]:
    """The share.* part of a group's new overrides, normalised; InvalidConfigError else."""
    clean = {}
    for key, text in overrides.items():
        if key in _NOT_BUILT:
            raise InvalidConfigError(f"{key}: pylog does not implement this share group config yet")
        if key not in SHARE_GROUP_KEYS:
            raise InvalidConfigError(f"Unknown group config name: {key}")
        text = str(text).strip()
        if key == "share.auto.offset.reset":
            low = text.lower()
            if low.startswith("by_duration:"):
                raise InvalidConfigError(f"{key}: by_duration is not implemented by pylog yet")
            if low not in ("latest", "earliest"):
                raise InvalidConfigError(f"Invalid value {text} for configuration {key}: String must be one of: "
                                         "latest, earliest, by_duration:PnDTnHnMn.nS")
            clean[key] = low
            continue
        if key == "errors.deadletterqueue.topic.name":
            # Kafka's GroupConfig.validate checks only this; the prefix, the
            # topic's existence and its errors.deadletterqueue.group.enable are
            # checked at each dead-letter write (dlq.py), as Kafka does.
            if text.startswith("__"):
                raise InvalidConfigError(f"{key}: DLQ topic name must not start with '__'")
            clean[key] = text
            continue
        if key == "errors.deadletterqueue.copy.record.enable":
            if text.lower() not in ("true", "false"):
                raise InvalidConfigError(f"Invalid value {text} for configuration {key}: Expected value to be "
                                         "either true or false")
            clean[key] = text.lower()
            continue
        if key == "share.isolation.level":
            if text not in ("read_committed", "read_uncommitted"):
                raise InvalidConfigError(f"Invalid value {text} for configuration {key}: String must be one of: "
                                         "read_committed, read_uncommitted")
            clean[key] = text
            continue
        try:
            value = int(text)
        except ValueError:
            raise InvalidConfigError(f"Invalid value {text} for configuration {key}: Not a number of type INT") \
                from None
        lo_key, hi_key = SHARE_GROUP_KEYS[key][1]
        if value < broker_config.get(lo_key):
            raise InvalidConfigError(f"{key} must be greater than or equal to {lo_key}")
        if value > broker_config.get(hi_key):
            raise InvalidConfigError(f"{key} must be less than or equal to {hi_key}")
        clean[key] = str(value)
    return clean


def share_group_config(broker_config, overrides: Mapping[str, str] | None) -> dict:
    """Every share key's effective value for a group (ints, or strings for
    the two enumerations)."""
    out = {}
    for key, (broker_key, _) in SHARE_GROUP_KEYS.items():
        text = (overrides or {}).get(key)
        if broker_key is None:
            out[key] = text if text is not None else STRING_DEFAULTS[key]
        else:
            out[key] = int(text) if text is not None else broker_config.get(broker_key)
    return out


# Broker keys (Kafka's ShareGroupConfig and ShareCoordinatorConfig names and defaults).
BROKER_DEFAULTS = {
    "group.share.session.timeout.ms": 45000,
    "group.share.min.session.timeout.ms": 45000,
    "group.share.max.session.timeout.ms": 60000,
    "group.share.heartbeat.interval.ms": 5000,
    "group.share.min.heartbeat.interval.ms": 5000,
    "group.share.max.heartbeat.interval.ms": 15000,
    "group.share.record.lock.duration.ms": 30000,
    "group.share.min.record.lock.duration.ms": 15000,
    "group.share.max.record.lock.duration.ms": 60000,
    "group.share.delivery.count.limit": 5,
    "group.share.partition.max.record.locks": 2000,
    "group.share.max.size": 200,
    "group.share.max.share.sessions": 2000,
    "share.coordinator.state.topic.num.partitions": 50,
    "share.coordinator.state.topic.replication.factor": 3,
    "share.coordinator.state.topic.min.isr": 2,
    "share.coordinator.state.topic.segment.bytes": 104857600,
    "share.coordinator.snapshot.update.records.per.snapshot": 500,
    "share.coordinator.write.timeout.ms": 5000,
}

# Kafka's ConfigDef ranges of the broker keys (ShareGroupConfig, GroupCoordinatorConfig).
_BROKER_RANGES = {
    "group.share.delivery.count.limit": (2, 10),
    "group.share.record.lock.duration.ms": (1000, 3600000),
    "group.share.min.record.lock.duration.ms": (1000, 30000),
    "group.share.max.record.lock.duration.ms": (30000, 3600000),
    "group.share.partition.max.record.locks": (100, 10000),
    "group.share.max.share.sessions": (1, None),
    "group.share.max.size": (1, 1000),
    "share.coordinator.state.topic.num.partitions": (1, None),
    "share.coordinator.state.topic.replication.factor": (1, None),
    "share.coordinator.state.topic.min.isr": (1, None),
    "share.coordinator.snapshot.update.records.per.snapshot": (0, 500),
    "share.coordinator.write.timeout.ms": (1, None),
}


def check_share_broker_configs(get) -> None:
    """The broker's share keys as Kafka checks them (ranges, then its
    `require`s between them); InvalidConfigError else. get: key -> value."""
    for key, (lo, hi) in _BROKER_RANGES.items():
        v = get(key)
        if v < lo or (hi is not None and v > hi):
            bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise InvalidConfigError(f"Invalid value {v} for configuration {key}: Value must be {bound}")
    for low, high in (("group.share.min.record.lock.duration.ms", "group.share.record.lock.duration.ms"),
                      ("group.share.record.lock.duration.ms", "group.share.max.record.lock.duration.ms"),
                      ("group.share.min.session.timeout.ms", "group.share.session.timeout.ms"),
                      ("group.share.session.timeout.ms", "group.share.max.session.timeout.ms"),
                      ("group.share.min.heartbeat.interval.ms", "group.share.heartbeat.interval.ms"),
                      ("group.share.heartbeat.interval.ms", "group.share.max.heartbeat.interval.ms"),
                      ("group.share.max.size", "group.share.max.share.sessions")):
        if get(low) > get(high):
            raise InvalidConfigError(f"{high} must be greater than or equal to {low}")
    if get("group.share.heartbeat.interval.ms") >= get("group.share.session.timeout.ms"):
        raise InvalidConfigError("group.share.heartbeat.interval.ms must be less than group.share.session.timeout.ms")
