"""Dynamic broker configs: Kafka's DynamicBrokerConfig for pylog.

A BROKER config resource is either one broker ("1": per-broker) or the
cluster default (""). AlterConfigs / IncrementalAlterConfigs on one reach the
active controller, which checks them here, keeps them in its metadata store
(ZooKeeper's /config/brokers/<id> and /config/brokers/<default>, as Kafka
did, or the embedded store's cluster.json) and sends them whole to every
broker in UpdateMetadata (pylog_tags BROKER_CONFIGS), so every broker holds
them, a restarted one gets them back, and each one applies its own and the
default live (apply()). Precedence is Kafka's: per-broker dynamic, cluster
default dynamic, static server.properties, default (BrokerConfig.get).

Which keys: Kafka's set of dynamically updatable broker configs
(ALL_DYNAMIC_CONFIGS below, by name). Of those, the ones pylog reads are
applied live (LIVE); one Kafka could change but pylog does not implement,
or reads only at start, is refused with INVALID_CONFIG saying so, as pylog
refuses unimplemented keys at start-up. A broker key outside Kafka's dynamic
set gets Kafka's INVALID_REQUEST "Cannot update these configs dynamically".

Threads: validation runs anywhere (pure); apply() on the broker's event loop.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import re

from ..errors import InvalidConfigError, InvalidRequestError
from ..protocol import messages as m
from .tls import SSL_DEFAULTS
from .config import (BROKER_DEFAULTS, LISTENER_LIMIT_KEY, TOPIC_CONFIGS, _sasl_key, config_text,
                     validate_topic_configs)

log = logging.getLogger("pylog.broker")

__all__ = ["ALL_DYNAMIC_CONFIGS", "LIVE", "apply", "apply_ops", "check_node_id", "check_on_broker", "describe",
           "validate"]

# Kafka's SslConfigs.RECONFIGURABLE_CONFIGS: dynamic only per listener (listener.name.<l>.<key>).
DYNAMIC_SECURITY_CONFIGS = frozenset({
    "ssl.keystore.type", "ssl.keystore.location", "ssl.keystore.password", "ssl.key.password",
    "ssl.truststore.type", "ssl.truststore.location", "ssl.truststore.password",
    "ssl.keystore.certificate.chain", "ssl.keystore.key", "ssl.truststore.certificates"})
_LISTENER_CONFIGS = frozenset({
    "listeners", "listener.security.protocol.map", "principal.builder.class", "ssl.protocol", "ssl.provider",
    "ssl.cipher.suites", "ssl.enabled.protocols", "ssl.keystore.type", "ssl.keystore.location",
    "ssl.keystore.password", "ssl.key.password", "ssl.truststore.type", "ssl.truststore.location",
    "ssl.truststore.password", "ssl.keymanager.algorithm", "ssl.trustmanager.algorithm",
    "ssl.endpoint.identification.algorithm", "ssl.secure.random.implementation", "ssl.client.auth",
    "ssl.engine.factory.class", "sasl.mechanism.inter.broker.protocol", "sasl.jaas.config",
    "sasl.enabled.mechanisms", "sasl.kerberos.service.name", "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.ticket.renew.window.factor", "sasl.kerberos.ticket.renew.jitter",
    "sasl.kerberos.min.time.before.relogin", "sasl.kerberos.principal.to.local.rules",
    "sasl.login.refresh.window.factor", "sasl.login.refresh.window.jitter", "sasl.login.refresh.min.period.seconds",
    "sasl.login.refresh.buffer.seconds", "max.connections", "max.connection.creation.rate", "num.network.threads"})
# The broker keys behind topic configs (Kafka's TopicConfigSynonyms, first names), and cordoned.log.dirs.
_LOG_CONFIGS = frozenset({
    "log.segment.bytes", "log.roll.ms", "log.roll.jitter.ms", "log.index.size.max.bytes",
    "log.flush.interval.messages", "log.flush.interval.ms", "log.retention.bytes", "log.retention.ms",
    "message.max.bytes", "log.index.interval.bytes", "log.cleaner.delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", "log.segment.delete.delay.ms",
    "log.cleaner.min.cleanable.ratio", "log.cleanup.policy", "unclean.leader.election.enable",
    "min.insync.replicas", "compression.type", "compression.gzip.level", "compression.lz4.level",
    "compression.zstd.level", "log.preallocate", "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms", "log.message.timestamp.after.max.ms", "log.local.retention.ms",
    "log.local.retention.bytes", "log.remote.copy.lag.ms", "log.remote.copy.lag.bytes", "cordoned.log.dirs"})
_CLUSTER_LEVEL_LISTENER_CONFIGS = frozenset({"max.connections", "max.connection.creation.rate",
                                             "num.network.threads"})
ALL_DYNAMIC_CONFIGS = frozenset(
    DYNAMIC_SECURITY_CONFIGS | _LISTENER_CONFIGS | _LOG_CONFIGS | {
        # LogCleaner
        "log.cleaner.threads", "log.cleaner.dedupe.buffer.size", "log.cleaner.io.buffer.load.factor",
        "log.cleaner.io.buffer.size", "log.cleaner.io.max.bytes.per.second", "log.cleaner.backoff.ms",
        # DynamicThreadPool, metric reporters, SocketServer
        "num.io.threads", "num.replica.fetchers", "num.recovery.threads.per.data.dir", "background.threads",
        "metric.reporters", "max.connections.per.ip", "max.connections.per.ip.overrides",
        # producer state, remote log, replication, config providers
        "producer.id.expiration.ms", "transaction.partition.verification.enable",
        "remote.log.index.file.cache.total.size.bytes", "remote.fetch.max.wait.ms",
        "remote.log.manager.copy.max.bytes.per.second", "remote.log.manager.fetch.max.bytes.per.second",
        "remote.list.offsets.request.timeout.ms", "remote.log.manager.copier.thread.pool.size",
        "remote.log.manager.expiration.thread.pool.size", "remote.log.manager.follower.thread.pool.size",
        "remote.log.reader.threads", "follower.fetch.last.tiered.offset.enable", "config.providers",
        # group and share coordinators
        "group.coordinator.cached.buffer.max.bytes", "group.consumer.assignment.interval.ms",
        "group.consumer.assignor.offload.enable", "group.share.assignment.interval.ms",
        "group.share.assignor.offload.enable", "errors.deadletterqueue.auto.create.topics.enable",
        "errors.deadletterqueue.topic.name.prefix", "group.streams.assignment.interval.ms",
        "group.streams.assignor.offload.enable", "share.coordinator.cached.buffer.max.bytes",
        # broker replication quotas
        "leader.replication.throttled.rate", "follower.replication.throttled.rate",
        "replica.alter.log.dirs.io.max.bytes.per.second"})
PER_BROKER_CONFIGS = frozenset((DYNAMIC_SECURITY_CONFIGS | _LISTENER_CONFIGS | {"cordoned.log.dirs"})
                               - _CLUSTER_LEVEL_LISTENER_CONFIGS)
_LISTENER_CONFIG = re.compile(r"listener\.name\.[^.]*\.(.*)")
# Kafka's listener.name.<l>.<mechanism>.<key> configs.
_LISTENER_MECHANISM_CONFIGS = ("sasl.jaas.config", "sasl.login.callback.handler.class", "sasl.login.class",
                               "sasl.server.callback.handler.class", "connections.max.reauth.ms")

# Topic-config defaults pylog reads through TopicConfig: a change reaches every hosted
# partition without an override of its own.
_TOPIC_DEFAULTS = frozenset(k for k, *_ in TOPIC_CONFIGS.values() if k is not None) & _LOG_CONFIGS
_CONNECTION_KEYS = frozenset({"max.connections", "max.connection.creation.rate", "max.connections.per.ip",
                              "max.connections.per.ip.overrides"})
# Kafka's LogCleaner.reconfigure: new threads with these.
_CLEANER_KEYS = frozenset({"log.cleaner.threads", "log.cleaner.backoff.ms", "log.cleaner.io.max.bytes.per.second",
                           "log.cleaner.dedupe.buffer.size", "log.cleaner.io.buffer.load.factor"})
# What pylog changes live. unclean.leader.election.enable: the controller reads it per
# election (cluster/controller.py); producer.id.expiration.ms: each partition's producer state;
# errors.deadletterqueue.*: each dead-letter write (share/dlq.py).
LIVE = frozenset(_TOPIC_DEFAULTS | _CONNECTION_KEYS | _CLEANER_KEYS | {"producer.id.expiration.ms"}
                 | {"errors.deadletterqueue.auto.create.topics.enable", "errors.deadletterqueue.topic.name.prefix"})


def _is_live(name: str) -> bool:
    """A key pylog changes live: LIVE, or a listener's own connection limits
    (listener.name.<listener>.max.connections / .max.connection.creation.rate)."""
    return name in LIVE or LISTENER_LIMIT_KEY.match(name) is not None


# Kafka's ConfigDef types of the live keys (its parse errors name them).
_KAFKA_TYPES = {
    "log.segment.bytes": "INT", "log.index.size.max.bytes": "INT", "message.max.bytes": "INT",
    "log.index.interval.bytes": "INT", "min.insync.replicas": "INT", "max.connections": "INT",
    "max.connection.creation.rate": "INT", "max.connections.per.ip": "INT", "producer.id.expiration.ms": "INT",
    "log.cleaner.min.cleanable.ratio": "DOUBLE", "unclean.leader.election.enable": "BOOLEAN",
    "log.cleanup.policy": "LIST", "compression.type": "STRING", "log.message.timestamp.type": "STRING",
    "max.connections.per.ip.overrides": "STRING", "log.cleaner.threads": "INT",
    "log.cleaner.io.max.bytes.per.second": "DOUBLE", "log.cleaner.io.buffer.load.factor": "DOUBLE",
    "errors.deadletterqueue.auto.create.topics.enable": "BOOLEAN", "errors.deadletterqueue.topic.name.prefix": "STRING"}
# Kafka's ConfigDef lower bounds of the live keys without a topic config behind them.
_AT_LEAST = {"max.connections": 0, "max.connection.creation.rate": 0, "max.connections.per.ip": 0,
             "producer.id.expiration.ms": 1, "log.cleaner.threads": 0, "log.cleaner.backoff.ms": 0}
_BROKER_TO_TOPIC = {k: topic for topic, (k, *_) in TOPIC_CONFIGS.items() if k is not None}

# IncrementalAlterConfigs operations.
_SET, _DELETE, _APPEND, _SUBTRACT = 0, 1, 2, 3


def _kafka_set(names) -> str:
    # Kafka's messages print a java.util.Set.
    return "[" + ", ".join(sorted(names)) + "]"


def check_node_id(name: str, node_id: int) -> None:
    """Kafka's ConfigAdminManager.validateResourceNameIsCurrentNodeId: a per-broker
    change goes to that broker."""
    try:
        got = int(name)
    except ValueError:
        raise InvalidRequestError(f"Node id must be an integer, but it is: {name}") from None
    if got != node_id:
        raise InvalidRequestError(f"Unexpected broker id, expected {node_id}, but received {name}")


def apply_ops(current: dict[str, str], ops) -> dict[str, str]:
    """The entity's configs after IncrementalAlterConfigs ops [(name, op, value)]
    (Kafka's ConfigAdminManager checks and prepareIncrementalConfigs)."""
    names = [n for n, _, _ in ops]
    if len(set(names)) != len(names):
        raise InvalidRequestError("Error due to duplicate config keys")
    nulls = [n for n, op, v in ops if op != _DELETE and v is None]
    if nulls:
        raise InvalidRequestError("Null value not supported for : " + ", ".join(nulls))
    out = dict(current)
    for name, op, value in ops:
        if op == _SET:
            out[name] = value
        elif op == _DELETE:
            out.pop(name, None)
        elif op in (_APPEND, _SUBTRACT):
            if name not in BROKER_DEFAULTS:
                raise InvalidConfigError(f"Unknown config name: {name}")
            if _KAFKA_TYPES.get(name) != "LIST" and BROKER_DEFAULTS[name][0] is not list:
                what = "append" if op == _APPEND else "subtract"
                raise InvalidConfigError(f"Config value {what} is not allowed for config key: {name}")
            base = out.get(name)
            if base is None:
                base = config_text(BROKER_DEFAULTS[name][1]) if BROKER_DEFAULTS[name][1] is not None else ""
            items = [x for x in base.split(",") if x]
            given = value.split(",")
            items = items + [x for x in given if x not in items] if op == _APPEND else \
                [x for x in items if x not in given]
            out[name] = ",".join(items)
        else:
            raise InvalidRequestError(f"Unknown operations type {op}")
    return out


def validate(configs: dict[str, str], per_broker: bool) -> dict[str, str]:
    """Kafka's DynamicBrokerConfig.validateConfigs (its messages, INVALID_REQUEST as
    KAFKA-13609 keeps it), then pylog's refusal of keys it cannot change live
    (INVALID_CONFIG); the values as they are stored."""
    names = set(configs)
    non_dynamic = {n for n in names if (n in BROKER_DEFAULTS or n in _KNOWN_STATIC) and n not in ALL_DYNAMIC_CONFIGS}
    if non_dynamic:
        raise InvalidRequestError(f"Cannot update these configs dynamically: {_kafka_set(non_dynamic)}")
    security = names & DYNAMIC_SECURITY_CONFIGS
    if security:
        raise InvalidRequestError("These security configs can be dynamically updated only per-listener using "
                                  f"the listener prefix: {_kafka_set(security)}")
    if not per_broker:
        only_per_broker = {n for n in names if n in PER_BROKER_CONFIGS or (
            _LISTENER_CONFIG.fullmatch(n) and _LISTENER_CONFIG.fullmatch(n).group(1)
            not in _CLUSTER_LEVEL_LISTENER_CONFIGS)}
        if only_per_broker:
            raise InvalidRequestError("Cannot update these configs at default cluster level, broker id must be "
                                      f"specified: {_kafka_set(only_per_broker)}")
    for name in sorted(names):
        listener = LISTENER_LIMIT_KEY.match(name)
        if listener and listener.group(1) != listener.group(1).lower():
            # Kafka reads listener-prefixed keys under the lower-cased name only (as at start-up)
            raise InvalidConfigError(f"{name}: the listener name in listener.name.<listener>.* keys is lower "
                                     f"case (listener.name.{listener.group(1).lower()}....), as Kafka reads them")
        if _is_live(name):
            continue
        listener = _LISTENER_CONFIG.fullmatch(name)
        base = listener.group(1) if listener else name
        mechanism_key = listener and base.endswith(_LISTENER_MECHANISM_CONFIGS)
        if (base in ALL_DYNAMIC_CONFIGS or mechanism_key) and (
                base in BROKER_DEFAULTS or base in SSL_DEFAULTS or _sasl_key(name)):
            raise InvalidConfigError(f"{name}: pylog reads this broker config only at start-up; it cannot be "
                                     f"changed dynamically yet (set it in server.properties and restart)")
        if name in ALL_DYNAMIC_CONFIGS or _LISTENER_CONFIG.fullmatch(name):
            raise InvalidConfigError(f"{name}: pylog does not implement this broker config")
        raise InvalidConfigError(f"{name}: not a broker config pylog knows")
    out = {}
    for name in sorted(names):
        out[name] = _checked_value(name, configs[name])
    _check_together(out)
    return out


def _checked_value(name: str, value: str) -> str:
    listener = LISTENER_LIMIT_KEY.match(name)
    if listener:
        name = listener.group(2)   # Kafka checks a listener's key as its base key
    kind = _KAFKA_TYPES.get(name, "LONG")
    text = str(value).strip()
    if kind in ("INT", "LONG"):
        try:
            n = int(text)
        except ValueError:
            raise InvalidRequestError(f"Invalid value {value} for configuration {name}: Not a number of type "
                                      f"{kind}") from None
        if kind == "INT" and not -(1 << 31) <= n < (1 << 31) or not -(1 << 63) <= n < (1 << 63):
            raise InvalidRequestError(f"Invalid value {value} for configuration {name}: Not a number of type "
                                      f"{kind}")
    elif kind == "DOUBLE":
        try:
            float(text)
        except ValueError:
            raise InvalidRequestError(f"Invalid value {value} for configuration {name}: Not a number of type "
                                      "DOUBLE") from None
    elif kind == "BOOLEAN" and text.lower() not in ("true", "false"):
        raise InvalidRequestError(f"Invalid value {value} for configuration {name}: Expected value to be either "
                                  "true or false")
    if name in _BROKER_TO_TOPIC:
        # The topic config's own checks (allowed values, ranges), in the broker key's name.
        topic_key = _BROKER_TO_TOPIC[name]
        try:
            return validate_topic_configs({topic_key: text})[topic_key]
        except InvalidConfigError as e:
            raise InvalidRequestError(str(e).replace(topic_key, name)) from None
    if name in _AT_LEAST and int(text) < _AT_LEAST[name]:
        raise InvalidRequestError(f"Invalid value {value} for configuration {name}: Value must be at least "
                                  f"{_AT_LEAST[name]}")
    if name == "log.cleaner.io.max.bytes.per.second" and not float(text) > 0:
        # pylog refuses it at start-up too: the cleaner's throttler would never let a byte through
        raise InvalidRequestError(f"Invalid value {value} for configuration {name}: must be above 0 (the cleaner "
                                  "could never move a byte)")
    if name == "max.connections.per.ip.overrides":
        from .connection_quotas import parse_overrides
        try:
            parse_overrides(text)
        except InvalidConfigError as e:
            raise InvalidRequestError(str(e)) from None
    return text


def _check_together(configs: dict[str, str]) -> None:
    lo, hi = configs.get("log.cleaner.min.compaction.lag.ms"), configs.get("log.cleaner.max.compaction.lag.ms")
    if lo is not None and hi is not None and int(lo) > int(hi):
        raise InvalidRequestError(f"conflict config setting log.cleaner.min.compaction.lag.ms ({lo}) > "
                                  f"log.cleaner.max.compaction.lag.ms ({hi})")


def check_on_broker(cfg, entity: str, configs: dict[str, str]) -> None:
    """Kafka's DynamicBrokerConfig.validate on the broker that got the request: the
    broker's config as it would be with the change (KafkaConfig's cross-key rules)
    and its reconfigurables' validateReconfiguration. Kafka wraps what they throw
    in a ConfigException whose words are these."""
    if entity not in ("", str(cfg.broker_id)):
        return   # another broker's own configs (forwarded): that broker checked them
    new = copy.copy(cfg)
    live = {k: v for k, v in configs.items() if _is_live(k)}
    if entity:
        new.dynamic_broker = live
    else:
        new.dynamic_default = live
    try:
        _check_effective(cfg, new)
    except InvalidConfigError as e:
        raise InvalidRequestError(f"Invalid value org.apache.kafka.common.config.ConfigException: {e} for "
                                  "configuration Invalid dynamic configuration") from None


def _check_effective(old, new) -> None:
    if new.get("max.connections.per.ip") == 0 and not new.get("max.connections.per.ip.overrides").strip():
        raise InvalidConfigError("max.connections.per.ip can be set to zero only if "
                                 "max.connections.per.ip.overrides property is set.")
    lo, hi = new.get("log.cleaner.min.compaction.lag.ms"), new.get("log.cleaner.max.compaction.lag.ms")
    if lo > hi:
        raise InvalidConfigError(f"conflict config setting log.cleaner.min.compaction.lag.ms ({lo}) > "
                                 f"log.cleaner.max.compaction.lag.ms ({hi})")
    threads, current = new.get("log.cleaner.threads"), old.get("log.cleaner.threads")
    if threads != current:
        # Kafka's LogCleaner.validateReconfiguration
        if threads < 1:
            raise InvalidConfigError("Log cleaner threads should be at least 1")
        if threads < current // 2:
            raise InvalidConfigError(f"Log cleaner threads cannot be reduced to less than half the current value "
                                     f"{current}")
        if threads > current * 2:
            raise InvalidConfigError(f"Log cleaner threads cannot be increased to more than double the current "
                                     f"value {current}")
    from .log_cleaner import check_offset_map
    check_offset_map(threads, min(new.get("log.cleaner.dedupe.buffer.size") // max(threads, 1), (1 << 31) - 1),
                     new.get("log.cleaner.io.buffer.load.factor"))


# Kafka broker keys pylog does not list in BROKER_DEFAULTS but Kafka has as static ones:
# "Cannot update these configs dynamically" is Kafka's answer for them too.
_KNOWN_STATIC = frozenset({
    "node.id", "process.roles", "controller.quorum.voters", "controller.listener.names", "metadata.log.dir",
    "log.retention.minutes", "log.retention.hours", "log.roll.hours", "log.roll.jitter.hours",
    "num.partitions", "default.replication.factor", "auto.create.topics.enable", "delete.topic.enable",
    "socket.send.buffer.bytes", "socket.receive.buffer.bytes", "queued.max.requests",
    "log.flush.scheduler.interval.ms"})


# ---- applying them on a broker ----

def apply(broker, table: dict[str, dict[str, str]]) -> set[str]:
    """Take the controller's dynamic configs: this broker's own and the cluster
    default become BrokerConfig's dynamic layers, and what changed is applied
    to the parts that hold it. On the broker's event loop. The keys whose
    effective value changed."""
    cfg = broker.config
    mine = _usable(table.get(str(cfg.broker_id)) or {}, True)
    default = _usable(table.get("") or {}, False)
    if mine == cfg.dynamic_broker and default == cfg.dynamic_default:
        return set()
    before = {k: cfg.get(k) for k in LIVE}
    listener_keys = {k for layer in (mine, default, cfg.dynamic_broker, cfg.dynamic_default) for k in layer
                     if k not in LIVE}
    before_listeners = {k: _layered(cfg, k) for k in listener_keys}
    cfg.dynamic_broker, cfg.dynamic_default = mine, default
    changed = {k for k in LIVE if cfg.get(k) != before[k]}
    changed |= {k for k in listener_keys if _layered(cfg, k) != before_listeners[k]}
    if not changed:
        return changed
    log.info("dynamic broker configs changed: %s", ", ".join(sorted(changed)))
    logs = broker.log_manager
    if changed & _TOPIC_DEFAULTS:
        logs.refresh_topic_defaults()
    if changed & _CONNECTION_KEYS or changed & listener_keys:
        broker.connection_quotas.reconfigure(cfg)
    if changed & _CLEANER_KEYS and broker.log_cleaner is not None:
        _off_the_loop(broker.log_cleaner.reconfigure, cfg)
    if "producer.id.expiration.ms" in changed:
        for p in list(logs.partitions.values()):
            p.producer_state.expiration_ms = cfg.get("producer.id.expiration.ms")
    return changed


def _usable(configs: dict[str, str], per_broker: bool) -> dict[str, str]:
    """The stored configs this broker can apply. The controller checked them, but a
    store written by another version may hold what this one cannot take: that entity
    is left out whole (logged) rather than stopping the metadata update."""
    live = {k: v for k, v in configs.items() if _is_live(k)}
    try:
        return validate(live, per_broker)
    except (InvalidConfigError, InvalidRequestError) as e:
        log.error("dynamic broker configs %s not applied: %s", live, e)
        return {}


def _layered(cfg, key: str):
    """A key outside BROKER_DEFAULTS (a listener's own) as the layers give it."""
    for layer in (cfg.dynamic_broker, cfg.dynamic_default, cfg.props):
        if key in layer:
            return layer[key]
    return None


def _off_the_loop(fn, *args) -> None:
    """fn(*args) on a worker thread (it joins threads); its failure is logged."""
    def run():
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 -- the broker goes on with what it has
            log.exception("applying a dynamic broker config failed")
    try:
        asyncio.get_running_loop().run_in_executor(None, run)
    except RuntimeError:   # no loop (a test's direct call)
        run()


# ---- DescribeConfigs on BROKER resources ----

def _synonym_names(name: str) -> list[str]:
    """Kafka's DynamicBrokerConfig.brokerConfigSynonyms."""
    for group in (["log.roll.ms", "log.roll.hours"], ["log.roll.jitter.ms", "log.roll.jitter.hours"],
                  ["log.retention.ms", "log.retention.minutes", "log.retention.hours"]):
        if name in group:
            return group
    if name == "log.flush.interval.ms":
        return ["log.flush.interval.ms", "log.flush.scheduler.interval.ms"]
    listener = _LISTENER_CONFIG.fullmatch(name)
    if listener:
        return [name, listener.group(1)]
    return [name]


def _synonyms(cfg, name: str) -> list[tuple[str, str, int]]:
    """(name, value, source) in Kafka's precedence, from name on (Kafka drops the ones before)."""
    out = []
    for layer, source in ((cfg.dynamic_broker, 2), (cfg.dynamic_default, 3), (cfg.props, 4)):
        out += [(n, layer[n], source) for n in _synonym_names(name) if n in layer]
    out += [(n, config_text(BROKER_DEFAULTS[n][1]), 5) for n in _synonym_names(name)
            if n in BROKER_DEFAULTS and BROKER_DEFAULTS[n][1] is not None]
    while out and out[0][0] != name:
        out.pop(0)
    return out


def describe(cfg, name: str, keys, include_synonyms: bool) -> list:
    """Kafka's ConfigHelper for a BROKER resource: "" lists the cluster-default
    dynamic configs, this broker's id every broker config with its source."""
    C = m.DescribeConfigsResponse.DescribeConfigsResourceResult
    S = m.DescribeConfigsResponse.DescribeConfigsSynonym
    if name:
        try:
            got = int(name)
        except ValueError:
            raise InvalidRequestError(f"Broker id must be an integer, but it is: {name}") from None
        if got != cfg.broker_id:
            raise InvalidRequestError(f"Unexpected broker id, expected {cfg.broker_id} or empty string, but "
                                      f"received {name}")
        entries = {k: (None if cfg.get(k) is None else config_text(cfg.get(k))) for k in BROKER_DEFAULTS}
        # a listener's own connection limits, wherever they are set (Kafka lists the ones it has)
        entries.update({k: _layered(cfg, k) for layer in (cfg.dynamic_broker, cfg.dynamic_default, cfg.props)
                        for k in layer if LISTENER_LIMIT_KEY.match(k)})
    else:
        entries = dict(cfg.dynamic_default)
    out = []
    for key in sorted(entries):
        if keys is not None and key not in keys:
            continue
        syn = _synonyms(cfg, key)
        if not name:
            syn = [s for s in syn if s[2] == 3]
        source = syn[0][2] if syn else 5
        out.append(C(name=key, value=entries[key], read_only=key not in ALL_DYNAMIC_CONFIGS,
                     is_default=source == 5, config_source=source, is_sensitive=False,
                     synonyms=[S(name=n, value=v, source=s) for n, v, s in syn] if include_synonyms else []))
    return out


def topic_synonyms(cfg, broker_key: str) -> list[tuple[str, str, int]]:
    """A topic config's broker-level synonyms (Kafka's configSynonyms for a topic)."""
    return _synonyms(cfg, broker_key)
