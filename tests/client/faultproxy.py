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
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
