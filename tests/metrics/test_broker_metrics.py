"""The broker's /metrics: real brokers (in-process and as a process), real
confluent-kafka clients, the endpoint scraped over HTTP and parsed with
prometheus_client's own text parser."""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

ck = pytest.importorskip("confluent_kafka")

from pylog.testing import free_port, running_broker, wait_until  # noqa: E402

from brokerproc import BrokerProc  # noqa: E402

METRICS = {"pylog.metrics.listener": "127.0.0.1:0"}


def scrape(port: int) -> dict[tuple, float]:
    """{(sample name, sorted label pairs): value} of one scrape."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def produce(bootstrap, topic, n, size=100, **conf):
    p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    for i in range(n):
        p.produce(topic, (b"%08d" % i) * (size // 8), partition=0)
    assert p.flush(30) == 0


def consume_all(bootstrap, topic, n):
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    c.assign([ck.TopicPartition(topic, 0, 0)])
    got = []
    try:
        wait_until(lambda: got.extend(m for m in c.consume(1000, 0.5) if not m.error()) or len(got) >= n,
                   what=f"{n} records consumed")
    finally:
        c.close()
    assert len(got) == n


EXPECTED = [
    "kafka_server_brokertopicmetrics_messagesin_total", "kafka_server_brokertopicmetrics_bytesin_total",
    "kafka_server_brokertopicmetrics_bytesout_total", "kafka_server_brokertopicmetrics_totalproducerequests_total",
    "kafka_server_brokertopicmetrics_failedproducerequests_total",
    "kafka_server_brokertopicmetrics_totalfetchrequests_total",
    "kafka_server_brokertopicmetrics_failedfetchrequests_total",
    "kafka_network_requestmetrics_requests_total", "kafka_network_requestmetrics_totaltimems_count",
    "kafka_network_requestmetrics_localtimems", "kafka_network_requestmetrics_remotetimems_sum",
    "kafka_server_delayedoperationpurgatory_purgatorysize", "kafka_server_replicamanager_partitioncount",
    "kafka_server_replicamanager_leadercount", "kafka_server_replicamanager_underreplicatedpartitions",
    "kafka_server_replicamanager_underminisrpartitioncount", "kafka_server_replicamanager_offlinereplicacount",
    "kafka_server_replicamanager_isrshrinks_total", "kafka_server_replicamanager_isrexpands_total",
    "kafka_controller_kafkacontroller_activecontrollercount",
    "kafka_controller_kafkacontroller_offlinepartitionscount",
    "kafka_controller_controllereventmanager_eventqueuesize",
    "kafka_coordinator_group_groupmetadatamanager_numgroups",
    "kafka_coordinator_group_groupmetadatamanager_numgroupsstable",
    "kafka_server_group_coordinator_metrics_group_count", "kafka_server_group_coordinator_metrics_classic_group_count",
    "kafka_server_group_coordinator_metrics_consumer_group_count",
    "kafka_server_group_coordinator_metrics_offset_count", "kafka_log_log_size",
    "kafka_log_log_logstartoffset", "kafka_log_log_logendoffset",
    "kafka_log_logcleanermanager_max_dirty_percent", "kafka_log_logcleaner_cleaner_recopy_percent",
    "kafka_log_logcleaner_max_clean_time_secs", "kafka_server_socketservermetrics_connection_count",
    "kafka_server_socketservermetrics_connection_creation_total", "process_cpu_seconds_total",
    "kafka_log_logflushstats_logflushrateandtimems_count",
]


def test_named_series_counters_and_request_metrics_move(tmp_path):
    with running_broker(tmp_path / "d", config=METRICS) as b:
        port = b.broker.metrics.port
        before = scrape(port)
        produce(b, "orders", 1000)
        s = scrape(port)
        names = {k[0] for k in s}
        assert [n for n in EXPECTED if n not in names] == []
        assert value(s, "kafka_server_brokertopicmetrics_messagesin_total", topic="orders") == 1000
        assert value(s, "kafka_server_brokertopicmetrics_messagesin_total") - \
            value(before, "kafka_server_brokertopicmetrics_messagesin_total") == 1000
        bytes_in = value(s, "kafka_server_brokertopicmetrics_bytesin_total", topic="orders")
        assert bytes_in > 1000 * 100   # the records' values plus batch and record headers
        assert value(s, "kafka_server_brokertopicmetrics_totalproducerequests_total", topic="orders") >= 1
        produced_reqs = sum(v for (n, lab), v in s.items()
                            if n == "kafka_network_requestmetrics_requests_total" and ("request", "Produce") in lab)
        assert produced_reqs >= 1
        assert value(s, "kafka_network_requestmetrics_totaltimems_count", request="Produce") == produced_reqs
        assert value(s, "kafka_log_log_logendoffset", topic="orders", partition="0") == 1000
        assert value(s, "kafka_log_log_size", topic="orders", partition="0") >= bytes_in
        assert value(s, "kafka_server_replicamanager_partitioncount") >= 1
        assert value(s, "kafka_controller_kafkacontroller_activecontrollercount") == 1
        assert value(s, "kafka_server_socketservermetrics_connection_creation_total", listener="PLAINTEXT") >= 1
        assert value(s, "kafka_server_brokertopicmetrics_bytesout_total", topic="orders") == 0

        consume_all(b, "orders", 1000)
        s2 = scrape(port)
        assert value(s2, "kafka_server_brokertopicmetrics_bytesout_total", topic="orders") >= bytes_in
        assert value(s2, "kafka_server_brokertopicmetrics_totalfetchrequests_total", topic="orders") >= 1
        fetches = sum(v for (n, lab), v in s2.items()
                      if n == "kafka_network_requestmetrics_requests_total" and ("request", "Fetch") in lab)
        assert fetches >= 1
        # Kafka's second name for a Fetch: a consumer's here (no followers).
        assert sum(v for (n, lab), v in s2.items() if n == "kafka_network_requestmetrics_requests_total"
                   and ("request", "FetchConsumer") in lab) == fetches
        assert value(s2, "kafka_network_requestmetrics_totaltimems_count", request="FetchFollower") == 0
        # Every fetch is timed once, the long poll the consumer's close left
        # waiting too, once the broker has seen the connection go.
        wait_until(lambda: value(scrape(port), "kafka_network_requestmetrics_remotetimems_count",
                                 request="Fetch") == fetches, what="every fetch timed")

        # A failed produce (an internal topic) counts as failed, as Kafka's
        # RecordValidation-like refusals do.
        produce_refused = ck.Producer({"bootstrap.servers": b, "message.timeout.ms": 5000})
        produce_refused.produce("__consumer_offsets", b"x", partition=0)
        produce_refused.flush(30)
        wait_until(lambda: value(scrape(port), "kafka_server_brokertopicmetrics_failedproducerequests_total",
                                 topic="__consumer_offsets") >= 1, what="a failed produce counted")


def test_log_flushes_are_timed(tmp_path):
    with running_broker(tmp_path / "d", config={**METRICS, "log.flush.interval.messages": "1"}) as b:
        port = b.broker.metrics.port
        before = value(scrape(port), "kafka_log_logflushstats_logflushrateandtimems_count")
        produce(b, "durable", 20)
        wait_until(lambda: value(scrape(port), "kafka_log_logflushstats_logflushrateandtimems_count") > before,
                   what="a flush counted")
        s = scrape(port)
        assert value(s, "kafka_log_logflushstats_logflushrateandtimems_sum") > 0
        assert value(s, "kafka_log_logflushstats_logflushrateandtimems", quantile="0.99") > 0


def test_consumer_lag_is_the_high_watermark_minus_the_committed_offset(tmp_path):
    with running_broker(tmp_path / "d", config=METRICS) as b:
        port = b.broker.metrics.port
        produce(b, "lagging", 50)
        c = ck.Consumer({"bootstrap.servers": b, "group.id": "g1", "enable.auto.commit": False})
        try:
            c.commit(offsets=[ck.TopicPartition("lagging", 0, 20)], asynchronous=False)
        finally:
            c.close()
        s = scrape(port)
        assert value(s, "kafka_consumergroup_current_offset", consumergroup="g1", topic="lagging",
                     partition="0") == 20
        assert value(s, "kafka_consumergroup_lag", consumergroup="g1", topic="lagging", partition="0") == 30
        assert value(s, "kafka_coordinator_group_groupmetadatamanager_numgroups") >= 1
        produce(b, "lagging", 5)
        assert value(scrape(port), "kafka_consumergroup_lag", consumergroup="g1", topic="lagging",
                     partition="0") == 35
        assert value(scrape(port), "kafka_server_group_coordinator_metrics_group_completed_rebalance_count") == 0
        # A member joins: one rebalance completes and the group is Stable.
        c = ck.Consumer({"bootstrap.servers": b, "group.id": "g2", "auto.offset.reset": "earliest"})
        try:
            c.subscribe(["lagging"])
            wait_until(lambda: c.poll(0.2) is not None and c.assignment(), what="an assignment")
            s = scrape(port)
        finally:
            c.close()
        assert value(s, "kafka_server_group_coordinator_metrics_group_completed_rebalance_count") == 1
        assert value(s, "kafka_coordinator_group_groupmetadatamanager_numgroupsstable") == 1


def group_counts(port) -> dict:
    s = scrape(port)
    out = {p: value(s, "kafka_server_group_coordinator_metrics_group_count", protocol=p)
           for p in ("classic", "consumer")}
    for protocol, states in (("classic", ("Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead")),
                             ("consumer", ("Empty", "Assigning", "Reconciling", "Stable", "Dead"))):
        for st in states:
            n = value(s, f"kafka_server_group_coordinator_metrics_{protocol}_group_count", state=st)
            if n:
                out[protocol, st] = n
    out["NumGroups"] = value(s, "kafka_coordinator_group_groupmetadatamanager_numgroups")
    out["offsets"] = value(s, "kafka_server_group_coordinator_metrics_offset_count")
    return out


def test_kip848_consumer_groups_are_counted_by_state(tmp_path):
    with running_broker(tmp_path / "d", config=METRICS) as b:
        port = b.broker.metrics.port
        produce(b, "groups848", 20)
        conf = {"bootstrap.servers": b, "auto.offset.reset": "earliest", "enable.auto.commit": False}
        classic = ck.Consumer({**conf, "group.id": "old"})
        modern = [ck.Consumer({**conf, "group.id": "new", "group.protocol": "consumer", "client.id": f"m{i}"})
                  for i in range(2)]
        try:
            for c in [classic, *modern]:
                c.subscribe(["groups848"])

            def settled():
                for c in [classic, *modern]:
                    c.poll(0.1)
                return group_counts(port) == {"classic": 1, "consumer": 1, ("classic", "Stable"): 1,
                                              ("consumer", "Stable"): 1, "NumGroups": 1, "offsets": 0}
            wait_until(settled, what="one Stable group of each protocol")
            modern[0].commit(offsets=[ck.TopicPartition("groups848", 0, 7)], asynchronous=False)
            wait_until(lambda: group_counts(port)["offsets"] == 1, what="the commit counted")
            assert value(scrape(port), "kafka_consumergroup_lag", consumergroup="new", topic="groups848",
                         partition="0") == 13
        finally:
            for c in modern:
                c.close()
        # Its members left: the consumer group is Empty, still counted, with its offsets.
        wait_until(lambda: group_counts(port) == {"classic": 1, "consumer": 1, ("classic", "Stable"): 1,
                                                  ("consumer", "Empty"): 1, "NumGroups": 1, "offsets": 1},
                   what="the consumer group Empty")
        classic.close()


def test_under_replicated_partitions_when_a_follower_dies():
    from cluster.zkcluster import create_topic, embedded_cluster, partition_md
    with embedded_cluster(**METRICS) as bs:
        admin = create_topic(bs, "replicated", 1)
        leader_id = partition_md(admin, "replicated")[0].leader
        leader = next(b for b in bs if b.broker.broker_id == leader_id)
        victim = next(b for b in bs[1:] if b is not leader)
        port = leader.broker.metrics.port
        # (Metadata may name the leader before its LeaderAndIsr is applied.)
        wait_until(lambda: value(scrape(port), "kafka_server_replicamanager_leadercount") == 1,
                   what="the leader leading")
        # The followers' first fetches may still be on their way on a loaded machine.
        wait_until(lambda: value(scrape(port), "kafka_network_requestmetrics_totaltimems_count",
                                 request="FetchFollower") >= 1, what="a follower's fetch timed")
        assert value(scrape(port), "kafka_server_replicamanager_underreplicatedpartitions") == 0
        victim.broker.stop_in_thread()
        # Records the dead follower never fetches: the leader drops it from
        # the ISR after replica.lag.time.max.ms (if the controller has not).
        produce(leader.bootstrap, "replicated", 10, acks="1")
        p = leader.broker.log_manager.partitions[("replicated", 0)]
        wait_until(lambda: value(scrape(port), "kafka_server_replicamanager_underreplicatedpartitions") == 1,
                   what=f"the leader reporting one under-replicated partition ({p!r}, victim "
                        f"{victim.broker.broker_id})")


def _listening_sockets(pid: int) -> int:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:   # LISTEN
                    n += 1
    return n


def test_off_when_unset_and_on_when_set(tmp_path):
    off = BrokerProc(tmp_path / "off")
    try:
        assert _listening_sockets(off.proc.pid) == 1   # the Kafka listener only
    finally:
        off.stop()
    port = free_port()
    on = BrokerProc(tmp_path / "on", overrides=[f"pylog.metrics.listener=127.0.0.1:{port}"])
    try:
        assert _listening_sockets(on.proc.pid) == 2
        assert "kafka_server_replicamanager_partitioncount" in {k[0] for k in scrape(port)}
    finally:
        on.stop()


def test_the_key_is_refused_without_prometheus_client(tmp_path):
    shim = tmp_path / "shim" / "prometheus_client"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim.parent), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"), "--port", "0",
                        "--override", "pylog.metrics.listener=127.0.0.1:0"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0
    assert "pylog.metrics.listener" in r.stderr and "pip install 'pylog[metrics]'" in r.stderr
    # pylog's clients refuse metrics_registry= the same way.
    client = subprocess.run([sys.executable, "-c", "from pylog.producer import Producer\n"
                             "Producer('127.0.0.1:1', metrics_registry=object())"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert client.returncode != 0 and "metrics_registry needs the prometheus_client package" in client.stderr
    # The same shim leaves a broker without the key alone.
    ok = subprocess.run([sys.executable, "-c", "import pylog.broker.config as c; c.BrokerConfig({})"], env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr


def test_topic_series_go_with_the_topic_and_unknown_names_make_none(tmp_path):
    from confluent_kafka.admin import AdminClient
    with running_broker(tmp_path / "d", config={**METRICS, "auto.create.topics.enable": "false"}) as b:
        port = b.broker.metrics.port
        admin = AdminClient({"bootstrap.servers": b})   # kept alive until the results are in
        admin.create_topics([ck.admin.NewTopic("doomed", 1, 1)])["doomed"].result(30)
        produce(b, "doomed", 5)
        assert value(scrape(port), "kafka_server_brokertopicmetrics_messagesin_total", topic="doomed") == 5
        # Produce and Fetch naming topics that do not exist (sent raw: clients
        # ask Metadata first): refused, and no series per invented name.
        from pylog.client.wire import Connection
        from pylog.protocol import messages as m
        P, F = m.ProduceRequest, m.FetchRequest
        with Connection("127.0.0.1", b.port) as c:
            for i in range(20):
                r = c.request(P(acks=1, timeout_ms=1000, transactional_id=None, topic_data=[P.TopicProduceData(
                    name=f"nope-{i}", partition_data=[P.PartitionProduceData(index=0, records=b"x" * 70)])]),
                    api_version=7)
                assert r.responses[0].partition_responses[0].error_code == 3   # UNKNOWN_TOPIC_OR_PARTITION
                r = c.request(F(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1000, isolation_level=0,
                                session_id=0, session_epoch=-1, topics=[F.FetchTopic(topic=f"nope-{i}", partitions=[
                                    F.FetchPartition(partition=0, current_leader_epoch=-1, fetch_offset=0,
                                                     log_start_offset=-1, partition_max_bytes=1000)])],
                                forgotten_topics_data=[]), api_version=11)
                assert r.responses[0].partitions[0].error_code == 3
        # Not even counted (metrics off, nothing would ever drop them).
        stats = b.broker.handlers.topic_stats
        counted = b.broker.call(lambda: {t for name in stats.__slots__ for t in getattr(stats, name)})
        assert counted == {"doomed"}
        assert not [k for k in scrape(port) if any(v.startswith("nope-") for _l, v in k[1])]
        admin.delete_topics(["doomed"])["doomed"].result(30)
        wait_until(lambda: not [k for k in scrape(port) if ("topic", "doomed") in k[1]],
                   what="the deleted topic's series gone")


def readme_series() -> set[str]:
    """The series the README's metrics table names, abbreviations expanded:
    `_x` and `..._x` after a full name are that name's family prefix + x,
    as is a bare `x`."""
    from pathlib import Path
    import re
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Metrics: Prometheus"):]
    section = section[:section.index("\n## ", 1)]
    named, prefix = set(), ""
    for line in section.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| ") or len(cells) < 3:
            continue
        for tok in re.findall(r"`([^`]+)`", cells[1]):
            tok = tok.split("{")[0]
            if tok.startswith(("kafka_", "process_")):
                name = tok
                base = name.removesuffix("_total")
                prefix = base[:base.rindex("_") + 1]
            else:
                name = prefix + tok.removeprefix("...").lstrip("_")
            named.add(name.removesuffix("_total"))
    return named


def test_the_readme_names_every_series_emitted(tmp_path):
    with running_broker(tmp_path / "d", config=METRICS) as b:
        produce(b, "listed", 10)
        consume_all(b, "listed", 10)
        port = b.broker.metrics.port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        emitted = {f.name for f in text_string_to_metric_families(text) if not f.name.startswith("process_")}
        assert "kafka_network_requestmetrics_responsesendtimems" in emitted
        assert sorted(emitted - readme_series()) == []
