"""pylog.ShareConsumer's prefetch, Kafka's KafkaShareConsumer's: a ShareFetch
outlives the poll that sent it, so records that arrive between polls are
acquired for the member and returned by its next poll; close() releases what
was acquired and never returned, to the other members at once. Real broker
over sockets; the buffer's cut at max.poll.records on decoded records."""
from __future__ import annotations

import threading
import time

import pytest

from pylog import AcknowledgeType, Producer, ShareConsumer
from pylog.consumer.share_fetch_buffer import Completed, ShareFetchBuffer
from pylog.testing import running_broker, wait_until

from .wire import CONFIG, create_topic, produce, set_group_configs

TIMEOUT = 60.0
ACCEPT, RELEASE = AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE


@pytest.fixture(scope="module")
def broker():
    with running_broker(config={**CONFIG, "group.share.max.record.lock.duration.ms": "3600000"}) as b:
        yield b


def joined(c, timeout=TIMEOUT):
    """Poll (nothing to read yet) until c has its partitions and a ShareFetch waits on the broker."""
    wait_until(lambda: c.poll(0.2) == [] and bool(c.assignment()), timeout=timeout,
               what="the member's assignment")


def poll_until(c, cond, what, handle, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for r in c.poll(0.2):
            handle(r)


def test_a_fetch_waiting_after_its_poll_acquires_and_close_releases_it_to_another_member(broker):
    topic, group = "pre-close", "pre-close-g"
    create_topic(broker, topic)
    # Locks of an hour: a record the second member gets was released by close, not by expiry.
    set_group_configs(broker, group, share_auto_offset_reset="earliest", share_record_lock_duration_ms=3600000)
    a = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group, fetch_max_wait_ms=30000)
    joined(a)
    produce(broker, topic, 5)
    # a does not poll again: its waiting ShareFetch acquires the 5 records
    # (delivery 1) and they are never returned to the application.
    a.close()
    b = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    got = []
    poll_until(b, lambda: len(got) >= 5, "the 5 records a released", lambda r: got.append((r.offset, r.delivery_count)))
    assert sorted(got) == [(o, 2) for o in range(5)]
    b.close()


def test_records_arriving_between_polls_are_returned_by_the_next_poll(broker):
    topic, group = "pre-next", "pre-next-g"
    create_topic(broker, topic)
    set_group_configs(broker, group, share_auto_offset_reset="earliest", share_record_lock_duration_ms=3600000)
    a = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group, fetch_max_wait_ms=30000)
    joined(a)
    produce(broker, topic, 5)
    # Another member joining now finds them acquired by a's waiting fetch.
    b = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    joined(b)
    got = []
    poll_until(a, lambda: len(got) >= 5, "the 5 records", lambda r: got.append((r.offset, r.delivery_count)))
    assert sorted(got) == [(o, 1) for o in range(5)]
    assert b.poll(0.5) == []
    a.commit_sync()
    a.close()
    b.close()


def test_members_with_prefetch_get_each_record_once_in_either_acknowledgement_mode(broker):
    topic, group = "pre-once", "pre-once-g"
    create_topic(broker, topic)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    total = 600
    seen: list = []
    lock = threading.Lock()
    done = threading.Event()
    errors: list = []

    def member(explicit):
        c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group, max_poll_records=20,
                          share_acknowledgement_mode="explicit" if explicit else "implicit")
        try:
            while not done.is_set():
                for r in c.poll(0.1):
                    time.sleep(0.001)
                    if explicit:
                        c.acknowledge(r, ACCEPT)
                    with lock:
                        seen.append(r.offset)
                        if len(set(seen)) >= total:
                            done.set()
            c.commit_sync()
        except Exception as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=member, args=(i % 2 == 1,)) for i in range(3)]
    for t in threads:
        t.start()
    with Producer(str(broker)) as p:
        for i in range(total):
            p.send(topic, b"v-%d" % i)
            if i % 50 == 49:
                p.flush()
                time.sleep(0.05)   # records keep arriving while the members work
    assert done.wait(TIMEOUT), f"{len(set(seen))} of {total} records received"
    for t in threads:
        t.join(TIMEOUT)
    assert not errors
    assert sorted(seen) == list(range(total))   # each once: nothing buffered twice, nothing lost
    late = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        assert late.poll(0.2) == []   # every record was accepted, none left to the group
    late.close()


def test_run_handler_with_prefetch_releases_failures_and_stops_cleanly(broker):
    topic, group = "pre-run", "pre-run-g"
    create_topic(broker, topic)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    produce(broker, topic, 30)
    c = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group, max_poll_records=5)
    seen = []

    def handle(r):
        seen.append((r.offset, r.delivery_count))
        if r.offset == 7 and r.delivery_count == 1:
            raise RuntimeError("busy")
        if len(seen) == 31:   # each once, and offset 7 again
            c.stop()

    c.run(handle, max_delivery_count=3)
    c.close()
    assert sorted(set(seen)) == sorted([(o, 1) for o in range(30)] + [(7, 2)])


def _completed(offsets, ranges, batch_ends, gaps=()):
    class R:
        __slots__ = ("offset",)

        def __init__(self, o):
            self.offset = o
    return Completed(1, ("t", 0), [R(o) for o in offsets], ranges, set(gaps), batch_ends)


def test_a_poll_takes_max_poll_records_completed_to_the_end_of_the_log_batch():
    buf = ShareFetchBuffer()
    # Batches 0-9 and 10-19 (offset 12 compacted away: a gap), 20-29.
    offsets = [o for o in range(30) if o != 12]
    buf.add(_completed(offsets, [(0, 29, 1)], [9, 19, 29], gaps=[12]))
    first = buf.take(5)          # stops in batch 0-9: the batch goes whole
    assert [r.offset for r in first[0].records] == list(range(10))
    assert first[0].ranges == [(0, 9, 1)] and first[0].gaps == set()
    second = buf.take(10)        # 10 records reach into batch 20-29: it goes whole
    assert [r.offset for r in second[0].records] == offsets[10:]
    assert second[0].ranges == [(10, 29, 1)] and second[0].gaps == {12}
    assert not buf
    buf.add(_completed([0, 1], [(0, 1, 2)], [1]))
    buf.add(_completed([5, 6], [(5, 6, 1)], [6]))
    assert [c.records[0].offset for c in buf.take(3)] == [0, 5]   # across parts, up to max


def test_asyncio_close_releases_what_its_waiting_fetch_acquired(broker):
    import asyncio

    from pylog import aio
    topic, group = "pre-aio", "pre-aio-g"
    create_topic(broker, topic)
    set_group_configs(broker, group, share_auto_offset_reset="earliest", share_record_lock_duration_ms=3600000)

    async def member():
        async with aio.ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group,
                                     fetch_max_wait_ms=30000) as c:
            deadline = time.monotonic() + TIMEOUT
            while not (await c.getmany(200) == [] and await c.assignment()):
                assert time.monotonic() < deadline, "no assignment"
            await asyncio.to_thread(produce, broker, topic, 5)
        # Leaving the block closes it: the 5 records its fetch acquired go back to the group.

    asyncio.run(member())
    b = ShareConsumer(topic, bootstrap_servers=str(broker), group_id=group)
    got = []
    poll_until(b, lambda: len(got) >= 5, "the 5 records", lambda r: got.append((r.offset, r.delivery_count)))
    assert sorted(got) == [(o, 2) for o in range(5)]
    b.close()
