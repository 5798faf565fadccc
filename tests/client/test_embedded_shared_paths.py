"""The embedded store and the broker answer through the same code: ListOffsets
by timestamp on a directory gives the same (offset, timestamp) embedded as a
real broker on that directory gives confluent-kafka over the wire, compressed
batches and timestamps out of order within a batch included; and a directory
goes back and forth between the two, each adding topics, partitions, records
and group commits that the other then serves."""
from __future__ import annotations

import confluent_kafka as ck
import confluent_kafka.admin
import pytest

from pylog import _engine
from pylog.client.records import consumed_records
from pylog.embedded import LocalStore
from pylog.structs import OffsetAndMetadata, TopicPartition
from pylog.testing import running_broker

from .test_embedded_broker import BROKER_CONFIG, consume

# Per batch: (compression, record timestamps). Out of order within a batch,
# so "the first offset whose timestamp is >= t" is not the batch's base and
# not the time index's entry.
BATCHES = [
    (None, [1000, 3000, 2000]),
    ("gzip", [4000, 6000, 5000, 6500]),
    ("lz4", [7000]),
    (None, [9000, 8000, 10000]),
]
ASKED = [0, 999, 1000, 1001, 2000, 2500, 3000, 3001, 4500, 5500, 6000, 6200, 6501, 7000,
         7500, 8000, 8500, 9500, 10000, 10001]


def write_batches(store, topic):
    n = 0
    for codec, stamps in BATCHES:
        values = [b"v%d" % (n + i) for i in range(len(stamps))]
        store.append(topic, 0, _engine.encode_batch(values, timestamps=stamps, compression=codec))
        n += len(stamps)
    return n


def broker_offsets_for_times(bootstrap, topic, stamps):
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "lookup", "enable.auto.commit": False})
    try:
        out = {}
        for ts in stamps:
            got = c.offsets_for_times([ck.TopicPartition(topic, 0, ts)], timeout=20)
            assert got[0].error is None, got[0].error
            out[ts] = got[0].offset
        return out
    finally:
        c.close()


def expected_offset(ts):
    """Kafka's rule, worked out from BATCHES: the first record, in offset
    order, whose timestamp is >= ts; -1 (confluent-kafka's OFFSET_END) if none."""
    flat = [s for _, stamps in BATCHES for s in stamps]
    for off, s in enumerate(flat):
        if s >= ts:
            return off, s
    return -1, -1


def test_list_offsets_by_timestamp_same_answer_embedded_and_broker(tmp_path):
    store = LocalStore.open(tmp_path)
    try:
        store.create_topic("t", 1)
        n = write_batches(store, "t")
        embedded = {ts: store.list_offset("t", 0, ts) for ts in ASKED}
        assert store.list_offset("t", 0, -1) == (n, -1)
        assert store.list_offset("t", 0, -1, isolation_level=1) == (n, -1)
        assert store.list_offset("t", 0, -2) == (0, -1)
    finally:
        store.close()
    # Kafka's answer, record by record (not a batch's base offset or max timestamp).
    assert embedded == {ts: expected_offset(ts) for ts in ASKED}
    with running_broker(data_dir=tmp_path, config=BROKER_CONFIG) as broker:
        over_wire = broker_offsets_for_times(broker, "t", ASKED)
    assert over_wire == {ts: embedded[ts][0] for ts in ASKED}


def test_list_offsets_after_delete_records_starts_at_the_log_start(tmp_path):
    store = LocalStore.open(tmp_path)
    try:
        store.create_topic("t", 1)
        write_batches(store, "t")
        p = store._partition("t", 0)
        p.delete_records(2)   # inside the first batch: offsets 0 and 1 are gone
        # 1000 and 3000 are below the log start now: the first record at or
        # after offset 2 with timestamp >= 1000 is offset 2 (2000).
        assert store.list_offset("t", 0, 1000) == (2, 2000)
        assert store.list_offset("t", 0, -2) == (2, -1)
    finally:
        store.close()


@pytest.mark.parametrize("codec", [None, "gzip"])
def test_list_offsets_by_timestamp_skips_a_batch_cut_by_the_log_start(tmp_path, codec):
    # Kafka's fetchOffsetByTimestamp: the first offset >= the log start whose
    # timestamp is >= the target. The first batch late enough ([1000, 3000,
    # 2000]) holds its only late-enough record (3000, offset 1) below the log
    # start (2), so the answer is the next batch's first record.
    store = LocalStore.open(tmp_path)
    try:
        store.create_topic("t", 1)
        for stamps in ([1000, 3000, 2000], [4000, 4500]):
            store.append("t", 0, _engine.encode_batch([b"v%d" % ts for ts in stamps], timestamps=stamps,
                                                      compression=codec))
        store._partition("t", 0).delete_records(2)
        assert store.list_offset("t", 0, 2500) == (3, 4000)
        assert store.list_offset("t", 0, 2000) == (2, 2000)
        assert store.list_offset("t", 0, 4600) == (-1, -1)
    finally:
        store.close()
    with running_broker(data_dir=tmp_path, config=BROKER_CONFIG) as broker:
        assert broker_offsets_for_times(broker, "t", [2500, 2000]) == {2500: 3, 2000: 2}


