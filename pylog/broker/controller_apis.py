"""APIs only the controller answers.

- BrokerRegistration (62), BrokerHeartbeat (63), AllocateProducerIds (67): the
  embedded controller's broker-facing APIs, as KRaft brokers send them. Served
  by the broker whose id is pylog.controller.id (it holds the BrokerRegistry and
  the metadata store); NOT_CONTROLLER (41) on every other broker and in a
  ZooKeeper cluster.
- AlterPartitionReassignments (45), ListPartitionReassignments (46): partition
  reassignment (KIP-455), served by the active controller in either kind of
  cluster (NOT_CONTROLLER elsewhere, so an admin client looks it up again).
  pylog's own tagged field 7002 on the alter request sets the copy throttle
  (pylog/protocol/pylog_tags.py).
- ElectLeaders (43): preferred and unclean elections (KIP-183, KIP-460), by
  the active controller (NOT_CONTROLLER elsewhere; admin clients send it to
  the controller Metadata names).
"""
from __future__ import annotations

import asyncio
import logging

from ..cluster.metadata_store import PRODUCER_ID_BLOCK_SIZE, SECURITY_PROTOCOL_IDS, BrokerInfo
from ..errors import code_for
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..protocol.pylog_tags import controller_epoch_field, reassignment_throttle_of
from . import api_versions as av

__all__ = ["ControllerApis"]

log = logging.getLogger("pylog.broker")



