"""Helpers for the consumer-group tests (confluent-kafka side)."""
from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 30.0          # any single client operation
REBALANCE_TIMEOUT = 20.0  # waiting for a group to settle


def admin(b) -> AdminClient:
    return AdminClient({"bootstrap.servers": b})


def create_topic(b, name, partitions):
    a = admin(b)  # must outlive its futures
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                         operation_timeout=10, request_timeout=TIMEOUT)
    fs[name].result(TIMEOUT)


def produce(b, topic, n, partitions):
    """n messages, dealt round-robin over the partitions; returns
    {partition: [values in offset order]}."""
    p = Producer({"bootstrap.servers": b, "acks": "all", "linger.ms": 5})
    sent = {i: [] for i in range(partitions)}
    for i in range(n):
        part = i % partitions
        v = b"m-%d-%d" % (part, len(sent[part]))
        p.produce(topic, v, partition=part)
        sent[part].append(v)
    assert p.flush(TIMEOUT) == 0
    return sent


def group_consumer(b, group, conf=None) -> Consumer:
    cfg = {"bootstrap.servers": b, "group.id": group, "enable.auto.commit": False,
           "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
           "max.poll.interval.ms": 10000, "topic.metadata.refresh.interval.ms": 1000}
    cfg.update(conf or {})
    return Consumer(cfg)


def parts(c) -> set[int]:
    return {tp.partition for tp in c.assignment()}


class Pump:
    """Polls several consumers round-robin on this thread (rebalance callbacks
    run inside poll()); collects messages and errors per consumer."""

    def __init__(self, *consumers):
        self.consumers = list(consumers)
        self.messages = {id(c): [] for c in self.consumers}
        self.errors = {id(c): [] for c in self.consumers}

    def add(self, c):
        self.consumers.append(c)
        self.messages[id(c)] = []
        self.errors[id(c)] = []

    def remove(self, c):
        self.consumers.remove(c)

    def poll_once(self, timeout=0.05):
        for c in list(self.consumers):
            msg = c.poll(timeout)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    self.errors[id(c)].append(msg.error())
            else:
                self.messages[id(c)].append(msg)

    def until(self, cond, what, timeout=REBALANCE_TIMEOUT, describe=None):
        deadline = time.monotonic() + timeout
        while True:
            self.poll_once()
            if cond():
                return
            if time.monotonic() > deadline:
                state = describe() if describe else ""
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; {state}")

    def run_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll_once()


def group_state(b, group):
    g = b.broker.groups.groups.get(group)
    if g is None:
        return "no such group"
    return f"group {group}: {g.state.value} gen {g.generation_id} members {list(g.members)}"


def committed(c, topic, partitions) -> dict[int, int]:
    got = c.committed([TopicPartition(topic, p) for p in partitions], timeout=TIMEOUT)
    for tp in got:
        assert tp.error is None, tp.error
    return {tp.partition: tp.offset for tp in got}


def close_all(*consumers):
    for c in consumers:
        try:
            c.close()
        except Exception:  # noqa: BLE001 - already closed or fatally failed
            pass
