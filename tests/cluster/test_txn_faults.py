"""Transactions under SIGKILL on a 3-broker cluster of real broker processes
(ZooKeeper, RF 3, min.insync.replicas 2; the processes of test_faults.py).
Kafka's transactions_test.py is the model:

- the transaction coordinator is killed after EndTxn was answered while its
  markers cannot be written yet: the next coordinator loads PrepareCommit from
  __transaction_state and completes the commit;
- a partition leader is killed while a WriteTxnMarkers request to it is in
  flight: the marker follows the partition to its new leader;
- the group coordinator is killed while a transaction holds offsets of its
  group: the next one replays them as pending, takes the transaction's next
  TxnOffsetCommit and makes the last one the group's offset at the marker;
- a consume-transform-produce loop (confluent-kafka, send_offsets_to_transaction,
  read_committed) runs while a broker is killed and started again.

Each time read_committed readers get every committed record exactly once and
nothing of an aborted transaction.
"""
from __future__ import annotations

import signal
import threading
import time
import uuid

import pytest

from pylog.client import Client
from pylog.client.wire import Connection
from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.transactions import log_records as lr

from .test_faults import BROKER_CONFIG, Cluster, wait_for

ck = pytest.importorskip("confluent_kafka")

CONFIG = {
    **BROKER_CONFIG,
    "num.partitions": "3",
    "offsets.topic.num.partitions": "3",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.num.partitions": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "group.initial.rebalance.delay.ms": "0",
}
UNSTABLE_OFFSET_COMMIT = 88
LOADED = (0, 105)      # DescribeTransactions of a loaded partition: found / TRANSACTIONAL_ID_NOT_FOUND


def call(b, req, version=None, timeout=10.0):
    with Connection("127.0.0.1", b.port, timeout=timeout) as c:
        return c.request(req, api_version=version)


def ask(b, req, version=None):
    """call(), or None when the broker does not answer (down, starting)."""
    try:
        return call(b, req, version)
    except Exception:
        return None


def leaders(cluster, topic):
    """{partition: leader} of topic as every live broker names it, once they
    agree and every partition has a leader; else None."""
    seen = set()
    for b in cluster.up():
        r = ask(b, m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name=topic)],
                                     allow_auto_topic_creation=False))
        if r is None or r.topics[0].error_code:
            return None
        out = tuple(sorted((p.partition_index, p.leader_id) for p in r.topics[0].partitions))
        if not out or any(leader < 0 for _, leader in out):
            return None
        seen.add(out)
    return dict(seen.pop()) if len(seen) == 1 else None


def describe(b, tid):
    r = ask(b, m.DescribeTransactionsRequest(transactional_ids=[tid]), 0)
    return None if r is None else r.transaction_states[0]


def named_coordinator(cluster, key, key_type):
    """The live broker every live broker names as key's coordinator
    (FindCoordinator), or None."""
    ids = set()
    for b in cluster.up():
        r = ask(b, m.FindCoordinatorRequest(key=key, key_type=key_type), 1)
        if r is None or r.error_code:
            return None
        ids.add(r.node_id)
    return next((b for b in cluster.up() if ids == {b.broker_id}), None)


def coordinator(cluster, tid, timeout=90):
    """The live broker that coordinates tid, once every live broker names it
    and it has loaded tid's partition."""
    def found():
        c = named_coordinator(cluster, tid, 1)
        st = describe(c, tid) if c is not None else None
        return c if st is not None and st.error_code in LOADED else None
    return wait_for(found, timeout, f"the coordinator of {tid}, loaded")


def tid_coordinated_by(cluster, broker_id, prefix):
    coordinator(cluster, "probe")              # __transaction_state exists and is led
    ts = wait_for(lambda: leaders(cluster, lr.TOPIC), 60, "__transaction_state's leaders")
    return next(f"{prefix}-{i}" for i in range(10000) if ts[lr.partition_for(f"{prefix}-{i}", 3)] == broker_id)


