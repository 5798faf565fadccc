"""pylog.Log: the API of the issue, one behaviour per test.

On-disk facts (file names, sizes, batch positions) are checked by reading the
files with struct (tests/loghelpers.py), not through pylog.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from pylog import Log
from pylog.errors import LogClosedError, LogLockedError, OffsetOutOfRangeError, PylogError

from loghelpers import (log_file, read_batches_file, rec_tuple, run_python, segment_bases,
                        segment_files)

BUFFERS = [pytest.param(0, id="unbuffered"), pytest.param(64 << 10, id="buffered")]
T0 = 1_700_000_000_000


def fill(log, n, start=0, size=90, ts=None):
    """Append n single-record batches with recognisable values; return their offsets."""
    offs = []
    for i in range(start, start + n):
        offs.append(log.append(b"%08d" % i + b"." * (size - 8), key=b"k%d" % i,
                               timestamp=T0 + i if ts is None else ts))
    return offs


def value_of(i, size=90):
    return b"%08d" % i + b"." * (size - 8)


def values(log, start=None, end=None):
    return [bytes(v) for v in log.scan_values(start, end)]


# ---- the basic API ----

@pytest.mark.parametrize("wb", BUFFERS)
def test_append_read_scan(open_log, wb):
    log = open_log(write_buffer_bytes=wb)
    assert (log.log_start_offset, log.log_end_offset, len(log)) == (0, 0, 0)
    assert log.append(b"v0", key=b"k0", headers=[("h", b"x"), ("n", None)], timestamp=T0) == 0
    assert log.append(b"v1", key=b"k1", timestamp=T0 + 1) == 1
    assert log.append(None, key=b"k2", timestamp=T0 + 2) == 2  # a tombstone
    first = log.append_batch([b"b0", b"b1", b"b2"], keys=[b"x", None, b""],
                             headers=[[("a", b"1")], [], [("ü", None)]], timestamps=[T0 + 9, T0 + 3, T0 + 5])
    assert first == 3
    assert log.append_batch([b"c0"], compression="lz4") == 6
    assert (log.log_start_offset, log.log_end_offset, len(log)) == (0, 7, 7)

    r = log.read(0)
    assert rec_tuple(r) == (0, T0, b"k0", b"v0", [("h", b"x"), ("n", None)])
    assert isinstance(r.value, memoryview) and r.value.readonly
    assert rec_tuple(log.read(2)) == (2, T0 + 2, b"k2", None, [])
    assert rec_tuple(log.read(4)) == (4, T0 + 3, None, b"b1", [])
    assert rec_tuple(log.read(5)) == (5, T0 + 5, b"", b"b2", [("ü", None)])
    assert bytes(log.read(6).value) == b"c0"

    all_recs = [rec_tuple(x) for x in log.scan()]
    assert [x[0] for x in all_recs] == list(range(7))
    assert all_recs[3] == (3, T0 + 9, b"x", b"b0", [("a", b"1")])
    assert [x[0] for x in map(rec_tuple, log.scan(4))] == [4, 5, 6]
    assert [x[0] for x in map(rec_tuple, log.scan(1, 5))] == [1, 2, 3, 4]
    assert list(log.scan(7)) == []
    vals = [None if v is None else bytes(v) for v in log.scan_values()]
    assert vals == [b"v0", b"v1", None, b"b0", b"b1", b"b2", b"c0"]
    assert [None if v is None else bytes(v) for v in log.scan_values(4, 6)] == [b"b1", b"b2"]
    del r


def test_scan_end_is_fixed_when_the_scan_starts(open_log):
    log = open_log()
    fill(log, 5)
    it = log.scan_values()
    got = [bytes(next(it))]
    log.append(b"late")
    got += [bytes(v) for v in it]
    assert got == [value_of(i) for i in range(5)]


def test_scan_across_many_segments_and_from_the_middle(open_log):
    log = open_log(segment_bytes=1024)
    fill(log, 120)
    assert len(log.segments()) > 5
    assert values(log) == [value_of(i) for i in range(120)]
    for start in (0, 1, 9, 10, 11, 57, 119, 120):
        assert values(log, start) == [value_of(i) for i in range(start, 120)], start
    for start, end in ((3, 4), (8, 33), (50, 200)):
        assert values(log, start, end) == [value_of(i) for i in range(start, min(end, 120))]


def test_offset_for_time(open_log):
    log = open_log(segment_bytes=1024, index_interval_bytes=100)
    # batch timestamps out of order inside and across batches
    log.append_batch([b"a", b"b", b"c"], timestamps=[T0 + 10, T0 + 5, T0 + 30])      # 0..2
    log.append(b"d", timestamp=T0 + 20)                                             # 3
    log.append_batch([b"e", b"f"], timestamps=[T0 + 40, T0 + 35])                    # 4..5
    fill(log, 40, start=6, ts=T0 + 100)                                             # 6..45, several segments
    log.append(b"z", timestamp=T0 + 200)                                            # 46
    ts_of = {r.offset: r.timestamp for r in log.scan()}

    def first_at_or_after(t):
        return next((o for o in sorted(ts_of) if ts_of[o] >= t), None)

    for t in [0, T0, T0 + 5, T0 + 6, T0 + 10, T0 + 11, T0 + 20, T0 + 21, T0 + 30, T0 + 31,
              T0 + 36, T0 + 40, T0 + 41, T0 + 100, T0 + 101, T0 + 200, T0 + 201]:
        assert log.offset_for_time(t) == first_at_or_after(t), t


def test_flush_moves_recovery_point_and_checkpoint(open_log, log_dir):
    log = open_log()
    fill(log, 5)
    assert log.recovery_point == 0
    log.flush()
    assert log.recovery_point == 5
    fill(log, 2, start=5)
    assert log.recovery_point == 5
    log.close()  # (Kafka writes the checkpoint periodically and at shutdown)
    with open(os.path.join(log_dir, "recovery-point-offset-checkpoint")) as f:
        lines = f.read().split("\n")
    assert lines[0] == "0" and lines[1] == "1"
    assert lines[2].split() == ["topic", "0", "7"]
    with open(os.path.join(log_dir, "log-start-offset-checkpoint")) as f:
        assert f.read().split("\n")[2].split() == ["topic", "0", "0"]


def test_create_false_needs_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        Log.open(tmp_path / "nope", create=False)


# ---- truncation ----

@pytest.mark.parametrize("compression", [None, "lz4", "gzip"])
@pytest.mark.parametrize("wb", BUFFERS)
def test_truncate_inside_a_batch_keeps_earlier_records(open_log, compression, wb):
    log = open_log(write_buffer_bytes=wb)
    log.append_batch([b"a0", b"a1", b"a2"], timestamps=[T0, T0 + 1, T0 + 2])
    log.append_batch([b"b%d" % i for i in range(5)], keys=[b"k%d" % i for i in range(5)],
                     headers=[[("i", b"%d" % i)] for i in range(5)], timestamps=[T0 + 9 - i for i in range(5)],
                     compression=compression)                                      # 3..7
    log.append_batch([b"c0", b"c1"], timestamps=[T0 + 20, T0 + 21])                  # 8..9
    before = [rec_tuple(r) for r in log.scan()]
    log.truncate_to(6)
    assert log.log_end_offset == 6
    assert [rec_tuple(r) for r in log.scan()] == before[:6]
    assert rec_tuple(log.read(5)) == before[5]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(6)
    assert log.append(b"new", timestamp=T0 + 50) == 6
    assert bytes(log.read(6).value) == b"new"
    log.close()
    with Log.open(log.path) as again:
        assert [rec_tuple(r) for r in again.scan()][:6] == before[:6]
        assert again.log_end_offset == 7


def test_truncate_to_batch_start_and_noop_and_below_start(open_log):
    log = open_log()
    log.append(b"a")
    log.append(b"b")
    log.append_batch([b"c", b"d"])
    log.truncate_to(10)  # past the end: nothing happens
    assert log.log_end_offset == 4
    log.truncate_to(2)
    assert values(log) == [b"a", b"b"]
    log.delete_records(1)
    with pytest.raises(OffsetOutOfRangeError):
        log.truncate_to(0)
    log.truncate_to(1)
    assert (log.log_start_offset, log.log_end_offset) == (1, 1)
    assert log.append(b"x") == 1


@pytest.mark.parametrize("reopen", [False, True], ids=["live", "reopened"])
def test_truncate_at_segment_boundaries_drops_later_files(open_log, log_dir, reopen):
    log = open_log(segment_bytes=1024)
    fill(log, 100)
    bases = [s.base_offset for s in log.segments()]
    assert len(bases) >= 6
    if reopen:
        log.close()
        log = open_log(segment_bytes=1024)
    cut = bases[3]
    log.truncate_to(cut)
    assert log.log_end_offset == cut
    remaining = segment_bases(log_dir)
    assert all(b <= cut for b in remaining), remaining
    assert set(bases[:3]) <= set(remaining)
    for b in remaining:
        if b == cut:
            assert os.path.getsize(log_file(log_dir, b)) == 0
    for b in bases[4:]:
        for suffix in ("log", "index", "timeindex"):
            assert not os.path.exists(log_file(log_dir, b, suffix))
    assert values(log) == [value_of(i) for i in range(cut)]
    # appends go on at the cut, and the log survives a reopen
    assert fill(log, 30, start=cut) == list(range(cut, cut + 30))
    assert values(log) == [value_of(i) for i in range(cut + 30)]
    log.close()
    with Log.open(log_dir, segment_bytes=1024) as again:
        assert values(again) == [value_of(i) for i in range(cut + 30)]


def test_truncate_inside_a_batch_of_a_reopened_older_segment(open_log, log_dir):
    # segments opened as "not active" at load keep trimmed indexes; truncating
    # into one makes it active again and the kept records must be re-appended.
    log = open_log(segment_bytes=2048)
    for i in range(20):
        log.append_batch([b"%d-%d" % (i, j) for j in range(5)], timestamps=[T0 + i] * 5)
    assert len(log.segments()) >= 2
    want = [bytes(v) for v in log.scan_values(0, 12)]
    log.close()
    log = open_log(segment_bytes=2048)
    log.truncate_to(12)  # inside the batch 10..14 of the first segment
    assert log.log_end_offset == 12
    assert values(log) == want
    assert log.append(b"next") == 12


def test_append_after_truncating_a_reopened_segment_to_its_base(open_log):
    log = open_log(segment_bytes=1024)
    fill(log, 60)
    bases = [s.base_offset for s in log.segments()]
    log.close()
    log = open_log(segment_bytes=1024)
    log.truncate_to(bases[1])
    assert log.append(b"after") == bases[1]
    assert bytes(log.read(bases[1]).value) == b"after"


def test_truncate_inside_compressed_batch_whose_records_no_longer_fit(open_log):
    # An lz4 batch of 20 x 200 compressible bytes is small on disk; the records
    # kept by a cut inside it are re-appended uncompressed and are much larger.
    log = open_log(segment_bytes=1024)
    log.append(b"first", timestamp=T0)
    first = log.append_batch([b"z" * 200] * 20, compression="lz4", timestamps=[T0 + 1] * 20)
    assert log.segments()[-1].size < 1024
    log.truncate_to(first + 15)
    assert log.log_end_offset == first + 15
    assert values(log) == [b"first"] + [b"z" * 200] * 15


def test_offset_for_time_after_truncate(open_log):
    log = open_log(index_interval_bytes=1 << 20)  # no index entries: only the walk knows
    fill(log, 20)  # timestamps T0 + i
    log.truncate_to(10)
    assert log.offset_for_time(T0 + 5) == 5
    assert log.segments()[0].max_timestamp == T0 + 9


# ---- rolling ----

@pytest.mark.parametrize("wb", BUFFERS)
def test_roll_by_size(open_log, log_dir, wb):
    log = open_log(segment_bytes=1024, write_buffer_bytes=wb)
    fill(log, 50)
    log.append_batch([b"%08d" % i + b"." * 82 for i in range(50, 60)])
    segs = log.segments()
    assert len(segs) >= 5
    log.flush()
    names = segment_files(log_dir)
    assert names == sorted(f"{s.base_offset:020d}.{x}" for s in segs for x in ("index", "log", "timeindex"))
    assert segs[0].base_offset == 0
    for prev, nxt in zip(segs, segs[1:]):
        assert nxt.base_offset == prev.next_offset
    for i, s in enumerate(segs):
        batches = read_batches_file(s.path)
        assert s.size == os.path.getsize(s.path) == sum(b["size"] for b in batches)
        assert batches[0]["base_offset"] == s.base_offset
        assert batches[-1]["last_offset"] == s.next_offset - 1
        assert s.size <= 1024 or len(batches) == 1  # one batch larger than a segment
        if i + 1 < len(segs):  # it rolled because the next batch would not fit
            first_next = read_batches_file(segs[i + 1].path)[0]
            assert s.size + first_next["size"] > 1024
    assert values(log) == [value_of(i) for i in range(60)]


def test_a_batch_larger_than_segment_bytes_gets_its_own_segment(open_log):
    log = open_log(segment_bytes=1024)
    log.append(b"small")
    big = log.append(b"B" * 5000)
    log.append(b"after")
    segs = log.segments()
    assert [(s.base_offset, s.next_offset) for s in segs] == [(0, 1), (1, 2), (2, 3)]
    assert bytes(log.read(big).value) == b"B" * 5000


def test_roll_by_time(open_log):
    log = open_log(segment_ms=1000)
    log.append(b"a", timestamp=T0)
    log.append(b"b", timestamp=T0 + 600)
    log.append(b"c", timestamp=T0 + 1000)   # exactly segment_ms after the first: no roll
    log.append(b"d", timestamp=T0 + 1001)   # one more: roll
    log.append(b"e", timestamp=T0 + 1500)
    log.append_batch([b"f", b"g"], timestamps=[T0 + 1600, T0 + 2002])  # max ts decides: roll
    log.append(b"h", timestamp=T0 + 50)     # earlier than the segment's first: no roll
    assert [(s.base_offset, s.next_offset) for s in log.segments()] == [(0, 3), (3, 5), (5, 8)]


def test_manual_roll(open_log, log_dir):
    log = open_log()
    log.roll()  # empty active segment: nothing to do
    assert segment_bases(log_dir) == [0]
    fill(log, 3)
    log.roll()
    log.roll()
    assert [s.base_offset for s in log.segments()] == [0, 3]
    assert log.append(b"x") == 3
    assert segment_bases(log_dir) == [0, 3]


# ---- retention and delete_records ----

def three_segments(log):
    for seg_ts in (T0, T0 + 10_000, T0 + 20_000):
        for i in range(10):
            log.append(b"%d" % (seg_ts + i), timestamp=seg_ts + i)
        log.roll()


def test_retention_by_time(open_log, log_dir):
    log = open_log(retention_ms=5_000)
    three_segments(log)
    log.append(b"active", timestamp=T0 + 30_000)
    assert [s.base_offset for s in log.segments()] == [0, 10, 20, 30]
    assert log.enforce_retention(now_ms=T0 + 9 + 5_000) == 0        # exactly retention_ms old: kept
    assert log.enforce_retention(now_ms=T0 + 9 + 5_001) == 1
    assert (log.log_start_offset, log.log_end_offset) == (10, 31)
    assert segment_bases(log_dir) == [10, 20, 30]
    assert not any(n.startswith("%020d" % 0) for n in os.listdir(log_dir))
    with pytest.raises(OffsetOutOfRangeError):
        log.read(9)
    with pytest.raises(OffsetOutOfRangeError):
        list(log.scan(5))
    assert bytes(log.read(10).value) == b"%d" % (T0 + 10_000)
    # never the active segment, however old
    assert log.enforce_retention(now_ms=T0 + 10**9) == 2
    assert [s.base_offset for s in log.segments()] == [30]
    assert log.log_start_offset == 30
    assert values(log) == [b"active"]
    log.close()
    with Log.open(log_dir) as again:
        assert again.log_start_offset == 30
        assert again.log_end_offset == 31


def test_retention_by_size(open_log, log_dir):
    log = open_log(retention_bytes=None)
    three_segments(log)
    log.append(b"active")
    sizes = [s.size for s in log.segments()]
    total = sum(sizes)
    log.close()
    log = open_log(retention_bytes=total - sizes[0] + 1)
    assert log.enforce_retention() == 0
    log.close()
    log = open_log(retention_bytes=total - sizes[0])
    assert log.enforce_retention() == 1
    assert log.log_start_offset == 10
    assert segment_bases(log_dir) == [10, 20, 30]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0)
    log.close()
    log = open_log(retention_bytes=0)
    assert log.enforce_retention() == 2  # everything but the active segment
    assert log.log_start_offset == 30
    assert segment_bases(log_dir) == [30]


def test_delete_records(open_log, log_dir):
    log = open_log(segment_bytes=1024)
    fill(log, 50)
    bases = [s.base_offset for s in log.segments()]
    target = bases[2] + 3
    assert log.delete_records(target) == target
    assert log.log_start_offset == target
    assert segment_bases(log_dir)[0] == bases[2]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(target - 1)
    assert log.read(target).offset == target
    assert values(log) == [value_of(i) for i in range(target, 50)]
    assert log.delete_records(5) == target  # never moves back
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records(51)
    log.close()
    with Log.open(log_dir, segment_bytes=1024) as again:
        assert again.log_start_offset == target
        assert values(again) == [value_of(i) for i in range(target, 50)]
    with Log.open(log_dir, segment_bytes=1024) as again:
        assert again.delete_records(50) == 50
        assert len(again) == 0
        assert again.append(b"x") == 50


# ---- flushing ----

def test_flush_messages(open_log):
    log = open_log(flush_messages=5)
    fill(log, 4)
    assert log.recovery_point == 0
    fill(log, 1, start=4)
    assert log.recovery_point == 5
    log.append_batch([b"a", b"b", b"c"])
    assert log.recovery_point == 5
    log.append_batch([b"d", b"e"])
    assert log.recovery_point == 10


def _close_despite_flusher(log):
    """Close a log whose close() may trip over the flusher thread (see
    test_close_with_flush_ms); the test that reports that bug is that one."""
    try:
        log.close()
    except TypeError:
        log._flusher = None
        log.close()


def test_flush_ms_flushes_by_itself(log_dir):
    log = Log.open(log_dir, flush_ms=100)
    try:
        fill(log, 3)
        assert log.recovery_point == 0
        # Nothing but the flusher moves the recovery point here (no flush(),
        # no close), so reaching 3 is the check; a generous deadline and no
        # upper bound on the wait: an fdatasync on a loaded disk (parallel
        # test workers) can take longer than the 0.8 s asserted before.
        t = time.monotonic()
        while log.recovery_point < 3 and time.monotonic() - t < 30:
            time.sleep(0.01)
        assert log.recovery_point == 3
    finally:
        _close_despite_flusher(log)


def test_close_with_flush_ms(log_dir):
    log = Log.open(log_dir, flush_ms=50)
    log.append(b"a")
    time.sleep(0.15)
    try:
        log.close()
    finally:
        if not log.closed:
            _close_despite_flusher(log)
    assert log.closed


# ---- close and reopen ----

@pytest.mark.parametrize("wb", BUFFERS)
def test_close_and_reopen_keeps_everything(open_log, log_dir, wb):
    log = open_log(segment_bytes=1024, write_buffer_bytes=wb, index_interval_bytes=200)
    fill(log, 150)
    log.append_batch([b"b%d" % i for i in range(10)], headers=[[("h", b"%d" % i)] for i in range(10)],
                     compression="lz4", timestamps=[T0 + 1000 + i for i in range(10)])
    before = [rec_tuple(r) for r in log.scan()]
    segs_before = [(s.base_offset, s.next_offset, s.size, s.max_timestamp) for s in log.segments()]
    idx_before = [(b, o.tolist(), t.tolist()) for b, o, t in log.index_arrays()]
    assert len(segs_before) > 10
    assert not os.path.exists(os.path.join(log_dir, ".kafka_cleanshutdown"))
    log.close()
    assert os.path.exists(os.path.join(log_dir, ".kafka_cleanshutdown"))
    assert log.closed
    log = open_log(segment_bytes=1024, write_buffer_bytes=wb, index_interval_bytes=200)
    # Only read so far: still cleanly shut down (the marker goes at the first change).
    assert os.path.exists(os.path.join(log_dir, ".kafka_cleanshutdown"))
    assert [rec_tuple(r) for r in log.scan()] == before
    assert [(s.base_offset, s.next_offset, s.size, s.max_timestamp) for s in log.segments()] == segs_before
    idx_after = [(b, o.tolist(), t.tolist()) for b, o, t in log.index_arrays()]
    assert [(b, o) for b, o, _ in idx_after] == [(b, o) for b, o, _ in idx_before]
    assert [t for _, _, t in idx_after[:-1]] == [t for _, _, t in idx_before[:-1]]
    # closing the active segment may add its final time entry (as Kafka's close does)
    assert idx_after[-1][2] in (idx_before[-1][2], idx_before[-1][2] + [(T0 + 1009, 9)])
    assert log.recovery_point == log.log_end_offset == 160
    assert log.offset_for_time(T0 + 1005) == 155
    assert log.append(b"more") == 160
    assert not os.path.exists(os.path.join(log_dir, ".kafka_cleanshutdown"))
    log.close()
    with Log.open(log_dir) as again:
        assert [rec_tuple(r) for r in again.scan()][:160] == before
        assert bytes(again.read(160).value) == b"more"


def test_leftover_temporary_files_are_removed(open_log, log_dir, caplog):
    log = open_log()
    fill(log, 3)
    log.close()
    for name in ("00000000000000000000.log.deleted", "00000000000000000000.log.swap",
                 "recovery-point-offset-checkpoint.tmp"):
        with open(os.path.join(log_dir, name), "wb") as f:
            f.write(b"junk")
    log = open_log()
    assert values(log) == [value_of(i) for i in range(3)]
    assert not any(n.endswith((".deleted", ".swap", ".tmp")) for n in os.listdir(log_dir))


# ---- index arrays ----

def expected_indexes(batches, interval, sealed):
    """Kafka's index rule (KAFKA-NOTES §1.2/1.3) replayed over a segment's batches."""
    off, tim = [], []
    since = 0
    max_ts, max_off = -1, -1
    for b in batches:
        if b["max_timestamp"] > max_ts:
            max_ts, max_off = b["max_timestamp"], b["last_offset"]
        if since > interval:
            off.append((b["last_offset"], b["position"]))
            if not tim or max_ts > tim[-1][0]:
                tim.append((max_ts, max_off))
            since = 0
        since += b["size"]
    if sealed and max_ts >= 0 and (not tim or max_ts > tim[-1][0]):
        tim.append((max_ts, max_off))
    return off, tim


@pytest.mark.parametrize("reopen", [False, True], ids=["live", "reopened"])
def test_index_arrays_match_the_data(open_log, reopen):
    log = open_log(segment_bytes=4096, index_interval_bytes=300)
    ts = T0
    for i in range(120):
        if i % 7 == 0:
            log.append_batch([b"%d-%d" % (i, j) * 10 for j in range(4)],
                             timestamps=[ts + (j * 13) % 5 for j in range(4)])
        else:
            log.append(b"%d" % i * (i % 30 + 1), timestamp=ts - (i % 4) * 3)  # out-of-order timestamps
        ts += 2
    if reopen:
        log.close()
        log = open_log(segment_bytes=4096, index_interval_bytes=300)
    log.flush()  # the files are read below
    arrays = log.index_arrays()
    segs = log.segments()
    assert len(arrays) == len(segs) >= 3
    for k, ((base, oix, tix), seg) in enumerate(zip(arrays, segs)):
        assert base == seg.base_offset
        assert isinstance(oix, np.ndarray) and isinstance(tix, np.ndarray)
        assert oix.dtype.names == ("relative_offset", "position")
        assert tix.dtype.names == ("timestamp", "relative_offset")
        assert not oix.flags.writeable and not oix.flags.owndata  # a view of the mmap
        batches = read_batches_file(seg.path)
        by_pos = {b["position"]: b for b in batches}
        for rel, pos in oix.tolist():
            b = by_pos.get(pos)
            assert b is not None, f"segment {base}: index position {pos} is not a batch start"
            assert b["last_offset"] == base + rel, "Kafka indexes the batch's last offset"
        assert np.all(np.diff(oix["relative_offset"]) > 0) and np.all(np.diff(oix["position"]) > 0)
        assert np.all(np.diff(tix["timestamp"]) > 0) and np.all(np.diff(tix["relative_offset"]) >= 0)
        for t, rel in tix.tolist():
            upto = [b["max_timestamp"] for b in batches if b["last_offset"] <= base + rel]
            assert upto and max(upto) == t, "a time entry is the max timestamp up to its offset"
        # a rolled segment is sealed; so is the active one once the log was closed
        want_off, want_time = expected_indexes(batches, 300, sealed=k + 1 < len(segs) or reopen)
        assert [(base + r, p) for r, p in oix.tolist()] == want_off
        assert [(t, base + r) for t, r in tix.tolist()] == want_time
    del arrays, oix, tix


def test_index_arrays_pin_their_segments(open_log):
    log = open_log()
    fill(log, 5)
    arrays = log.index_arrays()
    with pytest.raises(BufferError):
        log.truncate_to(0)
    log.close()                      # the arrays keep their mappings
    assert log.closed
    assert arrays[0][1].shape[0] >= 0
    del arrays


# ---- views, locks, errors ----

@pytest.mark.parametrize("kind", ["read", "value", "header", "scan", "scan_values", "read_batches"])
def test_views_block_truncation_below_them_not_close(open_log, kind):
    log = open_log()
    log.append_batch([b"a", b"b", b"c"], headers=[[("h", b"1")]] * 3)
    log.append_batch([b"d", b"e"])
    if kind == "read":
        view = log.read(1)
    elif kind == "value":
        view = log.read(1).value  # the Record is gone, its value view is not
    elif kind == "header":
        view = log.read(1).headers[0][1]
    elif kind == "scan":
        view = log.scan()
        next(view)
    elif kind == "scan_values":
        view = next(iter(log.scan_values(1)))
    else:
        view = log.read_batches(0)
    with pytest.raises(BufferError, match="still alive"):
        log.truncate_to(1)
    assert log.log_end_offset == 5
    assert log.append(b"f") == 5     # the log still works
    assert bytes(log.read(4).value) == b"e"
    log.close()                      # views do not hold up close
    assert log.closed
    del view


def test_copies_do_not_block(open_log):
    log = open_log()
    fill(log, 3)
    kept = bytes(log.read(1).value)
    log.truncate_to(1)
    log.close()
    assert kept == value_of(1)


def test_second_open_in_same_process_is_locked(open_log, log_dir):
    log = open_log()
    with pytest.raises(LogLockedError):
        Log.open(log_dir)
    fill(log, 2)
    log.close()
    with Log.open(log_dir) as again:
        assert again.log_end_offset == 2


_CHILD_OPEN = """
import sys
from pylog import Log
from pylog.errors import LogLockedError
try:
    log = Log.open(sys.argv[1])
