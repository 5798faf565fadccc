"""The delayed-delivery sidecar (delivery.DelaySidecar): many more pending
records than its memory window, spilled to its file and read back in due
order, with the window bounded; and the in-flight window's Parked state."""
from __future__ import annotations

import asyncio
import os

import numpy as np

from pylog.share import delivery
from pylog.share.partition import ACQUIRED, AVAILABLE, PARKED, SharePartition


def test_pending_entries_beyond_the_window_live_in_the_file_and_come_back_in_due_order(tmp_path):
    async def main():
        refills = []
        path = str(tmp_path / "d" / "s.delays")
        sc = delivery.DelaySidecar(path, lambda: refills.append(1), window=64)
        rng = np.random.default_rng(7)
        dues = rng.integers(1000, 200_000, 5000)
        offsets = np.arange(5000)
        for at in range(0, 5000, 250):
            sc.add(np.column_stack((dues[at:at + 250], offsets[at:at + 250])))
            assert len(sc.win) <= 2 * 64
        assert len(sc) == 5000
        await asyncio.sleep(0.2)                  # the worker thread's appends
        assert os.path.getsize(path) >= 16 * (5000 - 2 * 64)
        got, most = [], 0
        due_of = dict(zip(offsets.tolist(), dues.tolist()))
        for now in range(0, 200_001, 500):
            while True:
                out = sc.pop_due(now)
                # no earlier than due, and no later than the step it fell due in
                assert all(now - 500 < due_of[o] <= now for o in out.tolist())
                got.extend(out.tolist())
                most = max(most, len(sc.win))
                if not sc.refilling:
                    break
                await asyncio.sleep(0.01)
            nd = sc.next_due()
            assert nd is None or nd > now
        assert sorted(got) == list(range(5000))
        assert refills and most <= 2 * 64 + 64 + 1
        assert len(sc) == 0
        sc.close()
        await asyncio.sleep(0.1)
        assert not os.path.exists(path)
    asyncio.run(main())


def test_parked_records_are_skipped_written_as_available_and_do_not_count_as_locks():
    sp = SharePartition(0, delivery_limit=5, max_locks=10)
    sp.park([(0, 99)])                             # far more than max_locks, all parked
    assert sp.end == 100 and sp.can_grow() and sp.next_fetch_offset() == 100
    assert sp.persisted_state() == (0, [(0, 99, AVAILABLE, 0)])
    sp.unpark([(40, 41)])
    assert sp.state_of(40) == AVAILABLE and sp.state_of(42) == PARKED
    assert sp.next_fetch_offset() == 40
    got = sp.acquire_runs("m", [(40, 41), (500, 501)], deadline=1.0, max_records=10)
    assert got == [(40, 41, 1), (500, 501, 1)]
    assert sp.state_of(500) == ACQUIRED and sp.state_of(300) == AVAILABLE and sp.end == 502


def test_runs_of_sorted_offsets():
    assert delivery.runs_of(np.array([1, 2, 3, 7, 9, 10])) == [(1, 3), (7, 7), (9, 10)]
    assert delivery.runs_of([]) == []
