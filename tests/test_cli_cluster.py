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
