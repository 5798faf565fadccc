#!/usr/bin/env python3
"""Fuzz target: decompression of a batch's records section (pylog/codecs.py).

Input: byte 0 picks the codec (mod 4: gzip, snappy, lz4, zstd: every codec
pylog decodes), the rest is the compressed records section.

Oracle: decompress raises nothing but CorruptRecordError (the readers turn it
into a corrupt-batch answer), never returns more than the bound it was given,
and never allocates past it (libFuzzer's -rss_limit_mb, set low for this
target by `make fuzz`: a few bytes claiming gigabytes would blow it). What
inflates compresses again and inflates back to the same bytes.
"""
from __future__ import annotations

try:
    from . import _harness
except ImportError:
    import _harness

with _harness.instrumenting(__name__ == "__main__"):
    from pylog import codecs
    from pylog.errors import CorruptRecordError

Finding = _harness.Finding
CODECS = (codecs.GZIP, codecs.SNAPPY, codecs.LZ4, codecs.ZSTD)
# Far above any seed's output, far below the memory limit of a run.
LIMIT = 8 << 20


def test_one(data: bytes):
    if not data:
        return
    codec = CODECS[data[0] % len(CODECS)]
    try:
        out = codecs.decompress(codec, memoryview(data)[1:], max_bytes=LIMIT)
    except CorruptRecordError:
        return
    if len(out) > LIMIT:
        raise Finding(f"codec {codec} inflated {len(out)} bytes past the limit of {LIMIT}")
    if codecs.decompress(codec, codecs.compress(codec, out), max_bytes=LIMIT) != out:
        raise Finding(f"codec {codec}: compress then decompress does not give the bytes back")


if __name__ == "__main__":
    _harness.run(test_one)
