"""Compaction rounds while another thread appends (and rolls) and a third
scans: the round holds the log's lock only to plan and to swap, so appends go
on; at the end every key's latest value is there, every record past the last
round's range is there, and offsets only increase."""
from __future__ import annotations

import os
import threading

from pylog.log.log import Log


def test_rounds_run_while_a_writer_appends_and_a_reader_scans(tmp_path):
    log = Log.open(os.fspath(tmp_path / "t-0"), segment_bytes=16 << 10)
    latest, written, errors = {}, [], []
    stop = threading.Event()

    def writer():
        try:
            for i in range(20_000):
                key = b"k%d" % (i % 300)
                off = log.append(b"v%d" % i, key)
                latest[key] = (off, b"v%d" % i)
                written.append((off, key))
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)
        finally:
            stop.set()

    def reader():
        try:
            while not stop.is_set():
                offs = [r.offset for r in log.scan()]
                assert offs == sorted(set(offs))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    rounds = 0
    while not stop.is_set() or rounds == 0:
        log.compact()
        rounds += 1
    for t in threads:
        t.join()
    assert not errors, errors
    stats = log.compact()
    got = {}
    offsets = []
    for r in log.scan():
        got[bytes(r.key)] = (r.offset, bytes(r.value))
        offsets.append(r.offset)
    assert got == latest
    assert offsets == sorted(offsets)
    # Everything the last round left dirty is still there, record by record.
    dirty = [off for off, _ in written if off >= stats.first_uncleanable_offset]
    assert [o for o in offsets if o >= stats.first_uncleanable_offset] == dirty
    assert len(offsets) < len(written)
    log.close()
