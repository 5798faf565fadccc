"""The coordinator runtime's per-partition event queue and its loading in
steps, on a real broker over real sockets: requests pipelined on one
connection apply in arrival order, a parked event of one partition does not
hold up another partition, and a big __consumer_offsets partition loads
after a restart while the broker keeps answering (the group meanwhile gets
COORDINATOR_LOAD_IN_PROGRESS, then its offsets)."""
from __future__ import annotations

import socket
import struct
import time

from pylog.client.wire import Connection
from pylog.groups import offsets_topic as ot
from pylog.protocol import messages as m
from pylog.protocol.framing import decode_response, encode_request
from pylog.testing import running_broker

from .conftest import GROUP_CONFIG
from .helpers import create_topic
from .test_runtime import find_coordinator, join_and_sync

DEADLINE = 60.0
NONE, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS = 0, 25, 27
COORDINATOR_LOAD_IN_PROGRESS, MEMBER_ID_REQUIRED = 14, 79
J, S, H, O, F = (m.JoinGroupRequest, m.SyncGroupRequest, m.HeartbeatRequest, m.OffsetCommitRequest,
                 m.OffsetFetchRequest)
PROTOS = [J.JoinGroupRequestProtocol(name="range", metadata=b"\x00")]


def conn(b):
    return Connection(b.broker.advertised_host, b.broker.advertised_port, client_id="queue-test")


def _read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "the broker closed the connection"
        buf += chunk
    return bytes(buf)


def _pipelined(b, requests):
    """Send (body, version) requests in ONE write on a fresh connection (the
    broker reads them together), then read their responses in order."""
    with socket.create_connection((b.broker.advertised_host, b.broker.advertised_port), timeout=DEADLINE) as s:
        s.sendall(b"".join(encode_request(i, body.API_KEY, v, body, "queue-test")
                           for i, (body, v) in enumerate(requests)))
        out = []
        for body, v in requests:
            size = struct.unpack(">i", _read_exact(s, 4))[0]
            out.append(decode_response(memoryview(_read_exact(s, size)), body.API_KEY, v)[1])
        return out


def _member_id(c, group, session_ms=10000):
    find_coordinator(c, group)
    r = c.request(J(group_id=group, session_timeout_ms=session_ms, rebalance_timeout_ms=session_ms,
                    member_id="", protocol_type="consumer", protocols=PROTOS), api_version=5)
    assert r.error_code == MEMBER_ID_REQUIRED, r
    return r.member_id


def test_a_heartbeat_pipelined_behind_a_join_sees_the_joined_member(gbroker):
    """The JoinGroup adds the member (and starts the first rebalance) before
    the Heartbeat read in the same packet runs: the Heartbeat is told of the
    rebalance, not that the member is unknown. (Before the queue, the
    JoinGroup's body started a loop turn later and the Heartbeat answered
    UNKNOWN_MEMBER_ID.)"""
    b = gbroker
    group = "q-pipelined"
    with conn(b) as c:
        mid = _member_id(c, group)
    join = J(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000, member_id=mid,
             protocol_type="consumer", protocols=PROTOS)
    hb = H(group_id=group, generation_id=0, member_id=mid)
    joined, beat = _pipelined(b, [(join, 5), (hb, 3)])
    assert beat.error_code == REBALANCE_IN_PROGRESS, beat
    assert joined.error_code == NONE and joined.member_id == mid and joined.leader == mid, joined
    # The join completed the rebalance; a SyncGroup pipelined behind a
    # Heartbeat of the new generation is answered in order too.
    sync = S(group_id=group, generation_id=joined.generation_id, member_id=mid,
             assignments=[S.SyncGroupRequestAssignment(member_id=mid, assignment=b"mine")])
    beat, synced = _pipelined(b, [(H(group_id=group, generation_id=joined.generation_id, member_id=mid), 3),
                                  (sync, 3)])
    assert beat.error_code == NONE and synced.error_code == NONE and bytes(synced.assignment) == b"mine"


def _two_groups_on_different_partitions(gc, b):
    n = b.broker.call(gc.offsets_partition_count)
    a = "q-park-a"
    pa = gc.partition_for(a)
    for i in range(1000):
        other = f"q-park-b{i}"
        if ot.partition_for(other, n) != pa:
            return a, other, pa, ot.partition_for(other, n)
    raise AssertionError("every group on one partition")


