"""Broker and topic configuration under Kafka's own key names.

A broker reads a server.properties file (Kafka's format) plus --override
key=value pairs; every key keeps Kafka's name and default. Topic configs
(retention.ms, segment.bytes, ...) default to the broker key Kafka derives them
from (log.retention.ms, log.segment.bytes, ...) and can be set per topic by
CreateTopics / AlterConfigs. Unknown broker keys are kept and reported, as
Kafka does ("supplied but not used"); unknown topic keys are refused, as Kafka
refuses them, with INVALID_CONFIG.

Values are stored as the strings Kafka shows (DescribeConfigs returns strings)
and parsed on access, so what a client wrote is what it reads back.
"""
from __future__ import annotations

import logging
import re
from typing import NamedTuple

from ..errors import InvalidConfigError, InvalidTopicError
from . import tls
from .tls import SSL_DEFAULTS
from ..metrics import check_listener as check_metrics_listener
from ..share.configs import BROKER_DEFAULTS as SHARE_BROKER_DEFAULTS, check_share_broker_configs

log = logging.getLogger("pylog.broker")

LONG_MAX = (1 << 63) - 1
RACK_AWARE_REPLICA_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"

# key: (type, default). Types: int, bool, str, float, list (Kafka's comma-separated LIST).
BROKER_DEFAULTS: dict[str, tuple[type, object]] = {
    "broker.id": (int, 1),
    "listeners": (str, "PLAINTEXT://127.0.0.1:9092"),
    "advertised.listeners": (str, None),
    # Kafka's listener names and roles (BrokerConfig.listeners): each listener
    # is bound; the inter-broker one carries replication and broker ->
    # controller requests, the control-plane one (KIP-291) the controller's
    # requests. With several listeners, only those two serve the inter-broker
    # APIs. Every security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL.
    "listener.security.protocol.map": (str, "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,"
                                            "SASL_SSL:SASL_SSL"),
    "inter.broker.listener.name": (str, None),
    "control.plane.listener.name": (str, None),
    # Kafka's older way to name the inter-broker listener (by protocol):
    # PLAINTEXT or SSL until SASL exists (see _refuse_security).
    "security.inter.broker.protocol": (str, "PLAINTEXT"),
    # SASL on SASL_PLAINTEXT listeners (pylog/broker/sasl.py). The JAAS entries
    # (listener.name.<l>.<mechanism>.sasl.jaas.config) and the per-listener
    # listener.name.<l>.sasl.enabled.mechanisms are read there.
    "sasl.enabled.mechanisms": (str, "GSSAPI"),
    "sasl.mechanism.inter.broker.protocol": (str, "GSSAPI"),
    "sasl.jaas.config": (str, None),
    "connections.max.reauth.ms": (int, 0),
    "connection.failed.authentication.delay.ms": (int, 100),
    "log.dirs": (str, None),
    "log.dir": (str, "/tmp/kafka-logs"),
    "num.partitions": (int, 1),
    "default.replication.factor": (int, 1),
    "auto.create.topics.enable": (bool, True),
    "delete.topic.enable": (bool, True),
    "log.retention.ms": (int, None),
    "log.retention.minutes": (int, None),
    "log.retention.hours": (int, 168),
    "log.retention.bytes": (int, -1),
    "log.retention.check.interval.ms": (int, 300000),
    "log.segment.bytes": (int, 1 << 30),
    "log.roll.ms": (int, None),
    "log.roll.hours": (int, 168),
    "log.flush.interval.messages": (int, LONG_MAX),
    "log.flush.interval.ms": (int, None),
    "log.flush.scheduler.interval.ms": (int, LONG_MAX),
    "log.flush.offset.checkpoint.interval.ms": (int, 60000),
    "log.index.interval.bytes": (int, 4096),
    "log.index.size.max.bytes": (int, 10 << 20),
    "log.cleanup.policy": (str, "delete"),
    "log.message.timestamp.type": (str, "CreateTime"),
    # KIP-937: a CreateTime record more than this far before / after the
    # broker's clock is refused with INVALID_TIMESTAMP (Kafka's defaults).
    "log.message.timestamp.before.max.ms": (int, LONG_MAX),
    "log.message.timestamp.after.max.ms": (int, 3600000),
    "compression.type": (str, "producer"),
    "message.max.bytes": (int, 1048588),
    "min.insync.replicas": (int, 1),
    "unclean.leader.election.enable": (bool, False),
    "socket.request.max.bytes": (int, 104857600),
    # The most a consumer's Fetch answer carries, whatever its max_bytes
    # (KIP-74; the first batch still goes out whole).
    "fetch.max.bytes": (int, 57671680),
    # KIP-227: incremental fetch sessions the broker keeps (fetch_session.py).
    "max.incremental.fetch.session.cache.slots": (int, 1000),
    "connections.max.idle.ms": (int, 600000),
    "producer.id.expiration.ms": (int, 86400000),
    "offsets.topic.replication.factor": (int, 3),
    "offsets.topic.num.partitions": (int, 50),
    "offsets.topic.segment.bytes": (int, 104857600),
    "cluster.id": (str, None),
    "group.min.session.timeout.ms": (int, 6000),
    "group.max.session.timeout.ms": (int, 1800000),
    "group.initial.rebalance.delay.ms": (int, 3000),
    "group.max.size": (int, 2147483647),
    # KIP-848 consumer groups (Kafka's GroupCoordinatorConfig names, defaults and checks;
    # _check_group_coordinator below). Kafka 4.1+ also enables `streams` by default, which pylog
    # does not serve: its default is Kafka 4.0's.
    "group.coordinator.rebalance.protocols": (list, ["classic", "consumer"]),
    "group.consumer.assignors": (list, ["uniform", "range"]),
    "group.consumer.session.timeout.ms": (int, 45000),
    "group.consumer.min.session.timeout.ms": (int, 45000),
    "group.consumer.max.session.timeout.ms": (int, 60000),
    "group.consumer.heartbeat.interval.ms": (int, 5000),
    "group.consumer.min.heartbeat.interval.ms": (int, 5000),
    "group.consumer.max.heartbeat.interval.ms": (int, 15000),
    "group.consumer.max.size": (int, 2147483647),
    # Online conversion of groups in use between the two protocols (pylog/groups/classic_members.py).
    "group.consumer.migration.policy": (str, "bidirectional"),
    # KIP-932 share groups and the share coordinator (pylog/share/configs.py).
    **{k: (int, v) for k, v in SHARE_BROKER_DEFAULTS.items()},
    # KIP-1191 dead-letter topics of share groups (pylog/share/dlq.py), read at each write.
    "errors.deadletterqueue.auto.create.topics.enable": (bool, False),
    "errors.deadletterqueue.topic.name.prefix": (str, "dlq."),
    "offset.metadata.max.bytes": (int, 4096),
    "offsets.retention.minutes": (int, 10080),
    "offsets.retention.check.interval.ms": (int, 600000),
    # In a cluster, how long an offset commit or group write waits for the
    # offsets partition's ISR (Kafka writes them with acks=all).
    "offsets.commit.timeout.ms": (int, 5000),
    # Replication and the cluster (KAFKA-NOTES §4; Kafka's names and defaults).
    "broker.rack": (str, None),
    # KIP-392: unset, consumers read from leaders only (Kafka's default);
    # RackAwareReplicaSelector (Kafka's class name, or the bare class name)
    # makes a leader send a consumer in another rack to a replica in its own
    # (replica_selector() below).
    "replica.selector.class": (str, None),
    # Authorization (broker/authorizer.py): Kafka's two ACL authorizers map to
    # pylog's one; none configured (the default) means no check at all.
    "authorizer.class.name": (str, ""),
    "super.users": (str, ""),
    "allow.everyone.if.no.acl.found": (bool, False),
    "zookeeper.connect": (str, None),
    "zookeeper.session.timeout.ms": (int, 18000),
    "replica.lag.time.max.ms": (int, 30000),
    "replica.fetch.wait.max.ms": (int, 500),
    "replica.fetch.max.bytes": (int, 1048576),
    "replica.fetch.response.max.bytes": (int, 10485760),
    "auto.leader.rebalance.enable": (bool, True),
    "leader.imbalance.check.interval.seconds": (int, 300),
    "controlled.shutdown.enable": (bool, True),
    # pylog's own, for the embedded metadata backend: the broker id that is the
    # controller, and where it listens ("host:port").
    "pylog.controller.id": (int, None),
    "pylog.controller.listener": (str, None),
    # pylog's own: serve the web console (pylog/console) at "host:port", a
    # client of this broker's own listener over the Kafka protocol.
    "pylog.console.listener": (str, None),
    # With the embedded controller, a broker heartbeats this often and is
    # declared dead after this long without one (Kafka's KRaft names and defaults).
    "broker.heartbeat.interval.ms": (int, 2000),
    "broker.session.timeout.ms": (int, 9000),
    # pylog's own: a request whose first bytes arrived must be complete within
    # this time, or the connection is closed (a stalled half request).
    "pylog.request.read.timeout.ms": (int, 30000),
    # pylog's own: the most bytes a produced compressed batch may inflate to
    # (at least the topic's max.message.bytes, so whatever is accepted
    # uncompressed is also accepted compressed). Kafka has no such bound and
    # inflates whatever it is sent; 64 MiB is 64 times the default
    # max.message.bytes: a 1 MB librdkafka or Java batch.size filled with
    # text-like data inflates 3-10x, and even all-zero payloads stay far below
    # it, while a 60 KB zstd bomb that would inflate to 2 GB is refused after
    # 64 MiB of work, streamed, never held.
    "pylog.message.max.decompressed.bytes": (int, 64 << 20),
    # KIP-599's controller mutation quota: a token bucket of rate x window.num x
    # window.size.seconds tokens per quota entity (Kafka's names and defaults).
    "controller.quota.window.num": (int, 11),
    "controller.quota.window.size.seconds": (int, 1),
    # Client quotas (broker/client_quotas.py) and connection limits
    # (broker/connection_quotas.py): Kafka's names and defaults, 2147483647
    # (Int.MaxValue) meaning no limit.
    "quota.window.num": (int, 11),
    "quota.window.size.seconds": (int, 1),
    "max.connections": (int, 2147483647),
    "max.connections.per.ip": (int, 2147483647),
    "max.connections.per.ip.overrides": (str, ""),
    "max.connection.creation.rate": (int, 2147483647),
    # pylog's own: auto (uvloop when installed), asyncio or uvloop.
    "pylog.event.loop": (str, "auto"),
    # pylog's own: HOST:PORT where GET /metrics answers in Prometheus's text
    # format (pylog/metrics); unset, no endpoint. Needs prometheus_client.
    "pylog.metrics.listener": (str, None),
    # The transaction coordinator (KAFKA-NOTES §6.2; Kafka's names and defaults).
    "transaction.state.log.num.partitions": (int, 50),
    "transaction.state.log.replication.factor": (int, 3),
    "transaction.state.log.min.isr": (int, 2),
    "transaction.state.log.segment.bytes": (int, 104857600),
    "transaction.max.timeout.ms": (int, 900000),
    "transactional.id.expiration.ms": (int, 604800000),
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": (int, 10000),
    "transaction.remove.expired.transaction.cleanup.interval.ms": (int, 3600000),
    # The log cleaner (Kafka's CleanerConfig: names, defaults and ranges;
    # pylog/broker/log_cleaner.py). The dedupe buffer is shared by the threads.
    "log.cleaner.enable": (bool, True),
    "log.cleaner.threads": (int, 1),
    "log.cleaner.backoff.ms": (int, 15000),
    "log.cleaner.io.max.bytes.per.second": (float, 1.7976931348623157e308),
    "log.cleaner.dedupe.buffer.size": (int, 128 << 20),
    "log.cleaner.io.buffer.load.factor": (float, 0.9),
    "log.cleaner.min.cleanable.ratio": (float, 0.5),
    "log.cleaner.delete.retention.ms": (int, 86400000),
    "log.cleaner.min.compaction.lag.ms": (int, 0),
    "log.cleaner.max.compaction.lag.ms": (int, LONG_MAX),
}
# Kafka's ConfigDef ranges of numeric broker and topic keys: (low, high), None open.
_RANGES: dict[str, tuple] = {
    "pylog.priority.default": (0, 9),
    "log.cleaner.threads": (0, None),
    "log.cleaner.backoff.ms": (0, None),
    "log.cleaner.min.cleanable.ratio": (0, 1),
    "log.cleaner.delete.retention.ms": (0, None),
    "log.cleaner.min.compaction.lag.ms": (0, None),
    "log.cleaner.max.compaction.lag.ms": (1, None),
    "min.cleanable.dirty.ratio": (0, 1),
    "delete.retention.ms": (0, None),
    "min.compaction.lag.ms": (0, None),
    "max.compaction.lag.ms": (1, None),
    "quota.window.num": (1, None),
    "quota.window.size.seconds": (1, None),
    "max.connections": (0, None),
    "max.connections.per.ip": (0, None),
    "max.connection.creation.rate": (0, None),
}
# Per-listener overrides of the connection limits (Kafka's
# listener.name.<listener>.<key>); other listener.name. keys are security
# settings (refused below until built).
LISTENER_LIMIT_KEY = _LISTENER_KEY = re.compile(r"listener\.name\.([^.]+)\.(max\.connections|max\.connection\.creation\.rate)$")


