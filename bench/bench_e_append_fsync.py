"""E. durable append: 1000-record batches, each made durable (fdatasync) before the next.

Goal: pylog >= plain file (records/s).

fdatasync costs milliseconds on a real disk, so E uses fewer records than A-D:
--bench-sync-batches (default 100) batches of 1000 = 100,000 records per round.
Every round starts from a fresh, empty store (untimed setup).

  pylog : log.append_batch(batch); log.flush()              (flush = fdatasync)
  file  : f.write(1000 length-prefixed records); f.flush(); os.fdatasync(f.fileno())
  lmdb  : one write txn per batch with putmulti(append=True), env opened sync=True,
          so every commit syncs (LMDB syncs data pages, then the meta page)
  sqlite: executemany per batch in BEGIN/COMMIT; WAL with synchronous=FULL, so every
          commit fsyncs the WAL (extra row, not in the goals)
"""
import os

import pytest

import _workload as W

pytestmark = pytest.mark.benchmark(group="E_append_fsync")
SCEN = "E_append_fsync"


def _n(cfg):
    return min(cfg.sync_batches, cfg.records // W.BATCH) * W.BATCH


def test_append_fsync_pylog(benchmark, cfg, values, scratch, pylog_mod, info):
    n = _n(cfg)
    info("pylog", SCEN, n, n * W.RECORD_BYTES, syncs=n // W.BATCH, note="append_batch(1000) + log.flush() per batch")
    B = W.BATCH

    def prepare():
        path = scratch.path("e-pylog")
        return path, pylog_mod.Log.open(path, **W.PYLOG_OPTS)

    def work(state):
        log = state[1]
        append_batch = log.append_batch
        flush = log.flush
        for i in range(0, n, B):
            append_batch(values[i : i + B])
            flush()

    def cleanup(state):
        path, log = state
        assert log.log_end_offset == n, (log.log_end_offset, n)
        log.close()
        W.rm_rf(path)

    W.run_rounds(benchmark, work, prepare, cleanup, cfg.rounds)


def test_append_fsync_file(benchmark, cfg, values, scratch, info):
    n = _n(cfg)
    info("file", SCEN, n, n * W.RECORD_BYTES, syncs=n // W.BATCH, note="write 1000 records + f.flush() + os.fdatasync per batch")
    B = W.BATCH
    lp = W.LEN.pack

    def prepare():
        path = scratch.path("e-file") + ".dat"
        return path, open(path, "wb")

    def work(state):
        f = state[1]
        write, fl, fd = f.write, f.flush, f.fileno()
        fdatasync = os.fdatasync
        for i in range(0, n, B):
            parts = []
            a = parts.append
            for v in values[i : i + B]:
                a(lp(len(v)))
                a(v)
            write(b"".join(parts))
            fl()
            fdatasync(fd)

    def cleanup(state):
        path, f = state
        f.close()
        assert os.path.getsize(path) == n * (4 + W.RECORD_BYTES)
        W.rm_rf(path)

    W.run_rounds(benchmark, work, prepare, cleanup, cfg.rounds)


def test_append_fsync_lmdb(benchmark, cfg, values, scratch, info):
    n = _n(cfg)
    info("lmdb", SCEN, n, n * W.RECORD_BYTES, syncs=n // W.BATCH, note="putmulti per txn of 1000, env sync=True (commit syncs)")
    B = W.BATCH
    pack = W.KEY.pack

    def prepare():
        path = scratch.path("e-lmdb")
        return path, W.open_lmdb(path, n, sync=True)

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


def test_append_fsync_sqlite(benchmark, cfg, values, scratch, info):
    n = _n(cfg)
    info("sqlite", SCEN, n, n * W.RECORD_BYTES, syncs=n // W.BATCH, note="executemany 1000 per COMMIT; WAL, synchronous=FULL")
    B = W.BATCH

    def prepare():
        path = scratch.path("e-sqlite") + ".db"
        return path, W.open_sqlite(path, synchronous="FULL")

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
