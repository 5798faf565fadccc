"""The group admin APIs through confluent-kafka's AdminClient: ListGroups,
DescribeGroups, OffsetFetch (list_consumer_group_offsets) and DeleteGroups
report what the coordinator holds."""
from __future__ import annotations

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from .helpers import TIMEOUT, Pump, admin, close_all, create_topic, group_consumer, group_state, parts


def test_admin_lists_describes_and_deletes_groups(gbroker, topic, group):
    create_topic(gbroker, topic, 4)
    other = group + "-other"
    cs = [group_consumer(gbroker, group, {"client.id": f"admin-member-{i}",
                                          "partition.assignment.strategy": "roundrobin"}) for i in range(2)]
    pump = Pump(*cs)
    a = admin(gbroker)
    try:
        for c in cs:
            c.subscribe([topic])
        pump.until(lambda: all(len(parts(c)) == 2 for c in cs)
                   and gbroker.broker.groups.groups[group].state.value == "Stable",
                   "2 partitions each", describe=lambda: group_state(gbroker, group))
        res = cs[0].commit(offsets=[TopicPartition(topic, p, 10 + p) for p in parts(cs[0])], asynchronous=False)
        assert all(tp.error is None for tp in res)
        # A second, empty group with standalone commits.
        solo = group_consumer(gbroker, other)
        try:
            solo.assign([TopicPartition(topic, 0)])
            solo.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        finally:
            solo.close()

        listed = {g.group_id: g for g in a.list_consumer_groups(request_timeout=TIMEOUT).result(TIMEOUT).valid}
        assert listed[group].state == ConsumerGroupState.STABLE
        assert not listed[group].is_simple_consumer_group
        assert listed[other].state == ConsumerGroupState.EMPTY
        stable_only = a.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(TIMEOUT).valid
        assert group in {g.group_id for g in stable_only} and other not in {g.group_id for g in stable_only}

        desc = a.describe_consumer_groups([group, other], request_timeout=TIMEOUT)
        d = desc[group].result(TIMEOUT)
        g = gbroker.broker.groups.groups[group]
        assert d.state == ConsumerGroupState.STABLE
        assert d.partition_assignor == "roundrobin" == g.protocol_name
        assert not d.is_simple_consumer_group
        assert d.coordinator.id == gbroker.broker.broker_id
        assert {m.member_id for m in d.members} == set(g.members)
        assert {m.client_id for m in d.members} == {"admin-member-0", "admin-member-1"}
        for m in d.members:
            assert "127.0.0.1" in m.host, m.host
            assert m.group_instance_id is None
        by_client = {m.client_id: {tp.partition for tp in m.assignment.topic_partitions} for m in d.members}
        assert by_client == {f"admin-member-{i}": parts(c) for i, c in enumerate(cs)}
        assert all(tp.topic == topic for m in d.members for tp in m.assignment.topic_partitions)
        d_other = desc[other].result(TIMEOUT)
        assert d_other.state == ConsumerGroupState.EMPTY and d_other.members == []

        offs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(TIMEOUT)
        assert {tp.partition: tp.offset for tp in offs.topic_partitions} == {p: 10 + p for p in parts(cs[0])}
        assert all(tp.topic == topic for tp in offs.topic_partitions)

        # An active group cannot be deleted; an empty one can.
        fs = a.delete_consumer_groups([group, other], request_timeout=TIMEOUT)
        with pytest.raises(KafkaException) as ei:
            fs[group].result(TIMEOUT)
        assert ei.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
        fs[other].result(TIMEOUT)
        assert other not in gbroker.broker.groups.groups
        assert group in gbroker.broker.groups.groups
        listed = {g.group_id for g in a.list_consumer_groups().result(TIMEOUT).valid}
        assert other not in listed and group in listed
        gone = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(other, [TopicPartition(topic, 0)])])
        assert [tp.offset for tp in gone[other].result(TIMEOUT).topic_partitions] == [-1001]
    finally:
        close_all(*cs)

    # Once its members have left, the group is Empty and can go too (offsets with it).
    pump.consumers.clear()
    assert gbroker.broker.groups.groups[group].state.value == "Empty"
    d = a.describe_consumer_groups([group])[group].result(TIMEOUT)
    assert d.state == ConsumerGroupState.EMPTY and d.members == []
    a.delete_consumer_groups([group])[group].result(TIMEOUT)
    assert group not in gbroker.broker.groups.groups
    assert group not in {g.group_id for g in a.list_consumer_groups().result(TIMEOUT).valid}
    offs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])])
    assert [tp.offset for tp in offs[group].result(TIMEOUT).topic_partitions] == [-1001]
    fs = a.delete_consumer_groups([group])
    with pytest.raises(KafkaException) as ei:
        fs[group].result(TIMEOUT)
    assert ei.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
