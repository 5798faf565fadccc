"""The share coordinator's RPCs on the wire (InitializeShareGroupState 83,
ReadShareGroupState 84, WriteShareGroupState 85, DeleteShareGroupState 86,
ReadShareGroupStateSummary 87) and FindCoordinator key type 2, against a real
broker over a real socket: what a share-partition leader of another broker
sends (pylog/share/persister.py), the epochs that fence it, and CLUSTER_ACTION
when an authorizer is on."""
from __future__ import annotations

import time
import uuid

import pytest

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.share.coordinator import partition_for, topic_id_text
from pylog.testing import running_broker

from .wire import CONFIG, RETRIABLE, connect

STATE_TOPIC = "__share_group_state"


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def find_share_coordinator(conn, keys, version=6):
    req = m.FindCoordinatorRequest(key_type=2, coordinator_keys=list(keys))
    deadline = time.monotonic() + 60
    while True:
        r = conn.request(req, api_version=version)
        if all(c.error_code not in RETRIABLE for c in r.coordinators) or time.monotonic() > deadline:
            return {c.key: c for c in r.coordinators}
        time.sleep(0.1)


def rpc(conn, cls, group, topic_id, rows, topic_cls, version=0):
    """One request of cls for topic_id's partitions rows ([{field: value}]),
    retried while the share coordinator loads; {partition: result}."""
    req = cls(group_id=group, topics=[getattr(cls, topic_cls)(
        topic_id=topic_id, partitions=[cls.PartitionData(**r) for r in rows])])
    deadline = time.monotonic() + 60
    while True:
        resp = conn.request(req, api_version=version)
        out = {p.partition: p for t in resp.results for p in t.partitions}
        if all(p.error_code not in RETRIABLE for p in out.values()) or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def initialize(conn, group, tid, partition, state_epoch, start):
    return rpc(conn, m.InitializeShareGroupStateRequest, group, tid,
               [{"partition": partition, "state_epoch": state_epoch, "start_offset": start}],
               "InitializeStateData")[partition]


def read(conn, group, tid, partition, leader_epoch):
    return rpc(conn, m.ReadShareGroupStateRequest, group, tid,
               [{"partition": partition, "leader_epoch": leader_epoch}], "ReadStateData")[partition]


def write(conn, group, tid, partition, state_epoch, leader_epoch, start, batches):
    SB = m.WriteShareGroupStateRequest.StateBatch
    return rpc(conn, m.WriteShareGroupStateRequest, group, tid, [{
        "partition": partition, "state_epoch": state_epoch, "leader_epoch": leader_epoch, "start_offset": start,
        "state_batches": [SB(first_offset=f, last_offset=l, delivery_state=s, delivery_count=c)
                          for f, l, s, c in batches]}], "WriteStateData")[partition]


def summary(conn, group, tid, partition, version=1):
    return rpc(conn, m.ReadShareGroupStateSummaryRequest, group, tid,
               [{"partition": partition, "leader_epoch": -1}], "ReadStateSummaryData", version)[partition]


def delete(conn, group, tid, partition):
    return rpc(conn, m.DeleteShareGroupStateRequest, group, tid, [{"partition": partition}],
               "DeleteStateData")[partition]


def batches(p):
    return [(b.first_offset, b.last_offset, b.delivery_state, b.delivery_count) for b in p.state_batches]


def test_the_persister_rpcs_keep_a_share_partitions_state_and_fence_old_epochs(broker):
    conn = connect(broker)
    group, tid = "rpc-state-g", uuid.uuid4()
    r = read(conn, group, tid, 0, 0)
    assert r.error_code == Errors.INVALID_REQUEST      # never initialized (Kafka 4.2+'s share coordinator)
    s = summary(conn, group, tid, 0)
    assert (s.error_code, s.start_offset) == (0, -1)
    assert initialize(conn, group, tid, 0, 0, 10).error_code == 0
    assert initialize(conn, group, tid, 0, 0, 10).error_code == Errors.FENCED_STATE_EPOCH
    r = read(conn, group, tid, 0, 3)
    assert (r.error_code, r.state_epoch, r.start_offset, batches(r)) == (0, 0, 10, [])
    # The read at leader epoch 3 was recorded: a leader at epoch 2 is fenced.
    assert read(conn, group, tid, 0, 2).error_code == Errors.FENCED_LEADER_EPOCH
    assert write(conn, group, tid, 0, 0, 2, 10, [(10, 12, 2, 1)]).error_code == Errors.FENCED_LEADER_EPOCH
    assert write(conn, group, tid, 0, 0, 3, 10, [(10, 12, 2, 1), (13, 14, 0, 1)]).error_code == 0
    assert write(conn, group, tid, 0, 0, 3, 13, [(13, 13, 2, 2)]).error_code == 0
    r = read(conn, group, tid, 0, 3)
    assert (r.start_offset, batches(r)) == (13, [(13, 13, 2, 2), (14, 14, 0, 1)])
    s = summary(conn, group, tid, 0)
    # Offset 13 acknowledged, 14 available: one delivered to completion.
    assert (s.error_code, s.state_epoch, s.leader_epoch, s.start_offset, s.delivery_complete_count) == (0, 0, 3, 13, 1)
    s = summary(conn, group, tid, 0, version=0)
    assert (s.error_code, s.start_offset) == (0, 13)
    # A new state epoch (AlterShareGroupOffsets): writes at the old one are fenced.
    assert initialize(conn, group, tid, 0, 1, 40).error_code == 0
    assert write(conn, group, tid, 0, 0, 3, 13, [(13, 13, 2, 3)]).error_code == Errors.FENCED_STATE_EPOCH
    assert delete(conn, group, tid, 0).error_code == 0
    assert read(conn, group, tid, 0, 5).error_code == Errors.INVALID_REQUEST
    assert delete(conn, group, tid, 0).error_code == 0                # deleting nothing is no error
    r = rpc(conn, m.ReadShareGroupStateRequest, group, tid, [{"partition": -1, "leader_epoch": 0}], "ReadStateData")
    assert r[-1].error_code == Errors.INVALID_REQUEST
    conn.close()


