"""Replication between real in-process brokers on loopback, with the test as
the controller (controlhelper.TestController sends LeaderAndIsr /
UpdateMetadata / StopReplica over real sockets) and a fake controller listener
that receives the leaders' AlterPartition requests (and commits them).

Brokers use replica.lag.time.max.ms=1000 and replica.fetch.wait.max.ms=100 so
ISR changes happen within a second or two."""
from __future__ import annotations

import contextlib
import time

import confluent_kafka
import pytest

from pylog.broker import Broker, BrokerConfig
from pylog.client.wire import Connection
from pylog.protocol import messages as m

from .controlhelper import FakeControllerListener, TestController

TOPIC = "replicated"
FAKE_CONTROLLER_ID = 100


class Node:
    """One broker of the test cluster, restartable on its port and data dir."""

    def __init__(self, broker_id, data_dir, extra, controller):
        self.broker_id = broker_id
        # A broker of the fake controller's cluster: only its controller's
        # requests are served (a lone broker serves none).
        self.config = {"broker.id": str(broker_id), "log.dirs": str(data_dir),
                       "listeners": "PLAINTEXT://127.0.0.1:0",
                       "replica.lag.time.max.ms": "1000", "replica.fetch.wait.max.ms": "100",
                       "auto.create.topics.enable": "false", **controller.broker_config(), **extra}
        self.broker = Broker(BrokerConfig(self.config)).start_in_thread()
        self.port = self.broker.advertised_port
        self.config["listeners"] = f"PLAINTEXT://127.0.0.1:{self.port}"

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def running(self):
        return self.broker is not None

    def stop(self):
        if self.broker is not None:
            self.broker.stop_in_thread()
            self.broker = None

    def start(self):
        self.broker = Broker(BrokerConfig(self.config)).start_in_thread()

    def partition(self, index=0):
        return self.broker.log_manager.partitions.get((TOPIC, index))

    def state(self, index=0):
        """(LEO, HW, leader_id, isr) read on the broker's loop."""
        def read():
            p = self.partition(index)
            return None if p is None else (p.log_end_offset, p.high_watermark, p.leader_id, list(p.isr))
        return self.broker.call(read)

    def log_bytes(self, index=0):
        """Every stored batch of the partition, as bytes (what replicas must share)."""
        def read():
            p = self.partition(index)
            out = bytearray()
            off = p.log_start_offset
            while off < p.log_end_offset:
                fs = p.log.read_batches(off, 1 << 20)
                chunk = bytes(fs)
                del fs
                out += chunk
                import pylog._engine as e
                h = e.batch_headers(chunk)[-1]
                off = h[1] + h[2] + 1
            return bytes(out)
        return self.broker.call(read)


@pytest.fixture
def cluster(tmp_path):
    ctl_listener = FakeControllerListener(answer=True)
    nodes = {}
    with contextlib.ExitStack() as stack:
        stack.callback(ctl_listener.close)

        def make(extra=None):
            for i in (1, 2, 3):
                nodes[i] = Node(i, tmp_path / f"broker-{i}", extra or {}, ctl_listener)
                stack.callback(nodes[i].stop)
            ctl = TestController(controller_id=FAKE_CONTROLLER_ID, controller_epoch=1, listener=ctl_listener)
            for i, n in nodes.items():
                ctl.add_broker(i, "127.0.0.1", n.port)
            return ctl, nodes, ctl_listener
        yield make


def publish(ctl, listener, nodes, leader, leader_epoch, replicas, isr, to=None):
    """LeaderAndIsr to the replicas, UpdateMetadata to every running broker."""
    targets = [r for r in (to or replicas) if nodes[r].running]
    resps = ctl.leader_and_isr(targets, TOPIC, 0, leader, leader_epoch, replicas, isr)
    for b, r in resps.items():
        assert r.error_code == 0 and all(e.error_code == 0 for e in r.partition_errors), (b, r)
    ctl.update_metadata([i for i, n in nodes.items() if n.running],
                        {(TOPIC, 0): (leader, leader_epoch, replicas, isr)},
                        extra_brokers=[(FAKE_CONTROLLER_ID, listener.host, listener.port)])


def produce(bootstrap, n, prefix=b"m", acks="all", **conf):
    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                                  "broker.address.family": "v4", **conf})
    errors, offsets = [], []

    def done(err, msg):
        (errors.append(err) if err is not None else offsets.append(msg.offset()))
    for i in range(n):
        p.produce(TOPIC, value=prefix + b"-%d" % i, partition=0, on_delivery=done)
        p.poll(0)
    p.flush(30)
    return offsets, errors


