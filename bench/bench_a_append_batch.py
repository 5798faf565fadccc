"""A. append_batch: N records appended 1000 at a time into a fresh store per round.

Goal: pylog >= 2x LMDB (records/s).

Every round starts from an empty store made in the untimed setup; the timed part
is the N appends (for LMDB/SQLite: including the per-batch commit). Closing the
store is not timed (SQLite's close checkpoints the WAL, which is not append cost).
LMDB keys (8-byte big-endian offsets) are packed inside the timed part, as a log
built on LMDB must do; pylog assigns its offsets itself.
"""
import os

import pytest

import _workload as W

pytestmark = pytest.mark.benchmark(group="A_append_batch")
SCEN = "A_append_batch"


def test_append_batch_pylog(benchmark, cfg, values, scratch, pylog_mod, info):
    n = len(values)
    info("pylog", SCEN, n, n * W.RECORD_BYTES)
    B = W.BATCH

    def prepare():
        path = scratch.path("a-pylog")
        return path, pylog_mod.Log.open(path, **W.PYLOG_OPTS)

    def work(state):
        append_batch = state[1].append_batch
        for i in range(0, n, B):
            append_batch(values[i : i + B])

    def cleanup(state):
        path, log = state
        assert log.log_end_offset == n, (log.log_end_offset, n)
        log.close()
        W.rm_rf(path)

    W.run_rounds(benchmark, work, prepare, cleanup, cfg.rounds)


def test_append_batch_lmdb(benchmark, cfg, values, scratch, info):
    n = len(values)
    info("lmdb", SCEN, n, n * W.RECORD_BYTES, note="one write txn per 1000-record putmulti(append=True); sync=False, writemap")
    B = W.BATCH
    pack = W.KEY.pack

    def prepare():
        path = scratch.path("a-lmdb")
        return path, W.open_lmdb(path, n)

    def work(state):
        begin = state[1].begin
        for i in range(0, n, B):
            with begin(write=True) as txn:
                txn.cursor().putmulti([(pack(o), v) for o, v in enumerate(values[i : i + B], i)], append=True)

    def cleanup(state):
        path, env = state
        assert env.stat()["entries"] == n
        env.close()
        W.rm_rf(path)

    W.run_rounds(benchmark, work, prepare, cleanup, cfg.rounds)


def test_append_batch_sqlite(benchmark, cfg, values, scratch, info):
    n = len(values)
    info("sqlite", SCEN, n, n * W.RECORD_BYTES, note="executemany of 1000 rows per BEGIN/COMMIT; WAL, synchronous=NORMAL")
    B = W.BATCH

    def prepare():
        path = scratch.path("a-sqlite") + ".db"
        return path, W.open_sqlite(path)

    def work(state):
        ex = state[1].execute
        exm = state[1].executemany
        for i in range(0, n, B):
            ex("BEGIN")
            exm("INSERT INTO t(offset, value) VALUES (?, ?)", enumerate(values[i : i + B], i))
            ex("COMMIT")

    def cleanup(state):
        path, conn = state
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == n
        conn.close()
        for s in ("", "-wal", "-shm"):
            W.rm_rf(path + s)

    W.run_rounds(benchmark, work, prepare, cleanup, cfg.rounds)


def test_append_batch_file(benchmark, cfg, values, scratch, info):
    n = len(values)
    info("file", SCEN, n, n * W.RECORD_BYTES, note="one f.write(b''.join(1000 length-prefixed records)) per batch, buffered")
    B = W.BATCH
    lp = W.LEN.pack

    def prepare():
        path = scratch.path("a-file") + ".dat"
        return path, open(path, "wb")

    def work(state):
        write = state[1].write
        for i in range(0, n, B):
            parts = []
            a = parts.append
            for v in values[i : i + B]:
                a(lp(len(v)))
                a(v)
            write(b"".join(parts))

    def cleanup(state):
        path, f = state
        f.close()
        assert os.path.getsize(path) == n * (4 + W.RECORD_BYTES)
        W.rm_rf(path)

    W.run_rounds(benchmark, work, prepare, cleanup, cfg.rounds)
