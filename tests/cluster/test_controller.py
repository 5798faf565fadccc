"""The Controller against real metadata stores (LocalMetadataStore on real
files; ZkMetadataStore on a real ZooKeeper when installed) and a recording
BrokerChannel.

The channel is a seam, not a mock of something that could run here: it
stands for the brokers' LeaderAndIsr/UpdateMetadata/StopReplica handlers. It
encodes every request at the version the controller chose and decodes it
again, so what the tests inspect is what would go over the wire.

Brokers are simulated by store sessions: registering a BrokerInfo is a broker
starting, closing its session is the broker dying.
"""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from pylog.cluster.controller import (
    LEADER_AND_ISR_VERSION,
    STOP_REPLICA_VERSION,
    UPDATE_METADATA_VERSION,
    BrokerChannel,
    Controller,
    NotControllerError,
)
from pylog.cluster.local_store import LocalMetadataStore
from pylog.cluster.metadata_store import BrokerInfo, PartitionState
from pylog.errors import TopicAlreadyExistsError
from pylog.protocol.messages import (
    AlterPartitionRequest,
    LeaderAndIsrRequest,
    LeaderAndIsrResponse,
    StopReplicaRequest,
    StopReplicaResponse,
    UpdateMetadataRequest,
    UpdateMetadataResponse,
)

RESPONSES = {4: LeaderAndIsrResponse, 5: StopReplicaResponse, 6: UpdateMetadataResponse}
VERSIONS = {4: LEADER_AND_ISR_VERSION, 5: STOP_REPLICA_VERSION, 6: UPDATE_METADATA_VERSION}


class RecordingChannel(BrokerChannel):
    """Captures (broker_id, decoded request) and answers error_code 0."""

    def __init__(self):
        self.sent: list[tuple[int, object]] = []
        self.lock = threading.Lock()

    def send(self, broker_id, request, api_version):
        assert api_version == VERSIONS[request.API_KEY]
        cls = type(request)
        wire = cls.encode(request, api_version)
        decoded = cls.decode(memoryview(wire), api_version)
        with self.lock:
            self.sent.append((broker_id, decoded))
        return RESPONSES[request.API_KEY]()

    def take(self, api_key=None):
        with self.lock:
            out, self.sent = self.sent, []
        return [(b, r) for b, r in out if api_key is None or r.API_KEY == api_key]


def wait_until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    """A metadata store path + broker sessions + one controller."""

    def __init__(self, open_store, unclean=False):
        self.open_store = open_store
        self.brokers: dict[int, object] = {}
        self.admin = open_store()
        self.channel = RecordingChannel()
        self.controller_store = open_store()
        self.unclean = unclean
        self.controller = None

    def start_broker(self, broker_id, rack=None):
        s = self.open_store()
        s.register_broker(BrokerInfo(broker_id=broker_id, host="127.0.0.1", port=9000 + broker_id, rack=rack))
        self.brokers[broker_id] = s

    def kill_broker(self, broker_id):
        self.brokers.pop(broker_id).close()

    def start_controller(self, broker_id=0):
        self.controller = Controller(broker_id, self.controller_store, self.channel,
                                     unclean_leader_election_enable=self.unclean,
                                     auto_leader_rebalance_enable=False).start()
        wait_until(lambda: self.controller.is_active, what="controller elected")
        wait_until(lambda: self.controller.live_broker_ids() == set(self.brokers), what="controller sees brokers")
        self.controller.sync()

    def close(self):
        if self.controller is not None:
            self.controller.stop()
        for s in self.brokers.values():
            s.close()
        self.controller_store.close()
        self.admin.close()


@pytest.fixture(params=["local", "zk"])
def open_store(request, tmp_path):
    if request.param == "local":
        path = str(tmp_path / "pylog-cluster")
        return lambda: LocalMetadataStore(path)
    connect = request.getfixturevalue("zk_connect")
    from pylog.cluster.zk_store import ZkMetadataStore
    return lambda: ZkMetadataStore(connect)


@pytest.fixture
def cluster(open_store):
    clusters = []

    def make(brokers=(1, 2, 3), unclean=False):
        c = Cluster(open_store, unclean=unclean)
        clusters.append(c)
        for b in brokers:
            c.start_broker(b)
        c.start_controller()
        return c

    yield make
    for c in clusters:
        c.close()


def leader_and_isr_states(sent):
    """{(broker, topic, partition): partition state} from LeaderAndIsr requests."""
    out = {}
    for b, req in sent:
        assert isinstance(req, LeaderAndIsrRequest)
        for ts in req.topic_states:
            for ps in ts.partition_states:
                out[(b, ts.topic_name, ps.partition_index)] = ps
    return out


def update_metadata_states(req):
    return {(ts.topic_name, ps.partition_index): ps for ts in req.topic_states for ps in ts.partition_states}


# --- topic creation -------------------------------------------------------------------

