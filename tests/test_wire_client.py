"""pylog.client against a real in-process broker (pylog.testing.running_broker),
cross-checked with confluent-kafka where it has the same view.

Also the client's pure parts: Kafka's murmur2 (Java's test vectors) and the
reading of fetched batches (partial tail, offsets inside a batch).
"""
from __future__ import annotations

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from pylog import _engine
from pylog.client import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, Client, Connection
from pylog.client.partitioner import murmur2, partition_for_key
from pylog.client.records import consumed_records, next_fetch_offset, whole_batches
from pylog.errors import CorruptRecordError, PylogError
from pylog.testing import running_broker


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "data") as b:
        yield b


@pytest.fixture
def client(broker):
    with Client(broker.bootstrap) as c:
        yield c


def test_handshake_picks_the_highest_common_version(broker):
    host, port = broker.bootstrap.rsplit(":", 1)
    with Connection(host, int(port)) as conn:
        assert conn.api_versions[18][1] >= 3
        # min(our max, broker max) for each api the tools use
        for key, ours in {0: 7, 1: 11, 2: 9, 3: 12, 19: 4, 20: 3, 37: 1, 32: 2, 33: 1}.items():
            assert conn.version_for(key) == min(ours, conn.api_versions[key][1])
        with pytest.raises(PylogError) as e:
            conn.version_for(11)  # JoinGroup: not in this client's table
        assert e.value.error_code == 35


def test_produce_fetch_list_offsets_round_trip(client):
    client.create_topics("rt", partitions=2, replication_factor=1)
    client.wait_for_leaders("rt")
    err, base = client.produce("rt", 1, _engine.encode_batch([b"a", b"b", b"c"], keys=[b"k", None, b"k"],
                                                             headers=[[("h", b"1")], [], []]))
    assert (err, base) == (0, 0)
    err, base = client.produce("rt", 1, _engine.encode_batch([b"d", b"e"]))
    assert (err, base) == (0, 3)
    assert client.list_offsets("rt", 1, EARLIEST_TIMESTAMP) == 0
    assert client.list_offsets("rt", 1, LATEST_TIMESTAMP) == 5
    assert client.list_offsets("rt", 0, LATEST_TIMESTAMP) == 0

    err, hw, lso, records = client.fetch("rt", 1, 1)
    assert (err, hw, lso) == (0, 5, 0)
    got = list(consumed_records(1, records, 1))  # offset 1 lies inside the first batch
    assert [(r.offset, bytes(r.value)) for r in got] == [(1, b"b"), (2, b"c"), (3, b"d"), (4, b"e")]
    assert got[1].key is not None and bytes(got[1].key) == b"k" and got[0].key is None
    assert next_fetch_offset(records, 1) == 5

    err, hw, _lso, records = client.fetch("rt", 1, 5, max_wait_ms=10)
    assert (err, hw, len(whole_batches(records))) == (0, 5, 0)


def test_records_from_confluent_are_read_back(client, broker):
    client.create_topics("cf", partitions=1)
    client.wait_for_leaders("cf")
    p = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "lz4",
                                  "linger.ms": 5})
    for i in range(20):
        p.produce("cf", value=b"v%d" % i, key=b"k%d" % i, headers=[("n", str(i).encode())], partition=0)
    assert p.flush(10) == 0
    err, hw, _lso, records = client.fetch("cf", 0, 0)
    assert (err, hw) == (0, 20)
    got = list(consumed_records(0, records, 0))
    assert [(bytes(r.key), bytes(r.value), [(k, bytes(v)) for k, v in r.headers]) for r in got] == \
        [(b"k%d" % i, b"v%d" % i, [("n", str(i).encode())]) for i in range(20)]


def test_pipelined_requests_come_back_in_order(client):
    client.create_topics("pipe", partitions=1)
    client.wait_for_leaders("pipe")
    conn = client.connection(client.leader_for("pipe", 0))
    reqs = [client.produce_request("pipe", 0, _engine.encode_batch([b"x"] * 3)) for _ in range(10)]
    # acks=0 in the middle: no answer, and the stream must stay aligned after it
    reqs.insert(5, client.produce_request("pipe", 0, _engine.encode_batch([b"y"]), acks=0))
    cids = [conn.send(r) for r in reqs]
    assert cids[5] is None and conn.in_flight == 10
    bases = [conn.receive().responses[0].partition_responses[0].base_offset for _ in range(10)]
    assert bases == sorted(bases) and len(set(bases)) == 10
    assert client.list_offsets("pipe", 0, LATEST_TIMESTAMP) == 31


def test_errors_carry_the_broker_code(client):
    client.create_topics("dup", partitions=1)
    with pytest.raises(PylogError) as e:
        client.create_topics("dup", partitions=1)
    assert e.value.error_code == 36 and "TOPIC_ALREADY_EXISTS" in str(e.value)
    with pytest.raises(PylogError) as e:
        client.produce("no-such-topic", 0, _engine.encode_batch([b"x"]))
    assert e.value.error_code == 3
    with pytest.raises(PylogError) as e:
        client.create_partitions("dup", 1)  # shrinking is not allowed
    assert e.value.error_code == 37


def test_delete_records_moves_log_start_offset(client):
    client.create_topics("dr", partitions=1)
    client.wait_for_leaders("dr")
    for _ in range(3):
        assert client.produce("dr", 0, _engine.encode_batch([b"r"] * 4))[0] == 0
    assert client.delete_records("dr", {0: 8}) == {0: 8}
    assert client.list_offsets("dr", 0, EARLIEST_TIMESTAMP) == 8
    err, _hw, lso, _records = client.fetch("dr", 0, 2)
    assert err == 1 and lso == 8  # OFFSET_OUT_OF_RANGE


def test_configs_round_trip_and_alter_replaces_the_set(client, broker):
    client.create_topics("cfg", partitions=1, configs={"retention.ms": "123456"})
    assert client.dynamic_configs("cfg") == {"retention.ms": "123456"}
    client.alter_configs("cfg", {"segment.bytes": "1048576"})
    assert client.dynamic_configs("cfg") == {"segment.bytes": "1048576"}  # AlterConfigs is not incremental
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource("topic", "cfg")
    entries = admin.describe_configs([res])[res].result(10)
    assert entries["segment.bytes"].value == "1048576"
    assert entries["retention.ms"].is_default


# --- pure parts -----------------------------------------------------------------

def test_murmur2_matches_kafka():
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2
    vectors = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
               "a-little-bit-longer-string": -1486304829,
               "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, "abc": 479470107}
    for text, expected in vectors.items():
        assert murmur2(text.encode()) == expected, text
    assert partition_for_key(b"21", 6) == (-973932308 & 0x7FFFFFFF) % 6


def test_whole_batches_drops_a_cut_tail_but_raises_on_corruption():
    a, b = _engine.encode_batch([b"1", b"2"]), _engine.encode_batch([b"3"], base_offset=2)
    assert len(whole_batches(a + b[:-3])) == len(a)
    bad = bytearray(a + b)
    bad[-2] ^= 0xFF  # inside b's last record: its CRC no longer matches
    with pytest.raises(CorruptRecordError):
        whole_batches(bytes(bad))
