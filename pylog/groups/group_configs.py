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

DescribeConfigs on a GROUP lists, as Kafka's ConfigHelper does, every key with its value, its
source (GROUP_CONFIG for an override, else the head of its broker synonym's chain, else
DEFAULT_CONFIG) and synonyms. Of the keys Kafka lists and pylog refuses to set, two are
listed read-only: share.delivery.count.limit and share.partition.max.record.locks, whose
values (the broker's group.share.* keys) are what pylog applies to every group. The others are
left out, because no value pylog could show would be in effect: share.renew.acknowledge.enable
(Kafka's default true; pylog serves no renew), the assignment-interval and assignor-offload keys
(pylog assigns at each heartbeat, on the coordinator's loop) and streams.* (no streams groups).
Kafka's order is a hash map's; pylog's is by name.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..errors import InvalidConfigError, InvalidRequestError
from ..protocol import messages as m
from ..share.configs import SHARE_GROUP_KEYS, STRING_DEFAULTS, share_group_config, validate_share_group_configs

__all__ = [
    "GROUP_CONFIG_KEYS",
    "check_group_id",
    "describe_group_configs",
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


# DescribeConfigs v3+ ConfigType
_BOOLEAN, _STRING, _INT = 1, 2, 3
# Every key DescribeConfigs lists: (its broker synonym or None, type, read-only, documentation).
_DESCRIBED: dict[str, tuple] = {
    "consumer.heartbeat.interval.ms": ("group.consumer.heartbeat.interval.ms", _INT, False,
                                       "Milliseconds between a consumer group member's heartbeats."),
    "consumer.session.timeout.ms": ("group.consumer.session.timeout.ms", _INT, False,
                                    "Milliseconds without a heartbeat after which a consumer group member "
                                    "is removed."),
    "errors.deadletterqueue.copy.record.enable": (None, _BOOLEAN, False,
                                                  "Whether a dead letter carries the record's key and value, "
                                                  "or only the headers that say where it came from and why."),
    "errors.deadletterqueue.topic.name": (None, _STRING, False,
                                          "The topic this share group writes the records it gives up on to "
                                          "(KIP-1191); empty: none."),
    "share.auto.offset.reset": (None, _STRING, False,
                                "Where a share-partition starts when the group first reads it: latest or "
                                "earliest."),
    "share.delivery.count.limit": ("group.share.delivery.count.limit", _INT, True,
                                   "Deliveries of a record after which it is archived (or dead-lettered). "
                                   "pylog applies the broker's value to every group: read-only here."),
    "share.heartbeat.interval.ms": ("group.share.heartbeat.interval.ms", _INT, False,
                                    "Milliseconds between a share group member's heartbeats."),
    "share.isolation.level": (None, _STRING, False,
                              "Which transactional records the share group delivers: read_uncommitted, "
                              "or read_committed (below the last stable offset, aborted ones never)."),
    "share.partition.max.record.locks": ("group.share.partition.max.record.locks", _INT, True,
                                         "Records a share-partition may have in flight at once. pylog applies "
                                         "the broker's value to every group: read-only here."),
    "share.record.lock.duration.ms": ("group.share.record.lock.duration.ms", _INT, False,
                                      "Milliseconds a member holds an acquired record before it is released."),
    "share.session.timeout.ms": ("group.share.session.timeout.ms", _INT, False,
                                 "Milliseconds without a heartbeat after which a share group member is "
                                 "removed."),
}


def describe_group_configs(broker_config, group_id: str, overrides: Mapping[str, str], keys,
                           include_synonyms: bool, include_documentation: bool) -> list:
    """DescribeConfigs' entries for a GROUP resource (Kafka's createGroupConfigEntry); the
    group need not exist."""
    from ..broker.dynamic_config import _synonyms   # here: the broker package imports this module
    C = m.DescribeConfigsResponse.DescribeConfigsResourceResult
    S = m.DescribeConfigsResponse.DescribeConfigsSynonym
    check_group_id(group_id)
    values = {**effective_group_config(broker_config, overrides), **share_group_config(broker_config, overrides)}
    out = []
    for key, (broker_key, typ, read_only, doc) in _DESCRIBED.items():
        if keys is not None and key not in keys:
            continue
        value = values[key] if key in values else broker_config.get(broker_key)
        value = str(value).lower() if typ == _BOOLEAN else str(value)
        if broker_key is not None:
            chain = _synonyms(broker_config, broker_key)
        else:
            chain = [(key, STRING_DEFAULTS[key], 5)]
        if key in overrides:
            chain = [(key, value, 8), *chain]
        source = chain[0][2] if chain else 5
        out.append(C(name=key, value=value, read_only=read_only, is_default=source == 5, config_source=source,
                     is_sensitive=False,
                     synonyms=[S(name=n, value=v, source=s) for n, v, s in chain] if include_synonyms else [],
                     config_type=typ, documentation=doc if include_documentation else None))
    return out