_GROUP_CONSUMER_INT_KEYS = (
    "group.consumer.session.timeout.ms", "group.consumer.min.session.timeout.ms",
    "group.consumer.max.session.timeout.ms", "group.consumer.heartbeat.interval.ms",
    "group.consumer.min.heartbeat.interval.ms", "group.consumer.max.heartbeat.interval.ms",
    "group.consumer.max.size",
)
# Kafka's Group.GroupType names, in its documented order.
_GROUP_TYPES = ("consumer", "classic", "share", "streams")
_MIGRATION_POLICIES = ("bidirectional", "upgrade", "downgrade", "disabled")
_ASSIGNOR_CLASSES = {
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor": "uniform",
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor": "range",
}


def _check_list(key: str, values: list[str], valid: tuple[str, ...] = ()) -> None:
    """Kafka's ConfigDef.ValidList with empty and null lists refused, in its words."""
    if not values:
        allowed = f"[{', '.join(valid)}]" if valid else "any non-empty value"
        raise InvalidConfigError(f"Configuration '{key}' must not be empty. Valid values include: {allowed}")
    if len(set(values)) != len(values):
        raise InvalidConfigError(f"Configuration '{key}' values must not be duplicated.")
    for value in values:
        if not value:
            raise InvalidConfigError(f"Configuration '{key}' values must not be empty.")
        if valid and value not in valid:
            raise InvalidConfigError(f"Invalid value {value} for configuration {key}: String must be one of: "
                                     f"{', '.join(valid)}")


