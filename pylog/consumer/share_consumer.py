"""pylog's ShareConsumer: a member of a share group (KIP-932, queues on the log).

    with ShareConsumer("jobs", bootstrap_servers="127.0.0.1:9092", group_id="workers") as c:
        for record in c.poll(1.0):          # implicit mode: accepted at the next poll/commit
            handle(record)

    c = ShareConsumer("jobs", bootstrap_servers=..., group_id="workers",
                      share_acknowledgement_mode="explicit")
    for record in c.poll(1.0):
        c.acknowledge(record, RELEASE if busy() else ACCEPT)
    c.commit_sync()

    c.run(handler, max_delivery_count=5)    # push style: return -> ACCEPT, raise -> RELEASE
                                            # (REJECT from the 5th delivery on); c.stop() ends it

Kafka's KafkaShareConsumer is the model (names, modes, errors):
- Records are acquired for this member by ShareFetch from each partition's
  leader, in one share session per leader (epoch 0 opens it, 1, 2, ... after,
  -1 closes it and releases what the member holds). Each record carries its
  delivery_count (1 the first time; a released or timed-out record comes
  back with the next).
- share.acknowledgement.mode implicit (default): the records of a poll are
  ACCEPTed by the next poll() or commit; explicit: acknowledge(record, type)
  each of them (ACCEPT, RELEASE, REJECT) before the next poll(), else
  IllegalStateError; acknowledging a record twice, or one not delivered by
  the last poll, is an IllegalStateError too.
- Prefetch (Kafka's share.acquire.mode=batch_optimized): a poll that finds
  no buffered records sends ShareFetch to each leader (fetch.max.wait.ms,
  fetch.min.bytes, fetch.max.bytes, max.poll.records as its MaxRecords and
  BatchSize); over the network that fetch outlives the poll, so records that
  arrive between polls are acquired for this member and the next poll
  returns them at once. A poll returns up to max.poll.records, completed to
  the end of the log batch it stops in; the rest of an answer waits in the
  buffer (share_fetch_buffer.py), its locks running, and no fetch goes while
  it holds records. One request at a time per leader: commit_*() and close()
  first read the answer of a fetch in flight.
- Acknowledgements ride on the next ShareFetch to the partition's leader
  (poll), or go in a ShareAcknowledge (a poll served from the buffer sends
  them so, read back later; commit_sync waits for the answer, commit_async
  reads it later); acknowledgement_commit_callback(offsets, error) hears
  every outcome, from poll(), commit_*() or close().
- close() sends what was acknowledged and not yet sent, in a ShareAcknowledge
  of epoch -1 that also ends the session: every record still held (the
  last poll's, in implicit mode, as Kafka's close does, and what was
  prefetched and never returned) is released to the group at once. Then it
  leaves the group.
- Client config under Kafka's names, either as keywords (group_id=...) or a
  config mapping ({"group.id": ..., "share.acknowledgement.mode": ...,
  "security.protocol": "SASL_SSL", ...}); the keys ShareConsumerConfig
  refuses for a share group (auto.offset.reset, enable.auto.commit,
  isolation.level, ...) are refused with its message, unknown ones named.

Two places records live, as pylog.Consumer: a cluster (bootstrap_servers)
or a broker data directory in-process (log_dir: the embedded store's own
share-group handlers, so consumers of one process share a group; its calls
answer synchronously, so there a fetch waits no longer than its poll and
nothing is acquired between polls).

Thread-safety: one thread uses a ShareConsumer (as Kafka's), except stop(),
which any thread may call; the heartbeat runs on a thread of its own
(share_membership.py).
"""
from __future__ import annotations

import bisect
import enum
import logging
import threading
import time

from .. import _engine
from ..client.errors import error_for
from ..errors import PylogError
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..structs import TopicPartition
from .share_fetch_buffer import Completed, ShareFetchBuffer
from .share_transport import LocalShareTransport, NetworkShareTransport

__all__ = ["ACCEPT", "AcknowledgeType", "IllegalStateError", "REJECT", "RELEASE", "ShareConsumer"]

log = logging.getLogger("pylog.consumer.share")



class AcknowledgeType(enum.IntEnum):
    """Kafka's AcknowledgeType ids (the wire's AcknowledgeTypes)."""

    ACCEPT = 1    # processed: never delivered again
    RELEASE = 2   # not processed: available to the group again (its delivery count grows)
    REJECT = 3    # unprocessable: never delivered again (archived)


ACCEPT, RELEASE, REJECT = AcknowledgeType.ACCEPT, AcknowledgeType.RELEASE, AcknowledgeType.REJECT
GAP = 0   # an acquired offset with no record (compacted away, a control record)
MAX_EPOCH = (1 << 31) - 1
FINAL_EPOCH = -1
RETRY_BACKOFF_S = 0.1
_SESSION_GONE = frozenset({Errors.SHARE_SESSION_NOT_FOUND, Errors.INVALID_SHARE_SESSION_EPOCH})
_REROUTE = frozenset({Errors.NOT_LEADER_OR_FOLLOWER, Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.FENCED_LEADER_EPOCH,
                      Errors.UNKNOWN_TOPIC_ID, Errors.LEADER_NOT_AVAILABLE})
