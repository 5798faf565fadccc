"""Q. What TLS and SASL cost: one broker process with PLAINTEXT, SSL,
SASL_PLAINTEXT and SASL_SSL listeners, driven by confluent-kafka over the
first two in the same run, and connection set-up timed on all four.

Per round, as G does: a fresh 6-partition topic; --bench-broker-messages
messages of 100 bytes produced (acks=1, linger.ms=5, batch.size=1000000) and
flushed; then all of them consumed (assign() from offset 0). The same for the
other listener, rounds alternating PLAINTEXT / SSL so load changes hit both.
Broker CPU (all threads, /proc schedstat) per million messages; throughput in
msg/s and MB/s. Connection set-up: CONNECTS fresh connections per
listener, each TCP connect + TLS handshake (SSL) + ApiVersions, p50 and p99;
on the SASL listeners also SaslHandshake + SaslAuthenticate with PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512 (4096 iterations, Kafka's minimum; the
client's PBKDF2 is part of the cost, as for any SCRAM client), pylog's
wire client. After authentication a SASL connection costs nothing per
request (without connections.max.reauth.ms not even a check), so the
throughput rounds stay PLAINTEXT / SSL.

The certificates: an EC P-256 CA and broker certificate made in the run
(pylog.testing.TestCertificates), TLS 1.3, no client certificate.

Goal (issue 19): SSL throughput >= 0.6x PLAINTEXT, produce and consume.

    .venv/bin/python -m pytest bench/bench_q_security.py --benchmark-disable-gc \
        --bench-broker-messages 200000 --bench-broker-rounds 3 -s

writes a table of medians and ratios to the terminal and .benchmarks/q-security.md.
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import pytest

ck = pytest.importorskip("confluent_kafka")
pytest.importorskip("cryptography")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench_g_broker import BrokerProcess  # noqa: E402

VALUE = b"x" * 100
PARTITIONS = 6
PROTOCOLS = ("PLAINTEXT", "SSL")
CONNECTS = 200
# (listener, mechanism) rows of the connection set-up table beyond PROTOCOLS
SASL_SETUPS = (("SASL_PLAINTEXT", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
               ("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("SASL_SSL", "SCRAM-SHA-256"))
ADMIN = ("admin", "admin-secret")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TwoListenerBroker(BrokerProcess):
    """`python -m pylog broker` with PLAINTEXT and SSL listeners, test certificates
    (G's broker process but for its listeners: cpu() and stop() are G's)."""

    def __init__(self):
        from pylog.testing import TestCertificates
        self.dir = tempfile.mkdtemp(prefix="pylog-bench-q-", dir=os.environ.get("BENCH_DIR"))
        self.certs = TestCertificates(os.path.join(self.dir, "certs"))
        from pylog.testing import sasl_config
        self.ports = {p: _free_port() for p in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")}
        props = os.path.join(self.dir, "server.properties")
        sasl = {}
        for protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            sasl.update({k: v for k, v in sasl_config({}, protocol=protocol).items() if k.startswith("listener.name.")})
        with open(props, "w") as f:
            f.write("listeners=" + ",".join(f"{p}://127.0.0.1:{port}" for p, port in self.ports.items()) + "\n"
                    "inter.broker.listener.name=PLAINTEXT\n"
                    "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n"
                    + "".join(f"{k}={v}\n" for k, v in sasl.items())
                    + os.environ.get("BENCH_Q_EXTRA", "") +
                    f"ssl.keystore.type=PEM\nssl.keystore.location={self.certs.broker}\n")
        self._stop_scraping = threading.Event()   # G's stop() sets it; nothing scrapes here
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pylog.broker", "--data-dir", os.path.join(self.dir, "data"),
             "--config", props, "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"broker did not start: {line!r}")
        self._scram_credentials()

    def _scram_credentials(self):
        """The admin user's SCRAM credentials, made over PLAIN as an admin would."""
        from pylog.broker.sasl import ClientCredentials
        from pylog.broker.sasl_scram import MECHANISMS, TYPE_OF, hi
        from pylog.client.wire import Connection
        from pylog.protocol import messages as m
        R = m.AlterUserScramCredentialsRequest
        salt = os.urandom(32)
        with Connection("127.0.0.1", self.ports["SASL_PLAINTEXT"], sasl=ClientCredentials("PLAIN", *ADMIN)) as c:
            resp = c.request(R(deletions=[], upsertions=[R.ScramCredentialUpsertion(
                name=ADMIN[0], mechanism=TYPE_OF[mech], iterations=4096, salt=salt,
                salted_password=hi(h, ADMIN[1].encode(), salt, 4096)) for mech, h in MECHANISMS.items()]),
                api_version=0)
        assert all(r.error_code == 0 for r in resp.results), resp

    def conf(self, protocol: str) -> dict:
        c = {"bootstrap.servers": f"127.0.0.1:{self.ports[protocol]}"}
        if protocol == "SSL":
            c.update({"security.protocol": "SSL", "ssl.ca.location": self.certs.ca})
        return c


