"""The broker's event loop does not wait on the disk for a segment roll, a
replica's deletion or DeleteRecords (issue 12, point 6): the roll's sync
(Kafka's flush-log task), the deletion's close, rename and topics-file write
(Kafka's asyncDelete) and DeleteRecords' segment renames and checkpoint write
run on worker threads. Every fsync, fdatasync, rename and replace
made from Python is recorded with the thread that made it (the engine's C
code makes none of those on these paths any more), and none may come from the
loop's thread."""
from __future__ import annotations

import asyncio
import glob
import os
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.broker import Broker, BrokerConfig
from pylog.testing import running_broker


async def _thread_ident():
    return threading.get_ident()


def _wait(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _record(monkeypatch, names, calls, recording):
    """Wrap each os function of names to append (name, thread id, thread
    name, first argument) to calls while recording is set."""
    for name in names:
        real = getattr(os, name)

        def record(*args, _real=real, _name=name, **kwargs):
            if recording.is_set():
                calls.append((_name, threading.get_ident(), threading.current_thread().name, args[0]))
            return _real(*args, **kwargs)
        monkeypatch.setattr(os, name, record)


def test_rolls_and_replica_deletion_do_their_file_work_off_the_loop(tmp_path, monkeypatch):
    calls = []
    recording = threading.Event()
    _record(monkeypatch, ("fsync", "fdatasync", "rename", "replace"), calls, recording)
    with running_broker(tmp_path / "d") as b:
        loop_thread = asyncio.run_coroutine_threadsafe(_thread_ident(), b.broker._loop).result(10)
        admin = AdminClient({"bootstrap.servers": b})
        admin.create_topics([NewTopic("t", 1, 1, config={"segment.bytes": "1024"})])["t"].result(30)
        p = Producer({"bootstrap.servers": b, "linger.ms": 0})
        p.produce("t", b"first")
        assert p.flush(30) == 0          # led here, its leader epoch written: creation is over
        part = os.path.join(b.data_dir, "t-0")
        recording.set()
        for i in range(24):              # one batch each, about 370 bytes: a roll every two or three
            p.produce("t", b"%04d" % i + b"x" * 300)
            assert p.flush(30) == 0
        assert len(glob.glob(os.path.join(part, "*.log"))) >= 5
        _wait(lambda: sum(c[0] == "fdatasync" for c in calls) >= 4, "the rolled segments were never synced")
        admin.delete_topics(["t"])["t"].result(30)
        _wait(lambda: not glob.glob(part + "*"), "the deleted replica's directory stayed")
        recording.clear()
    assert [c for c in calls if c[1] == loop_thread] == []
    assert {c[2].rsplit("_", 1)[0] for c in calls if c[0] == "fdatasync"} == {"pylog-flush"}
    renamed = [c for c in calls if c[0] == "rename" and c[3] == part]
    assert len(renamed) == 1 and renamed[0][2].startswith("pylog-topic-files")


def test_the_offsets_topic_is_created_off_the_loop(tmp_path, monkeypatch):
    # A group's first use creates __consumer_offsets' 50 partitions: their
    # directories, logs and leader-epoch-checkpoint files (two fsyncs each)
    # are made on the file thread, before the LeaderAndIsr is applied.
    calls = []
    recording = threading.Event()
    _record(monkeypatch, ("fsync", "fdatasync", "rename", "replace", "mkdir", "makedirs"), calls, recording)
    with running_broker(tmp_path / "d") as b:
        loop_thread = asyncio.run_coroutine_threadsafe(_thread_ident(), b.broker._loop).result(10)
        admin = AdminClient({"bootstrap.servers": b})
        admin.create_topics([NewTopic("t", 1, 1)])["t"].result(30)
        recording.set()
        c = Consumer({"bootstrap.servers": b, "group.id": "g", "enable.auto.commit": False})
        try:
            c.commit(offsets=[TopicPartition("t", 0, 5)], asynchronous=False)
            assert c.committed([TopicPartition("t", 0)], timeout=30)[0].offset == 5
        finally:
            c.close()
        recording.clear()
        made = glob.glob(os.path.join(b.data_dir, "__consumer_offsets-*", "leader-epoch-checkpoint"))
        assert len(made) == 50
    assert [c for c in calls if c[1] == loop_thread] == []
    assert len([c for c in calls if c[0] == "replace" and str(c[3]).endswith("leader-epoch-checkpoint.tmp")]) >= 50


def test_delete_records_does_its_file_work_off_the_loop(tmp_path, monkeypatch):
    # The loop only moves the log start in memory; the segments below it are
    # renamed *.deleted and the data dir's log-start-offset-checkpoint written
    # on the file thread, and the answer waits for that (the new log start is
    # on disk when the client hears of it); the *.deleted files are unlinked
    # later, on the flush thread (Kafka deletes them in a background task too).
    calls = []
    recording = threading.Event()
    _record(monkeypatch, ("fsync", "fdatasync", "rename", "replace", "remove", "unlink"), calls, recording)
    with running_broker(tmp_path / "d") as b:
        loop_thread = asyncio.run_coroutine_threadsafe(_thread_ident(), b.broker._loop).result(10)
        admin = AdminClient({"bootstrap.servers": b})
        admin.create_topics([NewTopic("dr", 1, 1, config={"segment.bytes": "1024"})])["dr"].result(30)
        p = Producer({"bootstrap.servers": b, "linger.ms": 0})
        for i in range(12):
            p.produce("dr", b"%04d" % i + b"x" * 300)
            assert p.flush(30) == 0
        part = os.path.join(b.data_dir, "dr-0")
        assert len(glob.glob(os.path.join(part, "*.log"))) >= 3
        recording.set()
        for f in admin.delete_records([TopicPartition("dr", 0, 10)]).values():
            assert f.result(30).low_watermark == 10
        with open(os.path.join(b.data_dir, "log-start-offset-checkpoint")) as f:
            assert "dr 0 10" in f.read().splitlines()
        _wait(lambda: not glob.glob(os.path.join(part, "*.deleted")) and
              len([c for c in calls if c[0] == "remove" and str(c[3]).endswith(".log.deleted")]) >= 2,
              "the dropped segments stayed")
        recording.clear()
    assert [c for c in calls if c[1] == loop_thread] == []
    renamed = [c for c in calls if c[0] == "rename" and str(c[3]).startswith(part) and str(c[3]).endswith(".log")]
    assert len(renamed) >= 2 and all(c[2].startswith("pylog-topic-files") for c in renamed), calls


def test_start_opens_the_data_dir_off_the_loop(tmp_path, monkeypatch):
    # meta.properties written (tmp, fsync, rename, directory fsync) on the
    # first start, and every log opened on the next (each partition's
    # directory made sure of), on a worker thread: the loop may be an
    # embedding application's, or serve another broker of the process.
    calls = []
    recording = threading.Event()
    _record(monkeypatch, ("fsync", "fdatasync", "rename", "replace", "mkdir", "makedirs"), calls, recording)
    config = {"broker.id": "0", "log.dirs": str(tmp_path / "d"), "listeners": "PLAINTEXT://127.0.0.1:0"}
    loop_threads = []
    for first in (True, False):
        recording.set()
        b = Broker(BrokerConfig(config)).start_in_thread()
        recording.clear()
        try:
            # (ident, name): an ident is reused once its thread ended, and the
            # first broker's loop thread ends before the second start's workers run.
            loop_threads.append((b._thread.ident, b._thread.name))
            if first:
                admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{b.advertised_port}"})
                admin.create_topics([NewTopic("t", 2, 1)])["t"].result(30)
        finally:
            b.stop_in_thread()
    assert any(c[0] == "replace" and str(c[3]).endswith("meta.properties.tmp") for c in calls)
    assert any(c[0] == "makedirs" and str(c[3]).endswith("t-1") for c in calls)
    assert [c for c in calls if (c[1], c[2]) in loop_threads] == []
