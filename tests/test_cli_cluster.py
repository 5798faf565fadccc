"""`pylog cluster up|status|down` with real broker processes."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

ck = pytest.importorskip("confluent_kafka")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pylog(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "pylog", *args], capture_output=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def test_one_broker_without_zookeeper_up_status_down(tmp_path):
    d = str(tmp_path / "c")
    port = _free_port()
    out = pylog("cluster", "up", "--brokers", "1", "--zookeeper", "no", "--dir", d,
                "--base-port", str(port)).stdout.decode().strip()
    try:
        assert out == f"127.0.0.1:{port}"
        assert "up" in pylog("cluster", "status", "--dir", d).stdout.decode()
        again = pylog("cluster", "up", "--brokers", "1", "--zookeeper", "no", "--dir", d, check=False)
        assert again.returncode == 1 and b"already up" in again.stderr
        p = ck.Producer({"bootstrap.servers": out})
        p.produce("t", b"v")
        assert p.flush(10) == 0
    finally:
        pylog("cluster", "down", "--dir", d)
    assert pylog("cluster", "status", "--dir", d, check=False).returncode == 1


def test_several_brokers_without_zookeeper_are_refused_clearly(tmp_path):
    r = pylog("cluster", "up", "--brokers", "3", "--zookeeper", "no", "--dir", str(tmp_path), check=False)
    assert r.returncode == 1 and b"need ZooKeeper" in r.stderr


def test_three_brokers_with_zookeeper_replicate(tmp_path):
    import os

    from pylog.cluster.zk_server import zookeeper_installed
    if not zookeeper_installed():
        if os.environ.get("PYLOG_CI"):
            pytest.fail("ZooKeeper is not installed (.ci/run installs Debian's zookeeper package)")
        pytest.skip("ZooKeeper is not installed")
    d = str(tmp_path / "c")
    port = _free_port()
    bootstrap = pylog("cluster", "up", "--brokers", "3", "--zookeeper", "yes", "--dir", d,
                      "--base-port", str(port)).stdout.decode().strip()
    try:
        assert bootstrap.count(",") == 2
        status = pylog("cluster", "status", "--dir", d).stdout.decode()
        assert status.startswith("zookeeper") and status.count("\tup") == 4
        pylog("topics", "create", "--bootstrap-server", bootstrap, "--topic", "t", "--partitions", "3",
              "--replication-factor", "3")
        p = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(300):
            p.produce("t", str(i).encode(), partition=i % 3)
        assert p.flush(20) == 0
        lines = pylog("topics", "describe", "--bootstrap-server", bootstrap, "--topic", "t"
                      ).stdout.decode().splitlines()
        assert "ReplicationFactor: 3" in lines[0]
        for line in lines[1:]:
            replicas = line.split("Replicas: ")[1].split("\t")[0]
            assert sorted(replicas.split(",")) == ["1", "2", "3"]
        assert pylog("topics", "describe", "--bootstrap-server", bootstrap,
                     "--under-replicated-partitions").stdout.decode() == ""
    finally:
        pylog("cluster", "down", "--dir", d)
