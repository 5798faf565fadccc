"""The Kafka-client sub-commands of `python -m pylog` (topics, produce,
consume, perf), run as subprocesses against a real in-process broker and
cross-checked with confluent-kafka.
"""
from __future__ import annotations

import re
import subprocess
import sys

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from pylog.__main__ import main as pylog_main
from pylog.cli.consume import FORMATTER_PROPERTIES, MessageFormatter
from pylog.cli.produce import READER_PROPERTIES, LineReader
from pylog.client.partitioner import partition_for_key
from pylog.client.records import ConsumedRecord
from pylog.testing import running_broker


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "data") as b:
        yield b


def pylog(broker, *args, input=None, check=True):
    """Run `python -m pylog ARGS --bootstrap-server BROKER`; returns the CompletedProcess."""
    out = subprocess.run([sys.executable, "-m", "pylog", *args, "--bootstrap-server", str(broker)],
                         input=input, capture_output=True, timeout=60, check=False)
    if check:
        assert out.returncode == 0, (args, out.stdout.decode(), out.stderr.decode())
    return out


def confluent_consume(broker, topic, count):
    """count records of topic read by confluent-kafka (a group-less assign from offset 0)."""
    admin = AdminClient({"bootstrap.servers": str(broker)})
    parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
    c = confluent_kafka.Consumer({"bootstrap.servers": str(broker), "group.id": "check",
                                  "enable.auto.commit": False})
    c.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in parts])
    got = []
    try:
        while len(got) < count:
            batch = c.consume(count - len(got), timeout=10)
            assert batch, f"confluent-kafka got {len(got)} of {count} records"
            for m in batch:
                assert m.error() is None, m.error()
                got.append(m)
    finally:
        c.close()
    return got


def test_help_of_every_sub_command(capsys):
    for cmd in (["topics", "create"], ["topics", "list"], ["topics", "describe"], ["topics", "delete"],
                ["topics", "alter"], ["produce"], ["consume"], ["perf", "produce"], ["perf", "consume"]):
        with pytest.raises(SystemExit) as e:
            pylog_main([*cmd, "--help"])
        assert e.value.code == 0, cmd
        assert "--bootstrap-server" in capsys.readouterr().out, cmd


def test_topics_create_list_describe_alter_delete(broker):
    out = pylog(broker, "topics", "create", "--topic", "orders", "--partitions", "3",
                "--replication-factor", "1", "--config", "retention.ms=123456")
    assert out.stdout.decode() == "Created topic orders.\n"
    again = pylog(broker, "topics", "create", "--topic", "orders", "--partitions", "3", check=False)
    assert again.returncode == 1 and b"TOPIC_ALREADY_EXISTS" in again.stderr
    pylog(broker, "topics", "create", "--topic", "orders", "--partitions", "3", "--if-not-exists")
    pylog(broker, "topics", "create", "--topic", "other")
    assert pylog(broker, "topics", "list").stdout.decode().split() == ["orders", "other"]

    admin = AdminClient({"bootstrap.servers": str(broker)})
    leader = admin.list_topics("orders", timeout=10).topics["orders"].partitions[0].leader
    lines = pylog(broker, "topics", "describe", "--topic", "orders").stdout.decode().splitlines()
    assert re.fullmatch(r"Topic: orders(\tTopicId: \S+)?\tPartitionCount: 3\tReplicationFactor: 1\t"
                        r"Configs: retention.ms=123456", lines[0]), lines[0]
    assert lines[1:] == [f"\tTopic: orders\tPartition: {p}\tLeader: {leader}\tReplicas: {leader}\t"
                         f"Isr: {leader}\tElr: N/A\tLastKnownElr: N/A" for p in range(3)]
    # Only topics with a config off Kafka's default, their topic line alone.
    assert [x.split("\t")[0] for x in pylog(broker, "topics", "describe", "--topics-with-overrides")
            .stdout.decode().splitlines()] == ["Topic: orders"]
    # One replica, always in sync: nothing under-replicated or unavailable.
    for flag in ("--under-replicated-partitions", "--unavailable-partitions"):
        assert pylog(broker, "topics", "describe", flag).stdout.decode() == ""

    pylog(broker, "topics", "alter", "--topic", "orders", "--partitions", "5",
          "--config", "segment.bytes=1048576")
    md = admin.list_topics("orders", timeout=10).topics["orders"]
    assert sorted(md.partitions) == [0, 1, 2, 3, 4]
    res = ConfigResource("topic", "orders")
    entries = admin.describe_configs([res])[res].result(10)
    # The existing override survives: alter merges before its AlterConfigs.
    assert entries["retention.ms"].value == "123456" and entries["segment.bytes"].value == "1048576"
    first = pylog(broker, "topics", "describe", "--topic", "orders").stdout.decode().splitlines()[0]
    assert "PartitionCount: 5" in first and "retention.ms=123456" in first and "segment.bytes=1048576" in first

    pylog(broker, "topics", "alter", "--topic", "orders", "--delete-config", "retention.ms")
    assert admin.describe_configs([res])[res].result(10)["retention.ms"].is_default

    pylog(broker, "topics", "delete", "--topic", "orders")
    assert pylog(broker, "topics", "list").stdout.decode().split() == ["other"]
    assert "orders" not in admin.list_topics(timeout=10).topics
    gone = pylog(broker, "topics", "describe", "--topic", "orders", check=False)
    assert (gone.returncode, gone.stderr) == (1, b"Error: Topic 'orders' does not exist as expected\n")


