"""The Kafka-protocol TCP server: frames in, responses out, in order.

Each connection is an asyncio BufferedProtocol reading straight into its own
receive buffer, so a request is decoded where it landed (records in a Produce
request reach the log as a slice of that buffer). Requests are decoded and
started in arrival order; a handler that must wait (a long-poll fetch) holds
back the responses queued behind it, so responses leave strictly in request
order, as Kafka clients require. acks=0 produce requests get no response.

Limits, checked before any work: the int32 size prefix must lie in
[0, socket.request.max.bytes] or the connection is closed at once, and a
request costs memory as its bytes arrive, not as announced; a request
whose first bytes arrived must be complete within
pylog.request.read.timeout.ms; a connection with nothing in flight is closed
after connections.max.idle.ms. Malformed requests, unknown API keys and
unsupported versions close the connection (ApiVersions gets its v0 error
reply instead, KAFKA-NOTES §3.2). None of this touches any log.

Fetch responses carry segment bytes as FetchSlices: when the transport has
nothing queued, large slices go out with os.sendfile straight from the
segment file; otherwise they are handed to the transport as memoryviews of
the mmap. On an SSL or SASL_SSL listener the transport is tls.TlsProtocol
(TLS over the plain TCP transport, memory BIOs): connection_made comes after
the handshake and sets the connection's principal from the client
certificate, fetched slices always go through the transport (sendfile would
bypass the encryption), and failed handshakes are logged there.

Runs on one event loop thread; no locking.
"""
from __future__ import annotations

import asyncio
import logging
import mmap
import os
import socket
import struct
import sys
import time
from collections import deque
# A request's cost to the loop is the loop thread's CPU time: a loaded machine
# preempting the broker must not be charged to the client being served.
from time import thread_time

from ..protocol.errors import ProtocolError, UnsupportedVersionError
from ..protocol.framing import decode_request, encode_response
from . import api_versions as av
from . import tls
from .handlers import detach_chunks
from .quotas import ANONYMOUS_PRINCIPAL, PRODUCER_BYTE_RATE
from .sasl import Authenticator, listener_settings

log = logging.getLogger("pylog.broker")

RECV_BUFFER_MIN = 64 << 10   # a connection's receive buffer starts here...
RECV_BUFFER_MAX = 4 << 20    # ...and grows to fit frames up to this; larger ones get their own
BIG_FRAME_START = 1 << 20    # without mmap, a larger frame's own buffer starts here and doubles
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)
SENDFILE_MIN = 32 << 10
SHRINK_AFTER_S = 10       # a quiet connection's grown receive buffer is given back after this
MAX_QUEUED = 1000  # requests in flight per connection before reading pauses
# A request at least this large (a Metadata naming 100,000 topics) is decoded
# and its answer encoded on a worker thread, its connection muted meanwhile (as
# Kafka mutes a connection with a request in progress): the event loop keeps
# serving everyone else while that CPU work runs.
OFF_LOOP_BYTES = 256 << 10
# A client that connects and never finishes the TLS handshake holds a socket
# until this; asyncio's default is 60 s.
TLS_HANDSHAKE_TIMEOUT_S = 10.0

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_PRODUCE_KEY = b"\x00\x00"
_I32I32 = struct.Struct(">ii")
_SASL_KEYS = (b"\x00\x11", b"\x00\x24")   # SaslHandshake, SaslAuthenticate




class RequestContext:
    """One request as its handler sees it: the header's fields and the peer
    that sent it. The connection builds one per request and passes it where
    the header went, so nothing about a request lives in shared state between
    a dispatch and an await. Immutable once built: any thread may read it."""

    __slots__ = ("request_api_key", "request_api_version", "correlation_id", "client_id", "peer_host",
                 "listener", "throttle_ms", "principal", "loop_s", "connection")

    def __init__(self, header, peer_host: str, listener: "BoundListener", principal: str = ANONYMOUS_PRINCIPAL,
                 connection=None):
        self.request_api_key = header.request_api_key
        self.request_api_version = header.request_api_version
        self.correlation_id = header.correlation_id
        self.client_id = header.client_id
        self.peer_host = peer_host
        self.listener = listener
        # Kafka's KafkaPrincipal as "<type>:<name>": who the connection
        # authenticated as (User:ANONYMOUS on a PLAINTEXT listener, as in Kafka).
        # ACLs and user quotas are decided on it.
        self.principal = principal
        # Set by a handler whose quota was exceeded (KIP-599): after the answer
        # goes out, the connection reads nothing more for this long (Kafka mutes
        # the channel; clients that do not back off by themselves wait too).
        self.throttle_ms = 0
        # The loop time this request has cost so far, when a request_percentage
        # quota counts it (broker/client_quotas.py); None: not counted.
        self.loop_s = None
        # The connection it came on: what a share session is bound to (Kafka
        # releases a share session's records when its connection closes).
        self.connection = connection

    @property
    def listener_name(self) -> str:
        """The listener the request arrived on (Kafka's RequestContext.listenerName):
        Metadata and FindCoordinator answer with the brokers' endpoints on it."""
        return self.listener.name


