"""The share-group request handlers (KIP-932): ShareGroupHeartbeat (76),
ShareGroupDescribe (77), ShareFetch (78), ShareAcknowledge (79), and the
pieces they run on: the share groups (groups.py), the share coordinator
(coordinator.py) and the share-partition manager (manager.py), built once
per broker by `ShareApis.start`.

Not built yet, so refused rather than served half: ACLs on share groups (a
broker with an authorizer answers GROUP_AUTHORIZATION_FAILED), and share
groups in a cluster, where a partition's leader must reach the share
coordinator on another broker with the persister RPCs (a broker of a cluster
answers UNSUPPORTED_VERSION, as a Kafka cluster without share.version does).

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
_CLUSTER = "Share groups are served by a lone pylog broker only: not yet in a cluster."


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

    def _refused(self):
        """(error code, message) when this broker does not serve share groups, else None."""
        if self.broker.authorizer is not None:
            return Errors.GROUP_AUTHORIZATION_FAILED, _DENIED
        if not self.broker.lone:
            return Errors.UNSUPPORTED_VERSION, _CLUSTER
        return None

    def heartbeat(self, header, req):
        no = self._refused()
        if no:
            return m.ShareGroupHeartbeatResponse(throttle_time_ms=0, error_code=no[0], error_message=no[1],
                                                 member_epoch=0, heartbeat_interval_ms=0)
        return self.groups.heartbeat(header, req)

    def describe(self, header, req):
        R = m.ShareGroupDescribeResponse
        no = self._refused()
        if no:
            return R(throttle_time_ms=0, groups=[R.DescribedGroup(
                error_code=no[0], error_message=no[1], group_id=g, group_state="", assignor_name="")
                for g in req.group_ids])
        return self.groups.describe(header, req)

    def share_fetch(self, header, req):
        no = self._refused()
        if no:
            return m.ShareFetchResponse(throttle_time_ms=0, error_code=no[0], error_message=no[1], responses=[],
                                        node_endpoints=[])
        return self.manager.share_fetch(header, req)

    def share_acknowledge(self, header, req):
        no = self._refused()
        if no:
            return m.ShareAcknowledgeResponse(throttle_time_ms=0, error_code=no[0], error_message=no[1],
                                              responses=[], node_endpoints=[])
        return self.manager.share_acknowledge(header, req)
