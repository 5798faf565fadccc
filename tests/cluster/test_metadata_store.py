"""The two MetadataStore backends against the same expectations, with a real
ZooKeeper (tests/cluster/conftest.py) and real files.

Each store object is one session; tests open several to play several brokers."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from pylog.cluster import zk_server
from pylog.cluster.local_store import LocalMetadataStore
from pylog.cluster.metadata_store import (
    BrokerIdInUseError,
    BrokerInfo,
    ControllerMovedError,
    PartitionState,
    TopicAssignment,
)
from pylog.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

SESSION_TIMEOUT_MS = 6000


@pytest.fixture(params=["zk", "local"])
def backend(request):
    return request.param


@pytest.fixture
def make_store(backend, request, tmp_path):
    """make_store() opens one more session on the test's metadata; all are closed at teardown."""
    opened = []
    if backend == "zk":
        if not os.environ.get("PYLOG_CI"):
            pytest.importorskip("kazoo")
        from pylog.cluster.zk_store import ZkMetadataStore
        connect = request.getfixturevalue("zk_connect")

        def make():
            opened.append(ZkMetadataStore(connect, session_timeout_ms=SESSION_TIMEOUT_MS))
            return opened[-1]
    else:
        path = str(tmp_path / "pylog-cluster")

        def make():
            opened.append(LocalMetadataStore(path))
            return opened[-1]
    yield make
    for s in opened:
        s.close()


@pytest.fixture
def zk_store(zk_connect):
    from pylog.cluster.zk_store import ZkMetadataStore
    opened = []

    def make(**kw):
        opened.append(ZkMetadataStore(zk_connect, **{"session_timeout_ms": SESSION_TIMEOUT_MS, **kw}))
        return opened[-1]
    yield make
    for s in opened:
        s.close()


