"""kcat (Debian's 1.7.1, linked against librdkafka 2.0.2, which mis-skips
tagged fields: KAFKA-NOTES §9.15) produces, consumes and lists metadata."""
import os
import shutil
import subprocess

import pytest

KCAT = shutil.which("kcat")
if KCAT is None and not os.environ.get("PYLOG_CI"):
    pytest.skip("kcat is not installed (.ci/run installs it)", allow_module_level=True)


def kcat(*args, stdin=None):
    assert KCAT, "kcat must be installed under CI"
    out = subprocess.run([KCAT, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_kcat_produce_consume_and_metadata(kafka_broker):
    b = str(kafka_broker)
    kcat("-b", b, "-t", "kc", "-P", "-K:", "-H", "h1=x", stdin="k1:hello\nk2:world\n")
    out = kcat("-b", b, "-t", "kc", "-C", "-e", "-f", "p=%p o=%o k=%k v=%s h=%h\n")
    assert out.splitlines() == ["p=0 o=0 k=k1 v=hello h=h1=x", "p=0 o=1 k=k2 v=world h=h1=x"]
    md = kcat("-b", b, "-L")
    assert f"broker {kafka_broker.broker.broker_id} at {b} (controller)" in md
    assert 'topic "kc" with 1 partitions' in md
