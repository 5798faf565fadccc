"""Kafka's checkpoint layout: one recovery-point-offset-checkpoint,
log-start-offset-checkpoint and replication-offset-checkpoint per data dir
(`topic partition offset` lines), written off the event loop, and migrated on
first start from the per-partition files of the release before."""
from __future__ import annotations

import os
import tarfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.log.checkpoint import read_checkpoint
from pylog.testing import running_broker

DATA = os.path.join(os.path.dirname(__file__), "data")
FILES = ("recovery-point-offset-checkpoint", "log-start-offset-checkpoint", "replication-offset-checkpoint")


def _entries(data_dir, name):
    return {(t, int(p)): int(o) for t, p, o in read_checkpoint(os.path.join(data_dir, name))}


def _consume_all(bootstrap, topic, partition):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-" + topic, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        c.assign([TopicPartition(topic, partition, low)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < high - low and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append((m.offset(), m.value()))
        return low, high, got
    finally:
        c.close()


def test_per_partition_checkpoints_of_the_release_before_are_migrated(tmp_path):
    # Written by commit 30315d7's broker (make_per_partition_checkpoints.py).
    with tarfile.open(os.path.join(DATA, "per-partition-checkpoints.tar.gz")) as tar:
        tar.extractall(tmp_path)
    data = tmp_path / "data"
    assert all((data / "mig-0" / name).exists() for name in FILES)
    with running_broker(data) as b:
        for name in FILES:
            assert not (data / "mig-0" / name).exists() and not (data / "mig-1" / name).exists()
        assert _entries(data, "log-start-offset-checkpoint") == {("mig", 0): 20, ("mig", 1): 0}
        assert _entries(data, "recovery-point-offset-checkpoint") == {("mig", 0): 50, ("mig", 1): 50}
        assert _entries(data, "replication-offset-checkpoint") == {("mig", 0): 50, ("mig", 1): 50}
        low, high, got = _consume_all(b.bootstrap, "mig", 0)
        assert (low, high) == (20, 50)
        assert got == [(i, b"v0-%d" % i) for i in range(20, 50)]
        low, high, got = _consume_all(b.bootstrap, "mig", 1)
        assert (low, high, len(got)) == (0, 50, 50)
    # and it starts again from the data dir's own files
    with running_broker(data) as b:
        assert _consume_all(b.bootstrap, "mig", 0)[:2] == (20, 50)


def test_checkpoints_are_one_file_per_data_dir_written_while_running(tmp_path):
    data = tmp_path / "d"
    conf = {"log.flush.offset.checkpoint.interval.ms": "100", "log.retention.check.interval.ms": "100"}
    with running_broker(data, config=conf) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.create_topics([NewTopic("ck", 3, 1)]).values():
            f.result(10)
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 1})
        for part in range(3):
            for i in range(10 * (part + 1)):
                p.produce("ck", b"x", partition=part)
        assert p.flush(10) == 0
        for f in admin.delete_records([TopicPartition("ck", 1, 5)]).values():
            f.result(10)
        want_hw = {("ck", 0): 10, ("ck", 1): 20, ("ck", 2): 30}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _entries(data, "replication-offset-checkpoint") == want_hw and \
                        _entries(data, "log-start-offset-checkpoint").get(("ck", 1)) == 5:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert _entries(data, "replication-offset-checkpoint") == want_hw
        assert _entries(data, "log-start-offset-checkpoint") == {("ck", 0): 0, ("ck", 1): 5, ("ck", 2): 0}
        for part in range(3):
            assert not any((data / f"ck-{part}" / name).exists() for name in FILES)
        for f in admin.delete_topics(["ck"]).values():
            f.result(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _entries(data, "replication-offset-checkpoint"):
            time.sleep(0.05)
        assert _entries(data, "replication-offset-checkpoint") == {}, "a deleted topic's entries stay"
    assert _entries(data, "recovery-point-offset-checkpoint") == {}
