"""Shared fixtures for pylog's Python test-suite.

- ``log_dir``: a fresh, empty directory for one log (under pytest's tmp_path).
- ``open_log``: a factory ``open_log(path=None, **options)`` that opens a Log and
  closes it at teardown if the test did not.
- A hard per-test watchdog (PYLOG_TEST_HARD_TIMEOUT seconds, 420 by default):
  a test stuck where pytest-timeout cannot reach it ends the whole run with
  every thread's stack printed, instead of stalling CI until its budget is gone.
- An autouse check (for the test modules directly in tests/) that every Log opened
  during a test is closed (or dropped, as the crash tests do on purpose) when the
  test ends. A Log left open holds its directory lock and its mmaps; the check
  closes it and fails the test. Opt out with ``@pytest.mark.allow_open_logs``.
"""
from __future__ import annotations

import faulthandler
import gc
import os
import pathlib
import re
import tempfile
import uuid
import weakref

import hypothesis.configuration
import pytest

from pylog import Log

TESTS_DIR = pathlib.Path(__file__).resolve().parent
# Modules in tests/ whose owners did not ask for the open-log check.
_UNCHECKED = {"test_engine_c.py"}

# Hypothesis keeps caches in ./.hypothesis by default; keep the work tree clean.
hypothesis.configuration.set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "pylog-tests-hypothesis"))

_opened: "weakref.WeakSet[Log]" = weakref.WeakSet()
_orig_init = Log._init


def _tracking_init(self, *args, **kwargs):
    _opened.add(self)
    return _orig_init(self, *args, **kwargs)


# pytest-timeout's signal fails just the stuck test, but its handler runs only
# when the main thread gets the GIL back; a C call that blocks holding the GIL
# (librdkafka's close() in confluent-kafka's rebalance callback,
# confluentinc/librdkafka#4041, once stalled CI for 90 minutes) never gives it
# back. faulthandler's watchdog is a C thread that needs no GIL: it prints every
# thread's stack to the real stderr and exits. Longer than pytest-timeout, so
# that one gets its chance first.
_HARD_TIMEOUT = float(os.environ.get("PYLOG_TEST_HARD_TIMEOUT", "420"))
_watchdog_file = None


def pytest_configure(config):
    global _watchdog_file
    # fd 2 as it is now, before output capture points it at a temporary file
    # that nobody reads after an exit.
    _watchdog_file = os.fdopen(os.dup(2), "w")
    config.addinivalue_line(
        "markers", "allow_open_logs: do not fail the test when a Log is still open at its end")
    Log._init = _tracking_init


def pytest_unconfigure(config):
    Log._init = _orig_init
    if _watchdog_file is not None:
        _watchdog_file.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _HARD_TIMEOUT > 0:
        faulthandler.dump_traceback_later(_HARD_TIMEOUT, exit=True, file=_watchdog_file)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._pylog_call_failed = rep.failed


def _failed(request) -> bool:
    return getattr(request.node, "_pylog_call_failed", False)


def _close_quietly(log):
    """Close, or at least release the directory lock when views still pin it
    (a failed test's traceback may keep them alive)."""
    try:
        log.close()
    except Exception:  # noqa: BLE001
        fd = getattr(log, "_lock_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            log._lock_fd = None


def _is_open(log) -> bool:
    return not getattr(log, "_closed", True)


@pytest.fixture(autouse=True)
def _no_log_left_open(request):
    path = pathlib.Path(str(request.node.fspath)).resolve()
    if path.parent != TESTS_DIR or path.name in _UNCHECKED \
            or request.node.get_closest_marker("allow_open_logs"):
        yield
        return
    before = set(id(x) for x in _opened)
    yield
    leaked = [x for x in list(_opened) if id(x) not in before and _is_open(x)]
    if leaked:
        gc.collect()  # a Log only reachable from a dead frame is not a leak
        leaked = [x for x in list(_opened) if id(x) not in before and _is_open(x)]
    if leaked:
        names = [repr(x) for x in leaked]
        for x in leaked:
            _close_quietly(x)
        if _failed(request):
            return  # the test's own failure says enough
        pytest.fail(f"Log(s) left open at the end of the test: {names}", pytrace=False)


@pytest.fixture
def log_dir(tmp_path) -> str:
    """A fresh directory path (not yet created) for one log."""
    return os.fspath(tmp_path / "topic-0")


@pytest.fixture
def open_log(request, log_dir):
    """open_log(path=None, **options) -> Log; closed at teardown when still open."""
    logs = []

    def _open(path=None, **options):
        log = Log.open(log_dir if path is None else path, **options)
        logs.append(log)
        return log

    yield _open
    for log in logs:
        if _is_open(log):
            gc.collect()
            if _failed(request):
                _close_quietly(log)
            else:
                log.close()


def _import_kafka_python():
    """kafka-python 3 loads its protocol schemas with importlib.resources.read_text,
    deprecated in Python 3.11; import all of it once with that warning silenced
    (this suite turns warnings into errors)."""
    import importlib
    import pkgutil
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            importlib.import_module("kafka")
        except ImportError:
            return
        for group in ("admin", "consumer", "metadata", "producer"):
            pkg = importlib.import_module(f"kafka.protocol.{group}")
            for info in pkgutil.iter_modules(pkg.__path__):
                importlib.import_module(f"kafka.protocol.{group}.{info.name}")


_import_kafka_python()


# The slowest test files (seconds each file took in one loaded full run,
# `pytest --durations`, Dec 2026), heaviest first. Under pytest-xdist with
# --dist loadfile a worker takes whole files in collection order, so these go
# first: a 3-minute file dealt out last would leave the other worker idle for
# those 3 minutes. Only the order changes; a file missing here runs after them.
_SLOW_FILES_FIRST = [
    "cluster/test_faults.py",                      # 175 s
    "test_cli_cluster.py",                         # 172 s
    "cluster/test_forged_controller_requests.py",  # 66 s
    "test_install.py",                             # 65 s
    "test_log.py",                                 # 51 s
    "client/test_transactions.py",                 # 46 s
    "test_engine_c.py",                            # 44 s
    "test_readme.py",                              # 41 s
    "test_cli_tools.py",                           # 41 s
    "test_workers.py",                             # 36 s
    "broker/test_clients.py",                      # 36 s
    "broker/test_record_validation.py",            # 33 s
    "broker/test_descriptors.py",                  # 33 s
    "fuzz/test_fuzz_targets.py",                   # 32 s
    "test_cli_groups.py",                          # 32 s
    "broker/test_txn_clients.py",                  # 30 s
    "cluster/test_txn_coordinator_cluster.py",     # 30 s
]


def _slow_files_first(items):
    rank = {name: i for i, name in enumerate(_SLOW_FILES_FIRST)}
    last = len(rank)

    def key(item):
        path = pathlib.Path(str(item.fspath)).resolve()
        try:
            rel = path.relative_to(TESTS_DIR).as_posix()
        except ValueError:
            return last
        return rank.get(rel, last)

    items.sort(key=key)  # stable: tests keep their order inside a file


def pytest_collection_modifyitems(config, items):
    # ... and in case a module is only imported lazily, while a test runs.
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _slow_files_first(items)


def _unique_name(request) -> str:
    base = re.sub(r"[^a-zA-Z0-9._-]", "_", request.node.name)[:50]
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic(request):
    """A topic name unique to the test (nothing is created)."""
    return "t-" + _unique_name(request)


@pytest.fixture
def group(request):
    """A group id unique to the test."""
    return "g-" + _unique_name(request)
