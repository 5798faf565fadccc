"""Build and run the engine's standalone C tests (tests/c/test_engine.c).

The C driver checks engine/*.c against the contracts in engine/*.h without
Python (LMDB mtest style). Here it is compiled together with engine/*.c into
pytest's tmp_path and run twice: a warning-free -O2 build, and an ASAN/UBSAN
build with the leak checker on. The same program is built by `make test-c` and
`make test-asan`.
"""
import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
DRIVER = ROOT / "tests" / "c" / "test_engine.c"

CC = os.environ.get("CC") or "cc"
CFLAGS = ["-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Wconversion", "-Wsign-compare", "-Werror",
          f"-I{ENGINE}"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}


def _sources():
    engine_c = sorted(str(p) for p in ENGINE.glob("*.c"))
    assert engine_c, f"no C sources in {ENGINE}"
    return [str(DRIVER), *engine_c]


def _build(out: Path, extra=()):
    cmd = [CC, *CFLAGS, *extra, "-o", str(out), *_sources()]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"C build failed (exit {r.returncode}):\n$ {shlex.join(cmd)}\n{r.stdout}{r.stderr}",
                    pytrace=False)
    return out


def _run(exe: Path, tmp_path: Path, env_extra=None, timeout=900):
    env = dict(os.environ)
    env["TMPDIR"] = str(tmp_path)  # the driver's mkdtemp directories land in pytest's tmp_path
    env.update(env_extra or {})
    r = subprocess.run([str(exe)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or "sections passed" not in r.stdout:
        pytest.fail(f"{exe.name} exited with {r.returncode}\n"
                    f"--- stdout ---\n{r.stdout}\n--- stderr ---\n{r.stderr}", pytrace=False)
    return r


def _sanitizer_runtime_missing(tmp_path: Path):
    """Why a trivial sanitizer build cannot be compiled, linked or run here, or None."""
    src = tmp_path / "probe.c"
    src.write_text("#include <stdlib.h>\nint main(void) { void *p = malloc(8); free(p); return 0; }\n")
    exe = tmp_path / "probe"
    r = subprocess.run([CC, *SANITIZE, "-o", str(exe), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        return f"{CC} cannot build with {' '.join(SANITIZE)}: {(r.stderr or r.stdout).strip()[:500]}"
    r = subprocess.run([str(exe)], capture_output=True, text=True, env={**os.environ, **SAN_ENV})
    if r.returncode != 0:
        return f"the sanitizer runtime does not run here: {(r.stderr or r.stdout).strip()[:500]}"
    return None


def test_engine_c(tmp_path):
    exe = _build(tmp_path / "test_engine")
    _run(exe, tmp_path)


def test_engine_c_sanitizers(tmp_path):
    why = _sanitizer_runtime_missing(tmp_path)
    if why:
        pytest.skip(why)
    exe = _build(tmp_path / "test_engine_asan", ["-O1", *SANITIZE])
    _run(exe, tmp_path, SAN_ENV)
