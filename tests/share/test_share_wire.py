"""KIP-932 share groups over raw requests against a real pylog broker:
ShareGroupHeartbeat, ShareFetch and ShareAcknowledge as Kafka 4.2 answers
them (the share-partition state machine, its error codes, the lock and the
delivery-count limit), ShareGroupDescribe and ListGroups."""
from __future__ import annotations

import time

import pytest

from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker, wait_until

from .wire import (CONFIG, acquired, connect, create_topic, heartbeat, join_assigned, member_id, partition_errors,
                   produce, set_group_configs, share_ack, share_fetch)

ACCEPT, RELEASE, REJECT, GAP = 1, 2, 3, 0


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def join(b, conn, group, topic, n_records=0, partitions=1, earliest=True):
    """A topic with n_records, a group reading it from the start, one member
    joined: (member id, epoch, topic id)."""
    create_topic(b, topic, partitions)
    if earliest:
        set_group_configs(b, group, share_auto_offset_reset="earliest")
    if n_records:
        produce(b, topic, n_records, partitions)
    mid = member_id()
    r = join_assigned(conn, group, mid, [topic], partitions)
    assert r.member_id == mid and r.member_epoch > 0
    tps = r.assignment.topic_partitions
    assert len(tps) == 1 and sorted(tps[0].partitions) == list(range(partitions))
    return mid, r.member_epoch, tps[0].topic_id


def fetch_until(conn, group, mid, epoch, parts, want, acks=None):
    """ShareFetch until something is acquired: (response, next epoch)."""
    deadline = time.monotonic() + 30
    while True:
        r = share_fetch(conn, group, mid, epoch, parts, acks=acks)
        assert r.error_code == 0, r
        epoch += 1
        acks = None
        if acquired(r) or not want or time.monotonic() > deadline:
            return r, epoch


def test_join_fetch_accept_and_nothing_is_handed_out_twice(broker):
    conn = connect(broker)
    group, topic = "w-basic-g", "w-basic"
    mid, _, tid = join(broker, conn, group, topic, 10)
    tp = (tid, 0)
    r, epoch = fetch_until(conn, group, mid, 0, [tp], True)
    assert acquired(r) == {tp: [(0, 9, 1)]}
    assert r.acquisition_lock_timeout_ms == 15000
    assert len(r.responses[0].partitions[0].records) > 0
    # Acknowledged on the next fetch: nothing more to hand out.
    r, epoch = fetch_until(conn, group, mid, epoch, [tp], False, acks={tp: [(0, 9, [ACCEPT])]})
    assert partition_errors(r)[tp] == (0, 0)
    assert acquired(r) == {}
    produce(broker, topic, 3, 1)
    r, epoch = fetch_until(conn, group, mid, epoch, [tp], True)
    assert acquired(r) == {tp: [(10, 12, 1)]}
    # Acknowledging again what is already acknowledged: Kafka's INVALID_RECORD_STATE.
    a = share_ack(conn, group, mid, epoch, {tp: [(0, 9, [ACCEPT])]})
    assert a.responses[0].partitions[0].error_code == Errors.INVALID_RECORD_STATE
    epoch += 1
    a = share_ack(conn, group, mid, epoch, {tp: [(10, 12, [ACCEPT])]})
    assert a.error_code == 0 and a.responses[0].partitions[0].error_code == 0
    conn.close()


def test_release_redelivers_with_a_higher_count_and_reject_never_again(broker):
    conn = connect(broker)
    group, topic = "w-rel-g", "w-rel"
    mid, _, tid = join(broker, conn, group, topic, 4)
    tp = (tid, 0)
    r, epoch = fetch_until(conn, group, mid, 0, [tp], True)
    assert acquired(r) == {tp: [(0, 3, 1)]}
    # Per-offset types: 0 accepted, 1 released, 2 rejected, 3 released.
    r, epoch = fetch_until(conn, group, mid, epoch, [tp], True,
                           acks={tp: [(0, 3, [ACCEPT, RELEASE, REJECT, RELEASE])]})
    assert partition_errors(r)[tp][1] == 0
    assert acquired(r) == {tp: [(1, 1, 2), (3, 3, 2)]}
    r, epoch = fetch_until(conn, group, mid, epoch, [tp], False, acks={tp: [(1, 1, [ACCEPT]), (3, 3, [ACCEPT])]})
    assert acquired(r) == {}
    conn.close()


