"""An exactly-once consume-transform-produce pipeline in embedded mode, across
crashes: a child process opens the directory (a LocalStore), reads topic
`in` with a read_committed Consumer in group `eos`, writes the upper-cased
values to `out` with a transactional Producer and the consumer's positions
with send_offsets_to_transaction, and aborts every third transaction (then
rewinds to the committed offsets, as an exactly-once application does).
The test SIGKILLs it at chosen steps (a transaction open with its records
and offsets written; just as commit_transaction starts), opens the directory
again in a new child, which fences the dead one's transactional id, and so
on until the input is consumed. Then every input value must be in `out`
exactly once among the committed records, and no aborted one visible.

Real processes, real files, SIGKILL; the directory's flock passes from the
killed child to the next as the kernel drops it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pylog
from pylog.embedded import LocalStore
from pylog.structs import TopicPartition

from .test_embedded_txn import read_to_end

TIMEOUT = 300.0     # per child: a deadline for a loaded machine, not a bound
N = 240           # input records
PARTITIONS = 2

# The pipeline. argv: data dir, input record count, partitions. Prints one line per step, flushed, so the
# parent can kill it at a known point: "open <n>" once transaction n has its
# records and offsets written, "committing <n>" right before
# commit_transaction, "committed <n>" / "aborted <n>" after, "done" at the end.
CHILD = textwrap.dedent("""
    import sys
    import pylog
    from pylog.structs import TopicPartition

    data = sys.argv[1]
    end = int(sys.argv[2])
    parts = int(sys.argv[3])
    say = lambda *a: print(*a, flush=True)
    p = pylog.Producer(log_dir=data, transactional_id="eos-app", linger_ms=1)
    p.init_transactions(60)          # fences the killed incarnation, aborts its transaction
    c = pylog.Consumer("in", log_dir=data, group_id="eos", isolation_level="read_committed",
                       auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=9)
    tps = [TopicPartition("in", i) for i in range(parts)]
    n = 0
    while True:
        records = c.poll(0.2)
        if not records:
            if c.assignment() and sum(c.position(tp) for tp in tps) >= end:
                break
            continue
        n += 1
        p.begin_transaction()
        for r in records:
            p.send("out", bytes(r.value).upper(), partition=r.partition)
        p.flush(60)        # in the log before "open": a kill leaves them there, uncommitted
        p.send_offsets_to_transaction({tp: c.position(tp) for tp in c.assignment()}, c.group_metadata(), 60)
        say("open", n)
        if n % 3 == 0:
            p.abort_transaction(60)
            committed = c.committed(list(c.assignment()))
            for tp in c.assignment():
                om = committed.get(tp)
                c.seek(tp, om.offset if om is not None else 0)
            say("aborted", n)
        else:
            say("committing", n)
            p.commit_transaction(60)
            say("committed", n)
    c.close(autocommit=False)
    p.close()
    say("done")
""")


def _child(data):
    return subprocess.Popen([sys.executable, "-c", CHILD, data, str(N), str(PARTITIONS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_until(data, kill_on):
    """Start a pipeline child; SIGKILL it as soon as it prints kill_on (None:
    let it finish). Returns the lines it printed."""
    child = _child(data)
    lines = []
    # A child that hangs is ended (and the test fails below with its output):
    # reading its stdout would otherwise wait forever.
    watchdog = threading.Timer(TIMEOUT, child.kill)
    watchdog.start()
    try:
        for line in child.stdout:
            lines.append(line.strip())
            if kill_on is not None and line.strip() == kill_on:
                os.kill(child.pid, signal.SIGKILL)
                break
        rc = child.wait(TIMEOUT)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    err = child.stderr.read()
    child.stdout.close()
    child.stderr.close()
    if kill_on is None:
        assert rc == 0 and lines[-1:] == ["done"], f"pipeline failed (rc {rc}): {lines[-5:]}\n{err[-3000:]}"
    else:
        assert rc == -signal.SIGKILL, f"pipeline ended before {kill_on!r} (rc {rc}): {lines[-5:]}\n{err[-3000:]}"
    return lines


def test_exactly_once_pipeline_across_sigkills(tmp_path):
    data = str(tmp_path / "data")
    store = LocalStore.open(data)
    try:
        store.create_topic("in", PARTITIONS)
        store.create_topic("out", PARTITIONS)
    finally:
        store.close()
    with pylog.Producer(log_dir=data) as plain:
        for i in range(N):
            plain.send("in", f"v{i:04d}".encode(), partition=i % PARTITIONS)
        assert plain.flush(TIMEOUT) == 0

    # Killed with transaction 4 open: its records in `out` and its offsets
    # pending in __consumer_offsets, no EndTxn.
    _run_until(data, "open 4")
    # Killed as commit_transaction begins (before, during or after EndTxn).
    _run_until(data, "committing 5")
    # Killed right after an abort (transaction 3 of this incarnation).
    _run_until(data, "aborted 3")
    lines = _run_until(data, None)
    assert "done" in lines

    want = sorted(f"V{i:04d}".encode() for i in range(N))
    got = read_to_end(data, "out", PARTITIONS, "read_committed")
    assert sorted(got) == want, (len(got), len(set(got)), len(want))
    # The aborted and killed transactions did write records: they are there,
    # uncommitted, so the read_committed result above is a real filter.
    assert len(read_to_end(data, "out", PARTITIONS, "read_uncommitted")) > N
    # And the group's offsets are at the end of the input.
    store = LocalStore.open(data)
    try:
        tps = [TopicPartition("in", p) for p in range(PARTITIONS)]
        committed = store.committed_offsets("eos", tps, require_stable=True)
        assert {tp: om.offset for tp, om in committed.items()} == {tp: N // PARTITIONS for tp in tps}
    finally:
        store.close()
