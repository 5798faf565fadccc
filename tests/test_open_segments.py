"""The open-segment budget: sealed segments close when the process has too
many open and reopen on use, never under a live view; trusted segments open
only when used, and are checked then."""
from __future__ import annotations

import gc
import os

import pytest

from pylog import _engine
from pylog.log.log import Log


@pytest.fixture
def budget():
    """A small budget for the test, the default one after it."""
    def set_limit(n):
        _engine.set_open_segment_limit(n)
    yield set_limit
    _engine.set_open_segment_limit(None)


def _segment_fds(path):
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(str(path)) and target.endswith((".log", ".index", ".timeindex")):
            n += 1
    return n


def _fill(path, segments, per_segment=3):
    lg = Log.open(path, segment_bytes=1024, index_interval_bytes=1)
    for i in range(segments * per_segment):
        lg.append(b"%06d" % i + b"x" * (1024 // per_segment - 80))
    assert len(lg.segments()) >= segments
    return lg


def test_reads_across_segments_stay_within_the_budget(tmp_path, budget):
    # The count is process-wide: logs of earlier tests in this process that
    # are still alive (or whose records are) may hold segments the budget
    # cannot close.
    gc.collect()
    held_elsewhere = _engine.open_segments()[0]
    budget(5)
    lg = _fill(tmp_path, 60)
    try:
        n = lg.log_end_offset
        assert _segment_fds(tmp_path) <= 3 * 5
        assert [bytes(v)[:6] for v in lg.scan_values()] == [b"%06d" % i for i in range(n)]
        assert _segment_fds(tmp_path) <= 3 * 5
        for off in range(n - 1, -1, -7):
            assert bytes(lg.read(off).value)[:6] == b"%06d" % off
        assert _segment_fds(tmp_path) <= 3 * 5
        assert lg.offset_for_time(0) == 0
        opened, limit = _engine.open_segments()
        assert limit == 5 and _segment_fds(tmp_path) // 3 <= opened <= limit + held_elsewhere
    finally:
        lg.close()
    assert _segment_fds(tmp_path) == 0


def test_live_views_keep_their_segments_mapped(tmp_path, budget):
    budget(4)
    lg = _fill(tmp_path, 40)
    try:
        # One record view from each of 30 segments: none may be unmapped.
        held = [lg.read(off) for off in range(0, 90, 3)]
        assert _segment_fds(tmp_path) >= 3 * 30
        for off in range(90, lg.log_end_offset):  # more segments opened meanwhile
            lg.read(off)
        assert [bytes(r.value)[:6] for r in held] == [b"%06d" % off for off in range(0, 90, 3)]
        it = lg.scan_values(0)
        first = next(it)
        del held
        gc.collect()
        for off in range(90, lg.log_end_offset):
            lg.read(off)
        # Released views: those segments close again; the scan's still pins one.
        assert _segment_fds(tmp_path) <= 3 * 5
        assert bytes(first)[:6] == b"000000"
        del first, it
    finally:
        gc.collect()
        lg.close()


def test_trusted_segments_open_on_use_and_are_checked_then(tmp_path, budget):
    budget(1000)
    lg = _fill(tmp_path, 30)
    end = lg.log_end_offset
    segs = lg.segments()
    lg.close()
    # Damage the offset index of a sealed segment below the recovery point.
    victim = segs[10]
    index = victim.path[:-4] + ".index"
    assert os.path.getsize(index) > 0
    with open(index, "r+b") as f:
        f.write(b"\xff" * 8)

    lg = Log.open(tmp_path, segment_bytes=1024, index_interval_bytes=1)
    try:
        # A clean start opens only the active segment.
        assert _segment_fds(tmp_path) == 3
        assert lg.log_end_offset == end and lg.size_bytes == sum(s.size for s in segs)
        assert _segment_fds(tmp_path) == 3
        # Reading the damaged one rebuilds its index and reads right.
        off = victim.base_offset
        assert bytes(lg.read(off + 1).value)[:6] == b"%06d" % (off + 1)
        assert _segment_fds(tmp_path) == 6
        assert [bytes(v)[:6] for v in lg.scan_values()] == [b"%06d" % i for i in range(end)]
    finally:
        lg.close()


def test_truncation_and_retention_over_closed_segments(tmp_path, budget):
    budget(3)
    lg = _fill(tmp_path, 30)
    try:
        end = lg.log_end_offset
        cut = lg.segments()[20].base_offset + 1
        lg.truncate_to(cut)
        assert lg.log_end_offset == cut
        assert lg.append(b"after") == cut
        lg.delete_records(lg.segments()[5].base_offset)
        assert lg.log_start_offset == lg.segments()[0].base_offset
        assert [bytes(v)[:6] for v in lg.scan_values(lg.log_start_offset, cut)] == \
            [b"%06d" % i for i in range(lg.log_start_offset, cut)]
        assert end > cut
        assert _segment_fds(tmp_path) <= 3 * 3
    finally:
        lg.close()
    with Log.open(tmp_path, segment_bytes=1024) as lg:
        assert bytes(lg.read(cut).value) == b"after"


def test_threads_sharing_the_budget(tmp_path, budget):
    """Threads reading their own logs and one shared log park each other's
    segments (taking the owner's lock without waiting), and every read stays
    right."""
    import random
    import threading
    budget(6)
    logs = [_fill(tmp_path / f"l{i}", 25) for i in range(4)]
    errors = []

    def reader(lg, seed):
        rnd = random.Random(seed)
        try:
            for _ in range(1500):
                off = rnd.randrange(lg.log_end_offset)
                r = lg.read(off)
                if bytes(r.value)[:6] != b"%06d" % off:
                    errors.append((lg.path, off))
                if rnd.random() < 0.01:
                    assert sum(1 for _ in lg.scan_values(off)) == lg.log_end_offset - off
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(logs[i % 4], i)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        gc.collect()
        logs[0].read(0)  # one more opening sweeps what the threads left open
        assert _segment_fds(tmp_path) <= 3 * (6 + 3)  # + the other logs' active segments
    finally:
        for lg in logs:
            lg.close()
