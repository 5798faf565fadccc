"""Fetch v4-17 and KIP-227 fetch sessions, over the wire against a real broker.

Raw requests (tests/kafkawire.py) where the exact fields matter: versions,
topic ids, session ids and epochs, forgotten topics, eviction from a small
session cache, diverging epochs, the v16 current-leader hint. Records are
written by confluent-kafka.
"""
from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Producer
from kafkawire import Wire

from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.protocol import messages as m
from pylog.testing import running_broker

F = m.FetchRequest
FETCH = 1
NONE, OFFSET_OUT_OF_RANGE, NOT_LEADER_OR_FOLLOWER = 0, 1, 6
FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH = 70, 71
UNKNOWN_TOPIC_ID, FETCH_SESSION_TOPIC_ID_ERROR = 100, 106


@pytest.fixture(scope="module")
def b():
    with running_broker(config={"num.partitions": "4"}) as handle:
        yield handle


def produce(bootstrap, topic, per_partition, partitions=4):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(per_partition * partitions):
        p.produce(topic, value=b"v%d" % i, partition=i % partitions)
    assert p.flush(30) == 0


def topic_id(b, topic):
    return b.broker.log_manager.topics[topic].topic_id


def part(index, offset=0, **kw):
    return F.FetchPartition(partition=index, fetch_offset=offset, partition_max_bytes=1 << 20, **kw)


def fetch(w, version, topics, **kw):
    kw.setdefault("max_wait_ms", 0)
    kw.setdefault("min_bytes", 1)
    return w.request(FETCH, version, F(topics=topics, **kw))


def answered(resp):
    """{partition: (error, high_watermark, record bytes)} of a one-topic answer."""
    return {p.partition_index: (p.error_code, p.high_watermark, bytes(p.records or b""))
            for t in resp.responses for p in t.partitions}


def test_every_version_serves_the_same_records(b, topic):
    produce(b, topic, 5)
    tid = topic_id(b, topic)
    seen = {}
    with Wire(b) as w:
        for v in range(4, 18):
            t = F.FetchTopic(topic=topic, topic_id=tid, partitions=[part(i) for i in range(4)])
            r = fetch(w, v, [t])
            if v >= 13:
                assert [x.topic_id for x in r.responses] == [tid]
            else:
                assert [x.topic for x in r.responses] == [topic]
            got = answered(r)
            assert {i: (e, hw) for i, (e, hw, _) in got.items()} == {i: (NONE, 5) for i in range(4)}
            assert all(rec for _e, _hw, rec in got.values())
            seen[v] = got
    assert all(s == seen[4] for s in seen.values())


def test_an_unknown_topic_id_is_unknown_topic_id(b, topic):
    produce(b, topic, 1)
    stranger = uuid.uuid4()
    with Wire(b) as w:
        r = fetch(w, 13, [F.FetchTopic(topic_id=stranger, partitions=[part(0), part(1)]),
                          F.FetchTopic(topic_id=topic_id(b, topic), partitions=[part(0)])])
    assert [(t.topic_id, [(p.partition_index, p.error_code) for p in t.partitions]) for t in r.responses] == [
        (stranger, [(0, UNKNOWN_TOPIC_ID), (1, UNKNOWN_TOPIC_ID)]),
        (topic_id(b, topic), [(0, NONE)])]


@pytest.mark.parametrize("version", [7, 12, 13])
def test_an_incremental_fetch_answers_only_what_changed(b, topic, version):
    produce(b, topic, 3)
    tid = topic_id(b, topic)

    def topic_entry(parts):
        return F.FetchTopic(topic=topic, topic_id=tid, partitions=parts)
    with Wire(b) as w:
        full = fetch(w, version, [topic_entry([part(i) for i in range(4)])], session_id=0, session_epoch=0)
        sid = full.session_id
        assert full.error_code == NONE and sid > 0
        assert set(answered(full)) == {0, 1, 2, 3}
        # The fetcher moves to the end of every partition: nothing new, so
        # only the partitions whose position it sent are checked, and none
        # has news.
        r = fetch(w, version, [topic_entry([part(i, 3) for i in range(4)])], session_id=sid, session_epoch=1)
        assert (r.error_code, r.session_id, answered(r)) == (NONE, sid, {})
        # Records arrive on partition 2 only: an empty incremental request
        # gets partition 2 alone (records and its new high watermark).
        p = Producer({"bootstrap.servers": b})
        p.produce(topic, value=b"late", partition=2)
        assert p.flush(30) == 0
        r = fetch(w, version, [], session_id=sid, session_epoch=2)
        got = answered(r)
        assert list(got) == [2] and got[2][:2] == (NONE, 4) and b"late" in got[2][2]
        # The same request again is a duplicate: its epoch is spent.
        r = fetch(w, version, [], session_id=sid, session_epoch=2)
        assert (r.error_code, r.session_id, r.responses) == (INVALID_FETCH_SESSION_EPOCH, 0, [])
        r = fetch(w, version, [], session_id=sid, session_epoch=3)
        assert (r.error_code, answered(r)) == (NONE, {2: answered(r)[2]})  # still at offset 3: sent again


