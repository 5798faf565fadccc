"""H, cold start only, compared across checkouts: the first import of
pylog.testing plus a running_broker() start, in a fresh interpreter each time
(bench_h_startup's _COLD snippet), for one or more interpreters (each its own
checkout's .venv/bin/python), interleaved run by run so that load from other
work on the machine falls on every one of them alike.

    python bench/bench_h_cold.py [--runs 21] PYTHON [PYTHON ...]

Prints each interpreter's median, quartiles and minimum wall time in ms, its
median CPU time (all threads: the part that other load on the machine
stretches less), and the ratio of each median to the first interpreter's.
Not a pytest benchmark: it measures checkouts against each other, which one
pytest process cannot.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_h_startup import cold_start_ms  # noqa: E402  (the one definition of what is timed)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=21)
    p.add_argument("--raw", action="store_true", help="also print every run's time")
    p.add_argument("pythons", nargs="+")
    args = p.parse_args(argv)
    # Absolute, not resolved: a venv's python must be run by its own path.
    args.pythons = [os.path.abspath(py) for py in args.pythons]
    for py in args.pythons:  # warm the .pyc caches and the page cache first
        cold_start_ms(py)
    times: dict[str, list[float]] = {py: [] for py in args.pythons}
    cpus: dict[str, list[float]] = {py: [] for py in args.pythons}
    load0 = os.getloadavg()[0]
    for i in range(args.runs):
        # Alternate which one goes first, so neither always follows the other.
        order = args.pythons if i % 2 == 0 else args.pythons[::-1]
        for py in order:
            wall, cpu = cold_start_ms(py)
            times[py].append(wall)
            cpus[py].append(cpu)
    base = statistics.median(times[args.pythons[0]])
    base_cpu = statistics.median(cpus[args.pythons[0]])
    print(f"cold start (import pylog.testing + running_broker()), {args.runs} interleaved runs, "
          f"loadavg1 {load0:.2f} -> {os.getloadavg()[0]:.2f}")
    for py, ts in times.items():
        q1, med, q3 = statistics.quantiles(ts, n=4)
        cpu = statistics.median(cpus[py])
        print(f"  {py}: median {med:.1f} ms (q1 {q1:.1f}, q3 {q3:.1f}, min {min(ts):.1f}), "
              f"ratio {med / base:.3f}; CPU median {cpu:.1f} ms, ratio {cpu / base_cpu:.3f}")
        if args.raw:
            print("    wall " + " ".join(f"{t:.0f}" for t in ts))
            print("    cpu  " + " ".join(f"{t:.0f}" for t in cpus[py]))


if __name__ == "__main__":
    main()
