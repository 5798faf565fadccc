"""C. full scan: iterate over all N values of a store written (untimed) beforehand.

Goal: pylog >= 1.5x LMDB (records/s).

The stores are filled once per session (conftest.filled_*), closed and reopened,
so the data is in the page cache for everyone: this measures the per-record read
path, not the disk. Each round is one complete `for v in ...: pass`.

The *_fresh rows are the library as a user meets it: each round opens the store
(its own closed copy, conftest.closed_*), iterates over full records (pylog's
Record objects; LMDB's (key, value) pairs) and closes it, all on the clock.
Goal there too: pylog >= 1.5x LMDB.
"""
import pytest

import _workload as W

pytestmark = pytest.mark.benchmark(group="C_scan")
SCEN = "C_scan"


def _keep(store):
    return (lambda: store), (lambda _s: None)


def test_scan_pylog(benchmark, cfg, values, filled_pylog, info):
    n = len(values)
    info("pylog", SCEN, n, n * W.RECORD_BYTES, note="for v in log.scan_values(): pass")

    def work(log):
        for v in log.scan_values():
            pass

    W.run_rounds(benchmark, work, *_keep(filled_pylog), cfg.rounds)
    it = filled_pylog.scan_values()
    assert bytes(next(it)) == values[0]
    assert sum(1 for _ in it) == n - 1


def test_scan_lmdb(benchmark, cfg, values, filled_lmdb, info):
    n = len(values)
    info("lmdb", SCEN, n, n * W.RECORD_BYTES, note="txn.cursor().iternext(keys=False, values=True) in one read txn")

    def work(env):
        with env.begin() as txn:
            for v in txn.cursor().iternext(keys=False, values=True):
                pass

    W.run_rounds(benchmark, work, *_keep(filled_lmdb), cfg.rounds)
    with filled_lmdb.begin() as txn:
        vs = list(txn.cursor().iternext(keys=False, values=True))
    assert len(vs) == n and vs[0] == values[0] and vs[-1] == values[-1]


def test_scan_pylog_fresh(benchmark, cfg, values, closed_pylog, info):
    import pylog

    n = len(values)
    info("pylog", SCEN + "_fresh", n, n * W.RECORD_BYTES,
         note="with Log.open(path) as log: for rec in log.scan(): pass")

    def work(path):
        with pylog.Log.open(path, **W.PYLOG_OPTS) as log:
            for rec in log.scan():
                pass
        return rec

    last = W.run_rounds(benchmark, work, *_keep(closed_pylog), cfg.rounds)
    assert last.offset == n - 1 and bytes(last.value) == values[-1]


def test_scan_lmdb_fresh(benchmark, cfg, values, closed_lmdb, info):
    n = len(values)
    info("lmdb", SCEN + "_fresh", n, n * W.RECORD_BYTES,
         note="env = lmdb.open(path); for k, v in txn.cursor(): pass; env.close()")

    def work(path):
        env = W.open_lmdb(path, n)
        try:
            with env.begin() as txn:
                for k, v in txn.cursor():
                    pass
        finally:
            env.close()
        return v

    assert W.run_rounds(benchmark, work, *_keep(closed_lmdb), cfg.rounds) == values[-1]


def test_scan_sqlite(benchmark, cfg, values, filled_sqlite, info):
    n = len(values)
    info("sqlite", SCEN, n, n * W.RECORD_BYTES, note='for (v,) in conn.execute("SELECT value FROM t ORDER BY offset")')

    def work(conn):
        for (v,) in conn.execute("SELECT value FROM t ORDER BY offset"):
            pass

    W.run_rounds(benchmark, work, *_keep(filled_sqlite), cfg.rounds)
    assert filled_sqlite.execute("SELECT count(*) FROM t").fetchone()[0] == n


def iter_file_values(path, chunk=1 << 20):
    """Values of a length-prefixed file, read in 1 MiB chunks and sliced out (bytes)."""
    unpack_from = W.LEN.unpack_from
    with open(path, "rb", buffering=0) as f:
        read = f.read
        rest = b""
        while True:
            data = read(chunk)
            if not data:
                break
            buf = rest + data if rest else data
            end = len(buf)
            pos = 0
            while pos + 4 <= end:
                (k,) = unpack_from(buf, pos)
                stop = pos + 4 + k
                if stop > end:
                    break
                yield buf[pos + 4 : stop]
                pos = stop
            rest = buf[pos:]
        if rest:
            raise ValueError(f"{len(rest)} trailing bytes in {path}")


def test_scan_file(benchmark, cfg, values, filled_file, info):
    n = len(values)
    path, _positions = filled_file
    info("file", SCEN, n, n * W.RECORD_BYTES, note="1 MiB reads, records sliced out with struct.unpack_from")

    def work(p):
        for v in iter_file_values(p):
            pass

    W.run_rounds(benchmark, work, *_keep(path), cfg.rounds)
    vs = list(iter_file_values(path))
    assert len(vs) == n and vs[0] == values[0] and vs[-1] == values[-1]
