"""The README's examples, run as written, in the order a reader meets them.

Every ```python and ```sh block of README.md is executed, top to bottom, in one
scratch directory, against one broker started for the test on a free port
whose data directory is ./data there (so `pylog dump-log data/orders-0/...`
finds what the examples wrote). The only change made to the text is the
bootstrap address, as the README says: "127.0.0.1:9092" becomes the test
broker's address, and each `pylog` tool command of a sh block gets
`--bootstrap-server ADDR` appended. Python blocks run in a fresh interpreter
each (a block that defines `test_*` functions is run by pytest, as a user's
test file would be); sh blocks run with bash, with .venv's `pylog` first on
PATH. Indented code (make targets, the cluster commands) is not executed.
"""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from pylog.testing import running_broker

pytest.importorskip("confluent_kafka")

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```(python|sh)\n(.*?)^```", re.M | re.S)
# The tools that talk to a broker; `pylog dump-log`, `broker`, `cluster` do not.
_TOOL = re.compile(r"(\bpylog (?:topics|produce|consume|perf|groups|log-dirs|get-offsets|delete-records|cluster api-versions|verifiable-producer|verifiable-consumer|configs|leader-election)\b[^|;&]*)")


def readme_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(text)]


def for_bootstrap(kind: str, code: str, bootstrap: str) -> str:
    code = code.replace("127.0.0.1:9092", bootstrap)
    if kind == "sh":
        lines = []
        for line in code.splitlines():
            line = re.sub(r"\s+#.*$", "", line)
            lines.append(_TOOL.sub(lambda m: m.group(1).rstrip() + f" --bootstrap-server {bootstrap} ",
                                   line))
        code = "\n".join(lines) + "\n"
    return code


def test_the_substitution_touches_only_the_address():
    assert (for_bootstrap("sh", "printf 'a\\n' | pylog produce --topic t   # note\npylog dump-log x",
                          "H:1")
            == "printf 'a\\n' | pylog produce --topic t --bootstrap-server H:1 \npylog dump-log x\n")
    assert for_bootstrap("python", 'P("127.0.0.1:9092")', "H:1") == 'P("H:1")'


def test_readme_examples_run_as_written(tmp_path):
    blocks = readme_blocks(README.read_text())
    assert sum(k == "python" for k, _ in blocks) >= 5 and sum(k == "sh" for k, _ in blocks) >= 2
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    with running_broker(tmp_path / "data") as bootstrap:
        for i, (kind, code) in enumerate(blocks):
            code = for_bootstrap(kind, code, bootstrap)
            if kind == "sh":
                cmd = ["bash", "-euo", "pipefail", "-c", code]
            elif "def test_" in code:
                path = tmp_path / f"test_readme_block_{i}.py"
                path.write_text(code)
                cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
            else:
                cmd = [sys.executable, "-c", code]
            r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
            assert r.returncode == 0, f"README block {i} ({kind}) failed:\n{code}\n{r.stdout}\n{r.stderr}"
            if "print(" in code and "def test_" not in code:
                assert r.stdout.strip(), f"README block {i} printed nothing:\n{code}"
            assert "<memory at" not in r.stdout, f"README block {i} printed a memoryview:\n{r.stdout}"


def test_the_wire_versions_list_is_the_advertised_table():
    """The README's list of API versions says exactly what ApiVersions
    advertises: every API of pylog/broker/api_versions.py with its range, and
    no API the broker does not advertise."""
    from pylog.broker import api_versions as av

    text = README.read_text()
    start = text.index("What it does on the wire")
    section = text[start:text.index("Produce batches are validated", start)]
    listed = {}
    for name, lo, hi in re.findall(r"\b([A-Z][A-Za-z]+) (\d+)-(\d+)\b", section):
        listed.setdefault(name, (int(lo), int(hi)))
    camel = {v: "".join(w.capitalize() for w in k.split("_"))
             for k, v in vars(av).items() if k.isupper() and isinstance(v, int)}
    advertised = {camel[key]: rng for key, rng in av.ADVERTISED.items()}
    assert listed == advertised
