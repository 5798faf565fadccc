"""A transaction's COMMIT or ABORT marker reaching a __consumer_offsets partition
while the group coordinator is still loading it in slices (a partition over
LOAD_SLICE records, reloaded after its leadership moved): the marker must be
applied where it sits in the log, after the transaction's offset records.

Kafka's group coordinator appends such a marker through its runtime
(completeTransaction) and refuses it while the partition loads (the
transaction coordinator retries). Before this, pylog's WriteTxnMarkers
appended the marker under the load and the group coordinator applied it as
an event at once: the load had not yet replayed the transaction's pending
offsets, its log scan (ending where the log ended when it started) never met
the marker, and the offsets stayed pending for good: OffsetFetch with
require_stable answered UNSTABLE_OFFSET_COMMIT forever and the committed
offset never moved, which is what this test fails on.

Real broker (in-process, for the load hook), real confluent-kafka clients over
real sockets.
"""
from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from confluent_kafka import OFFSET_INVALID, Consumer, Producer, TopicPartition

from pylog.coordinator import runtime as rt
from pylog.groups import offsets_topic as ot
from pylog.testing import running_broker, wait_until

from .conftest import GROUP_CONFIG
from .helpers import create_topic

TIMEOUT = 60.0


def _on_loop(b, fn):
    async def inner():
        return fn()
    return asyncio.run_coroutine_threadsafe(inner(), b.broker._loop).result(TIMEOUT)


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_a_marker_during_a_sliced_load_applies_in_log_order(monkeypatch, caplog, commit):
    caplog.set_level(logging.INFO, logger="pylog.broker")
    monkeypatch.setattr(rt, "LOAD_SLICE", 50)
    config = {**GROUP_CONFIG, "offsets.topic.num.partitions": "1"}
    with running_broker(config=config) as b:
        create_topic(b, "in", 1)
        # 300 offset records ahead of the transaction's: its pending offsets
        # lie past the load's first slices.
        filler = Consumer({"bootstrap.servers": b, "group.id": "filler", "enable.auto.commit": False})
        try:
            for i in range(300):
                filler.commit(offsets=[TopicPartition("in", 0, i)], asynchronous=False)
        finally:
            filler.close()
        g = Consumer({"bootstrap.servers": b, "group.id": "g", "enable.auto.commit": False,
                      "isolation.level": "read_committed"})
        p = Producer({"bootstrap.servers": b, "transactional.id": "tid-load"})
        try:
            p.init_transactions(TIMEOUT)
            p.begin_transaction()
            p.send_offsets_to_transaction([TopicPartition("in", 0, 42)], g.consumer_group_metadata(), TIMEOUT)

            groups = b.broker.groups
            offsets_log = b.broker.log_manager.get_partition(ot.TOPIC, 0).log
            gate = {}
            entered = threading.Event()

            async def hold(index):
                entered.set()
                await gate["release"].wait()

            def reload():
                # The partition's leadership leaves and comes back (as after a
                # coordinator move): it is replayed again, held after its first slice.
                gate["release"] = asyncio.Event()
                groups.runtime.before_load_slice = hold
                groups.on_resign(0)
                groups.on_become_leader(0)
            _on_loop(b, reload)
            assert entered.wait(TIMEOUT)
            assert _on_loop(b, lambda: groups.runtime.loading_partitions()) == [0]
            end_before = offsets_log.log_end_offset

            done = threading.Event()
            errors = []

            def commit():
                try:
                    (p.commit_transaction if commit else p.abort_transaction)(TIMEOUT)
                except Exception as e:  # reported below
                    errors.append(e)
                done.set()
            t = threading.Thread(target=commit)
            t.start()
            # The marker reached the loading partition: appended (before the
            # fix), or refused for the transaction coordinator to retry.
            wait_until(lambda: offsets_log.log_end_offset > end_before or any(
                "refused" in r.getMessage() and ot.TOPIC in r.getMessage() for r in caplog.records),
                "the marker to reach the loading partition")

            def release():
                groups.runtime.before_load_slice = None
                gate["release"].set()
            _on_loop(b, release)
            wait_until(lambda: _on_loop(b, lambda: groups.runtime.is_active(0)), "the load to end")
            t.join(TIMEOUT)
            assert done.is_set() and not errors, errors

            want = 42 if commit else OFFSET_INVALID   # an aborted transaction's offsets go

            def stable_committed():
                if _on_loop(b, lambda: groups.pending_txn_offsets("g")):
                    return None
                return g.committed([TopicPartition("in", 0)], timeout=10)[0].offset == want
            wait_until(stable_committed, f"group g's committed offset to be stable at {want}")
        finally:
            p.flush(5)
            g.close()
