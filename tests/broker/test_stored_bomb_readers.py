"""Readers of stored batches inflate a compressed batch no further than the
bound the broker applies on produce: a decompression bomb already on disk
(written by the engine, as data from before validation existed, or copied in)
makes Log.scan, the consumers' decoder and `pylog dump-log` stop with a clear
CorruptRecordError after at most 64 MiB (codecs.READ_MAX_INFLATED; a Log's
max_inflated_bytes), never a 256 MB allocation; the records after it stay
readable."""
from __future__ import annotations

import glob
import resource
import subprocess
import sys

import pytest

from pylog import _engine
from pylog.errors import CorruptRecordError
from pylog.log.log import Log

from .test_record_validation import batch, zstd_bomb

BASE_TS = 1_700_000_000_000
BOMB_BYTES = 256 << 20
RSS_BOUND_KB = 160 << 10   # what reading the bomb may add to this process's peak RSS


@pytest.fixture(scope="module")
def stored_bomb(tmp_path_factory):
    section, n = zstd_bomb(BOMB_BYTES)
    bomb = batch(section, n, codec=4, base_ts=BASE_TS, max_ts=BASE_TS + n - 1)
    path = tmp_path_factory.mktemp("bomb") / "t-0"
    with Log.open(str(path)) as log:
        log.append_batches(bomb, leader_epoch=0)
        log.append_batches(_engine.encode_batch([b"after"], timestamps=[BASE_TS + n]), leader_epoch=0)
        log.flush()
    return str(path), n, bomb


def _peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_log_scan_refuses_the_bomb_and_reads_past_it(stored_bomb):
    path, n, _ = stored_bomb
    peak = _peak_kb()
    with Log.open(path) as log:
        with pytest.raises(CorruptRecordError, match=r"inflate past 67108864 bytes") as e:
            list(log.scan(0))
        assert "position 0" in str(e.value)
        assert [r.value for r in log.scan(n)] == [b"after"]
    with Log.open(path, max_inflated_bytes=1 << 20) as log:
        with pytest.raises(CorruptRecordError, match=r"inflate past 1048576 bytes"):
            list(log.scan_values(0))
    assert _peak_kb() - peak < RSS_BOUND_KB


def test_the_consumers_decoder_refuses_the_bomb(stored_bomb):
    _path, _n, bomb = stored_bomb
    peak = _peak_kb()
    with pytest.raises(CorruptRecordError, match="inflate past 67108864 bytes"):
        _engine.decode_fetched(bomb, "t", 0, 0)
    with pytest.raises(CorruptRecordError, match="inflate past 4096 bytes"):
        _engine.decode_batches(bomb, 4096)
    assert _peak_kb() - peak < RSS_BOUND_KB


def test_dump_log_reports_the_bomb(stored_bomb):
    path, _n, _ = stored_bomb
    (segment,) = glob.glob(f"{path}/*.log")
    r = subprocess.run([sys.executable, "-m", "pylog", "dump-log", "--records", segment],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "inflate past 67108864 bytes" in r.stdout and "Traceback" not in r.stderr
