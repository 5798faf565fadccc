"""Fixtures of the console tests: the console for the kafka_broker
fixture's broker (a real broker, a real uvicorn on an ephemeral port), an
HTTP helper, and headless Chromium (Debian's `chromium`, which .ci/run
installs; without it the browser tests skip, except under CI, where that
is a failure). Screenshots go to tests/console/artifacts/ (or
$PYLOG_CONSOLE_ARTIFACTS)."""
from __future__ import annotations

import os
import pathlib
import urllib.error
import urllib.parse
import urllib.request

import pytest

ARTIFACTS = os.environ.get("PYLOG_CONSOLE_ARTIFACTS") or str(pathlib.Path(__file__).parent / "artifacts")

pytest.importorskip("starlette", reason="the console's extra is not installed")


class Http:
    """GET and POST (form-encoded) against the console, redirects followed;
    an error status is returned, not raised."""

    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, **query):
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        return self._open(urllib.request.Request(url))

    def post(self, path: str, form: dict):
        return self._open(urllib.request.Request(self.base + path, data=urllib.parse.urlencode(form).encode(),
                                                 method="POST"))

    @staticmethod
    def _open(req):
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode(), r.url
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.url


@pytest.fixture
def console(kafka_broker):
    from pylog.console.server import ConsoleServer
    server = ConsoleServer(kafka_broker.bootstrap, "127.0.0.1", 0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(console):
    return Http(console.url)


@pytest.fixture
def browser(request):
    from .cdp import Browser, chromium_path
    try:
        import websocket  # noqa: F401  (websocket-client, in requirements-dev.txt)
    except ImportError:
        pytest.fail("websocket-client is not installed (requirements-dev.txt)")
    if chromium_path() is None:
        if os.environ.get("PYLOG_CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    b = Browser(os.path.join(ARTIFACTS, request.node.name))
    try:
        yield b
    finally:
        b.close()
