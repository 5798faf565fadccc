"""Several brokers without ZooKeeper: broker 1 hosts the embedded controller
(metadata in its data directory), the others register with it over the wire
and heartbeat. Real in-process brokers on loopback, real confluent-kafka
clients; the registry's expiry is also checked on its own against a real
LocalMetadataStore with a clock the test moves."""
from __future__ import annotations

import uuid

from pylog.client.wire import Connection
from pylog.cluster.local_store import LocalMetadataStore
from pylog.cluster.metadata_store import BrokerInfo
from pylog.cluster.registry import BrokerRegistry
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker

from .test_cluster_zk import read_all
from .zkcluster import (
    AdminClient,
    bootstrap,
    ck,
    create_topic,
    embedded_cluster,
    partition_md,
    produce_numbers,
    wait_for,
)


def _leo(b, topic, part):
    return b.broker.log_manager.get_partition(topic, part).log_end_offset


def test_brokers_form_a_cluster_replicate_and_share_one_identity(tmp_path):
    with embedded_cluster() as bs:
        admin = create_topic(bs[1:2], "orders", 3)     # asked of a non-controller: routed by the client
        assert all(len(p.replicas) == 3 for p in partition_md(admin, "orders").values())
        produce_numbers(bs, "orders", 3000)
        got = read_all(str(bs[2]), "orders", 3, 3000)
        assert sorted(int(x.value()) for x in got) == list(range(3000))
        for part in range(3):
            wait_for(lambda part=part: len({_leo(b, "orders", part) for b in bs}) == 1,
                     what="every replica at the same log end offset")
        assert sum(_leo(bs[0], "orders", part) for part in range(3)) == 3000
        # One cluster id everywhere (the controller's), and producer ids never
        # handed out twice by different brokers.
        ids, pids = set(), set()
        for b in bs:
            with Connection("127.0.0.1", b.port) as c:
                ids.add(c.request(m.MetadataRequest(topics=[], allow_auto_topic_creation=False),
                                  api_version=5).cluster_id)
                for _ in range(2):
                    r = c.request(m.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=1),
                                  api_version=1)
                    assert r.error_code == 0
                    pids.add(r.producer_id)
        assert ids == {bs[0].broker.log_manager.cluster_id}
        assert len(pids) == 6


def test_a_stopping_broker_is_dropped_at_once_and_its_leadership_moves():
    # A session timeout far longer than the test's deadline: only the stopping
    # broker's goodbye (a heartbeat with want_shut_down) can explain a prompt drop.
    with embedded_cluster(**{"broker.session.timeout.ms": "60000"}) as bs:
        admin = create_topic(bs, "t", 3)          # each broker leads one partition
        victim = bs[2]
        vid = victim.broker.broker_id
        led = [i for i, p in partition_md(admin, "t").items() if p.leader == vid]
        assert led
        victim.broker.stop_in_thread()
        ctl = bs[0].broker.controller
        wait_for(lambda: vid not in ctl.live_broker_ids(), timeout=10, what="the stopped broker dropped")
        admin2 = AdminClient({"bootstrap.servers": bootstrap(bs[:2])})
        wait_for(lambda: all(partition_md(admin2, "t")[i].leader not in (-1, vid) for i in led),
                 what="leaders on live brokers")
        assert all(vid not in p.isrs for p in partition_md(admin2, "t").values())


def test_brokers_register_again_after_the_controller_restarts(tmp_path):
    dirs = [str(tmp_path / f"b{i}") for i in (1, 2, 3)]
    with embedded_cluster(data_dirs=dirs, **{"broker.heartbeat.interval.ms": "200"}) as bs:
        create_topic(bs, "before", 2)
        ctl_port = bs[0].port
        old_epochs = {b.broker.broker_id: b.broker.controller_client.broker_epoch for b in bs[1:]}
        bs[0].broker.stop_in_thread()
        cfg = {k: v for k, v in bs[0].broker.config.props.items() if k not in ("log.dirs", "listeners")}
        with running_broker(data_dir=dirs[0], port=ctl_port, config=cfg) as again:
            ctl = again.broker.controller
            # The store lists a broker before the broker reads its new epoch in
            # the answer: wait for both.
            wait_for(lambda: ctl.is_active and ctl.live_broker_ids() == {1, 2, 3}
                     and all(b.broker.controller_client.broker_epoch > old_epochs[b.broker.broker_id]
                             for b in bs[1:]),
                     timeout=30, what="the other brokers registered with the restarted controller")
            # The topics it knew are still its own; new ones can be made.
            create_topic([again, *bs[1:]], "after", 2)
            admin = AdminClient({"bootstrap.servers": bootstrap([again, *bs[1:]])})
            assert len(partition_md(admin, "before")) == 2
            p = ck.Producer({"bootstrap.servers": bootstrap([again, *bs[1:]]), "acks": "all"})
            for i in range(100):
                p.produce("before", str(i).encode())
                p.produce("after", str(i).encode())
            assert p.flush(30) == 0