def test_create_topic_sends_leader_and_isr_and_update_metadata(cluster):
    c = cluster()
    c.channel.take()
    topic = c.controller.create_topic("t", 3, 2)
    assert sorted(topic.partitions) == [0, 1, 2]
    sent = c.channel.take()
    lai = [(b, r) for b, r in sent if r.API_KEY == 4]
    um = [(b, r) for b, r in sent if r.API_KEY == 6]
    # every replica broker gets one LeaderAndIsr with exactly its partitions
    states = leader_and_isr_states(lai)
    expected_keys = {(b, "t", p) for p, reps in topic.partitions.items() for b in reps}
    assert set(states) == expected_keys
    for (b, t, p), ps in states.items():
        replicas = topic.partitions[p]
        assert ps.leader == replicas[0] and ps.leader_epoch == 0 and ps.isr == replicas
        assert ps.replicas == replicas and ps.is_new and ps.partition_epoch == 0
        assert ps.controller_epoch == c.controller.epoch
    for _b, req in lai:
        assert req.controller_id == 0 and req.controller_epoch == c.controller.epoch
        leaders = {ps.leader for ts in req.topic_states for ps in ts.partition_states}
        assert {(ll.broker_id, ll.host_name, ll.port) for ll in req.live_leaders} == \
            {(l, "127.0.0.1", 9000 + l) for l in leaders}
    # UpdateMetadata to every live broker, with every broker's endpoint
    assert sorted(b for b, _ in um) == [1, 2, 3]
    for _b, req in um:
        assert {(lb.id, lb.endpoints[0].host, lb.endpoints[0].port, lb.endpoints[0].listener,
                 lb.endpoints[0].security_protocol) for lb in req.live_brokers} == \
            {(b, "127.0.0.1", 9000 + b, "PLAINTEXT", 0) for b in (1, 2, 3)}
        ums = update_metadata_states(req)
        assert set(ums) == {("t", p) for p in range(3)}
        for (_, p), ps in ums.items():
            assert (ps.leader, ps.leader_epoch, ps.isr, ps.replicas, ps.zk_version) == \
                (topic.partitions[p][0], 0, topic.partitions[p], topic.partitions[p], 0)
    # and the store holds the same
    for p, reps in topic.partitions.items():
        s = c.admin.partition_state("t", p)
        assert (s.leader, s.leader_epoch, s.isr, s.partition_epoch) == (reps[0], 0, reps, 0)
    with pytest.raises(TopicAlreadyExistsError):
        c.controller.create_topic("t", 1, 1)


def test_create_topic_with_manual_assignment_and_racks(open_store):
    c = Cluster(open_store)
    try:
        for b, rack in ((1, "a"), (2, "b"), (3, "a"), (4, "b")):
            c.start_broker(b, rack=rack)
        c.start_controller()
        topic = c.controller.create_topic("racked", 8, 2)
        racks = {1: "a", 2: "b", 3: "a", 4: "b"}
        assert all(len({racks[b] for b in reps}) == 2 for reps in topic.partitions.values())
        um = c.channel.take(6)
        assert {lb.id: lb.rack for lb in um[0][1].live_brokers} == racks
        manual = c.controller.create_topic("manual", 0, 0, replica_assignment={0: [3, 1], 1: [1, 4]})
        assert manual.partitions == {0: [3, 1], 1: [1, 4]}
        assert c.admin.partition_state("manual", 0).leader == 3
    finally:
        c.close()


# --- broker failure -----------------------------------------------------------------------

def test_broker_death_moves_leadership_to_next_isr_replica(cluster):
    c = cluster()
    c.controller.create_topic("t", 1, 3, replica_assignment={0: [1, 2, 3]})
    before = c.admin.partition_state("t", 0)
    c.channel.take()
    c.kill_broker(1)
    wait_until(lambda: c.admin.partition_state("t", 0).leader == 2, what="leader moved to 2")
    c.controller.sync()
    after = c.admin.partition_state("t", 0)
    assert after.leader == 2 and after.isr == [2, 3]
    assert after.leader_epoch == before.leader_epoch + 1
    # written with CAS: the version moved by exactly one write
    assert after.partition_epoch == before.partition_epoch + 1
    sent = c.channel.take()
    states = leader_and_isr_states([(b, r) for b, r in sent if r.API_KEY == 4])
    assert set(states) == {(2, "t", 0), (3, "t", 0)}  # the live replicas, not the dead one
    assert all((s.leader, s.leader_epoch, s.isr) == (2, after.leader_epoch, [2, 3]) for s in states.values())
    um = [(b, r) for b, r in sent if r.API_KEY == 6]
    assert sorted(b for b, _ in um) == [2, 3]
    assert {lb.id for lb in um[0][1].live_brokers} == {2, 3}
    ps = update_metadata_states(um[0][1])[("t", 0)]
    assert ps.offline_replicas == [1] and ps.leader == 2


def test_follower_death_shrinks_isr_with_epoch_bump(cluster):
    c = cluster()
    c.controller.create_topic("t", 1, 3, replica_assignment={0: [1, 2, 3]})
    c.kill_broker(3)
    wait_until(lambda: c.admin.partition_state("t", 0).isr == [1, 2], what="isr shrunk")
    s = c.admin.partition_state("t", 0)
    assert (s.leader, s.leader_epoch) == (1, 1)


