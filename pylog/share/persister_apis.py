"""The share coordinator's RPCs on the wire (KIP-932's persister APIs, sent
by share-partition leaders of other brokers through persister.py):
InitializeShareGroupState (83), ReadShareGroupState (84),
WriteShareGroupState (85), DeleteShareGroupState (86),
ReadShareGroupStateSummary (87): version 0 each, and Summary v1's
DeliveryCompleteCount (KIP-1226). Every share-partition of a
request is one operation of the share coordinator (coordinator.py), answered
with its own error; a whole request without CLUSTER_ACTION is answered
CLUSTER_AUTHORIZATION_FAILED for each of its share-partitions
(authz_guard.py, as KafkaApis).

Threads: the event loop's thread only.
"""
from __future__ import annotations

import asyncio

from ..protocol import messages as m
from ..protocol.error_codes import Errors

_UNINITIALIZED = "Read on uninitialized share partition."


class PersisterApis:
    def __init__(self, coordinator):
        self.coordinator = coordinator

    def table(self):
        return {m.InitializeShareGroupStateRequest.API_KEY: self.initialize,
                m.ReadShareGroupStateRequest.API_KEY: self.read,
                m.WriteShareGroupStateRequest.API_KEY: self.write,
                m.DeleteShareGroupStateRequest.API_KEY: self.delete,
                m.ReadShareGroupStateSummaryRequest.API_KEY: self.read_summary}

    async def _each(self, req, resp_cls, op):
        """op(topic id, partition data) -> PartitionResult fields, for every
        share-partition of req at once; the response."""
        R = resp_cls
        topic_cls = next(getattr(R, n) for n in dir(R) if n.endswith("Result") and n != "PartitionResult")
        keys = [(t.topic_id, p) for t in req.topics for p in t.partitions]
        outs = await asyncio.gather(*(op(tid, p) for tid, p in keys))
        by_topic: dict = {}
        for (tid, p), fields in zip(keys, outs):
            by_topic.setdefault(tid, []).append(R.PartitionResult(partition=p.partition, **fields))
        return R(results=[topic_cls(topic_id=tid, partitions=ps) for tid, ps in by_topic.items()])

    def _invalid(self, p, leader_epoch=None):
        if p.partition < 0:
            return "The partition id is negative."
        if leader_epoch is not None and leader_epoch < 0:
            return "The leader epoch is negative."
        return None

    def initialize(self, header, req):
        c = self.coordinator

        async def op(tid, p):
            bad = self._invalid(p)
            if bad:
                return {"error_code": Errors.INVALID_REQUEST, "error_message": bad}
            return _error(await c.initialize(req.group_id, tid, p.partition, p.state_epoch, p.start_offset))
        return self._each(req, m.InitializeShareGroupStateResponse, op)

    def read(self, header, req):
        c = self.coordinator

        async def op(tid, p):
            bad = self._invalid(p, p.leader_epoch)
            if bad:
                return {"error_code": Errors.INVALID_REQUEST, "error_message": bad}
            code, st = await c.read(req.group_id, tid, p.partition, p.leader_epoch)
            if code:
                return {**_error(code), "state_epoch": 0, "start_offset": -1}
            if st is None:
                return {"error_code": Errors.INVALID_REQUEST, "error_message": _UNINITIALIZED,
                        "state_epoch": 0, "start_offset": -1}
            SB = m.ReadShareGroupStateResponse.StateBatch
            return {"error_code": 0, "state_epoch": st.state_epoch, "start_offset": st.start_offset,
                    "state_batches": [SB(first_offset=f, last_offset=l, delivery_state=s, delivery_count=n)
                                      for f, l, s, n in st.batches]}
        return self._each(req, m.ReadShareGroupStateResponse, op)

    def write(self, header, req):
        c = self.coordinator

        async def op(tid, p):
            bad = self._invalid(p)
            if bad:
                return {"error_code": Errors.INVALID_REQUEST, "error_message": bad}
            batches = [(b.first_offset, b.last_offset, b.delivery_state, b.delivery_count) for b in p.state_batches]
            return _error(await c.write(req.group_id, tid, p.partition, p.state_epoch, p.leader_epoch,
                                        p.start_offset, batches))
        return self._each(req, m.WriteShareGroupStateResponse, op)

    def delete(self, header, req):
        c = self.coordinator

        async def op(tid, p):
            bad = self._invalid(p)
            if bad:
                return {"error_code": Errors.INVALID_REQUEST, "error_message": bad}
            return _error(await c.delete(req.group_id, tid, p.partition))
        return self._each(req, m.DeleteShareGroupStateResponse, op)

    def read_summary(self, header, req):
        c = self.coordinator

        async def op(tid, p):
            bad = self._invalid(p)
            if bad:
                return {"error_code": Errors.INVALID_REQUEST, "error_message": bad}
            code, st = await c.read_summary(req.group_id, tid, p.partition)
            if code or st is None:
                return {**_error(code), "state_epoch": 0, "leader_epoch": -1, "start_offset": -1}
            return {"error_code": 0, "state_epoch": st.state_epoch, "leader_epoch": st.leader_epoch,
                    "start_offset": st.start_offset, "delivery_complete_count": st.delivery_complete_count()}
        return self._each(req, m.ReadShareGroupStateSummaryResponse, op)


def _error(code) -> dict:
    return {"error_code": code, "error_message": None}


def denied(req, resp_cls):
    """The response answering every share-partition of req
    CLUSTER_AUTHORIZATION_FAILED (KafkaApis' toGlobalErrorResponse)."""
    R = resp_cls
    topic_cls = next(getattr(R, n) for n in dir(R) if n.endswith("Result") and n != "PartitionResult")
    return R(results=[topic_cls(topic_id=t.topic_id, partitions=[
        R.PartitionResult(partition=p.partition, error_code=Errors.CLUSTER_AUTHORIZATION_FAILED,
                          error_message=None) for p in t.partitions]) for t in req.topics])
