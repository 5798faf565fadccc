"""Follower replication: one ReplicaFetcher per leader broker, fetching every
partition this broker follows from that leader (KAFKA-NOTES §4.1, §4.2).

A fetcher is an asyncio task on the broker's loop (Partitions belong to the
loop), talking to the leader over one asyncio stream with our codecs: Fetch v11
with replica_id = this broker's id, isolation level 0, and
replica.fetch.wait.max.ms / replica.fetch.max.bytes. Batches are appended as
the leader wrote them (Partition.append_as_follower: offsets and leader epochs
kept), and the follower's HW becomes min(leader HW, own LEO).

A partition added after a leader or epoch change is truncated first
(KIP-101/279): OffsetForLeaderEpoch v3 to the leader for the follower's latest
epoch, the answer applied with pylog.log.leader_epoch.follower_truncation_offset,
repeated while the follower lacks the epoch the leader answered; a replica
without epochs falls back to its high watermark.

Invariants: a partition is in at most one fetcher (the manager moves it);
every answer is applied only if the partition is still in this fetcher with the
leader epoch the request was sent under (LeaderAndIsr may change it while a
request is in flight).

Not thread-safe: runs on the broker's event loop only. Its file work runs on
the LogManager's file thread while the fetcher waits: a truncation's
(Partition.truncate) and the leader-epoch-checkpoint a fetched batch of a new
leader epoch adds to (written before that batch is appended); no fetch is sent
for, and no answer applied to, a partition being truncated.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time

from ..errors import LogClosedError
from ..log.leader_epoch import LeaderEpochCache, follower_truncation_offset, follower_truncation_start
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..protocol.framing import decode_response, encode_request

log = logging.getLogger("pylog.broker.replication")

FETCH_VERSION = 11
OFFSET_FOR_LEADER_EPOCH_VERSION = 3
FETCH_RESPONSE_MAX_BYTES = 10 << 20   # Kafka's replica.fetch.response.max.bytes
BACKOFF_S = 0.2                       # after an error (Kafka's replica.fetch.backoff.ms is 1 s)
REQUEST_TIMEOUT_S = 30.0

_I32 = struct.Struct(">i")


class LeaderConnection:
    """One request at a time to one broker over an asyncio stream.

    Threads: the broker's event loop only.
    """

    def __init__(self, host: str, port: int, client_id: str, ssl=None, sasl=None):
        self.host, self.port, self.client_id = host, port, client_id
        self.ssl = ssl   # the SSLContext of the inter-broker listener; None for PLAINTEXT
        self.sasl = sasl   # ClientCredentials on a SASL inter-broker listener
        self._reader = self._writer = None
        self._cid = 0

    async def request(self, body, version: int, timeout: float = REQUEST_TIMEOUT_S):
        if self._writer is None:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, ssl=self.ssl), timeout)
            if self.sasl is not None:
                try:
                    await self._authenticate(timeout)
                except BaseException:
                    self.close()
                    raise
        return await self._exchange(body, version, timeout)

    async def _authenticate(self, timeout):
        """SaslHandshake v1 then SaslAuthenticate v1 (both served by every
        SASL-enabled Kafka broker, so no ApiVersions first)."""
        from ..client.sasl import auth_failed, exchange, handshake_failed
        where = f"broker {self.host}:{self.port}"
        resp = await self._exchange(m.SaslHandshakeRequest(mechanism=self.sasl.mechanism), 1, timeout)
        if resp.error_code:
            raise handshake_failed(resp, self.sasl, where)
        steps = exchange(self.sasl)

        def step(answer):
            # SCRAM's client proof is PBKDF2 over thousands of iterations: off the loop.
            try:
                return steps.send(answer), False
            except StopIteration:
                return None, True
        token = next(steps)
        loop = asyncio.get_running_loop()
        while True:
            resp = await self._exchange(m.SaslAuthenticateRequest(auth_bytes=token), 1, timeout)
            if resp.error_code:
                raise auth_failed(resp, where)
            token, done = await loop.run_in_executor(None, step, bytes(resp.auth_bytes))
            if done:
                return

    async def _exchange(self, body, version, timeout):
        self._cid = (self._cid + 1) & 0x7FFFFFFF
        self._writer.write(encode_request(self._cid, body.API_KEY, version, body, self.client_id))
        try:
            await self._writer.drain()
            size = _I32.unpack(await asyncio.wait_for(self._reader.readexactly(4), timeout))[0]
            frame = await asyncio.wait_for(self._reader.readexactly(size), timeout)
        except BaseException:
            self.close()  # the stream position is unknown now
            raise
        header, resp = decode_response(frame, body.API_KEY, version)
        if header.correlation_id != self._cid:
            self.close()
            raise ConnectionError(f"correlation id {header.correlation_id} != {self._cid}")
        return resp

    def close(self):
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class _FetchState:
    """Threads: the broker's event loop only."""

    __slots__ = ("leader_epoch", "partition", "truncating")

    def __init__(self, partition, truncating: bool):
        self.partition = partition
        self.leader_epoch = partition.leader_epoch
        self.truncating = truncating


