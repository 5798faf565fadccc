"""`pip install` of pylog into a fresh virtual environment, then what a new
user does first: `pylog --version`, `pylog cluster up` with ZooKeeper (the
`cluster` extra brings kazoo), a produce and a consume, `pylog cluster down`.

Slow (a wheel build and an install from the package index, ~1 min); the
wheel is built from this tree with --no-build-isolation (the build
requirements are in .venv), which leaves build/ and pylog.egg-info, both
ignored by git.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from pylog.cluster.zk_server import zookeeper_installed

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{cmd}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.mark.timeout(1200)
def test_pip_install_then_cluster_up_with_zookeeper(tmp_path):
    if not zookeeper_installed():
        if os.environ.get("PYLOG_CI"):
            pytest.fail("ZooKeeper is not installed (.ci/run installs Debian's zookeeper package)")
        pytest.skip("ZooKeeper is not installed")
    from tests.test_cli_cluster import _free_port
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-build-isolation",
          "--no-deps", "-w", str(wheels), str(ROOT)])
    (wheel,) = wheels.glob("pylog-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    bin_ = venv / "bin"
    _run([str(bin_ / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
          f"{wheel}[cluster]"])
    # Outside the source tree, with nothing of .venv on the path: the installed copy.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_}{os.pathsep}{env['PATH']}"
    work = tmp_path / "project"
    work.mkdir()
    from pylog import __version__
    assert _run([str(bin_ / "pylog"), "--version"], cwd=work, env=env).strip() == f"pylog {__version__}"
    where = _run([str(bin_ / "python"), "-c", "import pylog; print(pylog.__file__)"], cwd=work, env=env)
    assert where.startswith(str(venv)), where
    port = _free_port(1)
    up = subprocess.run([str(bin_ / "pylog"), "cluster", "up", "--brokers", "1", "--zookeeper", "yes",
                         "--base-port", str(port)], cwd=work, env=env, capture_output=True, text=True,
                        timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        bootstrap = up.stdout.strip()
        assert bootstrap == f"127.0.0.1:{port}"
        _run([str(bin_ / "pylog"), "topics", "create", "--bootstrap-server", bootstrap, "--topic", "installed",
              "--partitions", "2"], cwd=work, env=env)
        script = (
            "import time, pylog\n"
            f"b = {bootstrap!r}\n"
            "with pylog.Producer(b) as p:\n"
            "    hs = [p.send('installed', b'v%d' % i, key=b'k') for i in range(10)]\n"
            "    [h.get(60) for h in hs]\n"
            "with pylog.Consumer('installed', bootstrap_servers=b, group_id='g',\n"
            "                    auto_offset_reset='earliest') as c:\n"
            "    got, deadline = [], time.monotonic() + 120\n"
            "    while len(got) < 10 and time.monotonic() < deadline:\n"
            "        got += [bytes(r.value) for r in c.poll(1.0)]\n"
            "    c.commit()\n"
            "print(sorted(got))\n")
        out = _run([str(bin_ / "python"), "-c", script], cwd=work, env=env)
        assert out.strip() == repr(sorted(b"v%d" % i for i in range(10)))
    finally:
        subprocess.run([str(bin_ / "pylog"), "cluster", "down", "--delete-data"], cwd=work, env=env,
                       capture_output=True, timeout=300)
    assert not (work / "cluster" / "cluster.json").exists()
