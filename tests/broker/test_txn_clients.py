"""Transactions end to end with real clients against a real broker: the
transaction coordinator (init, EndTxn, markers through the WriteTxnMarkers
handler, CompleteCommit/CompleteAbort), read_committed consumers, offsets
sent to a transaction, zombie fencing and the broker's timeout abort, with
confluent-kafka, kafka-python and aiokafka producers."""
import asyncio
import time
import uuid

import pytest
from kafkawire import Wire

from pylog.protocol import messages as m
from pylog.testing import running_broker

ck = pytest.importorskip("confluent_kafka")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    cfg = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "200",
           "group.initial.rebalance.delay.ms": "0"}
    with running_broker(tmp_path_factory.mktemp("txc") / "d", config=cfg) as b:
        yield b


def topic(b, partitions=2):
    name = "t-" + uuid.uuid4().hex[:8]
    b.broker.create_topic(name, partitions)
    return name


def state(b, tid):
    with Wire(b) as w:
        return w.request(65, 0, m.DescribeTransactionsRequest(transactional_ids=[tid])).transaction_states[0]


def until(fn, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def committed_values(b, name, partitions=2, timeout=60):
    """Every value a read_committed confluent consumer reads from the start
    until the committed END sentinel of every partition (the LSO has passed
    all before it)."""
    c = ck.Consumer({"bootstrap.servers": str(b), "group.id": "rc-" + uuid.uuid4().hex[:6],
                     "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                     "enable.auto.commit": False})
    c.subscribe([name])
    out, ends, deadline = [], set(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.value() == b"END":
                ends.add(msg.partition())
                if len(ends) == partitions:
                    return sorted(out)
            else:
                out.append(msg.value())
        raise AssertionError(f"END not read from every partition within {timeout} s; read {out}")
    finally:
        c.close()


def assert_only_committed(b, tid, name, expected):
    """tid's last transaction (an abort) completed, and read_committed readers
    of name get exactly the expected values."""
    until(lambda: state(b, tid).transaction_state == "CompleteAbort", "the abort completes")
    end_sentinel(b, name)
    assert committed_values(b, name) == expected


def end_sentinel(b, name, partitions=2):
    p = ck.Producer({"bootstrap.servers": str(b)})
    for part in range(partitions):
        p.produce(name, b"END", partition=part)
    assert p.flush(30) == 0


def test_confluent_commit_and_abort(broker):
    name = topic(broker)
    p = ck.Producer({"bootstrap.servers": str(broker), "transactional.id": "ck-ca"})
    p.init_transactions(60)
    p.begin_transaction()
    for i in range(10):
        p.produce(name, b"c%d" % i, partition=i % 2)
    p.commit_transaction(60)
    assert state(broker, "ck-ca").transaction_state == "CompleteCommit"
    p.begin_transaction()
    for i in range(5):
        p.produce(name, b"a%d" % i, partition=i % 2)
    p.flush(30)
    p.abort_transaction(60)
    assert_only_committed(broker, "ck-ca", name, sorted(b"c%d" % i for i in range(10)))


def test_kafka_python_commit_and_abort(broker):
    kafka = pytest.importorskip("kafka")
    name = topic(broker)
    p = kafka.KafkaProducer(bootstrap_servers=str(broker), transactional_id="kp-ca")
    try:
        p.init_transactions()
        p.begin_transaction()
        for i in range(6):
            p.send(name, b"k%d" % i, partition=i % 2)
        p.commit_transaction()
        p.begin_transaction()
        for i in range(4):
            p.send(name, b"x%d" % i, partition=i % 2)
        p.flush()
        p.abort_transaction()
    finally:
        p.close()
    assert_only_committed(broker, "kp-ca", name, sorted(b"k%d" % i for i in range(6)))


def test_aiokafka_commit_and_abort(broker):
    aiokafka = pytest.importorskip("aiokafka")
    name = topic(broker)

    async def run():
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=str(broker), transactional_id="ak-ca")
        await p.start()
        try:
            async with p.transaction():
                for i in range(6):
                    await p.send(name, b"y%d" % i, partition=i % 2)
            await p.begin_transaction()
            for i in range(3):
                await p.send(name, b"z%d" % i, partition=i % 2)
            await p.abort_transaction()
        finally:
            await p.stop()
    asyncio.run(asyncio.wait_for(run(), 120))
    assert_only_committed(broker, "ak-ca", name, sorted(b"y%d" % i for i in range(6)))


def test_send_offsets_to_transaction_moves_the_group_only_on_commit(broker):
    src, dst = topic(broker, 1), topic(broker, 1)
    feeder = ck.Producer({"bootstrap.servers": str(broker)})
    for i in range(20):
        feeder.produce(src, b"%d" % i)
    assert feeder.flush(30) == 0
    group = "eos-" + uuid.uuid4().hex[:6]
    c = ck.Consumer({"bootstrap.servers": str(broker), "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.subscribe([src])
    p = ck.Producer({"bootstrap.servers": str(broker), "transactional.id": "ck-eos"})
    p.init_transactions(60)
    try:
        def step(n, commit):
            got = []
            deadline = time.monotonic() + 60
            while len(got) < n:
                assert time.monotonic() < deadline
                msg = c.poll(0.5)
                if msg is not None and not msg.error():
                    got.append(msg)
            p.begin_transaction()
            for msg in got:
                p.produce(dst, msg.value() + b"!")
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 60)
            if commit:
                p.commit_transaction(60)
            else:
                p.abort_transaction(60)

        def group_offset():
            tp = ck.TopicPartition(src, 0)
            return c.committed([tp], timeout=30)[0].offset

        step(10, commit=True)
        # Visible once the COMMIT marker is in __consumer_offsets (EndTxn is
        # answered before the markers; until then this read_committed
        # consumer's OffsetFetch, require_stable, is answered UNSTABLE_OFFSET_COMMIT).
        until(lambda: group_offset() == 10, "the committed transaction's offsets")
        step(5, commit=False)
        until(lambda: state(broker, "ck-eos").transaction_state == "CompleteAbort", "the abort completes")
        assert group_offset() == 10          # the aborted transaction's offsets are dropped
    finally:
        c.close()
    end_sentinel(broker, dst, 1)
    assert committed_values(broker, dst, 1) == sorted(b"%d!" % i for i in range(10))


def test_a_second_producer_fences_the_first_and_its_transaction_is_aborted(broker):
    name = topic(broker)
    p1 = ck.Producer({"bootstrap.servers": str(broker), "transactional.id": "ck-zombie"})
    p1.init_transactions(60)
    p1.begin_transaction()
    p1.produce(name, b"zombie", partition=0)
    p1.flush(30)
    p2 = ck.Producer({"bootstrap.servers": str(broker), "transactional.id": "ck-zombie"})
    p2.init_transactions(60)          # aborts p1's open transaction first
    with pytest.raises(ck.KafkaException) as e:
        p1.commit_transaction(30)
    assert e.value.args[0].fatal() or e.value.args[0].code() in (
        ck.KafkaError._FENCED, ck.KafkaError.PRODUCER_FENCED, ck.KafkaError.INVALID_PRODUCER_EPOCH)
    p2.begin_transaction()
    p2.produce(name, b"alive", partition=0)
    p2.commit_transaction(60)
    end_sentinel(broker, name)
    assert committed_values(broker, name) == [b"alive"]


def test_the_broker_aborts_a_transaction_past_its_timeout(broker):
    name = topic(broker)
    p = ck.Producer({"bootstrap.servers": str(broker), "transactional.id": "ck-slow",
                     "transaction.timeout.ms": "2000"})
    p.init_transactions(60)
    p.begin_transaction()
    p.produce(name, b"late", partition=0)
    p.flush(30)
    until(lambda: state(broker, "ck-slow").transaction_state == "CompleteAbort", "the broker aborts it")
    with pytest.raises(ck.KafkaException):
        p.commit_transaction(30)
    end_sentinel(broker, name)
    assert committed_values(broker, name) == []


def test_sigkill_mid_transaction_then_a_new_producer_with_the_same_id(tmp_path):
    """The broker process is killed with a transaction open; restarted, it
    replays __transaction_state, and the next producer with the same id gets
    its producer id after the old transaction is aborted: none of it is ever
    read_committed-visible."""
    import signal

    from confluent_kafka.admin import AdminClient, NewTopic

    from pylog.testing import free_port

    from brokerproc import BrokerProc

    port = free_port()
    b = BrokerProc(tmp_path / "d", port=port)
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("k", 1, 1)])["k"].result(30)
        p1 = ck.Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "ck-kill"})
        p1.init_transactions(60)
        p1.begin_transaction()
        for i in range(5):
            p1.produce("k", b"lost%d" % i)
        assert p1.flush(30) == 0
        b.stop(signal.SIGKILL)
        b = BrokerProc(tmp_path / "d", port=port)
        p2 = ck.Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "ck-kill"})
        p2.init_transactions(60)
        p2.begin_transaction()
        p2.produce("k", b"after")
        p2.commit_transaction(60)
        end_sentinel(b.bootstrap, "k", 1)
        assert committed_values(b.bootstrap, "k", 1) == [b"after"]
        del p1
    finally:
        b.stop(signal.SIGTERM)


