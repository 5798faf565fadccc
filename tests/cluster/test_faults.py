"""Fault tests with real broker processes and a real ZooKeeper.

RF=3, min.insync.replicas=2. A confluent-kafka producer with acks=all and
idempotence writes as fast as it can, a consumer reads concurrently (recording
every (offset, value) it sees) and a watcher samples the partition leader's
high watermark (Metadata, then ListOffsets latest to that leader) while the
test hurts the cluster:

- SIGKILL the leader of partition 0, N times (restarting it each time);
- SIGTERM the leader N times (controlled shutdown: fast failover);
- SIGKILL the active controller N times;
- SIGSTOP the leader for longer than zookeeper.session.timeout.ms, let a new
  leader be elected, SIGCONT: the old leader must not acknowledge an acks=all
  Produce sent straight to it, and keeps nothing it appended as a zombie;
- with only the leader left in the ISR (two of three brokers stopped),
  acks=all gets NOT_ENOUGH_REPLICAS (19), acks=1 succeeds, and acks=all works
  again once the ISR is back.

The brokers and the test's clients talk as `security` says: PLAINTEXT here;
test_faults_sasl_ssl.py runs the scenarios that exercise the inter-broker
paths again over SASL_SSL with an authorizer on.

After each run: nothing acknowledged is lost, no message is stored twice,
offsets are contiguous, the consumer never saw a value at an offset that
differs from the final log, every replica holds the same record at every
offset, the leader's high watermark never went backwards, and the time from
the fault to a new leader (p50/max) is printed.

PYLOG_FAULT_ROUNDS (default 2) sets N; PYLOG_FAULT_PHASE_ACKS (default 1000)
how many acknowledgements each produce phase waits for between faults.
`make soak` runs this file with bigger values.
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import pytest

import pylog
from pylog import _engine
from pylog.client import Client
from pylog.client.wire import Connection
from pylog.protocol.messages import (
    CreateTopicsRequest,
    FetchRequest,
    ListOffsetsRequest,
    MetadataRequest,
    ProduceRequest,
)
from pylog.testing import free_port

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

ROUNDS = int(os.environ.get("PYLOG_FAULT_ROUNDS", "2"))
PHASE_ACKS = int(os.environ.get("PYLOG_FAULT_PHASE_ACKS", "1000"))
SESSION_MS = 4000      # the smallest ZooKeeper allows with tickTime 2000
TOPIC = "k"
NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS = 6, 7, 19
OFFSET_OUT_OF_RANGE, OFFSET_NOT_AVAILABLE = 1, 78

# Known pylog bug (test_a_new_leader_does_not_expose_a_high_watermark_behind_its_epoch_start
# below, xfail): a just-elected leader answers ListOffsets latest with its own
# high watermark, which lags the old leader's by up to one fetch round until its
# followers fetch, so the HW clients see can go backwards for a few ms at a
# failover. While this is True the watcher reports such a drop right after a
# leader change instead of failing on it; any other drop still fails. Set it to
# False when that test passes.
KNOWN_STALE_HW_AFTER_FAILOVER = False

BROKER_CONFIG = {
    "zookeeper.session.timeout.ms": str(SESSION_MS),
    "min.insync.replicas": "2", "default.replication.factor": "3",
    "replica.lag.time.max.ms": "3000", "replica.fetch.wait.max.ms": "100",
    "auto.leader.rebalance.enable": "false",
}


class IsrNotShrunk(AssertionError):
    pass


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


# --------------------------------------------------------------------------- security

class Plaintext:
    """How the brokers talk to each other and the test's clients to them: one
    PLAINTEXT listener, no authentication, no authorizer. A subclass changes
    the brokers' keys, the clients' keys and how raw connections are made."""

    name = "PLAINTEXT"
    broker_config: dict = {}
    ck_config: dict = {}       # added to every confluent-kafka client's settings
    ssl_context = None         # of pylog's Connection / Client
    sasl = None

    def prepare(self, zk_connect: str) -> None:
        """What must be in ZooKeeper before the brokers start."""

    def connect(self, port: int, timeout: float) -> Connection:
        return Connection("127.0.0.1", port, timeout=timeout, ssl_context=self.ssl_context, sasl=self.sasl)

    def client(self, bootstrap: str, timeout: float) -> Client:
        return Client(bootstrap, timeout=timeout, ssl_context=self.ssl_context, sasl=self.sasl)


@pytest.fixture
def security():
    return Plaintext()


# --------------------------------------------------------------------------- processes

class BrokerProcess:
    """One `python -m pylog broker` process. state: up, down (exited) or
    paused (SIGSTOP); only `up` brokers are asked anything."""

    def __init__(self, broker_id: int, data_dir: str, zk: str, config: dict, security: Plaintext | None = None):
        self.broker_id = broker_id
        self.security = security or Plaintext()
        self.dir = data_dir
        self.port = free_port()
        # stderr goes here (every run of this broker, appended): a failure
        # message quotes it.
        self.log_path = os.path.join(os.path.dirname(os.path.abspath(data_dir)), f"broker-{broker_id}.log")
        self._log = None
        self.zk = zk
        self.config = config
        self.proc = None
        self.state = "down"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def launch(self) -> None:
        cmd = [sys.executable, "-m", "pylog", "broker", "--data-dir", self.dir, "--port", str(self.port),
               "--broker-id", str(self.broker_id), "--log-level", os.environ.get("PYLOG_TEST_BROKER_LOG_LEVEL", "WARNING"),
               "--override", f"zookeeper.connect={self.zk}"]
        for k, v in {**self.security.broker_config, **self.config}.items():
            cmd += ["--override", f"{k}={v}"]
        self._release_pipe()   # a restart: the last process's pipe, if a failed step left it open
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True)

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path) as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def _release_pipe(self) -> None:
        # Every path that ends a process closes its stdout pipe, also when the
        # process exited on its own after a test gave up waiting (a SIGTERM that
        # took over 60 s): an open pipe held by a failed test's traceback is
        # closed by the garbage collector later, as an unraisable ResourceWarning
        # in whatever test runs then (once tests/protocol/test_kafka_python_oracle.py).
        if self.proc is not None and self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
        if self._log is not None and not self._log.closed:
            self._log.close()

    def await_ready(self) -> None:
        line = self.proc.stdout.readline()
        assert "ready" in line, (f"broker {self.broker_id} did not start: {line!r}; its stderr "
                                 f"({self.log_path}):\n{self.stderr_tail()}")
        self.state = "up"

    def start(self) -> None:
        self.launch()
        self.await_ready()

    def connect(self, timeout: float) -> Connection:
        return self.security.connect(self.port, timeout)

    def signal(self, sig) -> None:
        """SIGKILL / SIGTERM: returns once the process is gone."""
        self.state = "down"
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 60) -> None:
        self.proc.wait(timeout)
        self._release_pipe()

    def pause(self) -> None:
        self.state = "paused"
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.state = "up"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.state == "paused":
                self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.wait_exit(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.wait_exit(10)
        if self.proc is not None:
            self.proc.wait(10)   # reaps one that exited on its own
            self._release_pipe()
        self.state = "down"


class Conns:
    """Raw connections to the brokers (one set per thread), dropped on any error."""

    def __init__(self, timeout: float = 3.0):
        self.timeout = timeout
        self._conns: dict[int, Connection] = {}

    def request(self, broker: BrokerProcess, body, max_version: int | None = None):
        conn = self._conns.get(broker.broker_id)
        try:
            if conn is None or conn.closed:
                conn = self._conns[broker.broker_id] = broker.connect(self.timeout)
            version = None
            if max_version is not None:
                version = min(conn.api_versions[body.API_KEY][1], max_version)
            return conn.request(body, version)
        except BaseException:
            self.drop(broker)
            raise

    def drop(self, broker: BrokerProcess) -> None:
        conn = self._conns.pop(broker.broker_id, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def partition_state(conns: Conns, broker: BrokerProcess):
    """(leader, leader_epoch, isr) of TOPIC-0 as broker's Metadata tells it, or None."""
    # (pylog serves Metadata v0-5: the leader epoch comes back as -1.)
    resp = conns.request(broker, MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name=TOPIC)],
                                                 allow_auto_topic_creation=False))
    for t in resp.topics:
        if t.name == TOPIC and not t.error_code:
            for p in t.partitions:
                if p.partition_index == 0:
                    return p.leader_id, p.leader_epoch, sorted(p.isr_nodes)
    return None


