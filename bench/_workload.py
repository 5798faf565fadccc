"""Shared workload for the log-core benchmarks: the records, the peers' setup, helpers.

Imported by conftest.py and the bench_*.py modules, and run as a script by the
recovery benchmark (in a child process that writes the 1 GiB log and then dies
without closing it). Nothing here is timed by itself.

The name starts with "_" so that pytest (python_files = test_*.py, bench_*.py)
never collects it.
"""
from __future__ import annotations

import gc
import os
import random
import shutil
import sqlite3
import struct
import sys

RECORD_BYTES = 100
BATCH = 1000  # records per batch / per transaction everywhere

# Offsets as LMDB keys: 8-byte big-endian, so key order == offset order and
# put(append=True) / putmulti(append=True) is valid.
KEY = struct.Struct(">Q")
# Plain-file framing: 4-byte big-endian length, then the value.
LEN = struct.Struct(">I")

MiB = 1 << 20
GiB = 1 << 30

# pylog options used by every scenario unless it says otherwise: no periodic
# fsync (flush_messages=None) so that it is on the same footing as LMDB sync=False,
# SQLite synchronous=NORMAL and a buffered plain file.
PYLOG_OPTS = dict(segment_bytes=256 * MiB, flush_messages=None, write_buffer_bytes=65536)

_USERS = 5000
_TAGS = [b"a", b"b", b"c", b"d", b"eu", b"us", b"vip", b"new", b"web", b"ios"]
_ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def make_values(n: int, seed: int = 20240601) -> list[bytes]:
    """n JSON-like records of exactly RECORD_BYTES bytes, varied per record.

    e.g. b'{"id": 123456, "user": "u0042", "amount": 12.34, "tags": ["a","vip"],
    "ts": 1700000123, "n": "Qx3..."}' padded/trimmed to 100 bytes
    (the "n" field soaks up the difference, so every record is valid JSON).
    Deterministic for a given (n, seed).
    """
    rng = random.Random(seed)
    rand = rng.random
    randrange = rng.randrange
    # A 64 KiB pool of random filler; each record takes a window of it at a random spot.
    pool = bytes(rng.choice(_ALNUM) for _ in range(65536))
    out = [b""] * n
    ts0 = 1_700_000_000
    ntags = len(_TAGS)
    for i in range(n):
        head = b'{"id": %d, "user": "u%04d", "amount": %.2f, "tags": ["%s","%s"], "ts": %d, "n": "' % (
            i,
            randrange(_USERS),
            rand() * 100.0,
            _TAGS[randrange(ntags)],
            _TAGS[randrange(ntags)],
            ts0 + i // 50 + randrange(3),
        )
        pad = RECORD_BYTES - 2 - len(head)  # 2 = closing '"}'
        if pad < 0:  # cannot happen with the fields above, but stay exact regardless
            head = head[: RECORD_BYTES - 2]
            pad = 0
        p = randrange(65536 - RECORD_BYTES)
        out[i] = head + pool[p : p + pad] + b'"}'
    return out


# --------------------------------------------------------------------------- peers


def lmdb_map_size(records: int) -> int:
    # ~150 bytes per 100-byte record in LMDB leaf pages; leave plenty of room.
    return max(256 * MiB, records * 512)


def open_lmdb(path: str, records: int, sync: bool = False):
    """LMDB env as the benchmarks use it: writemap, big map, sync off unless asked."""
    import lmdb

    return lmdb.open(
        path,
        map_size=lmdb_map_size(records),
        sync=sync,
        writemap=True,
        max_dbs=0,
    )