def create_topic(cluster, name, partitions=3, assignment=None, configs=None):
    C = m.CreateTopicsRequest
    topic = C.CreatableTopic(name=name, num_partitions=-1 if assignment else partitions,
                             replication_factor=-1 if assignment else 3,
                             assignments=[C.CreatableReplicaAssignment(partition_index=i, broker_ids=ids)
                                          for i, ids in (assignment or {}).items()],
                             configs=[C.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()])
    with Client(cluster.bootstrap, timeout=30) as client:
        r = client.controller_connection().request(C(timeout_ms=30000, topics=[topic]))
    assert r.topics[0].error_code == 0, r.topics[0]
    return wait_for(lambda: leaders(cluster, name), 60, f"{name}'s leaders")


def read_committed(cluster, topics, expected, timeout=90):
    """Every value a read_committed reader gets from the start of topics
    ({name: partitions}): waits for len(expected) values, then polls on a
    little to catch a duplicate or an aborted record."""
    c = ck.Consumer({"bootstrap.servers": ",".join(b.address for b in cluster.up()),
                     "group.id": "check-" + uuid.uuid4().hex[:6], "isolation.level": "read_committed",
                     "enable.auto.commit": False, "log_level": 0})
    c.assign([ck.TopicPartition(t, i, ck.OFFSET_BEGINNING) for t, n in topics.items() for i in range(n)])
    got, deadline = [], time.monotonic() + timeout
    try:
        while len(got) < len(expected):
            assert time.monotonic() < deadline, f"read {len(got)} of {len(expected)}"
            for msg in c.consume(500, 0.5):
                if not msg.error():
                    got.append(msg.value())
        for _ in range(4):
            got += [msg.value() for msg in c.consume(500, 0.5) if not msg.error()]
    finally:
        c.close()
    assert sorted(got) == sorted(expected), (len(got), len(set(got)))


@pytest.fixture
def cluster(zk_connect, tmp_path):
    c = Cluster(zk_connect, tmp_path, **CONFIG)
    try:
        yield c
    finally:
        c.close()


def test_sigkill_of_the_coordinator_after_end_txn_then_the_next_one_completes_the_commit(cluster):
    """EndTxn is answered once PrepareCommit is replicated; the marker of
    `solo` (one replica, its broker killed) cannot be written, so the
    transaction waits in PrepareCommit when its coordinator is SIGKILLed. The
    next coordinator loads it and, once `solo`'s broker is back, writes every
    marker: the commit is read exactly once."""
    tid = tid_coordinated_by(cluster, 2, "tx-kill-coord")
    coord, solo_host, third = cluster.broker(2), cluster.broker(3), cluster.broker(1)
    create_topic(cluster, "d")
    create_topic(cluster, "solo", assignment={0: [solo_host.broker_id]}, configs={"min.insync.replicas": "1"})
    p = ck.Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": tid, "log_level": 0})
    p.init_transactions(60)
    p.begin_transaction()
    for i in range(30):
        p.produce("d", b"d%d" % i, partition=i % 3)
    for i in range(10):
        p.produce("solo", b"s%d" % i, partition=0)
    assert p.flush(60) == 0

    solo_host.signal(signal.SIGKILL)
    solo_host.wait_exit()
    wait_for(lambda: ask(third, m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name="solo")],
                                                  allow_auto_topic_creation=False)).topics[0].partitions[0].leader_id
             < 0, 60, "solo-0 offline")
    p.commit_transaction(90)
    time.sleep(1)                  # markers tried (and retried) meanwhile: solo-0 has no leader
    assert describe(coord, tid).transaction_state == "PrepareCommit"

    coord.signal(signal.SIGKILL)
    coord.wait_exit()
    solo_host.start()
    new = coordinator(cluster, tid)
    assert new is not coord
    wait_for(lambda: (st := describe(new, tid)) is not None and st.transaction_state == "CompleteCommit", 90,
             "the commit completed by the next coordinator")
    coord.start()
    read_committed(cluster, {"d": 3, "solo": 1}, [b"d%d" % i for i in range(30)] + [b"s%d" % i for i in range(10)])
    # The producer goes on with the next coordinator.
    p.begin_transaction()
    p.produce("d", b"after", partition=0)
    p.commit_transaction(90)
    read_committed(cluster, {"d": 3}, [b"d%d" % i for i in range(30)] + [b"after"])


