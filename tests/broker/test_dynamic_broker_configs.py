"""Dynamic broker configs on one broker (Kafka's DynamicBrokerConfig): AlterConfigs and
IncrementalAlterConfigs on BROKER resources from confluent-kafka's and kafka-python's admin
clients (the cluster default, resource name "", from pylog's client: both admin clients refuse
an empty broker name themselves), applied live, described with Kafka's sources and synonyms,
refused with Kafka's codes and words, and kept across a restart."""
from __future__ import annotations

import socket
import time

import pytest

from pylog.client import Client
from pylog.errors import InvalidConfigError, InvalidRequestError
from pylog.testing import running_broker, wait_until

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

RESOURCE_BROKER = 4


def alter(admin, name, *entries, validate_only=False):
    resource = ConfigResource(ResourceType.BROKER, name, incremental_configs=list(entries))
    return admin.incremental_alter_configs([resource], validate_only=validate_only)[resource].result(timeout=30)


def set_(key, value):
    return ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)


def delete(key):
    return ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE)


def broker_entries(admin, name="1"):
    resource = ConfigResource(ResourceType.BROKER, name)
    return admin.describe_configs([resource])[resource].result(timeout=30)


def set_default(broker, configs=None, delete_keys=None):
    with Client(str(broker)) as client:
        client.incremental_alter_configs(RESOURCE_BROKER, "", configs, delete_keys)


@pytest.fixture
def broker(tmp_path):
    config = {"log.retention.check.interval.ms": "200", "log.retention.hours": "100"}
    with running_broker(data_dir=str(tmp_path / "d"), config=config) as b:
        yield b


