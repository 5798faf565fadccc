"""Fetch (api key 1), versions 4-17, for consumers and followers.

The answer is encoded here by hand as a list of chunks: bytes for the
headers and the FetchSlices the partitions' reads return, so segment bytes
are never copied through Python (the connection sendfile()s them). Per
partition the work is a few struct packs; nothing runs per record.

Versions: v12 is flexible (compact arrays, tagged fields; the response
header carries tags too) and adds last_fetched_epoch, answered with
diverging_epoch (tag 0) when the fetcher's log has gone past where that
epoch ends here (Kafka's Partition.fetchRecords); v13+ name topics by id
(UNKNOWN_TOPIC_ID for an id not known here); v15 moves replica_id into
replica_state (KIP-903; the broker epoch it carries is not checked: pylog's
ISR changes do not carry broker epochs); v16 adds, for partitions answered
NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH, the current leader (tag 1)
and the endpoints of those leaders (top-level tag 0, KIP-951); v17 adds
the fetcher's log directory id, which only KRaft's own fetch uses.

Sessions (KIP-227, v7+) are fetch_session.FetchManager's: it turns the
request into the partitions to read and, when the answer goes out, into
the partitions to send.

Threads: the broker's event loop only.
"""
from __future__ import annotations

import struct
import time
import uuid

from ..errors import NotLeaderOrFollowerError, OffsetOutOfRangeError, PylogError, code_for
from ..metrics.stats import FETCH_NOT_FAILED
from ..protocol.error_codes import Errors
from ..protocol.types import write_unsigned_varint
from .fetch_session import FetchManager
from .purgatory import HIGH_WATERMARK, LOG_END, DelayedOperation
from .quotas import ANONYMOUS_PRINCIPAL, CONSUMER_BYTE_RATE

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_I16I32 = struct.Struct(">hi")
_I64I64 = struct.Struct(">qq")
_PART = struct.Struct(">ihqq")  # partition_index, error_code, high_watermark, last_stable_offset
_IQ = struct.Struct(">iq")
_II = struct.Struct(">ii")
_ZERO_UUID = uuid.UUID(int=0)
# Part tuple fields (one per partition read).
_KEY, _TID, _FP, _CODE, _HW, _LSS, _HAS, _PREF, _DIV, _LSO, _DATA, _ABORTED, _LEADER = range(13)
# A partition's fixed fields in an answer (index, error, offsets, aborted
# transactions' count, preferred replica, records' size), counted toward a
# consumer's byte quota with its records.
_PART_OVERHEAD = 46
# Kafka's principal of a client that did not authenticate.


def _uvarint(n: int) -> bytes:
    out = bytearray()
    write_unsigned_varint(out, n)
    return bytes(out)


_UV = [_uvarint(i) for i in range(128)]


def _uv(n: int) -> bytes:
    return _UV[n] if n < 128 else _uvarint(n)


