"""ReadOnlyStore: a broker data directory that another process writes, read
from this one without its lock (`LocalStore.open(log_dir, read_only=True)`).

The writer (a running embedded producer's LocalStore, or a broker) holds the
directory's and every partition's flock; this reader takes none and changes
nothing on disk. Each partition `<topic>-<n>/` is a `Log.open(read_only=True)`
(pylog/log/log.py), which follows the writer's appends and segment rolls as
Chronicle Queue's tailers do; topics and partitions that appear later are
found by listing the directory again.

What a reader in another process cannot know, and so what it answers:
- the high watermark is the log end offset it sees: right for a directory
  with one replica (an embedded store or a lone broker commit an append as
  it returns); a broker in a cluster may have records past its high
  watermark on disk, which this reader would hand out;
- appends show once they reach the OS (the writer's buffer is drained within
  Log's WRITE_BUFFER_MAX_MS);
- committed offsets are not read, and none are stored (commit raises
  io.UnsupportedOperation): a read-only consumer starts from
  auto_offset_reset or an explicit seek.

There is no listener across processes, so a fetch that waits for new data
(EmbeddedSource) looks again every TAIL_POLL_S: the one waiting loop outside
the purgatory, for another process's appends only.

Thread-safety: every method may be called from any thread; the open Logs are
kept under `_lock` (a Log itself is thread-safe).
"""
from __future__ import annotations

import io
import os
import re
import threading

from ..broker.handlers import INTERNAL_TOPICS
from ..errors import InvalidConfigError, LogClosedError, OffsetOutOfRangeError, UnknownTopicOrPartitionError
from ..log.log import Log
from ..structs import TopicPartition

__all__ = ["ReadOnlyStore", "TAIL_POLL_S"]

# How often a waiting fetch looks at the files again: the writer's appends
# reach a reader at most this much later than the writer's own consumers.
TAIL_POLL_S = 0.005

_PARTITION_DIR = re.compile(r"^(.+)-(\d+)$")


class ReadOnlyStore:
    """A read-only view of a data directory (see the module docstring). Open
    with LocalStore.open(log_dir, read_only=True); close() closes its logs.
    Thread-safe."""

    read_only = True

    def __init__(self, log_dir):
        self.data_dir = os.path.realpath(os.fspath(log_dir))
        if not os.path.isdir(self.data_dir):
            raise FileNotFoundError(f"{self.data_dir} is not a data directory")
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, int], Log] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self):
        return f"ReadOnlyStore({self.data_dir!r}{', closed' if self._closed else ''})"

    # ---- topics, as the directory holds them now ----

    def _on_disk(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for name in os.listdir(self.data_dir):
            mt = _PARTITION_DIR.match(name)
            if mt is None or not os.path.isdir(os.path.join(self.data_dir, name)):
                continue
            out.setdefault(mt.group(1), []).append(int(mt.group(2)))
        return {t: sorted(ps) for t, ps in out.items()}

    def partitions_for(self, topic: str, create: bool = False) -> list[int] | None:
        """The topic's partitions found on disk; None when it has none. create
        is refused silently: a reader creates nothing (auto creation is the
        writer's)."""
        self._check_open()
        return self._on_disk().get(topic)

    def topics(self) -> list[str]:
        self._check_open()
        return sorted(t for t in self._on_disk() if t not in INTERNAL_TOPICS)

    # ---- records ----

    def _log(self, topic: str, partition: int) -> Log:
        with self._lock:
            self._check_open()
            log = self._logs.get((topic, partition))
            if log is None:
                path = os.path.join(self.data_dir, f"{topic}-{partition}")
                try:
                    log = Log.open(path, read_only=True)
                except FileNotFoundError as e:   # not there, or its first segment not made yet
                    raise UnknownTopicOrPartitionError(f"{topic}-{partition} does not exist in "
                                                       f"{self.data_dir}") from e
                self._logs[(topic, partition)] = log
            return log

    def read_now(self, topic: str, partition: int, offset: int, max_bytes: int, committed: bool = False):
        """(records, high_watermark, log_start_offset, aborted) as
        LocalStore.read_now, with the log end offset as the high watermark
        (module docstring). read_committed needs the writer's producer state
        (the last stable offset), which a reader in another process does not
        have: refused."""
        if committed:
            raise InvalidConfigError("isolation_level=read_committed cannot read a directory another process "
                                     "writes (read_only=True): the last stable offset lives in the writer")
        log = self._log(topic, partition)
        end = log.refresh()
        start = log.log_start_offset
        if offset == end:
            return b"", end, start, ()
        if offset < start or offset > end:
            raise OffsetOutOfRangeError(f"offset {offset} is out of range [{start}, {end}] of "
                                        f"{topic}-{partition}")
        fs = log.read_batches(offset, max(max_bytes, 1))
        data = bytes(fs)   # copied out: no view pins the writer's segments here
        del fs
        return data, end, start, ()

    def read(self, topic: str, partition: int, offset: int, max_bytes: int):
        """(records, high_watermark, log_start_offset) as LocalStore.read."""
        return self.read_now(topic, partition, offset, max_bytes)[:3]

    def watermarks_now(self, topic: str, partition: int) -> tuple[int, int]:
        log = self._log(topic, partition)
        return log.refresh(), log.log_start_offset

    def list_offset(self, topic: str, partition: int, timestamp: int,
                    isolation_level: int = 0) -> tuple[int, int]:
        """-2 earliest, -1 latest, else the first offset whose timestamp is >=
        timestamp (the Log's own lookup, as Partition.list_offset_by_time
        uses); (offset, timestamp), (-1, -1) when no record is that late."""
        log = self._log(topic, partition)
        end = log.refresh()
        if timestamp == -2:
            return log.log_start_offset, -1
        if timestamp == -1:
            return end, -1
        found = log.offset_and_timestamp_for_time(timestamp)
        if found is None or found[0] >= end:
            return -1, -1
        return found

    # ---- offsets: not this reader's ----

    def commit_offsets(self, group_id, offsets) -> None:
        raise io.UnsupportedOperation(f"{self.data_dir} is open read-only: offsets are not committed")

    def committed_offsets(self, group_id, partitions) -> dict:
        # Not read (module docstring): positions start from auto_offset_reset.
        return {TopicPartition(tp[0], tp[1]): None for tp in partitions}

    # ---- closing ----

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            logs, self._logs = list(self._logs.values()), {}
        for log in logs:
            log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self):
        if self._closed:
            raise LogClosedError(f"{self!r} is closed")