def test_session_errors_are_top_level(b, topic):
    produce(b, topic, 1)
    with Wire(b) as w:
        sid = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(0)])], session_epoch=0).session_id
        assert sid > 0
        for version, session_id, epoch, code in [
                (12, sid, 5, INVALID_FETCH_SESSION_EPOCH),
                (12, sid + 1, 1, FETCH_SESSION_ID_NOT_FOUND),
                (12, 0x7FFFFFFF, 1, FETCH_SESSION_ID_NOT_FOUND),
                (13, sid, 1, FETCH_SESSION_TOPIC_ID_ERROR)]:
            r = fetch(w, version, [], session_id=session_id, session_epoch=epoch)
            assert (r.error_code, r.session_id, r.responses) == (code, 0, [])
        # None of those spent the session's epoch.
        assert fetch(w, 12, [], session_id=sid, session_epoch=1).error_code == NONE


def test_forgetting_every_partition_or_a_final_epoch_closes_the_session(b, topic):
    produce(b, topic, 1)
    with Wire(b) as w:
        sid = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(0), part(1)])], session_epoch=0).session_id
        r = fetch(w, 12, [], session_id=sid, session_epoch=1,
                  forgotten_topics_data=[F.ForgottenTopic(topic=topic, partitions=[0])])
        assert r.error_code == NONE and r.session_id == sid
        r = fetch(w, 12, [], session_id=sid, session_epoch=2,
                  forgotten_topics_data=[F.ForgottenTopic(topic=topic, partitions=[1])])
        assert (r.error_code, r.session_id) == (NONE, 0)  # empty: closed, answered without a session
        assert fetch(w, 12, [], session_id=sid, session_epoch=3).error_code == FETCH_SESSION_ID_NOT_FOUND

        sid = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(0)])], session_epoch=0).session_id
        r = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(0)])], session_id=sid, session_epoch=-1)
        assert (r.error_code, r.session_id, list(answered(r))) == (NONE, 0, [0])
        assert fetch(w, 12, [], session_id=sid, session_epoch=1).error_code == FETCH_SESSION_ID_NOT_FOUND


def test_a_full_cache_refuses_consumers_and_a_follower_evicts_one():
    # 8 slots: one session in each of Kafka's 8 shards.
    with running_broker(config={"num.partitions": "1", "max.incremental.fetch.session.cache.slots": "8"}) as b:
        produce(b, "s", 1, partitions=1)
        consumer = [F.FetchTopic(topic="s", partitions=[part(0)])]
        with Wire(b) as w:
            sessions = [fetch(w, 12, consumer, session_epoch=0).session_id for _ in range(8)]
            assert all(sessions) and len(set(sessions)) == 8
            # A ninth consumer finds no room (no session is stale, none is old
            # enough to be evicted by another consumer): answered sessionless.
            r = fetch(w, 12, consumer, session_epoch=0)
            assert (r.error_code, r.session_id, list(answered(r))) == (NONE, 0, [0])
            # A follower's session is privileged: it evicts a consumer's.
            follower = fetch(w, 15, [F.FetchTopic(topic="s", partitions=[part(0)])], session_epoch=0,
                             replica_state=F.ReplicaState(replica_id=7, replica_epoch=1))
            assert follower.session_id > 0
            alive = [fetch(w, 12, [], session_id=s, session_epoch=1).error_code for s in sessions]
            assert sorted(alive) == [NONE] * 7 + [FETCH_SESSION_ID_NOT_FOUND]
    with running_broker(config={"num.partitions": "1", "max.incremental.fetch.session.cache.slots": "0"}) as b:
        produce(b, "s", 1, partitions=1)
        with Wire(b) as w:
            assert fetch(w, 12, [F.FetchTopic(topic="s", partitions=[part(0)])], session_epoch=0).session_id == 0


def test_negative_cache_slots_are_refused():
    with pytest.raises(InvalidConfigError):
        BrokerConfig({"max.incremental.fetch.session.cache.slots": "-1"})


def test_a_fetcher_past_its_epochs_end_gets_the_diverging_epoch(b, topic):
    produce(b, topic, 4)
    with Wire(b) as w:
        # Epoch 0 ends at the log end (4) here: a fetcher that says its last
        # batch had epoch 0 yet asks from offset 9 has records this log has
        # not: told to truncate to 4, with no records.
        r = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(0, 9, last_fetched_epoch=0)])])
        p = r.responses[0].partitions[0]
        assert (p.error_code, p.diverging_epoch.epoch, p.diverging_epoch.end_offset) == (NONE, 0, 4)
        assert (p.high_watermark, bytes(p.records or b"")) == (4, b"")
        # Within the epoch: records, no divergence.
        r = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(0, 2, last_fetched_epoch=0)])])
        p = r.responses[0].partitions[0]
        assert (p.error_code, p.diverging_epoch.epoch, p.diverging_epoch.end_offset) == (NONE, -1, -1)
        assert p.records
        # An epoch this log never had: Kafka's OFFSET_OUT_OF_RANGE.
        r = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(0, 2, last_fetched_epoch=3)])])
        assert r.responses[0].partitions[0].error_code == OFFSET_OUT_OF_RANGE


