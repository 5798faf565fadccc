"""Checkpoint files in Kafka's text format, written atomically.

Format (KAFKA-NOTES §1.1): line 1 the version (0), line 2 the entry count, then
one entry per line. Written to <file>.tmp, fsync'd, renamed over the old file,
and the directory fsync'd, so a crash leaves the old or the new file, never a mix.
"""
from __future__ import annotations

import os


def write_checkpoint(path: str, entries: list[tuple]) -> None:
    text = "0\n%d\n" % len(entries) + "".join(" ".join(str(x) for x in e) + "\n" for e in entries)
    atomic_write(path, text.encode())


def atomic_write(path: str, data: bytes) -> None:
    """Replace path with data so that a crash leaves the old or the new file:
    <path>.tmp written and fsync'd, renamed over path, the directory fsync'd."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def read_checkpoint(path: str) -> list[list[str]]:
    """Entries as lists of fields; [] when the file is missing. ValueError when malformed."""
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    if len(lines) < 2 or lines[0].strip() != "0":
        raise ValueError(f"{path}: not a version-0 checkpoint file")
    count = int(lines[1])
    entries = [line.split() for line in lines[2:2 + count]]
    if len(entries) != count:
        raise ValueError(f"{path}: {count} entries announced, {len(entries)} present")
    return entries


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
