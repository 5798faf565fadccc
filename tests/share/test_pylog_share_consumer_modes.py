"""pylog's ShareConsumer in its other forms: the asyncio variant (pylog.aio),
the embedded one (log_dir: the store's own share-group handlers, no broker
listening), and over SASL_SSL with Kafka's client keys."""
from __future__ import annotations

import asyncio
import time

import pytest

from pylog import AcknowledgeType, Producer, ShareConsumer
from pylog.aio import Producer as AioProducer
from pylog.aio import ShareConsumer as AioShareConsumer
from pylog.testing import running_broker

from .wire import CONFIG, create_topic, produce, set_group_configs

TIMEOUT = 60.0
GROUP_RESOURCE = 32   # Kafka's ConfigResource type GROUP


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def test_asyncio_run_with_a_coroutine_handler(broker):
    topic, group = "psc-aio", "psc-aio-g"
    create_topic(broker, topic, 1)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    produce(broker, topic, 12)
    seen = []

    async def main():
        async with AioShareConsumer(topic, bootstrap_servers=str(broker), group_id=group) as c:
            async def handler(r):
                await asyncio.sleep(0)
                seen.append((r.offset, r.delivery_count))
                if r.offset == 5 and r.delivery_count == 1:
                    raise RuntimeError("try again")
                if len(seen) >= 13:
                    c.stop_running()

            fired = []
            watchdog = asyncio.get_running_loop().call_later(TIMEOUT, lambda: (fired.append(True), c.stop_running()))
            await c.run(handler)
            watchdog.cancel()
            assert not fired     # stopped by the handler
            # Everything accepted (offset 5 at its 2nd delivery): nothing more comes.
            assert await c.getmany(timeout_ms=1500) == []

    asyncio.run(asyncio.wait_for(main(), TIMEOUT * 2))
    assert sorted(seen) == sorted([(o, 1) for o in range(12)] + [(5, 2)])


def test_asyncio_getmany_and_explicit_acknowledgement(broker):
    topic, group = "psc-aio-explicit", "psc-aio-explicit-g"
    create_topic(broker, topic, 1)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")

    async def main():
        async with AioProducer(str(broker)) as p:
            for i in range(4):
                await p.send_and_wait(topic, b"v-%d" % i, priority=i)
        async with AioShareConsumer(topic, bootstrap_servers=str(broker), group_id=group,
                                    share_acknowledgement_mode="explicit") as c:
            got = []
            deadline = time.monotonic() + TIMEOUT
            while len(got) < 4:
                assert time.monotonic() < deadline
                for r in await c.getmany(timeout_ms=200):
                    got.append(r)
                    assert [(k, bytes(v)) for k, v in r.headers] == [("pylog.priority", b"%d" % r.offset)]
                    await c.acknowledge(r, AcknowledgeType.REJECT if r.offset == 0 else AcknowledgeType.ACCEPT)
            assert await c.commit_sync() == {(topic, 0): None}
            return sorted((r.offset, r.delivery_count) for r in got)

    assert asyncio.run(main()) == [(0, 1), (1, 1), (2, 1), (3, 1)]


