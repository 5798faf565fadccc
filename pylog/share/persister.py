"""The persister: how a share-partition's leader reaches the share
coordinator of its state (Kafka's DefaultStatePersister and
PersisterStateManager are the model).

The coordinator of share-partition (group, topic id, partition) is the leader
of its `__share_group_state` partition (coordinator.partition_for), looked up
in this broker's metadata cache each time a request is (re)sent, so a request
follows the state partition across leader changes. When this broker is that
leader the call is in-process (the share coordinator's own methods); else it
is Kafka's RPC over the wire: InitializeShareGroupState (83),
ReadShareGroupState (84), WriteShareGroupState (85), DeleteShareGroupState
(86), ReadShareGroupStateSummary (87).

- **Batching**: at most one request in flight per coordinator broker; the
  calls that arrive meanwhile go out together, one request per (API, group)
  carrying all their share-partitions.
- **Retries**: COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS,
  NOT_COORDINATOR, UNKNOWN_TOPIC_OR_PARTITION and a lost connection look the
  coordinator up again after Kafka's backoff (1 s, doubling with jitter, at
  most 30 s; 5 attempts, then the last error is the answer). Every other
  error (FENCED_LEADER_EPOCH, FENCED_STATE_EPOCH, ...) is the answer.
- **Uninitialized**: the wire's Read answers INVALID_REQUEST for a
  share-partition never initialized (Kafka 4.2+'s share coordinator); the
  caller gets None, as from the in-process read.

Threads: the event loop's thread only.
"""
from __future__ import annotations

import asyncio
import logging
import random

from ..broker.replica_fetcher import LeaderConnection
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from .coordinator import TOPIC, ShareState

log = logging.getLogger("pylog.share")

REQUEST_BACKOFF_S, REQUEST_BACKOFF_MAX_S, MAX_ATTEMPTS = 1.0, 30.0, 5
REQUEST_TIMEOUT_S = 30.0
INITIALIZE, READ, WRITE, DELETE, SUMMARY = 83, 84, 85, 86, 87
_RETRIABLE = frozenset({Errors.COORDINATOR_NOT_AVAILABLE, Errors.COORDINATOR_LOAD_IN_PROGRESS,
                        Errors.NOT_COORDINATOR, Errors.UNKNOWN_TOPIC_OR_PARTITION})
_REQUESTS = {INITIALIZE: (m.InitializeShareGroupStateRequest, "InitializeStateData"),
             READ: (m.ReadShareGroupStateRequest, "ReadStateData"),
             WRITE: (m.WriteShareGroupStateRequest, "WriteStateData"),
             DELETE: (m.DeleteShareGroupStateRequest, "DeleteStateData"),
             SUMMARY: (m.ReadShareGroupStateSummaryRequest, "ReadStateSummaryData")}


class _Call:
    __slots__ = ("api", "group_id", "topic_id", "partition", "fields", "future")

    def __init__(self, api, group_id, topic_id, partition, fields):
        self.api, self.group_id, self.topic_id, self.partition = api, group_id, topic_id, partition
        self.fields = fields            # the PartitionData's fields beyond Partition
        self.future = asyncio.get_running_loop().create_future()


