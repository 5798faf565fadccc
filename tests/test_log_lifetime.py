"""A Log's lifetime as a user meets it: closing (or leaving a with block) while
record views are alive, retention and truncation under live views."""
from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time

import pytest

import pylog
from pylog.errors import LogClosedError
from pylog.log.log import Log

from loghelpers import REPO


def _mapped(path) -> int:
    """Mappings of this process onto segment files under path (deleted ones too)."""
    n = 0
    with open("/proc/self/maps") as f:
        for line in f:
            name = line.rstrip("\n").split(None, 5)[-1] if len(line.split()) >= 6 else ""
            if name.startswith(str(path)) and ".log" in name:
                n += 1
    return n


def _fill(log, n, size=100):
    for i in range(n):
        log.append_batch([b"%06d" % (i * 10 + j) + b"x" * size for j in range(10)])


def test_with_block_ends_cleanly_while_the_loop_variable_holds_a_record(log_dir):
    with pylog.Log.open(log_dir) as log:
        _fill(log, 3)
    with pylog.Log.open(log_dir) as log:
        for rec in log.scan():
            pass
    assert log.closed
    # The last record is still readable after the block.
    assert rec.offset == 29 and bytes(rec.value)[:6] == b"000029"
    # The lock went with close: the log opens again while the view lives.
    with pylog.Log.open(log_dir) as again:
        assert again.log_end_offset == 30
        assert bytes(again.read(29).value) == bytes(rec.value)
    assert _mapped(log_dir) >= 1
    del rec
    gc.collect()
    assert _mapped(log_dir) == 0, "the segment stays mapped after its last view went"


def test_an_exception_in_the_with_block_propagates_unchanged(log_dir):
    class Mine(Exception):
        pass

    with pytest.raises(Mine) as info:
        with pylog.Log.open(log_dir) as log:
            log.append(b"v")
            held = log.read(0)  # noqa: F841 -- a live view when the block ends
            raise Mine("from the user's code")
    assert str(info.value) == "from the user's code"
    assert info.value.__context__ is None
    assert log.closed
    del held


def test_close_with_live_views_keeps_them_valid_until_released(open_log, tmp_path):
    log = open_log(segment_bytes=4096)
    _fill(log, 20)
    assert len(log.segments()) > 3
    first = log.read(0)
    value = log.read(35).value          # a bare value view, its Record gone
    batches = log.read_batches(50)
    it = log.scan_values(0)
    head = next(it)
    log.close()
    assert log.closed
    assert bytes(first.value)[:6] == b"000000"
    assert bytes(value)[:6] == b"000035"
    assert bytes(memoryview(batches))[:8] == (50 // 10 * 10).to_bytes(8, "big")
    assert bytes(head)[:6] == b"000000"
    with pytest.raises(LogClosedError):  # the batch in hand ends, then the closed log says so
        for _ in it:
            pass
    # A new writer takes over the files meanwhile; old views still read their bytes.
    with Log.open(log.path) as writer:
        writer.append(b"new")
        writer.truncate_to(195)
    assert bytes(first.value)[:6] == b"000000"
    del first, value, batches, head, it, _
    gc.collect()
    assert _mapped(log.path) == 0


def test_retention_deletes_a_segment_with_live_views_and_unmaps_it_later(open_log):
    log = open_log(segment_bytes=4096, retention_bytes=0)
    _fill(log, 20)
    nsegs = len(log.segments())
    oldest = log.segments()[0]
    view = log.read(0).value
    deleted = log.enforce_retention()
    assert deleted == nsegs - 1, "a segment with live views must not hold up retention"
    assert not os.path.exists(oldest.path)
    assert log.log_start_offset == log.segments()[0].base_offset > 0
    assert bytes(view)[:6] == b"000000"
    mapped = _mapped(log.path)
    del view
    gc.collect()
    assert _mapped(log.path) == mapped - 1


def test_truncation_refuses_only_below_a_live_view(open_log):
    log = open_log()
    log.append_batch([b"a", b"b", b"c"])
    log.append_batch([b"d", b"e"])
    log.append_batch([b"f"])
    view = log.read(3).value            # in the batch [3, 4]
    log.truncate_to(5)                  # above it: fine
    assert log.log_end_offset == 5
    with pytest.raises(BufferError, match="truncate to offset 3"):
        log.truncate_to(3)              # would cut the view's bytes
    assert log.log_end_offset == 5 and bytes(view) == b"d"
    del view
    log.truncate_to(3)
    assert [bytes(r.value) for r in log.scan()] == [b"a", b"b", b"c"]


def test_truncation_deletes_later_segments_under_live_views(open_log):
    log = open_log(segment_bytes=4096)
    _fill(log, 20)
    last = log.segments()[-1]
    view = log.read(last.base_offset).value
    log.truncate_to(10)
    assert log.log_end_offset == 10
    assert not os.path.exists(last.path)
    assert bytes(view)[:6] == b"%06d" % last.base_offset
    del view


_SLOW_WRITER = r"""
import sys, time
from pylog.log.log import Log
log = Log.open(sys.argv[1])          # the default 64 KiB write buffer
for i in range(20):
    log.append(b"record %d" % i)
    time.sleep(0.02)
print("appended", log.log_end_offset, flush=True)
time.sleep(600)
"""


def test_buffered_appends_reach_the_os_within_the_bound_and_survive_sigkill(log_dir):
    from pylog.log.log import WRITE_BUFFER_MAX_MS
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, log_dir], stdout=subprocess.PIPE, text=True,
                             env=env)
    try:
        assert child.stdout.readline().split() == ["appended", "20"]
        # Far past the documented bound (the records are a few hundred bytes,
        # so a full buffer never pushed them out).
        time.sleep(max(3.0, 10 * WRITE_BUFFER_MAX_MS / 1000.0))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(60)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with Log.open(log_dir) as log:
        assert [bytes(r.value) for r in log.scan()] == [b"record %d" % i for i in range(20)]


def test_a_log_only_read_closes_without_writing(log_dir):
    with Log.open(log_dir, segment_bytes=4096) as log:
        _fill(log, 10)

    def state():
        return {n: (st.st_size, st.st_mtime_ns) for n in os.listdir(log_dir)
                for st in [os.stat(os.path.join(log_dir, n))]}

    before = state()
    with Log.open(log_dir, segment_bytes=4096) as log:
        assert sum(1 for _ in log.scan()) == 100
        assert bytes(log.read(50).value)[:6] == b"000050"
    after = state()
    assert set(after) == set(before)
    assert {n: s for n, (s, _) in after.items()} == {n: s for n, (s, _) in before.items()}
    # the marker and the checkpoints were not rewritten (no fsync of anything)
    for name in (".kafka_cleanshutdown", "recovery-point-offset-checkpoint", "log-start-offset-checkpoint"):
        assert after[name] == before[name]
    # a change takes the marker away first, so a crash after it is recovered
    with Log.open(log_dir, segment_bytes=4096) as log:
        log.append(b"x")
        assert not os.path.exists(os.path.join(log_dir, ".kafka_cleanshutdown"))
    assert os.path.exists(os.path.join(log_dir, ".kafka_cleanshutdown"))
