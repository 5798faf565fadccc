"""pylog's transactional Producer and read_committed Consumer against a real
pylog broker over real sockets, cross-checked with confluent-kafka; the
`pylog transactions` tools' columns against a broker holding a transaction.

These need the broker side of issue 15 (transaction coordinator, markers,
LSO, aborted index): on a broker without it, init_transactions() fails.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import confluent_kafka
import pytest

import pylog
import pylog.aio
from pylog.client import Client
from pylog.producer.transactions import IllegalTransactionStateError, ProducerFencedError
from pylog.structs import OffsetAndMetadata, TopicPartition

from .conftest import create_topic

TIMEOUT = 60.0


@pytest.fixture(scope="module", autouse=True)
def _broker_serves_transactions(cbroker):
    """The broker side of issue 15 advertises the transaction APIs; without
    it (this branch alone) these tests cannot run, and say why."""
    with Client(cbroker) as c:
        served = c.any_connection().api_versions
    missing = [k for k in (24, 25, 26, 28, 61, 65, 66) if k not in served]
    if missing:
        pytest.skip(f"the broker does not serve the transaction APIs {missing} (issue 15's broker side)")


def _producer(bootstrap, tid, **kw):
    p = pylog.Producer(bootstrap, transactional_id=tid, linger_ms=1, **kw)
    p.init_transactions(TIMEOUT)
    return p


def _read_all(bootstrap, topic, partitions, isolation, expect=None, wait=1.5):
    """Every value a pylog Consumer returns from offset 0 of each partition:
    polling until `expect` values came (markers are written a moment after a
    commit returns), then `wait` seconds more with nothing new, so that an
    extra (aborted) record would show up too."""
    c = pylog.Consumer(bootstrap_servers=bootstrap, isolation_level=isolation,
                       auto_offset_reset="earliest")
    try:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        out = []
        deadline = time.monotonic() + TIMEOUT
        quiet_until = time.monotonic() + wait
        while time.monotonic() < deadline:
            got = c.poll(0.2)
            if got:
                out += [bytes(r.value) for r in got]
                quiet_until = time.monotonic() + wait
            if (expect is None or len(out) >= expect) and time.monotonic() > quiet_until:
                break
        return out
    finally:
        c.close()


def _confluent_read(bootstrap, topic, partitions, isolation, expect):
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": f"ck-{topic}-{isolation}",
                                  "isolation.level": isolation, "enable.auto.commit": False})
    try:
        c.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in range(partitions)])
        out = []
        deadline = time.monotonic() + TIMEOUT
        while len(out) < expect and time.monotonic() < deadline:
            for m in c.consume(100, 0.5):
                if m.error() is None:
                    out.append(m.value())
        # Anything extra (an aborted record) would arrive with the rest: look a moment longer.
        for m in c.consume(100, 1.0):
            if m.error() is None:
                out.append(m.value())
        return out
    finally:
        c.close()


def _lso(bootstrap, topic, partition):
    with Client(bootstrap) as c:
        return c.list_offsets_many({(topic, partition): -1}, isolation_level=1)[(topic, partition)][1]


def test_commit_then_abort_read_committed_sees_only_committed(cbroker, topic):
    create_topic(cbroker, topic, partitions=2)
    p = _producer(cbroker, f"tid-{topic}")
    try:
        p.begin_transaction()
        for i in range(20):
            p.send(topic, f"c{i}".encode(), partition=i % 2)
        p.commit_transaction(TIMEOUT)
        p.begin_transaction()
        handles = [p.send(topic, f"a{i}".encode(), partition=i % 2) for i in range(20)]
        p.flush()
        assert all(h.get(TIMEOUT).offset >= 0 for h in handles)   # written, then aborted
        p.abort_transaction(TIMEOUT)
        p.begin_transaction()
        for i in range(6):
            p.send(topic, f"d{i}".encode(), partition=i % 2)
        p.commit_transaction(TIMEOUT)
    finally:
        p.close()
    committed = sorted([f"c{i}".encode() for i in range(20)] + [f"d{i}".encode() for i in range(6)])
    assert sorted(_read_all(cbroker, topic, 2, "read_committed", expect=26)) == committed
    # read_uncommitted returns the aborted records too (never the markers).
    assert len(_read_all(cbroker, topic, 2, "read_uncommitted", expect=46)) == 46
    # librdkafka agrees about what is committed.
    assert sorted(_confluent_read(cbroker, topic, 2, "read_committed", 26)) == committed


def test_pylog_read_committed_skips_confluent_aborted(cbroker, topic):
    create_topic(cbroker, topic, partitions=1)
    ck = confluent_kafka.Producer({"bootstrap.servers": cbroker, "transactional.id": f"ck-{topic}"})
    ck.init_transactions(TIMEOUT)
    for txn, commit in (("x", True), ("y", False), ("z", True), ("w", False)):
        ck.begin_transaction()
        for i in range(50):
            ck.produce(topic, f"{txn}{i}".encode(), partition=0)
        assert ck.flush(TIMEOUT) == 0   # written before the abort, not purged by it
        (ck.commit_transaction if commit else ck.abort_transaction)(TIMEOUT)
    assert len(_read_all(cbroker, topic, 1, "read_uncommitted", expect=200)) == 200
    got = _read_all(cbroker, topic, 1, "read_committed", expect=100)
    assert got == [f"x{i}".encode() for i in range(50)] + [f"z{i}".encode() for i in range(50)]


def test_send_many_in_a_transaction(cbroker, topic):
    create_topic(cbroker, topic, partitions=3)
    p = _producer(cbroker, f"tid-{topic}")
    try:
        p.begin_transaction()
        p.send_many(topic, [b"gone"] * 300)
        p.abort_transaction(TIMEOUT)
        p.begin_transaction()
        p.send_many(topic, [f"k{i}".encode() for i in range(300)])
        p.commit_transaction(TIMEOUT)
    finally:
        p.close()
    got = _read_all(cbroker, topic, 3, "read_committed", expect=300)
    assert sorted(got) == sorted(f"k{i}".encode() for i in range(300))


def test_open_transaction_holds_read_committed_at_the_lso(cbroker, topic):
    create_topic(cbroker, topic, partitions=1)
    p = _producer(cbroker, f"tid-{topic}")
    try:
        p.begin_transaction()
        p.send(topic, b"open", partition=0).get(TIMEOUT)
        assert _read_all(cbroker, topic, 1, "read_committed", wait=1.5) == []
        assert _lso(cbroker, topic, 0) == 0
        p.commit_transaction(TIMEOUT)
        assert _read_all(cbroker, topic, 1, "read_committed", expect=1) == [b"open"]
    finally:
        p.close()


def test_send_outside_a_transaction_is_refused(cbroker, topic):
    p = pylog.Producer(cbroker, transactional_id=f"tid-{topic}")
    try:
        with pytest.raises(IllegalTransactionStateError, match="begin_transaction"):
            p.send(topic, b"v")
        with pytest.raises(IllegalTransactionStateError):
            p.begin_transaction()   # before init_transactions
        p.init_transactions(TIMEOUT)
        with pytest.raises(IllegalTransactionStateError, match="begin_transaction"):
            p.send(topic, b"v")
        with pytest.raises(IllegalTransactionStateError):
            p.commit_transaction(TIMEOUT)
    finally:
        p.close()


def test_a_second_producer_fences_the_first_and_aborts_its_transaction(cbroker, topic):
    create_topic(cbroker, topic, partitions=1)
    tid = f"tid-{topic}"
    first = _producer(cbroker, tid)
    second = None
    try:
        first.begin_transaction()
        first.send(topic, b"zombie", partition=0).get(TIMEOUT)
        second = _producer(cbroker, tid)   # bumps the epoch, aborts first's transaction
        second.begin_transaction()
        second.send(topic, b"live", partition=0)
        second.commit_transaction(TIMEOUT)
        # The zombie's next batch is refused by the partition (old epoch): fatal.
        with pytest.raises(ProducerFencedError):
            first.send(topic, b"zombie-2", partition=0).get(TIMEOUT)
        with pytest.raises(ProducerFencedError) as info:
            first.commit_transaction(TIMEOUT)
        assert info.value.fatal and not info.value.txn_requires_abort
        with pytest.raises(ProducerFencedError):   # fatal: every later call says so
            first.begin_transaction()
    finally:
        first.close()
        if second is not None:
            second.close()
    assert _read_all(cbroker, topic, 1, "read_committed", expect=1) == [b"live"]


@pytest.mark.parametrize("commit", [True, False])
def test_send_offsets_to_transaction_moves_the_group_only_on_commit(cbroker, topic, group, commit):
    src, dst = f"{topic}-in", f"{topic}-out"
    create_topic(cbroker, src, partitions=1)
    create_topic(cbroker, dst, partitions=1)
    with pylog.Producer(cbroker) as plain:
        for i in range(10):
            plain.send(src, f"m{i}".encode(), partition=0)
    c = pylog.Consumer(src, bootstrap_servers=cbroker, group_id=group, auto_offset_reset="earliest",
                       enable_auto_commit=False, isolation_level="read_committed",
                       session_timeout_ms=6000, heartbeat_interval_ms=200)
    p = _producer(cbroker, f"tid-{topic}")
    try:
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 10 and time.monotonic() < deadline:
            got += c.poll(0.5)
        assert len(got) == 10
        gm = c.group_metadata()
        assert gm.group_id == group and gm.generation_id >= 0 and gm.member_id
        p.begin_transaction()
        for r in got:
            p.send(dst, bytes(r.value).upper(), partition=0)
        p.send_offsets_to_transaction({TopicPartition(src, 0): OffsetAndMetadata(10, "", -1)}, gm, TIMEOUT)
        if commit:
            p.commit_transaction(TIMEOUT)
        else:
            p.abort_transaction(TIMEOUT)
        # EndTxn is answered once the outcome is logged; the offsets become
        # visible when the marker reaches __consumer_offsets, a moment later.
        deadline = time.monotonic() + (TIMEOUT if commit else 2.0)
        while True:
            committed = c.committed(TopicPartition(src, 0))
            if committed is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        p.close()
        c.close(autocommit=False)
    if commit:
        assert committed is not None and committed.offset == 10
        assert sorted(_read_all(cbroker, dst, 1, "read_committed", expect=10)) == \
            sorted(f"M{i}".encode() for i in range(10))
    else:
        assert committed is None
        assert _read_all(cbroker, dst, 1, "read_committed", wait=1.5) == []


def test_aio_transaction(cbroker, topic):
    create_topic(cbroker, topic, partitions=1)

    async def main():
        async with pylog.aio.Producer(cbroker, transactional_id=f"tid-{topic}", linger_ms=1) as p:
            await p.init_transactions(TIMEOUT)
            async with p.transaction():
                await p.send(topic, b"kept", partition=0)
            with pytest.raises(RuntimeError):
                async with p.transaction():
                    await p.send(topic, b"dropped", partition=0)
                    raise RuntimeError("abort me")
            with pytest.raises(IllegalTransactionStateError):
                await p.send(topic, b"outside", partition=0)

    asyncio.run(main())
    assert _read_all(cbroker, topic, 1, "read_committed", expect=1) == [b"kept"]


def _tool(*argv):
    r = subprocess.run([sys.executable, "-m", "pylog", "transactions", *argv], capture_output=True,
                       text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def _table(out):
    rows = [line.split("\t")[:-1] for line in out.splitlines()]
    return [[c.strip() for c in row] for row in rows]


def test_tools_columns_and_abort_of_a_hanging_transaction(cbroker, topic):
    create_topic(cbroker, topic, partitions=1)
    tid = f"tid-{topic}"
    p = _producer(cbroker, tid, transaction_timeout_ms=600_000)
    try:
        p.begin_transaction()
        first = p.send(topic, b"hanging", partition=0).get(TIMEOUT).offset

        rc, out, err = _tool("list", "--bootstrap-server", cbroker)
        assert rc == 0, err
        rows = _table(out)
        assert rows[0] == ["TransactionalId", "Coordinator", "ProducerId", "TransactionState"]
        mine = [r for r in rows[1:] if r[0] == tid]
        assert len(mine) == 1 and mine[0][3] == "Ongoing"
        pid = mine[0][2]

        rc, out, err = _tool("describe", "--bootstrap-server", cbroker, "--transactional-id", tid)
        assert rc == 0, err
        header, row = _table(out)
        assert header == ["CoordinatorId", "TransactionalId", "ProducerId", "ProducerEpoch",
                          "TransactionState", "TransactionTimeoutMs", "CurrentTransactionStartTimeMs",
                          "TransactionDurationMs", "TopicPartitions"]
        assert row[1:3] == [tid, pid] and row[4] == "Ongoing" and row[5] == "600000"
        assert row[8] == f"{topic}-0" and int(row[7]) >= 0

        rc, out, err = _tool("describe-producers", "--bootstrap-server", cbroker, "--topic", topic,
                             "--partition", "0")
        assert rc == 0, err
        rows = _table(out)
        assert rows[0] == ["ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence",
                           "LastTimestamp", "CurrentTransactionStartOffset"]
        assert [r for r in rows[1:] if r[0] == pid][0][5] == str(first)

        assert _lso(cbroker, topic, 0) == first
        rc, out, err = _tool("abort", "--bootstrap-server", cbroker, "--topic", topic, "--partition", "0",
                             "--start-offset", str(first + 5))
        assert rc == 1 and f"Could not find any open transactions starting at offset {first + 5}" in err
        # From the broker's own host the tool writes the ABORT marker: the
        # partition's LSO passes the transaction (its coordinator still aborts it below).
        rc, out, err = _tool("abort", "--bootstrap-server", cbroker, "--topic", topic, "--partition", "0",
                             "--start-offset", str(first))
        assert rc == 0, err
        assert _lso(cbroker, topic, 0) == first + 2
        rc, out, err = _tool("describe", "--bootstrap-server", cbroker, "--transactional-id", "no-such-id")
        assert rc == 1 and "Failed to describe transaction state of transactional-id `no-such-id`" in err
        p.abort_transaction(TIMEOUT)
        rc, out, err = _tool("describe", "--bootstrap-server", cbroker, "--transactional-id", tid)
        assert rc == 0, err
        row = _table(out)[1]
        assert row[4] == "CompleteAbort" and row[8] == ""
    finally:
        p.close()
    assert _read_all(cbroker, topic, 1, "read_committed", wait=1.5) == []


def test_transaction_timeout_aborts_and_fences_the_late_producer(topic):
    from pylog.testing import running_broker
    from .conftest import CLIENT_CONFIG
    config = {**CLIENT_CONFIG, "transaction.abort.timed.out.transaction.cleanup.interval.ms": "200",
              "transaction.max.timeout.ms": "60000"}
    with running_broker(config=config) as b:
        bootstrap = str(b)
        create_topic(bootstrap, topic, partitions=1)
        with pytest.raises(pylog.errors.PylogError) as info:
            _producer(bootstrap, f"tid-{topic}-long", transaction_timeout_ms=120_000)
        assert info.value.error_code == 50 and info.value.fatal   # INVALID_TRANSACTION_TIMEOUT
        p = _producer(bootstrap, f"tid-{topic}", transaction_timeout_ms=500)
        try:
            p.begin_transaction()
            first = p.send(topic, b"late", partition=0).get(TIMEOUT).offset
            deadline = time.monotonic() + TIMEOUT
            while _lso(bootstrap, topic, 0) <= first and time.monotonic() < deadline:
                time.sleep(0.1)   # the coordinator aborts it (and bumps the epoch)
            assert _lso(bootstrap, topic, 0) > first
            with pytest.raises(ProducerFencedError):
                p.commit_transaction(TIMEOUT)
        finally:
            p.close()
        again = _producer(bootstrap, f"tid-{topic}")
        try:
            again.begin_transaction()
            again.send(topic, b"fresh", partition=0)
            again.commit_transaction(TIMEOUT)
        finally:
            again.close()
        assert _read_all(bootstrap, topic, 1, "read_committed", expect=1) == [b"fresh"]


def test_producer_carries_on_across_a_broker_restart(topic, tmp_path):
    """Lost connections to the coordinator and the leader are retried: the
    coordinator is looked up again once the broker is back."""
    from pylog.testing import running_broker
    from .conftest import CLIENT_CONFIG
    with running_broker(tmp_path / "data", config=CLIENT_CONFIG) as b:
        bootstrap = str(b)
        create_topic(bootstrap, topic, partitions=1)
        p = _producer(bootstrap, f"tid-{topic}")
        try:
            p.begin_transaction()
            p.send(topic, b"before", partition=0)
            p.commit_transaction(TIMEOUT)
            b.restart()
            p.begin_transaction()
            p.send(topic, b"after", partition=0)
            p.commit_transaction(TIMEOUT)
        finally:
            p.close()
        assert _read_all(bootstrap, topic, 1, "read_committed", expect=2) == [b"before", b"after"]
