"""fdatasync never holds the lock that appends take: a flush syncs up to the
position captured when it started, outside the log's lock."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pylog.log.log import Log


@pytest.fixture
def parked_sync(monkeypatch):
    """os.fdatasync, but each call waits at a gate first (then really syncs),
    so a test can act while a flush is inside its fdatasync."""
    real = os.fdatasync
    entered = threading.Event()
    gate = threading.Event()

    def fdatasync(fd):
        entered.set()
        if not gate.wait(60):
            raise AssertionError("the gate was never opened")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    yield entered, gate
    gate.set()


def _in_thread(fn, *args):
    done = threading.Event()
    out = {}

    def run():
        try:
            out["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 -- reported to the test
            out["error"] = exc
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, out


@pytest.mark.parametrize("how", ["flush", "maybe_flush", "flush_messages"])
def test_appends_go_on_while_a_flush_is_in_fdatasync(log_dir, parked_sync, how):
    entered, gate = parked_sync
    log = Log.open(log_dir, flush_messages=2 if how == "flush_messages" else None)
    if how == "maybe_flush":
        log.flush_ms = 0  # as the broker sets it: its flush task calls maybe_flush, no flusher thread
    try:
        if how == "flush_messages":
            log.append(b"a")
            flushing, out = _in_thread(log.append, b"b")  # the second append reaches flush.messages
        else:
            log.append_batch([b"a", b"b"])
            flushing, out = _in_thread(log.flush if how == "flush" else log.maybe_flush)
        assert entered.wait(60), "the flush never reached fdatasync"
        # The flush is parked inside fdatasync: the log's lock must be free.
        appended, res = _in_thread(log.append, b"c")
        assert appended.wait(60), "an append waited for the fdatasync of another thread"
        assert res == {"result": 2}
        assert [bytes(r.value) for r in log.scan()] == [b"a", b"b", b"c"]
        assert log.recovery_point == 0
        gate.set()
        assert flushing.wait(60) and "error" not in out
        assert log.recovery_point == 2, "the sync covers what was appended before it started, no more"
        log.flush()
        assert log.recovery_point == 3
    finally:
        gate.set()
        log.close()


def test_a_truncation_during_the_fdatasync_keeps_the_recovery_point_honest(log_dir, parked_sync):
    entered, gate = parked_sync
    with Log.open(log_dir) as log:
        log.append_batch([b"a", b"b", b"c"])
        flushing, out = _in_thread(log.flush)
        assert entered.wait(60)
        log.truncate_to(1)
        log.append(b"B")
        gate.set()
        assert flushing.wait(60) and "error" not in out
        assert log.recovery_point <= 1
        log.flush()
        assert log.recovery_point == 2


def test_flush_messages_goes_to_the_flush_executor(log_dir, parked_sync):
    entered, gate = parked_sync
    with ThreadPoolExecutor(1) as executor, Log.open(log_dir, flush_messages=1) as log:
        log.flush_executor = executor
        assert log.append(b"a") == 0       # returns while the sync waits on the worker
        assert entered.wait(60)
        assert log.append(b"b") == 1
        gate.set()
        executor.submit(lambda: None).result(60)
        log.flush()
        assert log.recovery_point == 2


def test_a_segment_closed_during_the_fdatasync_keeps_its_descriptor(log_dir, parked_sync):
    entered, gate = parked_sync
    log = Log.open(log_dir, segment_bytes=1024, retention_bytes=0)
    held = threading.Event()
    with ThreadPoolExecutor(1) as executor:
        # The rolls' own syncs wait on the busy worker: the flush below has
        # every segment to sync.
        executor.submit(held.wait, 60)
        log.flush_executor = executor
        for i in range(20):
            log.append(b"%04d" % i + b"x" * 200)
        flushing, out = _in_thread(log.flush)
        assert entered.wait(60)
        assert log.enforce_retention() > 0     # deletes segments the flush is syncing
        gate.set()
        held.set()
        assert flushing.wait(60) and "error" not in out, out
    log.close()


@pytest.fixture
def sync_threads(monkeypatch):
    """The thread of every os.fdatasync / os.fsync call, in order."""
    calls = []
    for name in ("fdatasync", "fsync"):
        real = getattr(os, name)

        def record(fd, _real=real, _name=name):
            calls.append((_name, threading.current_thread().name))
            return _real(fd)
        monkeypatch.setattr(os, name, record)
    return calls


def _fill_until_rolled(log, rolls=1):
    i = 0
    while len(log.segments()) < rolls + 1:
        log.append(b"%04d" % i + b"x" * 200)
        i += 1
    return i


def test_a_roll_syncs_the_sealed_segment_on_the_flush_executor(log_dir, sync_threads):
    # Kafka's roll schedules the flush of the sealed segment (UnifiedLog.roll,
    # "flush-log"): the appending thread (the broker's event loop) neither
    # syncs under the lock nor waits; the recovery point passes the sealed
    # segment only once that sync is done.
    held = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="flush") as executor, \
            Log.open(log_dir, segment_bytes=1024) as log:
        executor.submit(held.wait, 60)     # the worker is busy: the roll's sync waits
        log.flush_executor = executor
        del sync_threads[:]                # opening wrote the log's own checkpoint files
        _fill_until_rolled(log)
        sealed, active = log._segments[0], log._segments[1]
        assert sealed.synced_size < sealed.size
        assert log.recovery_point < active.base_offset
        assert sync_threads == []
        held.set()
        executor.submit(lambda: None).result(60)
        assert sealed.synced_size == sealed.size
        assert log.recovery_point == active.base_offset
        # The .log, both indexes and the directory, all on the worker.
        assert sorted(sync_threads) == [("fdatasync", "flush_0")] + [("fsync", "flush_0")] * 3


def test_appends_go_on_while_the_rolled_segment_is_in_fdatasync(log_dir, parked_sync):
    entered, gate = parked_sync
    with ThreadPoolExecutor(1) as executor, Log.open(log_dir, segment_bytes=1024) as log:
        log.flush_executor = executor
        n = _fill_until_rolled(log)
        assert entered.wait(60)            # the worker is inside the sealed segment's fdatasync
        n += _fill_until_rolled(log, 3)    # appends and rolls go on meanwhile
        assert log.recovery_point == 0
        gate.set()
        executor.submit(lambda: None).result(60)
        executor.submit(lambda: None).result(60)
        assert log.recovery_point == log._segments[-1].base_offset
        assert log.log_end_offset == n


def test_a_crash_before_the_rolled_segment_is_synced_recovers_it(log_dir, tmp_path):
    import shutil
    held = threading.Event()
    with ThreadPoolExecutor(1) as executor:
        executor.submit(held.wait, 60)
        log = Log.open(log_dir, segment_bytes=1024)
        log.flush_executor = executor
        n = _fill_until_rolled(log, 3)
        log.flush_executor = None
        log._segments[-1].flush_buffer()
        shutil.copytree(log_dir, tmp_path / "image")  # as a crash leaves it: no checkpoint past 0
        held.set()
    log.close()
    with Log.open(tmp_path / "image", segment_bytes=1024) as again:
        assert again.log_end_offset == n
        assert [bytes(r.value)[:4] for r in again.scan()] == [b"%04d" % i for i in range(n)]
        assert again.recovery_point == n


def test_close_handlers_syncs_nothing_and_the_log_recovers(log_dir, sync_threads):
    # Kafka's closeHandlers, for a log about to be deleted: no flush, no
    # checkpoint, no clean-shutdown marker; opened again, it recovers.
    log = Log.open(log_dir, segment_bytes=1024)
    del sync_threads[:]
    for i in range(3):
        log.append(b"%04d" % i)
    log.close_handlers()
    assert log.closed
    assert sync_threads == []
    assert not os.path.exists(os.path.join(log_dir, ".kafka_cleanshutdown"))
    with Log.open(log_dir, segment_bytes=1024) as again:
        assert [bytes(r.value) for r in again.scan()] == [b"0000", b"0001", b"0002"]
