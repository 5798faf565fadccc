"""Fetch from the closest replica (KIP-392) on three in-process brokers with
racks r0, r1, r2 (broker ids 1, 2, 3) and a real ZooKeeper.

What proves which replica served a consumer: each replica's bytes_out
(Kafka's BytesOutPerSec: record bytes sent to consumers, replication
excluded), counted when a Fetch answer is sent, and librdkafka's own
statistics (the broker it fetches a partition from).

replica.lag.time.max.ms is 30 s (Kafka's default) so that a follower made to
stop fetching stays in the ISR for the whole test: that is what holds the
high watermark back while the leader has more records.
"""
from __future__ import annotations

import contextlib
import json
import time

import pytest

from pylog import Consumer, _engine
from pylog.broker.config import BrokerConfig
from pylog.client.wire import Connection
from pylog.errors import InvalidConfigError
from pylog.protocol import messages as m
from pylog.testing import running_broker

from .zkcluster import (
    CLUSTER,
    AdminClient,
    NewTopic,
    bootstrap,
    ck,
    partition_md,
    wait_for,
)

SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
RACKS = {1: "r0", 2: "r1", 3: "r2"}
BASE = {**CLUSTER, "replica.lag.time.max.ms": "30000", "num.partitions": "1"}
NOT_LEADER_OR_FOLLOWER, OFFSET_OUT_OF_RANGE, UNKNOWN_LEADER_EPOCH = 6, 1, 75


@contextlib.contextmanager
def rack_cluster(zk_connect, selectors=None, **extra):
    """Brokers 1-3 in racks r0-r2; selectors: {broker id: replica.selector.class}
    (default: Kafka's class name on every broker)."""
    selectors = {i: SELECTOR for i in RACKS} if selectors is None else selectors
    with contextlib.ExitStack() as stack:
        brokers = []
        for i, rack in RACKS.items():
            cfg = {**BASE, "broker.id": str(i), "zookeeper.connect": zk_connect, "broker.rack": rack, **extra}
            if selectors.get(i):
                cfg["replica.selector.class"] = selectors[i]
            brokers.append(stack.enter_context(running_broker(config=cfg)))
        wait_for(lambda: sum(1 for b in brokers if b.broker.controller.is_active) == 1,
                 what="one active controller")
        active = next(b.broker.controller for b in brokers if b.broker.controller.is_active)
        wait_for(lambda: active.live_broker_ids() == set(RACKS), what="every broker registered")
        # Leaders learn the other brokers' racks from UpdateMetadata.
        wait_for(lambda: all({e.id: e.rack for e in b.broker.call(
            lambda b=b: list(b.broker.metadata_cache.brokers.values()))} == RACKS for b in brokers),
            what="every broker's rack in every metadata cache")
        yield {b.broker.broker_id: b for b in brokers}


def create_placed(bs, topic, replicas):
    """A one-partition topic on exactly these replicas (the first leads)."""
    admin = AdminClient({"bootstrap.servers": bootstrap(bs.values())})
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[replicas])])[topic].result(20)
    wait_for(lambda: (lambda md: 0 in md and md[0].leader == replicas[0] and len(md[0].isrs) == len(replicas))(
        partition_md(admin, topic)), what=f"{topic}: leader {replicas[0]} and a full ISR")