def test_cas_conflict_is_retried_with_the_fresh_state(cluster):
    c = cluster()
    c.controller.create_topic("t", 1, 3, replica_assignment={0: [1, 2, 3]})
    # Someone else (an admin tool) shrinks the ISR behind the controller's back.
    cur = c.admin.partition_state("t", 0)
    other = c.admin.update_partition_state(
        "t", 0, PartitionState(leader=1, leader_epoch=0, isr=[1, 3], controller_epoch=cur.controller_epoch),
        cur.partition_epoch)
    assert other is not None
    c.kill_broker(1)
    wait_until(lambda: c.admin.partition_state("t", 0).leader != 1, what="re-election")
    s = c.admin.partition_state("t", 0)
    # decided on the fresh ISR [1, 3]: 2 is no longer in sync, so 3 leads
    assert (s.leader, s.isr, s.partition_epoch) == (3, [3], other.partition_epoch + 1)


def test_all_isr_dead_stays_offline_without_unclean_election(cluster):
    c = cluster()
    c.controller.create_topic("t", 1, 2, replica_assignment={0: [1, 2]})
    # 2 leaves the ISR (the leader said so), then 1 dies: only 2 is alive
    cur = c.admin.partition_state("t", 0)
    req = alter_partition_request(1, "t", 0, cur.leader_epoch, cur.partition_epoch, [1])
    resp = c.controller.alter_partition(req)
    assert resp.topics[0].partitions[0].error_code == 0
    c.kill_broker(1)
    wait_until(lambda: c.admin.partition_state("t", 0).leader == -1, what="offline")
    c.controller.sync()
    s = c.admin.partition_state("t", 0)
    assert s.leader == -1 and s.isr == [1]  # the last ISR member is remembered
    # the returning ISR member gets leadership back (clean election)
    c.start_broker(1)
    wait_until(lambda: c.admin.partition_state("t", 0).leader == 1, what="clean election on return")


def test_unclean_election_elects_out_of_sync_replica(cluster):
    c = cluster(unclean=True)
    c.controller.create_topic("t", 1, 2, replica_assignment={0: [1, 2]})
    cur = c.admin.partition_state("t", 0)
    c.controller.alter_partition(alter_partition_request(1, "t", 0, cur.leader_epoch, cur.partition_epoch, [1]))
    c.kill_broker(1)
    wait_until(lambda: c.admin.partition_state("t", 0).leader == 2, what="unclean election")
    s = c.admin.partition_state("t", 0)
    assert s.isr == [2] and s.leader_epoch == cur.leader_epoch + 1


def test_topic_config_enables_unclean_election(cluster):
    c = cluster()
    c.controller.create_topic("t", 1, 2, replica_assignment={0: [1, 2]},
                              configs={"unclean.leader.election.enable": "true"})
    cur = c.admin.partition_state("t", 0)
    c.controller.alter_partition(alter_partition_request(1, "t", 0, cur.leader_epoch, cur.partition_epoch, [1]))
    c.kill_broker(1)
    wait_until(lambda: c.admin.partition_state("t", 0).leader == 2, what="unclean election by topic config")


def test_returning_broker_gets_its_replicas_as_follower(cluster):
    c = cluster()
    c.controller.create_topic("t", 2, 2, replica_assignment={0: [1, 2], 1: [2, 1]})
    c.kill_broker(1)
    wait_until(lambda: c.admin.partition_state("t", 0).leader == 2, what="failover")
    c.controller.sync()
    c.channel.take()
    c.start_broker(1)
    wait_until(lambda: any(b == 1 and r.API_KEY == 4 for b, r in c.channel.sent), what="LeaderAndIsr to 1")
    c.controller.sync()
    sent = c.channel.take()
    states = leader_and_isr_states([(b, r) for b, r in sent if r.API_KEY == 4 and b == 1])
    assert {k[1:] for k in states} == {("t", 0), ("t", 1)}
    assert all(ps.leader == 2 for ps in states.values())  # follower of 2 everywhere
    um_to_1 = [r for b, r in sent if r.API_KEY == 6 and b == 1]
    assert um_to_1 and set(update_metadata_states(um_to_1[0])) == {("t", 0), ("t", 1)}
    um_to_2 = [r for b, r in sent if r.API_KEY == 6 and b == 2]
    assert um_to_2 and {lb.id for lb in um_to_2[0].live_brokers} == {1, 2, 3}


# --- controller epochs ----------------------------------------------------------------------

