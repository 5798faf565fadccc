"""F. recovery: validate a ~1 GiB log (every batch's CRC) at >= 1 GB/s.

Goal: pylog Log.open(path, recovery="full") >= 1 GB/s over the log's bytes.

Once per session (untimed) a child process writes ~1 GiB with pylog (append_batch
of 1000 x 100-byte records, segment_bytes=256 MiB), fdatasyncs, and exits with
os._exit() without close(), so there is no clean-shutdown marker. Each round then
copies that pristine directory to a scratch one (untimed; recovery may repair or
write files) and times pylog.Log.open(copy, recovery="full").

Peers over the very same bytes, to show the ceilings on this machine:
  file   : read every file of the log with f.readinto() into a 1 MiB buffer
  crc32c : the same reads plus pylog._engine.crc32c over every chunk
           (needs pylog._engine; skipped without it)
All of it is page-cache warm (the files were just written/copied), so this is CPU
and memory bandwidth, not the disk.

Without pylog, the 1 GiB is a plain length-prefixed file instead, so that the file
row still runs (extra_info source="plain-file fallback").

Skip F with -k "not recovery". Needs >= 3 GiB free in /tmp (pristine + copy).
"""
import os
import shutil
import subprocess
import sys

import pytest

import _workload as W

pytestmark = pytest.mark.benchmark(group="F_recovery")
SCEN = "F_recovery"
SEGMENT_BYTES = 256 * W.MiB
NEED_FREE = 3 * W.GiB
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def recovery_data(cfg, bench_root):
    """{'source', 'path' (dir), 'files', 'bytes', 'records'}; built once per session."""
    free = shutil.disk_usage(bench_root).free
    if free < NEED_FREE:
        pytest.skip(f"recovery: only {free / W.GiB:.1f} GiB free under {bench_root}, need >= 3 GiB")
    target = cfg.recovery_bytes
    path = os.path.join(bench_root, "recovery-pristine")
    pylog, reason = W.import_pylog()
    if pylog is not None:
        env = dict(os.environ)
        pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(pylog.__file__)))
        env["PYTHONPATH"] = os.pathsep.join([pkg_parent, HERE] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "_workload.py"), "write-crashed-pylog", path, str(target), str(SEGMENT_BYTES)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if proc.returncode != 0:
            pytest.fail(f"writing the recovery log failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        records = int(proc.stdout.split()[2])
        source = "pylog log, crashed writer"
    else:
        os.makedirs(path)
        values = W.make_values(100 * W.BATCH)
        lp = W.LEN.pack
        blob = b"".join(lp(len(v)) + v for v in values)  # 100,000 records, 10.4 MB
        reps = max(1, -(-target // len(blob)))
        with open(os.path.join(path, "plain.dat"), "wb") as f:
            for _ in range(reps):
                f.write(blob)
        records = reps * len(values)
        source = "plain-file fallback (" + reason + ")"
    files = W.dir_files(path)
    data = dict(source=source, path=path, files=files, bytes=W.dir_bytes(path), records=records, pylog_reason=reason)
    yield data
    W.rm_rf(path)


def _rounds(cfg):
    return max(1, min(3, cfg.rounds))


def test_recovery_pylog_open_full(benchmark, cfg, scratch, pylog_mod, recovery_data, info):
    d = recovery_data
    if not d["source"].startswith("pylog"):
        pytest.skip("recovery log was not written by pylog")
    info("pylog", SCEN, d["records"], d["bytes"], files=len(d["files"]), note='Log.open(path, recovery="full")')

    def prepare():
        dst = scratch.path("f-pylog")
        shutil.copytree(d["path"], dst)
        return [dst, None]

    def work(state):
        state[1] = pylog_mod.Log.open(state[0], segment_bytes=SEGMENT_BYTES, recovery="full")

    def cleanup(state):
        path, log = state
        if log is not None:
            assert log.log_end_offset == d["records"], (log.log_end_offset, d["records"])
            log.close()
        W.rm_rf(path)

    W.run_rounds(benchmark, work, prepare, cleanup, _rounds(cfg), warmup_rounds=0)


def _read_all(files, buf, crc=None):
    """readinto every file in turn; optionally crc each chunk. Returns (bytes, crc)."""
    mv = memoryview(buf)
    total = 0
    c = 0
    for name in files:
        with open(name, "rb", buffering=0) as f:
            readinto = f.readinto
            while True:
                k = readinto(buf)
                if not k:
                    break
                total += k
                if crc is not None:
                    c = crc(mv[:k], c)
    return total, c


def test_recovery_file_read(benchmark, cfg, recovery_data, info):
    d = recovery_data
    info("file", SCEN, d["records"], d["bytes"], files=len(d["files"]), source=d["source"], note="f.readinto(1 MiB buffer) loop")
    buf = bytearray(W.MiB)

    def work(files):
        assert _read_all(files, buf)[0] == d["bytes"]

    W.run_rounds(benchmark, work, lambda: d["files"], lambda _s: None, _rounds(cfg), warmup_rounds=0)


def test_recovery_crc32c(benchmark, cfg, recovery_data, info):
    crc, reason = W.pylog_crc32c()
    if crc is None:
        pytest.skip(reason)
    d = recovery_data
    info("crc32c", SCEN, d["records"], d["bytes"], files=len(d["files"]), source=d["source"],
         note="readinto(1 MiB) + pylog._engine.crc32c per chunk")
    buf = bytearray(W.MiB)

    def work(files):
        assert _read_all(files, buf, crc)[0] == d["bytes"]

    W.run_rounds(benchmark, work, lambda: d["files"], lambda _s: None, _rounds(cfg), warmup_rounds=0)
