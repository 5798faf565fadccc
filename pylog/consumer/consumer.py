"""pylog's Consumer: positions, buffers, commits and group membership over a FetchSource.

    with Consumer("orders", bootstrap_servers="127.0.0.1:9092", group_id="billing") as c:
        for record in c:
            handle(record)

One API, two places records live: a cluster (bootstrap_servers=...,
NetworkSource + GroupMembership) or a broker's log directory read directly
(log_dir=..., EmbeddedSource + LocalMembership). This module holds what is
common: where each partition is (position), which fetched records have not
been returned yet (a per-partition buffer, so max_records never costs a
re-fetch), commits (sync, async, auto) and the rebalance callbacks.

Semantics follow Kafka's Java consumer:
- position(tp) is the offset of the next record poll() returns for tp;
  commit() with no argument commits every assigned partition's position.
- Auto commit (enable_auto_commit) runs inside poll() every
  auto_commit_interval_ms and commits the positions reached by the records
  of earlier polls (at-least-once) without waiting for the answer (a later
  poll takes it; failures are logged), and synchronously before partitions
  are revoked and on close(), after the auto commits still in flight.
  group_protocol "consumer" sends no auto commit while one is unanswered, as
  Java's CommitRequestManager; "classic" sends regardless, as its
  ConsumerCoordinator.
- Asynchronous commits run in order; each one's callback(err, offsets) is
  called from a later poll(), commit() or close(); a synchronous commit
  first completes every asynchronous one issued before it.
- Rebalance callbacks on_assign / on_revoke / on_lost are called as
  callback(consumer, partitions) from inside poll() (or close() /
  unsubscribe()), on the polling thread; on_lost defaults to on_revoke, as
  Java's onPartitionsLost does.
- metrics_registry: a prometheus_client registry that gets Kafka's
  consumer-fetch-manager-metrics (records-lag-max, fetch rate and latency,
  records and bytes consumed; pylog/metrics/clients.py), per fetch and per poll.
"""
from __future__ import annotations

import bisect
import collections
import logging
import re
import time
from typing import NamedTuple

from .. import _engine
from ..errors import (
    CommitFailedError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    PylogError,
)
from ..metrics.clients import ConsumerMetrics
from ..protocol.error_codes import Errors
from ..structs import OffsetAndMetadata, TopicPartition

__all__ = ["CommitFailedError", "Consumer", "ConsumerRecord", "NoOffsetForPartitionError",
           "OffsetAndTimestamp"]

log = logging.getLogger("pylog.consumer")

EARLIEST, LATEST = -2, -1
_ISOLATION_LEVELS = {"read_uncommitted": 0, "read_committed": 1}
# How often a pattern subscription looks for new matching topics (Java's
# metadata.max.age.ms is 5 minutes; tests and users expect sooner).
PATTERN_REFRESH_S = 5.0
RETRY_BACKOFF_S = 0.1


class OffsetAndTimestamp(NamedTuple):
    """offsets_for_times(): the first offset whose timestamp is >= the one
    asked, and that record's timestamp."""

    offset: int
    timestamp: int


# poll()'s records are _engine.ConsumerRecord objects made by the native
# decoder (values are zero-copy views of the fetch response).
ConsumerRecord = _engine.ConsumerRecord
_decode_fetched = _engine.decode_fetched
_batch_headers = _engine.batch_headers
_MAX_OFFSET = (1 << 63) - 1


