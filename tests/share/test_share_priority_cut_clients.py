"""A share fetch that acquires part of a big batch sends the batch cut down
to those records (pylog/share/delivery.py _trimmed): what confluent_kafka's
ShareConsumer and pylog's ShareConsumer receive must be exactly what the log
holds, every record once, with its offset, key, value, headers and timestamp.
The log mixes big uncompressed batches, compressed ones (cut to uncompressed
ones), committed and aborted transactions (control batches among them), and records
with a priority header inside big batches, so fetches pick out of their
middle."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import ShareConsumer as RdkShareConsumer

import pylog.share.delivery as delivery
from pylog import AcknowledgeType, ShareConsumer

from .delivery_clients import TIMEOUT, broker, setup  # noqa: F401 (broker: a fixture)
from .wire import set_group_configs

N_BIG, N_ZIP, N_TXN, N_ABORTED = 3000, 1200, 800, 300
ACCEPT, RELEASE = AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE


def _value(i):
    return None if i % 211 == 0 else b"value-%d-" % i + bytes(range(i % 50))


def _key(i):
    return None if i % 7 == 0 else b"key-%d" % i


def _headers(i):
    hs = []
    if i % 97 == 0:
        hs.append(("pylog.priority", b"9"))
    if i % 3 == 0:
        hs += [("a", b"%d" % i), ("b", None), ("a", b"again")]
    return hs


def _fill(b, topic):
    """The log; how many data records it holds."""
    t0 = int(time.time() * 1000) - 60_000
    # The first record has a priority: fetches take exactly what they ask for from then on.
    p = Producer({"bootstrap.servers": str(b), "acks": "all", "linger.ms": 2000, "batch.num.messages": 10000,
                  "batch.size": 16 << 20})
    p.produce(topic, b"first", headers=[("pylog.priority", b"9")])
    p.flush(30)
    for i in range(N_BIG):
        p.produce(topic, _value(i), key=_key(i), headers=_headers(i), timestamp=t0 + 3 * i - (i % 5) * 11)
    assert p.flush(60) == 0
    z = Producer({"bootstrap.servers": str(b), "acks": "all", "linger.ms": 2000, "batch.num.messages": 10000,
                  "batch.size": 16 << 20, "compression.type": "lz4"})
    for i in range(N_BIG, N_BIG + N_ZIP):
        z.produce(topic, _value(i), key=_key(i), headers=_headers(i), timestamp=t0 + 3 * i)
    assert z.flush(60) == 0
    t = Producer({"bootstrap.servers": str(b), "transactional.id": f"{topic}-tx", "linger.ms": 2000,
                  "batch.num.messages": 10000, "batch.size": 16 << 20})
    t.init_transactions(30)
    first = N_BIG + N_ZIP
    for n, commit in ((N_TXN, True), (N_ABORTED, False), (N_TXN, True)):
        t.begin_transaction()
        for i in range(first, first + n):
            t.produce(topic, _value(i), key=_key(i), headers=_headers(i), timestamp=t0 + 3 * i)
        t.flush(60)
        (t.commit_transaction if commit else t.abort_transaction)(30)
        first += n
    return 1 + N_BIG + N_ZIP + 2 * N_TXN + N_ABORTED


def _reference(b, topic, n):
    """The log's data records as a plain consumer reads them (read_uncommitted, as share groups by default)."""
    c = Consumer({"bootstrap.servers": str(b), "group.id": f"{topic}-ref", "auto.offset.reset": "earliest",
                  "isolation.level": "read_uncommitted", "enable.auto.commit": False})
    c.subscribe([topic])
    out = {}
    deadline = time.monotonic() + TIMEOUT
    while len(out) < n:
        assert time.monotonic() < deadline, f"reference read timed out after {len(out)} of {n}"
        for m in c.consume(500, 0.5):
            assert m.error() is None, m.error()
            out[m.offset()] = (m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1])
    c.close()
    return out


@pytest.fixture(scope="module")
def log_of(broker):  # noqa: F811
    topic = "pcut-mixed"
    setup(broker, topic, f"{topic}-g0")
    n = _fill(broker, topic)
    return topic, n, _reference(broker, topic, n)


