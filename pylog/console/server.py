"""Serving the console: uvicorn on a socket bound here, in the foreground
(`pylog console`) or on a thread of its own (a broker with
pylog.console.listener, tests). Its event loop is its own: a broker's loop
never runs the console, whose pages wait on blocking client calls."""
from __future__ import annotations

import socket
import threading
import time

__all__ = ["ConsoleServer", "bind"]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: an ephemeral port)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _name, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ConsoleServer:
    """The console app for bootstrap, served on host:port."""

    def __init__(self, bootstrap: str, host: str = "127.0.0.1", port: int = 8080,
                 request_timeout_ms: int = 30000, log_level: str = "warning"):
        import uvicorn

        from .app import create_app
        self.app = create_app(bootstrap, request_timeout_ms)
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level=log_level, access_log=False,
                                                     loop="asyncio", lifespan="on"))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve until SIGINT/SIGTERM (uvicorn's handlers, main thread only)."""
        try:
            self._server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def start(self, timeout: float = 30.0) -> "ConsoleServer":
        self._thread = threading.Thread(target=self.serve_forever, name="pylog-console", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the console did not start on {self.url}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the console did not start on {self.url} within {timeout:g} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


async def start_broker_console(listener: str, bootstrap: str) -> ConsoleServer:
    """A broker's console (pylog.console.listener = "host:port"), started
    from its loop: binding and waiting for uvicorn happen on a worker
    thread, so the broker's loop keeps serving (the console's first client
    requests come to it)."""
    import asyncio
    host, sep, port = listener.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"pylog.console.listener must be host:port, not {listener!r}")
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ValueError(f"pylog.console.listener is set but the console's packages are missing "
                         f"(pip install 'pylog[console]'): {e}") from None
    loop = asyncio.get_running_loop()
    server = await loop.run_in_executor(None, lambda: ConsoleServer(bootstrap, host.strip("[]"), int(port)))
    await loop.run_in_executor(None, server.start)
    return server
