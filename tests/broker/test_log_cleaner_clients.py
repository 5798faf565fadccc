"""Real clients against the broker's log cleaner: confluent-kafka,
kafka-python, aiokafka and kcat read a compacted topic from the beginning
while it is produced to and cleaned; a consumer-group commit storm leaves
__consumer_offsets bounded on disk with the group's offsets right after a
restart; the embedded store cleans too."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from pylog.testing import running_broker, wait_until

TIMEOUT = 90
FAST = {"num.partitions": "1", "log.cleaner.backoff.ms": "50", "group.initial.rebalance.delay.ms": "0"}
KCAT = shutil.which("kcat")
N_KEYS, ROUNDS = 30, 60


def wait_for(cond, what, timeout=TIMEOUT):
    return wait_until(cond, what, timeout)


def check_view(records, produced, complete):
    """records: (offset, key, value) as one client read them. Offsets rise;
    every value is one produced for its key, no older than one read before it;
    complete: the last value read for every key is its latest."""
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)), "offsets must increase"
    order = {}
    for i, (k, v) in enumerate(produced):
        order[(k, v)] = i
    seen = {}
    for _, k, v in records:
        assert (k, v) in order, (k, v)
        assert order[(k, v)] > seen.get(k, -1), f"{k} went back to an older value"
        seen[k] = order[(k, v)]
    if complete:
        latest = {}
        for k, v in produced:
            latest[k] = v
        assert {k: produced[i][1] for k, i in seen.items()} == latest


class Readers:
    """Each client reading from offset 0 on its own thread until it has read
    the last offset (known once the producer is done)."""

    def __init__(self, bootstrap, topic):
        self.bootstrap, self.topic = bootstrap, topic
        self.last = None           # set when production ends
        self.results, self.errors = {}, []
        self.threads = [threading.Thread(target=self._guard, args=(name, fn), daemon=True)
                        for name, fn in (("confluent", self._confluent), ("kafka-python", self._kafka_python),
                                         ("aiokafka", self._aiokafka))]

    def _done(self, got):
        return self.last is not None and got and got[-1][0] >= self.last

    def _guard(self, name, fn):
        try:
            self.results[name] = fn()
        except BaseException as e:  # noqa: BLE001 -- reported by the test
            self.errors.append((name, e))

    def _confluent(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                      "max.partition.fetch.bytes": 1024})
        c.assign([TopicPartition(self.topic, 0, 0)])
        got, deadline = [], time.monotonic() + TIMEOUT
        try:
            while not self._done(got) and time.monotonic() < deadline:
                m = c.poll(0.2)
                if m is not None:
                    assert m.error() is None, m.error()
                    got.append((m.offset(), m.key(), m.value()))
        finally:
            c.close()
        return got

    def _kafka_python(self):
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                          auto_offset_reset="earliest", max_partition_fetch_bytes=1024)
        tp = KpTopicPartition(self.topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        got, deadline = [], time.monotonic() + TIMEOUT
        try:
            while not self._done(got) and time.monotonic() < deadline:
                for r in c.poll(timeout_ms=200).get(tp, []):
                    got.append((r.offset, r.key, r.value))
        finally:
            c.close()
        return got

    def _aiokafka(self):
        from aiokafka import AIOKafkaConsumer
        from aiokafka import TopicPartition as AioTp

        async def run():
            c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest", max_partition_fetch_bytes=1024)
            await c.start()
            tp = AioTp(self.topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            got, deadline = [], time.monotonic() + TIMEOUT
            try:
                while not self._done(got) and time.monotonic() < deadline:
                    for r in (await c.getmany(tp, timeout_ms=200)).get(tp, []):
                        got.append((r.offset, r.key, r.value))
            finally:
                await c.stop()
            return got
        return asyncio.run(run())


def test_clients_read_a_compacted_topic_while_it_is_produced_and_cleaned():
    with running_broker(config=FAST) as b:
        topic = f"lcc-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1, config={
            "cleanup.policy": "compact", "segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01"})])[
            topic].result(TIMEOUT)
        produced = []
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 2, "batch.num.messages": 10})
        p.produce(topic, b"first", key=b"key-0", partition=0)
        produced.append((b"key-0", b"first"))
        assert p.flush(TIMEOUT) == 0
        readers = Readers(b.bootstrap, topic)
        for t in readers.threads:
            t.start()
        kcat_views = []
        for r in range(ROUNDS):
            for k in range(N_KEYS):
                kv = (b"key-%d" % k, b"v-%d-%d-" % (r, k) + b"x" * 40)
                p.produce(topic, kv[1], key=kv[0], partition=0)
                produced.append(kv)
            assert p.flush(TIMEOUT) == 0
            if KCAT and r % 20 == 10:
                out = subprocess.run([KCAT, "-b", b.bootstrap, "-t", topic, "-p", "0", "-C", "-o", "beginning",
                                      "-e", "-q", "-f", "%o %k %s\n"], capture_output=True, timeout=60)
                assert out.returncode == 0, out.stderr
                kcat_views.append([(int(o), k.encode(), v.encode()) for o, k, v in
                                   (line.split(" ") for line in out.stdout.decode().splitlines())])
            time.sleep(0.02)
        part = b.broker.log_manager.partitions[(topic, 0)]
        readers.last = part.log.log_end_offset - 1
        for t in readers.threads:
            t.join(TIMEOUT + 30)
        assert readers.errors == []
        st = b.broker.log_cleaner.stats()[(topic, 0)]
        assert st.last_round is not None  # cleaned while they read
        for name, got in readers.results.items():
            assert got and got[-1][0] == readers.last, name
            check_view(got, produced, complete=True)
        for view in kcat_views:
            check_view(view, produced, complete=False)
        if KCAT:
            out = subprocess.run([KCAT, "-b", b.bootstrap, "-t", topic, "-p", "0", "-C", "-o", "beginning", "-e",
                                  "-q", "-f", "%o %k %s\n"], capture_output=True, timeout=60)
            assert out.returncode == 0, out.stderr
            view = [(int(o), k.encode(), v.encode()) for o, k, v in
                    (line.split(" ") for line in out.stdout.decode().splitlines())]
            check_view(view, produced, complete=True)
            assert len(view) < len(produced)


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for d in path.glob("__consumer_offsets-*") for f in d.glob("*.log"))


def test_commit_storm_leaves_consumer_offsets_bounded_and_right_after_restart(tmp_path):
    commits = 4000
    config = {**FAST, "offsets.topic.num.partitions": "1", "offsets.topic.segment.bytes": "16384"}
    group = f"storm-{uuid.uuid4().hex[:6]}"
    topic = f"storm-{uuid.uuid4().hex[:6]}"
    with running_broker(data_dir=tmp_path, config=config) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(TIMEOUT)
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)  # creates __consumer_offsets
            policy = admin.describe_configs([ConfigResource("TOPIC", "__consumer_offsets")])
            cfg = list(policy.values())[0].result(TIMEOUT)
            assert cfg["cleanup.policy"].value == "compact" and cfg["segment.bytes"].value == "16384"
            for i in range(commits):
                c.commit(offsets=[TopicPartition(topic, p, i * 10 + p) for p in range(4)], asynchronous=False)
        finally:
            c.close()
        final = {p: (commits - 1) * 10 + p for p in range(4)}
        # Each commit writes one record per partition, ~100 bytes each: without
        # the cleaner the log holds them all (well over 1 MB).
        written = commits * 4 * 60
        st = wait_for(lambda: (s := b.broker.log_cleaner.stats().get(("__consumer_offsets", 0))) is not None
                      and s.last_round is not None and s, "a round on __consumer_offsets")
        assert st.last_round.records_removed > 0
        wait_for(lambda: _dir_bytes(tmp_path) < written / 4, "__consumer_offsets cleaned down")
    with running_broker(data_dir=tmp_path, config=config) as b:
        assert _dir_bytes(tmp_path) < written / 4
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            got = wait_for(lambda: c.committed([TopicPartition(topic, p) for p in range(4)], timeout=10),
                           "the committed offsets")
            assert {tp.partition: tp.offset for tp in got} == final
        finally:
            c.close()


def test_embedded_store_cleans_its_compacted_topics(tmp_path):
    import pylog
    from pylog.embedded.store import LocalStore
    store = LocalStore.open(str(tmp_path), config={"log.cleaner.backoff.ms": "50"})
    try:
        store.create_topic("kv", 1, config={"cleanup.policy": "compact", "segment.bytes": "4096",
                                            "min.cleanable.dirty.ratio": "0.01"})
        latest = {}
        with pylog.Producer(log_dir=str(tmp_path), linger_ms=0) as p:
            for r in range(40):
                for k in range(10):
                    key, value = b"key-%d" % k, b"v-%d-%d" % (r, k) + b"x" * 50
                    p.send("kv", value, key=key, partition=0)
                    latest[key] = value
                p.flush()
        st = wait_for(lambda: (s := store.broker.log_cleaner.stats().get(("kv", 0))) is not None
                      and s.last_round is not None and s.last_round.records_removed > 0 and s, "an embedded round")
        with pylog.Consumer(log_dir=str(tmp_path)) as c:
            c.assign([pylog.TopicPartition("kv", 0)])
            c.seek(pylog.TopicPartition("kv", 0), 0)
            got, end = [], 40 * 10 - 1
            deadline = time.monotonic() + TIMEOUT
            while (not got or got[-1][0] < end) and time.monotonic() < deadline:
                got.extend((r.offset, bytes(r.key), bytes(r.value)) for r in c.poll(0.5))
        assert [o for o, _, _ in got] == sorted({o for o, _, _ in got}) and got[-1][0] == end
        assert len(got) < 400 and {k: v for _, k, v in got} == latest
        assert st.first_dirty_offset > 0
    finally:
        store.close()


def test_transaction_state_is_compacted_and_still_serves_after_restart(tmp_path):
    config = {**FAST, "transaction.state.log.num.partitions": "1", "transaction.state.log.segment.bytes": "16384"}
    tid = f"tx-{uuid.uuid4().hex[:6]}"
    topic = f"txs-{uuid.uuid4().hex[:6]}"
    state_dir = tmp_path / "__transaction_state-0"
    with running_broker(data_dir=tmp_path, config=config) as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(TIMEOUT)
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": tid, "linger.ms": 0})
        p.init_transactions(TIMEOUT)
        for i in range(300):
            p.begin_transaction()
            p.produce(topic, b"v%d" % i, partition=0)
            p.commit_transaction(TIMEOUT)
        st = wait_for(lambda: (s := b.broker.log_cleaner.stats().get(("__transaction_state", 0))) is not None
                      and s.last_round is not None and s.last_round.records_removed > 0 and s,
                      "a round on __transaction_state")
        assert st.last_round.records_kept < st.last_round.records_read
        del p
    with running_broker(data_dir=tmp_path, config=config) as b:
        # The coordinator reloads the compacted log: the id's epoch goes on from where it was.
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": tid, "linger.ms": 0})
        p.init_transactions(TIMEOUT)
        p.begin_transaction()
        p.produce(topic, b"after", partition=0)
        p.commit_transaction(TIMEOUT)
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                      "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + TIMEOUT
        try:
            while b"after" not in got and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and m.error() is None:
                    got.append(m.value())
        finally:
            c.close()
        assert got == [b"v%d" % i for i in range(300)] + [b"after"]
    assert sum(f.stat().st_size for f in state_dir.glob("*.log")) < 300 * 3 * 60
