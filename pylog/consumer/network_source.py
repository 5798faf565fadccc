"""NetworkSource: a Consumer's FetchSource over the Kafka protocol.

Fetches go to each partition's leader, one sessionless Fetch per broker, and
at most one Fetch in flight per broker. A Fetch may be sent ahead
(prefetch) and picked up by a later fetch(): the broker reads and sends
while the caller processes the previous records. An answer is used only for
the partitions whose requested offset is still the caller's position; the
rest of it is dropped (the caller sought, paused or lost the partition
meanwhile).

Failures are turned into per-partition errors or empty answers, never
exceptions from fetch(): a lost connection closes that broker's connection
and backs off before it is used again; NOT_LEADER_OR_FOLLOWER and
UNKNOWN_TOPIC_OR_PARTITION mark the metadata stale so the next send routes
afresh.

Fetch from the closest replica (KIP-392), as Java's consumer does: with
client_rack set, Fetches (v11) carry it as rack_id; a leader may answer a
partition with preferred_read_replica (and no records), and that partition is
then fetched from that broker until the lease (Java's metadata.max.age.ms)
expires, the broker leaves the metadata, its connection fails or it answers
the partition with any error -- then from the leader again. An
OFFSET_OUT_OF_RANGE from a read replica means it is behind, not that the
position is bad: it is not passed on (no offset reset), the next fetch goes
to the leader.

Auto commits are sent without waiting (send_commit), on a coordinator
connection of their own; their answers are taken by completed_commits(), and
every synchronous group request (commit, OffsetFetch) first waits for them,
so commits land in the order made, as on Java's one coordinator connection.
"""
from __future__ import annotations

import collections
import logging
import select
import socket
import time

from ..client.client import Client
from ..client.errors import COORDINATOR_ERRORS, ConnectionClosedError, SslAuthenticationError, check, error_for
from ..client.wire import Connection, wait_readable
from ..errors import CommitFailedError, PylogError
from ..protocol.error_codes import Errors
from ..protocol.messages import (
    FindCoordinatorRequest,
    ListOffsetsRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
)
from ..structs import OffsetAndMetadata, TopicPartition
from .source import FetchedPartition

__all__ = ["NetworkSource"]

log = logging.getLogger("pylog.consumer")

# Versions named explicitly so the request shape does not drift with the
# client's defaults. OffsetFetch v7 is the first with require_stable
# (KIP-447): a read_committed consumer sends it, as Java's consumer and
# librdkafka do, and a broker without it is refused (Java's
# UnsupportedVersionException) rather than read unstably.
OFFSET_COMMIT_VERSION = 3
OFFSET_COMMIT_MEMBER_EPOCH_VERSION = 9   # KIP-848 members commit with their member epoch
OFFSET_FETCH_VERSION = 3
OFFSET_FETCH_STABLE_VERSION = 7
OFFSET_FETCH = 9

# Errors after which the partition's leader must be looked up again.
METADATA_ERRORS = frozenset({Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.LEADER_NOT_AVAILABLE,
                             Errors.NOT_LEADER_OR_FOLLOWER, Errors.FENCED_LEADER_EPOCH,
                             Errors.UNKNOWN_LEADER_EPOCH})
# A commit from a member whose generation is gone: Java's CommitFailedException.
GENERATION_ERRORS = frozenset({Errors.ILLEGAL_GENERATION, Errors.UNKNOWN_MEMBER_ID,
                               Errors.REBALANCE_IN_PROGRESS, Errors.STALE_MEMBER_EPOCH})
# How long a preferred read replica is used before asking the leader again
# (Java: until the next metadata expiry, metadata.max.age.ms = 5 min).
READ_REPLICA_LEASE_S = 300.0


class _InFlight:
    __slots__ = ("conn", "offsets", "replica_tps", "sent_at")

    def __init__(self, conn, offsets, replica_tps):
        self.conn = conn
        self.offsets = offsets          # {TopicPartition: fetch_offset} asked
        self.replica_tps = replica_tps  # those asked of a preferred read replica, not the leader
        self.sent_at = time.monotonic()