def test_produce_stdin_then_consume_with_keys_and_headers(broker):
    pylog(broker, "topics", "create", "--topic", "lines", "--partitions", "4")
    lines = [b"h1:a,h2:b\tuser1:hello", b"\tuser2:world", b"h1:c\tuser1:again", b"h3\tNULL:no key",
             b"\tuser3:NULL"]
    pylog(broker, "produce", "--topic", "lines", "--property", "parse.key=true", "--property",
          "key.separator=:", "--property", "parse.headers=true", "--property", "null.marker=NULL",
          "--compression", "lz4", input=b"\n".join(lines) + b"\n")

    out = pylog(broker, "consume", "--topic", "lines", "--from-beginning", "--max-messages", "5",
                "--print-key", "--print-headers", "--print-partition", "--print-offset")
    assert b"Processed a total of 5 messages" in out.stderr
    printed = out.stdout.decode().splitlines()
    assert len(printed) == 5
    p1, p2, p3 = (partition_for_key(k, 4) for k in (b"user1", b"user2", b"user3"))
    # Records of one partition come out in produce order; user1's two are 0 and 1 there.
    assert [line for line in printed if line.startswith(f"Partition:{p1}\t") and "user1" in line] == [
        f"Partition:{p1}\tOffset:0\th1:a,h2:b\tuser1\thello", f"Partition:{p1}\tOffset:1\th1:c\tuser1\tagain"]
    without_offsets = {re.sub(r"\tOffset:\d+", "", line) for line in printed}
    assert f"Partition:{p2}\tNO_HEADERS\tuser2\tworld" in without_offsets
    assert f"Partition:{p3}\tNO_HEADERS\tuser3\tnull" in without_offsets
    assert any(line.endswith("\th3:null\tnull\tno key") for line in without_offsets)

    # confluent-kafka reads the same records, and its murmur2 partitioner puts
    # the keys where pylog's did.
    got = confluent_consume(broker, "lines", 5)
    seen = {(m.key(), m.value(), tuple(m.headers() or ())) : m.partition() for m in got}
    assert seen[(b"user1", b"hello", (("h1", b"a"), ("h2", b"b")))] == p1
    assert (None, b"no key", (("h3", None),)) in seen
    assert (b"user3", None, ()) in seen
    p = confluent_kafka.Producer({"bootstrap.servers": str(broker), "partitioner": "murmur2_random"})
    where = {}
    for key in (b"user1", b"user2", b"user3"):
        p.produce("lines", key=key, value=b"x",
                  on_delivery=lambda err, msg: where.__setitem__(msg.key(), msg.partition()))
    assert p.flush(10) == 0
    assert where == {k: partition_for_key(k, 4) for k in (b"user1", b"user2", b"user3")}