@pytest.fixture
def cuts(monkeypatch):
    """How many batches share fetches cut (the broker runs in this process)."""
    made = []
    real = delivery.trim_batch

    def counted(data, keep):
        out = real(data, keep)
        made.append((data[22] & 0x07, len(data), len(out)))
        return out
    monkeypatch.setattr(delivery, "trim_batch", counted)
    return made


def _cut_both_kinds(cuts):
    assert all(after > 0 for _, _, after in cuts), cuts[:5]
    assert any(codec == 0 and after < before for codec, before, after in cuts), cuts[:5]
    assert any(codec != 0 and after < before for codec, before, after in cuts), cuts[:5]


def _drain(poll, n, what):
    got = {}
    dup = []
    deadline = time.monotonic() + TIMEOUT * 2
    while len(got) < n:
        assert time.monotonic() < deadline, f"{what}: timed out after {len(got)} of {n}"
        for offset, rec in poll():
            if offset in got:
                dup.append(offset)
            got[offset] = rec
    assert not dup, f"{what}: offsets delivered twice: {dup[:10]}"
    return got


def test_confluent_share_consumer_gets_every_record_once_exactly_as_stored(broker, log_of, cuts):  # noqa: F811
    topic, n, want = log_of
    group = f"{topic}-rdk"
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    c = RdkShareConsumer({"bootstrap.servers": str(broker), "group.id": group, "max.poll.records": 50})
    c.subscribe([topic])

    def poll():
        out = []
        for m in c.poll(0.2):
            assert m.error() is None, m.error()
            out.append((m.offset(), (m.key(), m.value(), tuple(m.headers() or ()), m.timestamp()[1])))
        return out
    got = _drain(poll, n, "confluent_kafka ShareConsumer")
    c.close()
    assert got == want
    _cut_both_kinds(cuts)


def test_pylog_share_consumer_gets_every_record_once_exactly_as_stored(broker, log_of, cuts):  # noqa: F811
    topic, n, want = log_of
    group = f"{topic}-pylog"
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group, max_poll_records=50)

    def poll():
        return [(r.offset, (None if r.key is None else bytes(r.key), None if r.value is None else bytes(r.value),
                            tuple((k, None if v is None else bytes(v)) for k, v in r.headers), r.timestamp))
                for r in c.poll(0.2)]
    got = _drain(poll, n, "pylog ShareConsumer")
    c.close()
    assert got == want
    _cut_both_kinds(cuts)


def test_released_records_of_a_big_batch_come_back_alone_in_a_cut_batch(broker, cuts):  # noqa: F811
    # No priority here: the first fetch takes the whole 2,000-record batch,
    # then every 10th record is released; their redelivery acquires a tenth
    # of the batch, and the batch sent is cut to them.
    topic, group = "pcut-release", "pcut-release-g"
    setup(broker, topic, group)
    p2 = Producer({"bootstrap.servers": str(broker), "linger.ms": 2000, "batch.num.messages": 10000,
                   "batch.size": 16 << 20})
    for i in range(2000):
        p2.produce(topic, _value(i), key=_key(i), headers=_headers(i)[1:] if i % 97 == 0 else _headers(i))
    assert p2.flush(60) == 0
    want = _reference(broker, topic, 2000)
    c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group, share_acknowledgement_mode="explicit")
    first, again = {}, {}
    deadline = time.monotonic() + TIMEOUT * 2
    while len(first) < 2000 or len(again) < 200:
        assert time.monotonic() < deadline, f"timed out: {len(first)} first deliveries, {len(again)} again"
        for r in c.poll(0.2):
            rec = (None if r.key is None else bytes(r.key), None if r.value is None else bytes(r.value),
                   tuple((k, None if v is None else bytes(v)) for k, v in r.headers), r.timestamp)
            if r.delivery_count == 1:
                assert r.offset not in first
                first[r.offset] = rec
                c.acknowledge(r, RELEASE if r.offset % 10 == 0 else ACCEPT)
            else:
                assert r.delivery_count == 2 and r.offset % 10 == 0 and r.offset not in again, r
                again[r.offset] = rec
                c.acknowledge(r, ACCEPT)
    c.commit_sync()
    c.close()
    assert first == want
    assert again == {o: rec for o, rec in want.items() if o % 10 == 0}
    assert any(codec == 0 and 0 < after < before // 5 for codec, before, after in cuts), cuts[:5]
