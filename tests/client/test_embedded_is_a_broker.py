"""Issue 12 point 4: the embedded mode is a broker without a listener.

- LocalStore runs a pylog.Broker core (listen=False): topics go through the
  in-process controller and the CreateTopics / CreatePartitions / DeleteTopics
  handler bodies, offsets through the group coordinator's runtime and the
  broker's partition writer, ListOffsets through its handler;
- the embedded consumer's long poll waits in the broker's one purgatory;
- another process reads a directory an embedded producer (or a broker) is
  writing, read-only, and sees new records as they come."""
from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

import pylog
from pylog import _engine
from pylog.broker.broker import Broker
from pylog.embedded import LocalStore
from pylog.errors import LogLockedError
from pylog.structs import OffsetAndMetadata, TopicPartition
from pylog.testing import running_broker

REPO = pathlib.Path(__file__).resolve().parents[2]
DEADLINE = 60.0


def test_the_store_is_a_listenerless_broker_and_topics_go_through_its_controller(tmp_path):
    d = str(tmp_path / "data")
    with LocalStore.open(d) as store:
        assert isinstance(store.broker, Broker) and store.broker.server is None
        store.create_topic("t", 2)
        store.create_partitions("t", 3)
        assert store.partitions_for("t") == [0, 1, 2]
        # Created by the controller: the cluster's metadata store has it, and
        # this broker leads every partition as the controller decided.
        ctl = store.broker.controller
        assert ctl is not None and ctl.is_active
        assert "t" in store.broker.metadata_store.topics()
        assert store.call(lambda: all(store.broker.log_manager.partitions[("t", i)].is_leader for i in range(3)))
        store.append("t", 2, _engine.encode_batch([b"x"]))
        store.commit_offsets("g", {TopicPartition("t", 2): OffsetAndMetadata(1, "", -1)})
        # The group coordinator is the broker's, on its runtime and writer.
        assert store.call(lambda: store.broker.groups.fetch_offsets("g", [("t", 2)]))[("t", 2)].offset == 1
        store.delete_topic("t")
        assert store.partitions_for("t") is None
    # A broker started on the directory afterwards finds the same cluster metadata.
    with running_broker(data_dir=d) as b:
        assert b.broker.call(lambda: "t" not in b.broker.metadata_cache.topics)


def test_no_second_body_for_topic_creation_in_the_embedded_package():
    """The embedded package calls no LogManager topic operation (it goes
    through the handlers and the controller), and BrokerPartitionWriter has
    no broker-less mode left."""
    calls = set()
    for path in (REPO / "pylog" / "embedded").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in (
                    "create_topic", "create_partitions", "delete_topic", "open_topic_partitions", "prepare_topic"):
                calls.add((path.name, node.attr))
            if isinstance(node, ast.Name) and node.id in ("LogManager", "GroupCoordinator", "BrokerPartitionWriter"):
                calls.add((path.name, node.id))
    # store.py's own public methods of those names are definitions, not calls.
    assert calls <= {("store.py", "create_topic"), ("store.py", "create_partitions"),
                     ("store.py", "delete_topic")}, calls
    src = (REPO / "pylog" / "embedded" / "store.py").read_text()
    assert "log_manager.create_topic" not in src and "log_manager.create_partitions" not in src
    writer = (REPO / "pylog" / "broker" / "coordinator_writer.py").read_text()
    assert "def local(" not in writer
    # ... and there is no such body left to call: LogManager only opens the
    # replicas the controller's LeaderAndIsr names.
    from pylog.broker.log_manager import LogManager
    for name in ("create_topic", "create_partitions", "prepare_topic", "open_topic_partitions", "register_topic"):
        assert not hasattr(LogManager, name), name


def test_the_embedded_long_poll_waits_in_the_brokers_purgatory(tmp_path):
    d = str(tmp_path / "data")
    with pylog.Producer(log_dir=d) as p:
        p.send("lp", b"first").get(10)
        c = pylog.Consumer(log_dir=d, group_id=None, fetch_max_wait_ms=20000)
        try:
            c.assign([TopicPartition("lp", 0)])
            c.seek(TopicPartition("lp", 0), 1)
            store = c._source.store
            purgatory = store.broker.handlers.purgatory
            got = []
            t = threading.Thread(target=lambda: got.extend(c.poll(30, max_records=10)))
            t.start()
            part = store.call(lambda: store.broker.log_manager.partitions[("lp", 0)])
            deadline = time.monotonic() + DEADLINE
            while store.call(purgatory.watching, part) == 0:
                assert time.monotonic() < deadline, "the fetch never waited in the purgatory"
                time.sleep(0.01)
            p.send("lp", b"second").get(10)
            t.join(DEADLINE)
            assert [bytes(r.value) for r in got] == [b"second"]
            assert store.call(purgatory.watching, part) == 0
        finally:
            c.close()