def high_watermark(conns: Conns, broker: BrokerProcess) -> tuple[int, int]:
    """(error_code, offset) of ListOffsets latest for TOPIC-0, asked of broker."""
    resp = conns.request(broker, ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
        ListOffsetsRequest.ListOffsetsTopic(name=TOPIC, partitions=[
            ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=-1)])]))
    p = resp.topics[0].partitions[0]
    return p.error_code, p.offset


class Cluster:
    def __init__(self, zk_connect: str, tmp_path, security: Plaintext | None = None, n: int = 3, **config):
        self.zk_connect = zk_connect
        self.security = security = security or Plaintext()
        cfg = {**BROKER_CONFIG, **config}
        self.brokers = [BrokerProcess(i, str(tmp_path / f"b{i}"), zk_connect, cfg, security)
                        for i in range(1, n + 1)]
        self.conns = Conns()
        self.zk = None
        try:
            security.prepare(zk_connect)
            for b in self.brokers:   # in parallel: each process takes a while to import
                b.launch()
            for b in self.brokers:
                b.await_ready()
            from pylog.cluster.zk_store import ZkMetadataStore
            self.zk = ZkMetadataStore(zk_connect)
        except BaseException:
            self.close()   # the brokers already started must not outlive the failed test
            raise

    @property
    def bootstrap(self) -> str:
        return ",".join(b.address for b in self.brokers)

    def broker(self, broker_id: int) -> BrokerProcess:
        return next(b for b in self.brokers if b.broker_id == broker_id)

    def up(self, exclude=()) -> list[BrokerProcess]:
        return [b for b in self.brokers if b.state == "up" and b not in exclude]

    def state(self, exclude=()):
        """(leader, epoch, isr) from the first live broker (not in exclude) that answers."""
        for b in self.up(exclude):
            try:
                st = partition_state(self.conns, b)
            except Exception:
                continue
            if st is not None:
                return st
        return None

    def zk_state(self):
        """The partition state the controller wrote in ZooKeeper (authoritative)."""
        return self.zk.partition_state(TOPIC, 0)

    def leader(self) -> BrokerProcess:
        st = wait_for(lambda: (s := self.zk_state()) is not None and s.leader >= 0 and s, 30, "a leader")
        return self.broker(st.leader)

    def wait_full_isr(self, timeout: float = 60) -> float:
        """Waits until every broker is back in the ISR of TOPIC-0 (every live broker
        agreeing); seconds waited."""
        t0 = time.monotonic()
        want = sorted(b.broker_id for b in self.brokers)

        def full():
            zk = self.zk_state()
            if zk is None or zk.leader < 0 or sorted(zk.isr) != want:
                return False
            for b in self.up():
                try:
                    st = partition_state(self.conns, b)
                except Exception:
                    return False
                if st is None or st[0] != zk.leader or st[2] != want:
                    return False
            return True
        wait_for(full, timeout, f"the ISR to be {want} again")
        return time.monotonic() - t0

    def wait_new_leader(self, old_leader: int, t0: float, exclude=(), timeout: float = 30) -> float:
        """Seconds from t0 until the surviving brokers name a leader other than old_leader."""
        wait_for(lambda: (s := self.state(exclude)) is not None and s[0] not in (-1, old_leader),
                 timeout, f"a new leader instead of {old_leader}")
        return time.monotonic() - t0

    def create_topic(self, replicas: list[int] | None = None) -> None:
        """TOPIC with one partition on all three brokers (replicas: the assignment,
        the first one the preferred leader)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0, **self.security.ck_config})
        deadline = time.monotonic() + 30
        errors = []
        while True:
            try:
                if replicas is None:
                    try:
                        admin.create_topics([NewTopic(TOPIC, 1, 3)])[TOPIC].result(10)
                    except ck.KafkaException as e:
                        # An earlier attempt that timed out here on a loaded machine
                        # created it after all.
                        if not (errors and e.args[0].code() == ck.KafkaError.TOPIC_ALREADY_EXISTS):
                            raise
                else:  # (confluent-kafka refuses a replica assignment without a partition count)
                    with self.security.client(self.bootstrap, timeout=10) as client:
                        C = CreateTopicsRequest
                        resp = client.controller_connection().request(C(timeout_ms=10000, topics=[
                            C.CreatableTopic(name=TOPIC, num_partitions=-1, replication_factor=-1, assignments=[
                                C.CreatableReplicaAssignment(partition_index=0, broker_ids=replicas)])]))
                    assert resp.topics[0].error_code == 0, resp.topics[0]
                break
            except Exception as e:
                # The brokers register one after the other: RF 3 needs all three.
                errors.append(repr(e))
                assert time.monotonic() < deadline, f"topic not created in 30 s: {errors[:3]}"
                time.sleep(0.2)
        self.wait_full_isr(30)

    def close(self) -> None:
        self.conns.close()
        for b in self.brokers:
            b.stop()
        if self.zk is not None:
            self.zk.close()
            self.zk = None

    def replica_logs(self) -> list[dict[int, bytes]]:
        """{offset: value} of TOPIC-0 on each broker's disk (brokers stopped)."""
        logs = []
        for b in self.brokers:
            with pylog.Log.open(os.path.join(b.dir, f"{TOPIC}-0")) as log:
                logs.append({r.offset: bytes(r.value) for r in log.scan(start_offset=log.log_start_offset)})
        return logs


