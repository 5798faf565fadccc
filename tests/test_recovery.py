"""Recovery and bad input: torn tails, bit flips, broken indexes.

An unclean stop is made two ways: a child process that exits with os._exit()
without close(), or a copy of the directory taken while the log is open (what a
machine crash leaves, minus whatever was still in the write buffer).
"""
from __future__ import annotations

import logging
import os
import random
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pylog import Log, _engine
from pylog.errors import CorruptRecordError

from loghelpers import flip_bit, log_file, read_batches_file, rec_tuple, run_python, segment_bases

T0 = 1_700_000_000_000


def value_of(i):
    return b"value-%06d-" % i + b"#" * (i % 50)


def fill(log, start, n):
    for i in range(start, start + n):
        log.append(value_of(i), key=b"k%d" % i, timestamp=T0 + i)


def all_values(log, start=None):
    return [bytes(v) for v in log.scan_values(start)]


def crash_image(log, dst) -> str:
    """An unclean image of an open log: its directory copied as it is now."""
    shutil.copytree(log.path, dst)
    assert not os.path.exists(os.path.join(dst, ".kafka_cleanshutdown"))
    return os.fspath(dst)


def cut_warnings(caplog, path):
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("pylog") and r.levelno >= logging.WARNING and path in r.getMessage()]


_CHILD_WRITER = """
import os, sys
from pylog import Log
path, flushed, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
log = Log.open(path, write_buffer_bytes=0, segment_bytes=int(sys.argv[4]))
def v(i):
    return b"value-%06d-" % i + b"#" * (i % 50)
for i in range(flushed):
    log.append(v(i), key=b"k%d" % i, timestamp=1_700_000_000_000 + i)
log.flush()
for i in range(flushed, flushed + extra):
    log.append(v(i), key=b"k%d" % i, timestamp=1_700_000_000_000 + i)
os._exit(0)  # no close(): an unclean stop
"""


def write_then_die(path, flushed, extra, segment_bytes=1 << 30):
    run_python(_CHILD_WRITER, path, flushed, extra, segment_bytes, check=True)
    assert not os.path.exists(os.path.join(path, ".kafka_cleanshutdown"))


# ---- torn tails ----

@pytest.mark.parametrize("tail", ["partial-5", "partial-40", "partial-61", "partial-all-but-1",
                                  "garbage", "zeros"])
def test_torn_tail_is_cut_on_reopen(log_dir, caplog, tail):
    caplog.set_level(logging.WARNING, logger="pylog")
    write_then_die(log_dir, flushed=30, extra=10)
    last = log_file(log_dir, segment_bases(log_dir)[-1])
    good_size = os.path.getsize(last)
    batch = _engine.encode_batch([b"torn" * 30, b"x"], base_offset=40, timestamps=[T0, T0])
    junk = {
        "partial-5": batch[:5], "partial-40": batch[:40], "partial-61": batch[:61],
        "partial-all-but-1": batch[:-1],
        "garbage": random.Random(7).randbytes(333),
        "zeros": b"\0" * 4096,
    }[tail]
    with open(last, "ab") as f:
        f.write(junk)

    with Log.open(log_dir) as log:
        assert log.log_end_offset == 40
        assert all_values(log) == [value_of(i) for i in range(40)]
        assert os.path.getsize(last) == good_size
        msgs = cut_warnings(caplog, last)
        assert msgs, f"no warning names {last}: {[r.getMessage() for r in caplog.records]}"
        assert any(str(len(junk)) in m and str(good_size) in m for m in msgs), msgs
        assert log.append(b"next", timestamp=T0 + 99) == 40
        assert log.append_batch([b"n1", b"n2"]) == 41
    with Log.open(log_dir) as log:
        assert all_values(log) == [value_of(i) for i in range(40)] + [b"next", b"n1", b"n2"]


