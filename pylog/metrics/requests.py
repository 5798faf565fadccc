"""Kafka's RequestMetrics (kafka.network:type=RequestMetrics) and the
socket server's connection counts, measured around a Connection's request
path (broker/server.py).

A request's phases, as Kafka's RequestChannel names them, in pylog's asyncio
server (one event loop; a connection's answers go out in request order):

  RequestQueueTimeMs   from the read that completed the frame to its handler
                       starting: the requests before it in the same read, or
                       reading paused (a quota's throttle, too many answers
                       queued) while the frame sat in the receive buffer.
  LocalTimeMs          the handler running on the loop: the call that decodes,
                       handles and encodes, plus each later step of an answer
                       given by a coroutine.
  RemoteTimeMs         from the handler starting to its answer being ready,
                       less the local time: waiting in the purgatory (acks=all,
                       a fetch's long poll, a coordinator write), for a
                       rebalance or the controller, for its turn on the loop.
  ThrottleTimeMs       the quota throttle the answer carries (the connection
                       is muted for it once the answer is on its way, as in
                       Kafka since KIP-219: not part of the total).
  ResponseQueueTimeMs  from the answer being ready to its write starting: the
                       other requests of the same read, or an earlier answer
                       still awaited (answers go out in order).
  ResponseSendTimeMs   from the write to the transport having passed the last
                       byte on to the socket (its write buffer drained that
                       far). A fetch's segment bytes sent by sendfile(2) at
                       once after the header count as sent with the header.
  TotalTimeMs          from the read to the answer sent: the sum of the above
                       but the throttle.

Timestamps are time.monotonic() (the clock Connection.last_active, the read's
time, is taken with). Nothing here runs when metrics are off: the collector
wraps a Connection's _on_frame and _mute and puts _TimedTransport in front
of its transport when the connection is made, and sets its step_timer (the
one hook in server.py)."""
from __future__ import annotations

import asyncio
import struct
from collections import deque
from time import monotonic as clock

from ..protocol.messages import REQUESTS

_KEY_VERSION = struct.Struct(">hh")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
FETCH = 1

# Yammer's default histogram reservoir (what Kafka's *TimeMs histograms
# report percentiles of): the newest 1028 samples here, no decay.
SAMPLES = 1028


def request_name(key: int) -> str:
    """Kafka's ApiKeys name of an API key ("Produce", "OffsetCommit"), the
    request label of RequestMetrics."""
    name = REQUESTS.class_name(key)
    return name.removesuffix("Request") if name else f"Unknown{key}"


def fetch_kind(frame, version: int) -> str:
    """Kafka's second RequestMetrics name of a Fetch: "FetchFollower" when a
    replica sent it, else "FetchConsumer". The replica id is the body's
    first field up to v14 (after the header's client id and, from v12, its
    tagged fields); from v15 it moved into a tagged ReplicaState that only
    KRaft followers send (pylog's followers fetch with v11): a consumer."""
    try:
        if version >= 15:
            return "FetchConsumer"
        n = _I16.unpack_from(frame, 8)[0]
        off = 10 + max(n, 0)
        if version >= 12:
            count, off = _uvarint(frame, off)
            for _ in range(count):
                _tag, off = _uvarint(frame, off)
                size, off = _uvarint(frame, off)
                off += size
        return "FetchFollower" if _I32.unpack_from(frame, off)[0] >= 0 else "FetchConsumer"
    except (struct.error, IndexError):
        return "FetchConsumer"   # malformed: the handler refuses it; counted as a consumer's


def _uvarint(buf, off):
    value = shift = 0
    while True:
        b = buf[off]
        off += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, off
        shift += 7
        if shift > 28:
            raise IndexError("varint too long")


# The JMX exporter's family names of the phases above, in the order of
# ApiTimes' sums and samples.
PHASES = (("totaltimems", "TotalTimeMs"), ("requestqueuetimems", "RequestQueueTimeMs"),
          ("localtimems", "LocalTimeMs"), ("remotetimems", "RemoteTimeMs"), ("throttletimems", "ThrottleTimeMs"),
          ("responsequeuetimems", "ResponseQueueTimeMs"), ("responsesendtimems", "ResponseSendTimeMs"))

# A response not sent at once is looked at again after this, doubling up to
# the cap: the send time of a slow reader's answer is known to within it.
SEND_CHECK_FIRST_S = 0.001
SEND_CHECK_MAX_S = 0.016


class ApiTimes:
    """One API's request counts per version and its phase times in ms (PHASES
    order). Event-loop thread only."""

    __slots__ = ("versions", "count", "sums", "samples")

    def __init__(self):
        self.versions: dict[int, int] = {}
        self.count = 0
        self.sums = [0.0] * len(PHASES)
        self.samples = tuple(deque(maxlen=SAMPLES) for _ in PHASES)

    def done(self, times) -> None:
        self.count += 1
        sums = self.sums
        for i, t in enumerate(times):
            sums[i] += t
            self.samples[i].append(t)

    def snapshot(self) -> dict:
        return {"versions": dict(self.versions), "count": self.count, "sums": tuple(self.sums),
                "samples": tuple(list(d) for d in self.samples)}


