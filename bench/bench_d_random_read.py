"""D. random read: look up R (default 100,000) seeded random offsets, one at a time.

Goal: pylog >= 2x LMDB (reads/s).

Same stores as C (filled once, in the page cache), same offsets for everyone
(numpy default_rng(12345), drawn outside the timed part). LMDB packs each key
inside the timed part, as a caller holding an integer offset must. The plain-file
row is extra (not in the goals): os.pread at a position kept in an in-memory list,
i.e. a perfect dense index.

The *_fresh rows open the store in each round (its own closed copy,
conftest.closed_*), as a user's program does, then read: pylog
`log.read(off).value`, LMDB `txn.get(key)`. Goal there too: pylog >= 2x LMDB.
"""
import os

import pytest

import _workload as W

pytestmark = pytest.mark.benchmark(group="D_random_read")
SCEN = "D_random_read"


def _keep(store):
    return (lambda: store), (lambda _s: None)


def test_random_read_pylog(benchmark, cfg, values, random_offsets, filled_pylog, info):
    offs = random_offsets
    info("pylog", SCEN, len(offs), len(offs) * W.RECORD_BYTES, note="log.read(off).value")

    def work(log):
        read = log.read
        for off in offs:
            read(off).value

    W.run_rounds(benchmark, work, *_keep(filled_pylog), cfg.rounds)
    for off in offs[:1000]:
        assert bytes(filled_pylog.read(off).value) == values[off]


def test_random_read_lmdb(benchmark, cfg, values, random_offsets, filled_lmdb, info):
    offs = random_offsets
    info("lmdb", SCEN, len(offs), len(offs) * W.RECORD_BYTES, note="txn.get(struct.pack('>Q', off)) in one read txn")
    pack = W.KEY.pack

    def work(env):
        with env.begin() as txn:
            get = txn.get
            for off in offs:
                get(pack(off))

    W.run_rounds(benchmark, work, *_keep(filled_lmdb), cfg.rounds)
    with filled_lmdb.begin() as txn:
        for off in offs[:1000]:
            assert txn.get(pack(off)) == values[off]


def test_random_read_pylog_fresh(benchmark, cfg, values, random_offsets, closed_pylog, info):
    import pylog

    offs = random_offsets
    info("pylog", SCEN + "_fresh", len(offs), len(offs) * W.RECORD_BYTES,
         note="with Log.open(path) as log: log.read(off).value")

    def work(path):
        with pylog.Log.open(path, **W.PYLOG_OPTS) as log:
            read = log.read
            for off in offs:
                v = read(off).value
            return bytes(v)

    assert W.run_rounds(benchmark, work, *_keep(closed_pylog), cfg.rounds) == values[offs[-1]]


def test_random_read_lmdb_fresh(benchmark, cfg, values, random_offsets, closed_lmdb, info):
    offs = random_offsets
    info("lmdb", SCEN + "_fresh", len(offs), len(offs) * W.RECORD_BYTES,
         note="env = lmdb.open(path); txn.get(struct.pack('>Q', off)); env.close()")
    pack = W.KEY.pack
    n = len(values)

    def work(path):
        env = W.open_lmdb(path, n)
        try:
            with env.begin() as txn:
                get = txn.get
                for off in offs:
                    v = get(pack(off))
        finally:
            env.close()
        return v

    assert W.run_rounds(benchmark, work, *_keep(closed_lmdb), cfg.rounds) == values[offs[-1]]


def test_random_read_sqlite(benchmark, cfg, values, random_offsets, filled_sqlite, info):
    offs = random_offsets
    info("sqlite", SCEN, len(offs), len(offs) * W.RECORD_BYTES, note="SELECT value FROM t WHERE offset=? (statement cache)")
    sql = "SELECT value FROM t WHERE offset=?"

    def work(conn):
        ex = conn.execute
        for off in offs:
            ex(sql, (off,)).fetchone()[0]

    W.run_rounds(benchmark, work, *_keep(filled_sqlite), cfg.rounds)
    for off in offs[:1000]:
        assert filled_sqlite.execute(sql, (off,)).fetchone()[0] == values[off]


def test_random_read_file(benchmark, cfg, values, random_offsets, filled_file, info):
    offs = random_offsets
    path, positions = filled_file
    info("file", SCEN, len(offs), len(offs) * W.RECORD_BYTES, note="os.pread(fd, 100, positions[off]); in-memory position list")
    size = W.RECORD_BYTES  # fixed-size records here; a real reader would keep lengths too

    def prepare():
        return os.open(path, os.O_RDONLY)

    def work(fd):
        pread = os.pread
        for off in offs:
            pread(fd, size, positions[off])

    W.run_rounds(benchmark, work, prepare, os.close, cfg.rounds)
    fd = os.open(path, os.O_RDONLY)
    try:
        for off in offs[:1000]:
            assert os.pread(fd, size, positions[off]) == values[off]
    finally:
        os.close(fd)