class FetchApi:
    """Threads: the broker's event loop only."""

    def __init__(self, broker, purgatory):
        self.broker = broker
        self.logs = broker.log_manager
        self.purgatory = purgatory
        self.sessions = FetchManager(broker.config.get("max.incremental.fetch.session.cache.slots"),
                                     known_partitions=self._known_partitions)
        self._fetch_max_bytes = broker.config.get("fetch.max.bytes")
        self._fetch_response_max_follower = broker.config.get("replica.fetch.response.max.bytes")
        self._names_by_id: dict[uuid.UUID, str] = {}
        # The map above is rebuilt at most once per read (a request of unknown
        # ids must not rebuild it per topic): the read's number, and the
        # number of the read that last rebuilt it.
        self._read_number = 0
        self._names_read = -1

    # ---- the request ----

    def fetch(self, header, req):
        deadline = time.monotonic() + max(req.max_wait_ms, 0) / 1000.0
        version = header.request_api_version
        replica_id = req.replica_state.replica_id if version >= 15 else req.replica_id
        who = None  # (principal, client id) of a consumer, whose quotas apply
        cap = None
        if replica_id < 0:
            who = (getattr(header, "principal", None) or ANONYMOUS_PRINCIPAL, getattr(header, "client_id", None))
            if self.broker.client_quotas.fetch_on:
                cap = self.broker.client_quotas.max_fetch_bytes(*who)
        source = self._fetch_source(req, version, replica_id, cap)
        ctx = self.sessions.new_context(version, req.session_id, req.session_epoch, replica_id >= 0,
                                        _fetch_wanted(req.topics, version), _forgotten(req, version))
        if ctx.error:
            return _encode(version, ctx.error, 0, [], ())
        listener = getattr(header, "listener_name", None)
        wanted = ctx.wanted
        if self.broker.authorizer is not None:
            source = (*source[:5], self.broker.authorizer.fetch_denials(header, replica_id >= 0, wanted, version,
                                                                    self._name_of))
        parts, total, ready, served = self._fetch_once(req, version, source, wanted)
        if ready or total >= req.min_bytes or req.max_wait_ms <= 0 or not parts:
            return self._answer(version, ctx, parts, listener, header, who, served)
        del parts, served
        # The partitions' positions as this read saw them, taken now: whatever
        # moves before the wait starts completes it at once.
        return self._fetch_wait(req, version, deadline, source, ctx, listener, self._delayed_fetch(version, wanted),
                                header, who)

    def _answer(self, version, ctx, parts, listener, header=None, who=None, served=()):
        """The answer to send; for a consumer, unless its quotas withhold it
        (broker/client_quotas.py): then an answer with no partitions and the
        throttle time, as Kafka's, whose bytes are taken back out of the
        consumer's rate (it got none)."""
        if who is not None:
            throttle = getattr(header, "throttle_ms", 0)  # the request quota's, set when the request came in
            quotas = self.broker.client_quotas
            if quotas.fetch_on:
                size = _response_size(parts)
                over = quotas.record_bytes(CONSUMER_BYTE_RATE, who[0], who[1], size)
                if over or throttle:
                    quotas.unrecord_bytes(CONSUMER_BYTE_RATE, who[0], who[1], size)
                throttle = max(throttle, over)
            if throttle > 0:
                header.throttle_ms = throttle
                error, session_id = ctx.throttled()
                return _encode(version, error, session_id, [], (), throttle)
        _count_bytes_out(served)
        error, session_id, parts = ctx.answer(parts)
        endpoints = ()
        if version >= 16:
            endpoints = self._leader_endpoints(parts, listener)
        return _encode(version, error, session_id, parts, endpoints)

    def _delayed_fetch(self, version, wanted):
        self._read_number += 1
        parts = []
        for key, tid, fps in wanted:
            name = self._name_of(tid) if version >= 13 else key
            if name is None:
                continue
            for fp in fps:
                p = self.logs.partitions.get((name, fp.partition))
                if p is not None:
                    parts.append(p)
        return _DelayedFetch(parts, self.broker)

    async def _fetch_wait(self, req, version, deadline, source, ctx, listener, op, header=None, who=None):
        """Long-poll: wait in the purgatory until a fetched partition moves
        (new data, a new high watermark, a leadership change), read again,
        and answer once min_bytes are there or max_wait_ms has passed."""
        from .handlers import detach_chunks  # here: handlers imports this module
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.broker.stopping:
                break
            moved = await self.purgatory.wait(op, op.parts, (HIGH_WATERMARK, LOG_END), remaining)
            if not moved or self.broker.stopping:
                break
            parts, total, ready, served = self._fetch_once(req, version, source, ctx.wanted)
            if ready or total >= req.min_bytes:
                return detach_chunks(self._answer(version, ctx, parts, listener, header, who, served))
            del parts, served
            op = self._delayed_fetch(version, ctx.wanted)
        parts, _total, _ready, served = self._fetch_once(req, version, source, ctx.wanted)
        return detach_chunks(self._answer(version, ctx, parts, listener, header, who, served))

    def _fetch_source(self, req, version, replica_id, cap=None):
        """Who fetches, as Kafka's FetchParams sees it: (replica_id,
        from_follower, only_from_leader, client_rack). Fetch v11 carries
        client metadata (rack_id), and Kafka then lets any replica serve a
        consumer (fetchOnlyLeader is false; KIP-392), whatever the rack and
        selector; older consumers and every follower fetch are served by
        leaders only. client_rack is set when this broker, as leader, should
        look for a preferred read replica (replica.selector.class, a
        non-empty rack_id). cap: a consumer quota's bound on the answer's
        bytes (or None)."""
        from_follower = replica_id >= 0
        client_metadata = version >= 11 and not from_follower
        rack = None
        # A consumer in this leader's own rack reads here (RackAwareReplicaSelector
        # picks the leader then): no per-partition search for it.
        if (client_metadata and req.rack_id and req.rack_id != self.broker.config.get("broker.rack")
                and self.broker.config.replica_selector() == "rack-aware"):
            rack = req.rack_id
        return replica_id, from_follower, not client_metadata, rack, cap, ()   # () : no topics denied

    def _may_serve(self, p, from_follower, follower, only_leader) -> bool:
        if from_follower:
            # Only the leader serves replicas, and only its own: followers
            # never serve followers.
            return follower
        if p.is_leader:
            return True
        # A follower serves a consumer that sent client metadata, from a log
        # it keeps for a known leader; not once the controller stopped it here.
        return not only_leader and p.leader_id >= 0 and self.broker.broker_id in p.replicas

    def _name_of(self, topic_id):
        """The topic's name for its id (None: unknown here). The names are
        those this broker hosts or the controller told it of; a cached name
        is checked against them, so a topic deleted and created again under
        its name is not found by its old id."""
        name = self._names_by_id.get(topic_id)
        if name is not None and self._is_id_of(name, topic_id):
            return name
        if topic_id.int == 0 or self._names_read == self._read_number:
            return None
        self._names_read = self._read_number
        ids = {}
        for n, tid in self.broker.metadata_cache.topic_ids.items():
            ids[tid] = n
        for n, meta in self.logs.topics.items():
            ids[meta.topic_id] = n
        self._names_by_id = ids
        return ids.get(topic_id)

    def _known_partitions(self) -> int:
        return len(self.logs.partitions) + sum(len(t) for t in self.broker.metadata_cache.topics.values())

    def _is_id_of(self, name, topic_id) -> bool:
        meta = self.logs.topics.get(name)
        return (meta is not None and meta.topic_id == topic_id) or \
            self.broker.metadata_cache.topic_ids.get(name) == topic_id

    def _fetch_once(self, req, version, source, wanted):
        """(parts, record bytes, respond_now, served): one part per partition
        read (the _KEY.._LEADER fields). respond_now is set when a partition
        has an error, a diverging epoch or is sent to a preferred read
        replica (Kafka answers those at once); served lists (partition,
        record bytes) read for a consumer, counted in bytes_out only by the
        caller that sends this answer."""
        replica_id, from_follower, only_leader, client_rack, cap, denied = source   # denied: authorizer.py
        self._read_number += 1
        # Kafka's bound on the whole answer: the request's max_bytes, capped by
        # fetch.max.bytes for consumers and replica.fetch.response.max.bytes
        # for followers (the first batch still goes out whole, KIP-74).
        budget = req.max_bytes if req.max_bytes > 0 else 0x7FFFFFFF
        budget = min(budget, self._fetch_response_max_follower if from_follower else self._fetch_max_bytes)
        if cap is not None:
            budget = min(budget, cap)
        total = 0
        respond_now = False
        read_committed = req.isolation_level == 1 and not from_follower
        by_id = version >= 13
        with_epochs = version >= 12
        if client_rack is not None:
            # The leader's own rack from its config (what UpdateMetadata says
            # of it); the others' from the live brokers the controller sent.
            leader_rack = self.broker.config.get("broker.rack")
            live = self.broker.metadata_cache.brokers

            def rack_of(rid):
                ep = live.get(rid)
                return (False, None) if ep is None else (True, ep.rack)
            now_ms = int(time.time() * 1000)
        served = []
        parts = []
        partitions = self.logs.partitions
        stats = self.broker.handlers.topic_stats
        for key, tid, fps in wanted:
            name = self._name_of(tid) if by_id else key
            for fp in fps:
                if name is None or name in denied:
                    parts.append((key, tid, fp, Errors.UNKNOWN_TOPIC_ID if name is None
                                  else Errors.TOPIC_AUTHORIZATION_FAILED, -1, -1, False, -1, None, -1, None,
                                  None, None))
                    respond_now = True
                    continue
                p = partitions.get((name, fp.partition))
                if p is not None:   # (hosted partitions only: no key per unknown name)
                    stats.fetch_total[name] += 1
                data = None
                aborted = None
                preferred = -1
                diverging = None
                follower = from_follower and p is not None and p.is_leader and replica_id in p.replicas
                if p is None:
                    code, hw, lso, lss = self._not_hosted(name, fp.partition), -1, -1, -1
                else:
                    # On a follower these are its own: its HW (the leader's, as
                    # of its last fetch, capped by its log end) bounds what a
                    # consumer reads here, and its LSO comes from the producer
                    # state it rebuilt from the replicated batches and markers.
                    code, hw, lso, lss = 0, p.high_watermark, p.last_stable_offset, p.log_start_offset
                if p is not None and version >= 9 and fp.current_leader_epoch >= 0 and \
                        fp.current_leader_epoch != p.leader_epoch:
                    code = (Errors.FENCED_LEADER_EPOCH if fp.current_leader_epoch < p.leader_epoch
                            else Errors.UNKNOWN_LEADER_EPOCH)
                elif p is not None and not self._may_serve(p, from_follower, follower, only_leader):
                    code = NotLeaderOrFollowerError.error_code
                elif p is not None:
                    if with_epochs and fp.last_fetched_epoch >= 0:
                        code, diverging = _divergence(p, fp)
                    if follower and diverging is None and not code:
                        # The follower's LEO is its fetch offset (§4.1): may move
                        # the HW (so the answer carries the newest), or the ISR.
                        p.update_follower_fetch(replica_id, fp.fetch_offset, fp.log_start_offset)
                        hw, lso, lss = p.high_watermark, p.last_stable_offset, p.log_start_offset
                    if client_rack is not None and p.is_leader and not code and diverging is None:
                        preferred = p.preferred_read_replica(fp.fetch_offset, client_rack, leader_rack,
                                                             rack_of, now_ms)
                    if code or diverging is not None or preferred >= 0:
                        # Sent elsewhere, or told where its log diverges: no
                        # records, and no waiting (Kafka's hasPreferredReadReplica,
                        # hasDivergingEpoch), so the fetcher moves at once.
                        respond_now = True
                    else:
                        try:
                            if budget > 0 or total == 0:
                                limit = min(fp.partition_max_bytes, budget)
                                data = p.read_for_replica(fp.fetch_offset, limit) if follower else \
                                    p.read(fp.fetch_offset, limit, read_committed)
                                if data is not None and total > 0 and len(data) > budget:
                                    data = None  # only the first partition may exceed the budget (KIP-74)
                        except OffsetOutOfRangeError:
                            # Also a follower's answer past its own log end: a
                            # KIP-392 consumer goes back to the leader on it.
                            code = Errors.OFFSET_OUT_OF_RANGE
                        except PylogError as e:
                            code = code_for(e)
                            if code not in FETCH_NOT_FAILED:
                                stats.fetch_failed[name] += 1
                if code:
                    respond_now = True
                if read_committed:
                    # Kafka's collectAbortedTransactions for the range read.
                    aborted = p.aborted_transactions(fp.fetch_offset) if data is not None else ()
                n = 0
                if data is not None:
                    n = len(data)
                    total += n
                    budget -= n
                    if not from_follower:
                        served.append((p, n))
                leader = None
                if version >= 16 and (code == Errors.NOT_LEADER_OR_FOLLOWER or code == Errors.FENCED_LEADER_EPOCH):
                    leader = self._current_leader(name, fp.partition, p)
                parts.append((key, tid, fp, code, hw, lss, n > 0, preferred, diverging, lso, data, aborted,
                              leader))
        return parts, total, respond_now, served

    def _not_hosted(self, name, index) -> int:
        """The error for a partition with no replica open here, as Kafka's
        ReplicaManager.getPartitionOrError: an offline log, a partition the
        cluster has elsewhere (the client refreshes its metadata), or none."""
        if index in self.logs.offline(name):
            return Errors.KAFKA_STORAGE_ERROR
        if self.broker.metadata_cache.has_partition(name, index):
            return Errors.NOT_LEADER_OR_FOLLOWER
        return Errors.UNKNOWN_TOPIC_OR_PARTITION

    def _current_leader(self, name, index, p):
        """(leader id, leader epoch) as Kafka's KafkaApis.getCurrentLeader:
        the hosted replica's view, else the controller's."""
        if p is not None:
            return p.leader_id, p.leader_epoch
        st = self.broker.metadata_cache.partition(name, index)
        return (st.leader, st.leader_epoch) if st is not None else (-1, -1)

    def _leader_endpoints(self, parts, listener):
        ids = sorted({p[_LEADER][0] for p in parts if p[_LEADER] is not None and p[_LEADER][0] >= 0})
        out = []
        cache = self.broker.metadata_cache
        for bid in ids:
            ep = cache.node(bid, listener)
            if ep is not None:
                out.append(ep)
        return out


