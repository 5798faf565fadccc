"""Q. What ACLs cost (issue 19, bench Q ACL row).

Decision: pylog's Authorizer holding 10,000 ACLs (5,000 LITERAL topics and
5,000 PREFIXED ones, principals User:u0..u99, a '*' host) decides a produce
(Produce's check: WRITE on its one topic) for User:ANONYMOUS, whose WRITE comes
from one PREFIXED ACL among them:

    decision (cached)      Authorizer.produce_denials, what every Produce pays
                           once the decision is cached (the steady state)
    decision (uncached)    the lookup itself (Authorizer._decide): index by type,
                           the literal name, '*', one probe per prefix length

Throughput: two `python -m pylog.broker` processes in the same run, one
without an authorizer, one with StandardAuthorizer and the same 10,000 ACLs
(loaded with CreateAcls while User:ANONYMOUS was a super user, then the
broker restarted without super users, so every request is decided on the
ACLs). One confluent-kafka producer per round, 100-byte values into a fresh
6-partition topic, linger 5 ms, acks=1; rounds alternate off/on, medians of
--bench-broker-rounds (at least 3):

    produce authorizer off / produce authorizer on

No goal; the ratio on/off is the figure.

    .venv/bin/python -m pytest bench/bench_q_acl.py -q --benchmark-disable-gc \\
        --bench-broker-messages 200000 --bench-broker-rounds 5 --benchmark-json=.benchmarks/q.json
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from pylog.broker.authorizer import (ALLOW, CREATE, DELETE, LITERAL, PREFIXED, READ, TOPIC, WRITE, AclBinding,
                                     Authorizer)

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

SCENARIO = "Q_acl"
N_ACLS = 10_000
ANON = "User:ANONYMOUS"
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
VALUE = b"x" * 100
PARTITIONS = 6
TOPIC_PREFIX = "q-bench-"


def _bindings() -> list[AclBinding]:
    out = [AclBinding(TOPIC, f"team{i % 500}-topic-{i}", LITERAL, f"User:u{i % 100}", "*", READ, ALLOW)
           for i in range(N_ACLS // 2)]
    out += [AclBinding(TOPIC, f"team{i}-{i % 37}-", PREFIXED, f"User:u{i % 100}", "*", WRITE, ALLOW)
            for i in range(N_ACLS // 2 - 3)]
    out += [AclBinding(TOPIC, TOPIC_PREFIX, PREFIXED, ANON, "*", op, ALLOW) for op in (WRITE, CREATE, DELETE)]
    return out


class _Ctx:
    principal, peer_host = ANON, "127.0.0.1"


def test_q_decision_cached(benchmark):
    az = Authorizer()
    az.replace(_bindings())
    topics = [(TOPIC_PREFIX + "orders", [])]
    assert az.produce_denials(_Ctx, None, topics, bool) is None
    benchmark(az.produce_denials, _Ctx, None, topics, bool)
    benchmark.extra_info.update(scenario=SCENARIO, impl="decision (cached)", records=1, acls=len(az.bindings()))


def test_q_decision_uncached(benchmark):
    az = Authorizer()
    az.replace(_bindings())
    assert az._decide(ANON, "127.0.0.1", WRITE, TOPIC, TOPIC_PREFIX + "orders")
    benchmark(az._decide, ANON, "127.0.0.1", WRITE, TOPIC, TOPIC_PREFIX + "orders")
    benchmark.extra_info.update(scenario=SCENARIO, impl="decision (uncached)", records=1, acls=len(az.bindings()))


class _Broker:
    def __init__(self, data_dir: str, overrides: dict):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        args = [sys.executable, "-m", "pylog.broker", "--data-dir", data_dir, "--port", str(self.port),
                "--log-level", "WARNING"]
        for k, v in overrides.items():
            args += ["--override", f"{k}={v}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"broker did not start: {line!r}")
        self.bootstrap = f"127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        finally:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def brokers():
    base = tempfile.mkdtemp(prefix="pylog-bench-q-", dir=os.environ.get("BENCH_DIR"))
    off_dir, on_dir = os.path.join(base, "off"), os.path.join(base, "on")
    authz = {"authorizer.class.name": STANDARD_AUTHORIZER}
    loader = _Broker(on_dir, {**authz, "super.users": ANON})
    try:
        from pylog.client.wire import Connection
        from pylog.protocol import messages as m
        C = m.CreateAclsRequest
        with Connection("127.0.0.1", loader.port, timeout=120) as c:
            r = c.request(C(creations=[C.AclCreation(resource_type=b.resource_type, resource_name=b.name,
                                                     resource_pattern_type=b.pattern_type, principal=b.principal,
                                                     host=b.host, operation=b.operation,
                                                     permission_type=b.permission) for b in _bindings()]),
                          api_version=3)
        assert all(x.error_code == 0 for x in r.results)
    finally:
        loader.stop()
    out = {"off": _Broker(off_dir, {}), "on": _Broker(on_dir, authz)}
    yield out
    for b in out.values():
        b.stop()
    shutil.rmtree(base, ignore_errors=True)


_seq = [0]


def _produce_round(bootstrap: str, n: int) -> float:
    _seq[0] += 1
    topic = f"{TOPIC_PREFIX}{_seq[0]}-{os.getpid()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(60)
    p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1_000_000, "acks": 1,
                     "queue.buffering.max.messages": 2 * n + 10, "queue.buffering.max.kbytes": 2097151})
    p.list_topics(topic, timeout=30)
    failed = []
    cb = lambda err, msg: failed.append(err) if err else None  # noqa: E731
    t0 = time.perf_counter()
    for i in range(n):
        p.produce(topic, VALUE, partition=i % PARTITIONS, on_delivery=cb)
        if i % 100_000 == 99_999:
            p.poll(0)
    assert p.flush(300) == 0
    elapsed = time.perf_counter() - t0
    assert not failed, failed[:3]
    admin.delete_topics([topic])[topic].result(60)
    return elapsed


def test_q_produce_authorizer_on_vs_off(benchmark, brokers, request):
    n = request.config.getoption("--bench-broker-messages")
    rounds = max(3, request.config.getoption("--bench-broker-rounds"))
    times = {"off": [], "on": []}
    _produce_round(brokers["off"].bootstrap, min(n, 10_000))   # warm-up, untimed
    _produce_round(brokers["on"].bootstrap, min(n, 10_000))

    def timed():
        for which in ("off", "on"):
            times[which].append(_produce_round(brokers[which].bootstrap, n))
    benchmark.pedantic(timed, rounds=rounds, iterations=1)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    benchmark.extra_info.update(
        scenario=SCENARIO, impl="produce authorizer on vs off", records=n, acls=N_ACLS,
        off_msgs_per_s=n / med["off"], on_msgs_per_s=n / med["on"], on_over_off=med["off"] / med["on"],
        off_rounds_s=times["off"], on_rounds_s=times["on"])
    print(f"\nQ produce {n} msgs, medians of {rounds}: off {n / med['off']:,.0f} msg/s, "
          f"on {n / med['on']:,.0f} msg/s, on/off {med['off'] / med['on']:.3f}")