def test_stale_controller_epoch_writes_fail_and_old_controller_resigns(cluster):
    """Kafka's zombie controller: the controller stalls (a long GC pause),
    loses its role meanwhile, and wakes up with work queued under its old
    epoch. Its writes are refused by the store; it resigns and sends nothing."""
    c = cluster()
    c.controller.create_topic("t", 1, 2, replica_assignment={0: [1, 2]})
    old_epoch = c.controller.epoch
    stalled, release = threading.Event(), threading.Event()

    def stall():
        stalled.set()
        release.wait(30)
    c.controller._put(stall)
    assert stalled.wait(10)
    queued = c.controller.submit("create_topic", "u", 1, 1, None, None)
    c.channel.take()
    # The stalled controller's session loses the role (as a ZK session
    # expiry would) and another controller takes over with a higher epoch.
    c.controller_store.resign_controller()
    other_store = c.open_store()
    other = Controller(9, other_store, RecordingChannel(), auto_leader_rebalance_enable=False).start()
    try:
        wait_until(lambda: other.is_active, what="new controller")
        assert other.epoch == old_epoch + 1
        release.set()
        with pytest.raises(NotControllerError):
            queued.result(10)
        assert not c.controller.is_active
        assert "u" not in c.admin.topics()
        # the store itself refuses a write made with the old epoch
        from pylog.cluster.metadata_store import ControllerMovedError
        cur = c.admin.partition_state("t", 0)
        with pytest.raises(ControllerMovedError):
            c.controller_store.update_partition_state(
                "t", 0, PartitionState(2, cur.leader_epoch + 1, [2], old_epoch), cur.partition_epoch)
        with pytest.raises(NotControllerError):
            c.controller.create_topic("u", 1, 1)
        # broker death is now handled by the new controller alone
        c.kill_broker(1)
        wait_until(lambda: c.admin.partition_state("t", 0).leader == 2, what="new controller elects")
        assert c.admin.partition_state("t", 0).controller_epoch == other.epoch
        c.controller.sync()
        assert c.channel.take() == []  # the old controller sent nothing
    finally:
        release.set()
        other.stop()
        other_store.close()


def test_controller_failover_loads_state_and_announces_it(cluster):
    c = cluster()
    c.controller.create_topic("t", 2, 2, replica_assignment={0: [1, 2], 1: [2, 3]})
    c.controller.stop()
    c.controller_store.close()
    # a new controller on a fresh session takes over
    c.controller_store = c.open_store()
    c.channel = RecordingChannel()
    c.start_controller(broker_id=7)
    sent = c.channel.take()
    um = [(b, r) for b, r in sent if r.API_KEY == 6]
    assert sorted(b for b, _ in um) == [1, 2, 3]
    assert set(update_metadata_states(um[0][1])) == {("t", 0), ("t", 1)}
    states = leader_and_isr_states([(b, r) for b, r in sent if r.API_KEY == 4])
    assert set(states) == {(1, "t", 0), (2, "t", 0), (2, "t", 1), (3, "t", 1)}
    assert all(r.controller_id == 7 and r.controller_epoch == c.controller.epoch for _, r in sent)


# --- AlterPartition -----------------------------------------------------------------------------

def alter_partition_request(broker_id, topic, partition, leader_epoch, partition_epoch, new_isr):
    return AlterPartitionRequest(broker_id=broker_id, broker_epoch=-1, topics=[
        AlterPartitionRequest.TopicData(topic_name=topic, partitions=[
            AlterPartitionRequest.PartitionData(partition_index=partition, leader_epoch=leader_epoch,
                                                new_isr=new_isr, partition_epoch=partition_epoch)])])


def test_alter_partition(cluster):
    c = cluster()
    c.controller.create_topic("t", 1, 3, replica_assignment={0: [1, 2, 3]})
    c.channel.take()
    cur = c.admin.partition_state("t", 0)
    resp = c.controller.alter_partition(alter_partition_request(1, "t", 0, cur.leader_epoch,
                                                                cur.partition_epoch, [1, 2]))
    pd = resp.topics[0].partitions[0]
    assert (resp.error_code, pd.error_code, pd.leader_id, pd.leader_epoch, pd.isr, pd.partition_epoch) == \
        (0, 0, 1, cur.leader_epoch, [1, 2], cur.partition_epoch + 1)
    s = c.admin.partition_state("t", 0)
    assert (s.isr, s.leader_epoch, s.partition_epoch) == ([1, 2], cur.leader_epoch, cur.partition_epoch + 1)
    um = c.channel.take(6)
    assert sorted(b for b, _ in um) == [1, 2, 3]
    assert update_metadata_states(um[0][1])[("t", 0)].isr == [1, 2]

    def code(req):
        return c.controller.alter_partition(req).topics[0].partitions[0].error_code

    # stale partition_epoch: INVALID_UPDATE_VERSION (95)
    assert code(alter_partition_request(1, "t", 0, s.leader_epoch, cur.partition_epoch, [1, 2, 3])) == 95
    # a retry of the change already made is answered with the current state
    assert code(alter_partition_request(1, "t", 0, s.leader_epoch, cur.partition_epoch, [1, 2])) == 0
    # stale leader epoch: FENCED_LEADER_EPOCH (74); newer than ours: NOT_CONTROLLER (41)
    assert code(alter_partition_request(1, "t", 0, s.leader_epoch - 1, s.partition_epoch, [1, 2, 3])) == 74
    assert code(alter_partition_request(1, "t", 0, s.leader_epoch + 1, s.partition_epoch, [1, 2, 3])) == 41
    # not the leader / leader missing from the ISR: INVALID_REQUEST (42)
    assert code(alter_partition_request(2, "t", 0, s.leader_epoch, s.partition_epoch, [1, 2, 3])) == 42
    assert code(alter_partition_request(1, "t", 0, s.leader_epoch, s.partition_epoch, [2, 3])) == 42
    # unknown partition
    assert code(alter_partition_request(1, "nope", 0, 0, 0, [1])) == 3
    # expansion back to [1, 2, 3] with the right epochs works
    assert code(alter_partition_request(1, "t", 0, s.leader_epoch, s.partition_epoch, [1, 2, 3])) == 0
    # a dead broker may not join the ISR (v0: OPERATION_NOT_ATTEMPTED)
    c.kill_broker(3)
    wait_until(lambda: c.admin.partition_state("t", 0).isr == [1, 2], what="3 removed from isr")
    s = c.admin.partition_state("t", 0)
    assert code(alter_partition_request(1, "t", 0, s.leader_epoch, s.partition_epoch, [1, 2, 3])) == 55
    # a request from an unregistered broker
    assert c.controller.alter_partition(alter_partition_request(3, "t", 0, 0, 0, [3])).error_code == 77


