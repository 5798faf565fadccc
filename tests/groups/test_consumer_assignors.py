"""The KIP-848 server-side assignors: balance, stickiness, subscriptions, and Kafka's exact layouts."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylog.groups.consumer_assignors import (
    ASSIGNOR_NAMES,
    MemberSubscription,
    UnknownAssignorError,
    assign,
    compile_regex,
)

T1 = uuid.UUID("00000000-0000-0001-0000-000000000000")
T2 = uuid.UUID("00000000-0000-0002-0000-000000000000")
T3 = uuid.UUID("00000000-0000-0003-0000-000000000000")
# The high bit set: a negative most-significant long, which Kafka's Uuid.compareTo puts first.
T_NEG = uuid.UUID("80000000-0000-0000-0000-000000000000")


def member(topics, assignment=None, instance_id=None, rack_id=None):
    return MemberSubscription(
        rack_id=rack_id,
        instance_id=instance_id,
        subscribed_topic_ids=frozenset(topics),
        assignment={t: frozenset(ps) for t, ps in (assignment or {}).items()},
    )


def rejoin(result, subscriptions, instance_ids=None):
    """The next run's input: each member's current assignment is the previous run's output."""
    instance_ids = instance_ids or {}
    return {
        m: member(topics, result.get(m, {}), instance_id=instance_ids.get(m))
        for m, topics in subscriptions.items()
    }


def sizes(result):
    return {m: sum(len(ps) for ps in a.values()) for m, a in result.items()}


def owned(result):
    return {(t, p): m for m, a in result.items() for t, ps in a.items() for p in ps}


def check_valid(result, members, partitions):
    """Every existing subscribed partition goes to exactly one member subscribed to its topic."""
    seen = {}
    for member_id, assignment in result.items():
        for topic_id, ps in assignment.items():
            assert ps, "empty partition sets are left out"
            assert topic_id in members[member_id].subscribed_topic_ids
            for p in ps:
                assert 0 <= p < partitions[topic_id]
                assert (topic_id, p) not in seen, f"{topic_id}-{p} assigned twice"
                seen[(topic_id, p)] = member_id
    subscribed = {t for m in members.values() for t in m.subscribed_topic_ids if t in partitions}
    expected = {(t, p) for t in subscribed for p in range(partitions[t])}
    assert set(seen) == expected
    assert set(result) == set(members)


def moved(before, after):
    old, new = owned(before), owned(after)
    return {tp for tp in old.keys() & new.keys() if old[tp] != new[tp]}


# -- the interface ---------------------------------------------------------------------------------


def test_names_and_unknown_assignor():
    assert ASSIGNOR_NAMES == ("uniform", "range")
    with pytest.raises(UnknownAssignorError):
        assign("sticky", {"a": member([T1])}, {T1: 1})
    with pytest.raises(KeyError):
        assign("org.apache.kafka.coordinator.group.assignor.UniformAssignor", {}, {})


@pytest.mark.parametrize("name", ASSIGNOR_NAMES)
def test_no_members_and_no_subscriptions(name):
    assert assign(name, {}, {T1: 3}) == {}
    members = {"a": member([]), "b": member([])}
    assert assign(name, members, {T1: 3}) == {"a": {}, "b": {}}


# -- uniform, homogeneous -------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_uniform_members_over_six_partitions(count):
    members = {f"m{i}": member([T1]) for i in range(count)}
    result = assign("uniform", members, {T1: 6})
    check_valid(result, members, {T1: 6})
    counts = sorted(sizes(result).values())
    assert counts[-1] - counts[0] <= 1
    assert sum(counts) == 6
    if count == 7:
        assert counts == [0, 1, 1, 1, 1, 1, 1]