def test_the_delivery_count_limit_archives_a_record(broker):
    conn = connect(broker)
    group, topic = "w-limit-g", "w-limit"
    mid, _, tid = join(broker, conn, group, topic, 1)
    tp = (tid, 0)
    epoch, counts, acks = 0, [], None
    for _ in range(5):             # group.share.delivery.count.limit, Kafka's default
        r, epoch = fetch_until(conn, group, mid, epoch, [tp], True, acks=acks)
        counts.append(acquired(r)[tp][0][2])
        acks = {tp: [(0, 0, [RELEASE])]}
    assert counts == [1, 2, 3, 4, 5]
    r, epoch = fetch_until(conn, group, mid, epoch, [tp], False, acks=acks)
    assert acquired(r) == {}       # archived after its fifth delivery
    conn.close()


def test_an_expired_lock_makes_records_available_to_another_member(broker):
    conn = connect(broker)
    group, topic = "w-lock-g", "w-lock"
    set_group_configs(broker, group, share_record_lock_duration_ms=1000)
    mid, _, tid = join(broker, conn, group, topic, 5)
    tp = (tid, 0)
    r, first_epoch = fetch_until(conn, group, mid, 0, [tp], True)
    assert r.acquisition_lock_timeout_ms == 1000
    assert acquired(r) == {tp: [(0, 4, 1)]}
    other = member_id()
    assert heartbeat(conn, group, other, 0, [topic]).error_code == 0
    r, _ = fetch_until(conn, group, other, 0, [tp], True)     # waits out the first member's lock
    assert acquired(r) == {tp: [(0, 4, 2)]}
    # The first member's locks are gone: its acknowledgement is refused.
    a = share_ack(conn, group, mid, first_epoch, {tp: [(0, 4, [ACCEPT])]})
    assert a.responses[0].partitions[0].error_code == Errors.INVALID_RECORD_STATE
    conn.close()


def test_share_session_epochs_and_bad_acknowledgements(broker):
    conn = connect(broker)
    group, topic = "w-sess-g", "w-sess"
    mid, _, tid = join(broker, conn, group, topic, 3)
    tp = (tid, 0)
    assert share_fetch(conn, group, mid, 1, [tp]).error_code == Errors.SHARE_SESSION_NOT_FOUND
    assert share_ack(conn, group, mid, 1, {tp: [(0, 0, [ACCEPT])]}).error_code == Errors.SHARE_SESSION_NOT_FOUND
    r = share_fetch(conn, group, mid, 0, [tp], acks={tp: [(0, 0, [ACCEPT])]})
    assert r.error_code == Errors.INVALID_REQUEST      # acknowledgements in an epoch-0 request
    r, epoch = fetch_until(conn, group, mid, 0, [tp], True)
    assert share_fetch(conn, group, mid, epoch + 5, [tp]).error_code == Errors.INVALID_SHARE_SESSION_EPOCH
    assert share_ack(conn, group, mid, 0, {tp: [(0, 0, [ACCEPT])]}).error_code == Errors.INVALID_SHARE_SESSION_EPOCH
    for bad in ([(2, 1, [ACCEPT])], [(0, 2, [ACCEPT, ACCEPT])], [(0, 0, [7])], [(0, 0, [])],
                [(1, 1, [ACCEPT]), (0, 0, [ACCEPT])], [(0, 0, [4])]):
        a = share_ack(conn, group, mid, epoch, {tp: bad})
        epoch += 1
        assert a.responses[0].partitions[0].error_code == Errors.INVALID_REQUEST, bad
    # Offsets this member never acquired.
    a = share_ack(conn, group, mid, epoch, {tp: [(0, 10, [ACCEPT])]})
    epoch += 1
    assert a.responses[0].partitions[0].error_code == Errors.INVALID_RECORD_STATE
    # Gap for the whole range then: accepted (what a client sends for offsets without records).
    a = share_ack(conn, group, mid, epoch, {tp: [(0, 2, [GAP])]})
    assert a.responses[0].partitions[0].error_code == 0
    # Epoch -1 closes the session.
    assert share_ack(conn, group, mid, -1, {}).error_code == 0
    assert share_fetch(conn, group, mid, epoch + 1, [tp]).error_code == Errors.SHARE_SESSION_NOT_FOUND
    conn.close()


