"""Compaction settings at the Log level: min.compaction.lag.ms keeps segments
with recent records out of the round; a dedupe buffer too small for the dirty
keys stops the round where the map filled up (Kafka's rule), and later rounds
carry on from there until the log is clean."""
from __future__ import annotations

import os

from pylog.log.log import Log

NOW = 50_000_000


def _fill(log, n, keys, ts_of=lambda i: NOW):
    for i in range(n):
        log.append(b"v%d" % i, b"k%d" % (i % keys), timestamp=ts_of(i))
        if i % 50 == 49:
            log.roll()
    log.roll()


def test_min_compaction_lag_keeps_recent_segments_dirty(tmp_path):
    with Log.open(os.fspath(tmp_path / "t-0")) as log:
        _fill(log, 200, 10, ts_of=lambda i: NOW - 10_000 if i < 100 else NOW - 10)
        stats = log.compact(now_ms=NOW, min_compaction_lag_ms=1000)
        assert stats.first_uncleanable_offset == 100 and stats.end_offset == 100
        recs = [(r.offset, bytes(r.key)) for r in log.scan()]
        assert [o for o, _ in recs if o >= 100] == list(range(100, 200))   # untouched
        assert len([o for o, _ in recs if o < 100]) == 10                   # one per key
        stats = log.compact(now_ms=NOW + 2000, min_compaction_lag_ms=1000)
        assert stats.end_offset == 200
        assert len(list(log.scan())) == 10


def test_a_full_map_stops_the_round_and_the_next_rounds_finish(tmp_path):
    with Log.open(os.fspath(tmp_path / "t-0")) as log:
        _fill(log, 400, 200)
        # 100 slots at load factor 0.9: 90 keys a round, of the 200 the log holds.
        stats = log.compact(now_ms=NOW, dedupe_buffer_size=100 * 16)
        assert stats.map_full and stats.map_entries == 90 and stats.end_offset == 90
        assert [r.offset for r in log.scan()] == list(range(400))  # nothing superseded below 90 yet
        ends = [stats.end_offset]
        while ends[-1] < 400:
            ends.append(log.compact(now_ms=NOW, dedupe_buffer_size=100 * 16).end_offset)
        assert ends == sorted(ends) and len(ends) > 2
        assert [r.offset for r in log.scan()] == list(range(200, 400))