def test_uniform_fresh_group_layout_is_kafkas():
    # Members in id order take the unassigned partitions in topic-then-partition order. When no
    # member already holds more than the minimum, the extra partitions (P % M) go to the last
    # members, which cannot leave them to anyone after them.
    members = {m: member([T1, T2]) for m in ("a", "b", "c")}
    result = assign("uniform", members, {T1: 4, T2: 3})
    assert result == {
        "a": {T1: frozenset({0, 1})},
        "b": {T1: frozenset({2, 3})},
        "c": {T2: frozenset({0, 1, 2})},
    }


def test_uniform_ten_members_sixty_partitions_over_three_topics():
    parts = {T1: 20, T2: 25, T3: 15}
    members = {f"member-{i:02d}": member(parts) for i in range(10)}
    result = assign("uniform", members, parts)
    check_valid(result, members, parts)
    assert set(sizes(result).values()) == {6}


def test_uniform_join_moves_only_what_it_must():
    parts = {T1: 30, T2: 30}
    subs = {f"m{i}": [T1, T2] for i in range(3)}
    first = assign("uniform", rejoin({}, subs), parts)
    assert set(sizes(first).values()) == {20}

    subs["m3"] = [T1, T2]
    second = assign("uniform", rejoin(first, subs), parts)
    check_valid(second, rejoin(first, subs), parts)
    assert set(sizes(second).values()) == {15}
    # The newcomer's 15 come from the others; nothing moves between the old members.
    assert len(moved(first, second)) == 15
    for m in ("m0", "m1", "m2"):
        for t, ps in second[m].items():
            assert ps <= first[m].get(t, frozenset())


def test_uniform_leave_moves_only_the_leavers_partitions():
    parts = {T1: 60}
    subs = {f"m{i}": [T1] for i in range(10)}
    first = assign("uniform", rejoin({}, subs), parts)
    del subs["m4"]
    second = assign("uniform", rejoin(first, subs), parts)
    check_valid(second, rejoin(first, subs), parts)
    assert sorted(sizes(second).values()) == [6, 6, 6, 7, 7, 7, 7, 7, 7]
    for m in subs:
        assert first[m][T1] <= second[m][T1], f"{m} lost a partition it could keep"
    assert {owned(first)[tp] for tp in moved(first, second)} == {"m4"}


def test_uniform_stable_input_is_a_fixed_point():
    parts = {T1: 7, T2: 5}
    subs = {f"m{i}": [T1, T2] for i in range(4)}
    first = assign("uniform", rejoin({}, subs), parts)
    assert assign("uniform", rejoin(first, subs), parts) == first


def test_uniform_extra_partition_goes_where_it_stays():
    # 7 partitions, 3 members: one member gets 3. The member already holding 3 keeps them rather
    # than an earlier member in id order taking the extra one.
    current = {"a": {T1: {0, 1}}, "b": {T1: {2, 3}}, "c": {T1: {4, 5, 6}}}
    members = {m: member([T1], a) for m, a in current.items()}
    result = assign("uniform", members, {T1: 7})
    assert result == {m: {T1: frozenset(a[T1])} for m, a in current.items()}


def test_uniform_topic_deleted():
    parts = {T1: 6, T2: 6}
    subs = {m: [T1, T2] for m in ("a", "b", "c")}
    first = assign("uniform", rejoin({}, subs), parts)
    # T2 is gone from the metadata though still named in the subscriptions.
    second = assign("uniform", rejoin(first, subs), {T1: 6})
    check_valid(second, rejoin(first, subs), {T1: 6})
    assert all(set(a) <= {T1} for a in second.values())
    assert set(sizes(second).values()) == {2}


def test_uniform_unsubscribed_topic_is_revoked():
    first = {"a": {T1: {0, 1}, T2: {0}}, "b": {T1: {2}, T2: {1}}}
    members = {m: member([T1], a) for m, a in first.items()}
    result = assign("uniform", members, {T1: 3, T2: 2})
    check_valid(result, members, {T1: 3, T2: 2})
    assert result == {"a": {T1: frozenset({0, 1})}, "b": {T1: frozenset({2})}}


