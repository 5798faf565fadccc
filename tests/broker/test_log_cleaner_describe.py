"""`pylog topics describe` shows the log cleaner's view of a compacted topic
(issue 16 point 6), from a real broker over DescribeLogDirs' pylog tagged
field 7004: before any round the dirty ratio is above 0 and there is no last
cleaning; after a round the line names it (bytes read and written, records
kept). Other topics' lines stay exactly kafka-topics'."""
from __future__ import annotations

import re
import subprocess
import sys
import uuid

from confluent_kafka.admin import AdminClient

from pylog.client.wire import Connection
from pylog.protocol.messages import DescribeLogDirsRequest
from pylog.protocol.pylog_tags import cleaner_state_of
from pylog.testing import running_broker

from .test_log_cleaner import FAST, alter, create_topic, produce, wait_for

COLUMN = re.compile(r"\t(\w+): (\S+)")


def describe(broker, topic) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pylog", "topics", "describe", "--topic", topic,
                          "--bootstrap-server", broker.bootstrap], capture_output=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stderr == b"", out.stderr.decode()
    return out.stdout.decode().splitlines()


def columns(line: str) -> dict[str, str]:
    return dict(COLUMN.findall(line))


def test_describe_shows_dirty_ratio_then_the_last_round():
    with running_broker(config=FAST) as b:
        # Never cleaned at ratio 1 (the ratio must exceed it): first the dirty state.
        topic = create_topic(b, {"cleanup.policy": "compact", "segment.bytes": "4096",
                                 "min.cleanable.dirty.ratio": "1"})
        plain = create_topic(b, {"segment.bytes": "4096"})
        pairs = [(b"k%d" % (i % 10), b"v%05d" % i) for i in range(600)]
        produce(b, topic, pairs)
        produce(b, plain, pairs)
        leader = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(topic, timeout=10) \
            .topics[topic].partitions[0].leader

        lines = describe(b, topic)
        assert lines[1].startswith(f"\tTopic: {topic}\tPartition: 0\tLeader: {leader}\tReplicas: {leader}\t"
                                   f"Isr: {leader}\tElr: N/A\tLastKnownElr: N/A\tDirtyRatio: "), lines
        before = columns(lines[1])
        assert float(before["DirtyRatio"]) > 0, lines
        assert before["FirstDirtyOffset"] == "0" and before["LastCleaning"] == "none", lines

        # A topic without compact: kafka-topics' line, nothing added.
        assert describe(b, plain)[1:] == [f"\tTopic: {plain}\tPartition: 0\tLeader: {leader}\t"
                                          f"Replicas: {leader}\tIsr: {leader}\tElr: N/A\tLastKnownElr: N/A"]

        alter(b, topic, {"min.cleanable.dirty.ratio": "0.01"})
        b.broker.log_cleaner.wake()
        after = wait_for(lambda: (c := columns(describe(b, topic)[1]))["LastCleaning"] != "none" and c,
                         "cleaning round in describe")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", after["LastCleaning"]), after
        assert int(after["FirstDirtyOffset"]) > 0, after
        assert int(after["BytesRead"]) > int(after["BytesWritten"]) > 0, after
        # 10 keys: each kept once in the cleaned part.
        assert 10 <= int(after["RecordsKept"]) < int(after["RecordsRead"]) <= 600, after
        assert float(after["DirtyRatio"]) < float(before["DirtyRatio"]), (before, after)


def test_describe_log_dirs_tag_only_from_v2_and_only_on_compacted_logs():
    with running_broker(config={**FAST, "log.cleaner.enable": "false"}) as b:
        topic = create_topic(b, {"cleanup.policy": "compact", "segment.bytes": "4096"})
        plain = create_topic(b, {})
        produce(b, topic, [(b"k%d" % (i % 3), b"v" * 50) for i in range(200)])
        produce(b, plain, [(b"k", b"v")])
        host, port = b.bootstrap.rsplit(":", 1)
        conn = Connection(host, int(port), f"t-{uuid.uuid4().hex[:6]}", 30)
        try:
            for version in range(5):
                resp = conn.request(DescribeLogDirsRequest(topics=None), api_version=version)
                got = {(t.name, p.partition_index): cleaner_state_of(p)
                       for r in resp.results for t in r.topics for p in t.partitions}
                assert got[(plain, 0)] is None
                if version < 2:
                    assert got[(topic, 0)] is None  # no tagged fields before the flexible versions
                    continue
                st = got[(topic, 0)]
                # log.cleaner.enable=false: measured all the same, never cleaned.
                assert st["dirty_ratio"] > 0 and st["first_dirty_offset"] == 0, st
                assert st["state"] == "idle" and st["last_round"] is None, st
                assert st["first_uncleanable_offset"] > 0, st
        finally:
            conn.close()
