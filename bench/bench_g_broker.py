"""G. The broker over loopback, driven by confluent-kafka (librdkafka).

Per round: a fresh 6-partition topic; confluent-kafka produces --bench-broker-messages
(default 1,000,000) messages of 100 bytes (linger.ms=5, batch.size=1000000) with
acks=1 or acks=all and flushes; then a consumer reads them all back (assign() from
offset 0, consume(num_messages=10000)). The broker is a separate `python -m
pylog.broker` process writing real segment files; its CPU time (user+system, all
threads, from /proc/<pid>/task/*/schedstat, nanoseconds) is read before and after
each phase, and the client's from getrusage(RUSAGE_SELF) (librdkafka's threads
included), so "who is the limit" is visible: compare client CPU with broker CPU.

Goals (issue "pylog broker"): produce >= 700,000 msg/s; broker CPU <= 0.15 s per
million messages produced and <= 0.1 s per million fetched.

The peer, measured in every produce round right after the broker: a plain file
written with pwrite in 100 KB pieces, as many bytes as the broker's segments
grew by (the floor of any broker that stores what it receives). On this
machine (a microVM) writing into memory the guest has not touched recently
costs several times more for any writer, the peer included; each round's
topic is therefore deleted after the round, so every round writes into
recycled page-cache memory, and the peer's figure shows when a round did not.
Before each round dirty pages are flushed (os.sync(), untimed), as E does.

    .venv/bin/python -m pytest bench/bench_g_broker.py --benchmark-disable-gc
"""
from __future__ import annotations

import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

VALUE = b"x" * 100
PARTITIONS = 6
SCRAPE_S = 1.0


def _cpu_seconds(pid: int) -> float:
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that just ended
    return total / 1e9


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class BrokerProcess:
    """overrides: broker configs (--override). metrics: with pylog.metrics.listener, and a
    thread scraping /metrics every SCRAPE_S (15x Prometheus's default rate) for as long as it runs."""

    def __init__(self, overrides=None, metrics: bool = False):
        self.dir = tempfile.mkdtemp(prefix="pylog-bench-broker-", dir=os.environ.get("BENCH_DIR"))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        m = socket.socket()
        m.bind(("127.0.0.1", 0))
        self.metrics_port = m.getsockname()[1]
        s.close()
        m.close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pylog.broker", "--data-dir", self.dir, "--port", str(self.port),
             "--log-level", "WARNING",
             *(a for k, v in (overrides or {}).items() for a in ("--override", f"{k}={v}"))]
            + (["--override", f"pylog.metrics.listener=127.0.0.1:{self.metrics_port}"] if metrics else []),
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"broker did not start: {line!r}")
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._stop_scraping = threading.Event()
        self.scrapes = 0
        if metrics:
            threading.Thread(target=self._scrape, daemon=True).start()

    def _scrape(self):
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        while not self._stop_scraping.wait(SCRAPE_S):
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
            self.scrapes += 1

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def stop(self):
        self._stop_scraping.set()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        finally:
            self.proc.stdout.close()
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def broker():
    b = BrokerProcess()
    yield b
    b.stop()


def _messages(request) -> int:
    return request.config.getoption("--bench-broker-messages")


def _rounds(request) -> int:
    return request.config.getoption("--bench-broker-rounds")


_topics = []


def _new_topic(bootstrap: str) -> str:
    name = f"perf-{len(_topics)}-{os.getpid()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the result is in
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    _topics.append(name)
    return name


def _record(benchmark, scenario, impl, n, samples):
    benchmark.extra_info.update(
        scenario="G_broker", impl=impl, records=n, bytes=n * len(VALUE),
        broker_cpu_s_per_m=statistics.median(s[0] for s in samples) / n * 1e6,
        client_cpu_s_per_m=statistics.median(s[1] for s in samples) / n * 1e6,
        broker_cpu_rounds=[round(s[0] / n * 1e6, 4) for s in samples],
        loadavg1=os.getloadavg()[0])
    if samples and len(samples[0]) > 2:
        benchmark.extra_info.update(
            file_cpu_s_per_m=statistics.median(s[2] for s in samples) / n * 1e6,
            file_cpu_rounds=[round(s[2] / n * 1e6, 4) for s in samples])


def _topic_bytes(broker, topic) -> int:
    total = 0
    for p in range(PARTITIONS):
        d = os.path.join(broker.dir, f"{topic}-{p}")
        total += sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".log"))
    return total


def _file_peer_cpu(directory: str, nbytes: int) -> float:
    """CPU seconds to write nbytes to a new file in 100 KB pwrites (then removed)."""
    piece = b"x" * 100_000
    path = os.path.join(directory, "peer.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        c0 = _self_cpu()
        for pos in range(0, nbytes, len(piece)):
            os.pwrite(fd, piece, pos)
        return _self_cpu() - c0
    finally:
        os.close(fd)
        os.unlink(path)


def _delete_topic(bootstrap: str, topic: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic])[topic].result(30)