class RequestMetrics:
    """Requests per API and version (RequestsPerSec) and their phase times
    (above); connections accepted and open per listener
    (socket-server-metrics). Event-loop thread only."""

    def __init__(self):
        self.apis: dict = {}   # api key, or "FetchConsumer" / "FetchFollower" -> ApiTimes
        self.created: dict[str, int] = {}     # listener -> connections accepted
        self.open: dict[str, int] = {}        # listener -> connections open now
        self.timers: dict = {}                # Connection -> _ConnectionTimer

    def connection_made(self, conn) -> None:
        name = conn.listener.name
        self.created[name] = self.created.get(name, 0) + 1
        self.open[name] = self.open.get(name, 0) + 1
        self.timers[conn] = _ConnectionTimer(self.apis, conn)

    def connection_lost(self, conn) -> None:
        self.open[conn.listener.name] -= 1
        timer = self.timers.pop(conn, None)
        if timer is not None:
            timer.close()

    def snapshot(self) -> dict:
        # An answer the client may already have read is counted: each
        # connection's transport is looked at now rather than at its next check.
        for timer in list(self.timers.values()):
            if timer.written_unsent:
                timer.check_sent()
        return {"apis": {(k if type(k) is str else request_name(k)): a.snapshot() for k, a in self.apis.items()},
                "created": dict(self.created), "open": dict(self.open)}


class _Request:
    """One request's timestamps (clock() seconds) while it is in flight."""

    __slots__ = ("apis", "read", "start", "loop_s", "ready", "write", "sent", "end", "throttle_ms", "queued",
                 "stepped")

    def __init__(self, apis, read, start):
        self.apis = apis
        self.read = read
        self.start = start
        self.loop_s = 0.0
        self.ready = self.write = self.sent = None
        self.end = 0              # the transport byte count that ends its answer
        self.throttle_ms = 0
        self.queued = False       # its answer went into Connection._pending
        self.stepped = False      # a coroutine answers it, timed step by step


