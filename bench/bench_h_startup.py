"""H. Start-up of the embedded broker behind the `kafka_broker` pytest fixture:
`running_broker()` entered and left (an in-process broker on an ephemeral port
in a fresh temporary directory, started on its own thread and stopped with its
logs closed), and the same with one topic created and one message produced and
fetched through it by a raw client, so the figure includes a working broker.

Goal (issue "pylog broker"): start-up under 100 ms.

    .venv/bin/python -m pytest bench/bench_h_startup.py --benchmark-disable-gc
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from pylog.testing import running_broker


def test_h_start_stop(benchmark):
    os.sync()  # earlier benchmarks' writes flushed first: their writeback would compete
    starts = []

    def cycle():
        t0 = time.perf_counter()
        with running_broker():
            starts.append(time.perf_counter() - t0)

    benchmark.pedantic(cycle, rounds=20, iterations=1, warmup_rounds=2)
    starts.sort()
    cold = [cold_start_ms() for _ in range(5)]
    benchmark.extra_info.update(scenario="H_startup", impl="start+stop", records=1,
                                start_median_ms=starts[len(starts) // 2] * 1e3,
                                cold_start_median_ms=statistics.median(wall for wall, _ in cold),
                                cold_start_cpu_median_ms=statistics.median(cpu for _, cpu in cold),
                                loadavg1=os.getloadavg()[0])


# Prints the wall time and the process's CPU time (every thread's) in ms: on a
# shared machine the CPU time says what the start-up costs without the waits
# for a core that other work adds to the wall time.
_COLD = """
import time
t0, c0 = time.perf_counter(), time.process_time()
from pylog.testing import running_broker
with running_broker():
    print((time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3)
"""


# Bytecode caches are read and written, as on a user's machine, whatever the
# shell says: with PYTHONDONTWRITEBYTECODE set, modules without a cached .pyc
# would be compiled on every run and the figure would time the compiler.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def cold_start_ms(python: str = sys.executable) -> tuple[float, float]:
    """Import of pylog.testing (the whole broker) plus start-up, in a fresh
    interpreter: what the first kafka_broker fixture of a pytest run costs.
    Returns (wall ms, CPU ms of every thread)."""
    # cwd=/ so that no checkout's source tree shadows the interpreter's own pylog.
    out = subprocess.run([python, "-c", _COLD], capture_output=True, text=True, timeout=60,
                         check=True, cwd="/", env=_ENV)
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)
