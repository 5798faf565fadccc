"""The README's SASL section works as written: its server.properties starts
`pylog broker`, its client properties file drives `pylog configs` with the
shown output, and the user it creates produces with confluent-kafka."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from brokerproc import BrokerProc

ck = pytest.importorskip("confluent_kafka")
README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def sasl_section():
    text = README.read_text()
    start = text.index("### SASL (`SASL_PLAINTEXT` and `SASL_SSL` listeners)")
    return text[start:text.index("\n#", start)]   # to the next heading


def test_readme_sasl_example(tmp_path):
    section = sasl_section()
    server, client = re.findall(r"```properties\n(.*?)```", section, re.S)
    commands = re.search(r"```\n(pylog configs.*?)```", section, re.S).group(1)
    (tmp_path / "server.properties").write_text(server)
    (tmp_path / "admin.properties").write_text(client)
    broker = BrokerProc(tmp_path / "data", "--config", str(tmp_path / "server.properties"))
    try:
        lines = commands.replace("\\\n", " ").splitlines()
        for command, expected in zip(lines[0::2], lines[1::2]):
            args = command.replace("127.0.0.1:9092", broker.bootstrap).replace(
                "admin.properties", str(tmp_path / "admin.properties"))
            argv = [a.strip("'") for a in re.findall(r"'[^']*'|\S+", args)]
            assert argv[0] == "pylog"
            r = subprocess.run([sys.executable, "-m", "pylog", *argv[1:]], capture_output=True, text=True,
                               timeout=120)
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == expected.strip()
        p = ck.Producer({"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                         "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "bob", "sasl.password": "bob-secret"})
        p.produce("readme-sasl", b"hello")
        assert p.flush(30) == 0
    finally:
        broker.stop()