@pytest.fixture(scope="module")
def broker():
    b = TwoListenerBroker()
    yield b
    b.stop()
    _write_summary()


# (phase, protocol) -> list of (seconds, broker cpu seconds) per round; connect -> setup times
_samples: dict = {}
_n = {}


def _new_topic(conf) -> str:
    name = f"q-{len(_samples)}-{time.monotonic_ns()}"
    admin = AdminClient(conf)   # kept alive until the result is in
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    return name


def _produce(broker, protocol, n) -> str:
    conf = broker.conf(protocol)
    topic = _new_topic(conf)
    p = ck.Producer({**conf, "linger.ms": 5, "batch.size": 1000000, "acks": "1",
                     "queue.buffering.max.messages": 2 * n, "queue.buffering.max.kbytes": 2097151})
    p.list_topics(topic, timeout=10)   # connected (and handshaken) outside the timing
    os.sync()
    b0, t0 = broker.cpu(), time.perf_counter()
    produce_ = p.produce
    for i in range(n):
        produce_(topic, VALUE, partition=i % PARTITIONS)
    left = p.flush(300)
    t1, b1 = time.perf_counter(), broker.cpu()
    assert left == 0, f"{left} messages not delivered"
    _samples.setdefault(("produce", protocol), []).append((t1 - t0, b1 - b0))
    return topic


def _consume(broker, protocol, topic, n) -> None:
    c = ck.Consumer({**broker.conf(protocol), "group.id": "bench-q", "enable.auto.commit": False,
                     "fetch.max.bytes": 52428800})
    c.assign([ck.TopicPartition(topic, i, 0) for i in range(PARTITIONS)])
    c.list_topics(topic, timeout=10)
    b0, t0 = broker.cpu(), time.perf_counter()
    got = 0
    deadline = time.monotonic() + 300
    while got < n and time.monotonic() < deadline:
        got += len(c.consume(num_messages=10000, timeout=1.0))
    t1, b1 = time.perf_counter(), broker.cpu()
    c.close()
    assert got == n, f"consumed {got} of {n}"
    _samples.setdefault(("consume", protocol), []).append((t1 - t0, b1 - b0))


def test_q_throughput(benchmark, broker, request):
    n = request.config.getoption("--bench-broker-messages")
    rounds = request.config.getoption("--bench-broker-rounds")
    _n["messages"] = n

    def one_round():
        for protocol in PROTOCOLS:
            topic = _produce(broker, protocol, n)
            _consume(broker, protocol, topic, n)
            admin = AdminClient(broker.conf("PLAINTEXT"))
            admin.delete_topics([topic])[topic].result(30)

    one_round()   # warm-up, not counted
    _samples.clear()
    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    benchmark.extra_info.update(scenario="Q_security", impl="throughput", records=n,
                                summary=_rows(), loadavg1=os.getloadavg()[0])


