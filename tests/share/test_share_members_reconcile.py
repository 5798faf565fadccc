"""Share-group reconciliation as Kafka's GroupMetadataManager does it
(shareGroupHeartbeat: maybeUpdateTargetAssignment, then maybeReconcile of
the heartbeating member alone): a new target assignment is written when the
group epoch moves, and each member's epoch and partitions (its
ShareGroupCurrentMemberAssignment record) move to it only at that member's
own next heartbeat. A real pylog broker, raw ShareGroupHeartbeats over a
socket, the records read back with a confluent Consumer, restarts between
the target's write and the members' heartbeats."""
from __future__ import annotations

import uuid

from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker

from .test_share_members import describe, latest, parts, share_records
from .wire import CONFIG, connect, create_topic, heartbeat, join_assigned, member_id

# Sessions long enough that no member is removed while the test keeps it
# silent across a restart (60 s is Kafka's group.share.max.session.timeout.ms).
SESSIONS = {**CONFIG, "group.share.session.timeout.ms": "60000"}
PARTITIONS = 6


def names():
    u = uuid.uuid4().hex[:8]
    return f"smr-topic-{u}", f"smr-group-{u}"


def members_of(conn, group):
    """{member id: (member epoch, {topic id: partitions})} as ShareGroupDescribe answers."""
    return {mm.member_id: (mm.member_epoch, parts(mm.assignment)) for mm in describe(conn, group).members}


def written(b, group, since):
    """[(type, member id or None)] of the group's records appended after the first `since`, and their count."""
    recs = share_records(b, group)
    return [(k, getattr(key, "member_id", None)) for k, key, _ in recs[since:]], len(recs)


def target(state, mid):
    return {tp.topic_id: sorted(tp.partitions) for tp in state[(13, mid)].topic_partitions}


def current(state, mid):
    v = state[(14, mid)]
    return v.member_epoch, v.previous_member_epoch, {tp.topic_id: sorted(tp.partitions)
                                                     for tp in v.assigned_partitions}


def two_stable_members(b, conn, topic, group):
    """Members a and c, each at the group epoch with half the partitions:
    (a, c, epoch, topic id, the members as described)."""
    create_topic(b, topic, PARTITIONS)
    a, c = member_id(), member_id()
    ra = join_assigned(conn, group, a, [topic], PARTITIONS)
    rc = join_assigned(conn, group, c, [topic], PARTITIONS // 2)
    ra = heartbeat(conn, group, a, ra.member_epoch)
    assert (ra.error_code, ra.member_epoch) == (Errors.NONE, rc.member_epoch), ra
    [tid] = parts(rc.assignment)
    assert len(parts(ra.assignment)[tid]) == PARTITIONS // 2
    members = members_of(conn, group)
    assert {e for e, _ in members.values()} == {rc.member_epoch}
    return a, c, rc.member_epoch, tid, members


def test_a_joining_member_moves_the_target_at_once_and_each_member_at_its_own_heartbeat(tmp_path):
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=SESSIONS) as b:
        conn = connect(b)
        a, c, epoch, tid, old = two_stable_members(b, conn, topic, group)
        _, seen = written(b, group, 0)

        # A third member joins: the group epoch and the target move at once,
        # the joining member takes its target in its own answer.
        x = member_id()
        rx = heartbeat(conn, group, x, 0, [topic])
        assert (rx.error_code, rx.member_epoch) == (Errors.NONE, epoch + 1), rx
        d = describe(conn, group)
        assert (d.group_epoch, d.assignment_epoch) == (epoch + 1, epoch + 1)
        now = members_of(conn, group)
        assert now[x] == (epoch + 1, parts(rx.assignment)) and len(parts(rx.assignment)[tid]) == PARTITIONS // 3
        # a and c hold what they had, at the epoch they had.
        assert (now[a], now[c]) == (old[a], old[c])

        # The records of that heartbeat: the new member, the epoch, the
        # targets of all three, the target epoch, and the current assignment
        # of the joining member only.
        new, seen = written(b, group, seen)
        assert sorted(new, key=str) == sorted([(10, x), (11, None), (13, a), (13, c), (13, x), (12, None), (14, x)],
                                              key=str), new
        s = latest(share_records(b, group))
        assert (s[(11, None)].epoch, s[(12, None)].assignment_epoch) == (epoch + 1, epoch + 1)
        targets = {mid: target(s, mid) for mid in (a, c, x)}
        assert sorted(p for t in targets.values() for p in t[tid]) == list(range(PARTITIONS))
        assert all(len(t[tid]) == PARTITIONS // 3 for t in targets.values())
        assert current(s, a)[0::2] == old[a] and current(s, c)[0::2] == old[c]

        # a heartbeats: it alone moves to its target, answered with it, and
        # only its current-assignment record is written.
        ra = heartbeat(conn, group, a, epoch)
        assert (ra.error_code, ra.member_epoch, parts(ra.assignment)) == (Errors.NONE, epoch + 1, targets[a]), ra
        new, seen = written(b, group, seen)
        assert new == [(14, a)], new
        s = latest(share_records(b, group))
        assert current(s, a) == (epoch + 1, epoch, targets[a])
        assert current(s, c)[0::2] == old[c]
        now = members_of(conn, group)
        assert (now[a], now[c]) == ((epoch + 1, targets[a]), old[c])

        # Its next heartbeat changes nothing: no assignment in the answer, no record.
        ra = heartbeat(conn, group, a, epoch + 1)
        assert (ra.error_code, ra.member_epoch, ra.assignment) == (Errors.NONE, epoch + 1, None), ra
        assert written(b, group, seen)[0] == []

        # c, still at the previous epoch, is not fenced; it moves at its heartbeat.
        rc = heartbeat(conn, group, c, epoch)
        assert (rc.error_code, rc.member_epoch, parts(rc.assignment)) == (Errors.NONE, epoch + 1, targets[c]), rc
        new, seen = written(b, group, seen)
        assert new == [(14, c)], new
        assert members_of(conn, group) == {mid: (epoch + 1, targets[mid]) for mid in (a, c, x)}
        conn.close()


def test_a_restart_between_the_target_and_the_members_heartbeats_keeps_each_member_where_it_was(tmp_path):
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=SESSIONS) as b:
        conn = connect(b)
        a, c, epoch, tid, old = two_stable_members(b, conn, topic, group)
        x = member_id()
        rx = heartbeat(conn, group, x, 0, [topic])
        assert (rx.error_code, rx.member_epoch) == (Errors.NONE, epoch + 1), rx
        before = members_of(conn, group)
        assert (before[a], before[c]) == (old[a], old[c])
        conn.close()

        b.restart()
        conn = connect(b)
        d = describe(conn, group)
        assert (d.error_code, d.group_epoch, d.assignment_epoch) == (Errors.NONE, epoch + 1, epoch + 1)
        assert members_of(conn, group) == before
        s = latest(share_records(b, group))
        targets = {mid: target(s, mid) for mid in (a, c, x)}
        assert targets[x] == parts(rx.assignment)

        # The target replayed is the one each member moves to at its heartbeat.
        ra = heartbeat(conn, group, a, epoch)
        assert (ra.error_code, ra.member_epoch, parts(ra.assignment)) == (Errors.NONE, epoch + 1, targets[a]), ra
        assert members_of(conn, group)[c] == old[c]
        conn.close()

        # A restart with one member moved and one not: both kept so.
        b.restart()
        conn = connect(b)
        assert members_of(conn, group) == {a: (epoch + 1, targets[a]), c: old[c], x: (epoch + 1, targets[x])}
        rc = heartbeat(conn, group, c, epoch)
        assert (rc.error_code, rc.member_epoch, parts(rc.assignment)) == (Errors.NONE, epoch + 1, targets[c]), rc
        s = latest(share_records(b, group))
        assert current(s, c) == (epoch + 1, epoch, targets[c])
        conn.close()


