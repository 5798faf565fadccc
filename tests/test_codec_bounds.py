"""Decompression is bounded (found by fuzz/fuzz_decompress.py): a few bytes of
compressed records must not make pylog allocate gigabytes.

Each bomb is inflated in a child process whose address space is capped at
1 GiB, so an unbounded decompressor fails the test (MemoryError, or the abort
of a native allocation) instead of taking the machine's memory.
"""
from __future__ import annotations

import subprocess
import sys
import zlib

import lz4.frame
import pytest
import zstandard

from pylog import codecs

# 1.5 GiB of zeros: past the child's address-space cap, under the default bound.
ZERO = b"\0" * (1 << 20)
BOMB_MIB = 1536

CHILD = r"""
import resource, sys
from pylog import codecs
from pylog.errors import CorruptRecordError
codec, path, max_bytes = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
data = open(path, "rb").read()
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
try:
    out = codecs.decompress(codec, data, max_bytes) if max_bytes else codecs.decompress(codec, data)
except CorruptRecordError as e:
    print("refused:", e)
    sys.exit(0)
print("inflated", len(out))
sys.exit(1)
"""


def gzip_bomb():
    c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join(c.compress(ZERO) for _ in range(BOMB_MIB)) + c.flush()


def zstd_bomb():
    c = zstandard.ZstdCompressor(level=1).compressobj()
    return b"".join(c.compress(ZERO) for _ in range(BOMB_MIB)) + c.flush()


def lz4_bomb():
    c = lz4.frame.LZ4FrameCompressor(block_linked=False)
    return c.begin() + b"".join(c.compress(ZERO) for _ in range(BOMB_MIB)) + c.flush()


def inflate_in_child(tmp_path, codec, data, max_bytes=0):
    path = tmp_path / "bomb"
    path.write_bytes(data)
    return subprocess.run([sys.executable, "-c", CHILD, str(codec), str(path), str(max_bytes)],
                          capture_output=True, text=True)


def test_snappy_length_claim_is_refused_before_allocating(tmp_path):
    # A raw snappy block starts with its inflated length; 6 bytes claiming
    # 4 GiB made the library allocate it and abort (fuzz/findings/decompress-snappy-claim).
    r = inflate_in_child(tmp_path, codecs.SNAPPY, b"\xff\xff\xff\xff\x0f\x00")
    assert r.returncode == 0 and "refused" in r.stdout, r.stdout + r.stderr


def test_xerial_blocks_count_towards_the_bound(tmp_path):
    block = codecs.compress(codecs.SNAPPY, b"x" * 1000)
    xerial = b"\x82SNAPPY\x00" + b"\0\0\0\1\0\0\0\1" + (len(block).to_bytes(4, "big") + block) * 3
    assert len(codecs.decompress(codecs.SNAPPY, xerial, 3000)) == 3000
    with pytest.raises(codecs.CorruptRecordError):
        codecs.decompress(codecs.SNAPPY, xerial, 2999)


@pytest.mark.parametrize("codec,make", [(codecs.GZIP, gzip_bomb), (codecs.ZSTD, zstd_bomb),
                                        (codecs.LZ4, lz4_bomb)], ids=["gzip", "zstd", "lz4"])
def test_bomb_is_refused_at_the_bound(tmp_path, codec, make):
    data = make()
    assert len(data) < 8 << 20
    r = inflate_in_child(tmp_path, codec, data, max_bytes=64 << 20)
    assert r.returncode == 0 and "refused" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("codec", [codecs.GZIP, codecs.SNAPPY, codecs.LZ4, codecs.ZSTD])
def test_output_at_the_bound_is_accepted(codec):
    raw = bytes(range(256)) * 40
    packed = codecs.compress(codec, raw)
    assert codecs.decompress(codec, packed, len(raw)) == raw
    with pytest.raises(codecs.CorruptRecordError):
        codecs.decompress(codec, packed, len(raw) - 1)
