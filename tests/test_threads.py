"""The log's lock under contention: threads appending, flushing (fdatasync runs
without the GIL while the log lock is held), reading and scanning at once."""
import threading
import time

import pylog
from pylog import _engine


def test_rlock_is_reentrant_and_exclusive():
    lock = _engine.RLock()
    inside = []
    counter = [0]

    def worker():
        for _ in range(2000):
            with lock:
                with lock:  # re-entrant
                    inside.append(threading.get_ident())
                    v = counter[0]
                    if v % 7 == 0:
                        time.sleep(0)  # give the GIL away while holding the lock
                    assert len(set(inside)) == 1, "two threads inside the lock"
                    counter[0] = v + 1
                    inside.pop()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter[0] == 8000


def test_release_by_another_thread_is_refused():
    lock = _engine.RLock()
    lock.__enter__()
    err = []

    def other():
        try:
            lock.__exit__(None, None, None)
        except RuntimeError as e:
            err.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert err
    lock.__exit__(None, None, None)


def test_concurrent_appends_flushes_and_reads(tmp_path):
    per_thread, nthreads = 1500, 4
    with pylog.Log.open(tmp_path / "t-0", segment_bytes=64 << 10, write_buffer_bytes=4096) as log:
        got = [[] for _ in range(nthreads)]

        def writer(k):
            for i in range(per_thread):
                off = log.append(b"%d:%d" % (k, i))
                got[k].append(off)
                if i % 100 == 0:
                    log.flush()
                if i % 50 == 0:
                    assert bytes(log.read(off).value) == b"%d:%d" % (k, i)

        def scanner():
            for _ in range(5):
                n = sum(1 for _ in log.scan_values())
                assert n <= per_thread * nthreads

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(nthreads)]
        threads.append(threading.Thread(target=scanner))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        offsets = sorted(o for g in got for o in g)
        assert offsets == list(range(per_thread * nthreads))
        for k in range(nthreads):
            for i, off in enumerate(got[k]):
                assert bytes(log.read(off).value) == b"%d:%d" % (k, i)