def test_consume_one_partition_from_an_offset_and_timeout(broker):
    pylog(broker, "topics", "create", "--topic", "seq", "--partitions", "2")
    p = confluent_kafka.Producer({"bootstrap.servers": str(broker), "linger.ms": 0})
    for i in range(10):
        p.produce("seq", value=b"m%d" % i, partition=1, timestamp=1700000000000 + i)
    assert p.flush(10) == 0
    out = pylog(broker, "consume", "--topic", "seq", "--partition", "1", "--offset", "7",
                "--timeout-ms", "700", "--print-offset", "--print-timestamp")
    assert out.stdout.decode().splitlines() == [
        f"CreateTime:{1700000000000 + i}\tOffset:{i}\tm{i}" for i in (7, 8, 9)]
    latest = pylog(broker, "consume", "--topic", "seq", "--partition", "1", "--offset", "latest",
                   "--timeout-ms", "300")
    assert latest.stdout == b"" and b"Processed a total of 0 messages" in latest.stderr
    # One batch of three; start inside it and stop inside it.
    pylog(broker, "produce", "--topic", "seq", "--partition", "0", input=b"a\nb\nc\n")
    mid = pylog(broker, "consume", "--topic", "seq", "--partition", "0", "--offset", "1",
                "--max-messages", "1", "--print-offset")
    assert mid.stdout == b"Offset:1\tb\n"
    bad = pylog(broker, "consume", "--topic", "seq", "--offset", "3", check=False)
    assert bad.returncode != 0 and b"--partition" in bad.stderr


def test_perf_produce_and_consume_print_kafka_lines(broker):
    pylog(broker, "topics", "create", "--topic", "perf", "--partitions", "3")
    out = pylog(broker, "perf", "produce", "--topic", "perf", "--num-records", "1200", "--record-size", "64",
                "--throughput", "1500", "--reporting-interval", "300", "--batch-size", "4096")
    lines = out.stdout.decode().splitlines()
    num = r"\d+(\.\d+)?"
    window = re.compile(rf"\d+ records sent, {num} records/sec \({num} MB/sec\), {num} ms avg latency, "
                        rf"{num} ms max latency\.")
    final = re.compile(r"1200 records sent, \d+\.\d{6} records/sec \(\d+\.\d\d MB/sec\), \d+\.\d\d ms avg "
                       r"latency, \d+\.\d\d ms max latency, \d+ ms 50th, \d+ ms 95th, \d+ ms 99th, "
                       r"\d+ ms 99\.9th\.")
    assert final.fullmatch(lines[-1]), lines[-1]
    assert lines[:-1] and all(window.fullmatch(line) for line in lines[:-1]), lines
    rate = float(lines[-1].split(", ")[1].split()[0])
    assert 900 < rate < 1600, lines[-1]  # --throughput is honoured

    fast = pylog(broker, "perf", "produce", "--topic", "perf", "--num-records", "20000", "--record-size", "64",
                 "--throughput", "-1", "--acks", "1")
    assert fast.stdout.decode().splitlines()[-1].startswith("20000 records sent, ")
    admin = AdminClient({"bootstrap.servers": str(broker)})
    assert len(admin.list_topics("perf", timeout=10).topics["perf"].partitions) == 3
    c = confluent_kafka.Consumer({"bootstrap.servers": str(broker), "group.id": "wm"})
    try:
        total = sum(c.get_watermark_offsets(confluent_kafka.TopicPartition("perf", p), timeout=10)[1]
                    for p in range(3))
    finally:
        c.close()
    assert total == 21200

    out = pylog(broker, "perf", "consume", "--topic", "perf", "--messages", "21200")
    header, line = out.stdout.decode().splitlines()
    assert header == ("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
                      "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")
    cols = line.split(", ")
    assert len(cols) == 10 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3}", cols[0])
    assert cols[2] == f"{21200 * 64 / 1048576:.4f}" and cols[4] == "21200"
    short = pylog(broker, "perf", "consume", "--topic", "perf", "--messages", "30000", "--timeout", "500",
                  check=False)
    assert short.returncode == 1 and b"WARNING: Exiting before consuming" in short.stderr