_decode_fetched = _engine.decode_fetched
_set_delivery_count = _engine.set_delivery_count
_batch_headers = _engine.batch_headers

# What Kafka's ShareConsumerConfig refuses for a share group, with its message.
_REFUSED = ("auto.offset.reset", "enable.auto.commit", "group.instance.id", "isolation.level",
            "partition.assignment.strategy", "interceptor.classes", "session.timeout.ms", "heartbeat.interval.ms",
            "group.protocol", "group.remote.assignor")
# Kafka's consumer keys this client takes (besides the security ones).
_KEYS = ("bootstrap.servers", "group.id", "client.id", "client.rack", "share.acknowledgement.mode",
         "share.acquire.mode", "max.poll.records", "fetch.min.bytes", "fetch.max.bytes", "fetch.max.wait.ms",
         "request.timeout.ms", "retry.backoff.ms", "check.crcs")


class IllegalStateError(RuntimeError):
    """A call the consumer's state does not allow (Kafka's IllegalStateException)."""


class _Delivered:
    """One partition's records of the last poll and their acknowledgement.

    ranges: the acquired (first, last, delivery count), in offset order;
    gaps: acquired offsets with no record (acknowledged as GAP);
    acked: offset -> type of every record acknowledged so far; unsent: the
    (offset, type) not yet handed to a request; waiting: records not acknowledged."""

    __slots__ = ("node", "ranges", "firsts", "gaps", "acked", "unsent", "waiting", "implicit_done")

    def __init__(self, node, ranges, gaps, count):
        self.node = node
        self.ranges = ranges
        self.firsts = [r[0] for r in ranges]
        self.gaps = gaps
        self.acked: dict = {}
        self.unsent: list = []
        self.waiting = count
        self.implicit_done = False

    def holds(self, offset: int) -> bool:
        i = bisect.bisect_right(self.firsts, offset) - 1
        return i >= 0 and offset <= self.ranges[i][1] and offset not in self.gaps


class _Session:
    __slots__ = ("epoch", "parts", "forgotten")

    def __init__(self):
        self.epoch = 0               # the epoch the next request carries
        self.parts: set = set()      # (topic id, index) the broker's session holds
        self.forgotten: set = set()  # to drop from it with the next request


