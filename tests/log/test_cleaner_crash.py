"""A compaction round killed at each of its steps (a real child process ends
with os._exit after writing each group's .cleaned files, and after each rename
of the swap): the reopened log reads as before the round or as after it, never
a mixture, never without a key's latest value; no .cleaned, .swap or .deleted
file is left, and a new round then gives the same log as an uninterrupted one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from pylog.log.log import Log

from loghelpers import REPO

NOW = 5_000_000
SEGMENT_BYTES = 1024

_CHILD = r"""
import os, sys
from pylog.log import cleaner, log as log_module
from pylog.log.log import Log
steps_left = [int(sys.argv[2])]
def crash_after_n_steps(step):
    steps_left[0] -= 1
    if not steps_left[0]:
        os._exit(0)
log_module._SWAP_STEP_HOOK = cleaner._STEP_HOOK = crash_after_n_steps
Log.open(sys.argv[1], segment_bytes=%d).compact(now_ms=%d)
os._exit(3)
""" % (SEGMENT_BYTES, NOW)


def _records(path):
    with Log.open(path, segment_bytes=SEGMENT_BYTES) as log:
        return [(r.offset, bytes(r.key), None if r.value is None else bytes(r.value)) for r in log.scan()]


def _make(path):
    # Four sealed segments, keys overwritten across them (tombstones too), a
    # compressed batch, and an active segment the round leaves alone.
    with Log.open(path, segment_bytes=SEGMENT_BYTES) as log:
        for i in range(60):
            value = None if i % 11 == 5 else b"value-%03d" % i
            log.append(value, b"k%d" % (i % 7), timestamp=NOW - 1000 + i)
            if i == 30:
                log.append_batch([b"z1", b"z2", None], [b"k1", b"k8", b"k2"], compression="lz4")
        log.roll()
        log.append(b"active", b"k0")


def test_a_crash_at_each_step_of_a_round_leaves_before_or_after(tmp_path):
    base = os.fspath(tmp_path / "base" / "t-0")
    _make(base)
    before = _records(base)
    ref = os.fspath(tmp_path / "ref" / "t-0")
    shutil.copytree(base, ref)
    from pylog.log import cleaner, log as log_module
    steps = []
    log_module._SWAP_STEP_HOOK = cleaner._STEP_HOOK = steps.append
    try:
        with Log.open(ref, segment_bytes=SEGMENT_BYTES) as log:
            stats = log.compact(now_ms=NOW)
    finally:
        log_module._SWAP_STEP_HOOK = cleaner._STEP_HOOK = None
    after = _records(ref)
    assert stats.segments_cleaned >= 3 and stats.records_removed > 0 and after != before
    assert "group-written" in steps and "swap-to-final" in steps
    latest = {}
    for off, key, value in before:
        latest[key] = (off, value)
    env = dict(os.environ, PYTHONPATH=REPO)
    outcomes = []
    for stop in range(1, len(steps) + 1):
        path = os.fspath(tmp_path / f"crash-{stop}" / "t-0")
        shutil.copytree(base, path)
        done = subprocess.run([sys.executable, "-c", _CHILD, path, str(stop)], env=env, timeout=120,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        got = _records(path)
        assert got in (before, after), f"a crash after step {stop} ({steps[stop - 1]}) left a mixture"
        assert {k: v for k, v in ((k, (o, v)) for o, k, v in got) if k in latest} == latest
        assert not [n for n in os.listdir(path) if n.endswith((".cleaned", ".swap", ".deleted"))]
        outcomes.append(got == after)
        with Log.open(path, segment_bytes=SEGMENT_BYTES) as log:
            log.compact(now_ms=NOW)
        assert _records(path) == after
        shutil.rmtree(os.path.dirname(path))
    # Until every .cleaned file is a .swap the round is undone, from then on completed.
    assert outcomes[0] is False and outcomes[-1] is True
    assert outcomes == sorted(outcomes)
