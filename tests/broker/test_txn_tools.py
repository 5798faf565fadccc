"""`pylog transactions find-hanging` and `abort` against a lone broker, as
kafka-transactions.sh: a transaction is hanging when a partition's producer
state holds it open longer than --max-transaction-timeout and no coordinator
counts that partition in it (its producer id is no transactional id's, or
its coordinator does not list the partition)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from kafkawire import Wire

from pylog.protocol import messages as m
from pylog.testing import running_broker

from .test_txn_partition import init_pid, produce, txn_batch

ck = pytest.importorskip("confluent_kafka")
HEADERS = ["Topic", "Partition", "ProducerId", "ProducerEpoch", "CoordinatorEpoch", "StartOffset",
           "LastTimestamp", "Duration(min)"]


def tool(b, *argv):
    r = subprocess.run([sys.executable, "-m", "pylog", "transactions", *argv, "--bootstrap-server", str(b)],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def table(out):
    return [[c.strip() for c in line.split("\t")[:-1]] for line in out.splitlines()]


def lso(b, topic, partition):
    L = m.ListOffsetsRequest
    with Wire(b) as w:
        r = w.request(2, 2, L(replica_id=-1, isolation_level=1, topics=[L.ListOffsetsTopic(name=topic, partitions=[
            L.ListOffsetsPartition(partition_index=partition, timestamp=-1)])]))
    return r.topics[0].partitions[0].offset


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "d") as b:
        b.broker.create_topic("h", 2)
        yield b


def test_find_hanging_then_abort(broker):
    now = int(time.time() * 1000)
    with Wire(broker) as w:
        # A transactional id's producer writes to h-0 without AddPartitionsToTxn:
        # its coordinator knows the id (Empty) but not the partition.
        deadline = time.monotonic() + 60
        while (r := w.request(22, 1, m.InitProducerIdRequest(
                transactional_id="hang-tid", transaction_timeout_ms=60000))).error_code:
            assert time.monotonic() < deadline, r     # __transaction_state is being created and loaded
            time.sleep(0.1)
        tid_pid, tid_epoch = r.producer_id, r.producer_epoch
        assert produce(w, "h", txn_batch(tid_pid, tid_epoch, 0, [b"a", b"b"], timestamp=now),
                       partition=0, txn_id="hang-tid") == (0, 0)
        # A producer id no coordinator knows, with a transactional batch on h-1.
        lone_pid, lone_epoch = init_pid(w)
        assert produce(w, "h", txn_batch(lone_pid, lone_epoch, 0, [b"c"], timestamp=now), partition=1) == (0, 0)
    # A live transaction on both partitions: its coordinator counts them, not hanging.
    live = ck.Producer({"bootstrap.servers": str(broker), "transactional.id": "live-tid"})
    live.init_transactions(60)
    live.begin_transaction()
    live.produce("h", b"live0", partition=0)
    live.produce("h", b"live1", partition=1)
    assert live.flush(30) == 0
    time.sleep(0.05)           # the hanging ones' last write is now older than 0 minutes

    rc, out, err = tool(broker, "find-hanging", "--topic", "h", "--max-transaction-timeout", "0")
    assert rc == 0, err
    rows = table(out)
    assert rows[0] == HEADERS
    assert sorted(r[:6] for r in rows[1:]) == [
        ["h", "0", str(tid_pid), str(tid_epoch), "-1", "0"], ["h", "1", str(lone_pid), str(lone_epoch), "-1", "0"]]
    assert all(r[6] == str(now) and r[7] == "0" for r in rows[1:])
    # Narrowed to one partition; by broker (every topic it holds a replica of).
    rc, out, err = tool(broker, "find-hanging", "--topic", "h", "--partition", "1", "--max-transaction-timeout", "0")
    assert rc == 0 and [r[:3] for r in table(out)[1:]] == [["h", "1", str(lone_pid)]], (out, err)
    rc, out, err = tool(broker, "find-hanging", "--broker-id", str(broker.broker.broker_id),
                        "--max-transaction-timeout", "0")
    assert rc == 0 and sorted(r[2] for r in table(out)[1:]) == sorted([str(tid_pid), str(lone_pid)]), (out, err)
    # Not older than the default 15 minutes: none.
    rc, out, err = tool(broker, "find-hanging", "--topic", "h")
    assert rc == 0 and table(out) == [HEADERS], (out, err)

    rc, out, err = tool(broker, "find-hanging")
    assert rc == 1 and "requires either --topic or --broker-id" in err
    rc, out, err = tool(broker, "find-hanging", "--broker-id", "1", "--partition", "0")
    assert rc == 1 and "The --partition argument requires --topic to be provided" in err

    # abort: the hanging transactions end; the LSO of h-1 passes its one.
    assert lso(broker, "h", 1) == 0
    for partition in (0, 1):
        rc, out, err = tool(broker, "abort", "--topic", "h", "--partition", str(partition), "--start-offset", "0")
        assert rc == 0, err
    assert lso(broker, "h", 1) == 1          # up to the live transaction's first record
    rc, out, err = tool(broker, "find-hanging", "--topic", "h", "--max-transaction-timeout", "0")
    assert rc == 0 and table(out) == [HEADERS], (out, err)
    live.commit_transaction(60)
    assert (lso(broker, "h", 0), lso(broker, "h", 1)) == (5, 4)   # records, live record, two markers
