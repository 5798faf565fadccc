"""Share groups in a 3-broker cluster (the embedded controller), with
unmodified confluent_kafka.ShareConsumers: share-partitions led by different
brokers, each reaching the share coordinator of its state (the leader of its
`__share_group_state` partition) over the wire; a share-partition's leader
stopped with records accepted and records acquired but not accepted; the
broker leading the group's state partition stopped."""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import AcknowledgeType, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.share.coordinator import partition_for, topic_id_text
from tests.cluster.conftest import zk_connect, zookeeper  # noqa: F401 (fixtures)
from tests.cluster.zkcluster import CLUSTER, bootstrap, cluster, embedded_cluster, wait_for

from .wire import CONFIG, RETRIABLE, connect, set_group_configs

STATE_TOPIC = "__share_group_state"
STATE_PARTITIONS = 6
TIMEOUT = 60.0
BASE = {**CLUSTER, **CONFIG,
        "offsets.topic.replication.factor": "3", "offsets.topic.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": "3", "share.coordinator.state.topic.min.isr": "2",
        "share.coordinator.state.topic.num.partitions": str(STATE_PARTITIONS)}


@pytest.fixture
def brokers(request):
    """Three brokers around the embedded controller (broker 1), or over
    ZooKeeper when the test is parametrized so."""
    if getattr(request, "param", "embedded") == "zookeeper":
        with cluster(request.getfixturevalue("zk_connect"), 3, base=BASE) as bs:
            yield bs
        return
    with embedded_cluster(3, base=BASE) as bs:
        yield bs


BOTH = pytest.mark.parametrize("brokers", ["embedded", "zookeeper"], indirect=True)


def leaders(b, topic):
    return {i: st.leader for i, st in b.broker.metadata_cache.topics.get(topic, {}).items()}


def state_topic(brokers):
    """Asks for __share_group_state with FindCoordinator key type 2 (as a
    share-partition leader does), until every partition has a leader; its
    leaders {partition: broker id}."""
    conn = connect(brokers[0])
    key = f"probe:{topic_id_text(uuid.uuid4())}:0"
    req = m.FindCoordinatorRequest(key_type=2, coordinator_keys=[key])
    deadline = time.monotonic() + TIMEOUT
    while True:
        c = conn.request(req, api_version=6).coordinators[0]
        if c.error_code == 0:
            break
        assert c.error_code in RETRIABLE and time.monotonic() < deadline, c
        time.sleep(0.2)
    conn.close()
    wait_for(lambda: len(leaders(brokers[0], STATE_TOPIC)) == STATE_PARTITIONS
             and all(v > 0 for v in leaders(brokers[0], STATE_TOPIC).values()), TIMEOUT, "the state topic's leaders")
    return leaders(brokers[0], STATE_TOPIC)


def create_topic(brokers, name, assignment):
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    admin.create_topics([NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment)])[name].result(30)
    wait_for(lambda: leaders(brokers[0], name) == {i: r[0] for i, r in enumerate(assignment)}
             and all(len(brokers[0].broker.metadata_cache.topics[name][i].isr) == 3 for i in range(len(assignment))),
             TIMEOUT, f"{name}'s leaders and full ISRs")
    return brokers[0].broker.metadata_cache.topic_ids[name]


def group_led_by(prefix, tid, partitions, state_leaders, wanted):
    """A group name whose share-partitions' states (partition -> broker in
    wanted) are led as asked."""
    for i in range(10000):
        g = f"{prefix}-{i}"
        if all(state_leaders[partition_for(g, tid, p, STATE_PARTITIONS)] == wanted[p] for p in partitions):
            return g
    raise AssertionError("no such group name")


def produce(brokers, topic, values, partition=None):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "linger.ms": 5})
    for v in values:
        if partition is None:
            p.produce(topic, str(v).encode(), partition=v % 3)
        else:
            p.produce(topic, str(v).encode(), partition=partition)
    assert p.flush(30) == 0


def consumer(brokers, group, **conf):
    return ShareConsumer({"bootstrap.servers": bootstrap(brokers), "group.id": group,
                          **{k.replace("_", "."): v for k, v in conf.items()}})


