"""pylog.Producer against a real broker, read back by real clients.

confluent-kafka is the reference on both ends: what pylog produces is read
byte-exact by confluent's consumer, and keys land on the partitions
confluent's own producer picks for them.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest

import pylog
from pylog import errors
from pylog.structs import RecordMetadata
from pylog.testing import running_broker

from .faultproxy import FaultProxy

ck = pytest.importorskip("confluent_kafka")
import itertools

from confluent_kafka.admin import AdminClient, NewTopic


@pytest.fixture(scope="module")
def broker():
    with running_broker(config={"num.partitions": "3"}) as b:
        yield b


def _topic(bootstrap, partitions=3, name=None):
    name = name or f"p-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)
    return name


def _read_all(bootstrap, topic, partitions, expect, timeout=30):
    """Every message of topic via confluent-kafka, per partition in offset order."""
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "reader-" + uuid.uuid4().hex,
                     "enable.auto.commit": False, "enable.partition.eof": False})
    c.assign([ck.TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expect and time.monotonic() < deadline:
            for m in c.consume(num_messages=10000, timeout=0.5):
                assert m.error() is None, m.error()
                got.append(m)
        # Anything beyond `expect` (duplicates) shows up within a short extra wait.
        for m in c.consume(num_messages=10000, timeout=0.5):
            got.append(m)
    finally:
        c.close()
    return got


@pytest.mark.parametrize("compression", [None, "lz4"])
def test_keyed_messages_with_headers_byte_exact_to_confluent(broker, compression):
    topic = _topic(broker.bootstrap)
    n = 10_000
    sent = []
    with pylog.Producer(broker.bootstrap, compression_type=compression, linger_ms=2) as p:
        handles = []
        for i in range(n):
            key = f"key-{i % 97}".encode()
            value = bytes([i % 256]) * (i % 300) + str(i).encode()
            headers = [("h", str(i).encode()), ("empty", b"")] if i % 3 else None
            ts = 1_700_000_000_000 + i
            handles.append(p.send(topic, value, key=key, headers=headers, timestamp=ts))
            sent.append((key, value, headers, ts))
        assert p.flush(30) == 0
        mds = [h.get(10) for h in handles]
    assert all(isinstance(md, RecordMetadata) and md.topic == topic for md in mds)
    got = _read_all(broker.bootstrap, topic, 3, n)
    assert len(got) == n
    by_pos = {(m.partition(), m.offset()): m for m in got}
    for (key, value, headers, ts), md in zip(sent, mds):
        m = by_pos[(md.partition, md.offset)]
        assert m.key() == key and m.value() == value
        assert m.timestamp() == (ck.TIMESTAMP_CREATE_TIME, ts)
        assert (m.headers() or None) == headers
    # Offsets per partition are contiguous from 0 and in send order.
    for part in range(3):
        offs = [md.offset for md in mds if md.partition == part]
        assert offs == list(range(len(offs)))


def test_key_placement_matches_confluent(broker):
    mine, theirs = _topic(broker.bootstrap, 6), _topic(broker.bootstrap, 6)
    keys = [f"user-{i}".encode() for i in range(500)] + [b"", b"\x00\xff", "ключ".encode()]
    with pylog.Producer(broker.bootstrap) as p:
        placed = {k: p.send(mine, b"v", key=k).get(10).partition for k in keys}
    cp = ck.Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"})
    ref = {}

    def cb(err, m):
        assert err is None
        ref[m.key()] = m.partition()
    for k in keys:
        cp.produce(theirs, b"v", key=k, on_delivery=cb)
    cp.flush(10)
    assert placed == ref


def test_null_keys_are_sticky_and_spread(broker):
    topic = _topic(broker.bootstrap, 3)
    with pylog.Producer(broker.bootstrap, batch_size=2000, linger_ms=1000) as p:
        hs = [p.send(topic, b"x" * 100) for _ in range(200)]
        p.flush(10)
        parts = [h.get(1).partition for h in hs]
    # Sticky: consecutive records share a partition until a batch fills (~18 per 2000 B).
    runs = sum(1 for a, b in itertools.pairwise(parts) if a != b)
    assert runs <= 200 // 15
    assert len(set(parts)) > 1


def test_delivery_callbacks_in_order_on_success(broker):
    topic = _topic(broker.bootstrap, 1)
    seen = []
    with pylog.Producer(broker.bootstrap) as p:
        for i in range(1000):
            p.send(topic, str(i).encode(), on_delivery=lambda err, md, i=i: seen.append((i, err, md)))
    assert [i for i, _, _ in seen] == list(range(1000))
    assert all(err is None for _, err, _ in seen)
    assert [md.offset for _, _, md in seen] == list(range(1000))


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks_levels(broker, acks):
    topic = _topic(broker.bootstrap, 1)
    with pylog.Producer(broker.bootstrap, acks=acks, enable_idempotence=(acks == "all")) as p:
        hs = [p.send(topic, str(i).encode()) for i in range(500)]
        p.flush(10)
        offs = [h.get(5).offset for h in hs]
    assert offs == ([-1] * 500 if acks == 0 else list(range(500)))
    got = _read_all(broker.bootstrap, topic, 1, 500)
    assert [m.value() for m in got] == [str(i).encode() for i in range(500)]


def test_send_many_builds_whole_batches(broker):
    topic = _topic(broker.bootstrap, 3)
    values = [str(i).encode().rjust(100, b".") for i in range(50_000)]
    with pylog.Producer(broker.bootstrap, batch_size=100_000) as p:
        res = p.send_many(topic, values)
        mds = res.get(30)
    assert res.records_count == 50_000 and len(mds) == len(res.batches) > 1
    got = _read_all(broker.bootstrap, topic, 3, 50_000)
    assert sorted(m.value() for m in got) == sorted(values)
    assert {m.partition() for m in got} == {0, 1, 2}


def test_send_many_with_keys_follows_the_partitioner(broker):
    topic = _topic(broker.bootstrap, 4)
    keys = [f"k{i % 50}".encode() for i in range(2000)]
    values = [str(i).encode() for i in range(2000)]
    with pylog.Producer(broker.bootstrap) as p:
        p.send_many(topic, values, keys=keys).get(10)
        single = {k: p.send(topic, b"probe", key=k).get(10).partition for k in set(keys)}
    got = _read_all(broker.bootstrap, topic, 4, 2000 + len(single))
    for m in got:
        assert m.partition() == single[m.key()]
    # per key, values arrive in the order given
    order = {}
    for m in sorted(got, key=lambda m: (m.partition(), m.offset())):
        if m.value() != b"probe":
            order.setdefault(m.key(), []).append(int(m.value()))
    assert all(v == sorted(v) for v in order.values())


def test_unknown_topic_with_auto_creation_off_fails_the_future_with_one_clean_error():
    """As the Java client: send() returns a failed future (and calls
    on_delivery) once max_block_ms's metadata wait is over, and the error is
    the one that says what is wrong, not chained under the producer's
    internal NeedMetadata."""
    import traceback
    seen = []
    with running_broker(config={"auto.create.topics.enable": "false"}) as b:
        for client_side in (True, False):
            with pylog.Producer(b.bootstrap, max_block_ms=500,
                                allow_auto_create_topics=client_side) as p:
                h = p.send("nope", b"v", on_delivery=lambda err, md: seen.append((err, md)))
                assert h.done()
                with pytest.raises(errors.UnknownTopicOrPartitionError, match="does not exist") as ei:
                    h.get(10)
                assert isinstance(h.exception(), errors.UnknownTopicOrPartitionError)
                assert ei.value.__cause__ is None and ei.value.__context__ is None
                text = "".join(traceback.format_exception(ei.value))
                assert "NeedMetadata" not in text, text
                # send_many raises it, equally unchained
                with pytest.raises(errors.UnknownTopicOrPartitionError) as ei:
                    p.send_many("nope", [b"a"])
                assert ei.value.__context__ is None
    assert [type(err) for err, _ in seen] == [errors.UnknownTopicOrPartitionError] * 2
    assert [md for _, md in seen] == [None, None]


def test_auto_creates_topics_when_the_broker_allows(broker):
    name = f"auto-{uuid.uuid4().hex[:8]}"
    with pylog.Producer(broker.bootstrap) as p:
        md = p.send(name, b"v").get(10)
    assert md.offset == 0 and md.partition in (0, 1, 2)


def test_str_values_are_refused_with_a_clear_message(broker):
    topic = _topic(broker.bootstrap, 1)
    with pylog.Producer(broker.bootstrap) as p:
        with pytest.raises(TypeError, match="bytes"):
            p.send(topic, "text")


# ---- faults: a proxy between producer and broker ---------------------------

@pytest.fixture
def proxied():
    """A broker that advertises a FaultProxy in front of it: clients
    bootstrap from the broker itself (.bootstrap), then every connection to
    the broker's advertised address goes through the proxy."""
    port = FaultProxy.reserve_port()
    with running_broker(config={"num.partitions": "2",
                                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}"}) as b:
        real_port = b.broker.port
        proxy = FaultProxy(real_port, listen_port=port).start()
        try:
            yield _Direct(f"127.0.0.1:{real_port}"), proxy
        finally:
            proxy.stop()


class _Direct:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap


def _idempotence_run(bootstrap, proxy, idempotent: bool, n: int = 6000):
    topic = _topic(bootstrap, 2)
    failures = []
    with pylog.Producer(bootstrap, enable_idempotence=idempotent, acks="all",
                        batch_size=4000, linger_ms=1, retry_backoff_ms=20,
                        request_timeout_ms=5000) as p:
        proxy.cut_every(4)
        for i in range(n):
            p.send(topic, str(i).encode(), key=str(i % 10).encode(),
                   on_delivery=lambda err, md: err and failures.append(err))
        assert p.flush(60) == 0
        proxy.cut_every(0)
    return topic, failures


def test_idempotent_producer_survives_connection_drops_without_duplicates(proxied):
    b, proxy = proxied
    n = 6000
    topic, failures = _idempotence_run(b.bootstrap, proxy, True, n)
    assert proxy.cuts > 0
    assert failures == []
    got = _read_all(b.bootstrap, topic, 2, n)
    values = [int(m.value()) for m in got]
    assert sorted(values) == list(range(n)), "each message exactly once"
    per_key = {}
    for m in sorted(got, key=lambda m: (m.partition(), m.offset())):
        per_key.setdefault(m.key(), []).append(int(m.value()))
    assert all(v == sorted(v) for v in per_key.values()), "in order per key"


def test_without_idempotence_the_same_drops_duplicate(proxied):
    # The control for the test above: the drops do lose acknowledgements of
    # appended batches, and only idempotence turns their retries into no-ops.
    b, proxy = proxied
    n = 6000
    topic, failures = _idempotence_run(b.bootstrap, proxy, False, n)
    assert proxy.cuts > 0 and failures == []
    got = _read_all(b.bootstrap, topic, 2, n)
    assert sorted({int(m.value()) for m in got}) == list(range(n))
    assert len(got) > n


def test_buffer_full_blocks_then_times_out(proxied):
    b, proxy = proxied
    topic = _topic(b.bootstrap, 2)
    with pylog.Producer(b.bootstrap, buffer_memory=200_000, batch_size=20_000, linger_ms=0,
                        max_block_ms=400, request_timeout_ms=30_000) as p:
        p.send(topic, b"warm").get(10)
        proxy.hold(True)     # the broker's answers stop: nothing is released
        t0 = time.monotonic()
        with pytest.raises(errors.BufferFullError, match="max_block_ms=400"):
            for _ in range(10_000):
                p.send(topic, b"x" * 1000)
        blocked = time.monotonic() - t0
        assert isinstance(errors.BufferFullError("x"), TimeoutError)
        assert 0.35 <= blocked < 5
        proxy.hold(False)    # answers flow again: everything queued is delivered
        assert p.flush(20) == 0


def test_send_blocked_on_full_buffer_resumes_when_space_frees(proxied):
    b, proxy = proxied
    topic = _topic(b.bootstrap, 2)
    with pylog.Producer(b.bootstrap, buffer_memory=100_000, batch_size=10_000, linger_ms=0,
                        max_block_ms=10_000) as p:
        p.send(topic, b"warm").get(10)
        proxy.hold(True)
        threading.Timer(0.5, proxy.hold, (False,)).start()
        t0 = time.monotonic()
        hs = [p.send(topic, b"y" * 1000) for _ in range(500)]
        assert time.monotonic() - t0 >= 0.4     # it did block
        p.flush(20)
        assert all(h.get(0).offset >= 0 for h in hs)


def test_delivery_timeout_fails_the_records(proxied):
    b, proxy = proxied
    topic = _topic(b.bootstrap, 1)
    errs = []
    with pylog.Producer(b.bootstrap, delivery_timeout_ms=600, request_timeout_ms=300,
                        linger_ms=0) as p:
        p.send(topic, b"warm").get(10)
        proxy.hold(True)
        h = p.send(topic, b"lost", on_delivery=lambda err, md: errs.append(err))
        with pytest.raises(errors.RequestTimedOutError):
            h.get(10)
        proxy.hold(False)
    assert len(errs) == 1 and isinstance(errs[0], errors.RequestTimedOutError)


def test_close_with_timeout_fails_what_is_left(proxied):
    b, proxy = proxied
    topic = _topic(b.bootstrap, 1)
    p = pylog.Producer(b.bootstrap, linger_ms=0)
    bound_send = p.send   # send() is in C (SendPath); a bound one must be refused too
    p.send(topic, b"warm").get(10)
    proxy.hold(True)
    h = p.send(topic, b"stuck")
    t0 = time.monotonic()
    p.close(timeout=0.3)
    assert time.monotonic() - t0 < 5
    with pytest.raises(errors.PylogError):
        h.get(1)
    with pytest.raises(errors.ProducerClosedError):
        p.send(topic, b"after")
    with pytest.raises(errors.ProducerClosedError):
        bound_send(topic, b"after", partition=0, on_delivery=print)
    proxy.hold(False)
