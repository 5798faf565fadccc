"""`pylog cluster up|status|down` with real broker processes."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

ck = pytest.importorskip("confluent_kafka")


def _free_port(n: int = 3) -> int:
    """A base port with base..base+n-1 all free, below Linux's ephemeral range
    (32768+), where outgoing connections of other tests would take them."""
    import random
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - n)
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports found")


def pylog(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "pylog", *args], capture_output=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def test_one_broker_without_zookeeper_up_status_down(tmp_path):
    d = str(tmp_path / "c")
    port = _free_port()
    out = pylog("cluster", "up", "--brokers", "1", "--zookeeper", "no", "--dir", d,
                "--base-port", str(port)).stdout.decode().strip()
    try:
        assert out == f"127.0.0.1:{port}"
        assert "up" in pylog("cluster", "status", "--dir", d).stdout.decode()
        again = pylog("cluster", "up", "--brokers", "1", "--zookeeper", "no", "--dir", d, check=False)
        assert again.returncode == 1 and b"already up" in again.stderr
        p = ck.Producer({"bootstrap.servers": out})
        p.produce("t", b"v")
        assert p.flush(10) == 0
    finally:
        pylog("cluster", "down", "--dir", d)
    assert pylog("cluster", "status", "--dir", d, check=False).returncode == 3


def test_three_brokers_with_the_embedded_controller_outlive_a_killed_broker(tmp_path):
    """No ZooKeeper: broker 1 is the controller. A SIGKILLed broker sends no
    goodbye; the controller notices the missing heartbeats after
    broker.session.timeout.ms, moves its leadership, and acks=all writes with
    min.insync.replicas=2 go on with nothing acknowledged lost."""
    import json
    import os
    import signal
    import time

    from confluent_kafka.admin import AdminClient
    d = str(tmp_path / "c")
    port = _free_port()
    overrides = ["broker.session.timeout.ms=3000", "broker.heartbeat.interval.ms=300",
                 "min.insync.replicas=2", "replica.lag.time.max.ms=3000"]
    bootstrap = pylog("cluster", "up", "--brokers", "3", "--zookeeper", "no", "--dir", d, "--base-port", str(port),
                      *[x for o in overrides for x in ("--override", o)]).stdout.decode().strip()
    try:
        status = pylog("cluster", "status", "--dir", d).stdout.decode().splitlines()
        assert [line.endswith("\tcontroller") for line in status] == [True, False, False]
        assert all("\tup" in line for line in status)
        pylog("topics", "create", "--bootstrap-server", bootstrap, "--topic", "t", "--partitions", "3",
              "--replication-factor", "3")
        p = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
        for i in range(300):
            p.produce("t", str(i).encode(), partition=i % 3)
        assert p.flush(20) == 0
        admin = AdminClient({"bootstrap.servers": bootstrap})

        def parts():
            return admin.list_topics("t", timeout=10).topics["t"].partitions
        led = [i for i, pm in parts().items() if pm.leader == 3]
        assert led, "broker 3 leads no partition"
        with open(os.path.join(d, "cluster.json")) as f:
            victim = next(b for b in json.load(f)["brokers"] if b["id"] == 3)
        t0 = time.monotonic()
        os.kill(victim["pid"], signal.SIGKILL)
        deadline = t0 + 30
        while not all(parts()[i].leader not in (-1, 3) and 3 not in parts()[i].isrs for i in led):
            assert time.monotonic() < deadline, f"no new leader: {parts()}"
            time.sleep(0.1)
        print(f"embedded controller: new leader {(time.monotonic() - t0) * 1000:.0f} ms after SIGKILL "
              f"(broker.session.timeout.ms=3000)")
        for i in range(300, 600):
            p.produce("t", str(i).encode(), partition=i % 3)
        assert p.flush(30) == 0
        c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "enable.auto.commit": False})
        c.assign([ck.TopicPartition("t", i, 0) for i in range(3)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 600 and time.monotonic() < deadline:
            got += [int(m.value()) for m in c.consume(1000, timeout=0.5) if not m.error()]
        c.close()
        assert sorted(got) == list(range(600))
    finally:
        pylog("cluster", "down", "--dir", d)


def test_three_brokers_with_zookeeper_replicate(tmp_path):
    import os

    from pylog.cluster.zk_server import zookeeper_installed
    if not zookeeper_installed():
        if os.environ.get("PYLOG_CI"):
            pytest.fail("ZooKeeper is not installed (.ci/run installs Debian's zookeeper package)")
        pytest.skip("ZooKeeper is not installed")
    d = str(tmp_path / "c")
    port = _free_port()
    bootstrap = pylog("cluster", "up", "--brokers", "3", "--zookeeper", "yes", "--dir", d,
                      "--base-port", str(port)).stdout.decode().strip()
    try:
        assert bootstrap.count(",") == 2
        status = pylog("cluster", "status", "--dir", d).stdout.decode()
        assert status.startswith("zookeeper") and status.count("\tup") == 4
        pylog("topics", "create", "--bootstrap-server", bootstrap, "--topic", "t", "--partitions", "3",
              "--replication-factor", "3")
        p = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(300):
            p.produce("t", str(i).encode(), partition=i % 3)
        assert p.flush(20) == 0
        lines = pylog("topics", "describe", "--bootstrap-server", bootstrap, "--topic", "t"
                      ).stdout.decode().splitlines()
        assert "ReplicationFactor: 3" in lines[0]
        for line in lines[1:]:
            replicas = line.split("Replicas: ")[1].split("\t")[0]
            assert sorted(replicas.split(",")) == ["1", "2", "3"]
        assert pylog("topics", "describe", "--bootstrap-server", bootstrap,
                     "--under-replicated-partitions").stdout.decode() == ""
    finally:
        pylog("cluster", "down", "--dir", d)


def _need_zookeeper():
    import os

    from pylog.cluster.zk_server import zookeeper_installed
    if not zookeeper_installed():
        if os.environ.get("PYLOG_CI"):
            pytest.fail("ZooKeeper is not installed (.ci/run installs Debian's zookeeper package)")
        pytest.skip("ZooKeeper is not installed")


def _state(d):
    import json
    import os
    with open(os.path.join(d, "cluster.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("mode", ["zookeeper", "embedded"])
def test_up_down_up_keeps_topics_and_waits_for_the_new_brokers(tmp_path, mode):
    """`down` keeps the data (ZooKeeper's too, under the cluster directory), so
    the next `up` serves the same topics; that `up` returns only once its own
    brokers are ready (the earlier run's "ready at" lines are still in the
    logs), so the next command connects at once."""
    import os

    from pylog.testing import free_port
    if mode == "zookeeper":
        _need_zookeeper()
    d = str(tmp_path / "c")
    port = _free_port(2)
    zk_port = free_port()
    extra = (["--zookeeper", "yes", "--brokers", "1", "--zookeeper-port", str(zk_port)] if mode == "zookeeper"
             else ["--zookeeper", "no", "--brokers", "2"])
    up = ["cluster", "up", "--dir", d, "--base-port", str(port), *extra]
    bootstrap = pylog(*up).stdout.decode().strip()
    try:
        if mode == "zookeeper":
            assert _state(d)["zookeeper"]["port"] == zk_port
            assert _state(d)["zookeeper"]["dir"] == os.path.join(d, "zookeeper")
        pylog("topics", "create", "--bootstrap-server", bootstrap, "--topic", "kept", "--partitions", "2")
        p = ck.Producer({"bootstrap.servers": bootstrap})
        p.produce("kept", b"v", partition=1)
        assert p.flush(20) == 0
        pylog("cluster", "down", "--dir", d)
        assert pylog("cluster", "status", "--dir", d, check=False).returncode == 3
        assert any(os.path.isdir(os.path.join(d, f"broker-{i}", "kept-1")) for i in (1, 2))
        assert pylog(*up).stdout.decode().strip() == bootstrap
        # No retry loop: up returned after its brokers were ready.
        out = pylog("topics", "describe", "--bootstrap-server", bootstrap, "--topic", "kept").stdout.decode()
        assert "PartitionCount: 2" in out
        c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "g"})
        lo, hi = c.get_watermark_offsets(ck.TopicPartition("kept", 1), timeout=20)
        c.close()
        assert (lo, hi) == (0, 1)
    finally:
        pylog("cluster", "down", "--dir", d, "--delete-data")
    assert not os.path.exists(os.path.join(d, "broker-1"))
    assert pylog("cluster", "status", "--dir", d, check=False).returncode == 4


def test_stop_start_restart_one_broker_and_status_exit_codes(tmp_path):
    """One broker of the cluster at a time, tracked in cluster.json: `down`
    stops a restarted broker too, and `status` tells a script how many are up."""
    d = str(tmp_path / "c")
    port = _free_port(2)
    bootstrap = pylog("cluster", "up", "--brokers", "2", "--zookeeper", "no", "--dir", d,
                      "--base-port", str(port)).stdout.decode().strip()
    try:
        assert pylog("cluster", "status", "--dir", d).returncode == 0
        first = {b["id"]: b["pid"] for b in _state(d)["brokers"]}
        pylog("cluster", "stop", "--dir", d, "--broker", "2")
        r = pylog("cluster", "status", "--dir", d, check=False)
        assert r.returncode == 1 and "broker 2\t" in r.stdout.decode()
        assert pylog("cluster", "start", "--dir", d, "--broker", "2").returncode == 0
        assert pylog("cluster", "status", "--dir", d).returncode == 0
        second = {b["id"]: b["pid"] for b in _state(d)["brokers"]}
        assert second[1] == first[1] and second[2] != first[2]
        pylog("cluster", "restart", "--dir", d, "--broker", "2")
        third = {b["id"]: b["pid"] for b in _state(d)["brokers"]}
        assert third[2] != second[2]
        pylog("topics", "create", "--bootstrap-server", bootstrap, "--topic", "t", "--partitions", "2",
              "--replication-factor", "2")
        again = pylog("cluster", "start", "--dir", d, "--broker", "2", check=False)
        assert again.returncode == 1 and b"already running" in again.stderr
        assert pylog("cluster", "stop", "--dir", d, "--broker", "9", check=False).returncode == 1
    finally:
        pylog("cluster", "down", "--dir", d)
    import os
    for pid in third.values():
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert pylog("cluster", "status", "--dir", d, check=False).returncode == 3


def test_up_says_why_a_broker_cannot_start(tmp_path):
    """The reason is on the terminal, not only in a broker's log: a port in
    use is found before anything starts; a broker that exits shows its error."""
    d = str(tmp_path / "c")
    port = _free_port(2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port + 1))
        s.listen()
        r = pylog("cluster", "up", "--brokers", "2", "--zookeeper", "no", "--dir", d,
                  "--base-port", str(port), check=False)
    assert r.returncode == 1
    assert f"port {port + 1} on 127.0.0.1 is in use".encode() in r.stderr, r.stderr
    r = pylog("cluster", "up", "--brokers", "1", "--zookeeper", "no", "--dir", d, "--base-port", str(port),
              "--override", "log.segment.bytes=nope", check=False)
    try:
        assert r.returncode == 1
        assert b"broker 1 did not start" in r.stderr and b"log.segment.bytes" in r.stderr, r.stderr
        assert pylog("cluster", "status", "--dir", d, check=False).returncode == 3
    finally:
        pylog("cluster", "down", "--dir", d, "--delete-data", check=False)


def test_tools_say_which_broker_is_the_controller_and_that_it_is_down(tmp_path):
    d = str(tmp_path / "c")
    port = _free_port(2)
    pylog("cluster", "up", "--brokers", "2", "--zookeeper", "no", "--dir", d, "--base-port", str(port))
    try:
        pylog("cluster", "stop", "--dir", d, "--broker", "1")
        other = f"127.0.0.1:{port + 1}"
        r = pylog("topics", "create", "--bootstrap-server", other, "--topic", "t", check=False)
        assert r.returncode == 1
        assert f"broker 1 (127.0.0.1:{port}) is the controller and cannot be reached: it is down".encode() \
            in r.stderr, r.stderr
        r = subprocess.run([sys.executable, "-m", "pylog", "produce", "--bootstrap-server", other, "--topic", "u"],
                           input=b"a\n", capture_output=True, timeout=120)
        assert r.returncode == 1
        assert b"topic 'u' does not exist" in r.stderr and b"is the controller and cannot be reached" in r.stderr
    finally:
        pylog("cluster", "down", "--dir", d)


def test_groups_outlive_a_killed_coordinator_in_a_three_broker_cluster(tmp_path):
    """`pylog cluster up` gives __consumer_offsets min(3, brokers) replicas,
    so SIGKILLing the broker coordinating a group loses neither the group's
    committed offsets nor its ability to consume and commit."""
    import os
    import signal
    import time

    from pylog.client import Client
    _need_zookeeper()
    d = str(tmp_path / "c")
    port = _free_port(3)
    # Only the waits shrink: the killed broker's ZooKeeper session ends after
    # 6 s instead of Kafka's 18 s, and each join waits 100 ms for more members
    # instead of 3 s (the path is the same; the waits cost this test ~25 s a run).
    overrides = ["zookeeper.session.timeout.ms=6000", "group.initial.rebalance.delay.ms=100"]
    bootstrap = pylog("cluster", "up", "--brokers", "3", "--zookeeper", "yes", "--dir", d,
                      "--base-port", str(port),
                      *[x for o in overrides for x in ("--override", o)]).stdout.decode().strip()
    try:
        pylog("topics", "create", "--bootstrap-server", bootstrap, "--topic", "t", "--partitions", "3",
              "--replication-factor", "3")
        # Idempotent: a retried produce after the kill is not stored twice.
        p = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
        for i in range(30):
            p.produce("t", b"%d" % i, partition=i % 3)
        assert p.flush(30) == 0

        def consume(expect):
            """The distinct values read until `expect` of them (a rebalance while
            the coordinator moves may deliver some twice: at least once)."""
            c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest"})
            c.subscribe(["t"])
            got, deadline = set(), time.monotonic() + 120
            while len(got) < expect and time.monotonic() < deadline:
                got |= {int(m.value()) for m in c.consume(100, 1.0) if not m.error()}
            c.commit(asynchronous=False)
            c.close()
            return sorted(got)
        assert consume(30) == list(range(30))
        out = pylog("topics", "describe", "--bootstrap-server", bootstrap, "--topic",
                    "__consumer_offsets").stdout.decode()
        assert "ReplicationFactor: 3" in out, out
        with Client(bootstrap) as client:
            victim = client.find_coordinator("g")
        pid = next(b["pid"] for b in _state(d)["brokers"] if b["id"] == victim)
        os.kill(pid, signal.SIGKILL)
        for i in range(30, 40):
            p.produce("t", b"%d" % i, partition=i % 3)
        assert p.flush(60) == 0
        # From the committed offsets: only the ten new records.
        assert consume(10) == list(range(30, 40))
        with Client(",".join(f"127.0.0.1:{port + i}" for i in range(3) if i + 1 != victim)) as client:
            assert client.find_coordinator("g") != victim
            committed = client.committed_offsets("g")
        assert sum(committed.values()) == 40
    finally:
        pylog("cluster", "down", "--dir", d)


def test_broker_override_sets_a_config_of_one_broker_only(tmp_path):
    """--broker-override ID:KEY=VALUE: per-broker settings such as broker.rack
    (librdkafka's test clusters give broker i rack RACK<i>)."""
    from confluent_kafka.admin import AdminClient
    d = str(tmp_path / "c")
    port = _free_port(2)
    bad = pylog("cluster", "up", "--brokers", "2", "--zookeeper", "no", "--dir", d, "--base-port", str(port),
                "--broker-override", "3:broker.rack=RACK3", check=False)
    assert bad.returncode == 1 and b"names broker 3" in bad.stderr
    bootstrap = pylog("cluster", "up", "--brokers", "2", "--zookeeper", "no", "--dir", d, "--base-port", str(port),
                      "--broker-override", "1:broker.rack=RACK1", "--broker-override", "2:broker.rack=RACK2"
                      ).stdout.decode().strip()
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        nodes = admin.describe_cluster(request_timeout=30).result(timeout=60).nodes
        assert sorted((n.id, n.rack) for n in nodes) == [(1, "RACK1"), (2, "RACK2")]
    finally:
        pylog("cluster", "down", "--dir", d)