class ControllerApis:
    """Handlers over Broker.broker_registry and Broker.metadata_store. Runs on
    the broker's loop; store writes go to worker threads (they fsync)."""

    def __init__(self, broker):
        self.broker = broker

    def table(self) -> dict:
        return {av.BROKER_REGISTRATION: self.broker_registration, av.BROKER_HEARTBEAT: self.broker_heartbeat,
                av.ALLOCATE_PRODUCER_IDS: self.allocate_producer_ids,
                av.ALTER_PARTITION_REASSIGNMENTS: self.alter_partition_reassignments,
                av.LIST_PARTITION_REASSIGNMENTS: self.list_partition_reassignments,
                av.ELECT_LEADERS: self.elect_leaders}

    def _epoch_field(self):
        """The current controller epoch as pylog's tagged field (its brokers
        check a new controller epoch against it), or None."""
        ctl = self._active_controller()
        epoch = ctl.epoch if ctl is not None else None
        return None if epoch is None else [controller_epoch_field(epoch)]

    def _active_controller(self):
        ctl = self.broker.controller
        return ctl if ctl is not None and ctl.is_active else None

    def broker_registration(self, header, req):
        R = m.BrokerRegistrationResponse
        registry = self.broker.broker_registry
        if registry is None:
            return R(throttle_time_ms=0, error_code=Errors.NOT_CONTROLLER, broker_epoch=-1)
        if req.cluster_id and req.cluster_id != self.broker.log_manager.cluster_id:
            log.warning("broker %d registers for cluster %s, this is %s: refused", req.broker_id,
                        req.cluster_id, self.broker.log_manager.cluster_id)
            return R(throttle_time_ms=0, error_code=Errors.INCONSISTENT_CLUSTER_ID, broker_epoch=-1)
        # Every listener the broker has, with Kafka's SecurityProtocol ids
        # (0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL); others unknown.
        names = {v: k for k, v in SECURITY_PROTOCOL_IDS.items()}
        reachable = [x for x in req.listeners if x.security_protocol in names]
        endpoints = tuple((x.name.upper(), x.host, x.port) for x in reachable)
        protocols = tuple((x.name.upper(), names[x.security_protocol]) for x in reachable)
        if not endpoints:
            return R(throttle_time_ms=0, error_code=Errors.INVALID_REQUEST, broker_epoch=-1)
        info = BrokerInfo(req.broker_id, endpoints[0][1], endpoints[0][2], req.rack, endpoints=endpoints,
                          protocols=protocols)

        async def register():
            code, epoch = await asyncio.get_running_loop().run_in_executor(
                None, registry.register, info, req.incarnation_id)
            return R(throttle_time_ms=0, error_code=code, broker_epoch=epoch,
                     _unknown_tagged_fields=self._epoch_field())
        return register()

    def broker_heartbeat(self, header, req):
        R = m.BrokerHeartbeatResponse
        registry = self.broker.broker_registry
        if registry is None:
            return R(throttle_time_ms=0, error_code=Errors.NOT_CONTROLLER, is_caught_up=False, is_fenced=True,
                     should_shut_down=False)

        def answer(code):
            return R(throttle_time_ms=0, error_code=code, is_caught_up=code == 0, is_fenced=code != 0,
                     should_shut_down=bool(req.want_shut_down) and code == 0,
                     _unknown_tagged_fields=self._epoch_field())
        if not req.want_shut_down:
            return answer(registry.heartbeat(req.broker_id, req.broker_epoch))

        async def goodbye():   # closing the session notifies the controller: off the loop
            code = await asyncio.get_running_loop().run_in_executor(
                None, registry.heartbeat, req.broker_id, req.broker_epoch, True)
            return answer(code)
        return goodbye()

    def allocate_producer_ids(self, header, req):
        R = m.AllocateProducerIdsResponse
        registry, store = self.broker.broker_registry, self.broker.metadata_store
        if registry is None or store is None:
            return R(throttle_time_ms=0, error_code=Errors.NOT_CONTROLLER, producer_id_start=-1, producer_id_len=0)
        epoch = registry.broker_epoch(req.broker_id)
        if epoch is None:
            return R(throttle_time_ms=0, error_code=Errors.BROKER_ID_NOT_REGISTERED, producer_id_start=-1,
                     producer_id_len=0)
        if epoch != req.broker_epoch:
            return R(throttle_time_ms=0, error_code=Errors.STALE_BROKER_EPOCH, producer_id_start=-1,
                     producer_id_len=0)

        async def allocate():
            start = await asyncio.get_running_loop().run_in_executor(
                None, store.next_producer_id_block, PRODUCER_ID_BLOCK_SIZE)
            return R(throttle_time_ms=0, error_code=0, producer_id_start=start,
                     producer_id_len=PRODUCER_ID_BLOCK_SIZE)
        return allocate()

    def alter_partition_reassignments(self, header, req):
        R = m.AlterPartitionReassignmentsResponse
        ctl = self._active_controller()
        if ctl is None:
            return R(throttle_time_ms=0, error_code=Errors.NOT_CONTROLLER,
                     error_message="this broker is not the controller",
                     responses=[])
        try:
            throttle = reassignment_throttle_of(req)
        except ValueError as e:
            return R(throttle_time_ms=0, error_code=Errors.INVALID_REQUEST, error_message=str(e), responses=[])
        targets = {(t.name, p.partition_index): None if p.replicas is None else list(p.replicas)
                   for t in req.topics for p in t.partitions}

        async def run():
            results = await asyncio.wrap_future(ctl.submit("reassign_partitions", targets, throttle))
            by_topic: dict[str, list] = {}
            for (topic, index), err in sorted(results.items()):
                by_topic.setdefault(topic, []).append(R.ReassignablePartitionResponse(
                    partition_index=index, error_code=0 if err is None else code_for(err),
                    error_message=None if err is None else str(err)))
            return R(throttle_time_ms=0, error_code=0, error_message=None, responses=[
                R.ReassignableTopicResponse(name=t, partitions=ps) for t, ps in by_topic.items()])
        return run()

    def list_partition_reassignments(self, header, req):
        R = m.ListPartitionReassignmentsResponse
        ctl = self._active_controller()
        if ctl is None:
            return R(throttle_time_ms=0, error_code=Errors.NOT_CONTROLLER,
                     error_message="this broker is not the controller",
                     topics=[])
        wanted = None if req.topics is None else {(t.name, i) for t in req.topics for i in t.partition_indexes}

        async def run():
            ongoing = await asyncio.wrap_future(ctl.submit("reassignments"))
            by_topic: dict[str, list] = {}
            for (topic, index), (replicas, adding, removing) in sorted(ongoing.items()):
                if wanted is None or (topic, index) in wanted:
                    by_topic.setdefault(topic, []).append(R.OngoingPartitionReassignment(
                        partition_index=index, replicas=replicas, adding_replicas=adding,
                        removing_replicas=removing))
            return R(throttle_time_ms=0, error_code=0, error_message=None, topics=[
                R.OngoingTopicReassignment(name=t, partitions=ps) for t, ps in by_topic.items()])
        return run()

    def elect_leaders(self, header, req):
        R = m.ElectLeadersResponse
        requested = None if req.topic_partitions is None else [
            (t.topic, p) for t in req.topic_partitions for p in t.partitions]

        def answer(top_code, results):
            by_topic: dict[str, list] = {}
            for (topic, index), (code, message) in results.items():
                by_topic.setdefault(topic, []).append(R.PartitionResult(
                    partition_id=index, error_code=code, error_message=message))
            return R(throttle_time_ms=0, error_code=top_code, replica_election_results=[
                R.ReplicaElectionResult(topic=t, partition_result=ps) for t, ps in by_topic.items()])

        def refuse(code, message):
            # v0 has no top-level error code: the error goes to every partition.
            if header.request_api_version >= 1:
                return answer(code, {})
            return answer(0, {tp: (code, message) for tp in requested or ()})
        if req.election_type not in (0, 1):
            return refuse(Errors.INVALID_REQUEST, f"Unknown election type {req.election_type}")
        ctl = self._active_controller()
        if ctl is None:
            return refuse(Errors.NOT_CONTROLLER, "this broker is not the controller")

        async def run():
            results = await asyncio.wrap_future(ctl.submit("elect_leaders", req.election_type == 1, requested))
            return answer(0, results)
        return run()