def test_a_parked_join_holds_up_neither_its_partition_nor_another(gbroker):
    """A JoinGroup waiting for a rebalance (its answer deferred) lets the next
    events of its own partition run and those of another partition finish
    whole (join, sync, commit) before it is answered."""
    b = gbroker
    gc = b.broker.groups
    create_topic(str(b), "q-park", 1)
    ga, gb, pa, pb = _two_groups_on_different_partitions(gc, b)
    assert pa != pb
    with conn(b) as c1, conn(b) as c2, conn(b) as c3:
        first = join_and_sync(c1, ga, 10000)
        newcomer = _member_id(c2, ga)
        # Parks: the group rebalances and waits for `first` to rejoin.
        c2.send(J(group_id=ga, session_timeout_ms=10000, rebalance_timeout_ms=20000, member_id=newcomer,
                  protocol_type="consumer", protocols=PROTOS), api_version=5)
        deadline = time.monotonic() + DEADLINE
        while c1.request(H(group_id=ga, generation_id=1, member_id=first), api_version=3).error_code \
                != REBALANCE_IN_PROGRESS:   # the same partition's events still run
            assert time.monotonic() < deadline, "the newcomer's JoinGroup never started the rebalance"
            time.sleep(0.02)
        # Another partition: a whole round while the JoinGroup is parked.
        mb = join_and_sync(c3, gb, 10000)
        r = c3.request(O(group_id=gb, generation_id_or_member_epoch=1, member_id=mb, topics=[
            O.OffsetCommitRequestTopic(name="q-park", partitions=[
                O.OffsetCommitRequestPartition(partition_index=0, committed_offset=7, committed_metadata="")])]),
            api_version=2)
        assert r.topics[0].partitions[0].error_code == NONE, r
        assert b.broker.call(lambda: ga in gc.groups and gc.groups[ga].members[newcomer].join_future is not None
                             and not gc.groups[ga].members[newcomer].join_future.done())
        # `first` rejoins: both are answered, in the new generation.
        r1 = c1.request(J(group_id=ga, session_timeout_ms=10000, rebalance_timeout_ms=20000, member_id=first,
                          protocol_type="consumer", protocols=PROTOS), api_version=5)
        r2 = c2.receive()
        assert r1.error_code == NONE and r2.error_code == NONE, (r1, r2)
        assert r1.generation_id == r2.generation_id == 2


def _fetch(c, group, topic, partitions):
    return c.request(F(group_id=group, topics=[F.OffsetFetchRequestTopic(name=topic, partition_indexes=partitions)]),
                     api_version=3)


def test_a_big_offsets_partition_loads_in_steps_while_the_broker_answers(tmp_path):
    """200k offset commits in one __consumer_offsets partition, then a
    restart: while the partition replays, the group's OffsetFetch gets
    COORDINATOR_LOAD_IN_PROGRESS and an ApiVersions sent between two such
    answers is answered (the load yields to the loop); then the offsets come
    back. (Before, the replay ran in one go inside start-up: no request was
    ever answered with COORDINATOR_LOAD_IN_PROGRESS.)"""
    group, topic, parts, total, batch = "q-load", "q-load-t", 4, 200_000, 5000
    with running_broker(data_dir=str(tmp_path), config=GROUP_CONFIG) as b:
        create_topic(str(b), topic, parts)
        gc = b.broker.groups
        with conn(b) as c:
            find_coordinator(c, group)
        index = gc.partition_for(group)
        now = int(time.time() * 1000)
        key = [ot.offset_key(group, topic, p) for p in range(parts)]

        def write(start):
            # The coordinator's own writer, as an OffsetCommit's event would.
            return gc.runtime.append(index, [key[i % parts] for i in range(start, start + batch)],
                                     [ot.offset_value(ot.OffsetAndMetadata(i, -1, "", now))
                                      for i in range(start, start + batch)])
        for start in range(0, total, batch):
            b.broker.call(write, start)
        b.restart()
        loading = answered_between = 0
        deadline = time.monotonic() + 300
        with conn(b) as c:
            while True:
                r = _fetch(c, group, topic, list(range(parts)))
                if r.error_code == NONE:
                    break
                assert r.error_code == COORDINATOR_LOAD_IN_PROGRESS, r
                if not loading:
                    # As Kafka during a load: FindCoordinator names this
                    # broker, Heartbeat is answered blindly, ListGroups (no
                    # partial list) and the group's APIs are retriable.
                    # (The commit writes what the log ends with anyway, in
                    # case the load finished meanwhile: then nothing is asserted.)
                    fc = c.request(m.FindCoordinatorRequest(key=group, key_type=0), api_version=1)
                    hb = c.request(H(group_id=group, generation_id=1, member_id="x"), api_version=3)
                    lg = c.request(m.ListGroupsRequest(), api_version=3)
                    cm = c.request(O(group_id=group, generation_id_or_member_epoch=-1, member_id="", topics=[
                        O.OffsetCommitRequestTopic(name=topic, partitions=[O.OffsetCommitRequestPartition(
                            partition_index=0, committed_offset=total - parts, committed_metadata="")])]),
                        api_version=2)
                    js = c.request(J(group_id=group, session_timeout_ms=10000, rebalance_timeout_ms=10000,
                                     member_id="", protocol_type="consumer", protocols=PROTOS), api_version=5)
                    if _fetch(c, group, topic, [0]).error_code == COORDINATOR_LOAD_IN_PROGRESS:
                        assert fc.error_code == NONE and hb.error_code == NONE, (fc, hb)
                        assert lg.error_code == COORDINATOR_LOAD_IN_PROGRESS and not lg.groups, lg
                        assert cm.topics[0].partitions[0].error_code == COORDINATOR_LOAD_IN_PROGRESS, cm
                        assert js.error_code == COORDINATOR_LOAD_IN_PROGRESS, js
                loading += 1
                assert c.request(m.ApiVersionsRequest(), api_version=0).error_code == NONE
                if _fetch(c, group, topic, [0]).error_code == COORDINATOR_LOAD_IN_PROGRESS:
                    answered_between += 1
                assert time.monotonic() < deadline, "the partition never finished loading"
        assert loading and answered_between, (loading, answered_between)
        # The last commit of each partition wins.
        got = sorted((p.partition_index, p.committed_offset) for t in r.topics for p in t.partitions)
        assert got == [(p, max(i for i in range(total - parts, total) if i % parts == p)) for p in range(parts)]
        assert b.broker.call(lambda: index in gc.runtime.active_partitions())


