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


def group_part_way(bootstrap: str, topic: str, group: str, records: int, partitions: int = 2, **conf):
    """`records` records produced round-robin over the topic's partitions,
    then a confluent-kafka consumer of group reads at least a fifth of them
    and commits what it read. Returns (consumer, {topic-partition: expected
    lag as the page prints it}); the caller closes the consumer."""
    import confluent_kafka

    from pylog.testing import wait_until
    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
    for i in range(records):
        p.produce(topic, value=b'{"i": %d}' % i, partition=i % partitions)
    assert p.flush(30) == 0
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    try:
        c.subscribe([topic])
        got = []
        wait_until(lambda: got.extend(m for m in [c.poll(0.5)] if m is not None and not m.error())
                   or len(got) >= records // 5, timeout=60, what=f"{records // 5} records")
        c.commit(asynchronous=False)
    except BaseException:
        c.close()
        raise
    per_partition = records // partitions
    lags = {f"{topic}-{p}": "-" for p in range(partitions)}
    for m in got:
        lags[f"{topic}-{m.partition()}"] = str(per_partition - (m.offset() + 1))
    return c, lags
