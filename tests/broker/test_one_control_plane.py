"""A lone broker is a one-node cluster on the embedded controller.

- A data dir written by the release before it (commit 30315d7: topics in
  pylog-topics.json, configs, a grown partition count, records from an
  idempotent producer, a committed group offset) is adopted on first start with
  nothing lost (tests/data/legacy-30315d7-datadir.tar.gz, made by
  tests/data/make_legacy_datadir.py on that commit).
- Its metadata lives in <data dir>/pylog-cluster and survives a restart.
"""
from __future__ import annotations

import json
import os
import tarfile

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pylog.testing import running_broker

LEGACY = os.path.join(os.path.dirname(__file__), "..", "data", "legacy-30315d7-datadir.tar.gz")


def _legacy_dir(tmp_path):
    with tarfile.open(LEGACY) as t:
        t.extractall(tmp_path, filter="data")
    return tmp_path / "data"


def _read_all(bootstrap, topic, partitions, group="reader"):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out = []
        idle = 0
        while idle < 3:
            msgs = c.consume(100, 1.0)
            idle = idle + 1 if not msgs else 0
            out += [m for m in msgs if not m.error()]
        return out
    finally:
        c.close()


def test_a_data_dir_of_the_previous_release_is_adopted_with_nothing_lost(tmp_path):
    data = _legacy_dir(tmp_path)
    old_topics = json.loads((data / "pylog-topics.json").read_text())["topics"]
    old_cluster_id = [ln.split("=", 1)[1] for ln in (data / "meta.properties").read_text().split()
                      if ln.startswith("cluster.id=")][0]
    old_next_pid = int((data / "pylog-producer-ids").read_text())
    with running_broker(data, {"broker.id": "0", "offsets.topic.num.partitions": "3"}) as b:
        a = AdminClient({"bootstrap.servers": b})
        md = a.list_topics(timeout=10)
        assert md.cluster_id == old_cluster_id
        assert {t: len(md.topics[t].partitions) for t in ("orders", "events", "grow")} == \
            {"orders": 3, "events": 1, "grow": 2}
        # Same topic ids as before (Metadata v10+ carries them).
        store_dir = data / "pylog-cluster" / "topics"
        for name in ("orders", "events", "grow", "__consumer_offsets"):
            stored = json.loads((store_dir / f"{name}.json").read_text())
            assert stored["config"] == old_topics[name]["configs"], name
        # Config overrides as they were.
        res = a.describe_configs([ConfigResource("topic", "orders"), ConfigResource("topic", "events")])
        got = {r.name: {k: v.value for k, v in f.result(10).items()} for r, f in res.items()}
        assert got["orders"]["retention.ms"] == "86400000"
        assert got["orders"]["cleanup.policy"] == "delete"
        assert got["events"]["max.message.bytes"] == "200000"
        # Every record, in every partition.
        assert sorted(m.value() for m in _read_all(b, "orders", 3)) == sorted(b"order-%d" % i for i in range(30))
        assert [m.value() for m in _read_all(b, "events", 1)] == [b"event-%d" % i for i in range(5)]
        assert sorted(m.value() for m in _read_all(b, "grow", 2)) == sorted(b"grow-%d" % i for i in range(4))
        # The committed group offset.
        c = Consumer({"bootstrap.servers": b, "group.id": "legacy-group", "enable.auto.commit": False})
        try:
            assert c.committed([TopicPartition("orders", 0)], timeout=30)[0].offset == 7
        finally:
            c.close()
        # Producer ids go on past the ones the old release handed out.
        p = Producer({"bootstrap.servers": b, "enable.idempotence": True})
        p.produce("orders", b"after", partition=0)
        assert p.flush(30) == 0
        pid_block = json.loads((data / "pylog-cluster" / "cluster.json").read_text())["latest_producer_id_block"]
        assert int(pid_block["block_start"]) >= old_next_pid - 1
        # And it keeps working as a cluster of one: new topics, through the controller.
        for f in a.create_topics([NewTopic("fresh", 2, 1)]).values():
            f.result(10)
    # A second start reads the same metadata (nothing adopted twice, nothing lost).
    with running_broker(data, {"broker.id": "0", "offsets.topic.num.partitions": "3"}) as b:
        md = AdminClient({"bootstrap.servers": b}).list_topics(timeout=10)
        assert {"orders", "events", "grow", "fresh", "__consumer_offsets"} <= set(md.topics)
        assert len(_read_all(b, "orders", 3)) == 31


def test_a_lone_broker_keeps_its_metadata_in_its_data_dir(tmp_path):
    with running_broker(tmp_path, {"broker.id": "0"}) as b:
        a = AdminClient({"bootstrap.servers": b})
        for f in a.create_topics([NewTopic("t", 3, 1, config={"retention.ms": "123456"})]).values():
            f.result(10)
        md = a.list_topics(timeout=10)
        assert md.controller_id == 0 and len(md.topics["t"].partitions) == 3
    stored = json.loads((tmp_path / "pylog-cluster" / "topics" / "t.json").read_text())
    assert stored["config"] == {"retention.ms": "123456"}
    assert sorted(stored["partitions"]) == ["0", "1", "2"]
