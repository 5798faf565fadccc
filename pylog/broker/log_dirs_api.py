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

From v2 (flexible), the entry of a compacted replica also carries pylog's
tagged field 7004 (pylog/protocol/pylog_tags.py): the log cleaner's state of
it (dirty ratio, first dirty offset, the last round), which `pylog topics
describe` prints. Kafka's clients skip it as an unknown tagged field.

Threads: the handler runs on the broker's loop and reads the partitions
there (in-memory sizes and offsets); the statvfs of the directory and the
cleaner's measure of the compacted logs (their segment lists, under each
log's lock) run on a worker thread, so neither a dead mount nor a log's lock
stalls the loop.
"""
from __future__ import annotations

import asyncio
import logging
import os

from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..protocol.pylog_tags import cleaner_state_field
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
        entries: dict[tuple, object] = {}
        for (topic, index), p in sorted(logs.partitions.items()):
            if wanted is not None and (topic, index) not in wanted:
                continue
            e = entries[(topic, index)] = R.DescribeLogDirsPartition(
                partition_index=index, partition_size=p.log.size_bytes,
                offset_lag=max(p.high_watermark - p.log_end_offset, 0), is_future_key=False)
            by_topic.setdefault(topic, []).append(e)
        loop = asyncio.get_running_loop()
        cleaner = self.broker.log_cleaner
        compacted = {tp for tp in entries if getattr(logs.partitions.get(tp), "compacted", False)}
        if header.request_api_version >= 2 and compacted and cleaner is not None:
            try:
                states = await loop.run_in_executor(None, cleaner.stats, compacted)
            except Exception as e:  # noqa: BLE001 -- the answer goes out without the extra field
                log.warning("DescribeLogDirs: no cleaner state: %s", e)
                states = {}
            for tp, st in states.items():
                if tp in entries:
                    entries[tp]._unknown_tagged_fields = [cleaner_state_field(cleaner_state(st))]
        try:
            total, usable = await loop.run_in_executor(None, volume_bytes, data_dir)
        except OSError as e:
            log.warning("Unable to describe replica dirs for %s: %s", data_dir, e)
            result = R.DescribeLogDirsResult(error_code=Errors.KAFKA_STORAGE_ERROR, log_dir=data_dir, topics=[])
        else:
            result = R.DescribeLogDirsResult(
                error_code=Errors.NONE, log_dir=data_dir,
                topics=[R.DescribeLogDirsTopic(name=t, partitions=ps) for t, ps in by_topic.items()],
                total_bytes=total, usable_bytes=usable)
        return R(throttle_time_ms=0, error_code=Errors.NONE, results=[result])


def cleaner_state(st) -> dict:
    """A CleaningStatus (pylog/broker/log_cleaner.py) as tag 7004's object."""
    r = st.last_round
    last = None if r is None else {
        "finished_ms": st.last_round_ms, "elapsed_ms": int(r.elapsed_s * 1000),
        "first_dirty_offset": r.first_dirty_offset, "end_offset": r.end_offset,
        "bytes_read": r.bytes_read, "bytes_written": r.bytes_written,
        "records_read": r.records_read, "records_kept": r.records_kept}
    return {"dirty_ratio": round(st.dirty_ratio, 6), "first_dirty_offset": st.first_dirty_offset,
            "first_uncleanable_offset": st.first_uncleanable_offset,
            "max_compaction_delay_ms": st.max_compaction_delay_ms, "state": st.state, "last_round": last}