def test_closing_a_session_releases_what_it_held(broker):
    conn = connect(broker)
    group, topic = "w-close-g", "w-close"
    mid, _, tid = join(broker, conn, group, topic, 3)
    tp = (tid, 0)
    r, epoch = fetch_until(conn, group, mid, 0, [tp], True)
    assert acquired(r) == {tp: [(0, 2, 1)]}
    r = share_fetch(conn, group, mid, -1, [tp], acks={tp: [(0, 0, [ACCEPT])]})
    assert r.error_code == 0 and partition_errors(r)[tp][1] == 0
    other = member_id()
    heartbeat(conn, group, other, 0, [topic])
    r, _ = fetch_until(conn, group, other, 0, [tp], True)
    assert acquired(r) == {tp: [(1, 2, 2)]}                 # at once, not after the lock
    conn.close()


def test_heartbeat_errors(broker):
    conn = connect(broker)
    create_topic(broker, "w-hb", 1)
    assert heartbeat(conn, "w-hb-g", "", 0, ["w-hb"]).error_code == Errors.INVALID_REQUEST
    assert heartbeat(conn, "w-hb-g", member_id(), 0, None).error_code == Errors.INVALID_REQUEST
    assert heartbeat(conn, "w-hb-g", member_id(), -2, ["w-hb"]).error_code == Errors.INVALID_REQUEST
    assert heartbeat(conn, "w-hb-g", member_id(), 3, ["w-hb"]).error_code == Errors.UNKNOWN_MEMBER_ID
    mid = member_id()
    r = join_assigned(conn, "w-hb-g", mid, ["w-hb"])
    assert heartbeat(conn, "w-hb-g", mid, r.member_epoch + 7).error_code == Errors.FENCED_MEMBER_EPOCH
    ok = heartbeat(conn, "w-hb-g", mid, r.member_epoch)
    assert ok.error_code == 0 and ok.assignment is None        # nothing changed since the last answer
    assert heartbeat(conn, "w-hb-g", mid, -1).member_epoch == -1
    assert heartbeat(conn, "w-hb-g", mid, r.member_epoch).error_code == Errors.UNKNOWN_MEMBER_ID
    conn.close()


def test_more_members_than_partitions_share_the_partition(broker):
    conn = connect(broker)
    group, topic = "w-more-g", "w-more"
    a, epoch_a, tid = join(broker, conn, group, topic, 0)
    b = member_id()
    rb = heartbeat(conn, group, b, 0, [topic])
    assert rb.member_epoch == epoch_a + 1
    assert [list(tp.partitions) for tp in rb.assignment.topic_partitions] == [[0]]
    ra = heartbeat(conn, group, a, epoch_a)
    assert ra.error_code == 0 and ra.member_epoch == rb.member_epoch
    # a keeps partition 0: Kafka sends no assignment when it did not change.
    assert ra.assignment is None
    d = conn.request(m.ShareGroupDescribeRequest(group_ids=[group]), api_version=1).groups[0]
    assert sorted((mm.member_epoch, [list(tp.partitions) for tp in mm.assignment.topic_partitions])
                  for mm in d.members) == [(rb.member_epoch, [[0]])] * 2
    conn.close()


def test_describe_and_list_share_groups(broker):
    conn = connect(broker)
    group, topic = "w-desc-g", "w-desc"
    mid, epoch, tid = join(broker, conn, group, topic, 0, partitions=2)
    d = conn.request(m.ShareGroupDescribeRequest(group_ids=[group, "w-nope"], include_authorized_operations=False),
                     api_version=1)
    g, missing = d.groups
    assert g.error_code == 0 and g.group_state == "Stable" and g.assignor_name == "simple"
    assert g.group_epoch == epoch == g.assignment_epoch
    [mem] = g.members
    assert mem.member_id == mid and mem.subscribed_topic_names == [topic]
    [tp] = mem.assignment.topic_partitions
    assert tp.topic_id == tid and tp.topic_name == topic and sorted(tp.partitions) == [0, 1]
    assert missing.error_code == Errors.GROUP_ID_NOT_FOUND
    lg = conn.request(m.ListGroupsRequest(states_filter=[], types_filter=["share"]), api_version=5)
    assert [(x.group_id, x.group_type, x.group_state) for x in lg.groups if x.group_id == group] == \
        [(group, "share", "Stable")]
    lg = conn.request(m.ListGroupsRequest(states_filter=[], types_filter=["consumer"]), api_version=5)
    assert group not in [x.group_id for x in lg.groups]
    heartbeat(conn, group, mid, -1)
    wait_until(lambda: conn.request(m.ShareGroupDescribeRequest(group_ids=[group]), api_version=1)
               .groups[0].group_state == "Empty", "the group empty after its member left")
    conn.close()


