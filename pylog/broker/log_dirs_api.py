"""DescribeLogDirs (35), v0-4, as Kafka's ReplicaManager.describeLogDirs
answers it (KIP-113; v4's volume sizes from KIP-827).

One result per data directory the broker uses (pylog has one: log.dirs'
first entry, or log.dir), by its absolute path; in it, per topic, the
replicas this broker holds there that the request names (null topics: every
replica), each with its size (the bytes of its segments), its offset lag as
Kafka computes it for a current (non-future) log, max(high watermark - log
end offset, 0), and is_future false (pylog has no AlterReplicaLogDirs, so no
future logs). Topics none of whose asked-for partitions are here are left
out, as are replicas that are offline (their log could not be opened). v4
adds the volume's total and usable bytes (statvfs: f_blocks and f_bavail
times the fragment size, Java's FileStore.getTotalSpace/getUsableSpace).

A directory that cannot be looked at (removed, unreadable, its file system
gone) is answered for with KAFKA_STORAGE_ERROR and no topics, as Kafka answers
for an offline log dir; the top-level error code (v3+) stays NONE.

Threads: the handler runs on the broker's loop and reads the partitions
there (in-memory sizes and offsets); the statvfs of the directory runs on a
worker thread, so a dead mount never stalls the loop.
"""
from __future__ import annotations

import asyncio
import logging
import os

from ..protocol import messages as m
from ..protocol.error_codes import Errors
from . import api_versions as av

log = logging.getLogger("pylog.broker")


def volume_bytes(path: str) -> tuple[int, int]:
    """(total, usable) bytes of the file system holding path; OSError when it
    cannot be looked at. Any thread."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"log directory {path} is gone")
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


class LogDirsApi:
    def __init__(self, broker):
        self.broker = broker

    def table(self) -> dict:
        return {av.DESCRIBE_LOG_DIRS: self.describe_log_dirs}

    async def describe_log_dirs(self, header, req):
        R = m.DescribeLogDirsResponse
        logs = self.broker.log_manager
        data_dir = logs.data_dir
        wanted = None
        if req.topics is not None:
            wanted = {(t.topic, i) for t in req.topics for i in t.partitions}
        by_topic: dict[str, list] = {}
        for (topic, index), p in sorted(logs.partitions.items()):
            if wanted is not None and (topic, index) not in wanted:
                continue
            by_topic.setdefault(topic, []).append(R.DescribeLogDirsPartition(
                partition_index=index, partition_size=p.log.size_bytes,
                offset_lag=max(p.high_watermark - p.log_end_offset, 0), is_future_key=False))
        try:
            total, usable = await asyncio.get_running_loop().run_in_executor(None, volume_bytes, data_dir)
        except OSError as e:
            log.warning("Unable to describe replica dirs for %s: %s", data_dir, e)
            result = R.DescribeLogDirsResult(error_code=Errors.KAFKA_STORAGE_ERROR, log_dir=data_dir, topics=[])
        else:
            result = R.DescribeLogDirsResult(
                error_code=Errors.NONE, log_dir=data_dir,
                topics=[R.DescribeLogDirsTopic(name=t, partitions=ps) for t, ps in by_topic.items()],
                total_bytes=total, usable_bytes=usable)
        return R(throttle_time_ms=0, error_code=Errors.NONE, results=[result])
