"""Shared fixtures and options for the log-core benchmarks (see bench/README.md).

Options (pytest bench ... --bench-records 20000 for a quick check):
  --bench-records N        records per round in A-D (default 1,000,000)
  --bench-reads N          random reads per round in D (default 100,000)
  --bench-sync-batches N   1000-record batches per round in E (default 100)
  --bench-rounds N         rounds per benchmark in A-E (default 5; F uses min(3, N))
  --bench-recovery-mib N   size of the log validated in F (default 1024 = 1 GiB)
  --bench-broker-messages N  messages per round in G, the broker benchmark (default 1,000,000)
  --bench-broker-rounds N  rounds per benchmark in G (default 5)
  --bench-commit-requests N  OffsetCommit requests per round in I (default 5000)
  --bench-l-targets/-rates/-sizes/-seconds/-warmup/-linger-ms  bench L (see bench_l_latency.py)
"""
from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _workload as W  # noqa: E402


def pytest_addoption(parser):
    g = parser.getgroup("pylog bench")
    g.addoption("--bench-records", type=int, default=1_000_000, help="records per round in A-D (default 1,000,000)")
    g.addoption("--bench-reads", type=int, default=100_000, help="random reads per round in D (default 100,000)")
    g.addoption("--bench-sync-batches", type=int, default=100, help="1000-record batches per round in E (default 100)")
    g.addoption("--bench-rounds", type=int, default=5, help="rounds per benchmark in A-E (default 5; F uses min(3, N))")
    g.addoption("--bench-broker-messages", type=int, default=1_000_000,
                help="messages produced per round in G (default 1,000,000)")
    g.addoption("--bench-broker-rounds", type=int, default=5, help="rounds per benchmark in G (default 5)")
    g.addoption("--bench-commit-requests", type=int, default=5000,
                help="OffsetCommit requests (10 partitions each) per round in I (default 5000)")
    g.addoption("--bench-recovery-mib", type=int, default=1024, help="MiB of log validated in F (default 1024)")
    g.addoption("--bench-l-targets", default="pylog,pylog-rf3,tansu,noida,redis",
                help="L: comma-separated targets (pylog, pylog-rf3, tansu, noida, redis; default all)")
    g.addoption("--bench-l-rates", default="10000,50000,100000", help="L: messages/s, comma-separated")
    g.addoption("--bench-l-sizes", default="100,1024", help="L: message sizes in bytes (>= 16), comma-separated")
    g.addoption("--bench-l-seconds", type=float, default=10.0, help="L: measured seconds per point (default 10)")
    g.addoption("--bench-l-warmup", type=float, default=2.0, help="L: warm-up seconds per point, not counted")
    g.addoption("--bench-l-linger-ms", type=int, default=1, help="L: the Kafka producer's linger.ms (default 1)")


def pytest_configure(config):
    # `make bench` writes --benchmark-json=.benchmarks/last.json; pytest-benchmark
    # does not create the directory (it is git-ignored, so absent in a fresh clone).
    out = config.getoption("--benchmark-json", default=None)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(str(out))), exist_ok=True)


class Cfg:
    def __init__(self, config):
        self.records = config.getoption("--bench-records")
        self.reads = config.getoption("--bench-reads")
        self.sync_batches = config.getoption("--bench-sync-batches")
        self.rounds = config.getoption("--bench-rounds")
        self.recovery_bytes = config.getoption("--bench-recovery-mib") * W.MiB
        if self.records < W.BATCH or self.records % W.BATCH:
            raise pytest.UsageError("--bench-records must be a positive multiple of 1000")


@pytest.fixture(scope="session")
def cfg(pytestconfig):
    return Cfg(pytestconfig)


@pytest.fixture(scope="session")
def values(cfg):
    """The records, built once per session outside any timed region (~130 MB at 1M)."""
    v = W.make_values(cfg.records)
    gc.collect()
    gc.freeze()  # keep the big list out of later collections
    return v


@pytest.fixture(scope="session")
def random_offsets(cfg):
    """The same seeded random offsets for every implementation in D."""
    import numpy as np

    rng = np.random.default_rng(12345)
    return rng.integers(0, cfg.records, size=cfg.reads).tolist()


