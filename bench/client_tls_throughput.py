"""pylog's own Producer and Consumer over SSL and SASL_SSL against plaintext, one broker, same run.

A `python -m pylog.broker` process on loopback with PLAINTEXT, SSL and SASL_SSL
listeners (test certificates from pylog.testing.TestCertificates: EC P-256, TLS
1.3, no client certificate; SASL_SSL with PLAIN). Per round and protocol, in turn
(so a drift of the machine hits every protocol alike): a fresh 6-partition topic,
a new Producer (connected untimed), N 100-byte values sent with
Producer.send(topic, v, partition=i % 6), acks=1, linger 5 ms, timed until
flush() returns with everything acknowledged; then a new Consumer assigned the 6
partitions from offset 0, timed until N records were returned by poll().
Prints the median of the rounds per protocol, the median of the per-round
ratios to plaintext, and every round's rate.

    .venv/bin/python bench/client_tls_throughput.py [--messages 500000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from pylog.client import Client
from pylog.client.security import security_settings
from pylog.consumer import Consumer
from pylog.producer import Producer
from pylog.structs import TopicPartition
from pylog.testing import TestCertificates, sasl_config

PARTITIONS = 6
VALUE = b"x" * 100
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pylog-bench-clienttls-", dir=os.environ.get("BENCH_DIR"))
        self.certs = TestCertificates(os.path.join(self.dir, "certs"))
        self.ports = {p: _free_port() for p in PROTOCOLS}
        jaas = {k: v for k, v in sasl_config({"bench": "bench-secret"}, ("PLAIN",), protocol="SASL_SSL").items()
                if k.startswith("listener.name.")}
        props = os.path.join(self.dir, "server.properties")
        with open(props, "w") as f:
            f.write("listeners=" + ",".join(f"{p}://127.0.0.1:{port}" for p, port in self.ports.items()) + "\n"
                    "inter.broker.listener.name=PLAINTEXT\nsasl.enabled.mechanisms=PLAIN\n"
                    + "".join(f"{k}={v}\n" for k, v in jaas.items())
                    + f"ssl.keystore.type=PEM\nssl.keystore.location={self.certs.broker}\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pylog.broker", "--data-dir", os.path.join(self.dir, "data"),
             "--config", props, "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"broker did not start: {line!r}")

    def settings(self, protocol: str) -> tuple[str, dict]:
        props = {"security.protocol": protocol}
        if protocol != "PLAINTEXT":
            props["ssl.ca.location"] = self.certs.ca
        if protocol == "SASL_SSL":
            props.update({"sasl.mechanism": "PLAIN", "sasl.username": "bench", "sasl.password": "bench-secret"})
        return f"127.0.0.1:{self.ports[protocol]}", security_settings(props)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def produce(bootstrap, kw, topic, n) -> float:
    p = Producer(bootstrap, acks=1, enable_idempotence=False, linger_ms=5, buffer_memory=2 << 30, **kw)
    p.send(topic, b"warm", partition=0).get(30)   # connections and metadata untimed
    send = p.send
    start = time.perf_counter()
    for i in range(n):
        send(topic, VALUE, partition=i % PARTITIONS)
    assert p.flush(600) == 0
    elapsed = time.perf_counter() - start
    p.close()
    return elapsed


def consume(bootstrap, kw, topic, n) -> float:
    c = Consumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", max_partition_fetch_bytes=8 << 20,
                 **kw)
    c.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])   # from offset 0: earliest
    got = 0
    start = time.perf_counter()
    while got < n + 1:   # + the warm-up record
        got += len(c.poll(1.0, max_records=10000))
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    broker = Broker()
    times = {(phase, p): [] for phase in ("produce", "consume") for p in PROTOCOLS}
    try:
        with Client(f"127.0.0.1:{broker.ports['PLAINTEXT']}") as admin:
            for r in range(args.rounds):
                for protocol in PROTOCOLS:
                    topic = f"t-{protocol.lower()}-{r}"
                    admin.create_topics(topic, partitions=PARTITIONS)
                    admin.wait_for_leaders(topic, timeout=30)
                    bootstrap, kw = broker.settings(protocol)
                    times[("produce", protocol)].append(produce(bootstrap, kw, topic, args.messages))
                    times[("consume", protocol)].append(consume(bootstrap, kw, topic, args.messages))
                    admin.delete_topics(topic)
    finally:
        broker.stop()
    mb = args.messages * len(VALUE) / 1e6
    print(f"{args.messages} x {len(VALUE)} B, {PARTITIONS} partitions, median of {args.rounds} rounds")
    print("  (ratio: the median of each round's ratio to that round's plaintext run, which drifts of a "
          "shared machine touch less than the ratio of medians)")
    for phase in ("produce", "consume"):
        base = times[(phase, "PLAINTEXT")]
        for protocol in PROTOCOLS:
            t = statistics.median(times[(phase, protocol)])
            ratio = statistics.median(b / x for b, x in zip(base, times[(phase, protocol)]))
            spread = ", ".join(f"{args.messages / x / 1000:.0f}k" for x in times[(phase, protocol)])
            print(f"  pylog {phase:8s} {protocol:10s} {args.messages / t:12,.0f} msg/s {mb / t:8.1f} MB/s"
                  f"  {ratio:5.2f}x plaintext   rounds: {spread}")


if __name__ == "__main__":
    main()
