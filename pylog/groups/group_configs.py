"""Per-group configs (KIP-848: ConfigResource type GROUP, 32), as Kafka's GroupConfig.

A group's overrides are strings kept by the controller (its metadata store) and pushed to every
broker with UpdateMetadata; the group coordinator reads the effective values through
``effective_group_config``. Keys, checks and messages are Kafka's GroupConfig and
GroupConfigManager.validate: missing keys take the broker's group.consumer.* values, and each
value must lie within the broker's group.consumer.min/max bounds, with the session longer than
the heartbeat interval.

Kafka's GroupConfig also defines share.* keys, checked by pylog/share/configs.py, and streams.*
keys; pylog does not serve streams groups, so those are refused (INVALID_CONFIG) rather than
stored and ignored.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidConfigError, InvalidRequestError
from ..share.configs import SHARE_GROUP_KEYS, validate_share_group_configs

__all__ = [
    "GROUP_CONFIG_KEYS",
    "check_group_id",
    "effective_group_config",
    "validate_group_configs",
]

# group key -> the broker key giving its default (Kafka's extractConsumerGroupConfigMap).
GROUP_CONFIG_KEYS: dict[str, str] = {
    "consumer.heartbeat.interval.ms": "group.consumer.heartbeat.interval.ms",
    "consumer.session.timeout.ms": "group.consumer.session.timeout.ms",
}
# Kafka's other GroupConfig keys, for what pylog has not built.
_UNSERVED_KEYS = {
    "streams.session.timeout.ms": "streams", "streams.heartbeat.interval.ms": "streams",
    "streams.num.standby.replicas": "streams", "streams.initial.rebalance.delay.ms": "streams",
}


def check_group_id(group_id: str | None, altering: bool = False) -> None:
    """Kafka refuses the empty group name (the "default" resource), in its two sentences."""
    if not group_id:
        raise InvalidRequestError("Default group resources are not allowed." if altering
                                  else "Group name must not be empty")


def effective_group_config(broker_config, overrides: Mapping[str, str] | None) -> dict[str, int]:
    """Every group key's value for a group: its override, else the broker's value."""
    out = {}
    for key, broker_key in GROUP_CONFIG_KEYS.items():
        text = (overrides or {}).get(key)
        out[key] = int(text) if text is not None else broker_config.get(broker_key)
    return out


def validate_group_configs(broker_config, overrides: Mapping[str, str | None]) -> dict[str, str]:
    """A group's complete new overrides, checked as Kafka checks them; InvalidConfigError else.

    Returns the overrides with values normalised to the integers' text.
    """
    nulls = sorted(k for k, v in overrides.items() if v is None)
    if nulls:
        raise InvalidConfigError(f"Null value not supported for group configs: {','.join(nulls)}")
    share = validate_share_group_configs(broker_config, {k: v for k, v in overrides.items()
                                                         if k in SHARE_GROUP_KEYS or k.startswith("share.")})
    overrides = {k: v for k, v in overrides.items() if not (k in SHARE_GROUP_KEYS or k.startswith("share."))}
    for key in overrides:
        if key in _UNSERVED_KEYS:
            raise InvalidConfigError(f"{key}: pylog does not implement {_UNSERVED_KEYS[key]} groups")
        if key not in GROUP_CONFIG_KEYS:
            raise InvalidConfigError(f"Unknown group config name: {key}")
    clean: dict[str, str] = {}
    for key, text in overrides.items():
        try:
            value = int(str(text).strip())
        except ValueError:
            raise InvalidConfigError(f"Invalid value {text} for configuration {key}: Not a number of "
                                     "type INT") from None
        if not -(1 << 31) <= value < (1 << 31):
            raise InvalidConfigError(f"Invalid value {text} for configuration {key}: Not a number of type INT")
        if value < 1:
            raise InvalidConfigError(f"Invalid value {value} for configuration {key}: Value must be at least 1")
        clean[key] = str(value)

    g = effective_group_config(broker_config, clean)
    heartbeat, session = g["consumer.heartbeat.interval.ms"], g["consumer.session.timeout.ms"]
    bound = broker_config.get
    for ok, key, relation, broker_key in (
        (heartbeat >= bound("group.consumer.min.heartbeat.interval.ms"), "consumer.heartbeat.interval.ms",
         "greater than or equal to", "group.consumer.min.heartbeat.interval.ms"),
        (heartbeat <= bound("group.consumer.max.heartbeat.interval.ms"), "consumer.heartbeat.interval.ms",
         "less than or equal to", "group.consumer.max.heartbeat.interval.ms"),
        (session >= bound("group.consumer.min.session.timeout.ms"), "consumer.session.timeout.ms",
         "greater than or equal to", "group.consumer.min.session.timeout.ms"),
        (session <= bound("group.consumer.max.session.timeout.ms"), "consumer.session.timeout.ms",
         "less than or equal to", "group.consumer.max.session.timeout.ms"),
        (session > heartbeat, "consumer.session.timeout.ms", "greater than", "consumer.heartbeat.interval.ms"),
    ):
        if not ok:
            raise InvalidConfigError(f"{key} must be {relation} {broker_key}")
    return {**clean, **share}
