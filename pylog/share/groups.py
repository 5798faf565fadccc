"""Share-group membership (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe
and the share groups in ListGroups (Kafka's GroupMetadataManager share-group
parts and its SimpleAssignor are the model; KAFKA-NOTES §11.2).

A share group lives on the group coordinator of its id (the broker leading
its __consumer_offsets partition). Members join with epoch 0 and a topic
list, get the next group epoch and their partitions at once (no revocation
phase: several members may share a partition), heartbeat every
group.share.heartbeat.interval.ms and leave with epoch -1, or are removed
after group.share.session.timeout.ms of silence.

Membership is kept in memory on the coordinator, not written to
__consumer_offsets (records 10-15): after a coordinator restart members
rejoin (UNKNOWN_MEMBER_ID) and get their partitions again. What the group
has consumed is durable: that is the share-partition state, persisted by the
share coordinator (coordinator.py).

Threads: the event loop's thread only.
"""
from __future__ import annotations

import asyncio
import logging

from ..broker.authorizer import GROUP, NOT_ASKED, SUPPORTED_OPERATIONS
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from .configs import share_group_config

log = logging.getLogger("pylog.share")

MAX_MEMBER_ID = 36
GROUP_OPERATIONS = sum(1 << op for op in SUPPORTED_OPERATIONS[GROUP])


class ShareMember:
    __slots__ = ("member_id", "epoch", "previous_epoch", "rack_id", "topics", "client_id", "client_host",
                 "assignment", "timer", "sent_epoch")

    def __init__(self, member_id, client_id, client_host):
        self.member_id = member_id
        self.epoch = 0
        self.previous_epoch = 0
        self.rack_id = None
        self.topics: list[str] = []
        self.client_id, self.client_host = client_id, client_host
        self.assignment: dict = {}      # topic id -> sorted partitions
        self.timer = None
        self.sent_epoch = -1            # the epoch whose assignment the member was last sent


class ShareGroup:
    __slots__ = ("group_id", "epoch", "assignment_epoch", "members", "image")

    def __init__(self, group_id):
        self.group_id = group_id
        self.epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ShareMember] = {}
        self.image = None               # the topic metadata the assignment was made for

    @property
    def state(self) -> str:
        return "Stable" if self.members else "Empty"


def assign(members: list[ShareMember], image: dict) -> dict:
    """Kafka's simple assignor, balance first: per topic, M subscribed
    members and P partitions; with M <= P each partition goes to one member,
    round robin; with M > P member i shares partition i mod P, so every
    partition has a member and more members than partitions still consume.
    {member id: {topic id: [partitions]}}."""
    out = {mm.member_id: {} for mm in members}
    topics = sorted({t for mm in members for t in mm.topics})
    for name in topics:
        meta = image.get(name)
        if meta is None:
            continue
        tid, count = meta
        subs = sorted(mm.member_id for mm in members if name in mm.topics)
        if not subs or count <= 0:
            continue
        if len(subs) <= count:
            for p in range(count):
                out[subs[p % len(subs)]].setdefault(tid, []).append(p)
        else:
            for i, mid in enumerate(subs):
                out[mid].setdefault(tid, []).append(i % count)
    return out