def group_offset(b, group, name, partition=0):
    with Wire(b) as w:
        R = m.OffsetFetchRequest
        r = w.request(9, 3, R(group_id=group, topics=[R.OffsetFetchRequestTopic(name=name, partition_indexes=[partition])]))
    return r.topics[0].partitions[0].committed_offset


def test_kafka_python_and_aiokafka_send_offsets_to_transaction(broker):
    """kafka-python (TxnOffsetCommit v3, flexible) and aiokafka (v0): the
    group's offset moves with a committed transaction, not an aborted one."""
    kafka = pytest.importorskip("kafka")
    aiokafka = pytest.importorskip("aiokafka")
    src = topic(broker, 1)
    tp = kafka.TopicPartition(src, 0)
    p = kafka.KafkaProducer(bootstrap_servers=str(broker), transactional_id="kp-eos")
    try:
        p.init_transactions()
        for offset, commit in ((7, True), (9, False)):
            p.begin_transaction()
            p.send_offsets_to_transaction({tp: kafka.structs.OffsetAndMetadata(offset, "", -1)}, "grp-kp")
            p.commit_transaction() if commit else p.abort_transaction()
    finally:
        p.close()
    until(lambda: state(broker, "kp-eos").transaction_state == "CompleteAbort", "the abort completes")
    assert group_offset(broker, "grp-kp", src) == 7

    async def run():
        ap = aiokafka.AIOKafkaProducer(bootstrap_servers=str(broker), transactional_id="ak-eos")
        await ap.start()
        try:
            for offset, commit in ((4, True), (6, False)):
                await ap.begin_transaction()
                await ap.send_offsets_to_transaction({aiokafka.TopicPartition(src, 0): offset}, "grp-ak")
                await (ap.commit_transaction() if commit else ap.abort_transaction())
        finally:
            await ap.stop()
    asyncio.run(asyncio.wait_for(run(), 120))
    until(lambda: state(broker, "ak-eos").transaction_state == "CompleteAbort", "the abort completes")
    assert group_offset(broker, "grp-ak", src) == 4


