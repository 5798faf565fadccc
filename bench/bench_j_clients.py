"""J. pylog's own clients against confluent-kafka and kafka-python, same broker, same run.

A `python -m pylog.broker` process (bench_g_broker.BrokerProcess) on loopback.
Producers, per round: a fresh 6-partition topic (the previous round's is deleted,
so every round writes into recycled page-cache memory, as G does), os.sync()
untimed, a new producer connected untimed; timed from the first send to flush()
returning with everything acknowledged. Every producer: acks=1 (so pylog's
idempotence is off: it needs acks=all), linger 5 ms, batch size 1,000,000 bytes,
buffers big enough never to block (confluent queue.buffering.max.kbytes=2097151,
pylog buffer_memory=2 GiB), 100-byte values, no compression.

    confluent produce        Producer.produce(topic, v, partition=i % 6) loop
    pylog send               Producer.send(topic, v, partition=i % 6) loop (the same work)
    pylog send_many          Producer.send_many(topic, values) in chunks of 100,000
                             (lists built before the timing; partition=None: full
                             batches rotate over the partitions)
    kafka-python send        KafkaProducer.send(topic, v, partition=i % 6) loop, on
                             min(n, 100,000) messages and min(3, rounds) rounds
                             (a reference row, no goal: ~30x slower)
    pylog embedded send      pylog.Producer(log_dir=...) into a fresh temp directory
    pylog embedded send_many (the broker's directory layout, written in this process;
                             topic pre-created untimed with 6 partitions)
    floor: ...               three references for goal 4, no goal (see "floors" below)

Consumers read back the topic of confluent's last produce round (n messages,
6 partitions, as librdkafka batched them): assign all 6 partitions from offset 0,
timed until n records were returned, a new consumer per round (connected untimed):

    confluent consume        consume(num_messages=10000, timeout=1), librdkafka defaults
    confluent consume tuned  the same with queued.max.messages.kbytes=1048576 and
                             fetch.queue.backoff.ms=1 (librdkafka 2.x's defaults,
                             65536 KB and 1000 ms, stall a 100 MB read for up to a
                             second at a time once the queue is full)
    pylog poll               Consumer.poll(timeout=1, max_records=10000)
    kafka-python poll        KafkaConsumer.poll(timeout_ms=1000, max_records=...) on the
                             first min(n, 100,000) records
    pylog embedded poll      pylog.Consumer(log_dir=...) over the embedded producer's
                             last directory (its send_many round)

Goals (issue "pylog clients"), ratios within this run: pylog send >= 0.8x confluent
produce; pylog send_many >= 3x confluent produce; pylog poll >= the better of the
two confluent consume rows; embedded producer >= 5x the network one (send_many and
send each against their network row).

    .venv/bin/python -m pytest bench/bench_j_clients.py --benchmark-disable-gc
"""
from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time

import pytest

ck = pytest.importorskip("confluent_kafka")
from bench_g_broker import BrokerProcess, _self_cpu  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

VALUE = b"x" * 100
PARTITIONS = 6
LINGER_MS = 5
BATCH_SIZE = 1_000_000
BUFFER = 2 * 1024 ** 3
SEND_MANY_CHUNK = 100_000
POLL_RECORDS = 10_000
KP_MAX_MESSAGES = 100_000   # kafka-python's rows
SCENARIO = "J_clients"


@pytest.fixture(scope="module")
def broker():
    b = BrokerProcess()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def jstate(bench_root):
    """What the producer tests leave for the consumer tests (and for cleanup)."""
    s = {"read_topic": None, "embedded_dir": None, "root": tempfile.mkdtemp(prefix="j-", dir=bench_root)}
    yield s
    shutil.rmtree(s["root"], ignore_errors=True)


def _n(request) -> int:
    return request.config.getoption("--bench-broker-messages")


def _rounds(request) -> int:
    return request.config.getoption("--bench-broker-rounds")


