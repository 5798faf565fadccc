"""Librdkafka (confluent-kafka) group members in a process of their own.

    python rdkafka_members.py '<json: consumer config + "members" + "topics">'

Starts that many consumers with the config, subscribes them to the topics and
polls them all until stdin reaches end of file; then they unsubscribe and close.

Tests that look at such a group only from outside (DescribeGroups) run its
members here rather than in the test process: librdkafka's close() can block
for good inside confluent-kafka's rebalance callback, which asks
rd_kafka_rebalance_protocol() after the group has begun to terminate
(confluentinc/librdkafka#4041), and it blocks holding the GIL, so in the test
process every thread would stop with it, pytest's own timeout included.
The test kills this process when it does not end in time.
"""
from __future__ import annotations

import json
import select
import sys

from confluent_kafka import Consumer


def main() -> None:
    conf = json.loads(sys.argv[1])
    members = conf.pop("members")
    topics = conf.pop("topics")
    consumers = [Consumer(conf) for _ in range(members)]
    for c in consumers:
        c.subscribe(topics)
    while not select.select([sys.stdin], [], [], 0)[0]:
        for c in consumers:
            c.poll(0.05)
    for c in consumers:
        c.unsubscribe()
    for c in consumers:
        c.close()


if __name__ == "__main__":
    main()
