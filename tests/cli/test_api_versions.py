"""`pylog cluster api-versions` against a real broker: kafka-broker-api-versions.sh's
layout (NodeApiVersions.toString(true)), every advertised API with its range and the
usable version, UNSUPPORTED for the client APIs the broker does not serve."""
from __future__ import annotations

import re
import subprocess
import sys

from pylog.broker import api_versions as av
from pylog.cli.api_versions import CLIENT_APIS
from pylog.protocol.messages import REQUESTS
from pylog.testing import running_broker

LINE = re.compile(r"^\t(\w+)\((\d+)\): (?:(\d+)(?: to (\d+))? \[usable: (\d+)\]|UNSUPPORTED)$")


def test_every_api_line_matches_what_the_broker_advertises(tmp_path):
    with running_broker(tmp_path / "data") as b:
        r = subprocess.run([sys.executable, "-m", "pylog", "cluster", "api-versions", "--bootstrap-server", str(b)],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == f"127.0.0.1:{b.port} (id: 1 rack: null isFenced: false) -> ("
    assert lines[-2:] == [")", ""]
    body = lines[1:-2]
    assert all(x.endswith(",") for x in body[:-1]) and not body[-1].endswith(",")
    seen = {}
    for text in body:
        m = LINE.match(text.rstrip(","))
        assert m, text
        name, key = m.group(1), int(m.group(2))
        assert name == REQUESTS[key].__name__.removesuffix("Request")
        seen[key] = None if m.group(3) is None else (int(m.group(3)), int(m.group(4) or m.group(3)), int(m.group(5)))
    assert list(seen) == sorted(seen)
    served = {k: v for k, v in av.ADVERTISED.items() if k not in av.INTER_BROKER_APIS or k == av.WRITE_TXN_MARKERS}
    for key, (lo, hi) in served.items():
        assert seen[key] == (lo, hi, min(hi, REQUESTS[key].VALID_VERSIONS[1])), key
    assert {k for k, v in seen.items() if v is None} == set(CLIENT_APIS) - set(served)
