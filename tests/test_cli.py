import subprocess
import sys

import pylog


def run(*args):
    return subprocess.run([sys.executable, "-m", "pylog", *args], capture_output=True, text=True, timeout=60)


def test_dump_log_prints_batches_and_records(tmp_path):
    with pylog.Log.open(tmp_path / "t-0") as log:
        log.append(b"v", key=b"k", headers=[("h", b"1")])
        log.append_batch([b"a", b"bb"])
    out = run("dump-log", "--records", str(tmp_path / "t-0" / f"{0:020d}.log"))
    assert out.returncode == 0, out.stderr
    assert "2 valid batches" in out.stdout
    assert "offset: 2 " in out.stdout and "headerKeys: ['h']" in out.stdout


def test_dump_log_reports_a_corrupt_tail(tmp_path):
    with pylog.Log.open(tmp_path / "t-0") as log:
        log.append_batch([b"x" * 50] * 3)
    path = tmp_path / "t-0" / f"{0:020d}.log"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    out = run("dump-log", str(path))
    assert out.returncode == 1
    assert "position: 0:" in out.stdout and "not readable" in out.stdout


def test_broker_sub_command_is_wired_in():
    # --help only: running it would start a broker on port 9092 with ./data.
    out = run("broker", "--help")
    assert out.returncode == 0, out.stderr
    assert "--data-dir" in out.stdout and "--port" in out.stdout
