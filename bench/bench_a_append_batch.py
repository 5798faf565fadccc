"""A. append_batch: N records appended 1000 at a time into a fresh store per round.

Goal: pylog >= 2x LMDB (records/s).

Every round starts from an empty store made in the untimed setup; the timed part
is the N appends (for LMDB/SQLite: including the per-batch commit). Closing the
store is not timed (SQLite's close checkpoints the WAL, which is not append cost).
LMDB keys (8-byte big-endian offsets) are packed inside the timed part, as a log
built on LMDB must do; pylog assigns its offsets itself.
"""
import pytest

import _workload as W

pytestmark = pytest.mark.benchmark(group="A_append_batch")
SCEN = "A_append_batch"


def test_append_batch_pylog(benchmark, cfg, values, scratch, pylog_mod, info):
    n = len(values)
    info("pylog", SCEN, n, n * W.RECORD_BYTES)
    B = W.BATCH

    def work(state):
        append_batch = state[1].append_batch
        for i in range(0, n, B):
            append_batch(values[i : i + B])

    W.run_rounds(benchmark, work, *W.fresh_store("pylog", scratch, "a-pylog", n, pylog=pylog_mod), cfg.rounds)


def test_append_batch_lmdb(benchmark, cfg, values, scratch, info):
    n = len(values)
    info("lmdb", SCEN, n, n * W.RECORD_BYTES, note="one write txn per 1000-record putmulti(append=True); sync=False, writemap")
    put_batch = W.lmdb_put_batch

    def work(state):
        env = state[1]
        for i in range(0, n, W.BATCH):
            put_batch(env, values, i)

    W.run_rounds(benchmark, work, *W.fresh_store("lmdb", scratch, "a-lmdb", n), cfg.rounds)


def test_append_batch_sqlite(benchmark, cfg, values, scratch, info):
    n = len(values)
    info("sqlite", SCEN, n, n * W.RECORD_BYTES, note="executemany of 1000 rows per BEGIN/COMMIT; WAL, synchronous=NORMAL")
    insert_batch = W.sqlite_insert_batch

    def work(state):
        conn = state[1]
        for i in range(0, n, W.BATCH):
            insert_batch(conn, values, i)

    W.run_rounds(benchmark, work, *W.fresh_store("sqlite", scratch, "a-sqlite", n), cfg.rounds)


def test_append_batch_file(benchmark, cfg, values, scratch, info):
    n = len(values)
    info("file", SCEN, n, n * W.RECORD_BYTES, note="one f.write(b''.join(1000 length-prefixed records)) per batch, buffered")
    file_batch = W.file_batch

    def work(state):
        write = state[1].write
        for i in range(0, n, W.BATCH):
            write(file_batch(values, i))

    W.run_rounds(benchmark, work, *W.fresh_store("file", scratch, "a-file", n), cfg.rounds)
