"""Share groups when a broker of a 3-broker cluster goes, other than the
share-partition leader and share coordinator moves of test_share_cluster.py:

- the group coordinator of a share group (the leader of its
  `__consumer_offsets` partition, which holds the membership records 10-15)
  stopped in-process, or SIGKILLed as a `python -m pylog broker` process over
  ZooKeeper, while two confluent_kafka.ShareConsumers consume: the new
  coordinator replays the records, so a raw member silent since before the
  move is still known at its epoch, the group's and members' epochs are what
  they were, and the consumers read on: each record once, every
  share-partition accepted to its end;
- priority (`pylog.priority`) across a change of the share-partition's
  leader: a backlog of plain records and some of priority 5 and 9, the
  leader stopped before (or after a few of the high ones are taken), and
  the new leader, rebuilding its index from the log, still hands out the
  high ones first."""
from __future__ import annotations

import signal
import threading
import time

import pytest
from confluent_kafka import Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.share.coordinator import partition_for
from tests.cluster.conftest import zk_connect, zookeeper  # noqa: F401 (fixtures)
from tests.cluster.zkcluster import bootstrap, wait_for

from .test_share_cluster import (STATE_PARTITIONS, TIMEOUT, brokers, consumer, create_topic,  # noqa: F401
                                 group_coordinator, leaders, state_of, state_topic)
from .test_share_cluster_kill import (cluster_up, metadata, processes,  # noqa: F401 (processes: a fixture)
                                      state_topic_leaders, topic_id)
from .wire import (RETRIABLE, acquired, connect, heartbeat, join_assigned, member_id, set_group_configs, share_ack,
                   share_fetch)

OFFSETS = "__consumer_offsets"
OFFSETS_PARTITIONS = 3          # test_share_cluster's BASE and test_share_cluster_kill's CONFIG_
PARTITIONS = 2                  # three would put one share-partition's state on the group coordinator's broker
PER_PHASE = 90                  # records produced before, during and after the move


def produce_spread(bootstrap_servers, topic, values):
    """Even values to partition 0, odd ones to 1."""
    p = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all", "linger.ms": 5})
    for v in values:
        p.produce(topic, str(v).encode(), partition=v % PARTITIONS)
    assert p.flush(30) == 0


def group_named(prefix, tid, offsets_leaders, state_leaders, coordinator, state_not_on):
    """A group name whose group coordinator is broker coordinator(broker id)
    and whose share-partitions' states are led by brokers other than
    state_not_on."""
    for i in range(10000):
        g = f"{prefix}-{i}"
        if coordinator(offsets_leaders[ot.partition_for(g, OFFSETS_PARTITIONS)]) and all(
                state_leaders[partition_for(g, tid, p, STATE_PARTITIONS)] != state_not_on for p in range(PARTITIONS)):
            return g
    raise AssertionError("no such group name")


def group_coordinated_by(prefix, tid, offsets_leaders, state_leaders, gone):
    """A group coordinated by broker gone, its states elsewhere: only the membership moves when gone goes."""
    return group_named(prefix, tid, offsets_leaders, state_leaders, lambda b: b == gone, gone)


def find_group_coordinator(conn, group):
    """The node id FindCoordinator (key type 0) names, None while retriable."""
    c = conn.request(m.FindCoordinatorRequest(key_type=0, coordinator_keys=[group]), api_version=6).coordinators[0]
    assert c.error_code == 0 or c.error_code in RETRIABLE, c
    return c.node_id if c.error_code == 0 else None


def described(conn, group):
    """(group epoch, {member id: member epoch}) from ShareGroupDescribe, None
    while the broker asked is not (yet) the group's coordinator."""
    g = conn.request(m.ShareGroupDescribeRequest(group_ids=[group]), api_version=1).groups[0]
    if g.error_code in RETRIABLE:
        return None
    assert g.error_code == 0, g
    return g.group_epoch, {mm.member_id: mm.member_epoch for mm in g.members}


def share_offsets(conn, group, topic):
    """{partition: (error, start offset, lag)} from DescribeShareGroupOffsets,
    None while the broker asked is not (yet) the group's coordinator."""
    D = m.DescribeShareGroupOffsetsRequest
    g = conn.request(D(groups=[D.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=[
        D.DescribeShareGroupOffsetsRequestTopic(topic_name=topic, partitions=list(range(PARTITIONS)))])]),
        api_version=1).groups[0]
    if g.error_code in RETRIABLE:
        return None
    assert g.error_code == 0, g
    return {p.partition_index: (p.error_code, p.start_offset, p.lag) for p in g.topics[0].partitions}


