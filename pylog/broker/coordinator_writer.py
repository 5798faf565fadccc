"""The broker's side of coordinator/writer.py: the one place a coordinator's
narrow PartitionWriter interface meets the Broker (its LogManager, metadata
cache, controller and purgatory).

Creating an internal topic goes to the control plane's one function for them
(Broker.ensure_internal_topic).

Threads: the event loop's thread only (the embedded store is a broker core
without a listener, so it uses this writer on its broker's loop too).
"""
from __future__ import annotations

import asyncio

from ..errors import UnknownTopicOrPartitionError
from ..groups import offsets_topic as ot
from ..groups.group_configs import effective_group_config
from ..protocol.error_codes import Errors
from ..transactions.batches import scan_with_transactions, transactional_batch
from .purgatory import HIGH_WATERMARK, DelayedOperation


class BrokerPartitionWriter:
    """PartitionWriter over this broker's partitions. Event-loop thread only."""

    def __init__(self, log_manager, broker, purgatory):
        self.logs = log_manager
        self.broker = broker
        self.purgatory = purgatory
        self.node_id = broker.broker_id
        self.loads_in_steps = True
        self._creating = None           # an internal topic's creation in flight (a task)

    # ---- the topic: the cluster's metadata (every broker is a cluster member) ----

    def partition_count(self, topic):
        parts = self.broker.metadata_cache.topics.get(topic)
        return max(parts) + 1 if parts else None

    def led_partitions(self, topic):
        return sorted(i for (t, i), p in self.logs.partitions.items() if t == topic and p.is_leader)

    def topic_image(self):
        cache = self.broker.metadata_cache
        return {name: (cache.topic_id(name), max(parts) + 1) for name, parts in cache.topics.items() if parts}

    def partition_racks(self, topic, count):
        cache = self.broker.metadata_cache
        parts, racks = cache.topics.get(topic, {}), cache.broker_racks
        out = []
        for i in range(count):
            st = parts.get(i)
            out.append([] if st is None else [racks[r] for r in st.replicas if racks.get(r) is not None])
        return out

    def metadata_version(self):
        return self.broker.metadata_cache.version

    def partition_exists(self, topic, index) -> bool:
        return index in self.broker.metadata_cache.topics.get(topic, {})

    def leader_endpoint(self, topic, index):
        cache = self.broker.metadata_cache
        st = cache.topics.get(topic, {}).get(index)
        ep = cache.brokers.get(st.leader) if st is not None and st.leader >= 0 else None
        return None if ep is None else (ep.id, ep.host, ep.port)

    def group_config(self, group_id) -> dict:
        """The group's effective KIP-848 configs ({"consumer.session.timeout.ms": int,
        "consumer.heartbeat.interval.ms": int}): its GROUP overrides, else the broker's values."""
        return effective_group_config(self.broker.config, self.broker.metadata_cache.group_configs.get(group_id))

    # ---- records ----

    def append(self, topic, index, keys, values) -> int:
        return ot.append(self.logs.get_partition(topic, index), keys, values)

    def read(self, topic, index):
        p = self.logs.partitions.get((topic, index))
        if p is None:
            raise UnknownTopicOrPartitionError(f"this broker does not host {topic}-{index}")
        if topic == ot.TOPIC:
            # Transactional offset commits: replay needs their producer and markers.
            return scan_with_transactions(p.log)
        return p.log.scan()

    def append_transactional(self, topic, index, producer_id, producer_epoch, keys, values) -> int:
        """append, as one transactional batch of the producer (TxnOffsetCommit)."""
        batch = transactional_batch(keys, values, producer_id, producer_epoch)
        return self.logs.get_partition(topic, index).append_as_leader(batch, -1).last_offset

    def append_txn_marker(self, topic, index, producer_id, producer_epoch, coordinator_epoch, committed) -> int:
        p = self.logs.get_partition(topic, index)
        return p.append_txn_marker(producer_id, producer_epoch, coordinator_epoch, committed).last_offset

    def commit_outcome(self, topic, index, offset):
        p = self.logs.partitions.get((topic, index))
        if p is None:
            return UnknownTopicOrPartitionError.error_code
        return p.produce_outcome(offset)

    async def wait_committed(self, topic, index, offset, timeout_s) -> int:
        p = self.logs.partitions.get((topic, index))
        if p is None:
            return UnknownTopicOrPartitionError.error_code
        broker = self.broker
        await self.purgatory.wait(_DelayedWrite(p, offset, lambda: broker.stopping), (p,), (HIGH_WATERMARK,),
                                  timeout_s)
        code = p.produce_outcome(offset)
        return Errors.REQUEST_TIMED_OUT if code is None else code

    # ---- creating the topic (the control plane's job: one seam) ----

    def create_topic(self, topic, num_partitions, replication_factor, configs):
        """The control plane's one function for internal topics
        (Broker.ensure_internal_topic), in the background: leadership, and so
        loading, arrives when the controller has decided."""
        if self._creating is not None and not self._creating.done():
            return
        self._creating = asyncio.ensure_future(self.broker.ensure_internal_topic(topic))

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
