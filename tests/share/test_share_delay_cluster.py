"""Delayed delivery (pylog/share/delivery.py) across a change of the
share-partition's leader: records held back by `pylog.deliver.at`,
`pylog.deliver.after` and the topic's `pylog.delivery.delay.ms` are on the
old leader's books (parked in its in-flight window and written to the share
coordinator as Available) when that leader stops or is SIGKILLed; the new
leader rebuilds their due times from the log, and unmodified
confluent_kafka.ShareConsumers get none of them before due and all of them
after. Due times are spread over 75 s so that some fall due after the new
leader serves, whatever the machine's load (checked: else the test would
prove nothing); lateness is bench P's, not asserted here."""
from __future__ import annotations

import signal
import time
import uuid

import pytest
from confluent_kafka import Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.protocol import messages as m
from pylog.share.coordinator import partition_for, topic_id_text
from tests.cluster.conftest import zk_connect, zookeeper  # noqa: F401 (fixtures)
from tests.cluster.zkcluster import bootstrap, wait_for

from .test_share_cluster import (STATE_PARTITIONS, TIMEOUT, brokers, group_led_by, leaders,  # noqa: F401
                                 state_of, state_topic)
from .test_share_cluster_kill import metadata, processes  # noqa: F401 (processes: a fixture)
from .wire import RETRIABLE, set_group_configs

FIRST_DUE_S, SPREAD_S = 15.0, 75.0      # the delayed records fall due from 15 s to 90 s after they are made
TOPIC_DELAY_MS = 40_000
DEADLINE = FIRST_DUE_S + SPREAD_S + TIMEOUT


def now_ms():
    return int(time.time() * 1000)


def produce_delayed(bootstrap_servers, topic, base, n=12):
    """n plain records, and n delayed by each header (`at` absolute,
    `after` from a timestamp set here); {value: due ms} of the delayed."""
    p = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all", "linger.ms": 5})
    step = SPREAD_S * 1000 / n
    due = {}
    for i in range(n):
        p.produce(topic, b"plain-%d" % i, partition=0)
        at = int(base + FIRST_DUE_S * 1000 + step * i)
        p.produce(topic, b"at-%d" % i, partition=0, headers=[("pylog.deliver.at", str(at).encode())])
        due[b"at-%d" % i] = at
        ts = base - 3000
        after = int(FIRST_DUE_S * 1000 + 3000 + step * i + step / 2)
        p.produce(topic, b"after-%d" % i, partition=0, timestamp=ts,
                  headers=[("pylog.deliver.after", str(after).encode())])
        due[b"after-%d" % i] = ts + after
    assert p.flush(30) == 0
    return due


def produce_topic_delayed(bootstrap_servers, topic, base, n=6):
    """n records into a topic with pylog.delivery.delay.ms, their
    timestamps spread so that they fall due over SPREAD_S; {value: due ms}."""
    p = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all", "linger.ms": 0})
    due = {}
    for i in range(n):
        ts = int(base + FIRST_DUE_S * 1000 - TOPIC_DELAY_MS + SPREAD_S * 1000 * i / n)
        p.produce(topic, b"t-%d" % i, partition=0, timestamp=ts)
        assert p.flush(30) == 0   # one batch each: the topic delay holds a batch until its newest record's due
        due[b"t-%d" % i] = ts + TOPIC_DELAY_MS
    return due


def poll_into(consumers, got):
    """One round of polls: {value: first arrival ms} into got."""
    for c in consumers:
        for msg in c.poll(0.2):
            assert msg.error() is None, msg.error()
            got.setdefault(msg.value(), now_ms())


def collect(consumers, want, got, deadline_s, what):
    deadline = time.monotonic() + deadline_s
    while not want <= set(got):
        assert time.monotonic() < deadline, f"timed out waiting for {what}; missing {sorted(want - set(got))[:6]}"
        poll_into(consumers, got)


def check(got, due, served_at):
    early = {v.decode(): (got[v] - d) for v, d in due.items() if got[v] < d}
    assert not early, f"delivered before due (ms early): {early}"
    # The test proves something only if the new leader served before some were due.
    assert any(d > served_at for d in due.values()), (served_at, sorted(due.values()))


def make_topic(admin, name, assignment, config=None):
    admin.create_topics([NewTopic(name, num_partitions=len(assignment), replica_assignment=assignment,
                                  config=config or {})])[name].result(30)


def finish(consumers, got, due):
    """Once the new leader served the marker: every delayed record, then 2 s
    more of polling (nothing may come twice), then each checked against its
    due time."""
    served_at = got[b"marker"]
    collect(consumers, set(due), got, DEADLINE, "the delayed records")
    end = time.monotonic() + 2
    while time.monotonic() < end:
        poll_into(consumers, got)
    for c in consumers:
        c.commit_sync()
    for c in reversed(consumers):
        c.close()
    check(got, due, served_at)


