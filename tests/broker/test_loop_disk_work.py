"""The broker's event loop does not wait on the disk for a segment roll or a
replica's deletion (issue 12, point 6): the roll's sync (Kafka's flush-log
task) and the deletion's close, rename and topics-file write (Kafka's
asyncDelete) run on worker threads. Every fsync, fdatasync, rename and replace
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

from pylog.testing import running_broker


async def _thread_ident():
    return threading.get_ident()


def _wait(cond, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_rolls_and_replica_deletion_do_their_file_work_off_the_loop(tmp_path, monkeypatch):
    calls = []
    recording = threading.Event()
    for name in ("fsync", "fdatasync", "rename", "replace"):
        real = getattr(os, name)

        def record(*args, _real=real, _name=name):
            if recording.is_set():
                calls.append((_name, threading.get_ident(), threading.current_thread().name,
                              args[0] if isinstance(args[0], str) else None))
            return _real(*args)
        monkeypatch.setattr(os, name, record)
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
    for name in ("fsync", "fdatasync", "rename", "replace", "mkdir", "makedirs"):
        real = getattr(os, name)

        def record(*args, _real=real, _name=name, **kwargs):
            if recording.is_set():
                calls.append((_name, threading.get_ident(), threading.current_thread().name, args[0]))
            return _real(*args, **kwargs)
        monkeypatch.setattr(os, name, record)
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


def test_delete_records_unlinks_segments_off_the_loop(tmp_path, monkeypatch):
    # DeleteRecords runs on the loop; the segments it drops are only renamed
    # *.deleted there, and unlinked on the flush thread (Kafka deletes them in
    # a background task too).
    removed = []
    real_remove = os.remove

    def remove(path, *args, **kwargs):
        removed.append((threading.get_ident(), str(path)))
        return real_remove(path, *args, **kwargs)
    monkeypatch.setattr(os, "remove", remove)
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
        for f in admin.delete_records([TopicPartition("dr", 0, 10)]).values():
            assert f.result(30).low_watermark == 10
        _wait(lambda: not glob.glob(os.path.join(part, "*.deleted")) and
              len([r for r in removed if r[1].endswith(".log.deleted")]) >= 2, "the dropped segments stayed")
    dropped = [r for r in removed if r[1].startswith(part) and r[1].endswith(".deleted")]
    assert dropped and all(t != loop_thread for t, _ in dropped)