# --------------------------------------------------------------------------- load

class Load:
    """Producer, concurrent consumer and high-watermark watcher threads."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.acked: list[int] = []
        self.failed: list = []
        self.seen: dict[int, bytes] = {}        # what the concurrent consumer read
        self.seen_conflicts: list = []
        self.consumer_errors: list[str] = []
        self.hw_samples = 0
        self.hw_violations: list = []
        self.hw_known_drops: list = []          # KNOWN_STALE_HW_AFTER_FAILOVER
        self.max_hw = (-1, -1, -1)              # (hw, epoch, broker) of the highest answer
        self._stop_producing = threading.Event()
        self._stop_reading = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True)
                         for f in (self._produce, self._consume, self._watch)]
        for t in self._threads:
            t.start()

    def _produce(self):
        p = ck.Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 2, "message.timeout.ms": 120000,
                         # A paused (SIGSTOP) leader holds librdkafka's in-flight requests
                         # until they time out (default 30 s / 60 s): minutes of nothing.
                         "request.timeout.ms": 5000, "socket.timeout.ms": 10000,
                         "log_level": 0, **self.cluster.security.ck_config})

        def cb(err, m):
            (self.failed if err else self.acked).append(err or int(m.value()))
        i = 0
        while not self._stop_producing.is_set():
            try:
                p.produce(TOPIC, str(i).encode(), on_delivery=cb)
                i += 1
            except BufferError:
                p.poll(0.01)
            p.poll(0.001 if i % 200 == 0 else 0)
        p.flush(120)

    def _consume(self):
        c = ck.Consumer({"bootstrap.servers": self.cluster.bootstrap, "group.id": "concurrent",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.wait.max.ms": 100, "socket.timeout.ms": 10000, "log_level": 0,
                         "error_cb": lambda e: self.consumer_errors.append(str(e)),
                         **self.cluster.security.ck_config})
        c.assign([ck.TopicPartition(TOPIC, 0, 0)])
        try:
            while not self._stop_reading.is_set():
                for m in c.consume(num_messages=5000, timeout=0.2):
                    if m.error():
                        self.consumer_errors.append(str(m.error()))
                        continue
                    old = self.seen.setdefault(m.offset(), m.value())
                    if old != m.value():
                        self.seen_conflicts.append((m.offset(), old, m.value()))
        finally:
            c.close()

    def _watch(self):
        """Samples the leader's high watermark: the partition state in ZooKeeper
        (what the controller decided) names the leader and its epoch, ListOffsets
        latest asks that leader (pylog's Metadata, v0-5, carries no leader epoch,
        and a resumed old leader's Metadata still names itself)."""
        from pylog.cluster.zk_store import ZkMetadataStore
        conns = Conns(timeout=2.0)
        zk = ZkMetadataStore(self.cluster.zk_connect)
        try:
            while not self._stop_reading.is_set():
                try:
                    st = zk.partition_state(TOPIC, 0)
                    if st is None or st.leader < 0:
                        continue
                    leader = self.cluster.broker(st.leader)
                    if leader.state != "up":
                        time.sleep(0.005)
                        continue
                    code, hw = high_watermark(conns, leader)
                except Exception:
                    time.sleep(0.02)
                    continue
                if code:
                    continue
                self.hw_samples += 1
                if hw < self.max_hw[0]:
                    drop = (f"broker {leader.broker_id} (epoch {st.leader_epoch}) answered HW {hw} after "
                            f"broker {self.max_hw[2]} (epoch {self.max_hw[1]}) answered {self.max_hw[0]}")
                    if KNOWN_STALE_HW_AFTER_FAILOVER and st.leader_epoch > self.max_hw[1]:
                        self.hw_known_drops.append(drop)   # the new epoch's first answers
                    else:
                        self.hw_violations.append(drop)
                else:
                    self.max_hw = (hw, st.leader_epoch, leader.broker_id)
                time.sleep(0.005)
        finally:
            conns.close()
            zk.close()

    def wait_acks(self, n: int = PHASE_ACKS, timeout: float = 90) -> None:
        target = len(self.acked) + n
        wait_for(lambda: len(self.acked) >= target, timeout, f"{n} more acknowledgements")

    def finish(self) -> None:
        """Stop producing (every message settled), let the consumer read up to the
        end, then stop the consumer and the watcher."""
        self._stop_producing.set()
        self._threads[0].join(180)
        assert not self._threads[0].is_alive(), "the producer did not settle its messages"
        # The checks after this say what is wrong when it never gets there.
        deadline = time.monotonic() + 30
        while len(self.seen) < len(self.acked) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop_reading.set()
        for t in self._threads[1:]:
            t.join(30)

    def abort(self) -> None:
        self._stop_producing.set()
        self._stop_reading.set()
        for t in self._threads:
            t.join(150)


def _ms(seconds: list[float]) -> str:
    return (f"p50 {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms "
            f"(n={len(seconds)})")


def verify(cluster: Cluster, load: Load, label: str, timings: dict[str, list[float]],
           forbidden_values=()) -> None:
    """The checks every run ends with (stops the cluster)."""
    load.finish()
    figures = "; ".join(f"{what} {_ms(v)}" for what, v in timings.items() if v)
    print(f"\n[{label}] {figures}; {len(load.acked)} acknowledged, {len(load.failed)} failed, "
          f"{len(load.seen)} offsets read concurrently, {load.hw_samples} HW samples "
          f"(max {load.max_hw[0]}), zookeeper.session.timeout.ms={SESSION_MS}")
    if load.hw_known_drops:
        print(f"[{label}] known bug, HW behind right after a leader change: {load.hw_known_drops[:3]}")
    if load.consumer_errors:
        print(f"[{label}] consumer errors: {sorted(set(load.consumer_errors))[:5]}")
    assert load.failed == [], f"{len(load.failed)} messages failed: {load.failed[:5]}"

    c = ck.Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "check",
                     "enable.auto.commit": False, "log_level": 0, **cluster.security.ck_config})
    c.assign([ck.TopicPartition(TOPIC, 0, 0)])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < len(load.acked) and time.monotonic() < deadline:
        got += [m for m in c.consume(num_messages=10000, timeout=0.5) if not m.error()]
    got += [m for m in c.consume(num_messages=10000, timeout=0.5) if not m.error()]
    c.close()
    final = {m.offset(): m.value() for m in got}
    values = [m.value() for m in got]
    ints = [int(v) for v in values if v.isdigit()]
    lost = set(load.acked) - set(ints)
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {sorted(lost)[:5]}"
    assert len(values) == len(set(values)), "a message was stored twice"
    assert [m.offset() for m in got] == list(range(len(got))), "offsets are not contiguous"
    for v in forbidden_values:
        assert v not in values, f"{v!r} (never acknowledged) is in the log"

    # Consumers never saw a different value at an offset.
    assert load.seen_conflicts == [], f"the consumer saw two values at an offset: {load.seen_conflicts[:3]}"
    differ = [(o, v, final.get(o)) for o, v in load.seen.items() if final.get(o) != v]
    assert differ == [], f"{len(differ)} offsets read during the run differ from the final log: {differ[:3]}"

    # The leader's high watermark never went backwards.
    assert load.hw_samples > 0
    assert load.hw_violations == [], f"the high watermark went backwards: {load.hw_violations[:3]}"

    # Every replica holds the same records (all in the ISR again, then stopped).
    cluster.wait_full_isr(60)
    cluster.close()
    logs = cluster.replica_logs()
    for offset in set().union(*logs):
        assert len({lg[offset] for lg in logs if offset in lg}) == 1, f"replicas differ at {offset}"
    assert all(lg == logs[0] for lg in logs), \
        f"replicas differ in length: {[len(lg) for lg in logs]} (final log {len(got)})"
    assert len(logs[0]) == len(got)


