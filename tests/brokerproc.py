"""`pylog broker` as a child process, for tests that need a real process
(signals, RSS, file descriptors): started on a free port, ready once it
prints its "ready" line, its stderr kept in a file that failure messages
quote (never a pipe nobody reads, which fills and blocks the broker)."""
from __future__ import annotations

import os
import subprocess
import sys

from pylog.testing import free_port


class BrokerProc:
    """One broker process. extra: more `pylog broker` arguments; overrides:
    --override key=value pairs. log_path: where stderr goes (default: next to
    the data dir). Raises AssertionError with that log when it does not start."""

    def __init__(self, data_dir, *extra, port: int | None = None, overrides=(), log_level: str | None = None,
                 log_path=None):
        self.data_dir = str(data_dir)
        self.port = port if port is not None else free_port()
        self.log_path = str(log_path) if log_path is not None else \
            os.path.join(os.path.dirname(os.path.abspath(self.data_dir)), f"broker-{self.port}.log")
        args = [sys.executable, "-m", "pylog", "broker", "--data-dir", self.data_dir, "--port", str(self.port)]
        if log_level is not None:
            args += ["--log-level", log_level]
        for o in overrides:
            args += ["--override", o]
        args += list(extra)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, text=True)
        line = self.proc.stdout.readline()
        if "ready" not in line:
            # Reaped and closed here: left to the garbage collector, the pipe and
            # the file surface as a ResourceWarning in some later test.
            self.proc.kill()
            self.proc.wait()
            self._close()
            raise AssertionError(f"broker did not start: {line!r}\n{self.stderr()}")
        self.bootstrap = f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def status(self, field: str) -> int:
        """A /proc/<pid>/status size field (VmRSS, VmHWM) in bytes."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def rss(self) -> int:
        return self.status("VmRSS")

    def signal(self, sig, timeout: float = 30) -> tuple[int, str]:
        """Send sig, wait for the exit; (exit code, what it wrote to stderr)."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._close()
        return code, self.stderr()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (SIGKILL after timeout); the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close()
        return self.proc.returncode

    def _close(self):
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
        if not self._log.closed:
            self._log.close()
