"""M. Transactions: what exactly-once costs on pylog's broker (issue 15, bench M).

A `python -m pylog.broker` process (bench_g_broker.BrokerProcess) on loopback, one
confluent-kafka producer per row, 100-byte values into a fresh 6-partition topic
per round (the previous round's deleted, os.sync() untimed), produce(topic, v,
partition=i % 6), linger 5 ms, batch size 1,000,000, acks=all and idempotence on
in every row (a transactional producer needs both, so the plain row is "the same
producer without transactions"). Timed from the first produce to everything
acknowledged and, with transactions, the last commit_transaction() returned;
init_transactions() is untimed.

    plain                    no transactional.id; flush() at the end
    txn every 10,000         begin; 10,000 produce(); commit_transaction(); ...
    txn every 1,000          the same, a commit per 1,000 messages

Consumers read back the topic of the last "txn every 1,000" round (n messages,
1,000 commits' markers on each partition), all 6 partitions assigned from offset
0, a new consumer per round, until n records came back:

    consume read_uncommitted  confluent consume(num_messages=10000), isolation.level=read_uncommitted
    consume read_committed    the same with isolation.level=read_committed

Marker latency (no goal, a figure): a transactional producer commits
$BENCH_M_TXNS (default 200) transactions of 600 messages (100 per partition); for each, after
flush() (the data acknowledged) the clock starts, commit_transaction() sends
EndTxn, and ListOffsets(isolation_level=read_committed, latest) is asked of the
broker until every partition's last stable offset has passed the commit marker,
which the coordinator's WriteTxnMarkers wrote. EndTxn to markers written and
visible, as a client sees it; p50 / p99 / max are recorded.

Goals (issue 15), ratios within this run: txn every 10,000 >= 0.8x plain;
consume read_committed >= 0.9x read_uncommitted.

    .venv/bin/python -m pytest bench/bench_m_transactions.py -q --benchmark-disable-gc \
        --benchmark-json=.benchmarks/m.json && .venv/bin/python bench/report.py .benchmarks/m.json

It needs a broker with the transaction coordinator and markers (issue 15's
broker side); against one without, init_transactions() fails and the
transactional rows fail with that error.
"""
from __future__ import annotations

import os
import statistics
import time

import pytest

ck = pytest.importorskip("confluent_kafka")
from bench_g_broker import BrokerProcess, _self_cpu  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

VALUE = b"x" * 100
PARTITIONS = 6
LINGER_MS = 5
BATCH_SIZE = 1_000_000
POLL_RECORDS = 10_000
MARKER_TXN_PER_PARTITION = 100
SCENARIO = "M_transactions"


@pytest.fixture(scope="module")
def broker():
    b = BrokerProcess()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def mstate(broker):
    s = {"read_topic": None}
    yield s
    if s["read_topic"]:
        _delete_topic(broker.bootstrap, s["read_topic"])


def _n(request) -> int:
    return request.config.getoption("--bench-broker-messages")


def _rounds(request) -> int:
    return request.config.getoption("--bench-broker-rounds")


_seq = [0]


def _new_topic(bootstrap: str) -> str:
    _seq[0] += 1
    name = f"m-{_seq[0]}-{os.getpid()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    return name


def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic])[topic].result(30)


def _producer(broker, n: int, transactional_id: str | None):
    conf = {"bootstrap.servers": broker.bootstrap, "linger.ms": LINGER_MS, "batch.size": BATCH_SIZE,
            "acks": "all", "enable.idempotence": True,
            "queue.buffering.max.messages": 2 * n + 10, "queue.buffering.max.kbytes": 2097151}
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
    return ck.Producer(conf)


def _record(benchmark, impl, n, samples, **more):
    """samples: (broker CPU s, client CPU s) per timed round."""
    benchmark.extra_info.update(
        scenario=SCENARIO, impl=impl, records=n, bytes=n * len(VALUE),
        broker_cpu_s_per_m=statistics.median(s[0] for s in samples) / n * 1e6,
        client_cpu_s_per_m=statistics.median(s[1] for s in samples) / n * 1e6,
        loadavg1=os.getloadavg()[0], **more)


