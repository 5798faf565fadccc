"""The share-group request handlers (KIP-932): ShareGroupHeartbeat (76),
ShareGroupDescribe (77), ShareFetch (78), ShareAcknowledge (79), and the
pieces they run on: the share groups (groups.py), the share coordinator
(coordinator.py) and the share-partition manager (manager.py), built once
per broker by `ShareApis.start`.

ACLs on share groups are not built: a broker with an authorizer refuses
these APIs with GROUP_AUTHORIZATION_FAILED rather than serve them unchecked.

Threads: the event loop's thread only.
"""
from __future__ import annotations

from ..broker import api_versions as av
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from .coordinator import ShareCoordinator
from .groups import ShareGroups
from .manager import SharePartitionManager

_DENIED = "Share-group ACLs are not implemented by pylog yet: refused on a broker with an authorizer."


class ShareApis:
    def __init__(self, broker, group_coordinator, writer, purgatory):
        self.broker = broker
        cache = broker.metadata_cache
        self.groups = ShareGroups(broker.config, group_coordinator, lambda gid: cache.group_configs.get(gid))
        group_coordinator.share = self.groups     # ListGroups lists share groups too (groups/api.py)
        self.coordinator = ShareCoordinator(broker.config, writer)
        self.manager = SharePartitionManager(broker, purgatory, self.coordinator, self.groups)
        self.groups.share_state_topic = self.coordinator.ensure_topic

    def table(self):
        return {av.SHARE_GROUP_HEARTBEAT: self.heartbeat, av.SHARE_GROUP_DESCRIBE: self.describe,
                av.SHARE_FETCH: self.share_fetch, av.SHARE_ACKNOWLEDGE: self.share_acknowledge}

    def start(self):
        self.coordinator.start()

    async def stop(self):
        self.manager.stop()
        self.groups.stop()
        await self.coordinator.stop()

    def _refused(self) -> bool:
        return self.broker.authorizer is not None

    def heartbeat(self, header, req):
        if self._refused():
            return m.ShareGroupHeartbeatResponse(throttle_time_ms=0, error_code=Errors.GROUP_AUTHORIZATION_FAILED,
                                                 error_message=_DENIED, member_epoch=0, heartbeat_interval_ms=0)
        return self.groups.heartbeat(header, req)

    def describe(self, header, req):
        R = m.ShareGroupDescribeResponse
        if self._refused():
            return R(throttle_time_ms=0, groups=[R.DescribedGroup(
                error_code=Errors.GROUP_AUTHORIZATION_FAILED, error_message=_DENIED, group_id=g, group_state="",
                assignor_name="") for g in req.group_ids])
        return self.groups.describe(header, req)

    def share_fetch(self, header, req):
        if self._refused():
            return m.ShareFetchResponse(throttle_time_ms=0, error_code=Errors.GROUP_AUTHORIZATION_FAILED,
                                        error_message=_DENIED, responses=[], node_endpoints=[])
        return self.manager.share_fetch(header, req)

    def share_acknowledge(self, header, req):
        if self._refused():
            return m.ShareAcknowledgeResponse(throttle_time_ms=0, error_code=Errors.GROUP_AUTHORIZATION_FAILED,
                                              error_message=_DENIED, responses=[], node_endpoints=[])
        return self.manager.share_acknowledge(header, req)
