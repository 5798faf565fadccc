"""Transactions on partitions (KAFKA-NOTES §2.4, §6.3): transactional batches,
WriteTxnMarkers written as a coordinator writes them, the last stable offset,
the aborted-transaction index in Kafka's format, read_committed Fetch and
ListOffsets, and real clients' read_committed consumers skipping aborted
records. The transaction coordinator is another module: here producer ids
come from InitProducerId without a transactional id and markers are sent
in-process through the broker's own WriteTxnMarkers body, as a lone broker's
coordinator sends them."""
from __future__ import annotations

import asyncio
import glob
import os
import socket
import struct
import time
import uuid

import pytest
from kafkawire import Wire

from pylog import _engine, crc32c
from pylog.protocol import messages as m
from pylog.testing import running_broker

INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE, COORDINATOR_FENCED, TXN_ID_AUTH = 47, 48, 52, 53
NOT_ENOUGH_REPLICAS = 19
ENTRY = struct.Struct(">hqqqq")


def txn_batch(pid, epoch, seq, values, transactional=True, timestamp=None):
    """A record batch with producer fields set and the transactional bit."""
    b = bytearray(_engine.encode_batch(values, timestamps=None if timestamp is None else [timestamp] * len(values)))
    struct.pack_into(">qhi", b, 43, pid, epoch, seq)
    if transactional:
        b[22] |= 0x10
    struct.pack_into(">I", b, 17, crc32c(bytes(b[21:])))
    return bytes(b)


def produce(w, topic, batch, partition=0, txn_id="txn-test"):
    req = m.ProduceRequest(transactional_id=txn_id, acks=-1, timeout_ms=5000,
                           topic_data=[m.ProduceRequest.TopicProduceData(
                               name=topic, partition_data=[m.ProduceRequest.PartitionProduceData(
                                   index=partition, records=batch)])])
    p = w.request(0, 7, req).responses[0].partition_responses[0]
    return p.error_code, p.base_offset


def init_pid(w):
    r = w.request(22, 1, m.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60000))
    assert r.error_code == 0
    return r.producer_id, r.producer_epoch


def write_marker(handle, topic, pid, epoch, commit, partitions=(0,), coordinator_epoch=0):
    """The broker's WriteTxnMarkers body, run on its loop as its own
    coordinator calls it: the error code of each partition."""
    M = m.WriteTxnMarkersRequest
    req = M(markers=[M.WritableTxnMarker(producer_id=pid, producer_epoch=epoch, transaction_result=commit,
                                         coordinator_epoch=coordinator_epoch,
                                         topics=[M.WritableTxnMarkerTopic(name=topic,
                                                                          partition_indexes=list(partitions))])])
    b = handle.broker
    resp = asyncio.run_coroutine_threadsafe(b.handlers.txn_partition_apis.write_markers(req), b._loop).result(60)
    return [p.error_code for p in resp.markers[0].topics[0].partitions]


def fetch(w, topic, offset, isolation, partition=0):
    req = m.FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=isolation,
                         topics=[m.FetchRequest.FetchTopic(topic=topic, partitions=[
                             m.FetchRequest.FetchPartition(partition=partition, fetch_offset=offset,
                                                           partition_max_bytes=1 << 20)])])
    return w.request(1, 11, req).responses[0].partitions[0]


def batch_offsets(records):
    """(base offset, last offset, is control) of each fetched batch."""
    data = bytes(records or b"")
    return [(h[1], h[1] + h[2], bool(h[8] & 0x20)) for h in _engine.batch_headers(data)]


def list_offset(w, topic, isolation, partition=0, timestamp=-1):
    req = m.ListOffsetsRequest(replica_id=-1, isolation_level=isolation, topics=[
        m.ListOffsetsRequest.ListOffsetsTopic(name=topic, partitions=[
            m.ListOffsetsRequest.ListOffsetsPartition(partition_index=partition, timestamp=timestamp)])])
    return w.request(2, 2, req).topics[0].partitions[0].offset


def partition_of(handle, topic, index=0):
    return handle.broker.log_manager.partitions[(topic, index)]


