"""EmbeddedSource (FetchSource over a local directory) and LocalMembership,
on real directories with real threads."""
from __future__ import annotations

import threading
import time

import pytest

from pylog import _engine
from pylog.client.records import consumed_records
from pylog.consumer.assignors import get_assignor
from pylog.consumer.embedded_source import EmbeddedSource, LocalMembership
from pylog.errors import OffsetOutOfRangeError, UnknownTopicOrPartitionError
from pylog.structs import OffsetAndMetadata, TopicPartition

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


def decode(records, partition, fetch_offset):
    """(offset, value) of each record at or after fetch_offset. One place to
    switch to _engine.decode_fetched when the native decoder lands."""
    return [(r.offset, bytes(r.value)) for r in consumed_records(partition, records, fetch_offset)]


@pytest.fixture
def source(tmp_path):
    s = EmbeddedSource(tmp_path)
    s.store.create_topic("t", 2)
    yield s
    s.close()


def fetch(source, positions, max_wait_ms=0, **kw):
    kw.setdefault("min_bytes", 1)
    kw.setdefault("max_bytes", 50 << 20)
    kw.setdefault("max_partition_bytes", 1 << 20)
    return source.fetch(positions, max_wait_ms=max_wait_ms, isolation_level=0, **kw)


def append_later(store, delay_s, values, partition=0):
    def run():
        time.sleep(delay_s)
        store.append("t", partition, _engine.encode_batch(values))
    t = threading.Thread(target=run)
    t.start()
    return t


def test_fetch_returns_records_and_watermarks(source):
    source.store.append("t", 0, _engine.encode_batch([b"a", b"b"]))
    out = fetch(source, {T0: 1, T1: 0})
    assert decode(out[T0].records, 0, 1) == [(1, b"b")]
    assert (out[T0].high_watermark, out[T0].log_start_offset, out[T0].error) == (2, 0, None)
    assert (out[T1].records, out[T1].high_watermark, out[T1].error) == (b"", 0, None)


def test_long_poll_returns_early_on_append(source):
    t = append_later(source.store, 0.2, [b"late"], partition=1)
    t0 = time.monotonic()
    out = fetch(source, {T0: 0, T1: 0}, max_wait_ms=120_000)
    elapsed = time.monotonic() - t0
    t.join()
    # Early: far below the 120 s wait however loaded the machine is.
    assert 0.15 < elapsed < 60
    assert decode(out[T1].records, 1, 0) == [(0, b"late")]


def test_long_poll_waits_max_wait_ms_when_nothing_comes(source):
    t0 = time.monotonic()
    out = fetch(source, {T0: 0}, max_wait_ms=300)
    assert time.monotonic() - t0 > 0.29
    assert out[T0] == (b"", 0, 0, None, ())  # no aborted transactions


def test_min_bytes_waits_for_enough_data(source):
    source.store.append("t", 0, _engine.encode_batch([b"small"]))
    t = append_later(source.store, 0.2, [b"x" * 5000])
    t0 = time.monotonic()
    out = fetch(source, {T0: 0}, max_wait_ms=10_000, min_bytes=4000)
    t.join()
    assert time.monotonic() - t0 > 0.15
    assert [o for o, _ in decode(out[T0].records, 0, 0)] == [0, 1]


def test_wakeup_ends_a_long_poll_and_is_consumed(source):
    threading.Timer(0.2, source.wakeup).start()
    t0 = time.monotonic()
    out = fetch(source, {T0: 0}, max_wait_ms=120_000)
    assert 0.15 < time.monotonic() - t0 < 60
    assert out[T0].records == b""
    # A wakeup before a fetch makes that fetch return at once; the next waits again.
    source.wakeup()
    t0 = time.monotonic()
    fetch(source, {T0: 0}, max_wait_ms=120_000)
    assert time.monotonic() - t0 < 60
    t0 = time.monotonic()
    fetch(source, {T0: 0}, max_wait_ms=200)
    assert time.monotonic() - t0 > 0.15


def test_errors_are_per_partition_and_answered_at_once(source):
    source.store.append("t", 0, _engine.encode_batch([b"a"]))
    t0 = time.monotonic()
    out = fetch(source, {T0: 5, TopicPartition("t", 9): 0, T1: 0}, max_wait_ms=120_000)
    assert time.monotonic() - t0 < 60
    assert isinstance(out[T0].error, OffsetOutOfRangeError)
    assert (out[T0].high_watermark, out[T0].log_start_offset) == (1, 0)
    assert isinstance(out[TopicPartition("t", 9)].error, UnknownTopicOrPartitionError)
    assert out[T1].error is None


def test_max_bytes_is_shared_and_only_the_first_partition_may_exceed_it(source):
    for p in (0, 1):
        for _ in range(3):
            source.store.append("t", p, _engine.encode_batch([b"x" * 1000]))
    out = fetch(source, {T0: 0, T1: 0}, max_bytes=500)
    assert [o for o, _ in decode(out[T0].records, 0, 0)] == [0]   # one whole batch over the limit
    assert out[T1].records == b"" and out[T1].high_watermark == 3
    out = fetch(source, {T0: 0, T1: 0}, max_bytes=2500, max_partition_bytes=1500)
    assert [o for o, _ in decode(out[T0].records, 0, 0)] == [0]
    assert [o for o, _ in decode(out[T1].records, 1, 0)] == [0]


