"""A bare socket speaking Kafka frames, for the broker's side of SASL: what it
answers and when it closes the connection. Every Raw opened is in OPEN, so a
fixture can close what a test left open."""
from __future__ import annotations

import socket
import struct

from pylog.protocol import messages as m
from pylog.protocol.framing import decode_response, encode_request

OPEN: list = []


class Raw:
    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        OPEN.append(self.sock)
        self.cid = 0

    def request(self, body, version):
        self.cid += 1
        self.sock.sendall(encode_request(self.cid, body.API_KEY, version, body, "raw"))
        return decode_response(self.read_frame(), body.API_KEY, version)[1]

    def read_frame(self):
        size = struct.unpack(">i", self._exact(4))[0]
        return self._exact(size)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed by the broker")
            buf += chunk
        return buf

    def closed_by_broker(self):
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def login(self, user, password, mechanism="PLAIN", version=1):
        """SaslHandshake + one PLAIN SaslAuthenticate; the latter's response."""
        assert self.request(m.SaslHandshakeRequest(mechanism=mechanism), 1).error_code == 0
        return self.request(m.SaslAuthenticateRequest(auth_bytes=f"\0{user}\0{password}".encode()), version)


def close_all():
    while OPEN:
        OPEN.pop().close()


def confluent_roundtrip(conf: dict, values: list[bytes]) -> list[bytes]:
    """values produced (acks=all) to a fresh topic and consumed back in a
    group, with confluent-kafka settings conf; what the consumer got."""
    import uuid

    import confluent_kafka as ck

    from pylog.testing import wait_until
    topic = f"rt-{uuid.uuid4().hex[:8]}"
    p = ck.Producer({**conf, "acks": "all"})
    for v in values:
        p.produce(topic, v, key=b"k")
    assert p.flush(30) == 0
    c = ck.Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []

    def all_in():
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
        return len(got) >= len(values)
    try:
        wait_until(all_in, f"{len(values)} records consumed")
    finally:
        c.close()
    return got
