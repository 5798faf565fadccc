"""The coordinator runtime under the group coordinator, on a real broker:
timers at their deadlines, events of one partition in issue order, state
replayed by a restarted broker. (Replication waits: tests/cluster/
test_coordinator_runtime.py.)"""
from __future__ import annotations

import asyncio
import time

from pylog.client.wire import Connection
from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker

from .conftest import GROUP_CONFIG
from .helpers import create_topic

DEADLINE = 30.0


def wait_for(cond, what, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def run_on_loop(b, coro_fn, timeout=60):
    """Run coro_fn() on the broker's loop; its result."""
    async def inner():
        return await coro_fn()
    return asyncio.run_coroutine_threadsafe(inner(), b.broker._loop).result(timeout)


def conn(b):
    return Connection(b.broker.advertised_host, b.broker.advertised_port, client_id="runtime-test")


def find_coordinator(c, group):
    """FindCoordinator until this broker answers as the group's coordinator, as
    clients do: the first ask only sets off creating __consumer_offsets
    (COORDINATOR_NOT_AVAILABLE meanwhile)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        r = c.request(m.FindCoordinatorRequest(key=group, key_type=0), api_version=1)
        if r.error_code == 0:
            return r
        assert r.error_code == Errors.COORDINATOR_NOT_AVAILABLE, r
        assert time.monotonic() < deadline, f"no coordinator for {group}: {r}"
        time.sleep(0.05)


def join_and_sync(c, group, session_ms):
    """One member joins group (KIP-394 two-step JoinGroup) and syncs; its id."""
    find_coordinator(c, group)
    J = m.JoinGroupRequest
    protos = [J.JoinGroupRequestProtocol(name="range", metadata=b"\x00")]
    r = c.request(J(group_id=group, session_timeout_ms=session_ms, rebalance_timeout_ms=session_ms,
                    member_id="", protocol_type="consumer", protocols=protos), api_version=5)
    assert r.error_code == 79, r          # MEMBER_ID_REQUIRED
    r = c.request(J(group_id=group, session_timeout_ms=session_ms, rebalance_timeout_ms=session_ms,
                    member_id=r.member_id, protocol_type="consumer", protocols=protos), api_version=5)
    assert r.error_code == 0, r
    S = m.SyncGroupRequest
    s = c.request(S(group_id=group, generation_id=r.generation_id, member_id=r.member_id,
                    assignments=[S.SyncGroupRequestAssignment(member_id=r.member_id, assignment=b"a")]),
                  api_version=3)
    assert s.error_code == 0, s
    return r.member_id


def test_a_session_timer_is_armed_at_the_deadline_and_expels_the_member(gbroker):
    b = gbroker
    gc = b.broker.groups
    with conn(b) as c:
        mid = join_and_sync(c, "g-timer", 4000)

        def deadlines():
            g = gc.groups["g-timer"]
            member = g.members[mid]
            index = gc.partition_for("g-timer")
            return (member.last_heartbeat + member.session_timeout_ms / 1000,
                    gc.runtime.timer_deadline(index, ("group", "g-timer")), gc.runtime.clock())
        due, armed, now = b.broker.call(deadlines)
        # The group's timer is due no later than the session's end (a 50 ms tick
        # would be up to a tick late); when a deadline moved later since it was
        # armed, it fires early, finds nothing due and re-arms at the new one.
        assert armed is not None and armed <= due + 1e-6, (armed, due)
        assert due > now

        def member_or_clock():
            g = gc.groups.get("g-timer")
            return (g is not None and mid in g.members), gc.runtime.clock()
        # No heartbeat: the member stays until its deadline, and is expelled after it.
        deadline = time.monotonic() + DEADLINE
        while True:
            present, clock = b.broker.call(member_or_clock)
            if not present:
                assert clock >= due
                break
            assert time.monotonic() < deadline, "the member never expired"
            time.sleep(0.02)


def test_runtime_timers_fire_at_their_deadline_and_die_with_their_partition(gbroker):
    b = gbroker
    gc = b.broker.groups
    with conn(b) as c:
        find_coordinator(c, "g-any")
    rt = gc.runtime
    index = b.broker.call(lambda: rt.active_partitions()[0])

    async def scenario():
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        deadline = rt.clock() + 0.2
        rt.schedule_timer(index, "probe", deadline, lambda: fired.set_result(rt.clock()))
        assert rt.timer_deadline(index, "probe") == deadline
        at = await asyncio.wait_for(fired, DEADLINE)
        # A timer of a partition that unloads never fires; reloading arms none of the old ones.
        never = loop.create_future()
        rt.schedule_timer(index, "gone", rt.clock() + 0.05, lambda: never.set_result(True))
        rt.on_resign(index)
        assert not rt.is_active(index)
        rt.on_become_leader(index)
        assert rt.timer_deadline(index, "gone") is None
        await asyncio.sleep(0.3)
        return deadline, at, never.done()
    deadline, at, never_fired = run_on_loop(b, scenario)
    # uvloop keeps timers in whole milliseconds: one may fire up to 1 ms
    # before its deadline (seen: 10 us early on a loaded machine).
    assert at >= deadline - 0.001
    assert not never_fired


def test_events_of_one_partition_run_in_issue_order(gbroker):
    b = gbroker
    create_topic(str(b), "rt-order", 1)
    with conn(b) as c:
        find_coordinator(c, "g-order")
    gc = b.broker.groups
    n = 50

    async def one(i):
        r = gc.commit_offsets_replicated("g-order", -1, "", None, [("rt-order", 0, i, -1, "")])
        return r if isinstance(r, dict) else await r

    async def commit_all():
        # Issued in order, all at once: each one appends, then (if need be) waits for the HW.
        return await asyncio.gather(*(one(i) for i in range(n)))
    results = run_on_loop(b, commit_all)
    assert all(r == {("rt-order", 0): 0} for r in results), results
    assert b.broker.call(lambda: gc.fetch_offsets("g-order", [("rt-order", 0)]))[("rt-order", 0)].offset == n - 1

    def in_log():
        index = gc.partition_for("g-order")
        out = []
        for rec in b.broker.log_manager.partitions[(ot.TOPIC, index)].log.scan():
            d = ot.decode(rec)
            if d is not None and d[0] == "offset" and d[1] == ("g-order", "rt-order", 0):
                out.append(d[2].offset)
            del rec
        return out
    assert b.broker.call(in_log) == list(range(n))


def test_a_restarted_broker_replays_its_partitions(tmp_path):
    with running_broker(data_dir=str(tmp_path), config=GROUP_CONFIG) as b:
        create_topic(str(b), "rt-restart", 2)
        with conn(b) as c:
            find_coordinator(c, "g-restart")
            O = m.OffsetCommitRequest
            r = c.request(O(group_id="g-restart", generation_id_or_member_epoch=-1, member_id="", topics=[
                O.OffsetCommitRequestTopic(name="rt-restart", partitions=[
                    O.OffsetCommitRequestPartition(partition_index=p, committed_offset=40 + p,
                                                   committed_metadata="m") for p in (0, 1)])]),
                api_version=2)
            assert all(p.error_code == 0 for t in r.topics for p in t.partitions), r
    with running_broker(data_dir=str(tmp_path), config=GROUP_CONFIG) as b:
        gc = b.broker.groups
        n = b.broker.log_manager.topics[ot.TOPIC].num_partitions
        # A lone broker leads every partition: each is loaded by the runtime at start.
        assert b.broker.call(gc.runtime.active_partitions) == list(range(n))
        with conn(b) as c:
            F = m.OffsetFetchRequest
            r = c.request(F(group_id="g-restart", topics=[
                F.OffsetFetchRequestTopic(name="rt-restart", partition_indexes=[0, 1])]), api_version=3)
        assert r.error_code == 0
        assert sorted((p.partition_index, p.committed_offset) for t in r.topics for p in t.partitions) == \
            [(0, 40), (1, 41)]