def test_group_configs_refuse_what_is_not_built(broker):
    from confluent_kafka import KafkaException
    for key, value in (("share.auto.offset.reset", "by_duration:PT1H"), ("share.isolation.level", "serializable"),
                       ("share.delivery.count.limit", "3"), ("share.record.lock.duration.ms", "999999999")):
        with pytest.raises(KafkaException):
            set_group_configs(broker, "w-cfg-g", **{key.replace(".", "_"): value})


def test_describe_share_group_offsets_gives_the_start_offset_and_lag(broker):
    conn = connect(broker)
    group, topic = "w-offs-g", "w-offs"
    mid, _, tid = join(broker, conn, group, topic, 10, partitions=2)     # 5 records in each partition
    create_topic(broker, "w-offs-other", 1)
    tp0 = (tid, 0)
    r, epoch = fetch_until(conn, group, mid, 0, [tp0], True)
    [(first, last, _)] = acquired(r)[tp0]
    a = share_ack(conn, group, mid, epoch, {tp0: [(first, first + 1, [ACCEPT])]})
    assert a.responses[0].partitions[0].error_code == 0
    R = m.DescribeShareGroupOffsetsRequest
    req = R(groups=[R.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=None),
                    R.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=[
                        R.DescribeShareGroupOffsetsRequestTopic(topic_name=topic, partitions=[0, 1, 7]),
                        R.DescribeShareGroupOffsetsRequestTopic(topic_name="w-offs-other", partitions=[0])]),
                    R.DescribeShareGroupOffsetsRequestGroup(group_id="w-offs-nope", topics=None)])
    d = conn.request(req, api_version=1)
    every, asked, missing = d.groups
    assert every.error_code == 0
    [t] = every.topics          # the share-partitions initialized: both, at their assignment
    assert (t.topic_name, t.topic_id) == (topic, tid)
    p0, p1 = sorted(t.partitions, key=lambda p: p.partition_index)
    assert (p0.partition_index, p0.start_offset, p0.error_code) == (0, first + 2, 0)
    assert p0.lag == last - first - 1          # acquired but not yet acknowledged still count
    assert (p1.start_offset, p1.lag) == (0, 5)
    rows = {p.partition_index: p for p in asked.topics[0].partitions}
    assert rows[0].start_offset == first + 2
    assert rows[7].error_code == Errors.UNKNOWN_TOPIC_OR_PARTITION
    [other] = asked.topics[1].partitions
    assert (other.start_offset, other.error_code) == (-1, 0)          # never assigned: not initialized
    assert missing.error_code == Errors.GROUP_ID_NOT_FOUND
    conn.close()


def test_a_latest_group_starts_where_the_log_was_at_assignment(broker):
    conn = connect(broker)
    group, topic = "w-latest-g", "w-latest"
    create_topic(broker, topic, 1)
    produce(broker, topic, 5)                       # before the group: never delivered
    mid = member_id()
    hb = join_assigned(conn, group, mid, [topic])
    tp = (hb.assignment.topic_partitions[0].topic_id, 0)
    R = m.DescribeShareGroupOffsetsRequest
    req = R(groups=[R.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=None)])
    wait_until(lambda: any(t.partitions and t.partitions[0].start_offset == 5
                           for t in conn.request(req, api_version=1).groups[0].topics),
               "the share-partition initialized at the log end when it was assigned")
    produce(broker, topic, 3, start=5)              # after the assignment, before any fetch: delivered
    r, _ = fetch_until(conn, group, mid, 0, [tp], True)
    assert acquired(r) == {tp: [(5, 7, 1)]}
    conn.close()


