"""`pylog delete-records` against a real broker: kafka-delete-records.sh's
JSON plan, lines and refusals; the records really go (a consumer from the
beginning starts at the new low watermark)."""
from __future__ import annotations

import json
import subprocess
import sys

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.cli.java_compat import java_hash_order, java_topic_partition_hash
from pylog.testing import running_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(tmp_path_factory.mktemp("data")) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})   # kept alive until the result is in
        admin.create_topics([NewTopic("dr", 3, 1)])["dr"].result(20)
        p = confluent_kafka.Producer({"bootstrap.servers": str(b), "linger.ms": 5})
        for part in range(3):
            for _ in range(10):
                p.produce("dr", b"v", partition=part)
        assert p.flush(30) == 0
        yield b


def delete_records(broker, tmp_path, plan):
    f = tmp_path / "plan.json"
    f.write_text(plan if isinstance(plan, str) else json.dumps(plan))
    return subprocess.run([sys.executable, "-m", "pylog", "delete-records", "--bootstrap-server", str(broker),
                           "--offset-json-file", str(f)], capture_output=True, text=True, timeout=60)


def test_records_below_the_offsets_are_deleted(broker, tmp_path):
    r = delete_records(broker, tmp_path, {"partitions": [
        {"topic": "dr", "partition": 0, "offset": 4}, {"topic": "dr", "partition": 2, "offset": -1},
        {"topic": "dr", "partition": 1, "offset": 99}, {"topic": "nope", "partition": 0, "offset": 1}],
        "version": 1})
    assert r.returncode == 0, r.stderr
    lines = {"dr-0": "low_watermark: 4", "dr-2": "low_watermark: 10",
             "dr-1": "error: org.apache.kafka.common.errors.OffsetOutOfRangeException: The requested offset "
                     "is not within the range of offsets maintained by the server.",
             "nope-0": "error: org.apache.kafka.common.errors.UnknownTopicOrPartitionException: This server "
                       "does not host this topic-partition."}
    order = java_hash_order([("dr", 0), ("dr", 2), ("dr", 1), ("nope", 0)], java_topic_partition_hash)
    assert r.stdout.splitlines() == ["Executing records delete operation", "Records delete operation completed:",
                                     *(f"partition: {t}-{p}\t{lines[f'{t}-{p}']}" for t, p in order)]
    c = confluent_kafka.Consumer({"bootstrap.servers": str(broker), "group.id": "dr-check",
                                  "auto.offset.reset": "earliest"})
    c.assign([confluent_kafka.TopicPartition("dr", 0, confluent_kafka.OFFSET_BEGINNING)])
    m = c.poll(20)
    c.close()
    assert m is not None and m.error() is None and m.offset() == 4


@pytest.mark.parametrize("plan, message", [
    ("{not json", "The input string is not a valid JSON"),
    ({"partitions": [], "version": 2}, "Not supported version field value 2"),
    ({"version": 1}, "Missing partitions field"),
    ({"partitions": [{"topic": "dr", "partition": 0, "offset": 1}, {"topic": "dr", "partition": 0, "offset": 2}]},
     "Offset json file contains duplicate topic partitions: dr-0"),
])
def test_bad_plans_are_refused(broker, tmp_path, plan, message):
    r = delete_records(broker, tmp_path, plan)
    assert (r.returncode, r.stdout) == (1, "") and r.stderr.startswith(message), r.stderr
