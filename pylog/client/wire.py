"""One TCP connection to one Kafka broker: frames, correlation ids, versions.

    conn = Connection("127.0.0.1", 9092)          # connects + ApiVersions handshake
    resp = conn.request(MetadataRequest(topics=None))
    cids = [conn.send(req) for req in reqs]       # pipelining: several in flight
    resps = [conn.receive() for _ in cids]        # answers come back in send order

Invariants:
- The first request on the socket is ApiVersions (v3; v0-1-2 fallback when the
  broker answers UNSUPPORTED_VERSION), and ``api_versions`` holds the broker's
  (min, max) per api key from then on.
- A request's version is min(our max in OUR_VERSIONS, broker max) unless the
  caller names one; a version outside both ranges is refused before sending.
- Responses are matched to requests strictly in FIFO order (Kafka answers in
  request order on a connection) and each one's correlation id is checked.
  Produce with acks=0 gets no answer, so it is never put in the queue.
- Any socket error, timeout or correlation mismatch closes the connection and
  raises ConnectionClosedError: the stream position is then unknown, so every
  request still in flight is lost.

TLS (ssl_context): the handshake runs in the constructor under `timeout`;
a certificate the context rejects (unknown CA, wrong host name) or a TLS
alert from the broker refusing this client's certificate (seen on the first
read under TLS 1.3) raises SslAuthenticationError, the ConnectionClosedError
that is not retriable; a broker closing without an alert gets a (retriable)
ConnectionClosedError whose message names the likely cause.
A select() on fileno() is not enough over TLS: a response may already sit
decrypted in the SSL object (nothing left for the kernel to report), and a
readable socket may carry only TLS records with no data (session tickets).
wait_readable() handles both; every loop that selects on connections uses it.

Thread-safety: none. One thread uses a Connection at a time (the Client and
the tools are single-threaded); concurrent send/receive would interleave
frames.
"""
from __future__ import annotations

import collections
import select
import socket
import ssl
import struct
import time

from ..protocol.error_codes import Errors
from ..protocol.errors import ProtocolError
from ..protocol.framing import decode_response, encode_request, response_correlation_id
from ..protocol.messages import ApiVersionsRequest, ApiVersionsResponse
from .errors import ConnectionClosedError, SslAuthenticationError, check, error_for

__all__ = ["MAX_FRAME_BYTES", "OUR_VERSIONS", "Connection", "wait_readable"]

API_VERSIONS = 18

# The versions this client speaks per api key (the broker advertises the same
# ranges; KAFKA-NOTES §3.3). Flexible ones (request header v2, response
# header v1; the codecs and framing handle both): ApiVersions v3, ListGroups
# v3-4, ListOffsets v6+ and Metadata v9+.
OUR_VERSIONS = {
    0: (3, 7),    # Produce: magic-2 batches need >= 3
    1: (4, 11),   # Fetch
    2: (1, 9),    # ListOffsets: v5+ answers OFFSET_NOT_AVAILABLE (KIP-207), older ones LEADER_NOT_AVAILABLE
    3: (1, 12),   # Metadata: v1+ so that a null topic list means "all topics"; v10+ topic ids
    8: (2, 3),    # OffsetCommit
    9: (1, 3),    # OffsetFetch: v2+ for a null topic list ("every committed partition")
    10: (0, 2),   # FindCoordinator
    # JoinGroup, SyncGroup, Heartbeat and LeaveGroup (11-14) are left out:
    # this client is no group member (a caller may still send them with an
    # explicit version).
    15: (0, 4),   # DescribeGroups
    16: (0, 5),   # ListGroups: v4 has states_filter and group_state, v5 types_filter and group_type
    18: (0, 3),   # ApiVersions
    19: (2, 4),   # CreateTopics
    20: (1, 3),   # DeleteTopics
    21: (0, 1),   # DeleteRecords
    32: (1, 2),   # DescribeConfigs
    33: (0, 1),   # AlterConfigs
    37: (0, 1),   # CreatePartitions
    42: (0, 1),   # DeleteGroups
    44: (0, 1),   # IncrementalAlterConfigs
    69: (0, 0),   # ConsumerGroupDescribe
}

# A response larger than this is treated as a broken stream rather than
# waited for (a fetch of max_bytes plus one oversized batch stays far below).
MAX_FRAME_BYTES = 1 << 30

_SIZE = struct.Struct(">i")
_INT16 = struct.Struct(">h")


