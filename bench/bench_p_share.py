"""P (first cut). Share-group consumption past the partition count.

One in-process pylog broker; a one-partition topic holding --records records
of 100 bytes, produced in batches of 50; a share group reading it from the
start. N confluent_kafka.ShareConsumer instances (one thread each, implicit
acknowledgement, max.poll.records=50) each spend --work-ms per record (a
sleep: a handler waiting on I/O), until every record was received. The
figure is records/s from the first subscribe to the last record, per N; the
point of share groups is that N > partitions still scales.

    .venv/bin/python bench/bench_p_share.py --consumers 1,4,16 --records 4000 --rounds 3

Not yet measured here: broker CPU per million records, priority and delay
(issue 18's other bench P figures).
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

from confluent_kafka import Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from pylog.testing import running_broker


def run_once(b, n_consumers, records, work_s, tag):
    topic, group = f"p-{tag}", f"p-{tag}-g"
    a = AdminClient({"bootstrap.servers": str(b)})
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(30)
    p = Producer({"bootstrap.servers": str(b), "linger.ms": 5})
    value = b"x" * 100
    for start in range(0, records, 50):
        for _ in range(min(50, records - start)):
            p.produce(topic, value)
        p.flush(30)
    seen = set()
    lock = threading.Lock()
    done = threading.Event()

    def consume():
        c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group, "max.poll.records": 50})
        c.subscribe([topic])
        while not done.is_set():
            for m in c.poll(0.1):
                if m.error() is None:
                    time.sleep(work_s)
                    with lock:
                        seen.add(m.offset())
                        if len(seen) >= records:
                            done.set()
        c.commit_sync()
        c.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=consume) for _ in range(n_consumers)]
    for t in threads:
        t.start()
    done.wait(600)
    elapsed = time.monotonic() - t0
    for t in threads:
        t.join(60)
    return records / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--consumers", default="1,4,16")
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--work-ms", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with running_broker() as b:
        for n in [int(x) for x in args.consumers.split(",")]:
            rates = [run_once(b, n, args.records, args.work_ms / 1000.0, f"{n}-{r}") for r in range(args.rounds)]
            print(f"consumers={n:3d} records/s median={statistics.median(rates):8.0f} "
                  f"runs={' '.join(f'{x:.0f}' for x in rates)}", flush=True)


if __name__ == "__main__":
    main()