def test_several_share_partitions_of_a_request_are_answered_each(broker):
    conn = connect(broker)
    group, tid = "rpc-many-g", uuid.uuid4()
    out = rpc(conn, m.InitializeShareGroupStateRequest, group, tid,
              [{"partition": i, "state_epoch": 0, "start_offset": i * 100} for i in range(4)], "InitializeStateData")
    assert {i: p.error_code for i, p in out.items()} == {0: 0, 1: 0, 2: 0, 3: 0}
    out = rpc(conn, m.ReadShareGroupStateRequest, group, tid,
              [{"partition": i, "leader_epoch": 0} for i in range(5)], "ReadStateData")
    assert {i: (p.error_code, p.start_offset) for i, p in out.items()} == {
        0: (0, 0), 1: (0, 100), 2: (0, 200), 3: (0, 300), 4: (Errors.INVALID_REQUEST, -1)}
    conn.close()


def test_find_coordinator_key_type_2_names_the_state_partitions_leader(broker):
    conn = connect(broker)
    tid = uuid.uuid4()
    key = f"fc-g:{topic_id_text(tid)}:3"
    got = find_share_coordinator(conn, [key, "no-colons", f"g:{topic_id_text(tid)}:x", "g:notauuid:1"])
    assert (got[key].error_code, got[key].node_id, got[key].port) == (0, broker.broker.broker_id, int(str(broker).rsplit(":", 1)[1]))
    for bad in ("no-colons", f"g:{topic_id_text(tid)}:x", "g:notauuid:1"):
        assert got[bad].error_code == Errors.INVALID_REQUEST
    assert 0 <= partition_for("fc-g", tid, 3, 50) < 50
    # Before v6 the share key type does not exist.
    r = conn.request(m.FindCoordinatorRequest(key_type=2, coordinator_keys=[key]), api_version=5)
    assert r.coordinators[0].error_code == Errors.INVALID_REQUEST
    conn.close()


def test_the_rpcs_are_advertised(broker):
    conn = connect(broker)
    r = conn.request(m.ApiVersionsRequest(client_software_name="t", client_software_version="1"), api_version=3)
    versions = {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}
    assert [versions[key] for key in (83, 84, 85, 86, 87)] == [(0, 0), (0, 0), (0, 0), (0, 0), (0, 1)]
    assert versions[10] == (0, 6)
    conn.close()


@pytest.mark.parametrize("super_user", [False, True])
def test_the_rpcs_need_cluster_action_when_an_authorizer_is_on(tmp_path, super_user):
    authz = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
             "super.users": "User:ANONYMOUS" if super_user else "User:admin"}
    with running_broker(data_dir=tmp_path, config={**CONFIG, **authz}) as b:
        conn = connect(b)
        tid = uuid.uuid4()
        calls = [
            (m.InitializeShareGroupStateRequest, {"state_epoch": 0, "start_offset": 0}, "InitializeStateData"),
            (m.ReadShareGroupStateRequest, {"leader_epoch": 0}, "ReadStateData"),
            (m.WriteShareGroupStateRequest, {"state_epoch": 0, "leader_epoch": 0, "start_offset": 0},
             "WriteStateData"),
            (m.ReadShareGroupStateSummaryRequest, {"leader_epoch": -1}, "ReadStateSummaryData"),
            (m.DeleteShareGroupStateRequest, {}, "DeleteStateData")]
        for cls, fields, topic_cls in calls:
            out = rpc(conn, cls, "authz-g", tid, [{"partition": 0, **fields}, {"partition": 1, **fields}], topic_cls)
            codes = {i: p.error_code for i, p in out.items()}
            if super_user:
                assert Errors.CLUSTER_AUTHORIZATION_FAILED not in codes.values(), (cls.__name__, codes)
            else:
                assert codes == {0: Errors.CLUSTER_AUTHORIZATION_FAILED, 1: Errors.CLUSTER_AUTHORIZATION_FAILED}, \
                    cls.__name__
        key = f"authz-g:{topic_id_text(tid)}:0"
        got = find_share_coordinator(conn, [key])[key]
        assert got.error_code == (0 if super_user else Errors.CLUSTER_AUTHORIZATION_FAILED)
        conn.close()


def test_the_state_topic_has_kip_932s_configs(broker):
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
    conn = connect(broker)
    find_share_coordinator(conn, [f"cfg-g:{topic_id_text(uuid.uuid4())}:0"])
    conn.close()
    res = ConfigResource(ResourceType.TOPIC, STATE_TOPIC)
    admin = AdminClient({"bootstrap.servers": str(broker)})
    got = admin.describe_configs([res])[res].result(30)
    assert {k: got[k].value for k in ("cleanup.policy", "compression.type", "retention.ms", "segment.bytes",
                                      "min.insync.replicas")} == {
        "cleanup.policy": "delete", "compression.type": "producer", "retention.ms": "-1",
        "segment.bytes": "104857600", "min.insync.replicas": "1"}   # min ISR 1: the lone broker's setting