# --- controlled shutdown ---------------------------------------------------------------------------

def test_controlled_shutdown_moves_every_leadership_off_the_broker(cluster):
    c = cluster()
    c.controller.create_topic("t", 6, 3)
    c.controller.create_topic("single", 1, 1, replica_assignment={0: [2]})
    c.channel.take()
    led_by_2 = {p for p in range(6) if c.admin.partition_state("t", p).leader == 2}
    assert led_by_2
    resp = c.controller.controlled_shutdown(2)
    assert resp.error_code == 0 and resp.remaining_partitions == []  # RF 1 partitions do not count
    for p in range(6):
        s = c.admin.partition_state("t", p)
        assert s.leader != 2 and 2 not in s.isr
        if p in led_by_2:
            assert s.leader_epoch == 1
    assert c.admin.partition_state("single", 0).leader == 2
    sent = c.channel.take()
    stop = [(b, r) for b, r in sent if r.API_KEY == 5]
    assert [b for b, _ in stop] == [2] and stop[0][1].delete_partitions is False
    assert all(b != 2 for b, r in sent if r.API_KEY == 4)
    # a second attempt answers the same; then the broker really stops
    assert c.controller.controlled_shutdown(2).remaining_partitions == []
    c.kill_broker(2)
    wait_until(lambda: 2 not in c.controller.live_broker_ids(), what="2 gone")
    assert c.controller.controlled_shutdown(2).error_code == 8  # BROKER_NOT_AVAILABLE


def test_controlled_shutdown_reports_partitions_it_cannot_move(cluster):
    c = cluster()
    c.controller.create_topic("t", 1, 2, replica_assignment={0: [1, 2]})
    cur = c.admin.partition_state("t", 0)
    c.controller.alter_partition(alter_partition_request(1, "t", 0, cur.leader_epoch, cur.partition_epoch, [1]))
    resp = c.controller.controlled_shutdown(1)
    assert [(r.topic_name, r.partition_index) for r in resp.remaining_partitions] == [("t", 0)]
    assert c.admin.partition_state("t", 0).leader == 1


# --- preferred leader election ------------------------------------------------------------------------

def test_preferred_and_auto_rebalance(cluster):
    c = cluster(brokers=(1, 2))
    c.controller.create_topic("t", 4, 2, replica_assignment={0: [1, 2], 1: [2, 1], 2: [1, 2], 3: [2, 1]})
    c.kill_broker(1)
    wait_until(lambda: all(c.admin.partition_state("t", p).leader == 2 for p in range(4)), what="failover")
    c.start_broker(1)
    wait_until(lambda: 1 in c.controller.live_broker_ids(), what="1 back")
    c.controller.sync()
    # 1 is not in the ISR yet: nothing to elect
    assert c.controller.check_leader_imbalance() == {}
    for p in (0, 2):
        s = c.admin.partition_state("t", p)
        resp = c.controller.alter_partition(alter_partition_request(2, "t", p, s.leader_epoch, s.partition_epoch,
                                                                    [2, 1]))
        assert resp.topics[0].partitions[0].error_code == 0
    c.channel.take()
    assert c.controller.check_leader_imbalance() == {("t", 0): 1, ("t", 2): 1}
    s = c.admin.partition_state("t", 0)
    assert (s.leader, s.isr) == (1, [2, 1])
    assert c.controller.check_leader_imbalance() == {}
    assert c.controller.elect_preferred_leaders() == {}
    assert any(r.API_KEY == 4 for _, r in c.channel.take())