@pytest.fixture
def broker(tmp_path):
    """A broker of its own with topic "t" (one partition, small segments so a
    test can roll them)."""
    with running_broker(tmp_path / "data") as handle:
        handle.broker.create_topic("t", 1, configs={"segment.bytes": "1024"})
        yield handle


def test_read_committed_stops_at_the_lso_until_the_commit_marker(broker):
    with Wire(broker) as w:
        pid, epoch = init_pid(w)
        plain = txn_batch(-1, -1, -1, [b"p0", b"p1"], transactional=False)
        assert produce(w, "t", plain, txn_id=None) == (0, 0)
        later = int(time.time() * 1000) + 60000
        assert produce(w, "t", txn_batch(pid, epoch, 0, [b"t0", b"t1", b"t2"], timestamp=later)) == (0, 2)
        assert produce(w, "t", plain, txn_id=None) == (0, 5)
        # Open transaction from offset 2: read_committed stops there.
        f = fetch(w, "t", 0, 1)
        assert f.error_code == 0 and f.high_watermark == 7 and f.last_stable_offset == 2
        assert batch_offsets(f.records) == [(0, 1, False)]
        assert f.aborted_transactions == []
        assert fetch(w, "t", 2, 1).records in (None, b"")
        assert list_offset(w, "t", 1) == 2 and list_offset(w, "t", 0) == 7
        # By time: the open transaction's records are not found for read_committed.
        assert list_offset(w, "t", 0, timestamp=later) == 2 and list_offset(w, "t", 1, timestamp=later) == -1
        # read_uncommitted reads everything, with a null aborted list.
        f0 = fetch(w, "t", 0, 0)
        assert f0.last_stable_offset == 2 and f0.aborted_transactions is None
        assert [b[:2] for b in batch_offsets(f0.records)] == [(0, 1), (2, 4), (5, 6)]
        assert write_marker(broker, "t", pid, epoch, True) == [0]
        f = fetch(w, "t", 0, 1)
        assert f.high_watermark == 8 and f.last_stable_offset == 8
        assert batch_offsets(f.records) == [(0, 1, False), (2, 4, False), (5, 6, False), (7, 7, True)]
        assert f.aborted_transactions == []
        assert list_offset(w, "t", 1) == 8
    p = partition_of(broker, "t")
    assert p.producer_state.ongoing == {}
    assert not glob.glob(os.path.join(p.path, "*.txnindex"))  # commits are not indexed


def test_an_abort_is_indexed_in_kafkas_format_and_answered_to_read_committed(broker):
    with Wire(broker) as w:
        a, ea = init_pid(w)
        b, eb = init_pid(w)
        assert produce(w, "t", txn_batch(a, ea, 0, [b"a0", b"a1"])) == (0, 0)
        assert produce(w, "t", txn_batch(b, eb, 0, [b"b0"])) == (0, 2)
        assert produce(w, "t", txn_batch(a, ea, 2, [b"a2"])) == (0, 3)
        assert write_marker(broker, "t", a, ea, False, coordinator_epoch=3) == [0]   # ABORT at 4
        f = fetch(w, "t", 0, 1)
        # b's transaction (from 2) is still open: LSO 2.
        assert f.last_stable_offset == 2
        assert [(t.producer_id, t.first_offset) for t in f.aborted_transactions] == [(a, 0)]
        assert write_marker(broker, "t", b, eb, True) == [0]                        # COMMIT at 5
        f = fetch(w, "t", 0, 1)
        assert f.last_stable_offset == 6 and f.high_watermark == 6
        assert [(t.producer_id, t.first_offset) for t in f.aborted_transactions] == [(a, 0)]
        # A fetch past the abort marker needs no entry.
        assert fetch(w, "t", 5, 1).aborted_transactions == []
    p = partition_of(broker, "t")
    files = glob.glob(os.path.join(p.path, "*.txnindex"))
    assert [os.path.basename(f) for f in files] == ["00000000000000000000.txnindex"]
    with open(files[0], "rb") as fh:
        # version 0, producer id, first offset, marker offset, LSO then (b's
        # transaction, still open, began at 2).
        assert fh.read() == ENTRY.pack(0, a, 0, 4, 2)
    # The marker itself, as Kafka writes it.
    data = bytes(p.log.read_batches(4, 1 << 20))
    h = _engine.batch_headers(data)[0]
    assert h[1] == 4 and h[4] == a and h[5] == ea and h[6] == -1 and h[7] == 1 and h[8] & 0x30 == 0x30
    (rec,) = _engine.decode_batches(data[:12 + struct.unpack_from(">i", data, 8)[0]])
    assert bytes(rec.key) == struct.pack(">hh", 0, 0)       # version 0, ABORT
    assert bytes(rec.value) == struct.pack(">hi", 0, 3)     # version 0, coordinator epoch


