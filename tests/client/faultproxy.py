"""A TCP proxy between a client and a broker that cuts connections on purpose.

The broker advertises the proxy's address (advertised.listeners), so every
connection a client opens after the bootstrap goes through it too. The proxy
forwards bytes both ways and, when told, kills a connection at the worst
moment for a producer: after a request went to the broker and before its
response comes back, so the broker has appended a batch that the client
never hears about (the case idempotence exists for).

Thread-safety: start()/stop()/the counters may be used from the test's
thread while the pump threads run.
"""
from __future__ import annotations

import collections
import socket
import threading


class FaultProxy:
    def __init__(self, target_port: int, listen_port: int = 0, host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self._listener = socket.create_server((host, listen_port))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._cut_every = 0            # cut the connection carrying every Nth response
        self._responses = 0
        self.cuts = 0
        self._stopped = False
        self._conns: list[socket.socket] = []
        self._flowing = threading.Event()
        self._flowing.set()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="faultproxy")

    @staticmethod
    def reserve_port(host: str = "127.0.0.1") -> int:
        with socket.socket() as s:
            s.bind((host, 0))
            return s.getsockname()[1]

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def cut_every(self, n: int) -> None:
        """From now on, drop every nth broker -> client chunk together with
        its connection (0 = never)."""
        with self._lock:
            self._cut_every = n
            self._responses = 0

    def hold(self, held: bool = True) -> None:
        """Hold back (True) or let through (False) everything the broker
        sends: requests still reach it, answers wait in the proxy."""
        if held:
            self._flowing.clear()
        else:
            self._flowing.set()

    def stop(self) -> None:
        self._stopped = True
        self._flowing.set()
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _should_cut(self) -> bool:
        with self._lock:
            if not self._cut_every:
                return False
            self._responses += 1
            if self._responses % self._cut_every == 0:
                self.cuts += 1
                return True
            return False

    def _pump(self, src: socket.socket, dst: socket.socket, from_broker: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                if from_broker:
                    self._flowing.wait()
                    if self._should_cut():
                        break   # the response is lost with the connection
                dst.sendall(data)
        except OSError:
            pass
        _close_pair(src, dst)


def _close_pair(src: socket.socket, dst: socket.socket) -> None:
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


class AnswerHoldingProxy(FaultProxy):
    """A FaultProxy that reads Kafka's frames and, when told, holds back the
    answers to one api key (hold_answers) while every other answer flows.
    Kafka answers in request order, so an answer held holds the later ones
    of its connection too. held counts the answers waiting whose client is
    still connected: a client that gives up on one (its request timeout)
    closes the connection, and the answer is dropped.

    requests: {api key: requests seen}. Thread-safety: as FaultProxy."""

    def __init__(self, target_port: int, listen_port: int = 0, host: str = "127.0.0.1"):
        super().__init__(target_port, listen_port, host)
        self._release = threading.Condition(self._lock)
        self._held_key: int | None = None
        self._asked: dict[socket.socket, dict[int, int]] = {}   # client socket -> {correlation id: api key}
        self.requests: collections.Counter = collections.Counter()
        self.held = 0

    def hold_answers(self, api_key: int | None) -> None:
        """Hold the answers to api_key from now on; None lets them all go."""
        with self._lock:
            self._held_key = api_key
            self._release.notify_all()

    def stop(self) -> None:
        self.hold_answers(None)
        super().stop()

    def _pump(self, src: socket.socket, dst: socket.socket, from_broker: bool) -> None:
        client = dst if from_broker else src
        with self._lock:
            asked = self._asked.setdefault(client, {})
        buf = bytearray()
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                buf += data
                while len(buf) >= 4:
                    end = 4 + int.from_bytes(buf[:4], "big")
                    if len(buf) < end:
                        break
                    frame = bytes(buf[:end])
                    del buf[:end]
                    if from_broker:
                        self._wait_if_held(client, asked.pop(int.from_bytes(frame[4:8], "big"), None))
                    else:
                        key = int.from_bytes(frame[4:6], "big")
                        with self._lock:
                            asked[int.from_bytes(frame[8:12], "big")] = key
                            self.requests[key] += 1
                    dst.sendall(frame)
        except OSError:
            pass
        with self._lock:
            self._asked.pop(client, None)   # tells a held answer its client is gone
            self._release.notify_all()
        _close_pair(src, dst)

    def _wait_if_held(self, client: socket.socket, api_key: int | None) -> None:
        with self._lock:
            if api_key is None or api_key != self._held_key:
                return
            self.held += 1
            try:
                while self._held_key == api_key and client in self._asked and not self._stopped:
                    self._release.wait()
            finally:
                self.held -= 1
