"""Share-group membership in __consumer_offsets (KIP-932 records 10-15 in
Kafka's layouts), replayed after real broker restarts, and the coordinator's
initialize-before-assign: a real pylog broker, raw ShareGroupHeartbeats over
a socket, the records read back with an unmodified confluent-kafka Consumer
and decoded with the generated codecs, and an unmodified ShareConsumer."""
from __future__ import annotations

import asyncio
import signal
import time
import uuid
from contextlib import closing

from confluent_kafka import Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewPartitions

from pylog.groups.metadata_hash import TopicHashes, compute_group_hash, compute_topic_hash
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker, wait_until

from tests.brokerproc import BrokerProc
from tests.groups.kip848 import former_metadata_hash, group_records

from .wire import CONFIG, connect, create_topic, heartbeat, join_assigned, member_id, produce, set_group_configs, \
    share_fetch

TIMEOUT = 60.0
# Sessions short enough to watch one expire; heartbeats well inside them.
SESSIONS = {**CONFIG, "group.share.min.session.timeout.ms": "1000", "group.share.session.timeout.ms": "8000",
            "group.share.heartbeat.interval.ms": "500", "group.share.min.heartbeat.interval.ms": "500"}


def names():
    u = uuid.uuid4().hex[:8]
    return f"sm-topic-{u}", f"sm-group-{u}"


def share_records(b, group):
    """[(type, key struct, value struct or None)] of the group's share records
    in its __consumer_offsets partition, in log order."""
    return group_records(b, group, "share")


def latest(records):
    """{(type, member id or None): value} as a replay ends (None: a tombstone)."""
    state = {}
    for kind, key, value in records:
        state[(kind, getattr(key, "member_id", None))] = value
    return state