class ShareGroups:
    """The share groups this broker coordinates. `coordinator` is the group
    coordinator (its partitions decide which broker coordinates an id and
    its groups share the id space); `writer` its PartitionWriter."""

    def __init__(self, config, coordinator, group_configs):
        self.config = config
        self.coordinator = coordinator
        self.group_configs = group_configs          # group id -> its GROUP overrides (a callable)
        self.groups: dict[str, ShareGroup] = {}
        self.max_size = config.get("group.share.max.size")
        self.share_state_topic = None               # asks for __share_group_state if it does not exist
        # (group id, topic id, partition): a partition was assigned; its share-partition is
        # initialized now, as Kafka's coordinator does before the members' first fetches.
        self.on_assigned = None
        self.has_state = None                       # group id -> whether the share coordinator has its state
        self.delete_state = None                    # group id -> coroutine: its state deleted, an error code

    def settings(self, group_id) -> dict:
        return share_group_config(self.config, self.group_configs(group_id))

    # ---- ShareGroupHeartbeat ----

    def heartbeat(self, ctx, req):
        R = m.ShareGroupHeartbeatResponse
        c = self.coordinator
        gid = req.group_id

        def error(code, msg=None):
            return R(throttle_time_ms=0, error_code=code, error_message=msg, member_id=None, member_epoch=0,
                     heartbeat_interval_ms=0, assignment=None)

        if not gid:
            return error(Errors.INVALID_REQUEST, "GroupId can't be empty.")
        if not req.member_id:
            return error(Errors.INVALID_REQUEST, "MemberId can't be empty.")
        if len(req.member_id) > MAX_MEMBER_ID:
            return error(Errors.INVALID_REQUEST, f"MemberId can't be longer than {MAX_MEMBER_ID} characters.")
        if req.member_epoch < -1:
            return error(Errors.INVALID_REQUEST, f"MemberEpoch is {req.member_epoch}, but must be >= -1.")
        if req.member_epoch == 0 and not req.subscribed_topic_names:
            return error(Errors.INVALID_REQUEST, "SubscribedTopicNames must be set in first request.")
        code = c.coordinator_error(gid)
        if code:
            return error(code)
        if self.share_state_topic is not None:
            self.share_state_topic()   # asked for now, so the members' first fetches find the persister
        other = c.groups.get(gid)
        if other is not None and gid not in self.groups:
            return error(Errors.GROUP_ID_NOT_FOUND, f"Group {gid} is not a share group.")
        s = self.settings(gid)
        interval = s["share.heartbeat.interval.ms"]
        g = self.groups.get(gid)
        member = g.members.get(req.member_id) if g is not None else None

        if req.member_epoch == -1:
            if member is None:
                return error(Errors.UNKNOWN_MEMBER_ID, f"Member {req.member_id} is not a member of group {gid}.")
            self._remove(g, member)
            return R(throttle_time_ms=0, error_code=0, member_id=req.member_id, member_epoch=-1,
                     heartbeat_interval_ms=interval, assignment=None)

        if req.member_epoch == 0:
            if g is None:
                g = self.groups[gid] = ShareGroup(gid)
            if member is None:
                if len(g.members) >= self.max_size:
                    return error(Errors.GROUP_MAX_SIZE_REACHED,
                                 f"The share group has reached its maximum capacity of {self.max_size} members.")
                member = g.members[req.member_id] = ShareMember(req.member_id, ctx.client_id or "",
                                                                "/" + (getattr(ctx, "peer_host", "") or ""))
            member.sent_epoch = -1     # a (re)join is answered with its whole assignment
        else:
            if member is None:
                return error(Errors.UNKNOWN_MEMBER_ID, f"Member {req.member_id} is not a member of group {gid}.")
            if req.member_epoch not in (member.epoch, member.previous_epoch):
                return error(Errors.FENCED_MEMBER_EPOCH,
                             f"The share group member has a smaller or larger member epoch "
                             f"({req.member_epoch}) than the one known by the group coordinator ({member.epoch}).")
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        if req.subscribed_topic_names is not None and sorted(req.subscribed_topic_names) != sorted(member.topics):
            member.topics = sorted(set(req.subscribed_topic_names))
            g.epoch += 1
        self._reassign(g)
        self._arm(g, member, s["share.session.timeout.ms"])
        assignment = None
        if member.sent_epoch != member.epoch or req.subscribed_topic_names is not None:
            member.sent_epoch = member.epoch
            assignment = R.Assignment(topic_partitions=[
                R.TopicPartitions(topic_id=tid, partitions=list(ps)) for tid, ps in sorted(member.assignment.items())])
        return R(throttle_time_ms=0, error_code=0, member_id=member.member_id, member_epoch=member.epoch,
                 heartbeat_interval_ms=interval, assignment=assignment)

    def _reassign(self, g: ShareGroup):
        """A new target assignment when the group epoch moved or the topics
        the members subscribe to changed (created, more partitions)."""
        image = self._image(g)
        if image != g.image:
            g.image = image
            if g.assignment_epoch == g.epoch:
                g.epoch += 1
        if g.assignment_epoch == g.epoch:
            return
        target = assign(list(g.members.values()), image)
        for mid, mm in g.members.items():
            mm.previous_epoch = mm.epoch
            mm.epoch = g.epoch
            mm.assignment = {tid: sorted(ps) for tid, ps in target[mid].items()}
        g.assignment_epoch = g.epoch
        if self.on_assigned is not None:
            for tid, idx in sorted({(tid, idx) for a in target.values() for tid, ps in a.items() for idx in ps}):
                self.on_assigned(g.group_id, tid, idx)

    def _image(self, g):
        names = {t for mm in g.members.values() for t in mm.topics}
        image = self.coordinator.writer.topic_image()
        return {n: image[n] for n in sorted(names) if n in image and not n.startswith("__")}

    def _arm(self, g, member, session_ms):
        if member.timer is not None:
            member.timer.cancel()
        member.timer = asyncio.get_running_loop().call_later(session_ms / 1000.0, self._expire, g.group_id,
                                                             member.member_id)

    def _expire(self, gid, mid):
        g = self.groups.get(gid)
        member = g.members.get(mid) if g is not None else None
        if member is not None:
            log.info("share group %s: member %s removed: session timed out", gid, mid)
            self._remove(g, member)

    def _remove(self, g, member):
        # Its share sessions stay: a leaving client sends its last
        # acknowledgements with ShareAcknowledge epoch -1 alongside this
        # heartbeat (Kafka releases a session on that, or on its connection).
        if member.timer is not None:
            member.timer.cancel()
        del g.members[member.member_id]
        g.epoch += 1
        self._reassign(g)

    def has_group(self, gid) -> bool:
        """Whether gid is a share group here (with members, or only a state)."""
        return gid in self.groups or (self.has_state is not None and self.has_state(gid))

    async def delete_group(self, gid) -> int:
        """DeleteGroups of a share group: refused while it has members; else
        its state goes (DeleteShareGroupState) and then the group."""
        code = self.coordinator.coordinator_error(gid)
        if code:
            return code
        g = self.groups.get(gid)
        if g is not None and g.members:
            return Errors.NON_EMPTY_GROUP
        code = await self.delete_state(gid)
        if not code:
            self.groups.pop(gid, None)
        return code

    def is_member(self, gid, mid) -> bool:
        g = self.groups.get(gid)
        return g is not None and mid in g.members

    # ---- ShareGroupDescribe, ListGroups ----

    def describe(self, ctx, req):
        R = m.ShareGroupDescribeResponse
        # Every group operation, as Kafka without an authorizer answers; with
        # one, the broker's authz_guard puts the principal's own instead.
        ops = GROUP_OPERATIONS if req.include_authorized_operations else NOT_ASKED
        out = []
        names = {tid: n for n, (tid, _) in self.coordinator.writer.topic_image().items()}
        for gid in req.group_ids:
            code = self.coordinator.coordinator_error(gid)
            g = self.groups.get(gid)
            if code:
                out.append(R.DescribedGroup(error_code=code, group_id=gid, group_state="", assignor_name=""))
                continue
            if g is None:
                msg = (f"Group {gid} is not a share group." if gid in self.coordinator.groups
                       else f"Group {gid} not found.")
                out.append(R.DescribedGroup(error_code=Errors.GROUP_ID_NOT_FOUND, error_message=msg, group_id=gid,
                                            group_state="Dead", assignor_name=""))
                continue
            members = [R.Member(
                member_id=mm.member_id, rack_id=mm.rack_id, member_epoch=mm.epoch, client_id=mm.client_id,
                client_host=mm.client_host, subscribed_topic_names=list(mm.topics),
                assignment=R.Assignment(topic_partitions=[
                    R.TopicPartitions(topic_id=tid, topic_name=names.get(tid, ""), partitions=list(ps))
                    for tid, ps in sorted(mm.assignment.items())]))
                for mm in g.members.values()]
            out.append(R.DescribedGroup(error_code=0, group_id=gid, group_state=g.state, group_epoch=g.epoch,
                                        assignment_epoch=g.assignment_epoch, assignor_name="simple",
                                        members=members,
                                        authorized_operations=ops))
        return R(throttle_time_ms=0, groups=out)

    def listed(self, index, states, types) -> list:
        """ListGroups' entries for the share groups of __consumer_offsets partition index."""
        if types is not None and "share" not in types:
            return []
        R = m.ListGroupsResponse
        return [R.ListedGroup(group_id=g.group_id, protocol_type="share", group_state=g.state, group_type="share")
                for g in self.groups.values() if self.coordinator.partition_for(g.group_id) == index
                and (states is None or g.state.lower() in states)]

    def stop(self):
        for g in self.groups.values():
            for mm in g.members.values():
                if mm.timer is not None:
                    mm.timer.cancel()