# --- the tools' pure parts --------------------------------------------------------

def test_line_reader_follows_kafka_console_producer():
    r = LineReader({**READER_PROPERTIES, "parse.key": True, "parse.headers": True})
    assert r.parse(b"a:1,b\tk\tv\tw", 1) == (b"k", b"v\tw", [("a", b"1"), ("b", None)])
    with pytest.raises(ValueError, match="line number 2"):
        r.parse(b"no-delimiter", 2)
    lenient = LineReader({**READER_PROPERTIES, "parse.key": True, "ignore.error": True})
    assert lenient.parse(b"just a value", 3) == (None, b"just a value", [])


def test_message_formatter_follows_kafka_default_formatter():
    rec = ConsumedRecord(2, 7, 1234, "CreateTime", None, b"v", (("h", b"x"), ("n", None)))
    every = {**FORMATTER_PROPERTIES, "print.timestamp": True, "print.partition": True,
             "print.offset": True, "print.headers": True, "print.key": True}
    assert MessageFormatter(every).format(rec) == b"CreateTime:1234\tPartition:2\tOffset:7\th:x,n:null\tnull\tv\n"
    assert MessageFormatter(FORMATTER_PROPERTIES).format(rec) == b"v\n"
    no_value = {**FORMATTER_PROPERTIES, "print.key": True, "print.value": False, "null.literal": "-"}
    assert MessageFormatter(no_value).format(rec) == b"-"


# ---- Kafka's client options (issue 14) ------------------------------------------


@pytest.fixture
def group_broker(tmp_path):
    from pylog.testing import FAST_GROUP_CONFIG
    with running_broker(tmp_path / "data", config=FAST_GROUP_CONFIG) as b:
        yield b


def test_console_consumer_with_group_commits_offsets(group_broker):
    """--group makes it a member that resumes from, and commits, the group's
    offsets: two runs of --max-messages 3 read six different records."""
    from pylog.client import Client
    b = group_broker
    pylog(b, "topics", "create", "--topic", "g", "--partitions", "2")
    pylog(b, "produce", "--topic", "g", "--property", "parse.key=true", "--property", "key.separator=:",
          input=b"".join(b"k%d:v%d\n" % (i % 2, i) for i in range(8)))
    first = pylog(b, "consume", "--topic", "g", "--group", "console", "--from-beginning",
                  "--max-messages", "3").stdout.split()
    with Client(str(b)) as c:
        assert sum(c.committed_offsets("console").values()) == 3
    second = pylog(b, "consume", "--topic", "g", "--consumer-property", "group.id=console",
                   "--max-messages", "3").stdout.split()
    assert len(first) == len(second) == 3 and not set(first) & set(second)
    with Client(str(b)) as c:
        assert sum(c.committed_offsets("console").values()) == 6
    out = pylog(b, "consume", "--topic", "g", "--group", "a", "--partition", "0", check=False)
    assert out.returncode != 0 and b"--group and --partition cannot be used together" in out.stderr


