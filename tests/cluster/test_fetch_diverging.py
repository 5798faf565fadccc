"""Fetch v12's diverging epoch after a real leader-epoch change: brokers
driven by the test controller of test_replication, a leader whose epoch 0
ends at offset 100 and whose epoch 1 runs on, and fetchers (a consumer, a
follower) that say which epoch their last batch had (Kafka's
Partition.readFromLocalLog answers: divergence, records, or
OFFSET_OUT_OF_RANGE)."""
from __future__ import annotations

from kafkawire import Wire

from pylog.protocol import messages as m

from .test_replication import TOPIC, cluster, produce, publish, wait_until  # noqa: F401 (fixture)

F = m.FetchRequest


def _fetch(bootstrap, offset, last_fetched_epoch, replica_id=-1, version=12):
    req = F(replica_id=replica_id, max_wait_ms=0, min_bytes=1, topics=[F.FetchTopic(topic=TOPIC, partitions=[
        F.FetchPartition(partition=0, fetch_offset=offset, last_fetched_epoch=last_fetched_epoch,
                         current_leader_epoch=1, partition_max_bytes=1 << 20)])])
    with Wire(bootstrap) as w:
        p = w.request(1, version, req).responses[0].partitions[0]
    return p.error_code, (p.diverging_epoch.epoch, p.diverging_epoch.end_offset), bool(p.records)


def test_fetchers_past_the_end_of_their_epoch_are_told_where_it_ends(cluster):
    ctl, nodes, listener = cluster()
    nodes[2].stop()
    nodes[3].stop()
    publish(ctl, listener, nodes, 1, 0, [1, 2], [1], to=[1])
    _offsets, errors = produce(nodes[1].bootstrap, 100, acks="1")
    assert not errors
    # Same leader, a new epoch (as after a controller's re-election): epoch 1
    # starts at 100.
    publish(ctl, listener, nodes, 1, 1, [1, 2], [1], to=[1])
    _offsets, errors = produce(nodes[1].bootstrap, 30, prefix=b"e1", acks="1")
    assert not errors
    wait_until(lambda: nodes[1].state()[0] == 130, what="130 records")
    assert nodes[1].broker.call(lambda: nodes[1].partition().epoch_cache.epoch_entries()) == [(0, 0), (1, 100)]
    leader = nodes[1].bootstrap
    none = (-1, -1)
    # A consumer whose last batch had epoch 0 but is at 120 holds records the
    # leader's epoch 0 never had past 100: truncate to 100, no records.
    assert _fetch(leader, 120, 0) == (0, (0, 100), False)
    # At 100 exactly it is where epoch 0 ends: it reads on.
    assert _fetch(leader, 100, 0) == (0, none, True)
    assert _fetch(leader, 110, 1) == (0, none, True)
    # Past the leader's log end within the current epoch: divergence too (Kafka's).
    assert _fetch(leader, 140, 1) == (0, (1, 130), False)
    # An epoch above the leader's: it cannot say where that ends.
    assert _fetch(leader, 110, 2)[0] == 1  # OFFSET_OUT_OF_RANGE
    # The follower (replica 2) gets the same answer, and its fetch position
    # is not taken as its log end (Kafka skips updateFollowerFetchState).
    assert _fetch(leader, 120, 0, replica_id=2) == (0, (0, 100), False)
    assert list(nodes[1].broker.call(lambda: nodes[1].partition().isr)) == [1]
    # Before v12 there is no last_fetched_epoch: records from 120.
    assert _fetch(leader, 120, 0, version=11)[2]