def test_delayed_records_stay_delayed_when_the_share_partitions_leader_stops(brokers):
    topic, ttopic = "sdc-stop", "sdc-stop-t"
    admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
    make_topic(admin, topic, [[2, 3, 1]])
    make_topic(admin, ttopic, [[2, 1, 3]], {"pylog.delivery.delay.ms": str(TOPIC_DELAY_MS)})
    wait_for(lambda: all(leaders(brokers[0], t) == {0: 2} and len(brokers[0].broker.metadata_cache.topics[t][0].isr)
                         == 3 for t in (topic, ttopic)), TIMEOUT, "both topics led by broker 2, full ISRs")
    tid = brokers[0].broker.metadata_cache.topic_ids[topic]
    state_leaders = state_topic(brokers)
    # The state on broker 1 or 3: never on the stopped leader 2.
    target = 1 if 1 in state_leaders.values() else 3
    group = group_led_by("sdc-stop-g", tid, [0], state_leaders, {0: target})
    set_group_configs(brokers[0], group, share_auto_offset_reset="earliest")
    base = now_ms()
    due = produce_delayed(bootstrap(brokers), topic, base)
    due.update(produce_topic_delayed(bootstrap(brokers), ttopic, base))

    a = ShareConsumer({"bootstrap.servers": bootstrap(brokers), "group.id": group})
    a.subscribe([topic, ttopic])
    got = {}
    plain = {b"plain-%d" % i for i in range(12)}
    collect([a], plain, got, TIMEOUT, "the plain records")
    a.commit_sync()
    # The accepted ones written with the parked ones around them (as Available)
    # to the share coordinator on broker 1 or 3: the new leader starts from that.
    wait_for(lambda: (st := state_of(brokers, group, tid, 0)) is not None and st.start_offset >= 1 and st.batches,
             TIMEOUT, "the acceptances written")
    brokers[1].broker.stop_in_thread()
    wait_for(lambda: leaders(brokers[0], topic)[0] in (1, 3) and leaders(brokers[0], ttopic)[0] in (1, 3),
             TIMEOUT, "new leaders")
    # A marker record: once a consumer has it, the new leader serves.
    p = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all"})
    p.produce(topic, b"marker", partition=0)
    assert p.flush(30) == 0
    b = ShareConsumer({"bootstrap.servers": bootstrap(brokers), "group.id": group})
    b.subscribe([topic, ttopic])
    collect([a, b], {b"marker"}, got, DEADLINE, "the marker from the new leader")
    finish([a, b], got, due)


def test_delayed_records_stay_delayed_when_the_share_partitions_leader_is_sigkilled(processes):  # noqa: F811
    bootstrap_servers = ",".join(p.address for p in processes)
    topic, ttopic = "sdk-kill", "sdk-kill-t"
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    wait_for(lambda: len((md := admin.list_topics(timeout=10)).brokers) == 3 and md.controller_id > 0, TIMEOUT,
             "three brokers and a controller")
    make_topic(admin, topic, [[2, 3, 1]])
    make_topic(admin, ttopic, [[2, 1, 3]], {"pylog.delivery.delay.ms": str(TOPIC_DELAY_MS)})
    for t in (topic, ttopic):
        wait_for(lambda t=t: metadata(bootstrap_servers, t).get(0, (None, []))[0] == 2
                 and len(metadata(bootstrap_servers, t)[0][1]) == 3, TIMEOUT, f"{t} led by broker 2, full ISR")
    conn = processes[0].connect(10)
    try:
        key = f"probe:{topic_id_text(uuid.uuid4())}:0"
        wait_for(lambda: conn.request(m.FindCoordinatorRequest(key_type=2, coordinator_keys=[key]),
                                      6).coordinators[0].error_code not in RETRIABLE, TIMEOUT, "the share coordinator")
        r = conn.request(m.MetadataRequest(topics=[m.MetadataRequest.MetadataRequestTopic(name=topic)],
                                           allow_auto_topic_creation=False), 12)
        tid = r.topics[0].topic_id
    finally:
        conn.close()
    wait_for(lambda: len(md := metadata(bootstrap_servers, "__share_group_state")) == STATE_PARTITIONS
             and all(v[0] > 0 for v in md.values()), TIMEOUT, "the state topic's leaders")
    state_leaders = {i: v[0] for i, v in metadata(bootstrap_servers, "__share_group_state").items()}
    group = next(g for g in (f"sdk-kill-g-{i}" for i in range(10000))
                 if state_leaders[partition_for(g, tid, 0, STATE_PARTITIONS)] != 2)
    set_group_configs(processes[0].address, group, share_auto_offset_reset="earliest")
    base = now_ms()
    due = produce_delayed(bootstrap_servers, topic, base)
    due.update(produce_topic_delayed(bootstrap_servers, ttopic, base))

    a = ShareConsumer({"bootstrap.servers": bootstrap_servers, "group.id": group})
    a.subscribe([topic, ttopic])
    got = {}
    collect([a], {b"plain-%d" % i for i in range(12)}, got, TIMEOUT, "the plain records")
    a.commit_sync()
    leader = processes[1]
    leader.signal(signal.SIGKILL)
    leader.wait_exit()
    survivors = ",".join(p.address for p in processes if p is not leader)
    wait_for(lambda: all(metadata(survivors, t).get(0, (-1, []))[0] in (1, 3) for t in (topic, ttopic)),
             TIMEOUT, "new leaders")
    p = Producer({"bootstrap.servers": survivors, "acks": "all"})
    p.produce(topic, b"marker", partition=0)
    assert p.flush(30) == 0
    b = ShareConsumer({"bootstrap.servers": survivors, "group.id": group})
    b.subscribe([topic, ttopic])
    collect([a, b], {b"marker"}, got, DEADLINE, "the marker from the new leader")
    finish([a, b], got, due)
