"""`pylog cluster up|down|status`: a local cluster of broker processes.

    pylog cluster up --brokers 3        # prints the bootstrap string
    pylog cluster status
    pylog cluster down

`up` starts a real ZooKeeper (Debian's zookeeper package) when it is
installed and N `pylog broker` processes registered in it (ports from
--base-port on, data in DIR/broker-<id>); the processes outlive the command.
Without ZooKeeper (not installed, or --zookeeper no) broker 1 hosts the
embedded controller and the others register with it: no extra service, but
no controller failover either (while broker 1 is down, leaders do not move).
Pids, ports and directories go to DIR/cluster.json, which `status` and `down`
read. `down` stops the brokers with SIGTERM (a controlled shutdown:
leadership moves away first), the embedded controller's broker last, and
waits for them, then stops ZooKeeper.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from .common import key_value

__all__ = ["add_cluster_parser"]

STATE_FILE = "cluster.json"


def add_cluster_parser(sub) -> None:
    p = sub.add_parser("cluster", help="start, inspect or stop a local cluster of brokers",
                       description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n", 2)[2],
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = acts.add_parser("up", help="start ZooKeeper (if installed) and N brokers")
    up.add_argument("--brokers", type=int, default=3)
    up.add_argument("--dir", default="cluster", help="where data, logs and cluster.json go (default ./cluster)")
    up.add_argument("--base-port", type=int, default=9092, help="broker i listens on base-port + i - 1")
    up.add_argument("--zookeeper", choices=["auto", "yes", "no"], default="auto",
                    help="auto: use ZooKeeper when installed")
    up.add_argument("--override", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                    help="a broker config for every broker (repeatable)")
    up.set_defaults(tool=_up)
    st = acts.add_parser("status", help="which processes of the cluster are alive")
    st.add_argument("--dir", default="cluster")
    st.set_defaults(tool=_status)
    down = acts.add_parser("down", help="stop the brokers (SIGTERM), then ZooKeeper")
    down.add_argument("--dir", default="cluster")
    down.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each broker")
    down.add_argument("--keep-data", action="store_true", help="leave the data directories")
    down.set_defaults(tool=_down)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state(directory: str) -> dict | None:
    try:
        with open(os.path.join(directory, STATE_FILE)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_state(directory: str, state: dict) -> None:
    tmp = os.path.join(directory, STATE_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, os.path.join(directory, STATE_FILE))


def _up(args) -> int:
    directory = os.path.abspath(args.dir)
    old = _read_state(directory)
    if old and any(_alive(b["pid"]) for b in old["brokers"]):
        print(f"a cluster is already up in {directory} (pylog cluster down --dir {args.dir})",
              file=sys.stderr)
        return 1
    os.makedirs(directory, exist_ok=True)
    from ..cluster.zk_server import (
        ZooKeeperServer,
        ZooKeeperUnavailable,
        zookeeper_installed,
    )
    use_zk = args.zookeeper == "yes" or (args.zookeeper == "auto" and zookeeper_installed())
    state: dict = {"brokers": [], "zookeeper": None, "controller": None}
    overrides = [f"{k}={v}" for k, v in args.override]
    if not use_zk and args.brokers > 1:
        state["controller"] = {"embedded": 1}
        overrides += ["pylog.controller.id=1", f"pylog.controller.listener=127.0.0.1:{args.base_port}"]
    if use_zk:
        try:
            zk = ZooKeeperServer(keep_dir=True).start()
        except ZooKeeperUnavailable as e:
            print(f"cannot start ZooKeeper: {e}", file=sys.stderr)
            return 1
        state["zookeeper"] = {"pid": zk.pid, "port": zk.port, "dir": zk.dir}
        overrides.append(f"zookeeper.connect={zk.connect}/pylog")
    _write_state(directory, state)
    procs = []
    for i in range(1, args.brokers + 1):
        port = args.base_port + i - 1
        data = os.path.join(directory, f"broker-{i}")
        log_path = os.path.join(directory, f"broker-{i}.log")
        cmd = [sys.executable, "-m", "pylog", "broker", "--data-dir", data, "--port", str(port),
               "--broker-id", str(i)]
        for o in overrides:
            cmd += ["--override", o]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        procs.append((i, proc, log_path))
        state["brokers"].append({"id": i, "pid": proc.pid, "port": port, "dir": data, "log": log_path})
        _write_state(directory, state)
    deadline = time.monotonic() + 60
    for i, proc, log_path in procs:
        while True:
            with open(log_path, "rb") as f:
                if b"ready at" in f.read():
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                print(f"broker {i} did not start; see {log_path}", file=sys.stderr)
                _stop_all(state, timeout=10)
                return 1
            time.sleep(0.05)
    print(",".join(f"127.0.0.1:{b['port']}" for b in state["brokers"]))
    return 0


def _status(args) -> int:
    state = _read_state(os.path.abspath(args.dir))
    if state is None:
        print(f"no cluster in {args.dir}", file=sys.stderr)
        return 1
    zk = state.get("zookeeper")
    if zk:
        print(f"zookeeper\t127.0.0.1:{zk['port']}\tpid {zk['pid']}\t"
              f"{'up' if _alive(zk['pid']) else 'down'}")
    embedded = (state.get("controller") or {}).get("embedded")
    for b in state["brokers"]:
        print(f"broker {b['id']}\t127.0.0.1:{b['port']}\tpid {b['pid']}\t"
              f"{'up' if _alive(b['pid']) else 'down'}" + ("\tcontroller" if b["id"] == embedded else ""))
    return 0


def _stop_all(state: dict, timeout: float) -> bool:
    clean = True
    # The embedded controller's broker goes last: the others hand their
    # leadership over through it (controlled shutdown) on the way out.
    embedded = (state.get("controller") or {}).get("embedded")
    waves = [[b for b in state["brokers"] if b["id"] != embedded],
             [b for b in state["brokers"] if b["id"] == embedded]]
    for wave in waves:
        for b in wave:
            if _alive(b["pid"]):
                os.kill(b["pid"], signal.SIGTERM)
        for b in wave:
            deadline = time.monotonic() + timeout
            while _alive(b["pid"]) and time.monotonic() < deadline:
                _reap(b["pid"])
                time.sleep(0.05)
            if _alive(b["pid"]):
                clean = False
                os.kill(b["pid"], signal.SIGKILL)
    zk = state.get("zookeeper")
    if zk and _alive(zk["pid"]):
        os.kill(zk["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(zk["pid"]) and time.monotonic() < deadline:
            _reap(zk["pid"])
            time.sleep(0.05)
    if zk:
        shutil.rmtree(zk["dir"], ignore_errors=True)
    return clean


def _reap(pid: int) -> None:
    # When `up` and `down` run in one process (tests), the brokers are our
    # children and stay zombies (alive to kill(0)) until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _down(args) -> int:
    directory = os.path.abspath(args.dir)
    state = _read_state(directory)
    if state is None:
        print(f"no cluster in {args.dir}", file=sys.stderr)
        return 1
    clean = _stop_all(state, args.timeout)
    if not args.keep_data:
        for b in state["brokers"]:
            shutil.rmtree(b["dir"], ignore_errors=True)
    os.unlink(os.path.join(directory, STATE_FILE))
    if not clean:
        print("some broker did not stop within the timeout and was killed", file=sys.stderr)
    return 0 if clean else 1
