"""Many segments never exhaust file descriptors (issue 13).

A broker process restarts on a data dir of many small segments under a low
RLIMIT_NOFILE (1024, soft and hard), serves old and new data to real clients,
and keeps its segment files within its open-segment budget while a consumer
reads across every segment; a partition whose directory cannot be opened is
left offline while the others are served; running out of descriptors during a
produce is answered with KAFKA_STORAGE_ERROR, not a traceback.

PYLOG_MANY_SEGMENTS sets the segment count (20,000 in `make test`; `make
soak` runs 100,000).
"""
from __future__ import annotations

import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pylog.client import Client
from pylog.log.log import Log

from pylog.testing import free_port

N_SEGMENTS = int(os.environ.get("PYLOG_MANY_SEGMENTS", "20000"))
NOFILE = 1024
SEGMENT_SUFFIXES = (".log", ".index", ".timeindex")


def _one_batch() -> bytes:
    with tempfile.TemporaryDirectory() as d, Log.open(d) as lg:
        lg.append(b"old", key=b"k", timestamp=int(time.time() * 1000))
        return bytes(lg.read_batches(0))


def write_segments(path: str, n: int) -> None:
    """A partition directory of n sealed one-record segments (offset i in
    segment i) plus an empty active one, shut down cleanly: written directly,
    in seconds, instead of rolling n times through a broker. The base offset
    is outside a batch's CRC, so one batch serves every segment."""
    os.makedirs(path)
    batch = bytearray(_one_batch())
    for i in range(n + 1):
        stem = os.path.join(path, f"{i:020d}")
        with open(stem + ".log", "wb") as f:
            if i < n:
                struct.pack_into(">q", batch, 0, i)
                f.write(batch)
        for suffix in SEGMENT_SUFFIXES[1:]:
            open(stem + suffix, "wb").close()
    topic, _, part = os.path.basename(path).rpartition("-")
    for name, offset in (("recovery-point-offset-checkpoint", n), ("log-start-offset-checkpoint", 0)):
        with open(os.path.join(path, name), "w") as f:
            f.write(f"0\n1\n{topic} {part} {offset}\n")
    with open(os.path.join(path, ".kafka_cleanshutdown"), "w") as f:
        f.write('{"version":0,"brokerEpoch":-1}')


class LimitedBroker:
    """`pylog broker` as a process, optionally started with RLIMIT_NOFILE = nofile."""

    def __init__(self, data_dir, nofile=None, *extra):
        self.port = free_port()

        def limit():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.log_path = os.path.join(os.path.dirname(str(data_dir)), f"broker-{self.port}.err")
        self._err = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pylog", "broker", "--data-dir", str(data_dir), "--port", str(self.port),
             *extra], stdout=subprocess.PIPE, stderr=self._err, text=True, preexec_fn=limit)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            # Pipe and log closed here: left to the garbage collector, they surface
            # as a ResourceWarning in some later test.
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()
            self._err.close()
            raise AssertionError(f"broker did not start: {line!r}\n{self.stderr()[-3000:]}")
        self.bootstrap = f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def fds(self) -> list[str]:
        out = []
        for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{self.proc.pid}/fd/{fd}"))
            except FileNotFoundError:
                pass
        return out

    def segment_fds(self) -> int:
        return sum(1 for f in self.fds() if f.endswith(SEGMENT_SUFFIXES))

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(120)
        self.proc.stdout.close()
        self._err.close()
        return code


