"""K. A 3-broker cluster on one machine: the cost of replication.

One standalone ZooKeeper (pylog.cluster.zk_server.ZooKeeperServer) and three
`python -m pylog broker` processes (broker ids 1-3, loopback, each with its own
data directory) for the module. Per round: a fresh 6-partition topic created with
AdminClient (replication factor 3 or 1; deleted after the round), os.sync()
untimed, a confluent-kafka Producer (linger.ms=5, batch.size=1000000, acks=1 or
all) produces --bench-broker-messages (default 1,000,000) messages of 100 bytes
with partition=i % 6 and flushes; timed from the first produce to the end of
flush. One warm-up round, then --bench-broker-rounds (default 5).

Scenarios: RF=1 acks=1 (no replication: the baseline), RF=3 acks=1 (followers
copy, the producer waits for the leader only), RF=3 acks=all (the producer waits
until every in-sync replica has the batch). Broker CPU is the sum over the three
broker processes of /proc/<pid>/task/*/schedstat (all threads), client CPU from
getrusage(RUSAGE_SELF) (librdkafka's threads included).

Goal (issue "replication throughput"): RF=3 acks=all >= 40% of RF=1's msg/s on
this 2-core machine (Kafka's 2014 numbers: 421,823 vs 821,557 msg/s, ~51%).

Broker settings: zookeeper.session.timeout.ms=10000, replica.fetch.wait.max.ms=500
(the default), replica.fetch.max.bytes=10 MiB (default 1 MiB; a follower fetch
can carry a whole producer batch round), auto.leader.rebalance.enable=false.
BENCH_K_FETCH_MAX_BYTES / BENCH_K_FETCH_WAIT_MS override the two fetch settings.

    .venv/bin/python -m pytest bench/bench_k_cluster.py --benchmark-disable-gc -q \
        --benchmark-json=/tmp/k.json && .venv/bin/python bench/report.py /tmp/k.json
"""
from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench_g_broker import _cpu_seconds, _self_cpu  # noqa: E402
from pylog.cluster.zk_server import ZooKeeperServer, ZooKeeperUnavailable, zookeeper_installed  # noqa: E402

VALUE = b"x" * 100
PARTITIONS = 6
BROKER_IDS = (1, 2, 3)
FETCH_MAX_BYTES = int(os.environ.get("BENCH_K_FETCH_MAX_BYTES", 10 << 20))
FETCH_WAIT_MS = int(os.environ.get("BENCH_K_FETCH_WAIT_MS", 500))
OVERRIDES = {
    "zookeeper.session.timeout.ms": "10000",
    "replica.fetch.wait.max.ms": str(FETCH_WAIT_MS),
    "replica.fetch.max.bytes": str(FETCH_MAX_BYTES),
    "auto.leader.rebalance.enable": "false",
}
# scenario -> (replication factor, acks)
SCENARIOS = {"RF=1 acks=1": (1, "1"), "RF=3 acks=1": (3, "1"), "RF=3 acks=all": (3, "all")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    """One `python -m pylog broker`; zk=None starts a standalone broker (bench L)."""

    def __init__(self, broker_id: int, root: str, zk: str | None, overrides: dict | None = None):
        self.broker_id = broker_id
        self.dir = os.path.join(root, f"b{broker_id}")
        self.port = _free_port()
        cmd = [sys.executable, "-m", "pylog", "broker", "--data-dir", self.dir, "--port", str(self.port),
               "--broker-id", str(broker_id), "--log-level", "WARNING"]
        if zk is not None:
            cmd += ["--override", f"zookeeper.connect={zk}"]
        for k, v in (OVERRIDES if overrides is None else overrides).items():
            cmd += ["--override", f"{k}={v}"]
        self._err = open(os.path.join(root, f"b{broker_id}.stderr"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"broker {broker_id} did not start: {line!r}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._err.close()


class Cluster:
    def __init__(self, zk: ZooKeeperServer, root: str, overrides: dict | None = None):
        self.zk = zk
        self.root = root
        self.brokers: list[BrokerProcess] = []
        for i in BROKER_IDS:
            self.brokers.append(BrokerProcess(i, root, zk.connect, overrides))
        self.bootstrap = ",".join(b.address for b in self.brokers)
        self.n_topics = 0

    def cpu(self) -> list[float]:
        return [b.cpu() for b in self.brokers]

    def stop(self):
        for b in self.brokers:
            b.stop()


@pytest.fixture(scope="module")
def cluster():
    if not zookeeper_installed():
        pytest.skip("ZooKeeper is not installed (apt-get install -y zookeeper)")
    root = tempfile.mkdtemp(prefix="pylog-bench-cluster-", dir=os.environ.get("BENCH_DIR"))
    try:
        zk = ZooKeeperServer().start()
    except ZooKeeperUnavailable as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"ZooKeeper cannot be started: {e}")
    c = None
    try:
        c = Cluster(zk, root)
        # RF 3 needs all three brokers registered: retry a throwaway topic until it works.
        deadline = time.monotonic() + 60
        while True:
            try:
                name = _create_topic(c, 3)
                _delete_topic(c, name)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield c
    finally:
        if c is not None:
            c.stop()
        zk.stop()
        shutil.rmtree(root, ignore_errors=True)


def _create_topic(cluster: Cluster, rf: int) -> str:
    cluster.n_topics += 1
    name = f"k-{cluster.n_topics}-{os.getpid()}"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(name, PARTITIONS, rf)])[name].result(30)
    # Every partition led and fully in sync before the round starts.
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(name, timeout=10).topics.get(name)
        if (md is not None and not md.error and len(md.partitions) == PARTITIONS
                and all(p.leader >= 0 and len(p.isrs) == rf for p in md.partitions.values())):
            return name
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name} not ready: {md and md.partitions}")
        time.sleep(0.05)