def test_sigkill_of_a_partition_leader_with_a_marker_in_flight(cluster):
    """The leader of one of the transaction's partitions is stopped (SIGSTOP)
    so the coordinator's WriteTxnMarkers to it stays in flight, then
    SIGKILLed: the marker is written at the partition's new leader, and the
    commit (and the abort after it) are read as they should be."""
    tid = tid_coordinated_by(cluster, 1, "tx-kill-leader")
    coord = cluster.broker(1)
    by_partition = create_topic(cluster, "d")
    p = ck.Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": tid, "log_level": 0,
                     "transaction.timeout.ms": "120000"})
    p.init_transactions(60)
    p.begin_transaction()
    for i in range(30):
        p.produce("d", b"c%d" % i, partition=i % 3)
    assert p.flush(60) == 0
    victim = next((part, leader) for part, leader in sorted(by_partition.items()) if leader != coord.broker_id)
    leader = cluster.broker(victim[1])

    leader.pause()
    errors = []

    def commit():
        try:
            p.commit_transaction(120)
        except Exception as e:  # reported by the main thread
            errors.append(e)
    t = threading.Thread(target=commit)
    t.start()
    # PrepareCommit lasts until the stopped leader's ZooKeeper session ends
    # (4 s) and its partitions move; under load that window can fall between
    # two polls, so CompleteCommit seen first counts too: the marker then went
    # to the partition's new leader, which is checked below either way.
    wait_for(lambda: (st := describe(coord, tid)) is not None
             and st.transaction_state in ("PrepareCommit", "CompleteCommit"), 60,
             "EndTxn: PrepareCommit, the marker to the stopped leader in flight")
    leader.signal(signal.SIGKILL)
    leader.wait_exit()
    wait_for(lambda: (st := describe(coord, tid)) is not None and st.transaction_state == "CompleteCommit", 90,
             "the marker written at the partition's new leader")
    t.join(120)
    assert not t.is_alive() and not errors, errors
    assert wait_for(lambda: leaders(cluster, "d"), 60, "d's leaders")[victim[0]] != leader.broker_id

    # An abort with the old leader still down, then it comes back as a follower.
    p.begin_transaction()
    for i in range(6):
        p.produce("d", b"x%d" % i, partition=i % 3)
    assert p.flush(60) == 0
    p.abort_transaction(90)
    leader.start()
    wait_for(lambda: (st := describe(coord, tid)) is not None and st.transaction_state == "CompleteAbort", 90,
             "the abort's markers")
    read_committed(cluster, {"d": 3}, [b"c%d" % i for i in range(30)])


def group_led(cluster, prefix, wanted):
    """A group id whose coordinator (the leader of its __consumer_offsets
    partition) is a broker id for which wanted() is true; the topic is
    created first (FindCoordinator)."""
    wait_for(lambda: (r := ask(cluster.up()[0], m.FindCoordinatorRequest(key=prefix, key_type=0), 1)) is not None
             and r.error_code == 0, 60, f"{ot.TOPIC} created")
    offsets = wait_for(lambda: leaders(cluster, ot.TOPIC), 60, f"{ot.TOPIC}'s leaders")
    n = len(offsets)
    return next(f"{prefix}-{i}" for i in range(10000) if wanted(offsets[ot.partition_for(f"{prefix}-{i}", n)]))


def offset_fetch(b, group, topic):
    """(error, offset) of group's topic-0 as OffsetFetch v7 with
    require_stable answers it at b; None when b does not answer."""
    F = m.OffsetFetchRequest
    r = ask(b, F(group_id=group, require_stable=True, topics=[F.OffsetFetchRequestTopic(name=topic,
                                                                                        partition_indexes=[0])]), 7)
    if r is None:
        return None
    p = r.topics[0].partitions[0] if r.topics else None
    return (r.error_code or p.error_code, p.committed_offset) if p is not None else (r.error_code, -1)


