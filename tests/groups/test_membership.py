"""Group membership with confluent-kafka (librdkafka) consumers: eager
assignment across members joining and leaving, a SIGKILLed member expelled
after its session timeout, cooperative-sticky incremental rebalances, and
static membership (KIP-345): restart without rebalance, fencing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from confluent_kafka import KafkaError

from .helpers import Pump, close_all, create_topic, group_consumer, group_state, parts

ALL6 = set(range(6))


def _disjoint_cover(assignments, universe):
    union = set()
    for a in assignments:
        assert not (union & a), f"overlapping assignments: {assignments}"
        union |= a
    return union == universe


def test_three_consumers_split_six_partitions_then_two(gbroker, topic, group, group_log):
    create_topic(gbroker, topic, 6)
    cs = [group_consumer(gbroker, group, {"client.id": f"member-{i}"}) for i in range(3)]
    pump = Pump(*cs)
    try:
        for c in cs:
            c.subscribe([topic])

        def describe():
            return f"assignments {[sorted(parts(c)) for c in cs]}; {group_state(gbroker, group)}"

        def balanced(members, size):
            a = [parts(c) for c in members]
            return all(len(x) == size for x in a) and _disjoint_cover(a, ALL6)

        pump.until(lambda: balanced(cs, 2), "2 partitions each", describe=describe)
        g = gbroker.broker.groups.groups[group]
        assert g.state.value == "Stable" and len(g.members) == 3
        before = [parts(c) for c in cs]
        assert _disjoint_cover(before, ALL6)

        # One member leaves (close() sends LeaveGroup): the two others split its share.
        leaving = cs[2]
        pump.remove(leaving)
        leaving.close()
        survivors = cs[:2]
        pump.until(lambda: balanced(survivors, 3), "3 partitions each after one left", describe=describe)
        assert len(gbroker.broker.groups.groups[group].members) == 2
        # It went by LeaveGroup, not by a session expiry.
        msgs = [r.getMessage() for r in group_log.records if r.name == "pylog.groups" and group in r.getMessage()]
        assert any("left the group" in x for x in msgs), msgs
        assert not any("expired" in x for x in msgs), msgs
    finally:
        close_all(*cs)
    assert pump.errors == {k: [] for k in pump.errors}


DOOMED = textwrap.dedent("""
    import sys
    from confluent_kafka import Consumer
    bootstrap, group, topic = sys.argv[1:4]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "doomed",
                  "session.timeout.ms": 2000, "heartbeat.interval.ms": 300,
                  "max.poll.interval.ms": 10000, "enable.auto.commit": False})
    def on_assign(consumer, partitions):
        print("ASSIGNED", " ".join(str(p.partition) for p in partitions), flush=True)
    c.subscribe([topic], on_assign=on_assign)
    while True:
        c.poll(0.1)
