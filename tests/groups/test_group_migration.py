"""Online migration between the classic and the consumer group protocols
(group.consumer.migration.policy, Kafka's default `bidirectional`) with real
clients on a real broker: a rolling upgrade of librdkafka consumers from
group.protocol=classic to consumer in one group id, every member consuming
throughout and no message consumed twice; then the downgrade when the last
consumer-protocol member leaves; kafka-python classic members beside a
consumer-protocol member; and Kafka's refusals under the other policies."""
from __future__ import annotations

import threading

import pytest
from confluent_kafka import Consumer
from kafka import KafkaConsumer

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker, wait_until

from .helpers import create_topic, produce
from .kip848 import CONFIG, RETRIABLE, connect, describe, heartbeat, member_id

CLASSIC = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 300, "max.poll.interval.ms": 20000}


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def librdkafka(b, group, protocol, conf=None) -> Consumer:
    cfg = {"bootstrap.servers": str(b), "group.id": group, "group.protocol": protocol,
           "auto.offset.reset": "earliest", "enable.auto.commit": True, "auto.commit.interval.ms": 200,
           "topic.metadata.refresh.interval.ms": 1000, "client.id": f"{protocol}-client"}
    if protocol == "classic":
        cfg.update(CLASSIC)
    cfg.update(conf or {})
    return Consumer(cfg)


class Consuming:
    """Polls consumers round-robin, keeping every (partition, offset) each one got."""

    def __init__(self, *consumers):
        self.consumers = list(consumers)
        self.got: dict[int, list] = {}

    def add(self, c):
        self.consumers.append(c)

    def remove(self, c):
        self.consumers.remove(c)

    def poll(self):
        for c in self.consumers:
            msg = c.poll(0.05)
            if msg is not None and not msg.error():
                self.got.setdefault(id(c), []).append((msg.partition(), msg.offset()))

    def all(self):
        return [po for got in self.got.values() for po in got]

    def until(self, cond, what, timeout=90.0):
        return wait_until(lambda: self.poll() or cond(), what, timeout)


def owned(c) -> set:
    return {tp.partition for tp in c.assignment()}


def balanced(cs, n) -> bool:
    sets = [owned(c) for c in cs]
    every = [p for s in sets for p in s]
    return sorted(every) == list(range(n)) and all(sets)


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_rolling_upgrade_then_downgrade_with_librdkafka(broker, strategy):
    topic, group, n = f"mig-roll-{strategy}", f"mig-roll-{strategy}-g", 6
    create_topic(broker, topic, n)
    produce(str(broker), topic, 600, n)
    conn = connect(broker)
    classic = [librdkafka(broker, group, "classic", {"partition.assignment.strategy": strategy})
               for _ in range(2)]
    for c in classic:
        c.subscribe([topic])
    run = Consuming(*classic)
    try:
        run.until(lambda: balanced(classic, n), "the classic members balanced")
        assert describe(conn, group).error_code == Errors.GROUP_ID_NOT_FOUND     # a classic group so far
        new = librdkafka(broker, group, "consumer")
        new.subscribe([topic])
        run.add(new)
        members = classic + [new]
        # The group is a consumer group now; the classic members stay, speaking their protocol.
        run.until(lambda: balanced(members, n), "three members balanced across both protocols")
        g = describe(conn, group, version=1)
        assert g.error_code == 0 and g.group_state in ("Stable", "Reconciling")
        assert sorted(mm.member_type for mm in g.members) == [0, 0, 1]
        run.until(lambda: len(run.all()) >= 600, "every message consumed")
        produce(str(broker), topic, 300, n)
        run.until(lambda: len(run.all()) >= 900, "the next messages consumed")
        # The last consumer-protocol member leaves: the group turns classic again.
        new.close()
        run.remove(new)
        run.until(lambda: describe(conn, group).error_code == Errors.GROUP_ID_NOT_FOUND,
                  "the group downgraded to a classic group")
        run.until(lambda: balanced(classic, n), "the classic members balanced again")
        produce(str(broker), topic, 300, n)
        run.until(lambda: len(run.all()) >= 1200, "messages after the downgrade consumed")
        d = conn.request(m.DescribeGroupsRequest(groups=[group], include_authorized_operations=False),
                         api_version=5).groups[0]
        assert (d.error_code, d.protocol_type, len(d.members)) == (0, "consumer", 2)
        seen = run.all()
        assert len(seen) == len(set(seen)) == 1200, "a message consumed twice, or one missed"
    finally:
        for c in run.consumers:
            c.close()
        conn.close()


