"""B. append: N records appended one per call into a fresh store per round.

Goal: pylog >= plain file (records/s).

The timed part is the N per-record calls. The plain file is a default-buffered
Python file (io.BufferedWriter) doing f.write(struct.pack(">I", len(v)) + v) per
record. LMDB does one put(append=True) per record, inside one write txn per 1000
puts (a txn per put would measure LMDB's commit cost, not its append path; one txn
for all 1M would be an unbounded transaction); SQLite does one INSERT per record,
committing every 1000. Closing is not timed.
"""

import pytest

import _workload as W

pytestmark = pytest.mark.benchmark(group="B_append")
SCEN = "B_append"


def test_append_pylog(benchmark, cfg, values, scratch, pylog_mod, info):
    n = len(values)
    info("pylog", SCEN, n, n * W.RECORD_BYTES)

    def work(state):
        append = state[1].append
        for v in values:
            append(v)

    W.run_rounds(benchmark, work, *W.fresh_store("pylog", scratch, "b-pylog", n, pylog=pylog_mod), cfg.rounds)


def test_append_file(benchmark, cfg, values, scratch, info):
    n = len(values)
    info("file", SCEN, n, n * W.RECORD_BYTES, note="f.write(pack('>I', len(v)) + v) per record, default buffering")
    pack = W.LEN.pack

    def work(state):
        write = state[1].write
        for v in values:
            write(pack(len(v)) + v)

    W.run_rounds(benchmark, work, *W.fresh_store("file", scratch, "b-file", n), cfg.rounds)


def test_append_lmdb(benchmark, cfg, values, scratch, info):
    n = len(values)
    info("lmdb", SCEN, n, n * W.RECORD_BYTES, note="txn.put(key, v, append=True) per record, one write txn per 1000 puts; sync=False")
    B = W.BATCH
    pack = W.KEY.pack

    def work(state):
        begin = state[1].begin
        for i in range(0, n, B):
            # One write txn per 1000 puts (see the module docstring).
            with begin(write=True) as txn:
                put = txn.put
                for o in range(i, i + B):
                    put(pack(o), values[o], append=True)

    W.run_rounds(benchmark, work, *W.fresh_store("lmdb", scratch, "b-lmdb", n), cfg.rounds)


def test_append_sqlite(benchmark, cfg, values, scratch, info):
    n = len(values)
    info("sqlite", SCEN, n, n * W.RECORD_BYTES, note="one INSERT per record, COMMIT every 1000; WAL, synchronous=NORMAL")
    B = W.BATCH

    def work(state):
        ex = state[1].execute
        sql = "INSERT INTO t(offset, value) VALUES (?, ?)"
        for i in range(0, n, B):
            ex("BEGIN")
            for o in range(i, i + B):
                ex(sql, (o, values[o]))
            ex("COMMIT")

    W.run_rounds(benchmark, work, *W.fresh_store("sqlite", scratch, "b-sqlite", n), cfg.rounds)