def test_a_partition_unloaded_during_its_load_stays_unloaded_until_led_again(gbroker):
    """Leadership lost in the middle of a load (LeaderAndIsr can say so at any
    time): the load stops, the partition answers NOT_COORDINATOR and keeps
    none of the half-replayed groups; led again, it loads whole."""
    b = gbroker
    gc = b.broker.groups
    rt = gc.runtime
    group, topic, total, batch = "q-unload", "q-unload-t", 30_000, 5000
    create_topic(str(b), topic, 1)
    with conn(b) as c:
        find_coordinator(c, group)
    index = gc.partition_for(group)
    now = int(time.time() * 1000)
    key = ot.offset_key(group, topic, 0)
    for start in range(0, total, batch):
        b.broker.call(lambda s=start: rt.append(index, [key] * batch, [
            ot.offset_value(ot.OffsetAndMetadata(i, -1, "", now)) for i in range(s, s + batch)]))

    def reload_then_lose_it():
        rt.on_resign(index)
        rt.on_become_leader(index)
        loading = rt.partition_error(index)
        rt.on_resign(index)
        return loading, rt.partition_error(index)
    assert b.broker.call(reload_then_lose_it) == (COORDINATOR_LOAD_IN_PROGRESS, 16)
    time.sleep(0.5)   # the cancelled load would have finished by now
    assert b.broker.call(lambda: (rt.partition_error(index), group in gc.groups)) == (16, False)
    with conn(b) as c:
        assert _fetch(c, group, topic, [0]).error_code == 16
        b.broker.call(rt.on_become_leader, index)
        deadline = time.monotonic() + DEADLINE
        while (r := _fetch(c, group, topic, [0])).error_code == COORDINATOR_LOAD_IN_PROGRESS:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert r.error_code == NONE and r.topics[0].partitions[0].committed_offset == total - 1, r


def test_events_scheduled_by_an_event_that_raises_still_run_in_order(gbroker):
    """An event that schedules another on its partition and then raises (a
    bug in a handler) must not strand the one it scheduled: it runs at once,
    before any event scheduled later, and its caller gets its result. (They
    stayed queued until the partition's next event, and then ran after it.)"""
    import asyncio

    b = gbroker
    rt = b.broker.groups.runtime
    with conn(b) as c:
        find_coordinator(c, "q-raises")      # __consumer_offsets exists and is loaded
    index = b.broker.call(b.broker.groups.partition_for, "q-raises")
    ran, waits = [], []

    def nested():
        ran.append("nested")
        return "nested's result"

    def outer():
        ran.append("outer")
        waits.append(asyncio.ensure_future(rt.schedule(index, nested)))
        raise RuntimeError("a handler's bug")

    def later():
        ran.append("later")

    def go():
        try:
            rt.schedule(index, outer)
        except RuntimeError:
            pass
        else:
            raise AssertionError("the event's exception did not propagate")
        rt.schedule(index, later)
        return list(ran)

    assert b.broker.call(go) == ["outer", "nested", "later"]

    async def result():
        return await asyncio.wait_for(waits[0], DEADLINE)
    assert asyncio.run_coroutine_threadsafe(result(), b.broker._loop).result(DEADLINE + 5) == "nested's result"