class _Buffer:
    """One fetch's batches whose records poll() has not returned yet, decoded
    a few whole batches at a time (_drain takes()): as many as the poll asks
    for, and never a batch twice. So a fetch of many records never has them
    all alive at once (decoding whole fetches cost the embedded consumer half
    its CPU in page faults: the allocator handed each fetch's records' memory
    back to the OS and took it again for the next), and a small max_records
    costs no decoding again.

    A read_committed fetch with aborted transactions is decoded whole, as
    before: its filtering replays the batches from the first (decode_fetched).

    Invariants: records[index:] are decoded and not returned, all at or above
    the partition's position; batches from starts[next_batch] on are not
    decoded; next_offset is where the decoded batches end.
    Thread-safety: the consumer's thread only, as the Consumer.
    """

    __slots__ = ("aborted", "data", "index", "lasts", "next_batch", "next_offset", "records", "starts")

    def __init__(self, data, aborted, offset):
        self.data = data
        self.aborted = aborted
        self.records = ()
        self.index = 0
        self.next_batch = 0
        self.next_offset = offset
        headers = () if aborted else _batch_headers(data)
        if len(headers) > 1:
            self.starts = [h[0] for h in headers]
            self.lasts = [h[1] + h[2] for h in headers]
        else:
            self.starts, self.lasts = [0], [_MAX_OFFSET]   # one chunk: the whole fetch

    def take(self, tp, position, want, check_crcs, out):
        """Up to want records from position on, appended to out (or out
        itself when it was empty and a whole decoded chunk is returned); (out,
        new position, whether this fetch is used up)."""
        while True:
            records, index = self.records, self.index
            if index < len(records):
                end = min(len(records), index + want)
                if index == 0 and end == len(records) and not out:
                    out = records   # the common case: a whole chunk, no copy
                else:
                    out.extend(records[index:end])
                self.index = end
                want -= end - index
                position = records[end - 1].offset + 1
            if self.index >= len(self.records):
                if self.next_batch >= len(self.starts):
                    return out, max(position, self.next_offset), True
                if want <= 0:
                    return out, position, False
                self._decode(tp, position, want, check_crcs)
            elif want <= 0:
                return out, position, False

    def _decode(self, tp, position, want, check_crcs):
        # The next batches, through the one holding position + want - 1 (or
        # the last), from the position on.
        starts, lasts = self.starts, self.lasts
        i = self.next_batch
        j = min(bisect.bisect_left(lasts, position + want - 1, i), len(lasts) - 1)
        data = self.data
        if i > 0 or j + 1 < len(starts):
            data = memoryview(data)[starts[i]:starts[j + 1] if j + 1 < len(starts) else len(data)]
        # read_committed: the broker cut at the LSO; aborted records and
        # markers are dropped per batch in C.
        self.records, next_offset = _decode_fetched(data, tp.topic, tp.partition, position, check_crcs, -1,
                                                    self.aborted)
        self.index = 0
        self.next_batch = j + 1
        self.next_offset = max(self.next_offset, next_offset)


def _fetch_figures(asked, fetched):
    """(lags, record bytes) of a fetch answer, for the consumer's metrics:
    each partition's high watermark minus the position it was fetched at."""
    lags = [p.high_watermark - asked[tp] for tp, p in fetched.items()
            if p.error is None and tp in asked and p.high_watermark >= 0]
    return lags, sum(len(p.records) for p in fetched.values() if p.records)


class _Listener:
    """What the membership calls back; forwards to the Consumer."""

    def __init__(self, consumer):
        self._consumer = consumer

    def on_assign(self, partitions):
        self._consumer._partitions_assigned(partitions)

    def on_revoke(self, partitions):
        self._consumer._partitions_revoked(partitions)

    def on_lost(self, partitions):
        self._consumer._partitions_lost(partitions)