class ReplicaFetcher:
    """Threads: the broker's event loop only (an asyncio task)."""

    def __init__(self, manager, leader_id: int):
        self.manager = manager
        self.leader_id = leader_id
        self.broker_id = manager.broker_id
        self.partitions: dict[tuple[str, int], _FetchState] = {}
        self._wake = asyncio.Event()
        self._conn = None
        self._task = asyncio.ensure_future(self._run())

    def add(self, partition, truncate: bool):
        key = (partition.topic, partition.index)
        cur = self.partitions.get(key)
        if cur is not None and not truncate and cur.leader_epoch == partition.leader_epoch:
            return
        self.partitions[key] = _FetchState(partition, truncate or (cur is not None and cur.truncating))
        self._wake.set()

    def remove(self, key):
        self.partitions.pop(key, None)

    async def stop(self):
        # Cancelled again until it ends: Python 3.11's asyncio.wait_for can
        # swallow a cancellation that arrives as its inner request completes
        # (seen when the loop stalls during a broker's stop), and one lost
        # cancel left stop_in_thread waiting out its whole timeout.
        while not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=0.1)
        await asyncio.gather(self._task, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()

    def _current(self, key, st) -> bool:
        """st is still this fetcher's, under the same leader epoch, and no
        truncation of it is running."""
        return self.partitions.get(key) is st and st.partition.leader_epoch == st.leader_epoch \
            and not st.partition.is_leader and st.partition.leader_id == self.leader_id \
            and not st.partition.truncating

    async def _run(self):
        while True:
            if not self.partitions:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if self._conn is None:
                    ep = self.manager.endpoint(self.leader_id)
                    if ep is None:
                        log.warning("broker %d: no address known for leader %d; retrying",
                                    self.broker_id, self.leader_id)
                        await asyncio.sleep(BACKOFF_S)
                        continue
                    self._conn = LeaderConnection(ep.host, ep.port, f"replica-fetcher-{self.broker_id}",
                                                  self.manager.tls, self.manager.sasl)
                for key, st in list(self.partitions.items()):
                    if st.truncating:
                        await self._truncate(key, st)
                await self._fetch_once()
            except asyncio.CancelledError:
                raise
            except (OSError, EOFError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                log.info("broker %d: fetching from leader %d failed (%s); retrying", self.broker_id,
                         self.leader_id, e)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                await asyncio.sleep(BACKOFF_S)
            except Exception:
                log.exception("broker %d: replica fetcher for leader %d failed; retrying", self.broker_id,
                              self.leader_id)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                await asyncio.sleep(BACKOFF_S)

    # ---- truncation on becoming follower (KIP-101/279) ----

    async def _truncate(self, key, st):
        p = st.partition
        await p.truncation_done()   # another fetcher's, for an earlier leader
        if not self._current(key, st):
            return
        step = follower_truncation_start(p.epoch_cache, p.log_end_offset, p.high_watermark)
        while True:
            await p.truncate(step.offset, self.manager.file_executor)
            if not self._current(key, st):
                return
            if step.done:
                break
            req = m.OffsetForLeaderEpochRequest(replica_id=self.broker_id, topics=[
                m.OffsetForLeaderEpochRequest.OffsetForLeaderTopic(topic=key[0], partitions=[
                    m.OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                        partition=key[1], current_leader_epoch=st.leader_epoch, leader_epoch=step.next_epoch)])])
            resp = await self._conn.request(req, OFFSET_FOR_LEADER_EPOCH_VERSION)
            if not self._current(key, st):
                return
            r = resp.topics[0].partitions[0]
            if r.error_code:
                log.info("broker %d: OffsetForLeaderEpoch %s-%d from leader %d: error %d; retrying",
                         self.broker_id, key[0], key[1], self.leader_id, r.error_code)
                await asyncio.sleep(BACKOFF_S)
                return
            step = follower_truncation_offset(p.epoch_cache, p.log_end_offset, p.high_watermark,
                                              r.leader_epoch, r.end_offset)
        log.info("broker %d: %s-%d truncated to %d for leader %d epoch %d", self.broker_id, key[0], key[1],
                 p.log_end_offset, self.leader_id, st.leader_epoch)
        st.truncating = False

    async def _write_epochs(self, p, entries) -> bool:
        """Write p's leader-epoch-checkpoint as entries on the file thread;
        False when the broker is stopping."""
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.manager.file_executor, LeaderEpochCache.write_file, p.epoch_cache.path, entries)
        except LogClosedError:
            return False
        p.epoch_cache.note_written(entries)
        return True

    # ---- fetching ----

    async def _fetch_once(self):
        F = m.FetchRequest
        sent = {}
        by_topic: dict[str, list] = {}
        throttled, quota = self.manager.throttled, self.manager.quota
        quota_left = quota.available()
        for key, st in self.partitions.items():
            if st.truncating or st.partition.truncating:
                continue
            max_bytes = self.manager.fetch_max_bytes
            if key in throttled:
                if not quota_left:
                    continue
                # Small fetches, so one answer does not overdraw the bucket by much.
                max_bytes = min(max_bytes, max(1, quota.rate // 4))
            p = st.partition
            sent[key] = st
            by_topic.setdefault(key[0], []).append(F.FetchPartition(
                partition=key[1], current_leader_epoch=st.leader_epoch, fetch_offset=p.log_end_offset,
                log_start_offset=p.log_start_offset, partition_max_bytes=max_bytes))
        if not sent:
            await asyncio.sleep(BACKOFF_S)
            return
        req = F(replica_id=self.broker_id, max_wait_ms=self.manager.fetch_wait_max_ms, min_bytes=1,
                max_bytes=FETCH_RESPONSE_MAX_BYTES, isolation_level=0, session_id=0, session_epoch=-1,
                topics=[F.FetchTopic(topic=t, partitions=ps) for t, ps in by_topic.items()],
                forgotten_topics_data=[], rack_id="")
        resp = await self._conn.request(req, FETCH_VERSION,
                                        timeout=REQUEST_TIMEOUT_S + self.manager.fetch_wait_max_ms / 1000.0)
        if resp.error_code:
            log.info("broker %d: fetch from leader %d: error %d", self.broker_id, self.leader_id, resp.error_code)
            await asyncio.sleep(BACKOFF_S)
            return
        backoff = False
        for t in resp.responses:
            for pr in t.partitions:
                key = (t.topic, pr.partition_index)
                st = sent.get(key)
                if st is None or not self._current(key, st):
                    continue
                p = st.partition
                if pr.error_code == Errors.NONE:
                    if key in throttled and pr.records:
                        quota.record(len(pr.records))
                    if pr.records:
                        batches = p.follower_batches(pr.records)
                        entries = p.epochs_if_appended(batches)
                        if entries is not None:
                            # A new leader epoch: its checkpoint entry is
                            # written off the loop, then the append finds it so.
                            if not await self._write_epochs(p, entries) or not self._current(key, st):
                                continue
                        p.append_as_follower(pr.records, pr.high_watermark, batches)
                    else:
                        p.append_as_follower(b"", pr.high_watermark)
                elif pr.error_code == Errors.OFFSET_OUT_OF_RANGE:
                    # OFFSET_OUT_OF_RANGE: our log end is past the leader's
                    # (truncate by epochs), or below its log start (not
                    # handled yet: a follower cannot restart its log there).
                    if p.log_end_offset < pr.log_start_offset:
                        log.error("broker %d: %s-%d is below leader %d's log start offset %d; "
                                  "this follower cannot catch up (not supported yet)", self.broker_id,
                                  key[0], key[1], self.leader_id, pr.log_start_offset)
                        backoff = True
                    else:
                        st.truncating = True
                else:
                    # FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER...:
                    # a LeaderAndIsr is on its way to one of us.
                    log.debug("broker %d: fetch %s-%d from leader %d: error %d", self.broker_id,
                              key[0], key[1], self.leader_id, pr.error_code)
                    backoff = True
        del resp
        if backoff:
            await asyncio.sleep(BACKOFF_S)


class ReplicationQuota:
    """A token bucket over the bytes this broker copies for throttled
    partitions (adding replicas of a reassignment with a throttle), one per
    broker as Kafka's follower.replication.throttled.rate is: when it is spent,
    fetches leave the throttled partitions out until it refills (Kafka's
    ReplicationQuotaManager does the same). Up to one second of the rate can
    be saved up. Loop-only, like the fetchers.

    Threads: the broker's event loop only (its fetchers share it).
    """

    def __init__(self, clock=time.monotonic):
        self.rate: int | None = None
        self._clock = clock
        self._tokens = 0.0
        self._t = clock()

    def set_rate(self, rate: int | None) -> None:
        self._refill()
        self.rate = rate
        if rate is not None:
            self._tokens = min(self._tokens, float(rate))

    def _refill(self) -> None:
        now = self._clock()
        if self.rate is not None:
            self._tokens = min(float(self.rate), self._tokens + (now - self._t) * self.rate)
        self._t = now

    def available(self) -> bool:
        self._refill()
        return self.rate is None or self._tokens > 0

    def record(self, nbytes: int) -> None:
        self._refill()
        self._tokens -= nbytes


class ReplicaFetcherManager:
    """Which fetcher (leader) each followed partition is fetched by.

    Threads: the broker's event loop only.
    """

    def __init__(self, broker, metadata_cache):
        self.broker_id = broker.broker_id
        self.sasl = broker.inter_broker_sasl
        self.cache = metadata_cache
        self._logs = broker.log_manager
        cfg = broker.config
        self.tls = cfg.inter_broker_tls()
        self.fetch_wait_max_ms = cfg.get("replica.fetch.wait.max.ms")
        self.fetch_max_bytes = cfg.get("replica.fetch.max.bytes")
        self.fetchers: dict[int, ReplicaFetcher] = {}
        self.quota = ReplicationQuota()
        self.throttled: dict[tuple[str, int], int] = {}   # partition -> its reassignment throttle (B/s)
        self._stopped = False   # once stopped (the broker is stopping) no fetcher starts again

    def set_throttle(self, key, rate: int | None) -> None:
        """Throttle (or not) the copying of partition key; the broker's quota
        runs at the lowest rate asked for by any throttled partition."""
        if rate:
            self.throttled[key] = rate
        else:
            self.throttled.pop(key, None)
        self.quota.set_rate(min(self.throttled.values()) if self.throttled else None)

    def endpoint(self, broker_id):
        return self.cache.endpoint(broker_id)

    @property
    def file_executor(self):
        """The LogManager's file thread (LogClosedError once stopping)."""
        return self._logs.file_executor

    def add(self, partition, truncate: bool):
        """Fetch partition from its leader (partition.leader_id), truncating first when asked."""
        if self._stopped:
            # A LeaderAndIsr applied while the broker stops (a controller moving
            # leadership during the controlled shutdown): a fetcher started now
            # would never be stopped, retrying its leader every BACKOFF_S.
            return
        key = (partition.topic, partition.index)
        for lid, f in self.fetchers.items():
            if lid != partition.leader_id:
                f.remove(key)
        f = self.fetchers.get(partition.leader_id)
        if f is None:
            f = self.fetchers[partition.leader_id] = ReplicaFetcher(self, partition.leader_id)
        f.add(partition, truncate)

    def remove(self, key):
        for f in self.fetchers.values():
            f.remove(key)
        if key in self.throttled:
            self.set_throttle(key, None)

    def following(self, key) -> int | None:
        """The leader key is fetched from, or None."""
        for lid, f in self.fetchers.items():
            if key in f.partitions:
                return lid
        return None

    async def stop(self):
        self._stopped = True
        fetchers, self.fetchers = list(self.fetchers.values()), {}
        for f in fetchers:
            await f.stop()
