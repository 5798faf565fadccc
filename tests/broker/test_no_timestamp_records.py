"""Records without a timestamp (-1, Kafka's RecordBatch.NO_TIMESTAMP) on a
CreateTime topic: Kafka appends them and keeps -1. librdkafka's 0110_batch_size
produces exactly these (timestamp -1 through the C++ API); past the first
index.interval.bytes the time index was asked for an entry at offset -1 and
every append from then on failed."""
import confluent_kafka

from pylog.testing import wait_until


def test_records_without_timestamp_are_appended_and_read_back(kafka_broker):
    topic = "no-timestamp"
    errors, delivered = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg.offset())

    p = confluent_kafka.Producer({"bootstrap.servers": kafka_broker, "linger.ms": 5,
                                  "batch.size": 5000})
    count = 40  # 40 KB: several index.interval.bytes (4096) past the first batch
    for _ in range(count):
        p.produce(topic, b"a" * 1000, partition=0, timestamp=-1, on_delivery=on_delivery)
    assert p.flush(60) == 0
    assert errors == []
    assert sorted(delivered) == list(range(count))

    c = confluent_kafka.Consumer({"bootstrap.servers": kafka_broker, "group.id": "g",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
    got = []
    wait_until(lambda: got.extend(m for m in c.consume(100, 0.5) if not m.error()) or len(got) >= count,
               timeout=60, what="all records consumed")
    c.close()
    assert [m.offset() for m in got] == list(range(count))
    assert {m.timestamp() for m in got} == {(confluent_kafka.TIMESTAMP_CREATE_TIME, -1)}
