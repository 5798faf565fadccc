"""Readers in other processes: Log.open(path, read_only=True) follows a log
that another process appends to and rolls, without its lock (as Chronicle
Queue's tailers do)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pytest

from pylog.log.log import Log

from loghelpers import REPO

N = 300

_TAILER = r"""
import json, sys, time
from pylog.log.log import Log
log = Log.open(sys.argv[1], read_only=True)
n = int(sys.argv[2])
print("open", log.log_end_offset, flush=True)
seen, next_offset = [], 0
deadline = time.monotonic() + 120
while len(seen) < n and time.monotonic() < deadline:
    for rec in log.scan(next_offset):
        seen.append([rec.offset, bytes(rec.value).decode()])
        next_offset = rec.offset + 1
    time.sleep(0.005)
log.close()
print(json.dumps(seen), flush=True)
"""


def test_another_process_tails_the_log_while_the_writer_appends_and_rolls(log_dir):
    env = dict(os.environ, PYTHONPATH=REPO)
    with Log.open(log_dir, segment_bytes=2048) as writer:   # holds the lock all along
        writer.append(b"value 0")
        tailer = subprocess.Popen([sys.executable, "-c", _TAILER, log_dir, str(N)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = tailer.stdout.readline()
            assert line.split()[0] == "open", tailer.stderr.read()
            for i in range(1, N):
                if i % 7 == 0:
                    writer.append_batch([b"value %d" % i])
                else:
                    writer.append(b"value %d" % i)
                if i % 50 == 0:
                    time.sleep(0.05)
            assert len(writer.segments()) > 5
            out, err = tailer.communicate(timeout=180)
        finally:
            if tailer.poll() is None:
                tailer.kill()
                tailer.communicate()
    assert tailer.returncode == 0, err
    seen = json.loads(out.splitlines()[-1])
    assert seen == [[i, "value %d" % i] for i in range(N)]


def test_a_read_only_log_changes_nothing_and_refuses_changes(log_dir):
    with Log.open(log_dir) as writer:
        writer.append_batch([b"a", b"b"])
        writer.flush()
        before = sorted(os.listdir(log_dir))
        reader = Log.open(log_dir, read_only=True)
        try:
            assert [bytes(r.value) for r in reader.scan()] == [b"a", b"b"]
            assert bytes(reader.read(1).value) == b"b"
            for change in (lambda: reader.append(b"c"), lambda: reader.append_batch([b"c"]),
                           lambda: reader.append_batches(bytes(writer.read_batches(0))),
                           lambda: reader.truncate_to(0), reader.flush, reader.roll,
                           lambda: reader.delete_records(1)):
                with pytest.raises(io.UnsupportedOperation):
                    change()
            writer.append(b"c")   # buffered: shows once the buffer reaches the OS
            deadline = time.monotonic() + 60
            while reader.refresh() < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert reader.refresh() == 3
            assert bytes(reader.read(2).value) == b"c"
        finally:
            reader.close()
        assert sorted(os.listdir(log_dir)) == before
    with pytest.raises(FileNotFoundError):
        Log.open(os.path.join(log_dir, "missing"), read_only=True)
