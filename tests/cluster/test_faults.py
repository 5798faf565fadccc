"""Fault tests with real broker processes and a real ZooKeeper (short form).

RF=3, min.insync.replicas=2, a confluent-kafka producer with acks=all and
idempotence writing as fast as it can while the test SIGKILLs the current
leader of partition 0 again and again (restarting it each time). Afterwards:
every acknowledged message is read back exactly once, offsets are
contiguous, and every replica holds the same record at every offset it has
below the high watermark. The time from the kill to a new leader is printed.
"""
from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest

import pylog

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

KILLS = 3
SESSION_MS = 4000      # the smallest ZooKeeper allows with tickTime 2000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    def __init__(self, broker_id: int, data_dir: str, zk: str):
        self.broker_id = broker_id
        self.dir = data_dir
        self.port = _free_port()
        self.zk = zk
        self.proc = None
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        overrides = {"zookeeper.connect": self.zk, "zookeeper.session.timeout.ms": str(SESSION_MS),
                     "min.insync.replicas": "2", "default.replication.factor": "3",
                     "replica.lag.time.max.ms": "3000", "replica.fetch.wait.max.ms": "100",
                     "auto.leader.rebalance.enable": "false"}
        cmd = [sys.executable, "-m", "pylog", "broker", "--data-dir", self.dir, "--port", str(self.port),
               "--broker-id", str(self.broker_id), "--log-level", "WARNING"]
        for k, v in overrides.items():
            cmd += ["--override", f"{k}={v}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert "ready" in line, f"broker {self.broker_id} did not start: {line!r}"

    def kill(self, sig=signal.SIGKILL) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(60)
        self.proc.stdout.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)


def _leader(admin, topic):
    try:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
    except Exception:  # a broker being killed: ask again
        return -1
    if md is None or md.error or 0 not in md.partitions:
        return -1
    return md.partitions[0].leader


def test_sigkill_the_leader_repeatedly_loses_nothing(zookeeper, zk_connect, tmp_path):
    brokers = [BrokerProcess(i, str(tmp_path / f"b{i}"), zk_connect) for i in (1, 2, 3)]
    try:
        bs = ",".join(b.address for b in brokers)
        admin = AdminClient({"bootstrap.servers": bs})
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.create_topics([NewTopic("k", 1, 3)])["k"].result(10)
                break
            except Exception:
                # The brokers register one after the other: RF 3 needs all three.
                assert time.monotonic() < deadline
                time.sleep(0.2)
        while _leader(admin, "k") < 0:
            time.sleep(0.05)

        acked, failed = [], []
        stop = threading.Event()

        def produce():
            p = ck.Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 2, "message.timeout.ms": 120000})

            def cb(err, m):
                (failed if err else acked).append(err or int(m.value()))
            i = 0
            while not stop.is_set():
                try:
                    p.produce("k", str(i).encode(), on_delivery=cb)
                    i += 1
                except BufferError:
                    pass
                p.poll(0.001 if i % 200 == 0 else 0)
            p.flush(120)

        t = threading.Thread(target=produce)
        t.start()
        failovers = []
        try:
            for _ in range(KILLS):
                n = len(acked)
                while len(acked) < n + 1000:
                    time.sleep(0.05)
                leader = _leader(admin, "k")
                victim = next(b for b in brokers if b.broker_id == leader)
                t0 = time.monotonic()
                victim.kill()
                others = AdminClient({"bootstrap.servers": ",".join(
                    b.address for b in brokers if b is not victim)})
                while _leader(others, "k") in (-1, leader):
                    assert time.monotonic() - t0 < 30, "no new leader within 30 s"
                    time.sleep(0.05)
                failovers.append(time.monotonic() - t0)
                victim.start()
            n = len(acked)
            while len(acked) < n + 1000:
                time.sleep(0.05)
        finally:
            stop.set()
            t.join(180)
        print(f"SIGKILL of the leader x{KILLS}: new leader after p50 "
              f"{statistics.median(failovers) * 1000:.0f} ms, max {max(failovers) * 1000:.0f} ms "
              f"(zookeeper.session.timeout.ms={SESSION_MS}); {len(acked)} acknowledged, "
              f"{len(failed)} failed")
        assert failed == []

        c = ck.Consumer({"bootstrap.servers": bs, "group.id": "check", "enable.auto.commit": False})
        c.assign([ck.TopicPartition("k", 0, 0)])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < len(acked) and time.monotonic() < deadline:
            got += [m for m in c.consume(num_messages=10000, timeout=0.5) if not m.error()]
        c.close()
        values = [int(m.value()) for m in got]
        assert set(acked) <= set(values), f"{len(set(acked) - set(values))} acknowledged messages lost"
        assert len(values) == len(set(values)), "a message was stored twice"
        assert [m.offset() for m in got] == list(range(len(got)))
    finally:
        for b in brokers:
            b.stop()

    # No offset holds two different values across the replicas.
    logs = []
    for b in brokers:
        with pylog.Log.open(os.path.join(b.dir, "k-0")) as log:
            logs.append({r.offset: bytes(r.value) for r in log.scan(start_offset=log.log_start_offset)})
    for offset in set().union(*logs):
        assert len({lg[offset] for lg in logs if offset in lg}) == 1, f"replicas differ at {offset}"
    assert min(len(lg) for lg in logs) >= len(values)
