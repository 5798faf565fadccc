"""pylog.client.workers: OffsetTracker against a brute-force model (hypothesis),
ConcurrentProcessor against fakes (error policy) and against a real in-process
broker with confluent-kafka consumers (commit safety while running, final
commit = end offsets, bounded in-flight with pause/resume, rebalance drain)."""
from __future__ import annotations

import random
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import given, settings
from hypothesis import strategies as st

from pylog.client.workers import ConcurrentProcessor, OffsetTracker
from pylog.testing import running_broker

TIMEOUT = 120.0   # a deadline, not a bound: a loaded machine (two test workers on two cores) needs room


# -- OffsetTracker ------------------------------------------------------------

def model_committable(started: dict, unfinished: dict) -> dict:
    """The maximal safe commit, by brute force: one past the highest offset o
    such that every started offset <= o is done."""
    out = {}
    for tp, offs in started.items():
        if not offs:
            continue
        safe = -1
        for o in offs:                     # increasing
            if o in unfinished[tp]:
                break
            safe = o
        else:
            out[tp] = offs[-1] + 1
            continue
        first_open = min(unfinished[tp])
        # Everything started below the first unfinished offset is done; the
        # gap up to it holds no messages, so committing first_open is safe and
        # maximal (first_open itself is not done).
        assert safe < first_open
        out[tp] = first_open
    return out


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_tracker_matches_model(data):
    tps = ["a", "b", "c"]
    tracker = OffsetTracker()
    next_off = {tp: data.draw(st.integers(0, 5)) for tp in tps}
    started = {tp: [] for tp in tps}
    unfinished = {tp: set() for tp in tps}
    for _ in range(data.draw(st.integers(1, 120))):
        action = data.draw(st.sampled_from(["start", "start", "done", "done", "forget"]))
        tp = data.draw(st.sampled_from(tps))
        if action == "start":
            off = next_off[tp] + data.draw(st.sampled_from([0, 0, 0, 1, 3]))   # gaps
            tracker.started(tp, off)
            started[tp].append(off)
            unfinished[tp].add(off)
            next_off[tp] = off + 1
        elif action == "done":
            if not unfinished[tp]:
                continue
            off = data.draw(st.sampled_from(sorted(unfinished[tp])))   # any completion order
            tracker.done(tp, off)
            unfinished[tp].discard(off)
        else:
            tracker.forget(tp)
            started[tp] = []
            unfinished[tp] = set()
            # After forget a partition may restart anywhere, even lower.
            next_off[tp] = data.draw(st.integers(0, max(0, next_off[tp])))
        got = tracker.committable()
        assert got == model_committable(started, unfinished)
        for t, c in got.items():
            assert all(c <= o for o in unfinished[t]), (t, c, unfinished[t])
        assert tracker.in_flight() == sum(len(u) for u in unfinished.values())
        for t in tps:
            assert (t in got) == bool(started[t])


def test_tracker_rejects_misuse():
    t = OffsetTracker()
    t.started("p", 5)
    with pytest.raises(ValueError):
        t.started("p", 5)           # not increasing
    with pytest.raises(ValueError):
        t.done("p", 4)              # never started
    t.done("p", 5)
    with pytest.raises(ValueError):
        t.done("p", 5)              # twice
    assert t.committable() == {"p": 6}
    t.forget("p")
    t.forget("nope")
    assert t.committable() == {}
    t.started("p", 0)               # restart lower after forget
    assert t.committable() == {"p": 0}


def test_tracker_is_linear():
    # 200k messages finished in reverse blocks: quadratic code would take minutes.
    t = OffsetTracker()
    n, block = 200_000, 1000
    start = time.perf_counter()
    for base in range(0, n, block):
        for o in range(base, base + block):
            t.started(0, o)
        for o in reversed(range(base, base + block)):
            t.done(0, o)
        assert t.committable() == {0: base + block}
    assert time.perf_counter() - start < 5.0


# -- ConcurrentProcessor with a fake consumer ---------------------------------

class FakeMsg:
    def __init__(self, topic, partition, offset):
        self._t, self._p, self._o = topic, partition, offset

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def error(self):
        return None