@pytest.mark.parametrize("acks", ["1", "all"])
def test_g_produce(benchmark, broker, request, acks):
    n = _messages(request)
    samples = []
    state = {}

    def setup():
        if "topic" in state:
            # The previous round's data goes: rounds write into recycled memory.
            state.pop("producer")
            _delete_topic(broker.bootstrap, state.pop("topic"))
        # Earlier writes (other benchmarks' GBs, the last round) are flushed now,
        # untimed, so the kernel's writeback does not compete with the round.
        os.sync()
        state["topic"] = _new_topic(broker.bootstrap)
        state["producer"] = ck.Producer({
            "bootstrap.servers": broker.bootstrap, "linger.ms": 5, "batch.size": 1000000, "acks": acks,
            "queue.buffering.max.messages": 2 * n, "queue.buffering.max.kbytes": 2097151})
        state["producer"].list_topics(state["topic"], timeout=10)  # connect outside the timing
        return (), {}

    def produce():
        p, topic = state["producer"], state["topic"]
        b0, c0 = broker.cpu(), _self_cpu()
        produce_ = p.produce
        for i in range(n):
            produce_(topic, VALUE, partition=i % PARTITIONS)
        left = p.flush(120)
        b1, c1 = broker.cpu(), _self_cpu()
        assert left == 0, f"{left} messages not delivered"
        samples.append((b1 - b0, c1 - c0, _file_peer_cpu(broker.dir, _topic_bytes(broker, topic))))

    benchmark.pedantic(produce, setup=setup, rounds=_rounds(request), iterations=1, warmup_rounds=1)
    assert len(samples) == _rounds(request) + 1
    samples.pop(0)  # the warm-up round's
    _record(benchmark, "G_broker", f"produce acks={acks}", n, samples)


def test_g_consume(benchmark, broker, request):
    n = _messages(request)
    # The topic of the last produce round holds n messages.
    if not _topics:
        pytest.skip("no produced topic to read (run with test_g_produce)")
    topic = _topics[-1]
    samples = []
    state = {}

    def setup():
        os.sync()
        if "consumer" in state:
            state.pop("consumer").close()
        c = state["consumer"] = ck.Consumer({
            "bootstrap.servers": broker.bootstrap, "group.id": "bench-g", "enable.auto.commit": False,
            "fetch.max.bytes": 52428800})
        c.assign([ck.TopicPartition(topic, i, 0) for i in range(PARTITIONS)])
        c.list_topics(topic, timeout=10)
        return (), {}

    def consume():
        c = state["consumer"]
        b0, c0 = broker.cpu(), _self_cpu()
        got = 0
        deadline = time.monotonic() + 120
        while got < n and time.monotonic() < deadline:
            got += len(c.consume(num_messages=10000, timeout=1.0))
        samples.append((broker.cpu() - b0, _self_cpu() - c0))
        assert got == n, f"consumed {got} of {n}"

    benchmark.pedantic(consume, setup=setup, rounds=_rounds(request), iterations=1)
    state.pop("consumer").close()
    _record(benchmark, "G_broker", "consume", n, samples)


def test_g_metrics_overhead(benchmark, request):
    """What pylog.metrics.listener costs: two brokers side by side, one without
    metrics and one with them (scraped every SCRAPE_S), produce rounds as in
    test_g_produce (acks=1) alternating between them (off, on, then on, off, ...)
    so the machine's load drifts alike for both; ratios per pair, medians."""
    n = _messages(request)
    pairs = _rounds(request)
    brokers = {"off": BrokerProcess(), "on": BrokerProcess(metrics=True)}
    results = {"off": [], "on": []}

    def one_round(b):
        name = f"metrics-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
        p = ck.Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5, "batch.size": 1000000, "acks": "1",
                         "queue.buffering.max.messages": 2 * n, "queue.buffering.max.kbytes": 2097151})
        p.list_topics(name, timeout=10)
        os.sync()
        b0, t0 = b.cpu(), time.perf_counter()
        for i in range(n):
            p.produce(name, VALUE, partition=i % PARTITIONS)
        left = p.flush(120)
        t1, b1 = time.perf_counter(), b.cpu()
        assert left == 0, f"{left} messages not delivered"
        del p
        admin.delete_topics([name])[name].result(30)
        return n / (t1 - t0), (b1 - b0) / n * 1e6

    def run():
        one_round(brokers["off"])   # warm-up, both
        one_round(brokers["on"])
        for i in range(pairs):
            for k in (("off", "on") if i % 2 == 0 else ("on", "off")):
                results[k].append(one_round(brokers[k]))

    try:
        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        for b in brokers.values():
            b.stop()
    assert brokers["on"].scrapes > 0
    rate_ratios = [off[0] / on[0] for off, on in zip(results["off"], results["on"])]
    cpu_ratios = [on[1] / off[1] for off, on in zip(results["off"], results["on"])]
    benchmark.extra_info.update(
        scenario="G_metrics", impl="produce acks=1, metrics off vs on", records=n * pairs * 2,
        bytes=n * pairs * 2 * len(VALUE), pairs=pairs, scrapes=brokers["on"].scrapes, scrape_s=SCRAPE_S,
        off_rate=statistics.median(r[0] for r in results["off"]),
        on_rate=statistics.median(r[0] for r in results["on"]),
        off_broker_cpu_s_per_m=statistics.median(r[1] for r in results["off"]),
        on_broker_cpu_s_per_m=statistics.median(r[1] for r in results["on"]),
        rate_ratio_off_on=statistics.median(rate_ratios), rate_ratios=[round(x, 3) for x in rate_ratios],
        cpu_ratio_on_off=statistics.median(cpu_ratios), cpu_ratios=[round(x, 3) for x in cpu_ratios],
        loadavg1=os.getloadavg()[0])