def _fetch_values(bootstrap, topic, offsets):
    """The value at each offset, read by confluent-kafka from that offset."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fds", "enable.auto.commit": False})
    out = {}
    try:
        for off in offsets:
            c.assign([TopicPartition(topic, 0, off)])
            deadline = time.monotonic() + 60
            while off not in out and time.monotonic() < deadline:
                for m in c.consume(1, 1.0):
                    if m.error() is None and m.offset() == off:
                        out[off] = m.value()
    finally:
        c.close()
    return out


def _produce(bootstrap, topic, values):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    acked = []
    for v in values:
        p.produce(topic, v, partition=0,
                  on_delivery=lambda e, m: acked.append(m.offset()) if e is None else None)
    assert p.flush(60) == 0
    return sorted(acked)


def _produce_code(client, topic, partition):
    resp = client.any_connection().request(client.produce_request(topic, partition, _one_batch()))
    return resp.responses[0].partition_responses[0].error_code


def _segment_limit(nofile):
    return max(8, nofile // 2 // 3)  # pylog._engine.default_segment_limit without max_map_count


def test_restart_with_many_segments_under_low_nofile(tmp_path):
    data = tmp_path / "data"
    t0 = time.monotonic()
    write_segments(str(data / "many-0"), N_SEGMENTS)
    written = time.monotonic() - t0
    bound = 3 * _segment_limit(NOFILE)

    b = LimitedBroker(data, NOFILE)
    try:
        started = time.monotonic() - t0 - written
        assert b.segment_fds() <= bound
        new = _produce(b.bootstrap, "many", [b"new%d" % i for i in range(20)])
        assert new == list(range(N_SEGMENTS, N_SEGMENTS + 20))
        got = _fetch_values(b.bootstrap, "many", [0, N_SEGMENTS // 2, N_SEGMENTS - 1, N_SEGMENTS + 19])
        assert got == {0: b"old", N_SEGMENTS // 2: b"old", N_SEGMENTS - 1: b"old", N_SEGMENTS + 19: b"new19"}

        # A consumer reads every segment (one fetch each) while the broker's
        # segment descriptors are sampled.
        peak = [0]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], b.segment_fds())
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "fds-all", "enable.auto.commit": False,
                      "fetch.wait.max.ms": 10})
        c.assign([TopicPartition("many", 0, 0)])
        seen = 0
        deadline = time.monotonic() + 600
        try:
            while seen < N_SEGMENTS + 20 and time.monotonic() < deadline:
                for m in c.consume(1000, 1.0):
                    if m.error() is None:
                        assert m.offset() == seen
                        seen += 1
        finally:
            c.close()
            stop.set()
            sampler.join()
        read = time.monotonic() - t0 - written - started
        assert seen == N_SEGMENTS + 20
        # Every segment was opened (the reads prove it), yet never more than the budget at once.
        assert 0 < peak[0] <= bound, (peak[0], bound)
        assert len(b.fds()) < NOFILE
    finally:
        assert b.stop() == 0, b.stderr()[-3000:]

    # SIGTERM was a clean shutdown; it starts again under the same limit.
    t1 = time.monotonic()
    b = LimitedBroker(data, NOFILE)
    restarted = time.monotonic() - t1
    try:
        assert b.segment_fds() <= bound
        assert _produce(b.bootstrap, "many", [b"again"]) == [N_SEGMENTS + 20]
        got = _fetch_values(b.bootstrap, "many", [1, N_SEGMENTS + 20])
        assert got == {1: b"old", N_SEGMENTS + 20: b"again"}
    finally:
        assert b.stop() == 0
    assert "Traceback" not in b.stderr()
    print(f"\n{N_SEGMENTS} segments: written in {written:.1f} s, broker started in {started:.1f} s, "
          f"all read in {read:.1f} s, peak {peak[0]} segment descriptors (bound {bound}), "
          f"restarted in {restarted:.1f} s")


def test_unreadable_partition_dir_leaves_the_others_served(tmp_path):
    data = tmp_path / "data"
    b = LimitedBroker(data, None, "--override", "num.partitions=3")
    try:
        assert _produce(b.bootstrap, "t", [b"a", b"b"]) == [0, 1]
    finally:
        assert b.stop() == 0
    # Partition 1: a segment file that cannot be opened (a directory in its
    # place); an adopted topic whose only partition's checkpoint is garbage
    # and whose segment is unreadable.
    seg = data / "t-1" / f"{0:020d}.log"
    seg.unlink()
    seg.mkdir()
    bad = data / "u-0"
    bad.mkdir()
    (bad / f"{0:020d}.log").mkdir()
    (data / "not a partition").mkdir()

    b = LimitedBroker(data, None)
    try:
        with Client(b.bootstrap) as client:
            md = client.metadata(["t", "u"])
            # Listed, without a leader (as Kafka, whose controller elects none
            # when the only replica's log dir is offline).
            t, u = md.topics["t"].partitions, md.topics["u"].partitions
            assert sorted(t) == [0, 1, 2] and sorted(u) == [0]
            assert [t[0].leader_id, t[1].leader_id, t[2].leader_id, u[0].leader_id] == [1, -1, 1, -1]
            # Produce to the offline partition: Kafka's KAFKA_STORAGE_ERROR.
            assert _produce_code(client, "t", 1) == 56
            assert _produce_code(client, "t", 2) == 0
        assert _fetch_values(b.bootstrap, "t", [1]) == {1: b"b"}
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
        acked = []
        for part in (0, 2):
            p.produce("t", b"after", partition=part,
                      on_delivery=lambda e, m: acked.append(m.partition()) if e is None else None)
        assert p.flush(30) == 0
        assert sorted(acked) == [0, 2]
    finally:
        assert b.stop() == 0
    err = b.stderr()
    assert "partition t-1 is offline" in err and "partition u-0 is offline" in err


def _big_batch(n_bytes):
    with tempfile.TemporaryDirectory() as d, Log.open(d) as lg:
        lg.append(b"v" * n_bytes, timestamp=int(time.time() * 1000))
        return bytes(lg.read_batches(0))


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_out_of_descriptors_is_an_error_answer_and_passes(tmp_path, loop):
    data = tmp_path / "data"
    write_segments(str(data / "e-0"), 40)
    # 128 descriptors: a budget of 21 segments, so the 40 sealed ones stay
    # closed until read.
    b = LimitedBroker(data, 128, "--override", "log.segment.bytes=1024",
                      "--override", f"pylog.event.loop={loop}")
    try:
        with Client(b.bootstrap) as client:
            assert client.fetch("e", 0, 3)[0] == 0
            assert client.produce("e", 0, _big_batch(600)) == (0, 40)
            # No descriptor can be opened any more (existing ones stay).
            resource.prlimit(b.proc.pid, resource.RLIMIT_NOFILE, (0, 128))
            try:
                # A produce that rolls a new segment, a fetch from a closed
                # segment: KAFKA_STORAGE_ERROR for the partition.
                assert client.produce("e", 0, _big_batch(600)) == (56, -1)
                assert client.fetch("e", 0, 20)[0] == 56
                # A client connecting now waits in the listen backlog.
                late = {}

                def connect_late():
                    with Client(b.bootstrap) as c2:
                        late["md"] = sorted(c2.metadata(["e"]).topics["e"].partitions)

                t = threading.Thread(target=connect_late)
                t.start()
                time.sleep(1.5)
                assert "md" not in late
            finally:
                resource.prlimit(b.proc.pid, resource.RLIMIT_NOFILE, (128, 128))
            t.join(60)
            assert late.get("md") == [0]
            # Descriptors again: the same requests succeed.
            assert client.produce("e", 0, _big_batch(600)) == (0, 41)
            code, _hw, _lso, records = client.fetch("e", 0, 20)
            assert code == 0 and len(records) > 0
        assert b.proc.poll() is None
    finally:
        assert b.stop() == 0
    err = b.stderr()
    assert "Traceback" not in err, err[-3000:]


def test_sendfile_fetches_keep_no_descriptor(tmp_path):
    """The stdlib loop's fetch answers go out with os.sendfile from the
    segment's own descriptor; none is opened (and left open) per answer."""
    b = LimitedBroker(tmp_path / "data", None, "--override", "pylog.event.loop=asyncio")
    try:
        with Client(b.bootstrap) as client:
            client.create_topics("s", 1)
            assert client.produce("s", 0, _big_batch(200_000))[0] == 0
            client.fetch("s", 0, 0)
            before = len(b.fds())
            for _ in range(100):
                code, _hw, _lso, records = client.fetch("s", 0, 0)
                assert code == 0 and len(records) > 200_000
            assert len(b.fds()) <= before + 5
    finally:
        assert b.stop() == 0
