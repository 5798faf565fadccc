"""The fetch session cache's eviction rules (Kafka's FetchSessionCacheShard.tryEvict),
with explicit clocks: a stale session first (least recently used), else the
lowest (privileged, size, id) among sessions older than the eviction time,
when the newcomer ranks at least as high; followers may evict consumers."""
from __future__ import annotations

from pylog.broker.fetch_session import (
    EVICTION_MS,
    CachedPartition,
    FINAL_EPOCH,
    NUM_SHARDS,
    SESSION_ID_RANGE,
    FetchManager,
    FetchSessionCacheShard,
    next_epoch,
)


class _Part:
    def __init__(self, index):
        self.partition = index
        self.partition_max_bytes = 1 << 20
        self.fetch_offset = 0
        self.current_leader_epoch = -1
        self.log_start_offset = -1
        self.last_fetched_epoch = -1


def _create(shard, now, size, privileged=False):
    def partitions():
        return {("t", i): CachedPartition(None, _Part(i)) for i in range(size)}
    return shard.maybe_create(now, privileged, size, False, partitions)


def test_a_stale_session_goes_first_least_recently_used():
    shard = FetchSessionCacheShard(2, 0)
    a = _create(shard, 0, 1)
    b = _create(shard, 10, 1)
    shard.touch(shard.get(a), 50)   # a used later than b
    assert _create(shard, 10 + EVICTION_MS - 1, 1) == 0   # nothing stale yet, nothing old enough
    c = _create(shard, 10 + EVICTION_MS + 1, 1)
    assert c and shard.get(b) is None and shard.get(a) is not None
    assert shard.evictions == 1


def test_older_sessions_are_evicted_by_larger_ones_only():
    shard = FetchSessionCacheShard(2, 0)
    small = _create(shard, 0, 3)
    large = _create(shard, 0, 5)
    now = EVICTION_MS + 10
    shard.touch(shard.get(small), now)
    shard.touch(shard.get(large), now)   # both older than EVICTION_MS, neither stale
    assert _create(shard, now + 1, 2) == 0            # smaller than every candidate
    newcomer = _create(shard, now + 1, 4)
    assert newcomer and shard.get(small) is None and shard.get(large) is not None
    assert shard.num_partitions == 5 + 4


def test_a_follower_evicts_a_young_consumer_session_but_not_a_young_follower_one():
    shard = FetchSessionCacheShard(1, 0)
    consumer = _create(shard, 0, 10)
    follower = _create(shard, 1, 1, privileged=True)
    assert follower and shard.get(consumer) is None
    assert _create(shard, 2, 100, privileged=True) == 0
    assert _create(shard, 3, 100) == 0


def test_shards_own_id_ranges_and_take_new_sessions_in_turn():
    mgr = FetchManager(16)
    assert [s.max_entries for s in mgr.shards] == [2] * NUM_SHARDS
    made = [(_create(mgr.next_shard(), 0, 1)) for _ in range(NUM_SHARDS)]
    assert [sid // SESSION_ID_RANGE for sid in made] == list(range(NUM_SHARDS))
    assert all(mgr.shard_of(sid).get(sid) is not None for sid in made)
    assert FetchManager(7).shards[0].max_entries == 0   # Kafka's integer division


def test_session_epochs():
    assert next_epoch(0) == 1
    assert next_epoch(41) == 42
    assert next_epoch(0x7FFFFFFF) == 1
    assert next_epoch(FINAL_EPOCH) == FINAL_EPOCH