def test_elect_leaders_preferred_and_unclean(cluster):
    """ElectLeaders' per-partition answers (Kafka's ReplicationControlManager.electLeaders)."""
    c = cluster(brokers=(1, 2))
    c.controller.create_topic("t", 2, 2, replica_assignment={0: [1, 2], 1: [2, 1]})
    s = c.admin.partition_state("t", 0)
    resp = c.controller.alter_partition(alter_partition_request(1, "t", 0, s.leader_epoch, s.partition_epoch, [1]))
    assert resp.topics[0].partitions[0].error_code == 0
    elect = lambda unclean, parts: c.controller.submit("elect_leaders", unclean, parts).result(10)  # noqa: E731
    # Preferred replicas lead already; a missing partition is named.
    assert elect(False, [("t", 0), ("t", 1), ("t", 5)]) == {
        ("t", 0): (84, None), ("t", 1): (84, None), ("t", 5): (3, "No such partition as t-5")}
    assert elect(False, None) == {}          # every partition: the unneeded ones left out
    c.kill_broker(1)                         # t-0 loses its only in-sync replica: no clean leader
    wait_until(lambda: c.admin.partition_state("t", 0).leader == -1, what="t-0 leaderless")
    wait_until(lambda: c.admin.partition_state("t", 1).leader == 2, what="t-1 on 2")
    assert elect(False, [("t", 0), ("t", 1)]) == {       # t-0's preferred replica (1) is dead
        ("t", 0): (80, None), ("t", 1): (84, None)}       # PREFERRED_LEADER_NOT_AVAILABLE; 2 is t-1's
    assert elect(True, [("t", 1)]) == {("t", 1): (84, None)}    # it has a leader: nothing to do
    assert elect(True, [("t", 0)]) == {("t", 0): (0, None)}     # unclean: 2, out of the ISR, leads
    s = c.admin.partition_state("t", 0)
    assert (s.leader, s.isr) == (2, [2])
    c.kill_broker(2)
    wait_until(lambda: c.admin.partition_state("t", 0).leader == -1, what="t-0 leaderless again")
    assert elect(True, [("t", 0)]) == {("t", 0): (83, None)}    # ELIGIBLE_LEADERS_NOT_AVAILABLE


# --- partitions and deletion -------------------------------------------------------------------------

def test_create_partitions_and_delete_topic(cluster):
    c = cluster()
    c.controller.create_topic("t", 2, 2)
    grown = c.controller.create_partitions("t", 5)
    assert sorted(grown.partitions) == [0, 1, 2, 3, 4]
    assert all(len(r) == 2 for r in grown.partitions.values())
    states = leader_and_isr_states(c.channel.take(4)[-3:])
    assert {k[1:] for k in states} >= {("t", 2), ("t", 3), ("t", 4)}
    assert c.admin.topics()["t"].partitions == grown.partitions
    c.channel.take()
    c.controller.delete_topic("t")
    sent = c.channel.take()
    um = [(b, r) for b, r in sent if r.API_KEY == 6]
    assert sorted(b for b, _ in um) == [1, 2, 3]
    assert all(ps.leader == -2 for ps in update_metadata_states(um[0][1]).values())
    stop = [(b, r) for b, r in sent if r.API_KEY == 5]
    assert {b for b, _ in stop} == {b for reps in grown.partitions.values() for b in reps}
    for b, r in stop:
        assert r.delete_partitions is True
        assert set(r.topics[0].partition_indexes) == {p for p, reps in grown.partitions.items() if b in reps}
    assert "t" not in c.admin.topics()
    assert not isinstance(sent[0][1], StopReplicaRequest)  # metadata first, then the logs
    assert isinstance(sent[0][1], UpdateMetadataRequest)


# --- the real channel against a real broker --------------------------------------------------------

def test_wire_broker_channel_against_a_real_broker(tmp_path):
    from pylog.cluster.controller import WireBrokerChannel
    from pylog.testing import running_broker

    from .controlhelper import FakeControllerListener

    # A broker of controller 0's cluster (only its controller's requests are served).
    fake = FakeControllerListener(controller_id=0, controller_epoch=3)
    with running_broker(data_dir=str(tmp_path / "b1"), config={"broker.id": "1", **fake.broker_config()}) as b:
        host, port = b.bootstrap.rsplit(":", 1)
        info = BrokerInfo(broker_id=1, host=host, port=int(port))
        channel = WireBrokerChannel({1: info}, timeout=10)
        try:
            def um(epoch):
                return UpdateMetadataRequest(controller_id=0, controller_epoch=epoch, broker_epoch=fake.broker_epoch(1),
                                             live_brokers=[
                    UpdateMetadataRequest.UpdateMetadataBroker(id=1, endpoints=[
                        UpdateMetadataRequest.UpdateMetadataEndpoint(port=int(port), host=host,
                                                                     listener="PLAINTEXT", security_protocol=0)])])
            assert channel.send(1, um(3), UPDATE_METADATA_VERSION).error_code == 0
            # the broker fences an older controller epoch (STALE_CONTROLLER_EPOCH)
            assert channel.send(1, um(2), UPDATE_METADATA_VERSION).error_code == 11
            # a broker that left: the connection is dropped, sends fail fast
            channel.update_brokers({})
            with pytest.raises(ConnectionError):
                channel.send(1, um(3), UPDATE_METADATA_VERSION)
        finally:
            channel.close()
            fake.close()