class Membership:
    """The view of the share group from its coordinator, found again after a
    move: connect(node id) gives a connection to a live broker."""

    def __init__(self, connect_to, any_node, group):
        self.connect_to, self.any_node, self.group = connect_to, any_node, group
        self.node, self.conn = None, None

    def call(self, fn):
        """fn(connection to the coordinator), or None while it cannot be reached or answers retriable."""
        probe = self.connect_to(self.any_node)
        try:
            node = find_group_coordinator(probe, self.group)
        finally:
            probe.close()
        if node is None:
            return None
        if node != self.node:
            if self.conn is not None:
                self.conn.close()
            self.node, self.conn = node, None
        try:
            if self.conn is None:
                self.conn = self.connect_to(node)
            return fn(self.conn)
        except OSError:                 # the coordinator named by stale metadata is gone
            self.conn = None
            return None

    def close(self):
        if self.conn is not None:
            self.conn.close()


def heartbeat_answer(membership, mid, epoch, topics=None):
    """A ShareGroupHeartbeat's answer from the group's coordinator, retried
    while the coordinator moves."""
    def once(conn):
        r = heartbeat(conn, membership.group, mid, epoch, topics, retry=False)
        return None if r.error_code in RETRIABLE else r
    out = []
    wait_for(lambda: out.append(membership.call(once)) or out[-1] is not None, TIMEOUT, "a heartbeat answered")
    return out[-1]


class Reading:
    """Two confluent ShareConsumers reading the topic: every value got, in
    arrival order."""

    def __init__(self, consumers):
        self.consumers, self.got = consumers, []

    def poll(self):
        for c in self.consumers:
            for msg in c.poll(0.2):
                assert msg.error() is None, msg.error()
                self.got.append(int(msg.value()))

    def until(self, n, what, also=lambda: True):
        deadline = time.monotonic() + TIMEOUT * 2
        while len(set(self.got)) < n or not also():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {len(set(self.got))} records"
            self.poll()

    def finish(self):
        """2 s more of polling (nothing may come twice), then commit and close."""
        end = time.monotonic() + 2
        while time.monotonic() < end:
            self.poll()
        for c in self.consumers:
            c.commit_sync()
        for c in self.consumers:
            c.close()


