#!/usr/bin/env python3
"""Medians of bench L over several runs, as the Markdown table the README shows.

    python bench/bench_l_median.py .benchmarks/l-run1.json .benchmarks/l-run2.json ...

One row per (target, size, rate) found in the files: the median over the runs of
each figure (p50, p99, p99.9, max, achieved rate, the machine's wake-up lag and load), the
range of p99 across runs, how many runs had the point, and the losses summed over
all runs. A row whose figures
are not clean in some run (losses, errors, a rate not kept) says so.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from report import LATENCY_GOAL, LATENCY_TARGETS, _ms, fmt_rate, latency_point_note, load


def medians(paths):
    runs = {}
    for path in paths:
        _, rows = load(path)
        for r in rows.get("L_latency", {}).values():
            e = r["extra"]
            runs.setdefault((e["target"], e["size"], e["rate"]), []).append(e)
    return runs


def table(runs) -> str:
    def med(es, k):
        xs = [e[k] for e in es if e.get(k) is not None]
        return statistics.median(xs) if xs else None

    out = ["| target | size | rate | achieved | p50 ms | p99 ms | p99.9 ms | max ms | p99 range | runs | lost "
           "| wake-up lag p99.9 ms | load | note |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    order = sorted(runs, key=lambda k: (LATENCY_TARGETS.index(k[0]) if k[0] in LATENCY_TARGETS else 99, k[1], k[2]))
    for key in order:
        es = runs[key]
        p99s = [e["p99_ms"] for e in es if e.get("p99_ms") is not None]
        notes = sorted({n for n in (latency_point_note(e) for e in es) if n})
        lost = sum((e.get("lost") or 0) for e in es)
        ach = med(es, "achieved_rate")
        out.append(f"| {es[0].get('label', key[0])} | {key[1]} B | {fmt_rate(key[2])} | "
                   f"{fmt_rate(ach) if ach else '—'} | {_ms(med(es, 'p50_ms'))} | {_ms(med(es, 'p99_ms'))} | "
                   f"{_ms(med(es, 'p999_ms'))} | {_ms(med(es, 'max_ms'))} | "
                   f"{_ms(min(p99s)) if p99s else '—'}-{_ms(max(p99s)) if p99s else '—'} | {len(es)} | "
                   f"{lost:,} | {_ms(med(es, 'wake_lag_p999_ms'))} | {med(es, 'loadavg1') or 0:.1f} | "
                   f"{'; '.join(notes)} |")
    rate, p99_goal, p999_goal = LATENCY_GOAL
    for (t, size, r), es in sorted(runs.items()):
        if t == "pylog" and r == rate:
            p99, p999 = med(es, "p99_ms"), med(es, "p999_ms")
            ok = p99 is not None and p99 < p99_goal and p999 < p999_goal
            out.append("")
            out.append(f"**{'PASS' if ok else 'FAIL'}: one pylog broker, {fmt_rate(rate)} msg/s x {size} B, median "
                       f"of {len(es)} runs: p99 {_ms(p99)} ms, p99.9 {_ms(p999)} ms (goal p99 < {p99_goal:g} ms, "
                       f"p99.9 < {p999_goal:g} ms)**")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="+")
    a = ap.parse_args(argv)
    print(table(medians(a.json)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