class BoundListener:
    """One bound listener: its name, and whether it serves the inter-broker
    APIs (av.BROKER_ONLY_APIS). Immutable once bound: any thread may read it."""

    __slots__ = ("inter_broker", "name", "principal_mapper", "sasl", "tls")

    def __init__(self, name: str, inter_broker: bool, tls=None, principal_mapper=None, sasl=None):
        self.name = name
        self.inter_broker = inter_broker
        self.tls = tls                            # its ssl.SSLContext; None for PLAINTEXT
        self.principal_mapper = principal_mapper  # ssl.principal.mapping.rules (TLS only)
        self.sasl = sasl   # a SASL listener's settings (sasl.ListenerSasl), None on others


class Connection(asyncio.BufferedProtocol):
    def __init__(self, server, listener: BoundListener):
        self.server = server
        self.listener = listener
        self.handlers = server.handlers
        self.max_request = server.max_request_bytes
        self.transport = None
        self.sock_fd = -1
        self.peer = "?"
        self.peer_host = ""
        # Set once by authentication (TLS client certificate or SASL); every
        # request's RequestContext carries it.
        self.principal = ANONYMOUS_PRINCIPAL
        # A SASL listener's authenticator sees every frame until the client
        # authenticated (and SaslHandshake/SaslAuthenticate ones after).
        self.sasl = Authenticator(listener.sasl, server.broker) if listener.sasl is not None else None
        self._buf = bytearray(RECV_BUFFER_MIN)
        self._view = memoryview(self._buf)
        self._start = 0          # unparsed bytes are _buf[_start:_end]
        self._end = 0
        self._want = 0           # the _buf size the frame being received asks for
        # [buffer, filled, frame size] for a frame larger than RECV_BUFFER_MAX,
        # in a buffer of its own (_frame_buffer) that costs memory only as its
        # bytes arrive: a size prefix alone (up to socket.request.max.bytes)
        # costs none.
        self._big = None
        self._spare = None       # the last large frame's mapping, reused by the next (its pages are in)
        self._pending = deque()  # responses waiting for an earlier one, in order
        self._drainer = None
        self._paused_writing = False
        self._reading_paused = False
        self._off_loop = False   # a large request is being decoded or encoded on a worker thread
        self._muted = False      # throttled by a quota: no reading until the throttle time is over
        self._held = False       # not let in yet by the connection limits (broker/connection_quotas.py)
        self._out = None         # responses gathered while a read is processed
        self.step_timer = None   # with metrics on: times an answering coroutine's steps (metrics/requests.py)
        self.closed = False
        self.refused = False     # closed in connection_made: connection_lost has nothing to undo
        self.last_active = time.monotonic()
        self.partial_since = None

    # ---- asyncio callbacks ----

    def connection_made(self, transport):
        self.transport = transport
        if self.server.stopping:
            # Accepted before the listener closed, made after the stop closed
            # the connections it knew: nothing would close it before the loop goes.
            self.closed = self.refused = True
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            # sendfile would put segment bytes on the wire unencrypted: a TLS
            # connection's fetches go through the transport (copied, encrypted).
            self.sock_fd = sock.fileno() if self.server.native_sendfile and self.listener.tls is None else -1
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.peer_host = peer[0] if peer else ""
        if self.listener.tls is not None and self.listener.sasl is None:
            # (On SASL_SSL the principal is SASL's.) asyncio calls
            # connection_made once the handshake is done, so the
            # peer certificate (verified against the trust store) is known.
            principal = tls.principal_of(transport.get_extra_info("ssl_object"), self.listener.principal_mapper)
            if principal is None:
                log.warning("closing connection from %s on listener %s: no ssl.principal.mapping.rules rule "
                            "applies to its certificate's subject", self.peer, self.listener.name)
                self.closed = self.refused = True
                transport.abort()
                return
            self.principal = principal
            log.debug("TLS connection from %s on listener %s: principal %s", self.peer, self.listener.name,
                      principal)
        self.server.connections.add(self)
        if self.server.broker.metrics is not None:
            self.server.broker.metrics.connection_made(self)   # counts it, times its requests
        self.server.connection_quotas.accepted(self)

    def connection_lost(self, exc):
        self.closed = True
        if self.refused:
            return
        self.server.connections.discard(self)
        if self.server.broker.metrics is not None:
            self.server.broker.metrics.connection_lost(self)
        self.server.connection_quotas.closed(self)
        share = getattr(self.server.broker, "share", None)
        if share is not None:
            share.manager.connection_closed(self)
        for _header, item in self._pending:
            if isinstance(item, asyncio.Future):
                item.cancel()  # long polls stop waiting for a socket that is gone
        self._pending.clear()
        if self._drainer is not None:
            self._drainer.cancel()

    def pause_writing(self):
        self._paused_writing = True
        self._pause_reading()

    def resume_writing(self):
        self._paused_writing = False
        self._maybe_resume_reading()

    def _pause_reading(self):
        if not self._reading_paused and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self):
        if self._reading_paused and not self._paused_writing and len(self._pending) < MAX_QUEUED \
                and not self._off_loop and not self._muted and not self._held \
                and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()
            if self.partial_since is not None:
                self.partial_since = time.monotonic()  # the wait was ours, not the client's
            if self._end > self._start:
                # Frames already received but left unparsed when reading paused.
                asyncio.get_running_loop().call_soon(self._parse_buffered)

    def _parse_buffered(self):
        if not self.closed and not self._reading_paused:
            self._parse_buffered_now()

    def get_buffer(self, sizehint):
        big = self._big
        if big is not None:
            buf, filled, size = big
            if filled == len(buf):  # only a bytearray (no mmap) is smaller than the frame
                new = bytearray(min(size, 2 * len(buf)))
                new[:filled] = buf
                big[0] = buf = new
            return memoryview(buf)[filled:size]
        buf = self._buf
        if len(buf) - self._end < len(buf) >> 2:
            n = self._end - self._start
            if len(buf) < self._want:
                # The frame arriving asks for more room: double (a new buffer:
                # the old may still be exported to the transport). Only a full
                # buffer grows, so the memory follows the bytes received, not
                # the size announced.
                new = bytearray(min(self._want, 2 * len(buf)))
                new[:n] = buf[self._start:self._end]
                self._buf, self._view = new, memoryview(new)
            else:
                # Move the unparsed tail to the front. Slices handed to handlers
                # are never kept past the handler call, so overwriting is safe.
                buf[:n] = buf[self._start:self._end]
            self._start, self._end = 0, n
        return self._view[self._end:]

    def buffer_updated(self, nbytes):
        self.last_active = time.monotonic()
        big = self._big
        if big is not None:
            big[1] += nbytes
            buf, filled, size = big
            if filled < size:
                return
            self._big = None
            self.partial_since = None
            self._on_frame(memoryview(buf)[:size])
            if type(buf) is mmap.mmap:
                # Fresh pages cost a fault each; the next large frame reuses these.
                self._spare = buf
            return
        self._end += nbytes
        # Responses to every request in this read go out in one write: on
        # loopback each send costs the sender the receiver's TCP work too.
        self._parse_buffered_now()

    def _parse_buffered_now(self):
        self._out = []
        try:
            self._parse_frames()
        finally:
            out, self._out = self._out, None
            if out and not self.closed:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _parse_frames(self):
        buf = self._buf
        # Stop at once when reading pauses (too many answers queued): the rest
        # waits in the buffer and is parsed when reading resumes.
        while not self.closed and not self._reading_paused:
            avail = self._end - self._start
            if avail < 4:
                break
            size = _I32.unpack_from(buf, self._start)[0]
            if size < 0 or size > self.max_request:
                log.warning("closing connection from %s: request size %d outside [0, %d] "
                            "(socket.request.max.bytes)", self.peer, size, self.max_request)
                self.close()
                return
            if avail - 4 >= size:
                s = self._start + 4
                self._start = s + size
                self._on_frame(self._view[s:s + size])
                continue
            if size + 4 > RECV_BUFFER_MAX:
                have = avail - 4
                big, self._spare = self._spare, None
                if big is None or len(big) < size:
                    big = _frame_buffer(size, have)
                big[:have] = buf[self._start + 4:self._end]
                self._big = [big, have, size]
                self._start = self._end = 0
            elif size + 4 > len(buf) - self._start:
                # Room for this frame and a few more like it, made as its
                # bytes arrive (get_buffer).
                want = len(buf)
                while want < 2 * (size + 4) and want < RECV_BUFFER_MAX:
                    want *= 2
                self._want = want
            break
        if self._start == self._end:
            self._start = self._end = 0
            if self._big is None:
                self.partial_since = None
                return
        if self.partial_since is None:
            self.partial_since = self.last_active

    def shrink_buffer(self):
        """Give back a receive buffer grown for large requests once the
        connection is quiet (the sweeper calls this)."""
        if self._big is None:
            self._spare = None
        if len(self._buf) > RECV_BUFFER_MIN and self._start == self._end and self._big is None:
            self._buf = bytearray(RECV_BUFFER_MIN)
            self._view = memoryview(self._buf)
            self._start = self._end = 0
            self._want = 0

    def eof_received(self):
        return False

    # ---- requests ----

    def _on_frame(self, frame):
        sasl = self.sasl
        if sasl is not None and (sasl.gate or frame[:2] in _SASL_KEYS) and not sasl.admit(self, frame):
            return
        if frame[:2] == _PRODUCE_KEY and len(frame) >= 4 and \
                av.is_served(av.PRODUCE, _I16.unpack_from(frame, 2)[0]):
            self._on_produce(frame)
            return
        quotas = self.server.client_quotas
        t0 = thread_time() if quotas.request_on else None
        if len(frame) >= OFF_LOOP_BYTES:
            self._off_loop = True
            self._pause_reading()
            # A copy: frame may be a view of the receive buffer, reused once reading resumes.
            self._queue(None, asyncio.ensure_future(self._serve_off_loop(bytes(frame))))
            if self._drainer is None:
                self._drainer = asyncio.ensure_future(self._drain())
            return
        try:
            header, req = decode_request(frame)
        except UnsupportedVersionError as e:
            h = getattr(e, "header", None)
            if h is not None and h.request_api_key == av.API_VERSIONS:
                self._answer_api_versions_error(h)
                return
            log.warning("closing connection from %s: %s", self.peer, e)
            self.close()
            return
        except ProtocolError as e:
            log.warning("closing connection from %s: malformed request: %s", self.peer, e)
            self.close()
            return
        key, version = header.request_api_key, header.request_api_version
        handler = self._handler(key, version)
        if handler is None:
            if key == av.API_VERSIONS:
                self._answer_api_versions_error(header)
                return
            self.close()
            return
        header = RequestContext(header, self.peer_host, self.listener, self.principal, self)
        if t0 is not None and _counted(key, req):
            header.throttle_ms = quotas.request_throttle(self.principal, header.client_id)
        else:
            t0 = None
        try:
            result = handler(header, req)
        except Exception as e:
            if not isinstance(e, ConnectionAbortedError):
                log.exception("closing connection from %s: %s v%d failed", self.peer, type(req).__name__,
                              version)
            self.close()
            return
        if t0 is not None:
            header.loop_s = thread_time() - t0
        if result is None:
            return  # acks=0
        if asyncio.iscoroutine(result):
            if t0 is not None:
                result = _timed(result, header)
            if self.step_timer is not None:
                result = self.step_timer(result)
            self._queue(header, asyncio.ensure_future(result))
            if self._drainer is None:
                self._drainer = asyncio.ensure_future(self._drain())
        elif self._pending:
            if type(result) is list:
                result = detach_chunks(result)
            self._queue(header, result)
        else:
            self._respond(header, result)

    def _handler(self, key, version):
        """The handler of this API and version on this listener, or None (and
        why logged): an inter-broker API on a client listener is not served,
        as an API a listener does not enable is not in Kafka."""
        handler = self.handlers.table.get(key)
        if handler is None or not av.is_served(key, version):
            log.warning("closing connection from %s: api key %d v%d is not served", self.peer, key, version)
            return None
        if key in av.BROKER_ONLY_APIS and not self.listener.inter_broker:
            log.warning("closing connection from %s: api key %d (inter-broker) is not served on listener %s",
                        self.peer, key, self.listener.name)
            return None
        return handler

    async def _serve_off_loop(self, frame):
        """A large request: decoded on a worker thread, handled on the loop,
        its answer encoded on a worker thread; the whole response frame, or
        None when the connection is closed instead."""
        loop = asyncio.get_running_loop()
        try:
            try:
                (header, req), decode_s = await loop.run_in_executor(None, _timed_call, decode_request, frame)
            except UnsupportedVersionError as e:
                h = getattr(e, "header", None)
                if h is not None and h.request_api_key == av.API_VERSIONS:
                    return encode_response(h.correlation_id, av.API_VERSIONS, 0,
                                           self.handlers.api_versions_error())
                log.warning("closing connection from %s: %s", self.peer, e)
                self.close()
                return None
            except ProtocolError as e:
                log.warning("closing connection from %s: malformed request: %s", self.peer, e)
                self.close()
                return None
            key, version = header.request_api_key, header.request_api_version
            handler = self._handler(key, version)
            if handler is None:
                self.close()
                return None
            header = RequestContext(header, self.peer_host, self.listener, self.principal, self)
            quotas = self.server.client_quotas
            if quotas.request_on and _counted(key, req):
                header.throttle_ms = quotas.request_throttle(self.principal, header.client_id)
                header.loop_s = decode_s  # off the loop, but this request's handling all the same
            try:
                t0 = thread_time()
                result = handler(header, req)
                if header.loop_s is not None:
                    header.loop_s += thread_time() - t0
                if asyncio.iscoroutine(result):
                    result = await (_timed(result, header) if header.loop_s is not None else result)
                if header.throttle_ms > 0:
                    self._mute(header.throttle_ms)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not isinstance(e, ConnectionAbortedError):
                    log.exception("closing connection from %s: %s v%d failed", self.peer, type(req).__name__,
                                  version)
                self.close()
                return None
            if type(result) is list:
                body = b"".join(detach_chunks(result))
                self._record_time(header, 0.0)
                return _I32I32.pack(len(body) + 4, header.correlation_id) + body
            _set_throttle(header, result)
            frame, spent = await loop.run_in_executor(None, _timed_call, encode_response, header.correlation_id, key,
                                                      version, result)
            self._record_time(header, spent)
            return frame
        finally:
            self._off_loop = False
            self._maybe_resume_reading()

    def _queue(self, header, item):
        """Hold an answer behind earlier ones still being prepared; past
        MAX_QUEUED answers, stop reading requests until the queue drains."""
        self._pending.append((header, item))
        if len(self._pending) >= MAX_QUEUED:
            self._pause_reading()

    def _answer_api_versions_error(self, header):
        # A v0-shaped body whatever version was asked (KAFKA-NOTES §3.2),
        # behind any answer still queued.
        frame = encode_response(header.correlation_id, av.API_VERSIONS, 0, self.handlers.api_versions_error())
        if self._pending:
            self._queue(None, frame)
        else:
            self._respond(None, frame)

    def _on_produce(self, frame):
        quotas = self.server.client_quotas
        by_bytes = by_time = 0
        t0 = None
        if quotas.produce_on or quotas.request_on:
            client_id = _client_id_of(frame)
            if quotas.request_on:
                by_time = quotas.request_throttle(self.principal, client_id)
                t0 = thread_time()
            if quotas.produce_on:
                by_bytes = quotas.record_bytes(PRODUCER_BYTE_RATE, self.principal, client_id, len(frame))
        try:
            result = self.handlers.produce(frame, self.listener.name, self, max(by_bytes, by_time))
        except ProtocolError as e:
            log.warning("closing connection from %s: malformed request: %s", self.peer, e)
            self.close()
            return
        except Exception as e:
            if not isinstance(e, ConnectionAbortedError):
                log.exception("closing connection from %s: Produce failed", self.peer)
            self.close()
            return
        # acks=0 (no answer) is exempt from the request quota, as in Kafka;
        # its bytes still count, and its connection is muted for them.
        if result is None:
            by_time = 0
        elif t0 is not None:
            quotas.record_time(self.principal, client_id, thread_time() - t0)
        if by_bytes or by_time:
            # Kafka mutes the channel once the answer is on its way.
            self._mute(max(by_bytes, by_time))
        if result is None:
            return  # acks=0
        if asyncio.iscoroutine(result):
            # acks=all waiting for the followers: answered in order, like a long poll.
            if self.step_timer is not None:
                result = self.step_timer(result)
            self._queue(None, asyncio.ensure_future(result))
            if self._drainer is None:
                self._drainer = asyncio.ensure_future(self._drain())
        elif self._pending:
            self._queue(None, result)
        elif self._out is not None:
            self._out.append(result)
        else:
            self.transport.write(result)

    async def _drain(self):
        try:
            while self._pending and not self.closed:
                header, item = self._pending[0]
                if isinstance(item, asyncio.Future):
                    try:
                        item = await item
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("closing connection from %s: request failed", self.peer)
                        self.close()
                        return
                self._pending.popleft()
                if not self.closed and item is not None:
                    self._respond(header, item)
                self._maybe_resume_reading()
        finally:
            self._drainer = None

    def _respond(self, header, result):
        if self.closed:
            return
        if header is None:  # a whole response frame already (Produce, ApiVersions errors)
            if self._out is not None:
                self._out.append(result)
            else:
                self.transport.write(result)
            return
        if header.throttle_ms > 0:
            self._mute(header.throttle_ms)
        version = header.request_api_version
        if type(result) is list:
            self._write_chunks(header.correlation_id, result)
            self._record_time(header, 0.0)
            return
        if header.loop_s is None:
            data = encode_response(header.correlation_id, header.request_api_key, version, result)
        else:
            _set_throttle(header, result)
            t0 = thread_time()
            data = encode_response(header.correlation_id, header.request_api_key, version, result)
            self._record_time(header, thread_time() - t0)
        if self._out is not None:
            self._out.append(data)
        else:
            self.transport.write(data)

    def _record_time(self, header, more_s):
        """The request is answered: what it cost the loop goes to its
        client's request_percentage rate."""
        if header.loop_s is not None:
            self.server.client_quotas.record_time(header.principal, header.client_id, header.loop_s + more_s)
            header.loop_s = None

    def _mute(self, ms):
        self._muted = True
        self._pause_reading()
        asyncio.get_running_loop().call_later(ms / 1000.0, self._unmute)

    def _unmute(self):
        self._muted = False
        self._maybe_resume_reading()

    # ---- the connection limits' decisions (broker/connection_quotas.py) ----

    def hold(self):
        """Not accepted yet, as far as the client can tell: nothing is read."""
        self._held = True
        self._pause_reading()

    def admit(self):
        if self._held:
            self._held = False
            self._maybe_resume_reading()

    def close_after(self, ms):
        self.hold()
        asyncio.get_running_loop().call_later(ms / 1000.0, self.close)

    def _write_chunks(self, correlation_id, chunks):
        """Write a response made of bytes and FetchSlices (response header v0)."""
        size = 4
        for c in chunks:
            size += len(c)
        t = self.transport
        if self.listener.tls is not None:
            # The cipher reads the segment slices where they are mapped (no
            # copy into one buffer first); one write for the whole answer.
            parts = self._out[:] if self._out else []
            if self._out:
                self._out.clear()
            parts.append(_I32I32.pack(size, correlation_id))
            parts.extend(c if type(c) is bytes else memoryview(c) for c in chunks)
            t.writelines(parts)
            return
        out = bytearray()
        if self._out:  # responses gathered before this one go first
            for b in self._out:
                out += b
            self._out.clear()
        out += _I32I32.pack(size, correlation_id)
        for c in chunks:
            if type(c) is bytes:
                out += c
                continue
            n = len(c)
            if n < SENDFILE_MIN or self.sock_fd < 0:
                out += c
                continue
            t.write(out)
            out = bytearray()
            sent = 0
            if t.get_write_buffer_size() == 0:
                try:
                    sent = os.sendfile(self.sock_fd, c.fileno(), c.position, n)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    sent = 0  # the transport's write below reports the broken socket
            if sent < n:
                t.write(memoryview(c)[sent:])
        if out:
            t.write(out)

    def close(self):
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                # Requests before the one that forced the close were served (a
                # produce may be appended): their answers still go out.
                if self._out:
                    self.transport.write(b"".join(self._out))
                    self._out.clear()
                    self.transport.close()
                else:
                    self.transport.abort()


