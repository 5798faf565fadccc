"""pylog.aio: the asyncio faces of Producer and Consumer, on a real broker."""
from __future__ import annotations

import asyncio

import pytest

import pylog
from pylog import errors

from .conftest import create_topic


def test_aio_producer_to_aio_consumer(cbroker, topic, group):
    create_topic(cbroker.bootstrap, topic, 2)

    async def main():
        async with pylog.aio.Producer(cbroker.bootstrap, linger_ms=1) as p:
            md = await p.send_and_wait(topic, b"first", key=b"k")
            futs = [await p.send(topic, b"v%d" % i, partition=i % 2) for i in range(200)]
            mds = await asyncio.gather(*futs)
            bulk = await p.send_many(topic, [b"bulk%d" % i for i in range(1000)])
        assert md.offset >= 0 and len({m.partition for m in mds}) == 2
        assert sum(1 for _ in bulk) >= 1
        seen = []
        async with pylog.aio.Consumer(topic, bootstrap_servers=cbroker.bootstrap, group_id=group,
                                      auto_offset_reset="earliest",
                                      enable_auto_commit=False) as c:
            async for r in c:
                seen.append(bytes(r.value))
                if len(seen) == 1201:
                    break
            await c.commit()
            committed = await c.committed([pylog.TopicPartition(topic, 0), pylog.TopicPartition(topic, 1)])
        return seen, committed

    seen, committed = asyncio.run(main())
    assert sorted(seen) == sorted([b"first"] + [b"v%d" % i for i in range(200)]
                                  + [b"bulk%d" % i for i in range(1000)])
    assert sum(om.offset for om in committed.values()) == 1201


def test_aio_send_raises_for_a_missing_topic():
    from pylog.testing import running_broker

    async def main(bootstrap):
        async with pylog.aio.Producer(bootstrap, max_block_ms=300) as p:
            await p.send("missing", b"v")

    with running_broker(config={"auto.create.topics.enable": "false"}) as b:
        with pytest.raises(errors.UnknownTopicOrPartitionError, match="does not exist"):
            asyncio.run(main(b.bootstrap))


def test_aio_send_does_not_block_the_loop(cbroker, topic):
    """Acks arrive as futures resolved from the sender thread while the loop
    keeps running other tasks."""
    create_topic(cbroker.bootstrap, topic, 1)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        async with pylog.aio.Producer(cbroker.bootstrap, linger_ms=50) as p:
            fut = await p.send(topic, b"x")
            md = await fut
        t.cancel()
        return md, ticks

    md, ticks = asyncio.run(main())
    assert md.offset == 0 and ticks >= 10
