#!/usr/bin/env python3
"""`make fuzz`: each target in turn for FUZZ_SECONDS (or FUZZ_RUNS inputs),
from the seed corpus plus what earlier runs added, then a table of the inputs
each executed. Exits non-zero if any target found a crash, a hang (over
-timeout seconds) or a memory blow-up (over -rss_limit_mb); the input is
left in fuzz/artifacts/.

    python fuzz/run.py [--seconds S | --runs N] [TARGET...]
    targets: requests decompress records batch (batch: the libFuzzer binary
    built by `make fuzz/build/batch_fuzz`)
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import seeds  # noqa: E402

PY = sys.executable
TARGETS = {
    # name: (command, extra libFuzzer flags)
    "requests": ([PY, os.path.join(HERE, "fuzz_requests.py")], ["-rss_limit_mb=1024"]),
    # Far under the others: the target's bound is 8 MiB of output.
    "decompress": ([PY, os.path.join(HERE, "fuzz_decompress.py")], ["-rss_limit_mb=512"]),
    "records": ([PY, os.path.join(HERE, "fuzz_records.py")], ["-rss_limit_mb=1024"]),
    # ASAN's shadow memory and quarantine need more.
    "batch": ([os.path.join(HERE, "build", "batch_fuzz")], ["-rss_limit_mb=2048"]),
}
COMMON = ["-timeout=10", "-max_len=65536", "-print_final_stats=1"]
DONE = re.compile(r"^Done (\d+) runs in (\d+) second")
PROGRESS = re.compile(r"^#(\d+)\s")
STAT_RUNS = re.compile(r"^stat::number_of_executed_units:\s*(\d+)")


def run_target(name, seconds, runs, nice):
    cmd, extra = TARGETS[name]
    corpus = os.path.join(HERE, "corpus", name)
    artifacts = os.path.join(HERE, "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    limit = [f"-runs={runs}"] if runs else [f"-max_total_time={seconds}"]
    argv = (["nice"] if nice else []) + cmd + [corpus] + COMMON + extra + limit + \
        [f"-artifact_prefix={artifacts}/{name}-"]
    env = dict(os.environ, ASAN_OPTIONS="abort_on_error=1:detect_leaks=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    log_path = os.path.join(artifacts, f"{name}.log")
    print(f"== {name}: {' '.join(argv)}\n   (log: {log_path})", flush=True)
    start = time.monotonic()
    with open(log_path, "w") as log:
        rc = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    elapsed = time.monotonic() - start
    executed = 0
    with open(log_path, errors="replace") as log:
        for line in log:
            for rx in (DONE, STAT_RUNS, PROGRESS):
                m = rx.match(line)
                if m:
                    executed = max(executed, int(m.group(1)))
    return rc, executed, elapsed, log_path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "600")))
    ap.add_argument("--runs", type=int, default=int(os.environ.get("FUZZ_RUNS", "0") or 0))
    ap.add_argument("--no-nice", action="store_true")
    ap.add_argument("targets", nargs="*", default=list(TARGETS))
    args = ap.parse_args()
    seeds.write(os.path.join(HERE, "corpus"), args.targets)
    results = []
    for name in args.targets:
        rc, executed, elapsed, log_path = run_target(name, args.seconds, args.runs, not args.no_nice)
        results.append((name, rc, executed, elapsed, log_path))
    print(f"\n{'target':<12}{'inputs':>14}{'seconds':>10}{'execs/s':>10}  result")
    for name, rc, executed, elapsed, log_path in results:
        result = "ok" if rc == 0 else f"FAILED (exit {rc}; see {log_path})"
        print(f"{name:<12}{executed:>14,}{elapsed:>10.0f}{executed / max(elapsed, 1e-9):>10.0f}  {result}")
    sys.exit(1 if any(r[1] != 0 for r in results) else 0)


if __name__ == "__main__":
    main()
