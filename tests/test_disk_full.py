"""A full disk: appends raise DiskFullError, the log stays readable and usable.

Each test mounts a 2 MiB tmpfs (root only; skipped otherwise) and runs its
scenario in a child process: a full disk can crash a process that writes
through a memory map (SIGBUS), and a crash must fail one test, not the run.
The child asserts; the parent reports its exit status and output.
"""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from loghelpers import run_python

_PRELUDE = r"""
import errno, logging, os, sys
from pylog import Log
from pylog.errors import DiskFullError, StorageError

mnt, wb = sys.argv[1], int(sys.argv[2])
logdir = os.path.join(mnt, "topic-0")
warnings = []
class _Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("pylog").addHandler(_Keep(level=logging.WARNING))

def val(i):
    return b"%08d" % i + b"x" * 992

def make_filler(size):
    # space to give back later
    fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"\1" * size)
    os.close(fd)

def fill_up(log, batch):
    '''Append until DiskFullError; return (records appended, the error).'''
    n = 0
    for _ in range(100000):
        try:
            if batch:
                first = log.append_batch([val(n + j) for j in range(batch)], keys=[b"k"] * batch)
                assert first == n, (first, n)
                n += batch
            else:
                off = log.append(val(n), key=b"k")
                assert off == n, (off, n)
                n += 1
        except DiskFullError as e:
            return n, e
    raise AssertionError("the disk never filled")

def check_readable(log, n):
    assert log.log_end_offset == n, f"log_end_offset {log.log_end_offset} != {n} records appended"
    for i in range(n):
        r = log.read(i)
        assert bytes(r.value) == val(i), f"record {i} reads back wrong"
        del r
    got = [bytes(v) for v in log.scan_values()]
    assert got == [val(i) for i in range(n)], "scan differs"

def check_reopen(n, **opts):
    with Log.open(logdir, **opts) as again:
        check_readable(again, n)
    cuts = [w for w in warnings if "cut" in w or "dropped" in w]
    assert not cuts, f"recovery cut something after a clean close: {cuts}"
"""

_APPEND_UNTIL_FULL = _PRELUDE + r"""
batch = int(sys.argv[3])
make_filler(256 << 10)
opts = dict(write_buffer_bytes=wb, index_interval_bytes=1 << 20)
log = Log.open(logdir, **opts)
n, err = fill_up(log, batch)
assert n > 0
assert isinstance(err, StorageError) and err.errno == errno.ENOSPC, (type(err), err.errno)
print("full after", n, "records:", err, flush=True)
check_readable(log, n)                       # readable, and the failed append is not counted
os.remove(os.path.join(mnt, "filler"))       # free space: appends work again
assert log.append(val(n), key=b"k") == n
n += 1
assert log.append_batch([val(n), val(n + 1)]) == n
n += 2
check_readable(log, n)
log.close()
check_reopen(n, **opts)
print("OK")
"""

_CLOSE_WHILE_FULL = _PRELUDE + r"""
make_filler(256 << 10)
opts = dict(write_buffer_bytes=wb, index_interval_bytes=1 << 20)
log = Log.open(logdir, **opts)
n, err = fill_up(log, 0)
try:
    log.close()
    closed = True
except DiskFullError as e:   # acceptable: the disk is full
    print("close refused:", e, flush=True)
    closed = False
# any other exception type propagates and fails the test
if not closed:
    assert not log.closed
    check_readable(log, n)   # a refused close leaves a working log
    os.remove(os.path.join(mnt, "filler"))
    log.close()
else:
    os.remove(os.path.join(mnt, "filler"))
check_reopen(n, **opts)
print("OK")
"""

# A full disk hit while an index needs a fresh page: the index files are sparse
# and memory-mapped, so the page is only allocated when the entry is written.
_INDEX_PAGE = _PRELUDE + r"""
free_pages = int(sys.argv[3])
log = Log.open(logdir, write_buffer_bytes=wb, index_interval_bytes=0)
fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"\1" * 4096)
except OSError:
    pass
os.close(fd)
os.truncate(os.path.join(mnt, "filler"), os.path.getsize(os.path.join(mnt, "filler")) - 4096 * free_pages)
print("free pages:", os.statvfs(mnt).f_bavail, flush=True)
n = 0
try:
    for _ in range(100000):
        log.append(b"%08d" % n + b"x" * 100)
        n += 1
    raise AssertionError("the disk never filled")
except StorageError as e:
    assert isinstance(e, DiskFullError), type(e)
print("full after", n, flush=True)
for i in range(n):
    assert bytes(log.read(i).value)[:8] == b"%08d" % i
os.remove(os.path.join(mnt, "filler"))
assert log.append(b"again") == n
log.close()
print("OK")
"""


@pytest.fixture
def small_fs(tmp_path):
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", os.fspath(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip() or p.returncode}")
    try:
        yield os.fspath(mnt)
    finally:
        r = subprocess.run(["umount", os.fspath(mnt)], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", os.fspath(mnt)], capture_output=True, text=True)


def run_scenario(code, *args):
    p = run_python(code, *args, timeout=120)
    if p.returncode < 0:
        pytest.fail(f"the child was killed by {signal.Signals(-p.returncode).name}\n"
                    f"stdout:\n{p.stdout[-2000:]}\nstderr:\n{p.stderr[-3000:]}", pytrace=False)
    assert p.returncode == 0, f"stdout:\n{p.stdout[-2000:]}\nstderr:\n{p.stderr[-3000:]}"
    assert p.stdout.strip().endswith("OK"), p.stdout
    return p


BUFFERS = [pytest.param(0, id="unbuffered"), pytest.param(64 << 10, id="buffered")]


@pytest.mark.parametrize("wb", BUFFERS)
@pytest.mark.parametrize("batch", [pytest.param(0, id="append"), pytest.param(20, id="append_batch")])
def test_append_until_disk_full(small_fs, wb, batch):
    run_scenario(_APPEND_UNTIL_FULL, small_fs, wb, batch)


@pytest.mark.parametrize("wb", BUFFERS)
def test_close_on_a_full_disk(small_fs, wb):
    run_scenario(_CLOSE_WHILE_FULL, small_fs, wb)


@pytest.mark.parametrize("free_pages", [1, 2])
def test_disk_full_when_an_index_needs_a_page(small_fs, free_pages):
    run_scenario(_INDEX_PAGE, small_fs, 0, free_pages)


def test_checkpoint_write_failure_in_close_leaves_a_usable_log(log_dir):
    # Not a full disk, but the same path: close() fails after the segments are
    # closed (here: the checkpoint's temporary name is taken by a directory).
    code = r"""
import os, sys
from pylog import Log
from pylog.errors import PylogError
path = sys.argv[1]
log = Log.open(path)
for i in range(5):
    log.append(b"v%d" % i)
os.mkdir(os.path.join(path, "recovery-point-offset-checkpoint.tmp"))
try:
    log.close()
except OSError as e:
    print("close failed:", type(e).__name__, e, flush=True)
    try:  # still usable, or a clean error; never a crash
        assert bytes(log.read(3).value) == b"v3"
    except PylogError as e:
        print("read after the failed close:", type(e).__name__, e, flush=True)
    os.rmdir(os.path.join(path, "recovery-point-offset-checkpoint.tmp"))
    log.close()  # a retry once the obstacle is gone completes the close
with Log.open(path) as again:
    assert [bytes(v) for v in again.scan_values()] == [b"v%d" % i for i in range(5)]
print("OK")
"""
    run_scenario(code, log_dir)