@pytest.fixture(scope="session")
def bench_root():
    """One temp dir under /tmp for the whole session, removed at the end."""
    d = tempfile.mkdtemp(prefix="pylog-bench-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Scratch:
    """Fresh, numbered paths under the session dir; each round gets its own."""

    def __init__(self, root):
        self.root = root
        self.n = 0

    def path(self, stem):
        self.n += 1
        return os.path.join(self.root, f"{stem}-{self.n}")


@pytest.fixture(scope="session")
def scratch(bench_root):
    return Scratch(bench_root)


@pytest.fixture(scope="session")
def pylog_mod():
    pylog, reason = W.import_pylog()
    if pylog is None:
        pytest.skip(reason)
    return pylog


@pytest.fixture
def info(benchmark, request):
    """Fill benchmark.extra_info with what report.py needs; returns a setter."""

    def set_info(impl, scenario, records, nbytes=None, **more):
        benchmark.extra_info["impl"] = impl
        benchmark.extra_info["scenario"] = scenario
        benchmark.extra_info["records"] = records
        if nbytes is not None:
            benchmark.extra_info["bytes"] = nbytes
        benchmark.extra_info.update(more)

    return set_info


# ------------------------------------------------------------------ filled stores for C and D
# Written once per session (untimed), closed, and reopened for reading, so the
# scans and random reads of C and D see the same data in the page cache.


@pytest.fixture(scope="session")
def filled_file(values, scratch):
    path = scratch.path("file-filled") + ".dat"
    positions = [0] * len(values)  # byte position of each value (the "index" a reader would keep)
    pos = 0
    with open(path, "wb") as f:
        for i in range(0, len(values), W.BATCH):
            parts = []
            for j, v in enumerate(values[i : i + W.BATCH], i):
                parts.append(W.LEN.pack(len(v)))
                parts.append(v)
                positions[j] = pos + 4
                pos += 4 + len(v)
            f.write(b"".join(parts))
    yield path, positions
    W.rm_rf(path)


def _write_lmdb(path, values):
    env = W.open_lmdb(path, len(values))
    pack = W.KEY.pack
    for i in range(0, len(values), W.BATCH):
        with env.begin(write=True) as txn:
            txn.cursor().putmulti([(pack(o), v) for o, v in enumerate(values[i : i + W.BATCH], i)], append=True)
    env.close()


@pytest.fixture(scope="session")
def filled_lmdb(values, scratch):
    path = scratch.path("lmdb-filled")
    _write_lmdb(path, values)
    env = W.open_lmdb(path, len(values))
    yield env
    env.close()
    W.rm_rf(path)


@pytest.fixture(scope="session")
def filled_sqlite(values, scratch):
    path = scratch.path("sqlite-filled") + ".db"
    conn = W.open_sqlite(path)
    for i in range(0, len(values), W.BATCH):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t(offset, value) VALUES (?, ?)", enumerate(values[i : i + W.BATCH], i))
        conn.execute("COMMIT")
    conn.close()  # checkpoints the WAL into the db file
    conn = W.open_sqlite(path)
    yield conn
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        W.rm_rf(path + suffix)


@pytest.fixture(scope="session")
def filled_pylog(values, scratch):
    pylog, reason = W.import_pylog()
    if pylog is None:
        pytest.skip(reason)
    path = scratch.path("pylog-filled")
    log = pylog.Log.open(path, **W.PYLOG_OPTS)
    for i in range(0, len(values), W.BATCH):
        log.append_batch(values[i : i + W.BATCH])
    log.close()
    log = pylog.Log.open(path, **W.PYLOG_OPTS)
    assert log.log_end_offset == len(values), (log.log_end_offset, len(values))
    yield log
    gc.collect()
    try:
        log.close()
    except BufferError as e:
        # A view (or a cached decoded batch) still pins a segment: not a benchmark
        # result, but worth seeing. The log is dropped unclosed, like a crash.
        sys.stderr.write(f"\nbench: filled pylog log could not be closed: {e}\n")
    W.rm_rf(path)


@pytest.fixture(scope="session")
def closed_pylog(values, scratch):
    """A second pylog store of the same records, closed: the rows that open the
    store afresh in each round (as a user's program does) open this one."""
    pylog, reason = W.import_pylog()
    if pylog is None:
        pytest.skip(reason)
    path = scratch.path("pylog-closed")
    with pylog.Log.open(path, **W.PYLOG_OPTS) as log:
        for i in range(0, len(values), W.BATCH):
            log.append_batch(values[i : i + W.BATCH])
    yield path
    W.rm_rf(path)


@pytest.fixture(scope="session")
def closed_lmdb(values, scratch):
    """The LMDB counterpart of closed_pylog."""
    path = scratch.path("lmdb-closed")
    _write_lmdb(path, values)
    yield path
    W.rm_rf(path)


def pytest_report_header(config):
    lines = [
        f"pylog bench: records={config.getoption('--bench-records')} reads={config.getoption('--bench-reads')} "
        f"sync_batches={config.getoption('--bench-sync-batches')} rounds={config.getoption('--bench-rounds')} "
        f"recovery_mib={config.getoption('--bench-recovery-mib')}"
    ]
    pylog, reason = W.import_pylog()
    lines.append("pylog: " + (f"OK ({getattr(pylog, '__file__', '?')})" if pylog else f"NOT AVAILABLE, pylog rows skip: {reason}"))
    try:
        import lmdb

        lines.append(f"lmdb {lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))}), sqlite {sqlite3.sqlite_version}")
    except Exception as e:  # pragma: no cover
        lines.append(f"lmdb: {e}")
    return lines