class ShareConsumer:
    """A share-group member over the network or a local data directory (module doc)."""

    ACCEPT, RELEASE, REJECT = ACCEPT, RELEASE, REJECT

    def __init__(self, *topics, config=None, bootstrap_servers=None, log_dir=None, group_id=None,
                 client_id="pylog", client_rack=None, share_acknowledgement_mode="implicit",
                 share_acquire_mode="batch_optimized", max_poll_records=500, fetch_min_bytes=1,
                 fetch_max_bytes=52428800, fetch_max_wait_ms=500, request_timeout_ms=30000, retry_backoff_ms=100,
                 check_crcs=True, acknowledgement_commit_callback=None, ssl_context=None, sasl=None,
                 **refused):
        if refused:
            names = [k.replace("_", ".") for k in refused]
            bad = [n for n in names if n in _REFUSED]
            if bad:
                raise ValueError(f"{', '.join(bad)} cannot be set when using a share group.")
            raise TypeError(f"ShareConsumer got unknown keyword argument(s): {', '.join(sorted(refused))}")
        if config:
            kw = _from_config(config)
            # The mapping's keys win over the defaults, keywords given explicitly still apply.
            bootstrap_servers = kw.pop("bootstrap_servers", bootstrap_servers)
            group_id = kw.pop("group_id", group_id)
            ssl_context = kw.pop("ssl_context", None) or ssl_context
            sasl = kw.pop("sasl", None) or sasl
            client_id = kw.pop("client_id", client_id)
            client_rack = kw.pop("client_rack", client_rack)
            share_acknowledgement_mode = kw.pop("share_acknowledgement_mode", share_acknowledgement_mode)
            share_acquire_mode = kw.pop("share_acquire_mode", share_acquire_mode)
            max_poll_records = int(kw.pop("max_poll_records", max_poll_records))
            fetch_min_bytes = int(kw.pop("fetch_min_bytes", fetch_min_bytes))
            fetch_max_bytes = int(kw.pop("fetch_max_bytes", fetch_max_bytes))
            fetch_max_wait_ms = int(kw.pop("fetch_max_wait_ms", fetch_max_wait_ms))
            request_timeout_ms = int(kw.pop("request_timeout_ms", request_timeout_ms))
            retry_backoff_ms = int(kw.pop("retry_backoff_ms", retry_backoff_ms))
            check_crcs = _bool(kw.pop("check_crcs", check_crcs))
        if (bootstrap_servers is None) == (log_dir is None):
            raise ValueError("give exactly one of bootstrap_servers and log_dir")
        if not group_id:
            raise ValueError("a share consumer needs a group_id (group.id)")
        if log_dir is not None and (ssl_context is not None or sasl is not None):
            raise ValueError("TLS and SASL settings are for bootstrap_servers; an embedded (log_dir) consumer "
                             "has no connection to secure")
        mode = str(share_acknowledgement_mode).lower()
        if mode not in ("implicit", "explicit"):
            raise ValueError(f"share.acknowledgement.mode must be implicit or explicit, not "
                             f"{share_acknowledgement_mode!r}")
        acquire = str(share_acquire_mode).lower()
        if acquire == "record_limit":
            # KIP-1206 needs ShareFetch v2, which pylog's broker does not serve yet.
            raise ValueError("share.acquire.mode=record_limit is not supported by pylog yet (ShareFetch v2); "
                             "use batch_optimized")
        if acquire != "batch_optimized":
            raise ValueError(f"share.acquire.mode must be batch_optimized or record_limit, not {share_acquire_mode!r}")
        if max_poll_records < 1:
            raise ValueError("max.poll.records must be at least 1")
        self.group_id = group_id
        self.client_id = client_id
        self.explicit = mode == "explicit"
        self.max_poll_records = max_poll_records
        self.check_crcs = check_crcs
        self._fetch_min_bytes = fetch_min_bytes
        self._fetch_max_bytes = fetch_max_bytes
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._callback = acknowledgement_commit_callback
        if log_dir is not None:
            self._transport = LocalShareTransport(log_dir)
        else:
            self._transport = NetworkShareTransport(bootstrap_servers, client_id=client_id,
                                                    request_timeout_ms=request_timeout_ms,
                                                    ssl_context=ssl_context, sasl=sasl)
        self._membership_args = dict(client_rack=client_rack, request_timeout_ms=request_timeout_ms,
                                     retry_backoff_ms=retry_backoff_ms)
        self._membership = self._transport.membership(group_id, **self._membership_args)
        self.member_id = self._membership.member_id
        self._subscription: list[str] = []
        self._names: dict = {}                      # topic id -> name
        self._ids: dict = {}                        # name -> topic id
        self._assigned: set = set()                 # (topic id, index)
        self._sessions: dict = {}                   # node -> _Session
        self._delivered: dict = {}                  # (topic id, index) -> _Delivered, of the last poll
        self._pending: dict = {}                    # (topic id, index) -> (node, [(offset, type)]) to send
        self._in_flight: list = []                  # (ticket, node, {key: offsets}) of async commits
        self._outstanding: dict = {}                # node -> (_Session, acks it carries, ticket) of a ShareFetch
        self._buffer = ShareFetchBuffer()           # acquired, not returned by a poll yet
        self._outcomes: list = []                   # (offsets by TopicPartition, error) for the callback
        self._lock_timeout_ms = None
        self._unapplied = None                      # an assignment whose topic names could not be had yet
        self._stop = threading.Event()
        self._closed = False
        if topics:
            self.subscribe(list(topics))

    def __repr__(self):
        state = "closed" if self._closed else f"{len(self._assigned)} partition(s)"
        return f"<ShareConsumer {self.client_id} group={self.group_id!r} {state}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- subscription -----------------------------------------------------------

    def subscribe(self, topics) -> None:
        """Join the share group with these topics (a list or one name);
        replaces any earlier subscription. No patterns (as Kafka's)."""
        self._check_open()
        topics = [topics] if isinstance(topics, str) else list(topics)
        if not topics:
            self.unsubscribe()
            return
        self._subscription = sorted(set(topics))
        self._membership.subscribe(self._subscription)

    def unsubscribe(self) -> None:
        """Send the acknowledgements made, end the share sessions (what is
        still held goes back to the group) and leave the group."""
        self._check_open()
        self._subscription = []
        try:
            self._end_sessions()
        finally:
            self._membership.close()
            # The same member id when it subscribes again, as Kafka's client keeps it.
            self._membership = self._transport.membership(self.group_id, member_id=self.member_id,
                                                           **self._membership_args)
            self._assigned = set()
            self._delivered = {}

    def subscription(self) -> set[str]:
        return set(self._subscription)

    def assignment(self) -> set[TopicPartition]:
        """The partitions the group gave this member (shared with others as
        the group's assignor decides)."""
        return {TopicPartition(self._names[t], i) for t, i in self._assigned if t in self._names}

    def acquisition_lock_timeout_ms(self) -> int | None:
        """The group's record lock duration, as the last ShareFetch named it."""
        return self._lock_timeout_ms

    def set_acknowledgement_commit_callback(self, callback) -> None:
        """callback(offsets: {TopicPartition: set of offsets}, error or None),
        called from poll(), commit_*() or close() for every acknowledgement
        the broker answered."""
        self._callback = callback

    # --- poll ---------------------------------------------------------------------

    def poll(self, timeout: float = 1.0) -> list:
        """The records acquired for this member, waiting up to timeout seconds
        for some; [] when none came. Up to max_poll_records, completed to the
        end of the log batch the last one is in, so a poll may hold more
        (Kafka's batch_optimized)."""
        self._check_open()
        if not self._subscription:
            raise IllegalStateError("Consumer is not subscribed to any topics.")
        self._settle_last_poll()
        return self._poll(timeout)

    def _settle_last_poll(self) -> None:
        if self.explicit:
            if any(d.waiting for d in self._delivered.values()):
                raise IllegalStateError("All records must be acknowledged in explicit acknowledgement mode.")
        else:
            self._accept_rest()
        self._take_acks()
        # Kept until now so that acknowledging a record twice says so, after a commit too.
        self._delivered = {}

    def _poll(self, timeout: float) -> list:
        """Kafka's poll: records already buffered are returned at once (the
        last poll's acknowledgements then go in a ShareAcknowledge); only a
        poll that finds the buffer empty sends ShareFetch (carrying them), one
        to each leader without one in flight, and sends again to a leader
        that answered nothing while the poll lasts. Over the network a fetch
        outlives the poll that sent it (it waits fetch.max.wait.ms on the
        broker): its answer is read, and buffered, by the next call."""
        deadline = time.monotonic() + max(0.0, timeout)
        self._finish_async()
        try:
            while True:
                self._update_assignment()
                self._read_fetches(0.0)
                records = self._take_buffered()
                if records:
                    self._acknowledge_aside()
                    return records
                started = time.monotonic()
                wait_ms = self._fetch_max_wait_ms
                if not self._transport.outlives_poll:
                    wait_ms = int(max(0.0, min(wait_ms, (deadline - started) * 1000)))
                self._send_fetches(wait_ms)
                self._read_fetches(max(0.0, deadline - time.monotonic()), until_records=True)
                records = self._take_buffered()
                if records:
                    self._acknowledge_aside()
                    return records
                now = time.monotonic()
                if now >= deadline or self._stop.is_set():
                    return []
                if not self._outstanding and now - started < min(wait_ms / 2000, RETRY_BACKOFF_S):
                    # Nothing waited on the broker (no assignment or leader yet,
                    # a partition error): look again soon rather than spin.
                    time.sleep(min(RETRY_BACKOFF_S, deadline - now))
        finally:
            self._run_callbacks()

    def _update_assignment(self) -> None:
        given = self._membership.take_assignment()
        if given is None:
            given, self._unapplied = self._unapplied, None
            if given is None:
                return
        if any(tid not in self._names for tid in given):
            try:
                self._names = self._transport.topics()
            except PylogError as e:   # the broker is away: apply it on a later poll
                log.info("share group %s: topic names not known yet: %s", self.group_id, e)
                self._unapplied = given
                return
            self._ids = {n: t for t, n in self._names.items()}
        target = {(tid, i) for tid, parts in given.items() for i in parts}
        for key in self._assigned - target:
            for s in self._sessions.values():
                if key in s.parts:
                    s.forgotten.add(key)
        self._assigned = target

    def _send_fetches(self, wait_ms: int) -> None:
        """One ShareFetch to each leader of an assigned partition (or with
        acknowledgements to carry) that has none in flight."""
        R = m.ShareFetchRequest
        by_node: dict = {}
        for key in sorted(self._assigned, key=_order):
            try:
                node = self._transport.leader(*key)
            except PylogError as e:   # no metadata now (a broker restarting): a later poll looks again
                log.info("leader of %s-%d not known: %s", self._names.get(key[0], key[0]), key[1], e)
                break
            if node is not None and node not in self._outstanding:
                by_node.setdefault(node, {})[key] = []
        waiting: dict = {}
        for key, (node, acks) in self._pending.items():
            if node in self._outstanding:   # Kafka's rule too: one request at a time per leader
                waiting[key] = (node, acks)
            else:
                by_node.setdefault(node, {})[key] = acks
        self._pending = waiting
        for node, parts in by_node.items():
            s = self._sessions.setdefault(node, _Session())
            if s.epoch == 0:
                dropped = {k: a for k, a in parts.items() if a}
                if dropped:   # no session holds them: their locks expire on the broker
                    self._failed(dropped, Errors.SHARE_SESSION_NOT_FOUND, "no share session to acknowledge in")
                parts = {k: [] for k in parts if k in self._assigned}
                s.parts = set()
                s.forgotten = set()
            send = {k: a for k, a in parts.items() if a or k not in s.parts}
            if not send and not s.parts and not s.forgotten:
                continue
            topics: dict = {}
            for (tid, idx), acks in send.items():
                topics.setdefault(tid, []).append(R.FetchPartition(
                    partition_index=idx, acknowledgement_batches=_batches(R.AcknowledgementBatch, acks)))
            forgotten: dict = {}
            for tid, idx in s.forgotten:
                forgotten.setdefault(tid, []).append(idx)
            want = any(k in self._assigned for k in s.parts | set(parts))
            req = R(group_id=self.group_id, member_id=self.member_id, share_session_epoch=s.epoch,
                    max_wait_ms=wait_ms if want else 0, min_bytes=self._fetch_min_bytes,
                    max_bytes=self._fetch_max_bytes, max_records=self.max_poll_records if want else 0,
                    batch_size=self.max_poll_records,
                    topics=[R.FetchTopic(topic_id=t, partitions=ps) for t, ps in topics.items()],
                    forgotten_topics_data=[R.ForgottenTopic(topic_id=t, partitions=sorted(ps))
                                           for t, ps in forgotten.items()])
            acked = {k: a for k, a in send.items() if a}
            s.parts |= set(send)
            s.parts -= s.forgotten
            # Listed for their acknowledgements only: out of the session with the next request.
            s.forgotten = {k for k in send if k not in self._assigned}
            try:
                self._outstanding[node] = (s, acked, self._transport.start(node, req))
            except PylogError as e:
                log.info("share fetch to node %s failed: %s", node, e)
                self._session_lost(node, acked, Errors.NETWORK_EXCEPTION, str(e))

    def _read_fetches(self, timeout: float, until_records: bool = False) -> None:
        """Buffer the answers of the fetches in flight that arrive within
        timeout (until_records: stop waiting once one brought records, or
        none is left in flight); every answer ready is read before an error
        is raised."""
        deadline = time.monotonic() + timeout
        refused = None
        while self._outstanding:
            ready = {id(t) for t in self._transport.ready([t for _, _, t in self._outstanding.values()],
                                                          max(0.0, deadline - time.monotonic()))}
            for node in [n for n, (_, _, t) in self._outstanding.items() if id(t) in ready]:
                s, acked, ticket = self._outstanding.pop(node)
                try:
                    resp = self._transport.finish(ticket)
                except PylogError as e:
                    log.info("share fetch from node %s failed: %s", node, e)
                    self._session_lost(node, acked, Errors.NETWORK_EXCEPTION, str(e))
                    continue
                try:
                    self._fetched(node, s, acked, resp)
                except PylogError as e:
                    refused = refused or e
            if refused is not None:
                raise refused
            if not ready or (until_records and self._buffer) or time.monotonic() >= deadline:
                return

    def _drain_fetches(self) -> None:
        """Wait for every fetch in flight (before a request that must follow
        it on the same connection, as Kafka's client waits for the node); one
        not answered within its wait and request.timeout.ms loses its
        connection, and the session with it."""
        if not self._outstanding:
            return
        self._read_fetches(self._fetch_max_wait_ms / 1000 + self._transport.request_timeout)
        for node, (_, acked, ticket) in list(self._outstanding.items()):
            del self._outstanding[node]
            self._transport.abandon(ticket)
            self._session_lost(node, acked, Errors.REQUEST_TIMED_OUT, "ShareFetch not answered in time")

    def _take_buffered(self) -> list:
        """Up to max.poll.records of the buffer, registered as this poll's."""
        out: list = []
        for c in self._buffer.take(self.max_poll_records):
            out.extend(c.records)
            self._deliver(c)
        return out

    def _acknowledge_aside(self) -> None:
        """The acknowledgements a poll made when it fetched nothing (buffered
        records returned): in a ShareAcknowledge to each leader with no fetch
        in flight, read back later; the others ride on the next fetch."""
        if not self._pending:
            return
        held = {k: v for k, v in self._pending.items() if v[0] in self._outstanding}
        self._pending = {k: v for k, v in self._pending.items() if k not in held}
        for node, ticket, acks in self._send_acks(None):
            self._in_flight.append((node, ticket, acks))
        self._pending = held

    def _fetched(self, node, s: _Session, acked: dict, resp) -> None:
        if resp.error_code:
            if resp.error_code in _SESSION_GONE:
                log.info("share session with node %s lost (%s): opening a new one", node, resp.error_message)
                self._session_lost(node, acked, resp.error_code, resp.error_message)
                return []
            self._failed(acked, resp.error_code, resp.error_message)
            raise error_for(resp.error_code, f"ShareFetch of group {self.group_id!r}: "
                                             f"{resp.error_message or 'refused'}")
        s.epoch = 1 if s.epoch >= MAX_EPOCH else s.epoch + 1
        self._lock_timeout_ms = resp.acquisition_lock_timeout_ms
        answered = set()
        for t in resp.responses:
            for p in t.partitions:
                key = (t.topic_id, p.partition_index)
                if key in acked:
                    answered.add(key)
                    self._outcome(key, acked[key], p.acknowledge_error_code, p.acknowledge_error_message)
                if p.error_code:
                    if p.error_code in _REROUTE:
                        self._transport.forget_leaders()
                        s.forgotten.add(key)
                    log.info("share fetch of %s-%d: error %d %s", self._names.get(t.topic_id, t.topic_id),
                             p.partition_index, p.error_code, p.error_message or "")
                    continue
                if p.acquired_records:
                    self._buffer.add(self._completed(node, key, p))
        for key in acked.keys() - answered:
            self._outcome(key, acked[key], 0, None)

    def _completed(self, node, key, p) -> Completed:
        """The acquired records of one partition, with their delivery counts;
        records of the fetched batches outside the acquired ranges are not
        this member's and are dropped."""
        tid, idx = key
        name = self._names.get(tid)
        if name is None:
            try:
                self._names = self._transport.topics()
                self._ids = {n: t for t, n in self._names.items()}
            except PylogError as e:
                log.info("topic names not known: %s", e)
            name = self._names.get(tid, str(tid))
            self._ids.setdefault(name, tid)
        ranges = sorted((a.first_offset, a.last_offset, a.delivery_count) for a in p.acquired_records)
        decoded, _ = _decode_fetched(p.records, name, idx, ranges[0][0], self.check_crcs, -1, None)
        out: list = []
        gaps: set = set()
        for first, last, n in ranges:
            lo = bisect.bisect_left(decoded, first, key=_offset)
            hi = bisect.bisect_right(decoded, last, lo, key=_offset)
            _set_delivery_count(decoded, lo, hi, n)
            out.extend(decoded[lo:hi])
            if hi - lo != last - first + 1:   # compacted away, control records, not in the answer
                have = {r.offset for r in decoded[lo:hi]}
                gaps.update(o for o in range(first, last + 1) if o not in have)
        ends = [h[1] + h[2] for h in _batch_headers(p.records)] if p.records is not None else []
        return Completed(node, key, out, ranges, gaps, ends)

    def _deliver(self, c: Completed) -> None:
        """c's records are returned by this poll: they wait for their acknowledgement."""
        d = self._delivered.get(c.key)
        if d is None:
            self._delivered[c.key] = d = _Delivered(c.node, c.ranges, c.gaps, len(c.records))
        else:   # a second answer in one poll (several leaders, or a buffered part): keep both
            d.ranges = sorted(d.ranges + c.ranges)
            d.firsts = [r[0] for r in d.ranges]
            d.gaps |= c.gaps
            d.waiting += len(c.records)
        for o in sorted(c.gaps):
            d.acked[o] = GAP
            d.unsent.append((o, GAP))

    # --- acknowledgements -----------------------------------------------------------

    def acknowledge(self, record, type: int = ACCEPT) -> None:
        """Explicit mode: record's outcome, sent with the next poll() or
        commit. ACCEPT (processed), RELEASE (give it to the group again; its
        delivery count grows), REJECT (never deliver it again)."""
        self._check_open()
        if not self.explicit:
            raise IllegalStateError("Implicit acknowledgement of delivery is being used.")
        self._acknowledge(record, type)

    def _acknowledge(self, record, type: int) -> None:
        if type not in (ACCEPT, RELEASE, REJECT):
            raise ValueError(f"acknowledge type must be ACCEPT (1), RELEASE (2) or REJECT (3), not {type!r}")
        key = (self._ids.get(record.topic), record.partition)
        d = self._delivered.get(key)
        offset = record.offset
        if d is None or not d.holds(offset) or offset in d.acked:
            why = "it was acknowledged already" if d is not None and offset in d.acked \
                else "it was not delivered by the last poll"
            raise IllegalStateError(f"record {record.topic}-{record.partition}@{offset} is not waiting to be "
                                    f"acknowledged: {why}")
        d.acked[offset] = type
        d.unsent.append((offset, type))
        d.waiting -= 1

    def _accept_rest(self) -> None:
        """Implicit mode: every record of the last poll not acknowledged yet is ACCEPTed."""
        for d in self._delivered.values():
            if not d.waiting:
                continue
            if not d.acked:
                # The common case: whole ranges, no per-record work.
                d.unsent = [(f, l, ACCEPT) for f, l, _ in d.ranges]
                d.implicit_done = True
            else:
                for f, l, _ in d.ranges:
                    for o in range(f, l + 1):
                        if o not in d.acked:
                            d.acked[o] = ACCEPT
                            d.unsent.append((o, ACCEPT))
            d.waiting = 0

    def _take_acks(self) -> None:
        """Move what was acknowledged and not sent into _pending (per partition:
        its leader and (first, last, type) runs)."""
        for key, d in self._delivered.items():
            if not d.unsent:
                continue
            if d.implicit_done:
                runs = _with_gaps(d.unsent, d.gaps)
            else:
                runs = _runs(sorted(d.unsent))
            d.unsent = []
            d.implicit_done = False
            node, acks = self._pending.get(key, (d.node, []))
            acks.extend(runs)
            self._pending[key] = (node, acks)

    def commit_sync(self, timeout: float | None = None) -> dict:
        """Send the acknowledgements made (implicit mode: the last poll's
        records, all ACCEPTed) in a ShareAcknowledge to each leader, and wait:
        {TopicPartition: None, or the error of its acknowledgement}."""
        self._check_open()
        if not self.explicit:
            self._accept_rest()
        self._take_acks()
        self._finish_async()
        self._drain_fetches()
        results: dict = {}
        try:
            for node, ticket, acks in self._send_acks(None):
                results.update(self._acked(node, acks, ticket))
        finally:
            self._run_callbacks()
        return results

    def commit_async(self) -> None:
        """As commit_sync, without waiting: the outcome reaches the
        acknowledgement commit callback from a later poll, commit or close."""
        self._check_open()
        if not self.explicit:
            self._accept_rest()
        self._take_acks()
        self._drain_fetches()
        for node, ticket, acks in self._send_acks(None):
            self._in_flight.append((node, ticket, acks))

    def _send_acks(self, final_epoch):
        """One ShareAcknowledge per leader with pending acknowledgements (with
        final_epoch -1: per leader with a session, closing it)."""
        R = m.ShareAcknowledgeRequest
        by_node: dict = {}
        for key, (node, acks) in self._pending.items():
            by_node.setdefault(node, {})[key] = acks
        self._pending = {}
        if final_epoch is not None:
            for node, s in self._sessions.items():
                if s.epoch > 0:
                    by_node.setdefault(node, {})
        sent = []
        for node, parts in by_node.items():
            s = self._sessions.get(node)
            if s is None or s.epoch == 0:
                self._failed(parts, Errors.SHARE_SESSION_NOT_FOUND, "no share session to acknowledge in")
                continue
            topics: dict = {}
            for (tid, idx), acks in parts.items():
                topics.setdefault(tid, []).append(R.AcknowledgePartition(
                    partition_index=idx, acknowledgement_batches=_batches(R.AcknowledgementBatch, acks)))
            req = R(group_id=self.group_id, member_id=self.member_id,
                    share_session_epoch=s.epoch if final_epoch is None else final_epoch,
                    topics=[R.AcknowledgeTopic(topic_id=t, partitions=ps) for t, ps in topics.items()])
            if final_epoch is None:
                s.epoch = 1 if s.epoch >= MAX_EPOCH else s.epoch + 1
            else:
                s.epoch = 0
            try:
                sent.append((node, self._transport.start(node, req), parts))
            except PylogError as e:
                self._session_lost(node, parts, Errors.NETWORK_EXCEPTION, str(e))
        return sent

    def _acked(self, node, acks: dict, ticket) -> dict:
        """Read one ShareAcknowledge answer; {TopicPartition: error or None}."""
        try:
            resp = self._transport.finish(ticket)
        except PylogError as e:
            self._session_lost(node, acks, Errors.NETWORK_EXCEPTION, str(e))
            return {self._tp(k): e for k in acks}
        if resp.error_code:
            if resp.error_code in _SESSION_GONE:
                self._session_lost(node, acks, resp.error_code, resp.error_message)
            else:
                self._failed(acks, resp.error_code, resp.error_message)
            e = error_for(resp.error_code, resp.error_message or "ShareAcknowledge refused")
            return {self._tp(k): e for k in acks}
        out: dict = {}
        for t in resp.responses:
            for p in t.partitions:
                key = (t.topic_id, p.partition_index)
                if key in acks:
                    out[self._tp(key)] = self._outcome(key, acks[key], p.error_code, p.error_message)
        for key in acks.keys() - {(t.topic_id, p.partition_index) for t in resp.responses for p in t.partitions}:
            out[self._tp(key)] = self._outcome(key, acks[key], 0, None)
        return out

    def _finish_async(self) -> None:
        in_flight, self._in_flight = self._in_flight, []
        for node, ticket, acks in in_flight:
            self._acked(node, acks, ticket)

    def _session_lost(self, node, acks: dict, code: int, message) -> None:
        s = self._sessions.get(node)
        if s is not None:
            s.epoch, s.parts, s.forgotten = 0, set(), set()
        self._transport.forget_leaders()
        self._failed(acks, code, message)

    def _failed(self, acks: dict, code: int, message) -> None:
        for key, a in acks.items():
            self._outcome(key, a, code, message)

    def _outcome(self, key, acks, code: int, message):
        error = error_for(code, message or "acknowledgement failed") if code else None
        if error is not None:
            log.info("acknowledgement of %s-%d failed: %s", self._names.get(key[0], key[0]), key[1], error)
        if self._callback is not None:
            self._outcomes.append((key, acks, error))
        return error

    def _run_callbacks(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        if self._callback is None:
            return
        for key, acks, error in outcomes:
            self._callback({self._tp(key): _offsets(acks)}, error)

    def _tp(self, key) -> TopicPartition:
        return TopicPartition(self._names.get(key[0], str(key[0])), key[1])

    # --- push style -------------------------------------------------------------------

    def run(self, handler, *, max_delivery_count: int | None = None, poll_timeout: float = 0.5) -> None:
        """Deliver each record to handler(record) as records arrive, until
        stop(). handler returns: ACCEPT; raises: RELEASE (another delivery,
        to this member or another), or REJECT when the record's
        delivery_count has reached max_delivery_count. Acknowledgements ride
        on the next fetch; on stop the records of the current poll not
        handled yet are RELEASEd and everything is committed (commit_sync).
        run() acknowledges every record itself, in either acknowledgement mode."""
        self._check_open()
        if max_delivery_count is not None and max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1")
        if not self._subscription:
            raise IllegalStateError("Consumer is not subscribed to any topics.")
        try:
            while not self._stop.is_set():
                for record in self._next_records(poll_timeout):
                    if self._stop.is_set():
                        self._acknowledge(record, RELEASE)
                        continue
                    try:
                        handler(record)
                        outcome = ACCEPT
                    except Exception as e:  # noqa: BLE001 - the handler's failure is the record's outcome
                        outcome = failed_outcome(record, e, max_delivery_count)
                    self._acknowledge(record, outcome)
        finally:
            self._stop.clear()
        self.commit_sync()

    def _next_records(self, timeout: float) -> list:
        """run()'s poll (and pylog.aio's): the last poll's records settled, then the next ones."""
        self._check_open()
        self._settle_last_poll()
        return self._poll(timeout)

    def _acknowledge_all(self, records, outcomes) -> None:
        for record, outcome in zip(records, outcomes):
            self._acknowledge(record, outcome)

    def stop(self) -> None:
        """End run() (from the handler or any thread): the record being
        handled is finished, the rest of its poll released."""
        self._stop.set()

    # --- lifecycle --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise IllegalStateError("This consumer has already been closed.")

    def close(self) -> None:
        """Send the acknowledgements made and not sent, end every share
        session (ShareAcknowledge epoch -1: what this member still holds goes
        back to the group), leave the group. A second call does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            try:
                self._end_sessions()
            finally:
                self._membership.close()
        finally:
            self._transport.close()

    def _end_sessions(self) -> None:
        """Ends every share session: the records held, buffered ones too, go
        back to the group."""
        self._take_acks()
        self._finish_async()
        try:
            try:
                self._drain_fetches()
            except PylogError as e:   # the sessions end all the same
                log.info("share fetch in flight at close failed: %s", e)
            finally:
                self._buffer.clear()
                self._outstanding = {}
            for node, ticket, acks in self._send_acks(FINAL_EPOCH):
                self._acked(node, acks, ticket)
        finally:
            self._run_callbacks()


def failed_outcome(record, error, max_delivery_count) -> AcknowledgeType:
    """What run() answers for a record its handler raised on: RELEASE, or
    REJECT once the record's delivery count reached max_delivery_count."""
    last = max_delivery_count is not None and (record.delivery_count or 1) >= max_delivery_count
    outcome = REJECT if last else RELEASE
    log.warning("handler failed on %s-%d@%d (delivery %s): %r; %s", record.topic, record.partition, record.offset,
                record.delivery_count, error, outcome.name)
    return outcome


def _order(key):
    return (str(key[0]), key[1])


def _offset(record):
    return record.offset


def _runs(pairs) -> list:
    """Sorted (offset, type) -> (first, last, type) runs of consecutive offsets of one type."""
    out: list = []
    for o, t in pairs:
        if out and out[-1][2] == t and out[-1][1] == o - 1:
            out[-1] = (out[-1][0], o, t)
        else:
            out.append((o, o, t))
    return out


def _with_gaps(ranges, gaps) -> list:
    """Implicit ACCEPT of whole ranges, with the gaps in them as GAP runs."""
    if not gaps:
        return list(ranges)
    out: list = []
    for f, l, t in ranges:
        out.extend(_runs((o, GAP if o in gaps else t) for o in range(f, l + 1)))
    return out


def _batches(cls, runs) -> list:
    return [cls(first_offset=f, last_offset=l, acknowledge_types=[t]) for f, l, t in runs]


def _offsets(runs) -> set:
    return {o for f, l, t in runs if t != GAP for o in range(f, l + 1)}


def _bool(v) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() == "true"


def _from_config(config: dict) -> dict:
    """Kafka client keys -> this class's keywords (security keys -> ssl_context, sasl)."""
    from ..client.security import security_settings
    props = {str(k): v for k, v in config.items()}
    refused = [k for k in props if k in _REFUSED]
    if refused:
        raise ValueError(f"{', '.join(refused)} cannot be set when using a share group.")
    security = {k: str(v) for k, v in props.items() if k == "security.protocol" or k.startswith(("ssl.", "sasl."))}
    unknown = sorted(k for k in props if k not in _KEYS and k not in security)
    if unknown:
        raise ValueError(f"unknown share consumer config(s): {', '.join(unknown)} (pylog's ShareConsumer takes "
                         f"{', '.join(_KEYS)} and the security.protocol, ssl.* and sasl.* keys)")
    kw = {k.replace(".", "_"): v for k, v in props.items() if k in _KEYS}
    if security:
        kw.update(security_settings(security))
    return kw
