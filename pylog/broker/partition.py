"""One topic-partition replica hosted by this broker.

A Partition owns its Log, its producer state and the replication bookkeeping
that the cluster issue will grow: leader_epoch (stamped into every batch
appended as leader), isr, and a high_watermark kept apart from the log end
offset. With a single replica the ISR is this broker alone, so the high
watermark reaches the log end offset as soon as an append returns; the
code paths (append, then maybe_increment_high_watermark, reads bounded by
the high watermark) are the ones replication will use.

Invariants: log_start_offset <= high_watermark <= log_end_offset; the high
watermark never moves backwards except by truncation; consumers read only
below it.

Not thread-safe: the broker's event loop owns every Partition.
"""
from __future__ import annotations

import os
import time

from .. import _engine
from ..errors import (
    InvalidRecordError,
    NotEnoughReplicasError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from ..log.checkpoint import read_checkpoint, write_checkpoint
from ..log.log import Log
from .producer_state import ProducerStateManager

HW_CHECKPOINT = "replication-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"


class AppendResult:
    __slots__ = ("first_offset", "last_offset", "log_append_time", "log_start_offset")

    def __init__(self, first_offset, last_offset, log_start_offset):
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.log_append_time = -1  # CreateTime topics only
        self.log_start_offset = log_start_offset


class Partition:
    def __init__(self, topic: str, index: int, path: str, config, broker_id: int,
                 producer_id_expiration_ms: int = 86400000):
        self.topic = topic
        self.index = index
        self.path = path
        self._set_config(config)
        self.broker_id = broker_id
        self.leader_id = broker_id
        self.replicas = [broker_id]
        self.isr = [broker_id]
        self.leader_epoch = self._read_leader_epoch()
        # Writes go through to the OS on every append (write_buffer_bytes=0): an
        # acknowledged batch must survive the broker process dying.
        opts = config.log_options()
        flush_ms = opts.pop("flush_ms")
        self.log = Log.open(path, write_buffer_bytes=0, leader_epoch=self.leader_epoch, **opts)
        # Time-based flushes come from the broker's flush task (one for all
        # partitions), not from a flusher thread per log.
        self.log.flush_ms = flush_ms
        self._checkpointed_hw = None
        self.high_watermark = self._initial_high_watermark()
        self.producer_state = ProducerStateManager(path, producer_id_expiration_ms)
        self.producer_state.load(self.log)
        self._waiters: list = []  # futures of fetches waiting for new data

    # ---- names Kafka uses ----

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def last_stable_offset(self) -> int:
        # No transactions yet: nothing is pending, so LSO = HW.
        return self.high_watermark

    def __repr__(self):
        return (f"Partition({self.topic}-{self.index}, leader_epoch={self.leader_epoch}, "
                f"hw={self.high_watermark}, leo={self.log_end_offset})")

    # ---- leader epoch and high watermark persistence ----

    def _read_leader_epoch(self) -> int:
        try:
            entries = read_checkpoint(os.path.join(self.path, LEADER_EPOCH_CHECKPOINT))
        except ValueError:
            entries = []
        # Kafka's file lists (epoch, start_offset) pairs; the last is current.
        return int(entries[-1][0]) if entries else 0

    def _write_leader_epoch(self, start_offset: int):
        os.makedirs(self.path, exist_ok=True)
        write_checkpoint(os.path.join(self.path, LEADER_EPOCH_CHECKPOINT), [(self.leader_epoch, start_offset)])

    def _initial_high_watermark(self) -> int:
        try:
            entries = read_checkpoint(os.path.join(self.path, HW_CHECKPOINT))
            hw = int(entries[0][2]) if entries else 0
        except (ValueError, IndexError):
            hw = 0
        leo = self.log.log_end_offset
        # A single replica's whole log is committed (it is the whole ISR); with
        # replication the checkpoint bounds it, and a follower catches up.
        hw = leo if self.isr == [self.broker_id] else min(max(hw, self.log.log_start_offset), leo)
        if not os.path.exists(os.path.join(self.path, LEADER_EPOCH_CHECKPOINT)):
            self._write_leader_epoch(leo)
        return hw

    def checkpoint_high_watermark(self):
        # Two fsyncs per write: skipped when the high watermark has not moved.
        if self.high_watermark != self._checkpointed_hw:
            write_checkpoint(os.path.join(self.path, HW_CHECKPOINT),
                             [(self.topic, self.index, self.high_watermark)])
            self._checkpointed_hw = self.high_watermark

    def maybe_increment_high_watermark(self) -> bool:
        """HW = min log end offset over the ISR (here: this replica's)."""
        new = self.log.log_end_offset
        if new > self.high_watermark:
            self.high_watermark = new
            self._wake_fetchers()
            return True
        return False

    # ---- appends ----

    def append_as_leader(self, data, required_acks: int) -> AppendResult:
        """Append the batches of one produce request. Raises CorruptRecordError,
        InvalidRecordError, RecordTooLargeError, the producer-state errors; on any
        of them nothing was appended."""
        if not data:
            raise InvalidRecordError("produce request without record batches")
        headers = _engine.batch_headers(data)
        max_bytes = self.max_message_bytes
        ends = [h[0] for h in headers[1:]] + [len(data)]
        for h, end in zip(headers, ends):
            if end - h[0] > max_bytes:
                raise RecordTooLargeError(
                    f"a batch of {end - h[0]} bytes exceeds max.message.bytes={max_bytes} of {self.topic}")
        if required_acks == -1 and len(self.isr) < self.min_insync_replicas:
            raise NotEnoughReplicasError(
                f"{self.topic}-{self.index}: ISR {self.isr} is smaller than min.insync.replicas="
                f"{self.min_insync_replicas}")
        dup = self.producer_state.check(headers)
        if dup is not None:
            # A retried batch: its original offsets, nothing appended.
            return AppendResult(dup[2], dup[3], self.log.log_start_offset)
        # The request's bytes are ours to patch (the connection's receive buffer).
        # The engine refuses bad batches (CorruptRecordError, InvalidRecordError).
        first, last = self.log.append_batches(data, self.leader_epoch, in_place=_writable(data))
        self.producer_state.update(headers, first)
        self.maybe_increment_high_watermark()
        return AppendResult(first, last, self.log.log_start_offset)

    # ---- fetch waiting ----

    def add_waiter(self, fut):
        self._waiters.append(fut)

    def remove_waiter(self, fut):
        try:
            self._waiters.remove(fut)
        except ValueError:
            pass

    def _wake_fetchers(self):
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    # ---- reads ----

    def read(self, offset: int, max_bytes: int):
        """Whole batches from the one holding offset, below the high watermark:
        a FetchSlice (at least one batch, even above max_bytes: KIP-74), or None
        when offset is the high watermark. OffsetOutOfRangeError otherwise."""
        if offset == self.high_watermark and offset >= self.log.log_start_offset:
            return None
        if offset > self.high_watermark:
            raise OffsetOutOfRangeError(
                f"offset {offset} is above the high watermark {self.high_watermark} of {self.topic}-{self.index}")
        return self.log.read_batches(offset, max(max_bytes, 1))

    def offset_for_time(self, timestamp: int):
        return self.log.offset_for_time(timestamp)

    def delete_records(self, offset: int) -> int:
        """Advance log_start_offset to offset (-1: the high watermark); the new low watermark."""
        if offset == -1:
            offset = self.high_watermark
        if offset > self.high_watermark:
            raise OffsetOutOfRangeError(
                f"cannot delete records below {offset}: above the high watermark {self.high_watermark}")
        return self.log.delete_records(offset)

    # ---- upkeep ----

    def _set_config(self, config):
        self.config = config  # TopicConfig
        # Read on every append: parsed once here, not per request.
        self.max_message_bytes = config.get("max.message.bytes")
        self.min_insync_replicas = config.get("min.insync.replicas")

    def apply_config(self, config):
        self._set_config(config)
        opts = config.log_options()
        self.log.retention_ms = opts["retention_ms"]
        self.log.retention_bytes = opts["retention_bytes"]
        self.log.flush_messages = opts["flush_messages"]
        self.log.flush_ms = opts["flush_ms"]
        # Segment settings take effect from the next segment.
        self.log._seg_cfg.update(segment_bytes=opts["segment_bytes"],
                                 segment_ms=-1 if opts["segment_ms"] is None else opts["segment_ms"],
                                 index_interval_bytes=opts["index_interval_bytes"],
                                 index_max_bytes=opts["segment_index_bytes"])

    def housekeeping(self, now_ms: int | None = None):
        """Retention, producer expiry and checkpoints (the broker's background task)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.log.enforce_retention(now_ms)
        self.producer_state.expire(now_ms)
        self.producer_state.take_snapshot(self.log.log_end_offset)
        self.checkpoint_high_watermark()

    def close(self):
        # Waiting fetches wake up and find the partition gone (an error
        # answer), rather than being cancelled under their connection.
        self._wake_fetchers()
        try:
            self.producer_state.take_snapshot(self.log.log_end_offset, force=True)
            self.checkpoint_high_watermark()
        finally:
            self.log.close()


__all__ = ["AppendResult", "Partition"]


def _writable(data) -> bool:
    return type(data) is memoryview and not data.readonly or type(data) is bytearray