def test_a_silent_broker_holds_up_only_its_own_requests(tmp_path):
    """post() never blocks the caller (the controller's event thread), and a
    broker that accepts connections but never answers (as a SIGSTOPped process
    does: the kernel still completes the handshake) delays only the requests
    queued for it; requests to a live broker are delivered meanwhile. Once it
    is declared dead, its stale requests are dropped, not sent, even if it
    registers again at the same address before its sender got to them."""
    import socket

    from pylog.cluster.controller import WireBrokerChannel
    from pylog.testing import running_broker

    from .controlhelper import FakeControllerListener

    fake = FakeControllerListener(controller_id=0, controller_epoch=5)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent_info = BrokerInfo(2, "127.0.0.1", silent.getsockname()[1])
    try:
        with running_broker(data_dir=str(tmp_path / "b1"), config={"broker.id": "1", **fake.broker_config()}) as b:
            host, port = b.bootstrap.rsplit(":", 1)
            live_info = BrokerInfo(1, host, int(port))
            # The silent broker's request would wait that long: far longer
            # than this test, which ends it itself (closing the connection).
            channel = WireBrokerChannel({1: live_info, 2: silent_info}, timeout=300)

            def um(epoch):
                return UpdateMetadataRequest(controller_id=0, controller_epoch=epoch, broker_epoch=fake.broker_epoch(1),
                                             live_brokers=[
                    UpdateMetadataRequest.UpdateMetadataBroker(id=1, endpoints=[
                        UpdateMetadataRequest.UpdateMetadataEndpoint(port=int(port), host=host,
                                                                     listener="PLAINTEXT", security_protocol=0)])])
            try:
                for epoch in (3, 4, 5):
                    channel.post(2, um(epoch), UPDATE_METADATA_VERSION)
                    channel.post(1, um(epoch), UPDATE_METADATA_VERSION)
                # The posts returned, and the live broker gets all three,
                # while the silent broker's first request still waits (a post
                # that blocked on it would have returned only once it failed).
                rm = b.broker.replica_manager
                deadline = time.monotonic() + 60
                while rm.controller_epoch != 5 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert rm.controller_epoch == 5, "the live broker did not get its requests"
                assert not channel.flush(timeout=0.5)   # the silent broker's requests still wait
                silent_sender = channel._senders[2]
                channel.update_brokers({1: live_info})               # declared dead...
                channel.update_brokers({1: live_info, 2: silent_info})   # ...and back at once
                assert channel.flush(timeout=60)        # its old sender is no longer the channel's
                # The old sender's first request fails (the silent broker
                # closes its connection); epochs 4 and 5 are dropped, so it
                # never connects again (sending them would).
                silent.settimeout(60)
                first = silent.accept()[0]
                first.close()
                silent_sender.join(timeout=60)
                assert not silent_sender._thread.is_alive()
                silent.settimeout(0.5)
                accepted = []
                try:
                    while True:
                        accepted.append(silent.accept()[0])
                except (TimeoutError, socket.timeout):
                    pass
                for c in accepted:
                    c.close()
                assert accepted == [], f"{len(accepted)} more connections to the departed broker"
            finally:
                channel.close()
    finally:
        silent.close()
        fake.close()


def test_a_sender_thread_survives_any_failure_of_one_request(tmp_path):
    """A connection closed under a blocked sender (update_brokers, close) can
    fail in odd ways (seen: an IndexError when close() emptied the in-flight
    queue as the answer arrived); the broker's later requests must still go.
    The odd failure is injected once by a subclass, since the race itself
    cannot be produced on demand; the rest is the real channel and broker."""
    from pylog.cluster.controller import WireBrokerChannel
    from pylog.testing import running_broker

    class FailingOnce(WireBrokerChannel):
        failed = False

        def send(self, broker_id, request, api_version):
            if not self.failed:
                self.failed = True
                raise IndexError("pop from an empty deque")
            return super().send(broker_id, request, api_version)

    from .controlhelper import FakeControllerListener

    fake = FakeControllerListener(controller_id=0, controller_epoch=4)
    with running_broker(data_dir=str(tmp_path / "b1"), config={"broker.id": "1", **fake.broker_config()}) as b:
        host, port = b.bootstrap.rsplit(":", 1)
        channel = FailingOnce({1: BrokerInfo(1, host, int(port))}, timeout=10)
        try:
            for epoch in (3, 4):
                channel.post(1, UpdateMetadataRequest(controller_id=0, controller_epoch=epoch,
                                                      broker_epoch=fake.broker_epoch(1), live_brokers=[]),
                             UPDATE_METADATA_VERSION)
            assert channel.flush(timeout=10)
            assert channel.failed and b.broker.replica_manager.controller_epoch == 4
        finally:
            channel.close()
            fake.close()


