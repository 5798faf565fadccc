"""`pylog broker` as a process: config file and overrides, SIGTERM stops it
cleanly (logs flushed and closed, exit 0), and after SIGKILL every
acknowledged message is still there when it comes back."""
import os
import signal
import socket
import subprocess
import sys

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from brokerproc import BrokerProc

from pylog.testing import free_port


def produce(bootstrap, topic, n, start=0):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2})
    acked = []
    for i in range(start, start + n):
        p.produce(topic, b"m%d" % i, key=b"k%d" % (i % 7),
                  on_delivery=lambda e, msg: acked.append(msg.value()) if e is None else None)
    assert p.flush(30) == 0
    return acked


def consume_all(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "proc-test", "enable.auto.commit": False})
    lo_hi = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)]
    total = sum(hi - lo for lo, hi in lo_hi)
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    for _ in range(200):
        if len(got) >= total:
            break
        got += [m.value() for m in c.consume(1000, 0.5) if m.error() is None]
    c.close()
    return got


def test_config_file_overrides_and_sigterm(tmp_path):
    props = tmp_path / "server.properties"
    props.write_text("# a Kafka server.properties\nnum.partitions=4\nlog.retention.hours=1\n"
                     "log.segment.bytes=1048576\n")
    port = free_port()
    b = BrokerProc(tmp_path / "data", "--config", str(props), "--override", "log.retention.hours=2",
                   "--broker-id", "7", port=port)
    try:
        acked = produce(b.bootstrap, "cfg", 500)
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        md = admin.list_topics(timeout=10)
        assert len(md.topics["cfg"].partitions) == 4          # from the file
        assert md.controller_id == 7 and list(md.brokers) == [7]
        res = ConfigResource(ConfigResource.Type.TOPIC, "cfg")
        cfg = admin.describe_configs([res])[res].result(10)
        assert cfg["retention.ms"].value == str(2 * 3600000)  # the override wins
        assert cfg["segment.bytes"].value == "1048576"
    finally:
        code, err = b.signal(signal.SIGTERM)
    assert code == 0, err
    assert "logs flushed and closed" in err
    for p in range(4):
        assert os.path.exists(tmp_path / "data" / f"cfg-{p}" / ".kafka_cleanshutdown")
    b = BrokerProc(tmp_path / "data", "--broker-id", "7", port=port)
    try:
        assert sorted(consume_all(b.bootstrap, "cfg", 4)) == sorted(acked)
    finally:
        code, err = b.signal(signal.SIGINT)  # Ctrl-C stops it cleanly too
    assert code == 0, err
    assert "recover" not in err.lower()  # a clean shutdown needs no recovery


def test_sigkill_loses_no_acknowledged_message(tmp_path):
    port = free_port()
    b = BrokerProc(tmp_path / "data", overrides=["num.partitions=3"], port=port)
    acked = produce(b.bootstrap, "crash", 3000)
    b.signal(signal.SIGKILL)
    b = BrokerProc(tmp_path / "data", port=port)
    try:
        got = consume_all(b.bootstrap, "crash", 3)
        more = produce(b.bootstrap, "crash", 10, start=3000)
        assert sorted(consume_all(b.bootstrap, "crash", 3)) == sorted(acked + more)
    finally:
        b.signal(signal.SIGTERM)
    assert sorted(got) == sorted(acked)


def test_bad_config_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path),
                          "--port", "0", "--override", "num.partitions=many"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "num.partitions" in out.stderr and "many" in out.stderr


@pytest.mark.parametrize("key, value, least", [("log.retention.check.interval.ms", "0", 1),
                                               ("log.retention.check.interval.ms", "-5", 1),
                                               ("log.flush.offset.checkpoint.interval.ms", "-1", 0)])
def test_housekeeping_intervals_out_of_kafkas_range_are_refused(tmp_path, key, value, least):
    # Kafka's ConfigDef ranges (atLeast(1), atLeast(0)): a retention check
    # every 0 ms made the housekeeping task spin on the loop.
    out = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path),
                          "--port", "0", "--override", f"{key}={value}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert f"Invalid value {value} for configuration {key}: Value must be at least {least}" in out.stderr


@pytest.mark.parametrize("args", [["--help"], ["broker", "--help"]])
def test_help(args):
    out = subprocess.run([sys.executable, "-m", "pylog", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "usage" in out.stdout.lower()


def test_idle_connections_are_closed_and_busy_ones_kept(tmp_path):
    import time

    from pylog.testing import running_broker
    with running_broker(tmp_path / "d", config={"connections.max.idle.ms": "300"}) as b:
        # Closed by the broker (recv answers b""; a socket timeout would
        # raise), and not before connections.max.idle.ms.
        idle = socket.create_connection(("127.0.0.1", b.port), timeout=120)
        t0 = time.monotonic()
        assert idle.recv(1) == b""
        assert time.monotonic() - t0 >= 0.3
        idle.close()
        # A producer that keeps sending is never idle for that long.
        p = Producer({"bootstrap.servers": str(b), "linger.ms": 0})
        for i in range(15):
            p.produce("busy", b"%d" % i)
            p.flush(30)
            time.sleep(0.1)
        assert p.flush(30) == 0


def test_min_insync_replicas_above_the_isr_refuses_acks_all_only(tmp_path):
    # One broker: the ISR is 1. As in Kafka, acks=all then gets NOT_ENOUGH_REPLICAS
    # and nothing is appended, while acks=1 writes go on.
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic

    from pylog.testing import running_broker
    with running_broker(tmp_path / "d") as b:
        admin = AdminClient({"bootstrap.servers": str(b)})
        admin.create_topics([NewTopic("mi", 1, 1, config={"min.insync.replicas": "2"})])["mi"].result(10)
        errs = []
        p = Producer({"bootstrap.servers": str(b), "acks": "all", "retries": 0, "message.timeout.ms": 3000})
        p.produce("mi", b"x", on_delivery=lambda e, m: errs.append(e))
        p.flush(10)
        assert errs and errs[0] is not None and errs[0].code() == KafkaError.NOT_ENOUGH_REPLICAS
        assert b.broker.log_manager.partitions[("mi", 0)].log_end_offset == 0
        p1 = Producer({"bootstrap.servers": str(b), "acks": "1"})
        p1.produce("mi", b"y")
        assert p1.flush(10) == 0
        assert b.broker.log_manager.partitions[("mi", 0)].log_end_offset == 1