def test_uniform_partitions_beyond_the_topic_and_double_owners_are_dropped():
    members = {
        "a": member([T1], {T1: {0, 9}}),
        "b": member([T1], {T1: {0, 1}}),
    }
    result = assign("uniform", members, {T1: 4})
    check_valid(result, members, {T1: 4})
    assert 0 in result["a"][T1] and 1 in result["b"][T1]


def test_uniform_topic_order_is_javas_hash_order():
    members = {"a": member([T1, T_NEG]), "b": member([T1, T_NEG])}
    result = assign("uniform", members, {T1: 1, T_NEG: 1})
    # T_NEG's hash falls in bucket 0, T1's in bucket 1: the first member takes T_NEG.
    assert result == {"a": {T_NEG: frozenset({0})}, "b": {T1: frozenset({0})}}


# -- uniform, heterogeneous -----------------------------------------------------------------------


def test_uniform_heterogeneous_balances_per_topic():
    parts = {T1: 6, T2: 6, T3: 4}
    members = {
        "a": member([T1, T2, T3]),
        "b": member([T1, T2]),
        "c": member([T1]),
        "d": member([T3]),
    }
    result = assign("uniform", members, parts)
    check_valid(result, members, parts)
    total = sizes(result)
    assert sum(total.values()) == 16
    assert max(total.values()) - min(total.values()) <= 1


def test_uniform_heterogeneous_member_without_subscription():
    parts = {T1: 4, T2: 2}
    members = {"a": member([T1]), "b": member([T1, T2]), "idle": member([])}
    result = assign("uniform", members, parts)
    check_valid(result, members, parts)
    assert result["idle"] == {}
    assert sizes(result) == {"a": 3, "b": 3, "idle": 0}


def test_uniform_heterogeneous_is_sticky_across_a_join():
    parts = {T1: 12, T2: 8}
    subs = {"a": [T1], "b": [T1, T2], "c": [T2]}
    first = assign("uniform", rejoin({}, subs), parts)
    subs["d"] = [T1, T2]
    second = assign("uniform", rejoin(first, subs), parts)
    check_valid(second, rejoin(first, subs), parts)
    total = sizes(second)
    assert max(total.values()) - min(total.values()) <= 1
    # The newcomer's partitions move, and Kafka's per-topic balancing may shift one more per topic
    # between the old members (here c, the heaviest, gives one of T2 to b, who gave up three of T1).
    assert len(moved(first, second)) <= sizes(second)["d"] + len(parts)
    for m in ("a", "b", "c"):
        kept = sum(len(ps & first[m].get(t, frozenset())) for t, ps in second[m].items())
        assert kept >= sizes(second)[m] - 1
    assert assign("uniform", rejoin(second, subs), parts) == second


def test_uniform_heterogeneous_subscription_change_keeps_the_rest():
    parts = {T1: 6, T2: 6}
    subs = {"a": [T1, T2], "b": [T1, T2]}
    first = assign("uniform", rejoin({}, subs), parts)
    subs["b"] = [T1]
    second = assign("uniform", rejoin(first, subs), parts)
    check_valid(second, rejoin(first, subs), parts)
    assert second["a"][T2] == frozenset(range(6))
    assert T2 not in second["b"]
    # What b kept of T1 it still has, unless balance needs it elsewhere: 12 partitions, a holds
    # all of T2, so b holds all of T1.
    assert second["b"][T1] == frozenset(range(6))


# -- range --------------------------------------------------------------------------------------