def test_unclean_stop_without_damage_keeps_everything(log_dir, caplog):
    caplog.set_level(logging.WARNING, logger="pylog")
    write_then_die(log_dir, flushed=20, extra=25, segment_bytes=1024)
    assert len(segment_bases(log_dir)) > 3
    with Log.open(log_dir, segment_bytes=1024) as log:
        assert log.log_end_offset == 45
        assert all_values(log) == [value_of(i) for i in range(45)]
        assert [rec_tuple(log.read(i))[:3] for i in (0, 44)] == [(0, T0, b"k0"), (44, T0 + 44, b"k44")]
        assert log.recovery_point == 45
    assert not [r for r in caplog.records if "cut" in r.getMessage()]


@pytest.mark.parametrize("wb", [0, 64 << 10], ids=["unbuffered", "buffered"])
def test_crash_image_keeps_every_flushed_record(open_log, tmp_path, wb):
    log = open_log(segment_bytes=2048, write_buffer_bytes=wb)
    fill(log, 0, 60)
    log.flush()
    fill(log, 60, 3)  # maybe still in the write buffer: may or may not survive
    image = crash_image(log, tmp_path / "image")
    with Log.open(image, segment_bytes=2048) as again:
        n = again.log_end_offset
        assert 60 <= n <= 63
        if wb == 0:
            assert n == 63
        assert all_values(again) == [value_of(i) for i in range(n)]


@pytest.mark.parametrize("wb", [512, 64 << 10], ids=["wb512", "wb64k"])
@pytest.mark.parametrize("made_durable", ["flush", "close"])
def test_truncate_inside_a_batch_keeps_durable_records_durable(open_log, log_dir, tmp_path, wb, made_durable):
    # Records below the truncation point were durable before truncate_to and are
    # below the recovery point after it: a crash right after must not lose them.
    log = open_log(write_buffer_bytes=wb)
    log.append_batch([b"a", b"b", b"c"], timestamps=[T0, T0 + 1, T0 + 2])
    if made_durable == "flush":
        log.flush()
    else:
        log.close()
        log = open_log(write_buffer_bytes=wb)
    log.truncate_to(2)
    assert log.recovery_point == 2
    image = crash_image(log, tmp_path / "image")
    with Log.open(image) as again:
        assert again.log_end_offset == 2
        assert all_values(again) == [b"a", b"b"]


# ---- bit flips ----

def multi_segment_log(open_log, n=120, **kw):
    log = open_log(segment_bytes=2048, **kw)
    for i in range(0, n, 3):
        log.append_batch([value_of(j) for j in range(i, i + 3)], keys=[b"k%d" % j for j in range(i, i + 3)],
                         timestamps=[T0 + j for j in range(i, i + 3)])
    return log