""")


def test_sigkilled_member_expelled_after_session_timeout(gbroker, topic, group, group_log):
    create_topic(gbroker, topic, 6)
    proc = subprocess.Popen([sys.executable, "-c", DOOMED, str(gbroker), group, topic],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []

    def reader():
        for line in proc.stdout:
            lines.append(line.strip())
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    survivor = group_consumer(gbroker, group, {"client.id": "survivor"})
    pump = Pump(survivor)
    try:
        survivor.subscribe([topic])

        def doomed_parts():
            last = [ln for ln in lines if ln.startswith("ASSIGNED")]
            return set(map(int, last[-1].split()[1:])) if last else None

        def describe():
            return f"survivor {sorted(parts(survivor))}, doomed {doomed_parts()}; {group_state(gbroker, group)}"

        pump.until(lambda: len(parts(survivor)) == 3 and doomed_parts() is not None
                   and _disjoint_cover([parts(survivor), doomed_parts()], ALL6),
                   "the two members to share the partitions", describe=describe)
        g = gbroker.broker.groups.groups[group]
        doomed_ids = [mid for mid, m in g.members.items() if m.client_id == "doomed"]
        assert len(doomed_ids) == 1
        gen = g.generation_id

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed_at = time.monotonic()
        pump.until(lambda: parts(survivor) == ALL6, "the survivor to get all 6 partitions",
                   describe=describe)
        took = time.monotonic() - killed_at
        g = gbroker.broker.groups.groups[group]
        assert list(g.members) != doomed_ids and doomed_ids[0] not in g.members
        assert g.generation_id > gen
        expired = [r.getMessage() for r in group_log.records
                   if r.name == "pylog.groups" and doomed_ids[0] in r.getMessage() and "expired" in r.getMessage()]
        assert expired, [r.getMessage() for r in group_log.records if r.name == "pylog.groups"]
        # Expelled by the session timeout (2 s), not earlier (nothing told the broker).
        assert took >= 1.5, took
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        t.join(10)
        proc.stdout.close()
        close_all(survivor)


def test_cooperative_sticky_moves_only_what_it_must(gbroker, topic, group):
    create_topic(gbroker, topic, 6)
    events: dict[str, list] = {}
    owned: dict[str, set] = {}

    def make(name):
        events[name], owned[name] = [], set()
        c = group_consumer(gbroker, group, {"client.id": name,
                                            "partition.assignment.strategy": "cooperative-sticky"})

        def on_assign(consumer, partitions):
            ps = {p.partition for p in partitions}
            assert not (ps & owned[name]), f"{name} assigned partitions it already owns: {ps}"
            owned[name] |= ps
            events[name].append(("assign", ps))

        def on_revoke(consumer, partitions):
            ps = {p.partition for p in partitions}
            assert ps <= owned[name], f"{name} revoked partitions it does not own: {ps}"
            owned[name] -= ps
            events[name].append(("revoke", ps))

        def on_lost(consumer, partitions):
            events[name].append(("lost", {p.partition for p in partitions}))

        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        return c

    def describe():
        return f"owned {owned}; events {events}; {group_state(gbroker, group)}"

    c1, c2 = make("c1"), make("c2")
    pump = Pump(c1, c2)
    c3 = None
    try:
        pump.until(lambda: len(owned["c1"]) == 3 and len(owned["c2"]) == 3
                   and _disjoint_cover([owned["c1"], owned["c2"]], ALL6), "3 partitions each", describe=describe)
        assert parts(c1) == owned["c1"] and parts(c2) == owned["c2"]
        g = gbroker.broker.groups.groups[group]
        assert g.protocol_name == "cooperative-sticky"
        s1, s2 = set(owned["c1"]), set(owned["c2"])
        mark = {n: len(e) for n, e in events.items()}
        gen = g.generation_id

        c3 = make("c3")
        pump.add(c3)
        pump.until(lambda: all(len(owned[n]) == 2 for n in ("c1", "c2", "c3"))
                   and _disjoint_cover([owned[n] for n in ("c1", "c2", "c3")], ALL6),
                   "2 partitions each", describe=describe)
        # Give a (wrong) extra rebalance the chance to show up.
        pump.run_for(1.0)
        assert all(len(owned[n]) == 2 for n in ("c1", "c2", "c3")), describe()
        for name, before in (("c1", s1), ("c2", s2)):
            after = owned[name]
            assert after <= before, f"{name} got new partitions: {before} -> {after}"
            later = events[name][mark[name]:]
            assert not [e for e in later if e[0] == "lost"], later
            revoked = set().union(*[ps for kind, ps in later if kind == "revoke"])
            # Only the moved partition was revoked; the kept ones never were.
            assert revoked == before - after, (name, later)
            assert len(revoked) == 1, (name, later)
            assert not [e for e in later if e[0] == "assign" and e[1]], (name, later)
        assert owned["c3"] == (s1 - owned["c1"]) | (s2 - owned["c2"])
        assert parts(c1) == owned["c1"] and parts(c2) == owned["c2"] and parts(c3) == owned["c3"]
        # Incremental: the revocation round and the assignment round.
        assert gbroker.broker.groups.groups[group].generation_id >= gen + 2
    finally:
        close_all(c1, c2, *([c3] if c3 else []))
    assert pump.errors == {k: [] for k in pump.errors}


def test_static_member_restart_causes_no_rebalance_and_duplicate_is_fenced(gbroker, topic, group):
    create_topic(gbroker, topic, 6)
    revokes: dict[str, list] = {}
    errors: dict[str, list] = {}

    def make(name, instance_id=None):
        revokes[name], errors[name] = [], []
        conf = {"client.id": name, "error_cb": lambda e: errors[name].append(e)}
        if instance_id:
            conf["group.instance.id"] = instance_id
        c = group_consumer(gbroker, group, conf)
        c.subscribe([topic], on_revoke=lambda consumer, ps: revokes[name].append({p.partition for p in ps}))
        return c

    def describe():
        return f"revokes {revokes}; errors {errors}; {group_state(gbroker, group)}"

    a = make("a1", "instance-a")
    b = make("b")
    pump = Pump(a, b)
    live = [a, b]
    try:
        pump.until(lambda: len(parts(a)) == 3 and len(parts(b)) == 3, "3 partitions each", describe=describe)
        g = gbroker.broker.groups.groups[group]
        pump.until(lambda: g.state.value == "Stable", "a Stable group", describe=describe)
        gen = g.generation_id
        a_parts, b_parts = parts(a), parts(b)
        b_revokes = len(revokes["b"])

        # A static member's close() sends no LeaveGroup; it comes back within its session timeout.
        pump.remove(a)
        a.close()
        live.remove(a)
        assert len(g.members) == 2, "the static member left the group on close()"
        a2 = make("a2", "instance-a")
        live.append(a2)
        pump.add(a2)
        pump.until(lambda: parts(a2) == a_parts, "the restarted static member to get its partitions back",
                   describe=describe)
        pump.run_for(1.0)
        g = gbroker.broker.groups.groups[group]
        assert g.generation_id == gen, describe()
        assert g.state.value == "Stable"
        assert len(g.members) == 2
        assert parts(b) == b_parts and len(revokes["b"]) == b_revokes, describe()
        assert parts(a2) == a_parts

        # A second live consumer with the same instance id fences the first.
        a3 = make("a3", "instance-a")
        live.append(a3)
        pump.add(a3)

        def fenced(errs):
            # librdkafka raises FENCED_INSTANCE_ID as a fatal error: a _FATAL error event naming it.
            return [e for e in errs if e.code() in (KafkaError.FENCED_INSTANCE_ID, KafkaError._FENCED)
                    or (e.code() == KafkaError._FATAL and "fenced" in e.str().lower())]
        pump.until(lambda: fenced(errors["a2"] + pump.errors[id(a2)]), "a2 to be fenced", describe=describe)
        pump.remove(a2)
        pump.until(lambda: parts(a3) == a_parts, "the newest static member to own the partitions",
                   describe=describe)
        assert not fenced(errors["a3"] + pump.errors[id(a3)]), describe()
        assert parts(b) == b_parts and len(revokes["b"]) == b_revokes, describe()
    finally:
        close_all(*live)
