"""The broker's /metrics: a prometheus_client collector over the broker's
state and counters, served by prometheus_client's HTTP server on its own
thread (pylog.metrics.listener).

Threads: a scrape runs on the HTTP server's thread. What only the event loop
may touch (partitions, groups, the purgatory, the counters) is copied there
in one callback (BrokerMetrics.snapshot: plain numbers per partition, no I/O
but each log's in-memory segment sizes under its lock, held only to add them
up); the log cleaner's figures are read on the scrape thread (LogCleaner.stats
is for any thread but the loop); formatting is off the loop.
"""
from __future__ import annotations

import asyncio
import logging

from . import parse_listener
from .requests import PHASES, RequestMetrics
from ..groups.consumer_group import ConsumerGroup, ConsumerGroupState
from ..groups.coordinator import GroupState
from ..log.flush_stats import FLUSHES

log = logging.getLogger("pylog.metrics")

# The JMX exporter's quantile labels for Kafka's histogram percentiles
# (50thPercentile -> "0.50", 999thPercentile -> "0.999").
QUANTILES = (("0.50", 0.50), ("0.75", 0.75), ("0.95", 0.95), ("0.98", 0.98), ("0.99", 0.99), ("0.999", 0.999))
SCRAPE_TIMEOUT_S = 10.0
# Kafka's group-coordinator-metrics protocol tags and their groups' states.
GROUP_STATES = {"classic": tuple(st.value for st in GroupState),
                "consumer": tuple(st.value for st in ConsumerGroupState)}


def _protocol(group) -> str:
    """The rebalance protocol of a group of GroupCoordinator.groups (KIP-848
    groups share the dict with the classic ones)."""
    return "consumer" if isinstance(group, ConsumerGroup) else "classic"


class BrokerMetrics:
    """One broker's metrics: its RequestMetrics (fed on the loop by the
    Connections) and, once start() ran, the HTTP endpoint. start() and
    stop() on the event loop thread; collect() on the HTTP thread."""

    def __init__(self, broker):
        self.broker = broker
        self.requests = RequestMetrics()
        self.host, self.port = parse_listener(broker.config.get("pylog.metrics.listener"))
        self._httpd = None
        self._thread = None

    # Connection hooks (loop thread).
    def connection_made(self, conn):
        self.requests.connection_made(conn)

    def connection_lost(self, conn):
        self.requests.connection_lost(conn)

    def start(self):
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.process_collector import ProcessCollector
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        ProcessCollector(registry=registry)
        self._httpd, self._thread = start_http_server(self.port, self.host, registry)
        self.port = self._httpd.server_port
        log.info("broker %d: Prometheus metrics at http://%s:%d/metrics", self.broker.broker_id, self.host,
                 self.port)

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def snapshot(self) -> dict:
        """Everything the collector needs from loop-owned state, as plain
        data. Event-loop thread only."""
        b = self.broker
        lm = b.log_manager
        parts = []
        for (topic, index), p in list(lm.partitions.items()):
            try:
                size = p.log.size_bytes
                start, end = p.log_start_offset, p.log_end_offset
            except Exception:  # noqa: BLE001 -- a log closed under the scrape (deleted): left out
                continue
            parts.append((topic, index, p.is_leader, len(p.isr), len(p.replicas), p.min_insync_replicas,
                          p.bytes_out, size, start, end, p.high_watermark, p.isr_shrinks, p.isr_expands))
        purgatory = b.handlers.purgatory.operations() if b.handlers is not None else {}
        groups = []
        if b.groups is not None:
            for gid, g in list(b.groups.groups.items()):
                groups.append((gid, _protocol(g), g.state.value,
                               [(t, i, om.offset) for (t, i), om in g.offsets.items()]))
        ctl = b.controller
        controller = None
        if ctl is not None:
            controller = (ctl.is_active, ctl.offline_partition_count() if ctl.is_active else 0,
                          ctl.event_queue_size())
        return {
            "broker_id": b.broker_id,
            "data_dir": str(b.data_dir),
            "partitions": parts,
            "offline_replicas": sum(len(t.offline) for t in lm.topics.values()),
            "topic_stats": self._topic_stats(),
            "requests": self.requests.snapshot(),
            "purgatory": purgatory,
            "groups": groups,
            "completed_rebalances": b.groups.completed_rebalances if b.groups is not None else 0,
            "controller": controller,
        }


    def _topic_stats(self) -> dict:
        b = self.broker
        if b.handlers is None:
            return {}
        b.handlers.topic_stats.forget_topics_except(b.log_manager.topics)
        return b.handlers.topic_stats.snapshot()


