"""DescribeConfigs on a GROUP resource lists every group config pylog serves
(consumer.*, share.*, KIP-1191's errors.deadletterqueue.*) as Kafka's
ConfigHelper does: values, sources, synonyms, documentation, read-only flags;
seen with confluent_kafka's AdminClient and kafka-python's."""
from __future__ import annotations

import pytest
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   ResourceType)

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.groups.group_configs import describe_group_configs
from pylog.testing import running_broker

CONFIG = {"group.share.record.lock.duration.ms": "15000", "group.share.min.record.lock.duration.ms": "1000",
          "group.share.delivery.count.limit": "4"}

SERVED = {"consumer.heartbeat.interval.ms", "consumer.session.timeout.ms",
          "errors.deadletterqueue.copy.record.enable", "errors.deadletterqueue.topic.name",
          "share.auto.offset.reset", "share.heartbeat.interval.ms", "share.isolation.level",
          "share.record.lock.duration.ms", "share.session.timeout.ms"}
READ_ONLY = {"share.delivery.count.limit", "share.partition.max.record.locks"}


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def describe(b, group, **kw):
    a = AdminClient({"bootstrap.servers": str(b)})
    r = ConfigResource(ResourceType.GROUP, group)
    return a.describe_configs([r], **kw)[r].result(30)


def syn(entry):
    # confluent_kafka keys synonyms by name: a chain's same-named entries collapse (wire_describe has them all)
    return [(s.name, s.value, s.source) for s in entry.synonyms.values()]


def test_an_unconfigured_group_lists_every_key_with_its_default_and_source(broker):
    e = describe(broker, "nobody")
    assert set(e) == SERVED | READ_ONLY
    # Not listed: keys Kafka lists whose value pylog cannot honour (no renew, no streams groups, ...).
    assert not {"share.renew.acknowledge.enable", "streams.session.timeout.ms",
                "consumer.assignment.interval.ms", "share.assignor.offload.enable"} & set(e)
    assert {k: v.value for k, v in e.items()} == {
        "consumer.heartbeat.interval.ms": "5000", "consumer.session.timeout.ms": "45000",
        "errors.deadletterqueue.copy.record.enable": "false", "errors.deadletterqueue.topic.name": "",
        "share.auto.offset.reset": "latest", "share.heartbeat.interval.ms": "5000",
        "share.isolation.level": "read_uncommitted", "share.record.lock.duration.ms": "15000",
        "share.session.timeout.ms": "45000", "share.delivery.count.limit": "4",
        "share.partition.max.record.locks": "2000"}
    for k, v in e.items():
        assert v.is_read_only == (k in READ_ONLY), k
    # A broker synonym's chain, from the broker key on (Kafka's configSynonyms) ...
    lock = e["share.record.lock.duration.ms"]
    assert lock.source == ConfigSource.STATIC_BROKER_CONFIG.value and not lock.is_default
    session = e["share.session.timeout.ms"]
    assert session.source == ConfigSource.DEFAULT_CONFIG.value and session.is_default
    assert syn(session) == [("group.share.session.timeout.ms", "45000", ConfigSource.DEFAULT_CONFIG.value)]
    # ... else GroupConfig's own default.
    assert syn(e["share.auto.offset.reset"]) == [("share.auto.offset.reset", "latest",
                                                  ConfigSource.DEFAULT_CONFIG.value)]
    assert e["share.auto.offset.reset"].source == ConfigSource.DEFAULT_CONFIG.value
    assert syn(e["errors.deadletterqueue.topic.name"]) == [("errors.deadletterqueue.topic.name", "",
                                                            ConfigSource.DEFAULT_CONFIG.value)]
    assert e["share.delivery.count.limit"].source == ConfigSource.STATIC_BROKER_CONFIG.value