def test_kafka_python_classic_members_with_a_consumer_protocol_member(broker):
    """Each kafka-python member polls in a thread of its own, as an application
    does: kafka-python 3.0.12 throws away a JoinGroup/SyncGroup round trip that
    completes while no poll() waits for it and joins again, so members polled
    in turn from one thread can keep the group rebalancing under load."""
    topic, group, n = "mig-kp", "mig-kp-g", 4
    create_topic(broker, topic, n)
    produce(str(broker), topic, 200, n)
    kp = [KafkaConsumer(topic, bootstrap_servers=str(broker), group_id=group, auto_offset_reset="earliest",
                        session_timeout_ms=6000, heartbeat_interval_ms=300, enable_auto_commit=True,
                        auto_commit_interval_ms=200) for _ in range(2)]
    got: list = []
    held: dict = {}
    errors: list = []
    stop = threading.Event()

    def run(i, c):
        try:
            while not stop.is_set():
                for recs in c.poll(timeout_ms=1000).values():
                    got.extend((r.partition, r.offset) for r in recs)
                held[i] = {tp.partition for tp in c.assignment()}
        except Exception as e:  # reported by the waiting thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(kp)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: errors or len(got) >= 100 and all(held.get(i) for i in range(len(kp))),
                   "kafka-python members consuming")
        assert not errors, errors
        new = librdkafka(broker, group, "consumer")
        new.subscribe([topic])
        try:
            def spread():
                msg = new.poll(0.05)
                if msg is not None and not msg.error():
                    got.append((msg.partition(), msg.offset()))
                sets = [held.get(i, set()) for i in range(len(kp))] + [owned(new)]
                return sorted(p for s in sets for p in s) == list(range(n)) and all(sets)
            wait_until(lambda: errors or spread(),
                       "the kafka-python members and the consumer-protocol member share the partitions")
            assert not errors, errors
            conn = connect(broker)
            assert sorted(mm.member_type for mm in describe(conn, group, version=1).members) == [0, 0, 1]
            conn.close()
            wait_until(lambda: errors or spread() or len(got) >= 200, "every message consumed")
            assert not errors, errors
            assert len(got) == len(set(got)) == 200
        finally:
            new.close()
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        for c in kp:
            c.close()


def _classic_group(conn, group, topic):
    """A classic group in use: one member joined and synced (kafka-python's
    subscription bytes)."""
    from pylog.consumer.assignors import encode_subscription
    J = m.JoinGroupRequest
    req = J(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="",
            group_instance_id=None, protocol_type="consumer", reason=None,
            protocols=[J.JoinGroupRequestProtocol(name="range", metadata=encode_subscription([topic]))])
    while True:
        j = conn.request(req, api_version=3)
        if j.error_code not in RETRIABLE:
            return j


@pytest.mark.parametrize("policy, upgrades", [("upgrade", True), ("downgrade", False), ("disabled", False)])
def test_the_policy_decides_the_upgrade(policy, upgrades):
    with running_broker(config={**CONFIG, "group.consumer.migration.policy": policy}) as b:
        create_topic(b, "mig-pol", 1)
        conn = connect(b)
        assert _classic_group(conn, "mig-pol-g", "mig-pol").error_code == 0
        r = heartbeat(conn, "mig-pol-g", member_id(), 0, ["mig-pol"])
        if upgrades:
            assert r.error_code == 0
            assert sorted(mm.member_type for mm in describe(conn, "mig-pol-g", version=1).members) == [0, 1]
        else:
            assert (r.error_code, r.error_message) == (
                Errors.GROUP_ID_NOT_FOUND,
                "Cannot upgrade classic group mig-pol-g to consumer group because online upgrade is disabled.")
        conn.close()


