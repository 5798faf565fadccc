#!/usr/bin/env python3
"""Fuzz target: record validation on append, as the broker runs it.

The input is appended to a partition led by this process through
Partition.append_as_leader (broker/partition.py), the call the Produce
handler makes, on a real log in a temporary directory: whatever validation
the broker runs on append (the partition's checks, Log.append_batches, the
engine's) is what is fuzzed, including validation added later.

Input: byte 0 is flags; bit 0 set: the CRC of every whole batch is computed
afresh before the append, so mutations get past the CRC check into the batch
header and records; the rest is the produce request's records field.

Oracle:
- append_as_leader raises nothing the Produce handler does not answer with an
  error code (PylogError, ValueError, OSError: broker/handlers.py produce);
- what was accepted is in the log: log_end_offset moved to last_offset + 1
  (or, for a retried idempotent batch, stayed, its old offsets below it),
  and it reads back: Log.scan decodes every record from first_offset to
  last_offset, each offset once, and a consumer decodes the same records from
  the stored batches (_engine.decode_fetched, as a Fetch answer is read).
"""
from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile

try:
    from . import _harness
except ImportError:
    import _harness

with _harness.instrumenting(__name__ == "__main__"):
    from pylog import _engine
    from pylog.broker import api_versions as av
    from pylog.broker.config import BrokerConfig, TopicConfig
    from pylog.broker.partition import Partition
    from pylog.errors import CorruptRecordError, PylogError, UnsupportedCompressionError
    from pylog.protocol import batch_layout as L

Finding = _harness.Finding
# strict: an accepted batch that does not read back is a finding (the goal).
# lenient: tolerated, for runs that look past such a finding once it is known
# (the records-accepted-* findings were of this kind, before engine/validate.c).
READBACK = os.environ.get("PYLOG_FUZZ_READBACK", "strict")
RESEAL = 0x01
PRODUCE_VERSION = av.ADVERTISED[av.PRODUCE][1]
# A fresh log every so many accepted appends keeps the disk use bounded.
APPENDS_PER_LOG = 2000
_I32 = struct.Struct(">i")

_state = {"partition": None, "dir": None, "appends": 0}


def _cleanup():
    p = _state["partition"]
    if p is not None:
        p.log.close()
        _state["partition"] = None
    if _state["dir"]:
        shutil.rmtree(_state["dir"], ignore_errors=True)


def _remove_stale(root):
    # libFuzzer ends a run with _exit: no atexit handler runs, so the logs of
    # earlier runs are removed here, once their process is gone.
    for name in os.listdir(root):
        if name.startswith(DIR_PREFIX):
            pid = name[len(DIR_PREFIX):].split("-", 1)[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)


atexit.register(_cleanup)
DIR_PREFIX = "pylog-fuzz-records-"


def partition() -> Partition:
    p = _state["partition"]
    if p is not None and _state["appends"] < APPENDS_PER_LOG:
        return p
    _cleanup()
    # On tmpfs where there is one: the disk is not what is being fuzzed.
    root = os.environ.get("PYLOG_FUZZ_TMP") or (
        "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir())
    if _state["dir"] is None:
        _remove_stale(root)
    _state["dir"] = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-", dir=root)
    config = TopicConfig(BrokerConfig(), {"segment.bytes": str(1 << 20)})
    p = Partition("fuzz", 0, os.path.join(_state["dir"], "fuzz-0"), config, broker_id=0)
    _state["partition"], _state["appends"] = p, 0
    return p


def reseal(buf: bytearray):
    """Recompute the CRC of each whole batch (header walk as the engine does)."""
    pos = 0
    while pos + L.HEADER_SIZE <= len(buf):
        length = _I32.unpack_from(buf, pos + L.LENGTH_OFFSET)[0]
        end = pos + L.LOG_OVERHEAD + length
        if length < L.MIN_LENGTH or end > len(buf):
            return
        struct.pack_into(">I", buf, pos + L.CRC_OFFSET, _engine.crc32c(bytes(buf[pos + L.CRC_START:end])))
        pos = end


def test_one(data: bytes):
    if not data:
        return
    flags, records = data[0], bytearray(data[1:])
    if flags & RESEAL:
        reseal(records)
    p = partition()
    before = p.log_end_offset
    try:
        # A slice of a writable buffer, as the connection hands it over.
        # As the newest Produce a client may send: every record is validated.
        result = p.append_as_leader(memoryview(records), 1, PRODUCE_VERSION)
    except (PylogError, ValueError, OSError):
        if p.log_end_offset != before:
            raise Finding(f"a refused append moved log_end_offset from {before} to {p.log_end_offset}")
        return
    _state["appends"] += 1
    first, last = result.first_offset, result.last_offset
    # A retried idempotent batch appends nothing and answers its old offsets.
    duplicate = p.log_end_offset == before and last < before
    if last < first or not duplicate and (first != before or p.log_end_offset != last + 1):
        raise Finding(f"appended [{first}, {last}] at log_end_offset {before}, now {p.log_end_offset}")
    try:
        offsets = [r.offset for r in p.log.scan(first, last + 1)]
    except (PylogError, MemoryError) as e:
        # MemoryError: a records_count far past what the section holds is
        # allocated for before it is checked (fuzz/findings/records-count-huge-malloc).
        if READBACK == "lenient" and isinstance(e, (CorruptRecordError, UnsupportedCompressionError,
                                                    MemoryError)):
            _state["appends"] = APPENDS_PER_LOG  # a fresh log: this one holds a bad batch
            return
        raise Finding(f"accepted batches [{first}, {last}] do not read back: {e!r}") from e
    if offsets != list(range(first, last + 1)):
        # A record's offset_delta out of sequence: pylog's own readers then
        # disagree (Log.scan stops at a delta past the end, scan from a later
        # offset finds nothing). fuzz/findings/records-accepted-offset-delta-*.
        if READBACK == "lenient":
            _state["appends"] = APPENDS_PER_LOG
            return
        raise Finding(f"accepted [{first}, {last}] reads back offsets {offsets[:10]}...")
    stored = bytes(p.log.read_batches(first, 1 << 30))
    try:
        fetched, next_offset = _engine.decode_fetched(stored, "fuzz", 0, first)
    except CorruptRecordError as e:
        raise Finding(f"Log.scan read [{first}, {last}], a consumer cannot: {e!r}") from e
    except PylogError as e:
        raise Finding(f"accepted batches [{first}, {last}] do not decode as fetched: {e!r}") from e
    # The stored batches may run on past last (a retried batch's old offsets).
    got = [r.offset for r in fetched if r.offset <= last]
    if got != offsets or next_offset <= last:
        raise Finding(f"a consumer reads [{first}, {last}] as {got[:10]}..., next {next_offset}")


if __name__ == "__main__":
    _harness.run(test_one)
