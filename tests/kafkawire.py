"""A raw Kafka protocol connection for tests that need exact requests."""
import socket
import struct

from pylog.protocol.framing import decode_response, encode_request


class Wire:
    """One connection: request() sends a request object and returns the decoded
    response (checking the correlation id)."""

    def __init__(self, bootstrap, client_id="wire-test"):
        host, port = str(bootstrap).rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=15)
        self.client_id = client_id
        self.cid = 0

    def send(self, api_key, version, body):
        self.cid += 1
        self.sock.sendall(encode_request(self.cid, api_key, version, body, self.client_id))
        return self.cid

    def receive(self, api_key, version, cid=None):
        size = struct.unpack(">i", self._read(4))[0]
        header, resp = decode_response(self._read(size), api_key, version)
        if cid is not None:
            assert header.correlation_id == cid
        return resp

    def request(self, api_key, version, body):
        cid = self.send(api_key, version, body)
        return self.receive(api_key, version, cid)

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "connection closed"
            buf += chunk
        return buf

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
