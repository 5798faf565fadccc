"""The group APIs on the wire: FindCoordinator, JoinGroup, SyncGroup,
Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups,
DeleteGroups. Each turns a decoded request into GroupCoordinator calls and a
response object; JoinGroup and SyncGroup return coroutines (their answers wait
for the rebalance), and so does OffsetCommit (it waits for the offsets
partition's high watermark). FindCoordinator names the leader of the group's
__consumer_offsets partition and every other group API answers
NOT_COORDINATOR for a group this broker does not coordinate, and
COORDINATOR_LOAD_IN_PROGRESS while the group's partition is being loaded
(Heartbeat then answers NONE, as Kafka's group coordinator does).

Versions are those Kafka 4.x serves (broker/api_versions.py), with what each
adds: OffsetCommit v6 leader epochs (stored with OffsetCommitValue v3), v7
group_instance_id, v9 GROUP_ID_NOT_FOUND for a missing group (its
generation_id_or_member_epoch is a classic group's generation); OffsetFetch
v9's member id and epoch, which Kafka ignores for classic groups;
FindCoordinator v4+ batched keys; JoinGroup v7 protocol_type, v8 reason, v9
skip_assignment (KIP-814); SyncGroup v5 protocol checks; LeaveGroup v3+
batched members, v5 reason; DescribeGroups v3+ authorized operations;
ListGroups v4 states and v5 types ("classic": every group here).

Each request about one group runs as an event on the coordinator runtime's
queue of the group's partition (coordinator/runtime.py), so requests of one
partition apply their state changes in arrival order, even when a JoinGroup's
answer waits for the rebalance. Threads: the broker's event loop only.
"""
from __future__ import annotations

import asyncio
import inspect
import logging

from ..coordinator.runtime import Refused, operation_error
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from .consumer_group import PROTOCOL_TYPE as CONSUMER, ConsumerGroup
from .consumer_group import error_response as consumer_error_response
from .coordinator import GroupState, _group_store_error, _join_error

log = logging.getLogger("pylog.groups")

KEY_GROUP, KEY_TRANSACTION, KEY_SHARE = 0, 1, 2
# DescribeGroups' authorized_operations when they were not asked for (Kafka's INT32_MIN).
AUTHORIZED_OPERATIONS_OMITTED = -(1 << 31)
# What a GROUP resource allows when asked for (DescribeGroups v3+): pylog has
# no authorizer, and Kafka without one answers every operation the resource
# type supports (AclEntry.supportedOperations(GROUP): READ 3, DELETE 6,
# DESCRIBE 8, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11) as a bit field.
GROUP_OPERATIONS = sum(1 << op for op in (3, 6, 8, 10, 11))
# ListGroups v5's group_type of every group this coordinator runs (Kafka's
# Group.GroupType names, matched case-insensitively in types_filter).
CLASSIC = "classic"


