"""Offset commits of a consumer group checked against each partition's
assignment epoch (KIP-1251, Kafka's ConsumerGroup.validateOffsetCommit): a
member whose epoch moved on may still commit, with the epoch it fetched
under, the partitions it has held since then; a partition it got later, or
does not hold, is refused (STALE_MEMBER_EPOCH for a consumer-protocol
member, ILLEGAL_GENERATION for a classic one and for TxnOffsetCommit before
v6). OffsetFetch stays strict. Raw requests over a real socket to a real
broker for the commits: a real client only commits with an older epoch when
a response is lost or races a heartbeat, so the epochs are steered by hand.
Also the downgrade Kafka makes without a rebalance when a static classic
member replaces the last consumer-protocol member (raw, and with librdkafka)."""
from __future__ import annotations

import time

import pytest

from pylog.consumer.assignors import encode_subscription
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker, wait_until

from .helpers import create_topic
from .kip848 import CONFIG, RETRIABLE, connect, heartbeat, member_id, owned

STALE, ILLEGAL = Errors.STALE_MEMBER_EPOCH, Errors.ILLEGAL_GENERATION


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


@pytest.fixture
def conn(broker):
    c = connect(broker)
    yield c
    c.close()


def _retry(send):
    deadline = time.monotonic() + 60
    while True:
        r = send()
        code = getattr(r, "error_code", None)
        if code not in RETRIABLE or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def commit(conn, group, member, epoch, topic, partition, version=9):
    C = m.OffsetCommitRequest
    req = C(group_id=group, generation_id_or_member_epoch=epoch, member_id=member, group_instance_id=None,
            retention_time_ms=-1, topics=[C.OffsetCommitRequestTopic(name=topic, partitions=[
                C.OffsetCommitRequestPartition(partition_index=partition, committed_offset=3,
                                               committed_leader_epoch=-1, committed_metadata="")])])
    return conn.request(req, api_version=version).topics[0].partitions[0].error_code


def fetch(conn, group, member, epoch, topic):
    F = m.OffsetFetchRequest
    req = F(require_stable=False, groups=[F.OffsetFetchRequestGroup(
        group_id=group, member_id=member, member_epoch=epoch,
        topics=[F.OffsetFetchRequestTopics(name=topic, partition_indexes=[0])])])
    return conn.request(req, api_version=9).groups[0].error_code


def transaction(conn, tid, group):
    """A transaction with group's offsets in it: (producer id, epoch)."""
    _retry(lambda: conn.request(m.FindCoordinatorRequest(key=tid, key_type=1), api_version=1))
    r = _retry(lambda: conn.request(m.InitProducerIdRequest(
        transactional_id=tid, transaction_timeout_ms=60000, producer_id=-1, producer_epoch=-1), api_version=1))
    assert r.error_code == 0
    pid, pepoch = r.producer_id, r.producer_epoch
    a = conn.request(m.AddOffsetsToTxnRequest(transactional_id=tid, producer_id=pid, producer_epoch=pepoch,
                                              group_id=group), api_version=0)
    assert a.error_code == 0
    return pid, pepoch


def txn_commit(conn, tid, pid, pepoch, group, member, generation, topic, partition):
    R = m.TxnOffsetCommitRequest
    r = conn.request(R(transactional_id=tid, group_id=group, producer_id=pid, producer_epoch=pepoch,
                       generation_id=generation, member_id=member, group_instance_id=None,
                       topics=[R.TxnOffsetCommitRequestTopic(name=topic, partitions=[
                           R.TxnOffsetCommitRequestPartition(partition_index=partition, committed_offset=4,
                                                             committed_leader_epoch=-1, committed_metadata="")])]),
                     api_version=3)
    return r.topics[0].partitions[0].error_code


def _parts(resp) -> set:
    return {p for tp in resp.assignment.topic_partitions for p in tp.partitions} if resp.assignment else set()


