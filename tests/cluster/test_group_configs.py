"""GROUP config resources (KIP-848, ConfigResource type 32) over the wire with confluent-kafka's
AdminClient: DescribeConfigs and IncrementalAlterConfigs on one broker, then in three-broker
clusters, where a change made through any broker (forwarded to the controller) is stored in the
controller's metadata (ZooKeeper or the embedded store) and pushed to every broker's group
coordinator, and a controller elected later keeps it."""
from __future__ import annotations

import pytest

from pylog.testing import running_broker, wait_until

from .zkcluster import bootstrap, cluster, embedded_cluster

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    ResourceType,
)

SESSION, HEARTBEAT = "consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"


def group_entries(admin, group):
    resource = ConfigResource(ResourceType.GROUP, group)
    return admin.describe_configs([resource])[resource].result(timeout=30)


def alter(admin, group, *entries):
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=list(entries))
    return admin.incremental_alter_configs([resource])[resource].result(timeout=30)


def set_(key, value):
    return ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)


def delete(key):
    return ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE)


@pytest.fixture
def broker(tmp_path):
    config = {"group.consumer.min.session.timeout.ms": "10000", "group.consumer.session.timeout.ms": "30000"}
    with running_broker(data_dir=str(tmp_path / "d"), config=config) as b:
        yield b


def test_describe_an_unconfigured_group_shows_the_broker_values(broker):
    admin = AdminClient({"bootstrap.servers": str(broker)})
    entries = group_entries(admin, "nobody-made-me")
    assert {SESSION, HEARTBEAT} <= set(entries)      # with the share.* keys (tests/share/test_share_configs_describe.py)
    assert entries[SESSION].value == "30000" and entries[HEARTBEAT].value == "5000"
    # Kafka's source is the head of the broker key's chain: the broker's own file sets the session.
    assert entries[SESSION].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert entries[HEARTBEAT].source == ConfigSource.DEFAULT_CONFIG.value
    assert entries[HEARTBEAT].is_default and not entries[SESSION].is_read_only


def test_set_describe_delete(broker):
    admin = AdminClient({"bootstrap.servers": str(broker)})
    alter(admin, "g1", set_(SESSION, "20000"), set_(HEARTBEAT, "6000"))
    entries = group_entries(admin, "g1")
    assert entries[SESSION].value == "20000" and entries[HEARTBEAT].value == "6000"
    assert entries[SESSION].source == ConfigSource.GROUP_CONFIG.value
    assert not entries[SESSION].is_default
    assert broker.broker.coordinator_writer.group_config("g1") == {SESSION: 20000, HEARTBEAT: 6000}
    # another group is untouched
    assert group_entries(admin, "g2")[SESSION].value == "30000"

    alter(admin, "g1", delete(HEARTBEAT))
    entries = group_entries(admin, "g1")
    assert entries[HEARTBEAT].value == "5000" and entries[HEARTBEAT].source == ConfigSource.DEFAULT_CONFIG.value
    assert entries[SESSION].value == "20000"
    assert broker.broker.coordinator_writer.group_config("g1") == {SESSION: 20000, HEARTBEAT: 5000}


def test_out_of_bounds_is_invalid_config_and_changes_nothing(broker):
    admin = AdminClient({"bootstrap.servers": str(broker)})
    alter(admin, "g", set_(SESSION, "20000"))
    for entries, words in (
        ([set_(SESSION, "9999")], "must be greater than or equal to group.consumer.min.session.timeout.ms"),
        ([set_(HEARTBEAT, "20000")], "must be less than or equal to group.consumer.max.heartbeat.interval.ms"),
        ([set_(SESSION, "10000"), set_(HEARTBEAT, "10000")], "must be greater than consumer.heartbeat.interval.ms"),
        ([set_("consumer.assignor", "range")], "Unknown group config name"),
        ([ConfigEntry(SESSION, "1", incremental_operation=AlterConfigOpType.APPEND)], "because its type is not LIST"),
    ):
        with pytest.raises(KafkaException) as e:
            alter(admin, "g", *entries)
        err = e.value.args[0]
        assert err.name() == "INVALID_CONFIG" and words in err.str()
    assert group_entries(admin, "g")[SESSION].value == "20000"