def txn_offset_commit(b, tid, group, pid, epoch, topic, offset):
    R = m.TxnOffsetCommitRequest
    r = ask(b, R(transactional_id=tid, group_id=group, producer_id=pid, producer_epoch=epoch, generation_id=-1,
                 member_id="", group_instance_id=None, topics=[R.TxnOffsetCommitRequestTopic(name=topic, partitions=[
                     R.TxnOffsetCommitRequestPartition(partition_index=0, committed_offset=offset,
                                                       committed_leader_epoch=-1, committed_metadata="")])]), 3)
    return None if r is None else r.topics[0].partitions[0].error_code


def test_sigkill_of_the_group_coordinator_inside_a_transaction(cluster):
    """A transaction holds offsets of a group (AddOffsetsToTxn +
    TxnOffsetCommit) when the group coordinator's broker is SIGKILLed. The
    next group coordinator replays the pending offset (OffsetFetch
    require_stable: UNSTABLE_OFFSET_COMMIT, never the pending value), takes
    the transaction's next TxnOffsetCommit, and once EndTxn's marker reaches
    the moved __consumer_offsets partition the group's offset is the
    transaction's last one, stable. What librdkafka's
    send_offsets_to_transaction would do at a moved group coordinator (see
    the pipeline test below), in requests of our own."""
    tid = tid_coordinated_by(cluster, 1, "tx-kill-group")
    coord = cluster.broker(1)
    create_topic(cluster, "src")
    group = group_led(cluster, "g-kill", lambda leader: leader != coord.broker_id)
    offsets = wait_for(lambda: leaders(cluster, ot.TOPIC), 60, f"{ot.TOPIC}'s leaders")
    old = cluster.broker(offsets[ot.partition_for(group, len(offsets))])
    r = call(coord, m.InitProducerIdRequest(transactional_id=tid, transaction_timeout_ms=120000), 1)
    assert r.error_code == 0, r
    pid, epoch = r.producer_id, r.producer_epoch
    assert call(coord, m.AddOffsetsToTxnRequest(transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                                                group_id=group), 0).error_code == 0
    assert txn_offset_commit(old, tid, group, pid, epoch, "src", 5) == 0
    assert offset_fetch(old, group, "src") == (UNSTABLE_OFFSET_COMMIT, -1)

    old.signal(signal.SIGKILL)
    old.wait_exit()

    def moved():
        new = named_coordinator(cluster, group, 0)
        return new if new is not None and offset_fetch(new, group, "src") == (UNSTABLE_OFFSET_COMMIT, -1) else None
    new = wait_for(moved, 90, "the next group coordinator, the pending offset replayed")
    wait_for(lambda: txn_offset_commit(new, tid, group, pid, epoch, "src", 6) == 0, 60,
             "the transaction's next TxnOffsetCommit at the next group coordinator")
    assert call(coord, m.EndTxnRequest(transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                                       committed=True), 0).error_code == 0
    wait_for(lambda: (st := describe(coord, tid)) is not None and st.transaction_state == "CompleteCommit", 90,
             "the commit's markers, one at the moved offsets partition")
    wait_for(lambda: offset_fetch(new, group, "src") == (0, 6), 60, "offset 6, stable")
    old.start()
    # The restarted broker follows the partition; the coordinator still answers 6.
    assert offset_fetch(new, group, "src") == (0, 6)