def test_a_leaving_member_bumps_the_group_epoch_and_the_next_heartbeat_computes_the_target(tmp_path):
    """Kafka's shareGroupFenceMember writes the leaving member's tombstones
    and the bumped group epoch, no target; a remaining member's heartbeat
    computes it and moves that member alone."""
    topic, group = names()
    with running_broker(data_dir=tmp_path, config=SESSIONS) as b:
        conn = connect(b)
        a, c, epoch, tid, old = two_stable_members(b, conn, topic, group)
        _, seen = written(b, group, 0)
        r = heartbeat(conn, group, c, -1)
        assert (r.error_code, r.member_epoch) == (Errors.NONE, -1)
        d = describe(conn, group)
        assert (d.group_epoch, d.assignment_epoch) == (epoch + 1, epoch)
        assert members_of(conn, group) == {a: old[a]}
        new, seen = written(b, group, seen)
        assert sorted(new, key=str) == sorted([(14, c), (13, c), (10, c), (11, None)], key=str), new
        conn.close()

        b.restart()
        conn = connect(b)
        d = describe(conn, group)
        assert (d.group_epoch, d.assignment_epoch) == (epoch + 1, epoch)
        ra = heartbeat(conn, group, a, epoch)
        assert (ra.error_code, ra.member_epoch) == (Errors.NONE, epoch + 1), ra
        assert parts(ra.assignment) == {tid: list(range(PARTITIONS))}
        d = describe(conn, group)
        assert (d.group_epoch, d.assignment_epoch) == (epoch + 1, epoch + 1)
        new, seen = written(b, group, seen)
        assert sorted(new, key=str) == sorted([(13, a), (12, None), (14, a)], key=str), new

        # The last member leaving brings the target epoch along (timestamp 0).
        assert heartbeat(conn, group, a, -1).error_code == Errors.NONE
        s = latest(share_records(b, group))
        assert (s[(11, None)].epoch, s[(12, None)].assignment_epoch, s[(12, None)].assignment_timestamp) == \
            (epoch + 2, epoch + 2, 0)
        conn.close()
