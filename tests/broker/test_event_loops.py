"""The broker on both event loops it can run on: the stdlib loop (fetch answers
through os.sendfile) and uvloop (memoryviews handed to its transport)."""
import socket
import struct
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pylog.testing import running_broker



@pytest.fixture(params=["asyncio", "uvloop"])
def loop_broker(request, tmp_path):
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    with running_broker(tmp_path / "d", config={"pylog.event.loop": request.param,
                                                "pylog.request.read.timeout.ms": "500"}) as b:
        yield b


def test_large_fetches_and_long_polls(loop_broker, monkeypatch):
    import pylog.broker.server as server
    sent = []
    real = server.os.sendfile

    def counting_sendfile(out_fd, in_fd, offset, count):
        n = real(out_fd, in_fd, offset, count)
        sent.append(n)
        return n
    monkeypatch.setattr(server.os, "sendfile", counting_sendfile)
    b = str(loop_broker)
    p = Producer({"bootstrap.servers": b, "linger.ms": 5})
    big = [bytes([i % 251]) * 200_000 for i in range(20)]  # segment bytes far above the sendfile threshold
    for i, v in enumerate(big):
        p.produce("el", v, key=b"%d" % i)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": b, "group.id": "el", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 5000})
    c.assign([TopicPartition("el", 0, 0)])
    got = []
    for _ in range(100):
        got += [m.value() for m in c.consume(50, 0.5) if m.error() is None]
        if len(got) == len(big):
            break
    assert got == big
    if loop_broker.broker.config.get("pylog.event.loop") == "asyncio":
        # Segment bytes went from the file to the socket without Python copying them.
        assert sum(sent) >= sum(map(len, big)) // 2
    else:
        assert not sent
    # A long poll answered by a produce from another client.
    threading.Timer(0.3, lambda: (p.produce("el", b"late"), p.flush(10))).start()
    t0 = time.monotonic()
    late = []
    while not late and time.monotonic() - t0 < 10:
        late = [m.value() for m in c.consume(1, 1.0) if m.error() is None]
    c.close()
    assert late == [b"late"]


def test_stalled_half_request_is_closed(loop_broker):
    s = socket.create_connection(("127.0.0.1", loop_broker.port), timeout=10)
    s.sendall(struct.pack(">i", 100) + b"\0\x03")  # 6 of 104 bytes, then nothing
    t0 = time.monotonic()
    assert s.recv(10) == b""
    assert time.monotonic() - t0 < 5
    s.close()


def test_a_grown_receive_buffer_is_given_back_when_quiet(tmp_path, monkeypatch):
    import pylog.broker.server as server
    monkeypatch.setattr(server, "SHRINK_AFTER_S", 0.2)
    with running_broker(tmp_path / "d", config={"pylog.request.read.timeout.ms": "200"}) as b:
        p = Producer({"bootstrap.servers": str(b), "linger.ms": 50, "batch.size": 1_000_000})
        for _ in range(5):
            p.produce("big", b"z" * 400_000)
        assert p.flush(10) == 0
        conns = list(b.broker.server.connections)
        assert max(len(c._buf) for c in conns) > server.RECV_BUFFER_MIN
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and max(len(c._buf) for c in conns) > server.RECV_BUFFER_MIN:
            time.sleep(0.05)
        assert max(len(c._buf) for c in conns) == server.RECV_BUFFER_MIN
        p.produce("big", b"after" * 100_000)  # and it grows again when needed
        assert p.flush(10) == 0