class FakeConsumer:
    """Hands out the given offsets of one partition, then nothing."""

    def __init__(self, offsets, topic="t", partition=0):
        self.msgs = [FakeMsg(topic, partition, o) for o in offsets]
        self.commits = []
        self.paused = set()
        self.tp = (topic, partition)

    def poll(self, timeout):
        if self.msgs and self.tp not in self.paused:
            return self.msgs.pop(0)
        time.sleep(min(timeout, 0.01))
        return None

    def assignment(self):
        return [TopicPartition(*self.tp)]

    def pause(self, tps):
        self.paused.update((tp.topic, tp.partition) for tp in tps)

    def resume(self, tps):
        self.paused.difference_update((tp.topic, tp.partition) for tp in tps)

    def commit(self, offsets, asynchronous):
        assert asynchronous is False
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})
        return offsets


def run_until(proc, cond, limit=10.0):
    stop = threading.Event()
    errors = []

    def target():
        try:
            proc.run(stop)
        except Exception as e:   # noqa: BLE001 - handed to the test
            errors.append(e)

    th = threading.Thread(target=target)
    th.start()
    deadline = time.monotonic() + limit
    while not cond() and time.monotonic() < deadline and th.is_alive():
        time.sleep(0.005)
    stop.set()
    th.join(TIMEOUT)
    assert not th.is_alive()
    return errors


def test_default_on_error_counts_failed_as_done():
    offsets = [0, 1, 2, 5, 6, 9]       # with gaps
    c = FakeConsumer(offsets)
    seen = []

    def handler(msg):
        seen.append(msg.offset())
        if msg.offset() % 2:
            raise RuntimeError("boom")

    proc = ConcurrentProcessor(c, handler, workers=2, max_in_flight=3, commit_interval_s=0.01)
    assert run_until(proc, lambda: len(seen) == len(offsets)) == []
    assert sorted(seen) == offsets
    assert c.commits[-1] == {("t", 0): 10}
    assert proc.stats.failed == 3 and proc.stats.processed == 6


def test_on_error_raising_stops_and_never_commits_past_the_failure():
    c = FakeConsumer(range(50))
    done = []

    def handler(msg):
        if msg.offset() == 7:
            raise ValueError("poison")
        done.append(msg.offset())

    def on_error(msg, exc):
        raise exc

    proc = ConcurrentProcessor(c, handler, workers=4, max_in_flight=5, commit_interval_s=0.01,
                               on_error=on_error)
    errors = run_until(proc, lambda: False, limit=5.0)
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert c.commits, "the final commit is missing"
    assert all(commit[("t", 0)] <= 7 for commit in c.commits)
    assert c.commits[-1] == {("t", 0): 7}
    assert 8 not in done or 7 not in done      # 7 never succeeded


def test_close_from_another_thread_drains():
    c = FakeConsumer(range(30))
    gate = threading.Event()
    finished = []

    def handler(msg):
        gate.wait(TIMEOUT)
        finished.append(msg.offset())

    proc = ConcurrentProcessor(c, handler, workers=4, max_in_flight=10, commit_interval_s=0.01)
    th = threading.Thread(target=proc.run)
    th.start()
    deadline = time.monotonic() + TIMEOUT
    while proc.stats.received < 10 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.stats.pauses >= 1
    threading.Timer(0.1, gate.set).start()
    proc.close(TIMEOUT)
    th.join(TIMEOUT)
    assert not th.is_alive()
    # Everything that was running finished; the last commit covers exactly the
    # finished prefix (the paused remainder was never started).
    n = len(finished)
    assert n >= 10 and sorted(finished) == list(range(n))
    assert c.commits[-1] == {("t", 0): n}


# -- against the real broker --------------------------------------------------

TOPIC = "work"
PARTITIONS = 3
N = 2000


@pytest.fixture
def broker():
    with running_broker(config={"group.initial.rebalance.delay.ms": "100",
                                "group.min.session.timeout.ms": "1000"}) as b:
        admin = AdminClient({"bootstrap.servers": b})
        admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])[TOPIC].result(TIMEOUT)
        p = Producer({"bootstrap.servers": b, "acks": "all", "linger.ms": 5})
        for i in range(N):
            p.produce(TOPIC, b"m%d" % i, partition=i % PARTITIONS)
        assert p.flush(TIMEOUT) == 0
        yield b