def test_a_consumer_member_commits_what_it_held_since_an_older_epoch(broker, conn):
    topic, group = "ae-cons", "ae-cons-g"
    create_topic(broker, topic, 2)
    a, b = member_id(), member_id()
    ra = heartbeat(conn, group, a, 0, [topic])
    assert ra.error_code == 0 and _parts(ra) == {0, 1}
    first = ra.member_epoch
    rb = heartbeat(conn, group, b, 0, [topic])
    assert rb.error_code == 0
    # a gives up one partition: it is asked to revoke it, then moves to the new epoch.
    r = heartbeat(conn, group, a, first, owned=owned(ra))
    assert r.error_code == 0 and r.member_epoch == first and len(_parts(r)) == 1
    (kept,), (moved,) = _parts(r), {0, 1} - _parts(r)
    T = m.ConsumerGroupHeartbeatRequest.TopicPartitions
    r = heartbeat(conn, group, a, first, owned=[T(topic_id=tp.topic_id, partitions=list(tp.partitions))
                                               for tp in r.assignment.topic_partitions])
    assert r.error_code == 0 and r.member_epoch > first
    now = r.member_epoch
    # The partition held since `first`: its commits with `first` are good ...
    assert commit(conn, group, a, first, topic, kept) == Errors.NONE
    assert commit(conn, group, a, now, topic, kept) == Errors.NONE
    # ... not with an epoch before it was assigned, nor a newer one than the member's,
    # nor for the partition it gave away.
    assert commit(conn, group, a, first - 1, topic, kept) == STALE
    assert commit(conn, group, a, now + 1, topic, kept) == STALE
    assert commit(conn, group, a, first, topic, moved) == STALE
    # b gets the released partition at the new epoch: older epochs are refused for it.
    rb = wait_until(lambda: (x := heartbeat(conn, group, b, rb.member_epoch, owned=[])) and moved in _parts(x) and x,
                    "b gets the released partition", 30)
    assert commit(conn, group, b, rb.member_epoch, topic, moved) == Errors.NONE
    assert commit(conn, group, b, first, topic, moved) == STALE
    # OffsetFetch does not look at assignment epochs.
    assert fetch(conn, group, a, first, topic) == STALE
    assert fetch(conn, group, a, now, topic) == Errors.NONE
    # TxnOffsetCommit (v3 here: before v6 a stale epoch is ILLEGAL_GENERATION).
    pid, pepoch = transaction(conn, "ae-cons-tx", group)
    assert txn_commit(conn, "ae-cons-tx", pid, pepoch, group, a, first, topic, kept) == Errors.NONE
    assert txn_commit(conn, "ae-cons-tx", pid, pepoch, group, a, first, topic, moved) == ILLEGAL
    assert txn_commit(conn, "ae-cons-tx", pid, pepoch, group, a, now + 1, topic, kept) == ILLEGAL


def classic_join(conn, group, topics, member="", generation=-1, version=5, instance_id=None):
    J = m.JoinGroupRequest
    req = J(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id=member,
            group_instance_id=instance_id, protocol_type="consumer", reason=None,
            protocols=[J.JoinGroupRequestProtocol(name="range", metadata=encode_subscription(topics))])
    j = _retry(lambda: conn.request(req, api_version=version))
    if j.error_code == Errors.MEMBER_ID_REQUIRED:
        req.member_id = j.member_id
        j = _retry(lambda: conn.request(req, api_version=version))
    return j


def classic_sync(conn, group, member, generation):
    return conn.request(m.SyncGroupRequest(group_id=group, generation_id=generation, member_id=member,
                                           group_instance_id=None, protocol_type="consumer", protocol_name="range",
                                           assignments=[]), api_version=5)


def test_a_classic_member_of_a_consumer_group_commits_with_an_older_generation(broker, conn):
    topic, other, group = "ae-classic", "ae-classic-other", "ae-classic-g"
    create_topic(broker, topic, 2)
    create_topic(broker, other, 1)
    assert heartbeat(conn, group, member_id(), 0, [other]).error_code == 0
    j = classic_join(conn, group, [topic])
    assert j.error_code == 0
    k, first = j.member_id, j.generation_id
    assert classic_sync(conn, group, k, first).error_code == 0
    # Another consumer-protocol member moves the group epoch; k keeps its partitions
    # and rejoins into the new generation.
    assert heartbeat(conn, group, member_id(), 0, [other]).error_code == 0
    hb = conn.request(m.HeartbeatRequest(group_id=group, generation_id=first, member_id=k, group_instance_id=None),
                      api_version=4)
    assert hb.error_code == Errors.REBALANCE_IN_PROGRESS
    j = classic_join(conn, group, [topic], member=k)
    assert j.error_code == 0 and j.generation_id > first
    now = j.generation_id
    assert classic_sync(conn, group, k, now).error_code == 0
    for version in (9, 8, 5, 2):
        assert commit(conn, group, k, first, topic, 0, version) == Errors.NONE
        assert commit(conn, group, k, first - 1, topic, 1, version) == ILLEGAL
        assert commit(conn, group, k, now + 1, topic, 1, version) == ILLEGAL
        assert commit(conn, group, k, first, other, 0, version) == ILLEGAL
    assert fetch(conn, group, k, first, topic) == ILLEGAL
    assert fetch(conn, group, k, now, topic) == Errors.NONE
    pid, pepoch = transaction(conn, "ae-classic-tx", group)
    assert txn_commit(conn, "ae-classic-tx", pid, pepoch, group, k, first, topic, 1) == Errors.NONE
    assert txn_commit(conn, "ae-classic-tx", pid, pepoch, group, k, first, other, 0) == ILLEGAL


