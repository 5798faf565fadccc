"""`pylog cluster up|status|start|stop|restart|down`: a local cluster of broker processes.

    pylog cluster up --brokers 3        # prints the bootstrap string
    pylog cluster status                # exit 0: all up, 1: some down, 3: none up, 4: no cluster
    pylog cluster restart --broker 2    # also: stop --broker N, start --broker N
    pylog cluster down                  # keeps the data; --delete-data removes it

`up` starts a real ZooKeeper (Debian's zookeeper package) when it is
installed, with its data in DIR/zookeeper, and N `pylog broker` processes
registered in it (ports from --base-port on, data in DIR/broker-<id>, output
in DIR/broker-<id>.log); the processes outlive the command. Without ZooKeeper
(not installed, or --zookeeper no) broker 1 hosts the embedded controller and
the others register with it: no extra service, but no controller failover
either (while broker 1 is down, leaders do not move). `up` waits until each
broker it started says it is ready, and when one fails prints why (a port in
use, a missing module, its last log lines) and stops the others.
__consumer_offsets gets min(3, N) replicas (offsets.topic.replication.factor,
unless given with --override).

Pids, ports, commands and directories go to DIR/cluster.json, which the other
actions read and update. `down` stops the brokers with SIGTERM (a controlled
shutdown: leadership moves away first), the embedded controller's broker last,
then ZooKeeper; the data stays, so a later `up` in the same DIR brings the
same topics and offsets back.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from .api_versions import add_api_versions_action
from .common import key_value

__all__ = ["STATUS_ALL_UP", "STATUS_NO_CLUSTER", "STATUS_NONE_UP", "STATUS_SOME_DOWN", "add_cluster_parser"]

STATE_FILE = "cluster.json"
# `status` exit codes, after the LSB init-script convention (0 running,
# 3 not running, 4 unknown), with 1 for a cluster partly down.
STATUS_ALL_UP, STATUS_SOME_DOWN, STATUS_NONE_UP, STATUS_NO_CLUSTER = 0, 1, 3, 4
START_TIMEOUT_S = 60.0


def add_cluster_parser(sub) -> None:
    p = sub.add_parser("cluster", help="start, inspect or stop a local cluster of brokers",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name, help, tool):
        a = acts.add_parser(name, help=help)
        a.add_argument("--dir", default="cluster", help="where data, logs and cluster.json go (default ./cluster)")
        a.set_defaults(tool=tool)
        return a
    add_api_versions_action(acts)
    up = action("up", "start ZooKeeper (if installed) and N brokers", _up)
    up.add_argument("--brokers", type=int, default=3)
    up.add_argument("--base-port", type=int, default=9092, help="broker i listens on base-port + i - 1")
    up.add_argument("--zookeeper", choices=["auto", "yes", "no"], default="auto",
                    help="auto: use ZooKeeper when installed")
    up.add_argument("--zookeeper-port", type=int, default=0,
                    help="ZooKeeper's client port (default: a free one)")
    up.add_argument("--override", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                    help="a broker config for every broker (repeatable)")
    up.add_argument("--broker-override", type=_broker_key_value, action="append", default=[],
                    metavar="ID:KEY=VALUE",
                    help="a broker config for broker ID only, e.g. 2:broker.rack=RACK2 (repeatable; "
                         "wins over --override)")
    action("status", "which processes of the cluster are alive (exit 0 all up, 1 some down, "
                     "3 none up, 4 no cluster)", _status)
    for name, help, tool in (("start", "start one broker of the cluster again", _start),
                             ("stop", "stop one broker (SIGTERM: a controlled shutdown)", _stop),
                             ("restart", "stop one broker, then start it again", _restart)):
        a = action(name, help, tool)
        a.add_argument("--broker", type=int, required=True, metavar="ID")
        a.add_argument("--timeout", type=float, default=60.0,
                       help="seconds to wait for the broker to stop before SIGKILL")
    down = action("down", "stop the brokers (SIGTERM), then ZooKeeper; the data stays", _down)
    down.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each broker")
    down.add_argument("--delete-data", action="store_true",
                      help="also remove the brokers' and ZooKeeper's data, the logs and cluster.json")
    down.add_argument("--keep-data", action="store_true", help=argparse.SUPPRESS)  # the default now


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> None:
    # When `up` and `down` run in one process (tests), the brokers are our
    # children and stay zombies (alive to kill(0)) until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


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


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _fail(message: str) -> int:
    print(f"pylog cluster: {message}", file=sys.stderr)
    return 1


def _up(args) -> int:
    directory = os.path.abspath(args.dir)
    old = _read_state(directory)
    if old and (any(_alive(b.get("pid")) for b in old["brokers"])
                or _alive((old.get("zookeeper") or {}).get("pid"))):
        return _fail(f"a cluster is already up in {directory} (pylog cluster down --dir {args.dir})")
    strays = sorted({i for i, _, _ in args.broker_override if not 1 <= i <= args.brokers})
    if strays:
        return _fail(f"--broker-override names broker {', '.join(map(str, strays))}, but the cluster "
                     f"has brokers 1..{args.brokers}")
    ports = [args.base_port + i for i in range(args.brokers)]
    busy = [p for p in ports if _port_in_use(p)]
    if busy:
        return _fail(f"port {', '.join(map(str, busy))} on 127.0.0.1 is in use by another process; "
                     f"stop it or choose other ports with --base-port")
    os.makedirs(directory, exist_ok=True)
    from ..cluster.zk_server import ZooKeeperServer, ZooKeeperUnavailable, zookeeper_installed
    use_zk = args.zookeeper == "yes" or (args.zookeeper == "auto" and zookeeper_installed())
    if use_zk:
        try:
            import kazoo  # noqa: F401  (the brokers' ZooKeeper client)
        except ImportError:
            return _fail("ZooKeeper mode needs the kazoo package: pip install 'pylog[cluster]' "
                         "(or --zookeeper no for the embedded controller)")
        if args.zookeeper_port and _port_in_use(args.zookeeper_port):
            return _fail(f"--zookeeper-port {args.zookeeper_port} is in use by another process")
    state: dict = {"brokers": [], "zookeeper": None, "controller": None}
    overrides = [f"{k}={v}" for k, v in args.override]
    if not any(k == "offsets.topic.replication.factor" for k, _ in args.override):
        # Kafka's default is 3; a smaller cluster could never create the topic.
        overrides.append(f"offsets.topic.replication.factor={min(3, args.brokers)}")
    if not any(k == "transaction.state.log.replication.factor" for k, _ in args.override):
        overrides.append(f"transaction.state.log.replication.factor={min(3, args.brokers)}")
    if not any(k == "transaction.state.log.min.isr" for k, _ in args.override):
        overrides.append(f"transaction.state.log.min.isr={min(2, args.brokers)}")
    if not use_zk and args.brokers > 1:
        state["controller"] = {"embedded": 1}
        overrides += ["pylog.controller.id=1", f"pylog.controller.listener=127.0.0.1:{args.base_port}"]
    if use_zk:
        try:
            zk = ZooKeeperServer(port=args.zookeeper_port,
                                 directory=os.path.join(directory, "zookeeper")).start()
        except ZooKeeperUnavailable as e:
            return _fail(f"cannot start ZooKeeper: {e}")
        state["zookeeper"] = {"pid": zk.pid, "port": zk.port, "dir": zk.dir}
        overrides.append(f"zookeeper.connect={zk.connect}/pylog")
    _write_state(directory, state)
    for i, port in enumerate(ports, 1):
        cmd = [sys.executable, "-m", "pylog", "broker", "--data-dir", os.path.join(directory, f"broker-{i}"),
               "--port", str(port), "--broker-id", str(i)]
        for o in overrides + [f"{k}={v}" for b_id, k, v in args.broker_override if b_id == i]:
            cmd += ["--override", o]
        b = {"id": i, "port": port, "dir": os.path.join(directory, f"broker-{i}"),
             "log": os.path.join(directory, f"broker-{i}.log"), "cmd": cmd, "pid": None}
        state["brokers"].append(b)
        _launch(b)
        _write_state(directory, state)
    for b in state["brokers"]:
        error = _wait_ready(b)
        if error:
            print(f"pylog cluster: {error}", file=sys.stderr)
            _stop_all(state, timeout=10)
            _write_state(directory, state)
            return 1
    print(",".join(f"127.0.0.1:{b['port']}" for b in state["brokers"]))
    return 0


def _launch(b: dict) -> None:
    """Start broker b; its output goes to the end of its log. The log's size
    before is remembered, so readiness is read from this run's lines only."""
    with open(b["log"], "ab") as log:
        b["log_from"] = log.tell()
        proc = subprocess.Popen(b["cmd"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    b["pid"] = proc.pid


def _new_output(b: dict) -> bytes:
    with open(b["log"], "rb") as f:
        f.seek(b.get("log_from", 0))
        return f.read()


def _wait_ready(b: dict, timeout: float = START_TIMEOUT_S) -> str | None:
    """None once broker b said it is ready in this run's output; else why not."""
    deadline = time.monotonic() + timeout
    while True:
        out = _new_output(b)
        if b"ready at" in out:
            return None
        if not _alive(b["pid"]):
            return f"broker {b['id']} did not start:\n{_why(out)}\n(its log: {b['log']})"
        if time.monotonic() > deadline:
            return (f"broker {b['id']} was not ready after {timeout:.0f} s; its last lines:\n"
                    f"{_tail(out)}\n(its log: {b['log']})")
        time.sleep(0.05)


def _broker_key_value(text: str) -> tuple[int, str, str]:
    """argparse type for ID:KEY=VALUE (--broker-override)."""
    ident, sep, rest = text.partition(":")
    if not sep or not ident.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected ID:KEY=VALUE, got {text!r}")
    return (int(ident), *key_value(rest))


def _tail(out: bytes, lines: int = 8) -> str:
    return "\n".join("  " + x for x in out.decode(errors="replace").rstrip().splitlines()[-lines:])


def _why(out: bytes) -> str:
    """A failed broker's reason: its error line first (the broker prints
    `pylog broker: <error>`, a crash ends with the exception), then the tail."""
    text = out.decode(errors="replace").rstrip().splitlines()
    reason = next((x for x in reversed(text) if x.startswith("pylog broker:") or "Error" in x.split(":")[0]),
                  None)
    tail = _tail(out)
    return tail if reason is None or reason in tail else f"  {reason}\n  ...\n{tail}"


def _status(args) -> int:
    state = _read_state(os.path.abspath(args.dir))
    if state is None:
        print(f"no cluster in {args.dir}", file=sys.stderr)
        return STATUS_NO_CLUSTER
    up = []
    zk = state.get("zookeeper")
    if zk:
        up.append(_alive(zk.get("pid")))
        print(f"zookeeper\t127.0.0.1:{zk['port']}\tpid {zk['pid']}\t{'up' if up[-1] else 'down'}")
    embedded = (state.get("controller") or {}).get("embedded")
    for b in state["brokers"]:
        up.append(_alive(b.get("pid")))
        print(f"broker {b['id']}\t127.0.0.1:{b['port']}\tpid {b['pid']}\t{'up' if up[-1] else 'down'}"
              + ("\tcontroller" if b["id"] == embedded else ""))
    return STATUS_ALL_UP if all(up) else STATUS_NONE_UP if not any(up) else STATUS_SOME_DOWN


def _one_broker(args) -> tuple[str, dict, dict] | None:
    directory = os.path.abspath(args.dir)
    state = _read_state(directory)
    if state is None:
        _fail(f"no cluster in {args.dir} (pylog cluster up --dir {args.dir})")
        return None
    b = next((b for b in state["brokers"] if b["id"] == args.broker), None)
    if b is None:
        _fail(f"no broker {args.broker} in {args.dir}: its brokers are "
              f"{', '.join(str(b['id']) for b in state['brokers'])}")
        return None
    return directory, state, b


def _start(args) -> int:
    found = _one_broker(args)
    if found is None:
        return 1
    directory, state, b = found
    if _alive(b.get("pid")):
        return _fail(f"broker {b['id']} is already running (pid {b['pid']})")
    if _port_in_use(b["port"]):
        return _fail(f"port {b['port']} on 127.0.0.1 is in use by another process")
    zk = state.get("zookeeper")
    if zk and not _alive(zk.get("pid")):
        return _fail("ZooKeeper is down (pylog cluster up starts it with the brokers)")
    _launch(b)
    _write_state(directory, state)
    error = _wait_ready(b)
    if error:
        return _fail(error)
    print(f"broker {b['id']} started at 127.0.0.1:{b['port']} (pid {b['pid']})")
    return 0


def _stop(args) -> int:
    found = _one_broker(args)
    if found is None:
        return 1
    directory, state, b = found
    if not _alive(b.get("pid")):
        print(f"broker {b['id']} is not running", file=sys.stderr)
        return 0
    clean = _stop_brokers([b], args.timeout)
    _write_state(directory, state)
    if not clean:
        return _fail(f"broker {b['id']} did not stop within {args.timeout:.0f} s and was killed")
    print(f"broker {b['id']} stopped")
    return 0


def _restart(args) -> int:
    code = _stop(args)
    return code or _start(args)


def _stop_brokers(brokers: list[dict], timeout: float) -> bool:
    """SIGTERM each, wait for each up to timeout, SIGKILL what is left.
    True when every one stopped by itself."""
    clean = True
    for b in brokers:
        if _alive(b.get("pid")):
            os.kill(b["pid"], signal.SIGTERM)
    for b in brokers:
        deadline = time.monotonic() + timeout
        while _alive(b.get("pid")) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(b.get("pid")):
            clean = False
            os.kill(b["pid"], signal.SIGKILL)
            while _alive(b["pid"]):
                time.sleep(0.05)
    return clean


def _stop_all(state: dict, timeout: float) -> bool:
    # The embedded controller's broker goes last: the others hand their
    # leadership over through it (controlled shutdown) on the way out.
    embedded = (state.get("controller") or {}).get("embedded")
    clean = _stop_brokers([b for b in state["brokers"] if b["id"] != embedded], timeout)
    clean &= _stop_brokers([b for b in state["brokers"] if b["id"] == embedded], timeout)
    zk = state.get("zookeeper")
    if zk and _alive(zk.get("pid")):
        os.kill(zk["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(zk["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(zk["pid"]):
            os.kill(zk["pid"], signal.SIGKILL)
    return clean


def _down(args) -> int:
    directory = os.path.abspath(args.dir)
    state = _read_state(directory)
    if state is None:
        return _fail(f"no cluster in {args.dir}")
    clean = _stop_all(state, args.timeout)
    if args.delete_data:
        for b in state["brokers"]:
            shutil.rmtree(b["dir"], ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(b["log"])
        if state.get("zookeeper"):
            shutil.rmtree(state["zookeeper"]["dir"], ignore_errors=True)
        os.unlink(os.path.join(directory, STATE_FILE))
    else:
        _write_state(directory, state)
    if not clean:
        return _fail("some broker did not stop within the timeout and was killed")
    return 0

