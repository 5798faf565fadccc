"""A hypothesis state machine drives a Log and a plain list side by side.

Operations: append, append_batch (none / lz4 / gzip), read, scan, scan_values,
offset_for_time, truncate_to, roll, close + reopen, and a "crash" + reopen: the
directory is copied while the log is open (an unclean image: no clean-shutdown
marker, untrimmed indexes, whatever is still in the write buffer missing), the
original is closed and the copy is opened in its place. Everything flushed
before a crash must survive it; what survives must be a prefix of the model.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule)

from pylog import Log
from pylog.errors import OffsetOutOfRangeError
from pylog.log.log import _BufferDrainer

try:  # a failure's shrink may otherwise take up to 5 minutes here
    from hypothesis.internal.conjecture import engine as _engine_mod
    _engine_mod.MAX_SHRINKING_SECONDS = min(_engine_mod.MAX_SHRINKING_SECONDS, 30)
except (ImportError, AttributeError):  # pragma: no cover - other hypothesis versions
    pass

from loghelpers import rec_tuple

keys = st.none() | st.binary(max_size=12)
values = st.none() | st.binary(max_size=300)
headers = st.lists(st.tuples(st.text(max_size=6), st.none() | st.binary(max_size=6)), max_size=3)
timestamps = st.integers(min_value=0, max_value=2**41)
records = st.tuples(keys, values, headers, timestamps)


class LogMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="pylog-model-")
        self.generation = 0
        self.log = None
        self.model: list[tuple] = []   # (key, value, headers, timestamp) per offset
        self.flushed = 0               # offsets below this were flushed

    @initialize(index_interval=st.sampled_from([0, 64, 300]),
                write_buffer=st.sampled_from([0, 512, 64 << 10]),
                index_bytes=st.sampled_from([240, 4096]))
    def open_log(self, index_interval, write_buffer, index_bytes):
        # small indexes: segments also roll because an index is full, and the
        # crash copies stay small (a new index file is preallocated to this size)
        self.options = dict(segment_bytes=2048, index_interval_bytes=index_interval,
                            write_buffer_bytes=write_buffer, segment_index_bytes=index_bytes)
        self.log = self._open()

    def _open(self):
        # The process's write-buffer thread pushes buffers every 200 ms: left
        # in, how much of a buffer a crash image holds would depend on timing,
        # the model's length (and so Hypothesis' later draws) with it, and a
        # replay would not draw the same (FlakyStrategyDefinition). Its bound
        # has its own test (a SIGKILLed writer in tests/test_log_lifetime.py).
        log = Log.open(self._dir(), **self.options)
        if _BufferDrainer._instance is not None:
            _BufferDrainer._instance._logs.discard(log)
        return log

    def _dir(self):
        return os.path.join(self.root, f"gen{self.generation}")

    # ---- writes ----

    @rule(rec=records)
    def append(self, rec):
        key, value, hdrs, ts = rec
        off = self.log.append(value, key=key, headers=hdrs, timestamp=ts)
        assert off == len(self.model)
        self.model.append(rec)

    @rule(batch=st.lists(records, min_size=1, max_size=20),
          compression=st.sampled_from([None, "lz4", "gzip"]))
    def append_batch(self, batch, compression):
        first = self.log.append_batch([r[1] for r in batch], keys=[r[0] for r in batch],
                                      headers=[r[2] for r in batch], timestamps=[r[3] for r in batch],
                                      compression=compression)
        assert first == len(self.model)
        self.model.extend(batch)

    @rule(data=st.data())
    def truncate_to(self, data):
        off = data.draw(st.integers(min_value=0, max_value=len(self.model) + 2), label="truncate_to")
        self.log.truncate_to(off)
        del self.model[off:]
        self.flushed = min(self.flushed, len(self.model))

    @rule()
    def roll(self):
        self.log.roll()

    @rule()
    def flush(self):
        self.log.flush()
        self.flushed = len(self.model)

    # ---- reads ----

    def expected(self, off):
        key, value, hdrs, ts = self.model[off]
        return (off, ts, key, value, [(k, v) for k, v in hdrs])

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read(self, data):
        off = data.draw(st.integers(min_value=0, max_value=len(self.model) - 1), label="read")
        assert rec_tuple(self.log.read(off)) == self.expected(off)

    @rule()
    def read_past_the_end(self):
        with pytest.raises(OffsetOutOfRangeError):
            self.log.read(len(self.model))

    @rule(data=st.data())
    def scan(self, data):
        start = data.draw(st.integers(min_value=0, max_value=len(self.model)), label="scan from")
        got = [rec_tuple(r) for r in self.log.scan(start)]
        assert got == [self.expected(i) for i in range(start, len(self.model))]

    @rule(data=st.data())
    def scan_values(self, data):
        start = data.draw(st.integers(min_value=0, max_value=len(self.model)), label="scan_values from")
        end = data.draw(st.integers(min_value=start, max_value=len(self.model) + 1), label="to")
        got = [None if v is None else bytes(v) for v in self.log.scan_values(start, end)]
        assert got == [r[1] for r in self.model[start:end]]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def offset_for_time(self, data):
        ts = [r[3] for r in self.model]
        t = data.draw(st.sampled_from(ts) | st.sampled_from(ts).map(lambda x: x + 1), label="timestamp")
        want = next((i for i, x in enumerate(ts) if x >= t), None)
        assert self.log.offset_for_time(t) == want

    # ---- restarts ----

    @rule()
    def close_and_reopen(self):
        self.log.close()
        self.log = self._open()
        self.flushed = len(self.model)

    @rule(flush_first=st.booleans())
    def crash_and_reopen(self, flush_first):
        if flush_first:
            self.log.flush()
            self.flushed = len(self.model)
        src = self._dir()
        self.generation += 1
        shutil.copytree(src, self._dir())  # the unclean image
        self.log.close()
        shutil.rmtree(src)
        self.log = self._open()
        n = self.log.log_end_offset
        assert self.flushed <= n <= len(self.model), (self.flushed, n, len(self.model))
        if self.options["write_buffer_bytes"] == 0:
            assert n == len(self.model), "with no write buffer every append reached the OS"
        del self.model[n:]
        self.flushed = n

    # ---- invariants ----

    @invariant()
    def offsets(self):
        if self.log is not None:
            assert self.log.log_start_offset == 0
            assert self.log.log_end_offset == len(self.model)
            segs = self.log.segments()
            assert segs[0].base_offset == 0
            for a, b in zip(segs, segs[1:]):
                assert b.base_offset == a.next_offset

    def teardown(self):
        try:
            if self.log is not None and not self.log.closed:
                self.log.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


LogMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
TestLogModel = LogMachine.TestCase