def test_a_static_classic_member_replacing_the_last_consumer_member_keeps_the_assignment(broker, conn):
    """Kafka's downgrade on a static member's replacement with the assignment
    current: the joining classic member is answered at once with the
    replaced member's epoch and partitions, and the classic group stays
    Stable at that generation (no rebalance: the other member's heartbeat
    is not told to rejoin)."""
    topic, group = "ae-down", "ae-down-g"
    create_topic(broker, topic, 2)
    s = member_id()
    rs = heartbeat(conn, group, s, 0, [topic], instance_id="inst-s")
    assert rs.error_code == 0 and _parts(rs) == {0, 1}
    j = classic_join(conn, group, [topic])
    assert j.error_code == 0
    k = j.member_id
    # s hands over one partition, then k rejoins to get it: both at the group epoch.
    r = heartbeat(conn, group, s, rs.member_epoch, owned=owned(rs))
    kept = _parts(r)
    assert len(kept) == 1
    T = m.ConsumerGroupHeartbeatRequest.TopicPartitions
    r = heartbeat(conn, group, s, r.member_epoch, owned=[T(topic_id=tp.topic_id, partitions=list(tp.partitions))
                                                         for tp in r.assignment.topic_partitions])
    assert r.error_code == 0
    epoch = r.member_epoch
    j = classic_join(conn, group, [topic], member=k)
    assert (j.error_code, j.generation_id) == (0, epoch)
    assert classic_sync(conn, group, k, epoch).error_code == 0
    # The static member comes back speaking the classic protocol, same subscription.
    J = m.JoinGroupRequest
    req = J(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id="",
            group_instance_id="inst-s", protocol_type="consumer", reason=None,
            protocols=[J.JoinGroupRequestProtocol(name="range", metadata=encode_subscription([topic]))])
    back = _retry(lambda: conn.request(req, api_version=5))
    assert (back.error_code, back.generation_id, back.protocol_name, back.leader) == (0, epoch, "range", "")
    assert back.member_id and back.member_id != s and back.members == []
    d = conn.request(m.DescribeGroupsRequest(groups=[group], include_authorized_operations=False),
                     api_version=5).groups[0]
    assert (d.group_state, d.protocol_type) == ("Stable", "consumer")
    assert sorted(mm.member_id for mm in d.members) == sorted([k, back.member_id])
    hb = conn.request(m.HeartbeatRequest(group_id=group, generation_id=epoch, member_id=k, group_instance_id=None),
                      api_version=4)
    assert hb.error_code == Errors.NONE
    sync = conn.request(m.SyncGroupRequest(group_id=group, generation_id=epoch, member_id=back.member_id,
                                           group_instance_id="inst-s", protocol_type="consumer",
                                           protocol_name="range", assignments=[]), api_version=5)
    assert sync.error_code == 0
    from pylog.consumer.assignors import decode_assignment
    assert {tp.partition for tp in decode_assignment(sync.assignment)} == kept


def test_librdkafka_static_member_back_to_classic_moves_no_partition(broker):
    """The same downgrade with real clients: librdkafka static members
    inst-a (classic throughout) and inst-b (classic, then the consumer
    protocol, then classic again). When inst-b comes back classic the group
    turns classic without a rebalance: inst-a keeps its partitions and is
    never asked to give them up; inst-b gets its own back."""
    from .helpers import produce
    from .kip848 import describe
    from .test_group_migration import Consuming, balanced, librdkafka

    topic, group, n = "ae-rdk", "ae-rdk-g", 4
    create_topic(broker, topic, n)
    produce(str(broker), topic, 200, n)
    conn = connect(broker)
    revoked = []
    a = librdkafka(broker, group, "classic", {"group.instance.id": "inst-a"})
    a.subscribe([topic], on_revoke=lambda c, parts: revoked.append([p.partition for p in parts]))
    members = {"a": a}

    def start_b(protocol):
        c = librdkafka(broker, group, protocol, {"group.instance.id": "inst-b"})
        c.subscribe([topic])
        members["b"] = c
        run.add(c)

    run = Consuming(a)
    start_b("classic")
    try:
        run.until(lambda: balanced(list(members.values()), n), "the classic static members balanced")
        old = members.pop("b")
        old.close()
        run.remove(old)
        start_b("consumer")
        run.until(lambda: balanced(list(members.values()), n) and
                  sorted(mm.member_type for mm in describe(conn, group, version=1).members) == [0, 1],
                  "inst-b back with the consumer protocol")
        run.until(lambda: len(run.all()) >= 200, "every message consumed")
        before, seen = {tp.partition for tp in a.assignment()}, len(revoked)
        old = members.pop("b")
        old.close()
        run.remove(old)
        start_b("classic")
        run.until(lambda: describe(conn, group).error_code == Errors.GROUP_ID_NOT_FOUND and
                  balanced(list(members.values()), n), "the group classic again, inst-b with its partitions")
        assert len(revoked) == seen and {tp.partition for tp in a.assignment()} == before
        produce(str(broker), topic, 100, n)
        run.until(lambda: len(run.all()) >= 300, "the messages after the downgrade consumed")
        assert len(revoked) == seen
    finally:
        for c in run.consumers:
            c.close()
        conn.close()