def _frame_buffer(size, have):
    """A buffer for one large frame. An anonymous mapping of the whole frame:
    its pages cost memory only once written (a bytearray is zero-filled at
    once), and it is filled in place with no copying. Where that is refused
    (an address-space limit), a bytearray that get_buffer doubles as the bytes
    arrive."""
    try:
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
    except (OSError, ValueError, OverflowError):
        return bytearray(min(size, max(BIG_FRAME_START, 2 * have)))


def _client_id_of(frame):
    """A Produce request's client id, read where every request header version
    keeps it (a nullable int16-length string after the correlation id)."""
    if len(frame) < 10:
        return None
    n = _I16.unpack_from(frame, 8)[0]
    return None if n < 0 else bytes(frame[10:10 + n]).decode("utf-8", "replace")


def _counted(key, req) -> bool:
    """Whether a request's time counts against request_percentage: not the
    inter-broker APIs nor follower fetches (Kafka's ClusterAction requests,
    exempt from the request quota)."""
    if key in av.BROKER_ONLY_APIS:
        return False
    if key == av.FETCH:
        state = getattr(req, "replica_state", None)
        replica = state.replica_id if state is not None and state.replica_id >= 0 else req.replica_id
        return replica < 0
    return True


def _set_throttle(header, result):
    """The answer says how long the client is throttled for (the larger of
    what its handler and the request quota decided)."""
    if header.throttle_ms > getattr(result, "throttle_time_ms", header.throttle_ms):
        result.throttle_time_ms = header.throttle_ms


