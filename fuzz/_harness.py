"""What the atheris targets share: running under libFuzzer, and the oracle.

A target module defines `test_one(data: bytes)`, raising only when pylog
broke its contract (an exception type the caller does not handle, an
invariant that does not hold). Run as a script it fuzzes with the libFuzzer
flags given (`-runs=N`, `-max_total_time=S`, corpus directories); imported,
`test_one` can be replayed on saved inputs (tests/fuzz, fuzz/findings).
"""
from __future__ import annotations

import contextlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Defaults every run gets unless the command line says otherwise: a hang is an
# input that takes over 10 s, and unbounded memory is a process over 2 GiB.
DEFAULT_FLAGS = ("-timeout=10", "-rss_limit_mb=2048", "-max_len=65536")


class Finding(AssertionError):
    """An input on which pylog broke its contract."""


def run(test_one, argv=None):
    import atheris
    argv = list(sys.argv if argv is None else argv)
    given = {a.split("=", 1)[0] for a in argv[1:] if a.startswith("-")}
    for flag in DEFAULT_FLAGS:
        if flag.split("=", 1)[0] not in given:
            argv.append(flag)
    atheris.Setup(argv, test_one)
    atheris.Fuzz()


def instrumenting(main: bool, package: str = "pylog"):
    """A context in which imports of `package` (and its submodules) get
    coverage instrumentation when the target runs under libFuzzer; a plain
    import when it is imported (replays, tests)."""
    if not main:
        return contextlib.nullcontext()
    import atheris
    return atheris.instrument_imports(include=[package])