def open_sqlite(path: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """SQLite in WAL mode; autocommit connection so that BEGIN/COMMIT are explicit."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (offset INTEGER PRIMARY KEY, value BLOB)")
    return conn


def fresh_store(kind: str, scratch, name: str, n: int, *, pylog=None, sync: bool = False,
                synchronous: str = "NORMAL"):
    """(prepare, cleanup) for a fresh, empty store per round (untimed): prepare
    makes it, cleanup checks it holds n records, closes and removes it.
    kind: "pylog", "lmdb", "sqlite" or "file" (length-prefixed records)."""
    if kind == "pylog":
        def prepare():
            path = scratch.path(name)
            return path, pylog.Log.open(path, **PYLOG_OPTS)

        def cleanup(state):
            path, log = state
            assert log.log_end_offset == n, (log.log_end_offset, n)
            log.close()
            rm_rf(path)
    elif kind == "lmdb":
        def prepare():
            path = scratch.path(name)
            return path, open_lmdb(path, n, sync=sync)

        def cleanup(state):
            path, env = state
            assert env.stat()["entries"] == n
            env.close()
            rm_rf(path)
    elif kind == "sqlite":
        def prepare():
            path = scratch.path(name) + ".db"
            return path, open_sqlite(path, synchronous)

        def cleanup(state):
            path, conn = state
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == n
            conn.close()
            for s in ("", "-wal", "-shm"):
                rm_rf(path + s)
    elif kind == "file":
        def prepare():
            path = scratch.path(name) + ".dat"
            return path, open(path, "wb")

        def cleanup(state):
            path, f = state
            f.close()
            assert os.path.getsize(path) == n * (4 + RECORD_BYTES)
            rm_rf(path)
    else:
        raise ValueError(kind)
    return prepare, cleanup


# Batched writers shared by A (append_batch) and E (the same plus a sync): each
# writes values[i:i+BATCH] as one batch, the way a log built on that store must.

def lmdb_put_batch(env, values, i: int) -> None:
    """One write txn with putmulti(append=True); keys packed here, as a log must."""
    pack = KEY.pack
    with env.begin(write=True) as txn:
        txn.cursor().putmulti([(pack(o), v) for o, v in enumerate(values[i : i + BATCH], i)], append=True)


def sqlite_insert_batch(conn, values, i: int) -> None:
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t(offset, value) VALUES (?, ?)", enumerate(values[i : i + BATCH], i))
    conn.execute("COMMIT")


def file_batch(values, i: int) -> bytes:
    """values[i:i+BATCH] as length-prefixed records, ready for one write."""
    lp = LEN.pack
    parts = []
    a = parts.append
    for v in values[i : i + BATCH]:
        a(lp(len(v)))
        a(v)
    return b"".join(parts)


def import_pylog():
    """(pylog module, None) or (None, reason) when pylog is not usable yet."""
    try:
        import pylog  # noqa: F401
    except Exception as e:  # ImportError, or a half-built extension
        return None, f"import pylog failed: {type(e).__name__}: {e}"
    if not hasattr(pylog, "Log"):
        return None, f"pylog imported from {getattr(pylog, '__path__', '?')} but has no Log (not built yet?)"
    return pylog, None


def pylog_crc32c():
    """A callable crc(buf, prev_crc) -> crc using pylog._engine.crc32c, or (None, reason).

    The binding's argument order is not pinned down, so it is worked out from the
    standard check value crc32c(b"123456789") == 0xE3069283.
    """
    try:
        from pylog import _engine
    except Exception as e:
        return None, f"pylog._engine not importable: {type(e).__name__}: {e}"
    f = getattr(_engine, "crc32c", None)
    if f is None:
        return None, "pylog._engine has no crc32c"
    check = b"123456789"
    for order in ("data_crc", "crc_data", "data_only"):
        try:
            if order == "data_crc":
                ok = f(check, 0) == 0xE3069283
                fn = (lambda buf, crc: f(buf, crc)) if ok else None
            elif order == "crc_data":
                ok = f(0, check) == 0xE3069283
                fn = (lambda buf, crc: f(crc, buf)) if ok else None
            else:
                ok = f(check) == 0xE3069283
                fn = (lambda buf, crc: f(buf)) if ok else None  # no chaining: per-chunk CRCs
        except TypeError:
            continue
        if ok:
            return fn, None
    return None, "pylog._engine.crc32c gives no known calling convention with the check value"


# --------------------------------------------------------------------------- helpers


def rm_rf(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    try:
        os.unlink(path)
    except OSError:
        pass


def dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def dir_files(path: str) -> list[str]:
    out = []
    for root, _dirs, files in os.walk(path):
        for name in sorted(files):
            out.append(os.path.join(root, name))
    return sorted(out)


def run_rounds(benchmark, work, prepare, cleanup, rounds: int, warmup_rounds: int = 1):
    """benchmark.pedantic with an untimed prepare() before each round.

    One untimed warm-up round by default: the first round in a process is often
    slower (first touches of fresh memory and page cache), which is not what the
    comparison is about.

    prepare() returns the state passed to work(state); cleanup(state) runs untimed
    before the next round's prepare and at the end (closing handles, deleting the
    round's files), so only work() is on the clock. Returns work()'s last result.

    Before each round, os.sync() writes back the dirty pages left by earlier rounds
    (and by the untimed prepare), so that kernel writeback of old data does not land
    inside the next timed round (one source of round-to-round spread).
    """
    live = []

    def setup():
        while live:
            cleanup(live.pop())
        gc.collect()
        state = prepare()
        live.append(state)
        os.sync()
        return (state,), {}

    try:
        result = benchmark.pedantic(work, setup=setup, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
        # A hint for the report: on 2 cores, a 1-min load well above 1 (this process)
        # means other work competed with the rounds.
        benchmark.extra_info["loadavg1"] = round(os.getloadavg()[0], 2)
        return result
    finally:
        while live:
            cleanup(live.pop())


# --------------------------------------------------------------------------- recovery log writer


def write_crashed_pylog(path: str, target_bytes: int, segment_bytes: int) -> None:
    """Child-process body: append_batch 1000 x 100-byte records until the log
    directory holds >= target_bytes, flush (fdatasync), then exit WITHOUT close(),
    so that no clean-shutdown marker is written."""
    pylog, reason = import_pylog()
    if pylog is None:
        print(reason, file=sys.stderr)
        os._exit(3)
    values = make_values(100 * BATCH)
    nv = len(values)
    log = pylog.Log.open(path, segment_bytes=segment_bytes, flush_messages=None)
    i = 0
    while True:
        for _ in range(100):  # ~11 MB between size checks
            s = (i * BATCH) % nv
            log.append_batch(values[s : s + BATCH])
            i += 1
        if dir_bytes(path) >= target_bytes:
            break
    log.flush()
    sys.stdout.write(f"{i} batches {i * BATCH} records {dir_bytes(path)} bytes\n")
    sys.stdout.flush()
    os._exit(0)  # no log.close(): the log is left as after a crash


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "write-crashed-pylog":
        write_crashed_pylog(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        print("usage: _workload.py write-crashed-pylog PATH TARGET_BYTES SEGMENT_BYTES", file=sys.stderr)
        sys.exit(2)
