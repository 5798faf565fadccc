"""Kafka's RequestMetrics (kafka.network:type=RequestMetrics) and the
socket server's connection counts, measured around Connection._on_frame."""
from __future__ import annotations

import asyncio
import struct
import time
from collections import deque

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


class ApiTimes:
    """One API's request counts per version and its times in ms. Event-loop
    thread only."""

    __slots__ = ("versions", "count", "total_sum", "local_sum", "remote_sum", "total", "local", "remote")

    def __init__(self):
        self.versions: dict[int, int] = {}
        self.count = 0
        self.total_sum = self.local_sum = self.remote_sum = 0.0
        self.total = deque(maxlen=SAMPLES)
        self.local = deque(maxlen=SAMPLES)
        self.remote = deque(maxlen=SAMPLES)

    def done(self, local_ms: float, remote_ms: float) -> None:
        total_ms = local_ms + remote_ms
        self.count += 1
        self.total_sum += total_ms
        self.local_sum += local_ms
        self.remote_sum += remote_ms
        self.total.append(total_ms)
        self.local.append(local_ms)
        self.remote.append(remote_ms)

    def snapshot(self) -> dict:
        return {"versions": dict(self.versions), "count": self.count, "sums": (self.total_sum, self.local_sum,
                self.remote_sum), "samples": (list(self.total), list(self.local), list(self.remote))}


class RequestMetrics:
    """Requests per API and version (RequestsPerSec), their local time (the
    handler on the loop: decoding, the append or read, encoding), remote time
    (waiting in the purgatory: acks=all, a fetch's long poll, a coordinator
    write) and total time; connections accepted and open per listener
    (socket-server-metrics). Event-loop thread only: connection_made wraps a
    Connection's _on_frame, so nothing is timed when metrics are off."""

    def __init__(self):
        self.apis: dict = {}   # api key, or "FetchConsumer" / "FetchFollower" -> ApiTimes
        self.created: dict[str, int] = {}     # listener -> connections accepted
        self.open: dict[str, int] = {}        # listener -> connections open now

    def connection_made(self, conn) -> None:
        name = conn.listener.name
        self.created[name] = self.created.get(name, 0) + 1
        self.open[name] = self.open.get(name, 0) + 1
        conn._on_frame = self._timed(conn, conn._on_frame)

    def connection_lost(self, conn) -> None:
        self.open[conn.listener.name] -= 1

    def _timed(self, conn, on_frame):
        pending = conn._pending
        apis = self.apis
        clock = time.perf_counter

        def timed(frame):
            # Key and version first: frame may be a view of the receive
            # buffer, which the handler's answer may let the next read reuse.
            if len(frame) < 4:
                on_frame(frame)
                return
            key, version = _KEY_VERSION.unpack_from(frame, 0)
            # Kafka counts a Fetch twice: as Fetch and as FetchConsumer or FetchFollower.
            kind = fetch_kind(frame, version) if key == FETCH else None
            queued = len(pending)
            t0 = clock()
            on_frame(frame)
            t1 = clock()
            local_ms = (t1 - t0) * 1000.0
            apis_of = [_times(apis, key, version)]
            if kind is not None:
                apis_of.append(_times(apis, kind, version))
            if len(pending) > queued:
                item = pending[-1][1]
                if isinstance(item, asyncio.Future) and not item.done():
                    # Answered later (a purgatory wait, a coordinator write):
                    # its remote time ends when the answer is ready.
                    item.add_done_callback(lambda _f: _done(apis_of, local_ms, (clock() - t1) * 1000.0))
                    return
            _done(apis_of, local_ms, 0.0)
        return timed

    def snapshot(self) -> dict:
        return {"apis": {(k if type(k) is str else request_name(k)): a.snapshot() for k, a in self.apis.items()},
                "created": dict(self.created), "open": dict(self.open)}


def _times(apis, key, version) -> ApiTimes:
    api = apis.get(key)
    if api is None:
        api = apis[key] = ApiTimes()
    api.versions[version] = api.versions.get(version, 0) + 1
    return api


def _done(apis_of, local_ms, remote_ms):
    for api in apis_of:
        api.done(local_ms, remote_ms)