def test_v16_names_the_current_leader_of_a_partition_not_served_here(b, topic):
    produce(b, topic, 1)
    tid = topic_id(b, topic)
    me = b.broker.broker_id
    with Wire(b) as w:
        # Replica 7 is no replica of it: NOT_LEADER_OR_FOLLOWER, and from v16
        # the leader (this broker) and its endpoint come with it (KIP-951).
        for v, leader, endpoints in [(15, (-1, -1), []), (16, (me, 0), [(me, "127.0.0.1", b.port)])]:
            r = fetch(w, v, [F.FetchTopic(topic_id=tid, partitions=[part(0)])],
                      replica_state=F.ReplicaState(replica_id=7, replica_epoch=1))
            p = r.responses[0].partitions[0]
            assert p.error_code == NOT_LEADER_OR_FOLLOWER
            assert (p.current_leader.leader_id, p.current_leader.leader_epoch) == leader
            assert [(e.node_id, e.host, e.port) for e in r.node_endpoints] == endpoints


def test_a_session_of_made_up_partitions_is_bounded(b, topic):
    from pylog.broker.fetch_session import SESSION_PARTITIONS_FLOOR
    produce(b, topic, 1)
    many = SESSION_PARTITIONS_FLOOR + 1   # far more than this broker knows of
    with Wire(b) as w:
        r = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(i) for i in range(many)])], session_epoch=0)
        assert (r.error_code, r.session_id, len(answered(r))) == (NONE, 0, many)
        sid = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(0)])], session_epoch=0).session_id
        assert sid > 0
        r = fetch(w, 12, [F.FetchTopic(topic=topic, partitions=[part(i) for i in range(many)])],
                  session_id=sid, session_epoch=1)
        assert (r.error_code, r.session_id, r.responses) == (FETCH_SESSION_ID_NOT_FOUND, 0, [])
        assert fetch(w, 12, [], session_id=sid, session_epoch=2).error_code == FETCH_SESSION_ID_NOT_FOUND


def test_a_recreated_topic_is_not_found_by_its_old_id(b, topic):
    import time

    from confluent_kafka.admin import AdminClient, NewTopic
    produce(b, topic, 1)
    old = topic_id(b, topic)
    controller_old = b.broker.metadata_cache.topic_ids.get(topic)
    admin = AdminClient({"bootstrap.servers": str(b)})
    admin.delete_topics([topic])[topic].result(30)
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
            break
        except Exception:
            if time.monotonic() > deadline:   # the deletion still under way
                raise
            time.sleep(0.2)
    produce(b, topic, 2)
    new = topic_id(b, topic)
    assert new != old
    # One id per topic: the replica's (partition.metadata) is the controller's.
    assert controller_old == old
    stale = [old]
    with Wire(b) as w:
        r = fetch(w, 13, [F.FetchTopic(topic_id=t, partitions=[part(0)]) for t in stale + [new]])
    assert [(t.topic_id, t.partitions[0].error_code) for t in r.responses] == \
        [(t, UNKNOWN_TOPIC_ID) for t in stale] + [(new, NONE)]
    assert r.responses[-1].partitions[0].high_watermark == 2


@pytest.mark.parametrize("version", [4, 7, 11, 12, 13, 15, 16, 17])
def test_hand_encoded_answers_are_the_schema_codec_bytes(b, topic, version):
    """The Fetch answer is written by hand around zero-copy record views:
    decoding it with the codec generated from Kafka's schema and encoding it
    again gives the same bytes (tags, compact lengths, nulls, order), for
    answers with records, aborted-transaction lists, errors, a diverging
    epoch and, from v16, a current leader and node endpoints."""
    import struct

    from pylog.protocol.framing import decode_response, encode_response
    produce(b, topic, 3)
    tid = topic_id(b, topic)
    parts = [part(0), part(1, 2, last_fetched_epoch=0), part(2, 7, last_fetched_epoch=0), part(9)]
    with Wire(b) as w:
        for replica_state in (F.ReplicaState(), F.ReplicaState(replica_id=7, replica_epoch=1)):
            req = F(max_wait_ms=0, min_bytes=1, isolation_level=1, replica_id=replica_state.replica_id,
                    replica_state=replica_state,
                    topics=[F.FetchTopic(topic=topic, topic_id=tid, partitions=parts),
                            F.FetchTopic(topic="nope", topic_id=uuid.uuid4(), partitions=[part(0)])])
            cid = w.send(FETCH, version, req)
            frame = w._read(struct.unpack(">i", w._read(4))[0])
            header, resp = decode_response(frame, FETCH, version)
            assert header.correlation_id == cid
            assert encode_response(cid, FETCH, version, resp)[4:] == frame
