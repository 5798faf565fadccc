"""aiokafka 0.14 (ApiVersions v0 only, its own version picks) against the broker."""
import asyncio

import pytest

aiokafka = pytest.importorskip("aiokafka")
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402


async def roundtrip(bs):
    admin = AIOKafkaAdminClient(bootstrap_servers=bs)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("aio", 3, 1)])
    finally:
        await admin.close()
    sent = {}
    p = AIOKafkaProducer(bootstrap_servers=bs, enable_idempotence=True, compression_type="lz4")
    await p.start()
    try:
        for i in range(300):
            md = await (await p.send("aio", b"v%d" % i, key=b"k%d" % (i % 7), headers=[("h", b"%d" % i)]))
            sent[(md.partition, md.offset)] = (b"k%d" % (i % 7), b"v%d" % i, [("h", b"%d" % i)])
    finally:
        await p.stop()
    c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False)
    await c.start()
    got = {}
    try:
        tps = [TopicPartition("aio", i) for i in range(3)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        for _ in range(50):
            if len(got) >= len(sent):
                break
            for _tp, msgs in (await c.getmany(timeout_ms=500)).items():
                for m in msgs:
                    got[(m.partition, m.offset)] = (m.key, m.value, list(m.headers))
        ends = await c.end_offsets(tps)
    finally:
        await c.stop()
    return sent, got, ends


def test_aiokafka_produce_and_consume(kafka_broker):
    sent, got, ends = asyncio.run(roundtrip(str(kafka_broker)))
    assert got == sent
    assert sum(ends.values()) == 300
    # Per partition, offsets are contiguous from 0.
    for p in range(3):
        offs = sorted(o for (q, o) in got if q == p)
        assert offs == list(range(len(offs)))