def test_range_co_partitions_topics():
    members = {m: member([T1, T2]) for m in ("m0", "m1")}
    result = assign("range", members, {T1: 3, T2: 3})
    assert result == {
        "m0": {T1: frozenset({0, 1}), T2: frozenset({0, 1})},
        "m1": {T1: frozenset({2}), T2: frozenset({2})},
    }


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_range_members_over_six_partitions(count):
    members = {f"m{i}": member([T1]) for i in range(count)}
    result = assign("range", members, {T1: 6})
    check_valid(result, members, {T1: 6})
    ranges = [sorted(result[f"m{i}"].get(T1, ())) for i in range(count)]
    flat = [p for r in ranges for p in r]
    assert flat == list(range(6)), "contiguous ranges in member order"
    assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_range_static_members_first_by_instance_id():
    members = {
        "aaa": member([T1]),
        "zzz": member([T1], instance_id="i-2"),
        "mmm": member([T1], instance_id="i-1"),
    }
    result = assign("range", members, {T1: 3})
    assert result == {
        "mmm": {T1: frozenset({0})},
        "zzz": {T1: frozenset({1})},
        "aaa": {T1: frozenset({2})},
    }


def test_range_static_member_keeps_its_range_under_a_new_member_id():
    parts = {T1: 6, T2: 6}
    first = assign("range", {"x1": member(parts, instance_id="i-0"), "y1": member(parts, instance_id="i-1")}, parts)
    # i-0 restarts with a new member id that sorts after y1: the instance id keeps its place.
    second = assign("range", {"z9": member(parts, instance_id="i-0"), "y1": member(parts, instance_id="i-1")}, parts)
    assert second["z9"] == first["x1"] and second["y1"] == first["y1"]


def test_range_heterogeneous():
    parts = {T1: 4, T2: 3}
    members = {"a": member([T1, T2]), "b": member([T1]), "c": member([T2]), "idle": member([])}
    result = assign("range", members, parts)
    check_valid(result, members, parts)
    assert result == {
        "a": {T1: frozenset({0, 1}), T2: frozenset({0, 1})},
        "b": {T1: frozenset({2, 3})},
        "c": {T2: frozenset({2})},
        "idle": {},
    }


def test_range_ten_members_sixty_partitions():
    parts = {T1: 60}
    members = {f"m{i:02d}": member([T1]) for i in range(10)}
    result = assign("range", members, parts)
    assert result == {f"m{i:02d}": {T1: frozenset(range(6 * i, 6 * i + 6))} for i in range(10)}


def test_range_topic_deleted():
    members = {m: member([T1, T2]) for m in ("a", "b")}
    result = assign("range", members, {T2: 4})
    assert result == {"a": {T2: frozenset({0, 1})}, "b": {T2: frozenset({2, 3})}}


# -- properties ---------------------------------------------------------------------------------

TOPICS = [T1, T2, T3, T_NEG]


@st.composite
def groups(draw):
    partitions = {t: draw(st.integers(0, 12)) for t in TOPICS if draw(st.booleans())}
    names = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=8, unique=True))
    homogeneous = draw(st.booleans())
    common = draw(st.sets(st.sampled_from(TOPICS)))
    members = {}
    for name in names:
        topics = common if homogeneous else draw(st.sets(st.sampled_from(TOPICS)))
        current = {
            t: draw(st.sets(st.integers(0, 14), max_size=5)) for t in draw(st.sets(st.sampled_from(TOPICS)))
        }
        instance = draw(st.one_of(st.none(), st.text("xyz", min_size=1, max_size=2)))
        members[name] = member(topics, current, instance_id=instance)
    return members, partitions


@settings(max_examples=300, deadline=None)
@given(groups(), st.sampled_from(ASSIGNOR_NAMES))
def test_property_valid_deterministic_and_balanced(group, name):
    members, partitions = group
    result = assign(name, members, partitions)
    check_valid(result, members, {t: partitions.get(t, 0) for t in TOPICS})
    assert assign(name, dict(reversed(list(members.items()))), dict(partitions)) == result
    subscriptions = {frozenset(t for t in m.subscribed_topic_ids if partitions.get(t)) for m in members.values()}
    if name == "uniform" and len(subscriptions) == 1:
        counts = sizes(result).values()
        assert max(counts) - min(counts) <= 1