def test_overrides_show_as_group_config_ahead_of_their_defaults(broker):
    group = "described"
    a = AdminClient({"bootstrap.servers": str(broker)})
    r = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in (
            ("share.auto.offset.reset", "earliest"), ("share.record.lock.duration.ms", "20000"),
            ("errors.deadletterqueue.topic.name", "dlq.described"),
            ("errors.deadletterqueue.copy.record.enable", "TRUE"), ("consumer.session.timeout.ms", "50000"))])
    a.incremental_alter_configs([r])[r].result(30)
    e = describe(broker, group)
    G, D = ConfigSource.GROUP_CONFIG.value, ConfigSource.DEFAULT_CONFIG.value
    assert (e["share.auto.offset.reset"].value, e["share.auto.offset.reset"].source) == ("earliest", G)
    w = wire_describe(broker, group, include_synonyms=True)
    assert [(x.name, x.value, x.source) for x in w["share.auto.offset.reset"].synonyms] == [
        ("share.auto.offset.reset", "earliest", G), ("share.auto.offset.reset", "latest", D)]
    assert [(x.name, x.value, x.source) for x in w["share.record.lock.duration.ms"].synonyms] == [
        ("share.record.lock.duration.ms", "20000", G),
        ("group.share.record.lock.duration.ms", "15000", ConfigSource.STATIC_BROKER_CONFIG.value),
        ("group.share.record.lock.duration.ms", "30000", D)]
    assert e["errors.deadletterqueue.topic.name"].value == "dlq.described"
    assert e["errors.deadletterqueue.copy.record.enable"].value == "true"
    assert (e["consumer.session.timeout.ms"].value, e["consumer.session.timeout.ms"].source) == ("50000", G)
    assert not e["consumer.session.timeout.ms"].is_default
    assert e["share.heartbeat.interval.ms"].source == D


def wire_describe(b, group, **kw):
    R = m.DescribeConfigsRequest
    host, port = str(b).rsplit(":", 1)
    with Connection(host, int(port)) as conn:
        resp = conn.request(R(resources=[R.DescribeConfigsResource(resource_type=32, resource_name=group,
                                                                    configuration_keys=None)], **kw),
                            api_version=2)
    (res,) = resp.results
    assert res.error_code == 0, res.error_message
    return {c.name: c for c in res.configs}


def test_synonym_chains_in_kafkas_order_and_only_when_asked_for(broker):
    full = wire_describe(broker, "chain-g", include_synonyms=True)
    bare = wire_describe(broker, "chain-g")
    assert set(full) == set(bare) == SERVED | READ_ONLY
    assert list(full) == sorted(full)
    for k in full:
        assert full[k].synonyms and not bare[k].synonyms, k
    D, S = ConfigSource.DEFAULT_CONFIG.value, ConfigSource.STATIC_BROKER_CONFIG.value
    # A broker synonym's chain from the broker key on (Kafka's configSynonyms) ...
    assert [(x.name, x.value, x.source) for x in full["share.record.lock.duration.ms"].synonyms] == [
        ("group.share.record.lock.duration.ms", "15000", S), ("group.share.record.lock.duration.ms", "30000", D)]
    assert [(x.name, x.value, x.source) for x in full["share.delivery.count.limit"].synonyms] == [
        ("group.share.delivery.count.limit", "4", S), ("group.share.delivery.count.limit", "5", D)]
    # ... else GroupConfig's own default.
    assert [(x.name, x.value, x.source) for x in full["errors.deadletterqueue.topic.name"].synonyms] == [
        ("errors.deadletterqueue.topic.name", "", D)]


def test_documentation_and_types_of_the_entries(broker):
    # DescribeConfigs v3+ (IncludeDocumentation, ConfigType) is not advertised by pylog
    # yet; the entries carry them for when it is.
    b = broker.broker
    full = {c.name: c for c in describe_group_configs(b.config, "doc-g", {}, None, True, True)}
    bare = {c.name: c for c in describe_group_configs(b.config, "doc-g", {}, None, False, False)}
    for k in full:
        assert full[k].documentation and bare[k].documentation is None, k
    assert (full["share.record.lock.duration.ms"].config_type, full["share.auto.offset.reset"].config_type,
            full["errors.deadletterqueue.copy.record.enable"].config_type) == (3, 2, 1)   # INT, STRING, BOOLEAN


def test_kafka_python_describes_a_group_resource(broker):
    kafka = pytest.importorskip("kafka")
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType
    a = kafka.KafkaAdminClient(bootstrap_servers=str(broker))
    try:
        resp = a.describe_configs([KConfigResource(ConfigResourceType.GROUP, "kp-described")], config_filter="all")
    finally:
        a.close()
    got = resp["group"]["kp-described"]
    assert set(got) == SERVED | READ_ONLY
    assert got["share.isolation.level"]["value"] == "read_uncommitted"
    assert got["share.delivery.count.limit"]["read_only"] is True
    assert got["share.record.lock.duration.ms"]["config_source"] == "STATIC_BROKER_CONFIG"