def _divergence(p, fp):
    """(error code, diverging (epoch, end offset) or None) for a fetcher
    whose last fetched batch has leader epoch fp.last_fetched_epoch, as
    Kafka's Partition.readFromLocalLog checks it."""
    epoch, end = p.epoch_cache.end_offset_for(fp.last_fetched_epoch, p.log_end_offset)
    if epoch < 0 or end < 0:
        return Errors.OFFSET_OUT_OF_RANGE, None
    if fp.fetch_offset < p.log_start_offset:
        return Errors.OFFSET_OUT_OF_RANGE, None
    if epoch < fp.last_fetched_epoch or end < fp.fetch_offset:
        return 0, (epoch, end)
    return 0, None


def _fetch_wanted(topics, version):
    """The partitions a Fetch asks for, [(topic key, topic id, [fp])], as
    Kafka's FetchRequest.fetchData sees them: a LinkedHashMap keyed by
    partition, so a partition listed twice is answered once, where it was
    first listed, for what it asked last; then grouped into topics as
    Kafka's FetchResponse does (runs of one topic). The topic key is the
    name, or from v13 the topic id."""
    by_id = version >= 13
    if len(topics) == 1:
        t = topics[0]
        fps = t.partitions
        if len(fps) < 2 or len({fp.partition for fp in fps}) == len(fps):
            # the common case: nothing repeated
            return [(t.topic_id, t.topic_id, fps)] if by_id else [(t.topic, _ZERO_UUID, fps)]
    by_key = {}
    for t in topics:
        key = t.topic_id if by_id else t.topic
        for fp in t.partitions:
            by_key[(key, fp.partition)] = fp  # a repeat replaces the value, keeps the place
    wanted = []
    for (key, _index), fp in by_key.items():
        if wanted and wanted[-1][0] == key:
            wanted[-1][2].append(fp)
        else:
            wanted.append((key, key if by_id else _ZERO_UUID, [fp]))
    return wanted