def test_embedded_share_consumers_share_a_group_in_one_process(tmp_path):
    topic, group = "psc-embedded", "psc-embedded-g"
    a = ShareConsumer(topic, log_dir=tmp_path, group_id=group, share_acknowledgement_mode="explicit")
    b = ShareConsumer(topic, log_dir=tmp_path, group_id=group)
    got = {a: [], b: []}
    with Producer(log_dir=tmp_path, linger_ms=0) as p:
        p.send(topic, b"first").get(30)
        # The group starts at the log's end when it first assigns the
        # partition (share.auto.offset.reset=latest): both members in, then
        # probes until one arrives, then the records counted.
        deadline = time.monotonic() + TIMEOUT
        while not (a.assignment() and b.assignment()):
            assert time.monotonic() < deadline, "members not assigned"
            for c in (a, b):
                assert c.poll(0.1) == []
        while not (got[a] or got[b]):
            assert time.monotonic() < deadline, "no probe arrived"
            p.send(topic, b"probe").get(30)
            for c in (a, b):
                for r in c.poll(0.2):
                    got[c].append((bytes(r.value), r.delivery_count))
                    if c is a:
                        a.acknowledge(r)
        for i in range(30):
            p.send(topic, b"r-%d" % i).get(30)   # one batch each: both members get some
        want = {b"r-%d" % i for i in range(30)}
        while not want <= {v for c in (a, b) for v, _ in got[c]}:
            assert time.monotonic() < deadline, "records missing"
            for c in (a, b):
                for r in c.poll(0.2):
                    got[c].append((bytes(r.value), r.delivery_count))
                    if c is a:
                        a.acknowledge(r, AcknowledgeType.ACCEPT)
    a.commit_sync()
    b.commit_sync()
    every = [v for c in (a, b) for v, n in got[c] if v.startswith(b"r-")]
    assert sorted(every) == sorted(want)                     # each once
    assert all(n == 1 for c in (a, b) for _, n in got[c])
    assert a.assignment() == b.assignment() == {(topic, 0)}  # one partition, shared
    a.close()
    b.close()
    # The group's state is on disk: a broker on the directory serves it (nothing is redelivered).
    with running_broker(data_dir=tmp_path, config=CONFIG) as broker:
        c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
        produce(broker, topic, 1, start=99)
        more = []
        deadline = time.monotonic() + TIMEOUT
        while not more:
            assert time.monotonic() < deadline
            more.extend(bytes(r.value) for r in c.poll(0.2))
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            more.extend(bytes(r.value) for r in c.poll(0.2))
        c.close()
    assert more == [b"v-99"]


@pytest.mark.kafka_broker(tls=True, sasl_users={"alice": "alice-secret"}, config=CONFIG)
def test_share_consumer_over_sasl_ssl_with_kafka_client_keys(kafka_broker):
    from pylog.client import Client
    from pylog.client.security import security_settings

    conf = kafka_broker.sasl_client_config("SCRAM-SHA-256", "alice")
    assert conf["security.protocol"] == "SASL_SSL"
    bootstrap = conf.pop("bootstrap.servers")
    topic, group = "psc-sasl-ssl", "psc-sasl-ssl-g"
    kw = security_settings(conf)
    with Client(bootstrap, **kw) as admin:
        admin.create_topics(topic, partitions=1)
        admin.wait_for_leaders(topic, timeout=30)
        admin.incremental_alter_configs(GROUP_RESOURCE, group, {"share.auto.offset.reset": "earliest"})
    now_ms = int(time.time() * 1000)
    with Producer(bootstrap, **kw) as p:
        for i in range(10):
            # A deliver_at in the past: due at once whatever the broker does with it.
            p.send(topic, b"s-%d" % i, deliver_at=now_ms - 1000, priority=i % 10).get(30)
    c = ShareConsumer(config={**conf, "bootstrap.servers": bootstrap, "group.id": group})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 10:
        assert time.monotonic() < deadline
        got.extend(c.poll(0.2))
    c.commit_sync()
    c.close()
    assert sorted(bytes(r.value) for r in got) == sorted(b"s-%d" % i for i in range(10))
    for r in got:
        headers = dict(r.headers)
        assert bytes(headers["pylog.deliver.at"]) == str(now_ms - 1000).encode()
        assert bytes(headers["pylog.priority"]) == str(int(bytes(r.value)[2:]) % 10).encode()
        assert r.delivery_count == 1


def test_a_member_carries_on_across_a_broker_restart(tmp_path):
    topic, group = "psc-restart", "psc-restart-g"
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        port = int(str(b).rsplit(":", 1)[1])
        create_topic(b, topic, 1)
        set_group_configs(b, group, share_auto_offset_reset="earliest")
        produce(b, topic, 20)
        c = ShareConsumer(topic, bootstrap_servers=str(b), group_id=group)
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 20:
            assert time.monotonic() < deadline
            got.extend(r.offset for r in c.poll(0.2))
        assert c.commit_sync() == {(topic, 0): None}
    try:
        with running_broker(data_dir=tmp_path, config=CONFIG, port=port) as b:
            produce(b, topic, 10, start=20)
            # The same consumer: a new connection, a new share session, the group joined again.
            deadline = time.monotonic() + TIMEOUT
            while len(got) < 30:
                assert time.monotonic() < deadline, sorted(got)
                got.extend(r.offset for r in c.poll(0.2))
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                got.extend(r.offset for r in c.poll(0.2))
            c.commit_sync()
    finally:
        c.close()
    assert sorted(got) == list(range(30))