def _import_pylog():
    try:
        import pylog

        pylog.Producer  # noqa: B018  (the clients import lazily)
        return pylog
    except Exception as e:  # pragma: no cover
        pytest.skip(f"pylog clients not importable: {e!r}")


_seq = [0]


def _new_topic(bootstrap: str) -> str:
    _seq[0] += 1
    name = f"j-{_seq[0]}-{os.getpid()}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(30)
    return name


def _delete_topic(bootstrap: str, topic: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic])[topic].result(30)


def _minflt() -> int:
    # Minor page faults of this process: fresh memory touched per round (the
    # system-time part of the client CPU), e.g. buffers not reused.
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _record(benchmark, impl, n, samples, **more):
    """samples: (broker CPU s or None, client CPU s[, minor faults]) per timed round."""
    benchmark.extra_info.update(
        scenario=SCENARIO, impl=impl, records=n, bytes=n * len(VALUE),
        client_cpu_s_per_m=statistics.median(s[1] for s in samples) / n * 1e6,
        client_cpu_rounds=[round(s[1] / n * 1e6, 4) for s in samples],
        loadavg1=os.getloadavg()[0], **more)
    if samples and len(samples[0]) > 2:
        benchmark.extra_info.update(client_minflt_rounds=[s[2] for s in samples])
    if samples and samples[0][0] is not None:
        benchmark.extra_info.update(
            broker_cpu_s_per_m=statistics.median(s[0] for s in samples) / n * 1e6,
            broker_cpu_rounds=[round(s[0] / n * 1e6, 4) for s in samples])


def _bench_network_produce(benchmark, broker, request, jstate, impl, make, run, close,
                           n=None, rounds=None, keep=False):
    """One producer row: make(topic) -> client (untimed); run(client, topic) sends
    everything and returns when all is acknowledged; close(client) untimed."""
    n = n or _n(request)
    rounds = rounds or _rounds(request)
    samples = []
    state = {}

    def drop():
        if "client" in state:
            close(state.pop("client"))
        if "topic" in state:
            _delete_topic(broker.bootstrap, state.pop("topic"))

    def setup():
        drop()   # the previous round's data goes: rounds write into recycled memory
        os.sync()
        state["topic"] = _new_topic(broker.bootstrap)
        state["client"] = make(state["topic"])
        return (), {}

    def timed():
        b0, c0 = broker.cpu(), _self_cpu()
        run(state["client"], state["topic"], n)
        samples.append((broker.cpu() - b0, _self_cpu() - c0))

    try:
        benchmark.pedantic(timed, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
    finally:
        if keep and len(samples) == rounds + 1:
            close(state.pop("client"))
            old, jstate["read_topic"] = jstate["read_topic"], state.pop("topic")
            if old:
                _delete_topic(broker.bootstrap, old)
        drop()
    samples.pop(0)   # the warm-up round's
    _record(benchmark, impl, n, samples, acks=1)


# ------------------------------------------------------------------ producers over the network


def test_j_produce_confluent(benchmark, broker, request, jstate):
    def make(topic):
        p = ck.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": LINGER_MS,
                         "batch.size": BATCH_SIZE, "acks": 1,
                         "queue.buffering.max.messages": 2 * _n(request) + 10,
                         "queue.buffering.max.kbytes": 2097151})
        p.list_topics(topic, timeout=10)   # connected, metadata known
        return p

    def run(p, topic, n):
        produce = p.produce
        for i in range(n):
            produce(topic, VALUE, partition=i % PARTITIONS)
        left = p.flush(120)
        assert left == 0, f"{left} messages not delivered"

    _bench_network_produce(benchmark, broker, request, jstate, "confluent produce", make, run,
                           lambda p: None, keep=True)


def _pylog_producer(pylog, **where):
    return pylog.Producer(**where, acks=1, enable_idempotence=False, linger_ms=LINGER_MS,
                          batch_size=BATCH_SIZE, buffer_memory=BUFFER)


