"""LocalStore on real directories: appends, reads, offsets, reopening,
idempotent producers, sharing and locking (no broker unless one is the point)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time

import pytest

from pylog import _engine
from pylog.client.records import consumed_records
from pylog.embedded import LocalStore
from pylog.errors import (
    InvalidRecordError,
    InvalidTopicError,
    LogClosedError,
    LogLockedError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceNumberError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from pylog.structs import OffsetAndMetadata, TopicPartition
from pylog.testing import running_broker


def decode(records, partition, fetch_offset):
    """(offset, key, value) of each record at or after fetch_offset. One place
    to switch to _engine.decode_fetched when the native decoder lands."""
    return [(r.offset, None if r.key is None else bytes(r.key), bytes(r.value))
            for r in consumed_records(partition, records, fetch_offset)]


def idempotent_batch(values, producer_id, epoch, base_sequence):
    """A record batch v2 carrying producer id, epoch and base sequence (CRC redone)."""
    batch = bytearray(_engine.encode_batch(values))
    struct.pack_into(">qhi", batch, 43, producer_id, epoch, base_sequence)
    struct.pack_into(">I", batch, 17, _engine.crc32c(bytes(batch[21:])))
    return bytes(batch)


def read_all(store, topic, partition, start=0):
    out = []
    offset = start
    while True:
        data, hw, _lso = store.read(topic, partition, offset, 1 << 20)
        if not data:
            return out, hw
        got = decode(data, partition, offset)
        out += got
        offset = got[-1][0] + 1


@pytest.fixture
def store(tmp_path):
    s = LocalStore.open(tmp_path / "data")
    yield s
    s.close()


def test_append_read_round_trip_offsets_contiguous(store):
    assert store.partitions_for("t") is None
    assert store.partitions_for("t", create=True) == [0]
    assert store.append("t", 0, _engine.encode_batch([b"a", b"b", b"c"], keys=[b"k", None, b"k"])) == (0, -1)
    assert store.append("t", 0, _engine.encode_batch([b"d"])) == (3, -1)
    # Two batches in one call are refused, as Kafka refuses them in one
    # partition of a Produce request (v3+: exactly one batch), nothing written.
    two = _engine.encode_batch([b"e", b"f"]) + _engine.encode_batch([b"g"])
    with pytest.raises(InvalidRecordError, match="exactly one record batch"):
        store.append("t", 0, two)
    assert store.append("t", 0, _engine.encode_batch([b"e", b"f"])) == (4, -1)
    assert store.append("t", 0, _engine.encode_batch([b"g"])) == (6, -1)
    records, hw = read_all(store, "t", 0)
    assert hw == 7
    assert records == [(0, b"k", b"a"), (1, None, b"b"), (2, b"k", b"c"), (3, None, b"d"),
                       (4, None, b"e"), (5, None, b"f"), (6, None, b"g")]
    # A read from inside a batch starts at that batch; decoding drops the rest.
    data, hw, lso = store.read("t", 0, 1, 1 << 20)
    assert (hw, lso) == (7, 0)
    assert decode(data, 0, 1)[0] == (1, None, b"b")
    assert store.read("t", 0, 7, 1 << 20) == (b"", 7, 0)
    with pytest.raises(OffsetOutOfRangeError):
        store.read("t", 0, 8, 1 << 20)
    with pytest.raises(UnknownTopicOrPartitionError):
        store.read("t", 1, 0, 1 << 20)
    with pytest.raises(UnknownTopicOrPartitionError):
        store.append("nope", 0, _engine.encode_batch([b"x"]))


def test_read_respects_max_bytes_but_returns_a_whole_first_batch(store):
    store.create_topic("t", 1)
    for i in range(10):
        store.append("t", 0, _engine.encode_batch([bytes([i]) * 1000]))
    one, _, _ = store.read("t", 0, 0, 10)            # smaller than a batch: still one batch (KIP-74)
    assert [r[0] for r in decode(one, 0, 0)] == [0]
    some, _, _ = store.read("t", 0, 0, 3500)
    assert [r[0] for r in decode(some, 0, 0)] == [0, 1, 2]
    assert isinstance(some, bytes)  # copied out: nothing pins a segment


def test_topics_create_and_partition_counts(tmp_path):
    s = LocalStore.open(tmp_path, num_partitions=3)
    try:
        assert s.partitions_for("auto", create=True) == [0, 1, 2]
        s.create_topic("four", 4)
        with pytest.raises(TopicAlreadyExistsError):
            s.create_topic("four", 2)
        with pytest.raises(InvalidTopicError):
            s.create_topic("bad/name")
        assert s.topics() == ["auto", "four"]
    finally:
        s.close()
    s = LocalStore.open(tmp_path, auto_create_topics=False)
    try:
        assert s.partitions_for("other", create=True) is None
        assert s.partitions_for("four") == [0, 1, 2, 3]
    finally:
        s.close()
    # The broker's own layout: its topics file names them.
    with open(tmp_path / "pylog-topics.json") as f:
        assert set(json.load(f)["topics"]) == {"auto", "four"}


def test_reopen_keeps_data_commits_and_producer_ids(tmp_path):
    s = LocalStore.open(tmp_path)
    s.create_topic("t", 2)
    s.append("t", 1, _engine.encode_batch([b"one", b"two"]))
    s.commit_offsets("g", {TopicPartition("t", 1): OffsetAndMetadata(2, "meta", 0),
                           TopicPartition("t", 0): OffsetAndMetadata(0)})
    s.commit_offsets("g", {TopicPartition("t", 1): OffsetAndMetadata(1, "again")})
    pid1 = s.init_producer_id()
    s.close()
    assert s.closed
    with pytest.raises(LogClosedError):
        s.read("t", 1, 0, 100)

    s = LocalStore.open(tmp_path)
    try:
        assert read_all(s, "t", 1)[0] == [(0, None, b"one"), (1, None, b"two")]
        assert s.append("t", 1, _engine.encode_batch([b"three"]))[0] == 2
        got = s.committed_offsets("g", [TopicPartition("t", 0), TopicPartition("t", 1), TopicPartition("u", 0)])
        assert got == {TopicPartition("t", 0): OffsetAndMetadata(0, "", -1),
                       TopicPartition("t", 1): OffsetAndMetadata(1, "again", -1),
                       TopicPartition("u", 0): None}
        assert s.committed_offsets("other", [TopicPartition("t", 0)]) == {TopicPartition("t", 0): None}
        pid2 = s.init_producer_id()
        assert pid2[0] > pid1[0] and pid1[1] == pid2[1] == 0
    finally:
        s.close()


def test_commit_for_unknown_partition_is_refused(store):
    store.create_topic("t", 1)
    with pytest.raises(UnknownTopicOrPartitionError):
        store.commit_offsets("g", {TopicPartition("t", 5): OffsetAndMetadata(1)})
    assert store.committed_offsets("g", [TopicPartition("t", 5)]) == {TopicPartition("t", 5): None}


def test_idempotent_batches_are_deduplicated(tmp_path):
    s = LocalStore.open(tmp_path)
    s.create_topic("t", 1)
    pid, epoch = s.init_producer_id()
    b0 = idempotent_batch([b"a", b"b"], pid, epoch, 0)
    b1 = idempotent_batch([b"c"], pid, epoch, 2)
    assert s.append("t", 0, b0)[0] == 0
    assert s.append("t", 0, b1)[0] == 2
    # A retry of either: nothing written, the original offset back.
    assert s.append("t", 0, b0)[0] == 0
    assert s.append("t", 0, b1)[0] == 2
    assert s.high_watermark("t", 0) == 3
    with pytest.raises(OutOfOrderSequenceNumberError):
        s.append("t", 0, idempotent_batch([b"gap"], pid, epoch, 7))
    s.close()
    # The producer state survives a reopen (snapshot), so a late retry is still caught.
    s = LocalStore.open(tmp_path)
    try:
        assert s.append("t", 0, b1)[0] == 2
        assert s.append("t", 0, idempotent_batch([b"d"], pid, epoch, 3))[0] == 3
        assert [v for _, _, v in read_all(s, "t", 0)[0]] == [b"a", b"b", b"c", b"d"]
    finally:
        s.close()


def test_list_offset(store):
    store.create_topic("t", 1)
    store.append("t", 0, _engine.encode_batch([b"a", b"b"], timestamps=[1000, 2000]))
    store.append("t", 0, _engine.encode_batch([b"c"], timestamps=[3000]))
    assert store.list_offset("t", 0, -2) == (0, -1)
    assert store.list_offset("t", 0, -1) == (3, -1)
    assert store.list_offset("t", 0, 1500) == (1, 2000)
    assert store.list_offset("t", 0, 3000) == (2, 3000)
    assert store.list_offset("t", 0, 3001) == (-1, -1)


def test_one_store_per_directory_reference_counted(tmp_path):
    a = LocalStore.open(tmp_path)
    b = LocalStore.open(str(tmp_path) + "/.")  # same directory, another spelling
    assert a is b
    a.create_topic("t", 1)
    a.append("t", 0, _engine.encode_batch([b"x"]))
    a.close()
    assert not b.closed                        # b's reference keeps the logs open
    assert b.read("t", 0, 0, 100)[1] == 1
    b.close()
    assert b.closed
    c = LocalStore.open(tmp_path)              # a fresh store after the last close
    try:
        assert c is not a and c.high_watermark("t", 0) == 1
    finally:
        c.close()


def test_directory_is_locked_against_a_broker(tmp_path):
    s = LocalStore.open(tmp_path)
    try:
        s.create_topic("t", 1)
        s.append("t", 0, _engine.encode_batch([b"x"]))
        # The broker cannot open the partitions the store holds.
        with pytest.raises(LogLockedError), running_broker(data_dir=tmp_path):
            pass
        assert s.append("t", 0, _engine.encode_batch([b"y"]))[0] == 1
    finally:
        s.close()
    # And a store cannot open a directory a broker is serving.
    with running_broker(data_dir=tmp_path), pytest.raises(LogLockedError):
        LocalStore.open(tmp_path)
    # Nothing was left locked by the failed opens.
    s = LocalStore.open(tmp_path)
    try:
        assert s.high_watermark("t", 0) == 2
    finally:
        s.close()


def test_internal_topics_are_not_client_topics(store):
    store.commit_offsets("g", {})  # nothing to store: the offsets topic is not created
    store.create_topic("t", 1)
    store.commit_offsets("g", {TopicPartition("t", 0): OffsetAndMetadata(0)})
    assert store.topics() == ["t"]
    with pytest.raises(InvalidTopicError):
        store.append("__consumer_offsets", 0, _engine.encode_batch([b"x"]))
    assert "__consumer_offsets-0" in os.listdir(store.data_dir)


def test_retention_runs_without_a_broker(tmp_path):
    s = LocalStore.open(tmp_path, config={"log.retention.check.interval.ms": "1"})
    try:
        s.create_topic("r", 1, {"segment.bytes": "1024", "retention.ms": "60000"})
        for _ in range(5):  # records from 1970: past retention at once
            s.append("r", 0, _engine.encode_batch([b"x" * 600], timestamps=[1000]))
        # The store's broker core runs retention in its background task, as a
        # broker does: wait for it.
        deadline = time.monotonic() + 60
        while s.log_start_offset("r", 0) < 3:   # whole old segments deleted, the active one kept
            assert time.monotonic() < deadline, f"log start still {s.log_start_offset('r', 0)}"
            time.sleep(0.01)
        with pytest.raises(OffsetOutOfRangeError):
            s.read("r", 0, 0, 1 << 20)
        assert s.list_offset("r", 0, -2)[0] == s.log_start_offset("r", 0)
    finally:
        s.close()


def test_a_second_process_cannot_open_the_directory(tmp_path):
    holder = ("import sys; from pylog.embedded import LocalStore; s = LocalStore.open(sys.argv[1]); "
              "print('ready', flush=True); sys.stdin.read(); s.close()")
    child = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(LogLockedError):
            LocalStore.open(tmp_path)
    finally:
        child.stdin.close()
        assert child.wait(30) == 0
        child.stdout.close()
    LocalStore.open(tmp_path).close()