def _registration(broker_id, cluster_id=""):
    return m.BrokerRegistrationRequest(
        broker_id=broker_id, cluster_id=cluster_id, incarnation_id=uuid.uuid4(),
        listeners=[m.BrokerRegistrationRequest.Listener(name="PLAINTEXT", host="127.0.0.1", port=1,
                                                        security_protocol=0)],
        features=[], rack=None)


def test_a_non_controller_refuses_controller_apis():
    with embedded_cluster(n=2) as bs:
        with Connection("127.0.0.1", bs[1].port) as c:
            assert c.request(_registration(9), api_version=0).error_code == 41   # NOT_CONTROLLER
        with Connection("127.0.0.1", bs[0].port) as c:
            # The controller's own id cannot be taken by another process.
            assert c.request(_registration(1), api_version=0).error_code == Errors.DUPLICATE_BROKER_REGISTRATION
            r = c.request(_registration(2, cluster_id="not-this-cluster"), api_version=0)
            assert r.error_code == 104   # INCONSISTENT_CLUSTER_ID


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_registry_expires_silent_brokers_and_fences_old_incarnations(tmp_path):
    """The registry on its own, over a real LocalMetadataStore: a broker that
    stops heartbeating disappears from live_brokers (what the Controller
    watches) after the session timeout, not before; a new incarnation of a
    broker replaces the old and the old one's heartbeats are refused."""
    clock = _Clock()
    watcher = LocalMetadataStore(str(tmp_path))
    reg = BrokerRegistry(str(tmp_path), session_timeout_ms=9000, clock=clock)
    try:
        a, b = uuid.uuid4(), uuid.uuid4()
        code, e2 = reg.register(BrokerInfo(2, "h", 1, None), a)
        assert code == 0
        assert reg.register(BrokerInfo(2, "h", 1, None), a) == (0, e2)       # a retried request
        code, e3 = reg.register(BrokerInfo(3, "h", 2, None), b)
        assert set(watcher.live_brokers()) == {2, 3}
        clock.now += 8
        assert reg.heartbeat(2, e2) == 0
        clock.now += 2                      # broker 3: 10 s without a heartbeat; broker 2: 2 s
        assert reg.expire() == [3]
        wait_for(lambda: set(watcher.live_brokers()) == {2}, what="broker 3 gone from the store")
        assert reg.heartbeat(3, e3) == Errors.BROKER_ID_NOT_REGISTERED
        code, e2b = reg.register(BrokerInfo(2, "h", 1, None), uuid.uuid4())  # broker 2 restarted
        assert code == 0 and e2b > e2
        assert reg.heartbeat(2, e2) == Errors.STALE_BROKER_EPOCH
        assert reg.heartbeat(2, e2b) == 0
        assert reg.heartbeat(2, e2b, want_shut_down=True) == 0
        assert watcher.live_brokers() == {}
    finally:
        reg.stop()
        watcher.close()


def test_a_registration_racing_the_controllers_stop_leaves_no_live_session(tmp_path, monkeypatch):
    """A broker registering while its controller stops must be told to go to the
    next controller, and must not leave its id held in the store: the next
    controller in the same process would refuse it for good."""
    watcher = LocalMetadataStore(str(tmp_path))
    reg = BrokerRegistry(str(tmp_path), session_timeout_ms=9000)
    write = LocalMetadataStore.register_broker

    def stop_meanwhile(store, info):
        write(store, info)
        reg.stop()                   # the controller stops while the store writes
    monkeypatch.setattr(LocalMetadataStore, "register_broker", stop_meanwhile)
    try:
        assert reg.register(BrokerInfo(2, "h", 1, None), uuid.uuid4()) == (Errors.NOT_CONTROLLER, -1)
        wait_for(lambda: watcher.live_brokers() == {}, what="the racing registration gone from the store")
        assert reg.register(BrokerInfo(3, "h", 1, None), uuid.uuid4()) == (Errors.NOT_CONTROLLER, -1)
        assert watcher.live_brokers() == {}
    finally:
        reg.stop()
        watcher.close()