def _send_loop(send, topic, n):
    # The loop every per-message producer row runs (and the loop floor, below).
    for i in range(n):
        send(topic, VALUE, partition=i % PARTITIONS)


def _pylog_send(p, topic, n):
    _send_loop(p.send, topic, n)
    left = p.flush(120)
    assert left == 0, f"{left} batches not acknowledged"


def _chunks(n):
    return [[VALUE] * min(SEND_MANY_CHUNK, n - i) for i in range(0, n, SEND_MANY_CHUNK)]


def _pylog_send_many(p, topic, chunks):
    results = [p.send_many(topic, c) for c in chunks]
    left = p.flush(120)
    assert left == 0, f"{left} batches not acknowledged"
    for r in results:
        r.get(0)   # raises a batch's error, if any


def test_j_produce_pylog_send(benchmark, broker, request, jstate):
    pylog = _import_pylog()

    def make(topic):
        p = _pylog_producer(pylog, bootstrap_servers=broker.bootstrap)
        p.partitions_for(topic)   # connected, metadata known
        return p

    _bench_network_produce(benchmark, broker, request, jstate, "pylog send", make, _pylog_send,
                           lambda p: p.close())


def test_j_produce_pylog_send_many(benchmark, broker, request, jstate):
    pylog = _import_pylog()
    chunks = _chunks(_n(request))   # built once, before any timing

    def make(topic):
        p = _pylog_producer(pylog, bootstrap_servers=broker.bootstrap)
        p.partitions_for(topic)
        return p

    _bench_network_produce(benchmark, broker, request, jstate, "pylog send_many", make,
                           lambda p, topic, n: _pylog_send_many(p, topic, chunks), lambda p: p.close())


def test_j_produce_kafka_python(benchmark, broker, request, jstate):
    kafka = pytest.importorskip("kafka")
    n = min(_n(request), KP_MAX_MESSAGES)

    def make(topic):
        p = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=LINGER_MS,
                                batch_size=BATCH_SIZE, enable_idempotence=False,
                                max_request_size=BATCH_SIZE + 100_000)
        p.partitions_for(topic)
        return p

    def run(p, topic, n):
        send = p.send
        for i in range(n):
            send(topic, VALUE, partition=i % PARTITIONS)
        p.flush(120)

    _bench_network_produce(benchmark, broker, request, jstate, "kafka-python send", make, run,
                           lambda p: p.close(), n=n, rounds=min(3, _rounds(request)))


# ------------------------------------------------------------------ embedded producers