def test_q_connection_setup(benchmark, broker):
    from pylog.client.wire import Connection
    import ssl
    ctx = ssl.create_default_context(cafile=broker.certs.ca)

    def connects():
        for protocol in PROTOCOLS:
            times = _samples.setdefault(("connect", protocol), [])
            for _ in range(CONNECTS):
                t0 = time.perf_counter()
                c = Connection("127.0.0.1", broker.ports[protocol], client_id="bench-q", timeout=30,
                               ssl_context=ctx if protocol == "SSL" else None)
                times.append(time.perf_counter() - t0)
                c.close()

    benchmark.pedantic(connects, rounds=1, iterations=1)
    benchmark.extra_info.update(scenario="Q_security", impl="connection set-up", records=CONNECTS,
                                loadavg1=os.getloadavg()[0])


def test_q_sasl_connection_setup(benchmark, broker):
    """TCP connect (+ TLS) + ApiVersions + SaslHandshake + SaslAuthenticate."""
    from pylog.broker.sasl import ClientCredentials
    from pylog.client.wire import Connection
    import ssl
    ctx = ssl.create_default_context(cafile=broker.certs.ca)

    def connects():
        for listener, mech in SASL_SETUPS:
            times = _samples.setdefault(("connect", f"{listener} {mech}"), [])
            creds = ClientCredentials(mech, *ADMIN)
            for _ in range(CONNECTS):
                t0 = time.perf_counter()
                c = Connection("127.0.0.1", broker.ports[listener], client_id="bench-q", timeout=30,
                               ssl_context=ctx if listener == "SASL_SSL" else None, sasl=creds)
                times.append(time.perf_counter() - t0)
                c.close()

    benchmark.pedantic(connects, rounds=1, iterations=1)
    benchmark.extra_info.update(scenario="Q_security", impl="SASL connection set-up", records=CONNECTS,
                                loadavg1=os.getloadavg()[0])


def _rows() -> list[dict]:
    n = _n.get("messages", 0)
    out = []
    for phase in ("produce", "consume"):
        for protocol in PROTOCOLS:
            s = _samples.get((phase, protocol))
            if not s:
                continue
            secs = statistics.median(x[0] for x in s)
            cpu = statistics.median(x[1] for x in s)
            out.append(dict(phase=phase, protocol=protocol, rounds=len(s), msgs_s=n / secs,
                            mb_s=n * len(VALUE) / secs / 1e6, cpu_per_m=cpu / n * 1e6))
    return out


def _write_summary() -> None:
    rows = _rows()
    lines = ["| phase | listener | rounds | msg/s (median) | MB/s | broker CPU s / M msgs | SSL / PLAINTEXT |",
             "|---|---|---|---|---|---|---|"]
    base = {(r["phase"]): r for r in rows if r["protocol"] == "PLAINTEXT"}
    for r in rows:
        ratio = ""
        if r["protocol"] == "SSL" and r["phase"] in base:
            ratio = f"{r['msgs_s'] / base[r['phase']]['msgs_s']:.2f}x throughput, " \
                    f"{r['cpu_per_m'] / base[r['phase']]['cpu_per_m']:.2f}x CPU"
        lines.append(f"| {r['phase']} | {r['protocol']} | {r['rounds']} | {r['msgs_s']:,.0f} | {r['mb_s']:.1f} | "
                     f"{r['cpu_per_m']:.2f} | {ratio} |")
    for protocol in (*PROTOCOLS, *(f"{x} {y}" for x, y in SASL_SETUPS)):
        t = sorted(_samples.get(("connect", protocol), []))
        if t:
            p50, p99 = t[len(t) // 2], t[min(len(t) - 1, int(len(t) * 0.99))]
            what = "connect + ApiVersions" + (" + SASL" if protocol.startswith("SASL") else "")
            lines.append(f"| {what} | {protocol} | {len(t)} | p50 {p50 * 1000:.2f} ms | "
                         f"p99 {p99 * 1000:.2f} ms | | |")
    lines.append(f"\n1-min load average at the end: {os.getloadavg()[0]:.1f}")
    text = "\n".join(lines) + "\n"
    os.makedirs(".benchmarks", exist_ok=True)
    with open(os.path.join(".benchmarks", "q-security.md"), "w") as f:
        f.write(text)
    sys.__stdout__.write("\n" + text)
