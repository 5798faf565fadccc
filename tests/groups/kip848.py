"""Helpers for the KIP-848 consumer-group tests: the broker settings, raw
ConsumerGroupHeartbeat/Describe requests over a real socket, librdkafka
consumers with group.protocol=consumer."""
from __future__ import annotations

import hashlib
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from pylog.client.wire import Connection
from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import FAST_GROUP_CONFIG, wait_until

# Heartbeats every 500 ms and sessions of 6 s (Kafka: 5 s and 45 s, with
# minima that these lower), so assignments move and dead members go in seconds.
CONFIG = {
    **FAST_GROUP_CONFIG,
    "group.consumer.heartbeat.interval.ms": "500",
    "group.consumer.min.heartbeat.interval.ms": "500",
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.min.session.timeout.ms": "6000",
}

RETRIABLE = (Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR, Errors.COORDINATOR_NOT_AVAILABLE)


def connect(b) -> Connection:
    host, port = str(b).rsplit(":", 1)
    return Connection(host, int(port))


def heartbeat(conn, group, member_id, epoch, topics=None, *, version=1, regex=None, assignor=None,
              instance_id=None, owned=None, rebalance_timeout_ms=None, retry=True):
    """One ConsumerGroupHeartbeat; a join (epoch 0) fills what a first request
    needs unless told otherwise. Retries the coordinator's retriable errors."""
    join = epoch == 0
    req = m.ConsumerGroupHeartbeatRequest(
        group_id=group, member_id=member_id, member_epoch=epoch, instance_id=instance_id, rack_id=None,
        rebalance_timeout_ms=(30000 if join else -1) if rebalance_timeout_ms is None else rebalance_timeout_ms,
        subscribed_topic_names=topics, subscribed_topic_regex=regex, server_assignor=assignor,
        topic_partitions=([] if join else None) if owned is None else owned)
    while True:
        r = conn.request(req, api_version=version)
        if not retry or r.error_code not in RETRIABLE:
            return r
        time.sleep(0.1)


def owned(resp):
    """The response's assignment as heartbeat TopicPartitions (what a member reports)."""
    T = m.ConsumerGroupHeartbeatRequest.TopicPartitions
    return [T(topic_id=tp.topic_id, partitions=list(tp.partitions)) for tp in resp.assignment.topic_partitions]


def describe(conn, group, version=0):
    while True:
        r = conn.request(m.ConsumerGroupDescribeRequest(group_ids=[group], include_authorized_operations=False),
                         api_version=version)
        g = r.groups[0]
        if g.error_code not in RETRIABLE:
            return g
        time.sleep(0.1)


def member_id() -> str:
    return str(uuid.uuid4())


def consumer(b, group, conf=None) -> Consumer:
    cfg = {"bootstrap.servers": str(b), "group.id": group, "group.protocol": "consumer",
           "auto.offset.reset": "earliest", "enable.auto.commit": False,
           "topic.metadata.refresh.interval.ms": 1000}
    cfg.update(conf or {})
    return Consumer(cfg)


def assigned(c, topic=None) -> set:
    return {(tp.topic, tp.partition) for tp in c.assignment() if topic is None or tp.topic == topic}


def poll_all(consumers, seconds=0.05):
    for c in consumers:
        c.poll(seconds)


def wait_balanced(consumers, topic, partitions, timeout=60.0, others=()):
    """Poll until every partition of topic is owned by exactly one consumer
    and the sizes differ by at most one; the assignments (list of sets)."""
    def check():
        poll_all(list(consumers) + list(others))
        sets = [{p for t, p in assigned(c, topic)} for c in consumers]
        every = [p for s in sets for p in s]
        if sorted(every) == list(range(partitions)) and max(map(len, sets)) - min(map(len, sets)) <= 1:
            return sets
        return None
    return wait_until(check, f"{len(consumers)} consumers balanced over {topic}'s {partitions} partitions",
                      timeout)


def group_records(b, group, kind="consumer", offsets_partitions=50):
    """[(type, key struct, value struct or None)] of the group's records of
    kind ("consumer": KIP-848, "share": KIP-932) in its __consumer_offsets
    partition, in log order, read by an unmodified Consumer (b: bootstrap
    servers) and decoded with the generated codecs."""
    c = Consumer({"bootstrap.servers": str(b), "group.id": f"records-reader-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(ot.TOPIC, ot.partition_for(group, offsets_partitions), 0)])
        out = []
        deadline = time.monotonic() + 60.0
        while True:
            assert time.monotonic() < deadline, "the end of __consumer_offsets not reached"
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                return out      # the partition's end
            rec = ot.decode_record(msg.key(), msg.value())
            if rec is not None and rec[0] == kind and rec[1][1].group_id == group:
                out.append((rec[1][0], rec[1][1], rec[2]))
    finally:
        c.close()


def metadata_hashes(b, group, offsets_partitions=50):
    """The MetadataHash of each ConsumerGroupMetadataValue (type 3) of the group, in log order."""
    return [v.metadata_hash for t, _, v in group_records(b, group, "consumer", offsets_partitions)
            if t == 3 and v is not None]


def former_metadata_hash(topics: dict) -> int:
    """pylog's metadata hash of {name: (topic id, partition count)} before
    Kafka's: what data dirs of earlier releases hold."""
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(topics):
        tid, n = topics[name]
        h.update(f"{name}\0{tid}\0{n}\n".encode())
    v = int.from_bytes(h.digest(), "big")
    return v - (1 << 64) if v >= 1 << 63 else v