def _bench_embedded_produce(benchmark, request, jstate, impl, run):
    pylog = _import_pylog()
    from pylog.embedded import LocalStore

    n = _n(request)
    rounds = _rounds(request)
    samples = []
    state = {}

    def drop():
        if "client" in state:
            state.pop("client").close()
        if "dir" in state:
            shutil.rmtree(state.pop("dir"), ignore_errors=True)

    def setup():
        drop()
        os.sync()
        d = state["dir"] = tempfile.mkdtemp(prefix="embedded-", dir=jstate["root"])
        store = LocalStore.open(d)
        store.create_topic("bench", PARTITIONS)
        store.close()
        p = state["client"] = _pylog_producer(pylog, log_dir=d)
        assert len(p.partitions_for("bench")) == PARTITIONS
        return (), {}

    def timed():
        c0, f0 = _self_cpu(), _minflt()
        run(state["client"], "bench", n)
        samples.append((None, _self_cpu() - c0, _minflt() - f0))

    try:
        benchmark.pedantic(timed, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
    finally:
        if "client" in state:
            state.pop("client").close()
        if len(samples) == rounds + 1:
            old, jstate["embedded_dir"] = jstate["embedded_dir"], state.pop("dir")
            if old:
                shutil.rmtree(old, ignore_errors=True)
        drop()
    samples.pop(0)
    _record(benchmark, impl, n, samples, acks=1)


def test_j_embedded_send(benchmark, request, jstate):
    _bench_embedded_produce(benchmark, request, jstate, "pylog embedded send", _pylog_send)


def test_j_embedded_send_many(benchmark, request, jstate):
    chunks = _chunks(_n(request))
    _bench_embedded_produce(benchmark, request, jstate, "pylog embedded send_many",
                            lambda p, topic, n: _pylog_send_many(p, topic, chunks))


# ------------------------------------------------------------------ floors
#
# References for goal 4 (embedded >= 5x network), no goal of their own: what
# any producer in this process must spend at least, measured in the same run.
#   floor: send loop, no-op callee   _send_loop with a lambda that does nothing
#   floor: encode only               append_many over the send_many chunks, the
#                                    same ranges Producer.send_many uses, batches
#                                    drained and dropped (nothing written)
#   floor: pwrite of the batches     the record batches the encode makes (built
#                                    untimed), written with plain pwrite into 6
#                                    fresh files, one per partition


def _bench_floor(benchmark, request, impl, make, run, drop=lambda x: None):
    n = _n(request)
    rounds = _rounds(request)
    samples = []
    state = {}

    def setup():
        if "x" in state:
            drop(state.pop("x"))
        state["x"] = make()
        return (), {}

    def timed():
        c0 = _self_cpu()
        run(state["x"], n)
        samples.append((None, _self_cpu() - c0))

    try:
        benchmark.pedantic(timed, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
    finally:
        if "x" in state:
            drop(state.pop("x"))
    samples.pop(0)
    _record(benchmark, impl, n, samples)


def test_j_floor_send_loop(benchmark, request):
    _bench_floor(benchmark, request, "floor: send loop, no-op callee",
                 lambda: (lambda topic, value, partition=None: None),
                 lambda send, n: _send_loop(send, "bench", n))


def _encode_all(acc, chunks, keep):
    step = max(1, BATCH_SIZE // (len(VALUE) + 8))   # as Producer.send_many splits
    for c in chunks:
        for i in range(0, len(c), step):
            acc.append_many("bench", -1, c, None, None, i, i + step)
        for b in acc.drain(0, 0, True):
            if keep is not None:
                keep.append((b.partition, b.build()))
            b.release()


def _accumulator():
    from pylog import _engine
    acc = _engine.RecordAccumulator(BATCH_SIZE, BUFFER)
    acc.set_partition_count("bench", PARTITIONS)
    return acc


def test_j_floor_encode(benchmark, request):
    _import_pylog()
    chunks = _chunks(_n(request))
    _bench_floor(benchmark, request, "floor: encode only", _accumulator,
                 lambda acc, n: _encode_all(acc, chunks, None))


def test_j_floor_pwrite(benchmark, request, jstate):
    _import_pylog()
    batches = []
    _encode_all(_accumulator(), _chunks(_n(request)), batches)

    def make():
        os.sync()
        d = tempfile.mkdtemp(prefix="plain-", dir=jstate["root"])
        return d, [os.open(os.path.join(d, f"{p}.log"), os.O_CREAT | os.O_WRONLY, 0o644)
                   for p in range(PARTITIONS)]

    def run(x, n):
        fds, at = x[1], [0] * PARTITIONS
        for p, data in batches:
            at[p] += os.pwrite(fds[p], data, at[p])

    def drop(x):
        for fd in x[1]:
            os.close(fd)
        shutil.rmtree(x[0], ignore_errors=True)

    _bench_floor(benchmark, request, "floor: pwrite of the batches", make, run, drop)


# ------------------------------------------------------------------ consumers


def _bench_consume(benchmark, request, impl, make, read, close, cpu=None, n=None, rounds=None, **more):
    """make() -> connected consumer assigned from offset 0 (untimed); read(c, n)
    returns the number of records it got (n unless it timed out)."""
    n = n or _n(request)
    rounds = rounds or _rounds(request)
    samples = []
    state = {}

    def setup():
        os.sync()
        if "client" in state:
            close(state.pop("client"))
        state["client"] = make()
        return (), {}

    def timed():
        b0, c0, f0 = cpu() if cpu else None, _self_cpu(), _minflt()
        got = read(state["client"], n)
        samples.append((cpu() - b0 if cpu else None, _self_cpu() - c0, _minflt() - f0))
        assert got == n, f"consumed {got} of {n}"

    try:
        benchmark.pedantic(timed, setup=setup, rounds=rounds, iterations=1)
    finally:
        if "client" in state:
            close(state.pop("client"))
    _record(benchmark, impl, n, samples, **more)


def _read_topic(jstate):
    if not jstate["read_topic"]:
        pytest.skip("no produced topic to read (run with test_j_produce_confluent)")
    return jstate["read_topic"]


def _confluent_consume(benchmark, broker, request, jstate, impl, extra):
    topic = _read_topic(jstate)

    def make():
        c = ck.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "bench-j",
                         "enable.auto.commit": False, **extra})
        c.assign([ck.TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        c.list_topics(topic, timeout=10)
        return c

    def read(c, n):
        got = 0
        deadline = time.monotonic() + 120
        consume = c.consume
        while got < n and time.monotonic() < deadline:
            got += len(consume(num_messages=POLL_RECORDS, timeout=1.0))
        return got

    _bench_consume(benchmark, request, impl, make, read, lambda c: c.close(), cpu=broker.cpu,
                   config=extra)


def test_j_consume_confluent(benchmark, broker, request, jstate):
    _confluent_consume(benchmark, broker, request, jstate, "confluent consume", {})


def test_j_consume_confluent_tuned(benchmark, broker, request, jstate):
    _confluent_consume(benchmark, broker, request, jstate, "confluent consume tuned",
                       {"queued.max.messages.kbytes": 1048576, "fetch.queue.backoff.ms": 1})


def _pylog_read(c, n):
    got = 0
    deadline = time.monotonic() + 120
    poll = c.poll
    while got < n and time.monotonic() < deadline:
        got += len(poll(1.0, POLL_RECORDS))
    return got


def test_j_consume_pylog(benchmark, broker, request, jstate):
    pylog = _import_pylog()
    topic = _read_topic(jstate)

    def make():
        c = pylog.Consumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
        tps = [pylog.TopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        c.partitions_for_topic(topic)   # connected, metadata known
        return c

    _bench_consume(benchmark, request, "pylog poll", make, _pylog_read, lambda c: c.close(), cpu=broker.cpu)


def test_j_consume_kafka_python(benchmark, broker, request, jstate):
    kafka = pytest.importorskip("kafka")
    topic = _read_topic(jstate)
    n = min(_n(request), KP_MAX_MESSAGES)

    def make():
        c = kafka.KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
        tps = [kafka.TopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        c.partitions_for_topic(topic)
        return c

    def read(c, n):
        got = 0
        deadline = time.monotonic() + 120
        while got < n and time.monotonic() < deadline:
            got += sum(len(v) for v in c.poll(timeout_ms=1000, max_records=min(POLL_RECORDS, n - got)).values())
        return got

    _bench_consume(benchmark, request, "kafka-python poll", make, read, lambda c: c.close(), cpu=broker.cpu,
                   n=n, rounds=min(3, _rounds(request)))


def test_j_consume_pylog_embedded(benchmark, request, jstate):
    pylog = _import_pylog()
    d = jstate["embedded_dir"]
    if not d:
        pytest.skip("no embedded directory to read (run with test_j_embedded_send_many)")

    def make():
        c = pylog.Consumer(log_dir=d, group_id=None, enable_auto_commit=False)
        tps = [pylog.TopicPartition("bench", p) for p in range(PARTITIONS)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        return c

    _bench_consume(benchmark, request, "pylog embedded poll", make, _pylog_read, lambda c: c.close())