def test_a_request_on_a_connection_the_broker_closed_as_idle_is_sent_again(tmp_path):
    """The broker closes the controller's connection once it has been idle
    for connections.max.idle.ms; the next request, written on that dead
    connection, fails on the read. As Kafka's RequestSendThread does, the
    sender sends it again on a new connection: dropped, a LeaderAndIsr never
    reached its broker (the librdkafka suite's 3-broker run lost two
    partitions of a new topic this way after 0113's ten idle minutes)."""
    from pylog.cluster.controller import WireBrokerChannel
    from pylog.testing import running_broker, wait_until

    from .controlhelper import FakeControllerListener

    fake = FakeControllerListener(controller_id=0, controller_epoch=4)
    config = {"broker.id": "1", "connections.max.idle.ms": "500", **fake.broker_config()}
    with running_broker(data_dir=str(tmp_path / "b1"), config=config) as b:
        host, port = b.bootstrap.rsplit(":", 1)
        channel = WireBrokerChannel({1: BrokerInfo(1, host, int(port))}, timeout=10)
        try:
            def post(live):
                """An UpdateMetadata naming the live brokers given."""
                channel.post(1, UpdateMetadataRequest(controller_id=0, controller_epoch=4,
                                                      broker_epoch=fake.broker_epoch(1), live_brokers=[
                    UpdateMetadataRequest.UpdateMetadataBroker(id=i, endpoints=[
                        UpdateMetadataRequest.UpdateMetadataEndpoint(port=int(port), host=host, listener="PLAINTEXT",
                                                                     security_protocol=0)]) for i in live]),
                             UPDATE_METADATA_VERSION)
                assert channel.flush(timeout=60)
                return set(b.broker.call(lambda: dict(b.broker.metadata_cache.brokers)))
            assert post([1]) == {1}
            conn = channel._conns[1]
            # The broker closed it; the channel has not noticed (nothing read).
            wait_until(lambda: b.broker.call(lambda: len(b.broker.server.connections)) == 0, timeout=60,
                       what="the idle connection closed by the broker")
            assert not conn.closed
            assert post([1, 7]) == {1, 7}
        finally:
            channel.close()
            fake.close()


def test_lost_role_without_competitor_reelects_with_new_epoch(cluster):
    c = cluster()
    c.controller.create_topic("t", 1, 2, replica_assignment={0: [1, 2]})
    old_epoch = c.controller.epoch
    c.channel.take()
    c.controller_store.resign_controller()
    wait_until(lambda: c.controller.epoch == old_epoch + 1, what="re-elected")
    c.controller.sync()
    um = c.channel.take(6)
    assert um and all(r.controller_epoch == old_epoch + 1 for _, r in um)


def test_auto_leader_rebalance_timer(open_store):
    c = Cluster(open_store)
    try:
        for b in (1, 2):
            c.start_broker(b)
        c.controller = Controller(0, c.controller_store, c.channel, auto_leader_rebalance_enable=True,
                                  leader_imbalance_check_interval_seconds=0.05).start()
        wait_until(lambda: c.controller.is_active and c.controller.live_broker_ids() == {1, 2})
        c.controller.create_topic("t", 1, 2, replica_assignment={0: [1, 2]})
        s = c.admin.partition_state("t", 0)
        # leadership moved away by hand (a preferred election undone)
        moved = c.admin.update_partition_state("t", 0, PartitionState(2, s.leader_epoch + 1, [1, 2],
                                                                      s.controller_epoch), s.partition_epoch)
        assert moved is not None
        c.controller.stop()
        c.controller_store.close()
        c.controller_store = c.open_store()
        c.controller = Controller(0, c.controller_store, c.channel, auto_leader_rebalance_enable=True,
                                  leader_imbalance_check_interval_seconds=0.05).start()
        wait_until(lambda: c.admin.partition_state("t", 0).leader == 1, what="auto rebalance")
    finally:
        c.close()


def test_bounced_broker_loses_leadership_then_rejoins(cluster):
    c = cluster()
    c.controller.create_topic("t", 1, 3, replica_assignment={0: [1, 2, 3]})
    # broker 1 restarts on another port between two watch notifications
    live = c.admin.live_brokers()
    c.controller._put(c.controller._on_broker_change, {
        1: dataclasses.replace(live[1], port=9100), 2: live[2], 3: live[3]}).result(10)
    s = c.admin.partition_state("t", 0)
    assert s.leader == 2 and s.isr == [2, 3]
    lai = leader_and_isr_states([(b, r) for b, r in c.channel.take() if r.API_KEY == 4])
    assert lai[(1, "t", 0)].leader == 2  # it rejoins as a follower


def test_a_broker_back_with_a_new_epoch_at_the_same_address_is_bounced(cluster):
    """KIP-380: a restart between two watch notifications on the same host and
    port shows only as a new broker epoch. The controller must treat it as a
    restart (its requests to the old epoch would all be refused now)."""
    c = cluster()
    c.controller.create_topic("t", 1, 3, replica_assignment={0: [1, 2, 3]})
    c.channel.take()
    live = c.admin.live_brokers()
    assert all(info.broker_epoch >= 0 for info in live.values())
    again = dataclasses.replace(live[1], broker_epoch=live[1].broker_epoch + 1)
    c.controller._put(c.controller._on_broker_change, {1: again, 2: live[2], 3: live[3]}).result(10)
    s = c.admin.partition_state("t", 0)
    assert s.leader == 2 and s.isr == [2, 3]
    sent = c.channel.take()
    lai = leader_and_isr_states([(b, r) for b, r in sent if r.API_KEY == 4])
    assert lai[(1, "t", 0)].leader == 2
    # every request carries its receiver's epoch: broker 1's new one
    assert {r.broker_epoch for b, r in sent if b == 1} == {again.broker_epoch}
    assert all(r.broker_epoch == live[b].broker_epoch for b, r in sent if b != 1)