class Consumer:
    """A Kafka consumer over the network or a local log directory (module doc).

    read_only (log_dir only): read a directory another process writes,
    without its lock (pylog/embedded/reader.py); offsets are not committed
    and committed ones are not read (positions start from auto_offset_reset).

    Invariants: the keys of _positions are exactly the current assignment
    (value None until a start offset is known); a partition has a buffer only
    while its fetched batches may hold records not yet returned (the last
    poll that finds none drops it), and those start at its position;
    paused partitions are neither fetched nor returned.
    Thread-safety: none. One thread uses a Consumer (as Java's); only the
    group heartbeat thread runs beside it, inside GroupMembership.
    """

    def __init__(self, *topics, bootstrap_servers=None, log_dir=None, group_id=None, client_id="pylog",
                 auto_offset_reset="latest", enable_auto_commit=True, auto_commit_interval_ms=5000,
                 fetch_min_bytes=1, fetch_max_wait_ms=500, fetch_max_bytes=52428800,
                 max_partition_fetch_bytes=1048576, max_poll_records=500,
                 isolation_level="read_uncommitted", check_crcs=True, session_timeout_ms=45000,
                 heartbeat_interval_ms=3000, max_poll_interval_ms=300000,
                 partition_assignment_strategy=("range",), group_instance_id=None,
                 request_timeout_ms=30000, on_assign=None, on_revoke=None, on_lost=None,
                 client_rack=None, read_only=False, group_protocol="classic", group_remote_assignor=None,
                 metrics_registry=None, ssl_context=None, sasl=None):
        # ssl_context (SSL, SASL_SSL) and sasl (SASL_*): from Kafka's client
        # keys with pylog.client.security.security_settings.
        if (bootstrap_servers is None) == (log_dir is None):
            raise ValueError("give exactly one of bootstrap_servers and log_dir")
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError(f"auto_offset_reset must be earliest, latest or none, not {auto_offset_reset!r}")
        if isolation_level not in _ISOLATION_LEVELS:
            raise ValueError(f"isolation_level must be read_uncommitted or read_committed, "
                             f"not {isolation_level!r}")
        if max_poll_records < 1:
            raise ValueError("max_poll_records must be at least 1")
        # Java's group.protocol: classic (its default) or consumer (KIP-848, the broker assigns).
        if group_protocol not in ("classic", "consumer"):
            raise ValueError(f"group_protocol must be classic or consumer, not {group_protocol!r}")
        if group_protocol == "consumer" and read_only:
            raise ValueError("group_protocol='consumer' with read_only: a reader of another process's "
                             "directory is no member of its groups")
        if group_remote_assignor is not None and group_protocol != "consumer":
            raise ValueError("group_remote_assignor is for group_protocol='consumer'")
        self.group_protocol = group_protocol
        if isinstance(partition_assignment_strategy, str):
            partition_assignment_strategy = [s.strip() for s in partition_assignment_strategy.split(",")]
        self.group_id = group_id
        self.client_id = client_id
        self.auto_offset_reset = auto_offset_reset
        # Kafka's consumer-fetch-manager-metrics in this prometheus_client registry (pylog/metrics/clients.py).
        self._metrics_registry = metrics_registry
        self._metrics = None if metrics_registry is None else ConsumerMetrics(client_id, metrics_registry)
        if read_only and log_dir is None:
            raise ValueError("read_only is for log_dir (a directory another process writes)")
        # A read-only consumer stores nothing, committed offsets included.
        self.enable_auto_commit = bool(enable_auto_commit) and group_id is not None and not read_only
        self.auto_commit_interval = auto_commit_interval_ms / 1000
        self.max_poll_records = max_poll_records
        self.check_crcs = check_crcs
        self.isolation_level = _ISOLATION_LEVELS[isolation_level]
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._fetch_args = {"min_bytes": fetch_min_bytes, "max_bytes": fetch_max_bytes,
                            "max_partition_bytes": max_partition_fetch_bytes,
                            "isolation_level": self.isolation_level}
        self._group_args = {"session_timeout_ms": session_timeout_ms,
                            "rebalance_timeout_ms": max_poll_interval_ms,
                            "heartbeat_interval_ms": heartbeat_interval_ms,
                            "group_instance_id": group_instance_id, "client_id": client_id,
                            "request_timeout_ms": request_timeout_ms}
        self._strategies = list(partition_assignment_strategy)
        self._consumer_protocol_args = {"remote_assignor": group_remote_assignor, "client_rack": client_rack}
        self._callbacks = (on_assign, on_revoke, on_lost)
        self._embedded = log_dir is not None
        if self._embedded:
            from .embedded_source import EmbeddedSource
            # read_committed asks for stable offsets (KIP-447), as Kafka's consumer does.
            self._source = EmbeddedSource(log_dir, read_only=read_only,
                                          require_stable=self.isolation_level == 1)
        else:
            from .network_source import NetworkSource
            # client_rack: Java's client.rack; with it, leaders configured for
            # it (KIP-392) send this consumer to a replica in its rack.
            # read_committed asks for stable offsets (OffsetFetch
            # require_stable), as Java's consumer does: an offset an open
            # transaction is committing is waited for, not read as it was.
            self._source = NetworkSource(bootstrap_servers, client_id=client_id,
                                         request_timeout_ms=request_timeout_ms, client_rack=client_rack,
                                         require_stable=self.isolation_level == 1,
                                         ssl_context=ssl_context, sasl=sasl)
        self._membership = None
        self._subscription: set[str] | None = None
        self._pattern: re.Pattern | None = None
        self._pattern_checked = 0.0
        self._manual = False
        self._positions: dict[TopicPartition, int | None] = {}
        self._reset_needed: set[TopicPartition] = set()  # position None: reset, no committed lookup
        self._buffers: dict[TopicPartition, _Buffer] = {}
        self._paused: set[TopicPartition] = set()
        self._retry_at: dict[TopicPartition, float] = {}
        self._drain_start = 0
        self._async_commits: collections.deque = collections.deque()
        self._next_auto_commit = time.monotonic() + self.auto_commit_interval
        self._auto_commits_in_flight = 0   # sent with send_commit, outcome not taken yet
        self._closing = False
        self._closed = False
        if topics:
            self.subscribe(list(topics))

    def __repr__(self):
        where = "closed" if self._closed else f"{len(self._positions)} partition(s)"
        return f"<Consumer {self.client_id} group={self.group_id!r} {where}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        while not self._closed:
            yield from self.poll(1.0)

    # --- subscription and assignment ------------------------------------------

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None) -> None:
        """Join the group with these topics (a list, one name, or a regex
        pattern string starting with "^"); replaces any earlier subscription."""
        self._check_open()
        if self._manual:
            raise RuntimeError("subscribe() after assign(): call unsubscribe() first")
        if self.group_id is None:
            raise ValueError("subscribe() needs a group_id (use assign() without one)")
        if on_assign or on_revoke or on_lost:
            self._callbacks = (on_assign, on_revoke, on_lost)
        if isinstance(topics, str) and topics.startswith("^"):
            self._pattern = re.compile(topics)
            self._pattern_checked = 0.0
            self._subscription = set()
        else:
            topics = [topics] if isinstance(topics, str) else list(topics)
            if not topics:
                self.unsubscribe()
                return
            self._pattern = None
            self._subscription = set(topics)
        membership = self._ensure_membership()
        membership.subscribe(self._subscription)

    def _ensure_membership(self):
        if self._membership is None:
            from .assignors import get_assignor
            assignors = [get_assignor(name) for name in self._strategies]
            extra = {}
            if self.group_protocol == "consumer":
                from .consumer_membership import ConsumerProtocolMembership as membership_cls
                extra = dict(self._consumer_protocol_args)
                if self._embedded:   # a member of the store's own coordinator, in-process
                    extra["local_store"] = self._source.store
            elif self._embedded:
                from .embedded_source import LocalMembership as membership_cls
            else:
                from .membership import GroupMembership as membership_cls
            self._membership = membership_cls(self.group_id, listener=_Listener(self),
                                              assignors=assignors, source=self._source,
                                              **self._group_args, **extra)
        return self._membership

    def subscription(self) -> set[str]:
        return set(self._subscription or ())

    def unsubscribe(self) -> None:
        """Leave the group (revoking the assignment) or drop the manual
        assignment."""
        self._check_open()
        if self._membership is not None:
            membership, self._membership = self._membership, None
            membership.close(leave=True)
        self._subscription = None
        self._pattern = None
        self._manual = False
        self._forget(list(self._positions))

    def assign(self, partitions) -> None:
        """Read exactly these partitions, without group membership (commits
        still go to group_id, if given, with generation -1)."""
        self._check_open()
        if self._subscription is not None:
            raise RuntimeError("assign() after subscribe(): call unsubscribe() first")
        partitions = {TopicPartition(*tp) for tp in partitions}
        self._forget([tp for tp in self._positions if tp not in partitions])
        for tp in partitions:
            self._positions.setdefault(tp, None)
        self._manual = bool(partitions)

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def _forget(self, partitions) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)
            self._buffers.pop(tp, None)
            self._paused.discard(tp)
            self._reset_needed.discard(tp)
            self._retry_at.pop(tp, None)

    def _partitions_assigned(self, partitions) -> None:
        for tp in partitions:
            self._positions.setdefault(tp, None)
        if self._callbacks[0] is not None:
            self._callbacks[0](self, list(partitions))

    def _partitions_revoked(self, partitions) -> None:
        if self.enable_auto_commit and not self._closing:
            # Synchronous, after the auto commits in flight (_commit_now), and
            # of every position as Java's (subscriptions.allConsumed() in
            # onJoinPrepare and in maybeAutoCommitSyncBeforeRevocation).
            offsets = {tp: OffsetAndMetadata(p) for tp, p in self._positions.items() if p is not None}
            try:
                self._commit_now(offsets)
            except PylogError as e:
                log.warning("auto commit before revoking %d partition(s) failed: %s", len(partitions), e)
            self._auto_commit_outcomes()
        if self._callbacks[1] is not None:
            self._callbacks[1](self, list(partitions))
        self._forget(partitions)

    def _partitions_lost(self, partitions) -> None:
        callback = self._callbacks[2] or self._callbacks[1]
        if callback is not None:
            callback(self, list(partitions))
        self._forget(partitions)

    # --- poll -----------------------------------------------------------------

    def poll(self, timeout: float = 1.0, max_records: int | None = None) -> list:
        """Up to max_records (default max_poll_records) records, waiting up to
        timeout seconds for some; [] when none came in time."""
        self._check_open()
        max_records = max_records or self.max_poll_records
        deadline = time.monotonic() + max(0.0, timeout)
        self._complete_async_commits()
        if self._membership is not None:
            self._membership.note_poll()
        while True:
            if self._membership is not None:
                self._refresh_pattern()
                self._membership.ensure_active(max(0.0, deadline - time.monotonic()))
            self._maybe_auto_commit()
            self._update_positions(deadline=deadline)
            out = self._drain(max_records)
            if out:
                self._prefetch()
                return out
            remaining = deadline - time.monotonic()
            positions = self._fetchable()
            if positions:
                wait_ms = int(max(0.0, min(self._fetch_max_wait_ms, remaining * 1000)))
                t0 = time.monotonic()
                fetched = self._source.fetch(positions, max_wait_ms=wait_ms, **self._fetch_args)
                if self._metrics is not None:
                    self._metrics.fetched((time.monotonic() - t0) * 1000, *_fetch_figures(positions, fetched))
                self._apply(positions, fetched)
                out = self._drain(max_records)
                if out:
                    self._prefetch()
                    return out
            elif remaining > 0:
                # Nothing to fetch (no assignment yet, all paused or backing
                # off): look again soon rather than spin.
                time.sleep(min(remaining, RETRY_BACKOFF_S))
            if time.monotonic() >= deadline:
                return []

    def _fetchable(self) -> dict[TopicPartition, int]:
        now = time.monotonic()
        out = {}
        for tp, pos in self._positions.items():
            if pos is None or tp in self._buffers or tp in self._paused:
                continue
            retry = self._retry_at.get(tp)
            if retry is not None:
                if now < retry:
                    continue
                del self._retry_at[tp]
            out[tp] = pos
        return out

    def _prefetch(self) -> None:
        # Pipelining: ask now for the partitions whose records are all
        # returned, so the broker reads while the caller works.
        prefetch = getattr(self._source, "prefetch", None)
        if prefetch is None:
            return
        positions = self._fetchable()
        if positions:
            prefetch(positions, max_wait_ms=self._fetch_max_wait_ms, **self._fetch_args)

    def _apply(self, asked: dict[TopicPartition, int], fetched) -> None:
        for tp, part in fetched.items():
            offset = asked.get(tp)
            if offset is None or self._positions.get(tp) != offset or tp in self._buffers:
                continue
            if part.error is not None:
                self._fetch_error(tp, offset, part.error)
                continue
            if not part.records:
                continue
            # Decoded by _drain, as poll() asks for records.
            self._buffers[tp] = _Buffer(part.records, part.aborted_transactions, offset)

    def _fetch_error(self, tp: TopicPartition, offset: int, error: BaseException) -> None:
        code = getattr(error, "error_code", None)
        if code == OffsetOutOfRangeError.error_code:
            if self.auto_offset_reset == "none":
                raise error
            log.info("offset %d of %s-%d is out of range; resetting to %s",
                     offset, tp.topic, tp.partition, self.auto_offset_reset)
            self._positions[tp] = None
            self._reset_needed.add(tp)
        elif getattr(error, "retriable", False):
            self._retry_at[tp] = time.monotonic() + RETRY_BACKOFF_S
        else:
            raise error

    def _drain(self, max_records: int) -> list:
        if not self._buffers:
            return []
        out: list = []
        tps = list(self._buffers)
        # Start at a different partition each time so that a small
        # max_records does not starve the later ones.
        start = self._drain_start % len(tps)
        self._drain_start += 1
        for tp in tps[start:] + tps[:start]:
            if tp in self._paused:
                continue
            buf = self._buffers[tp]
            out, self._positions[tp], done = buf.take(tp, self._positions[tp], max_records - len(out),
                                                      self.check_crcs, out)
            if done:
                del self._buffers[tp]
            if len(out) >= max_records:
                break
        if self._metrics is not None and out:
            self._metrics.consumed(len(out))
        return out

    # --- positions ------------------------------------------------------------

    def _update_positions(self, only=None, deadline=None) -> None:
        """Positions of the partitions that have none: the group's committed
        offset, else auto_offset_reset. From poll() (deadline given), a
        committed offset an open transaction is still writing
        (UNSTABLE_OFFSET_COMMIT past the deadline) leaves those partitions
        without a position until a later poll, as Java's poll does; from
        position() the error is raised."""
        missing = [tp for tp, pos in self._positions.items()
                   if pos is None and (only is None or tp in only)]
        if not missing:
            return
        committed = {}
        lookup = [tp for tp in missing if tp not in self._reset_needed]
        if self.group_id is not None and lookup:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                committed = self._source.committed_offsets(self.group_id, lookup, timeout=timeout)
            except PylogError as e:
                if deadline is None or getattr(e, "error_code", None) != Errors.UNSTABLE_OFFSET_COMMIT:
                    raise
                missing = [tp for tp in missing if tp not in lookup]
        reset = []
        for tp in missing:
            om = committed.get(tp)
            if om is not None and om.offset >= 0:
                self._positions[tp] = om.offset
            else:
                reset.append(tp)
        if not reset:
            return
        if self.auto_offset_reset == "none":
            raise NoOffsetForPartitionError(
                f"no committed offset for {', '.join(f'{t}-{p}' for t, p in reset)} "
                "and auto_offset_reset is none")
        ts = EARLIEST if self.auto_offset_reset == "earliest" else LATEST
        found = self._source.list_offsets({tp: ts for tp in reset}, self.isolation_level)
        for tp in reset:
            offset = found.get(tp, (-1, -1))[0]
            if offset >= 0:
                self._positions[tp] = offset
                self._reset_needed.discard(tp)

    def _assigned(self, tp) -> TopicPartition:
        tp = TopicPartition(*tp)
        if tp not in self._positions:
            raise RuntimeError(f"{tp.topic}-{tp.partition} is not assigned to this consumer")
        return tp

    def seek(self, partition, offset: int) -> None:
        """Make offset the next one poll() returns for partition."""
        self._check_open()
        tp = self._assigned(partition)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        self._positions[tp] = offset
        self._buffers.pop(tp, None)
        self._reset_needed.discard(tp)
        self._retry_at.pop(tp, None)

    def _seek_to(self, timestamp: int, partitions) -> None:
        self._check_open()
        tps = [self._assigned(tp) for tp in partitions] or list(self._positions)
        found = self._source.list_offsets({tp: timestamp for tp in tps}, self.isolation_level)
        for tp in tps:
            self.seek(tp, found[tp][0])

    def seek_to_beginning(self, *partitions) -> None:
        """Move to each partition's log_start_offset (no argument: every assigned one)."""
        self._seek_to(EARLIEST, partitions)

    def seek_to_end(self, *partitions) -> None:
        """Move to each partition's end (high watermark; last stable offset
        under read_committed); no argument: every assigned one."""
        self._seek_to(LATEST, partitions)

    def position(self, partition) -> int:
        """The offset of the next record poll() returns for partition."""
        self._check_open()
        tp = self._assigned(partition)
        if self._positions[tp] is None:
            self._update_positions({tp})
        return self._positions[tp]

    def pause(self, *partitions) -> None:
        self._check_open()
        self._paused.update(self._assigned(tp) for tp in partitions)

    def resume(self, *partitions) -> None:
        self._check_open()
        self._paused.difference_update(TopicPartition(*tp) for tp in partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    # --- commits --------------------------------------------------------------

    def _check_group(self) -> None:
        if self.group_id is None:
            raise ValueError("committing or reading committed offsets needs a group_id")

    def group_metadata(self):
        """This member's group metadata (group id, generation, member id,
        group instance id) for Producer.send_offsets_to_transaction, as
        Java's Consumer.groupMetadata(): generation -1 and member id "" when
        the consumer holds no generation (manual assignment, not joined,
        embedded mode)."""
        self._check_open()
        self._check_group()
        from ..producer.transactions import ConsumerGroupMetadata
        if self._membership is None or self._embedded:
            # Embedded: the local member is not one of the store's group
            # coordinator's members (its commits are standalone, see
            # EmbeddedSource.commit_offsets), so a transaction commits its
            # offsets as a member-less one (generation -1), which the group
            # coordinator accepts for a group with no members.
            generation, member_id = -1, ""
        else:
            generation, member_id = self._membership.generation()
        instance = self._group_args["group_instance_id"]
        return ConsumerGroupMetadata(self.group_id, generation, member_id, instance)

    def committed(self, partitions):
        """The committed OffsetAndMetadata of one partition (None if none),
        or {partition: OffsetAndMetadata | None} for a list of them."""
        self._check_open()
        self._check_group()
        single = isinstance(partitions, tuple) and len(partitions) == 2 and isinstance(partitions[1], int)
        tps = [TopicPartition(*partitions)] if single else [TopicPartition(*tp) for tp in partitions]
        found = self._source.committed_offsets(self.group_id, tps)
        return found.get(tps[0]) if single else {tp: found.get(tp) for tp in tps}

    def commit(self, offsets=None, asynchronous: bool = False, callback=None):
        """Commit offsets ({partition: OffsetAndMetadata or int}; None: the
        position of every assigned partition). Synchronous: returns the
        committed offsets, raises on failure. Asynchronous: returns at once;
        callback(err, offsets) runs during a later poll() / commit() / close()."""
        self._check_open()
        self._check_group()
        if offsets is None:
            offsets = {tp: OffsetAndMetadata(p) for tp, p in self._positions.items() if p is not None}
        else:
            offsets = {TopicPartition(*tp): (om if isinstance(om, OffsetAndMetadata) else OffsetAndMetadata(om))
                       for tp, om in offsets.items()}
        if asynchronous:
            self._async_commits.append((offsets, callback))
            return None
        self._complete_async_commits()
        self._commit_now(offsets)
        if callback is not None:
            callback(None, offsets)
        return offsets

    def _commit_identity(self) -> dict:
        """The member fields an OffsetCommit carries now."""
        generation, member_id = -1, ""
        if self._membership is not None:
            generation, member_id = self._membership.generation()
        # A KIP-848 member's generation is its member epoch (OffsetCommit v9).
        epoch = {"member_epoch": True} if self.group_protocol == "consumer" and self._membership is not None else {}
        return {"generation_id": generation, "member_id": member_id,
                "group_instance_id": self._group_args["group_instance_id"], **epoch}

    def _commit_now(self, offsets) -> None:
        """A synchronous commit; the source answers auto commits sent
        earlier first, so they never land after it."""
        if not offsets:
            return
        self._source.commit_offsets(self.group_id, offsets, **self._commit_identity())

    def _complete_async_commits(self) -> None:
        while self._async_commits:
            offsets, callback = self._async_commits.popleft()
            err = None
            try:
                self._commit_now(offsets)
            except PylogError as e:
                err = e
                if callback is None:
                    log.warning("asynchronous commit failed: %s", e)
            if callback is not None:
                callback(err, offsets)

    def _maybe_auto_commit(self) -> None:
        if not self.enable_auto_commit:
            return
        self._auto_commit_outcomes()
        now = time.monotonic()
        if now < self._next_auto_commit:
            return
        send = getattr(self._source, "send_commit", None)
        if send is not None and self.group_protocol == "consumer" and self._auto_commits_in_flight:
            # Java's CommitRequestManager (AutoCommitState.shouldAutoCommit):
            # the next one waits for the answer, then goes at the next poll.
            # Its classic ConsumerCoordinator sends regardless.
            return
        self._next_auto_commit = now + self.auto_commit_interval
        offsets = {tp: OffsetAndMetadata(p) for tp, p in self._positions.items() if p is not None}
        if not offsets:
            return
        if send is None:   # embedded: a commit is a local write
            try:
                self._commit_now(offsets)
            except PylogError as e:
                log.warning("auto commit of %d partition(s) failed: %s", len(offsets), e)
            return
        # Sent without waiting, as Java's poll does (maybeAutoCommitOffsetsAsync):
        # the answer is taken by a later poll, commit or close.
        send(self.group_id, offsets, **self._commit_identity())
        self._auto_commits_in_flight += 1   # even when sending failed: the failure is an outcome too

    def _auto_commit_outcomes(self, wait: bool = False) -> None:
        """Take the answers to auto commits sent without waiting (all of them
        with wait). A failure is logged, never raised (Java's
        autoCommitOffsetsAsync callback); after a retriable one the next auto
        commit goes after the retry backoff instead of the interval."""
        if not self._auto_commits_in_flight:
            return
        for offsets, err in self._source.completed_commits(wait=wait):
            self._auto_commits_in_flight -= 1
            if err is None:
                log.debug("auto commit of %d partition(s) done", len(offsets))
            elif getattr(err, "retriable", False):
                log.debug("auto commit of %d partition(s) failed (retriable): %s", len(offsets), err)
                self._next_auto_commit = time.monotonic() + RETRY_BACKOFF_S
            else:
                log.warning("auto commit of %d partition(s) failed: %s", len(offsets), err)

    # --- offsets and metadata -------------------------------------------------

    def offsets_for_times(self, timestamps) -> dict:
        """{partition: OffsetAndTimestamp of the first record with timestamp >=
        the one given, or None when there is none}."""
        self._check_open()
        asked = {TopicPartition(*tp): ts for tp, ts in timestamps.items()}
        for tp, ts in asked.items():
            if ts < 0:
                raise ValueError(f"timestamp of {tp.topic}-{tp.partition} must be >= 0, not {ts}")
        found = self._source.list_offsets(asked, self.isolation_level)
        return {tp: (OffsetAndTimestamp(*found[tp]) if found.get(tp, (-1, -1))[0] >= 0 else None)
                for tp in asked}

    def _offsets(self, timestamp: int, partitions) -> dict:
        self._check_open()
        tps = [TopicPartition(*tp) for tp in partitions]
        found = self._source.list_offsets({tp: timestamp for tp in tps}, self.isolation_level)
        return {tp: found[tp][0] for tp in tps}

    def beginning_offsets(self, partitions) -> dict:
        """{partition: log_start_offset}."""
        return self._offsets(EARLIEST, partitions)

    def end_offsets(self, partitions) -> dict:
        """{partition: the offset after the last readable record}."""
        return self._offsets(LATEST, partitions)

    def partitions_for_topic(self, topic: str) -> list[int] | None:
        self._check_open()
        return self._source.partitions_for(topic, refresh=True)

    def topics(self) -> set[str]:
        self._check_open()
        return set(self._source.topics())

    def _refresh_pattern(self) -> None:
        if self._pattern is None:
            return
        now = time.monotonic()
        if now - self._pattern_checked < PATTERN_REFRESH_S:
            return
        self._pattern_checked = now
        self._subscription = {t for t in self._source.topics() if self._pattern.fullmatch(t)}
        self._membership.subscribe(self._subscription)

    # --- lifecycle ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the consumer is closed")

    def close(self, autocommit: bool = True, timeout: float | None = None) -> None:
        """Commit (with auto commit on), finish asynchronous commits, leave the
        group, close connections. A second call does nothing."""
        if self._closed:
            return
        try:
            if autocommit and self.enable_auto_commit:
                try:
                    self._commit_now({tp: OffsetAndMetadata(p) for tp, p in self._positions.items()
                                      if p is not None})
                except PylogError as e:
                    log.warning("auto commit on close failed: %s", e)
            self._complete_async_commits()
            # As Java's close: the auto commits still in flight are waited for.
            self._auto_commit_outcomes(wait=True)
            self._closing = True
            if self._membership is not None:
                self._membership.close(leave=True)
        finally:
            self._closed = True
            self._source.close()
            if self._metrics is not None:
                self._metrics.close(self._metrics_registry)