def describe(conn, group):
    """The group as ShareGroupDescribe answers once its coordinator has loaded it."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        d = conn.request(m.ShareGroupDescribeRequest(group_ids=[group]), api_version=1).groups[0]
        if d.error_code not in (Errors.COORDINATOR_LOAD_IN_PROGRESS, Errors.NOT_COORDINATOR):
            return d
        assert time.monotonic() < deadline, d
        time.sleep(0.1)


def parts(assignment):
    return {tp.topic_id: sorted(tp.partitions) for tp in assignment.topic_partitions}


def test_the_group_is_written_in_kafkas_record_layouts(tmp_path):
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        create_topic(b, topic, 2)
        conn = connect(b)
        mid = member_id()
        r = heartbeat(conn, group, mid, 0, [topic])
        # Initialize before assign: nothing is assigned at the join.
        assert (r.error_code, r.member_epoch, parts(r.assignment)) == (Errors.NONE, 1, {})
        r = join_assigned(conn, group, mid, [topic], 2)
        epoch = r.member_epoch
        [(tid, ps)] = parts(r.assignment).items()
        assert ps == [0, 1] and epoch == 2
        recs = share_records(b, group)
        kinds = [k for k, _, _ in recs]
        # The state-partition metadata: the partitions initializing, then initialized.
        fifteen = [v for k, _, v in recs if k == 15]
        assert [(t.topic_id, t.topic_name, sorted(t.partitions)) for t in fifteen[0].initializing_topics] == \
            [(tid, topic, [0, 1])] and fifteen[0].initialized_topics == []
        assert fifteen[-1].initializing_topics == [] and \
            [(t.topic_id, sorted(t.partitions)) for t in fifteen[-1].initialized_topics] == [(tid, [0, 1])]
        # The partitions initialized before the epoch that assigned them.
        assert kinds.index(15) < [i for i, k in enumerate(kinds) if k == 11][-1]
        s = latest(recs)
        assert (s[(11, None)].epoch, s[(12, None)].assignment_epoch) == (epoch, epoch)
        # Kafka's computeGroupHash (tests/groups/test_metadata_hash.py checks it against Kafka's values).
        assert s[(11, None)].metadata_hash == compute_group_hash({topic: compute_topic_hash(topic, tid, [[], []])})
        assert s[(10, mid)].subscribed_topic_names == [topic] and s[(10, mid)].client_host.startswith("/")
        assert [(tp.topic_id, sorted(tp.partitions)) for tp in s[(13, mid)].topic_partitions] == [(tid, [0, 1])]
        cur = s[(14, mid)]
        assert (cur.member_epoch, cur.previous_member_epoch, cur.state) == (epoch, 1, 0)
        assert [(tp.topic_id, sorted(tp.partitions)) for tp in cur.assigned_partitions] == [(tid, [0, 1])]

        # A member leaving: its records' tombstones, the group's epoch moved on.
        assert heartbeat(conn, group, mid, -1).error_code == Errors.NONE
        s = latest(share_records(b, group))
        assert s[(10, mid)] is None and s[(13, mid)] is None and s[(14, mid)] is None
        assert s[(11, None)].epoch == epoch + 1

        # DeleteGroups: every record of the group tombstoned.
        r = conn.request(m.DeleteGroupsRequest(groups_names=[group]), api_version=2)
        assert [x.error_code for x in r.results] == [Errors.NONE]
        s = latest(share_records(b, group))
        assert s and all(v is None for v in s.values()), s
        conn.close()


def test_members_keep_their_ids_epochs_and_assignments_across_a_restart(tmp_path):
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=SESSIONS) as b:
        create_topic(b, topic, 3)
        conn = connect(b)
        a, c = member_id(), member_id()
        ra = join_assigned(conn, group, a, [topic], 3)
        rc = join_assigned(conn, group, c, [topic], 1)
        ra = heartbeat(conn, group, a, ra.member_epoch)
        assert ra.error_code == Errors.NONE and ra.member_epoch == rc.member_epoch
        before = describe(conn, group)
        members = {mm.member_id: (mm.member_epoch, parts(mm.assignment)) for mm in before.members}
        assert sorted(p for _e, a_ in members.values() for ps in a_.values() for p in ps) == [0, 1, 2]
        conn.close()

        b.restart()
        conn = connect(b)
        after = describe(conn, group)
        assert (after.error_code, after.group_epoch, after.assignment_epoch) == \
            (Errors.NONE, before.group_epoch, before.assignment_epoch)
        assert {mm.member_id: (mm.member_epoch, parts(mm.assignment)) for mm in after.members} == members
        # The members heartbeat on with the epochs they had: no rejoin.
        for mid in (a, c):
            r = heartbeat(conn, group, mid, members[mid][0])
            assert (r.error_code, r.member_epoch) == (Errors.NONE, members[mid][0]), r
        # A full request (topics set) gets the assignment it had.
        r = heartbeat(conn, group, a, members[a][0], [topic])
        assert (r.member_epoch, parts(r.assignment)) == members[a]

        # A member that does not come back is removed when its session ends,
        # and its partition goes to the one that does.
        epoch_a = r.member_epoch
        deadline = time.monotonic() + TIMEOUT
        while [mm.member_id for mm in describe(conn, group).members] != [a]:
            assert time.monotonic() < deadline, "the silent member still in the group"
            r = heartbeat(conn, group, a, epoch_a)
            assert r.error_code == Errors.NONE, r
            epoch_a = r.member_epoch
            time.sleep(0.3)
        r = heartbeat(conn, group, a, epoch_a)
        assert r.error_code == Errors.NONE and r.member_epoch > members[a][0]
        assert list(parts(r.assignment).values()) == [[0, 1, 2]]
        conn.close()


def test_a_data_dir_with_the_former_metadata_hash_bumps_the_group_epoch_once(tmp_path, monkeypatch):
    """A share group written by an earlier pylog (its own hash): reloaded
    with its member, the next heartbeat finds the hash changed and moves the
    group epoch once, as Kafka's upgrade to KIP-1101's hash does."""
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        create_topic(b, topic, 2)
        mid = member_id()
        with monkeypatch.context() as p:
            p.setattr(TopicHashes, "group_hash", lambda self, topics: former_metadata_hash(topics))
            with closing(connect(b)) as conn:
                r = join_assigned(conn, group, mid, [topic], 2)
            [(tid, _ps)] = parts(r.assignment).items()
            old = former_metadata_hash({topic: (tid, 2)})
            assert latest(share_records(b, group))[(11, None)].metadata_hash == old
        epoch = r.member_epoch
        b.restart()
        with closing(connect(b)) as conn:
            d = describe(conn, group)
            assert (d.group_epoch, [mm.member_id for mm in d.members]) == (epoch, [mid])
            again = heartbeat(conn, group, mid, epoch)
            assert (again.error_code, again.member_epoch) == (Errors.NONE, epoch + 1)
            steady = heartbeat(conn, group, mid, epoch + 1)
            assert (steady.error_code, steady.member_epoch) == (Errors.NONE, epoch + 1)
            d = describe(conn, group)
            assert (d.group_epoch, d.assignment_epoch) == (epoch + 1, epoch + 1)
            [mm] = d.members
            assert (mm.member_id, parts(mm.assignment)) == (mid, {tid: [0, 1]})
        epochs = [v for k, _, v in share_records(b, group) if k == 11]
        assert [v.metadata_hash for v in epochs[-2:]] == [
            old, compute_group_hash({topic: compute_topic_hash(topic, tid, [[], []])})]


def test_an_empty_share_group_keeps_its_id_across_a_restart_until_deleted(tmp_path):
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        create_topic(b, topic)
        conn = connect(b)
        mid = member_id()
        join_assigned(conn, group, mid, [topic])
        assert heartbeat(conn, group, mid, -1).error_code == Errors.NONE
        conn.close()
        b.restart()
        conn = connect(b)
        d = describe(conn, group)
        assert (d.error_code, d.group_state, d.members) == (Errors.NONE, "Empty", [])
        join = m.JoinGroupRequest(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000,
                                  member_id="", protocol_type="consumer",
                                  protocols=[m.JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"")])
        assert conn.request(join, api_version=5).error_code == Errors.INCONSISTENT_GROUP_PROTOCOL
        r = conn.request(m.DeleteGroupsRequest(groups_names=[group]), api_version=2)
        assert [x.error_code for x in r.results] == [Errors.NONE]
        conn.close()
        b.restart()
        conn = connect(b)
        assert describe(conn, group).error_code == Errors.GROUP_ID_NOT_FOUND
        assert conn.request(join, api_version=5).error_code == Errors.MEMBER_ID_REQUIRED
        conn.close()


def test_a_latest_group_is_initialized_before_its_first_assignment(tmp_path):
    """share.auto.offset.reset=latest is resolved when the share-partition is
    initialized, which precedes the assignment: what is produced after the
    member holds the partition is delivered, what was there before is not."""
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        create_topic(b, topic)
        produce(b, topic, 4)
        conn = connect(b)
        r = join_assigned(conn, group, member_id(), [topic])
        [tid] = parts(r.assignment)
        R = m.DescribeShareGroupOffsetsRequest
        d = conn.request(R(groups=[R.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=None)]),
                         api_version=1).groups[0]
        assert [(t.topic_id, [(p.partition_index, p.start_offset) for p in t.partitions]) for t in d.topics] == \
            [(tid, [(0, 4)])]
        conn.close()


def test_a_share_consumer_keeps_its_membership_across_a_restart(tmp_path):
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=SESSIONS) as b:
        create_topic(b, topic)
        set_group_configs(b, group, share_auto_offset_reset="earliest")
        produce(b, topic, 10)
        c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group})
        try:
            c.subscribe([topic])
            got = []

            def poll_until(n, what):
                deadline = time.monotonic() + TIMEOUT
                while len(got) < n:
                    assert time.monotonic() < deadline, f"{what}: {len(got)} records"
                    for msg in c.poll(0.2):
                        assert msg.error() is None, msg.error()
                        got.append(msg.offset())
            poll_until(10, "the first 10")
            c.commit_sync()
            conn = connect(b)
            [mm] = describe(conn, group).members
            conn.close()
            b.restart()
            produce(b, topic, 10, start=10)
            poll_until(20, "the 10 produced after the restart")
            c.commit_sync()
            conn = connect(b)
            d = describe(conn, group)
            conn.close()
            # The same member, never fenced or rejoined: its epoch is the one it had.
            assert [(x.member_id, x.member_epoch) for x in d.members] == [(mm.member_id, mm.member_epoch)]
            assert sorted(got) == list(range(20))
        finally:
            c.close()


def test_members_survive_a_killed_broker_process(tmp_path):
    """SIGKILL, no clean shutdown: what the heartbeats were answered for had
    been committed to __consumer_offsets, and the next process replays it."""
    topic, group = names()
    data = tmp_path / "data"
    overrides = [f"{k}={v}" for k, v in CONFIG.items()]
    b = BrokerProc(data, overrides=overrides)
    try:
        create_topic(b.bootstrap, topic, 2)
        conn = connect(b.bootstrap)
        a, c = member_id(), member_id()
        join_assigned(conn, group, a, [topic], 2)
        rc = join_assigned(conn, group, c, [topic], 1)
        members = {mm.member_id: (mm.member_epoch, parts(mm.assignment)) for mm in describe(conn, group).members}
        assert set(members) == {a, c} and members[c][0] == rc.member_epoch
        conn.close()
        code, _ = b.signal(signal.SIGKILL)
        assert code == -signal.SIGKILL
        b = BrokerProc(data, port=b.port, overrides=overrides)
        conn = connect(b.bootstrap)
        d = describe(conn, group)
        assert d.error_code == Errors.NONE
        assert {mm.member_id: (mm.member_epoch, parts(mm.assignment)) for mm in d.members} == members
        r = heartbeat(conn, group, c, members[c][0])
        assert (r.error_code, r.member_epoch) == (Errors.NONE, members[c][0])
        conn.close()
    finally:
        b.stop()


def test_new_partitions_of_a_known_topic_start_at_the_log_start(tmp_path):
    """share.auto.offset.reset=latest applies to a topic new to the group; a
    partition added later to a topic the group knows starts at its log start,
    so what is written to it before its initialization is delivered (Kafka's
    coordinator initializes it at offset 0)."""
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        create_topic(b, topic)
        produce(b, topic, 3)                        # before the group: never delivered (latest)
        conn = connect(b)
        mid = member_id()
        r = join_assigned(conn, group, mid, [topic])
        [tid] = parts(r.assignment)
        admin = AdminClient({"bootstrap.servers": str(b)})
        admin.create_partitions([NewPartitions(topic, 2)])[topic].result(30)
        p = Producer({"bootstrap.servers": str(b), "acks": "all"})
        for i in range(4):
            p.produce(topic, b"new-%d" % i, partition=1)
        assert p.flush(30) == 0
        deadline = time.monotonic() + TIMEOUT
        assigned = parts(r.assignment)
        while assigned.get(tid) != [0, 1]:
            assert time.monotonic() < deadline, assigned
            time.sleep(0.1)
            r = heartbeat(conn, group, mid, r.member_epoch)
            assert r.error_code == Errors.NONE, r
            if r.assignment is not None:
                assigned = parts(r.assignment)
        R = m.DescribeShareGroupOffsetsRequest
        d = conn.request(R(groups=[R.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=None)]),
                         api_version=1).groups[0]
        assert [(p.partition_index, p.start_offset) for t in d.topics for p in t.partitions] == [(0, 3), (1, 0)]
        conn.close()


def test_a_state_initialized_at_uninitialized_is_resolved_by_the_leader(tmp_path):
    """A group coordinator whose partition another broker leads initializes
    the share-partition at Kafka's UNINITIALIZED start offset (-1); the
    leader resolves it at share.auto.offset.reset when it loads the state
    (here: latest, the log end then) and writes it. Driven in-process on a
    lone broker: its share coordinator takes the -1 state, then a member
    joins and fetches, and the partition's leader loads it (at that first
    fetch, as Kafka's)."""
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=CONFIG) as b:
        create_topic(b, topic)
        produce(b, topic, 5)
        broker = b.broker
        tid = broker.metadata_cache.topic_ids[topic]

        def on_loop(coro_fn):
            async def run():
                return await coro_fn()
            return asyncio.run_coroutine_threadsafe(run(), broker._loop).result(30)

        def initialize():
            broker.share.coordinator.ensure_topic()
            return broker.share.coordinator.initialize(group, tid, 0, 0, -1)
        deadline = time.monotonic() + TIMEOUT
        while (code := on_loop(initialize)) != Errors.NONE:
            assert time.monotonic() < deadline, code
            time.sleep(0.1)
        produce(b, topic, 2, start=5)
        conn = connect(b)
        R = m.DescribeShareGroupOffsetsRequest
        req = R(groups=[R.DescribeShareGroupOffsetsRequestGroup(group_id=group, topics=[
            R.DescribeShareGroupOffsetsRequestTopic(topic_name=topic, partitions=[0])])])

        def offsets():
            """(start offset, lag) once the group's coordinator answers."""
            while True:
                d = conn.request(req, api_version=1).groups[0]
                if d.error_code not in (Errors.NOT_COORDINATOR, Errors.COORDINATOR_LOAD_IN_PROGRESS):
                    break
                assert time.monotonic() < deadline, d
                time.sleep(0.1)
            assert d.error_code == Errors.NONE, d
            [p] = d.topics[0].partitions
            return p.start_offset, p.lag
        assert offsets() == (-1, -1)
        mid = member_id()
        join_assigned(conn, group, mid, [topic])
        assert offsets() == (-1, -1)
        assert share_fetch(conn, group, mid, 0, [(tid, 0)], max_wait_ms=0).error_code == Errors.NONE
        wait_until(lambda: offsets()[0] == 7, "the leader's load resolved the start offset", timeout=TIMEOUT)
        conn.close()
        b.restart()
        conn = connect(b)
        assert offsets()[0] == 7
        conn.close()
