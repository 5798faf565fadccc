"""`pylog get-offsets` against a real broker, its lines compared with what
kafka-get-offsets.sh prints (topic:partition:offset, sorted by the
"topic-partition" string, partitions without an answer left out)."""
from __future__ import annotations

import subprocess
import sys
import time

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.testing import running_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(tmp_path_factory.mktemp("data")) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        for f in admin.create_topics([NewTopic("orders", 12, 1), NewTopic("logs", 2, 1)]).values():
            f.result(20)
        p = confluent_kafka.Producer({"bootstrap.servers": str(b), "linger.ms": 5})
        base = int(time.time() * 1000) - 100_000
        for part in range(12):
            for i in range(part + 1):       # partition n holds n + 1 records
                p.produce("orders", b"v", partition=part, timestamp=base + 1000 * i)
        p.produce("logs", b"x", partition=1, timestamp=base)
        assert p.flush(30) == 0
        b.base_ts = base
        yield b


def get_offsets(broker, *args):
    return subprocess.run([sys.executable, "-m", "pylog", "get-offsets", "--bootstrap-server", str(broker), *args],
                          capture_output=True, text=True, timeout=60)


def test_latest_offsets_of_a_topic_regex_in_kafka_order(broker):
    r = get_offsets(broker, "--topic", "ord.*")
    assert r.returncode == 0, r.stderr
    # Sorted as Kafka sorts: orders-10 and orders-11 between orders-1 and orders-2.
    assert r.stdout.splitlines() == [f"orders:{p}:{p + 1}" for p in (0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9)]


def test_partitions_time_specs_and_rules(broker):
    r = get_offsets(broker, "--topic", "orders", "--partitions", "3,5", "--time", "earliest")
    assert r.stdout.splitlines() == ["orders:3:0", "orders:5:0"], r.stderr
    r = get_offsets(broker, "--topic", "orders", "--partitions", "4", "--time", "-3")   # max-timestamp
    assert r.stdout.splitlines() == ["orders:4:4"], r.stderr
    # A timestamp: the first offset at or after it; a partition without one is left out.
    r = get_offsets(broker, "--topic", "orders", "--partitions", "0,3", "--time", str(broker.base_ts + 2000))
    assert r.stdout.splitlines() == ["orders:3:2"], r.stderr
    r = get_offsets(broker, "--topic-partitions", "logs:1,orders:2-4,:11-", "--exclude-internal-topics")
    assert r.stdout.splitlines() == ["logs:1:1", "orders:11:12", "orders:2:3", "orders:3:4"], r.stderr


def test_internal_topics_are_included_unless_excluded(broker):
    c = confluent_kafka.Consumer({"bootstrap.servers": str(broker), "group.id": "g"})
    c.commit(offsets=[confluent_kafka.TopicPartition("logs", 0, 0)], asynchronous=False)
    c.close()
    assert "__consumer_offsets:" in get_offsets(broker, "--topic", "__consumer_offsets").stdout
    r = get_offsets(broker, "--topic", "__consumer_offsets", "--exclude-internal-topics")
    assert (r.returncode, r.stderr) == (1, "Error occurred: Could not match any topic-partitions with the "
                                           "specified filters\n")


@pytest.mark.parametrize("args, message", [
    (["--topic", "orders", "--topic-partitions", "orders:1"],
     "--topic-partitions cannot be used with --topic or --partitions"),
    (["--topic", "orders", "--partitions", "1,x"],
     "--partitions expects a comma separated list of numeric partition ids, but received: 1,x"),
    (["--time", "yesterday"], "Malformed time argument yesterday."),
    (["--topic-partitions", "orders:x"], "Invalid rule specification: orders:x"),
    (["--topic", "nothing-like-this"], "Could not match any topic-partitions with the specified filters"),
])
def test_bad_options_are_refused_as_kafka_refuses_them(broker, args, message):
    r = get_offsets(broker, *args)
    assert r.returncode == 1 and r.stderr.startswith(f"Error occurred: {message}"), r.stderr