@settings(max_examples=200, deadline=None)
@given(groups())
def test_property_uniform_second_run_is_a_fixed_point(group):
    members, partitions = group
    first = assign("uniform", members, partitions)
    again = {m: member(s.subscribed_topic_ids, first[m], s.instance_id) for m, s in members.items()}
    assert assign("uniform", again, partitions) == first


@settings(max_examples=200, deadline=None)
@given(groups(), st.data())
def test_property_uniform_homogeneous_join_keeps_quota(group, data):
    """After a join, each old member keeps min(what it had, its new quota) partitions."""
    members, partitions = group
    topics = frozenset(TOPICS[: data.draw(st.integers(1, len(TOPICS)))])
    members = {m: member(topics, instance_id=s.instance_id) for m, s in members.items()}
    first = assign("uniform", members, partitions)
    joined = {m: member(topics, first[m]) for m in members} | {"~new": member(topics)}
    second = assign("uniform", joined, partitions)
    total = sum(partitions.get(t, 0) for t in topics)
    floor = total // len(joined)
    for m in members:
        kept = sum(len(first[m].get(t, frozenset()) & ps) for t, ps in second[m].items())
        assert kept >= min(sizes(first)[m], floor)


# -- regex -------------------------------------------------------------------------------------


def test_compile_regex_is_re2_and_matches_whole_names():
    pattern = compile_regex("orders-.*")
    assert pattern.fullmatch("orders-eu")
    assert not pattern.fullmatch("old-orders-eu")
    assert compile_regex("a|b").fullmatch("b")
    assert compile_regex(r"\Qa.b\E").fullmatch("a.b")


@pytest.mark.parametrize("bad", ["(unclosed", "[z-a]", "(?<=look)behind", r"back(ref)\1", "*"])
def test_compile_regex_refuses_what_re2_refuses(bad):
    with pytest.raises(ValueError):
        compile_regex(bad)


@settings(max_examples=200, deadline=None)
@given(groups())
def test_property_range_cuts_each_topic_into_contiguous_balanced_ranges(group):
    members, partitions = group
    result = assign("range", members, partitions)
    for topic, count in partitions.items():
        subscribers = [m for m, s in members.items() if topic in s.subscribed_topic_ids]
        if not count or not subscribers:
            continue
        sizes_ = [len(result[m].get(topic, ())) for m in subscribers]
        assert max(sizes_) - min(sizes_) <= 1
        for m in subscribers:
            ps = sorted(result[m].get(topic, ()))
            assert ps == list(range(ps[0], ps[0] + len(ps))) if ps else True


# -- Kafka's own expected layouts (UniformHeterogeneousAssignmentBuilderTest, members in id order) --


def kafka_uuid(text: str) -> uuid.UUID:
    """Kafka's Uuid.fromString: unpadded url-safe base64 of the 16 bytes."""
    import base64
    return uuid.UUID(bytes=base64.urlsafe_b64decode(text + "=="))


K1, K2, K3 = (kafka_uuid(t) for t in ("T1-A4s3VTwiI5CTbEp6POw", "T2-B4s3VTwiI5YHbPp6YUe", "T3-CU8fVTLCz5YMkLoDQsa"))


def layout(result):
    return {m: {t: sorted(ps) for t, ps in a.items()} for m, a in result.items()}


def test_kafka_heterogeneous_first_assignment():
    members = {"A": member([K1, K3]), "B": member([K3])}
    assert layout(assign("uniform", members, {K1: 3, K3: 6})) == {
        "A": {K1: [0, 1, 2], K3: [4]}, "B": {K3: [0, 1, 2, 3, 5]}}


def test_kafka_heterogeneous_unbalanced_previous_assignment():
    members = {
        "A": member([K1], {K1: {0, 1, 2}}),
        "B": member([K1, K2], {K1: {3}, K2: {0}}),
        "C": member([K1, K2, K3], {K1: {4, 5}, K2: {1, 2, 3}, K3: {0, 1, 2, 3}}),
    }
    assert layout(assign("uniform", members, {K1: 6, K2: 4, K3: 4})) == {
        "A": {K1: [0, 1, 2, 5]}, "B": {K1: [3], K2: [0, 1, 2, 3]}, "C": {K1: [4], K3: [0, 1, 2, 3]}}