def members_move_with_their_coordinator(membership, group, topic, reading, produce_more, go, moved):
    """What both coordinator tests do: the consumers hold the group, a raw
    member joins (subscribed to a topic that does not exist, so it takes no
    partition from them) and then says nothing; the coordinator goes (go())
    while the consumers read the next records; once moved() the raw member's
    heartbeat at its old epoch is accepted, and the group's epochs are what
    they were. The group's description before and after."""
    produce_more(range(PER_PHASE))
    reading.until(PER_PHASE, "the first records")
    silent = member_id()
    r = heartbeat_answer(membership, silent, 0, [f"{topic}-absent"])
    assert r.error_code == 0, r
    epoch = r.member_epoch
    before = []
    # Each member moves to the epoch the raw member's join made at its own
    # next heartbeat (as Kafka's): described once all have.
    wait_for(lambda: before.append(membership.call(lambda conn: described(conn, group))) or (
        before[-1] is not None and set(before[-1][1].values()) == {before[-1][0]}),
        TIMEOUT, "every member at the group's epoch")
    before = before[-1]
    assert before[0] == epoch and len(before[1]) == 3, before
    stopper = threading.Thread(target=go)
    stopper.start()
    produce_more(range(PER_PHASE, 2 * PER_PHASE))
    reading.until(2 * PER_PHASE, "the records produced while the coordinator moves", moved)
    stopper.join()
    # Silent since before the move: known to the new coordinator only from the records it replayed.
    r = heartbeat_answer(membership, silent, epoch)
    assert (r.error_code, r.member_epoch) == (0, epoch), r
    produce_more(range(2 * PER_PHASE, 3 * PER_PHASE))
    reading.until(3 * PER_PHASE, "the records produced after the move")
    # No member came back as a new one (a join would move the group epoch).
    after = []
    wait_for(lambda: after.append(membership.call(lambda conn: described(conn, group))) or after[-1] is not None,
             TIMEOUT, "the new coordinator's description")
    assert after[-1] == before, (before, after[-1])
    r = heartbeat_answer(membership, silent, -1)
    assert r.error_code == 0, r
    reading.finish()
    assert sorted(reading.got) == list(range(3 * PER_PHASE))      # each record once, none lost
    # Every record accepted: each share-partition's start offset at its log end, no lag.
    end = {p: (0, 3 * PER_PHASE // PARTITIONS, 0) for p in range(PARTITIONS)}
    wait_for(lambda: membership.call(lambda conn: share_offsets(conn, group, topic)) == end, TIMEOUT,
             "every share-partition accepted to its end")


def offsets_topic(brokers):
    """__consumer_offsets made (FindCoordinator asks for it) and led: {partition: leader}."""
    group_coordinator(brokers, "scm-probe")
    wait_for(lambda: len(ls := leaders(brokers[0], OFFSETS)) == OFFSETS_PARTITIONS and all(v > 0 for v in ls.values()),
             TIMEOUT, "the offsets topic's leaders")
    return leaders(brokers[0], OFFSETS)


def test_share_members_keep_consuming_when_their_group_coordinator_stops(brokers):
    # __consumer_offsets made and led before the topic, so that the topic's
    # partitions can be led by the brokers that stay.
    offsets_leaders = offsets_topic(brokers)
    # Broker 1 is the embedded controller: it stays.
    gone = 2 if 2 in offsets_leaders.values() else 3
    if gone not in offsets_leaders.values():
        pytest.fail(f"no offsets partition led by broker 2 or 3: {offsets_leaders}")
    stay = 5 - gone
    topic = "scm-gc-stop"
    tid = create_topic(brokers, topic, [[1, stay, gone], [stay, 1, gone]])
    state_leaders = state_topic(brokers)
    group = group_coordinated_by("scm-gc-stop-g", tid, offsets_leaders, state_leaders, gone)
    set_group_configs(brokers[0], group, share_auto_offset_reset="earliest")
    by_id = {b.broker.broker_id: b for b in brokers}
    membership = Membership(lambda node: connect(by_id[node]), 1, group)
    a, b = consumer(brokers, group, max_poll_records=20), consumer(brokers, group, max_poll_records=20)
    a.subscribe([topic])
    b.subscribe([topic])

    def moved():
        # The group described by a broker that stays: it loaded the group's offsets partition.
        return membership.call(lambda conn: described(conn, group)) is not None and membership.node != gone
    try:
        members_move_with_their_coordinator(
            membership, group, topic, Reading([a, b]), lambda values: produce_spread(bootstrap(brokers), topic, values),
            by_id[gone].broker.stop_in_thread, moved)
    finally:
        membership.close()


def test_share_members_keep_consuming_when_their_group_coordinator_is_sigkilled(processes):  # noqa: F811
    bootstrap_servers = ",".join(p.address for p in processes)
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    cluster_up(admin)
    probe = processes[0].connect(10)
    try:
        wait_for(lambda: find_group_coordinator(probe, "scm-probe") is not None, TIMEOUT, "the offsets topic")
    finally:
        probe.close()
    wait_for(lambda: len(md := metadata(bootstrap_servers, OFFSETS)) == OFFSETS_PARTITIONS
             and all(v[0] > 0 for v in md.values()), TIMEOUT, "the offsets topic's leaders")
    offsets_leaders = {i: v[0] for i, v in metadata(bootstrap_servers, OFFSETS).items()}
    # The ZooKeeper controller stays if it can: its election is test_faults' business.
    controller = admin.list_topics(timeout=10).controller_id
    gone = min(set(offsets_leaders.values()) - {controller}, default=controller)
    stays = sorted({1, 2, 3} - {gone})
    topic = "scm-gc-kill"
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replica_assignment=[
        [stays[0], stays[1], gone], [stays[1], stays[0], gone]])])[topic].result(TIMEOUT)
    wait_for(lambda: {p: (v[0], len(v[1])) for p, v in metadata(bootstrap_servers, topic).items()}
             == {0: (stays[0], 3), 1: (stays[1], 3)}, TIMEOUT, "the topic led by the brokers that stay, full ISRs")
    state_leaders = state_topic_leaders(processes, bootstrap_servers)
    tid = topic_id(processes[0], topic)
    group = group_coordinated_by("scm-gc-kill-g", tid, offsets_leaders, state_leaders, gone)
    set_group_configs(processes[0].address, group, share_auto_offset_reset="earliest")
    membership = Membership(lambda node: processes[node - 1].connect(10), stays[0], group)
    a, b = (ShareConsumer({"bootstrap.servers": bootstrap_servers, "group.id": group, "max.poll.records": 20})
            for _ in range(2))
    a.subscribe([topic])
    b.subscribe([topic])
    victim = processes[gone - 1]

    def kill():
        victim.signal(signal.SIGKILL)
        victim.wait_exit()

    def moved():
        return membership.call(lambda conn: described(conn, group)) is not None and membership.node != gone
    try:
        members_move_with_their_coordinator(
            membership, group, topic, Reading([a, b]), lambda values: produce_spread(bootstrap_servers, topic, values),
            kill, moved)
    finally:
        membership.close()


