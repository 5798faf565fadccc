"""The connection layer under load and misuse: answers queued behind a long poll
are bounded, a closed connection's waiting fetches are cancelled, and every
answer (ApiVersions errors too) leaves in request order."""
import socket
import struct
import time

import pytest
from kafkawire import Wire

from pylog.protocol import messages as m
from pylog.protocol.framing import encode_request
from pylog.testing import running_broker


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "d") as b:
        b.broker.create_topic("t", 1)
        yield b


def long_poll():
    F = m.FetchRequest
    return F(replica_id=-1, max_wait_ms=600_000, min_bytes=1 << 30, max_bytes=1 << 20, isolation_level=0,
             topics=[F.FetchTopic(topic="t", partitions=[F.FetchPartition(partition=0, fetch_offset=0,
                                                                           partition_max_bytes=1 << 20)])])


def waiters(b):
    part = b.broker.log_manager.partitions[("t", 0)]
    return b.broker.call(lambda: b.broker.handlers.purgatory.watching(part))


def test_answers_queued_behind_a_long_poll_are_bounded(broker):
    import pylog.broker.server as server
    w = Wire(broker)
    w.send(1, 11, long_poll())
    frame = encode_request(0, 3, 5, m.MetadataRequest(topics=[]), "flood")
    w.sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            sent += w.sock.send(frame * 200)
        except BlockingIOError:
            time.sleep(0.05)  # the broker stopped reading: the kernel buffers fill up
    conns = broker.broker.call(lambda: [len(c._pending) for c in broker.broker.server.connections])
    assert max(conns) <= server.MAX_QUEUED + 200  # one read's worth past the bound at most
    assert sent // len(frame) > max(conns)       # far more was sent than was queued
    w.close()


def test_a_closed_connection_stops_its_long_polls(broker):
    w = Wire(broker)
    for _ in range(20):
        w.send(1, 11, long_poll())
    deadline = time.monotonic() + 5
    while waiters(broker) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waiters(broker) >= 1
    w.close()
    deadline = time.monotonic() + 5
    while waiters(broker) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waiters(broker) == 0


def test_an_api_versions_error_waits_its_turn(broker):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    F = m.FetchRequest
    short_poll = F(replica_id=-1, max_wait_ms=300, min_bytes=1 << 20, max_bytes=1 << 20, isolation_level=0,
                   topics=[F.FetchTopic(topic="t", partitions=[F.FetchPartition(
                       partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])])
    bad_api_versions = struct.pack(">hhih", 18, 99, 2, 1) + b"c" + b"\0"  # header v2: no tagged fields
    s.sendall(encode_request(1, 1, 11, short_poll, "c") + struct.pack(">i", len(bad_api_versions))
              + bad_api_versions)
    order = []
    buf = b""
    while len(order) < 2:
        chunk = s.recv(65536)
        assert chunk
        buf += chunk
        while len(buf) >= 8 and len(buf) >= 4 + struct.unpack(">i", buf[:4])[0]:
            size = struct.unpack(">i", buf[:4])[0]
            order.append(struct.unpack(">i", buf[4:8])[0])
            buf = buf[4 + size:]
    s.close()
    assert order == [1, 2]
