"""aiokafka 0.14 as a group member: subscribe, consume, commit, resume."""
from __future__ import annotations

import asyncio

import pytest

aiokafka = pytest.importorskip("aiokafka")
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from .helpers import create_topic, produce  # noqa: E402


async def _consume(bs, topic, group, n):
    c = AIOKafkaConsumer(topic, bootstrap_servers=bs, group_id=group, client_id="aio-member",
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         session_timeout_ms=6000, heartbeat_interval_ms=300)
    await c.start()
    try:
        got = []
        async def read():
            while len(got) < n:
                for msgs in (await c.getmany(timeout_ms=200)).values():
                    got.extend(msgs)
        await asyncio.wait_for(read(), 30)
        assignment = {tp.partition for tp in c.assignment()}
        await c.commit()
        committed = {p: await c.committed(TopicPartition(topic, p)) for p in sorted(assignment)}
        extra = await c.getmany(timeout_ms=300)
        return got, assignment, committed, extra
    finally:
        await c.stop()


def test_aiokafka_group_consumer_commits_and_resumes(gbroker, topic, group):
    create_topic(gbroker, topic, 3)
    sent = produce(gbroker, topic, 30, 3)
    got, assignment, committed, extra = asyncio.run(_consume(str(gbroker), topic, group, 30))
    assert assignment == {0, 1, 2}
    assert sorted((m.partition, m.offset, m.value) for m in got) == \
        sorted((p, o, v) for p, vs in sent.items() for o, v in enumerate(vs))
    assert committed == {p: len(vs) for p, vs in sent.items()}
    assert not any(extra.values())
    g = gbroker.broker.groups.groups[group]
    assert g.state.value == "Empty"  # stop() left the group
    assert {tp[1]: om.offset for tp, om in g.offsets.items()} == committed

    # A new member resumes after the commit: only the new messages.
    more = produce(gbroker, topic, 6, 3)
    got2, _, committed2, _ = asyncio.run(_consume(str(gbroker), topic, group, 6))
    assert sorted((m.partition, m.offset) for m in got2) == [(p, 10 + i) for p in range(3) for i in range(2)]
    assert sorted(m.value for m in got2) == sorted(v for vs in more.values() for v in vs)
    assert committed2 == {p: 12 for p in range(3)}