def _bench_produce(benchmark, broker, request, mstate, impl, per_txn: int | None, keep=False):
    n, rounds = _n(request), _rounds(request)
    samples = []
    state = {}

    def drop():
        state.pop("producer", None)
        if "topic" in state:
            _delete_topic(broker.bootstrap, state.pop("topic"))

    def setup():
        drop()
        os.sync()
        state["topic"] = _new_topic(broker.bootstrap)
        _seq[0] += 1
        tid = None if per_txn is None else f"bench-m-{os.getpid()}-{_seq[0]}"
        p = _producer(broker, n, tid)
        if tid is not None:
            p.init_transactions(60)
        p.list_topics(state["topic"], timeout=10)
        state["producer"] = p
        return (), {}

    def timed():
        p, topic = state["producer"], state["topic"]
        produce = p.produce
        b0, c0 = broker.cpu(), _self_cpu()
        if per_txn is None:
            for i in range(n):
                produce(topic, VALUE, partition=i % PARTITIONS)
            left = p.flush(300)
            assert left == 0, f"{left} messages not delivered"
        else:
            for start in range(0, n, per_txn):
                p.begin_transaction()
                for i in range(start, min(n, start + per_txn)):
                    produce(topic, VALUE, partition=i % PARTITIONS)
                p.commit_transaction(300)
        samples.append((broker.cpu() - b0, _self_cpu() - c0))

    try:
        benchmark.pedantic(timed, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
    finally:
        if keep and "topic" in state:
            old, mstate["read_topic"] = mstate["read_topic"], state.pop("topic")
            if old:
                _delete_topic(broker.bootstrap, old)
        drop()
    samples.pop(0)   # the warm-up round's
    _record(benchmark, impl, n, samples, per_transaction=per_txn)


def test_m_produce_plain(benchmark, broker, request, mstate):
    _bench_produce(benchmark, broker, request, mstate, "plain (idempotent, acks=all)", None)


def test_m_produce_txn_10000(benchmark, broker, request, mstate):
    _bench_produce(benchmark, broker, request, mstate, "txn every 10,000", 10_000)


def test_m_produce_txn_1000(benchmark, broker, request, mstate):
    _bench_produce(benchmark, broker, request, mstate, "txn every 1,000", 1_000, keep=True)


def _bench_consume(benchmark, broker, request, mstate, isolation: str):
    topic = mstate["read_topic"]
    if topic is None:
        pytest.skip("no topic to read: test_m_produce_txn_1000 did not run or failed")
    n, rounds = _n(request), _rounds(request)
    samples = []
    state = {}

    def setup():
        _seq[0] += 1
        c = ck.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"bench-m-{_seq[0]}",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "queued.max.messages.kbytes": 1048576, "fetch.queue.backoff.ms": 1})
        c.assign([ck.TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        c.list_topics(topic, timeout=10)
        state["consumer"] = c
        return (), {}

    def timed():
        c = state["consumer"]
        b0, c0 = broker.cpu(), _self_cpu()
        got = 0
        deadline = time.monotonic() + 300
        while got < n:
            for m in c.consume(num_messages=POLL_RECORDS, timeout=1):
                if m.error() is None:
                    got += 1
            assert time.monotonic() < deadline, f"only {got} of {n} records came back"
        samples.append((broker.cpu() - b0, _self_cpu() - c0))
        c.close()

    benchmark.pedantic(timed, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
    samples.pop(0)
    _record(benchmark, f"consume {isolation}", n, samples)


def test_m_consume_read_uncommitted(benchmark, broker, request, mstate):
    _bench_consume(benchmark, broker, request, mstate, "read_uncommitted")


def test_m_consume_read_committed(benchmark, broker, request, mstate):
    _bench_consume(benchmark, broker, request, mstate, "read_committed")


def test_m_marker_latency(benchmark, broker, request):
    """EndTxn to markers written (last stable offset past the commit marker on
    every partition), per transaction: p50 / p99 / max in extra_info."""
    from pylog.client.client import Client

    txns = int(os.environ.get("BENCH_M_TXNS", "200"))
    per_txn = MARKER_TXN_PER_PARTITION * PARTITIONS
    topic = _new_topic(broker.bootstrap)
    p = _producer(broker, per_txn, f"bench-m-latency-{os.getpid()}")
    p.init_transactions(60)
    client = Client(broker.bootstrap, timeout=30)
    latencies = []
    ends = {(topic, i): 0 for i in range(PARTITIONS)}
    latest = {tp: -1 for tp in ends}

    def one():
        p.begin_transaction()
        for i in range(per_txn):
            p.produce(topic, VALUE, partition=i % PARTITIONS)
        assert p.flush(60) == 0
        for tp in ends:   # the data, then one commit marker, on every partition
            ends[tp] += MARKER_TXN_PER_PARTITION + 1
        t0 = time.perf_counter()
        p.commit_transaction(60)
        deadline = time.monotonic() + 60
        while True:
            got = client.list_offsets_many(latest, isolation_level=1)
            if all(code == 0 and off >= ends[tp] for tp, (code, off) in got.items()):
                break
            assert time.monotonic() < deadline, f"markers not written within 60 s: {got} vs {ends}"
        latencies.append(time.perf_counter() - t0)

    try:
        for _ in range(3):   # warm-up: coordinator loaded, connections open
            one()
        latencies.clear()

        def timed():
            for _ in range(txns):
                one()

        benchmark.pedantic(timed, rounds=1, iterations=1)
    finally:
        client.close()
        del p
        _delete_topic(broker.bootstrap, topic)
    ms = sorted(x * 1000 for x in latencies)
    benchmark.extra_info.update(
        scenario=SCENARIO, impl="marker latency (EndTxn -> LSO past marker)", records=txns * per_txn,
        transactions=txns, marker_p50_ms=round(statistics.median(ms), 3),
        marker_p99_ms=round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3), marker_max_ms=round(ms[-1], 3),
        loadavg1=os.getloadavg()[0])