def test_legacy_alter_configs_replaces_a_groups_overrides(broker):
    """AlterConfigs (33), which Kafka's controller takes for groups too: the given set replaces
    what the group had."""
    from pylog.client import Client
    from pylog.protocol.messages import AlterConfigsRequest

    admin = AdminClient({"bootstrap.servers": str(broker)})
    alter(admin, "legacy", set_(SESSION, "20000"), set_(HEARTBEAT, "6000"))
    R = AlterConfigsRequest
    with Client(str(broker)) as client:
        resp = client.any_connection().request(R(resources=[R.AlterConfigsResource(
            resource_type=32, resource_name="legacy", configs=[R.AlterableConfig(name=HEARTBEAT, value="7000")])]))
    assert [(r.error_code, r.resource_type, r.resource_name) for r in resp.responses] == [(0, 32, "legacy")]
    entries = group_entries(admin, "legacy")
    assert entries[HEARTBEAT].value == "7000" and entries[SESSION].value == "30000"


def test_the_empty_group_name_is_refused(broker):
    """confluent-kafka refuses an empty name itself; pylog's client sends it."""
    from pylog.client import Client
    from pylog.client.client import RESOURCE_GROUP
    from pylog.errors import InvalidRequestError

    with Client(str(broker)) as client:
        with pytest.raises(InvalidRequestError, match="Group name must not be empty"):
            client.describe_configs("", resource_type=RESOURCE_GROUP)
        with pytest.raises(InvalidRequestError, match="Default group resources are not allowed."):
            client.incremental_alter_configs(RESOURCE_GROUP, "", {SESSION: "20000"})


def test_validate_only_changes_nothing(broker):
    admin = AdminClient({"bootstrap.servers": str(broker)})
    resource = ConfigResource(ResourceType.GROUP, "g", incremental_configs=[set_(SESSION, "20000")])
    admin.incremental_alter_configs([resource], validate_only=True)[resource].result(timeout=30)
    assert group_entries(admin, "g")[SESSION].value == "30000"


def test_overrides_survive_a_restart(tmp_path):
    data = str(tmp_path / "d")
    with running_broker(data_dir=data) as b:
        alter(AdminClient({"bootstrap.servers": str(b)}), "kept", set_(SESSION, "50000"))
    with running_broker(data_dir=data) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        wait_until(lambda: group_entries(admin, "kept")[SESSION].value == "50000", what="the stored override")


# -- a three-broker cluster ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["zookeeper", "embedded"])
def test_cluster_every_broker_knows_every_groups_overrides(request, mode):
    if mode == "zookeeper":
        brokers = cluster(request.getfixturevalue("zk_connect"))
    else:
        brokers = embedded_cluster()
    with brokers as bs:
        ctl = next(b for b in bs if b.broker.controller is not None and b.broker.controller.is_active)
        other = next(b for b in bs if b is not ctl)
        # through a broker that is not the controller: forwarded to it
        alter(AdminClient({"bootstrap.servers": str(other)}), "shared", set_(SESSION, "55000"),
              set_(HEARTBEAT, "7000"))
        want = {SESSION: 55000, HEARTBEAT: 7000}
        wait_until(lambda: all(b.broker.coordinator_writer.group_config("shared") == want for b in bs),
                   what="the overrides on every broker's group coordinator")
        for b in bs:
            entries = group_entries(AdminClient({"bootstrap.servers": str(b)}), "shared")
            assert entries[SESSION].value == "55000" and entries[SESSION].source == ConfigSource.GROUP_CONFIG.value

        # a refused change, on any broker, leaves them as they were
        with pytest.raises(KafkaException):
            alter(AdminClient({"bootstrap.servers": bootstrap(bs)}), "shared", set_(SESSION, "61000"))
        alter(AdminClient({"bootstrap.servers": str(ctl)}), "shared", delete(SESSION))
        want = {SESSION: 45000, HEARTBEAT: 7000}
        wait_until(lambda: all(b.broker.coordinator_writer.group_config("shared") == want for b in bs),
                   what="the deletion on every broker")