def test_directory_goes_back_and_forth_between_store_and_broker(tmp_path):
    # 1. embedded: topic a (2 partitions), records, a commit
    store = LocalStore.open(tmp_path)
    try:
        store.create_topic("a", 2)
        for p in (0, 1):
            store.append("a", p, _engine.encode_batch([b"a%d-%d" % (p, i) for i in range(10)]))
        store.commit_offsets("g", {TopicPartition("a", 0): OffsetAndMetadata(3)})
    finally:
        store.close()
    # 2. broker: serves them, auto-creates b, commits
    with running_broker(data_dir=tmp_path, config=BROKER_CONFIG) as broker:
        c = ck.Consumer({"bootstrap.servers": broker, "group.id": "g", "enable.auto.commit": False})
        try:
            assert c.committed([ck.TopicPartition("a", 0)], timeout=10)[0].offset == 3
            c.assign([ck.TopicPartition("a", 1, 0)])
            assert [m.value() for m in consume(c, 10)] == [b"a1-%d" % i for i in range(10)]
            c.commit(offsets=[ck.TopicPartition("a", 1, 7)], asynchronous=False)
        finally:
            c.close()
        pr = ck.Producer({"bootstrap.servers": broker})
        for i in range(5):
            pr.produce("b", value=b"b%d" % i)
        assert pr.flush(10) == 0
    # 3. embedded again: sees b, both commits; grows a to 3 partitions, creates c
    store = LocalStore.open(tmp_path)
    try:
        assert store.topics() == ["a", "b"]
        assert store.high_watermark("b", 0) == 5
        got = store.committed_offsets("g", [TopicPartition("a", 0), TopicPartition("a", 1)])
        assert {tp.partition: om.offset for tp, om in got.items()} == {0: 3, 1: 7}
        store.create_partitions("a", 3)
        store.append("a", 2, _engine.encode_batch([b"a2-new"]))
        store.create_topic("c", 1)
        store.append("c", 0, _engine.encode_batch([b"c0"]))
        store.append("b", 0, _engine.encode_batch([b"b-embedded"]))
        store.commit_offsets("g", {TopicPartition("a", 2): OffsetAndMetadata(1)})
    finally:
        store.close()
    # 4. broker again: serves all of it, including what embedded mode added
    # after the broker had taken the directory over.
    with running_broker(data_dir=tmp_path, config=BROKER_CONFIG) as broker:
        md = ck.admin.AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10)
        assert {t: len(md.topics[t].partitions) for t in ("a", "b", "c")} == {"a": 3, "b": 1, "c": 1}
        c = ck.Consumer({"bootstrap.servers": broker, "group.id": "g", "enable.auto.commit": False})
        try:
            committed = c.committed([ck.TopicPartition("a", p) for p in (0, 1, 2)], timeout=10)
            assert [tp.offset for tp in committed] == [3, 7, 1]
            c.assign([ck.TopicPartition("a", 2, 0), ck.TopicPartition("c", 0, 0), ck.TopicPartition("b", 0, 5)])
            got = sorted((m.topic(), m.value()) for m in consume(c, 3))
        finally:
            c.close()
        assert got == [("a", b"a2-new"), ("b", b"b-embedded"), ("c", b"c0")]
    # 5. and the store reads what it wrote through the broker's restarts
    store = LocalStore.open(tmp_path)
    try:
        data, hw, _ = store.read("a", 2, 0, 1 << 20)
        assert hw == 1 and [bytes(r.value) for r in consumed_records(0, data, 0)] == [b"a2-new"]
    finally:
        store.close()


@pytest.mark.parametrize("codec", [None, "zstd"])
def test_embedded_consumer_offsets_for_times_uses_the_shared_body(tmp_path, codec):
    import pylog
    store = LocalStore.open(tmp_path)
    try:
        store.create_topic("t", 1)
        store.append("t", 0, _engine.encode_batch([b"x", b"y", b"z"], timestamps=[100, 300, 200],
                                                  compression=codec))
    finally:
        store.close()
    c = pylog.Consumer(log_dir=tmp_path, group_id="q")
    try:
        got = c.offsets_for_times({TopicPartition("t", 0): 250})
        assert got[TopicPartition("t", 0)].offset == 1
        assert got[TopicPartition("t", 0)].timestamp == 300
    finally:
        c.close()
