"""The share-group request handlers (KIP-932): ShareGroupHeartbeat (76),
ShareGroupDescribe (77), ShareFetch (78), ShareAcknowledge (79), and the
pieces they run on: the share groups (groups.py), the share coordinator
(coordinator.py) and the share-partition manager (manager.py), built once
per broker by `ShareApis.start`.

ACLs: the broker's authz_guard checks the group (and the topics the answer
names); ShareFetch and ShareAcknowledge need READ on each topic, checked per
partition by the manager, and AlterShareGroupOffsets per topic here.

In a cluster a share-partition's leader reaches the share coordinator of its
state through the persister (persister.py), over the wire when another
broker leads the state partition.

Threads: the event loop's thread only.
"""
from __future__ import annotations

import asyncio

from ..broker.authorizer import READ, TOPIC
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..protocol.pylog_tags import asks_share_leader_stats, share_delay_stats_field
from ..protocol.schema import ZERO_UUID
from .coordinator import ShareCoordinator
from .groups import ShareGroups
from .manager import SharePartitionManager
from .persister import Persister
from .persister_apis import PersisterApis
from .partition import ACKNOWLEDGED, ARCHIVED



class ShareApis:
    def __init__(self, broker, group_coordinator, writer, purgatory):
        self.broker = broker
        cache = broker.metadata_cache
        self.groups = ShareGroups(broker.config, group_coordinator, lambda gid: cache.group_configs.get(gid))
        group_coordinator.share = self.groups     # ListGroups lists share groups too (groups/api.py)
        self.coordinator = ShareCoordinator(broker.config, writer)
        self.persister = Persister(broker, self.coordinator)
        self.persister_apis = PersisterApis(self.coordinator)
        self.manager = SharePartitionManager(broker, purgatory, self.persister, self.groups)
        self.groups.share_state_topic = self.coordinator.ensure_topic
        self.groups.initialize = self.manager.initialize
        self.groups.has_state = lambda gid: any(k[0] == gid for k in self.coordinator.states)
        self.groups.delete_state = self._delete_state

    def table(self):
        # Keyed by the codecs' api keys: this package is imported by the broker package.
        return {m.ShareGroupHeartbeatRequest.API_KEY: self.heartbeat,
                m.ShareGroupDescribeRequest.API_KEY: self.describe,
                m.ShareFetchRequest.API_KEY: self.share_fetch,
                m.ShareAcknowledgeRequest.API_KEY: self.share_acknowledge,
                m.DescribeShareGroupOffsetsRequest.API_KEY: self.describe_offsets,
                m.AlterShareGroupOffsetsRequest.API_KEY: self.alter_offsets,
                m.DeleteShareGroupOffsetsRequest.API_KEY: self.delete_offsets}

    def start(self):
        self.coordinator.start()

    async def stop(self):
        self.manager.stop()
        self.groups.stop()
        await self.persister.stop()
        await self.coordinator.stop()

    def heartbeat(self, header, req):
        return self.groups.heartbeat(header, req)

    def describe(self, header, req):
        return self.groups.describe(header, req)

    def share_fetch(self, header, req):
        return self.manager.share_fetch(header, req)

    def share_acknowledge(self, header, req):
        return self.manager.share_acknowledge(header, req)

    async def describe_offsets(self, header, req):
        """DescribeShareGroupOffsets: each share-partition's start offset and
        leader epoch as the share coordinator holds them (this broker's, or
        another's through ReadShareGroupStateSummary), and (v1, KIP-1226)
        its lag: the offsets below the high watermark not yet delivered to
        completion. A share-partition never initialized has start offset -1.
        With pylog's SHARE_LEADER_STATS tag: the statistics of the share-partitions
        led here instead (pylog_tags)."""
        R = m.DescribeShareGroupOffsetsResponse
        if asks_share_leader_stats(req):
            return self._leader_stats(req)
        out = []
        cache = self.broker.metadata_cache
        states = self.coordinator.states
        for g in req.groups:
            gid = g.group_id
            code = self.groups.coordinator.coordinator_error(gid)
            if not code and gid not in self.groups.groups and not any(k[0] == gid for k in states):
                code = Errors.GROUP_ID_NOT_FOUND
            if code:
                out.append(R.DescribeShareGroupOffsetsResponseGroup(group_id=gid, topics=[], error_code=code,
                                                                    error_message=None))
                continue
            if g.topics is None:
                wanted = {}
                for (sg, tid, idx) in self._known_share_partitions(gid):
                    name = cache.topic_name(tid)
                    if sg == gid and name is not None:
                        wanted.setdefault(name, []).append(idx)
            else:
                wanted = {t.topic_name: list(t.partitions) for t in g.topics}
            topics = []
            for name, parts in sorted(wanted.items()):
                tid = cache.topic_ids.get(name)
                rows = []
                for idx in sorted(parts):
                    if tid is None or not cache.has_partition(name, idx):
                        rows.append(R.DescribeShareGroupOffsetsResponsePartition(
                            partition_index=idx, start_offset=-1, leader_epoch=-1,
                            error_code=Errors.UNKNOWN_TOPIC_OR_PARTITION))
                        continue
                    st = await self._state_summary(gid, tid, idx)
                    if st is None or st.start_offset < 0:     # never initialized, or not yet resolved
                        rows.append(R.DescribeShareGroupOffsetsResponsePartition(
                            partition_index=idx, start_offset=-1, leader_epoch=-1, lag=-1))
                        continue
                    rows.append(R.DescribeShareGroupOffsetsResponsePartition(
                        partition_index=idx, start_offset=st.start_offset, leader_epoch=st.leader_epoch,
                        lag=self._lag(name, idx, st)))
                    self._tag_stats(rows[-1], gid, tid, idx)
                topics.append(R.DescribeShareGroupOffsetsResponseTopic(topic_name=name, topic_id=tid or ZERO_UUID,
                                                                       partitions=rows))
            out.append(R.DescribeShareGroupOffsetsResponseGroup(group_id=gid, topics=topics, error_code=0))
        return R(throttle_time_ms=0, groups=out)

    def _tag_stats(self, entry, gid, tid, idx) -> None:
        """The leader's own statistics of a share-partition, as pylog's tagged fields."""
        self.manager.dlq.tag_stats(entry, gid, tid, idx)
        h = self.manager.held.get((gid, tid, idx))
        stats = h.dx.stats() if h is not None and h.dx is not None else None
        if stats is not None:
            entry._unknown_tagged_fields = [*(entry._unknown_tagged_fields or ()), share_delay_stats_field(*stats)]

    def _leader_stats(self, req):
        """Per named partition led here, the leader's statistics alone (no start offset or
        lag: those are the group coordinator's); NOT_LEADER_OR_FOLLOWER where another leads."""
        R = m.DescribeShareGroupOffsetsResponse
        cache = self.broker.metadata_cache
        out = []
        for g in req.groups:
            topics = []
            for t in g.topics or ():
                tid = cache.topic_ids.get(t.topic_name)
                rows = []
                for idx in t.partitions:
                    p = self.broker.log_manager.partitions.get((t.topic_name, idx))
                    if tid is None or p is None or not p.is_leader:
                        rows.append(R.DescribeShareGroupOffsetsResponsePartition(
                            partition_index=idx, start_offset=-1, leader_epoch=-1,
                            error_code=Errors.NOT_LEADER_OR_FOLLOWER if tid is not None
                            else Errors.UNKNOWN_TOPIC_OR_PARTITION))
                        continue
                    rows.append(R.DescribeShareGroupOffsetsResponsePartition(partition_index=idx, start_offset=-1,
                                                                             leader_epoch=-1))
                    self._tag_stats(rows[-1], g.group_id, tid, idx)
                topics.append(R.DescribeShareGroupOffsetsResponseTopic(topic_name=t.topic_name,
                                                                       topic_id=tid or ZERO_UUID, partitions=rows))
            out.append(R.DescribeShareGroupOffsetsResponseGroup(group_id=g.group_id, topics=topics, error_code=0))
        return R(throttle_time_ms=0, groups=out)

    def _known_share_partitions(self, gid) -> set:
        """gid's share-partitions known here: the states this broker's share
        coordinator holds and, in a cluster, its members' assignments (the
        states of an empty group led by other brokers are not listed)."""
        keys = {k for k in self.coordinator.states if k[0] == gid}
        g = self.groups.groups.get(gid)
        for mm in g.members.values() if g is not None else ():
            keys.update((gid, tid, idx) for tid, ps in mm.assignment.items() for idx in ps)
        return keys

    async def _state_summary(self, gid, tid, idx):
        """The share-partition's ShareState (batches too when this broker's
        share coordinator holds it), or None when never initialized."""
        key = (gid, tid, idx)
        if not self.coordinator.coordinator_error(*key):
            return self.coordinator.states.get(key)
        code, st = await self.persister.read_summary(gid, tid, idx)
        return None if code else st

    def _lag(self, name, idx, st) -> int:
        p = self.broker.log_manager.partitions.get((name, idx))
        if p is None:
            return -1
        hw = p.high_watermark
        if st.delivery_complete is not None:     # another broker's summary: counted there
            return max(hw - st.start_offset - st.delivery_complete, 0)
        done = sum(min(last, hw - 1) - max(first, st.start_offset) + 1
                   for first, last, state, _count in st.batches
                   if state in (ACKNOWLEDGED, ARCHIVED) and last >= st.start_offset and first < hw)
        return max(hw - st.start_offset - done, 0)

    async def alter_offsets(self, header, req):
        """AlterShareGroupOffsets: move an empty share group's share-partitions
        to new start offsets. Each is initialized again at the next state
        epoch (InitializeShareGroupState): what was in flight is forgotten,
        and a leader's write at the old state epoch is fenced."""
        R = m.AlterShareGroupOffsetsResponse
        gid = req.group_id

        def top(code, msg=None):
            return R(throttle_time_ms=0, error_code=code, error_message=msg, responses=[])

        refused = self._empty_group_error(gid, must_exist=False)
        if refused:
            return top(*refused)
        cache = self.broker.metadata_cache
        az = self.broker.authorizer
        out = []
        for t in req.topics:
            tid = cache.topic_ids.get(t.topic_name)
            rows = []
            readable = az is None or az.allows(header, READ, TOPIC, t.topic_name)
            for p in t.partitions:
                if not readable:
                    code, msg = Errors.TOPIC_AUTHORIZATION_FAILED, Errors.TOPIC_AUTHORIZATION_FAILED.message
                elif tid is None or not cache.has_partition(t.topic_name, p.partition_index):
                    code, msg = Errors.UNKNOWN_TOPIC_OR_PARTITION, None
                elif p.start_offset < 0:
                    code, msg = Errors.INVALID_REQUEST, f"StartOffset {p.start_offset} is negative."
                else:
                    key = (gid, tid, p.partition_index)
                    code, st = await self.persister.read_summary(gid, tid, p.partition_index)
                    if not code:
                        code = await self.persister.initialize(gid, tid, p.partition_index,
                                                               st.state_epoch + 1 if st is not None else 0,
                                                               p.start_offset)
                    msg = None
                    if not code:
                        self.manager.forget(key)
                        self.groups.initialized(gid, tid, t.topic_name, [p.partition_index])
                rows.append(R.AlterShareGroupOffsetsResponsePartition(partition_index=p.partition_index,
                                                                      error_code=code, error_message=msg))
            out.append(R.AlterShareGroupOffsetsResponseTopic(topic_name=t.topic_name, topic_id=tid or ZERO_UUID,
                                                             partitions=rows))
        return R(throttle_time_ms=0, error_code=0, responses=out)

    async def delete_offsets(self, header, req):
        """DeleteShareGroupOffsets: forget an empty share group's state for
        whole topics (DeleteShareGroupState); a member joining later starts
        again at share.auto.offset.reset."""
        R = m.DeleteShareGroupOffsetsResponse
        gid = req.group_id
        refused = self._empty_group_error(gid, must_exist=True)
        if refused:
            return R(throttle_time_ms=0, error_code=refused[0], error_message=refused[1], responses=[])
        cache = self.broker.metadata_cache
        out = []
        for t in req.topics:
            tid = cache.topic_ids.get(t.topic_name)
            code = Errors.UNKNOWN_TOPIC_OR_PARTITION if tid is None else await self._delete_state(gid, tid)
            if tid is not None and not code:
                self.groups.uninitialized(gid, tid)
            out.append(R.DeleteShareGroupOffsetsResponseTopic(topic_name=t.topic_name, topic_id=tid or ZERO_UUID,
                                                              error_code=code))
        return R(throttle_time_ms=0, error_code=0, responses=out)

    async def _delete_state(self, gid, topic_id=None) -> int:
        """The share coordinator forgets gid's share-partitions (of topic_id
        only, when given); the first error, or 0."""
        keys = {k for k in self.coordinator.states if k[0] == gid and topic_id in (None, k[1])}
        if not self.broker.lone:
            # States led by other brokers: every partition of the topic (of
            # every topic, for the whole group); deleting none is no error.
            cache = self.broker.metadata_cache
            tids = [topic_id] if topic_id is not None else [cache.topic_id(n) for n in cache.topics
                                                            if not n.startswith("__")]   # never assigned
            keys.update((gid, tid, idx) for tid in tids if tid is not None
                        for idx in cache.topics.get(cache.topic_name(tid), {}))
        codes = await asyncio.gather(*(self.persister.delete(*key) for key in sorted(keys, key=str)))
        for key in keys:
            self.manager.forget(key)
        return next((c for c in codes if c), 0)

    def _empty_group_error(self, gid, must_exist):
        """(code, message) unless gid names a share group without members (or,
        when not must_exist, no group yet) that this broker coordinates."""
        code = self.groups.coordinator.coordinator_error(gid)
        if code:
            return code, None
        g = self.groups.groups.get(gid)
        if g is None and gid in self.groups.coordinator.groups:
            return Errors.GROUP_ID_NOT_FOUND, f"Group {gid} is not a share group."
        if g is None and must_exist and not any(k[0] == gid for k in self.coordinator.states):
            return Errors.GROUP_ID_NOT_FOUND, f"Group {gid} not found."
        if g is not None and g.members:
            return Errors.NON_EMPTY_GROUP, "The share group has members: its offsets change only while it is empty."
        return None