class Connection:
    """A synchronous, pipelining connection to one broker (see the module doc)."""

    def __init__(self, host: str, port: int, client_id: str = "pylog", timeout: float = 30.0,
                 ssl_context=None, sasl=None):
        """sasl: ClientCredentials (pylog/client/sasl.py) to authenticate
        with right after ApiVersions, on a SASL_PLAINTEXT or SASL_SSL listener."""
        self.host = host
        self.port = int(port)
        self.client_id = client_id
        self.timeout = timeout
        self._next_cid = 0
        self._in_flight: collections.deque = collections.deque()  # (cid, api_key, version)
        # The first bytes of the next frame, read ahead by read_ahead() (TLS only).
        self._head = b""
        try:
            self._sock = socket.create_connection((host, self.port), timeout=timeout)
        except OSError as e:
            raise ConnectionClosedError(f"cannot connect to {host}:{port}: {e}") from e
        if ssl_context is not None:
            # The handshake runs here, under timeout (a silent peer cannot hold it longer).
            try:
                self._sock = ssl_context.wrap_socket(self._sock, server_hostname=host)
            except ssl.SSLCertVerificationError as e:
                self._sock.close()
                raise SslAuthenticationError(f"TLS handshake with {host}:{port} failed: {_why(e, host)}") from e
            except ssl.SSLError as e:
                self._sock.close()
                if _is_alert(e):
                    raise SslAuthenticationError(f"TLS handshake with {host}:{port} failed: "
                                                 f"{_why(e, host)}") from e
                raise ConnectionClosedError(f"TLS handshake with {host}:{port} failed: {e}") from e
            except OSError as e:
                self._sock.close()
                raise ConnectionClosedError(f"TLS handshake with {host}:{port} failed (is it a TLS "
                                            f"listener?): {e}") from e
        # Requests are written whole with sendall; Nagle would only delay the
        # last segment of each one.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.api_versions: dict[int, tuple[int, int]] = {}
        try:
            try:
                self.api_versions = self._handshake()
            except ConnectionClosedError as e:
                # TLS 1.3: the broker checks the client's certificate after
                # the client's handshake is done; its refusal is an alert on
                # the first read.
                cause = e.__cause__
                if isinstance(cause, ssl.SSLError) and _is_alert(cause):
                    raise SslAuthenticationError(f"TLS handshake with {host}:{port} failed: "
                                                 f"{_why(cause, host)}") from cause
                if ssl_context is not None and not isinstance(cause, TimeoutError):
                    # A broker whose TLS layer refuses the client may close
                    # without an alert: still say what is most likely wrong.
                    # Retriable all the same: a broker stopping looks alike.
                    raise ConnectionClosedError(
                        f"{e}: the broker closed the TLS connection before answering; it may require a "
                        f"client certificate (ssl.certificate.location with ssl.key.location, or "
                        f"ssl.keystore.*) or refuse this one (its log says which)") from cause
                raise
            if sasl is not None:
                from .sasl import authenticate
                authenticate(self, sasl)
        except BaseException:
            self.close()
            raise

    def __repr__(self):
        state = "closed" if self._sock is None else f"{len(self._in_flight)} in flight"
        return f"<Connection {self.host}:{self.port} {state}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def closed(self) -> bool:
        return self._sock is None

    def fileno(self) -> int:
        """The socket's descriptor, for select() over several connections."""
        if self._sock is None:
            raise ConnectionClosedError(f"connection to {self.host}:{self.port} is closed")
        return self._sock.fileno()

    def has_buffered(self) -> bool:
        """Response bytes already read from the socket (a select() on it would not report them)."""
        sock = self._sock
        return bool(self._head) or (isinstance(sock, ssl.SSLSocket) and sock.pending() > 0)

    def read_ahead(self) -> bool:
        """After select() reported the socket readable: True when receive()
        has something to read (or a failure to report) without waiting for
        the broker; False when what arrived carried no data (TLS records such
        as session tickets, or a partial record), so the caller waits again.
        Reads at most the 4-byte size of the next frame, kept for receive()."""
        sock = self._sock
        if sock is None or not isinstance(sock, ssl.SSLSocket) or self.has_buffered():
            return True
        try:
            sock.settimeout(0)
            try:
                data = sock.recv(4)
            finally:
                sock.settimeout(self.timeout)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError:
            return True   # receive() reads the failure and reports it
        self._head = data
        return True   # b"" (end of stream) too: receive() reports it

    @property
    def in_flight(self) -> int:
        """Requests sent whose response has not been received yet."""
        return len(self._in_flight)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._in_flight.clear()
        self._head = b""
        if sock is not None:
            # shutdown first: close() alone does not wake a thread blocked
            # receiving on this socket (a controller sender waiting on a
            # stopped broker would wait out its whole timeout).
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    # --- versions -------------------------------------------------------------

    def version_for(self, api_key: int) -> int:
        """The version to send api_key with: the highest both sides speak."""
        ours = OUR_VERSIONS.get(api_key)
        theirs = self.api_versions.get(api_key)
        if ours is None:
            raise error_for(Errors.UNSUPPORTED_VERSION, f"this client does not speak api key {api_key}")
        if theirs is None:
            raise error_for(Errors.UNSUPPORTED_VERSION,
                            f"broker {self.host}:{self.port} does not support api key {api_key}")
        version = min(ours[1], theirs[1])
        if version < max(ours[0], theirs[0]):
            raise error_for(Errors.UNSUPPORTED_VERSION,
                            f"api key {api_key}: client speaks v{ours[0]}-{ours[1]}, "
                            f"broker v{theirs[0]}-{theirs[1]}")
        return version

    def _handshake(self) -> dict[int, tuple[int, int]]:
        resp = self._api_versions(3)
        if resp.error_code == Errors.UNSUPPORTED_VERSION:
            # The broker answered with a v0 body; its ApiVersions entry (if
            # any) says which version to retry with, as the Java client does.
            entry = next((k for k in resp.api_keys if k.api_key == API_VERSIONS), None)
            retry = min(entry.max_version, 3) if entry is not None else 0
            resp = self._api_versions(retry if retry < 3 else 0)
        check(resp.error_code, f"ApiVersions from {self.host}:{self.port}")
        return {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}

    def _api_versions(self, version: int) -> ApiVersionsResponse:
        from .. import __version__
        body = ApiVersionsRequest(client_software_name="pylog", client_software_version=__version__)
        self.send(body, version)
        frame = self._receive_frame(self._in_flight[0][0])
        self._in_flight.popleft()
        # Any error reply to ApiVersions is v0-shaped whatever version was
        # asked (KIP-511); error_code is the first field of every version, so
        # it can be read before choosing how to decode the rest.
        error_code = _INT16.unpack_from(frame, 4)[0] if len(frame) >= 6 else 0
        decode_version = version if error_code == 0 else 0
        try:
            return decode_response(frame, API_VERSIONS, decode_version)[1]
        except ProtocolError as e:
            self.close()
            raise ConnectionClosedError(
                f"unreadable ApiVersions v{decode_version} response from "
                f"{self.host}:{self.port}: {e}") from e

    # --- requests -------------------------------------------------------------

    def send(self, body, api_version: int | None = None) -> int | None:
        """Write one request; returns its correlation id, or None for a
        Produce with acks=0 (which gets no response, so receive() must not be
        called for it)."""
        if self._sock is None:
            raise ConnectionClosedError(f"connection to {self.host}:{self.port} is closed")
        api_key = body.API_KEY
        version = self.version_for(api_key) if api_version is None else api_version
        cid = self._next_cid
        self._next_cid = (cid + 1) & 0x7FFFFFFF
        frame = encode_request(cid, api_key, version, body, self.client_id)
        try:
            self._sock.sendall(frame)
        except OSError as e:
            self.close()
            raise ConnectionClosedError(f"send to {self.host}:{self.port} failed: {e}") from e
        if api_key == 0 and body.acks == 0:
            return None
        self._in_flight.append((cid, api_key, version))
        return cid

    def send_buffers(self, api_key: int, version: int, buffers, expect_response: bool = True) -> int:
        """Write one request already encoded as buffers (size prefix included,
        correlation id self.next_correlation_id); the hand-written Produce
        encoder uses it so record batches are not copied into one frame."""
        if self._sock is None:
            raise ConnectionClosedError(f"connection to {self.host}:{self.port} is closed")
        cid = self._next_cid
        self._next_cid = (cid + 1) & 0x7FFFFFFF
        try:
            views = [memoryview(b).cast("B") for b in buffers if len(b)]
            if isinstance(self._sock, ssl.SSLSocket):
                # TLS sockets have no scatter write: one copy, encrypted anyway.
                self._sock.sendall(b"".join(views))
                views = []
            while views:
                sent = self._sock.sendmsg(views)
                # A partial write (full socket buffer): drop what went out.
                while views and sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                if views and sent:
                    views[0] = views[0][sent:]
        except OSError as e:
            self.close()
            raise ConnectionClosedError(f"send to {self.host}:{self.port} failed: {e}") from e
        if expect_response:
            self._in_flight.append((cid, api_key, version))
        return cid

    @property
    def next_correlation_id(self) -> int:
        return self._next_cid

    def receive(self):
        """The response to the oldest request in flight, decoded."""
        if not self._in_flight:
            raise ProtocolError("receive() with no request in flight")
        cid, api_key, version = self._in_flight[0]
        frame = self._receive_frame(cid)
        if not self._in_flight:
            # close() from another thread (how a caller unblocks a read) won
            # the race: the connection is gone, whatever arrived.
            raise ConnectionClosedError(f"connection to {self.host}:{self.port} was closed")
        self._in_flight.popleft()
        try:
            return decode_response(frame, api_key, version)[1]
        except ProtocolError as e:
            # The frame was whole, so the stream is still aligned; the bytes
            # are wrong, which is the broker's bug, not a connection failure.
            raise ProtocolError(f"response to api key {api_key} v{version} from "
                                f"{self.host}:{self.port}: {e}") from e

    def request(self, body, api_version: int | None = None):
        """send + receive: the decoded response (None for acks=0 Produce).
        Pipelined requests sent before must have been received first."""
        if self._in_flight:
            raise ProtocolError(f"request() with {len(self._in_flight)} pipelined "
                                "response(s) not yet received")
        if self.send(body, api_version) is None:
            return None
        return self.receive()

    # --- frames ---------------------------------------------------------------

    def _receive_frame(self, expected_cid: int) -> memoryview:
        size = _SIZE.unpack(self._read_exact(4))[0]
        if size < 4 or size > MAX_FRAME_BYTES:
            self.close()
            raise ConnectionClosedError(f"bad response size {size} from {self.host}:{self.port}")
        frame = self._read_exact(size)
        cid = response_correlation_id(frame)
        if cid != expected_cid:
            self.close()
            raise ConnectionClosedError(
                f"response correlation id {cid} from {self.host}:{self.port}, "
                f"expected {expected_cid} (responses out of order)")
        return frame

    def _read_exact(self, n: int) -> memoryview:
        # A fresh buffer per frame: decoded records fields are slices of it,
        # so it must never be reused while the caller holds a response.
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        sock = self._sock
        if sock is None:
            raise ConnectionClosedError(f"connection to {self.host}:{self.port} is closed")
        head = self._head
        if head:
            got = min(n, len(head))
            view[:got] = head[:got]
            self._head = head[got:]
        try:
            while got < n:
                k = sock.recv_into(view[got:])
                if k == 0:
                    raise OSError("connection closed by the broker")
                got += k
        except OSError as e:  # socket.timeout is an OSError too
            self.close()
            raise ConnectionClosedError(f"receive from {self.host}:{self.port} failed: {e}") from e
        return view


