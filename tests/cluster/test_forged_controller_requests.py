"""Controller requests forged by a plain client against a broker of a
3-broker cluster (ZooKeeper, and the embedded controller): a broker admits
LeaderAndIsr / UpdateMetadata / StopReplica only when they carry its own
current broker epoch (KIP-380; else STALE_BROKER_EPOCH, 77) and come from the
current controller (else STALE_CONTROLLER_EPOCH, 11). Each forged request
must change nothing: the replica is not deleted (its records are there after
a restart), the metadata keeps the real brokers and topics, leadership does
not move and produce still works."""
from __future__ import annotations

import pytest
from forged import EVIL_HOST, leader_and_isr_nowhere, stop_replica_delete, update_metadata_evil
from kafkawire import Wire

from pylog.protocol import messages as m

from .test_cluster_zk import read_all
from .zkcluster import ck, cluster, create_topic, embedded_cluster, produce_numbers, wait_for

TOPIC = "keep"
N = 100
STALE_CONTROLLER_EPOCH, STALE_BROKER_EPOCH = 11, 77


@pytest.fixture(params=["zookeeper", "embedded"])
def three_brokers(request):
    if request.param == "zookeeper":
        with cluster(request.getfixturevalue("zk_connect")) as bs:
            yield request.param, bs
    else:
        with embedded_cluster() as bs:
            yield request.param, bs


def metadata(b):
    w = Wire(b)
    try:
        md = w.request(3, 5, m.MetadataRequest(topics=None, allow_auto_topic_creation=False))
    finally:
        w.sock.close()
    brokers = sorted((x.node_id, x.host, x.port) for x in md.brokers)
    topics = {t.name: sorted((p.partition_index, p.leader_id, tuple(sorted(p.replica_nodes)),
                              tuple(sorted(p.isr_nodes))) for p in t.partitions)
              for t in md.topics if t.error_code == 0}
    return brokers, md.controller_id, topics


def registered_epoch(b):
    """The broker's epoch as its controller knows it: the czxid of its
    ZooKeeper registration, or what the embedded controller answered it."""
    if b.broker.controller_client is not None:
        return b.broker.controller_client.broker_epoch
    store = b.broker.metadata_store
    if hasattr(store, "client"):
        return store.client.exists(f"/brokers/ids/{b.broker.broker_id}").czxid
    return store.registered_broker_epoch()   # the embedded controller broker's own


def log_end(b):
    p = b.broker.log_manager.partitions.get((TOPIC, 0))
    return None if p is None else p.log_end_offset


def forge(b, api_key, version, body):
    w = Wire(b)
    try:
        return w.request(api_key, version, body)
    finally:
        w.sock.close()


def requests_with(broker_ids, controller_id, controller_epoch, broker_epoch):
    return (stop_replica_delete(TOPIC, [0], controller_id, controller_epoch, broker_epoch),
            update_metadata_evil(broker_ids, controller_id, controller_epoch, broker_epoch),
            leader_and_isr_nowhere(TOPIC, 0, broker_ids, controller_id, controller_epoch, broker_epoch))


def test_forged_controller_requests_change_nothing_on_a_cluster_broker(three_brokers):
    mode, bs = three_brokers
    create_topic(bs, TOPIC, 1, rf=3)
    produce_numbers(bs, TOPIC, N)
    ids = [1, 2, 3]
    target = bs[1]                     # broker 2: never the embedded controller; any role with ZooKeeper
    active = next(b.broker.controller for b in bs if b.broker.controller is not None and b.broker.controller.is_active)
    ctl_id, ctl_epoch = active.broker_id, active.epoch
    other_id = next(i for i in ids if i != ctl_id)
    mine = registered_epoch(target)
    assert mine > 0 and ctl_epoch >= 1
    wait_for(lambda: log_end(target) == N, what="broker 2 holds every record")
    before = metadata(target)
    assert before[1] == ctl_id and len(before[0]) == 3 and before[2][TOPIC][0][1] in ids

    cases = [
        ("broker epoch -1", -1, ctl_id, ctl_epoch, STALE_BROKER_EPOCH),
        ("an older broker epoch", mine - 1, ctl_id, ctl_epoch, STALE_BROKER_EPOCH),
        ("an old controller epoch", mine, ctl_id, ctl_epoch - 1, STALE_CONTROLLER_EPOCH),
        ("another controller with the current epoch", mine, other_id, ctl_epoch, STALE_CONTROLLER_EPOCH),
    ]
    # A newer epoch is checked with the cluster's metadata (ZooKeeper names
    # the controller of each epoch; the embedded controller answers its own
    # epoch): one it does not hold is no controller's, even from the real id.
    cases.append(("a controller epoch the controller does not hold", mine, ctl_id, ctl_epoch + 1,
                  STALE_CONTROLLER_EPOCH))
    cases.append(("another controller with a newer epoch", mine, other_id, ctl_epoch + 1,
                  STALE_CONTROLLER_EPOCH))
    answers = []
    for what, broker_epoch, controller_id, controller_epoch, want in cases:
        for api_key, version, body in requests_with(ids, controller_id, controller_epoch, broker_epoch):
            answers.append((what, api_key, want, forge(target, api_key, version, body).error_code))
    # A broker epoch newer than the broker's own is waited for (its own
    # registration answer may be late), then refused as well.
    api_key, version, body = stop_replica_delete(TOPIC, [0], ctl_id, ctl_epoch, mine + 1000)
    answers.append(("a newer broker epoch", api_key, STALE_BROKER_EPOCH,
                    forge(target, api_key, version, body).error_code))

    # Nothing changed: the replica, the metadata, the leader.
    assert log_end(target) == N
    after = metadata(target)
    assert after == before
    assert EVIL_HOST not in {h for _, h, _ in after[0]}
    assert [a for a in answers if a[2] != a[3]] == []
    p = ck.Producer({"bootstrap.servers": ",".join(str(b) for b in bs), "acks": "all"})
    p.produce(TOPIC, b"after")
    assert p.flush(30) == 0
    wait_for(lambda: log_end(target) == N + 1, what="broker 2 replicates the new record")
    # The data survives broker 2's restart, on broker 2 itself.
    target.restart()
    assert log_end(target) == N + 1
    got = read_all(str(target), TOPIC, 1, N + 1)
    assert sorted(x.value() for x in got) == sorted([str(i).encode() for i in range(N)] + [b"after"])