@pytest.mark.parametrize("taken_before", [0, 5])
def test_the_new_leader_of_a_share_partition_hands_out_higher_priorities_first(brokers, taken_before):
    """taken_before: high records a raw member takes and accepts from the old
    leader (its priority index built and its state written); 0: the old
    leader never loaded the share-partition."""
    offsets_leaders = offsets_topic(brokers)
    topic = f"scm-prio-{taken_before}"
    tid = create_topic(brokers, topic, [[2, 3, 1]])
    state_leaders = state_topic(brokers)
    # Only the share-partition's leader moves: its group and its state are on brokers that stay.
    group = group_named(f"{topic}-g", tid, offsets_leaders, state_leaders, lambda b: b != 2, 2)
    set_group_configs(brokers[0], group, share_auto_offset_reset="earliest")
    p = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "linger.ms": 5})
    for i in range(300):
        p.produce(topic, b"low-%d" % i, partition=0)
    for i in range(10):
        p.produce(topic, b"mid-%d" % i, partition=0, headers=[("pylog.priority", b"5")])
    for i in range(10):
        p.produce(topic, b"high-%d" % i, partition=0, headers=[("pylog.priority", b"9")])
    assert p.flush(30) == 0
    # The share-partition initialized (a member joined) before its leader goes.
    gc = connect(group_coordinator(brokers, group))
    mid = member_id()
    join_assigned(gc, group, mid, [topic])
    taken = set()
    if taken_before:
        old = connect(brokers[1])
        deadline = time.monotonic() + TIMEOUT
        while not taken:
            assert time.monotonic() < deadline, "timed out waiting for the old leader's records"
            ranges = acquired(share_fetch(old, group, mid, 0, [(tid, 0)], max_records=taken_before)).get((tid, 0), [])
            taken = {o for f, l, _ in ranges for o in range(f, l + 1)}
        assert taken == set(range(310, 310 + taken_before)), sorted(taken)   # the first high ones
        r = share_ack(old, group, mid, 1, {(tid, 0): [(min(taken), max(taken), [1])]})    # ACCEPT
        assert [q.error_code for q in r.responses[0].partitions] == [0], r
        old.close()
        wait_for(lambda: (st := state_of(brokers, group, tid, 0)) is not None and any(
            f <= 310 <= l and state == 2 for f, l, state, _ in st.batches), TIMEOUT,
            "the acceptances written to the share coordinator")
    assert heartbeat(gc, group, mid, -1).error_code == 0
    gc.close()
    brokers[1].broker.stop_in_thread()
    wait_for(lambda: leaders(brokers[0], topic)[0] in (1, 3), TIMEOUT, "a new leader")

    c = consumer(brokers, group, max_poll_records=10)
    c.subscribe([topic])
    order = []
    left = 320 - len(taken)
    deadline = time.monotonic() + TIMEOUT * 2
    while len(order) < left:
        assert time.monotonic() < deadline, f"timed out after {len(order)} records"
        for msg in c.poll(0.2):
            assert msg.error() is None, msg.error()
            order.append(msg.value())
    end = time.monotonic() + 2
    while time.monotonic() < end:
        order.extend(msg.value() for msg in c.poll(0.2))
    c.commit_sync()
    c.close()
    values = [b"low-%d" % i for i in range(300)] + [b"mid-%d" % i for i in range(10)] + \
        [b"high-%d" % i for i in range(10)]
    # Nothing accepted comes back, nothing unaccepted is lost.
    assert sorted(order) == sorted(v for o, v in enumerate(values) if o not in taken)
    pos = {v: i for i, v in enumerate(order)}
    highs = [pos[v] for v in values[310:] if v in pos]
    mids = [pos[v] for v in values[300:310]]
    # In offset order the 300 plain records would all come first (test_share_priority's bounds).
    assert max(highs) < 100, order[:max(highs) + 1]
    assert max(mids) < 150, order[:max(mids) + 1]
