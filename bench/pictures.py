#!/usr/bin/env python3
"""One PNG per benchmark scenario of a pytest-benchmark JSON file: pylog and its
peers side by side, as bars of the scenario's rate (records/s where the round
has a record count; else 1 / median seconds), pylog's bars in their own colour.

    python bench/pictures.py .benchmarks/last.json [--out .benchmarks/pictures]

`make bench` runs it after report.py. Needs matplotlib (bench/requirements-peers.txt,
which `make bench-peers` installs); without it says so and exits 0, so a bench run
never fails for want of pictures. Rows are the report's (report.load), so the
pictures and the Markdown tables show the same medians.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from report import fmt_rate, load  # noqa: E402

PYLOG_COLOUR, PEER_COLOUR = "#1f77b4", "#b0b0b0"


def _label(impl: str) -> str:
    return impl.replace("_", " ")


def scenario_picture(plt, scen: str, impls: dict, out_dir: str) -> str | None:
    """Write <out_dir>/<scen>.png; the path, or None when there is nothing to draw."""
    bars = []
    for impl, r in impls.items():
        if r.get("rps"):
            bars.append((impl, r["rps"], "records/s"))
        elif r.get("median"):
            bars.append((impl, 1.0 / r["median"], "rounds/s"))
    if not bars:
        return None
    unit = bars[0][2] if len({b[2] for b in bars}) == 1 else "rate (records/s or rounds/s)"
    bars.sort(key=lambda b: (not b[0].startswith("pylog"), -b[1]))
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(bars) + 1.4))
    names = [_label(b[0]) for b in bars]
    values = [b[1] for b in bars]
    colours = [PYLOG_COLOUR if b[0].startswith("pylog") else PEER_COLOUR for b in bars]
    ax.barh(names, values, color=colours)
    ax.invert_yaxis()
    for y, v in enumerate(values):
        ax.text(v, y, " " + fmt_rate(v), va="center", fontsize=8)
    ax.set_xlabel(unit + " (median of the rounds; higher is better)")
    ax.set_title(scen.replace("_", " "), fontsize=10)
    ax.set_xlim(0, max(values) * 1.25)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: fmt_rate(v)))
    fig.tight_layout()
    path = os.path.join(out_dir, f"{scen}.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="?", default=".benchmarks/last.json")
    ap.add_argument("--out", help="directory for the PNGs (default: pictures/ beside the JSON)")
    a = ap.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("pictures.py: matplotlib is not installed (make bench-peers installs it); no pictures")
        return 0
    if not os.path.exists(a.json):
        print(f"pictures.py: {a.json} not found (did the benchmark run?)", file=sys.stderr)
        return 2
    _data, rows = load(a.json)
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(a.json)), "pictures")
    os.makedirs(out, exist_ok=True)
    for scen in sorted(rows):
        path = scenario_picture(plt, scen, rows[scen], out)
        if path:
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
