"""`pylog perf produce`: kafka-producer-perf-test over pylog's client.

Prints every --reporting-interval ms (5000, as Kafka)

    N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency.

and at the end

    N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency, P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.

MB are 2^20 bytes of record values; only acknowledged records count.

How it sends: one payload of --record-size random capital letters (as Kafka's
tool) is reused; batches are encoded in C (encode_batch) with as many records
as fit --batch-size bytes; one ProduceRequest per leader carries one batch for
each of several partitions (round robin, up to --max-request-size bytes);
up to --max-in-flight requests are outstanding per connection (pipelining).
With --throughput R > 0, record i becomes due at start + i/R and a batch leaves
when full or when its oldest record has waited --linger-ms; with -1 records are
due when their batch is built. Latency of a record = acknowledgement time - due
time, so queueing in front of a full pipeline is not counted (Kafka's tool
counts its accumulator's queue too).
"""
from __future__ import annotations

import collections
import random
import sys
import time

from .. import _engine
from ..client.errors import ConnectionClosedError, error_for
from ..client.wire import wait_readable
from ..protocol.messages import ProduceRequest
from .common import RawHelp, acks_value, add_bootstrap, apply_client_properties, client_properties, key_value, open_client

__all__ = ["ProducerStats", "add_perf_produce_parser"]

_BATCH_OVERHEAD = 61
_MB = 1024.0 * 1024.0


