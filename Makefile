# One command each, on a fresh machine: `make run`, `make test`, `make bench`.
# Everything lives in .venv; nothing depends on what is installed by hand.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
DEPS   := $(VENV)/.deps-stamp
BUILT  := $(VENV)/.built-stamp
SOURCES := setup.py pyproject.toml $(wildcard engine/*.c engine/*.h bindings/*.pyx bindings/*.pxd bindings/*.pxi bindings/c/*.pxd)
CC     ?= cc
CFLAGS_C := -std=c11 -O2 -g -Wall -Wextra -Wconversion -Wsign-compare -Iengine
SAN    := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

.PHONY: all build run test test-c test-asan bench soak clean

all: build

$(DEPS): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	touch $@

$(BUILT): $(DEPS) $(SOURCES)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) setup.py -q build_ext --inplace
	touch $@

build: $(BUILT)
	@# Compiled bytecode up front: this environment may set PYTHONDONTWRITEBYTECODE,
	@# and compiling the generated protocol module costs ~0.2 s per process start.
	@$(PY) -m compileall -q pylog >/dev/null

run: build
	$(VENV)/bin/pylog broker --data-dir ./data --host 127.0.0.1 --port 9092

test: build
	$(PY) -m pytest -q tests

# The engine's own C tests, without Python (also run by tests/test_engine_c.py).
tests/c/test_engine: tests/c/test_engine.c $(wildcard engine/*.c engine/*.h)
	$(CC) $(CFLAGS_C) -o $@ tests/c/test_engine.c engine/*.c

tests/c/test_engine_asan: tests/c/test_engine.c $(wildcard engine/*.c engine/*.h)
	$(CC) $(CFLAGS_C) -O1 $(SAN) -o $@ tests/c/test_engine.c engine/*.c

test-c: tests/c/test_engine
	./tests/c/test_engine

test-asan: tests/c/test_engine_asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./tests/c/test_engine_asan

# The fault tests (tests/cluster/test_faults.py) with more rounds and longer
# produce phases than `make test` runs; -s prints the failover figures.
SOAK_ROUNDS ?= 5
SOAK_PHASE_ACKS ?= 5000
# And a restart on 100,000 segments under ulimit -n 1024 (make test: 20,000).
SOAK_SEGMENTS ?= 100000
soak: build
	PYLOG_FAULT_ROUNDS=$(SOAK_ROUNDS) PYLOG_FAULT_PHASE_ACKS=$(SOAK_PHASE_ACKS) \
		PYLOG_TEST_HARD_TIMEOUT=0 $(PY) -m pytest -q -s -o timeout=0 tests/cluster/test_faults.py
	PYLOG_MANY_SEGMENTS=$(SOAK_SEGMENTS) PYLOG_TEST_HARD_TIMEOUT=0 $(PY) -m pytest -q -s -o timeout=0 \
		tests/broker/test_descriptors.py -k many_segments

bench: build
	$(PY) -m pytest bench -q --benchmark-disable-gc --benchmark-columns=median,ops,rounds \
		--benchmark-sort=name --benchmark-json=.benchmarks/last.json
	$(PY) bench/report.py .benchmarks/last.json

clean:
	rm -rf build $(BUILT) pylog/*.so bindings/_engine.c tests/c/test_engine tests/c/test_engine_asan
