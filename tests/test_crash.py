"""SIGKILL a writer mid-append, many times, on the same directory.

The child appends records whose value is str(offset) (single appends and small
batches, some lz4), flushes every K records and then records the highest flushed
offset in a side file (fsync'd, replaced atomically). The parent kills it with
SIGKILL at a random moment, checks an image of the directory (a copy, so the
original stays unclean and the next child recovers it itself), and starts the
next child, which reopens the log and goes on at log_end_offset.

After every kill: the log is a prefix of 0, 1, 2, ... (value of offset i is
str(i)), nothing flushed is missing, and the segments are contiguous.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from pylog import Log

from loghelpers import REPO

_CHILD = r"""
import os, random, sys
from pylog import Log
path, side, k, wb, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
log = Log.open(path, segment_bytes=4096, segment_index_bytes=4096, index_interval_bytes=256,
               write_buffer_bytes=wb)
n = log.log_end_offset
# what this child found must already be right (it recovered the directory itself)
for r in log.scan():
    assert bytes(r.value) == str(r.offset).encode(), (r.offset, bytes(r.value))
print("READY", n, flush=True)
since_flush = 0
def record_flushed(last):
    tmp = side + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, str(last).encode())
    os.fsync(fd)
    os.close(fd)
    os.replace(tmp, side)
while True:
    if rng.random() < 0.3:
        count = rng.randint(2, 10)
        first = log.append_batch([str(n + j).encode() for j in range(count)],
                                 compression=rng.choice([None, "lz4"]))
    else:
        count = 1
        first = log.append(str(n).encode(), key=b"k")
    assert first == n, (first, n)
    n += count
    since_flush += count
    if since_flush >= k:
        log.flush()
        record_flushed(n - 1)
        since_flush = 0
"""


def check_image(path, flushed: int) -> int:
    """Open a copy of the crashed directory; return its log_end_offset."""
    with Log.open(path, segment_bytes=4096, segment_index_bytes=4096, index_interval_bytes=256) as log:
        n = log.log_end_offset
        assert log.log_start_offset == 0
        assert n - 1 >= flushed, f"flushed offset {flushed} is missing (log end {n})"
        segs = log.segments()
        assert segs[0].base_offset == 0
        for a, b in zip(segs, segs[1:]):
            assert b.base_offset == a.next_offset
        got = [bytes(v) for v in log.scan_values()]
        assert len(got) == n
        bad = next((off for off, v in enumerate(got) if v != str(off).encode()), None)
        assert bad is None, f"offset {bad} holds {got[bad]!r}"
        if n:
            assert bytes(log.read(n - 1).value) == str(n - 1).encode()
    return n


def read_flushed(side) -> int:
    try:
        with open(side) as f:
            return int(f.read())
    except FileNotFoundError:
        return -1


@pytest.mark.parametrize("wb", [pytest.param(0, id="unbuffered"), pytest.param(64 << 10, id="buffered"),
                                pytest.param(1000, id="small-buffer")])
def test_sigkill_mid_append(tmp_path, wb):
    rng = random.Random(1234 + wb)
    path = os.fspath(tmp_path / "topic-0")
    side = os.fspath(tmp_path / "flushed")
    env = dict(os.environ, PYTHONPATH=REPO)
    flushed = -1
    last_end = 0
    iterations = 8
    deadline = time.monotonic() + 50
    for it in range(iterations):
        assert time.monotonic() < deadline, "the crash loop takes too long"
        k = rng.choice([1, 7, 50, 400])
        child = subprocess.Popen([sys.executable, "-c", _CHILD, path, side, str(k), str(wb), str(rng.randrange(1 << 30))],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = child.stdout.readline()
            if not line.startswith("READY"):
                child.kill()
                _, err = child.communicate(timeout=10)
                pytest.fail(f"iteration {it}: child did not start: {line!r}\n{err[-3000:]}")
            start = int(line.split()[1])
            assert start >= flushed + 1, f"the child reopened at {start}, below the flushed offset {flushed}"
            time.sleep(rng.uniform(0.0, 0.25))
            child.send_signal(signal.SIGKILL)
            _, err = child.communicate(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL, f"iteration {it}: child ended by itself:\n{err[-3000:]}"
        flushed_now = read_flushed(side)
        assert flushed_now >= flushed
        flushed = flushed_now
        image = os.fspath(tmp_path / f"image{it}")
        shutil.copytree(path, image)
        end = check_image(image, flushed)
        shutil.rmtree(image)
        last_end = end
    assert flushed > 0 and last_end > 0, "nothing was ever flushed: the kills came too early"
    # the directory itself, recovered once more and closed cleanly, is still right
    assert check_image(path, flushed) >= flushed + 1
