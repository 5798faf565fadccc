"""Helpers shared by the log tests: read segment files independently of pylog
(plain struct parsing of KAFKA-NOTES §1-§2), compare records, run child scripts."""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEGMENT_RE = re.compile(r"^(\d{20})\.(log|index|timeindex)$")
_HDR = struct.Struct(">qiibIhiqqqhii")


def rec_tuple(rec):
    """(offset, timestamp, key, value, headers) of a Record, with bytes for views."""
    b = lambda v: None if v is None else bytes(v)  # noqa: E731
    return (rec.offset, rec.timestamp, b(rec.key), b(rec.value), [(k, b(v)) for k, v in rec.headers])


def segment_bases(path) -> list[int]:
    return sorted(int(n[:20]) for n in os.listdir(path) if SEGMENT_RE.match(n) and n.endswith(".log"))


def segment_files(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if SEGMENT_RE.match(n))


def log_file(path, base: int, suffix: str = "log") -> str:
    return os.path.join(path, f"{base:020d}.{suffix}")


def walk_batches(data: bytes) -> list[dict]:
    """The batches of a .log's bytes (headers only, no CRC check); stops at the
    first header that does not parse or does not fit."""
    out = []
    pos = 0
    while pos + 61 <= len(data):
        f = _HDR.unpack_from(data, pos)
        base, blen, epoch, magic, crc, attrs, lod, bts, mts, pid, pep, bseq, count = f
        total = blen + 12
        if magic != 2 or blen < 49 or pos + total > len(data):
            break
        out.append(dict(position=pos, base_offset=base, last_offset=base + lod, size=total,
                        max_timestamp=mts, base_timestamp=bts, count=count, attributes=attrs,
                        leader_epoch=epoch, crc=crc))
        pos += total
    return out


def read_batches_file(path) -> list[dict]:
    with open(path, "rb") as f:
        return walk_batches(f.read())


def flip_bit(path, position: int, bit: int = 0):
    with open(path, "r+b") as f:
        f.seek(position)
        b = f.read(1)
        f.seek(position)
        f.write(bytes([b[0] ^ (1 << bit)]))


def run_python(code: str, *args, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=REPO)
    if check and p.returncode != 0:
        raise AssertionError(f"child failed ({p.returncode}):\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p