def test_forged_requests_to_the_controller_move_no_leadership(three_brokers):
    """ControlledShutdown (7) and AlterPartition (56) are what brokers send the
    controller; every version served carries the sender's broker epoch, and
    the controller takes them only with the sender's current one (Kafka's
    ZooKeeper controller: STALE_BROKER_EPOCH). Forged, they would move every
    leadership off a broker or shrink an ISR to its leader."""
    mode, bs = three_brokers
    create_topic(bs, TOPIC, 1, rf=3)
    produce_numbers(bs, TOPIC, N)
    host = next(b for b in bs if b.broker.controller is not None and b.broker.controller.is_active)
    state = host.broker.controller.partition_states()[(TOPIC, 0)]
    leader = state.leader
    before = metadata(host)
    assert sorted(before[2][TOPIC][0][3]) == [1, 2, 3]
    wrong = [-1, registered_epoch(next(b for b in bs if b.broker.broker_id == leader)) - 1]
    answers = []
    for epoch in wrong:
        r = forge(host, 7, 2, m.ControlledShutdownRequest(broker_id=leader, broker_epoch=epoch))
        answers.append(("ControlledShutdown", epoch, r.error_code, len(r.remaining_partitions)))
        Q = m.AlterPartitionRequest
        r = forge(host, 56, 0, Q(broker_id=leader, broker_epoch=epoch, topics=[Q.TopicData(
            topic_name=TOPIC, partitions=[Q.PartitionData(
                partition_index=0, leader_epoch=state.leader_epoch, new_isr=[leader],
                leader_recovery_state=0, partition_epoch=state.partition_epoch)])]))
        answers.append(("AlterPartition", epoch, r.error_code, r.topics))
    after = metadata(host)
    assert after == before
    now = host.broker.controller.partition_states()[(TOPIC, 0)]
    assert (now.leader, sorted(now.isr), now.leader_epoch) == (leader, [1, 2, 3], state.leader_epoch)
    assert [a[:3] for a in answers] == [("ControlledShutdown", -1, STALE_BROKER_EPOCH),
                                        ("AlterPartition", -1, STALE_BROKER_EPOCH),
                                        ("ControlledShutdown", wrong[1], STALE_BROKER_EPOCH),
                                        ("AlterPartition", wrong[1], STALE_BROKER_EPOCH)]
    # The leader still takes writes.
    p = ck.Producer({"bootstrap.servers": ",".join(str(b) for b in bs), "acks": "all"})
    p.produce(TOPIC, b"after")
    assert p.flush(30) == 0


def test_a_broker_not_yet_registered_refuses_broker_epoch_minus_one(tmp_path, monkeypatch):
    """Before its registration is answered a broker's own epoch is unknown
    (-1): a forged request carrying -1 must not pass as "its" epoch. The
    controller here never answers, so the broker serves unregistered (after
    its registration wait)."""
    import os
    import socket

    from pylog.broker import Broker, BrokerConfig
    from pylog.broker import broker as broker_module
    from pylog.testing import BrokerHandle

    # The same path as after the real 30 s wait (the timeout branch of the
    # start-up), reached in 1 s: waiting it out cost this test 30 s a run.
    monkeypatch.setattr(broker_module, "REGISTRATION_WAIT_S", 1.0)

    gone = socket.socket()
    gone.bind(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % gone.getsockname()[1]
    gone.close()                                   # connections to it are refused
    cfg = {"broker.id": "2", "log.dirs": str(tmp_path / "d"), "listeners": "PLAINTEXT://127.0.0.1:0",
           "pylog.controller.id": "1", "pylog.controller.listener": addr}
    # Past the broker's wait for its registration.
    b = BrokerHandle(Broker(BrokerConfig(cfg)).start_in_thread(timeout=120), cfg)
    try:
        # A replica hosted here (as a LeaderAndIsr would have opened it): this
        # broker never reached its controller, so nothing else can make one.
        lm = b.broker.log_manager
        specs = [(TOPIC, 0, None, None)]
        b.broker.call(lambda: lm.register_replicas(specs, lm.open_replicas(specs)))
        part = b.broker.log_manager.partitions[(TOPIC, 0)]
        leader_before = part.leader_id
        assert b.broker.controller_client.broker_epoch == -1
        for api_key, version, body in requests_with([2], 1, 1, -1):
            assert forge(b, api_key, version, body).error_code == STALE_BROKER_EPOCH, api_key
        # Not deleted, not handed to broker 99, no bogus broker in the metadata.
        assert b.broker.log_manager.partitions.get((TOPIC, 0)) is part and os.path.isdir(part.log.path)
        assert part.leader_id == leader_before
        assert EVIL_HOST not in {h for _, h, _ in metadata(b)[0]}
    finally:
        b.broker.stop_in_thread()
