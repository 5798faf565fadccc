"""Partition assignors (pylog/consumer/assignors.py).

Three layers: exact answers copied from the Java client's own assignor tests
(RangeAssignorTest, RoundRobinAssignorTest, AbstractStickyAssignorTest at
apache/kafka 1eb7644); hypothesis properties (validity, balance,
stickiness, the cooperative two-round rule); and the consumer-protocol bytes
real clients put on the wire, captured from librdkafka and kafka-python
consumers in a group on a real pylog broker and read back with DescribeGroups.
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylog.consumer.assignors import (
    ASSIGNOR_NAMES,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
    get_assignor,
)
from pylog.protocol.errors import ProtocolError
from pylog.structs import TopicPartition as TP
from pylog.testing import FAST_GROUP_CONFIG

T1, T2 = "topic1", "topic2"
C1, C2, C3, C4 = "consumer1", "consumer2", "consumer3", "consumer4"


def tps(*pairs):
    return sorted(TP(t, p) for t, p in pairs)


def sub(topics, owned=(), generation=-1):
    return Subscription(list(topics), list(owned), generation)


def assign(name, counts, subs, **kw):
    return get_assignor(name).assign_partitions(counts, subs, **kw)


# --- lookup --------------------------------------------------------------------------

def test_get_assignor_names_and_protocols():
    assert ASSIGNOR_NAMES == ("range", "roundrobin", "sticky", "cooperative-sticky")
    for name in ASSIGNOR_NAMES:
        a = get_assignor(name)
        assert a.name == name
        assert a.protocol == ("COOPERATIVE" if name == "cooperative-sticky" else "EAGER")


def test_get_assignor_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="range, roundrobin, sticky, cooperative-sticky"):
        get_assignor("RoundRobin")


# --- exact answers from the Java tests -----------------------------------------------

def test_range_two_consumers_one_topic_three_partitions():
    assert assign("range", {T1: 3}, {C1: sub([T1]), C2: sub([T1])}) == {
        C1: tps((T1, 0), (T1, 1)), C2: tps((T1, 2))}


def test_range_only_subscribed_topics_and_nonexistent_topic():
    assert assign("range", {T1: 3, "other": 3}, {C1: sub([T1])}) == {C1: tps((T1, 0), (T1, 1), (T1, 2))}
    assert assign("range", {}, {C1: sub([T1])}) == {C1: []}


def test_range_multiple_consumers_mixed_topics():
    got = assign("range", {T1: 3, T2: 2}, {C1: sub([T1]), C2: sub([T1, T2]), C3: sub([T1])})
    assert got == {C1: tps((T1, 0)), C2: tps((T1, 1), (T2, 0), (T2, 1)), C3: tps((T1, 2))}


def test_range_two_consumers_two_topics_six_partitions():
    got = assign("range", {T1: 3, T2: 3}, {C1: sub([T1, T2]), C2: sub([T1, T2])})
    assert got == {C1: tps((T1, 0), (T1, 1), (T2, 0), (T2, 1)), C2: tps((T1, 2), (T2, 2))}


def test_range_static_members_order_by_instance_id():
    # RangeAssignorTest.testTwoStaticConsumersTwoTopicsSixPartitions and
    # testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions
    subs = {"consumer-b": sub([T1, T2]), "consumer-a": sub([T1, T2])}
    expected = {"consumer-b": tps((T1, 0), (T1, 1), (T2, 0), (T2, 1)),
                "consumer-a": tps((T1, 2), (T2, 2))}
    assert assign("range", {T1: 3, T2: 3}, subs,
                  group_instance_ids={"consumer-b": "instance1", "consumer-a": "instance2"}) == expected
    assert assign("range", {T1: 3, T2: 3}, subs,
                  group_instance_ids={"consumer-b": "instance1"}) == expected


def test_roundrobin_mixed_topics_and_two_topics():
    got = assign("roundrobin", {T1: 3, T2: 2}, {C1: sub([T1]), C2: sub([T1, T2]), C3: sub([T1])})
    assert got == {C1: tps((T1, 0)), C2: tps((T1, 1), (T2, 0), (T2, 1)), C3: tps((T1, 2))}
    got = assign("roundrobin", {T1: 3, T2: 3}, {C1: sub([T1, T2]), C2: sub([T1, T2])})
    assert got == {C1: tps((T1, 0), (T1, 2), (T2, 1)), C2: tps((T1, 1), (T2, 0), (T2, 2))}


def test_sticky_fresh_assignments():
    for name in ("sticky", "cooperative-sticky"):
        got = assign(name, {T1: 3, T2: 3}, {C1: sub([T1, T2]), C2: sub([T1, T2])})
        assert got == {C1: tps((T1, 0), (T1, 2), (T2, 1)), C2: tps((T1, 1), (T2, 0), (T2, 2))}
        got = assign(name, {T1: 3, T2: 2}, {C1: sub([T1]), C2: sub([T1, T2]), C3: sub([T1])})
        assert got == {C1: tps((T1, 0), (T1, 2)), C2: tps((T2, 0), (T2, 1)), C3: tps((T1, 1))}


def test_sticky_owning_min_quota_expected_max_quota():
    subs = {C1: sub([T1, T2], tps((T1, 0), (T2, 1)), 1), C2: sub([T1, T2], tps((T1, 1), (T2, 2)), 1)}
    assert assign("sticky", {T1: 2, T2: 3}, subs) == {
        C1: tps((T1, 0), (T2, 1), (T2, 0)), C2: tps((T1, 1), (T2, 2))}


def test_sticky_add_two_consumers_then_remove_two():
    # AbstractStickyAssignorTest.testAddRemoveTwoConsumersTwoTopics
    counts = {T1: 3, T2: 4}
    first = assign("sticky", counts, {C1: sub([T1, T2]), C2: sub([T1, T2])})
    assert first == {C1: tps((T1, 0), (T1, 2), (T2, 1), (T2, 3)), C2: tps((T1, 1), (T2, 0), (T2, 2))}
    subs = {c: sub([T1, T2], first.get(c, ()), 2) for c in (C1, C2, C3, C4)}
    second = assign("sticky", counts, subs)
    assert second == {C1: tps((T1, 0), (T2, 1)), C2: tps((T2, 0), (T1, 1)),
                      C3: tps((T1, 2), (T2, 3)), C4: tps((T2, 2))}
    # cooperative: the three partitions changing hands wait for the next round
    assert assign("cooperative-sticky", counts, subs) == {
        C1: tps((T1, 0), (T2, 1)), C2: tps((T2, 0), (T1, 1)), C3: [], C4: []}
    third = assign("sticky", counts, {c: sub([T1, T2], second[c], 3) for c in (C3, C4)})
    assert third == {C3: tps((T1, 2), (T2, 3), (T1, 0), (T2, 1)), C4: tps((T2, 2), (T1, 1), (T2, 0))}


def test_sticky_same_generation_double_claim_is_unowned():
    # Both claim topic1-0 in generation 3: neither keeps it on the strength of
    # the claim, and the cooperative assignor withholds it this round.
    subs = {C1: sub([T1], tps((T1, 0), (T1, 1)), 3), C2: sub([T1], tps((T1, 0)), 3)}
    got = assign("sticky", {T1: 2}, subs)
    assert got[C1] == tps((T1, 1)) and got[C2] == tps((T1, 0))
    assert assign("cooperative-sticky", {T1: 2}, subs) == {C1: tps((T1, 1)), C2: []}
    # a higher generation wins the claim
    subs[C2] = sub([T1], tps((T1, 0)), 4)
    assert assign("sticky", {T1: 2}, subs) == {C1: tps((T1, 1)), C2: tps((T1, 0))}


def test_sticky_general_case_keeps_owned_and_balances():
    # Differing subscriptions take the general path: C1 alone on topic2.
    counts = {T1: 4, T2: 2}
    subs = {C1: sub([T1, T2], tps((T1, 0), (T1, 1), (T1, 2), (T1, 3)), 1), C2: sub([T1], (), 1)}
    # Java's walk: topic2 (one subscriber) goes to C1, then topic1's
    # partitions move from the fullest member, in order, until balanced.
    got = assign("sticky", counts, subs)
    assert got == {C1: tps((T1, 3), (T2, 0), (T2, 1)), C2: tps((T1, 0), (T1, 1), (T1, 2))}
    # everything C2 gets was C1's, so it waits for C1 to revoke it
    assert assign("cooperative-sticky", counts, subs) == {C1: got[C1], C2: []}


def test_sticky_user_data_carries_previous_assignment():
    # An eager member sends no owned partitions (it revoked them) but its
    # StickyAssignorUserData names them; the leader keeps them in place.
    a = get_assignor("sticky")
    prev = {C1: tps((T1, 1), (T1, 3)), C2: tps((T1, 0), (T1, 2))}
    subs = {m: a.subscription_metadata([T1], prev[m], 7) for m in prev}
    revoked = {m: decode_subscription(b) for m, b in subs.items()}
    revoked = {m: s._replace(owned_partitions=[]) for m, s in revoked.items()}
    assert a.assign_partitions({T1: 4}, revoked) == prev
    assert decode_subscription(a.subscription_metadata([T1], [], -1)).user_data is None


# --- hypothesis: validity, balance, stickiness, cooperative ----------------------------

TOPICS = ["a", "b", "c", "d"]
MEMBER_IDS = [f"m{i}-{c}" for i, c in enumerate("qwertyui")]


@st.composite
def groups(draw, equal_subscriptions=False):
    counts = {t: draw(st.integers(0, 7)) for t in draw(
        st.lists(st.sampled_from(TOPICS), min_size=1, max_size=4, unique=True))}
    members = draw(st.lists(st.sampled_from(MEMBER_IDS), min_size=1, max_size=6, unique=True))
    topics = sorted(counts) + ["missing"]
    if equal_subscriptions:
        common = draw(st.lists(st.sampled_from(topics), min_size=1, unique=True))
        subs = {m: sub(common) for m in members}
    else:
        subs = {m: sub(draw(st.lists(st.sampled_from(topics), min_size=1, unique=True)))
                for m in members}
    return counts, subs


def expected_partitions(counts, subs):
    return {TP(t, p) for s in subs.values() for t in s.topics for p in range(counts.get(t, 0))}


def check_valid(counts, subs, result, complete=True):
    assert set(result) == set(subs)
    seen = {}
    for m, parts in result.items():
        assert parts == sorted(parts)
        for tp in parts:
            assert tp.topic in subs[m].topics, f"{tp} given to {m}, not subscribed"
            assert tp not in seen, f"{tp} given to {seen[tp]} and {m}"
            seen[tp] = m
    assert set(seen) <= expected_partitions(counts, subs)
    if complete:
        assert set(seen) == expected_partitions(counts, subs)


def check_no_better_move(counts, subs, result):
    """Java's verifyValidityAndBalance: no member could take a partition from
    a member holding two or more partitions more than it."""
    owner = {tp: m for m, parts in result.items() for tp in parts}
    for m, parts in result.items():
        for t in subs[m].topics:
            for p in range(counts.get(t, 0)):
                other = owner[TP(t, p)]
                assert len(result[other]) <= len(parts) + 1, (m, other, result)


def spread(result):
    sizes = [len(v) for v in result.values()]
    return max(sizes) - min(sizes)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(groups(), st.sampled_from(ASSIGNOR_NAMES))
def test_every_partition_assigned_once_to_a_subscriber(group, name):
    counts, subs = group
    result = assign(name, counts, subs)
    check_valid(counts, subs, result)


@SETTINGS
@given(groups(equal_subscriptions=True), st.sampled_from(["roundrobin", "sticky", "cooperative-sticky"]))
def test_equal_subscriptions_are_balanced(group, name):
    counts, subs = group
    assert spread(assign(name, counts, subs)) <= 1


@SETTINGS
@given(groups(), st.data())
def test_sticky_keeps_owned_partitions_and_balances(group, data):
    counts, subs = group
    a = get_assignor("sticky")
    first = a.assign_partitions(counts, subs)
    # Some members leave, and the rest rejoin owning what they had.
    stay = data.draw(st.lists(st.sampled_from(sorted(subs)), min_size=1, unique=True))
    again = {m: subs[m]._replace(owned_partitions=first[m], generation=1) for m in stay}
    second = a.assign_partitions(counts, again)
    check_valid(counts, again, second)
    check_no_better_move(counts, again, second)


@SETTINGS
@given(groups(equal_subscriptions=True), st.data())
def test_sticky_member_leaving_moves_only_its_partitions(group, data):
    counts, subs = group
    if len(subs) < 2:
        return
    a = get_assignor("sticky")
    first = a.assign_partitions(counts, subs)
    leaver = data.draw(st.sampled_from(sorted(subs)))
    again = {m: s._replace(owned_partitions=first[m], generation=1)
             for m, s in subs.items() if m != leaver}
    second = a.assign_partitions(counts, again)
    check_valid(counts, again, second)
    for m in again:
        assert set(first[m]) <= set(second[m]), (m, first, second)
    assert spread(second) <= 1


@SETTINGS
@given(groups(equal_subscriptions=True), st.sampled_from(MEMBER_IDS))
def test_sticky_member_joining_takes_only_surplus(group, joiner):
    counts, subs = group
    if joiner in subs:
        return
    a = get_assignor("sticky")
    first = a.assign_partitions(counts, subs)
    common = next(iter(subs.values())).topics
    again = {m: s._replace(owned_partitions=first[m], generation=1) for m, s in subs.items()}
    again[joiner] = sub(common, (), -1)
    second = a.assign_partitions(counts, again)
    check_valid(counts, again, second)
    min_quota = len(expected_partitions(counts, again)) // len(again)
    for m in subs:
        kept = set(first[m]) & set(second[m])
        assert len(kept) >= min(len(first[m]), min_quota)


@SETTINGS
@given(groups(), st.data())
def test_cooperative_never_hands_over_in_the_same_round(group, data):
    counts, subs = group
    coop = get_assignor("cooperative-sticky")
    # A valid previous ownership: a range assignment, some members left out
    # (they are new), some partitions already revoked.
    before = get_assignor("range").assign_partitions(counts, subs)
    owned = {m: [tp for tp in parts if data.draw(st.booleans())] for m, parts in before.items()}
    joined = data.draw(st.lists(st.sampled_from(sorted(subs)), min_size=1, unique=True))
    round1_subs = {m: subs[m]._replace(owned_partitions=owned[m], generation=4) for m in joined}
    round1 = coop.assign_partitions(counts, round1_subs)
    check_valid(counts, round1_subs, round1, complete=False)
    owner = {tp: m for m in joined for tp in owned[m]}
    for m, parts in round1.items():
        for tp in parts:
            assert owner.get(tp, m) == m, f"{tp} handed from {owner.get(tp)} to {m} in one round"
    target = get_assignor("sticky").assign_partitions(counts, round1_subs)
    for tp in expected_partitions(counts, round1_subs) - {tp for p in round1.values() for tp in p}:
        assert tp in owner and target[owner[tp]].count(tp) == 0, f"{tp} withheld without a move"
    # Round 2: owners have revoked what they lost; now everything is handed out.
    round2_subs = {m: s._replace(owned_partitions=round1[m], generation=5)
                   for m, s in round1_subs.items()}
    round2 = coop.assign_partitions(counts, round2_subs)
    check_valid(counts, round2_subs, round2)
    for m in round1:
        assert set(round1[m]) <= set(round2[m])


# --- bytes ---------------------------------------------------------------------------

@SETTINGS
@given(st.lists(st.text(min_size=1, max_size=8), max_size=4),
       st.lists(st.tuples(st.sampled_from(TOPICS), st.integers(0, 2**31 - 1)), max_size=6),
       st.integers(-1, 2**31 - 1), st.none() | st.binary(max_size=16),
       st.none() | st.text(max_size=5), st.integers(0, 3))
def test_subscription_round_trip(topics, owned, generation, user_data, rack_id, version):
    owned = [TP(t, p) for t, p in owned]
    data = encode_subscription(topics, owned, generation, user_data,
                               rack_id if version >= 3 else None, version)
    s = decode_subscription(data)
    assert s.topics == sorted(set(topics))
    assert s.user_data == user_data
    assert s.owned_partitions == (sorted(set(owned)) if version >= 1 else [])
    assert s.generation == (generation if version >= 2 else -1)
    assert s.rack_id == (rack_id if version >= 3 else None)


def test_subscription_metadata_per_assignor():
    owned = tps((T1, 2), (T1, 0))
    subs = {n: decode_subscription(get_assignor(n).subscription_metadata([T2, T1], owned, 9))
            for n in ASSIGNOR_NAMES}
    for n, s in subs.items():
        assert s == Subscription([T1, T2], owned, -1, s.user_data, None), n
    assert subs["range"].user_data is None and subs["roundrobin"].user_data is None
    assert subs["cooperative-sticky"].user_data == struct.pack(">i", 9)
    # StickyAssignorUserData v1: [topic, [partition]], generation
    assert subs["sticky"].user_data == (struct.pack(">ih", 1, 6) + T1.encode()
                                        + struct.pack(">iiii", 2, 0, 2, 9))
    data = get_assignor("range").subscription_metadata([T1], [], rack_id="r1")
    assert struct.unpack_from(">h", data)[0] == 3 and decode_subscription(data).rack_id == "r1"


def test_assignment_round_trip_and_versions():
    parts = tps((T2, 1), (T1, 3), (T1, 0))
    data = encode_assignment(parts)
    assert struct.unpack_from(">h", data)[0] == 3
    assert decode_assignment(data) == parts
    for v in range(4):
        assert decode_assignment(encode_assignment(parts, version=v)) == parts
    # a future version is read as its known prefix, trailing fields ignored
    future = struct.pack(">h", 7) + encode_assignment(parts, b"ud")[2:] + b"\x00\x01extra"
    assert decode_assignment(future) == parts
    assert decode_assignment(b"") == [] and decode_assignment(None) == []
    out = get_assignor("roundrobin").assign({T1: 2}, {
        C1: get_assignor("roundrobin").subscription_metadata([T1], []),
        C2: get_assignor("roundrobin").subscription_metadata([T1], [])})
    assert {m: decode_assignment(b) for m, b in out.items()} == {C1: tps((T1, 0)), C2: tps((T1, 1))}


def test_future_subscription_version_is_read_as_prefix():
    data = encode_subscription([T1], tps((T1, 0)), 5, None, "rack", 3)
    future = struct.pack(">h", 4) + data[2:] + b"\x00\x00\x00\x2a"
    s = decode_subscription(future)
    assert (s.topics, s.owned_partitions, s.generation, s.rack_id) == ([T1], tps((T1, 0)), 5, "rack")


def test_librdkafka_golden_subscription():
    # Captured from librdkafka 2.16 (confluent-kafka 2.16.1), any of range,
    # roundrobin, cooperative-sticky, first join: v3, empty (not null)
    # user_data, generation -1, empty rack id.
    data = bytes.fromhex("0003000000010001780000000000000000ffffffff0000")
    assert decode_subscription(data) == Subscription(["x"], [], -1, b"", "")
    # an empty user_data is "no generation" for cooperative-sticky, as in Java
    assert get_assignor("cooperative-sticky").assign_partitions(
        {"x": 2}, {C1: decode_subscription(data)}) == {C1: tps(("x", 0), ("x", 1))}


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xff\x00\x00\x00\x00\xff\xff",
                                  b"\x00\x00\x00\x00\x00\x05ab", b"\x00\x01\x00\x00\x00\x01"])
def test_bad_subscription_bytes_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        decode_subscription(data)


# --- bytes real clients send ---------------------------------------------------------

GROUP_CONFIG = {**FAST_GROUP_CONFIG, "num.partitions": "1"}
REAL_TOPIC_PARTITIONS = {"asg-a": 3, "asg-b": 2}


@pytest.fixture(scope="module")
def broker():
    from pylog.client import Client
    from pylog.testing import running_broker
    with running_broker(config=GROUP_CONFIG) as b:
        with Client(b) as c:
            for t, n in REAL_TOPIC_PARTITIONS.items():
                c.create_topics(t, n, 1)
        yield b


def _stable_group(broker, group, count, timeout=20.0):
    from pylog.client import Client
    deadline = time.monotonic() + timeout
    with Client(broker) as c:
        while True:
            g = c.describe_group(group)
            if (g.state == "Stable" and len(g.members) == count
                    and all(m.assignment for m in g.members)):
                return g
            assert time.monotonic() < deadline, f"group never settled: {g}"
            time.sleep(0.05)


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_librdkafka_subscription_bytes(broker, strategy, tmp_path):
    """Two librdkafka consumers with `strategy` join one group on a pylog
    broker; their JoinGroup metadata (read back with DescribeGroups) decodes
    to their subscription, and for the deterministic assignors our assignor
    computes from that metadata exactly what librdkafka's leader did.

    The members run in a child process (tests/client/rdkafka_members.py says
    why: a librdkafka close() that can hang holding the GIL)."""
    group = f"asg-{strategy}-{uuid.uuid4().hex[:8]}"
    topics = sorted(REAL_TOPIC_PARTITIONS)
    conf = {"bootstrap.servers": str(broker), "group.id": group,
            "partition.assignment.strategy": strategy,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
            "enable.auto.commit": False, "members": 2, "topics": topics}
    errors = tmp_path / "members.err"
    with open(errors, "w") as err:
        members = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("rdkafka_members.py")), json.dumps(conf)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert members.poll() is None, f"the members exited: {errors.read_text()[-2000:]}"
            g = _stable_group(broker, group, 2, timeout=max(0.1, deadline - time.monotonic()))
            if strategy != "cooperative-sticky" or sum(
                    len(decode_assignment(m.assignment)) for m in g.members) == 5:
                break
            time.sleep(0.05)
        assert g.protocol == strategy
        subs = {m.member_id: decode_subscription(m.metadata) for m in g.members}
        for s in subs.values():
            assert sorted(s.topics) == topics
        real = {m.member_id: sorted(decode_assignment(m.assignment)) for m in g.members}
        check_valid(REAL_TOPIC_PARTITIONS, subs, real)
        if strategy != "cooperative-sticky":
            assert get_assignor(strategy).assign_partitions(REAL_TOPIC_PARTITIONS, subs) == real
        else:
            assert spread(real) <= 1
            # once settled, members report what they own, and our leader agrees
            ours = get_assignor(strategy).assign_partitions(REAL_TOPIC_PARTITIONS, subs)
            check_valid(REAL_TOPIC_PARTITIONS, subs, ours)
    finally:
        members.stdin.close()  # end of file: the members leave and close
        try:
            members.wait(20)
        except subprocess.TimeoutExpired:
            members.kill()
            members.wait()


def test_kafka_python_subscription_bytes(broker):
    """kafka-python sends v0 metadata (no owned partitions); it decodes."""
    from kafka import KafkaConsumer
    group = f"asg-kp-{uuid.uuid4().hex[:8]}"
    c = KafkaConsumer(*REAL_TOPIC_PARTITIONS, bootstrap_servers=broker, group_id=group,
                      session_timeout_ms=6000, heartbeat_interval_ms=300,
                      enable_auto_commit=False, consumer_timeout_ms=100)
    try:
        deadline = time.monotonic() + 20
        while not c.assignment():
            c.poll(timeout_ms=50)
            assert time.monotonic() < deadline, "kafka-python never got an assignment"
        g = _stable_group(broker, group, 1)
        (m,) = g.members
        s = decode_subscription(m.metadata)
        assert sorted(s.topics) == sorted(REAL_TOPIC_PARTITIONS)
        assert set(decode_assignment(m.assignment)) == {
            TP(tp.topic, tp.partition) for tp in c.assignment()}
    finally:
        c.close()
