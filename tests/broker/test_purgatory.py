"""The purgatory (broker/purgatory.py) as clients meet it: a long-poll Fetch is
answered when data arrives (the log-end/high-watermark listeners complete it),
not at max_wait_ms; one that wants more bytes keeps waiting; each wait leaves
the purgatory when it ends."""
import time

import pytest
from kafkawire import Wire

from pylog import _engine
from pylog.protocol import messages as m
from pylog.testing import running_broker

DEADLINE = 30.0


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "d") as b:
        b.broker.create_topic("t", 1)
        yield b


def fetch(max_wait_ms, min_bytes, offset=0):
    F = m.FetchRequest
    return F(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=min_bytes, max_bytes=1 << 20, isolation_level=0,
             topics=[F.FetchTopic(topic="t", partitions=[F.FetchPartition(partition=0, fetch_offset=offset,
                                                                           partition_max_bytes=1 << 20)])])


def produce(b, values):
    P = m.ProduceRequest
    w = Wire(b)
    try:
        w.send(0, 7, P(transactional_id=None, acks=-1, timeout_ms=30000, topic_data=[P.TopicProduceData(
            name="t", partition_data=[P.PartitionProduceData(index=0, records=_engine.encode_batch(values))])]))
        r = w.receive(0, 7)
    finally:
        w.close()
    assert r.responses[0].partition_responses[0].error_code == 0


def watching(b):
    part = b.broker.log_manager.partitions[("t", 0)]
    return b.broker.call(lambda: b.broker.handlers.purgatory.watching(part))


def wait_for(cond, what):
    deadline = time.monotonic() + DEADLINE
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_long_poll_is_completed_by_new_data_not_by_its_deadline(broker):
    w = Wire(broker)
    w.sock.settimeout(DEADLINE)
    cid = w.send(1, 11, fetch(max_wait_ms=600_000, min_bytes=1))   # ten minutes
    wait_for(lambda: watching(broker) == 1, "the fetch to wait")
    produce(broker, [b"hello"])
    r = w.receive(1, 11, cid)     # long before ten minutes: the append completed it
    recs = r.responses[0].partitions[0].records
    assert r.responses[0].partitions[0].high_watermark == 1 and recs
    assert watching(broker) == 0
    w.close()


def test_a_long_poll_wanting_more_bytes_keeps_waiting_then_times_out(broker):
    w = Wire(broker)
    w.sock.settimeout(DEADLINE)
    cid = w.send(1, 11, fetch(max_wait_ms=10_000, min_bytes=1 << 20))
    wait_for(lambda: watching(broker) == 1, "the fetch to wait")
    produce(broker, [b"small"])
    # The append woke it; too few bytes, so it waits again (in the purgatory).
    assert watching(broker) == 1
    r = w.receive(1, 11, cid)     # at max_wait_ms, with what there is
    assert r.responses[0].partitions[0].records
    assert watching(broker) == 0
    w.close()
