"""The broker's side of coordinator/writer.py: the one place a coordinator's
narrow PartitionWriter interface meets the Broker (its LogManager, metadata
cache, controller and purgatory).

Creating an internal topic goes through `_create_topic`, the seam the control
plane's own function replaces.

Threads: the event loop's thread only. `local(...)` (no broker: the embedded
store) is called from any thread under the store's lock; it never waits.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..errors import PylogError, UnknownTopicOrPartitionError
from ..groups import offsets_topic as ot
from .purgatory import HIGH_WATERMARK, DelayedOperation

log = logging.getLogger("pylog.broker")

NONE, REQUEST_TIMED_OUT, TOPIC_ALREADY_EXISTS = 0, 7, 36
# The client id a broker uses to ask the controller for an internal topic (a
# name in the controller's logs; it grants nothing).
INTERNAL_CLIENT_ID = "pylog-group-coordinator"


class BrokerPartitionWriter:
    """PartitionWriter over this broker's partitions. Event-loop thread only
    (see the module docstring for `local`)."""

    def __init__(self, log_manager, broker=None, purgatory=None):
        self.logs = log_manager
        self.broker = broker            # None: a data directory used without a broker
        self.purgatory = purgatory
        self.node_id = broker.broker_id if broker is not None else -1
        self.loads_in_steps = broker is not None
        # Fixed for the broker's life (its config); asked on every commit.
        self._cluster = broker is not None and broker.in_cluster
        self._creating = None           # an internal topic's creation in flight (a task)
        self._too_few_warned = 0.0

    @classmethod
    def local(cls, log_manager):
        """A data directory without a broker (the embedded store): one
        replica, so every append is committed once it returns."""
        return cls(log_manager)

    # ---- the topic ----

    def partition_count(self, topic):
        if self._cluster:
            parts = self.broker.metadata_cache.topics.get(topic)
            return max(parts) + 1 if parts else None
        meta = self.logs.topics.get(topic)
        return meta.num_partitions if meta is not None else None

    def led_partitions(self, topic):
        return sorted(i for (t, i), p in self.logs.partitions.items() if t == topic and p.is_leader)

    def partition_exists(self, topic, index) -> bool:
        if self._cluster:
            return index in self.broker.metadata_cache.topics.get(topic, {})
        meta = self.logs.topics.get(topic)
        return meta is not None and 0 <= index < meta.num_partitions

    def leader_endpoint(self, topic, index):
        if not self._cluster:
            if self.broker is None or self.partition_count(topic) is None:
                return None
            return self.broker.broker_id, self.broker.advertised_host, self.broker.advertised_port
        cache = self.broker.metadata_cache
        st = cache.topics.get(topic, {}).get(index)
        ep = cache.brokers.get(st.leader) if st is not None and st.leader >= 0 else None
        return None if ep is None else (ep.id, ep.host, ep.port)

    # ---- records ----

    def append(self, topic, index, keys, values) -> int:
        return ot.append(self.logs.get_partition(topic, index), keys, values)

    def read(self, topic, index):
        p = self.logs.partitions.get((topic, index))
        if p is None:
            raise UnknownTopicOrPartitionError(f"this broker does not host {topic}-{index}")
        return p.log.scan()

    def commit_outcome(self, topic, index, offset):
        p = self.logs.partitions.get((topic, index))
        if p is None:
            return UnknownTopicOrPartitionError.error_code
        return p.produce_outcome(offset)

    async def wait_committed(self, topic, index, offset, timeout_s) -> int:
        p = self.logs.partitions.get((topic, index))
        if p is None:
            return UnknownTopicOrPartitionError.error_code
        stopping = (lambda: self.broker.stopping) if self.broker is not None else (lambda: False)
        if self.purgatory is not None:
            await self.purgatory.wait(_DelayedWrite(p, offset, stopping), (p,), (HIGH_WATERMARK,), timeout_s)
        code = p.produce_outcome(offset)
        return REQUEST_TIMED_OUT if code is None else code

    # ---- creating the topic (the control plane's job: one seam) ----

    def create_topic(self, topic, num_partitions, replication_factor, configs):
        _create_topic(self, topic, num_partitions, replication_factor, configs)

    async def stop(self):
        t = self._creating
        if t is not None:
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)


class _DelayedWrite(DelayedOperation):
    """A coordinator's write waiting for the high watermark. Event-loop thread only."""

    __slots__ = ("p", "offset", "stopping")

    def __init__(self, p, offset, stopping):
        self.p, self.offset, self.stopping = p, offset, stopping

    def try_complete(self) -> bool:
        return self.stopping() or self.p.produce_outcome(self.offset) is not None


def _create_topic(w: BrokerPartitionWriter, topic, n, rf, configs):
    """Today's ways to create an internal topic, until the control plane's one
    function replaces this body: alone, the LogManager creates it at once
    (one replica); in a cluster, the active controller is asked (directly, or
    with CreateTopics on a worker thread), and leadership arrives later."""
    if not w._cluster:
        if w.partition_count(topic) is None:
            w.logs.create_topic(topic, n, 1, configs)
        return
    if w._creating is not None and not w._creating.done():
        return
    live = len(w.broker.metadata_cache.brokers)
    if live < rf:
        # As Kafka: no topic with fewer replicas than asked; clients retry.
        if time.monotonic() - w._too_few_warned >= 10:
            w._too_few_warned = time.monotonic()
            log.warning("broker %d: %s not created: %d live brokers, replication factor %d",
                        w.node_id, topic, live, rf)
        return
    w._creating = asyncio.ensure_future(_create_in_cluster(w, topic, n, rf, configs))


async def _create_in_cluster(w, topic, n, rf, configs):
    ctl = w.broker.controller
    try:
        if ctl is not None and ctl.is_active:
            await asyncio.wrap_future(ctl.submit("create_topic", topic, n, rf, None, configs))
            code = NONE
        else:
            ep = w.broker.metadata_cache.controller()
            if ep is None:
                return
            code = await asyncio.get_running_loop().run_in_executor(
                None, _create_topic_by_wire, ep.host, ep.port, w.node_id, topic, n, rf, configs)
    except PylogError as e:
        code = e.error_code
    except Exception as e:  # a connection failure: the next FindCoordinator asks again
        log.warning("broker %d: creating %s failed: %s", w.node_id, topic, e)
        return
    if code in (NONE, TOPIC_ALREADY_EXISTS):
        log.info("broker %d: %s created (%d partitions, replication factor %d)%s", w.node_id, topic, n, rf,
                 " by another broker" if code else "")
    else:
        log.warning("broker %d: the controller refused to create %s: error %d", w.node_id, topic, code)


def _create_topic_by_wire(host, port, broker_id, topic, n, rf, configs) -> int:
    """CreateTopics sent to the controller at host:port (on a worker thread);
    its error code."""
    from ..client.wire import Connection
    from ..protocol.messages import CreateTopicsRequest as Q
    req = Q(topics=[Q.CreatableTopic(
        name=topic, num_partitions=n, replication_factor=rf, assignments=[],
        configs=[Q.CreatableTopicConfig(name=k, value=v) for k, v in configs.items()])], timeout_ms=30000)
    with Connection(host, port, client_id=f"{INTERNAL_CLIENT_ID}-{broker_id}", timeout=30) as c:
        resp = c.request(req)
    return resp.topics[0].error_code

