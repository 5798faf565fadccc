"""P (first cut). Share-group consumption past the partition count.

One in-process pylog broker; a one-partition topic holding --records records
of 100 bytes, produced in batches of 50; a share group reading it from the
start. N confluent_kafka.ShareConsumer instances (one thread each, implicit
acknowledgement, max.poll.records=50) each spend --work-ms per record (a
sleep: a handler waiting on I/O), until every record was received. The
figure is records/s from the first subscribe to the last record, per N; the
point of share groups is that N > partitions still scales.

    .venv/bin/python bench/bench_p_share.py --consumers 1,4,16 --records 4000 --rounds 3

Not yet measured here: priority and delay (issue 18's other bench P figures).

--cpu (measure_cpu): ShareFetch+acknowledge broker CPU per million records. The
broker is its own process (`python -m pylog.broker`); per round a fresh
one-partition topic gets --cpu-records records of 100 bytes in log batches of
--cpu-batch records (librdkafka's batch.num.messages), then --cpu-consumers ShareConsumers (threads,
implicit acknowledgement, no work per record) read them all and commit_sync
their last acknowledgements; the broker's CPU time (utime+stime of all its
threads, /proc/<pid>/stat) over that consumption phase, per million records.

    .venv/bin/python bench/bench_p_share.py --cpu --cpu-records 1000000 --cpu-batch 50 --cpu-consumers 1,4,16 --rounds 5
"""
from __future__ import annotations

import argparse
import os
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


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a whole process (every thread), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_once(broker, n_consumers, records, batch, tag) -> float:
    """Broker CPU seconds per million records share-fetched and acknowledged."""
    topic, group, b = f"pcpu-{tag}", f"pcpu-{tag}-g", broker.bootstrap
    a = AdminClient({"bootstrap.servers": str(b)})
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(30)
    # A share-partition hands out whole log batches: their size sets the broker's work per record.
    p = Producer({"bootstrap.servers": str(b), "linger.ms": 20, "batch.num.messages": batch})
    value = b"x" * 100
    for i in range(records):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0
    count = [0]
    lock = threading.Lock()
    done = threading.Event()

    def consume():
        c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group})
        c.subscribe([topic])
        while not done.is_set():
            got = sum(1 for m in c.poll(0.1) if m.error() is None)
            if got:
                with lock:
                    count[0] += got
                    if count[0] >= records:
                        done.set()
        c.commit_sync()     # the last poll's implicit ACCEPTs
        c.close()

    before = proc_cpu(broker.proc.pid)
    threads = [threading.Thread(target=consume) for _ in range(n_consumers)]
    for t in threads:
        t.start()
    if not done.wait(900):
        raise RuntimeError(f"only {count[0]} of {records} records consumed")
    for t in threads:
        t.join(120)
    return (proc_cpu(broker.proc.pid) - before) / records * 1e6


def measure_cpu(args) -> None:
    from bench_g_broker import BrokerProcess   # bench G's: `python -m pylog.broker` in its own process
    b = BrokerProcess()
    try:
        for n in [int(x) for x in args.cpu_consumers.split(",")]:
            per_m = [cpu_once(b, n, args.cpu_records, args.cpu_batch, f"{n}-{r}") for r in range(args.rounds)]
            print(f"consumers={n:3d} broker CPU s per million records median={statistics.median(per_m):6.2f} "
                  f"runs={' '.join(f'{x:.2f}' for x in per_m)}", flush=True)
    finally:
        b.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--consumers", default="1,4,16")
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--work-ms", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpu", action="store_true", help="measure broker CPU per million records instead")
    ap.add_argument("--cpu-records", type=int, default=200000)
    ap.add_argument("--cpu-batch", type=int, default=50, help="records per log batch")
    ap.add_argument("--cpu-consumers", default="1,4,16")
    args = ap.parse_args()
    if args.cpu:
        measure_cpu(args)
        return
    with running_broker() as b:
        for n in [int(x) for x in args.consumers.split(",")]:
            rates = [run_once(b, n, args.records, args.work_ms / 1000.0, f"{n}-{r}") for r in range(args.rounds)]
            print(f"consumers={n:3d} records/s median={statistics.median(rates):8.0f} "
                  f"runs={' '.join(f'{x:.0f}' for x in rates)}", flush=True)


if __name__ == "__main__":
    main()
