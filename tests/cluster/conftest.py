"""Fixtures for the cluster tests: a real standalone ZooKeeper on loopback.

- ``zookeeper``: one ZooKeeperServer for the whole session (started on first use).
- ``own_zookeeper``: a ZooKeeperServer of the test's own (it may kill it).
- ``zk_connect``: a connect string with a chroot of the test's own
  ("127.0.0.1:PORT/test-<uuid>", created), so tests never see each other's nodes.

Without ZooKeeper (Debian's zookeeper package and java) the tests that use these
fixtures are skipped, except under CI (PYLOG_CI=1, set by .ci/run, which installs
the package): there a missing ZooKeeper fails them.
"""
from __future__ import annotations

import os
import uuid

import pytest

from pylog.cluster.zk_server import (
    ZooKeeperServer,
    ZooKeeperUnavailable,
    zookeeper_installed,
)


def _started(server: ZooKeeperServer) -> ZooKeeperServer:
    if not zookeeper_installed() and not os.environ.get("PYLOG_CI"):
        pytest.skip("ZooKeeper is not installed (apt-get install -y zookeeper; .ci/run installs it)")
    try:
        return server.start()
    except ZooKeeperUnavailable as e:
        if os.environ.get("PYLOG_CI"):
            pytest.fail(f"ZooKeeper is required under CI: {e}")
        pytest.skip(f"ZooKeeper cannot be started: {e}")


@pytest.fixture(scope="session")
def zookeeper():
    server = _started(ZooKeeperServer())
    yield server
    server.stop()


@pytest.fixture
def own_zookeeper(tmp_path):
    """A ZooKeeper of the test's own, which it may kill and start again (same
    port, same data directory)."""
    server = _started(ZooKeeperServer(directory=str(tmp_path / "zk")))
    yield server
    server.stop()


@pytest.fixture
def zk_connect(zookeeper):
    from kazoo.client import KazooClient

    chroot = f"/test-{uuid.uuid4().hex[:12]}"
    client = KazooClient(hosts=zookeeper.connect)
    client.start(timeout=15)
    try:
        client.ensure_path(chroot)
    finally:
        client.stop()
        client.close()
    return zookeeper.connect + chroot