def wait_for(q: queue.Queue, pred, timeout=10.0):
    """The first value from q that satisfies pred (AssertionError after timeout)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        try:
            value = q.get(timeout=max(left, 0.001))
        except queue.Empty:
            raise AssertionError(f"no matching value within {timeout} s; saw {seen}") from None
        seen.append(value)
        if pred(value):
            return value


def assignment(name="t", partitions=None):
    return TopicAssignment(name, uuid.uuid4(), partitions or {0: [1, 2], 1: [2, 1]})


def state(leader=1, leader_epoch=0, isr=(1, 2), controller_epoch=1):
    return PartitionState(leader=leader, leader_epoch=leader_epoch, isr=list(isr), controller_epoch=controller_epoch)


# -- brokers ----------------------------------------------------------------------------

def test_registration_appears_and_disappears_with_the_session(make_store):
    a, b, observer = make_store(), make_store(), make_store()
    seen = queue.Queue()
    observer.watch_brokers(seen.put)
    assert wait_for(seen, lambda v: True) == {}
    a.register_broker(BrokerInfo(1, "127.0.0.1", 9092, rack="r1"))
    b.register_broker(BrokerInfo(2, "127.0.0.1", 9093))
    both = {1: BrokerInfo(1, "127.0.0.1", 9092, "r1"), 2: BrokerInfo(2, "127.0.0.1", 9093, None)}
    assert wait_for(seen, lambda v: len(v) == 2) == both
    assert observer.live_brokers() == both
    a.close()
    assert wait_for(seen, lambda v: 1 not in v) == {2: both[2]}
    assert observer.live_brokers() == {2: both[2]}


def test_a_broker_id_has_one_owner(make_store):
    a, b = make_store(), make_store()
    a.register_broker(BrokerInfo(1, "127.0.0.1", 9092))
    with pytest.raises(BrokerIdInUseError):
        b.register_broker(BrokerInfo(1, "127.0.0.1", 9999))
    # The owner may re-register (e.g. a changed address).
    a.register_broker(BrokerInfo(1, "127.0.0.1", 9094))
    assert b.live_brokers()[1].port == 9094
    a.close()
    b.register_broker(BrokerInfo(1, "127.0.0.1", 9999))
    assert b.live_brokers()[1].port == 9999


def test_zk_registration_is_kafkas_v5_json(zk_store):
    s = zk_store()
    s.register_broker(BrokerInfo(3, "127.0.0.1", 9092, rack="rack-a"))
    data, stat = s.client.get("/brokers/ids/3")
    obj = json.loads(data)
    assert stat.ephemeralOwner == s.session_id
    assert obj["version"] == 5 and obj["host"] == "127.0.0.1" and obj["port"] == 9092
    assert obj["endpoints"] == ["PLAINTEXT://127.0.0.1:9092"]
    assert obj["listener_security_protocol_map"] == {"PLAINTEXT": "PLAINTEXT"}
    assert obj["rack"] == "rack-a" and obj["jmx_port"] == -1 and obj["timestamp"].isdigit()


def test_zk_session_expiry_drops_the_registration_and_the_broker_registers_again(zk_store, zookeeper):
    from kazoo.client import KazooClient
    a, observer = zk_store(), zk_store()
    a.register_broker(BrokerInfo(1, "127.0.0.1", 9092))
    old_session = a.session_id
    # Expire a's session the way ZooKeeper's own tests do: a second client joins
    # the same session (id + password) and closes it.
    session_id, password = a.client.client_id
    intruder = KazooClient(hosts=a.connect, client_id=(session_id, password), timeout=SESSION_TIMEOUT_MS / 1000)
    intruder.start(timeout=15)
    intruder.stop()
    intruder.close()
    deadline = time.monotonic() + 15
    owner = None
    while time.monotonic() < deadline:
        stat = observer.client.exists("/brokers/ids/1")
        owner = stat.ephemeralOwner if stat else None
        if owner not in (None, old_session):
            break
        time.sleep(0.05)
    assert owner == a.session_id != old_session
    assert observer.live_brokers() == {1: BrokerInfo(1, "127.0.0.1", 9092)}


# -- controller ---------------------------------------------------------------------------

def test_controller_election_and_failover_within_the_session_timeout(make_store):
    a, b = make_store(), make_store()
    assert a.controller_epoch() == 0 and a.controller_id() is None
    assert a.elect_controller(1) == 1
    assert a.elect_controller(1) == 1          # already controller: same epoch
    assert b.elect_controller(2) is None
    assert b.controller_id() == 1 and b.controller_epoch() == 1
    changes = queue.Queue()
    b.watch_controller(changes.put)
    assert wait_for(changes, lambda v: True) == 1
    t0 = time.monotonic()
    a.close()
    assert wait_for(changes, lambda v: v is None) is None
    assert b.elect_controller(2) == 2
    elapsed = time.monotonic() - t0
    assert elapsed < SESSION_TIMEOUT_MS / 1000, elapsed
    assert wait_for(changes, lambda v: v is not None) == 2
    assert b.controller_id() == 2 and b.controller_epoch() == 2


_CHILD = """
import sys, time
from pylog.cluster.zk_store import ZkMetadataStore
from pylog.cluster.metadata_store import BrokerInfo
s = ZkMetadataStore(sys.argv[1], session_timeout_ms=int(sys.argv[2]))
s.register_broker(BrokerInfo(1, "127.0.0.1", 9092))
print(s.elect_controller(1), flush=True)
time.sleep(600)
"""


def test_zk_controller_death_is_noticed_within_the_session_timeout(zk_store, zk_connect):
    # A real crash: the process is SIGKILLed and never closes its session, so only
    # ZooKeeper's session timeout (4 s, the minimum for tickTime 2000) ends it.
    timeout_ms = 4000
    child = subprocess.Popen([sys.executable, "-c", _CHILD, zk_connect, str(timeout_ms)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "1"
        b = zk_store()
        changes, brokers = queue.Queue(), queue.Queue()
        b.watch_controller(changes.put)
        b.watch_brokers(brokers.put)
        assert wait_for(changes, lambda v: True) == 1
        t0 = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait()
        wait_for(changes, lambda v: v is None, timeout=30)
        elapsed = time.monotonic() - t0
        assert b.elect_controller(2) == 2
        wait_for(brokers, lambda v: 1 not in v)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    # ZooKeeper expires a session at most one tick (2 s) after its timeout.
    assert 1.0 < elapsed < timeout_ms / 1000 + 2.0 + 1.0, elapsed


def _fenced_writes(store, topic):
    tp_state = state(leader=1, leader_epoch=5)
    return {
        "create_topic": lambda: store.create_topic(assignment("other")),
        "set_assignment": lambda: store.set_assignment(TopicAssignment(topic, uuid.uuid4(), {0: [1, 2], 1: [2, 1],
                                                                                            2: [1, 2]})),
        "set_topic_configs": lambda: store.set_topic_configs(topic, {"retention.ms": "1"}),
        "create_partition_state": lambda: store.create_partition_state(topic, 1, tp_state),
        "update_partition_state": lambda: store.update_partition_state(topic, 0, tp_state, 0),
        "delete_topic": lambda: store.delete_topic(topic),
        "set_group_configs": lambda: store.set_group_configs("g", {"consumer.session.timeout.ms": "50000"}),
    }


def _assert_fenced(stale, current, topic):
    for name, write in _fenced_writes(stale, topic).items():
        with pytest.raises(ControllerMovedError) as info:
            write()
        assert info.value.error_code == 11, name
    # Nothing the stale controller tried is visible.
    assert set(current.topics()) == {topic}
    assert sorted(current.topics()[topic].partitions) == [0, 1]
    assert current.topic_configs(topic) == {"cleanup.policy": "delete"}
    assert current.group_configs() == {}
    assert current.partition_state(topic, 0).partition_epoch == 0
    assert current.partition_state(topic, 1) is None
    # The current controller writes fine.
    assert current.update_partition_state(topic, 0, state(leader=2, leader_epoch=1), 0).partition_epoch == 1


def test_a_resigned_controller_is_fenced_after_a_new_election(make_store):
    a, b = make_store(), make_store()
    assert a.elect_controller(1) == 1
    a.create_topic(assignment("t"), {"cleanup.policy": "delete"})
    a.create_partition_state("t", 0, state())
    a.resign_controller()
    assert b.controller_id() is None
    assert b.elect_controller(2) == 2
    _assert_fenced(a, b, "t")


def test_zk_controller_whose_node_vanished_is_fenced(zk_store):
    # What a controller sees when its session expired behind its back: its
    # /controller node is gone and someone else got elected; its store is still open.
    a, b = zk_store(), zk_store()
    assert a.elect_controller(1) == 1
    a.create_topic(assignment("t"), {"cleanup.policy": "delete"})
    a.create_partition_state("t", 0, state())
    b.client.delete("/controller")
    assert b.elect_controller(2) == 2
    _assert_fenced(a, b, "t")


def test_zk_controller_and_epoch_nodes_are_kafkas(zk_store):
    a = zk_store()
    assert a.elect_controller(7) == 1
    data, stat = a.client.get("/controller")
    assert stat.ephemeralOwner == a.session_id
    obj = json.loads(data)
    assert obj["version"] == 1 and obj["brokerid"] == 7 and obj["timestamp"].isdigit()
    assert a.client.get("/controller_epoch")[0] == b"1"


# -- partition state CAS ---------------------------------------------------------------------

def test_concurrent_partition_state_updates_exactly_one_wins(make_store):
    stores = [make_store() for _ in range(4)]
    stores[0].create_topic(assignment("t"))
    created = stores[0].create_partition_state("t", 0, state())
    assert created == state()
    assert created.partition_epoch == 0
    with pytest.raises(FileExistsError):
        stores[1].create_partition_state("t", 0, state())
    barrier = threading.Barrier(len(stores))
    results = [None] * len(stores)

    def update(i):
        barrier.wait()
        results[i] = stores[i].update_partition_state("t", 0, state(isr=[1], leader_epoch=i), 0)
    threads = [threading.Thread(target=update, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [(i, r) for i, r in enumerate(results) if r is not None]
    assert len(winners) == 1, results
    i, won = winners[0]
    assert won == PartitionState(1, i, [1], 1, partition_epoch=1)
    assert stores[3].partition_state("t", 0) == won
    # A writer that read epoch 0 is refused; one that read 1 succeeds and moves it to 2.
    assert stores[0].update_partition_state("t", 0, state(), 0) is None
    assert stores[0].update_partition_state("t", 0, state(isr=[1, 2], leader_epoch=9), 1).partition_epoch == 2
    assert stores[1].partition_state("t", 0).isr == [1, 2]
    with pytest.raises(UnknownTopicOrPartitionError):
        stores[0].update_partition_state("t", 5, state(), 0)


# -- topics ----------------------------------------------------------------------------------------

def test_topics_round_trip(make_store):
    a, b = make_store(), make_store()
    ta = assignment("orders", {0: [1, 2, 3], 1: [2, 3, 1]})
    a.create_topic(ta, {"retention.ms": "1000"})
    a.create_topic(assignment("audit", {0: [3]}))
    assert b.topics() == {"audit": b.topics()["audit"], "orders": ta}
    with pytest.raises(TopicAlreadyExistsError):
        b.create_topic(assignment("orders"))
    assert b.topic_configs("orders") == {"retention.ms": "1000"}
    assert b.topic_configs("audit") == {}
    b.set_topic_configs("orders", {"retention.ms": "2000", "cleanup.policy": "compact"})
    assert a.topic_configs("orders") == {"retention.ms": "2000", "cleanup.policy": "compact"}
    # Partitions added; the topic id cannot change.
    b.set_assignment(TopicAssignment("orders", uuid.uuid4(), {**ta.partitions, 2: [3, 1, 2]}))
    grown = a.topics()["orders"]
    assert grown.topic_id == ta.topic_id and grown.partitions[2] == [3, 1, 2] and len(grown.partitions) == 3
    for p in range(3):
        a.create_partition_state("orders", p, state(leader=grown.partitions[p][0]))
    assert b.partition_state("orders", 2).leader == 3
    b.delete_topic("orders")
    assert set(a.topics()) == {"audit"}
    assert a.partition_state("orders", 0) is None
    for call in (lambda: a.topic_configs("orders"), lambda: a.delete_topic("orders"),
                 lambda: a.set_assignment(ta), lambda: a.set_topic_configs("orders", {}),
                 lambda: a.create_partition_state("orders", 0, state())):
        with pytest.raises(UnknownTopicOrPartitionError):
            call()
    # The name can be reused, with fresh configs and no old partition states.
    a.create_topic(assignment("orders", {0: [1]}))
    assert a.topic_configs("orders") == {} and a.partition_state("orders", 0) is None


def test_zk_topic_nodes_are_kafkas(zk_store):
    s = zk_store()
    ta = assignment("t", {0: [1, 2], 1: [2, 1]})
    s.create_topic(ta, {"min.insync.replicas": "2"})
    s.create_partition_state("t", 1, state(leader=2, leader_epoch=3, isr=[2, 1], controller_epoch=4))
    topic = json.loads(s.client.get("/brokers/topics/t")[0])
    assert topic == {"version": 3, "partitions": {"0": [1, 2], "1": [2, 1]}, "adding_replicas": {},
                     "removing_replicas": {}, "topic_id": topic["topic_id"]}
    assert len(topic["topic_id"]) == 22  # Kafka's base64 Uuid form
    st = json.loads(s.client.get("/brokers/topics/t/partitions/1/state")[0])
    assert st == {"version": 1, "leader": 2, "leader_epoch": 3, "controller_epoch": 4, "isr": [2, 1]}
    assert json.loads(s.client.get("/config/topics/t")[0]) == {"version": 1, "config": {"min.insync.replicas": "2"}}


# -- cluster-wide ------------------------------------------------------------------------------------

def test_producer_id_blocks_are_unique_across_stores(make_store):
    a, b = make_store(), make_store()
    starts = []
    lock = threading.Lock()

    def claim(store):
        for _ in range(10):
            start = store.next_producer_id_block()
            with lock:
                starts.append(start)
    threads = [threading.Thread(target=claim, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(starts) == [i * 1000 for i in range(40)]
    assert a.next_producer_id_block(size=10) == 40000
    assert b.next_producer_id_block() == 40010


def test_cluster_id_is_created_once(make_store):
    a, b = make_store(), make_store()
    cid = a.cluster_id()
    assert len(cid) == 22 and b.cluster_id() == cid
    a.close()
    assert make_store().cluster_id() == cid


# -- local store only -----------------------------------------------------------------------------------

def test_local_store_survives_reopen(tmp_path):
    path = str(tmp_path / "meta")
    s = LocalMetadataStore(path)
    s.register_broker(BrokerInfo(1, "127.0.0.1", 9092))
    assert s.elect_controller(1) == 1
    ta = assignment("t")
    s.create_topic(ta, {"retention.ms": "5"})
    s.create_partition_state("t", 0, state())
    s.update_partition_state("t", 0, state(isr=[1]), 0)
    cid = s.cluster_id()
    s.next_producer_id_block()
    s.close()

    r = LocalMetadataStore(path)
    try:
        assert r.topics() == {"t": ta}
        assert r.topic_configs("t") == {"retention.ms": "5"}
        assert r.partition_state("t", 0) == PartitionState(1, 0, [1], 1, partition_epoch=1)
        assert r.cluster_id() == cid
        assert r.next_producer_id_block() == 1000
        # Ephemeral things are gone; the epoch is not.
        assert r.live_brokers() == {} and r.controller_id() is None
        assert r.controller_epoch() == 1
        assert r.elect_controller(1) == 2
    finally:
        r.close()
    assert sorted(os.listdir(path)) == [".lock", "cluster.json", "topics"]
    assert os.listdir(os.path.join(path, "topics")) == ["t.json"]


def test_local_store_is_locked_against_other_processes(tmp_path):
    path = str(tmp_path / "meta")
    s = LocalMetadataStore(path)
    try:
        code = ("import sys\nfrom pylog.cluster.local_store import LocalMetadataStore\n"
                "from pylog.errors import LogLockedError\n"
                "try:\n    LocalMetadataStore(sys.argv[1])\nexcept LogLockedError:\n    sys.exit(3)\n")
        assert subprocess.run([sys.executable, "-c", code, path]).returncode == 3
    finally:
        s.close()
    # Once closed, the path is free for the other process.
    assert subprocess.run([sys.executable, "-c", code, path]).returncode == 0


# -- the ZooKeeper server helper -----------------------------------------------------------------------

def test_zookeeper_server_starts_and_stops(zookeeper):
    assert "Mode: standalone" in zk_server.four_letter_word("127.0.0.1", zookeeper.port, "srvr")
    with zk_server.ZooKeeperServer() as other:
        assert other.port != zookeeper.port
        pid, d = other.pid, other.dir
        assert "Mode: standalone" in zk_server.four_letter_word("127.0.0.1", other.port, "srvr")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not os.path.exists(d)


def test_zookeeper_server_reports_a_missing_package(monkeypatch):
    monkeypatch.setattr(zk_server, "ZOOKEEPER_JAR", "/nonexistent/zookeeper.jar")
    with pytest.raises(zk_server.ZooKeeperUnavailable, match="zookeeper package"):
        zk_server.ZooKeeperServer().start()


def test_group_configs_any_group_id(make_store):
    """Group ids may hold anything ('/', '%', '.', '..' are not ZooKeeper node names as they
    are); every session reads back exactly what was written, and an empty set removes it."""
    a, b = make_store(), make_store()
    ids = ["g", "a/b c", "%41", ".", "..", "ü"]
    for i, gid in enumerate(ids):
        a.set_group_configs(gid, {"consumer.heartbeat.interval.ms": str(5000 + i)})
    assert b.group_configs() == {gid: {"consumer.heartbeat.interval.ms": str(5000 + i)} for i, gid in enumerate(ids)}
    for gid in ids[1:]:
        b.set_group_configs(gid, {})
    b.set_group_configs("never-set", {})
    assert a.group_configs() == {"g": {"consumer.heartbeat.interval.ms": "5000"}}
