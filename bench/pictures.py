#!/usr/bin/env python3
"""One PNG per benchmark scenario of a pytest-benchmark JSON file: pylog and its
peers side by side, as bars of the scenario's rate (records/s where the round
has a record count; else 1 / median seconds), pylog's bars in their own colour.

    python bench/pictures.py .benchmarks/last.json [--out .benchmarks/pictures]
    python bench/pictures.py --recorded [--out docs/bench]

`make bench` runs it after report.py. --recorded draws the groups whose
results are recorded only as Markdown tables (README.md, bench/README.md:
F-Q, measured over many runs, by hand or with scripts of their own) from
those tables, so a picture shows exactly the figures of the table beside it;
RECORDED names each table by its header row and the columns drawn. Needs matplotlib (bench/requirements-peers.txt,
which `make bench-peers` installs); without it says so and exits 0, so a bench run
never fails for want of pictures. Rows are the report's (report.load), so the
pictures and the Markdown tables show the same medians.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README, BENCH_README = os.path.join(ROOT, "README.md"), os.path.join(ROOT, "bench", "README.md")
PEER_COLOURS = (PEER_COLOUR, "#6f6f6f")
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")


class Recorded:
    """One picture of a recorded table: the table is the one whose header row
    starts with `header` in `source`; its rows (those whose first cell
    matches `rows`) are labelled by the cells of `label`, and each series is
    (name, column, pick, kind): pick is which number of the cell (0, 1, ...
    for "a / b" cells, "median" of a list of runs), kind "pylog" or "peer"
    for its colour (None: a colour per series; a lone series is coloured by
    its row's name)."""

    def __init__(self, name, source, header, title, series, unit, lower_better=False, rows=None, label=(0,),
                 log=False):
        self.name, self.source, self.header, self.title = name, source, header, title
        self.series, self.unit, self.lower_better = series, unit, lower_better
        self.rows, self.label, self.log = rows, label, log


RECORDED = [
    Recorded("F_recovery", README, "| scenario | pylog | LMDB |", "F. recovery of a 1 GiB log",
             [("pylog, recovery=\"full\"", 1, 0, "pylog"), ("plain file, read only", 4, 0, "peer")], "GB/s",
             rows=r"^F\."),
    Recorded("G_broker", README, "| phase | msg/s |", "G. the broker: CPU per million messages",
             [("pylog broker", 3, 0, "pylog"), ("plain file, same bytes", 4, 0, "peer"),
              ("confluent-kafka client", 5, 0, "peer")], "CPU seconds per million messages", lower_better=True),
    Recorded("G_metrics_overhead", BENCH_README, "| run | off msg/s | on msg/s |", "G. metrics off and on, per run",
             [("metrics off", 1, 0, "peer"), ("metrics on", 2, 0, "pylog")], "msg/s"),
    Recorded("H_startup", README, "| H, start-up in a fresh interpreter |", "H. import + embedded broker start (goal 100 ms)",
             [("pylog", 1, 0, "pylog"), ("goal", 2, 0, "peer")], "ms", lower_better=True),
    Recorded("I_groups", README, "| I, consumer groups |", "I. offset commits per second against the goal",
             [("pylog", 1, 0, "pylog"), ("goal", 2, 0, "peer")], "commits/s", rows=r"^offset commits"),
    Recorded("J_clients", README, "| client | msg/s (median) |", "J. pylog's clients and their peers",
             [("msg/s", 1, 0, None)], "msg/s", log=True),
    Recorded("K_cluster", BENCH_README, "| scenario | ea0bac4 msg/s (5 runs) |",
             "K. a 3-broker cluster, median of 5 runs", [("ea0bac4", 1, "median", "peer"),
                                                         ("aae9d78", 3, "median", "pylog")], "msg/s"),
    Recorded("L_latency", README, "| target | p50 ms | p99 ms |", "L. end-to-end latency at 50k msg/s x 100 B",
             [("p50", 1, 0, None), ("p99", 2, 0, None), ("p99.9", 3, 0, None)], "ms", lower_better=True, log=True),
    Recorded("M_transactions", README, "| row | run 1 | run 2 | run 3 | median |", "M. transactions",
             [("run 1", 1, 0, None), ("run 2", 2, 0, None), ("run 3", 3, 0, None), ("median", 4, 0, None)],
             "ratio", rows=r" vs "),
    Recorded("N_compaction", BENCH_README, "| | seconds | MB/s read + rewritten |", "N. a compaction round",
             [("MB/s read + rewritten", 2, 0, None), ("MB/s of the log's bytes", 3, 0, None)], "MB/s"),
    Recorded("N_produce_with_cleaner", BENCH_README, "| log.cleaner.io.max.bytes.per.second |",
             "N. produce while the cleaner runs, with / without", [("median of the rounds' ratios", 1, 0, None)],
             "ratio"),
    Recorded("O_rebalance", README, "| protocol | event |", "O. a rebalance: complete, and the gap of kept "
             "partitions", [("complete, median", 2, 0, None), ("gap of kept partitions, median", 3, 0, None)],
             "ms", lower_better=True,
             label=(0, 1)),
    Recorded("Q_acl", BENCH_README, "| row | run 1 (100,000 msgs", "Q. produce with the authorizer off and on",
             [("run 1", 1, 0, None), ("run 2", 2, 0, None), ("run 3", 3, 0, None)], "msg/s", rows=r"^produce"),
    Recorded("Q_tls", README, "| | PLAINTEXT | SSL |", "Q. PLAINTEXT and SSL, median of the runs",
             [("PLAINTEXT", 1, 0, None), ("SSL", 2, 0, None)], "msg/s", rows=r"msg/s"),
    Recorded("Q_sasl", README, "| set-up | p50", "Q. connection set-up, p50 of 4 runs", [("p50", 1, 0, None)], "ms",
             lower_better=True, log=True),
]

_NUMBER = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*(M\b|k\b)?")


def numbers(cell: str) -> list[float]:
    """The figures of a table cell: "1.03 M" -> 1.03e6, "864 k (86)" -> 864e3, 86;
    "0.97 / 1.51" -> 0.97, 1.51."""
    out = []
    for num, unit in _NUMBER.findall(cell.replace("**", "")):
        v = float(num.replace(",", ""))
        out.append(v * (1e6 if unit == "M" else 1e3 if unit == "k" else 1))
    return out


def table(path: str, header: str) -> list[list[str]]:
    """The body rows (cells) of the first Markdown table in path whose header
    row starts with header; raises LookupError when there is none."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header):
            rows = []
            for body in lines[i + 2:]:
                if not body.startswith("|"):
                    break
                rows.append([c.strip() for c in body.strip().strip("|").split("|")])
            return rows
    raise LookupError(f"no table with the header {header!r} in {path}")


def _pick(cell, pick):
    vals = numbers(cell)
    if not vals:
        return None
    if pick == "median":
        return statistics.median(vals)
    return vals[pick] if pick < len(vals) else None


def recorded_picture(plt, spec: Recorded, out_dir: str) -> str:
    """Write <out_dir>/<spec.name>.png from its table; the path."""
    rows = [r for r in table(spec.source, spec.header) if spec.rows is None or re.search(spec.rows, r[0])]
    labels = [", ".join(r[i].replace("`", "").replace("**", "") for i in spec.label) for r in rows]
    series = [(name, [_pick(r[col], pick) if col < len(r) else None for r in rows], kind)
              for name, col, pick, kind in spec.series]
    series = [s for s in series if any(v is not None for v in s[1])]
    if not rows or not series:
        raise LookupError(f"{spec.name}: nothing to draw in {spec.source} under {spec.header!r}")
    n = len(series)
    height = 0.8 / n
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) * max(n, 1.5) + 1.6))
    top = 0.0
    for k, (name, values, kind) in enumerate(series):
        ys = [y + (k - (n - 1) / 2) * height for y in range(len(rows))]
        if n == 1 and kind is None:
            colours = [PYLOG_COLOUR if lab.lower().startswith("pylog") or spec.name[0] in "NQ" else PEER_COLOUR
                       for lab in labels]
        else:
            peers_before = sum(1 for s in series[:k] if s[2] == "peer")
            colours = PYLOG_COLOUR if kind == "pylog" else PEER_COLOURS[peers_before % len(PEER_COLOURS)] \
                if kind == "peer" else SERIES_COLOURS[k % len(SERIES_COLOURS)]
        vals = [v if v is not None else 0 for v in values]
        ax.barh(ys, vals, height=height * 0.92, color=colours, label=name if n > 1 else None)
        for y, v in zip(ys, values):
            if v is not None:
                ax.text(v, y, " " + _fmt(v), va="center", fontsize=7)
        top = max(top, max(vals))
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    better = "lower" if spec.lower_better else "higher"
    ax.set_xlabel(f"{spec.unit} ({better} is better)")
    ax.set_title(spec.title, fontsize=10)
    if spec.log:
        ax.set_xscale("log")
        ax.set_xlim(right=top * 4)
    else:
        ax.set_xlim(0, top * 1.25)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: _fmt(v)))
    if n > 1:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = os.path.join(out_dir, f"{spec.name}.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _fmt(v: float) -> str:
    return fmt_rate(v) if v >= 1000 else f"{v:.3g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="?", default=".benchmarks/last.json")
    ap.add_argument("--out", help="directory for the PNGs (default: pictures/ beside the JSON; with --recorded "
                    "docs/bench)")
    ap.add_argument("--recorded", action="store_true", help="draw the tables of README.md and bench/README.md "
                    "named in RECORDED instead of a JSON file")
    a = ap.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("pictures.py: matplotlib is not installed (make bench-peers installs it); no pictures")
        return 0
    if a.recorded:
        out = a.out or os.path.join(ROOT, "docs", "bench")
        os.makedirs(out, exist_ok=True)
        for spec in RECORDED:
            print(f"wrote {recorded_picture(plt, spec, out)}")
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