def test_concurrent_appender_and_fetcher_see_every_record_in_order(source):
    n = 20_000
    store = source.store

    def produce():
        i = 0
        size = 1
        while i < n:
            k = min(size, n - i)
            store.append("t", i % 2, _engine.encode_batch([b"%d" % j for j in range(i, i + k)]))
            i += k
            size = size % 97 + 1

    writer = threading.Thread(target=produce)
    writer.start()
    positions = {T0: 0, T1: 0}
    seen = {0: [], 1: []}
    deadline = time.monotonic() + 20
    while sum(len(v) for v in seen.values()) < n and time.monotonic() < deadline:
        out = fetch(source, positions, max_wait_ms=500, max_partition_bytes=4096)
        for tp, fp in out.items():
            assert fp.error is None
            got = decode(fp.records, tp.partition, positions[tp])
            if got:
                seen[tp.partition] += got
                positions[tp] = got[-1][0] + 1
    writer.join()
    values = [int(v) for p in (0, 1) for _, v in seen[p]]
    assert sorted(values) == list(range(n))
    for p in (0, 1):
        assert [o for o, _ in seen[p]] == list(range(len(seen[p])))  # contiguous offsets
        vals = [int(v) for _, v in seen[p]]
        assert vals == sorted(vals)                                   # in append order


def test_list_offsets_and_commits_through_the_source(source):
    source.store.append("t", 0, _engine.encode_batch([b"a", b"b"], timestamps=[10, 20]))
    assert source.list_offsets({T0: -2, T1: -1}) == {T0: (0, -1), T1: (0, -1)}
    assert source.list_offsets({T0: 15}) == {T0: (1, 20)}
    source.commit_offsets("g", {T0: OffsetAndMetadata(2, "m")}, generation_id=3, member_id="x")
    assert source.committed_offsets("g", [T0, T1]) == {T0: OffsetAndMetadata(2, "m", -1), T1: None}


def test_sources_on_one_directory_share_the_store(tmp_path):
    a = EmbeddedSource(tmp_path)
    b = EmbeddedSource(tmp_path / ".")
    try:
        assert a.store is b.store
        assert a.partitions_for("auto") == [0]          # consumers may auto-create (Kafka's default)
        assert b.topics() == ["auto"]
        c = EmbeddedSource(tmp_path, allow_auto_create_topics=False)
        assert c.partitions_for("other") is None
        c.close()
        # An append in one wakes a long poll in another.
        t = threading.Timer(0.2, lambda: a.store.append("auto", 0, _engine.encode_batch([b"v"])))
        t.start()
        out = b.fetch({TopicPartition("auto", 0): 0}, max_wait_ms=10_000, min_bytes=1, max_bytes=1 << 20,
                      max_partition_bytes=1 << 20, isolation_level=0)
        t.join()
        assert decode(out[TopicPartition("auto", 0)].records, 0, 0) == [(0, b"v")]
    finally:
        a.close()
        b.close()
    assert a.store.closed


# ---- LocalMembership ----

class Listener:
    def __init__(self):
        self.calls = []

    def on_revoke(self, tps):
        self.calls.append(("revoke", tps))

    def on_assign(self, tps):
        self.calls.append(("assign", tps))

    def on_lost(self, tps):
        self.calls.append(("lost", tps))


def membership(source, assignors=("range",)):
    listener = Listener()
    m = LocalMembership("g", listener=listener, assignors=[get_assignor(a) for a in assignors], session_timeout_ms=45000,
                        rebalance_timeout_ms=300000, heartbeat_interval_ms=3000, group_instance_id=None,
                        source=source)
    return m, listener


def test_membership_assigns_every_partition_and_follows_changes(source):
    source.store.create_topic("u", 1)
    m, listener = membership(source)
    assert m.generation() == (-1, "")
    m.subscribe({"t"})
    assert m.ensure_active(1.0)
    assert m.assignment() == {T0, T1}
    gen, member = m.generation()
    assert gen == 1 and member
    assert listener.calls == [("assign", [T0, T1])]
    assert m.ensure_active(1.0) and m.generation()[0] == 1    # nothing changed: no rebalance
    # A subscription change: eager, everything revoked then everything assigned.
    m.subscribe({"t", "u"})
    m.ensure_active(1.0)
    assert m.generation() == (2, member)
    assert listener.calls[1:] == [("revoke", [T0, T1]), ("assign", [T0, T1, TopicPartition("u", 0)])]
    # New partitions are picked up on the next ensure_active.
    source.store.create_partitions("u", 2)
    m.ensure_active(1.0)
    assert TopicPartition("u", 1) in m.assignment() and m.generation()[0] == 3
    m.close()
    assert listener.calls[-1] == ("revoke", [T0, T1, TopicPartition("u", 0), TopicPartition("u", 1)])
    assert m.generation() == (-1, "") and not m.ensure_active(1.0)
    assert not any(c[0] == "lost" for c in listener.calls)


def test_membership_cooperative_assignor_hands_out_only_the_difference(source):
    source.store.create_topic("u", 1)
    m, listener = membership(source, assignors=["cooperative-sticky"])
    m.subscribe({"t", "u"})
    m.ensure_active(1.0)
    m.subscribe({"u"})
    m.ensure_active(1.0)
    assert listener.calls == [("assign", [T0, T1, TopicPartition("u", 0)]), ("revoke", [T0, T1]),
                              ("assign", [])]
    assert m.assignment() == {TopicPartition("u", 0)}
    m.close(leave=False)
    assert listener.calls[-1] == ("assign", [])    # no revoke when not leaving


def test_membership_picks_up_a_topic_created_later(tmp_path):
    source = EmbeddedSource(tmp_path, allow_auto_create_topics=False)
    try:
        m, listener = membership(source)
        m.subscribe({"later"})
        m.ensure_active(1.0)
        assert m.assignment() == set()
        source.store.create_topic("later", 1)
        m.ensure_active(1.0)
        assert m.assignment() == {TopicPartition("later", 0)}
        assert listener.calls == [("assign", []), ("assign", [TopicPartition("later", 0)])]
    finally:
        source.close()