def test_fencing_and_refusals_change_nothing(broker):
    with Wire(broker) as w:
        pid, epoch = init_pid(w)
        assert produce(w, "t", txn_batch(pid, epoch, 0, [b"x"])) == (0, 0)
        # Kafka refuses transactional batches without a transactional id.
        assert produce(w, "t", txn_batch(pid, epoch, 1, [b"y"]), txn_id=None)[0] == TXN_ID_AUTH
        # A non-transactional batch while the producer's transaction is open.
        assert produce(w, "t", txn_batch(pid, epoch, 1, [b"y"], transactional=False))[0] == INVALID_TXN_STATE
        p = partition_of(broker, "t")
        assert p.log_end_offset == 1
        assert write_marker(broker, "t", pid, epoch, False, coordinator_epoch=5) == [0]
        leo = p.log_end_offset
        # A zombie coordinator (older coordinator epoch) and a stale producer epoch.
        assert write_marker(broker, "t", pid, epoch, True, coordinator_epoch=4) == [COORDINATOR_FENCED]
        assert produce(w, "t", txn_batch(pid, epoch + 1, 0, [b"z"])) == (0, leo)
        assert write_marker(broker, "t", pid, epoch, True, coordinator_epoch=5) == [INVALID_PRODUCER_EPOCH]
        assert p.log_end_offset == leo + 1
        assert p.producer_state.ongoing == {leo: pid}
        # Unknown partitions are answered per partition.
        assert write_marker(broker, "t", pid, epoch + 1, True, partitions=(7,), coordinator_epoch=5) == [3]
    # Markers are appended with acks=all: an ISR below min.insync.replicas refuses them.
    broker.broker.create_topic("m", 1, configs={"min.insync.replicas": "2"})
    assert write_marker(broker, "m", pid, epoch + 1, True, coordinator_epoch=5) == [NOT_ENOUGH_REPLICAS]
    assert partition_of(broker, "m").log_end_offset == 0


def test_write_txn_markers_is_served_to_the_lone_brokers_own_host_only(broker):
    """kafka-transactions.sh abort's request: answered on the broker's own
    host (an admin aborting a hanging transaction); from another address
    (127.0.0.2) CLUSTER_AUTHORIZATION_FAILED (31) and nothing written."""
    M = m.WriteTxnMarkersRequest

    def abort(w, pid):
        return [p.error_code for p in w.request(27, 0, M(markers=[M.WritableTxnMarker(
            producer_id=pid, producer_epoch=0, transaction_result=False, coordinator_epoch=0,
            topics=[M.WritableTxnMarkerTopic(name="t", partition_indexes=[0])])])).markers[0].topics[0].partitions]

    start = partition_of(broker, "t").log_end_offset
    w = Wire(broker)
    w.sock.close()
    w.sock = socket.create_connection(("127.0.0.1", broker.broker.advertised_port), timeout=15,
                                      source_address=("127.0.0.2", 0))
    with w:
        keys = {k.api_key for k in w.request(18, 3, m.ApiVersionsRequest(
            client_software_name="t", client_software_version="1")).api_keys}
        assert 27 in keys and 61 in keys
        assert abort(w, 4242) == [31]
    assert partition_of(broker, "t").log_end_offset == start
    with Wire(broker) as w:
        assert abort(w, 4242) == [0]
    assert partition_of(broker, "t").log_end_offset == start + 1      # the ABORT marker