class Persister:
    """See the module docstring. `coordinator` is this broker's
    ShareCoordinator. Event-loop thread only."""

    def __init__(self, broker, coordinator):
        self.broker = broker
        self.coordinator = coordinator
        self._queues: dict[int, list[_Call]] = {}     # coordinator broker id -> calls not sent yet
        self._busy: set[int] = set()
        self._conns: dict[int, LeaderConnection] = {}
        self._tasks: set = set()
        self._stopped = False

    # ---- the operations (the in-process coordinator's signatures) ----

    async def initialize(self, group_id, topic_id, partition, state_epoch, start_offset) -> int:
        return (await self._call(INITIALIZE, group_id, topic_id, partition,
                                 {"state_epoch": state_epoch, "start_offset": start_offset}))[0]

    async def read(self, group_id, topic_id, partition, leader_epoch):
        """(error, ShareState or None when never initialized)."""
        return await self._call(READ, group_id, topic_id, partition, {"leader_epoch": leader_epoch})

    async def write(self, group_id, topic_id, partition, state_epoch, leader_epoch, start_offset, batches) -> int:
        return (await self._call(WRITE, group_id, topic_id, partition, {
            "state_epoch": state_epoch, "leader_epoch": leader_epoch, "start_offset": start_offset,
            "state_batches": [m.WriteShareGroupStateRequest.StateBatch(
                first_offset=f, last_offset=l, delivery_state=s, delivery_count=c) for f, l, s, c in batches]}))[0]

    async def delete(self, group_id, topic_id, partition) -> int:
        return (await self._call(DELETE, group_id, topic_id, partition, {}))[0]

    async def read_summary(self, group_id, topic_id, partition):
        """(error, ShareState or None): start offset, state and leader epochs
        (no batches over the wire)."""
        return await self._call(SUMMARY, group_id, topic_id, partition, {"leader_epoch": -1})

    async def stop(self):
        # Stopped first: a cancelled send's finally starts no new one (whose
        # connection would outlive the close below).
        self._stopped = True
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self._queues.values():
            for c in queue:
                if not c.future.done():
                    c.future.set_result((Errors.COORDINATOR_NOT_AVAILABLE, None))
        self._queues.clear()
        for c in self._conns.values():
            c.close()
        self._conns.clear()

    # ---- one call, with its retries ----

    async def _call(self, api, group_id, topic_id, partition, fields):
        backoff = REQUEST_BACKOFF_S
        out = (Errors.COORDINATOR_NOT_AVAILABLE, None)
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, REQUEST_BACKOFF_MAX_S)
            if self.broker.stopping or self._stopped:
                return out
            node = self._coordinator_node(group_id, topic_id, partition)
            if node is None:
                out = (Errors.COORDINATOR_NOT_AVAILABLE, None)
                continue
            if node == self.broker.broker_id:
                out = await self._local(api, group_id, topic_id, partition, fields)
            else:
                call = _Call(api, group_id, topic_id, partition, fields)
                self._queues.setdefault(node, []).append(call)
                self._kick(node)
                out = await call.future
            if out[0] not in _RETRIABLE:
                return out
        return out

    def _coordinator_node(self, group_id, topic_id, partition):
        """The broker leading the share-partition's state partition, or None
        (the topic being created, or the partition without a live leader)."""
        c = self.coordinator
        if not c.ensure_topic():
            return None
        index = c.partition_of(group_id, topic_id, partition)
        ep = c.writer.leader_endpoint(TOPIC, index)
        return None if ep is None else ep[0]

    async def _local(self, api, group_id, topic_id, partition, f):
        c = self.coordinator
        if api == INITIALIZE:
            return await c.initialize(group_id, topic_id, partition, f["state_epoch"], f["start_offset"]), None
        if api == READ:
            return await c.read(group_id, topic_id, partition, f["leader_epoch"])
        if api == WRITE:
            batches = [(b.first_offset, b.last_offset, b.delivery_state, b.delivery_count)
                       for b in f["state_batches"]]
            return await c.write(group_id, topic_id, partition, f["state_epoch"], f["leader_epoch"],
                                 f["start_offset"], batches), None
        if api == DELETE:
            return await c.delete(group_id, topic_id, partition), None
        return await c.read_summary(group_id, topic_id, partition)

    # ---- the wire: one request in flight per coordinator broker ----

    def _kick(self, node):
        if self._stopped:
            for c in self._queues.pop(node, ()):
                if not c.future.done():
                    c.future.set_result((Errors.COORDINATOR_NOT_AVAILABLE, None))
            return
        if node in self._busy or not self._queues.get(node):
            return
        self._busy.add(node)
        t = asyncio.ensure_future(self._send(node))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _send(self, node):
        try:
            queue = self._queues[node]
            first = queue[0]
            batch = [c for c in queue if (c.api, c.group_id) == (first.api, first.group_id)]
            self._queues[node] = [c for c in queue if (c.api, c.group_id) != (first.api, first.group_id)]
            try:
                resp = await self._request(node, first.api, first.group_id, batch)
            except asyncio.CancelledError:
                for c in batch:
                    if not c.future.done():
                        c.future.set_result((Errors.COORDINATOR_NOT_AVAILABLE, None))
                raise
            except Exception as e:  # unreachable, the connection lost: looked up again by the caller
                log.info("%s to broker %d failed: %s", _REQUESTS[first.api][0].__name__[:-len("Request")], node, e)
                conn = self._conns.pop(node, None)
                if conn is not None:
                    conn.close()
                resp = None
            self._answer(first.api, batch, resp)
        finally:
            self._busy.discard(node)
            self._kick(node)

    async def _request(self, node, api, group_id, batch):
        ep = self.broker.metadata_cache.brokers.get(node)
        if ep is None:
            raise ConnectionError(f"broker {node} is not known")
        conn = self._conns.get(node)
        if conn is None or (conn.host, conn.port) != (ep.host, ep.port):
            if conn is not None:
                conn.close()
            conn = self._conns[node] = LeaderConnection(ep.host, ep.port, f"share-persister-{self.broker.broker_id}",
                                                        self.broker.config.inter_broker_tls(),
                                                        self.broker.inter_broker_sasl)
        cls, topic_cls = _REQUESTS[api]
        by_topic: dict = {}
        for c in batch:
            by_topic.setdefault(c.topic_id, []).append(cls.PartitionData(partition=c.partition, **c.fields))
        req = cls(group_id=group_id, topics=[getattr(cls, topic_cls)(topic_id=tid, partitions=ps)
                                             for tid, ps in by_topic.items()])
        return await conn.request(req, 1 if api == SUMMARY else 0, REQUEST_TIMEOUT_S)

    def _answer(self, api, batch, resp):
        rows = {}
        for r in (resp.results if resp is not None else ()):
            for p in r.partitions:
                rows[(r.topic_id, p.partition)] = p
        for c in batch:
            if c.future.done():
                continue
            p = rows.get((c.topic_id, c.partition))
            if p is None:
                c.future.set_result((Errors.COORDINATOR_NOT_AVAILABLE if resp is None
                                     else Errors.UNKNOWN_SERVER_ERROR, None))
            elif api == READ and p.error_code == Errors.INVALID_REQUEST:
                c.future.set_result((Errors.NONE, None))     # never initialized (see the module docstring)
            elif p.error_code:
                c.future.set_result((p.error_code, None))
            elif api == READ:
                c.future.set_result((Errors.NONE, ShareState(
                    -1, p.state_epoch, c.fields["leader_epoch"], p.start_offset,
                    [(b.first_offset, b.last_offset, b.delivery_state, b.delivery_count)
                     for b in p.state_batches], -1)))
            elif api == SUMMARY:
                st = None
                if p.start_offset >= 0:
                    st = ShareState(-1, p.state_epoch, p.leader_epoch, p.start_offset, [], -1)
                    st.delivery_complete = max(p.delivery_complete_count, 0)
                c.future.set_result((Errors.NONE, st))
            else:
                c.future.set_result((Errors.NONE, None))