def _commit_retrying(conn, group, member, epoch, topic, partition):
    deadline = time.monotonic() + 60
    while True:
        code = commit(conn, group, member, epoch, topic, partition)
        if code not in RETRIABLE or time.monotonic() > deadline:
            return code
        time.sleep(0.1)


def test_assignment_epochs_survive_a_restart(tmp_path):
    """The epochs are in the member's assignment record (its tagged
    AssignmentEpochs): a reloaded coordinator still takes the older epoch
    for the partition kept, and still refuses it for the one added later."""
    topic, group = "ae-restart", "ae-restart-g"
    with running_broker(tmp_path / "data", config=CONFIG) as b:
        create_topic(b, topic, 2)
        conn = connect(b)
        a, other = member_id(), member_id()
        ra = heartbeat(conn, group, a, 0, [topic], instance_id="keep")
        assert _parts(ra) == {0, 1}
        first = ra.member_epoch
        # other joins and leaves again: a gives up a partition, then gets it back at a later epoch.
        assert heartbeat(conn, group, other, 0, [topic]).error_code == 0
        r = heartbeat(conn, group, a, first, owned=owned(ra))
        (kept,) = _parts(r)
        T = m.ConsumerGroupHeartbeatRequest.TopicPartitions
        mine = [T(topic_id=tp.topic_id, partitions=list(tp.partitions)) for tp in r.assignment.topic_partitions]
        r = heartbeat(conn, group, a, first, owned=mine)
        assert r.error_code == 0 and r.member_epoch > first
        assert heartbeat(conn, group, other, -1).error_code == 0
        r = wait_until(lambda: (x := heartbeat(conn, group, a, r.member_epoch, owned=mine)) and
                       _parts(x) == {0, 1} and x, "a holds both partitions again", 30)
        now = r.member_epoch
        (added,) = {0, 1} - {kept}
        assert commit(conn, group, a, first, topic, kept) == Errors.NONE
        assert commit(conn, group, a, first, topic, added) == STALE
        conn.close()
        b.restart()
        conn = connect(b)
        assert _commit_retrying(conn, group, a, first, topic, kept) == Errors.NONE
        assert commit(conn, group, a, first, topic, added) == STALE
        assert commit(conn, group, a, now, topic, added) == Errors.NONE
        conn.close()


def test_a_static_members_temporary_leave_resets_its_assignment_epochs(broker, conn):
    """Kafka's consumerGroupStaticMemberGroupLeave: the partitions kept for
    the returning instance drop to assignment epoch 0, so its new member id
    may commit them with any epoch from 0 up to its own."""
    topic, group = "ae-leave", "ae-leave-g"
    create_topic(broker, topic, 1)
    # A first member moves the group epoch on before the static one joins.
    early = member_id()
    assert heartbeat(conn, group, early, 0, ["ae-leave-other"]).error_code == 0
    s = member_id()
    rs = heartbeat(conn, group, s, 0, [topic], instance_id="inst-l")
    assert rs.error_code == 0 and _parts(rs) == {0} and rs.member_epoch > 1
    assert commit(conn, group, s, rs.member_epoch - 1, topic, 0) == STALE
    left = heartbeat(conn, group, s, -2, instance_id="inst-l")
    assert left.error_code == 0
    s2 = member_id()
    back = heartbeat(conn, group, s2, 0, [topic], instance_id="inst-l")
    assert back.error_code == 0 and back.member_epoch == rs.member_epoch
    assert commit(conn, group, s2, 0, topic, 0) == Errors.NONE
    assert commit(conn, group, s2, rs.member_epoch - 1, topic, 0) == Errors.NONE
    assert commit(conn, group, s, rs.member_epoch, topic, 0) == Errors.UNKNOWN_MEMBER_ID
