"""Errors a newcomer meets first name the limit, the setting or the broker
involved (issue 14): a too-large message, a data directory that is a file, a
produce to a missing topic. The controller being down: tests/test_cli_cluster.py."""
from __future__ import annotations

import subprocess
import sys

import pytest

import pylog
from pylog import errors
from pylog.testing import running_broker


def _pylog(*args, input=None):
    return subprocess.run([sys.executable, "-m", "pylog", *args], input=input, capture_output=True,
                          timeout=120)


def test_message_too_large_names_the_limit_and_the_keys_that_raise_it():
    with running_broker() as b:
        with pylog.Producer(b) as p:
            h = p.send("big", b"x" * 2_000_000)
            with pytest.raises(errors.RecordTooLargeError) as ei:
                h.get(30)
    text = str(ei.value)
    assert "max.message.bytes=1048588" in text and "message.max.bytes" in text, text


def test_a_data_dir_that_is_a_file_says_so(tmp_path):
    f = tmp_path / "data"
    f.write_text("not a directory")
    r = _pylog("broker", "--data-dir", str(f), "--port", "0")
    assert r.returncode == 1
    assert f"the data directory {f} is a file, not a directory".encode() in r.stderr, r.stderr


def test_console_producer_says_the_topic_does_not_exist():
    with running_broker(config={"auto.create.topics.enable": "false"}) as b:
        r = _pylog("produce", "--bootstrap-server", b, "--topic", "nope", input=b"a\n")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "topic 'nope' does not exist" in err and "auto.create.topics.enable=false" in err, err
    assert "pylog topics create --topic nope" in err