def test_describe_producers(broker):
    with Wire(broker) as w:
        pid, epoch = init_pid(w)
        assert produce(w, "t", txn_batch(pid, epoch, 0, [b"a", b"b"])) == (0, 0)
        D = m.DescribeProducersRequest
        r = w.request(61, 0, D(topics=[D.TopicRequest(name="t", partition_indexes=[0, 5])]))
        p0, p5 = r.topics[0].partitions
        assert p0.error_code == 0 and p5.error_code == 3
        (st,) = p0.active_producers
        assert (st.producer_id, st.producer_epoch, st.last_sequence, st.coordinator_epoch,
                st.current_txn_start_offset) == (pid, epoch, 1, -1, 0)
        assert write_marker(broker, "t", pid, epoch, True, coordinator_epoch=2) == [0]
        r = w.request(61, 0, D(topics=[D.TopicRequest(name="t", partition_indexes=[0])]))
        (st,) = r.topics[0].partitions[0].active_producers
        assert (st.coordinator_epoch, st.current_txn_start_offset) == (2, -1)


# ---- real clients' read_committed consumers ----

def mixed_transactions(handle, topic="t", midway=None):
    """Offsets: plain p0 0, A's a0 a1 1-2, B's b0 3, A's a2 4, A's ABORT 5,
    B's COMMIT 6, plain p1 7: the committed view is p0 b0 p1. midway() runs
    after b0, while both transactions are open."""
    with Wire(handle) as w:
        a, ea = init_pid(w)
        b, eb = init_pid(w)
        plain = lambda v: txn_batch(-1, -1, -1, [v], transactional=False)  # noqa: E731
        assert produce(w, topic, plain(b"p0"), txn_id=None)[0] == 0
        assert produce(w, topic, txn_batch(a, ea, 0, [b"a0", b"a1"]))[0] == 0
        assert produce(w, topic, txn_batch(b, eb, 0, [b"b0"]))[0] == 0
        if midway is not None:
            midway()
        assert produce(w, topic, txn_batch(a, ea, 2, [b"a2"]))[0] == 0
        assert write_marker(handle, topic, a, ea, False) == [0]
        assert write_marker(handle, topic, b, eb, True) == [0]
        assert produce(w, topic, plain(b"p1"), txn_id=None)[0] == 0
    return a, b


COMMITTED = [b"p0", b"b0", b"p1"]
EVERYTHING = [b"p0", b"a0", b"a1", b"b0", b"a2", b"p1"]


def until_last(next_values):
    """Values from next_values() (a list per call) until p1, the last record,
    arrives or 60 s pass."""
    got = []
    deadline = time.monotonic() + 60
    while b"p1" not in got and time.monotonic() < deadline:
        got.extend(next_values())
    return got


def consume_confluent(bootstrap, isolation):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}", "enable.auto.commit": False,
                  "isolation.level": isolation})
    try:
        c.assign([TopicPartition("t", 0, 0)])
        return until_last(lambda: [msg.value() for msg in c.consume(10, 0.5) if msg.error() is None])
    finally:
        c.close()


def consume_kafka_python(bootstrap, isolation):
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False,
                      group_id=None, auto_offset_reset="earliest")
    try:
        c.assign([TopicPartition("t", 0)])
        c.seek(TopicPartition("t", 0), 0)
        return until_last(lambda: [r.value for recs in c.poll(500).values() for r in recs])
    finally:
        c.close()


def consume_aiokafka(bootstrap, isolation):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            c.assign([TopicPartition("t", 0)])
            c.seek(TopicPartition("t", 0), 0)
            got = []
            deadline = time.monotonic() + 60
            while b"p1" not in got and time.monotonic() < deadline:
                for recs in (await c.getmany(timeout_ms=500)).values():
                    got.extend(r.value for r in recs)
            return got
        finally:
            await c.stop()
    return asyncio.run(run())


def consume_pylog(bootstrap, isolation):
    from pylog import Consumer, TopicPartition
    c = Consumer(bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False)
    try:
        c.assign([TopicPartition("t", 0)])
        c.seek(TopicPartition("t", 0), 0)
        return until_last(lambda: [bytes(r.value) for r in c.poll(0.5)])
    finally:
        c.close()


@pytest.mark.parametrize("consume", [consume_confluent, consume_kafka_python, consume_aiokafka, consume_pylog],
                         ids=["confluent-kafka", "kafka-python", "aiokafka", "pylog"])