def test_exactly_once_pipeline_while_a_broker_is_sigkilled_and_restarted(cluster):
    """A consume-transform-produce loop: read_committed consumer of `in`,
    transactional producer writing `out` and the consumer's offsets
    (send_offsets_to_transaction). Its transaction coordinator's broker is
    SIGKILLed inside a transaction (before its EndTxn) after a few
    transactions and started again a few later. A
    transaction that fails is aborted and the input rewound to the group's
    committed offsets. `out`, read_committed, is exactly the transformed
    input.

    The group's coordinator is on another broker: librdkafka (2.16) keeps a
    group coordinator it has cached after that broker left the Metadata
    answers and its handle was decommissioned, and send_offsets_to_transaction
    then waits for that handle to come up, past its timeout, until some other
    broker connection changes state (librdkafka #5511, #5456). With the group
    on the killed broker this loop hung whenever the producer's metadata
    refresh (without the killed broker) came before its next TxnOffsetCommit;
    Apache Kafka drops a dead broker from Metadata too, so that is the
    client's bug, not a broker answer to change. The group coordinator's
    failover under a transaction is tested with requests of our own below."""
    n = 300
    tid = tid_coordinated_by(cluster, 2, "eos-kill")
    victim = cluster.broker(2)
    create_topic(cluster, "in")
    create_topic(cluster, "out")
    group = group_led(cluster, "eos", lambda leader: leader != victim.broker_id)
    feeder = ck.Producer({"bootstrap.servers": cluster.bootstrap, "log_level": 0})
    for i in range(n):
        feeder.produce("in", b"%d" % i, partition=i % 3)
    assert feeder.flush(60) == 0

    c = ck.Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "isolation.level": "read_committed", "log_level": 0})
    c.subscribe(["in"])
    p = ck.Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": tid, "log_level": 0,
                     "transaction.timeout.ms": "60000"})
    p.init_transactions(60)
    ends = {i: n // 3 for i in range(3)}
    committed: dict[int, int] = {}
    st = {"commits": 0, "aborts": 0, "killed_at": None, "restarted_at": None, "step": "starting"}

    def step(what, fn):
        st["step"] = f"{what} (transaction {st['commits'] + st['aborts'] + 1})"
        return retry_call(fn)

    def pipeline():
        deadline = time.monotonic() + 220
        while any(committed.get(i, 0) < end for i, end in ends.items()):
            assert time.monotonic() < deadline, f"committed {committed} of {ends}"
            st["step"] = "consume"
            msgs = [msg for msg in c.consume(20, 1.0) if not msg.error()]
            if not msgs:
                continue
            p.begin_transaction()
            try:
                for msg in msgs:
                    p.produce("out", msg.value() + b"!", partition=msg.partition())
                positions = c.position(c.assignment())
                step("send_offsets_to_transaction",
                     lambda: p.send_offsets_to_transaction(positions, c.consumer_group_metadata(), 60))
                if st["commits"] == 3 and st["killed_at"] is None:
                    # Mid-transaction: records possibly in flight, EndTxn not sent yet.
                    victim.signal(signal.SIGKILL)
                    victim.wait_exit()
                    st["killed_at"] = st["commits"]
                step("commit_transaction", lambda: p.commit_transaction(60))
                st["commits"] += 1
                committed.update({tp.partition: tp.offset for tp in positions if tp.offset >= 0})
            except ck.KafkaException as e:
                err = e.args[0]
                assert err.txn_requires_abort(), err
                step("abort_transaction", lambda: p.abort_transaction(60))
                st["aborts"] += 1
                # The aborted batch comes again: from the group's committed offsets.
                st["step"] = "committed"
                for tp in c.committed(c.assignment(), timeout=60):
                    c.seek(ck.TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
            if st["killed_at"] is not None and st["restarted_at"] is None and st["commits"] >= st["killed_at"] + 3:
                victim.start()
                st["restarted_at"] = st["commits"]

    # In a thread: a client call that blocks in librdkafka past its own
    # timeout (as #5511 did) fails this test with the step named, before
    # pytest-timeout's 300 s, instead of holding the worker (the main thread
    # blocked in C) until the run's watchdog ends it.
    errors: list[BaseException] = []
    t = threading.Thread(target=lambda: _capture(pipeline, errors), daemon=True)
    t.start()
    t.join(240)
    assert not t.is_alive(), f"the pipeline is stuck in {st['step']} ({st})"
    if errors:
        raise errors[0]
    c.close()
    assert st["restarted_at"] is not None, st
    read_committed(cluster, {"out": 3}, [b"%d!" % i for i in range(n)])


def _capture(fn, errors):
    try:
        fn()
    except BaseException as e:  # raised again by the test's thread
        errors.append(e)


def retry_call(fn, attempts=5):
    """A transactional call that failed with a retriable error is called again
    (librdkafka's contract); an abortable or fatal error is raised."""
    for i in range(attempts):
        try:
            return fn()
        except ck.KafkaException as e:
            if not e.args[0].retriable() or i == attempts - 1:
                raise
