"""Issue 12 loose ends of the group coordinator, on a real broker:

- DescribeGroups, ListGroups and DeleteGroups are events on the runtime's
  queue of the group's partition, so they see the state every request queued
  before them applied (not the state of the moment they arrived);
- a leader's SyncGroup whose write fails: every member gets Kafka's error for
  a failed group-metadata write, the assignment is not handed out, and the
  group prepares a rebalance (Kafka's classicGroupSyncGroup)."""
from __future__ import annotations

import asyncio
import inspect
import time
import types

from pylog.groups.api import GroupApis
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker

from .conftest import GROUP_CONFIG
from .test_runtime import conn, find_coordinator, join_and_sync

DEADLINE = 60.0


def _on_loop(b, fn):
    """fn() on the broker's loop; a coroutine it returns is awaited there."""
    async def inner():
        out = fn()
        return await out if inspect.isawaitable(out) else out
    return asyncio.run_coroutine_threadsafe(inner(), b.broker._loop).result(DEADLINE)


def _behind_a_leave(b, group, member_id, ask):
    """Inside a running event of group's partition, queue a LeaveGroup for
    member_id, then ask(apis) (a group API): the answer of ask."""
    gc = b.broker.groups
    apis = GroupApis(gc)
    index = gc.partition_for(group)

    def outer():
        left = gc.runtime.schedule(index, gc.leave_group, group, member_id)
        assert inspect.isawaitable(left)   # queued behind this event
        return left, ask(apis)

    async def run():
        left, answer = gc.runtime.schedule(index, outer)
        assert await left == Errors.NONE
        return await answer if inspect.isawaitable(answer) else answer
    return _on_loop(b, run)


def test_describe_list_and_delete_queue_behind_earlier_events(gbroker):
    b = gbroker
    hdr = types.SimpleNamespace(request_api_version=4, client_id="t", peer_host="127.0.0.1")
    for n, (ask, check) in enumerate([
        (lambda a, g: a.describe_groups(hdr, m.DescribeGroupsRequest(groups=[g])),
         lambda r: r.groups[0].group_state == "Empty" and r.groups[0].members == []),
        (lambda a, g: a.list_groups(hdr, m.ListGroupsRequest(states_filter=[])),
         lambda r, g=None: True),
        (lambda a, g: a.delete_groups(hdr, m.DeleteGroupsRequest(groups_names=[g])),
         lambda r: r.results[0].error_code == Errors.NONE),
    ]):
        group = f"g-events-{n}"
        with conn(b) as c:
            mid = join_and_sync(c, group, 10000)
        r = _behind_a_leave(b, group, mid, lambda apis, g=group: ask(apis, g))
        if n == 1:
            listed = {lg.group_id: lg.group_state for lg in r.groups}
            # Seen after the leave: the group is empty, not Stable.
            assert listed.get(group) == "Empty", listed
        else:
            # Answered before the leave (Stable, one member; NON_EMPTY_GROUP)
            # when it is not an event of the group's partition.
            assert check(r), r
    # The deleted group is gone for good: its tombstones were committed.
    with conn(b) as c:
        d = c.request(m.DescribeGroupsRequest(groups=["g-events-2"]), api_version=1)
    assert d.groups[0].group_state == "Dead", d


def test_a_failed_assignment_write_answers_every_member_and_rebalances(tmp_path):
    """The group's record is over the offsets topic's max.message.bytes (the
    broker's socket.request.max.bytes): the write fails with MESSAGE_TOO_LARGE,
    which Kafka answers UNKNOWN_SERVER_ERROR for a group-metadata write (not
    INVALID_COMMIT_OFFSET_SIZE, the offsets' mapping), to the leader and to
    the follower waiting in SyncGroup; the group then prepares a rebalance and
    hands out nothing."""
    limit = 300_000
    cfg = {**GROUP_CONFIG, "socket.request.max.bytes": str(limit), "group.initial.rebalance.delay.ms": "3000"}
    J, S = m.JoinGroupRequest, m.SyncGroupRequest
    group = "g-too-big"
    sub = b"s" * (limit // 2)   # two members' subscriptions exceed the record limit
    with running_broker(config=cfg, data_dir=str(tmp_path)) as b:
        with conn(b) as c1, conn(b) as c2:
            find_coordinator(c1, group)

            def join(c):
                req = dict(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000,
                           protocol_type="consumer", protocols=[J.JoinGroupRequestProtocol(name="range", metadata=sub)])
                r = c.request(J(member_id="", **req), api_version=5)
                assert r.error_code == 79, r
                c.send(J(member_id=r.member_id, **req), api_version=5)
            join(c1)
            join(c2)
            j1, j2 = c1.receive(), c2.receive()
            assert j1.error_code == 0 and j2.error_code == 0, (j1, j2)
            assert j1.generation_id == j2.generation_id and j1.leader == j2.leader, (j1, j2)
            leader, follower = (c1, j1), (c2, j2)
            if j2.member_id == j1.leader:
                leader, follower = follower, leader
            follower[0].send(S(group_id=group, generation_id=follower[1].generation_id,
                                    member_id=follower[1].member_id, assignments=[]), api_version=3)
            # The follower waits in SyncGroup before the leader's arrives.
            fid = follower[1].member_id

            def follower_waits():
                g = b.broker.groups.groups.get(group)
                return g is not None and g.members[fid].sync_future is not None
            deadline = time.monotonic() + DEADLINE
            while not b.broker.call(follower_waits):
                assert time.monotonic() < deadline, "the follower's SyncGroup never arrived"
                time.sleep(0.01)
            ls = leader[0].request(S(group_id=group, generation_id=leader[1].generation_id,
                                     member_id=leader[1].member_id, assignments=[
                                         S.SyncGroupRequestAssignment(member_id=x.member_id, assignment=b"a")
                                         for x in (j1, j2)]), api_version=3)
            fr = follower[0].receive()
            assert ls.error_code == Errors.UNKNOWN_SERVER_ERROR, ls
            assert fr.error_code == Errors.UNKNOWN_SERVER_ERROR, fr
            assert ls.assignment == b"" and fr.assignment == b""
            d = c1.request(m.DescribeGroupsRequest(groups=[group]), api_version=1)
            assert d.groups[0].group_state == "PreparingRebalance", d
            g = b.broker.call(lambda: b.broker.groups.groups[group])
            assert all(mm.assignment == b"" for mm in g.members.values())
