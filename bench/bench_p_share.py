"""P (first cut). Share-group consumption past the partition count.

One in-process pylog broker; a one-partition topic holding --records records
of 100 bytes, produced in batches of 50; a share group reading it from the
start. N confluent_kafka.ShareConsumer instances (one thread each, implicit
acknowledgement, max.poll.records=50) each spend --work-ms per record (a
sleep: a handler waiting on I/O), until every record was received. The
figures are records/s from the first subscribe to the last record, and from
the first record received to the last, per N; the point of share groups is
that N > partitions still scales. A member first joins and leaves the group
before any record exists (warm_up; --cold leaves it out), since the members
that join a new share-partition wait a heartbeat interval (5 s) for it.

    .venv/bin/python bench/bench_p_share.py --consumers 1,4,16 --records 8000 --rounds 5

Priority and delay (pylog/share/delivery.py), each its own run:

    .venv/bin/python bench/bench_p_share.py --only priority --backlog 100000 --work-ms 0.1 --rounds 3
    .venv/bin/python bench/bench_p_share.py --only delay --pending 1000000 --rounds 3

- priority: a backlog of --backlog priority-0 records (100 B, in batches of
  --batch-records: librdkafka's default 10,000) being consumed by one
  ShareConsumer spending --work-ms on each (0.1 here: the backlog then lasts
  some seconds rather than a fraction of one); every 20 ms a producer sends
  one record with `pylog.priority: 9` (one more before the backlog, so the
  share-partition takes exactly max.poll.records from the start, and a fetch
  sends the 50 records it cut from a 10,000-record batch, not the batch);
  the wait of each (its receipt by poll() minus its produce time) while the
  backlog lasts; p50/p99 per run.
- delay: --pending records with `pylog.deliver.at` an hour away (they stay
  pending in the sidecar), then --probes probe records due 2 s after they
  are sent and 20 ms apart; the lateness of each probe (receipt minus due
  time); p50/p99 per run.
- Both print the broker event loop's stalls over 40 ms during the run and
  the process CPU time spent in them: a stall with next to none is the
  machine not running the process (other load), not work in pylog.

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


def warm_up(b, topic, group):
    """Join the group once, before any record exists, until the share-partition's
    state is initialized, then leave: a member joining a new share-partition gets
    it only at its next heartbeat after that (librdkafka's interval, 5 s, as in
    Kafka), and that wait falls on whichever members joined first, one of four
    or the only one; the figure is the throughput of members of a ready group."""
    from pylog import ShareConsumer as PylogShareConsumer
    from pylog.testing import wait_until
    c = PylogShareConsumer(topic, bootstrap_servers=str(b), group_id=group)
    try:
        wait_until(lambda: c.poll(0.1) == [] and bool(c.assignment()), timeout=60, what="the warm-up's assignment")
    finally:
        c.close()


def run_once(b, n_consumers, records, work_s, tag, warm=True):
    """(records/s from the first subscribe to the last record, records/s from
    the first record received to the last, seconds from subscribe to the first
    record), the group warmed up first unless warm is False."""
    topic, group = f"p-{tag}", f"p-{tag}-g"
    a = AdminClient({"bootstrap.servers": str(b)})
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(30)
    if warm:
        warm_up(b, topic, group)
    p = Producer({"bootstrap.servers": str(b), "linger.ms": 5})
    value = b"x" * 100
    for start in range(0, records, 50):
        for _ in range(min(50, records - start)):
            p.produce(topic, value)
        p.flush(30)
    seen = set()
    first = []
    lock = threading.Lock()
    done = threading.Event()

    def consume():
        c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group, "max.poll.records": 50})
        c.subscribe([topic])
        while not done.is_set():
            got = c.poll(0.1)
            if got and not first:
                with lock:
                    first.append(time.monotonic())
            for m in got:
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
    end = time.monotonic()
    for t in threads:
        t.join(60)
    t_first = min(first)
    return records / (end - t0), records / (end - t_first), t_first - t0


def _topic(b, topic, group):
    a = AdminClient({"bootstrap.servers": str(b)})
    a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry("share.auto.offset.reset", "earliest", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(30)


def _now_ms():
    return time.time() * 1000.0


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))] if xs else float("nan")


def priority_wait(b, backlog, tag, work_s, batch_records, stalls=None):
    """Waits (ms) of priority-9 records sent while a backlog of priority-0 ones is consumed."""
    topic, group = f"pp-{tag}", f"pp-{tag}-g"
    _topic(b, topic, group)
    p = Producer({"bootstrap.servers": str(b), "linger.ms": 5, "queue.buffering.max.messages": 1000000,
                  "batch.num.messages": batch_records})
    value = b"x" * 100
    # One priority record first: a share-partition takes whole batches (up
    # to 10,000 records from this producer) until it has seen one.
    p.produce(topic, b"first", headers=[("pylog.priority", b"9")])
    for i in range(backlog):
        p.produce(topic, value)
        if i % 10000 == 0:
            p.poll(0)
    p.flush(120)
    probe = Producer({"bootstrap.servers": str(b), "linger.ms": 0})
    c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group, "max.poll.records": 50})
    c.subscribe([topic])
    waits, low, sent = [], 0, {}
    stop = threading.Event()

    def send():
        i = 0
        while not stop.is_set():
            key = b"%d" % i
            sent[key] = _now_ms()
            probe.produce(topic, b"probe", key=key, headers=[("pylog.priority", b"9")])
            probe.poll(0)
            i += 1
            time.sleep(0.02)
        probe.flush(30)

    started = False
    t = threading.Thread(target=send)
    deadline = time.monotonic() + 600
    while low < backlog - 1000 and time.monotonic() < deadline:
        for m in c.poll(0.1):
            if m.error() is not None:
                continue
            if m.value() == b"first":
                continue
            if m.value() == b"probe":
                waits.append(_now_ms() - sent[m.key()])
            else:
                low += 1
                time.sleep(work_s)
                if not started:     # the backlog is being read: the probes start
                    started = True
                    if stalls is not None:
                        stalls.seen.clear()
                    t.start()
    stop.set()
    if started:
        t.join(60)
    c.close()
    return waits, low


def delay_lateness(b, pending, probes, tag, stalls=None):
    """Lateness (ms) of delayed records coming due while `pending` others wait."""
    topic, group = f"pd-{tag}", f"pd-{tag}-g"
    _topic(b, topic, group)
    p = Producer({"bootstrap.servers": str(b), "linger.ms": 20, "queue.buffering.max.messages": 1000000,
                  "batch.num.messages": 10000})
    far = str(int(_now_ms()) + 3600_000).encode()
    value = b"x" * 100
    for i in range(pending):
        p.produce(topic, value, headers=[("pylog.deliver.at", far)])
        if i % 10000 == 0:
            p.poll(0)
    p.flush(300)
    c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group, "max.poll.records": 50})
    c.subscribe([topic])
    # Let the broker index and park the pending records before the probes go.
    t_end = time.monotonic() + max(10.0, pending / 20000.0)
    early = 0               # pending records handed out: must stay 0
    while time.monotonic() < t_end:
        early += sum(1 for m in c.poll(0.2) if m.error() is None)
    stats = _delay_stats(b, topic)
    due = {}
    if stalls is not None:
        stalls.seen.clear()
    base = _now_ms()
    for i in range(probes):
        at = int(base + 2000 + 20 * i)
        due[b"%d" % i] = at
        p.produce(topic, b"probe", key=b"%d" % i, headers=[("pylog.deliver.at", str(at).encode())])
    p.flush(30)
    late = []
    deadline = time.monotonic() + 120 + probes * 0.02
    while len(late) < probes and time.monotonic() < deadline:
        for m in c.poll(0.05):
            if m.error() is None and m.value() == b"probe":
                late.append(_now_ms() - due[m.key()])
            elif m.error() is None:
                early += 1
    c.close()
    return late, early, stats


def _delay_stats(b, topic):
    # A look into the in-process broker (from this thread: plain reads of counters).
    import os
    for h in list(b.broker.share.manager.held.values()):
        if h.topic == topic and h.dx is not None:
            sc = h.dx.sidecar
            size = os.path.getsize(sc.path) if os.path.exists(sc.path) else 0
            return (f"broker: {len(sc)} pending, {len(sc.win)} of them in memory, sidecar file {size >> 20} MB, "
                    f"{len(h.sp.ranges)} in-flight ranges")
    return "broker: share-partition not loaded"


class _Stalls:
    """The in-process broker's event loop stalls over 40 ms while measuring, each
    with the process CPU seconds spent during it (a look into the broker,
    as _delay_stats)."""

    def __init__(self, b):
        import asyncio
        while b.broker._stopped._loop is None:
            time.sleep(0.01)
        self.seen, self.stop = [], False

        async def watch():
            while not self.stop:
                t, c = time.perf_counter(), time.process_time()
                await asyncio.sleep(0.005)
                lag = (time.perf_counter() - t) * 1000 - 5
                if lag > 40:
                    self.seen.append((lag, (time.process_time() - c) * 1000))
        asyncio.run_coroutine_threadsafe(watch(), b.broker._stopped._loop)

    def close(self):
        self.stop = True
        if not self.seen:
            return "no event loop stall over 40 ms"
        return (f"{len(self.seen)} event loop stalls over 40 ms (max {max(x for x, _ in self.seen):.0f} ms), "
                f"process CPU in them {sum(c for _, c in self.seen):.0f} of {sum(x for x, _ in self.seen):.0f} ms")


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main_delivery(args):
    with running_broker() as b:
        p50s, p99s = [], []
        for r in range(args.rounds):
            stalls = _Stalls(b)
            if args.only == "priority":
                xs, low = priority_wait(b, args.backlog, f"{args.backlog}-{r}", args.work_ms / 1000.0,
                                        args.batch_records, stalls)
                what = f"priority-9 wait ms over {len(xs)} probes ({low} backlog records read meanwhile)"
            else:
                xs, early, stats = delay_lateness(b, args.pending, args.probes, f"{args.pending}-{r}", stalls)
                what = (f"delay lateness ms over {len(xs)} of {args.probes} probes, {args.pending} pending "
                        f"({early} handed out early; {stats})")
            p50s.append(_pct(xs, 50))
            p99s.append(_pct(xs, 99))
            print(f"run {r}: {what}: p50={p50s[-1]:.1f} p99={p99s[-1]:.1f} min={min(xs):.1f} max={max(xs):.1f} "
                  f"rss={_rss_mb():.0f}MB; {stalls.close()}", flush=True)
        print(f"{args.only}: median of {args.rounds} runs: p50={statistics.median(p50s):.1f} ms "
              f"p99={statistics.median(p99s):.1f} ms", flush=True)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a whole process (every thread), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_once(broker, n_consumers, records, batch, tag) -> float:
    """Broker CPU seconds per million records share-fetched and acknowledged."""
    topic, group, b = f"pcpu-{tag}", f"pcpu-{tag}-g", broker.bootstrap
    _topic(b, topic, group)
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
    ap.add_argument("--records", type=int, default=8000)
    ap.add_argument("--work-ms", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("throughput", "priority", "delay"), default="throughput")
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--pending", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=1000, help="delay: probe records, due 20 ms apart")
    ap.add_argument("--batch-records", type=int, default=10000,
                    help="the backlog producer's batch.num.messages (librdkafka's default: 10000)")
    ap.add_argument("--cold", action="store_true",
                    help="throughput: no warm-up member; the first members wait a heartbeat interval for the "
                         "new share-partition")
    ap.add_argument("--broker-process", action="store_true",
                    help="throughput: the broker in its own process (`python -m pylog.broker`), not sharing the "
                         "consumers' GIL")
    ap.add_argument("--cpu", action="store_true", help="measure broker CPU per million records instead")
    ap.add_argument("--cpu-records", type=int, default=200000)
    ap.add_argument("--cpu-batch", type=int, default=50, help="records per log batch")
    ap.add_argument("--cpu-consumers", default="1,4,16")
    args = ap.parse_args()
    if args.cpu:
        measure_cpu(args)
        return
    if args.only != "throughput":
        return main_delivery(args)
    if args.broker_process:
        from bench_g_broker import BrokerProcess
        proc = BrokerProcess()
        try:
            throughput(args, proc.bootstrap)
        finally:
            proc.stop()
        return
    with running_broker() as b:
        throughput(args, b)


def throughput(args, b) -> None:
    for n in [int(x) for x in args.consumers.split(",")]:
        runs = [run_once(b, n, args.records, args.work_ms / 1000.0, f"{n}-{r}", not args.cold)
                for r in range(args.rounds)]
        total, steady, join = zip(*runs)
        print(f"consumers={n:3d} records/s from subscribe median={statistics.median(total):8.0f} "
              f"runs={' '.join(f'{x:.0f}' for x in total)}; from the first record "
              f"median={statistics.median(steady):8.0f} runs={' '.join(f'{x:.0f}' for x in steady)}; "
              f"subscribe to first record median={statistics.median(join):.2f} s", flush=True)


if __name__ == "__main__":
    main()