class NetworkSource:
    """A FetchSource for a cluster reached at bootstrap_servers.

    Invariants: at most one Fetch in flight per broker node; a response is
    applied only to partitions whose position still equals the offset it was
    asked for. Thread-safety: the consumer's thread only, except wakeup(),
    which may be called from any thread (it writes one byte to a socketpair
    that fetch() selects on).
    """

    def __init__(self, bootstrap_servers: str, *, client_id: str = "pylog",
                 request_timeout_ms: int = 30000, retry_backoff_ms: int = 100,
                 reconnect_backoff_ms: int = 50, reconnect_backoff_max_ms: int = 1000,
                 client_rack: str | None = None, require_stable: bool = False, ssl_context=None, sasl=None):
        self.client = Client(bootstrap_servers, client_id=client_id,
                             timeout=request_timeout_ms / 1000, ssl_context=ssl_context, sasl=sasl)
        self.client_rack = client_rack or ""
        # OffsetFetch's require_stable: the consumer reads read_committed, so a
        # committed offset an open transaction is replacing is not used.
        self.require_stable = require_stable
        self._read_replicas: dict[TopicPartition, tuple[int, float]] = {}  # tp -> (node, lease end)
        self.retry_backoff = retry_backoff_ms / 1000
        self._reconnect_backoff = reconnect_backoff_ms / 1000
        self._reconnect_backoff_max = reconnect_backoff_max_ms / 1000
        self._in_flight: dict[int, _InFlight] = {}       # node id -> Fetch sent, unanswered
        # Fetches have connections of their own: a Fetch may stay in flight
        # across calls, and the Client's connections must be free for
        # request/response calls (commits, offsets) meanwhile.
        self._fetch_conns: dict[int, Connection] = {}
        self._node_backoff: dict[int, tuple[float, float]] = {}  # node -> (retry at, last delay)
        self._stale_topics: set[str] = set()
        self._coordinators: dict[str, tuple[int, str, int]] = {}  # group -> (node, host, port)
        # send_commit(): the coordinator connection its commits go on, those
        # sent and not answered (group, offsets), and outcomes not yet taken.
        self._commit_conn: Connection | None = None
        self._commits_in_flight: collections.deque = collections.deque()
        self._commits_done: list = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # --- metadata -------------------------------------------------------------

    def partitions_for(self, topic: str, refresh: bool = False) -> list[int] | None:
        try:
            return sorted(self.client.topic(topic, refresh=refresh).partitions)
        except PylogError as e:
            if getattr(e, "error_code", None) == Errors.UNKNOWN_TOPIC_OR_PARTITION:
                return None
            raise

    def topics(self) -> list[str]:
        md = self.client.metadata(None)
        return sorted(n for n, t in md.topics.items() if not t.is_internal and not t.error_code)

    def _leader(self, tp: TopicPartition) -> int | None:
        """tp's leader node, None when unknown now (retried on a later call)."""
        try:
            if tp.topic in self._stale_topics:
                self._stale_topics.discard(tp.topic)
                self.client.topic(tp.topic, refresh=True)
            return self.client.leader_for(tp.topic, tp.partition)
        except ConnectionClosedError:
            return None
        except PylogError as e:
            log.debug("no leader for %s-%d: %s", tp.topic, tp.partition, e)
            return None

    # --- fetch ----------------------------------------------------------------

    def prefetch(self, positions: dict[TopicPartition, int], *, max_wait_ms: int, min_bytes: int,
                 max_bytes: int, max_partition_bytes: int, isolation_level: int) -> None:
        """Send Fetches for positions now (to brokers with none in flight); a
        later fetch() with the same positions receives them."""
        self._send(positions, {"max_wait_ms": max_wait_ms, "min_bytes": min_bytes, "max_bytes": max_bytes,
                                   "partition_max_bytes": max_partition_bytes,
                                   "isolation_level": isolation_level})

    def _read_replica(self, tp: TopicPartition, now: float) -> int | None:
        """The preferred read replica to fetch tp from, None for the leader."""
        got = self._read_replicas.get(tp)
        if got is None:
            return None
        node, until = got
        cluster = self.client.cluster
        if now >= until or (cluster is not None and node not in cluster.brokers):
            # Expired, or gone from the metadata (Java's selectReadReplica):
            # the leader again, and it may name a replica anew.
            del self._read_replicas[tp]
            return None
        return node

    def _send(self, positions, kw) -> None:
        busy = {tp for f in self._in_flight.values() for tp in f.offsets}
        by_node: dict[int, dict] = {}
        replica_tps: set[TopicPartition] = set()
        now = time.monotonic()
        for tp, offset in positions.items():
            if tp in busy:
                continue
            node = self._read_replica(tp, now)
            if node is not None:
                replica_tps.add(tp)
            else:
                node = self._leader(tp)
            if node is None or node in self._in_flight:
                continue
            backoff = self._node_backoff.get(node)
            if backoff is not None and now < backoff[0]:
                continue
            by_node.setdefault(node, {})[tp] = offset
        for node, offsets in by_node.items():
            try:
                conn = self._fetch_connection(node)
                req = self.client.fetch_request(offsets, **kw)
                req.rack_id = self.client_rack  # sent from Fetch v11 on
                conn.send(req)
            except SslAuthenticationError:
                raise   # the settings are wrong: poll() says so rather than retrying forever
            except ConnectionClosedError as e:
                self._connection_failed(node, e)
                continue
            self._node_backoff.pop(node, None)
            self._in_flight[node] = _InFlight(conn, offsets, {tp for tp in offsets if tp in replica_tps})

    def _fetch_connection(self, node: int) -> Connection:
        conn = self._fetch_conns.get(node)
        if conn is None or conn.closed:
            broker = None if self.client.cluster is None else self.client.cluster.brokers.get(node)
            if broker is None:
                self.client.metadata([])
                broker = self.client.cluster.brokers.get(node)
            if broker is None:
                raise ConnectionClosedError(f"broker {node} is not in the cluster metadata")
            conn = self._fetch_conns[node] = self.client.open_connection(broker.host, broker.port)
        return conn

    def _connection_failed(self, node: int, exc) -> None:
        self._in_flight.pop(node, None)
        for tp in [tp for tp, (n, _) in self._read_replicas.items() if n == node]:
            del self._read_replicas[tp]
        conn = self._fetch_conns.pop(node, None)
        if conn is not None:
            conn.close()
        last = self._node_backoff.get(node, (0.0, 0.0))[1]
        delay = min(self._reconnect_backoff_max, max(self._reconnect_backoff, last * 2))
        self._node_backoff[node] = (time.monotonic() + delay, delay)
        # The broker may have moved or died: route afresh next time.
        self.client.cluster = None
        log.info("connection to broker %d failed (%s); retrying in %.2f s", node, exc, delay)

    def fetch(self, positions: dict[TopicPartition, int], *, max_wait_ms: int, min_bytes: int,
              max_bytes: int, max_partition_bytes: int,
              isolation_level: int) -> dict[TopicPartition, FetchedPartition]:
        self._send(positions, {"max_wait_ms": max_wait_ms, "min_bytes": min_bytes, "max_bytes": max_bytes,
                                   "partition_max_bytes": max_partition_bytes,
                                   "isolation_level": isolation_level})
        if not self._in_flight:
            # Nothing could be sent (no leader, backing off): wait a little so
            # the caller's loop does not spin, but stay wakeable.
            wait = min(max_wait_ms / 1000, self.retry_backoff)
            if wait > 0:
                self._wait([self._wake_r], wait)
                self._drain_wakeups()
            return {}
        out: dict[TopicPartition, FetchedPartition] = {}
        deadline = time.monotonic() + max_wait_ms / 1000
        while self._in_flight and not out:
            by_conn = {id(f.conn): node for node, f in self._in_flight.items()}
            ready, woken = wait_readable([f.conn for f in self._in_flight.values()], [self._wake_r],
                                         max(0.0, deadline - time.monotonic()))
            for conn in ready:
                self._receive(by_conn[id(conn)], positions, out)
            if woken:
                self._drain_wakeups()
                break
            if time.monotonic() >= deadline:
                break
        return out

    def _wait(self, fds, timeout: float) -> list:
        fds = [f if isinstance(f, int) else f.fileno() for f in fds]
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except (OSError, ValueError):
            return []
        return ready

    def _receive(self, node: int, positions, out) -> None:
        flight = self._in_flight.pop(node)
        try:
            resp = flight.conn.receive()
        except ConnectionClosedError as e:
            self._connection_failed(node, e)
            return
        if resp.error_code:
            log.info("fetch from broker %d failed: error %d", node, resp.error_code)
            return
        for t in resp.responses:
            for p in t.partitions:
                self._received(node, flight, TopicPartition(t.topic, p.partition_index), p, positions, out)

    def _received(self, node, flight, tp, p, positions, out) -> None:
        from_replica = tp in flight.replica_tps
        if p.error_code and from_replica and self._read_replicas.get(tp, (None,))[0] == node:
            # An error from a read replica: back to the leader. (Java keeps the
            # replica on UNKNOWN_LEADER_EPOCH; this consumer sends no leader
            # epoch, so it never gets that one.)
            del self._read_replicas[tp]
        elif p.error_code == Errors.NONE and p.preferred_read_replica >= 0 and p.preferred_read_replica != node:
            self._read_replicas[tp] = (p.preferred_read_replica, time.monotonic() + READ_REPLICA_LEASE_S)
            log.debug("fetching %s-%d from its preferred read replica %d", tp.topic, tp.partition,
                      p.preferred_read_replica)
        asked = flight.offsets.get(tp)
        if asked is None or positions.get(tp) != asked:
            return  # the caller moved on since this was asked
        if p.error_code == Errors.OFFSET_OUT_OF_RANGE and from_replica:
            return  # the replica is behind: the leader decides whether the position is out of range
        error = None
        if p.error_code:
            error = error_for(p.error_code, f"fetch {tp.topic}-{tp.partition} at offset {asked}")
            if p.error_code in METADATA_ERRORS:
                self._stale_topics.add(tp.topic)
        aborted = tuple((t.producer_id, t.first_offset) for t in p.aborted_transactions or ())
        out[tp] = FetchedPartition(p.records, p.high_watermark, p.log_start_offset, error, aborted)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def wakeup(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # the buffer is full: a wakeup is pending anyway

    # --- offsets --------------------------------------------------------------

    def list_offsets(self, timestamps: dict[TopicPartition, int],
                     isolation_level: int = 0) -> dict[TopicPartition, tuple[int, int]]:
        out: dict[TopicPartition, tuple[int, int]] = {}
        deadline = time.monotonic() + self.client.timeout
        todo = dict(timestamps)
        while todo:
            by_node: dict[int, dict[str, list]] = {}
            failed = None
            for tp, ts in todo.items():
                node = self._leader(tp)
                if node is None:
                    failed = error_for(Errors.LEADER_NOT_AVAILABLE, f"no leader for {tp.topic}-{tp.partition}")
                    continue
                by_node.setdefault(node, {}).setdefault(tp.topic, []).append(
                    ListOffsetsRequest.ListOffsetsPartition(partition_index=tp.partition, timestamp=ts))
            for node, topics in by_node.items():
                try:
                    resp = self.client.connection(node).request(ListOffsetsRequest(
                        replica_id=-1, isolation_level=isolation_level,
                        topics=[ListOffsetsRequest.ListOffsetsTopic(name=t, partitions=ps)
                                for t, ps in topics.items()]))
                except ConnectionClosedError as e:
                    self.client.cluster = None
                    failed = e
                    continue
                for t in resp.topics:
                    for p in t.partitions:
                        tp = TopicPartition(t.name, p.partition_index)
                        if tp not in todo:
                            continue
                        if p.error_code == Errors.NONE:
                            out[tp] = (p.offset, p.timestamp)
                            del todo[tp]
                        elif p.error_code in METADATA_ERRORS or p.error_code in (Errors.REQUEST_TIMED_OUT,
                                                                                 Errors.OFFSET_NOT_AVAILABLE):
                            self._stale_topics.add(t.name)
                            failed = error_for(p.error_code, f"list offsets of {t.name}-{p.partition_index}")
                        else:
                            check(p.error_code, f"list offsets of {t.name}-{p.partition_index}")
            if todo:
                if time.monotonic() >= deadline:
                    raise failed or error_for(Errors.REQUEST_TIMED_OUT, "list offsets timed out")
                time.sleep(self.retry_backoff)
        return out

    # --- group offsets --------------------------------------------------------

    def find_coordinator(self, group_id: str, refresh: bool = False):
        """(node_id, host, port) of the group's coordinator, retrying while
        the cluster answers COORDINATOR_NOT_AVAILABLE / LOAD_IN_PROGRESS."""
        cached = None if refresh else self._coordinators.get(group_id)
        if cached is not None:
            return cached
        deadline = time.monotonic() + self.client.timeout
        while True:
            try:
                resp = self.client.any_connection().request(
                    FindCoordinatorRequest(key=group_id, key_type=0))
            except ConnectionClosedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(self.retry_backoff)
                continue
            if resp.error_code == Errors.NONE:
                found = (resp.node_id, resp.host, resp.port)
                self._coordinators[group_id] = found
                return found
            if resp.error_code not in COORDINATOR_ERRORS or time.monotonic() >= deadline:
                check(resp.error_code, resp.error_message or f"coordinator of group {group_id!r}")
            time.sleep(self.retry_backoff)

    def _group_request(self, group_id: str, body, version, error_of):
        """body to the group's coordinator, again while it answers a
        coordinator error; version: an int, or a function of the connection."""
        if self._commits_in_flight:
            # Kafka's consumer sends every group request on one connection,
            # so the coordinator handles them in order: a commit or an
            # OffsetFetch after an auto commit sees it done.
            self.completed_commits(wait=True)
        deadline = time.monotonic() + self.client.timeout
        refresh = False
        while True:
            node = self.find_coordinator(group_id, refresh)[0]
            try:
                conn = self.client.connection(node)
                resp = conn.request(body, version(conn) if callable(version) else version)
            except ConnectionClosedError:
                if time.monotonic() >= deadline:
                    raise
                refresh = True
                time.sleep(self.retry_backoff)
                continue
            code = error_of(resp)
            if code not in COORDINATOR_ERRORS or time.monotonic() >= deadline:
                return resp
            refresh = code != Errors.COORDINATOR_LOAD_IN_PROGRESS
            time.sleep(self.retry_backoff)

    @staticmethod
    def _commit_request(group_id, offsets, generation_id, member_id, group_instance_id, member_epoch):
        """(OffsetCommit body, version)."""
        by_topic: dict[str, list] = {}
        for tp, om in offsets.items():
            by_topic.setdefault(tp.topic, []).append(OffsetCommitRequest.OffsetCommitRequestPartition(
                partition_index=tp.partition, committed_offset=om.offset,
                committed_leader_epoch=om.leader_epoch, committed_metadata=om.metadata or ""))
        # v3 has no group_instance_id (v7+); the broker checks the member id.
        body = OffsetCommitRequest(
            group_id=group_id, generation_id_or_member_epoch=generation_id, member_id=member_id,
            group_instance_id=group_instance_id if member_epoch else None,
            topics=[OffsetCommitRequest.OffsetCommitRequestTopic(name=t, partitions=ps)
                    for t, ps in by_topic.items()])
        return body, OFFSET_COMMIT_MEMBER_EPOCH_VERSION if member_epoch else OFFSET_COMMIT_VERSION

    @staticmethod
    def _commit_error(group_id: str, resp) -> PylogError | None:
        """The first partition error of an OffsetCommit answer as the
        exception a synchronous commit raises; None when all succeeded."""
        for t in resp.topics:
            for p in t.partitions:
                if p.error_code in GENERATION_ERRORS:
                    exc = CommitFailedError(
                        f"commit of group {group_id!r} refused ({p.error_code}): the group "
                        "rebalanced; the partitions may belong to another member now")
                    exc.error_code = p.error_code
                    return exc
                if p.error_code:
                    return error_for(p.error_code,
                                     f"commit offset of group {group_id!r} for {t.name}-{p.partition_index}")
        return None

    def commit_offsets(self, group_id: str, offsets: dict[TopicPartition, OffsetAndMetadata], *,
                       generation_id: int = -1, member_id: str = "",
                       group_instance_id: str | None = None, member_epoch: bool = False) -> None:
        """member_epoch: generation_id is a KIP-848 member epoch, which the
        broker takes from OffsetCommit v9 on. Commits sent earlier with
        send_commit() are answered first (_group_request)."""
        if not offsets:
            return
        body, version = self._commit_request(group_id, offsets, generation_id, member_id, group_instance_id,
                                             member_epoch)
        resp = self._group_request(group_id, body, version, lambda r: next(
            (p.error_code for t in r.topics for p in t.partitions if p.error_code in COORDINATOR_ERRORS), 0))
        error = self._commit_error(group_id, resp)
        if error is not None:
            raise error

    # --- commits without waiting (auto commit) --------------------------------

    def send_commit(self, group_id: str, offsets: dict[TopicPartition, OffsetAndMetadata], *,
                    generation_id: int = -1, member_id: str = "",
                    group_instance_id: str | None = None, member_epoch: bool = False) -> None:
        """Send an OffsetCommit and return without its answer, as Java's
        consumer sends its auto commits; the outcome comes from a later
        completed_commits(). Sent on a connection of its own so the Client's
        connections stay free for request/response calls; the order of
        commits is kept because every synchronous group request first
        waits for these answers (_group_request)."""
        body, version = self._commit_request(group_id, offsets, generation_id, member_id, group_instance_id,
                                             member_epoch)
        try:
            conn = self._commit_connection(group_id)
            conn.send(body, version)
        except SslAuthenticationError:
            raise
        except PylogError as e:   # no coordinator found, or the connection failed
            if self._commit_conn is not None and self._commit_conn.closed:
                self._commit_connection_failed(e)
            self._commits_done.append((offsets, e))
            return
        self._commits_in_flight.append((group_id, offsets))

    def completed_commits(self, wait: bool = False) -> list:
        """[(offsets, None or the exception)] of the commits sent with
        send_commit() answered since the last call, in send order. wait: until
        every one is answered (or its connection failed); otherwise only the
        answers already here."""
        while self._commits_in_flight:
            conn = self._commit_conn
            if not wait and not wait_readable([conn], (), 0.0)[0]:
                break
            self._receive_commit()
        done, self._commits_done = self._commits_done, []
        return done

    @property
    def commits_in_flight(self) -> int:
        return len(self._commits_in_flight)

    def _commit_connection(self, group_id: str) -> Connection:
        _node, host, port = self.find_coordinator(group_id)
        conn = self._commit_conn
        if conn is not None and not conn.closed and (conn.host, conn.port) == (host, port):
            return conn
        if self._commits_in_flight:
            # The coordinator moved: the answers to the old one come first,
            # so commits still reach the broker's log in the order sent.
            self.completed_commits(wait=True)
        if conn is not None:
            conn.close()
        self._commit_conn = self.client.open_connection(host, port)
        return self._commit_conn

    def _receive_commit(self) -> None:
        group_id, offsets = self._commits_in_flight[0]
        try:
            resp = self._commit_conn.receive()
        except ConnectionClosedError as e:
            self._commit_connection_failed(e)
            return
        self._commits_in_flight.popleft()
        error = self._commit_error(group_id, resp)
        if error is not None and error.error_code in COORDINATOR_ERRORS:
            # Java marks the coordinator unknown: the next commit looks it up again.
            self._coordinators.pop(group_id, None)
        self._commits_done.append((offsets, error))

    def _commit_connection_failed(self, exc) -> None:
        # Every commit in flight on it is lost, its outcome unknown (retriable).
        conn, self._commit_conn = self._commit_conn, None
        if conn is not None:
            conn.close()
        for group_id, offsets in self._commits_in_flight:
            self._coordinators.pop(group_id, None)
            self._commits_done.append((offsets, exc))
        self._commits_in_flight.clear()

    def committed_offsets(self, group_id: str, partitions: list[TopicPartition],
                          timeout: float | None = None) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets. With require_stable, a partition
        whose offset an open transaction is committing is answered
        UNSTABLE_OFFSET_COMMIT: asked again (retry_backoff apart) until the
        transaction ends or timeout (default: the request timeout) passes,
        then that error is raised (retriable), as Java's consumer retries
        UnstableOffsetCommitException until its timer runs out."""
        by_topic: dict[str, list[int]] = {}
        for tp in partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        body = OffsetFetchRequest(group_id=group_id, require_stable=self.require_stable, topics=[
            OffsetFetchRequest.OffsetFetchRequestTopic(name=t, partition_indexes=ps)
            for t, ps in by_topic.items()])
        deadline = time.monotonic() + (self.client.timeout if timeout is None else timeout)
        while True:
            resp = self._group_request(group_id, body, self._offset_fetch_version, lambda r: r.error_code or next(
                (p.error_code for t in r.topics for p in t.partitions if p.error_code in COORDINATOR_ERRORS), 0))
            check(resp.error_code, f"fetch committed offsets of group {group_id!r}")
            unstable = [f"{t.name}-{p.partition_index}" for t in resp.topics for p in t.partitions
                        if p.error_code == Errors.UNSTABLE_OFFSET_COMMIT]
            if not unstable:
                break
            if time.monotonic() + self.retry_backoff > deadline:
                raise error_for(Errors.UNSTABLE_OFFSET_COMMIT,
                                f"group {group_id!r}: an open transaction commits offsets of {', '.join(unstable)}")
            time.sleep(self.retry_backoff)
        out: dict[TopicPartition, OffsetAndMetadata | None] = {tp: None for tp in partitions}
        for t in resp.topics:
            for p in t.partitions:
                check(p.error_code, f"committed offset of group {group_id!r} for {t.name}-{p.partition_index}")
                if p.committed_offset >= 0:
                    out[TopicPartition(t.name, p.partition_index)] = OffsetAndMetadata(
                        p.committed_offset, p.metadata or "", -1)
        return out

    def _offset_fetch_version(self, conn: Connection) -> int:
        if not self.require_stable:
            return OFFSET_FETCH_VERSION
        theirs = conn.api_versions.get(OFFSET_FETCH, (0, -1))[1]
        if theirs < OFFSET_FETCH_STABLE_VERSION:
            raise error_for(Errors.UNSUPPORTED_VERSION,
                            f"broker {conn.host}:{conn.port} answers OffsetFetch up to v{theirs}: no require_stable "
                            "for a read_committed consumer")
        return OFFSET_FETCH_STABLE_VERSION

    # --- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        self._in_flight.clear()
        if self._commit_conn is not None:
            self._commit_conn.close()
            self._commit_conn = None
        self._commits_in_flight.clear()
        for conn in self._fetch_conns.values():
            conn.close()
        self._fetch_conns.clear()
        self.client.close()
        self._wake_r.close()
        self._wake_w.close()