def poll_until(consumers, cond, what, handle, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for c in consumers:
            for msg in c.poll(0.2):
                assert msg.error() is None, msg.error()
                handle(c, msg)


def state_of(brokers, group, tid, partition):
    """The share coordinator's state of the share-partition, from the broker
    leading its state partition (None when none holds it)."""
    for b in brokers:
        if b.broker.stopping:
            continue
        st = b.broker.share.coordinator.states.get((group, tid, partition))
        if st is not None and b.broker.share.coordinator.runtime.partition_error(
                partition_for(group, tid, partition, STATE_PARTITIONS)) == 0:
            return st
    return None


@BOTH
def test_share_consumers_read_partitions_led_by_different_brokers_each_record_accepted_once(brokers):
    topic = "scl-spread"
    tid = create_topic(brokers, topic, [[1, 2, 3], [2, 3, 1], [3, 1, 2]])
    state_leaders = state_topic(brokers)
    # Each share-partition's state led by a broker other than its leader: every write goes over the wire.
    group = group_led_by("scl-spread-g", tid, range(3), state_leaders,
                         {0: 2 if 2 in state_leaders.values() else 3, 1: 3 if 3 in state_leaders.values() else 1,
                          2: 1 if 1 in state_leaders.values() else 2})
    set_group_configs(brokers[0], group, share_auto_offset_reset="earliest")
    n = 300
    a, b = consumer(brokers, group, max_poll_records=20), consumer(brokers, group, max_poll_records=20)
    a.subscribe([topic])
    b.subscribe([topic])
    for start in range(0, n, 30):
        produce(brokers, topic, range(start, start + 30))
    got = {a: [], b: []}
    poll_until([a, b], lambda: len(got[a]) + len(got[b]) >= n, f"{n} records",
               lambda c, msg: got[c].append(int(msg.value())))
    end = time.monotonic() + 2
    while time.monotonic() < end:
        for c in (a, b):
            got[c].extend(int(msg.value()) for msg in c.poll(0.2))
    a.commit_sync()
    b.commit_sync()
    every = got[a] + got[b]
    assert sorted(every) == list(range(n))      # each record once
    # Every record accepted: each share-partition's start offset at its log end, in the share coordinator.
    wait_for(lambda: all((st := state_of(brokers, group, tid, p)) is not None and st.start_offset == n // 3
                         for p in range(3)), TIMEOUT, "every share-partition accepted to its end")
    a.close()
    b.close()


@BOTH
def test_a_share_partitions_leader_stops_nothing_accepted_comes_back_nothing_unaccepted_is_lost(brokers):
    topic = "scl-move"
    tid = create_topic(brokers, topic, [[2, 3, 1]])
    state_leaders = state_topic(brokers)
    # The state on broker 1 or 3: never on the stopped leader 2.
    target = 1 if 1 in state_leaders.values() else 3
    group = group_led_by("scl-move-g", tid, [0], state_leaders, {0: target})
    set_group_configs(brokers[0], group, share_auto_offset_reset="earliest")
    produce(brokers, topic, range(10), partition=0)
    produce(brokers, topic, range(10, 20), partition=0)
    a = consumer(brokers, group, share_acknowledgement_mode="explicit", max_poll_records=10)
    a.subscribe([topic])
    accepted, held = [], []

    def accept(c, msg):
        c.acknowledge(msg, AcknowledgeType.ACCEPT)
        accepted.append(int(msg.value()))
    poll_until([a], lambda: len(accepted) >= 10, "10 records to accept", accept)
    a.commit_sync()
    wait_for(lambda: (st := state_of(brokers, group, tid, 0)) is not None and st.start_offset >= 10, TIMEOUT,
             "the accepted records written to the share coordinator")
    # The next ones acquired and held, not acknowledged, when the leader stops.
    poll_until([a], lambda: len(held) >= 1, "records held", lambda _c, msg: held.append(int(msg.value())))
    assert set(held) <= set(range(10, 20))
    brokers[1].broker.stop_in_thread()
    wait_for(lambda: leaders(brokers[0], topic)[0] in (1, 3), TIMEOUT, "a new leader")
    b = consumer(brokers, group)
    b.subscribe([topic])
    after = []
    poll_until([b], lambda: len(set(after)) >= 10, "the 10 records not accepted",
               lambda _c, msg: after.append(int(msg.value())))
    end = time.monotonic() + 2
    while time.monotonic() < end:
        after.extend(int(msg.value()) for msg in b.poll(0.2))
    b.commit_sync()
    assert sorted(accepted) == list(range(10))
    assert sorted(after) == list(range(10, 20))     # nothing accepted again, nothing unaccepted lost
    wait_for(lambda: (st := state_of(brokers, group, tid, 0)) is not None and st.start_offset == 20, TIMEOUT,
             "the new leader's acceptances written")
    b.close()
    a.close()


def test_the_group_continues_when_the_broker_leading_its_state_partition_stops(brokers):
    topic = "scl-coord"
    tid = create_topic(brokers, topic, [[1, 3, 2]])
    state_leaders = state_topic(brokers)
    if 2 not in state_leaders.values():
        pytest.fail(f"no state partition led by broker 2: {state_leaders}")
    group = group_led_by("scl-coord-g", tid, [0], state_leaders, {0: 2})
    set_group_configs(brokers[0], group, share_auto_offset_reset="earliest")
    c = consumer(brokers, group)
    c.subscribe([topic])
    got = []
    produce(brokers, topic, range(20), partition=0)
    poll_until([c], lambda: len(got) >= 20, "the first 20 records", lambda _c, msg: got.append(int(msg.value())))
    c.commit_sync()
    wait_for(lambda: (st := state_of(brokers, group, tid, 0)) is not None and st.start_offset == 20, TIMEOUT,
             "the first 20 accepted on broker 2's share coordinator")
    brokers[1].broker.stop_in_thread()
    wait_for(lambda: leaders(brokers[0], STATE_TOPIC)[partition_for(group, tid, 0, STATE_PARTITIONS)] in (1, 3),
             TIMEOUT, "a new leader of the group's state partition")
    produce(brokers, topic, range(20, 40), partition=0)
    poll_until([c], lambda: len(got) >= 40, "the next 20 records", lambda _c, msg: got.append(int(msg.value())))
    end = time.monotonic() + 2
    while time.monotonic() < end:
        got.extend(int(msg.value()) for msg in c.poll(0.2))
    c.commit_sync()
    assert sorted(got) == list(range(40))
    # The new share coordinator replayed the partition and took the new acceptances.
    wait_for(lambda: (st := state_of(brokers, group, tid, 0)) is not None and st.start_offset == 40, TIMEOUT,
             "the next 20 accepted on the new share coordinator")
    c.close()


def group_coordinator(brokers, group):
    """The broker coordinating group (FindCoordinator key type 0, retried
    while __consumer_offsets is made)."""
    conn = connect(brokers[0])
    deadline = time.monotonic() + TIMEOUT
    while True:
        c = conn.request(m.FindCoordinatorRequest(key_type=0, coordinator_keys=[group]), api_version=6).coordinators[0]
        if c.error_code == 0:
            conn.close()
            return next(b for b in brokers if b.broker.broker_id == c.node_id)
        assert c.error_code in RETRIABLE and time.monotonic() < deadline, c
        time.sleep(0.2)


def test_offsets_of_a_share_group_described_altered_and_deleted_through_other_brokers_share_coordinators(brokers):
    topic = "scl-admin"
    tid = create_topic(brokers, topic, [[1, 2, 3], [2, 3, 1], [3, 1, 2]])
    state_leaders = state_topic(brokers)
    group = "scl-admin-g"
    gcb = group_coordinator(brokers, group)
    # Some of its share-partitions' states live on other brokers than its group coordinator.
    homes = {state_leaders[partition_for(group, tid, p, STATE_PARTITIONS)] for p in range(3)}
    assert homes - {gcb.broker.broker_id}, homes
    set_group_configs(brokers[0], group, share_auto_offset_reset="earliest")
    produce(brokers, topic, range(30))
    c = consumer(brokers, group)
    c.subscribe([topic])
    got = []
    poll_until([c], lambda: len(got) >= 30, "30 records", lambda _c, msg: got.append(int(msg.value())))
    c.commit_sync()
    wait_for(lambda: all((st := state_of(brokers, group, tid, p)) is not None and st.start_offset == 10
                         for p in range(3)), TIMEOUT, "every record accepted")
    c.close()
    wait_for(lambda: not gcb.broker.share.groups.groups[group].members, TIMEOUT, "the group empty")
    conn = connect(gcb)
    D = m.DescribeShareGroupOffsetsRequest

    def describe():
        r = conn.request(D(groups=[D.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=[
            D.DescribeShareGroupOffsetsRequestTopic(topic_name=topic, partitions=[0, 1, 2])])]), api_version=1)
        g = r.groups[0]
        assert g.error_code == 0
        return {p.partition_index: (p.error_code, p.start_offset, p.lag) for p in g.topics[0].partitions}
    assert describe() == {0: (0, 10, 0), 1: (0, 10, 0), 2: (0, 10, 0)}
    A = m.AlterShareGroupOffsetsRequest
    r = conn.request(A(group_id=group, topics=[A.AlterShareGroupOffsetsRequestTopic(
        topic_name=topic, partitions=[A.AlterShareGroupOffsetsRequestPartition(partition_index=0, start_offset=5)])]),
        api_version=0)
    assert (r.error_code, r.responses[0].partitions[0].error_code) == (0, 0)
    assert describe() == {0: (0, 5, 5), 1: (0, 10, 0), 2: (0, 10, 0)}
    # A member joining later gets partition 0 from offset 5 again (its leader read the new state).
    c = consumer(brokers, group)
    c.subscribe([topic])
    again = []
    poll_until([c], lambda: len(again) >= 5, "partition 0 from offset 5", lambda _c, msg: again.append(msg.offset()))
    end = time.monotonic() + 2
    while time.monotonic() < end:
        again.extend(msg.offset() for msg in c.poll(0.2))
    c.commit_sync()
    c.close()
    assert sorted(again) == [5, 6, 7, 8, 9]
    wait_for(lambda: not gcb.broker.share.groups.groups[group].members, TIMEOUT, "the group empty again")
    X = m.DeleteShareGroupOffsetsRequest
    r = conn.request(X(group_id=group, topics=[X.DeleteShareGroupOffsetsRequestTopic(topic_name=topic)]),
                     api_version=0)
    assert (r.error_code, r.responses[0].error_code) == (0, 0)
    assert describe() == {0: (0, -1, -1), 1: (0, -1, -1), 2: (0, -1, -1)}
    assert all(state_of(brokers, group, tid, p) is None for p in range(3))
    # A state again (an empty group's alter initializes it), which DeleteGroups deletes wherever it lives.
    r = conn.request(A(group_id=group, topics=[A.AlterShareGroupOffsetsRequestTopic(topic_name=topic, partitions=[
        A.AlterShareGroupOffsetsRequestPartition(partition_index=i, start_offset=3) for i in range(3)])]),
        api_version=0)
    assert [p.error_code for p in r.responses[0].partitions] == [0, 0, 0]
    assert all(state_of(brokers, group, tid, p).start_offset == 3 for p in range(3))
    r = conn.request(m.DeleteGroupsRequest(groups_names=[group]), api_version=2)
    assert r.results[0].error_code == 0
    assert all(state_of(brokers, group, tid, p) is None for p in range(3))
    conn.close()


