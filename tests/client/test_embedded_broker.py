"""A directory written embedded is a broker's directory, and back: a real
pylog broker started on it serves the records (read with confluent-kafka,
byte-exact) and the committed group offsets; a directory a broker wrote
opens as a LocalStore with its records and commits."""
from __future__ import annotations

import time

import confluent_kafka as ck

from pylog import _engine
from pylog.client.records import consumed_records
from pylog.embedded import LocalStore
from pylog.structs import OffsetAndMetadata, TopicPartition
from pylog.testing import running_broker

BROKER_CONFIG = {"group.initial.rebalance.delay.ms": "100", "group.min.session.timeout.ms": "1000"}
N = 10_000
BATCH = 250


def expected_records():
    """(partition, key, value, headers, timestamp) for N records over 2 partitions."""
    base = 1_700_000_000_000
    out = []
    for i in range(N):
        key = None if i % 7 == 0 else b"key-%d" % i
        value = bytes([i % 251]) * (i % 300) + b"value-%d" % i
        headers = [("h", b"%d" % i)] if i % 3 == 0 else []
        out.append((i % 2, key, value, headers, base + i))
    return out


def write_embedded(data_dir, records):
    store = LocalStore.open(data_dir)
    try:
        store.create_topic("t", 2)
        for p in (0, 1):
            mine = [r for r in records if r[0] == p]
            for i in range(0, len(mine), BATCH):
                chunk = mine[i:i + BATCH]
                batch = _engine.encode_batch([r[2] for r in chunk], keys=[r[1] for r in chunk],
                                             headers=[r[3] for r in chunk], timestamps=[r[4] for r in chunk])
                store.append("t", p, batch)
        store.commit_offsets("g", {TopicPartition("t", 0): OffsetAndMetadata(4000, "embedded"),
                                   TopicPartition("t", 1): OffsetAndMetadata(1234)})
    finally:
        store.close()


def consume(consumer, count, timeout_s=20.0):
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        for m in consumer.consume(1000, 0.5):
            assert m.error() is None, m.error()
            out.append(m)
    return out


def test_broker_serves_what_was_written_embedded(tmp_path):
    records = expected_records()
    write_embedded(tmp_path, records)
    with running_broker(data_dir=tmp_path, config=BROKER_CONFIG) as broker:
        # Everything, byte-exact, in order per partition.
        c = ck.Consumer({"bootstrap.servers": broker, "group.id": "reader", "enable.auto.commit": False})
        try:
            c.assign([ck.TopicPartition("t", p, ck.OFFSET_BEGINNING) for p in (0, 1)])
            got = consume(c, N)
        finally:
            c.close()
        assert len(got) == N
        for p in (0, 1):
            mine = [m for m in got if m.partition() == p]
            want = [r for r in records if r[0] == p]
            assert [m.offset() for m in mine] == list(range(len(want)))
            assert [(m.key(), m.value(), m.headers() or [], m.timestamp()[1]) for m in mine] == \
                [(r[1], r[2], r[3] or [], r[4]) for r in want]

        # The group's committed offsets are served (OffsetFetch) and used.
        c = ck.Consumer({"bootstrap.servers": broker, "group.id": "g", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
        try:
            committed = c.committed([ck.TopicPartition("t", 0), ck.TopicPartition("t", 1)], timeout=10)
            assert [(tp.partition, tp.offset) for tp in committed] == [(0, 4000), (1, 1234)]
            assert committed[0].metadata == "embedded"
            c.subscribe(["t"])
            rest = consume(c, (5000 - 4000) + (5000 - 1234))
        finally:
            c.close()
        assert len(rest) == 1000 + 3766
        for p, start in ((0, 4000), (1, 1234)):
            assert [m.offset() for m in rest if m.partition() == p] == list(range(start, 5000))


def test_store_opens_a_directory_a_broker_wrote(tmp_path):
    with running_broker(data_dir=tmp_path, config=BROKER_CONFIG) as broker:
        p = ck.Producer({"bootstrap.servers": broker, "enable.idempotence": True})
        for i in range(100):
            p.produce("b", value=b"v%d" % i, key=b"k%d" % i)
        assert p.flush(10) == 0
        c = ck.Consumer({"bootstrap.servers": broker, "group.id": "h", "enable.auto.commit": False})
        try:
            c.commit(offsets=[ck.TopicPartition("b", 0, 60)], asynchronous=False)
        finally:
            c.close()

    store = LocalStore.open(tmp_path)
    try:
        assert store.topics() == ["b"]
        data, hw, _ = store.read("b", 0, 0, 1 << 20)
        assert hw == 100
        assert [(bytes(r.key), bytes(r.value)) for r in consumed_records(0, data, 0)] == \
            [(b"k%d" % i, b"v%d" % i) for i in range(100)]
        assert store.committed_offsets("h", [TopicPartition("b", 0)]) == \
            {TopicPartition("b", 0): OffsetAndMetadata(60, "", -1)}
        # Commits on top of the broker's, and producer ids past the broker's block.
        store.commit_offsets("h", {TopicPartition("b", 0): OffsetAndMetadata(70)})
        pid, _ = store.init_producer_id()
        assert pid >= 1000
        store.append("b", 0, _engine.encode_batch([b"embedded"]))
    finally:
        store.close()

    with running_broker(data_dir=tmp_path, config=BROKER_CONFIG) as broker:
        c = ck.Consumer({"bootstrap.servers": broker, "group.id": "h", "enable.auto.commit": False})
        try:
            assert c.committed([ck.TopicPartition("b", 0)], timeout=10)[0].offset == 70
            c.assign([ck.TopicPartition("b", 0, 100)])
            got = consume(c, 1)
        finally:
            c.close()
        assert [(m.offset(), m.value()) for m in got] == [(100, b"embedded")]


def test_committed_offsets_of_a_group_with_members_can_be_overwritten(tmp_path):
    """A group a broker stored with members (its metadata record) still takes
    embedded commits: those members cannot be alive while the store holds the
    directory."""
    with running_broker(data_dir=tmp_path, config=BROKER_CONFIG) as broker:
        p = ck.Producer({"bootstrap.servers": broker})
        p.produce("m", value=b"x")
        assert p.flush(10) == 0
        c = ck.Consumer({"bootstrap.servers": broker, "group.id": "live", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
        c.subscribe(["m"])
        assert len(consume(c, 1)) == 1
        c.commit(asynchronous=False)
        # The broker stops with the member still in the group (its metadata stored).
        members = broker.broker.call(lambda: len(broker.broker.groups.groups["live"].members))
        assert members == 1
    try:
        store = LocalStore.open(tmp_path)
        try:
            got = store.committed_offsets("live", [TopicPartition("m", 0)])
            assert got[TopicPartition("m", 0)].offset == 1
            store.commit_offsets("live", {TopicPartition("m", 0): OffsetAndMetadata(0)})
            assert store.committed_offsets("live", [TopicPartition("m", 0)])[TopicPartition("m", 0)].offset == 0
        finally:
            store.close()
    finally:
        c.close()