_WRITER = r"""
import sys, time
import pylog
d, n = sys.argv[1], int(sys.argv[2])
with pylog.Producer(log_dir=d, num_partitions=2) as p:
    p.send("tail", b"v0", partition=0).get(10)
    p.send("tail", b"v1", partition=1).get(10)
    print("ready", flush=True)
    sys.stdin.readline()              # the reader is open: go on
    for i in range(2, n):
        p.send("tail", b"v%d" % i, partition=i % 2)
        if i % 25 == 0:
            p.flush()
            time.sleep(0.02)
    p.flush()
    print("done", flush=True)
    sys.stdin.readline()              # hold the directory until the reader has everything
"""


def test_another_process_tails_a_directory_an_embedded_producer_writes(tmp_path):
    d = str(tmp_path / "data")
    n = 600
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    w = subprocess.Popen([sys.executable, "-c", _WRITER, d, str(n)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert w.stdout.readline().strip() == "ready", w.stderr.read()
        # The writer holds the directory: a writable store is refused, a reader is not.
        with pytest.raises(LogLockedError):
            LocalStore.open(d)
        c = pylog.Consumer(log_dir=d, group_id="readers", read_only=True, auto_offset_reset="earliest",
                           fetch_max_wait_ms=200)
        try:
            assert c._source.partitions_for("tail") == [0, 1]
            c.assign([TopicPartition("tail", 0), TopicPartition("tail", 1)])
            seen = [bytes(r.value) for r in c.poll(5, max_records=10)]
            w.stdin.write("go\n")
            w.stdin.flush()
            deadline = time.monotonic() + DEADLINE * 2
            while len(seen) < n and time.monotonic() < deadline:
                seen.extend(bytes(r.value) for r in c.poll(0.5, max_records=1000))
            assert sorted(seen, key=lambda v: int(v[1:])) == [b"v%d" % i for i in range(n)]
            assert len(seen) == n
        finally:
            c.close()
        _out, err = w.communicate("bye\n", timeout=DEADLINE)
        assert w.returncode == 0, err
    finally:
        if w.poll() is None:
            w.kill()
            w.communicate()


_READER = r"""
import sys, time
import pylog
from pylog.structs import TopicPartition
d, n = sys.argv[1], int(sys.argv[2])
c = pylog.Consumer(log_dir=d, group_id=None, read_only=True, auto_offset_reset="earliest", fetch_max_wait_ms=100)
c.assign([TopicPartition("bt", 0)])
first = c.poll(30, max_records=1)
print("open", len(first), flush=True)
seen = [bytes(r.value) for r in first]
deadline = time.monotonic() + 120
while len(seen) < n and time.monotonic() < deadline:
    seen.extend(bytes(r.value) for r in c.poll(0.5, max_records=1000))
c.close()
print(len(seen), seen == [b"m%d" % i for i in range(n)], flush=True)
"""


def test_another_process_tails_a_directory_a_broker_writes(tmp_path):
    d = str(tmp_path / "data")
    n = 500
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with running_broker(data_dir=d) as b:
        with pylog.Producer(str(b)) as p:
            p.send("bt", b"m0", partition=0).get(30)
            r = subprocess.Popen([sys.executable, "-c", _READER, d, str(n)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
            try:
                line = r.stdout.readline()
                assert line.split() == ["open", "1"], (line, r.stderr.read())
                for i in range(1, n):
                    p.send("bt", b"m%d" % i, partition=0)
                    if i % 50 == 0:
                        p.flush()
                        time.sleep(0.02)
                p.flush()
                out, err = r.communicate(timeout=DEADLINE * 3)
            finally:
                if r.poll() is None:
                    r.kill()
                    r.communicate()
    assert r.returncode == 0, err
    assert out.split() == [str(n), "True"], (out, err)
