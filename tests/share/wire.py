"""Helpers for the share-group tests: broker settings, raw KIP-932 requests
over a real socket, the group's share.* configs through the admin client."""
from __future__ import annotations

import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import wait_until

# Share sessions and heartbeats as Kafka's minima allow; locks of 15 s
# (the group minimum) unless a test sets its own bound.
CONFIG = {
    "group.share.record.lock.duration.ms": "15000",
    "group.share.min.record.lock.duration.ms": "1000",
}

RETRIABLE = (Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR, Errors.COORDINATOR_NOT_AVAILABLE)


def connect(b) -> Connection:
    host, port = str(b).rsplit(":", 1)
    return Connection(host, int(port))


def create_topic(b, name, partitions=1):
    a = AdminClient({"bootstrap.servers": str(b)})
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                    operation_timeout=10, request_timeout=30)[name].result(30)


def produce(b, topic, n, partitions=1, start=0):
    """n records dealt round-robin over the partitions, values b"v-<i>"."""
    p = Producer({"bootstrap.servers": str(b), "acks": "all", "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(topic, b"v-%d" % i, partition=i % partitions)
    assert p.flush(30) == 0


def member_id() -> str:
    return str(uuid.uuid4())


def set_group_configs(b, group, **configs):
    adm = AdminClient({"bootstrap.servers": str(b)})
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry(k.replace("_", "."), str(v), incremental_operation=AlterConfigOpType.SET)
        for k, v in configs.items()])
    adm.incremental_alter_configs([res])[res].result(timeout=30)


def heartbeat(conn, group, member, epoch, topics=None, retry=True):
    req = m.ShareGroupHeartbeatRequest(group_id=group, member_id=member, member_epoch=epoch,
                                       subscribed_topic_names=topics)
    deadline = time.monotonic() + 30
    while True:
        r = conn.request(req, api_version=1)
        if not retry or r.error_code not in RETRIABLE or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def join_assigned(conn, group, member, topics, count=1, timeout=30.0):
    """Join (epoch 0), then heartbeat until the member holds count
    partitions: the coordinator assigns a share-partition only once its state
    is initialized (Kafka's initialize-before-assign), at a heartbeat after
    the join. The last answer, its assignment the last one sent."""
    r = heartbeat(conn, group, member, 0, topics)
    assert r.error_code == Errors.NONE, r
    assignment = r.assignment
    deadline = time.monotonic() + timeout
    while sum(len(tp.partitions) for tp in assignment.topic_partitions) < count:
        assert time.monotonic() < deadline, f"{member} not assigned {count} partitions: {assignment}"
        time.sleep(0.05)
        r = heartbeat(conn, group, member, r.member_epoch)
        assert r.error_code == Errors.NONE, r
        if r.assignment is not None:
            assignment = r.assignment
    r.assignment = assignment
    return r


def share_fetch(conn, group, member, epoch, parts=(), acks=None, max_wait_ms=500, max_records=500,
                forgotten=(), max_bytes=1 << 20):
    """parts: [(topic_id, index)]; acks: {(topic_id, index): [(first, last, [types])]}."""
    R = m.ShareFetchRequest
    acks = acks or {}
    wanted = list(dict.fromkeys(list(parts) + list(acks)))
    topics = {}
    for tid, idx in wanted:
        topics.setdefault(tid, []).append(R.FetchPartition(partition_index=idx, acknowledgement_batches=[
            R.AcknowledgementBatch(first_offset=f, last_offset=l, acknowledge_types=list(t))
            for f, l, t in acks.get((tid, idx), ())]))
    req = R(group_id=group, member_id=member, share_session_epoch=epoch, max_wait_ms=max_wait_ms, min_bytes=1,
            max_bytes=max_bytes, max_records=max_records, batch_size=max_records,
            topics=[R.FetchTopic(topic_id=tid, partitions=ps) for tid, ps in topics.items()],
            forgotten_topics_data=[R.ForgottenTopic(topic_id=tid, partitions=list(ps)) for tid, ps in forgotten])
    return conn.request(req, api_version=1)


def share_ack(conn, group, member, epoch, acks):
    R = m.ShareAcknowledgeRequest
    topics = {}
    for (tid, idx), batches in acks.items():
        topics.setdefault(tid, []).append(R.AcknowledgePartition(partition_index=idx, acknowledgement_batches=[
            R.AcknowledgementBatch(first_offset=f, last_offset=l, acknowledge_types=list(t)) for f, l, t in batches]))
    req = R(group_id=group, member_id=member, share_session_epoch=epoch,
            topics=[R.AcknowledgeTopic(topic_id=tid, partitions=ps) for tid, ps in topics.items()])
    return conn.request(req, api_version=1)


def acquired(resp):
    """{(topic_id, index): [(first, last, delivery_count)]} of a ShareFetch answer."""
    out = {}
    for t in resp.responses:
        for p in t.partitions:
            if p.acquired_records:
                out[(t.topic_id, p.partition_index)] = [(a.first_offset, a.last_offset, a.delivery_count)
                                                        for a in p.acquired_records]
    return out


def partition_errors(resp):
    return {(t.topic_id, p.partition_index): (p.error_code, p.acknowledge_error_code)
            for t in resp.responses for p in t.partitions}


def wait_all_assigned(b, group, n, clients):
    """Until the n members of the share group each hold their partitions
    and were sent that assignment. A member is assigned at a heartbeat after
    its join, once the share-partition is initialized, so records produced
    earlier may all go to the first member. clients: consumers to poll
    meanwhile (before any record exists: librdkafka's members run on it)."""
    def assigned():
        for c in clients:
            c.poll(0.1)
        g = b.broker.share.groups.groups.get(group)
        # A member moves to its target only at its own heartbeat, and that
        # answer carries the partitions it moved to.
        return g is not None and len(g.members) == n and g.assignment_epoch == g.epoch and \
            all(mm.assignment and mm.epoch == g.epoch for mm in g.members.values())
    wait_until(assigned, f"the {n} members of {group} assigned", timeout=60)
