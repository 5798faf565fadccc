"""The two ways the console is served: by a broker with
pylog.console.listener (the broker's own process, a client of its own
listener), and by `pylog console --bootstrap-server` as a process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pylog.broker import Broker, BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.testing import running_broker
from .conftest import Http


@pytest.mark.kafka_broker(config={"pylog.console.listener": "127.0.0.1:0"})
def test_broker_serves_the_console_of_its_own_cluster(kafka_broker):
    console = kafka_broker.broker.console
    http = Http(console.url)
    status, body, _ = http.get("/")
    assert status == 200 and f"<td>{kafka_broker.port}</td>" in body
    status, body, _ = http.post("/topics", {"name": "from-console", "partitions": "2"})
    assert status == 200 and "Created topic from-console." in body
    from pylog.client import Client
    with Client(kafka_broker.bootstrap) as c:
        assert c.partitions_for("from-console") == [0, 1]
    # Stopping the broker stops its console.
    kafka_broker.broker.stop_in_thread()
    with pytest.raises(OSError):
        import socket
        socket.create_connection((console.host, console.port), timeout=5).close()


@pytest.mark.parametrize("value", ["8080", "localhost", "host:port", ":"])
def test_a_bad_console_listener_refuses_the_start(tmp_path, value):
    with pytest.raises(InvalidConfigError, match="pylog.console.listener"):
        Broker(BrokerConfig({"log.dirs": str(tmp_path), "pylog.console.listener": value}))


def test_pylog_console_command_serves_until_sigterm(kafka_broker):
    proc = subprocess.Popen([sys.executable, "-m", "pylog", "console", "--bootstrap-server", kafka_broker.bootstrap,
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"pylog console for {kafka_broker.bootstrap} at http://127.0.0.1:"), \
            line + proc.stderr.read()
        http = Http(line.split(" at ", 1)[1].strip())
        status, body, _ = http.get("/topics")
        assert status == 200 and "<h1>Topics</h1>" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_pylog_console_refuses_a_port_in_use(kafka_broker):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "pylog", "console", "--bootstrap-server", kafka_broker.bootstrap,
                            "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr


def test_a_console_port_in_use_refuses_the_broker_start_cleanly(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        broker = Broker(BrokerConfig({"log.dirs": str(tmp_path), "listeners": "PLAINTEXT://127.0.0.1:0",
                                      "offsets.topic.replication.factor": "1",
                                      "pylog.console.listener": f"127.0.0.1:{port}"}))
        with pytest.raises(OSError):
            broker.start_in_thread()
    # Stopped, not half-started: its logs are closed and its data dir free for
    # the next broker, whose console now gets the port.
    with running_broker(tmp_path, config={"pylog.console.listener": f"127.0.0.1:{port}"}) as b:
        assert Http(b.broker.console.url).get("/")[0] == 200