def wait_readable(conns, others=(), timeout: float | None = None) -> tuple[list, list]:
    """select() for connections and other descriptors (wake-up pipes), correct
    over TLS: (connections receive() can read now or will fail on, others
    readable). Connections with bytes already buffered are ready at once; a
    socket made readable only by TLS records without data is waited on again,
    within timeout (None: no limit). Closed connections are ready (receive()
    reports them)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ready = [c for c in conns if c.closed or c.has_buffered()]
        if ready:
            wait = 0.0
        else:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        open_conns = [c for c in conns if not c.closed]
        try:
            readable, _, _ = select.select([*open_conns, *others], [], [], wait)
        except (OSError, ValueError):
            # A descriptor closed under us (another thread's close()): let
            # every connection's receive() say which.
            return list(conns), []
        readable = set(map(id, readable))
        ready_others = [o for o in others if id(o) in readable]
        ready += [c for c in open_conns if id(c) in readable and c not in ready and c.read_ahead()]
        if ready or ready_others or wait == 0.0:
            return ready, ready_others


def _is_alert(e: ssl.SSLError) -> bool:
    """The peer refused the handshake (a TLS alert: bad or missing certificate, unknown CA...)."""
    reason = getattr(e, "reason", None) or ""
    return "ALERT" in reason or "CERTIFICATE" in reason


def _why(e: ssl.SSLError, host: str) -> str:
    """What went wrong, in the words a user can act on."""
    reason = getattr(e, "reason", None) or ""
    detail = getattr(e, "verify_message", None) or reason or str(e)
    if isinstance(e, ssl.SSLCertVerificationError):
        if "mismatch" in detail.lower() or "hostname" in detail.lower():
            return (f"the broker's certificate does not name {host} ({detail}; "
                    f"ssl.endpoint.identification.algorithm=https checks it)")
        return (f"the broker's certificate is not trusted ({detail}); is ssl.ca.location / "
                f"ssl.truststore.location the CA that signed it?")
    if "CERTIFICATE_REQUIRED" in reason:
        return f"the broker requires a client certificate (ssl.certificate.location / ssl.keystore.*) ({reason})"
    if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason or "DECRYPT" in reason:
        return f"the broker refused this client's certificate ({reason})"
    return detail
