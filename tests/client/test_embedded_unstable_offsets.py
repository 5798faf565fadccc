"""An embedded read_committed Consumer and a group whose offsets an open
transaction holds (TxnOffsetCommit written, no marker yet): as Kafka's
consumer and pylog's network consumer, poll() keeps answering empty and
leaves those partitions without a position until the transaction ends, then
starts at the committed offset (or, after an abort, at auto_offset_reset).

Before this, the embedded source asked the store for up to 30 s and then
poll() raised UNSTABLE_OFFSET_COMMIT, so the first poll here failed.
Real files, the LocalStore's broker core, no mocks.
"""
from __future__ import annotations

import time

import pytest

import pylog
from pylog.embedded import LocalStore
from pylog.producer.transactions import ConsumerGroupMetadata
from pylog.structs import TopicPartition

TIMEOUT = 60.0


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_poll_stays_empty_while_a_transaction_holds_the_offsets(tmp_path, commit):
    data = str(tmp_path / "data")
    store = LocalStore.open(data)   # held open for the test: the clients share it
    try:
        _run(store, data, commit)
    finally:
        store.close()


def _run(store, data, commit):
    store.create_topic("in", 1)
    with pylog.Producer(log_dir=data) as plain:
        for i in range(12):
            plain.send("in", f"m{i}".encode(), partition=0)
    tp = TopicPartition("in", 0)
    p = pylog.Producer(log_dir=data, transactional_id="tid-unstable", linger_ms=1)
    p.init_transactions(TIMEOUT)
    c = pylog.Consumer(log_dir=data, group_id="g", auto_offset_reset="earliest",
                       enable_auto_commit=False, isolation_level="read_committed")
    try:
        c.assign([tp])
        p.begin_transaction()
        p.send_offsets_to_transaction({tp: 10}, ConsumerGroupMetadata("g"), TIMEOUT)
        # Several polls, each within its own timeout and without an error:
        # the partition has no position while its offset is unstable.
        for _ in range(3):
            assert c.poll(0.3) == []
        assert c._positions.get(tp) is None
        if commit:
            p.commit_transaction(TIMEOUT)
        else:
            p.abort_transaction(TIMEOUT)
        got = []
        want = [b"m10", b"m11"] if commit else [f"m{i}".encode() for i in range(12)]
        deadline = time.monotonic() + TIMEOUT
        while len(got) < len(want) and time.monotonic() < deadline:
            got += [bytes(r.value) for r in c.poll(0.2)]
        assert got == want
    finally:
        c.close(autocommit=False)
        p.close()
