"""pylog's transactional Producer in embedded mode (log_dir): the LocalStore's
broker core is the transaction coordinator, asked through the same handlers a
broker runs for InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn
and TxnOffsetCommit, with its markers written by the broker's marker channel.
Read back with pylog's embedded read_committed Consumer (real files, no
broker process, no mocks).

Before issue 15's embedded part, Producer(log_dir=..., transactional_id=...)
raised InvalidConfigError, so every test here fails on that code.
"""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

import pylog
import pylog.aio
from pylog.testing import wait_until
from pylog.embedded import LocalStore
from pylog.producer.transactions import ConsumerGroupMetadata, IllegalTransactionStateError, ProducerFencedError
from pylog.structs import OffsetAndMetadata, TopicPartition

TIMEOUT = 60.0


@pytest.fixture
def data(tmp_path):
    return str(tmp_path / "data")


@pytest.fixture
def store(data):
    """The directory's store, held open for the test (the producers and
    consumers share it; its first opener's config applies)."""
    s = LocalStore.open(data, config={"transaction.abort.timed.out.transaction.cleanup.interval.ms": "200",
                                      "transaction.max.timeout.ms": "60000"})
    try:
        yield s
    finally:
        s.close()


def _producer(data, tid, **kw):
    p = pylog.Producer(log_dir=data, transactional_id=tid, linger_ms=1, **kw)
    try:
        p.init_transactions(TIMEOUT)
    except BaseException:
        p.close()   # else its sender thread keeps the store (and its segments) open for the process
        raise
    return p