def test_transactional_offsets_are_replayed_with_their_markers_after_a_restart(tmp_path):
    """TxnOffsetCommit's records in __consumer_offsets: a committed
    transaction's offsets apply, an aborted one's do not, an open one's stay
    pending, across a restart that replays the partition; the open
    transaction committed after the restart then applies its offsets."""
    from .test_txn_coordinator import add, end, init, txn_commit

    def offsets_txn(w, pid, epoch, offset, commit):
        r = w.request(25, 0, m.AddOffsetsToTxnRequest(transactional_id="tx-replay", producer_id=pid,
                                                      producer_epoch=epoch, group_id="grp-replay"))
        assert r.error_code == 0
        assert txn_commit(w, "tx-replay", pid, epoch, group="grp-replay", offsets=(("t", 0, offset),)) == {
            ("t", 0): 0}
        if commit is not None:
            assert end(w, "tx-replay", pid, epoch, commit) == 0
            until(lambda: state(b, "tx-replay").transaction_state.startswith("Complete"), "markers written")

    with running_broker(tmp_path / "d") as b:
        b.broker.create_topic("t", 1)
        with Wire(b) as w:
            for key_type in (0, 1):   # the group's and the transaction's coordinators
                until(lambda: w.request(10, 1, m.FindCoordinatorRequest(
                    key="grp-replay", key_type=key_type)).error_code == 0, "the coordinators")
            _, pid, epoch = init(w, "tx-replay")
            offsets_txn(w, pid, epoch, 5, True)
            until(lambda: group_offset(b, "grp-replay", "t") == 5, "the committed offsets applied")
            offsets_txn(w, pid, epoch, 9, False)
            offsets_txn(w, pid, epoch, 11, None)          # left open
            assert group_offset(b, "grp-replay", "t") == 5
        b.restart()
        with Wire(b) as w:
            until(lambda: w.request(10, 1, m.FindCoordinatorRequest(key="x", key_type=1)).error_code == 0,
                  "the transaction coordinator")
            assert group_offset(b, "grp-replay", "t") == 5
            assert state(b, "tx-replay").transaction_state == "Ongoing"
            assert end(w, "tx-replay", pid, epoch, True) == 0
            until(lambda: group_offset(b, "grp-replay", "t") == 11, "the replayed pending offsets applied")
            assert add(w, "tx-replay", pid, epoch) == {("t", 0): 0}