class Recorder:
    """Shared bookkeeping of one test: which messages were delivered and not
    yet handled, what ran concurrently, and every commit checked against it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.unfinished = {p: set() for p in range(PARTITIONS)}
        self.delivered_max = {p: -1 for p in range(PARTITIONS)}
        self.handled = set()
        self.running = 0
        self.max_running = 0
        self.commits = []
        self.violations = []
        self.pauses = 0
        self.resumes = 0
        self.revoked = []

    def delivered(self, partition, offset):
        with self.lock:
            self.unfinished[partition].add(offset)
            self.delivered_max[partition] = max(self.delivered_max[partition], offset)

    def check_commit(self, offsets: dict) -> None:
        """Record a commit {partition: offset}, noting any offset past an unfinished message."""
        with self.lock:
            for p, off in offsets.items():
                low = min(self.unfinished[p], default=self.delivered_max[p] + 1)
                if off > low:
                    self.violations.append((p, off, low))
            self.commits.append(dict(offsets))


class RecordingConsumer:
    """A confluent Consumer wrapped to record what the processor does with it
    (only the adapter surface the processor uses)."""

    def __init__(self, consumer, rec: Recorder):
        self.c, self.rec = consumer, rec

    def poll(self, timeout):
        msg = self.c.poll(timeout)
        if msg is not None and msg.error() is None:
            self.rec.delivered(msg.partition(), msg.offset())
        return msg

    def assignment(self):
        return self.c.assignment()

    def pause(self, tps):
        with self.rec.lock:
            self.rec.pauses += 1
        return self.c.pause(tps)

    def resume(self, tps):
        with self.rec.lock:
            self.rec.resumes += 1
        return self.c.resume(tps)

    def subscribe(self, topics, on_revoke, on_lost):
        def revoke(consumer, partitions):
            with self.rec.lock:
                self.rec.revoked.append([tp.partition for tp in partitions])
            on_revoke(consumer, partitions)
        return self.c.subscribe(topics, on_revoke=revoke, on_lost=on_lost)

    def commit(self, offsets, asynchronous):
        self.rec.check_commit({tp.partition: tp.offset for tp in offsets})
        return self.c.commit(offsets=offsets, asynchronous=asynchronous)


def make_handler(rec: Recorder, seed: int):
    rnd = random.Random(seed)
    rnd_lock = threading.Lock()

    def handler(msg):
        with rec.lock:
            rec.running += 1
            rec.max_running = max(rec.max_running, rec.running)
        try:
            with rnd_lock:
                delay = rnd.uniform(0, 0.005)
            time.sleep(delay)
            if msg.offset() % 41 == 3:
                raise RuntimeError(f"handler failure at {msg.offset()}")
        finally:
            with rec.lock:
                rec.running -= 1
                rec.unfinished[msg.partition()].discard(msg.offset())
                rec.handled.add((msg.partition(), msg.offset()))
    return handler


def new_consumer(broker, group, **extra):
    # fetch.wait.max.ms: librdkafka drops prefetched messages on pause(), and
    # the fetch after resume() otherwise idles up to 500 ms at the broker; with
    # max_in_flight=20 the tests pause ~100 times.
    return Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                     "heartbeat.interval.ms": 300, "fetch.wait.max.ms": 10, **extra})


def end_offsets(broker) -> dict[int, int]:
    c = new_consumer(broker, "watermarks")
    try:
        return {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=TIMEOUT)[1] for p in range(PARTITIONS)}
    finally:
        c.close()


def committed(broker, group) -> dict[int, int]:
    c = new_consumer(broker, group)
    try:
        tps = c.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=TIMEOUT)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in tps}


def all_done(rec: Recorder) -> bool:
    with rec.lock:
        return len(rec.handled) == N and not any(rec.unfinished.values())


def wait_for(cond, limit=TIMEOUT):
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_processor_against_broker(broker, caplog):
    caplog.set_level("CRITICAL", logger="pylog.client.workers")   # the expected handler failures
    ends = end_offsets(broker)
    assert sum(ends.values()) == N
    rec = Recorder()
    consumer = new_consumer(broker, "g-main")
    proc = ConcurrentProcessor(RecordingConsumer(consumer, rec), make_handler(rec, 1),
                               workers=32, max_in_flight=20, commit_interval_s=0.05)
    proc.subscribe([TOPIC])
    stop = threading.Event()
    th = threading.Thread(target=proc.run, args=(stop,))
    th.start()
    try:
        wait_for(lambda: all_done(rec))
    finally:
        stop.set()
        th.join(TIMEOUT)
    assert not th.is_alive()
    consumer.close()

    assert rec.violations == []
    assert len(rec.commits) >= 3, rec.commits            # periodic commits happened while running
    assert rec.max_running <= 20                          # 32 threads, yet bounded by max_in_flight
    assert proc.stats.max_running <= 20
    assert rec.pauses >= 1 and rec.resumes >= 1
    assert proc.stats.failed == sum(1 for _, o in rec.handled if o % 41 == 3) > 0
    assert committed(broker, "g-main") == ends


def test_rebalance_drains_revoked_partitions(broker, caplog):
    caplog.set_level("CRITICAL", logger="pylog.client.workers")
    ends = end_offsets(broker)
    rec = Recorder()
    procs, threads, consumers = [], [], []
    stop = threading.Event()

    def start_member(seed):
        consumer = new_consumer(broker, "g-rebalance")
        proc = ConcurrentProcessor(RecordingConsumer(consumer, rec), make_handler(rec, seed),
                                   workers=8, max_in_flight=20, commit_interval_s=0.05)
        proc.subscribe([TOPIC])
        th = threading.Thread(target=proc.run, args=(stop,))
        th.start()
        procs.append(proc)
        threads.append(th)
        consumers.append(consumer)

    try:
        start_member(1)
        wait_for(lambda: len(rec.handled) >= 300)
        start_member(2)          # forces a rebalance: the first member revokes and drains
        wait_for(lambda: all_done(rec))
    finally:
        stop.set()
        for th in threads:
            th.join(TIMEOUT)
    assert not any(th.is_alive() for th in threads)
    for c in consumers:
        c.close()
    assert rec.revoked, "no rebalance happened"
    assert procs[1].stats.processed > 0, "the second member got nothing"
    assert rec.violations == []
    assert committed(broker, "g-rebalance") == ends


def test_processor_with_a_pylog_consumer(broker, caplog):
    """The same loop over pylog's own Consumer (wrapped automatically): every
    commit is checked against the unfinished set, handlers get pylog records."""
    import pylog
    caplog.set_level("CRITICAL", logger="pylog.client.workers")
    ends = end_offsets(broker)
    rec = Recorder()

    class Checked(pylog.Consumer):
        def poll(self, timeout=1.0, max_records=None):
            got = super().poll(timeout, max_records)
            for r in got:
                rec.delivered(r.partition, r.offset)
            return got

        def commit(self, offsets=None, asynchronous=False, callback=None):
            rec.check_commit({tp.partition: om.offset for tp, om in offsets.items()})
            return super().commit(offsets, asynchronous=asynchronous, callback=callback)

    def handler(record):
        assert isinstance(record.offset, int) and record.value is not None
        with rec.lock:
            rec.running += 1
            rec.max_running = max(rec.max_running, rec.running)
        try:
            time.sleep(random.uniform(0, 0.003))
            if record.offset % 41 == 3:
                raise RuntimeError("handler failure")
        finally:
            with rec.lock:
                rec.running -= 1
                rec.unfinished[record.partition].discard(record.offset)
                rec.handled.add((record.partition, record.offset))

    consumer = Checked(bootstrap_servers=str(broker), group_id="g-pylog", auto_offset_reset="earliest",
                       enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=300,
                       fetch_max_wait_ms=10)
    proc = ConcurrentProcessor(consumer, handler, workers=16, max_in_flight=20, commit_interval_s=0.05)
    proc.subscribe([TOPIC])
    stop = threading.Event()
    th = threading.Thread(target=proc.run, args=(stop,))
    th.start()
    try:
        wait_for(lambda: all_done(rec))
    finally:
        stop.set()
        th.join(TIMEOUT)
    assert not th.is_alive()
    consumer.close(autocommit=False)
    assert rec.violations == []
    assert len(rec.commits) >= 3
    assert rec.max_running <= 20
    assert proc.stats.failed > 0
    assert committed(broker, "g-pylog") == ends