class GroupApis:
    def __init__(self, coordinator, endpoint_on=None):
        self.coordinator = coordinator
        # (broker id, listener name) -> (host, port) or None: the broker's
        # endpoint on the listener a FindCoordinator came in on.
        self.endpoint_on = endpoint_on
        # FindCoordinator key type 2: "group:topicId:partition" -> (error,
        # node_id, host, port), set by the broker (pylog/share/coordinator.py).
        self.share_lookup = None

    def _event(self, group_id, fn, *args, failed=None, own_answer=False):
        """fn(*args) as an event of group_id's partition: its response, or a
        coroutine giving it. failed (error code -> response) marks a request
        that Kafka runs as a write operation (see the runtime's write
        operations); such an fn returns Refused(response) where Kafka's
        operation throws."""
        c = self.coordinator
        return c.runtime.schedule(c.partition_for(group_id), fn, *args, failed=failed, own_answer=own_answer)

    def table(self):
        return {
            10: self.find_coordinator, 11: self.join_group, 12: self.heartbeat, 13: self.leave_group,
            14: self.sync_group, 8: self.offset_commit, 9: self.offset_fetch, 15: self.describe_groups,
            16: self.list_groups, 42: self.delete_groups, 47: self.offset_delete, 68: self.consumer_group_heartbeat,
            69: self.consumer_group_describe,
        }

    # ---- FindCoordinator (10) ----

    def find_coordinator(self, header, req, resolvers=None):
        """v0-3 look one key up; v4+ (KIP-699) each of coordinator_keys, every
        key with its own error. Before v4 pylog/transactions/api.py answers
        key_type 1 itself; from v4 it passes its lookup in resolvers
        ({key_type: key -> (error, node_id, host, port)})."""
        R = m.FindCoordinatorResponse
        if header.request_api_version < 4:
            if req.key_type != KEY_GROUP:
                return R(throttle_time_ms=0, error_code=Errors.INVALID_REQUEST,
                         error_message=f"unknown key type {req.key_type}", node_id=-1, host="", port=-1)
            code, node_id, host, port = self._locate(header, self.coordinator.coordinator_for, req.key)
            return R(throttle_time_ms=0, error_code=code, error_message=None, node_id=node_id, host=host,
                     port=port)
        lookups = {KEY_GROUP: self.coordinator.coordinator_for, **(resolvers or {})}
        if self.share_lookup is not None and header.request_api_version >= 6:
            lookups[KEY_SHARE] = self.share_lookup
        if req.key_type not in (KEY_GROUP, KEY_TRANSACTION, KEY_SHARE):
            # As Kafka: an unknown type fails the request, each key answered with it.
            return R(throttle_time_ms=0, coordinators=[R.Coordinator(
                key=k, node_id=-1, host="", port=-1, error_code=Errors.INVALID_REQUEST,
                error_message=f"unknown coordinator type {req.key_type}") for k in req.coordinator_keys])
        coordinators = []
        for key in req.coordinator_keys:
            lookup = lookups.get(req.key_type)
            if lookup is None:
                # The share key type before v6 (KIP-932): Kafka answers INVALID_REQUEST.
                code, node_id, host, port = Errors.INVALID_REQUEST, -1, "", -1
            else:
                code, node_id, host, port = self._locate(header, lookup, key)
            coordinators.append(R.Coordinator(key=key, node_id=node_id, host=host, port=port, error_code=code,
                                              error_message=None))
        return R(throttle_time_ms=0, coordinators=coordinators)

    def _locate(self, header, lookup, key):
        """lookup(key)'s (error, node_id, host, port), the coordinator's
        endpoint on the listener the request came in on, as Kafka answers."""
        code, node_id, host, port = lookup(key)
        listener = getattr(header, "listener_name", None)
        if code == 0 and listener is not None and self.endpoint_on is not None:
            ep = self.endpoint_on(node_id, listener)
            if ep is None:
                return Errors.COORDINATOR_NOT_AVAILABLE, -1, "", -1
            host, port = ep
        return code, node_id, host, port

    # ---- JoinGroup (11) / SyncGroup (14) ----

    async def _join(self, header, req, peer):
        version = header.request_api_version
        wrong = self.coordinator.coordinator_error(req.group_id)
        if wrong:
            result = _join_error(wrong, req.member_id)
        else:
            result = await self.coordinator.join_group(
                version, req.group_id, req.member_id, req.group_instance_id if version >= 5 else None,
                header.client_id or "", peer, req.session_timeout_ms,
                req.rebalance_timeout_ms if version >= 1 else req.session_timeout_ms,
                req.protocol_type, [(p.name, p.metadata) for p in req.protocols],
                req.reason if version >= 8 else None)
        code, generation, protocol, leader, member_id, members, *skip = result
        # v7+ name the group's protocol type, and send no protocol (null) on an error.
        g = self.coordinator.describe(req.group_id) if code == Errors.NONE else None
        R = m.JoinGroupResponse
        return R(throttle_time_ms=0, error_code=code, generation_id=generation,
                 protocol_type=g.protocol_type if g is not None else None,
                 protocol_name=(protocol or "") if version < 7 else (protocol or None), leader=leader or "",
                 skip_assignment=bool(skip and skip[0]), member_id=member_id, members=[
                     R.JoinGroupResponseMember(member_id=mid, group_instance_id=gid, metadata=meta)
                     for mid, gid, meta in members])

    def join_group(self, header, req):
        # The answer goes when the group gives it (Kafka hands the operation
        # its response future); a pending write failing first answers it.
        return self._event(req.group_id, self._join, header, req, "/" + header.peer_host, failed=_join_failed,
                           own_answer=True)

    async def _sync(self, header, req):
        version = header.request_api_version
        wrong = self.coordinator.coordinator_error(req.group_id)
        if wrong:
            return m.SyncGroupResponse(throttle_time_ms=0, error_code=wrong, assignment=b"")
        code, assignment = await self.coordinator.sync_group(
            req.group_id, req.generation_id, req.member_id, req.group_instance_id if version >= 3 else None,
            [(a.member_id, a.assignment) for a in req.assignments],
            *((req.protocol_type, req.protocol_name) if version >= 5 else ()))
        # v5+ name the group's protocol type and name (null on an error).
        g = self.coordinator.describe(req.group_id) if code == Errors.NONE else None
        # A consumer group's classic member: Kafka echoes the request's.
        name = getattr(g, "protocol_name", req.protocol_name if version >= 5 else None)
        return m.SyncGroupResponse(throttle_time_ms=0, error_code=code, assignment=assignment,
                                   protocol_type=g.protocol_type if g is not None else None,
                                   protocol_name=name if g is not None else None)

    def sync_group(self, header, req):
        return self._event(req.group_id, self._sync, header, req, failed=_sync_failed, own_answer=True)

    # ---- Heartbeat (12) / LeaveGroup (13) ----

    def heartbeat(self, header, req):
        return self._event(req.group_id, self._heartbeat, header, req, failed=_heartbeat_failed)

    def _heartbeat(self, header, req):
        wrong = self.coordinator.coordinator_error(req.group_id)
        if wrong:
            # The group is still loading: as Kafka, answer blindly (its member
            # learns of a rebalance from its next heartbeat).
            return m.HeartbeatResponse(throttle_time_ms=0,
                                       error_code=Errors.NONE if wrong == Errors.COORDINATOR_LOAD_IN_PROGRESS else wrong)
        code = self.coordinator.heartbeat(req.group_id, req.generation_id, req.member_id,
                                          req.group_instance_id if header.request_api_version >= 3 else None)
        r = m.HeartbeatResponse(throttle_time_ms=0, error_code=code)
        # Kafka's classicGroupHeartbeat throws on a bad member or generation;
        # REBALANCE_IN_PROGRESS is an answer, as NONE is.
        return r if code in (Errors.NONE, Errors.REBALANCE_IN_PROGRESS) else Refused(r)

    def leave_group(self, header, req):
        return self._event(req.group_id, self._leave_group, header, req,
                           failed=lambda code: m.LeaveGroupResponse(throttle_time_ms=0,
                                                                    error_code=operation_error(code), members=[]))

    async def _leave_group(self, header, req):
        version = header.request_api_version
        R = m.LeaveGroupResponse
        wrong = self.coordinator.coordinator_error(req.group_id)
        if wrong:
            return R(throttle_time_ms=0, error_code=wrong, members=[])

        async def code_of(c):
            # A consumer group's classic member is answered once its removal is written.
            return (await c) if asyncio.iscoroutine(c) else c
        if version < 3:
            return R(throttle_time_ms=0,
                     error_code=await code_of(self.coordinator.leave_group(req.group_id, req.member_id)))
        if self.coordinator.describe(req.group_id) is None:
            # As Kafka 4: the operation throws UNKNOWN_MEMBER_ID for a group it
            # does not know, answered as every member unknown.
            return Refused(R(throttle_time_ms=0, error_code=Errors.NONE, members=[
                R.MemberResponse(member_id=mm.member_id, group_instance_id=mm.group_instance_id,
                                 error_code=Errors.UNKNOWN_MEMBER_ID) for mm in req.members]))
        # Each member's leave applies before the next (its write may still be pending).
        pending = [self.coordinator.leave_group(req.group_id, mm.member_id, mm.group_instance_id,
                                                mm.reason if version >= 5 else None) for mm in req.members]
        results = [R.MemberResponse(member_id=mm.member_id, group_instance_id=mm.group_instance_id,
                                    error_code=await code_of(c))
                   for mm, c in zip(req.members, pending)]
        return R(throttle_time_ms=0, error_code=Errors.NONE, members=results)

    # ---- ConsumerGroupHeartbeat (68) / ConsumerGroupDescribe (69): KIP-848 ----

    def consumer_group_heartbeat(self, header, req):
        return self._event(req.group_id, self._consumer_heartbeat, header, req,
                           failed=_consumer_heartbeat_failed) if req.group_id else \
            self._consumer_heartbeat(header, req)

    def _consumer_heartbeat(self, header, req):
        c = self.coordinator
        wrong = c.coordinator_error(req.group_id) if req.group_id else 0
        if wrong:
            return consumer_error_response(wrong)
        r = c.consumer.heartbeat(header.request_api_version, req, header.client_id or "", "/" + header.peer_host)
        # Kafka's consumerGroupHeartbeat throws each error it answers.
        return Refused(r) if not asyncio.iscoroutine(r) and r.error_code and req.group_id else r

    def consumer_group_describe(self, header, req):
        R = m.ConsumerGroupDescribeResponse
        ops = GROUP_OPERATIONS if req.include_authorized_operations else AUTHORIZED_OPERATIONS_OMITTED
        described = [self._event(gid, self._consumer_describe, gid, ops) for gid in req.group_ids]
        return _gathered(described, lambda groups: R(throttle_time_ms=0, groups=groups))

    def _consumer_describe(self, gid, ops):
        R = m.ConsumerGroupDescribeResponse
        wrong = self.coordinator.coordinator_error(gid)
        if wrong:
            return R.DescribedGroup(error_code=wrong, group_id=gid, authorized_operations=ops)
        d = self.coordinator.consumer.describe(gid)
        d.authorized_operations = ops
        return d

    # ---- OffsetCommit (8) / OffsetFetch (9) ----

    def offset_commit(self, header, req):
        return self._event(req.group_id, self._offset_commit, header, req,
                           failed=lambda code: self._commit_response(req, _every_partition(req, operation_error(code))))

    def _offset_commit(self, header, req):
        version = header.request_api_version
        offsets = [(t.name, p.partition_index, p.committed_offset,
                    p.committed_leader_epoch if version >= 6 else -1, p.committed_metadata)
                   for t in req.topics for p in t.partitions]
        args = (req.group_id, req.generation_id_or_member_epoch if version >= 1 else -1,
                req.member_id if version >= 1 else "", req.group_instance_id if version >= 7 else None, offsets,
                version)
        wrong = self.coordinator.coordinator_error(req.group_id)
        if wrong:
            return self._commit_response(req, {(t.name, p.partition_index): wrong
                                               for t in req.topics for p in t.partitions})
        codes = self.coordinator.commit_offsets_replicated(*args)
        if isinstance(codes, Refused):
            return Refused(self._commit_response(req, codes.answer))
        if isinstance(codes, dict):
            return self._commit_response(req, codes)
        return self._commit_later(req, codes)

    async def _commit_later(self, req, waiting):
        return self._commit_response(req, await waiting)

    @staticmethod
    def _commit_response(req, codes):
        R = m.OffsetCommitResponse
        return R(throttle_time_ms=0, topics=[R.OffsetCommitResponseTopic(name=t.name, partitions=[
            R.OffsetCommitResponsePartition(partition_index=p.partition_index,
                                            error_code=codes[(t.name, p.partition_index)])
            for p in t.partitions]) for t in req.topics])

    def offset_fetch(self, header, req):
        version = header.request_api_version
        require_stable = version >= 7 and req.require_stable
        if version < 8:
            wanted = None if req.topics is None else [(t.name, t.partition_indexes) for t in req.topics]
            out = self._event(req.group_id, self._fetch_group, req.group_id, wanted, require_stable, None, -1,
                              failed=_fetch_failed(wanted) if require_stable else None)
            return self._later(out, self._single_group) if inspect.iscoroutine(out) else self._single_group(out)
        # v8+: several groups, each read by an event of its own partition.
        outs = []
        for g in req.groups:
            wanted = None if g.topics is None else [(t.name, t.partition_indexes) for t in g.topics]
            outs.append((g.group_id, self._event(g.group_id, self._fetch_group, g.group_id, wanted, require_stable,
                                                 g.member_id if version >= 9 else None,
                                                 g.member_epoch if version >= 9 else -1,
                                                 failed=_fetch_failed(wanted) if require_stable else None)))
        if any(inspect.iscoroutine(o) for _gid, o in outs):
            return self._groups_later(outs)
        return self._many_groups(outs)

    @staticmethod
    async def _later(out, build):
        return build(await out)

    async def _groups_later(self, outs):
        return self._many_groups([(gid, await o if inspect.iscoroutine(o) else o) for gid, o in outs])

    def _fetch_group(self, group_id, wanted, require_stable, member_id=None, member_epoch=-1):
        """One group's offsets: (error_code, [(topic, [(partition, offset,
        leader_epoch, metadata, error_code)])]). With require_stable a
        partition holding an offset of an open transaction is answered
        UNSTABLE_OFFSET_COMMIT, as Kafka's OffsetMetadataManager does, so a
        read_committed consumer retries instead of starting from the offset
        before it. With require_stable Kafka reads as a write operation: the
        latest offsets, commits not yet replicated included, answered once
        those are committed (the runtime holds the answer)."""
        wrong = self.coordinator.coordinator_error(group_id)
        if wrong:
            return wrong, [(t, [(p, -1, -1, "", wrong) for p in ps]) for t, ps in wanted or []]
        g = self.coordinator.describe(group_id)
        if isinstance(g, ConsumerGroup):
            # v9: a consumer group's member reads with its member epoch.
            code = self.coordinator.consumer.fetch_error(g, member_id, member_epoch)
            if code:
                return Refused((code, [])) if require_stable else (code, [])
        found = self.coordinator.fetch_offsets(
            group_id, None if wanted is None else [(t, p) for t, ps in wanted for p in ps], latest=require_stable)
        unstable = self.coordinator.pending_txn_offsets(group_id) if require_stable else ()
        by_topic: dict[str, list] = {}
        for (topic, partition), om in found.items():
            if (topic, partition) in unstable:
                row = (partition, -1, -1, "", Errors.UNSTABLE_OFFSET_COMMIT)
            elif om is None:
                row = (partition, -1, -1, "", Errors.NONE)
            else:
                row = (partition, om.offset, om.leader_epoch, om.metadata, Errors.NONE)
            by_topic.setdefault(topic, []).append(row)
        return Errors.NONE, list(by_topic.items())

    @staticmethod
    def _single_group(out):
        # v2+ read the top-level code; v1 the partitions' codes.
        R = m.OffsetFetchResponse
        code, topics = out
        return R(throttle_time_ms=0, error_code=code, topics=[
            R.OffsetFetchResponseTopic(name=t, partitions=[R.OffsetFetchResponsePartition(
                partition_index=p, committed_offset=o, committed_leader_epoch=e, metadata=md, error_code=c)
                for p, o, e, md, c in rows]) for t, rows in topics])

    @staticmethod
    def _many_groups(outs):
        R = m.OffsetFetchResponse
        groups = []
        for group_id, (code, topics) in outs:
            if code:   # as Kafka: a group's error is its own code, without topics
                topics = []
            groups.append(R.OffsetFetchResponseGroup(group_id=group_id, error_code=code, topics=[
                R.OffsetFetchResponseTopics(name=t, partitions=[R.OffsetFetchResponsePartitions(
                    partition_index=p, committed_offset=o, committed_leader_epoch=e, metadata=md, error_code=c)
                    for p, o, e, md, c in rows]) for t, rows in topics]))
        return R(throttle_time_ms=0, groups=groups)

    # ---- DescribeGroups (15) / ListGroups (16) / DeleteGroups (42) ----

    def describe_groups(self, header, req):
        """Each group is described by a read event on its partition's queue,
        so the answer shows the state every request before it applied."""
        R = m.DescribeGroupsResponse
        asked = header.request_api_version >= 3 and req.include_authorized_operations
        described = [self._event(gid, self._describe_group, gid, asked) for gid in req.groups]
        return _gathered(described, lambda groups: R(throttle_time_ms=0, groups=groups))

    def _describe_group(self, gid, with_operations=False):
        R = m.DescribeGroupsResponse
        wrong = self.coordinator.coordinator_error(gid)
        if wrong:
            return R.DescribedGroup(error_code=wrong, group_id=gid, group_state="", protocol_type="",
                                    protocol_data="", members=[], authorized_operations=AUTHORIZED_OPERATIONS_OMITTED)
        # As Kafka: asked-for operations on every group answered without an error.
        ops = GROUP_OPERATIONS if with_operations else AUTHORIZED_OPERATIONS_OMITTED
        g = self.coordinator.describe(gid)
        if isinstance(g, ConsumerGroup):
            g = None   # as Kafka before DescribeGroups v6: not a classic group, so Dead
        if g is None:
            return R.DescribedGroup(error_code=Errors.NONE, group_id=gid, group_state=GroupState.DEAD.value,
                                    protocol_type="", protocol_data="", members=[], authorized_operations=ops)
        show_members = g.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE,
                                   GroupState.PREPARING_REBALANCE)
        members = [R.DescribedGroupMember(
            member_id=mm.member_id, group_instance_id=mm.group_instance_id, client_id=mm.client_id,
            client_host=mm.client_host,
            member_metadata=mm.metadata_for(g.protocol_name) if g.state is GroupState.STABLE else b"",
            member_assignment=mm.assignment if g.state is GroupState.STABLE else b"")
            for mm in g.members.values()] if show_members else []
        return R.DescribedGroup(
            error_code=Errors.NONE, group_id=gid, group_state=g.state.value, protocol_type=g.protocol_type or "",
            protocol_data=(g.protocol_name or "") if g.state is GroupState.STABLE else "",
            members=members, authorized_operations=ops)

    def list_groups(self, header, req):
        """A read event on the queue of every partition led here (Kafka's
        runtime scatters ListGroups the same way), gathered into one answer."""
        R = m.ListGroupsResponse
        runtime = self.coordinator.runtime
        if runtime.loading_partitions():
            # As Kafka: no partial list while some groups are still unknown.
            return R(throttle_time_ms=0, error_code=Errors.COORDINATOR_LOAD_IN_PROGRESS, groups=[])
        version = header.request_api_version
        # As Kafka: states match case-insensitively; an unknown type matches no group.
        states = {s.strip().lower() for s in req.states_filter} if version >= 4 and req.states_filter else None
        types = {t.lower() for t in req.types_filter} if version >= 5 and req.types_filter else None
        listed = [runtime.schedule(index, self._list_partition, index, states, types)
                  for index in runtime.active_partitions()]

        def answer(per_partition):
            if any(part is None for part in per_partition):
                return R(throttle_time_ms=0, error_code=Errors.COORDINATOR_LOAD_IN_PROGRESS, groups=[])
            return R(throttle_time_ms=0, error_code=Errors.NONE,
                     groups=[lg for part in per_partition for lg in part])
        return _gathered(listed, answer)

    def _list_partition(self, index, wanted, types=None):
        R = m.ListGroupsResponse
        c = self.coordinator
        if not c.runtime.is_active(index):
            return None   # unloaded or loading again since the request arrived
        share = c.share.listed(index, wanted, types) if getattr(c, "share", None) is not None else []
        return [R.ListedGroup(group_id=g.group_id, protocol_type=g.protocol_type or "", group_state=g.state.value,
                              group_type=_group_type(g))
                for g in c.list_groups() if c.partition_for(g.group_id) == index
                and (wanted is None or g.state.value.lower() in wanted)
                and (types is None or _group_type(g) in types)] + share

    def delete_groups(self, header, req):
        """Each group is deleted by an event on its partition's queue; the
        answer waits until its tombstones are committed (a write event)."""
        R = m.DeleteGroupsResponse
        share = getattr(self.coordinator, "share", None)   # share groups (pylog/share/groups.py)
        codes = [share.delete_group(gid) if share is not None and share.has_group(gid)
                 else self._event(gid, self._delete_group, gid, failed=operation_error) for gid in req.groups_names]
        return _gathered(codes, lambda got: R(throttle_time_ms=0, results=[
            R.DeletableGroupResult(group_id=gid, error_code=code) for gid, code in zip(req.groups_names, got)]))

    def _delete_group(self, gid):
        c = self.coordinator
        return c.coordinator_error(gid) or c.delete_group(gid)


    # ---- OffsetDelete (47) ----

    def offset_delete(self, header, req):
        """KIP-496: a group's committed offsets of topics it no longer
        consumes, deleted by an event on the group's partition; answered once
        the tombstones are committed."""
        R = m.OffsetDeleteResponse
        wanted = [(t.name, p.partition_index) for t in req.topics for p in t.partitions]

        def build(result):
            code, codes = result
            if code:
                return R(error_code=code, throttle_time_ms=0, topics=[])
            by_topic: dict[str, list] = {}
            for (topic, index) in wanted:
                by_topic.setdefault(topic, []).append(R.OffsetDeleteResponsePartition(
                    partition_index=index, error_code=codes.get((topic, index), Errors.NONE)))
            return R(error_code=0, throttle_time_ms=0, topics=[
                R.OffsetDeleteResponseTopic(name=t, partitions=ps) for t, ps in by_topic.items()])
        return _gathered([self._event(req.group_id, self._delete_offsets, req.group_id, wanted,
                                      failed=lambda code: (operation_error(code), {}))],
                         lambda got: build(got[0]))

    def _delete_offsets(self, group_id, wanted):
        c = self.coordinator
        code = c.coordinator_error(group_id)
        if code:
            return code, {}
        out = c.delete_offsets(group_id, wanted)
        # A group-level error: Kafka's deleteOffsets threw it.
        return Refused(out) if isinstance(out, tuple) and out[0] else out