def test_per_broker_over_default_over_static_over_default(broker):
    admin = AdminClient({"bootstrap.servers": str(broker)})
    entries = broker_entries(admin)
    # static: log.retention.hours; Kafka lists the synonyms of log.retention.ms from its own name on
    assert entries["log.retention.hours"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert entries["log.retention.hours"].is_read_only          # not dynamic in Kafka
    assert not entries["log.retention.ms"].is_read_only
    assert broker.broker.config.retention_ms() == 100 * 3600000

    set_default(broker, {"log.retention.ms": "7000000"})
    entries = broker_entries(admin)
    assert entries["log.retention.ms"].value == "7000000"
    assert entries["log.retention.ms"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    assert broker.broker.config.retention_ms() == 7000000

    alter(admin, "1", set_("log.retention.ms", "8000000"))
    entries = broker_entries(admin)
    e = entries["log.retention.ms"]
    assert e.value == "8000000" and e.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value and not e.is_default
    # (their order, per-broker first, is checked on the CLI's lines: confluent-kafka keys them by name)
    assert broker.broker.config.retention_ms() == 8000000

    # the cluster default entity lists only the default's configs
    with Client(str(broker)) as client:
        default = client.describe_configs("", resource_type=RESOURCE_BROKER)
    assert {k: (v.value, v.config_source) for k, v in default.items()} == {"log.retention.ms": ("7000000", 3)}

    alter(admin, "1", delete("log.retention.ms"))
    assert broker.broker.config.retention_ms() == 7000000
    set_default(broker, delete_keys=["log.retention.ms"])
    assert broker.broker.config.retention_ms() == 100 * 3600000
    assert broker_entries(admin)["log.retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value


def test_kafka_python_alter_and_describe(broker):
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=str(broker))
    try:
        admin.alter_configs([KConfigResource(ConfigResourceType.BROKER, "1",
                                             configs={"message.max.bytes": "2000000"})])
        wait_until(lambda: broker.broker.config.get("message.max.bytes") == 2000000, what="the new value")
        out = admin.describe_configs([KConfigResource(ConfigResourceType.BROKER, "1")], include_synonyms=True)
        text = repr(out)
        assert "message.max.bytes" in text and "2000000" in text
        # (kafka-python 3 merges with the dynamic configs it describes first, 2.0 replaces them)
        admin.alter_configs([KConfigResource(ConfigResourceType.BROKER, "1",
                                             configs={"log.retention.bytes": "123456789"})])
        wait_until(lambda: broker.broker.config.get("log.retention.bytes") == 123456789, what="the second change")
    finally:
        admin.close()


@pytest.mark.parametrize("key, value, code, words", [
    ("log.retention.hours", "1", "INVALID_REQUEST", "Cannot update these configs dynamically: [log.retention.hours]"),
    ("broker.id", "7", "INVALID_REQUEST", "Cannot update these configs dynamically: [broker.id]"),
    ("ssl.keystore.location", "/k.jks", "INVALID_REQUEST",
     "These security configs can be dynamically updated only per-listener using the listener prefix: "
     "[ssl.keystore.location]"),
    ("log.retention.ms", "soon", "INVALID_REQUEST",
     "Invalid value soon for configuration log.retention.ms: Not a number of type LONG"),
    ("max.connections", "1e3", "INVALID_REQUEST",
     "Invalid value 1e3 for configuration max.connections: Not a number of type INT"),
    ("log.message.timestamp.type", "WallTime", "INVALID_REQUEST", "log.message.timestamp.type"),
    ("num.io.threads", "4", "INVALID_CONFIG", "num.io.threads: pylog does not implement this broker config"),
    ("sasl.enabled.mechanisms", "PLAIN", "INVALID_CONFIG", "pylog reads this broker config only at start-up"),
    ("listener.name.ssl.ssl.keystore.location", "/k.jks", "INVALID_CONFIG",
     "pylog reads this broker config only at start-up"),
    ("log.cleaner.threads", "3", "INVALID_REQUEST",
     "Invalid value org.apache.kafka.common.config.ConfigException: Log cleaner threads cannot be increased to "
     "more than double the current value 1 for configuration Invalid dynamic configuration"),
    ("max.connections.per.ip", "0", "INVALID_REQUEST",
     "max.connections.per.ip can be set to zero only if max.connections.per.ip.overrides property is set."),
    ("log.cleaner.io.max.bytes.per.second", "0", "INVALID_REQUEST", "must be above 0"),
    ("no.such.key", "1", "INVALID_CONFIG", "not a broker config pylog knows"),
])
def test_refused_with_kafkas_codes_and_nothing_changes(broker, key, value, code, words):
    admin = AdminClient({"bootstrap.servers": str(broker)})
    alter(admin, "1", set_("log.retention.bytes", "5000000"))
    with pytest.raises(KafkaException) as e:
        alter(admin, "1", set_(key, value), set_("log.retention.bytes", "1"))
    err = e.value.args[0]
    assert err.name() == code and words in err.str()
    assert broker.broker.config.get("log.retention.bytes") == 5000000
    assert broker.broker.config.dynamic_broker == {"log.retention.bytes": "5000000"}


def test_cleaner_threads_restarted_with_the_new_configs(broker):
    cleaner = broker.broker.log_cleaner
    assert cleaner.num_threads == 1
    admin = AdminClient({"bootstrap.servers": str(broker)})
    alter(admin, "1", set_("log.cleaner.threads", "2"), set_("log.cleaner.backoff.ms", "250"))
    wait_until(lambda: cleaner.num_threads == 2 and len(cleaner._threads) == 2
               and all(t.is_alive() for t in cleaner._threads), what="two cleaner threads")
    assert cleaner.backoff_s == 0.25
    alter(admin, "1", delete("log.cleaner.threads"), delete("log.cleaner.backoff.ms"))
    wait_until(lambda: cleaner.num_threads == 1 and len(cleaner._threads) == 1, what="back to one thread")


def test_legacy_alter_configs_replaces_the_whole_set(broker):
    from pylog.protocol.messages import AlterConfigsRequest as R
    alter(AdminClient({"bootstrap.servers": str(broker)}), "1", set_("message.max.bytes", "2000000"))
    with Client(str(broker)) as client:
        resp = client.any_connection().request(R(resources=[R.AlterConfigsResource(
            resource_type=RESOURCE_BROKER, resource_name="1",
            configs=[R.AlterableConfig(name="log.retention.bytes", value="123456789")])], validate_only=False))
    assert [(r.error_code, r.resource_name) for r in resp.responses] == [(0, "1")]
    assert broker.broker.config.dynamic_broker == {"log.retention.bytes": "123456789"}
    assert broker.broker.config.get("message.max.bytes") == 1048588


def test_concurrent_changes_of_one_entity_all_land(broker):
    import threading
    keys = {"log.retention.bytes": "111111111", "log.segment.bytes": "2222222", "message.max.bytes": "333333",
            "log.index.interval.bytes": "4444", "max.connections": "5555", "max.connection.creation.rate": "666",
            "producer.id.expiration.ms": "7777777", "log.roll.ms": "88888888"}
    errors = []

    def one(key, value):
        try:
            set_default(broker, {key: value})
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)
    threads = [threading.Thread(target=one, args=kv) for kv in keys.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    wait_until(lambda: broker.broker.config.dynamic_default == keys, what="every change kept")


def test_a_resource_twice_in_one_request_is_refused(broker):
    from pylog.protocol.messages import IncrementalAlterConfigsRequest as R
    twice = [R.AlterConfigsResource(resource_type=RESOURCE_BROKER, resource_name="1", configs=[
        R.AlterableConfig(name="log.retention.bytes", config_operation=0, value=str(v))]) for v in (1000000, 2000000)]
    with Client(str(broker)) as client:
        resp = client.any_connection().request(R(resources=twice, validate_only=False))
    assert [(r.error_code, r.error_message) for r in resp.responses] == [
        (42, "Each resource must appear at most once.")] * 2
    assert broker.broker.config.get("log.retention.bytes") == -1


def test_broker_ids_and_operations_checked_as_kafka(broker):
    with Client(str(broker)) as client:
        with pytest.raises(InvalidRequestError, match="Unexpected broker id, expected 1, but received 9"):
            client.incremental_alter_configs(RESOURCE_BROKER, "9", {"log.retention.ms": "1"})
        with pytest.raises(InvalidRequestError, match="Node id must be an integer, but it is: one"):
            client.incremental_alter_configs(RESOURCE_BROKER, "one", {"log.retention.ms": "1"})
        with pytest.raises(InvalidRequestError,
                           match="Unexpected broker id, expected 1 or empty string, but received 9"):
            client.describe_configs("9", resource_type=RESOURCE_BROKER)
        # per-listener keys only per broker
        with pytest.raises(InvalidRequestError, match="Cannot update these configs at default cluster level"):
            client.incremental_alter_configs(RESOURCE_BROKER, "", {"listeners": "PLAINTEXT://:0"})
    admin = AdminClient({"bootstrap.servers": str(broker)})
    with pytest.raises(KafkaException) as e:
        alter(admin, "1", ConfigEntry("log.retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND))
    assert e.value.args[0].name() == "INVALID_CONFIG"
    assert "Config value append is not allowed for config key: log.retention.ms" in e.value.args[0].str()
    # APPEND on Kafka's one LIST key here: log.cleanup.policy
    alter(admin, "1", ConfigEntry("log.cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND))
    assert broker.broker.config.get("log.cleanup.policy") == "delete,compact"
    alter(admin, "1", set_("log.retention.ms", "999"), validate_only=True)
    assert broker.broker.config.get("log.retention.ms") is None


def test_a_retention_default_changes_what_retention_deletes(broker, topic):
    """A topic without its own retention.ms takes the broker's new default at once: records an
    hour old, kept under 100 h, go when the dynamic default says one minute."""
    admin = AdminClient({"bootstrap.servers": str(broker)})
    admin.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": "1024"})])[topic].result(timeout=30)
    kept = topic + "-own"
    admin.create_topics([NewTopic(kept, 1, 1, config={"segment.bytes": "1024", "retention.ms": "86400000"})]
                        )[kept].result(timeout=30)
    p = Producer({"bootstrap.servers": str(broker)})
    old = int(time.time() * 1000) - 3600_000
    for t in (topic, kept):
        for i in range(12):   # one batch each, so the segments roll
            p.produce(t, value=b"x" * 600, timestamp=old + i)
            assert p.flush(30) == 0
    part = broker.broker.log_manager.partitions[(topic, 0)]
    own = broker.broker.log_manager.partitions[(kept, 0)]
    assert part.log.log_start_offset == 0 and len(part.log.segments()) > 3

    alter(admin, "1", set_("log.retention.ms", "60000"))
    wait_until(lambda: part.log.log_start_offset > 0, what="retention deleting under the new default")
    topic_entries = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    entry = list(topic_entries.values())[0].result(timeout=30)["retention.ms"]
    assert entry.value == "60000" and entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    # the topic with its own retention.ms keeps its records
    assert own.log.log_start_offset == 0


def test_message_max_bytes_and_producer_expiry_reach_existing_partitions(broker, topic):
    admin = AdminClient({"bootstrap.servers": str(broker)})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    part = broker.broker.log_manager.partitions[(topic, 0)]
    set_default(broker, {"message.max.bytes": "2000", "producer.id.expiration.ms": "1234567"})
    assert part.max_message_bytes == 2000 and part.producer_state.expiration_ms == 1234567
    errors = []
    p = Producer({"bootstrap.servers": str(broker), "message.max.bytes": 100000})
    p.produce(topic, value=b"x" * 3000, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert errors and errors[0].name() == "MSG_SIZE_TOO_LARGE"
    set_default(broker, delete_keys=["message.max.bytes"])
    errors.clear()
    p.produce(topic, value=b"x" * 3000, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0 and errors == [None]


def _open(broker):
    host, port = str(broker).rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def test_max_connections_changes_what_a_new_connection_gets(broker):
    quotas = broker.broker.connection_quotas
    alter(AdminClient({"bootstrap.servers": str(broker)}), "1", set_("max.connections", "2"))
    wait_until(lambda: quotas.total == 0, what="the admin client's connections closed")
    held = quotas.listeners["PLAINTEXT"].held
    s1, s2, s3 = _open(broker), _open(broker), _open(broker)
    try:
        wait_until(lambda: quotas.total == 2 and len(held) == 1, what="two in, the third held")
        s1.close()
        wait_until(lambda: quotas.total == 2 and not held, what="the held one let in")
        s2.close()
        s3.close()
        wait_until(lambda: quotas.total == 0, what="every test connection closed")
        set_default(broker, {"max.connections": "3"})   # the default, under the broker's own 2: no change
        assert quotas.max_connections == 2
        alter(AdminClient({"bootstrap.servers": str(broker)}), "1", delete("max.connections"))
        wait_until(lambda: quotas.max_connections == 3, what="the cluster default taking over")
    finally:
        for s in (s1, s2, s3):
            s.close()


def test_a_listeners_own_connection_limit(broker):
    quotas = broker.broker.connection_quotas
    admin = AdminClient({"bootstrap.servers": str(broker)})
    set_default(broker, {"max.connections": "40"})
    alter(admin, "1", set_("listener.name.plaintext.max.connections", "30"))
    assert quotas.listeners["PLAINTEXT"].max_connections == 30 and quotas.max_connections == 40
    e = broker_entries(admin)["listener.name.plaintext.max.connections"]
    assert e.value == "30" and e.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    with pytest.raises(KafkaException) as err:
        alter(admin, "1", set_("listener.name.PLAINTEXT.max.connections", "30"))
    assert err.value.args[0].name() == "INVALID_CONFIG" and "lower case" in err.value.args[0].str()
    alter(admin, "1", delete("listener.name.plaintext.max.connections"))
    assert quotas.listeners["PLAINTEXT"].max_connections == 40


def test_kept_across_a_restart(tmp_path):
    data = str(tmp_path / "d")
    with running_broker(data_dir=data) as b:
        alter(AdminClient({"bootstrap.servers": str(b)}), "1", set_("log.segment.bytes", "2000000"))
        set_default(b, {"log.retention.bytes": "3000000"})
    with running_broker(data_dir=data) as b:
        wait_until(lambda: b.broker.config.get("log.segment.bytes") == 2000000
                   and b.broker.config.get("log.retention.bytes") == 3000000, what="the stored configs applied")
        entries = broker_entries(AdminClient({"bootstrap.servers": str(b)}))
        assert entries["log.segment.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        assert entries["log.retention.bytes"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value


def test_invalid_config_error_class_is_the_clients():
    # the codes the assertions above name are Kafka's
    assert InvalidConfigError.error_code == 40 and InvalidRequestError.error_code == 42


# -- BROKER_LOGGER resources: Python's loggers under log4j's level names ------------------------------
# (confluent-kafka has no BROKER_LOGGER resource type: pylog's client and raw requests)

def _loggers(broker, name="1"):
    with Client(str(broker)) as client:
        return client.describe_configs(name, resource_type=8)


def _incremental(broker, name, *ops):
    from pylog.protocol.messages import IncrementalAlterConfigsRequest as R
    with Client(str(broker)) as client:
        resp = client.any_connection().request(R(resources=[R.AlterConfigsResource(
            resource_type=8, resource_name=name, configs=[R.AlterableConfig(name=k, config_operation=op, value=v)
                                                          for k, op, v in ops])], validate_only=False))
    return [(r.error_code, r.error_message) for r in resp.responses][0]


def test_broker_logger_levels_set_and_unset(broker):
    import logging
    logger = logging.getLogger("pylog.broker")
    before = logger.level
    try:
        entries = _loggers(broker)
        assert "root" in entries and "pylog.broker" in entries
        assert entries["pylog.broker"].config_source == 6 and not entries["pylog.broker"].read_only
        assert _incremental(broker, "1", ("pylog.broker", 0, "TRACE")) == (0, None)
        assert logger.level == 5 and logger.isEnabledFor(5)
        assert _loggers(broker)["pylog.broker"].value == "TRACE"
        assert _incremental(broker, "1", ("pylog.broker", 1, None)) == (0, None)
        assert logger.level == logging.NOTSET
        parent = logging.getLogger("pylog").getEffectiveLevel()
        assert _loggers(broker)["pylog.broker"].value == {50: "FATAL", 40: "ERROR", 30: "WARN", 20: "INFO",
                                                          10: "DEBUG"}.get(parent, "TRACE")
        # validate_only changes nothing
        from pylog.protocol.messages import IncrementalAlterConfigsRequest as R
        with Client(str(broker)) as client:
            client.any_connection().request(R(resources=[R.AlterConfigsResource(
                resource_type=8, resource_name="1", configs=[R.AlterableConfig(
                    name="pylog.broker", config_operation=0, value="ERROR")])], validate_only=True))
        assert logger.level == logging.NOTSET
    finally:
        logger.setLevel(before)


@pytest.mark.parametrize("op, code, words", [
    (("pylog.no.such.logger", 0, "INFO"), 40, "Logger pylog.no.such.logger does not exist!"),
    (("pylog.broker", 0, "LOUD"), 40, "Cannot set the log level of pylog.broker to LOUD as it is not a supported "
                                      "log level. Valid log levels are DEBUG, ERROR, FATAL, INFO, TRACE, WARN"),
    (("root", 1, None), 42, "Removing the log level of the root logger is not allowed"),
    (("pylog.broker", 2, "INFO"), 42, "APPEND operation is not allowed for the BROKER_LOGGER resource"),
    (("pylog.broker", 0, None), 42, "Null value not supported for : pylog.broker"),
])
def test_broker_logger_refusals(broker, op, code, words):
    got_code, message = _incremental(broker, "1", op)
    assert got_code == code and words in message


def test_broker_logger_node_ids_and_legacy_alter(broker):
    from pylog.protocol.messages import AlterConfigsRequest as R
    assert _incremental(broker, "2", ("root", 0, "INFO")) == (42, "Unexpected node id. Expected 1, but received 2")
    with Client(str(broker)) as client:
        with pytest.raises(InvalidRequestError, match="Broker id must not be empty"):
            client.describe_configs("", resource_type=8)
        resp = client.any_connection().request(R(resources=[R.AlterConfigsResource(
            resource_type=8, resource_name="1", configs=[R.AlterableConfig(name="root", value="INFO")])],
            validate_only=False))
    assert [(r.error_code, r.error_message) for r in resp.responses] == [(42, "Unknown resource type 8")]
