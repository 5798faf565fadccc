"""Log.replace_segments (what compaction will use) and the load's completion
or undoing of a swap a crash interrupted, by Kafka's LogLoader rules: a real
process ends (os._exit) after each rename; the reopened log holds either the
old segments or the new ones, never a mix, a loss or a doubling."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from pylog.log import log as log_module
from pylog.log.log import Log

from loghelpers import REPO, segment_bases

KEYS = 5


def _records(log):
    return [(r.offset, bytes(r.key), bytes(r.value)) for r in log.scan()]


def _make(path):
    """Three sealed segments of 10 one-record batches (keys k0..k4 over and
    over) and an active one of 5; and beside it, in cleaned/, the compacted
    version of the sealed ones (the last record of each key) as the .cleaned
    files of one segment at 0, which a cleaner writes while the log is open."""
    with Log.open(path) as log:
        for i in range(35):
            log.append(b"v%d" % i, key=b"k%d" % (i % KEYS))
            if i % 10 == 9 and i < 30:
                log.roll()
        kept = b"".join(bytes(log.read_batches(off, 1)) for off in range(30 - KEYS, 30))
    scratch = os.path.join(os.path.dirname(path), "scratch-0")
    with Log.open(scratch) as s:
        s.append_batches(kept, assign_offsets=False)
    cleaned = os.path.join(os.path.dirname(path), "cleaned")
    os.makedirs(cleaned)
    for suffix in (".log", ".index", ".timeindex"):
        shutil.copy(os.path.join(scratch, f"{0:020d}{suffix}"), os.path.join(cleaned, f"{0:020d}{suffix}.cleaned"))
    shutil.rmtree(scratch)


def _place_cleaned(path):
    cleaned = os.path.join(os.path.dirname(path), "cleaned")
    for name in os.listdir(cleaned):
        shutil.copy(os.path.join(cleaned, name), os.path.join(path, name))


BEFORE = [(i, b"k%d" % (i % KEYS), b"v%d" % i) for i in range(35)]
AFTER = [r for r in BEFORE if r[0] >= 30 - KEYS]

_CHILD = r"""
import os, sys
from pylog.log import log as log_module
from pylog.log.log import Log
stop = int(sys.argv[2])
seen = []
def hook(step):
    seen.append(step)
    if len(seen) == stop:
        os._exit(0)  # a crash right after this rename
log_module._SWAP_STEP_HOOK = hook
log = Log.open(sys.argv[1])
cleaned = os.path.join(os.path.dirname(sys.argv[1]), "cleaned")
for name in os.listdir(cleaned):
    with open(os.path.join(cleaned, name), "rb") as src, open(os.path.join(sys.argv[1], name), "wb") as dst:
        dst.write(src.read())
log.replace_segments([0], [0, 10, 20])
os._exit(3)
"""


def test_replace_segments_swaps_in_the_cleaned_segments(tmp_path):
    path = os.fspath(tmp_path / "t-0")
    _make(path)
    steps = []
    log_module._SWAP_STEP_HOOK = steps.append
    try:
        with Log.open(path) as log:
            held = log.read(3).value               # a view of an old segment
            assert _records(log) == BEFORE
            _place_cleaned(path)
            log.replace_segments([0], [0, 10, 20])
            assert _records(log) == AFTER
            assert bytes(held) == b"v3"            # still valid: unmapped when it goes
            assert log.log_end_offset == 35
        assert segment_bases(path) == [0, 30]
        assert not [n for n in os.listdir(path) if n.endswith((".cleaned", ".swap", ".deleted"))]
        with Log.open(path) as log:
            assert _records(log) == AFTER
    finally:
        log_module._SWAP_STEP_HOOK = None
    # 3 renames .cleaned -> .swap, 9 old files -> .deleted, 3 .swap -> final
    assert steps == ["cleaned-to-swap"] * 3 + ["old-to-deleted"] * 9 + ["swap-to-final"] * 3
    del held


@pytest.mark.parametrize("stop", range(1, 16))
def test_a_crash_after_each_rename_leaves_before_or_after(tmp_path, stop):
    path = os.fspath(tmp_path / "t-0")
    _make(path)
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-c", _CHILD, path, str(stop)], env=env, timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with Log.open(path) as log:
        got = _records(log)
    # Until every .cleaned file is a .swap, the swap is undone; from then on it is completed.
    assert got == (BEFORE if stop < 3 else AFTER)
    assert not [n for n in os.listdir(path) if n.endswith((".cleaned", ".swap", ".deleted"))]
    with Log.open(path) as log:
        assert _records(log) == got