def test_stop_releases_the_pipe_of_a_process_that_exited_on_its_own(tmp_path):
    """A broker whose SIGTERM shutdown outlasted the test's wait_exit exits before
    teardown: stop() must still close its stdout pipe. Left open, the pipe was
    closed by the garbage collector in a later test, as an unraisable
    ResourceWarning (seen once in tests/protocol/test_kafka_python_oracle.py)."""
    import gc
    import warnings

    b = BrokerProcess(1, str(tmp_path), "127.0.0.1:1", {})
    # A real process standing in for the broker: ready, then a shutdown that
    # outlasts the wait, then it exits by itself.
    slow_exit = ("import signal, time; signal.signal(signal.SIGTERM, lambda *a: None); "
                 "print('ready', flush=True); time.sleep(0.5)")
    b.proc = subprocess.Popen([sys.executable, "-c", slow_exit], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    b.await_ready()
    b.signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        b.wait_exit(0.01)                 # the test gives up first ...
    deadline = time.monotonic() + 30
    while b.proc.poll() is None:          # ... and the process exits before teardown
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b.stop()
        del b
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.fixture
def cluster(zk_connect, tmp_path, security):
    c = Cluster(zk_connect, tmp_path, security)
    try:
        c.create_topic()
        yield c
    finally:
        c.close()


@pytest.fixture
def load(cluster):
    ld = Load(cluster)
    try:
        ld.wait_acks(PHASE_ACKS)
        yield ld
    finally:
        ld.abort()


# --------------------------------------------------------------------------- scenarios

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_the_leader_repeatedly_loses_nothing(cluster, load, sig):
    failovers, exits, recoveries = [], [], []
    for _ in range(ROUNDS):
        victim = cluster.leader()
        t0 = time.monotonic()
        victim.signal(sig)
        failovers.append(cluster.wait_new_leader(victim.broker_id, t0, exclude=[victim]))
        victim.wait_exit(60)
        exits.append(time.monotonic() - t0)
        load.wait_acks(PHASE_ACKS // 2)  # writes go on with two replicas in the ISR
        victim.start()
        recoveries.append(cluster.wait_full_isr(60))
        load.wait_acks(PHASE_ACKS)
    verify(cluster, load, f"{sig.name} of the leader x{ROUNDS}",
           {"new leader after": failovers, "process gone after": exits,
            "restarted broker back in ISR after": recoveries})


def test_killing_the_controller_loses_nothing(cluster, load):
    controller_failovers, leader_failovers = [], []
    for _ in range(ROUNDS):
        old = wait_for(cluster.zk.controller_id, 30, "a controller")
        victim = cluster.broker(old)
        was_leader = cluster.leader() is victim
        t0 = time.monotonic()
        victim.signal(signal.SIGKILL)
        wait_for(lambda: cluster.zk.controller_id() not in (None, old), 30, "a new controller")
        controller_failovers.append(time.monotonic() - t0)
        if was_leader:
            leader_failovers.append(cluster.wait_new_leader(victim.broker_id, t0, exclude=[victim]))
        victim.wait_exit(60)
        load.wait_acks(PHASE_ACKS // 2)
        victim.start()
        cluster.wait_full_isr(60)
        load.wait_acks(PHASE_ACKS)
    verify(cluster, load, f"SIGKILL of the controller x{ROUNDS}",
           {"new controller after": controller_failovers,
            "new leader (controller was leader) after": leader_failovers})


def _raw_produce(broker: BrokerProcess, value: bytes, acks: int = -1, timeout_ms: int = 5000) -> int:
    """One Produce of one record straight to broker (not through any client's
    idea of the leader): the partition's error code."""
    with broker.connect(timeout_ms / 1000 + 10) as conn:
        resp = conn.request(ProduceRequest(acks=acks, timeout_ms=timeout_ms, topic_data=[
            ProduceRequest.TopicProduceData(name=TOPIC, partition_data=[
                ProduceRequest.PartitionProduceData(index=0, records=_engine.encode_batch([value]))])]))
    return resp.responses[0].partition_responses[0].error_code


def test_a_paused_leader_is_fenced_when_it_resumes(cluster, load):
    failovers, codes, zombies = [], [], []
    controller_too = 0
    for r in range(ROUNDS):
        victim = cluster.leader()
        controller_too += cluster.zk.controller_id() == victim.broker_id
        t0 = time.monotonic()
        victim.pause()
        failovers.append(cluster.wait_new_leader(victim.broker_id, t0, exclude=[victim],
                                                 timeout=SESSION_MS / 1000 + 30))
        load.wait_acks(PHASE_ACKS // 2)  # the new leader takes writes meanwhile
        # Paused for longer than the session timeout (an election needs it anyway).
        time.sleep(max(0.0, SESSION_MS / 1000 + 0.5 - (time.monotonic() - t0)))
        victim.resume()
        # Straight away, before it may have heard of the new leader: it must not
        # acknowledge an acks=all write under its old epoch.
        zombie = f"zombie-{r}".encode()
        zombies.append(zombie)
        code = _raw_produce(victim, zombie)
        codes.append(code)
        assert code != 0, f"the resumed old leader {victim.broker_id} acknowledged an acks=all write"
        cluster.wait_full_isr(60)
        load.wait_acks(PHASE_ACKS)
    print(f"\n[SIGSTOP] the resumed old leader answered acks=all produces with {codes} "
          f"({controller_too} of {ROUNDS} paused leaders were also the controller)")
    verify(cluster, load, f"SIGSTOP of the leader x{ROUNDS}", {"new leader after": failovers},
           forbidden_values=zombies)


@pytest.mark.parametrize("how", ["SIGTERM"])
def test_acks_all_with_only_the_leader_in_sync_is_not_enough_replicas(zk_connect, tmp_path, security, how):
    """SIGTERM: the followers leave the ISR by controlled shutdown. (SIGSTOP, where
    the leader drops them by replica.lag.time.max.ms and the controller when their
    sessions end, is left out: the ISR sometimes stayed full for 30 s+, see the
    report.) The leader is the controller (the topic's preferred replica)."""
    cluster = Cluster(zk_connect, tmp_path, security, **{"replica.lag.time.max.ms": "1000"})
    try:
        controller = wait_for(cluster.zk.controller_id, 30, "a controller")
        cluster.create_topic([controller] + [b.broker_id for b in cluster.brokers if b.broker_id != controller])
        leader = cluster.leader()
        assert leader.broker_id == controller
        client = security.client(leader.address, timeout=15)
        try:
            assert client.produce(TOPIC, 0, _engine.encode_batch([b"before"]), acks=-1)[0] == 0
            followers = [b for b in cluster.brokers if b is not leader]
            t0 = time.monotonic()
            for b in followers:
                b.signal(signal.SIGTERM) if how == "SIGTERM" else b.pause()
            if how == "SIGTERM":
                for b in followers:
                    b.wait_exit(60)
            try:
                wait_for(lambda: (s := partition_state(cluster.conns, leader)) is not None
                         and s[0] == leader.broker_id and s[2] == [leader.broker_id],
                         15, "the ISR to shrink to the leader")
            except AssertionError:
                raise IsrNotShrunk(
                    f"ISR not shrunk to [{leader.broker_id}] in 15 s after {how} of {[b.broker_id for b in followers]}: "
                    f"ZooKeeper {cluster.zk_state()} (controller {cluster.zk.controller_id()}), leader's "
                    f"metadata {partition_state(cluster.conns, leader)}") from None
            shrink = time.monotonic() - t0
            code_all = client.produce(TOPIC, 0, _engine.encode_batch([b"refused"]), acks=-1)[0]
            code_one = client.produce(TOPIC, 0, _engine.encode_batch([b"leader-only"]), acks=1)[0]
            for b in followers:
                b.start() if how == "SIGTERM" else b.resume()
            cluster.wait_full_isr(60)
            code_back = client.produce(TOPIC, 0, _engine.encode_batch([b"after"]), acks=-1)[0]
        finally:
            client.close()
        print(f"\n[NOT_ENOUGH_REPLICAS] ISR down to the leader {shrink * 1000:.0f} ms after {how} of "
              f"both followers; acks=all -> {code_all}, acks=1 -> {code_one}, acks=all with the ISR "
              f"back -> {code_back}")
        assert code_all == NOT_ENOUGH_REPLICAS
        assert code_one == 0
        assert code_back == 0
        cluster.close()
        logs = cluster.replica_logs()
        assert all(lg == logs[0] for lg in logs)
        assert sorted(logs[0].values()) == sorted([b"before", b"leader-only", b"after"])
    finally:
        cluster.close()


# --------------------------------------------------------------------------- known bug, deterministic

@pytest.fixture
def controlled_nodes(tmp_path):
    """Three in-process brokers with the test as their controller (test_replication's)."""
    from .controlhelper import FakeControllerListener, TestController
    from .test_replication import Node
    listener = FakeControllerListener(answer=True)
    nodes = {}
    try:
        for i in (1, 2, 3):
            # Lag 60 s: the ISR changes only when the test says so.
            nodes[i] = Node(i, tmp_path / f"n{i}", {"replica.lag.time.max.ms": "60000"}, listener)
        ctl = TestController(controller_id=100, controller_epoch=1, listener=listener)
        for i, n in nodes.items():
            ctl.add_broker(i, "127.0.0.1", n.port)
        yield ctl, nodes, listener
    finally:
        for n in nodes.values():
            n.stop()
        listener.close()


# A new leader whose high watermark is behind the start offset of its leader
# epoch must not answer ListOffsets latest with that stale HW (Kafka:
# OFFSET_NOT_AVAILABLE, KIP-207) nor a Fetch between its HW and its log end
# with OFFSET_OUT_OF_RANGE (Kafka: an empty answer): else at a failover clients
# see the HW go backwards and consumers at the old HW reset their offset.
def test_a_new_leader_does_not_expose_a_high_watermark_behind_its_epoch_start(controlled_nodes):
    from .test_replication import TOPIC as T
    from .test_replication import produce, publish, wait_until
    ctl, nodes, listener = controlled_nodes
    publish(ctl, listener, nodes, 1, 0, [1, 2, 3], [1, 2, 3])
    assert produce(nodes[1].bootstrap, 100)[1] == []
    # Broker 3 stops but stays in the ISR: the HW holds at 100 while broker 2
    # copies 50 more records (acks=1): broker 2 ends at LEO 150, HW 100 -- a
    # follower one fetch round behind on the HW, as under any steady load.
    nodes[3].stop()
    assert produce(nodes[1].bootstrap, 50, prefix=b"more", acks="1")[1] == []
    wait_until(lambda: nodes[2].state()[:2] == (150, 100), what="broker 2 at LEO 150, HW 100")
    nodes[1].stop()
    del ctl.brokers[1], ctl.brokers[3]
    publish(ctl, listener, nodes, 2, 1, [1, 2, 3], [2, 3], to=[2])   # epoch 1 starts at 150
    with Connection("127.0.0.1", nodes[2].port) as conn:
        lo = conn.request(ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
            ListOffsetsRequest.ListOffsetsTopic(name=T, partitions=[
                ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=-1)])]))
        fetch = conn.request(FetchRequest(
            replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
            session_id=0, session_epoch=-1, topics=[FetchRequest.FetchTopic(topic=T, partitions=[
                FetchRequest.FetchPartition(partition=0, fetch_offset=120, partition_max_bytes=1 << 20)])]))
    lp = lo.topics[0].partitions[0]
    fp = fetch.responses[0].partitions[0]
    print(f"\n[stale HW] new leader, HW 100, epoch start 150: ListOffsets latest -> error {lp.error_code}, "
          f"offset {lp.offset}; Fetch at 120 -> error {fp.error_code}")
    # Kafka: OFFSET_NOT_AVAILABLE until the HW reaches the epoch start (or an
    # answer no lower than 150), and a fetch at 120 <= LEO is no error.
    assert lp.error_code == OFFSET_NOT_AVAILABLE or (lp.error_code == 0 and lp.offset >= 150)
    assert fp.error_code != OFFSET_OUT_OF_RANGE


def test_a_cluster_that_fails_to_start_stops_the_brokers_it_started(zk_connect, tmp_path):
    """Broker 2 cannot start (its data dir is a file): the failure quotes its
    stderr, and brokers 1 and 3, which did start, are stopped with it."""
    (tmp_path / "b2").write_text("not a directory")
    c = Cluster.__new__(Cluster)
    with pytest.raises(AssertionError) as failed:
        c.__init__(zk_connect, tmp_path)
    assert "broker 2 did not start" in str(failed.value) and "is a file" in str(failed.value)
    assert [b.proc.poll() is not None for b in c.brokers] == [True, True, True]