def add_perf_produce_parser(sub) -> None:
    p = sub.add_parser("produce", help="producer throughput and latency test (kafka-producer-perf-test)",
                       description=__doc__.split("\n", 2)[2], formatter_class=RawHelp)
    add_bootstrap(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--num-records", type=int, required=True)
    p.add_argument("--record-size", type=int, required=True, help="bytes per record value")
    p.add_argument("--throughput", type=float, default=-1,
                   help="records/sec to aim at; -1 = as fast as possible")
    p.add_argument("--acks", type=acks_value, default=-1, help="all/-1, 1 or 0")
    p.add_argument("--batch-size", type=int, default=16384, help="batch.size: bytes per record batch")
    p.add_argument("--linger-ms", type=int, default=0, help="linger.ms (matters with --throughput)")
    p.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"), default="none")
    p.add_argument("--max-in-flight", type=int, default=5,
                   help="max.in.flight.requests.per.connection")
    p.add_argument("--max-request-size", type=int, default=1048576, help="max.request.size")
    p.add_argument("--produce-timeout-ms", type=int, default=30000, help="timeout_ms of Produce requests")
    p.add_argument("--retries", type=int, default=10, help="resends of a batch after a retriable error")
    p.add_argument("--reporting-interval", type=int, default=5000, help="ms between progress lines")
    p.add_argument("--producer-props", type=key_value, nargs="+", default=[], metavar="KEY=VALUE",
                   help="Kafka producer configs: acks, batch.size, linger.ms, compression.type, "
                        "max.in.flight.requests.per.connection, max.request.size, bootstrap.servers, "
                        "client.id, request.timeout.ms, retries; others are refused")
    p.add_argument("--producer.config", dest="producer_config", metavar="FILE",
                   help="a properties file of the same producer configs (--producer-props win)")
    p.set_defaults(tool=_perf_produce)


_PROPS = {"acks": ("acks", acks_value), "batch.size": ("batch_size", int),
          "linger.ms": ("linger_ms", int), "compression.type": ("compression", str),
          "max.in.flight.requests.per.connection": ("max_in_flight", int),
          "max.request.size": ("max_request_size", int), "retries": ("retries", int)}


class ProducerStats:
    """Kafka's ProducerPerformance.Stats: totals, a reporting window, and
    latencies sampled every `sampling`-th record (at most ~500000 kept).
    Times are time.monotonic() seconds; latencies milliseconds. One thread."""

    def __init__(self, num_records: int, reporting_interval_ms: int, out=sys.stdout):
        self.start = self.window_start = time.monotonic()
        self.interval = reporting_interval_ms / 1000.0
        self.out = out
        self.sampling = max(1, num_records // min(num_records, 500000)) if num_records > 0 else 1
        self.latencies: list[float] = []
        self.iteration = 0
        self.count = self.bytes = 0
        self.max_latency = self.total_latency = 0.0
        self.window_count = self.window_bytes = 0
        self.window_max = self.window_total = 0.0

    def record(self, count: int, latency_ms: float, nbytes: int, now: float) -> None:
        """`count` records of `nbytes` bytes in all, each acknowledged after latency_ms."""
        self.count += count
        self.bytes += nbytes
        self.total_latency += latency_ms * count
        self.max_latency = max(self.max_latency, latency_ms)
        self.window_count += count
        self.window_bytes += nbytes
        self.window_total += latency_ms * count
        self.window_max = max(self.window_max, latency_ms)
        # Samples at every record index that is a multiple of `sampling`.
        first = -(-self.iteration // self.sampling) * self.sampling
        if first < self.iteration + count:
            self.latencies.extend([latency_ms] * ((self.iteration + count - 1 - first) // self.sampling + 1))
        self.iteration += count
        if now - self.window_start >= self.interval:
            self.print_window(now)

    def record_each(self, latencies_ms: list, size: int, now: float) -> None:
        """Records of `size` bytes each, with their own latencies."""
        for latency in latencies_ms:
            self.record(1, latency, size, now)

    def print_window(self, now: float) -> None:
        elapsed = max(now - self.window_start, 1e-9)
        n = self.window_count
        print(f"{n} records sent, {n / elapsed:.1f} records/sec "
              f"({self.window_bytes / elapsed / _MB:.2f} MB/sec), "
              f"{self.window_total / n if n else 0.0:.1f} ms avg latency, "
              f"{self.window_max:.1f} ms max latency.", file=self.out, flush=True)
        self.window_start = now
        self.window_count = self.window_bytes = 0
        self.window_max = self.window_total = 0.0

    def print_total(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        lat = sorted(self.latencies)

        def pct(q):
            return int(lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else 0

        n = self.count
        print(f"{n} records sent, {n / elapsed:f} records/sec ({self.bytes / elapsed / _MB:.2f} MB/sec), "
              f"{self.total_latency / n if n else 0.0:.2f} ms avg latency, {self.max_latency:.2f} ms max "
              f"latency, {pct(0.5)} ms 50th, {pct(0.95)} ms 95th, {pct(0.99)} ms 99th, "
              f"{pct(0.999)} ms 99.9th.", file=self.out, flush=True)


class _Batch:
    """One partition's batch in a request: what to count or resend."""

    __slots__ = ("attempts", "count", "due", "partition", "records")

    def __init__(self, partition, records, count, due):
        self.partition, self.records, self.count, self.due, self.attempts = partition, records, count, due, 0


def _perf_produce(args) -> int:
    # As Kafka's tool, --producer-props set bootstrap.servers too (it has no
    # --bootstrap-server of its own; pylog's wins when given).
    apply_client_properties(args, client_properties([args.producer_config] if args.producer_config else [],
                                                    args.producer_props), _PROPS, "producer")
    if args.compression not in ("none", "gzip", "snappy", "lz4", "zstd"):
        raise SystemExit(f"compression.type must be none, gzip, snappy, lz4 or zstd, not {args.compression!r}")
    with open_client(args) as client:
        return _PerfProducer(client, args).run()


class _PerfProducer:
    def __init__(self, client, args):
        self.client, self.args = client, args
        self.topic = args.topic
        self.n = args.num_records
        rnd = random.Random()
        self.payload = bytes(rnd.randrange(65, 91) for _ in range(args.record_size))
        self.compression = None if args.compression == "none" else args.compression
        one = len(_engine.encode_batch([self.payload]))
        per_record = len(_engine.encode_batch([self.payload] * 2)) - one
        self.per_batch = max(1, (args.batch_size - _BATCH_OVERHEAD) // max(1, per_record))
        self.batch_bytes = _BATCH_OVERHEAD + self.per_batch * per_record
        self.retry: collections.deque = collections.deque()  # _Batch to resend
        self.failed = 0
        self.generated = 0  # records put in a batch so far

    def _layout(self):
        """{leader node id: [partitions]} from fresh metadata."""
        t = self.client.wait_for_leaders(self.topic, timeout=10.0)
        leaders: dict[int, list[int]] = {}
        for p in sorted(t.partitions):
            leaders.setdefault(t.partitions[p].leader_id, []).append(p)
        return leaders

    def run(self) -> int:
        args = self.args
        self.client.metadata([self.topic], allow_auto_topic_creation=True)
        leaders = self._layout()
        conns = {node: self.client.connection(node) for node in leaders}
        in_flight = {node: collections.deque() for node in leaders}  # per node: [( [_Batch], sent_at )]
        cursor = dict.fromkeys(leaders, 0)  # round-robin position in each leader's partitions
        per_request = {node: max(1, min(len(parts), args.max_request_size // self.batch_bytes))
                       for node, parts in leaders.items()}
        stats = self.stats = ProducerStats(self.n, args.reporting_interval)
        try:
            self._loop(leaders, conns, in_flight, cursor, per_request)
        except KeyboardInterrupt:
            # As Kafka's tool (its shutdown hook): the summary of what was
            # acknowledged so far, then the usual exit status of Ctrl-C.
            stats.print_total(time.monotonic())
            return 130
        stats.print_total(time.monotonic())
        return 1 if self.failed else 0

    def _loop(self, leaders, conns, in_flight, cursor, per_request) -> None:
        args, stats = self.args, self.stats
        start = stats.start
        rate = args.throughput if args.throughput > 0 else None
        linger = args.linger_ms / 1000.0
        while stats.count + self.failed < self.n:
            now = time.monotonic()
            for node, parts in leaders.items():
                conn = conns[node]
                while conn.in_flight < args.max_in_flight:
                    batches = self._next_batches(node, parts, cursor, per_request[node], rate, linger,
                                                 start, now)
                    if not batches:
                        break
                    self._send(conn, batches, in_flight[node], now)
            busy = [node for node in leaders if in_flight[node]]
            if not busy:
                if stats.count + self.failed >= self.n:
                    break
                # Nothing in flight: the throttle (or linger) is holding the
                # next batch back; sleep until it is due.
                time.sleep(self._idle_wait(rate, linger, start))
                continue
            if len(busy) == 1 and conns[busy[0]].in_flight >= args.max_in_flight:
                ready = busy
            else:
                timeout = self._idle_wait(rate, linger, start) if rate else None
                ready, _ = wait_readable([conns[b] for b in busy], (), timeout)
                ready = [next(b for b in busy if conns[b] is c) for c in ready]
            for node in ready:
                self._complete(conns[node], in_flight[node])
            if self.retry:
                leaders, conns, in_flight, cursor, per_request = self._relayout(
                    leaders, conns, in_flight, cursor, per_request)

    def _idle_wait(self, rate, linger, start) -> float:
        """How long nothing can be sent: until the next record is due, or,
        when records wait for their batch, until it fills or lingers out."""
        if rate is None:
            return 0.001
        now = time.monotonic()
        next_due = start + self.generated / rate
        if next_due <= now:
            next_due = min(next_due + linger, next_due + (self.per_batch - 1) / rate)
        return min(1.0, max(0.0005, next_due - now))

    def _next_batches(self, node, parts, cursor, per_request, rate, linger, start, now) -> list:
        """Up to per_request batches for partitions of `node`, or [] when the
        throttle holds them back."""
        out = []
        while self.retry and len(out) < per_request:
            b = self.retry[0]
            if b.partition not in parts:
                break
            out.append(self.retry.popleft())
        while len(out) < per_request and self.generated < self.n:
            if rate is None:
                take = min(self.per_batch, self.n - self.generated)
                due = None
            else:
                available = min(self.n, int((now - start) * rate) + 1) - self.generated
                if available <= 0:
                    break
                oldest_due = start + self.generated / rate
                take = min(self.per_batch, available)
                if take < self.per_batch and now - oldest_due < linger and \
                        self.generated + take < self.n:
                    break  # let the batch fill up for linger.ms
                due = [start + (self.generated + i) / rate for i in range(take)]
            part = parts[cursor[node] % len(parts)]
            cursor[node] += 1
            records = _engine.encode_batch([self.payload] * take, compression=self.compression)
            out.append(_Batch(part, records, take, due))
            self.generated += take
        return out

    def _send(self, conn, batches, queue, now) -> None:
        req = ProduceRequest(acks=self.args.acks, timeout_ms=self.args.produce_timeout_ms, topic_data=[
            ProduceRequest.TopicProduceData(name=self.topic, partition_data=[
                ProduceRequest.PartitionProduceData(index=b.partition, records=b.records)
                for b in batches])])
        for b in batches:
            b.attempts += 1
        try:
            cid = conn.send(req)
        except ConnectionClosedError as e:
            self._lost(batches, e)
            return
        if cid is None:  # acks=0: no answer will come; done as sent
            t = time.monotonic()
            for b in batches:
                self._count(b, t)
        else:
            queue.append((batches, now))

    def _complete(self, conn, queue) -> None:
        batches, sent_at = queue[0]
        try:
            resp = conn.receive()
        except ConnectionClosedError as e:
            for lost, _ in queue:
                self._lost(lost, e)
            queue.clear()
            return
        queue.popleft()
        t = time.monotonic()
        codes = {p.index: p.error_code for r in resp.responses if r.name == self.topic
                 for p in r.partition_responses}
        for b in batches:
            code = codes.get(b.partition, 3)
            if code == 0:
                self._count(b, t, sent_at)
            else:
                self._failed(b, error_for(code, f"{self.topic}-{b.partition}"))

    def _count(self, b, t, sent_at=None) -> None:
        size = len(self.payload)
        if b.due is None:
            self.stats.record(b.count, (t - (sent_at or t)) * 1000.0, b.count * size, t)
        else:
            self.stats.record_each([(t - due) * 1000.0 for due in b.due], size, t)

    def _lost(self, batches, exc) -> None:
        for b in batches:
            self._failed(b, exc)

    def _failed(self, b, exc) -> None:
        if getattr(exc, "retriable", False) and b.attempts <= self.args.retries:
            self.retry.append(b)
            return
        self.failed += b.count
        print(f"Error: {b.count} record(s) to {self.topic}-{b.partition} not written: {exc}",
              file=sys.stderr)

    def _relayout(self, leaders, conns, in_flight, cursor, per_request):
        """After retriable errors: wait for outstanding answers, refresh
        metadata (leaders may have moved), reconnect."""
        for node, queue in in_flight.items():
            while queue:
                self._complete(conns[node], queue)
        time.sleep(0.1)
        leaders = self._layout()
        conns = {node: self.client.connection(node) for node in leaders}
        in_flight = {node: collections.deque() for node in leaders}
        cursor = dict.fromkeys(leaders, 0)
        per_request = {node: max(1, min(len(parts), self.args.max_request_size // self.batch_bytes))
                       for node, parts in leaders.items()}
        return leaders, conns, in_flight, cursor, per_request
