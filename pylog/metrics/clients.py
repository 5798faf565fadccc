"""pylog's Producer and Consumer metrics, as the Prometheus JMX exporter
names the Java clients' (kafka.producer:type=producer-metrics and
kafka.consumer:type=consumer-fetch-manager-metrics attributes,
kafka_<client>_<attribute>{client_id="..."}), in a prometheus_client
registry the application gives (metrics_registry=).

Kafka's client stats are windowed: rates, averages and maxima over the
samples of the last two 30 s windows (metrics.sample.window.ms=30000,
metrics.num.samples=2), a rate's elapsed time counting at least one full
window. Windowed does the same; the *_total counters are cumulative.

Threads: record calls come from the client's threads (the producer's sender,
the consumer's poll caller), collect() from the registry's scraper; one lock
per client, held for a few additions per batch or fetch.
"""
from __future__ import annotations

import threading
import time
import weakref

from . import require_prometheus_client

WINDOW_S = 30.0
SAMPLES = 2


class Windowed:
    """Kafka's SampledStat with Rate, Avg and Max over SAMPLES windows. The
    caller holds the owner's lock."""

    __slots__ = ("_samples",)

    def __init__(self):
        self._samples = []   # [start, count, sum, max], oldest first

    def record(self, value: float, now: float) -> None:
        s = self._samples
        if not s or now - s[-1][0] >= WINDOW_S:
            s.append([now, 0, 0.0, float("-inf")])
            if len(s) > SAMPLES:
                del s[0]
        cur = s[-1]
        cur[1] += 1
        cur[2] += value
        if value > cur[3]:
            cur[3] = value

    def _live(self, now):
        return [x for x in self._samples if now - x[0] < WINDOW_S * SAMPLES]

    def rate(self, now: float) -> float:
        """Sum of the values per second (Kafka's Rate)."""
        return self._per_second(now, 2)

    def count_rate(self, now: float) -> float:
        """Events per second (Kafka's Rate of a count)."""
        return self._per_second(now, 1)

    def _per_second(self, now, field):
        live = self._live(now)
        if not live:
            return 0.0
        # Kafka's Rate.windowSize: at least SAMPLES - 1 whole windows.
        elapsed = now - live[0][0]
        full = int(elapsed // WINDOW_S)
        if full < SAMPLES - 1:
            elapsed += (SAMPLES - 1 - full) * WINDOW_S
        return sum(x[field] for x in live) / elapsed

    def avg(self, now: float) -> float:
        live = self._live(now)
        n = sum(x[1] for x in live)
        return sum(x[2] for x in live) / n if n else float("nan")

    def max(self, now: float) -> float:
        live = self._live(now)
        return max((x[3] for x in live), default=float("nan"))


class _ClientMetrics:
    kind = ""

    def __init__(self, client_id: str, registry):
        require_prometheus_client("metrics_registry")
        self.client_id = client_id
        self._lock = threading.Lock()
        _collector_of(registry).clients.add(self)

    def close(self, registry) -> None:
        _collector_of(registry).clients.discard(self)


class ProducerMetrics(_ClientMetrics):
    """producer-metrics: record-send, batch-size, request-latency, request
    and record-error. Called by the sender thread."""

    kind = "producer"

    def __init__(self, client_id, registry):
        super().__init__(client_id, registry)
        self.records_sent = Windowed()    # a batch's record count per sample
        self.batch_size = Windowed()      # bytes per batch
        self.latency = Windowed()         # ms per produce request
        self.errors = Windowed()          # records per failed batch
        self.totals = {"record_send": 0, "request": 0, "record_error": 0}

    def batches_sent(self, batches) -> None:
        now = time.monotonic()
        with self._lock:
            for b in batches:
                self.records_sent.record(b.records_count, now)
                self.batch_size.record(b.size, now)
                self.totals["record_send"] += b.records_count

    def request_done(self, latency_ms: float) -> None:
        with self._lock:
            self.latency.record(latency_ms, time.monotonic())
            self.totals["request"] += 1

    def batch_failed(self, records: int) -> None:
        with self._lock:
            self.errors.record(records, time.monotonic())
            self.totals["record_error"] += records

    def values(self):
        now = time.monotonic()
        with self._lock:
            return {
                "record_send_rate": self.records_sent.rate(now),
                "batch_size_avg": self.batch_size.avg(now),
                "batch_size_max": self.batch_size.max(now),
                "request_latency_avg": self.latency.avg(now),
                "request_latency_max": self.latency.max(now),
                "request_rate": self.latency.count_rate(now),
                "record_error_rate": self.errors.rate(now),
            }, dict(self.totals)


class ConsumerMetrics(_ClientMetrics):
    """consumer-fetch-manager-metrics: records-lag-max, fetch rate and
    latency, records and bytes consumed. Called by the poll() caller."""

    kind = "consumer"

    def __init__(self, client_id, registry):
        super().__init__(client_id, registry)
        self.lag = Windowed()
        self.fetch_latency = Windowed()
        self.records = Windowed()
        self.bytes = Windowed()
        self.totals = {"fetch": 0, "records_consumed": 0, "bytes_consumed": 0}

    def fetched(self, latency_ms: float, lags, nbytes: int) -> None:
        """One fetch: its time, each partition's lag (high watermark minus
        the fetch position, at fetch time) and its record bytes."""
        now = time.monotonic()
        with self._lock:
            self.fetch_latency.record(latency_ms, now)
            for lag in lags:
                self.lag.record(lag, now)
            self.bytes.record(nbytes, now)
            self.totals["fetch"] += 1
            self.totals["bytes_consumed"] += nbytes

    def consumed(self, n: int) -> None:
        with self._lock:
            self.records.record(n, time.monotonic())
            self.totals["records_consumed"] += n

    def values(self):
        now = time.monotonic()
        with self._lock:
            return {
                "records_lag_max": self.lag.max(now),
                "fetch_rate": self.fetch_latency.count_rate(now),
                "fetch_latency_avg": self.fetch_latency.avg(now),
                "fetch_latency_max": self.fetch_latency.max(now),
                "records_consumed_rate": self.records.rate(now),
                "bytes_consumed_rate": self.bytes.rate(now),
            }, dict(self.totals)


_COLLECTORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_COLLECTORS_LOCK = threading.Lock()


class _ClientsCollector:
    """One per registry, for every client using it: a registry refuses a
    second collector with the same names, and several clients share names
    (their client_id label tells them apart)."""

    def __init__(self):
        self.clients = weakref.WeakSet()

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        gauges, counters = {}, {}
        for c in list(self.clients):
            vals, totals = c.values()
            for name, v in vals.items():
                fam = gauges.get((c.kind, name))
                if fam is None:
                    fam = gauges[(c.kind, name)] = GaugeMetricFamily(
                        f"kafka_{c.kind}_{name}", f"{c.kind} {name.replace('_', '-')}", labels=["client_id"])
                fam.add_metric([c.client_id], v)
            for name, v in totals.items():
                fam = counters.get((c.kind, name))
                if fam is None:
                    fam = counters[(c.kind, name)] = CounterMetricFamily(
                        f"kafka_{c.kind}_{name}", f"{c.kind} {name.replace('_', '-')}-total", labels=["client_id"])
                fam.add_metric([c.client_id], v)
        yield from gauges.values()
        yield from counters.values()


def _collector_of(registry) -> _ClientsCollector:
    with _COLLECTORS_LOCK:
        c = _COLLECTORS.get(registry)
        if c is None:
            c = _COLLECTORS[registry] = _ClientsCollector()
            registry.register(c)
        return c
