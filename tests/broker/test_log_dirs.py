"""DescribeLogDirs (35) v0-4 as Kafka serves it, asked by kafka-python's
KafkaAdminClient.describe_log_dirs and by pylog's wire client for every
version, and `pylog log-dirs --describe` (kafka-log-dirs.sh) on top of it:
the data dir by its absolute path, each replica's size as its segments take
on disk, offset lag 0 for a leader, is_future false, v4's volume sizes; a
directory that is gone is answered for with KAFKA_STORAGE_ERROR."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import Producer
from kafka import KafkaAdminClient

from pylog.client.wire import Connection
from pylog.protocol.error_codes import Errors
from pylog.protocol.messages import DescribeLogDirsRequest
from pylog.testing import running_broker


@pytest.fixture(scope="module")
def loaded():
    """A broker with two topics written to by confluent-kafka."""
    with running_broker(config={"num.partitions": "2"}) as b:
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(40):
            p.produce("ld-a", value=b"a" * 100, key=b"%d" % i)
            p.produce("ld-b", value=b"b" * 10, partition=i % 2)
        assert p.flush(60) == 0
        yield b


def _disk_size(data_dir, topic, index):
    return sum(os.path.getsize(f) for f in glob.glob(os.path.join(data_dir, f"{topic}-{index}", "*.log")))


def _sizes_settle(b, topics):
    # The sizes are the segments' bytes; wait for every partition to exist on disk.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(_disk_size(b.data_dir, t, i) > 0 for t in topics for i in (0, 1)):
            return
        time.sleep(0.1)
    raise AssertionError("partitions never reached the disk")


def test_kafka_python_describe_log_dirs(loaded):
    _sizes_settle(loaded, ("ld-a", "ld-b"))
    admin = KafkaAdminClient(bootstrap_servers=loaded.bootstrap)
    try:
        everything = admin.describe_log_dirs()
        only = admin.describe_log_dirs(topic_partitions={"ld-b": [1]})
    finally:
        admin.close()
    (broker,) = everything
    (d,) = broker["log_dirs"]
    assert d["error_code"] == 0 and d["log_dir"] == os.path.abspath(loaded.data_dir)
    by_topic = {t["name"]: {p["partition_index"]: p for p in t["partitions"]} for t in d["topics"]}
    assert {"ld-a", "ld-b"} <= set(by_topic)
    for topic in ("ld-a", "ld-b"):
        for i in (0, 1):
            p = by_topic[topic][i]
            assert p["partition_size"] == _disk_size(loaded.data_dir, topic, i)
            assert p["offset_lag"] == 0 and p["is_future_key"] is False
    st = os.statvfs(loaded.data_dir)
    assert d["total_bytes"] == st.f_blocks * st.f_frsize and 0 < d["usable_bytes"] <= d["total_bytes"]
    (d_only,) = only[0]["log_dirs"]
    assert [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in d_only["topics"]] == [("ld-b", [1])]


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_every_version(loaded, version):
    with Connection("127.0.0.1", loaded.port) as c:
        assert c.api_versions[35] == (0, 4)
        resp = c.request(DescribeLogDirsRequest(topics=[DescribeLogDirsRequest.DescribableLogDirTopic(
            topic="ld-a", partitions=[0, 1, 7]), DescribeLogDirsRequest.DescribableLogDirTopic(
            topic="no-such-topic", partitions=[0])]), api_version=version)
    (r,) = resp.results
    assert r.error_code == 0 and r.log_dir == os.path.abspath(loaded.data_dir)
    # Partitions not here (7, an unknown topic) are simply absent, as in Kafka.
    assert [(t.name, sorted(p.partition_index for p in t.partitions)) for t in r.topics] == [("ld-a", [0, 1])]
    if version >= 4:
        assert r.total_bytes > 0 and r.usable_bytes > 0
    else:
        assert r.total_bytes == -1 and r.usable_bytes == -1   # not on the wire before v4


def test_a_directory_that_is_gone_answers_kafka_storage_error(tmp_path):
    data = tmp_path / "data"
    with running_broker(data_dir=str(data), config={"num.partitions": "1"}) as b:
        with Connection("127.0.0.1", b.port) as c:
            os.rename(data, tmp_path / "moved")
            try:
                resp = c.request(DescribeLogDirsRequest(topics=None), api_version=4)
            finally:
                os.rename(tmp_path / "moved", data)
            again = c.request(DescribeLogDirsRequest(topics=None), api_version=4)
    (r,) = resp.results
    assert r.error_code == Errors.KAFKA_STORAGE_ERROR and r.topics == [] and r.log_dir == str(data)
    assert resp.error_code == 0
    assert again.results[0].error_code == 0


def _log_dirs(*args):
    return subprocess.run([sys.executable, "-m", "pylog", "log-dirs", *args], capture_output=True, text=True,
                          timeout=120)


def test_pylog_log_dirs_describe_prints_kafkas_json(loaded):
    _sizes_settle(loaded, ("ld-a",))
    r = _log_dirs("--describe", "--bootstrap-server", loaded.bootstrap, "--topic-list", "ld-a")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["Querying brokers for log directories information",
                         "Received log directory information from brokers 1"]
    # Kafka's tool writes java.util.HashMaps: this key order, no spaces.
    assert lines[2].startswith('{"brokers":[{"broker":1,"logDirs":[{"partitions":[{"partition":"ld-a-')
    assert lines[2].endswith(f'"error":null,"logDir":"{os.path.abspath(loaded.data_dir)}"}}]}}],"version":1}}')
    out = json.loads(lines[2])
    parts = {p["partition"]: p for p in out["brokers"][0]["logDirs"][0]["partitions"]}
    assert set(parts) == {"ld-a-0", "ld-a-1"}
    assert parts["ld-a-1"] == {"partition": "ld-a-1", "size": _disk_size(loaded.data_dir, "ld-a", 1),
                               "offsetLag": 0, "isFuture": False}
    missing = _log_dirs("--describe", "--bootstrap-server", loaded.bootstrap, "--broker-list", "1,5")
    assert missing.returncode == 1
    assert "ERROR: The given brokers do not exist from --broker-list: 5. Current existent brokers: 1" in missing.stderr
    assert _log_dirs("--bootstrap-server", loaded.bootstrap).returncode == 2   # --describe is required


def test_a_cluster_leaders_and_followers(tmp_path):
    """Two brokers, replication factor 2: each reports its own replica of every
    partition, leader or follower, with the same bytes once the follower has
    caught up, and lag 0 (Kafka's max(high watermark - log end offset, 0)
    for a current log); kafka-log-dirs asks both."""
    from tests.cluster.zkcluster import create_topic, embedded_cluster, produce_numbers, wait_for
    with embedded_cluster(n=2) as bs:
        create_topic(bs, "ld-rep", 2, rf=2)
        produce_numbers(bs, "ld-rep", 500)

        def leo(b, i):
            return b.broker.log_manager.get_partition("ld-rep", i).log_end_offset
        wait_for(lambda: all(leo(bs[0], i) == leo(bs[1], i) for i in (0, 1)),
                 what="both replicas at the same log end offset")
        admin = KafkaAdminClient(bootstrap_servers=",".join(str(b) for b in bs))
        try:
            answers = {a["broker"]: a["log_dirs"] for a in admin.describe_log_dirs(topic_partitions=["ld-rep"])}
        finally:
            admin.close()
        r = _log_dirs("--describe", "--bootstrap-server", str(bs[0]), "--topic-list", "ld-rep")
        data_dirs = {b.broker.broker_id: b.data_dir for b in bs}
    assert set(answers) == {1, 2}
    sizes = {}
    for broker, (d,) in answers.items():
        assert d["error_code"] == 0 and d["log_dir"] == os.path.abspath(data_dirs[broker])
        (t,) = d["topics"]
        for p in t["partitions"]:
            assert p["offset_lag"] == 0 and p["is_future_key"] is False
            sizes.setdefault(p["partition_index"], set()).add(p["partition_size"])
    assert sorted(sizes) == [0, 1] and all(len(s) == 1 and s.pop() > 0 for s in sizes.values())
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == "Received log directory information from brokers 1,2"
    out = json.loads(r.stdout.splitlines()[2])
    assert sorted(b["broker"] for b in out["brokers"]) == [1, 2]