def _check_range(key: str, value) -> None:
    # Kafka's ConfigDef.Range wording.
    low, high = _RANGES.get(key, (None, None))
    if low is not None and high is not None and not low <= value <= high:
        raise InvalidConfigError(f"Invalid value {value} for configuration {key}: Value must be no less than "
                                 f"{low} and no more than {high}")
    if low is not None and value < low:
        raise InvalidConfigError(f"Invalid value {value} for configuration {key}: Value must be at least {low}")

# topic key: (broker key giving its default, type, allowed values or None)
TOPIC_CONFIGS: dict[str, tuple[str | None, type, tuple | None]] = {
    "cleanup.policy": ("log.cleanup.policy", str, None),
    "compression.type": ("compression.type", str, ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")),
    "delete.retention.ms": ("log.cleaner.delete.retention.ms", int, None),
    "file.delete.delay.ms": (None, int, None),
    "flush.messages": ("log.flush.interval.messages", int, None),
    "flush.ms": ("log.flush.interval.ms", int, None),
    "index.interval.bytes": ("log.index.interval.bytes", int, None),
    "max.message.bytes": ("message.max.bytes", int, None),
    "message.timestamp.type": ("log.message.timestamp.type", str, ("CreateTime", "LogAppendTime")),
    "message.timestamp.before.max.ms": ("log.message.timestamp.before.max.ms", int, None),
    "message.timestamp.after.max.ms": ("log.message.timestamp.after.max.ms", int, None),
    "max.compaction.lag.ms": ("log.cleaner.max.compaction.lag.ms", int, None),
    "min.cleanable.dirty.ratio": ("log.cleaner.min.cleanable.ratio", float, None),
    "min.compaction.lag.ms": ("log.cleaner.min.compaction.lag.ms", int, None),
    "min.insync.replicas": ("min.insync.replicas", int, None),
    "retention.bytes": ("log.retention.bytes", int, None),
    "retention.ms": ("log.retention.ms", int, None),
    "segment.bytes": ("log.segment.bytes", int, None),
    "segment.index.bytes": ("log.index.size.max.bytes", int, None),
    "segment.ms": ("log.roll.ms", int, None),
    "unclean.leader.election.enable": ("unclean.leader.election.enable", bool, None),
    # KIP-1191: a share group may write its dead letters only to a topic with this on (pylog/share/dlq.py).
    "errors.deadletterqueue.group.enable": (None, bool, None),
    # pylog's own, for share groups (pylog/share/delivery.py): a delay every
    # record waits before share consumers may acquire it, and how long a
    # record can wait behind higher-priority ones before it counts as top.
    "pylog.delivery.delay.ms": (None, int, None),
    "pylog.priority.max.wait.ms": (None, int, None),
    # The priority (0-9) of a record without a pylog.priority header.
    "pylog.priority.default": (None, int, None),
}
# Defaults of topic keys with no broker key behind them (Kafka's; pylog's).
_TOPIC_ONLY_DEFAULTS = {"file.delete.delay.ms": "60000", "errors.deadletterqueue.group.enable": "false",
                        "pylog.delivery.delay.ms": "0", "pylog.priority.max.wait.ms": "30000",
                        "pylog.priority.default": "0"}

# Kafka's Topic.validate. fullmatch: `$` would let a final newline through,
# and a topic name becomes a directory name.
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def validate_topic_name(name: str) -> None:
    if not isinstance(name, str) or name in (".", "..") or not _LEGAL_TOPIC.fullmatch(name):
        raise InvalidTopicError(
            f"topic name {name!r} is illegal: 1-249 characters of ASCII letters, digits, '.', '_' and '-'")


def config_text(v) -> str:
    """A typed config value as Kafka writes it (DescribeConfigs, properties files)."""
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _parse(key: str, typ: type, text: str):
    if text is None:
        return None
    if typ is bool:
        t = str(text).strip().lower()
        if t not in ("true", "false"):
            raise InvalidConfigError(f"{key}: {text!r} is not a boolean (true/false)")
        return t == "true"
    if typ is int:
        try:
            return int(str(text).strip())
        except ValueError:
            raise InvalidConfigError(f"{key}: {text!r} is not an integer") from None
    if typ is list:
        # Kafka's ConfigDef LIST: comma-separated, whitespace around commas dropped, "" is [].
        t = str(text).strip()
        return re.split(r"\s*,\s*", t) if t else []
    if typ is float:
        try:
            v = float(str(text).strip())
        except ValueError:
            v = float("nan")
        if v != v:  # NaN: Kafka's Double parse refuses it, and no range holds it
            raise InvalidConfigError(f"{key}: {text!r} is not a number") from None
        return v
    return str(text).strip()


def read_properties(path: str) -> dict[str, str]:
    """A Java .properties file as a dict (comments, blank lines, `=` or `:`
    separators and backslash line continuations)."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        pending = ""
        for raw in f:
            line = pending + raw.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1]
                continue
            if not line or line[0] in "#!":
                continue
            m = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2)
            else:
                out[line] = ""
    return out


class BrokerConfig:
    """The broker's settings: Kafka keys, typed on access. The static ones are
    fixed at start; dynamic broker configs (broker/dynamic_config.py) lie over
    them in Kafka's order: this broker's own, then the cluster default.

    Threads: any (no lock: the dicts are only read, and a dynamic change
    replaces a layer's dict whole, on the event loop).
    """

    def __init__(self, props: dict[str, str] | None = None):
        self.dynamic_broker: dict[str, str] = {}    # DYNAMIC_BROKER_CONFIG, this broker's
        self.dynamic_default: dict[str, str] = {}   # DYNAMIC_DEFAULT_BROKER_CONFIG, the cluster's
        self.props: dict[str, str] = {}
        for k, v in (props or {}).items():
            self.props[k] = config_text(v)
        _refuse_security(self.props)
        self.authorizer_enabled()
        unknown = [k for k in self.props if k not in BROKER_DEFAULTS and not _is_tls_key(k) and not _sasl_key(k)
                   and not _LISTENER_KEY.match(k)]
        if unknown:
            log.warning("these broker configs were supplied but are not used: %s", ", ".join(sorted(unknown)))
        for k in self.props:
            if k in BROKER_DEFAULTS:
                self.get(k)  # fail early on a bad value
        for k in ("log.message.timestamp.before.max.ms", "log.message.timestamp.after.max.ms",
                  "max.incremental.fetch.session.cache.slots"):
            if self.get(k) < 0:
                raise InvalidConfigError(f"{k}={self.get(k)}: the value must be at least 0")
        # Kafka's ConfigDef ranges: atLeast(0) for the checkpoint interval,
        # atLeast(1) for these (a retention check every 0 ms would spin).
        if self.get("log.flush.offset.checkpoint.interval.ms") < 0:
            k = "log.flush.offset.checkpoint.interval.ms"
            raise InvalidConfigError(f"Invalid value {self.get(k)} for configuration {k}: Value must be at least 0")
        for k in ("log.message.timestamp.type", "compression.type"):
            _check_allowed(k, self.get(k), TOPIC_CONFIGS[k.removeprefix("log.")][2])
        for k in ("controller.quota.window.num", "controller.quota.window.size.seconds",
                  "log.retention.check.interval.ms", "offsets.topic.segment.bytes"):
            if self.get(k) < 1:
                raise InvalidConfigError(f"Invalid value {self.get(k)} for configuration {k}: Value must be at least 1")
        for k in _RANGES:
            if k in BROKER_DEFAULTS:
                _check_range(k, self.get(k))
        from .connection_quotas import parse_overrides  # here: it imports this package's quota helpers
        parse_overrides(self.get("max.connections.per.ip.overrides"))
        if self.get("max.connections.per.ip") == 0 and not self.get("max.connections.per.ip.overrides").strip():
            raise InvalidConfigError("max.connections.per.ip can be set to zero only if "
                                     "max.connections.per.ip.overrides property is set.")
        for k in self.props:
            m = _LISTENER_KEY.match(k)
            if m:
                v = _parse(k, int, self.props[k])
                if v <= 0:
                    raise InvalidConfigError(f"Invalid {m.group(2)} {v}")
        console = self.get("pylog.console.listener")
        if console is not None and not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]*):\d{1,5}", console.strip()):
            raise InvalidConfigError(f"pylog.console.listener={console!r}: expected host:port (the web "
                                     "console's address)")
        if not self.get("log.cleaner.io.max.bytes.per.second") > 0:
            # Kafka takes it and its throttler then sleeps forever on the first
            # bytes: a cleaner that can never finish nor be aborted. Refused.
            raise InvalidConfigError("log.cleaner.io.max.bytes.per.second must be above 0 (the cleaner could "
                                     "never move a byte)")
        self.replica_selector()
        self._check_listener_roles()
        self._check_group_coordinator()
        if self.get("pylog.metrics.listener") is not None:
            check_metrics_listener(self.get("pylog.metrics.listener"))
        from .sasl import inter_broker_credentials, listener_settings
        listener_settings(self)
        inter_broker_credentials(self)

    def _check_listener_roles(self) -> None:
        """Kafka's KafkaConfig listener rules, checked at start so a broker
        never runs with a listener it cannot honour: distinct names and
        ports, a security protocol for every name (PLAINTEXT is the only one
        pylog speaks), advertised names among the bound ones, and the
        inter-broker / control-plane names among the advertised ones."""
        bound = self.listeners()
        protocols = self.security_protocol_map()
        for ln in bound:
            proto = protocols.get(ln.name)
            if proto is None:
                raise InvalidConfigError(f"No security protocol defined for listener {ln.name} "
                                         f"(listener.security.protocol.map)")
            if proto not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
                raise InvalidConfigError(
                    f"listener {ln.name} uses security protocol {proto}: pylog speaks PLAINTEXT, SSL, "
                    f"SASL_PLAINTEXT and SASL_SSL; map the listener to one of them or leave it out")
        names = {ln.name for ln in bound}
        advertised = self.advertised_listeners()
        adv_names = {ln.name for ln in advertised}
        if not adv_names <= names:
            raise InvalidConfigError(
                f"advertised.listeners listener names must be equal to or a subset of the ones defined in "
                f"listeners. Found {','.join(sorted(adv_names))}. The valid options based on the current "
                f"configuration are {','.join(sorted(names))}")
        inter = self.inter_broker_listener_name()
        if inter not in adv_names:
            raise InvalidConfigError(
                f"inter.broker.listener.name must be a listener name defined in advertised.listeners. "
                f"The valid options based on currently configured listeners are {','.join(sorted(adv_names))}")
        self._check_tls(protocols, inter)
        control = self.get("control.plane.listener.name")
        if control is not None:
            control = control.upper()
            if control == inter:
                raise InvalidConfigError(
                    f"control.plane.listener.name, when defined, should have a different value from the inter "
                    f"broker listener name. Currently they both have the value {control}")
            if control not in adv_names:
                raise InvalidConfigError(
                    f"control.plane.listener.name must be a listener name defined in advertised.listeners. "
                    f"The valid options based on currently configured listeners are "
                    f"{','.join(sorted(adv_names))}")

    def _check_tls(self, protocols: dict[str, str], inter: str) -> None:
        """Build every TLS context once at start, so a missing key store, a
        wrong key password or a bad ssl.* value refuses the start with the
        reason, before anything binds. Refused too: ssl.* keys on a listener
        that is not SSL and no SSL listener at all (they would be accepted and
        do nothing)."""
        self._server_tls: dict[str, object] = {}
        self._client_tls: dict[str, object] = {}
        ssl_names = {ln.name for ln in self.listeners() if protocols.get(ln.name) in ("SSL", "SASL_SSL")}
        for key in self.props:
            if key.startswith("listener.name.") and _is_tls_key(key):
                name = key[len("listener.name."):].partition(".")[0].upper()
                if name not in ssl_names:
                    raise InvalidConfigError(f"{key}: listener {name} is not an SSL listener of this broker (nor "
                                             f"SASL_SSL)")
        for name in sorted(ssl_names):
            self._server_tls[name] = tls.server_context(self.props, name, sasl=protocols[name] == "SASL_SSL")
        self._principal_mappers = {name: tls.PrincipalMapper(tls.ssl_settings(self.props, name)
                                                             ["ssl.principal.mapping.rules"])
                                   for name in ssl_names}
        for name in {inter, self.control_plane_listener_name()}:
            if protocols.get(name) in ("SSL", "SASL_SSL"):
                self._client_tls[name] = tls.client_context(self.props, name)
        if not ssl_names and any(_is_tls_key(k) for k in self.props):
            raise InvalidConfigError(
                f"{', '.join(sorted(k for k in self.props if _is_tls_key(k)))}: no listener uses the SSL security "
                f"protocol (nor SASL_SSL), so these would do nothing")

    def server_tls(self, listener: str):
        """The ssl.SSLContext listener accepts with; None for PLAINTEXT."""
        return self._server_tls.get(listener)

    def client_tls(self, listener: str):
        """The ssl.SSLContext this broker connects to other brokers'
        listener with (inter-broker or control plane); None for PLAINTEXT."""
        return self._client_tls.get(listener)

    def inter_broker_tls(self):
        """The SSLContext for connections to other brokers' inter-broker
        listener (replica fetchers, transaction markers, requests to the
        controller); None when that listener is PLAINTEXT."""
        return self._client_tls.get(self.inter_broker_listener_name())

    def principal_mapper(self, listener: str):
        return self._principal_mappers[listener]

    def security_protocol_map(self) -> dict[str, str]:
        out = {}
        for item in self.get("listener.security.protocol.map").split(","):
            if not item.strip():
                continue
            name, sep, proto = item.partition(":")
            if not sep or not name.strip() or not proto.strip():
                raise InvalidConfigError(f"listener.security.protocol.map: cannot read {item!r} "
                                         f"(LISTENER_NAME:SECURITY_PROTOCOL pairs)")
            out[name.strip().upper()] = proto.strip().upper()
        return out

    def listeners(self) -> list[Listener]:
        """Every listener to bind, in the order given."""
        return parse_listeners("listeners", self.get("listeners"))

    def advertised_listeners(self) -> list[Listener]:
        """What the broker registers (advertised.listeners, or listeners)."""
        adv = self.get("advertised.listeners")
        return parse_listeners("advertised.listeners", adv) if adv else self.listeners()

    def inter_broker_listener_name(self) -> str:
        """inter.broker.listener.name; unset, the listener named after
        security.inter.broker.protocol's default, PLAINTEXT (Kafka's rule),
        or the only listener when there is one (pylog's leniency: a lone
        listener is every role, whatever its name)."""
        inter = self.get("inter.broker.listener.name")
        if inter is not None:
            return inter.upper()
        if self.is_set("security.inter.broker.protocol"):
            return self.get("security.inter.broker.protocol").upper()
        bound = self.listeners()
        return bound[0].name if len(bound) == 1 else "PLAINTEXT"

    def control_plane_listener_name(self) -> str:
        """Where the controller's requests go: control.plane.listener.name,
        else the inter-broker listener (KIP-291)."""
        control = self.get("control.plane.listener.name")
        return control.upper() if control is not None else self.inter_broker_listener_name()

    def get(self, key: str):
        typ, default = BROKER_DEFAULTS[key]
        for layer in (self.dynamic_broker, self.dynamic_default, self.props):
            if key in layer:
                return _parse(key, typ, layer[key])
        return default

    def source(self, key: str) -> int:
        """DescribeConfigs config_source of a broker key: 2 dynamic (this broker's),
        3 dynamic cluster default, 4 static, 5 default."""
        if key in self.dynamic_broker:
            return 2
        if key in self.dynamic_default:
            return 3
        return 4 if key in self.props else 5

    def _check_group_coordinator(self) -> None:
        """Kafka's GroupCoordinatorConfig checks (ConfigDef validators, then its `require`s and
        KafkaConfig's), in Kafka's words, plus refusals of what pylog does not serve."""
        for key in _GROUP_CONSUMER_INT_KEYS:
            if self.get(key) < 1:
                raise InvalidConfigError(f"Invalid value {self.get(key)} for configuration {key}: "
                                         "Value must be at least 1")
        key = "group.coordinator.rebalance.protocols"
        protocols = self.get(key)
        _check_list(key, protocols, valid=_GROUP_TYPES)
        if "classic" not in protocols:
            raise InvalidConfigError("Disabling the 'CLASSIC' protocol is not supported.")
        unserved = sorted(set(protocols) - {"classic", "consumer", "share"})
        if unserved:
            raise InvalidConfigError(f"{key}: pylog does not implement {', '.join(unserved)} groups "
                                     "(only classic, consumer and share)")
        if "share" in protocols:
            # Kafka 4.x accepts it with this warning: share groups are served
            # (in Kafka: by the share.version feature) whether it is listed or not.
            log.warning("'SHARE' in `%s` is deprecated. Share groups are controlled by the 'share.version' "
                        "feature. This config will be removed in Kafka 5.0.", key)
        check_share_broker_configs(self.get)
        key = "group.consumer.assignors"
        _check_list(key, self.get(key))
        self.consumer_group_assignors()
        key = "group.consumer.migration.policy"
        policy = self.get(key)
        if policy.lower() not in _MIGRATION_POLICIES:
            raise InvalidConfigError(f"Invalid value {policy} for configuration {key}: String must be one of "
                                     f"(case insensitive): {', '.join(_MIGRATION_POLICIES)}")
        g = {k: self.get(f"group.consumer.{k}") for k in (
            "session.timeout.ms", "min.session.timeout.ms", "max.session.timeout.ms",
            "heartbeat.interval.ms", "min.heartbeat.interval.ms", "max.heartbeat.interval.ms")}
        for ok, first, relation, second in (
            (g["max.heartbeat.interval.ms"] >= g["min.heartbeat.interval.ms"],
             "max.heartbeat.interval.ms", "greater than or equal to", "min.heartbeat.interval.ms"),
            (g["heartbeat.interval.ms"] >= g["min.heartbeat.interval.ms"],
             "heartbeat.interval.ms", "greater than or equal to", "min.heartbeat.interval.ms"),
            (g["heartbeat.interval.ms"] <= g["max.heartbeat.interval.ms"],
             "heartbeat.interval.ms", "less than or equal to", "max.heartbeat.interval.ms"),
            (g["max.session.timeout.ms"] >= g["min.session.timeout.ms"],
             "max.session.timeout.ms", "greater than or equal to", "min.session.timeout.ms"),
            (g["session.timeout.ms"] >= g["min.session.timeout.ms"],
             "session.timeout.ms", "greater than or equal to", "min.session.timeout.ms"),
            (g["session.timeout.ms"] <= g["max.session.timeout.ms"],
             "session.timeout.ms", "less than or equal to", "max.session.timeout.ms"),
            (g["heartbeat.interval.ms"] < g["session.timeout.ms"],
             "heartbeat.interval.ms", "less than", "session.timeout.ms"),
        ):
            if not ok:
                raise InvalidConfigError(f"group.consumer.{first} must be {relation} group.consumer.{second}")

    def consumer_group_assignors(self) -> tuple[str, ...]:
        """group.consumer.assignors as assignor names, the default first. Kafka also takes the
        built-in assignors' class names; any other class is refused as Kafka fails to load it."""
        from ..groups.consumer_assignors import ASSIGNOR_NAMES
        names = []
        for entry in self.get("group.consumer.assignors"):
            name = _ASSIGNOR_CLASSES.get(entry, entry)
            if name not in ASSIGNOR_NAMES:
                raise InvalidConfigError(f"Class {entry} cannot be found (pylog's consumer group assignors: "
                                         f"{', '.join(ASSIGNOR_NAMES)})")
            names.append(name)
        return tuple(names)

    def group_rebalance_protocols(self) -> frozenset[str]:
        """group.coordinator.rebalance.protocols: ConsumerGroupHeartbeat is served only with `consumer`."""
        return frozenset(self.get("group.coordinator.rebalance.protocols"))

    def is_set(self, key: str) -> bool:
        return key in self.props

    def listener_int(self, listener: str, key: str) -> int:
        """key (max.connections or max.connection.creation.rate) for one
        listener: listener.name.<listener lower-cased>.<key>, else the broker's
        key, as Kafka's valuesWithPrefixOverride over its dynamic layers."""
        name = f"listener.name.{listener.lower()}.{key}"
        for layer in (self.dynamic_broker, self.dynamic_default, self.props):
            if name in layer:
                return _parse(key, int, layer[name])
        return self.get(key)

    # ---- derived values, as Kafka derives them ----

    @property
    def broker_id(self) -> int:
        return self.get("broker.id")

    @property
    def log_dir(self) -> str:
        dirs = self.get("log.dirs") or self.get("log.dir")
        first = dirs.split(",")[0].strip()
        if "," in dirs:
            log.warning("several log.dirs given (%s); pylog uses the first, %s", dirs, first)
        return first

    def replica_selector(self) -> str | None:
        """"rack-aware" or None (leader only) from replica.selector.class.
        Kafka loads any ReplicaSelector class; pylog has Kafka's one
        implementation, and refuses other names as Kafka would fail to load
        them, rather than silently serving from the leader."""
        name = self.get("replica.selector.class")
        if not name:
            return None
        if name in (RACK_AWARE_REPLICA_SELECTOR, RACK_AWARE_REPLICA_SELECTOR.rsplit(".", 1)[1]):
            return "rack-aware"
        raise InvalidConfigError(f"replica.selector.class: {name!r} is not supported "
                                 f"(use {RACK_AWARE_REPLICA_SELECTOR})")

    def authorizer_enabled(self) -> bool:
        """Whether ACLs are enforced: authorizer.class.name names one of Kafka's
        ACL authorizers (both are pylog's one); another class is refused, as
        Kafka fails to load a class it does not have."""
        name = (self.get("authorizer.class.name") or "").strip()
        if not name:
            return False
        if name in ACL_AUTHORIZERS:
            return True
        raise InvalidConfigError(f"authorizer.class.name: {name!r} is not supported (use "
                                 f"{' or '.join(ACL_AUTHORIZERS)})")

    def listener(self) -> tuple[str, int]:
        """host, port of the first listener (the one clients are told about
        by `pylog broker` and the tests)."""
        first = self.listeners()[0]
        return first.host, first.port

    def retention_ms(self) -> int:
        for key, scale in (("log.retention.ms", 1), ("log.retention.minutes", 60000),
                           ("log.retention.hours", 3600000)):
            v = self.get(key)
            if v is not None:
                return v * scale
        return 168 * 3600000

    def roll_ms(self) -> int:
        v = self.get("log.roll.ms")
        return v if v is not None else self.get("log.roll.hours") * 3600000

    def topic_default(self, key: str) -> str:
        """The broker-level default of a topic config, as a string."""
        broker_key = TOPIC_CONFIGS[key][0]
        if broker_key == "log.retention.ms":
            return str(self.retention_ms())
        if broker_key == "log.roll.ms":
            return str(self.roll_ms())
        if broker_key == "log.flush.interval.ms":
            v = self.get(broker_key)
            return str(LONG_MAX if v is None else v)
        if broker_key is None:
            return _TOPIC_ONLY_DEFAULTS[key]
        return config_text(self.get(broker_key))

    def topic_default_is_set(self, key: str) -> bool:
        broker_key = TOPIC_CONFIGS[key][0]
        return broker_key is not None and self.is_set(broker_key)

    def topic_default_source(self, key: str) -> int:
        """Where a topic config's broker-level default comes from (BrokerConfig.source's codes)."""
        broker_key = TOPIC_CONFIGS[key][0]
        return 5 if broker_key is None else self.source(broker_key)


# Kafka's broker keys that ask for authentication, encryption or authorization
# (BrokerSecurityConfigs, SslConfigs, SaslConfigs,
# SocketServerConfigs, DelegationTokenManagerConfigs). None is implemented
# yet (issue 19), and a broker that warned "supplied but not used" and went on
# would serve everyone in plaintext with no authentication, which is what the
# user set these keys to prevent: each one refuses the start instead. A key
# leaves these lists when its part is built.
_SECURITY_PREFIXES = ("ssl.", "sasl.", "listener.name.", "delegation.token.")
_SECURITY_KEYS = frozenset({
    "principal.builder.class",
    "security.providers", "client.quota.callback.class",
})
# The SASL keys built (pylog/broker/sasl.py); other sasl.* keys (Kerberos,
# callback handlers, OAUTHBEARER's) are still refused.
_SASL_KEYS = frozenset({"sasl.enabled.mechanisms", "sasl.mechanism.inter.broker.protocol", "sasl.jaas.config"})
_LISTENER_SASL_KEY = re.compile(r"listener\.name\.[a-z0-9_]+\.(sasl\.enabled\.mechanisms|"
                                r"(plain|scram-sha-256|scram-sha-512|oauthbearer)\."
                                r"(sasl\.jaas\.config|connections\.max\.reauth\.ms))$")


def _sasl_key(key: str) -> bool:
    return key in _SASL_KEYS or _LISTENER_SASL_KEY.match(key) is not None


def _refuse_security(props: dict[str, str]) -> None:
    """Refuse, before anything binds, every security key pylog cannot honour
    yet, naming the key and why. Values that ask for nothing pass:
    security.inter.broker.protocol=PLAINTEXT."""
    for key in sorted(props):
        value = props[key].strip()
        if key.startswith("listener.name."):
            name = key[len("listener.name."):].partition(".")[0]
            if name != name.lower():
                # Kafka reads listener-prefixed keys under the lower-cased
                # listener name only: this one would be accepted and unused.
                raise InvalidConfigError(f"{key}: the listener name in listener.name.<listener>.* keys is "
                                         f"lower case (listener.name.{name.lower()}....), as Kafka reads them")
        if key == "security.inter.broker.protocol":
            if value.upper() not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
                raise InvalidConfigError(
                    f"security.inter.broker.protocol={value}: not a security protocol (PLAINTEXT, SSL, "
                    f"SASL_PLAINTEXT, SASL_SSL)")
            if "inter.broker.listener.name" in props:
                raise InvalidConfigError(
                    "Only one of inter.broker.listener.name and security.inter.broker.protocol should be set.")
            continue
        if _is_tls_key(key) or _sasl_key(key) or _LISTENER_KEY.match(key):
            continue
        if key in _SECURITY_KEYS or key.startswith(_SECURITY_PREFIXES):
            raise InvalidConfigError(
                f"{key} is a security setting pylog does not implement yet (issue 19: TLS, SASL, ACLs); "
                f"refusing to start rather than serve every client in plaintext without it. Remove the key to "
                f"run an unsecured broker.")


ACL_AUTHORIZERS = ("org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer")


def _is_tls_key(key: str) -> bool:
    """An ssl.* key pylog honours (tls.SSL_DEFAULTS), plain or in Kafka's
    listener.name.<listener>.ssl.* form."""
    if key.startswith("listener.name."):
        _name, sep, key = key[len("listener.name."):].partition(".")
        if not sep:
            return False
    return key in SSL_DEFAULTS


class Listener(NamedTuple):
    name: str    # upper-cased, as Kafka's ListenerName.normalised
    host: str    # "" binds every interface
    port: int


def parse_listeners(key: str, text: str) -> list[Listener]:
    """Kafka's listenerListToEndPoints: NAME://host:port entries (a bare
    host:port is PLAINTEXT), names distinct, and ports distinct but for 0
    (an ephemeral port of each listener's own)."""
    out: list[Listener] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        m = re.match(r"^(?:([A-Za-z0-9_]+)://)?\[?([^\]]*?)\]?:(\d+)$", entry)
        if not m:
            raise InvalidConfigError(f"{key}: cannot read NAME://host:port from {entry!r}")
        out.append(Listener((m.group(1) or "PLAINTEXT").upper(), m.group(2), int(m.group(3))))
    if not out:
        raise InvalidConfigError(f"{key}: no listener given")
    names = [ln.name for ln in out]
    if len(set(names)) != len(names):
        raise InvalidConfigError(f"Each listener must have a different name, {key}: {text}")
    ports = [ln.port for ln in out if ln.port != 0]
    if key == "listeners" and len(set(ports)) != len(ports):
        raise InvalidConfigError(f"Each listener must have a different port, {key}: {text}")
    return out


# The broker's codec per compression.type (Kafka's BrokerCompressionType):
# -1 keeps the producer's, else the batch-attribute codec a batch is rebuilt with.
_TARGET_CODECS = {"producer": -1, "uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def target_codec(compression_type: str) -> int:
    return _TARGET_CODECS[compression_type]


def _check_allowed(key: str, value, allowed) -> None:
    # Kafka's ConfigDef.ValidString wording.
    if allowed is not None and value not in allowed:
        raise InvalidConfigError(f"Invalid value {value} for configuration {key}: String must be one of: "
                                 f"{', '.join(allowed)}")


def validate_topic_configs(configs: dict[str, str | None]) -> dict[str, str]:
    """Check topic-level overrides (names and values); a None value removes one."""
    out = {}
    for key, value in configs.items():
        if key not in TOPIC_CONFIGS:
            raise InvalidConfigError(f"unknown topic config {key!r}")
        if value is None:
            out[key] = None
            continue
        _, typ, allowed = TOPIC_CONFIGS[key]
        parsed = _parse(key, typ, value)
        _check_allowed(key, parsed, allowed)
        if key == "cleanup.policy":
            parts = {p.strip() for p in parsed.split(",")}
            if not parts or not parts <= {"delete", "compact"}:
                raise InvalidConfigError(f"cleanup.policy={value!r}: use delete, compact or both")
        if key in ("segment.bytes",) and parsed < 1024:
            raise InvalidConfigError(f"segment.bytes={value} is below the minimum of 1024")
        if key == "min.insync.replicas" and parsed < 1:
            raise InvalidConfigError("min.insync.replicas must be at least 1")
        if key == "max.message.bytes" and parsed < 0:
            raise InvalidConfigError("max.message.bytes must not be negative")
        if key in ("message.timestamp.before.max.ms", "message.timestamp.after.max.ms", "pylog.delivery.delay.ms",
                   "pylog.priority.max.wait.ms") and parsed < 0:
            raise InvalidConfigError(f"{key}={value}: the value must be at least 0")
        _check_range(key, parsed)
        out[key] = str(value).strip() if typ is float else config_text(parsed)
    check_compaction_lags(out)
    return out


def check_compaction_lags(overrides: dict) -> None:
    """Kafka's LogConfig.validateValues: min.compaction.lag.ms may not exceed
    max.compaction.lag.ms (checked over the overrides a topic ends up with)."""
    lo, hi = overrides.get("min.compaction.lag.ms"), overrides.get("max.compaction.lag.ms")
    if lo is not None and hi is not None and int(lo) > int(hi):
        raise InvalidConfigError(f"conflict topic config setting min.compaction.lag.ms ({lo}) > "
                                 f"max.compaction.lag.ms ({hi})")


class TopicConfig:
    """A topic's effective configs: its overrides over the broker's defaults.

    Threads: any (read-only; a changed topic gets a new TopicConfig).
    """

    __slots__ = ("broker", "overrides")

    def __init__(self, broker: BrokerConfig, overrides: dict[str, str] | None = None):
        self.broker = broker
        self.overrides = dict(overrides or {})

    def get_str(self, key: str) -> str:
        if key in self.overrides:
            return self.overrides[key]
        return self.broker.topic_default(key)

    def get(self, key: str):
        return _parse(key, TOPIC_CONFIGS[key][1], self.get_str(key))

    def source(self, key: str) -> int:
        """DescribeConfigs config_source: 1 topic, then the broker default's (2, 3, 4 or 5)."""
        if key in self.overrides:
            return 1
        return self.broker.topic_default_source(key)

    def log_options(self) -> dict:
        """Keyword arguments for Log.open."""
        retention_ms = self.get("retention.ms")
        retention_bytes = self.get("retention.bytes")
        deletes = "delete" in self.get("cleanup.policy")
        flush_messages = self.get("flush.messages")
        flush_ms = self.get("flush.ms")
        segment_ms = self.get("segment.ms")
        max_lag = self.get("max.compaction.lag.ms")
        if "compact" in self.get("cleanup.policy") and max_lag > 0:
            # Kafka's LogConfig.maxSegmentMs: the active segment is never
            # cleaned, so it rolls within max.compaction.lag.ms.
            segment_ms = max_lag if segment_ms is None else min(segment_ms, max_lag)
        return dict(
            # Reads inflate a stored batch no further than produce let one in.
            max_inflated_bytes=max(self.broker.get("pylog.message.max.decompressed.bytes"),
                                   self.get("max.message.bytes")),
            segment_bytes=self.get("segment.bytes"),
            segment_ms=segment_ms,
            index_interval_bytes=self.get("index.interval.bytes"),
            segment_index_bytes=self.get("segment.index.bytes"),
            retention_ms=retention_ms if deletes and retention_ms >= 0 else None,
            retention_bytes=retention_bytes if deletes and retention_bytes >= 0 else None,
            flush_messages=None if flush_messages >= LONG_MAX else flush_messages,
            flush_ms=None if flush_ms >= LONG_MAX else flush_ms,
        )
