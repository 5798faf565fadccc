"""Broker-side idempotence (KAFKA-NOTES §6.1), with raw Produce requests so each
rule is exercised exactly: retried duplicates get their original offsets,
sequence gaps and stale epochs are refused, and the state survives a restart
both from its snapshot and rebuilt from the log alone."""
import glob
import os
import struct

import pytest
from kafkawire import Wire

from pylog import _engine, crc32c
from pylog.protocol import messages as m
from pylog.testing import running_broker

OUT_OF_ORDER, INVALID_EPOCH = 45, 47


def idempotent_batch(pid, epoch, seq, n, tag=b"v"):
    """A record batch of n records with producer fields set (CRC recomputed)."""
    b = bytearray(_engine.encode_batch([tag + b"%d" % (seq + i) for i in range(n)]))
    struct.pack_into(">qhi", b, 43, pid, epoch, seq)
    struct.pack_into(">I", b, 17, crc32c(bytes(b[21:])))
    return bytes(b)


def produce(w, topic, batch, partition=0):
    req = m.ProduceRequest(acks=-1, timeout_ms=5000, topic_data=[m.ProduceRequest.TopicProduceData(
        name=topic, partition_data=[m.ProduceRequest.PartitionProduceData(index=partition, records=batch)])])
    p = w.request(0, 7, req).responses[0].partition_responses[0]
    return p.error_code, p.base_offset


def init_pid(w):
    r = w.request(22, 1, m.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000))
    assert r.error_code == 0 and r.producer_epoch == 0
    return r.producer_id


def leo(handle, topic="t", partition=0):
    return handle.broker.log_manager.partitions[(topic, partition)].log_end_offset


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "data") as b:
        b.broker.create_topic("t", 2)
        yield b


def test_producer_ids_are_unique_even_across_restarts(broker):
    w = Wire(broker)
    ids = {init_pid(w) for _ in range(5)}
    w.close()
    assert len(ids) == 5
    broker.restart()
    w = Wire(broker)
    later = init_pid(w)
    w.close()
    assert later > max(ids)


def test_retried_batch_gets_its_original_offset_and_is_not_written_twice(broker):
    w = Wire(broker)
    pid = init_pid(w)
    assert produce(w, "t", idempotent_batch(pid, 0, 0, 10)) == (0, 0)
    assert produce(w, "t", idempotent_batch(pid, 0, 10, 5)) == (0, 10)
    # A retry of the first batch (same sequences): success with its first offset.
    assert produce(w, "t", idempotent_batch(pid, 0, 0, 10)) == (0, 0)
    assert leo(broker) == 15
    assert produce(w, "t", idempotent_batch(pid, 0, 15, 1)) == (0, 15)
    w.close()


def test_sequence_gap_is_refused_and_nothing_appended(broker):
    w = Wire(broker)
    pid = init_pid(w)
    assert produce(w, "t", idempotent_batch(pid, 0, 0, 3))[0] == 0
    assert produce(w, "t", idempotent_batch(pid, 0, 5, 3))[0] == OUT_OF_ORDER
    assert leo(broker) == 3
    # The producer is not stuck: the right next sequence still goes through.
    assert produce(w, "t", idempotent_batch(pid, 0, 3, 2)) == (0, 3)
    w.close()


def test_only_the_last_five_batches_are_remembered(broker):
    w = Wire(broker)
    pid = init_pid(w)
    for i in range(6):
        assert produce(w, "t", idempotent_batch(pid, 0, i, 1)) == (0, i)
    assert produce(w, "t", idempotent_batch(pid, 0, 1, 1)) == (0, 1)  # 5th newest: duplicate
    assert produce(w, "t", idempotent_batch(pid, 0, 0, 1))[0] == OUT_OF_ORDER  # 6th: forgotten
    assert leo(broker) == 6
    w.close()


def test_epochs_fence_and_restart_sequences(broker):
    w = Wire(broker)
    pid = init_pid(w)
    assert produce(w, "t", idempotent_batch(pid, 0, 0, 2))[0] == 0
    assert produce(w, "t", idempotent_batch(pid, 1, 7, 1))[0] == OUT_OF_ORDER  # new epoch must start at 0
    assert produce(w, "t", idempotent_batch(pid, 1, 0, 1))[0] == 0
    assert produce(w, "t", idempotent_batch(pid, 0, 2, 1))[0] == INVALID_EPOCH  # the old epoch is fenced
    assert leo(broker) == 3
    w.close()


def test_state_is_per_partition(broker):
    w = Wire(broker)
    pid = init_pid(w)
    assert produce(w, "t", idempotent_batch(pid, 0, 0, 4), partition=0) == (0, 0)
    assert produce(w, "t", idempotent_batch(pid, 0, 0, 4), partition=1) == (0, 0)
    assert leo(broker, "t", 1) == 4
    w.close()


@pytest.mark.parametrize("snapshot", [True, False], ids=["from-snapshot", "rebuilt-from-log"])
def test_duplicates_are_caught_after_a_restart(broker, snapshot):
    w = Wire(broker)
    pid = init_pid(w)
    for i in range(3):
        assert produce(w, "t", idempotent_batch(pid, 0, 4 * i, 4)) == (0, 4 * i)
    w.close()
    broker.broker.stop_in_thread()
    snaps = glob.glob(os.path.join(broker.data_dir, "t-0", "*.snapshot"))
    assert snaps, "a clean shutdown writes a producer state snapshot"
    if not snapshot:
        for s in snaps:
            os.unlink(s)
    from pylog.broker import Broker, BrokerConfig
    cfg = dict(broker._config, listeners=f"PLAINTEXT://127.0.0.1:{broker.port}")
    broker.broker = Broker(BrokerConfig(cfg)).start_in_thread()
    w = Wire(broker)
    assert produce(w, "t", idempotent_batch(pid, 0, 4, 4)) == (0, 4)   # a late retry
    assert produce(w, "t", idempotent_batch(pid, 0, 20, 1))[0] == OUT_OF_ORDER
    assert produce(w, "t", idempotent_batch(pid, 0, 12, 1)) == (0, 12)
    assert leo(broker) == 13
    w.close()
