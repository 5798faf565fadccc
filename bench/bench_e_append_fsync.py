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

    def work(state):
        log = state[1]
        append_batch = log.append_batch
        flush = log.flush
        for i in range(0, n, B):
            append_batch(values[i : i + B])
            flush()

    W.run_rounds(benchmark, work, *W.fresh_store("pylog", scratch, "e-pylog", n, pylog=pylog_mod), cfg.rounds)


def test_append_fsync_file(benchmark, cfg, values, scratch, info):
    n = _n(cfg)
    info("file", SCEN, n, n * W.RECORD_BYTES, syncs=n // W.BATCH, note="write 1000 records + f.flush() + os.fdatasync per batch")
    file_batch = W.file_batch
    fdatasync = os.fdatasync

    def work(state):
        f = state[1]
        write, fl, fd = f.write, f.flush, f.fileno()
        for i in range(0, n, W.BATCH):
            write(file_batch(values, i))
            fl()
            fdatasync(fd)

    W.run_rounds(benchmark, work, *W.fresh_store("file", scratch, "e-file", n), cfg.rounds)


def test_append_fsync_lmdb(benchmark, cfg, values, scratch, info):
    n = _n(cfg)
    info("lmdb", SCEN, n, n * W.RECORD_BYTES, syncs=n // W.BATCH, note="putmulti per txn of 1000, env sync=True (commit syncs)")
    put_batch = W.lmdb_put_batch

    def work(state):
        env = state[1]
        for i in range(0, n, W.BATCH):
            put_batch(env, values, i)

    W.run_rounds(benchmark, work, *W.fresh_store("lmdb", scratch, "e-lmdb", n, sync=True), cfg.rounds)


def test_append_fsync_sqlite(benchmark, cfg, values, scratch, info):
    n = _n(cfg)
    info("sqlite", SCEN, n, n * W.RECORD_BYTES, syncs=n // W.BATCH, note="executemany 1000 per COMMIT; WAL, synchronous=FULL")
    insert_batch = W.sqlite_insert_batch

    def work(state):
        conn = state[1]
        for i in range(0, n, W.BATCH):
            insert_batch(conn, values, i)

    W.run_rounds(benchmark, work, *W.fresh_store("sqlite", scratch, "e-sqlite", n, synchronous="FULL"), cfg.rounds)