def test_a_share_fetch_to_a_broker_not_leading_the_partition_names_its_leader(brokers):
    from .wire import member_id, partition_errors, share_ack, share_fetch
    topic = "scl-notleader"
    tid = create_topic(brokers, topic, [[2, 3, 1]])
    follower = brokers[2]                      # broker 3
    wait_for(lambda: leaders(follower, topic) == {0: 2}, TIMEOUT, "broker 3 knowing the leader")
    conn = connect(follower)
    mid = member_id()
    r = share_fetch(conn, "scl-notleader-g", mid, 0, [(tid, 0)], max_wait_ms=0)
    assert r.error_code == 0 and partition_errors(r)[(tid, 0)][0] == Errors.NOT_LEADER_OR_FOLLOWER
    pd = r.responses[0].partitions[0]
    assert pd.current_leader.leader_id == 2 and pd.current_leader.leader_epoch >= 0
    assert [(e.node_id, e.port) for e in r.node_endpoints] == [(2, int(str(brokers[1]).rsplit(":", 1)[1]))]
    r = share_ack(conn, "scl-notleader-g", mid, 1, {(tid, 0): [(0, 0, [1])]})
    pd = r.responses[0].partitions[0]
    assert (pd.error_code, pd.current_leader.leader_id) == (Errors.NOT_LEADER_OR_FOLLOWER, 2)
    assert [e.node_id for e in r.node_endpoints] == [2]
    conn.close()
