"""murmur2 and key placement: Kafka's own test vectors, a reference
implementation written from Kafka's Utils.murmur2, and confluent-kafka's
placement of the same keys on a real broker."""
import os

from confluent_kafka import Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from pylog.client.partitioner import murmur2, partition_for_key

# org.apache.kafka.common.utils.UtilsTest.testMurmur2
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def reference_murmur2(data: bytes) -> int:
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    end4 = len(data) & ~3
    for i in range(0, end4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    rest = len(data) & 3
    if rest == 3:
        h ^= data[end4 + 2] << 16
    if rest >= 2:
        h ^= data[end4 + 1] << 8
    if rest >= 1:
        h ^= data[end4]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def test_kafka_vectors():
    for key, expected in KAFKA_VECTORS.items():
        assert murmur2(key) == expected
        assert murmur2(bytearray(key)) == murmur2(memoryview(key)) == expected


@settings(max_examples=500)
@given(st.binary(max_size=64), st.integers(1, 1000))
def test_matches_the_reference(key, partitions):
    assert murmur2(key) == reference_murmur2(key)
    assert partition_for_key(key, partitions) == (reference_murmur2(key) & 0x7FFFFFFF) % partitions


def test_same_placement_as_confluent_kafka(kafka_broker):
    p = Producer({"bootstrap.servers": kafka_broker, "partitioner": "murmur2_random"})
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.create_topics([NewTopic("placed", 7, 1)])["placed"].result(10)
    keys = [os.urandom(n % 20 + 1) for n in range(500)] + [b"%d" % i for i in range(500)]
    placed = {}
    for k in keys:
        p.produce("placed", b"v", key=k, on_delivery=lambda e, msg: placed.__setitem__(msg.key(), msg.partition()))
    assert p.flush(10) == 0
    assert len(placed) == len(set(keys))
    assert all(placed[k] == partition_for_key(k, 7) for k in placed)