def _delete_topic(cluster: Cluster, topic: str):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.delete_topics([topic])[topic].result(30)


def _leaders(cluster: Cluster, topic: str) -> dict[int, int]:
    md = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10).topics[topic]
    return {p: m.leader for p, m in md.partitions.items()}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_k_produce(benchmark, cluster, request, scenario):
    rf, acks = SCENARIOS[scenario]
    n = request.config.getoption("--bench-broker-messages")
    rounds = request.config.getoption("--bench-broker-rounds")
    samples = []   # (per-broker CPU list, client CPU, zk CPU)
    state = {}

    def cleanup():
        if "topic" in state:
            state.pop("producer")
            _delete_topic(cluster, state.pop("topic"))

    def setup():
        cleanup()  # the previous round's data goes: rounds write into recycled memory
        os.sync()  # earlier rounds' dirty pages are written back now, untimed
        state["topic"] = _create_topic(cluster, rf)
        state["producer"] = ck.Producer({
            "bootstrap.servers": cluster.bootstrap, "linger.ms": 5, "batch.size": 1000000, "acks": acks,
            "queue.buffering.max.messages": 2 * n, "queue.buffering.max.kbytes": 2097151})
        state["producer"].list_topics(state["topic"], timeout=10)  # connect outside the timing
        state["leaders"] = _leaders(cluster, state["topic"])
        return (), {}

    def produce():
        p, topic = state["producer"], state["topic"]
        b0, c0, z0 = cluster.cpu(), _self_cpu(), _cpu_seconds(cluster.zk.pid)
        produce_ = p.produce
        for i in range(n):
            produce_(topic, VALUE, partition=i % PARTITIONS)
        left = p.flush(300)
        b1, c1, z1 = cluster.cpu(), _self_cpu(), _cpu_seconds(cluster.zk.pid)
        assert left == 0, f"{left} messages not delivered"
        samples.append(([y - x for x, y in zip(b0, b1)], c1 - c0, z1 - z0))

    try:
        benchmark.pedantic(produce, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
        leaders = state.get("leaders", {})
    finally:
        cleanup()
    assert len(samples) == rounds + 1
    samples.pop(0)  # the warm-up round's
    per_m = 1e6 / n
    benchmark.extra_info.update(
        scenario="K_cluster", impl=scenario, replication_factor=rf, acks=acks, records=n, bytes=n * len(VALUE),
        broker_cpu_s_per_m=statistics.median(sum(s[0]) for s in samples) * per_m,
        broker_cpu_each_s_per_m=[round(statistics.median(s[0][i] for s in samples) * per_m, 4)
                                 for i in range(len(BROKER_IDS))],
        broker_cpu_rounds=[round(sum(s[0]) * per_m, 4) for s in samples],
        client_cpu_s_per_m=statistics.median(s[1] for s in samples) * per_m,
        zk_cpu_s_per_m=statistics.median(s[2] for s in samples) * per_m,
        leaders_last_round={str(k): v for k, v in sorted(leaders.items())},
        replica_fetch_max_bytes=FETCH_MAX_BYTES, replica_fetch_wait_max_ms=FETCH_WAIT_MS,
        loadavg1=os.getloadavg()[0])