def test_kafka_heterogeneous_member_and_partitions_added():
    members = {
        "A": member([K1], {K1: {0, 2}, K2: {0}}),
        "B": member([K1, K2], {K1: {1}, K2: {1, 2}}),
        "C": member([K1, K2]),
    }
    assert layout(assign("uniform", members, {K1: 6, K2: 7})) == {
        "A": {K1: [0, 2, 3, 4, 5]}, "B": {K1: [1], K2: [1, 2, 6]}, "C": {K2: [0, 3, 4, 5]}}


def test_kafka_heterogeneous_member_removed():
    members = {
        "A": member([K1, K3], {K1: {0, 1, 2}, K3: {0, 1}}),
        "B": member([K2], {K2: {3, 4, 5, 6}}),
    }
    assert layout(assign("uniform", members, {K1: 3, K2: 8, K3: 3})) == {
        "A": {K1: [0, 1, 2], K3: [0, 1, 2]}, "B": {K2: list(range(8))}}


# -- Kafka's expected layouts of the homogeneous builder (OptimizedUniformAssignmentBuilderTest) --


def test_kafka_homogeneous_first_assignment_two_topics():
    # Kafka walks the subscribed topics in its HashSet's order: T3 before T1 here.
    members = {"A": member([K1, K3]), "B": member([K1, K3])}
    assert layout(assign("uniform", members, {K1: 3, K3: 2})) == {"A": {K3: [0, 1]}, "B": {K1: [0, 1, 2]}}


def test_kafka_homogeneous_more_members_than_partitions():
    members = {m: member([K3]) for m in "ABC"}
    assert layout(assign("uniform", members, {K3: 2})) == {"A": {}, "B": {K3: [0]}, "C": {K3: [1]}}


def test_kafka_homogeneous_member_added():
    members = {
        "A": member([K1, K2], {K1: {0, 2}, K2: {0}}),
        "B": member([K1, K2], {K1: {1}, K2: {1, 2}}),
        "C": member([K1, K2]),
    }
    # Kafka's test hands in insertion-ordered maps (T1 walked first; it expects A: T1 0,2,
    # B: T1 1 + T2 1, C: T2 0,2). Its coordinator's maps are HashMaps, walked T2 first: the
    # same two moves, to other partitions.
    assert layout(assign("uniform", members, {K1: 3, K2: 3})) == {
        "A": {K1: [0], K2: [0]}, "B": {K2: [1, 2]}, "C": {K1: [1, 2]}}


def test_kafka_homogeneous_member_removed():
    members = {"A": member([K1, K2], {K1: {0}, K2: {0}}), "B": member([K1, K2], {K1: {1}, K2: {1}})}
    assert layout(assign("uniform", members, {K1: 3, K2: 3})) == {
        "A": {K1: [0], K2: [0, 2]}, "B": {K1: [1, 2], K2: [1]}}


def test_kafka_homogeneous_subscription_removed():
    members = {"A": member([K2], {K1: {0}, K2: {0}}), "B": member([K2], {K1: {1}, K2: {1}})}
    assert layout(assign("uniform", members, {K1: 2, K2: 2})) == {"A": {K2: [0]}, "B": {K2: [1]}}


def test_kafka_homogeneous_already_balanced_stays():
    members = {"A": member([K1], {K1: {0, 3}}), "B": member([K1, K2], {K1: {1}}),
               "C": member([K1, K2], {K1: {2, 4}})}
    assert layout(assign("uniform", members, {K1: 5})) == {"A": {K1: [0, 3]}, "B": {K1: [1]}, "C": {K1: [2, 4]}}