def _forgotten(req, version):
    if version < 7 or not req.forgotten_topics_data:
        return ()
    if version >= 13:
        return [(t.topic_id, t.partitions) for t in req.forgotten_topics_data]
    return [(t.topic, t.partitions) for t in req.forgotten_topics_data]


def _count_bytes_out(served):
    for p, n in served:
        p.bytes_out += n


def _response_size(parts) -> int:
    """What an answer of these parts weighs for a consumer quota: the record
    bytes plus each partition's fixed fields (no per-record work)."""
    n = 0
    for p in parts:
        data = p[_DATA]
        n += _PART_OVERHEAD if data is None else _PART_OVERHEAD + len(data)
    return n


def _encode(version, error, session_id, parts, endpoints, throttle_ms=0):
    """The response body as chunks (the connection writes the correlation
    id; for flexible versions the first chunk starts with the response
    header's empty tag section)."""
    if version >= 12:
        return _encode_flexible(version, error, session_id, parts, endpoints, throttle_ms)
    head = bytearray(_I32.pack(throttle_ms))
    if version >= 7:
        head += _I16I32.pack(error, session_id)
    runs = _runs(parts)
    head += _I32.pack(len(runs))
    chunks = []
    for first, n_parts, start in runs:
        name = first[_KEY].encode()
        head += _I16.pack(len(name)) + name + _I32.pack(n_parts)
        for i in range(start, start + n_parts):
            p = parts[i]
            head += _PART.pack(p[_FP].partition, p[_CODE], p[_HW], p[_LSO])
            if version >= 5:
                head += _I64.pack(p[_LSS])
            aborted = p[_ABORTED]
            if aborted is None:
                head += _I32.pack(-1)
            else:
                head += _I32.pack(len(aborted))
                for pid, first_offset in aborted:
                    head += _I64I64.pack(pid, first_offset)
            if version >= 11:
                head += _I32.pack(p[_PREF])
            data = p[_DATA]
            if data is None:
                head += _I32.pack(0)
            else:
                head += _I32.pack(len(data))
                chunks.append(bytes(head))
                chunks.append(data)
                head = bytearray()
    if head:
        chunks.append(bytes(head))
    return chunks