def wait_until(cond, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_acks_all_replicates_to_every_follower(cluster):
    ctl, nodes, listener = cluster()
    publish(ctl, listener, nodes, 1, 0, [1, 2, 3], [1, 2, 3])
    offsets, errors = produce(nodes[1].bootstrap, 1000)
    assert not errors and sorted(offsets) == list(range(1000))
    # acks=all answered: the leader's HW covers everything, so = its LEO.
    leo, hw, leader, isr = nodes[1].state()
    assert (leo, hw, leader, isr) == (1000, 1000, 1, [1, 2, 3])
    # Followers hold the same bytes (offsets and leader epochs as the leader wrote them).
    for i in (2, 3):
        assert nodes[i].state()[0] == 1000
        wait_until(lambda: nodes[i].state()[1] == 1000, what=f"follower {i} HW")
        assert nodes[i].log_bytes() == nodes[1].log_bytes()
    # No AlterPartition: the ISR never changed.
    assert listener.requests() == []
    # Any broker's metadata (the controller's UpdateMetadata) leads clients to broker 1.
    for i in (1, 2, 3):
        with Connection("127.0.0.1", nodes[i].port) as c:
            md = c.request(m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name=TOPIC)]),
                           api_version=5)
        assert md.controller_id == FAKE_CONTROLLER_ID
        (t,) = md.topics
        assert t.error_code == 0 and t.partitions[0].leader_id == 1
        assert t.partitions[0].replica_nodes == [1, 2, 3] and t.partitions[0].isr_nodes == [1, 2, 3]
    c = confluent_kafka.Consumer({"bootstrap.servers": nodes[3].bootstrap, "group.id": "g",
                                  "enable.auto.commit": False, "broker.address.family": "v4"})
    try:
        c.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 1000 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        assert got == [b"m-%d" % i for i in range(1000)]
    finally:
        c.close()


def test_followers_refuse_clients(cluster):
    ctl, nodes, listener = cluster()
    publish(ctl, listener, nodes, 1, 0, [1, 2, 3], [1, 2, 3])
    produce(nodes[1].bootstrap, 10)
    F = m.FetchRequest
    with Connection("127.0.0.1", nodes[2].port) as c:
        r = c.request(F(replica_id=-1, max_wait_ms=0, min_bytes=0, topics=[F.FetchTopic(
            topic=TOPIC, partitions=[F.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])]),
            api_version=10)
        # Below v11 (no client metadata) only leaders serve consumers; v11+
        # fetches from followers are KIP-392's (tests/cluster/test_read_replica.py).
        assert r.responses[0].partitions[0].error_code == 6  # NOT_LEADER_OR_FOLLOWER
    # A produce sent to a follower directly is refused, nothing appended.
    from pylog import _engine
    from pylog.protocol.produce import encode_produce_request
    with Connection("127.0.0.1", nodes[2].port) as c:
        for acks in (1, -1):
            bufs = encode_produce_request(c._next_cid, 7, "t", acks, 5000,
                                          [(TOPIC, 0, _engine.encode_batch([b"to-follower"]))])
            c.send_buffers(0, 7, bufs)
            r = c.receive()
            assert r.responses[0].partition_responses[0].error_code == 6
    assert nodes[2].state()[0] == 10


def test_isr_shrinks_through_alter_partition_and_min_insync(cluster):
    ctl, nodes, listener = cluster({"min.insync.replicas": "2"})
    publish(ctl, listener, nodes, 1, 0, [1, 2, 3], [1, 2, 3])
    offsets, errors = produce(nodes[1].bootstrap, 100)
    assert not errors
    nodes[3].stop()
    t0 = time.monotonic()
    # acks=all waits for broker 3 until the leader drops it from the ISR
    # (after replica.lag.time.max.ms) through the controller.
    offsets, errors = produce(nodes[1].bootstrap, 10, prefix=b"late")
    assert not errors and sorted(offsets) == list(range(100, 110))
    assert time.monotonic() - t0 >= 0.9
    req = listener.wait_for(lambda r: list(r.topics[0].partitions[0].new_isr) == [1, 2])
    assert req is not None and req.broker_id == 1
    p = req.topics[0].partitions[0]
    assert req.topics[0].topic_name == TOPIC and p.partition_index == 0 and p.leader_epoch == 0
    assert nodes[1].state()[3] == [1, 2]
    # ISR {1} < min.insync.replicas=2: refused before the append. A stopped
    # follower that had caught up stays in the ISR until the leader's LEO
    # moves past it (Kafka's rule; in ZooKeeper mode the controller removes
    # dead brokers): an acks=1 write moves it.
    nodes[2].stop()
    offsets, errors = produce(nodes[1].bootstrap, 1, prefix=b"one", acks="1")
    assert not errors
    wait_until(lambda: nodes[1].state()[3] == [1], what="ISR {1}")
    leo_before = nodes[1].state()[0]
    offsets, errors = produce(nodes[1].bootstrap, 1, prefix=b"refused", retries=0,
                              **{"message.timeout.ms": 5000})
    assert [e.code() for e in errors] == [confluent_kafka.KafkaError.NOT_ENOUGH_REPLICAS]
    assert nodes[1].state()[0] == leo_before
    # acks=1 still works.
    offsets, errors = produce(nodes[1].bootstrap, 1, prefix=b"two", acks="1")
    assert not errors
    # Broker 3 comes back, catches up, and the leader asks to add it again.
    nodes[3].start()
    ctl.add_broker(3, "127.0.0.1", nodes[3].port)
    ctl.leader_and_isr([3], TOPIC, 0, 1, 0, [1, 2, 3], [1])
    req = listener.wait_for(lambda r: sorted(r.topics[0].partitions[0].new_isr) == [1, 3])
    assert req is not None
    wait_until(lambda: sorted(nodes[1].state()[3]) == [1, 3], what="ISR {1, 3}")
    assert nodes[3].log_bytes() == nodes[1].log_bytes()