def _timed_call(fn, *args):
    t0 = thread_time()
    out = fn(*args)
    return out, thread_time() - t0


async def _timed(coro, header):
    """Await coro, adding the loop time each of its steps takes (not the time
    it waits) to header.loop_s."""
    return await _StepTimer(coro, header)


class _StepTimer:
    __slots__ = ("coro", "header")

    def __init__(self, coro, header):
        self.coro, self.header = coro, header

    def __await__(self):
        coro, header = self.coro, self.header
        send, exc = None, None
        while True:
            t0 = thread_time()
            try:
                waited = coro.send(send) if exc is None else coro.throw(exc)
            except StopIteration as stop:
                header.loop_s += thread_time() - t0
                return stop.value
            except BaseException:
                header.loop_s += thread_time() - t0
                raise
            header.loop_s += thread_time() - t0
            try:
                send, exc = (yield waited), None
            except BaseException as e:  # noqa: BLE001 - handed to the coroutine, as await would
                send, exc = None, e


class Server:
    """Accepts connections on every listener and sweeps idle and stalled ones."""

    def __init__(self, broker):
        self.broker = broker
        self.handlers = broker.handlers
        self.client_quotas = broker.client_quotas
        self.connection_quotas = broker.connection_quotas
        cfg = broker.config
        self.max_request_bytes = cfg.get("socket.request.max.bytes")
        self.idle_ms = cfg.get("connections.max.idle.ms")
        self.read_timeout_ms = cfg.get("pylog.request.read.timeout.ms")
        self.connections: set[Connection] = set()
        self.sasl_settings = listener_settings(cfg)
        self.native_sendfile = True
        self.tls_failures = tls.HandshakeFailureLog()
        self._servers = []
        self._sweeper = None
        self.stopping = False

    async def start(self, listeners) -> list[int]:
        """Bind each (name, host, port, inter_broker) listener; the ports bound,
        in the same order. A listener that cannot be bound closes the ones
        bound before it and raises."""
        loop = asyncio.get_running_loop()
        # Only the stdlib selector transport lets a response go out with
        # os.sendfile between its own writes safely.
        self.native_sendfile = isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)
        _quiet_accept_failures(loop)
        tls_receive = tls.receive_buffer()
        ports = []
        try:
            cfg = self.broker.config
            for name, host, port, inter_broker in listeners:
                context = cfg.server_tls(name)
                sasl = self.sasl_settings.get(name)
                bound = BoundListener(name, inter_broker, context,
                                      cfg.principal_mapper(name) if context is not None and sasl is None else None,
                                      sasl)
                if context is None:
                    factory = (lambda b=bound: Connection(self, b))
                else:
                    factory = (lambda b=bound, c=context: tls.TlsProtocol(
                        c, Connection(self, b), b.name, self.tls_failures, TLS_HANDSHAKE_TIMEOUT_S, tls_receive))
                srv = await loop.create_server(factory, host or None, port, reuse_address=True, backlog=1024)
                self._servers.append(srv)
                ports.append(srv.sockets[0].getsockname()[1])
        except BaseException:
            for srv in self._servers:
                srv.close()
            self._servers = []
            raise
        self._sweeper = asyncio.ensure_future(self._sweep())
        return ports

    async def _sweep(self):
        interval = max(0.05, min(self.idle_ms, self.read_timeout_ms) / 4000.0)
        interval = min(interval, 1.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for c in list(self.connections):
                if c.partial_since is not None and not c._reading_paused and \
                        (now - c.partial_since) * 1000 > self.read_timeout_ms:
                    log.warning("closing connection from %s: request incomplete after %d ms "
                                "(pylog.request.read.timeout.ms)", c.peer, self.read_timeout_ms)
                    c.close()
                elif not c._pending and c.partial_since is None and \
                        (now - c.last_active) * 1000 > self.idle_ms:
                    log.info("closing idle connection from %s (connections.max.idle.ms=%d)", c.peer, self.idle_ms)
                    c.close()
                elif now - c.last_active > SHRINK_AFTER_S:
                    c.shrink_buffer()

    async def stop(self, grace: float = 2.0):
        self.stopping = True
        for srv in self._servers:
            srv.close()
        # A connection accepted just before its listener closed is made a few
        # loop turns later (asyncio: an accept task, then connection_made;
        # uvloop: connection_made soon after). Let those turns run, so that
        # it is in self.connections and closed below, or refused when made;
        # else it was open when the broker's loop closed, and its transport
        # and socket were reported unclosed in whatever test ran then.
        for _ in range(_ACCEPT_TURNS):
            await asyncio.sleep(0)
        if self._sweeper is not None:
            self._sweeper.cancel()
        # Let responses already being prepared go out, then close.
        deadline = time.monotonic() + grace
        while any(c._pending for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        tasks = []
        for c in list(self.connections):
            tasks.extend(item for _h, item in c._pending if isinstance(item, asyncio.Future))
            if c._drainer is not None:
                tasks.append(c._drainer)
            c.close()
        for t in tasks:
            t.cancel()
        # Let the cancelled tasks finish before the loop goes away.
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sweeper is not None:
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for srv in self._servers:
            await srv.wait_closed()


# Loop turns from an accept to its connection_made, with margin (asyncio takes 2).
_ACCEPT_TURNS = 8


def _quiet_accept_failures(loop):
    """asyncio answers accept() failing for want of descriptors (EMFILE/ENFILE)
    by pausing accepts for a second and trying again, which is what a broker
    needs; it also logs a traceback for every failed accept (up to the backlog
    per wake-up), and each schedules a retry that, once the server is closed,
    fails on the closed socket with another traceback. Log one line per episode
    instead, and drop the retries' failures after the close. (uvloop resets
    the waiting connections instead, and logs nothing.)"""
    previous = loop.get_exception_handler()
    if getattr(previous, "_pylog_accept", False):
        return
    last_warning = [-1e9]

    def handler(loop, context):
        exc = context.get("exception")
        if isinstance(exc, OSError) and context.get("message", "").startswith("socket.accept() out of"):
            now = time.monotonic()
            if now - last_warning[0] >= 10:
                last_warning[0] = now
                log.warning("cannot accept connections for now (%s); retrying", exc.strerror or exc)
            return
        callback = getattr(context.get("handle"), "_callback", None)
        if isinstance(exc, ValueError) and getattr(callback, "__name__", "") == "_start_serving":
            return  # a retry scheduled above, run after the server closed
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler._pylog_accept = True
    loop.set_exception_handler(handler)