def test_real_read_committed_consumers_skip_aborted_records_and_markers(broker, consume):
    mixed_transactions(broker)
    assert consume(broker.bootstrap, "read_committed") == COMMITTED
    # read_uncommitted: every data record, never a control record.
    assert consume(broker.bootstrap, "read_uncommitted") == EVERYTHING


# ---- the index on disk: restarts, SIGKILL, truncation, retention ----

def index_files(path):
    """{file name: bytes} of the .txnindex files in a partition directory."""
    out = {}
    for f in sorted(glob.glob(os.path.join(str(path), "*.txnindex"))):
        with open(f, "rb") as fh:
            out[os.path.basename(f)] = fh.read()
    return out


def aborted_of(handle, offset=0):
    with Wire(handle) as w:
        f = fetch(w, "t", offset, 1)
        return f.last_stable_offset, [(t.producer_id, t.first_offset) for t in f.aborted_transactions]


def test_the_index_and_open_transactions_survive_a_clean_restart(broker):
    a, b = mixed_transactions(broker)
    with Wire(broker) as w:
        c, ec = init_pid(w)
        assert produce(w, "t", txn_batch(c, ec, 0, [b"c0"]))[0] == 0   # open at 8
    before = aborted_of(broker)
    assert before == (8, [(a, 1)])
    p = partition_of(broker, "t")
    index_bytes = index_files(p.path)
    assert index_bytes
    broker.restart()
    assert aborted_of(broker) == before
    p = partition_of(broker, "t")
    assert index_files(p.path) == index_bytes
    # The open transaction came back from the snapshot: its commit moves the LSO.
    assert write_marker(broker, "t", c, ec, True) == [0]
    assert aborted_of(broker)[0] == p.high_watermark == 10


_CHILD = r"""
import sys, asyncio
sys.path.insert(0, sys.argv[2])
import test_txn_partition as t
from kafkawire import Wire
from pylog.testing import running_broker
with running_broker(sys.argv[1]) as h:
    h.broker.create_topic("t", 1, configs={"segment.bytes": "1024"})
    p = h.broker.log_manager.partitions[("t", 0)]
    snap = lambda: h.broker.call(p.producer_state.take_snapshot, p.log_end_offset)  # noqa: E731
    a, b = t.mixed_transactions(h, midway=snap if sys.argv[3] == "snapshot" else None)
    with Wire(h) as w:
        c, ec = t.init_pid(w)
        assert t.produce(w, "t", t.txn_batch(c, ec, 0, [b"c0"]))[0] == 0
    print(a, b, c, flush=True)
    sys.stdin.read()
"""


@pytest.mark.parametrize("snapshot", ["no-snapshot", "snapshot"])
def test_the_index_is_rebuilt_after_sigkill(tmp_path, snapshot):
    """An unclean shutdown, the .txnindex files removed too (as if they had
    not reached the disk): the load rebuilds them from the log, byte for
    byte, with the open transaction still holding the LSO. With a snapshot
    taken while A and B were open, the replay starts there and takes A's
    first offset from it."""
    import signal
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    data = tmp_path / "data"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(data), here, snapshot], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": os.path.dirname(here)})
    try:
        line = child.stdout.readline()
        assert line, child.stderr.read()
        a, b, c = map(int, line.split())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        child.stderr.close()
        child.stdin.close()
    pdir = data / "t-0"
    snapshots = [os.path.basename(f) for f in glob.glob(str(pdir / "*.snapshot"))]
    assert snapshots == ([] if snapshot == "no-snapshot" else ["00000000000000000004.snapshot"])
    kept = index_files(pdir)
    assert kept
    for name in kept:
        os.unlink(pdir / name)
    with running_broker(data) as handle:
        assert aborted_of(handle) == (8, [(a, 1)])
        p = partition_of(handle, "t")
        assert p.producer_state.ongoing == {8: c}
        got = index_files(p.path)
        assert got == kept
        # A aborted at 5 while B's transaction (from 3) was open.
        assert ENTRY.unpack(b"".join(got.values())) == (0, a, 1, 5, 3)