class _Collector:
    """prometheus_client's custom collector: called on the HTTP thread."""

    def __init__(self, metrics: BrokerMetrics):
        self.metrics = metrics

    def collect(self):
        m = self.metrics
        b = m.broker
        if b._loop is None or b.stopping:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is b._loop:   # (a test collecting on the loop itself)
            snap = m.snapshot()
        else:
            snap = b._submit_to_loop(m.snapshot).result(SCRAPE_TIMEOUT_S)
        cleaner = None
        if b.log_cleaner is not None:
            try:
                cleaner = b.log_cleaner.stats()
            except Exception:  # noqa: BLE001 -- a log closed under the scrape: no cleaner figures this time
                log.debug("cleaner stats failed", exc_info=True)
        snap["flushes"] = FLUSHES.snapshot()
        yield from _families(snap, cleaner)


def _families(snap, cleaner):
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

    def counter(name, doc, labels=()):
        return CounterMetricFamily(name, doc, labels=list(labels))

    def gauge(name, doc, labels=()):
        return GaugeMetricFamily(name, doc, labels=list(labels))

    parts = snap["partitions"]
    ts = snap["topic_stats"]

    # ---- kafka.server:type=BrokerTopicMetrics ----
    bytes_out: dict[str, int] = {}
    for p in parts:
        bytes_out[p[0]] = bytes_out.get(p[0], 0) + p[6]
    per_topic = (
        ("messagesin", "MessagesInPerSec: records appended by produce requests", ts.get("messages_in", {})),
        ("bytesin", "BytesInPerSec: record bytes of produce requests appended", ts.get("bytes_in", {})),
        ("bytesout", "BytesOutPerSec: record bytes sent to consumers (not followers)", bytes_out),
        ("totalproducerequests", "TotalProduceRequestsPerSec: partitions of produce requests",
         ts.get("produce_total", {})),
        ("failedproducerequests", "FailedProduceRequestsPerSec", ts.get("produce_failed", {})),
        ("totalfetchrequests", "TotalFetchRequestsPerSec: partitions read for fetch requests",
         ts.get("fetch_total", {})),
        ("failedfetchrequests", "FailedFetchRequestsPerSec", ts.get("fetch_failed", {})),
    )
    for short, doc, values in per_topic:
        # Kafka's all-topics meter has no topic tag: the same family, no label.
        f = Metric(f"kafka_server_brokertopicmetrics_{short}", doc, "counter")
        for topic, v in sorted(values.items()):
            f.add_sample(f.name + "_total", {"topic": topic}, v)
        f.add_sample(f.name + "_total", {}, sum(values.values()))
        yield f

    # ---- kafka.log:type=LogFlushStats (this process's logs) ----
    count, total_ms, flushes = snap["flushes"]
    ff = Metric("kafka_log_logflushstats_logflushrateandtimems", "LogFlushRateAndTimeMs: ms per log flush "
                "(every log of this process)", "summary")
    flushes.sort()
    for label, q in QUANTILES:
        if flushes:
            ff.add_sample(ff.name, {"quantile": label}, flushes[min(len(flushes) - 1, int(q * len(flushes)))])
    ff.add_sample(ff.name + "_count", {}, count)
    ff.add_sample(ff.name + "_sum", {}, total_ms)
    yield ff

    # ---- kafka.network:type=RequestMetrics ----
    req = snap["requests"]
    rf = counter("kafka_network_requestmetrics_requests", "RequestsPerSec per API and version",
                 ["request", "version"])
    times = [Metric(f"kafka_network_requestmetrics_{k}", f"RequestMetrics {v} (ms): percentiles of the newest "
                    f"samples, count and sum since start", "summary") for k, v in PHASES]
    for name, a in sorted(req["apis"].items()):
        for version, n in sorted(a["versions"].items()):
            rf.add_metric([name, str(version)], n)
        for i, fam in enumerate(times):
            samples = sorted(a["samples"][i])
            for label, q in QUANTILES:
                if samples:
                    fam.add_sample(fam.name, {"request": name, "quantile": label},
                                   samples[min(len(samples) - 1, int(q * len(samples)))])
            fam.add_sample(fam.name + "_count", {"request": name}, a["count"])
            fam.add_sample(fam.name + "_sum", {"request": name}, a["sums"][i])
    yield rf
    yield from times

    # ---- kafka.server:type=socket-server-metrics ----
    cc = gauge("kafka_server_socketservermetrics_connection_count", "connection-count per listener",
               ["listener"])
    ct = counter("kafka_server_socketservermetrics_connection_creation", "connection-creation-total per listener",
                 ["listener"])
    for listener, n in sorted(req["open"].items()):
        cc.add_metric([listener], n)
    for listener, n in sorted(req["created"].items()):
        ct.add_metric([listener], n)
    yield cc
    yield ct

    # ---- kafka.server:type=DelayedOperationPurgatory ----
    ps = gauge("kafka_server_delayedoperationpurgatory_purgatorysize",
               "PurgatorySize: watches of waiting operations", ["delayedOperation"])
    nd = gauge("kafka_server_delayedoperationpurgatory_numdelayedoperations",
               "NumDelayedOperations: operations waiting", ["delayedOperation"])
    for kind in ("Produce", "Fetch"):
        watches, ops = snap["purgatory"].get(kind, (0, 0))
        ps.add_metric([kind], watches)
        nd.add_metric([kind], ops)
    yield ps
    yield nd

    # ---- kafka.server:type=ReplicaManager ----
    leaders = [p for p in parts if p[2]]
    rm = (
        ("partitioncount", "PartitionCount: replicas hosted here", len(parts)),
        ("leadercount", "LeaderCount: partitions led here", len(leaders)),
        ("underreplicatedpartitions", "UnderReplicatedPartitions: led here with an ISR smaller than the replicas",
         sum(1 for p in leaders if p[3] < p[4])),
        ("underminisrpartitioncount", "UnderMinIsrPartitionCount: led here with an ISR below min.insync.replicas",
         sum(1 for p in leaders if p[3] < p[5])),
        ("atminisrpartitioncount", "AtMinIsrPartitionCount: led here with an ISR of exactly min.insync.replicas",
         sum(1 for p in leaders if p[3] == p[5])),
        ("offlinereplicacount", "OfflineReplicaCount: replicas whose log could not be opened",
         snap["offline_replicas"]),
    )
    for short, doc, v in rm:
        g = gauge(f"kafka_server_replicamanager_{short}", doc)
        g.add_metric([], v)
        yield g
    for short, doc, i in (("isrshrinks", "IsrShrinksPerSec", 11), ("isrexpands", "IsrExpandsPerSec", 12)):
        c = counter(f"kafka_server_replicamanager_{short}", doc + " (of partitions hosted now)")
        c.add_metric([], sum(p[i] for p in parts))
        yield c

    # ---- kafka.log:type=Log ----
    logf = {k: gauge(f"kafka_log_log_{k}", doc, ["topic", "partition"]) for k, doc in (
        ("size", "Size: bytes of the log's segments"), ("logstartoffset", "LogStartOffset"),
        ("logendoffset", "LogEndOffset"))}
    hw = gauge("kafka_topic_partition_current_offset", "the high watermark (kafka_exporter's name)",
               ["topic", "partition"])
    for p in parts:
        lab = [p[0], str(p[1])]
        logf["size"].add_metric(lab, p[7])
        logf["logstartoffset"].add_metric(lab, p[8])
        logf["logendoffset"].add_metric(lab, p[9])
        hw.add_metric(lab, p[10])
    yield from logf.values()
    yield hw

    # ---- kafka.controller ----
    ctl = snap["controller"]
    for name, doc, v in (
            ("kafka_controller_kafkacontroller_activecontrollercount", "ActiveControllerCount",
             1 if ctl and ctl[0] else 0),
            ("kafka_controller_kafkacontroller_offlinepartitionscount",
             "OfflinePartitionsCount (the active controller's; 0 elsewhere)", ctl[1] if ctl else 0),
            ("kafka_controller_controllereventmanager_eventqueuesize", "EventQueueSize", ctl[2] if ctl else 0)):
        g = gauge(name, doc)
        g.add_metric([], v)
        yield g

    # ---- kafka.coordinator.group:type=GroupMetadataManager; consumer lag ----
    groups = snap["groups"]
    counts = {(p, st): 0 for p, states in GROUP_STATES.items() for st in states}
    for _gid, protocol, state, _offs in groups:
        counts[protocol, state] += 1
    # Kafka's older GroupMetadataManager gauges count classic groups only.
    g = gauge("kafka_coordinator_group_groupmetadatamanager_numgroups", "NumGroups (classic groups)")
    g.add_metric([], sum(1 for gr in groups if gr[1] == "classic"))
    yield g
    for st in GROUP_STATES["classic"]:
        g = gauge(f"kafka_coordinator_group_groupmetadatamanager_numgroups{st.lower()}", f"NumGroups{st}")
        g.add_metric([], counts["classic", st])
        yield g
    # ... and group-coordinator-metrics both protocols.
    g = gauge("kafka_server_group_coordinator_metrics_group_count", "group-count per rebalance protocol",
              ["protocol"])
    for protocol, states in GROUP_STATES.items():
        g.add_metric([protocol], sum(counts[protocol, st] for st in states))
    yield g
    for protocol, states in GROUP_STATES.items():
        g = gauge(f"kafka_server_group_coordinator_metrics_{protocol}_group_count",
                  f"{protocol}-group-count per state", ["state"])
        for st in states:
            g.add_metric([st], counts[protocol, st])
        yield g
    g = gauge("kafka_server_group_coordinator_metrics_offset_count", "offset-count: committed offsets retained")
    g.add_metric([], sum(len(gr[3]) for gr in groups))
    yield g
    g = gauge("kafka_server_group_coordinator_metrics_group_completed_rebalance_count",
              "group-completed-rebalance-count (group-coordinator-metrics): rebalances ended Stable")
    g.add_metric([], snap["completed_rebalances"])
    yield g
    g = gauge("kafka_coordinator_group_groupmetadatamanager_numoffsets", "NumOffsets")
    g.add_metric([], sum(len(gr[3]) for gr in groups))
    yield g
    hws = {(p[0], p[1]): p[10] for p in parts}
    lag = gauge("kafka_consumergroup_lag", "high watermark minus the committed offset (partitions hosted here)",
                ["consumergroup", "topic", "partition"])
    cur = gauge("kafka_consumergroup_current_offset", "the committed offset", ["consumergroup", "topic", "partition"])
    for gid, _protocol, _state, offs in groups:
        for topic, index, off in offs:
            lab = [gid, topic, str(index)]
            cur.add_metric(lab, off)
            h = hws.get((topic, index))
            if h is not None and off >= 0:
                lag.add_metric(lab, max(h - off, 0))
    yield cur
    yield lag

    # ---- kafka.log:type=LogCleaner, LogCleanerManager ----
    if cleaner is not None:
        rounds = [s for s in cleaner.values() if s.last_round is not None]
        last = max(rounds, key=lambda s: s.last_round_ms).last_round if rounds else None
        values = (
            ("kafka_log_logcleanermanager_max_dirty_percent", "max-dirty-percent of the compacted logs",
             int(100 * max((s.dirty_ratio for s in cleaner.values()), default=0.0))),
            ("kafka_log_logcleaner_cleaner_recopy_percent", "cleaner-recopy-percent of the last round",
             int(100 * last.bytes_written / max(last.bytes_read, 1)) if last else 0),
            ("kafka_log_logcleaner_max_clean_time_secs", "max-clean-time-secs of the last round",
             int(last.elapsed_s) if last else 0),
            ("kafka_log_logcleaner_max_buffer_utilization_percent", "max-buffer-utilization-percent, last round",
             int(100 * last.map_entries * last.map_bytes_per_entry / last.map_memory_bytes)
             if last and last.map_memory_bytes else 0),
            ("kafka_log_logcleaner_max_compaction_delay_secs", "max-compaction-delay-secs",
             max((s.max_compaction_delay_ms for s in cleaner.values()), default=0) // 1000),
        )
        for name, doc, v in values:
            g = gauge(name, doc)
            g.add_metric([], v)
            yield g
        g = gauge("kafka_log_logcleanermanager_uncleanable_partitions_count", "uncleanable-partitions-count",
                  ["logDirectory"])
        g.add_metric([snap["data_dir"]], sum(1 for s in cleaner.values() if s.state == "uncleanable"))
        yield g