def produce(bs, topic, n, prefix, acks="all"):
    p = ck.Producer({"bootstrap.servers": bootstrap(bs.values()), "acks": acks, "linger.ms": 5,
                     "enable.idempotence": acks == "all"})
    errors = []
    for i in range(n):
        p.produce(topic, b"%s-%d" % (prefix, i), partition=0,
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
        p.poll(0)
    assert p.flush(30) == 0 and errors == []


def replica(b, topic):
    """(log_end_offset, high_watermark, bytes_out, log bytes) of b's replica, read on its loop."""
    def read():
        p = b.broker.log_manager.partitions[(topic, 0)]
        return p.log_end_offset, p.high_watermark, p.bytes_out, p.log.size_bytes
    return b.broker.call(read)


def fetch(b, topic, offset, version=11, rack="", replica_id=-1, isolation=0, leader_epoch=-1,
          max_wait_ms=0, min_bytes=0):
    """One partition's answer to a raw Fetch sent to broker b."""
    F = m.FetchRequest
    with Connection("127.0.0.1", b.port) as c:
        r = c.request(F(replica_id=replica_id, max_wait_ms=max_wait_ms, min_bytes=min_bytes,
                        isolation_level=isolation, rack_id=rack, topics=[F.FetchTopic(topic=topic, partitions=[
                            F.FetchPartition(partition=0, fetch_offset=offset, current_leader_epoch=leader_epoch,
                                             partition_max_bytes=1 << 20)])]), api_version=version)
    assert r.error_code == 0
    return r.responses[0].partitions[0]


def values(part, topic, offset):
    if not part.records:
        return []
    records, _next = _engine.decode_fetched(part.records, topic, 0, offset, True)
    return [bytes(r.value) for r in records]


class RdkafkaReader:
    """A confluent-kafka consumer of partition 0 from offset 0, keeping its
    latest statistics (which broker it fetches the partition from)."""

    def __init__(self, bs, topic, rack):
        self.topic = topic
        self.stats = None
        self.got = []
        self.c = ck.Consumer({"bootstrap.servers": bootstrap(bs.values()), "group.id": f"{topic}-reader",
                              "enable.auto.commit": False, "client.rack": rack,
                              "statistics.interval.ms": 100, "stats_cb": self._stats})
        self.c.assign([ck.TopicPartition(topic, 0, 0)])

    def _stats(self, text):
        self.stats = json.loads(text)

    def read_until(self, n, timeout=30.0):
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            self.poll(0.2)
        return self.got

    def poll(self, timeout):
        for msg in self.c.consume(num_messages=1000, timeout=timeout):
            assert msg.error() is None, msg.error()
            self.got.append((msg.offset(), msg.value()))

    def fetching_from(self):
        """(broker fetched from, leader) of the partition in the latest statistics."""
        self.stats = None
        wait_for(lambda: self.poll(0.05) or self.stats is not None, what="librdkafka statistics")
        p = self.stats["topics"][self.topic]["partitions"]["0"]
        return p["broker"], p["leader"]

    def close(self):
        self.c.close()


def test_replica_selector_config():
    assert BrokerConfig({}).replica_selector() is None        # Kafka's default: leaders only
    assert BrokerConfig({"replica.selector.class": SELECTOR}).replica_selector() == "rack-aware"
    assert BrokerConfig({"replica.selector.class": "RackAwareReplicaSelector"}).replica_selector() == "rack-aware"
    with pytest.raises(InvalidConfigError, match="replica.selector.class"):
        BrokerConfig({"replica.selector.class": "com.example.ClosestSelector"})


def test_the_rack_aware_choice_among_a_leaders_replicas(tmp_path):
    """Partition.preferred_read_replica on a real leader replica (its own log),
    its followers' positions given as their fetches would: the rules Kafka's
    findPreferredReadReplica and RackAwareReplicaSelector apply."""
    from pylog.broker.config import TopicConfig
    from pylog.broker.metadata_cache import PartitionState
    from pylog.broker.partition import Partition

    p = Partition("t", 0, str(tmp_path / "t-0"), TopicConfig(BrokerConfig({})), 1, controller_managed=True)
    try:
        p.make_leader(PartitionState(1, 0, [1, 2, 3, 4], [1, 2, 3]), now_ms=0)
        p.append_as_leader(_engine.encode_batch([b"x"] * 10), 1)
        p.update_follower_fetch(2, 10, 0, now_ms=1000)
        p.update_follower_fetch(3, 8, 0, now_ms=1000)
        p.update_follower_fetch(4, 10, 0, now_ms=1000)   # a replica outside the ISR
        racks = {1: "a", 2: "b", 3: "b", 4: "c"}
        live = set(racks)

        def choose(rack, offset):
            return p.preferred_read_replica(offset, rack, racks[1], lambda r: (r in live, racks[r]), 5000)
        assert choose("b", 5) == 2           # the most caught up of rack b
        assert choose("b", 9) == 2           # broker 3's log ends at 8
        assert choose("a", 5) == -1          # the leader's own rack: the leader
        racks[2] = "a"
        assert choose("a", 5) == -1          # ... even with a follower there too
        racks[2] = "b"
        assert choose("", 5) == -1 and choose("z", 5) == -1
        assert choose("c", 5) == -1          # broker 4 is not in the ISR
        live.discard(2)                      # not a live broker (no UpdateMetadata entry)
        assert (choose("b", 5), choose("b", 9)) == (3, -1)
        live.add(2)
        # Equal log ends: the one caught up most recently.
        p.update_follower_fetch(3, 10, 0, now_ms=2000)
        assert choose("b", 5) == 3
        # A follower whose log starts after the offset does not hold it.
        p.update_follower_fetch(3, 10, 6, now_ms=3000)
        assert choose("b", 5) == 2
        # Only a leader chooses.
        p.make_follower(PartitionState(2, 1, [1, 2, 3, 4], [1, 2, 3]))
        assert choose("b", 5) == -1
    finally:
        p.close()


def test_a_consumer_in_a_followers_rack_reads_everything_from_that_follower(zk_connect):
    with rack_cluster(zk_connect) as bs:
        create_placed(bs, "near", [1, 2, 3])
        produce(bs, "near", 3000, b"near")
        r = RdkafkaReader(bs, "near", rack="r1")   # broker 2's rack
        try:
            got = r.read_until(3000)
            assert got == [(i, b"near-%d" % i) for i in range(3000)]
            assert r.fetching_from() == (2, 1)
        finally:
            r.close()
        # Every batch went out of broker 2; the leader only named it.
        leo, hw, out, size = replica(bs[2], "near")
        assert (leo, hw) == (3000, 3000) and out >= size > 0
        assert replica(bs[1], "near")[2] == 0 and replica(bs[3], "near")[2] == 0


def test_the_leader_names_the_replica_in_the_clients_rack(zk_connect):
    # Broker 2 leads here, configured with the short class name.
    with rack_cluster(zk_connect, selectors={1: SELECTOR, 2: "RackAwareReplicaSelector", 3: SELECTOR}) as bs:
        create_placed(bs, "far", [2, 1, 3])
        produce(bs, "far", 100, b"far")
        leader = bs[2]
        for rack, expected in (("r2", 3), ("r0", 1)):
            t0 = time.monotonic()
            # min_bytes no answer could reach: a redirect is answered at once
            # (Kafka's hasPreferredReadReplica), not after max_wait_ms.
            p = fetch(leader, "far", 0, rack=rack, max_wait_ms=10000, min_bytes=1 << 30)
            assert time.monotonic() - t0 < 5
            assert (p.error_code, p.preferred_read_replica, p.high_watermark) == (0, expected, 100)
            assert not p.records
            # At the high watermark too: the replica's log end covers it.
            p = fetch(leader, "far", 100, rack=rack)
            assert (p.error_code, p.preferred_read_replica) == (0, expected)
        # The leader's own rack, no rack, a rack with no replica, and a v10
        # fetch (no rack_id): the leader serves, preferred_read_replica -1.
        for rack in ("r1", "", "elsewhere"):
            p = fetch(leader, "far", 0, rack=rack)
            assert (p.error_code, p.preferred_read_replica) == (0, -1)
            assert values(p, "far", 0) == [b"far-%d" % i for i in range(100)]
        p = fetch(leader, "far", 0, version=10)
        assert p.error_code == 0 and len(values(p, "far", 0)) == 100
        # A follower never sends anyone elsewhere. (It serves what it knows
        # is committed: it learns the HW from its next fetch of the leader.)
        wait_for(lambda: replica(bs[3], "far")[:2] == (100, 100), what="follower 3 at HW 100")
        p = fetch(bs[3], "far", 0, rack="r0")
        assert (p.error_code, p.preferred_read_replica) == (0, -1) and len(values(p, "far", 0)) == 100


def test_without_a_replica_selector_the_leader_serves_every_rack(zk_connect):
    with rack_cluster(zk_connect, selectors={}) as bs:
        create_placed(bs, "plain", [1, 2, 3])
        produce(bs, "plain", 50, b"plain")
        for rack in ("r1", "r2"):
            p = fetch(bs[1], "plain", 0, rack=rack)
            assert (p.error_code, p.preferred_read_replica) == (0, -1)
            assert values(p, "plain", 0) == [b"plain-%d" % i for i in range(50)]
        served_before = replica(bs[1], "plain")[2]
        r = RdkafkaReader(bs, "plain", rack="r1")
        try:
            assert len(r.read_until(50)) == 50
            assert r.fetching_from() == (1, 1)
        finally:
            r.close()
        # The reader's bytes came from the leader, none from either follower.
        assert replica(bs[1], "plain")[2] - served_before >= replica(bs[1], "plain")[3]
        assert replica(bs[2], "plain")[2] == 0 and replica(bs[3], "plain")[2] == 0


def test_what_a_follower_serves_and_refuses(zk_connect):
    with rack_cluster(zk_connect) as bs:
        create_placed(bs, "rules", [1, 2, 3])
        produce(bs, "rules", 50, b"rules")
        follower = bs[2]
        wait_for(lambda: replica(follower, "rules")[:2] == (50, 50), what="follower 2 at HW 50")
        expected = [b"rules-%d" % i for i in range(50)]
        # A consumer that sent client metadata (v11), with or without a rack.
        for rack in ("", "r1", "r0"):
            p = fetch(follower, "rules", 0, rack=rack)
            assert (p.error_code, p.high_watermark, p.preferred_read_replica) == (0, 50, -1)
            assert values(p, "rules", 0) == expected
        # read_committed: LSO = HW (no transactions), so the same records.
        p = fetch(follower, "rules", 0, isolation=1)
        assert (p.error_code, p.last_stable_offset) == (0, 50) and values(p, "rules", 0) == expected
        # A consumer below v11 has no client metadata: leaders only.
        p = fetch(follower, "rules", 0, version=10)
        assert p.error_code == NOT_LEADER_OR_FOLLOWER and not p.records
        # A follower never serves another follower.
        p = fetch(follower, "rules", 0, replica_id=3)
        assert p.error_code == NOT_LEADER_OR_FOLLOWER and not p.records
        # Past this replica's log end: OFFSET_OUT_OF_RANGE (a KIP-392 client
        # then goes back to the leader).
        p = fetch(follower, "rules", 51)
        assert p.error_code == OFFSET_OUT_OF_RANGE
        # A leader epoch newer than the one this follower knows.
        epoch = follower.broker.call(lambda: follower.broker.log_manager.partitions[("rules", 0)].leader_epoch)
        p = fetch(follower, "rules", 0, leader_epoch=epoch + 1)
        assert p.error_code == UNKNOWN_LEADER_EPOCH
        p = fetch(follower, "rules", 0, leader_epoch=epoch)
        assert p.error_code == 0 and len(values(p, "rules", 0)) == 50


def test_a_follower_serves_nothing_above_its_high_watermark(zk_connect):
    with rack_cluster(zk_connect) as bs:
        create_placed(bs, "hw", [1, 2, 3])
        produce(bs, "hw", 100, b"committed")
        for i in (2, 3):
            wait_for(lambda i=i: replica(bs[i], "hw")[:2] == (100, 100), what=f"follower {i} at HW 100")
        # Broker 3 stops fetching, as a stalled replica would, and stays in the
        # ISR (replica.lag.time.max.ms is 30 s): the HW stays at 100 while the
        # leader and broker 2 take 50 more records.
        b3 = bs[3]
        b3.broker.call(lambda: b3.broker.replica_manager.fetchers.remove(("hw", 0)))
        produce(bs, "hw", 50, b"uncommitted", acks="1")
        wait_for(lambda: replica(bs[2], "hw")[0] == 150, what="broker 2 holds the 50 uncommitted records")
        assert replica(bs[1], "hw")[:2] == (150, 100) and replica(bs[2], "hw")[:2] == (150, 100)

        r = RdkafkaReader(bs, "hw", rack="r1")
        try:
            assert r.read_until(100) == [(i, b"committed-%d" % i) for i in range(100)]
            assert r.fetching_from() == (2, 1)
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                r.poll(0.2)
            assert len(r.got) == 100, "a record above the high watermark was read"
            # The same from the follower directly: nothing from the HW to its
            # log end (stored, not committed), out of range past it.
            for offset in (100, 120, 150):
                p = fetch(bs[2], "hw", offset)
                assert (p.error_code, p.high_watermark, p.records or b"") == (0, 100, b"")
            assert fetch(bs[2], "hw", 151).error_code == OFFSET_OUT_OF_RANGE
            # A consumer of the leader reads no further. (The only bytes the
            # leader sends a consumer here.)
            assert replica(bs[1], "hw")[2] == 0
            p = fetch(bs[1], "hw", 0)
            assert (p.error_code, p.high_watermark) == (0, 100)
            assert values(p, "hw", 0) == [b"committed-%d" % i for i in range(100)]
            leader_out = len(p.records)
            # The leader sends rack r2 to broker 3 only for an offset broker 3
            # holds (Kafka: log_end_offset >= the fetch offset).
            assert fetch(bs[1], "hw", 100, rack="r2").preferred_read_replica == 3
            p = fetch(bs[1], "hw", 120, rack="r2")
            assert (p.error_code, p.preferred_read_replica, p.records or b"") == (0, -1, b"")

            # Broker 3 fetches again: the HW reaches 150 and the consumer,
            # still on broker 2, gets the rest.
            b3.broker.call(lambda: b3.broker.replica_manager.fetchers.add(
                b3.broker.log_manager.partitions[("hw", 0)], truncate=False))
            got = r.read_until(150)
            assert got == [(i, b"committed-%d" % i) for i in range(100)] + [
                (100 + i, b"uncommitted-%d" % i) for i in range(50)]
            assert r.fetching_from() == (2, 1)
        finally:
            r.close()
        assert replica(bs[1], "hw")[2] == leader_out


def test_pylog_consumer_follows_the_preferred_read_replica_and_falls_back_to_the_leader(zk_connect):
    with rack_cluster(zk_connect, **{"min.insync.replicas": "1"}) as bs:
        create_placed(bs, "py", [1, 2, 3])
        produce(bs, "py", 500, b"first")
        got = []
        with Consumer(bootstrap_servers=bootstrap(bs.values()), client_rack="r2", auto_offset_reset="earliest",
                      enable_auto_commit=False) as c:
            c.assign([("py", 0)])

            def read_until(n):
                deadline = time.monotonic() + 30
                while len(got) < n and time.monotonic() < deadline:
                    got.extend(bytes(r.value) for r in c.poll(0.2))
            read_until(500)
            assert got == [b"first-%d" % i for i in range(500)]
            _leo, _hw, out, size = replica(bs[3], "py")
            assert out >= size > 0
            assert replica(bs[1], "py")[2] == 0 and replica(bs[2], "py")[2] == 0
            # The read replica stops (it answers NOT_LEADER_OR_FOLLOWER once
            # the controller stops its replica, then its connection drops): the
            # consumer goes back to the leader, which has no other replica in
            # r2 to offer.
            bs[3].broker.stop_in_thread()
            produce({1: bs[1], 2: bs[2]}, "py", 200, b"second", acks="1")
            read_until(700)
        assert got[500:] == [b"second-%d" % i for i in range(200)]
        assert replica(bs[1], "py")[2] > 0
