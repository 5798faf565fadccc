"""A lone broker (no zookeeper.connect, no pylog.controller.id) has no
controller, so it neither advertises nor serves the controller's APIs
(LeaderAndIsr, UpdateMetadata, StopReplica) nor the ones brokers send their
controller (ControlledShutdown, AlterPartition): as Kafka does with an API its
listener does not enable, it closes the connection without an answer. A
plain client sending them changes nothing: no deletion, no metadata change,
no leadership change, and the data is there after a restart."""
from __future__ import annotations

import socket

import pytest
from forged import EVIL_HOST, leader_and_isr_nowhere, stop_replica_delete, update_metadata_evil
from kafkawire import Wire

from pylog.protocol import messages as m
from pylog.testing import running_broker

ck = pytest.importorskip("confluent_kafka")

TOPIC = "keep"
N = 100


def produce(bootstrap, n, prefix):
    p = ck.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(n):
        p.produce(TOPIC, f"{prefix}-{i}".encode())
    assert p.flush(30) == 0


def read_values(bootstrap, n):
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "forged-check", "enable.auto.commit": False})
    try:
        c.assign([ck.TopicPartition(TOPIC, 0, 0)])
        got = []
        for _ in range(100):
            for msg in c.consume(n - len(got), 0.5):
                assert not msg.error(), msg.error()
                got.append(msg.value())
            if len(got) >= n:
                break
        return got
    finally:
        c.close()


def closed_without_answer(wire):
    """True when the broker closed the connection and sent nothing."""
    wire.sock.settimeout(15)
    try:
        return wire.sock.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return False


def test_a_lone_broker_does_not_advertise_the_inter_broker_apis(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config={"broker.id": "1"}) as b:
        w = Wire(b)
        keys = {k.api_key for k in w.request(18, 3, m.ApiVersionsRequest(
            client_software_name="t", client_software_version="1")).api_keys}
        w.sock.close()
        assert {0, 1, 3, 18}.issubset(keys)   # the client APIs are there
        assert not keys & {4, 5, 6, 7, 56}


def test_forged_controller_requests_change_nothing_on_a_lone_broker(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config={"broker.id": "1", "num.partitions": "1"}) as b:
        b.broker.create_topic(TOPIC, 1)
        produce(b.bootstrap, N, "before")
        # Whatever epochs a forger puts in: nothing of these is served here.
        for api_key, version, body in (
                stop_replica_delete(TOPIC, [0], controller_id=1, controller_epoch=1 << 30, broker_epoch=-1),
                update_metadata_evil([1], controller_id=1, controller_epoch=1 << 30, broker_epoch=-1),
                leader_and_isr_nowhere(TOPIC, 0, [1], controller_id=1, controller_epoch=1 << 30,
                                       broker_epoch=-1)):
            w = Wire(b)
            w.send(api_key, version, body)
            assert closed_without_answer(w), f"api {api_key} was answered"
            w.sock.close()
        # The metadata is the broker's own, the topic still there and led here.
        w = Wire(b)
        md = w.request(3, 5, m.MetadataRequest(topics=None, allow_auto_topic_creation=False))
        w.sock.close()
        assert [(x.node_id, x.host, x.port) for x in md.brokers] == [(1, "127.0.0.1", b.port)]
        assert EVIL_HOST not in {x.host for x in md.brokers}
        [t] = [t for t in md.topics if t.name == TOPIC]
        assert t.error_code == 0 and [(p.partition_index, p.leader_id) for p in t.partitions] == [(0, 1)]
        produce(b.bootstrap, 1, "after")          # still the leader: produce works
        b.restart()
        assert b.broker.log_manager.get_partition(TOPIC, 0).log_end_offset == N + 1
        got = read_values(b.bootstrap, N + 1)
        assert got == [f"before-{i}".encode() for i in range(N)] + [b"after-0"]
