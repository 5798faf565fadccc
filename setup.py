"""Builds the one native module, pylog._engine, from engine/*.c and bindings/_engine.pyx.

Environment switches (see STYLE habit 14):
  PYLOG_DEBUG=1         -O0 -g, PL_DEBUG (resource counters), Cython line tracing
  PYLOG_SANITIZE=1      ASAN/UBSAN in the extension (run python with LD_PRELOAD=libasan)
  PYLOG_CYTHON_ALWAYS=1 re-cythonize even when bindings/_engine.c is up to date
There is no pure-Python fallback: a failed build is an error.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = bool(os.environ.get("PYLOG_DEBUG"))
SANITIZE = bool(os.environ.get("PYLOG_SANITIZE"))

cflags = ["-std=c11", "-Wall", "-Wno-unused-function", "-Wsign-compare"]
ldflags = []
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:
    cflags += ["-O0", "-g", "-UNDEBUG"]
    macros += [("PL_DEBUG", "1"), ("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
else:
    cflags += ["-O2"]
if SANITIZE:
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    cflags += san
    ldflags += san

ext = Extension(
    "pylog._engine",
    sources=["bindings/_engine.pyx", *sorted(glob.glob("engine/*.c"))],
    include_dirs=["engine", "bindings"],
    define_macros=macros,
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    depends=sorted(glob.glob("engine/*.h") + glob.glob("bindings/**/*.pxd", recursive=True)
                   + glob.glob("bindings/*.pxi") + glob.glob("bindings/*.pyx")),
)

setup(
    ext_modules=cythonize(
        [ext],
        include_path=["bindings"],
        force=bool(os.environ.get("PYLOG_CYTHON_ALWAYS")),
        annotate=DEBUG,
        compiler_directives={
            "language_level": 3,
            "embedsignature": True,
            "linetrace": DEBUG,
        },
    ),
)