def _group_type(g) -> str:
    return CONSUMER if isinstance(g, ConsumerGroup) else CLASSIC


def _gathered(results, build):
    """build(list of results) at once when every event answered at once, else
    a coroutine that awaits those still running, in order."""
    if not any(inspect.isawaitable(r) for r in results):
        return build(results)

    async def later():
        return build([await r if inspect.isawaitable(r) else r for r in results])
    return later()


def _fetch_failed(wanted):
    """A require_stable OffsetFetch whose answer rested on a write that
    failed (Kafka's handleOffsetFetchException: what older consumers would
    not retry is NOT_COORDINATOR)."""
    def failed(code):
        code = Errors.NOT_COORDINATOR if code in (Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.NOT_ENOUGH_REPLICAS,
                                                  Errors.REQUEST_TIMED_OUT) else operation_error(code)
        return code, [(t, [(p, -1, -1, "", code) for p in ps]) for t, ps in wanted or []]
    return failed


def _every_partition(req, code) -> dict:
    return {(t.name, p.partition_index): code for t in req.topics for p in t.partitions}


def _join_failed(code):
    """Kafka's JoinGroup answer to a failed write operation: the error and
    the fields' defaults (no member id, protocol name "")."""
    return m.JoinGroupResponse(throttle_time_ms=0, error_code=operation_error(code), generation_id=-1,
                               protocol_type=None, protocol_name="", leader="", skip_assignment=False, member_id="",
                               members=[])


def _sync_failed(code):
    """Kafka's SyncGroup answer to a failed write operation: the error alone."""
    return m.SyncGroupResponse(throttle_time_ms=0, error_code=operation_error(code), assignment=b"",
                               protocol_type=None, protocol_name=None)


def _heartbeat_failed(code):
    """A classic Heartbeat whose answer rested on a write that failed."""
    return m.HeartbeatResponse(throttle_time_ms=0, error_code=_group_store_error(code))


def _consumer_heartbeat_failed(code):
    """A ConsumerGroupHeartbeat whose answer rested on a write that failed."""
    return consumer_error_response(_group_store_error(code))
