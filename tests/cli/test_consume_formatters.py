"""`pylog consume --formatter`: Kafka's formatter classes against a real broker.
The coordinator formatters read the internal topics as Kafka 4's do (one JSON
object per record, no line separator)."""
from __future__ import annotations

import json
import subprocess
import sys

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.testing import running_broker

PKG = "org.apache.kafka.tools.consumer."


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(tmp_path_factory.mktemp("data")) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})   # kept alive until the result is in
        admin.create_topics([NewTopic("fmt", 1, 1)])["fmt"].result(20)
        p = confluent_kafka.Producer({"bootstrap.servers": str(b)})
        for i in range(3):
            p.produce("fmt", b"v%d" % i, key=b"k%d" % i, timestamp=1_700_000_000_000 + i)
        assert p.flush(30) == 0
        c = confluent_kafka.Consumer({"bootstrap.servers": str(b), "group.id": "fmt-group"})
        c.commit(offsets=[confluent_kafka.TopicPartition("fmt", 0, 2)], asynchronous=False)
        c.close()
        yield b


def consume(broker, *args):
    return subprocess.run([sys.executable, "-m", "pylog", "consume", "--bootstrap-server", str(broker),
                           "--from-beginning", "--timeout-ms", "3000", *args],
                          capture_output=True, text=True, timeout=120)


def test_default_noop_and_logging_formatters(broker):
    r = consume(broker, "--topic", "fmt", "--formatter", PKG + "DefaultMessageFormatter",
                "--formatter-property", "print.key=true", "--formatter-property", "print.delivery=true")
    assert r.stdout.splitlines() == [f"Delivery:NOT_PRESENT\tk{i}\tv{i}" for i in range(3)], r.stderr
    r = consume(broker, "--topic", "fmt", "--formatter", "kafka.tools.NoOpMessageFormatter", "--max-messages", "3")
    assert (r.returncode, r.stdout) == (0, "") and "Processed a total of 3 messages" in r.stderr
    r = consume(broker, "--topic", "fmt", "--formatter", PKG + "LoggingMessageFormatter", "--max-messages", "1")
    assert r.stdout == "v0\n"
    assert "INFO CreateTime:1700000000000, key:k0, value:v0 (org.apache.kafka.tools.consumer." \
           "LoggingMessageFormatter)" in r.stderr


def test_formatter_config_file_and_unknown_class(broker, tmp_path):
    f = tmp_path / "fmt.properties"
    f.write_text("print.offset=true\nkey.separator=|\n")
    r = consume(broker, "--topic", "fmt", "--formatter-config", str(f), "--property", "print.key=true",
                "--max-messages", "1")
    assert r.stdout == "Offset:0|k0|v0\n", r.stderr
    r = consume(broker, "--topic", "fmt", "--formatter", "com.example.Fancy")
    assert r.returncode != 0 and "not a formatter pylog has" in r.stderr


def test_offsets_formatter_reads_consumer_offsets(broker):
    r = consume(broker, "--topic", "__consumer_offsets", "--formatter", PKG + "OffsetsMessageFormatter")
    assert r.returncode == 0, r.stderr
    objs = [json.loads(x) for x in r.stdout.replace("}{", "}\n{").splitlines()]
    commit = next(o for o in objs if o["key"]["data"].get("group") == "fmt-group")
    assert commit["key"] == {"type": 1, "data": {"group": "fmt-group", "topic": "fmt", "partition": 0}}
    assert commit["value"]["data"]["offset"] == 2
    # Group metadata only through its own formatter.
    assert all(o["key"]["type"] in (0, 1) for o in objs)