class _ConnectionTimer:
    """Times one connection's requests through their phases. Answers leave
    in request order, and each request adds at most one entry to the
    connection's _pending, so a write carries the ready answers of the
    requests at the head of `unwritten` up to the first one still pending.
    Event-loop thread only."""

    def __init__(self, apis, conn):
        self.apis = apis
        self.conn = conn
        self.current = None       # the request whose handler call is running
        self.stepping = None      # the request whose coroutine step is running
        self.unwritten = deque()  # requests answered later or gathered for one write, in order
        self.queued_unwritten = 0
        self.written_unsent = deque()  # written, the transport still holding part of the answer
        self.last = None          # the request the latest write began (a chunked answer's next writes)
        self.written = 0          # bytes given to the transport's write
        self.check = None         # the timer handle of the next send check
        self.delay = SEND_CHECK_FIRST_S
        self.transport = conn.transport
        self._write = conn.transport.write
        self._on_frame = conn._on_frame
        self._mute = conn._mute
        conn._on_frame = self.on_frame
        conn._mute = self.mute
        conn.transport = _TimedTransport(conn.transport, self.write)
        conn.step_timer = self.steps

    def close(self):
        """The connection is gone: what it still owed answers to is counted
        as answered now (Kafka counts a response dropped for a closed
        channel too), so every request read is counted once."""
        if self.check is not None:
            self.check.cancel()
            self.check = None
        now = clock()
        for rs in (self.written_unsent, self.unwritten):
            while rs:
                r = rs.popleft()
                if r.ready is None:
                    r.ready = now
                if r.write is None:
                    r.write = now
                if r.sent is None:
                    r.sent = now
                self._finish(r)
        self.queued_unwritten = 0
        self.last = None

    # ---- the wrapped request path ----

    def on_frame(self, frame):
        # Key and version first: frame may be a view of the receive buffer,
        # which the handler's answer may let the next read reuse.
        if len(frame) < 4:
            self._on_frame(frame)
            return
        key, version = _KEY_VERSION.unpack_from(frame, 0)
        apis = [_times(self.apis, key, version)]
        if key == FETCH:   # Kafka counts a Fetch twice: as Fetch and as FetchConsumer or FetchFollower
            apis.append(_times(self.apis, fetch_kind(frame, version), version))
        conn = self.conn
        pending = conn._pending
        queued = len(pending)
        out = conn._out
        gathered = len(out) if out is not None else 0
        t0 = clock()
        r = _Request(apis, min(conn.last_active, t0), t0)
        self.current = r
        try:
            self._on_frame(frame)
        finally:
            self.current = None
        t1 = clock()
        r.loop_s += t1 - t0
        if r.write is not None:
            return   # answered within the call (written: see write)
        if len(pending) > queued:
            r.queued = True
            self.queued_unwritten += 1
            self.unwritten.append(r)
            item = pending[-1][1]
            if not isinstance(item, asyncio.Future) or item.done():
                r.ready = t1
            elif not r.stepped:   # (a large request served off the loop)
                item.add_done_callback(lambda _f: _set_ready(r))
        elif out is not None and len(out) > gathered:
            r.ready = t1
            self.unwritten.append(r)
        else:
            # No answer (acks=0, or the connection closed): done now.
            r.ready = r.write = r.sent = t1
            self._finish(r)

    def steps(self, coro):
        """The coroutine answering the current request, timed step by step
        (Connection.step_timer)."""
        r = self.current
        if r is None:
            return coro
        r.stepped = True
        return _stepped(coro, r, self)

    def mute(self, ms):
        r = self.current or self.stepping or (self.unwritten[0] if self.unwritten else None)
        if r is not None and ms > r.throttle_ms:
            r.throttle_ms = ms
        self._mute(ms)

    def write(self, data):
        self._write(data)
        now = clock()
        self.written += len(data)
        # Queued answers already taken off _pending are the ones written now.
        may = self.queued_unwritten - len(self.conn._pending)
        unwritten = self.unwritten
        began = None
        while unwritten:
            r = unwritten[0]
            if r.queued:
                if may <= 0:
                    break
                may -= 1
                self.queued_unwritten -= 1
            elif r.ready is None:
                break
            unwritten.popleft()
            if r.ready is None:   # (its future's callback has not run yet)
                r.ready = now
            r.write = now
            self.written_unsent.append(r)
            began = r
        r = self.current
        if r is not None and r.write is None and not self.conn._pending:
            # The running handler's own answer, written at once.
            r.ready = r.write = now
            self.written_unsent.append(r)
            began = r
        if began is not None:
            self.last = began
        elif self.last is not None and self.last.end:
            began = self.last     # the next part of a chunked answer
        if began is None:
            return
        began.end = self.written
        began.sent = None
        if self.transport.get_write_buffer_size() == 0:
            # Stamped in order: the unstamped ones are the newest.
            for r in reversed(self.written_unsent):
                if r.sent is not None:
                    break
                r.sent = now
        if self.check is None:
            self.delay = SEND_CHECK_FIRST_S
            self.check = asyncio.get_running_loop().call_soon(self._check)

    # ---- send completion ----

    def _check(self):
        self.check = None
        self.check_sent()
        if self.written_unsent and self.check is None and not self.conn.closed:
            self.check = asyncio.get_running_loop().call_later(self.delay, self._check)
            self.delay = min(self.delay * 2, SEND_CHECK_MAX_S)

    def check_sent(self):
        """Finish the requests whose answers the transport has passed on."""
        if self.conn.closed:
            self.close()
            return
        sent_upto = self.written - self.transport.get_write_buffer_size()
        now = clock()
        ws = self.written_unsent
        while ws and ws[0].end <= sent_upto:
            r = ws.popleft()
            if r is self.last:
                self.last = None
            if r.sent is None:
                r.sent = now
            self._finish(r)

    def _finish(self, r):
        r.end = 0
        handled = r.ready - r.start
        local = min(r.loop_s, handled)
        times = ((r.sent - r.read) * 1000.0, (r.start - r.read) * 1000.0, local * 1000.0,
                 (handled - local) * 1000.0, float(r.throttle_ms), max(r.write - r.ready, 0.0) * 1000.0,
                 max(r.sent - r.write, 0.0) * 1000.0)
        for api in r.apis:
            api.done(times)


class _TimedTransport:
    """A connection's transport with its writes seen by the connection's
    timer (uvloop's transports, in C, cannot have write replaced)."""

    def __init__(self, transport, on_write):
        self._transport = transport
        self.write = on_write
        self.get_write_buffer_size = transport.get_write_buffer_size
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading

    def __getattr__(self, name):
        return getattr(self._transport, name)


def _set_ready(r):
    if r.ready is None:
        r.ready = clock()


async def _stepped(coro, r, timer):
    return await _Steps(coro, r, timer)


class _Steps:
    """Awaits a coroutine, adding the time each of its steps runs on the
    loop (not the time it waits) to its request's local time; the request's
    answer is ready when it returns."""

    __slots__ = ("coro", "r", "timer")

    def __init__(self, coro, r, timer):
        self.coro, self.r, self.timer = coro, r, timer

    def __await__(self):
        coro, r, timer = self.coro, self.r, self.timer
        send, exc = None, None
        while True:
            timer.stepping = r
            t0 = clock()
            try:
                waited = coro.send(send) if exc is None else coro.throw(exc)
            except StopIteration as stop:
                _last_step(r, timer, t0)
                return stop.value
            except BaseException:
                _last_step(r, timer, t0)
                raise
            r.loop_s += clock() - t0
            timer.stepping = None
            try:
                send, exc = (yield waited), None
            except BaseException as e:  # noqa: BLE001 - handed to the coroutine, as await would
                send, exc = None, e


def _last_step(r, timer, t0):
    t1 = clock()
    r.loop_s += t1 - t0
    r.ready = t1
    timer.stepping = None


def _times(apis, key, version) -> ApiTimes:
    api = apis.get(key)
    if api is None:
        api = apis[key] = ApiTimes()
    api.versions[version] = api.versions.get(version, 0) + 1
    return api
