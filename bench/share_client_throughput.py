"""One share consumer's records/s: pylog.ShareConsumer next to
confluent_kafka.ShareConsumer, implicit acknowledgement, one partition.

One in-process pylog broker; per run a new topic holding --records records of
100 bytes (librdkafka's producer, batches of up to 500) and a new share group
reading it from the start, joined once by a member that leaves before the
records exist (bench_p_share.warm_up); the figure is records/s from the
consumer's creation to the commit of the last record. A first pylog run, not counted,
creates __share_group_state (50 partitions).

    .venv/bin/python bench/share_client_throughput.py --records 50000 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import time

from confluent_kafka import Producer as RdkProducer
from confluent_kafka import ShareConsumer as RdkShareConsumer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

import pylog
from bench_p_share import warm_up
from pylog.testing import running_broker


def prepare(b, topic, group, records):
    admin = AdminClient({"bootstrap.servers": str(b)})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(30)
    # The group's share-partition made ready first: its first members wait a heartbeat interval (5 s) for it.
    warm_up(b, topic, group)
    p = RdkProducer({"bootstrap.servers": str(b), "linger.ms": 20, "batch.num.messages": 500})
    for _ in range(records):
        p.produce(topic, b"x" * 100)
    assert p.flush(60) == 0


def run_once(b, kind, records, tag) -> float:
    topic, group = f"scb-{kind}-{tag}", f"scb-{kind}-{tag}-g"
    prepare(b, topic, group, records)
    n = 0
    t0 = time.monotonic()
    if kind == "pylog":
        c = pylog.ShareConsumer(topic, bootstrap_servers=str(b), group_id=group)
        while n < records:
            n += len(c.poll(1.0))
    else:
        c = RdkShareConsumer({"bootstrap.servers": str(b), "group.id": group})
        c.subscribe([topic])
        while n < records:
            n += sum(1 for m in c.poll(1.0) if m.error() is None)
    c.commit_sync()
    elapsed = time.monotonic() - t0
    c.close()
    return records / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with running_broker() as b:
        run_once(b, "pylog", 1000, "warm-up")
        for kind in ("pylog", "confluent"):
            rates = [run_once(b, kind, args.records, i) for i in range(args.rounds)]
            print(f"{kind:9} records/s median {statistics.median(rates):,.0f} "
                  f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