def test_truncation_and_deletion_take_the_index_along(broker):
    a, b = mixed_transactions(broker)     # A aborted at 5, B committed at 6
    p = partition_of(broker, "t")
    loop = broker.broker._loop

    def on_loop(fn, *args):
        async def call():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(call(), loop).result(30)
    assert aborted_of(broker) == (8, [(a, 1)])
    # A follower cutting its divergent tail below the markers forgets them.
    on_loop(p.truncate_to, 5)
    assert aborted_of(broker) == (1, [])
    assert all(os.path.getsize(f) == 0 for f in glob.glob(os.path.join(p.path, "*.txnindex")))
    # Both transactions are open again (their markers are gone).
    assert p.producer_state.ongoing == {1: a, 3: b}
    assert write_marker(broker, "t", a, 0, False) == [0]            # aborted again, at 5
    assert aborted_of(broker) == (3, [(a, 1)])
    assert write_marker(broker, "t", b, 0, True) == [0]             # committed, at 6
    assert aborted_of(broker) == (7, [(a, 1)])
    # Enough data to roll segments (segment.bytes 1024), then DeleteRecords
    # past them: the segment holding the marker goes with its .txnindex.
    with Wire(broker) as w:
        for i in range(40):
            assert produce(w, "t", txn_batch(-1, -1, -1, [b"x" * 100], transactional=False), txn_id=None)[0] == 0
    holder = os.path.join(p.path, f"{p.log.segment_base_of(5):020d}.txnindex")
    assert os.path.getsize(holder) == ENTRY.size
    on_loop(p.delete_records, p.high_watermark)
    assert not os.path.exists(holder)
    assert aborted_of(broker, p.log_start_offset)[1] == []


def test_decode_fetched_drops_aborted_batches_until_their_marker(broker):
    """The C filter alone, on one fetch holding aborted, committed and later
    records of the same producer: A's batches from its aborted transaction's
    first offset up to its ABORT marker go; its later transaction stays."""
    a, b = mixed_transactions(broker)
    with Wire(broker) as w:
        assert produce(w, "t", txn_batch(a, 0, 3, [b"a3"]))[0] == 0        # 8: A's next transaction
        assert write_marker(broker, "t", a, 0, True) == [0]                 # 9: committed
        f = fetch(w, "t", 0, 1)
    aborted = [(t.producer_id, t.first_offset) for t in f.aborted_transactions]
    assert aborted == [(a, 1)]
    recs, next_offset = _engine.decode_fetched(f.records, "t", 0, 0, True, -1, aborted)
    assert [bytes(r.value) for r in recs] == [b"p0", b"b0", b"p1", b"a3"] and next_offset == 10
    # Without the list (read_uncommitted) only the markers go.
    recs, _ = _engine.decode_fetched(f.records, "t", 0, 0)
    assert [bytes(r.value) for r in recs] == EVERYTHING + [b"a3"]
    # From inside the aborted transaction: the entry still applies.
    recs, _ = _engine.decode_fetched(f.records, "t", 0, 2, True, -1, aborted)
    assert [bytes(r.value) for r in recs] == [b"b0", b"p1", b"a3"]


def test_a_real_read_committed_consumer_waits_at_the_lso_of_an_open_transaction(broker):
    from confluent_kafka import Consumer, TopicPartition
    with Wire(broker) as w:
        pid, epoch = init_pid(w)
        plain = lambda v: txn_batch(-1, -1, -1, [v], transactional=False)  # noqa: E731
        assert produce(w, "t", plain(b"before"), txn_id=None)[0] == 0       # 0
        assert produce(w, "t", txn_batch(pid, epoch, 0, [b"open"]))[0] == 0  # 1, open
        assert produce(w, "t", plain(b"after"), txn_id=None)[0] == 0        # 2
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        c.assign([TopicPartition("t", 0, 0)])
        got = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            got += [msg.value() for msg in c.consume(10, 0.2) if msg.error() is None]
        assert got == [b"before"]
        assert write_marker(broker, "t", pid, epoch, True) == [0]
        deadline = time.monotonic() + 60
        while b"after" not in got and time.monotonic() < deadline:
            got += [msg.value() for msg in c.consume(10, 0.2) if msg.error() is None]
        assert got == [b"before", b"open", b"after"]
    finally:
        c.close()
