"""The partition layer under the broker: leader epoch stamped into every stored
batch, high watermark kept (and checkpointed) apart from the log end offset,
retention run by the broker's background task, configs applied to live logs."""
import os
import struct
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from pylog.log.checkpoint import read_checkpoint
from pylog.testing import running_broker


def stored_batches(path):
    """(base_offset, partition_leader_epoch) of each batch in a .log file."""
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos + 12 <= len(data):
        base, length, epoch = struct.unpack_from(">qii", data, pos)
        out.append((base, epoch))
        pos += 12 + length
    return out


def topic_configs(topic, values, op=AlterConfigOpType.SET):
    return ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v in values.items()])


def produce(bootstrap, topic, n, **conf):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, **conf})
    for i in range(n):
        p.produce(topic, b"v%d" % i, partition=0)
        if i % 100 == 0:
            p.flush(10)
    assert p.flush(10) == 0


def test_leader_epoch_is_stamped_and_high_watermark_checkpointed(tmp_path):
    with running_broker(tmp_path / "d") as b:
        produce(b, "ep", 300)
        part = b.broker.log_manager.partitions[("ep", 0)]
        assert part.leader_epoch == 0
        assert part.log_start_offset <= part.high_watermark == part.log_end_offset == 300
    seg = tmp_path / "d" / "ep-0" / f"{0:020d}.log"
    batches = stored_batches(seg)
    assert batches and all(epoch == 0 for _, epoch in batches)  # clients send -1; the leader stamps its epoch
    # Kafka's layout: one replication-offset-checkpoint per data dir, none per partition.
    assert ["ep", "0", "300"] in read_checkpoint(str(tmp_path / "d" / "replication-offset-checkpoint"))
    assert not (tmp_path / "d" / "ep-0" / "replication-offset-checkpoint").exists()
    assert read_checkpoint(str(tmp_path / "d" / "ep-0" / "leader-epoch-checkpoint")) == [["0", "0"]]


def test_retention_runs_in_the_background_and_configs_reach_live_logs(tmp_path):
    with running_broker(tmp_path / "d", config={"log.retention.check.interval.ms": "100"}) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        produce(b, "ret", 1)  # auto-created
        admin.incremental_alter_configs([topic_configs("ret", {"segment.bytes": "2048"})])[
            ConfigResource(ConfigResource.Type.TOPIC, "ret")].result(10)
        produce(b, "ret", 1)  # the next segment takes the new size
        part = b.broker.log_manager.partitions[("ret", 0)]
        part.log.roll()
        produce(b, "ret", 400)
        assert len(part.log.segments()) > 3
        # retention.ms=1: every segment but the active one goes, by the broker's own task
        admin.incremental_alter_configs([topic_configs("ret", {"retention.ms": "1"})])[
            ConfigResource(ConfigResource.Type.TOPIC, "ret")].result(10)
        assert part.config.get("segment.bytes") == 2048  # incremental: the earlier change stays
        deadline = time.monotonic() + 10
        while len(part.log.segments()) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(part.log.segments()) == 1
        assert part.log_start_offset > 0 and part.log_start_offset <= part.high_watermark
        files = os.listdir(tmp_path / "d" / "ret-0")
        assert sum(f.endswith(".log") for f in files) == 1


def test_incremental_alter_configs_operations(tmp_path):
    with running_broker(tmp_path / "d") as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        produce(b, "inc", 1)
        res = ConfigResource(ConfigResource.Type.TOPIC, "inc")

        def alter(values, op=AlterConfigOpType.SET):
            return admin.incremental_alter_configs([topic_configs("inc", values, op)])[res].result(10)

        def described():
            return {k: v.value for k, v in admin.describe_configs([res])[res].result(10).items()}

        alter({"retention.ms": "5000", "max.message.bytes": "9999"})
        alter({"cleanup.policy": "compact"}, AlterConfigOpType.APPEND)
        d = described()
        assert d["retention.ms"] == "5000" and d["max.message.bytes"] == "9999"
        assert d["cleanup.policy"] == "delete,compact"
        alter({"cleanup.policy": "delete"}, AlterConfigOpType.SUBTRACT)
        alter({"retention.ms": ""}, AlterConfigOpType.DELETE)
        d = described()
        assert d["cleanup.policy"] == "compact"
        assert d["retention.ms"] == str(168 * 3600000)  # back to the broker default
        assert d["max.message.bytes"] == "9999"
        import pytest
        from confluent_kafka import KafkaException
        with pytest.raises(KafkaException, match="not a list config"):
            alter({"retention.ms": "1"}, AlterConfigOpType.APPEND)
        with pytest.raises(KafkaException, match="unknown topic config"):
            alter({"no.such.key": "1"})


def test_altering_configs_of_an_unknown_topic_is_an_error_answer(tmp_path):
    from confluent_kafka import KafkaException
    import pytest
    with running_broker(tmp_path / "d") as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        res = ConfigResource(ConfigResource.Type.TOPIC, "nope")
        with pytest.raises(KafkaException, match="UNKNOWN_TOPIC_OR_PART|does not exist"):
            admin.incremental_alter_configs([topic_configs("nope", {"retention.ms": "1"})])[res].result(10)
        # the connection survived: the same client still gets answers
        assert "nope" not in admin.list_topics(timeout=10).topics