def _encode_flexible(version, error, session_id, parts, endpoints, throttle_ms=0):
    head = bytearray(b"\x00")  # response header v1: no tags
    head += _I32.pack(throttle_ms)
    head += _I16I32.pack(error, session_id)
    runs = _runs(parts)
    head += _uv(len(runs) + 1)
    chunks = []
    by_id = version >= 13
    for first, n_parts, start in runs:
        if by_id:
            head += first[_TID].bytes
        else:
            name = first[_KEY].encode()
            head += _uv(len(name) + 1) + name
        head += _uv(n_parts + 1)
        for i in range(start, start + n_parts):
            p = parts[i]
            head += _PART.pack(p[_FP].partition, p[_CODE], p[_HW], p[_LSO])
            head += _I64.pack(p[_LSS])
            aborted = p[_ABORTED]
            if aborted is None:
                head += b"\x00"
            else:
                head += _uv(len(aborted) + 1)
                for pid, first_offset in aborted:
                    head += _I64I64.pack(pid, first_offset) + b"\x00"
            head += _I32.pack(p[_PREF])
            data = p[_DATA]
            if data is None:
                head += b"\x01"  # empty records
            else:
                head += _uv(len(data) + 1)
                chunks.append(bytes(head))
                chunks.append(data)
                head = bytearray()
            diverging, leader = p[_DIV], p[_LEADER]
            if diverging is None and (leader is None or leader == (-1, -1)):
                head += b"\x00"
            else:
                tags = []
                if diverging is not None:
                    tags.append(b"\x00" + _uv(13) + _IQ.pack(*diverging) + b"\x00")
                if leader is not None and leader != (-1, -1):
                    tags.append(b"\x01" + _uv(9) + _II.pack(*leader) + b"\x00")
                head += _uv(len(tags)) + b"".join(tags)
        head += b"\x00"  # topic tags
    if endpoints:
        body = bytearray(_uv(len(endpoints) + 1))
        for ep in endpoints:
            host = ep.host.encode()
            body += _I32.pack(ep.id) + _uv(len(host) + 1) + host + _I32.pack(ep.port)
            if ep.rack is None:
                body += b"\x00"
            else:
                rack = ep.rack.encode()
                body += _uv(len(rack) + 1) + rack
            body += b"\x00"
        head += b"\x01\x00" + _uv(len(body)) + body
    else:
        head += b"\x00"
    chunks.append(bytes(head))
    return chunks


def _runs(parts):
    """[(first part, count, start index)] for each run of one topic."""
    runs = []
    last = object()
    for i, p in enumerate(parts):
        key = p[_KEY]
        if key != last:
            runs.append([p, 1, i])
            last = key
        else:
            runs[-1][1] += 1
    return runs


class _DelayedFetch(DelayedOperation):
    """Fetch long-poll: complete once any fetched partition moved (high
    watermark, log end offset, leadership) since the fetch last read it, or
    the broker stops; the handler then reads again (Kafka's DelayedFetch
    counts bytes from segment positions; here the read itself does).
    Event-loop thread only."""

    __slots__ = ("parts", "seen", "broker")

    def __init__(self, parts, broker):
        self.parts = parts
        self.seen = [_position(p) for p in parts]
        self.broker = broker

    def try_complete(self) -> bool:
        if self.broker.stopping:
            return True
        return any(_position(p) != s for p, s in zip(self.parts, self.seen))


def _position(p):
    return p.high_watermark, p.log_end_offset, p.leader_id, p.leader_epoch
