import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "pylog", *args], capture_output=True, text=True, timeout=60)


def test_broker_sub_command_is_wired_in():
    # --help only: running it would start a broker on port 9092 with ./data.
    out = run("broker", "--help")
    assert out.returncode == 0, out.stderr
    assert "--data-dir" in out.stdout and "--port" in out.stdout
