"""One topic-partition replica hosted by this broker.

A Partition owns its Log, its producer state, its leader epoch cache and the
replication bookkeeping (KAFKA-NOTES §4.1): leader_id, leader_epoch (stamped
into every batch appended as leader), replicas, isr, partition_epoch and a
high_watermark kept apart from the log end offset.

Two ways to exist:
- local (single broker, topics created by this broker's LogManager): this
  broker is leader and the whole ISR from the start, so the high watermark
  reaches the log end offset as soon as an append returns;
- controller-managed (a replica the controller assigned with LeaderAndIsr):
  no leader is known (leader_id -1) until make_leader / make_follower applies
  the controller's state. As leader it tracks every follower's fetch position
  (ReplicaState) and moves the high watermark to the minimum log end offset
  over the ISR; as follower it appends the leader's batches unchanged
  (append_as_follower) and takes min(leader HW, own LEO) as its HW.

Invariants: log_start_offset <= high_watermark <= log_end_offset; the high
watermark never moves backwards except by truncation; consumers read only
below it; only the leader appends client batches; the ISR always holds the
leader while it leads.

Listeners: where the high watermark or the log end offset moves, and where
the ISR or the leadership changes, the partition tells the broker's purgatory
(broker/purgatory.py), which completes the acks=all produces, long-polling
fetches and coordinator writes waiting here. No other waiting mechanism.

Threads: not thread-safe; the broker's event loop owns every Partition (the
embedded store drives one from any thread under its own lock; no purgatory is
attached there). File work that runs on the LogManager's file thread while
the loop goes on: a follower's truncation (truncate: the log, its
transaction index and leader-epoch-checkpoint cut, the producer state rebuilt
into a new object that replaces the old with one attribute store, atomic
under the GIL), and the segment deletion after DeleteRecords
(Log.delete_segments_below_log_start, under the Log's lock). While a
truncation runs (truncating) the loop neither appends
to this replica nor reads it (read answers nothing yet, housekeeping skips
it, appends are refused, the replica fetcher waits with truncation_done, and
a LeaderAndIsr making it leader waits too:
ReplicaManager.prepare_leader_and_isr); the Log itself takes its own lock.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import time

from .. import _engine
from ..errors import (
    InvalidRecordError,
    InvalidRequestError,
    NotEnoughReplicasError,
    NotLeaderOrFollowerError,
    OffsetNotAvailableError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from ..log.checkpoint import read_checkpoint, write_checkpoint
from ..log.leader_epoch import LEADER_EPOCH_CHECKPOINT, LeaderEpochCache
from ..log.log import Log
from ..log.txn_index import TransactionIndexes
from ..protocol.error_codes import Errors
from .config import BROKER_DEFAULTS, LONG_MAX, target_codec
from ..protocol.control_records import build_end_txn_marker
from .producer_state import ProducerStateManager
from .purgatory import HIGH_WATERMARK, LOG_END

HW_CHECKPOINT = "replication-offset-checkpoint"


class AppendResult:
    __slots__ = ("first_offset", "last_offset", "log_append_time", "log_start_offset")

    def __init__(self, first_offset, last_offset, log_start_offset):
        self.first_offset = first_offset
        self.last_offset = last_offset
        self.log_append_time = -1  # the broker's stamp on LogAppendTime topics, else -1
        self.log_start_offset = log_start_offset


class ReplicaState:
    """The leader's view of one follower, from that follower's fetches (§4.1)."""

    __slots__ = ("last_caught_up_time_ms", "last_fetch_leader_log_end_offset", "last_fetch_time_ms",
                 "log_end_offset", "log_start_offset", "replica_id")

    def __init__(self, replica_id: int, in_sync: bool, now_ms: int):
        self.replica_id = replica_id
        self.log_end_offset = -1          # unknown until its first fetch
        self.log_start_offset = -1
        self.last_fetch_time_ms = 0
        self.last_fetch_leader_log_end_offset = -1
        # An ISR member counts as caught up when leadership starts (Kafka's
        # resetReplicaState), so it gets replica.lag.time.max.ms to fetch.
        self.last_caught_up_time_ms = now_ms if in_sync else 0

    def update(self, fetch_offset: int, log_start_offset: int, leader_log_end_offset: int, now_ms: int):
        # lastCaughtUpTime rule (§4.1): caught up as of this fetch when it
        # reached the leader's LEO now, or as of the previous fetch when it
        # reached the LEO the leader had then (steady small produces).
        if fetch_offset >= leader_log_end_offset:
            self.last_caught_up_time_ms = max(self.last_caught_up_time_ms, now_ms)
        elif fetch_offset >= self.last_fetch_leader_log_end_offset >= 0:
            self.last_caught_up_time_ms = max(self.last_caught_up_time_ms, self.last_fetch_time_ms)
        self.log_end_offset = fetch_offset
        self.log_start_offset = log_start_offset
        self.last_fetch_leader_log_end_offset = leader_log_end_offset
        self.last_fetch_time_ms = now_ms


class Partition:
    """Threads: its owner (the broker's loop; the embedded store under its
    partition lock) calls everything, except the file half of a truncation
    (_truncate_files), which truncate runs on the LogManager's file thread
    while truncating is true and the owner keeps off this replica's log,
    producer state and transaction index; truncate_to runs every step on its
    caller, for owners that may wait on the disk. Relies on the GIL for the
    producer_state swap and for reads of the log end offset meanwhile.
    """

    def __init__(self, topic: str, index: int, path: str, config, broker_id: int,
                 producer_id_expiration_ms: int = 86400000, controller_managed: bool = False,
                 dir_checkpoints=None):
        self.topic = topic
        # The data dir's checkpoint files (LogManager writes them); None: this
        # partition's own files in its directory.
        self._dir_checkpoints = dir_checkpoints
        self.index = index
        self.path = path
        # (topic, index) -> a context pausing the broker's log cleaner on this
        # partition (LogManager sets it); none here for other owners.
        self.cleaner_pause = _no_cleaner_pause
        self._set_config(config)
        self.broker_id = broker_id
        self.controller_managed = controller_managed
        if controller_managed:
            # Nothing is served until the controller says who leads.
            self.leader_id, self.replicas, self.isr = -1, [], []
        else:
            self.leader_id, self.replicas, self.isr = broker_id, [broker_id], [broker_id]
        self.partition_epoch = 0
        self.controller_epoch = -1
        self.followers: dict[int, ReplicaState] = {}
        self.pending_isr = None   # the ISR asked of the controller (AlterPartition in flight)
        # Writes go through to the OS on every append (write_buffer_bytes=0): an
        # acknowledged batch must survive the broker process dying.
        opts = config.log_options()
        flush_ms = opts.pop("flush_ms")
        os.makedirs(path, exist_ok=True)
        self.epoch_cache = LeaderEpochCache(os.path.join(path, LEADER_EPOCH_CHECKPOINT))
        latest = self.epoch_cache.latest_epoch()
        if controller_managed:
            self.leader_epoch = latest
        else:
            self.leader_epoch = max(latest, 0)
        self.log = Log.open(path, write_buffer_bytes=0, leader_epoch=self.leader_epoch,
                            dir_checkpoints=dir_checkpoints, **opts)
        # Time-based flushes come from the broker's flush task (one for all
        # partitions), not from a flusher thread per log.
        self.log.flush_ms = flush_ms
        # Entries past the log's end (a crash before the log reached the disk)
        # are not history.
        self.epoch_cache.truncate_from_end(self.log.log_end_offset)
        self.epoch_cache.truncate_from_start(self.log.log_start_offset)
        self.epoch_cache.flush()
        if not controller_managed and self.epoch_cache.latest_epoch() < 0:
            self.epoch_cache.assign(self.leader_epoch, self.log.log_end_offset)
            self.epoch_cache.flush()
        self._checkpointed_hw = None
        self.high_watermark = self._initial_high_watermark()
        self.txn_indexes = TransactionIndexes(path)
        self.producer_state = ProducerStateManager(path, producer_id_expiration_ms)
        self.producer_state.load(self.log, self.txn_indexes)
        # The broker's purgatory, attached by it when an operation first waits
        # on this partition; told where the high watermark and log end move.
        self.purgatory = None
        self.on_isr_change_needed = None  # set by the ReplicaManager: called with (partition, new_isr)
        # Kafka's BytesOutPerSec for this replica: record bytes sent to
        # consumers (replication excluded), counted when the answer is sent.
        # With KIP-392 it shows which replica consumers actually read from.
        self.bytes_out = 0
        self.isr_shrinks = self.isr_expands = 0   # Kafka's IsrShrinksPerSec / IsrExpandsPerSec (as leader)
        # The task of a truncation whose file work is running off the loop.
        self._truncation = None

    # ---- names Kafka uses ----

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def last_stable_offset(self) -> int:
        """min(first unstable offset, HW) (KAFKA-NOTES §6.3): a transaction
        holds it back until its marker is below the HW. Kept by the producer
        state on every replica, so a follower serving read_committed
        (KIP-392) answers the same as its leader once caught up."""
        first = self.producer_state.first_unstable_offset(self.high_watermark)
        if first is None or first > self.high_watermark:
            return self.high_watermark
        # A transaction begun below the log start (DeleteRecords, retention)
        # holds it back no further than the log start, as Kafka's
        # updateFirstUnstableOffset bounds it.
        return max(first, self.log.log_start_offset)

    @property
    def is_leader(self) -> bool:
        return self.leader_id == self.broker_id

    def __repr__(self):
        return (f"Partition({self.topic}-{self.index}, leader={self.leader_id}, leader_epoch={self.leader_epoch}, "
                f"isr={self.isr}, hw={self.high_watermark}, leo={self.log_end_offset})")

    # ---- high watermark persistence ----

    def _initial_high_watermark(self) -> int:
        dc = self._dir_checkpoints
        hw = None if dc is None else dc.get(HW_CHECKPOINT, self.topic, self.index)
        if hw is None:  # this partition's own file (the layout before per-dir checkpoints)
            try:
                entries = read_checkpoint(os.path.join(self.path, HW_CHECKPOINT))
                hw = int(entries[0][2]) if entries else 0
            except (ValueError, IndexError, OSError):
                hw = 0
        leo = self.log.log_end_offset
        # A single replica's whole log is committed (it is the whole ISR); with
        # replication the checkpoint bounds it, and a follower catches up.
        if not self.controller_managed:
            return leo
        return min(max(hw, self.log.log_start_offset), leo)

    def checkpoint_high_watermark(self):
        # Two fsyncs per write: skipped when the high watermark has not moved.
        if self._dir_checkpoints is not None:
            self._dir_checkpoints.set(HW_CHECKPOINT, self.topic, self.index, self.high_watermark)
            return
        if self.high_watermark != self._checkpointed_hw:
            write_checkpoint(os.path.join(self.path, HW_CHECKPOINT),
                             [(self.topic, self.index, self.high_watermark)])
            self._checkpointed_hw = self.high_watermark

    def maybe_increment_high_watermark(self) -> bool:
        """As leader: HW = min log end offset over the ISR; forward only."""
        new = self.log.log_end_offset
        for rid in self.isr:
            if rid != self.broker_id:
                st = self.followers.get(rid)
                if st is None or st.log_end_offset < 0:
                    return False  # an ISR member not heard from yet holds the HW
                new = min(new, st.log_end_offset)
        if new > self.high_watermark:
            self.high_watermark = new
            self._wake_fetchers()
            self._wake_producers()
            return True
        return False

    # ---- leadership (the controller's LeaderAndIsr) ----

    def _apply_state(self, state):
        self.leader_id = state.leader
        self.leader_epoch = state.leader_epoch
        self.replicas = list(state.replicas)
        self.isr = list(state.isr)
        self.partition_epoch = state.partition_epoch
        self.pending_isr = None

    def make_leader(self, state, now_ms: int) -> bool:
        """Become (or stay) leader with the controller's state; True when
        this is a new leadership or epoch. The HW is kept; followers start
        afresh (unknown positions, ISR members counted as caught up now)."""
        new_epoch = not self.is_leader or state.leader_epoch != self.leader_epoch
        self._apply_state(state)
        if new_epoch:
            if self.epoch_cache.latest_epoch() < self.leader_epoch:
                self.epoch_cache.assign(self.leader_epoch, self.log.log_end_offset)  # written through
            self.followers = {r: ReplicaState(r, r in self.isr, now_ms)
                              for r in self.replicas if r != self.broker_id}
        else:
            for r in self.replicas:
                if r != self.broker_id and r not in self.followers:
                    self.followers[r] = ReplicaState(r, r in self.isr, now_ms)
        self.maybe_increment_high_watermark()
        self._wake_fetchers()
        self._wake_producers()
        return new_epoch

    def make_follower(self, state) -> bool:
        """Follow state.leader; True when the leader or epoch changed (the
        fetcher must then truncate before fetching). Waiting produces and
        fetches wake up and find this replica no longer leads."""
        changed = self.leader_id != state.leader or state.leader_epoch != self.leader_epoch
        self._apply_state(state)
        self.followers = {}
        self._wake_fetchers()
        self._wake_producers()
        return changed

    def stop(self):
        """No longer a replica the controller drives here (StopReplica)."""
        self.leader_id = -1
        self._wake_fetchers()
        self._wake_producers()

    def apply_isr(self, isr, partition_epoch: int):
        """The ISR the controller committed (an AlterPartition answer)."""
        self.isr_shrinks += len(isr) < len(self.isr)
        self.isr_expands += len(isr) > len(self.isr)
        self.isr = list(isr)
        self.partition_epoch = partition_epoch
        self.pending_isr = None
        now_ms = _now_ms()
        for r in self.replicas:
            if r != self.broker_id and r not in self.followers:
                self.followers[r] = ReplicaState(r, r in self.isr, now_ms)
        # A smaller ISR may let the HW move (and wakes acks=all waiters that
        # must now fail with NOT_ENOUGH_REPLICAS_AFTER_APPEND).
        self.maybe_increment_high_watermark()
        self._wake_producers()

    # ---- the leader's view of its followers ----

    def update_follower_fetch(self, replica_id: int, fetch_offset: int, log_start_offset: int,
                              now_ms: int | None = None):
        """A follower fetched from fetch_offset: its LEO is that (§4.1). May
        move the HW, and asks for an ISR expansion when it caught up."""
        now_ms = _now_ms() if now_ms is None else now_ms
        st = self.followers.get(replica_id)
        if st is None:
            st = self.followers[replica_id] = ReplicaState(replica_id, False, now_ms)
        st.update(fetch_offset, log_start_offset, self.log.log_end_offset, now_ms)
        if replica_id not in self.isr and self.pending_isr is None and self._may_join_isr(st):
            self._request_isr(self.isr + [replica_id])
        self.maybe_increment_high_watermark()

    def _may_join_isr(self, st) -> bool:
        # ISR expansion (§4.1): caught up to the HW and into the current epoch.
        epoch_start = next((start for epoch, start in self.epoch_cache.epoch_entries()
                            if epoch == self.leader_epoch), 0)
        return st.log_end_offset >= self.high_watermark and st.log_end_offset >= epoch_start

    def out_of_sync_replicas(self, max_lag_ms: int, now_ms: int | None = None) -> list[int]:
        """ISR followers whose last catch-up is older than max_lag_ms (§4.1)."""
        now_ms = _now_ms() if now_ms is None else now_ms
        leo = self.log.log_end_offset
        out = []
        for rid in self.isr:
            if rid == self.broker_id:
                continue
            st = self.followers.get(rid)
            if st is None:
                continue
            if st.log_end_offset != leo and now_ms - st.last_caught_up_time_ms > max_lag_ms:
                out.append(rid)
        return out

    def maybe_shrink_isr(self, max_lag_ms: int, now_ms: int | None = None) -> bool:
        if not self.is_leader or self.pending_isr is not None:
            return False
        lagging = self.out_of_sync_replicas(max_lag_ms, now_ms)
        if not lagging:
            return False
        self._request_isr([r for r in self.isr if r not in lagging])
        return True

    def _request_isr(self, new_isr):
        if self.on_isr_change_needed is None:
            return
        self.pending_isr = list(new_isr)
        self.on_isr_change_needed(self, self.pending_isr)

    # ---- appends ----

    def append_as_leader(self, data, required_acks: int, produce_version: int | None = None,
                         client: bool = True) -> AppendResult:
        """Append the batches of one produce request. Raises CorruptRecordError,
        InvalidRecordError, InvalidTimestampError, UnsupportedCompressionError,
        RecordTooLargeError, NotLeaderOrFollowerError, NotEnoughReplicasError,
        the producer-state errors; on any of them nothing was appended.
        produce_version: a client's Produce request, whose every record is
        checked as Kafka's LogValidator does (engine/validate.h); None for the
        broker's own batches (group metadata, the embedded store).
        client: producer sequences are checked (Kafka's AppendOrigin.CLIENT);
        False for a coordinator's transactional batches (epochs only)."""
        if not self.is_leader or self._truncation is not None:
            raise NotLeaderOrFollowerError(
                f"broker {self.broker_id} is not the leader of {self.topic}-{self.index} "
                f"(leader: {self.leader_id})")
        if not data:
            raise InvalidRecordError("produce request without record batches")
        headers = _engine.batch_headers(data)
        max_bytes = self.max_message_bytes
        ends = [h[0] for h in headers[1:]] + [len(data)]
        for h, end in zip(headers, ends):
            if end - h[0] > max_bytes:
                raise RecordTooLargeError(
                    f"a batch of {end - h[0]} bytes exceeds max.message.bytes={max_bytes} of {self.topic} "
                    f"(raise the topic's max.message.bytes, or the broker's message.max.bytes)")
        now = int(time.time() * 1000)
        if produce_version is not None:
            # Kafka checks the timestamp window only on CreateTime topics.
            window = (LONG_MAX, LONG_MAX) if self.uses_log_append_time else \
                (self.timestamp_before_max_ms, self.timestamp_after_max_ms)
            data = _engine.validate_produce(data, now, window[0], window[1], self.compacted, produce_version,
                                            self.max_inflated_bytes, self._name)
        log_append_time = now if self.uses_log_append_time else -1
        if self.target_codec >= 0 or log_append_time >= 0:
            data, rebuilt = _engine.rewrite_batches(data, self.target_codec, log_append_time,
                                                    self.max_inflated_bytes)
            headers = _engine.batch_headers(data)  # new max timestamps (and positions when rebuilt)
            if rebuilt:
                self._check_rebuilt_sizes(headers, len(data))
        if required_acks == -1 and len(self.isr) < self.min_insync_replicas:
            raise NotEnoughReplicasError(
                f"{self.topic}-{self.index}: ISR {self.isr} is smaller than min.insync.replicas="
                f"{self.min_insync_replicas}")
        dup = self.producer_state.check(headers, client=client)
        if dup is not None:
            # A retried batch: its original offsets (and LogAppendTime stamp), nothing appended.
            result = AppendResult(dup[2], dup[3], self.log.log_start_offset)
            if self.uses_log_append_time:
                result.log_append_time = dup[4]
            return result
        # The request's bytes are ours to patch (the connection's receive buffer).
        # The engine refuses bad batches (CorruptRecordError, InvalidRecordError).
        first, last = self.log.append_batches(data, self.leader_epoch, in_place=_writable(data),
                                              crc_checked=produce_version is not None)
        self._record_producers(headers, first, data)
        if not self.maybe_increment_high_watermark() and self.followers:
            self._wake_fetchers()  # followers long-polling for new data
        result = AppendResult(first, last, self.log.log_start_offset)
        result.log_append_time = log_append_time
        return result

    def _check_rebuilt_sizes(self, headers, end: int):
        """Kafka's re-check after a batch was recompressed: its new size may
        pass max.message.bytes (RecordTooLargeError, nothing appended)."""
        ends = [h[0] for h in headers[1:]] + [end]
        for h, batch_end in zip(headers, ends):
            size = batch_end - h[0]
            if size > self.max_message_bytes:
                raise RecordTooLargeError(
                    f"Message batch size is {size} bytes in append to partition {self._name} which exceeds "
                    f"the maximum configured size of {self.max_message_bytes}.")

    def append_txn_marker(self, producer_id: int, producer_epoch: int, coordinator_epoch: int,
                          commit: bool) -> AppendResult:
        """As leader, write a transaction coordinator's COMMIT or ABORT marker
        for producer_id (WriteTxnMarkers): one control batch, which ends the
        producer's ongoing transaction here, indexes it when aborted and lets
        the LSO pass it once the HW does. Raises NotLeaderOrFollowerError,
        NotEnoughReplicasError, InvalidProducerEpochError,
        TRANSACTION_COORDINATOR_FENCED (nothing appended then)."""
        if not self.is_leader or self._truncation is not None:
            raise NotLeaderOrFollowerError(
                f"broker {self.broker_id} is not the leader of {self._name} (leader: {self.leader_id})")
        if len(self.isr) < self.min_insync_replicas:
            # Markers are appended with acks=all, as Kafka's coordinator asks.
            raise NotEnoughReplicasError(
                f"{self._name}: ISR {self.isr} is smaller than min.insync.replicas={self.min_insync_replicas}")
        self.producer_state.check_marker(producer_id, producer_epoch, coordinator_epoch)
        now = int(time.time() * 1000)
        batch = bytearray(build_end_txn_marker(producer_id, producer_epoch, coordinator_epoch, commit, now))
        if self.uses_log_append_time:
            _engine.stamp_log_append_time(batch, now)  # Kafka's validator stamps markers too
        headers = _engine.batch_headers(batch)
        first, last = self.log.append_batches(batch, self.leader_epoch, in_place=True, allow_control=True)
        self._record_producers(headers, first, batch)
        if not self.maybe_increment_high_watermark() and self.followers:
            self._wake_fetchers()
        result = AppendResult(first, last, self.log.log_start_offset)
        result.log_append_time = now if self.uses_log_append_time else -1
        return result

    def _record_producers(self, headers, first_offset: int, data):
        """Producer state after an append (any role): transactions the markers
        among the batches completed are indexed when aborted (with the LSO of
        that moment, Kafka's rule), then leave the ongoing set."""
        ps = self.producer_state
        for done in ps.update(headers, first_offset, data):
            if done.aborted:
                self.txn_indexes.append(self.log.segment_base_of(done.last_offset), done.producer_id,
                                        done.first_offset, done.last_offset, ps.last_stable_offset_at(done))
            ps.complete_txn(done)

    @staticmethod
    def follower_batches(data):
        """(data, headers) of the whole batches at the start of a fetched
        chunk (the last one may be cut short by the fetch size)."""
        headers = _engine.batch_headers(data) if data else []
        if not headers:
            return data, headers
        last_pos = headers[-1][0]
        if last_pos + _BATCH_HEAD.size <= len(data):
            end = last_pos + 12 + _I32.unpack_from(data, last_pos + 8)[0]
            if end > len(data):  # the last batch is cut short (fetch size)
                headers.pop()
                end = last_pos
        else:
            headers.pop()
            end = last_pos
        return data[:end], headers

    def _new_epochs(self, data, headers):
        latest = self.epoch_cache.latest_epoch()
        out = []
        for h in headers:
            epoch = _I32.unpack_from(data, h[0] + 12)[0]
            if epoch > latest:
                out.append((epoch, h[1]))
                latest = epoch
        return out

    def epochs_if_appended(self, batches):
        """The leader-epoch entries appending batches (follower_batches) as
        follower would leave, when that changes them (None: no new epoch):
        the replica fetcher writes them off the loop first (write_file,
        note_written), so append_as_follower writes nothing on the loop."""
        data, headers = batches
        new = self._new_epochs(data, headers)
        return self.epoch_cache.entries_after(new) if new else None

    def append_as_follower(self, data, leader_high_watermark: int, batches=None) -> int:
        """Append the leader's batches as they are (offsets and leader epochs
        kept); whole batches only. The HW becomes min(leader HW, own LEO).
        batches: follower_batches(data), when the caller has them. Returns the
        number of bytes appended."""
        if self._truncation is not None:
            raise NotLeaderOrFollowerError(f"{self._name} is being truncated")
        data, headers = self.follower_batches(data) if batches is None else batches
        n = 0
        if headers:
            new = self._new_epochs(data, headers)
            if new:
                # Written through unless the fetcher wrote it off the loop already.
                self.epoch_cache.assign_all(new)
            self.log.append_batches(data, assign_offsets=False)
            self._record_producers(headers, -1, data)
            n = len(data)
        hw = min(leader_high_watermark, self.log.log_end_offset)
        if hw > self.high_watermark:
            self.high_watermark = hw
            # Consumers long-polling on this follower (KIP-392) can read more.
            self._wake_fetchers()
        return n

    # ---- truncation (a follower's divergent tail, KIP-101/279) ----

    @property
    def truncating(self) -> bool:
        """A truncation's file work is running off the loop (see the module
        docstring: nothing appends to, reads or snapshots this replica then)."""
        return self._truncation is not None

    def truncate_to(self, offset: int):
        """Drop every record at or after offset (a follower's divergent tail).
        The epoch cache is cut even when the log is already that short: an
        epoch assigned as leader with no data under it must go (KIP-279).
        Every step on the calling thread: for an owner that may wait on the
        disk (the embedded store, tools); the broker's loop uses truncate."""
        job = self._begin_truncation(offset)
        try:
            self._truncate_files(job)
        except BaseException:
            self._truncation_failed(job)
            raise
        self._end_truncation(job)

    async def truncate(self, offset: int, executor) -> None:
        """truncate_to for the broker's loop: the file work runs on executor
        (the LogManager's file thread) while this replica is truncating. Its
        end is applied on the loop even when the caller is cancelled."""
        await self.truncation_done()
        job = self._begin_truncation(offset)
        if job[1] is None and job[0] >= self.log.log_end_offset:
            return  # no file to touch (the usual case on becoming follower)
        self._truncation = task = asyncio.ensure_future(self._run_truncation(job, executor))
        await asyncio.shield(task)

    async def truncation_done(self) -> None:
        """Wait for a truncation in flight (the one that failed included)."""
        while self._truncation is not None:
            try:
                await asyncio.shield(self._truncation)
            except Exception:  # noqa: BLE001 -- its own caller reports it
                pass

    async def _run_truncation(self, job, executor):
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._truncate_files, job)
        except BaseException:
            self._truncation_failed(job)
            raise
        else:
            self._end_truncation(job)
        finally:
            self._truncation = None
            self._wake_fetchers()  # consumers long-polling on this follower

    def _begin_truncation(self, offset: int):
        # On the owner: the in-memory cut. The HW comes down first, so nothing
        # past the cut is handed out meanwhile.
        offset = max(min(offset, self.log.log_end_offset), self.log.log_start_offset)
        self.epoch_cache.truncate_from_end(offset)
        if self.high_watermark > offset:
            self.high_watermark = offset
        return offset, self.epoch_cache.take_unwritten()

    def _truncate_files(self, job):
        # Off the loop while truncating (or on the owner in truncate_to): the
        # epoch file first (as before the split), then the log and what is
        # derived from it. The new producer state replaces the old in one store.
        offset, epochs = job
        if epochs is not None:
            LeaderEpochCache.write_file(self.epoch_cache.path, epochs)
        if offset < self.log.log_end_offset:
            with self.cleaner_pause(self.topic, self.index):  # Kafka's truncateTo pauses the cleaner
                self.log.truncate_to(offset)
            self.txn_indexes.truncate_to(offset)
            state = ProducerStateManager(self.path, self.producer_state.expiration_ms)
            state.load(self.log, self.txn_indexes)
            self.producer_state = state

    def _end_truncation(self, job):
        if job[1] is not None:
            self.epoch_cache.note_written(job[1])

    def _truncation_failed(self, job):
        if job[1] is not None:
            self.epoch_cache.mark_dirty()

    # ---- listeners: where waiting requests may complete (broker/purgatory.py) ----

    def _wake_fetchers(self):
        """The log end offset (or a follower's high watermark) moved."""
        if self.purgatory is not None:
            self.purgatory.check_and_complete(self, LOG_END)

    def _wake_producers(self):
        """The high watermark moved, or what decides a wait on it changed
        (ISR, leadership, closing)."""
        if self.purgatory is not None:
            self.purgatory.check_and_complete(self, HIGH_WATERMARK)

    def produce_outcome(self, required_offset: int):
        """For an acks=all produce waiting on offsets up to required_offset:
        None while it must wait, else the error code to answer (0: committed)."""
        if not self.is_leader:
            return NotLeaderOrFollowerError.error_code
        if self.high_watermark > required_offset:
            # Kafka's checkEnoughReplicasReachOffset: committed, but with too
            # small an ISR the producer is told (the data stays).
            return 0 if len(self.isr) >= self.min_insync_replicas else Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return None

    # ---- reads ----

    def read(self, offset: int, max_bytes: int, committed: bool = False):
        """Whole batches from the one holding offset, below the high watermark
        (below the last stable offset when committed: isolation_level
        READ_COMMITTED): a FetchSlice (at least one batch, even above
        max_bytes: KIP-74), or None when offset is that bound.
        OffsetOutOfRangeError otherwise."""
        if self._truncation is not None:
            return None  # nothing to hand out until the cut is done
        if committed:
            lso = self.last_stable_offset
            if lso < self.high_watermark and self.log.log_start_offset <= offset <= self.high_watermark:
                if offset >= lso:
                    return None  # Kafka's empty read at or past its max offset
                return self._cut_at(self.log.read_batches(offset, max(max_bytes, 1)), lso)
        if offset == self.high_watermark and offset >= self.log.log_start_offset:
            return None
        if offset > self.high_watermark:
            if offset <= self.log.log_end_offset:
                # Stored but not yet committed (a new leader's high watermark
                # lags the old one's until its followers fetch): nothing to
                # read yet, as Kafka answers -- not out of range, which would
                # make a consumer reset its position.
                return None
            raise OffsetOutOfRangeError(
                f"offset {offset} is above the log end offset {self.log.log_end_offset} of "
                f"{self.topic}-{self.index}")
        data = self.log.read_batches(offset, max(max_bytes, 1))
        if self.high_watermark < self.log.log_end_offset:
            data = self._cut_at(data, self.high_watermark)
        return data

    def _cut_at(self, data, bound: int):
        """data without its batches at or above bound (the HW, or the LSO for
        read_committed: both fall on batch boundaries). The log reads whole
        batches from the fetch offset up to max_bytes, whatever they hold;
        Kafka bounds a consumer's read by the HW's position in the log, so
        records not yet on every ISR replica (an acks=1 append on a leader, the
        uncommitted tail a follower already copied) are never handed out."""
        if data is None:
            return None
        held = data.segment.find_batch(bound)
        if held is None:
            return data  # the HW is past this segment: all of it is committed
        cut = held[0] - data.position
        if cut >= len(data):
            return data
        if cut <= 0:
            return None  # the first batch reaches the HW: nothing is readable yet
        return data.segment.slice(data.position, cut)

    def aborted_transactions(self, fetch_offset: int) -> list:
        """(producer_id, first_offset) of the aborted transactions a
        read_committed consumer reading from fetch_offset must drop (Kafka's
        collectAbortedTransactions). The upper bound is the LSO rather than the
        end of the data returned: a larger bound only adds entries past the
        data, which consumers never match."""
        if not self.txn_indexes:
            return []
        return [(e.producer_id, e.first_offset)
                for e in self.txn_indexes.collect(fetch_offset, self.last_stable_offset)]

    @property
    def high_watermark_known(self) -> bool:
        """False while this leader's high watermark is still below the start of
        its own leader epoch: until a follower fetches from it, it cannot tell
        how far the previous leader had committed (KIP-207: ListOffsets then
        answers OFFSET_NOT_AVAILABLE instead of a high watermark that went back)."""
        entry = self.epoch_cache.latest_entry()
        return entry is None or self.high_watermark >= entry[1]

    def read_for_replica(self, offset: int, max_bytes: int):
        """As read, but up to the log end offset (what followers replicate)."""
        leo = self.log.log_end_offset
        if offset == leo and offset >= self.log.log_start_offset:
            return None
        if offset > leo:
            raise OffsetOutOfRangeError(
                f"offset {offset} is above the log end offset {leo} of {self.topic}-{self.index}")
        return self.log.read_batches(offset, max(max_bytes, 1))

    def preferred_read_replica(self, fetch_offset: int, client_rack: str, leader_rack, rack_of,
                               now_ms: int | None = None) -> int:
        """As leader, the replica a consumer in client_rack should fetch
        fetch_offset from: Kafka's RackAwareReplicaSelector over the replicas
        ReplicaManager.findPreferredReadReplica offers it. -1 means this leader.

        Candidates are the followers in the ISR whose last fetch showed they
        hold fetch_offset (log_start_offset <= it <= log_end_offset) and that
        rack_of(id) knows (a live broker: rack_of returns (True, rack)).
        Out-of-sync followers are left out because a consumer sent there could
        trail the log indefinitely. Among the candidates in the client's rack
        the leader wins when it is one of them; otherwise the most caught up
        (largest log_end_offset, then the most recent catch-up; the lowest id
        when even that ties, where Kafka's pick is arbitrary)."""
        if not client_rack or not self.is_leader:
            return -1
        if leader_rack == client_rack:
            return -1
        now_ms = _now_ms() if now_ms is None else now_ms
        best = None
        for rid in self.isr:
            if rid == self.broker_id:
                continue
            st = self.followers.get(rid)
            if st is None or not (st.log_start_offset <= fetch_offset <= st.log_end_offset):
                continue
            live, rack = rack_of(rid)
            if not live or rack != client_rack:
                continue
            key = (st.log_end_offset, -(now_ms - st.last_caught_up_time_ms), -rid)
            if best is None or key > best[0]:
                best = (key, rid)
        return -1 if best is None else best[1]

    # ---- ListOffsets: the one body, for the broker's handler and the embedded
    # store (Kafka's Partition.fetchOffsetForTimestamp) ----

    def list_offset_now(self, timestamp: int, committed: bool = False) -> tuple[int, int] | None:
        """ListOffsets' (offset, timestamp) for the latest (-1) or earliest (-2)
        offset, or None when timestamp asks for a lookup by time, which may
        inflate a compressed batch: the caller runs list_offset_by_time where
        the disk may be waited on (a worker thread, never the event loop).
        committed: isolation_level READ_COMMITTED (latest is then the last
        stable offset). Raises NotLeaderOrFollowerError, OffsetNotAvailableError
        (KIP-207), InvalidRequestError for another negative timestamp.
        Called by the partition's owner (the broker's loop, or the embedded
        store under its partition lock)."""
        if not self.is_leader:
            raise NotLeaderOrFollowerError(f"this broker is not the leader of {self._name}")
        if timestamp != -2 and not self.high_watermark_known:
            raise OffsetNotAvailableError(f"{self._name}: the new leader's high watermark is not known yet")
        if timestamp == -1:
            return (self.last_stable_offset if committed else self.high_watermark), -1
        if timestamp == -2:
            return self.log_start_offset, -1
        if timestamp < 0:
            raise InvalidRequestError(f"timestamp {timestamp} is not supported")
        return None

    def list_offset_by_time(self, timestamp: int, bound: int | None = None) -> tuple[int, int]:
        """ListOffsets by timestamp: (offset, timestamp) of the first record at
        or after the log start, below the high watermark (below bound when
        given: the last stable offset for READ_COMMITTED, read by the caller
        on the partition's owner thread, as Kafka's lastFetchableOffset),
        whose timestamp is >= timestamp; (-1, -1) when none is. Reads the disk
        (takes the Log's own lock): any thread but the event loop."""
        found = self.log.offset_and_timestamp_for_time(timestamp, self.max_inflated_bytes)
        if found is None or found[0] >= (self.high_watermark if bound is None else bound):
            return -1, -1
        return found

    def delete_records(self, offset: int) -> int:
        """Advance log_start_offset to offset (-1: the high watermark) and
        delete the segments below it; the new low watermark. Every step on
        the caller (an owner that may wait on the disk); the broker's loop
        calls advance_log_start_offset, then runs
        log.delete_segments_below_log_start on its file thread."""
        low = self.advance_log_start_offset(offset)
        self.log.delete_segments_below_log_start()
        return low

    def advance_log_start_offset(self, offset: int) -> int:
        """DeleteRecords' in-memory half (no file touched with the data dir's
        checkpoints): log_start_offset moves to offset (-1: the high
        watermark); the new low watermark."""
        if offset == -1:
            offset = self.high_watermark
        if offset > self.high_watermark:
            raise OffsetOutOfRangeError(
                f"cannot delete records below {offset}: above the high watermark {self.high_watermark}")
        return self.log.advance_log_start_offset(offset)

    # ---- upkeep ----

    def _set_config(self, config):
        self.config = config  # TopicConfig
        # Read on every append: parsed once here, not per request.
        self.max_message_bytes = config.get("max.message.bytes")
        self.min_insync_replicas = config.get("min.insync.replicas")
        self.timestamp_before_max_ms = config.get("message.timestamp.before.max.ms")
        self.timestamp_after_max_ms = config.get("message.timestamp.after.max.ms")
        self.compacted = "compact" in config.get("cleanup.policy")
        self.uses_log_append_time = config.get("message.timestamp.type") == "LogAppendTime"
        self.target_codec = target_codec(config.get("compression.type"))
        # Never below max.message.bytes: a batch accepted uncompressed is
        # accepted compressed (config.py explains the default).
        broker = getattr(config, "broker", None)
        key = "pylog.message.max.decompressed.bytes"
        bound = broker.get(key) if broker is not None else BROKER_DEFAULTS[key][1]
        self.max_inflated_bytes = max(bound, self.max_message_bytes)
        self._name = f"{self.topic}-{self.index}"

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

    def close(self):
        # Waiting fetches and produces wake up and find the partition gone
        # (an error answer), rather than being cancelled under their connection.
        self.leader_id = -1 if self.controller_managed else self.leader_id
        self._wake_fetchers()
        self._wake_producers()
        try:
            self.producer_state.take_snapshot(self.log.log_end_offset, force=True)
            self.checkpoint_high_watermark()
            self.epoch_cache.flush()
        finally:
            self.log.close()


__all__ = ["AppendResult", "Partition", "ReplicaState"]

_I32 = struct.Struct(">i")
_BATCH_HEAD = struct.Struct(">qii")  # base_offset, batch_length, partition_leader_epoch


def _no_cleaner_pause(topic, index):
    return contextlib.nullcontext()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _writable(data) -> bool:
    return type(data) is memoryview and not data.readonly or type(data) is bytearray