def read_to_end(data, topic, partitions, isolation):
    """Every value an embedded Consumer returns from offset 0 of each
    partition up to its end offset (the last stable offset for
    read_committed), once no transaction is open on the topic any more (the
    markers are written a moment after EndTxn is answered)."""
    c = pylog.Consumer(log_dir=data, isolation_level=isolation, auto_offset_reset="earliest",
                       enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        store = LocalStore.open(data)   # the consumer's own store, one more reference
        try:
            _wait_for(lambda: all(store.list_offset(topic, tp.partition, -1, 1)[0] == store.high_watermark(
                topic, tp.partition) for tp in tps), f"the transactions on {topic} to end")
        finally:
            store.close()
        end = c.end_offsets(tps)
        out = []
        deadline = time.monotonic() + TIMEOUT
        while any(c.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic}: positions {[c.position(tp) for tp in tps]}, end {end}"
            out += [bytes(r.value) for r in c.poll(0.1)]
        return out
    finally:
        c.close()


def _commit(data, tid, topic, *values):
    """A new incarnation of tid (init_transactions) commits values to
    partition 0 of topic in one transaction."""
    p = _producer(data, tid)
    try:
        p.begin_transaction()
        for v in values:
            p.send(topic, v, partition=0)
        p.commit_transaction(TIMEOUT)
    finally:
        p.close()


def _wait_for(cond, what):
    wait_until(cond, what, TIMEOUT)


def test_commit_and_abort_read_committed_sees_only_committed(store, data):
    store.create_topic("t", 2)
    p = _producer(data, "tid-a")
    try:
        p.begin_transaction()
        p.send("t", b"a0", partition=0)
        p.send("t", b"a1", partition=1)
        p.commit_transaction(TIMEOUT)
        p.begin_transaction()
        p.send("t", b"b0", partition=0)
        p.send("t", b"b1", partition=1)
        assert p.flush(TIMEOUT) == 0           # written, then aborted
        p.abort_transaction(TIMEOUT)
        p.begin_transaction()
        p.send("t", b"c0", partition=0)
        p.commit_transaction(TIMEOUT)
    finally:
        p.close()
    assert sorted(read_to_end(data, "t", 2, "read_committed")) == [b"a0", b"a1", b"c0"]
    assert sorted(read_to_end(data, "t", 2, "read_uncommitted")) == [b"a0", b"a1", b"b0", b"b1", b"c0"]


def test_an_open_transaction_holds_read_committed_at_the_lso(store, data):
    store.create_topic("t", 1)
    p = _producer(data, "tid-lso")
    c = pylog.Consumer(log_dir=data, isolation_level="read_committed", auto_offset_reset="earliest",
                       enable_auto_commit=False)
    try:
        with pylog.Producer(log_dir=data) as plain:
            plain.send("t", b"before", partition=0).get(TIMEOUT)                # 0
        p.begin_transaction()
        first = p.send("t", b"open", partition=0).get(TIMEOUT).offset           # 1
        with pylog.Producer(log_dir=data) as plain:
            plain.send("t", b"after", partition=0).get(TIMEOUT)                 # 2
        assert store.list_offset("t", 0, -1, 1)[0] == first
        assert store.list_offset("t", 0, -1, 0)[0] == first + 2
        c.assign([TopicPartition("t", 0)])
        got = []
        for _ in range(10):
            got += [bytes(r.value) for r in c.poll(0.1)]
        assert got == [b"before"]     # stopped at the LSO: "after" waits behind the open transaction
        p.commit_transaction(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 3 and time.monotonic() < deadline:
            got += [bytes(r.value) for r in c.poll(0.2)]
        assert got == [b"before", b"open", b"after"]
    finally:
        c.close()
        p.close()


def test_send_outside_a_transaction_is_refused(store, data):
    store.create_topic("t", 1)
    p = pylog.Producer(log_dir=data, transactional_id="tid-state")
    try:
        with pytest.raises(IllegalTransactionStateError):
            p.begin_transaction()            # before init_transactions
        p.init_transactions(TIMEOUT)
        with pytest.raises(IllegalTransactionStateError):
            p.send("t", b"x", partition=0)
    finally:
        p.close()


def test_a_second_producer_fences_the_first_and_aborts_its_transaction(store, data):
    store.create_topic("t", 1)
    first = _producer(data, "tid-zombie")
    second = None
    try:
        first.begin_transaction()
        first.send("t", b"zombie", partition=0).get(TIMEOUT)
        second = _producer(data, "tid-zombie")     # bumps the epoch, aborts first's transaction
        second.begin_transaction()
        second.send("t", b"live", partition=0)
        second.commit_transaction(TIMEOUT)
        # The zombie's next batch is refused by the partition (older epoch): fatal.
        with pytest.raises(ProducerFencedError):
            first.send("t", b"zombie-2", partition=0).get(TIMEOUT)
        with pytest.raises(ProducerFencedError) as info:
            first.commit_transaction(TIMEOUT)
        assert info.value.fatal and not info.value.txn_requires_abort
        assert info.value.error_code == 90       # PRODUCER_FENCED
        with pytest.raises(ProducerFencedError):
            first.begin_transaction()
    finally:
        first.close()
        if second is not None:
            second.close()
    assert read_to_end(data, "t", 1, "read_committed") == [b"live"]
    assert read_to_end(data, "t", 1, "read_uncommitted") == [b"zombie", b"live"]


def test_transaction_timeout_aborts_and_fences_the_late_producer(store, data):
    store.create_topic("t", 1)
    with pytest.raises(pylog.errors.PylogError) as info:
        _producer(data, "tid-long", transaction_timeout_ms=120_000)   # above transaction.max.timeout.ms
    assert info.value.error_code == 50 and info.value.fatal   # INVALID_TRANSACTION_TIMEOUT
    p = _producer(data, "tid-late", transaction_timeout_ms=500)
    try:
        p.begin_transaction()
        first = p.send("t", b"late", partition=0).get(TIMEOUT).offset
        # The coordinator's periodic check aborts it under a bumped epoch.
        _wait_for(lambda: store.list_offset("t", 0, -1, 1)[0] > first, "the timed-out transaction's abort")
        with pytest.raises(ProducerFencedError):
            p.commit_transaction(TIMEOUT)
    finally:
        p.close()
    _commit(data, "tid-late", "t", b"fresh")
    assert read_to_end(data, "t", 1, "read_committed") == [b"fresh"]


@pytest.mark.parametrize("commit", [True, False])
def test_send_offsets_to_transaction_moves_the_group_only_on_commit(store, data, commit):
    store.create_topic("in", 1)
    store.create_topic("out", 1)
    with pylog.Producer(log_dir=data) as plain:
        for i in range(10):
            plain.send("in", f"m{i}".encode(), partition=0)
    c = pylog.Consumer("in", log_dir=data, group_id="g", auto_offset_reset="earliest",
                       enable_auto_commit=False, isolation_level="read_committed")
    p = _producer(data, "tid-offsets")
    tp = TopicPartition("in", 0)
    try:
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 10 and time.monotonic() < deadline:
            got += c.poll(0.2)
        assert len(got) == 10
        p.begin_transaction()
        for r in got:
            p.send("out", bytes(r.value).upper(), partition=0)
        assert p.flush(TIMEOUT) == 0    # written (an abort fails what is not sent yet)
        p.send_offsets_to_transaction({tp: OffsetAndMetadata(10, "", -1)}, c.group_metadata(), TIMEOUT)
        # Pending until the transaction ends: neither a plain nor a stable read sees it.
        assert store.committed_offsets("g", [tp])[tp] is None
        if commit:
            p.commit_transaction(TIMEOUT)
            # Visible once the marker reaches __consumer_offsets; a stable
            # read (read_committed's) waits for that.
            assert store.committed_offsets("g", [tp], require_stable=True)[tp].offset == 10
            assert c.committed(tp).offset == 10
        else:
            p.abort_transaction(TIMEOUT)
            assert store.committed_offsets("g", [tp], require_stable=True)[tp] is None
            assert c.committed(tp) is None
    finally:
        p.close()
        c.close(autocommit=False)
    if commit:
        assert read_to_end(data, "out", 1, "read_committed") == [f"M{i}".encode() for i in range(10)]
    else:
        assert read_to_end(data, "out", 1, "read_committed") == []
        assert len(read_to_end(data, "out", 1, "read_uncommitted")) == 10


def test_the_transaction_state_survives_reopening_the_store(tmp_path):
    """An open transaction left by a producer whose store closed (its
    process gone) is aborted by the next incarnation's init_transactions
    after the directory is opened again: the coordinator's state was
    reloaded from __transaction_state."""
    data = str(tmp_path / "data")
    p = _producer(data, "tid-reopen")
    try:
        p.begin_transaction()
        p.send("t", b"committed", partition=0)
        p.commit_transaction(TIMEOUT)
        p.begin_transaction()
        p.send("t", b"left-open", partition=0).get(TIMEOUT)
    finally:
        p.close()     # the store closes with the transaction still open
    _commit(data, "tid-reopen", "t", b"next")
    assert read_to_end(data, "t", 1, "read_committed") == [b"committed", b"next"]
    assert read_to_end(data, "t", 1, "read_uncommitted") == [b"committed", b"left-open", b"next"]


def test_read_committed_consumer_waits_for_pending_transactional_offsets(store, data):
    """KIP-447: a read_committed consumer starting in a group while a
    transaction holds offsets of it pending waits for the transaction's end
    (UNSTABLE_OFFSET_COMMIT, asked again) and starts at the offset it
    committed; reading the old (absent) offset would start it at 0 and
    process m0-m9 twice."""
    store.create_topic("in", 1)
    with pylog.Producer(log_dir=data) as plain:
        for i in range(12):
            plain.send("in", f"m{i}".encode(), partition=0)
    tp = TopicPartition("in", 0)
    p = _producer(data, "tid-stable")
    c = pylog.Consumer("in", log_dir=data, group_id="g", auto_offset_reset="earliest",
                       enable_auto_commit=False, isolation_level="read_committed")
    try:
        p.begin_transaction()
        p.send_offsets_to_transaction({tp: 10}, ConsumerGroupMetadata("g"), TIMEOUT)
        timer = threading.Timer(1.0, p.commit_transaction, (TIMEOUT,))
        timer.start()
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 2 and time.monotonic() < deadline:
            got += [bytes(r.value) for r in c.poll(0.2)]
        timer.join()
        assert got == [b"m10", b"m11"]
    finally:
        c.close(autocommit=False)
        p.close()


def test_aio_embedded_transaction(store, data):
    store.create_topic("t", 1)

    async def main():
        async with pylog.aio.Producer(log_dir=data, transactional_id="tid-aio", linger_ms=1) as p:
            await p.init_transactions(TIMEOUT)
            async with p.transaction():
                await p.send("t", b"kept", partition=0)
            with pytest.raises(RuntimeError):
                async with p.transaction():
                    await (await p.send("t", b"dropped", partition=0))
                    raise RuntimeError("abort me")

    asyncio.run(main())
    assert read_to_end(data, "t", 1, "read_committed") == [b"kept"]
    assert read_to_end(data, "t", 1, "read_uncommitted") == [b"kept", b"dropped"]


def test_handle_answers_coordinator_requests_as_the_wire_does(store, data):
    """LocalStore.handle, the embedded producer's way to the coordinators:
    Kafka's error codes for bad requests, nothing changed; versions outside
    the advertised range (KIP-890 part 2's EndTxn v5) and APIs that are not
    coordinator requests refused."""
    from pylog.errors import InvalidRequestError, UnsupportedVersionError
    from pylog.protocol import messages as m
    store.create_topic("t", 1)
    _producer(data, "tid-bad").close()
    p = _producer(data, "tid-bad")      # the second incarnation: epoch bumped
    try:
        end = m.EndTxnRequest(transactional_id="nobody", producer_id=12345, producer_epoch=0, committed=True)
        assert store.handle(end, 3).error_code == 49            # INVALID_PRODUCER_ID_MAPPING
        pid, epoch = p._txn.producer_id_and_epoch
        Q = m.AddPartitionsToTxnRequest
        stale = Q(v3_and_below_transactional_id="tid-bad", v3_and_below_producer_id=pid,
                  v3_and_below_producer_epoch=epoch - 1,
                  v3_and_below_topics=[Q.AddPartitionsToTxnTopic(name="t", partitions=[0])])
        r = store.handle(stale, 3)
        assert r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code == 90
        described = store.handle(m.DescribeTransactionsRequest(transactional_ids=["tid-bad"]), 0)
        assert described.transaction_states[0].transaction_state == "Empty"    # nothing was added
        p.begin_transaction()
        p.send("t", b"ok", partition=0)
        p.commit_transaction(TIMEOUT)
    finally:
        p.close()
    with pytest.raises(UnsupportedVersionError):
        store.handle(end, 5)
    with pytest.raises(InvalidRequestError):
        store.handle(m.ListGroupsRequest(states_filter=[]), 4)
    assert read_to_end(data, "t", 1, "read_committed") == [b"ok"]