def test_leader_change_truncates_divergent_follower(cluster):
    ctl, nodes, listener = cluster()
    nodes[3].stop()
    publish(ctl, listener, nodes, 1, 0, [1, 2], [1, 2])
    offsets, errors = produce(nodes[1].bootstrap, 100, prefix=b"common")
    assert not errors
    wait_until(lambda: nodes[2].state()[0] == 100, what="broker 2 caught up")
    # Broker 2 goes away; broker 1 takes writes only it has (acks=1).
    nodes[2].stop()
    offsets, errors = produce(nodes[1].bootstrap, 50, prefix=b"divergent", acks="1")
    assert not errors and nodes[1].state()[0] == 150
    nodes[1].stop()
    # Broker 2 becomes leader with epoch 1 and takes other writes.
    nodes[2].start()
    ctl.add_broker(2, "127.0.0.1", nodes[2].port)
    del ctl.brokers[1]
    publish(ctl, listener, nodes, 2, 1, [1, 2], [2], to=[2])
    offsets, errors = produce(nodes[2].bootstrap, 30, prefix=b"new-leader", acks="1")
    assert not errors and sorted(offsets) == list(range(100, 130))
    # Broker 1 returns as a follower: it must drop its 50 divergent records
    # (OffsetForLeaderEpoch: epoch 0 ends at 100 on the leader) and copy 2's.
    nodes[1].start()
    ctl.add_broker(1, "127.0.0.1", nodes[1].port)
    publish(ctl, listener, nodes, 2, 1, [1, 2], [2], to=[1])
    wait_until(lambda: nodes[1].state()[0] == 130 and nodes[1].state()[2] == 2, what="broker 1 caught up")
    assert nodes[1].log_bytes() == nodes[2].log_bytes()
    epochs = nodes[1].broker.call(lambda: nodes[1].partition().epoch_cache.epoch_entries())
    assert epochs == [(0, 0), (1, 100)]


def test_stale_controller_and_leader_epochs_are_refused(cluster):
    ctl, nodes, listener = cluster()
    publish(ctl, listener, nodes, 1, 3, [1, 2, 3], [1, 2, 3])
    ctl.controller_epoch = 5
    r = ctl.leader_and_isr([1], TOPIC, 0, 1, 4, [1, 2, 3], [1, 2, 3])[1]
    assert r.error_code == 0
    # An older controller: refused as a whole.
    r = ctl.leader_and_isr([1], TOPIC, 0, 2, 9, [1, 2, 3], [1, 2, 3], controller_epoch=4)[1]
    assert r.error_code == 11 and [e.error_code for e in r.partition_errors] == [11]
    r = ctl.update_metadata([1], {(TOPIC, 0): (2, 9, [1, 2, 3], [2])}, controller_epoch=4)[1]
    assert r.error_code == 11
    r = ctl.stop_replica([1], TOPIC, [0], controller_epoch=4)[1]
    assert r.error_code == 11
    assert nodes[1].state()[2] == 1 and nodes[1].partition().leader_epoch == 4
    # A current controller but an older leader epoch: FENCED_LEADER_EPOCH.
    r = ctl.leader_and_isr([1], TOPIC, 0, 2, 3, [1, 2, 3], [1, 2, 3])[1]
    assert r.error_code == 0 and [e.error_code for e in r.partition_errors] == [74]
    assert nodes[1].state()[2] == 1


def test_stop_replica_deletes_the_partition(cluster):
    ctl, nodes, listener = cluster()
    publish(ctl, listener, nodes, 1, 0, [1, 2, 3], [1, 2, 3])
    produce(nodes[1].bootstrap, 10)
    wait_until(lambda: nodes[3].state()[0] == 10, what="broker 3 caught up")
    path = nodes[3].partition().path
    r = ctl.stop_replica([3], TOPIC, [0], delete=True)[3]
    assert r.error_code == 0 and [e.error_code for e in r.partition_errors] == [0]
    assert nodes[3].partition() is None
    import os
    wait_until(lambda: not os.path.exists(path), what="partition directory removed")


def test_alter_partition_without_controller_is_not_controller(cluster):
    ctl, nodes, listener = cluster()
    Q = m.AlterPartitionRequest
    with Connection("127.0.0.1", nodes[2].port) as c:
        r = c.request(Q(broker_id=1, broker_epoch=-1, topics=[Q.TopicData(topic_name=TOPIC, partitions=[
            Q.PartitionData(partition_index=0, leader_epoch=0, new_isr=[1], partition_epoch=0)])]),
            api_version=0)
    assert r.error_code == 41  # NOT_CONTROLLER
