"""A share group emptying while dead letters of its share-partition are
being written (pylog/share/manager.py forget_idle, pylog/share/dlq.py): the
share-partition stays until the write ends, so its rejected records are
archived (the Archived state reaches the share coordinator) and written to
the dead-letter topic once, not again by the next load. The write is held
by a real broker: the dead-letter partition's leader (broker 3) with its
event loop stalled, so the Produce with acks=all waits for its answer."""
from __future__ import annotations

import threading
import time

from confluent_kafka import AcknowledgeType

from tests.cluster.zkcluster import bootstrap, embedded_cluster, wait_for

from .test_share_cluster import (BASE, STATE_PARTITIONS, TIMEOUT, consumer, group_coordinator, leaders, produce,
                                 state_of, state_topic)
from .test_share_dlq import read_topic
from .test_share_dlq_cluster import create
from .wire import set_group_configs

from pylog.share.coordinator import partition_for

N = 4
HOLD_MAX_S = 30.0       # the stalled loop's bound, should the test fail before releasing it


def stall(broker):
    """Stall broker's event loop until the returned event is set."""
    gate, stalled = threading.Event(), threading.Event()

    def hold():
        stalled.set()
        gate.wait(HOLD_MAX_S)
    broker.broker._loop.call_soon_threadsafe(hold)
    assert stalled.wait(TIMEOUT), "broker 3's loop never ran the stall"
    return gate


def test_a_group_emptying_mid_dead_letter_write_archives_once_and_writes_each_dead_letter_once():
    with embedded_cluster(3, base=BASE) as brokers:
        topic, dlq = "sce-src", "dlq.sce"
        create(brokers, topic, [[1, 2, 3]])
        create(brokers, dlq, [[3, 1, 2]], {"errors.deadletterqueue.group.enable": "true"})
        sp_leader = brokers[0].broker
        tid = sp_leader.metadata_cache.topic_ids[topic]
        state_leaders = state_topic(brokers)
        # Neither the group's coordinator nor its state's on broker 3, whose loop stalls.
        group = next(g for g in (f"sce-g-{i}" for i in range(1000))
                     if state_leaders[partition_for(g, tid, 0, STATE_PARTITIONS)] != 3
                     and group_coordinator(brokers, g).broker.broker_id != 3)
        set_group_configs(brokers[0], group, share_auto_offset_reset="earliest",
                          errors_deadletterqueue_topic_name=dlq)
        produce(brokers, topic, range(N), partition=0)
        c = consumer(brokers, group, share_acknowledgement_mode="explicit")
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < N:
            assert time.monotonic() < deadline, f"deliveries so far {got}"
            for msg in c.poll(0.2):
                assert msg.error() is None, msg.error()
                got.append(msg.offset())
                c.acknowledge(msg, AcknowledgeType.REJECT)
        assert sorted(got) == list(range(N))
        key = (group, tid, 0)
        manager = sp_leader.share.manager
        gate = stall(brokers[2])
        try:
            # The rejections made Archiving and stored; their dead letters go to broker 3, which does not answer.
            c.commit_sync()
            wait_for(lambda: manager.dlq.busy(key), TIMEOUT, "the dead-letter write under way")
            c.close()
            wait_for(lambda: not any(k[0] == group for k in manager.sessions), TIMEOUT, "the share session ended")
            # The group's releases written, then its idle share-partitions forgotten (manager._group_empty).
            time.sleep(3)
            assert manager.dlq.busy(key)
        finally:
            gate.set()
        wait_for(lambda: manager.dlq.stats(group, tid, 0) == (N, 0), TIMEOUT, "the dead letters written")
        # The Archived ranges reach the share coordinator: the start offset passes them.
        wait_for(lambda: (st := state_of(brokers, group, tid, 0)) is not None and st.start_offset == N, TIMEOUT,
                 "the rejected records archived in the share coordinator")
        # Then, the group still empty, the share-partition goes.
        wait_for(lambda: key not in manager.held and not manager.dlq.busy(key), TIMEOUT,
                 "the share-partition forgotten")
        # A member coming later loads it from the share coordinator: nothing to deliver, nothing to write again.
        b = consumer(brokers, group)
        b.subscribe([topic])
        again = []
        end = time.monotonic() + 5
        while time.monotonic() < end or key not in manager.held:
            assert time.monotonic() < end + TIMEOUT, "the share-partition never loaded again"
            again.extend(msg.offset() for msg in b.poll(0.2))
        b.close()
        assert again == []
        letters = read_topic(bootstrap(brokers), dlq, N, then_s=3)
        assert sorted(int(dict(m.headers())["__dlq.errors.offset"]) for m in letters) == list(range(N))
        assert manager.dlq.stats(group, tid, 0) == (N, 0)
        assert leaders(brokers[0], dlq) == {0: 3}
