"""Checkpoint files in Kafka's text format, written atomically.

Format (KAFKA-NOTES §1.1): line 1 the version (0), line 2 the entry count, then
one entry per line. Written to <file>.tmp, fsync'd, renamed over the old file,
and the directory fsync'd, so a crash leaves the old or the new file, never a mix.
"""
from __future__ import annotations

import logging
import os
import threading

_log = logging.getLogger("pylog.log")


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


RECOVERY_POINT = "recovery-point-offset-checkpoint"
LOG_START = "log-start-offset-checkpoint"
HIGH_WATERMARK = "replication-offset-checkpoint"
CLEANER = "cleaner-offset-checkpoint"  # each compacted log's first dirty offset (Kafka's LogCleanerManager)
DIR_FILES = (RECOVERY_POINT, LOG_START, HIGH_WATERMARK, CLEANER)


def topic_partition_of(path: str) -> tuple[str, int]:
    """(topic, partition) a log directory's name stands for (Kafka's <topic>-<n>);
    a directory not named so is partition 0 of a topic of its whole name."""
    name = os.path.basename(os.path.normpath(path))
    topic, _, part = name.rpartition("-")
    if not part.isdigit() or not topic:
        return name, 0
    return topic, int(part)


class DirCheckpoints:
    """Kafka's per-data-dir checkpoints: one recovery-point-offset-checkpoint,
    log-start-offset-checkpoint, replication-offset-checkpoint and
    cleaner-offset-checkpoint in the data
    directory, each a version-0 checkpoint of `topic partition offset` lines,
    instead of files in every partition's directory (N fsyncs per round).

    Logs and partitions record their offsets with set() (cheap, in memory);
    write() puts the files that changed on disk (tmp, fsync, rename, directory
    fsync) and is the owner's periodic file work, run off the event loop.

    Thread-safety: any thread. _lock guards the maps (held only for in-memory
    work); _write_lock makes concurrent write() calls take turns, so the newest
    values always end on disk last."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._maps: dict[str, dict[tuple[str, int], int]] = {}
        self._written: dict[str, dict] = {}
        self.found = set()  # which files existed when loaded
        for name in DIR_FILES:
            path = os.path.join(data_dir, name)
            entries = {}
            try:
                for topic, part, offset in (e[:3] for e in read_checkpoint(path)):
                    entries[(topic, int(part))] = int(offset)
                if os.path.exists(path):
                    self.found.add(name)
            except (ValueError, OSError) as exc:
                # Kafka takes the dir offline; here the logs recover from their
                # segments (a recovery point of 0 only means a longer scan).
                _log.warning("%s: ignoring unreadable %s (%s)", data_dir, name, exc)
            self._maps[name] = entries
            self._written[name] = dict(entries)

    def get(self, name: str, topic: str, partition: int) -> int | None:
        with self._lock:
            return self._maps[name].get((topic, partition))

    def set(self, name: str, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            self._maps[name][(topic, partition)] = offset

    def remove(self, topic: str, partition: int) -> None:
        """A partition left this data dir: its entries go from every file."""
        with self._lock:
            for entries in self._maps.values():
                entries.pop((topic, partition), None)

    def write(self, force: bool = False) -> int:
        """Write each file whose entries changed since it was last written (all
        with force); returns how many were written. Blocks on the disk."""
        with self._write_lock:
            with self._lock:
                todo = [(name, dict(entries)) for name, entries in self._maps.items()
                        if force or entries != self._written[name]]
            for name, entries in todo:
                write_checkpoint(os.path.join(self.data_dir, name),
                                 [(t, p, o) for (t, p), o in sorted(entries.items())])
                self._written[name] = entries
            return len(todo)