except LogLockedError as e:
    print("LOCKED", e)
    sys.exit(3)
print("OPENED", log.log_end_offset)
log.close()
"""

_CHILD_HOLD = """
import sys, time
from pylog import Log
log = Log.open(sys.argv[1])
log.append(b"child")
log.flush()
print("HOLDING", flush=True)
time.sleep(60)
"""


def test_second_open_from_another_process_is_locked(open_log, log_dir):
    import subprocess
    import sys
    from loghelpers import REPO
    log = open_log()
    p = run_python(_CHILD_OPEN, log_dir)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "LOCKED" in p.stdout and log_dir in p.stdout
    fill(log, 1)
    log.close()
    p = run_python(_CHILD_OPEN, log_dir)
    assert p.returncode == 0 and "OPENED 1" in p.stdout, p.stdout + p.stderr

    # and the other way round: a live child holds the lock
    env = dict(os.environ, PYTHONPATH=REPO)
    child = subprocess.Popen([sys.executable, "-c", _CHILD_HOLD, log_dir], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "HOLDING"
        with pytest.raises(LogLockedError):
            Log.open(log_dir)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    with Log.open(log_dir) as again:  # a dead holder's lock is gone
        assert bytes(again.read(1).value) == b"child"


def test_offset_out_of_range(open_log):
    log = open_log(segment_bytes=1024)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0)
    assert list(log.scan()) == []
    fill(log, 30)
    for bad in (-1, 30, 31, 10**12):
        with pytest.raises(OffsetOutOfRangeError):
            log.read(bad)
        with pytest.raises(OffsetOutOfRangeError):
            log.read_batches(bad)
    for bad in (-1, 31):
        with pytest.raises(OffsetOutOfRangeError):
            list(log.scan(bad))
        with pytest.raises(OffsetOutOfRangeError):
            list(log.scan_values(bad))
    log.delete_records(15)
    for bad in (0, 14):
        with pytest.raises(OffsetOutOfRangeError):
            log.read(bad)
        with pytest.raises(OffsetOutOfRangeError):
            list(log.scan(bad))
    assert issubclass(OffsetOutOfRangeError, PylogError)
    assert OffsetOutOfRangeError.error_code == 1


def test_closed_log_raises(open_log):
    log = open_log()
    fill(log, 3)
    log.close()
    log.close()  # twice is fine
    calls = [lambda: log.append(b"x"), lambda: log.append_batch([b"x"]), lambda: log.read(0),
             lambda: list(log.scan()), lambda: list(log.scan_values()), log.flush,
             lambda: log.truncate_to(1), log.segments, log.index_arrays, lambda: log.read_batches(0),
             lambda: log.offset_for_time(0), lambda: log.delete_records(1), log.enforce_retention, log.roll,
             lambda: log.append_batches(b"")]
    for call in calls:
        with pytest.raises(LogClosedError):
            call()


def test_scan_after_close_raises(open_log):
    log = open_log()
    fill(log, 3)
    it = log.scan_values()
    log.close()
    with pytest.raises(LogClosedError):
        list(it)


def test_concurrent_appends_from_threads(open_log):
    log = open_log(segment_bytes=4096)
    n_threads, per = 4, 300
    errors = []

    def worker(t):
        try:
            for i in range(per):
                if i % 10 == 0:
                    log.append_batch([b"%d:%d:%d" % (t, i, j) for j in range(3)])
                else:
                    log.append(b"%d:%d" % (t, i))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    got = values(log)
    assert len(got) == log.log_end_offset == n_threads * (per + per // 10 * 2)
    assert len(set(got)) == len(got)
    for t in range(n_threads):  # each thread's records keep their order
        mine = [v for v in got if v.startswith(b"%d:" % t)]
        assert mine == [b"%d:%d" % (t, i) if i % 10 else b"%d:%d:%d" % (t, i, j)
                        for i in range(per) for j in (range(3) if i % 10 == 0 else [None])]


def test_read_batches_returns_whole_batches(open_log):
    from loghelpers import walk_batches
    log = open_log()
    log.append_batch([b"a", b"b", b"c"], timestamps=[1, 2, 3])          # 0..2
    log.append(b"d", timestamp=4)                                      # 3
    log.append_batch([b"e", b"f"], compression="lz4", timestamps=[5, 6])  # 4..5
    fs = log.read_batches(1, max_bytes=1)   # at least one whole batch
    data = bytes(fs)
    del fs
    batches = walk_batches(data)
    assert [(b["base_offset"], b["last_offset"]) for b in batches] == [(0, 2)]
    assert sum(b["size"] for b in batches) == len(data)
    fs = log.read_batches(3)
    data = bytes(fs)
    del fs
    assert [(b["base_offset"], b["last_offset"]) for b in walk_batches(data)] == [(3, 3), (4, 5)]
    fs = log.read_batches(0)
    everything = walk_batches(bytes(fs))
    del fs
    assert [(b["base_offset"], b["last_offset"]) for b in everything] == [(0, 2), (3, 3), (4, 5)]
    first_two = everything[0]["size"] + everything[1]["size"]
    fs = log.read_batches(0, max_bytes=first_two + 10)
    assert [(b["base_offset"], b["last_offset"]) for b in walk_batches(bytes(fs))] == [(0, 2), (3, 3)]
    del fs


def test_large_records_while_views_are_alive(open_log):
    log = open_log(segment_bytes=1024)
    log.append(b"small")
    small = log.read(0).value
    big = log.append(b"B" * (3 << 20))
    b_view = log.read(big).value
    bigger = log.append(b"C" * (5 << 20))
    assert bytes(log.read(bigger).value) == b"C" * (5 << 20)
    assert bytes(b_view) == b"B" * (3 << 20)
    assert bytes(small) == b"small"
    del small, b_view
    assert [len(bytes(v)) for v in log.scan_values()] == [5, 3 << 20, 5 << 20]


def test_scans_and_reads_while_another_thread_appends(open_log):
    import random
    log = open_log(segment_bytes=1024, write_buffer_bytes=300)
    stop = threading.Event()
    problems = []

    def reader():
        rnd = random.Random(5)
        while not stop.is_set():
            leo = log.log_end_offset
            if not leo:
                continue
            s = rnd.randrange(leo)
            try:
                got = [bytes(x) for x in log.scan_values(s, s + 40)]
                if got[:min(40, leo - s)] != [str(i).encode() for i in range(s, min(s + 40, leo))]:
                    problems.append(("scan", s, got[:3]))
                r = log.read(s)
                if bytes(r.value) != str(s).encode():
                    problems.append(("read", s, bytes(r.value)))
                del r
            except Exception as e:  # noqa: BLE001
                problems.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(3000):
            if i % 10 == 0:
                assert log.append_batch([str(i + j).encode() for j in range(3)]) == i
            elif i % 10 in (1, 2):
                continue
            else:
                assert log.append(str(i).encode()) == i
    finally:
        stop.set()
        t.join()
    assert not problems, problems[:5]
    assert values(log) == [str(i).encode() for i in range(3000)]


def test_offset_for_time_is_never_below_log_start(open_log):
    log = open_log(segment_bytes=1024)
    fill(log, 40)                      # timestamps T0 + i
    log.delete_records(17)
    assert log.offset_for_time(T0) == 17
    assert log.offset_for_time(T0 + 20) == 20


def test_many_headers_and_empty_values_through_the_log(open_log):
    log = open_log()
    hdrs = [(f"h{i}", None if i % 4 == 0 else b"%d" % i) for i in range(20)]
    assert log.append(b"", key=b"", headers=hdrs, timestamp=T0) == 0
    assert log.append_batch([b"", None], keys=[None, b""], headers=[hdrs, []], timestamps=[T0, T0]) == 1
    assert rec_tuple(log.read(0)) == (0, T0, b"", b"", hdrs)
    assert rec_tuple(log.read(1)) == (1, T0, None, b"", hdrs)
    assert rec_tuple(log.read(2)) == (2, T0, b"", None, [])


def test_write_through_reserves_ahead_and_sealed_segments_give_it_back(tmp_path):
    # write_buffer_bytes=0 (the broker's mode): blocks are reserved in 4 MiB steps
    # ahead of the end (fallocate, size kept), and a segment's leftover
    # reservation is freed when it is sealed by a roll.
    with Log.open(tmp_path / "t-0", write_buffer_bytes=0, segment_bytes=64 << 20) as log:
        log.append_batch([b"x" * 1000] * 10)
        active = tmp_path / "t-0" / f"{0:020d}.log"
        st = os.stat(active)
        if st.st_blocks * 512 < (4 << 20):
            pytest.skip("this file system does not reserve blocks with fallocate")
        assert st.st_size < 20000
        log.roll()
        st = os.stat(active)
        assert st.st_blocks * 512 <= st.st_size + 4096
        log.append_batch([b"y" * 1000] * 10)
    with Log.open(tmp_path / "t-0") as log:
        assert [bytes(v)[:1] for v in log.scan_values()] == [b"x"] * 10 + [b"y"] * 10
