"""A share-partition's leader SIGKILLed: three `python -m pylog broker`
processes over ZooKeeper, a confluent ShareConsumer that accepted 10 records
and holds 10 more acquired but not acknowledged when the leader dies. The
new leader (elected once ZooKeeper expires the dead broker's session) reads
the share-partition's state from the share coordinator on another broker:
nothing accepted is delivered again, nothing unaccepted is lost."""
from __future__ import annotations

import signal
import time
import uuid

import pytest
from confluent_kafka import AcknowledgeType, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.protocol import messages as m
from pylog.share.coordinator import partition_for, topic_id_text
from tests.cluster.conftest import zk_connect, zookeeper  # noqa: F401 (fixtures)
from tests.cluster.test_faults import BROKER_CONFIG, BrokerProcess, wait_for

from .wire import CONFIG, RETRIABLE, set_group_configs

TIMEOUT = 60.0
STATE_PARTITIONS = 6
CONFIG_ = {**BROKER_CONFIG, **CONFIG,
           "offsets.topic.replication.factor": "3", "offsets.topic.num.partitions": "3",
           "share.coordinator.state.topic.replication.factor": "3", "share.coordinator.state.topic.min.isr": "2",
           "share.coordinator.state.topic.num.partitions": str(STATE_PARTITIONS)}


@pytest.fixture
def processes(zk_connect, tmp_path):  # noqa: F811
    procs = [BrokerProcess(i, str(tmp_path / f"b{i}"), zk_connect, CONFIG_) for i in (1, 2, 3)]
    try:
        for p in procs:
            p.launch()
        for p in procs:
            p.await_ready()
        yield procs
    finally:
        for p in procs:
            p.stop()


def metadata(bootstrap, topic):
    """{partition: (leader, isr)} from the cluster's metadata."""
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error:
        return {}
    return {i: (p.leader, list(p.isrs)) for i, p in md.partitions.items()}


def cluster_up(admin):
    # Ready processes register with ZooKeeper and elect a controller after: a loaded machine takes a while.
    wait_for(lambda: len((md := admin.list_topics(timeout=10)).brokers) == 3 and md.controller_id > 0, TIMEOUT,
             "three brokers and a controller")


def state_topic_leaders(processes, bootstrap):
    """__share_group_state made (FindCoordinator key type 2 asks for it, as a
    share-partition leader does) and led: {partition: leader}."""
    conn = processes[0].connect(10)
    try:
        key = f"probe:{topic_id_text(uuid.uuid4())}:0"
        wait_for(lambda: conn.request(m.FindCoordinatorRequest(key_type=2, coordinator_keys=[key]),
                                      6).coordinators[0].error_code not in RETRIABLE, TIMEOUT, "the share coordinator")
    finally:
        conn.close()
    wait_for(lambda: len(md := metadata(bootstrap, "__share_group_state")) == STATE_PARTITIONS
             and all(v[0] > 0 for v in md.values()), TIMEOUT, "the state topic's leaders")
    return {i: v[0] for i, v in metadata(bootstrap, "__share_group_state").items()}


def topic_id(process, topic):
    conn = process.connect(10)
    try:
        r = conn.request(m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name=topic)],
                                           allow_auto_topic_creation=False), 12)
    finally:
        conn.close()
    return r.topics[0].topic_id


def test_a_sigkilled_share_partition_leader_loses_nothing_accepted_and_nothing_unaccepted(processes):
    bootstrap = ",".join(p.address for p in processes)
    topic = "sck-move"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    cluster_up(admin)
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[2, 3, 1]])])[topic].result(TIMEOUT)
    wait_for(lambda: metadata(bootstrap, topic).get(0, (None, []))[0] == 2
             and len(metadata(bootstrap, topic)[0][1]) == 3, TIMEOUT, "the topic led by broker 2, full ISR")
    state_leaders = state_topic_leaders(processes, bootstrap)
    tid = topic_id(processes[0], topic)
    # The share-partition's state on a broker that stays (1 or 3).
    group = next(g for g in (f"sck-move-g-{i}" for i in range(10000))
                 if state_leaders[partition_for(g, tid, 0, STATE_PARTITIONS)] != 2)
    set_group_configs(processes[0].address, group, share_auto_offset_reset="earliest")
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for batch in (range(10), range(10, 20)):
        for v in batch:
            p.produce(topic, str(v).encode(), partition=0)
        assert p.flush(30) == 0

    a = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group, "share.acknowledgement.mode": "explicit",
                       "max.poll.records": 10})
    a.subscribe([topic])
    accepted, held = [], []
    deadline = time.monotonic() + TIMEOUT
    while len(accepted) < 10:
        assert time.monotonic() < deadline, "timed out waiting for 10 records to accept"
        for msg in a.poll(0.2):
            assert msg.error() is None, msg.error()
            a.acknowledge(msg, AcknowledgeType.ACCEPT)
            accepted.append(int(msg.value()))
    a.commit_sync()
    while not held:
        assert time.monotonic() < deadline, "timed out waiting for records to hold"
        held.extend(int(msg.value()) for msg in a.poll(0.2) if msg.error() is None)
    assert sorted(accepted) == list(range(10)) and set(held) <= set(range(10, 20))

    leader = processes[1]
    leader.signal(signal.SIGKILL)
    leader.wait_exit()
    survivors = ",".join(p.address for p in processes if p is not leader)
    wait_for(lambda: metadata(survivors, topic).get(0, (-1, []))[0] in (1, 3), TIMEOUT, "a new leader")
    b = ShareConsumer({"bootstrap.servers": survivors, "group.id": group})
    b.subscribe([topic])
    after = []
    deadline = time.monotonic() + TIMEOUT
    while len(set(after)) < 10:
        assert time.monotonic() < deadline, f"timed out waiting for the 10 records not accepted: {sorted(after)}"
        after.extend(int(msg.value()) for msg in b.poll(0.2) if msg.error() is None)
    end = time.monotonic() + 2
    while time.monotonic() < end:
        after.extend(int(msg.value()) for msg in b.poll(0.2) if msg.error() is None)
    b.commit_sync()
    b.close()
    a.close()
    assert sorted(after) == list(range(10, 20))     # nothing accepted again, nothing unaccepted lost