@pytest.mark.parametrize("recovery", ["auto", "full"])
def test_bit_flip_in_last_segment_after_unclean_stop(open_log, tmp_path, caplog, recovery):
    caplog.set_level(logging.WARNING, logger="pylog")
    log = multi_segment_log(open_log, write_buffer_bytes=0)  # every append reached the OS
    image = crash_image(log, tmp_path / "image")             # nothing flushed: all is checked
    last_base = segment_bases(image)[-1]
    path = log_file(image, last_base)
    batches = read_batches_file(path)
    assert len(batches) >= 3
    victim = batches[len(batches) // 2]
    flip_bit(path, victim["position"] + victim["size"] - 5, 3)  # inside a record
    with Log.open(image, segment_bytes=2048, recovery=recovery) as again:
        assert again.log_end_offset == victim["base_offset"]
        assert all_values(again) == [value_of(i) for i in range(victim["base_offset"])]
        assert os.path.getsize(path) == victim["position"]
        assert any(str(victim["position"]) in m for m in cut_warnings(caplog, path))
        assert again.append(b"after") == victim["base_offset"]
    with Log.open(image, segment_bytes=2048) as again:
        assert again.log_end_offset == victim["base_offset"] + 1


def test_bit_flip_after_recovery_point_cuts_and_drops_later_segments(open_log, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="pylog")
    log = open_log(segment_bytes=2048)
    fill(log, 0, 20)
    log.flush()                      # recovery point 20
    held = threading.Event()
    with ThreadPoolExecutor(1) as executor:
        # The rolls' syncs (Log._after_roll) wait on a busy worker: the
        # crash comes before any of them.
        executor.submit(held.wait, 60)
        log.flush_executor = executor
        fill(log, 20, 100)           # several more segments, never flushed
        bases = [s.base_offset for s in log.segments()]
        assert len(bases) >= 4
        image = crash_image(log, tmp_path / "image")
        assert log.recovery_point == 20
        held.set()
    # flip a bit in the middle of an unflushed segment that is not the last
    victim_seg = next(b for b in bases if b > 20)
    path = log_file(image, victim_seg)
    batches = read_batches_file(path)
    victim = batches[len(batches) // 2]
    flip_bit(path, victim["position"] + victim["size"] - 3, 0)
    later = [b for b in bases if b > victim_seg]
    assert later
    with Log.open(image, segment_bytes=2048) as again:
        assert again.log_end_offset == victim["base_offset"]
        assert all_values(again) == [value_of(i) for i in range(victim["base_offset"])]
        assert segment_bases(image) == [b for b in bases if b <= victim_seg]
        for b in later:
            for suffix in ("log", "index", "timeindex"):
                assert not os.path.exists(log_file(image, b, suffix))
        msgs = cut_warnings(caplog, path)
        assert any(str(victim["position"]) in m for m in msgs), msgs
        assert again.append(b"x") == victim["base_offset"]


@pytest.mark.parametrize("where", ["value", "crc-field", "attributes"])
def test_bit_flip_in_old_segment_of_a_clean_log_is_reported_on_read(open_log, log_dir, caplog, where):
    caplog.set_level(logging.WARNING, logger="pylog")
    log = multi_segment_log(open_log)
    log.close()
    bases = segment_bases(log_dir)
    assert len(bases) >= 4
    path = log_file(log_dir, bases[1])
    batches = read_batches_file(path)
    victim = batches[len(batches) // 2]
    pos = {"value": victim["position"] + victim["size"] - 4, "crc-field": victim["position"] + 18,
           "attributes": victim["position"] + 22}[where]
    flip_bit(path, pos, 1)
    first, last = victim["base_offset"], victim["last_offset"]

    log = open_log(segment_bytes=2048)  # clean: nothing is checked, nothing is cut
    assert log.log_end_offset == 120
    assert os.path.getsize(path) == sum(b["size"] for b in batches)
    for off in range(first, last + 1):
        with pytest.raises(CorruptRecordError) as ei:
            log.read(off)
        err = ei.value
        assert err.path == path and err.position == victim["position"]
        assert path in str(err) and str(victim["position"]) in str(err)
    # the records around it are fine
    assert bytes(log.read(first - 1).value) == value_of(first - 1)
    assert bytes(log.read(last + 1).value) == value_of(last + 1)
    assert all_values(log, last + 1) == [value_of(i) for i in range(last + 1, 120)]
    # a scan over it yields what comes before, then raises
    got = []
    with pytest.raises(CorruptRecordError) as ei:
        for v in log.scan_values(bases[1]):
            got.append(bytes(v))
    assert got == [value_of(i) for i in range(bases[1], first)]
    assert ei.value.path == path and ei.value.position == victim["position"]
    with pytest.raises(CorruptRecordError):
        list(log.scan())
    del ei, err, v
    log.close()

    # a full recovery finds it and cuts there (Kafka's rule: later segments go)
    with Log.open(log_dir, segment_bytes=2048, recovery="full") as again:
        assert again.log_end_offset == first
        assert all_values(again) == [value_of(i) for i in range(first)]
        assert segment_bases(log_dir) == bases[:2]
        assert cut_warnings(caplog, path)


def test_full_recovery_of_an_intact_log_cuts_nothing(open_log, log_dir, caplog):
    caplog.set_level(logging.WARNING, logger="pylog")
    log = multi_segment_log(open_log, index_interval_bytes=500)
    idx = [(b, o.tolist(), t.tolist()) for b, o, t in log.index_arrays()]
    log.close()
    with Log.open(log_dir, segment_bytes=2048, index_interval_bytes=500, recovery="full") as again:
        assert again.log_end_offset == 120
        assert all_values(again) == [value_of(i) for i in range(120)]
        assert [(b, o.tolist()) for b, o, _ in again.index_arrays()] == [(b, o) for b, o, _ in idx]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_full_recovery_with_a_smaller_index_interval_cuts_nothing(open_log, log_dir, caplog):
    # index.interval.bytes may change between runs (it is a config); a smaller
    # one needs more index entries than the old segment's trimmed index holds.
    caplog.set_level(logging.WARNING, logger="pylog")
    log = multi_segment_log(open_log)   # default interval 4096
    log.close()
    with Log.open(log_dir, segment_bytes=2048, index_interval_bytes=0, recovery="full") as again:
        assert again.log_end_offset == 120, [r.getMessage() for r in caplog.records]
        assert all_values(again) == [value_of(i) for i in range(120)]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("mode", ["unclean", "full"])
def test_recovery_after_truncate_and_roll_cuts_nothing(open_log, tmp_path, caplog, mode):
    # After truncate_to the segment's index byte counter restarts at zero, so the
    # entries written afterwards differ from what a replay of the index rule over
    # the whole segment wants: with 78-byte batches and a 100-byte interval the
    # replay wants 3 entries where the trimmed index has room for 2.
    caplog.set_level(logging.WARNING, logger="pylog")
    log = open_log(index_interval_bytes=100, write_buffer_bytes=0)
    for i in range(4):
        log.append(b"%010d" % i, timestamp=T0 + i)
    assert log.segments()[0].size == 4 * 78
    log.truncate_to(3)
    for i in range(3, 7):
        log.append(b"%010d" % i, timestamp=T0 + i)
    log.roll()
    log.append(b"tail", timestamp=T0 + 100)
    if mode == "unclean":
        path = crash_image(log, tmp_path / "image")
        opts = {}
    else:
        log.close()
        path, opts = log.path, {"recovery": "full"}
    with Log.open(path, index_interval_bytes=100, **opts) as again:
        assert again.log_end_offset == 8, [r.getMessage() for r in caplog.records]
        assert all_values(again) == [b"%010d" % i for i in range(7)] + [b"tail"]
    assert not [r.getMessage() for r in caplog.records if "cut" in r.getMessage()]


# ---- indexes ----

N = 175


def _index_case(open_log, log_dir):
    log = open_log(segment_bytes=4096, index_interval_bytes=256)
    fill(log, 0, N)
    before = [(b, o.tolist(), t.tolist()) for b, o, t in log.index_arrays()]
    log.close()
    assert len(before) >= 3 and all(len(o) > 2 for _, o, _ in before)
    return before


# A damaged index can make the engine read at a wild position; the checks run in
# a child process so that a crash (SIGSEGV, SIGBUS) fails one test, not the run.
_CHILD_VERIFY = """
import json, sys
from pylog import Log
path, n = sys.argv[1], int(sys.argv[2])
T0 = 1_700_000_000_000
def value_of(i):
    return b"value-%06d-" % i + b"#" * (i % 50)
out = {}
with Log.open(path, segment_bytes=4096, index_interval_bytes=256) as log:
    out["leo"] = log.log_end_offset
    out["bad_reads"] = [i for i in range(min(n, log.log_end_offset))
                        if bytes(log.read(i).value) != value_of(i)]
    out["scan_ok"] = [bytes(v) for v in log.scan_values()] == [value_of(i) for i in range(log.log_end_offset)]
    out["scan77_ok"] = log.log_end_offset > 77 and [bytes(v) for v in log.scan_values(77)] == [value_of(i) for i in range(77, log.log_end_offset)]
    out["oft"] = [log.offset_for_time(T0 + rel) for rel in (0, 1, 17, 60, 100, n - 1, n)]
    out["offset_index"] = [(b, o.tolist()) for b, o, _ in log.index_arrays()]
    out["append"] = log.append(b"more")
print(json.dumps(out))
"""


def verify_in_child(log_dir):
    p = run_python(_CHILD_VERIFY, log_dir, N)
    assert p.returncode == 0, f"child died with {p.returncode} (negative: signal):\n{p.stderr[-3000:]}"
    import json
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def damage_file(path, damage, seed):
    size = os.path.getsize(path)
    if damage == "delete":
        os.remove(path)
    elif damage == "garbage":
        with open(path, "wb") as f:
            f.write(random.Random(seed).randbytes(size))
    elif damage == "truncate-odd":
        os.truncate(path, size - 3)
    else:
        with open(path, "wb") as f:
            f.write(b"\0" * size)


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate-odd", "zeros"])
@pytest.mark.parametrize("which", ["old", "active"])
def test_damaged_offset_index_still_reads_right(open_log, log_dir, damage, which):
    before = _index_case(open_log, log_dir)
    base = before[1][0] if which == "old" else before[-1][0]
    damage_file(log_file(log_dir, base, "index"), damage, seed=1)
    out, stderr = verify_in_child(log_dir)
    assert out["leo"] == N, f"valid records were cut:\n{stderr[-2000:]}"
    assert out["bad_reads"] == []
    assert out["scan_ok"] and out["scan77_ok"]
    assert out["oft"] == [0, 1, 17, 60, 100, N - 1, None]
    assert out["append"] == N


@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_damaged_index_is_rebuilt(open_log, log_dir, damage):
    before = _index_case(open_log, log_dir)
    damage_file(log_file(log_dir, before[1][0], "index"), damage, seed=2)
    out, stderr = verify_in_child(log_dir)
    assert [tuple(x) for x in out["offset_index"]] == [(b, [list(e) for e in o]) for b, o, _ in before]


@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_damaged_time_index_still_finds_times(open_log, log_dir, damage):
    before = _index_case(open_log, log_dir)
    damage_file(log_file(log_dir, before[0][0], "timeindex"), damage, seed=3)
    out, stderr = verify_in_child(log_dir)
    assert out["leo"] == N, f"valid records were cut:\n{stderr[-2000:]}"
    assert out["oft"] == [0, 1, 17, 60, 100, N - 1, None]
    assert out["scan_ok"] and not out["bad_reads"]


def test_orphan_index_files_are_removed(open_log, log_dir):
    log = open_log()
    fill(log, 0, 3)
    log.close()
    for suffix in ("index", "timeindex"):
        with open(log_file(log_dir, 999, suffix), "wb") as f:
            f.write(b"\0" * 80)
    with Log.open(log_dir) as log:
        assert log.log_end_offset == 3
    assert not os.path.exists(log_file(log_dir, 999, "index"))
    assert not os.path.exists(log_file(log_dir, 999, "timeindex"))


def test_unreadable_checkpoint_is_ignored(open_log, log_dir, caplog):
    caplog.set_level(logging.WARNING, logger="pylog")
    log = open_log()
    fill(log, 0, 5)
    log.close()
    with open(os.path.join(log_dir, "recovery-point-offset-checkpoint"), "w") as f:
        f.write("garbage\n")
    with Log.open(log_dir) as log:
        assert all_values(log) == [value_of(i) for i in range(5)]
    assert any("recovery-point-offset-checkpoint" in r.getMessage() for r in caplog.records)
