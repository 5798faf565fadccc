"""Embedded mode end to end: pylog.Producer(log_dir=...) and
pylog.Consumer(log_dir=...) with no broker, then a real broker serving the
same directory to a real client."""
from __future__ import annotations

import pytest

import pylog
from pylog import errors
from pylog.testing import running_broker

ck = pytest.importorskip("confluent_kafka")


def _consume_all(c, n, timeout=10.0):
    import time
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(c.poll(0.2, max_records=5000))
    return out


def test_embedded_round_trip_then_a_broker_serves_it(tmp_path):
    d = str(tmp_path / "data")
    n = 20_000
    with pylog.Producer(log_dir=d, num_partitions=3) as p:
        hs = [p.send("events", b"value-%d" % i, key=b"k%d" % (i % 13),
                     headers=[("i", str(i).encode())]) for i in range(n)]
        bulk = p.send_many("events", [b"bulk-%d" % i for i in range(n)])
        assert p.flush(10) == 0
        mds = [h.get(0) for h in hs]
        bulk.get(0)
    assert {md.partition for md in mds} == {0, 1, 2}
    # Keys go where the network producer (and the Java client) would put them.
    assert all(md.partition == pylog._engine.partition_for_key(b"k%d" % (i % 13), 3)
               for i, md in enumerate(mds))

    with pylog.Consumer("events", log_dir=d, group_id="g", auto_offset_reset="earliest",
                        enable_auto_commit=False) as c:
        got = _consume_all(c, 2 * n)
        c.commit()
    assert len(got) == 2 * n
    values = sorted(bytes(r.value) for r in got)
    assert values == sorted([b"value-%d" % i for i in range(n)] + [b"bulk-%d" % i for i in range(n)])
    by_value = {bytes(r.value): r for r in got}
    assert [(k, bytes(v)) for k, v in by_value[b"value-7"].headers] == [("i", b"7")]

    # The same directory, served by a broker to confluent-kafka: the data and
    # the group's committed offsets.
    with running_broker(data_dir=d) as b:
        cc = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "g",
                          "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            tps = cc.committed([ck.TopicPartition("events", p) for p in range(3)], timeout=10)
            assert sum(tp.offset for tp in tps) == 2 * n
            cc.assign([ck.TopicPartition("events", p, 0) for p in range(3)])
            seen = []
            while len(seen) < 2 * n:
                batch = cc.consume(num_messages=10000, timeout=5)
                assert batch, f"stalled at {len(seen)}"
                seen.extend(m.value() for m in batch)
        finally:
            cc.close()
    assert sorted(seen) == values


def test_embedded_directory_is_exclusive(tmp_path):
    d = str(tmp_path / "data")
    with pylog.Producer(log_dir=d) as p:
        p.send("t", b"v").get(5)
        with pytest.raises(errors.LogLockedError):
            with running_broker(data_dir=d):
                pass
    with running_broker(data_dir=d):   # free again once the producer closed
        pass


def test_embedded_idempotent_sequences_survive_reopen(tmp_path):
    d = str(tmp_path / "data")
    for round_ in range(3):
        with pylog.Producer(log_dir=d) as p:
            offs = [p.send("t", b"r%d-%d" % (round_, i)).get(5).offset for i in range(100)]
        assert offs == list(range(round_ * 100, round_ * 100 + 100))
    with pylog.Consumer(log_dir=d) as c:
        c.assign([pylog.TopicPartition("t", 0)])
        c.seek_to_beginning()
        got = _consume_all(c, 300)
    assert [r.offset for r in got] == list(range(300))


def test_embedded_unknown_topic_with_auto_creation_off(tmp_path):
    with pylog.Producer(log_dir=str(tmp_path), allow_auto_create_topics=False) as p:
        h = p.send("nope", b"v")
        with pytest.raises(errors.UnknownTopicOrPartitionError, match="auto creation is off"):
            h.get(10)
