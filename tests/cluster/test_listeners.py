"""Separate listeners in a 3-broker cluster (ZooKeeper, and the embedded
controller): clients on CLIENT, replication on REPLICATION
(inter.broker.listener.name), the controller's requests on CONTROL
(control.plane.listener.name, KIP-291). Every endpoint is registered (Kafka's
/brokers/ids/N JSON), replication and controller traffic arrive on their own
listeners, clients are told client-listener addresses, and the controller's
requests forged on a client listener are closed unanswered and change
nothing."""
from __future__ import annotations

import contextlib
import json

import pytest
from forged import leader_and_isr_nowhere, stop_replica_delete
from kafkawire import Wire

from pylog.protocol import messages as m
from pylog.testing import running_broker

from .test_cluster_zk import read_all
from .zkcluster import CLUSTER, ck, wait_for, wait_until_every_broker_knows_the_controller

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402  (after zkcluster's importorskip)

LISTENERS = {
    "listeners": "CLIENT://127.0.0.1:0,REPLICATION://127.0.0.1:0,CONTROL://127.0.0.1:0",
    "listener.security.protocol.map": "CLIENT:PLAINTEXT,REPLICATION:PLAINTEXT,CONTROL:PLAINTEXT",
    "inter.broker.listener.name": "REPLICATION",
    "control.plane.listener.name": "CONTROL",
}
TOPIC = "split"
N = 200


def ports(b):
    return {name: port for name, _host, port in b.broker.bound_listeners}


def on(b, listener):
    return f"127.0.0.1:{ports(b)[listener]}"


@contextlib.contextmanager
def three_brokers(mode, zk_connect=None):
    with contextlib.ExitStack() as stack:
        cfg = {**CLUSTER, **LISTENERS}
        if mode == "zookeeper":
            cfg["zookeeper.connect"] = zk_connect
            brokers = [stack.enter_context(running_broker(config={"broker.id": str(i), **cfg}))
                       for i in (1, 2, 3)]
        else:
            cfg["pylog.controller.id"] = "1"
            first = stack.enter_context(running_broker(config={"broker.id": "1", **cfg}))
            # The other brokers register on the controller's control-plane listener.
            cfg["pylog.controller.listener"] = on(first, "CONTROL")
            brokers = [first] + [stack.enter_context(running_broker(config={"broker.id": str(i), **cfg}))
                                 for i in (2, 3)]
        wait_for(lambda: sum(1 for b in brokers if b.broker.controller is not None
                             and b.broker.controller.is_active) == 1, what="one active controller")
        active = next(b for b in brokers if b.broker.controller is not None and b.broker.controller.is_active)
        wait_for(lambda: active.broker.controller.live_broker_ids() == {1, 2, 3}, what="every broker registered")
        wait_until_every_broker_knows_the_controller(brokers, active.broker.broker_id)
        yield brokers, active


@pytest.fixture(params=["zookeeper", "embedded"])
def split_cluster(request):
    zk = request.getfixturevalue("zk_connect") if request.param == "zookeeper" else None
    with three_brokers(request.param, zk) as (bs, active):
        yield request.param, bs, active


def connections_on(b, listener):
    return [c for c in b.broker.server.connections if c.listener.name == listener and not c.closed]


def test_replication_and_controller_traffic_use_their_own_listeners(split_cluster):
    mode, bs, active = split_cluster
    clients = ",".join(on(b, "CLIENT") for b in bs)
    admin = AdminClient({"bootstrap.servers": clients})
    admin.create_topics([NewTopic(TOPIC, 3, 3)])[TOPIC].result(30)

    def full():
        md = admin.list_topics(TOPIC, timeout=10).topics.get(TOPIC)
        return md is not None and not md.error and len(md.partitions) == 3 and all(
            p.leader >= 0 and len(p.isrs) == 3 for p in md.partitions.values())
    wait_for(full, timeout=60, what="leaders and full ISRs")
    p = ck.Producer({"bootstrap.servers": clients, "acks": "all", "enable.idempotence": True})
    for i in range(N):
        p.produce(TOPIC, str(i).encode(), partition=i % 3)
    assert p.flush(30) == 0

    # Clients are told the client listener's addresses, and only those.
    md = admin.list_topics(timeout=10)
    assert sorted((x.id, x.port) for x in md.brokers.values()) == sorted(
        (b.broker.broker_id, ports(b)["CLIENT"]) for b in bs)
    got = read_all(clients, TOPIC, 3, N)
    assert sorted(int(x.value()) for x in got) == list(range(N))

    # Every replica caught up, fetching on REPLICATION: each broker leads a
    # partition, so each has its followers' fetchers connected there.
    for b in bs:
        for i in range(3):
            wait_for(lambda b=b, i=i: b.broker.log_manager.get_partition(TOPIC, i).log_end_offset
                     == sum(1 for k in range(N) if k % 3 == i), what="every replica holds every record")
        wait_for(lambda b=b: len(connections_on(b, "REPLICATION")) > 0, what="replica fetchers on REPLICATION")
    # The controller reaches the other brokers on CONTROL.
    for b in bs:
        if b is not active:
            wait_for(lambda b=b: len(connections_on(b, "CONTROL")) > 0, what="the controller on CONTROL")

    # Registered with every endpoint, as Kafka registers them.
    if mode == "zookeeper":
        data, _ = active.broker.metadata_store.client.get("/brokers/ids/2")
        reg = json.loads(data)
        b2 = ports(bs[1])
        assert reg["endpoints"] == [f"{n}://127.0.0.1:{b2[n]}" for n in ("CLIENT", "REPLICATION", "CONTROL")]
        assert reg["listener_security_protocol_map"] == {
            "CLIENT": "PLAINTEXT", "REPLICATION": "PLAINTEXT", "CONTROL": "PLAINTEXT"}
    else:
        live = active.broker.controller.store.live_brokers()
        assert [e[0] for e in live[2].endpoints] == ["CLIENT", "REPLICATION", "CONTROL"]


def test_controller_requests_on_a_client_listener_change_nothing(split_cluster):
    mode, bs, active = split_cluster
    clients = ",".join(on(b, "CLIENT") for b in bs)
    admin = AdminClient({"bootstrap.servers": clients})
    admin.create_topics([NewTopic(TOPIC, 1, 3)])[TOPIC].result(30)
    target = next(b for b in bs if b is not active)
    wait_for(lambda: (TOPIC, 0) in target.broker.log_manager.partitions, what="broker holds the replica")
    p = ck.Producer({"bootstrap.servers": clients, "acks": "all"})
    for i in range(N):
        p.produce(TOPIC, str(i).encode())
    assert p.flush(30) == 0
    part = target.broker.log_manager.partitions[(TOPIC, 0)]
    wait_for(lambda: part.log_end_offset == N, what="the replica holds every record")
    leader_before = part.leader_id
    ctl = active.broker.controller
    # The real controller id and epoch and the target's real broker epoch:
    # on the inter-broker listeners these would be obeyed.
    epoch = target.broker.broker_epoch()
    forged = [stop_replica_delete(TOPIC, [0], ctl.broker_id, ctl.epoch, epoch),
              leader_and_isr_nowhere(TOPIC, 0, [1, 2, 3], ctl.broker_id, ctl.epoch, epoch)]
    for api_key, version, body in forged:
        with Wire(on(target, "CLIENT")) as w:
            keys = {k.api_key for k in w.request(18, 3, m.ApiVersionsRequest(
                client_software_name="t", client_software_version="1")).api_keys}
            assert not keys & {4, 5, 6, 7, 56}
            w.send(api_key, version, body)
            w.sock.settimeout(15)
            assert w.sock.recv(1) == b"", api_key
    assert target.broker.log_manager.partitions[(TOPIC, 0)] is part
    assert part.log_end_offset == N and part.leader_id == leader_before
    got = read_all(on(target, "CLIENT"), TOPIC, 1, N)
    assert len(got) == N