def test_alter_share_group_offsets_resets_an_empty_group(broker):
    conn = connect(broker)
    group, topic = "w-alter-g", "w-alter"
    mid, _, tid = join(broker, conn, group, topic, 6)
    tp = (tid, 0)
    r, epoch = fetch_until(conn, group, mid, 0, [tp], True)
    assert acquired(r) == {tp: [(0, 5, 1)]}
    share_ack(conn, group, mid, epoch, {tp: [(0, 5, [ACCEPT])]})
    A = m.AlterShareGroupOffsetsRequest

    def alter(offset, name=topic, parts=(0,)):
        return conn.request(A(group_id=group, topics=[A.AlterShareGroupOffsetsRequestTopic(
            topic_name=name, partitions=[A.AlterShareGroupOffsetsRequestPartition(partition_index=i, start_offset=offset)
                                         for i in parts])]), api_version=0)

    assert alter(2).error_code == Errors.NON_EMPTY_GROUP
    assert heartbeat(conn, group, mid, -1).member_epoch == -1
    share_ack(conn, group, mid, -1, {})
    a = alter(2, parts=(0, 5))
    assert a.error_code == 0
    assert [(p.partition_index, p.error_code) for p in a.responses[0].partitions] == \
        [(0, 0), (5, Errors.UNKNOWN_TOPIC_OR_PARTITION)]
    assert alter(-3).responses[0].partitions[0].error_code == Errors.INVALID_REQUEST
    # A new member gets the accepted records 2-5 again, as first deliveries.
    other = member_id()
    heartbeat(conn, group, other, 0, [topic])
    r, _ = fetch_until(conn, group, other, 0, [tp], True)
    assert acquired(r) == {tp: [(2, 5, 1)]}
    conn.close()


def test_delete_share_group_offsets_starts_the_group_again_at_its_reset(broker):
    conn = connect(broker)
    group, topic = "w-del-g", "w-del"
    mid, _, tid = join(broker, conn, group, topic, 4)
    tp = (tid, 0)
    r, epoch = fetch_until(conn, group, mid, 0, [tp], True)
    share_ack(conn, group, mid, epoch, {tp: [(0, 3, [ACCEPT])]})
    D = m.DeleteShareGroupOffsetsRequest

    def delete(group_id, *names):
        return conn.request(D(group_id=group_id, topics=[D.DeleteShareGroupOffsetsRequestTopic(topic_name=n)
                                                         for n in names]), api_version=0)

    assert delete(group, topic).error_code == Errors.NON_EMPTY_GROUP
    heartbeat(conn, group, mid, -1)
    share_ack(conn, group, mid, -1, {})
    d = delete(group, topic, "w-del-nope")
    assert d.error_code == 0
    assert [(t.topic_name, t.error_code) for t in d.responses] == \
        [(topic, 0), ("w-del-nope", Errors.UNKNOWN_TOPIC_OR_PARTITION)]
    assert delete("w-del-never", topic).error_code == Errors.GROUP_ID_NOT_FOUND
    other = member_id()
    heartbeat(conn, group, other, 0, [topic])
    r, _ = fetch_until(conn, group, other, 0, [tp], True)
    assert acquired(r) == {tp: [(0, 3, 1)]}          # earliest again: everything, first deliveries
    conn.close()


def test_delete_groups_deletes_an_empty_share_group_and_its_state(broker):
    conn = connect(broker)
    group, topic = "w-dg-g", "w-dg"
    mid, _, tid = join(broker, conn, group, topic, 2)
    tp = (tid, 0)
    r, epoch = fetch_until(conn, group, mid, 0, [tp], True)
    share_ack(conn, group, mid, epoch, {tp: [(0, 1, [ACCEPT])]})
    dg = m.DeleteGroupsRequest(groups_names=[group])
    assert conn.request(dg, api_version=2).results[0].error_code == Errors.NON_EMPTY_GROUP
    heartbeat(conn, group, mid, -1)
    assert conn.request(dg, api_version=2).results[0].error_code == 0
    d = conn.request(m.ShareGroupDescribeRequest(group_ids=[group]), api_version=1)
    assert d.groups[0].error_code == Errors.GROUP_ID_NOT_FOUND
    assert conn.request(dg, api_version=2).results[0].error_code == Errors.GROUP_ID_NOT_FOUND
    # Its state went too: a new member starts again at the group's reset (earliest).
    other = member_id()
    heartbeat(conn, group, other, 0, [topic])
    r, _ = fetch_until(conn, group, other, 0, [tp], True)
    assert acquired(r) == {tp: [(0, 1, 1)]}
    conn.close()


def test_the_share_session_cache_has_a_limit(tmp_path):
    # group.share.max.share.sessions must be at least group.share.max.size (Kafka's require).
    cfg = {**CONFIG, "group.share.max.share.sessions": "2", "group.share.max.size": "2"}
    with running_broker(data_dir=tmp_path, config=cfg) as b:
        conn = connect(b)
        for i in range(2):
            assert share_fetch(conn, "w-cap-g", member_id(), 0, max_wait_ms=0).error_code == 0
        r = share_fetch(conn, "w-cap-g", member_id(), 0, max_wait_ms=10)
        assert r.error_code == Errors.SHARE_SESSION_LIMIT_REACHED
        conn.close()