def test_a_classic_join_to_a_consumer_group_under_disabled_is_inconsistent():
    with running_broker(config={**CONFIG, "group.consumer.migration.policy": "disabled"}) as b:
        create_topic(b, "mig-dis", 1)
        conn = connect(b)
        assert heartbeat(conn, "mig-dis-g", member_id(), 0, ["mig-dis"]).error_code == 0
        assert _classic_group(conn, "mig-dis-g", "mig-dis").error_code == Errors.INCONSISTENT_GROUP_PROTOCOL
        conn.close()


def test_conversions_survive_a_restart(tmp_path):
    """The records each conversion writes are what a restarted coordinator
    rebuilds the group from: after the upgrade a consumer group with its
    classic member (and that member's assignment), after the downgrade a
    classic group."""
    from pylog.consumer.assignors import decode_assignment, encode_assignment
    from pylog.structs import TopicPartition
    with running_broker(tmp_path / "data", config=CONFIG) as b:
        create_topic(b, "mig-re", 2)
        conn = connect(b)
        j = _classic_group(conn, "mig-re-g", "mig-re")
        S = m.SyncGroupRequest
        mine = encode_assignment([TopicPartition("mig-re", 0), TopicPartition("mig-re", 1)])
        s = conn.request(S(group_id="mig-re-g", generation_id=j.generation_id, member_id=j.member_id,
                           group_instance_id=None, assignments=[S.SyncGroupRequestAssignment(
                               member_id=j.member_id, assignment=mine)]), api_version=3)
        assert s.error_code == 0
        new = member_id()
        r = heartbeat(conn, "mig-re-g", new, 0, ["mig-re"])
        assert r.error_code == 0
        conn.close()
        b.restart()
        conn = connect(b)
        g = wait_until(lambda: (lambda g: g if g.error_code == 0 else None)(describe(conn, "mig-re-g", 1)),
                       "the consumer group reloaded")
        types = {mm.member_id: mm.member_type for mm in g.members}
        assert types == {j.member_id: 0, new: 1}
        classic = next(mm for mm in g.members if mm.member_id == j.member_id)
        assert classic.member_epoch == j.generation_id    # converted at the classic generation
        # The classic member rejoins: told by its heartbeat, it joins at its member epoch.
        H = m.HeartbeatRequest
        hb = conn.request(H(group_id="mig-re-g", generation_id=j.generation_id, member_id=j.member_id,
                            group_instance_id=None), api_version=3)
        assert hb.error_code in (0, Errors.REBALANCE_IN_PROGRESS)
        # The consumer-protocol member leaves: the group is classic again, also after a restart.
        assert heartbeat(conn, "mig-re-g", new, -1).error_code == 0
        assert describe(conn, "mig-re-g").error_code == Errors.GROUP_ID_NOT_FOUND
        conn.close()
        b.restart()
        conn = connect(b)

        def classic_group():
            d = conn.request(m.DescribeGroupsRequest(groups=["mig-re-g"], include_authorized_operations=False),
                             api_version=5).groups[0]
            return d if d.error_code == 0 and d.members else None
        d = wait_until(classic_group, "the classic group reloaded")
        assert (d.protocol_type, d.protocol_data, [mm.member_id for mm in d.members]) == \
            ("consumer", "range", [j.member_id])
        assert {(tp.topic, tp.partition) for tp in decode_assignment(d.members[0].member_assignment)} <= \
            {("mig-re", 0), ("mig-re", 1)}
        assert describe(conn, "mig-re-g").error_code == Errors.GROUP_ID_NOT_FOUND
        conn.close()


