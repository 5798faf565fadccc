"""A real standalone ZooKeeper server on loopback, for tests and `pylog cluster up`.

Uses the Debian ``zookeeper`` package (jars under /usr/share/java) and the system
``java``; nothing is installed or downloaded here. Each server gets its own
temporary directory (config, data, log) and a free port on 127.0.0.1.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["ZooKeeperServer", "ZooKeeperUnavailable", "four_letter_word", "zookeeper_installed"]

ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
# The jar alone is not enough: ZooKeeper needs its jute, netty and slf4j jars,
# which the Debian package puts next to it.
CLASSPATH = ZOOKEEPER_JAR + ":/usr/share/java/*"
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


class ZooKeeperUnavailable(RuntimeError):
    """ZooKeeper cannot be started here: the package or java is missing, or the
    server did not come up (the message carries the tail of its log).

    Any thread.
    """


def zookeeper_installed() -> bool:
    """True when both the ZooKeeper jar and a java binary are present."""
    return os.path.exists(ZOOKEEPER_JAR) and shutil.which("java") is not None


def four_letter_word(host: str, port: int, word: str = "srvr", timeout: float = 1.0) -> str:
    """Send a four-letter admin command (srvr, ruok, stat, ...) and return the answer.
    OSError when nothing answers."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode("ascii"))
        chunks = []
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ZooKeeperServer:
    """One standalone ZooKeeper process on 127.0.0.1.

    Invariants: between start() returning and stop(), the server answers ``srvr``
    with ``Mode: standalone`` on ``port`` (unless someone killed it); ``connect``
    is "127.0.0.1:<port>". stop() is idempotent and removes the temporary
    directory unless ``keep_dir`` was given. Not thread-safe: one owner starts and
    stops it. Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(self, tick_time_ms: int = 2000, port: int = 0, keep_dir: bool = False,
                 start_timeout: float = 30.0, directory: str | None = None):
        self.tick_time_ms = tick_time_ms
        self.port = port
        # A given directory (`pylog cluster`'s) outlives the server: its data is
        # the cluster's topics, wanted again by the next start.
        self.keep_dir = keep_dir or directory is not None
        self.start_timeout = start_timeout
        self.dir: str | None = directory
        self.process: subprocess.Popen | None = None

    @property
    def connect(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> "ZooKeeperServer":
        if self.process is not None:
            return self
        if not os.path.exists(ZOOKEEPER_JAR):
            raise ZooKeeperUnavailable(
                f"{ZOOKEEPER_JAR} not found: install Debian's zookeeper package (apt-get install -y zookeeper)")
        java = shutil.which("java")
        if java is None:
            raise ZooKeeperUnavailable("java not found on PATH (ZooKeeper needs a JRE)")
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="pylog-zk-")
        os.makedirs(self.dir, exist_ok=True)
        # A port picked free and then bound by the JVM a moment later may be taken
        # in between; retry a few times with a fresh port before giving up.
        attempts = 1 if self.port else 3
        last_error = None
        for _ in range(attempts):
            port = self.port or _free_port()
            try:
                self._launch(java, port)
                return self
            except ZooKeeperUnavailable as e:
                last_error = e
                self._kill()
        self._remove_dir()
        raise last_error

    def _launch(self, java: str, port: int) -> None:
        data_dir = os.path.join(self.dir, "data")
        os.makedirs(data_dir, exist_ok=True)
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(f"tickTime={self.tick_time_ms}\n"
                    f"dataDir={data_dir}\n"
                    f"clientPort={port}\n"
                    "clientPortAddress=127.0.0.1\n"
                    # Otherwise it also starts an admin HTTP server on port 8080.
                    "admin.enableServer=false\n"
                    "4lw.commands.whitelist=srvr,ruok,stat,cons,mntr\n")
        log_path = os.path.join(self.dir, "zookeeper.log")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [java, "-Xmx256m", "-Dzookeeper.log.dir=" + self.dir, "-cp", CLASSPATH, MAIN_CLASS, cfg],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.port = port
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ZooKeeperUnavailable(
                    f"ZooKeeper exited with status {self.process.returncode}:\n{self._log_tail()}")
            try:
                if "Mode: standalone" in four_letter_word("127.0.0.1", port, "srvr"):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise ZooKeeperUnavailable(
            f"ZooKeeper did not answer srvr within {self.start_timeout} s:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 30) -> str:
        try:
            with open(os.path.join(self.dir, "zookeeper.log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def _kill(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _remove_dir(self) -> None:
        if self.dir and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def stop(self) -> None:
        self._kill()
        self._remove_dir()

    def __enter__(self) -> "ZooKeeperServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ZooKeeperServer(connect={self.connect!r}, pid={self.pid})"