def test_zookeeper_new_controller_keeps_the_overrides(zk_connect):
    """The store keeps them (a group id with '/' and ' ' too): a controller elected later
    loads them and pushes them with its UpdateMetadata."""
    with cluster(zk_connect) as bs:
        alter(AdminClient({"bootstrap.servers": str(bs[0])}), "a/b c", set_(HEARTBEAT, "8000"))
        wait_until(lambda: all(b.broker.coordinator_writer.group_config("a/b c")[HEARTBEAT] == 8000 for b in bs),
                   what="the override everywhere")
        old = next(b for b in bs if b.broker.controller.is_active)
        old.broker.stop_in_thread()
        survivors = [b for b in bs if b is not old]
        new = wait_until(lambda: next((b for b in survivors if b.broker.controller.is_active), None),
                         what="a new controller")
        assert new.broker.controller.group_configs("a/b c") == {HEARTBEAT: "8000"}
        assert new.broker.metadata_store.group_configs() == {"a/b c": {HEARTBEAT: "8000"}}
        alter(AdminClient({"bootstrap.servers": str(new)}), "a/b c", delete(HEARTBEAT))
        wait_until(lambda: all(b.broker.coordinator_writer.group_config("a/b c")[HEARTBEAT] == 5000
                               for b in survivors), what="the deletion through the new controller")
        assert new.broker.metadata_store.group_configs() == {}


# -- the command line ------------------------------------------------------------------------------


def pylog_groups(broker, *args, rc=0):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "pylog", "groups", *args, "--bootstrap-server", str(broker)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == rc, (args, out.returncode, out.stdout, out.stderr)
    return out.stdout, out.stderr


def test_groups_configs_command_as_kafka_configs(broker):
    out, _ = pylog_groups(broker, "configs", "--group", "cli-g")
    assert out == "The group 'cli-g' doesn't exist and doesn't have dynamic config.\n"
    out, _ = pylog_groups(broker, "configs", "--group", "cli-g", "--alter",
                          "--add-config", f"{SESSION}=25000,{HEARTBEAT}=6000")
    assert out == "Completed updating config for group cli-g.\n"
    out, _ = pylog_groups(broker, "configs", "--group", "cli-g", "--describe")
    assert out == ("Dynamic configs for group cli-g are:\n"
                   f"  {HEARTBEAT}=6000 sensitive=false synonyms={{DYNAMIC_GROUP_CONFIG:{HEARTBEAT}=6000}}\n"
                   f"  {SESSION}=25000 sensitive=false synonyms={{DYNAMIC_GROUP_CONFIG:{SESSION}=25000}}\n")
    pylog_groups(broker, "configs", "--entity-name", "cli-g", "--delete-config", HEARTBEAT)
    out, _ = pylog_groups(broker, "configs", "--group", "cli-g", "--all")
    assert out.startswith("All configs for group cli-g are:\n"
                          f"  {HEARTBEAT}=5000 sensitive=false synonyms={{DEFAULT_CONFIG:{HEARTBEAT}=5000}}\n"
                          f"  {SESSION}=25000 sensitive=false synonyms={{DYNAMIC_GROUP_CONFIG:{SESSION}=25000}}\n")
    assert "  share.auto.offset.reset=latest sensitive=false" in out
    _, err = pylog_groups(broker, "configs", "--group", "cli-g", "--add-config", f"{SESSION}=5", rc=1)
    assert err.strip() == ("Error: INVALID_CONFIG (40): consumer.session.timeout.ms must be greater than or equal "
                           "to group.consumer.min.session.timeout.ms")