class StaticPair:
    """Two static librdkafka members (inst-a, inst-b) of one group, started
    classic, consuming; restart(i, protocol) brings instance i back speaking
    protocol (a static member's close does not leave the group)."""

    def __init__(self, broker, group, topic, n):
        self.broker, self.group, self.topic, self.n = broker, group, topic, n
        self.members = {i: librdkafka(broker, group, "classic", {"group.instance.id": f"inst-{i}"}) for i in "ab"}
        for c in self.members.values():
            c.subscribe([topic])
        self.run = Consuming(*self.members.values())

    def balanced(self):
        return balanced(list(self.members.values()), self.n)

    def restart(self, i, protocol):
        old = self.members.pop(i)
        old.close()   # commits its offsets
        self.run.remove(old)
        self.members[i] = librdkafka(self.broker, self.group, protocol, {"group.instance.id": f"inst-{i}"})
        self.members[i].subscribe([self.topic])
        self.run.add(self.members[i])

    def close(self):
        for c in self.run.consumers:
            c.close()


def test_static_members_restart_one_by_one_into_the_consumer_protocol(broker):
    """A rolling upgrade of static members: each instance comes back under
    its group.instance.id speaking the other protocol and takes over its
    previous member's partitions (Kafka replaces a static member whatever
    protocol either uses), with no message consumed twice."""
    topic, group, n = "mig-static", "mig-static-g", 4
    create_topic(broker, topic, n)
    produce(str(broker), topic, 400, n)
    conn = connect(broker)
    pair = StaticPair(broker, group, topic, n)
    run = pair.run
    try:
        run.until(pair.balanced, "the static classic members balanced")
        run.until(lambda: len(run.all()) >= 400, "every message consumed")
        for i in "ab":
            before = owned(pair.members[i])
            pair.restart(i, "consumer")
            run.until(lambda: owned(pair.members[i]) == before and pair.balanced(),
                      f"inst-{i} back with the consumer protocol and its partitions")
        g = describe(conn, group, version=1)
        assert sorted((mm.instance_id, mm.member_type) for mm in g.members) == [("inst-a", 1), ("inst-b", 1)]
        produce(str(broker), topic, 200, n)
        run.until(lambda: len(run.all()) >= 600, "messages after the upgrade consumed")
        seen = run.all()
        assert len(seen) == len(set(seen)) == 600
    finally:
        pair.close()
        conn.close()


def test_a_static_member_back_to_classic_downgrades_the_group(broker):
    """The group's only consumer-protocol member is a static one that comes
    back speaking the classic protocol: the group turns classic again
    (Kafka's downgrade on replacement), everyone keeps consuming."""
    topic, group, n = "mig-back", "mig-back-g", 4
    create_topic(broker, topic, n)
    produce(str(broker), topic, 200, n)
    conn = connect(broker)
    pair = StaticPair(broker, group, topic, n)
    run = pair.run
    try:
        run.until(pair.balanced, "the static classic members balanced")
        pair.restart("b", "consumer")
        run.until(lambda: pair.balanced() and
                  sorted(mm.member_type for mm in describe(conn, group, version=1).members) == [0, 1],
                  "inst-b back with the consumer protocol")
        pair.restart("b", "classic")
        run.until(lambda: describe(conn, group).error_code == Errors.GROUP_ID_NOT_FOUND,
                  "the group classic again")
        run.until(pair.balanced, "both classic members balanced")
        produce(str(broker), topic, 200, n)
        run.until(lambda: len(run.all()) >= 400, "every message consumed")
        d = conn.request(m.DescribeGroupsRequest(groups=[group], include_authorized_operations=False),
                         api_version=5).groups[0]
        assert sorted(mm.group_instance_id for mm in d.members) == ["inst-a", "inst-b"]
        seen = run.all()
        assert len(seen) == len(set(seen)) == 400
    finally:
        pair.close()
        conn.close()
