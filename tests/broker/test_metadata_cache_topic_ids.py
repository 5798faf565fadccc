"""The MetadataCache and topic ids (KIP-516): UpdateMetadata v7's ids are
kept and looked up both ways, and a topic deleted and re-created while this
broker missed the deletion (a new id, its epochs starting again at 0) replaces
the old topic's partition states instead of being outranked by their higher
leader epochs. Real UpdateMetadata requests, encoded and decoded at v7 as the
controller sends them."""
from __future__ import annotations

import uuid

from pylog.broker.metadata_cache import MetadataCache
from pylog.protocol import messages as m
from pylog.protocol.framing import decode_request, encode_request

U = m.UpdateMetadataRequest


def update(topic, topic_id, partitions, epoch=1):
    """partitions: {index: (leader, leader_epoch)}; one live broker, 1."""
    req = U(controller_id=1, controller_epoch=epoch, broker_epoch=0, live_brokers=[
        U.UpdateMetadataBroker(id=1, endpoints=[U.UpdateMetadataEndpoint(
            port=9092, host="h", listener="PLAINTEXT", security_protocol=0)])],
        topic_states=[U.UpdateMetadataTopicState(topic_name=topic, topic_id=topic_id, partition_states=[
            U.UpdateMetadataPartitionState(topic_name=topic, partition_index=i, controller_epoch=epoch, leader=leader,
                                           leader_epoch=le, isr=[1], zk_version=0, replicas=[1],
                                           offline_replicas=[])
            for i, (leader, le) in partitions.items()])])
    return decode_request(encode_request(1, 6, 7, req, "controller")[4:])[1]


def test_ids_are_kept_and_looked_up_both_ways():
    cache = MetadataCache()
    first = uuid.uuid4()
    cache.update(update("t", first, {0: (1, 0)}))
    assert cache.topic_id("t") == first and cache.topic_name(first) == "t"
    assert cache.topic_name(uuid.uuid4()) is None


def test_a_recreated_topic_replaces_the_old_states_even_without_the_deletion():
    cache = MetadataCache()
    first, second = uuid.uuid4(), uuid.uuid4()
    cache.update(update("t", first, {0: (1, 7), 1: (1, 7), 2: (1, 7)}))
    # Re-created with 2 partitions: epochs back at 0, a new id.
    cache.update(update("t", second, {0: (1, 0), 1: (1, 0)}))
    assert cache.topic_id("t") == second
    assert sorted(cache.topics["t"]) == [0, 1]
    assert [cache.partition("t", i).leader_epoch for i in (0, 1)] == [0, 0]
    assert cache.topic_name(first) is None and cache.topic_name(second) == "t"
    # The same topic again (same id): an older epoch is still ignored.
    cache.update(update("t", second, {0: (1, 3)}))
    cache.update(update("t", second, {0: (1, 2)}))
    assert cache.partition("t", 0).leader_epoch == 3