def test_client_settings_from_properties_and_files_and_security_refused(group_broker, tmp_path):
    b = group_broker
    cfg = tmp_path / "consumer.properties"
    cfg.write_text("group.id=from-file\nauto.offset.reset=earliest\n")
    pylog(b, "produce", "--topic", "f", "--producer-property", "acks=1", "--producer-property",
          "compression.type=lz4", input=b"a\nb\n")
    assert pylog(b, "consume", "--topic", "f", "--consumer.config", str(cfg),
                 "--max-messages", "2").stdout == b"a\nb\n"
    prod = tmp_path / "producer.properties"
    prod.write_text("linger.ms=1\nacks=all\n")
    pylog(b, "produce", "--topic", "f", "--producer.config", str(prod), input=b"c\n")
    pylog(b, "perf", "produce", "--topic", "f", "--num-records", "10", "--record-size", "5",
          "--producer.config", str(prod))
    admin = tmp_path / "admin.properties"
    admin.write_text("client.id=admin-tool\n")
    assert b"f" in pylog(b, "topics", "list", "--command-config", str(admin)).stdout.split()
    # TLS keys pylog's client lacks are refused by name, known ones without
    # security.protocol=SSL too (TLS itself: tests/security/test_pylog_clients_tools.py)
    out = pylog(b, "consume", "--topic", "f", "--consumer-property", "ssl.engine.factory.class=x", check=False)
    assert out.returncode != 0 and b"security settings are not supported" in out.stderr, out.stderr
    out = pylog(b, "produce", "--topic", "f", "--producer-property", "ssl.keystore.location=/k", input=b"x\n",
                check=False)
    assert out.returncode != 0 and b"set security.protocol=SSL" in out.stderr, out.stderr
    # SASL keys without security.protocol=SASL_PLAINTEXT would not authenticate:
    # refused by name (SASL itself: tests/security/test_sasl_cli.py)
    out = pylog(b, "perf", "produce", "--topic", "f", "--num-records", "1", "--record-size", "1",
                "--producer-props", "sasl.mechanism=PLAIN", check=False)
    assert out.returncode != 0 and b"set security.protocol=SASL_PLAINTEXT" in out.stderr, out.stderr
    admin.write_text("sasl.jaas.config=x\n")
    out = pylog(b, "topics", "list", "--command-config", str(admin), check=False)
    assert out.returncode != 0 and b"sasl.jaas.config set with security.protocol=PLAINTEXT" in out.stderr
    # A key a tool does not honour is refused by name, not ignored.
    out = pylog(b, "perf", "produce", "--topic", "f", "--num-records", "1", "--record-size", "1",
                "--producer-props", "buffer.memory=1", check=False)
    assert out.returncode != 0 and b"'buffer.memory' is not supported" in out.stderr


def test_perf_consume_with_group_commits(group_broker):
    from pylog.client import Client
    b = group_broker
    pylog(b, "perf", "produce", "--topic", "pc", "--num-records", "500", "--record-size", "10")
    out = pylog(b, "perf", "consume", "--topic", "pc", "--messages", "500", "--group", "perf").stdout
    assert out.decode().splitlines()[1].split(", ")[4] == "500"
    with Client(str(b)) as c:
        assert sum(c.committed_offsets("perf").values()) == 500


def test_perf_tools_print_their_summary_on_ctrl_c(broker):
    import signal
    for args, first_line in (
            (["produce", "--topic", "cc", "--num-records", "100000000", "--record-size", "10",
              "--throughput", "2000", "--reporting-interval", "200"], b"records sent"),
            (["consume", "--topic", "cc", "--messages", "100000000", "--timeout", "600000"],
             b"start.time")):
        p = subprocess.Popen([sys.executable, "-m", "pylog", "perf", *args, "--bootstrap-server", str(broker)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert first_line in p.stdout.readline()
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=60)
        finally:
            p.kill()
        assert p.returncode == 130, err
        if args[0] == "produce":
            assert re.search(rb"\d+ records sent, .* ms 99\.9th\.\n$", out), out
        else:
            assert len(out.decode().strip().split(", ")) == 10, out