def fetch_stable(b, group, name, version, require_stable):
    """(error_code, committed_offset) of name-0 in group by OffsetFetch at
    version (7: one group; 8: the groups array)."""
    R = m.OffsetFetchRequest
    with Wire(b) as w:
        if version < 8:
            r = w.request(9, version, R(group_id=group, require_stable=require_stable, topics=[
                R.OffsetFetchRequestTopic(name=name, partition_indexes=[0])]))
            assert r.error_code == 0
            part = r.topics[0].partitions[0]
        else:
            r = w.request(9, version, R(require_stable=require_stable, groups=[R.OffsetFetchRequestGroup(
                group_id=group, topics=[R.OffsetFetchRequestTopics(
                    name=name, partition_indexes=[0])])]))
            assert [g.group_id for g in r.groups] == [group] and r.groups[0].error_code == 0
            part = r.groups[0].topics[0].partitions[0]
    return part.error_code, part.committed_offset


def test_require_stable_offset_fetch_waits_for_an_open_transactions_offsets(broker):
    """KIP-447: while a transaction holds offsets of the group, OffsetFetch
    v7+ with require_stable answers UNSTABLE_OFFSET_COMMIT (88) for that
    partition, so a read_committed confluent consumer of the group does not
    start from the offset committed before it; once the transaction commits
    it starts from the transaction's offset."""
    src = topic(broker, 1)
    feeder = ck.Producer({"bootstrap.servers": str(broker)})
    for i in range(20):
        feeder.produce(src, b"%d" % i, partition=0)
    assert feeder.flush(30) == 0
    group = "stable-" + uuid.uuid4().hex[:6]
    holder = ck.Consumer({"bootstrap.servers": str(broker), "group.id": group, "enable.auto.commit": False})
    holder.commit(offsets=[ck.TopicPartition(src, 0, 5)], asynchronous=False)
    p = ck.Producer({"bootstrap.servers": str(broker), "transactional.id": "ck-stable-" + uuid.uuid4().hex[:6]})
    p.init_transactions(60)
    p.begin_transaction()
    p.send_offsets_to_transaction([ck.TopicPartition(src, 0, 12)], holder.consumer_group_metadata(), 60)
    holder.close()

    UNSTABLE = 88
    for version in (7, 8):
        assert fetch_stable(broker, group, src, version, True) == (UNSTABLE, -1)
        assert fetch_stable(broker, group, src, version, False) == (0, 5)
    assert group_offset(broker, group, src) == 5      # v3 has no require_stable

    c = ck.Consumer({"bootstrap.servers": str(broker), "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        c.subscribe([src])
        until(lambda: c.poll(0.2) is None and c.assignment(), "the consumer's assignment")
        # Assigned, its OffsetFetch answered 88 again and again: no record is
        # read while the transaction is open (from offset 5 it would be).
        quiet_until = time.monotonic() + 3
        while time.monotonic() < quiet_until:
            msg = c.poll(0.2)
            assert msg is None or msg.error(), f"read offset {msg.offset()} before the transaction completed"
        p.commit_transaction(60)
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "nothing read after the commit"
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                break
        assert msg.offset() == 12
    finally:
        c.close()
    until(lambda: fetch_stable(broker, group, src, 8, True) == (0, 12), "the committed offset is stable")
