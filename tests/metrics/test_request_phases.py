"""Kafka's RequestMetrics phases on a real broker (pylog/metrics/requests.py):
requests sent over real sockets with exact counts, /metrics scraped over HTTP
and parsed with prometheus_client's parser. Bounds are lower bounds only, set
by what the test itself made the request wait (a sleep before producing, a
reader that does not read)."""
from __future__ import annotations

import time

import pytest
from kafkawire import Wire

from pylog import _engine
from pylog.protocol import messages as m
from pylog.protocol.framing import encode_request
from pylog.testing import running_broker, wait_until

from .test_broker_metrics import METRICS, scrape, value

pytest.importorskip("prometheus_client")

PHASES = ("totaltimems", "requestqueuetimems", "localtimems", "remotetimems", "throttletimems",
          "responsequeuetimems", "responsesendtimems")
MB = 1 << 20


def family(samples, phase, request, part="count"):
    return value(samples, f"kafka_network_requestmetrics_{phase}_{part}", request=request)


def counts(port, request):
    s = scrape(port)
    return {p: family(s, p, request) for p in PHASES}


def fetch(topic, max_wait_ms, min_bytes, max_bytes=1 << 20):
    F = m.FetchRequest
    return F(replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=min_bytes, max_bytes=max_bytes, isolation_level=0,
             topics=[F.FetchTopic(topic=topic, partitions=[F.FetchPartition(partition=0, fetch_offset=0,
                                                                             partition_max_bytes=max_bytes)])])


def produce_request(topic, values):
    P = m.ProduceRequest
    return P(transactional_id=None, acks=1, timeout_ms=30000, topic_data=[P.TopicProduceData(
        name=topic, partition_data=[P.PartitionProduceData(index=0, records=_engine.encode_batch(values))])])


def test_every_phase_counts_each_request_once(tmp_path):
    n = 40
    with running_broker(tmp_path / "d", config=METRICS) as b:
        port = b.broker.metrics.port
        before = counts(port, "Metadata")
        with Wire(b) as w:
            w.sock.settimeout(60)
            # One write of n requests: one read on the broker, answers gathered into one write.
            cids = [w.cid + 1 + i for i in range(n)]
            frames = []
            for _ in range(n):
                w.cid += 1
                frames.append(encode_request(w.cid, 3, 12, m.MetadataRequest(topics=None), w.client_id))
            w.sock.sendall(b"".join(frames))
            for cid in cids:
                w.receive(3, 12, cid)
        wait_until(lambda: counts(port, "Metadata") == {p: before[p] + n for p in PHASES},
                   what=f"every phase of Metadata counted {n} more times")
        s = scrape(port)
        names = {k[0] for k in s}
        for p in PHASES:
            assert f"kafka_network_requestmetrics_{p}" in names       # the percentiles
            assert f"kafka_network_requestmetrics_{p}_sum" in names
        # Pipelined: all but the first waited for the ones before them in the
        # same read, and every answer for the read's last one to be handled.
        assert family(s, "requestqueuetimems", "Metadata", "sum") > 0
        assert family(s, "responsequeuetimems", "Metadata", "sum") > 0
        assert family(s, "localtimems", "Metadata", "sum") > 0
        assert family(s, "throttletimems", "Metadata", "sum") == 0
        assert family(s, "totaltimems", "Metadata", "sum") >= family(s, "localtimems", "Metadata", "sum")


def test_a_fetch_waiting_in_the_purgatory_is_remote_time(tmp_path):
    with running_broker(tmp_path / "d", config=METRICS) as b:
        b.broker.create_topic("t", 1)
        port = b.broker.metrics.port
        part = b.broker.log_manager.partitions[("t", 0)]
        with Wire(b) as w:
            w.sock.settimeout(60)
            cid = w.send(1, 11, fetch("t", max_wait_ms=600_000, min_bytes=1))
            wait_until(lambda: b.broker.call(lambda: b.broker.handlers.purgatory.watching(part)) == 1,
                       what="the fetch to wait in the purgatory")
            waited_from = time.monotonic()
            time.sleep(0.3)
            with Wire(b) as producer:
                r = producer.request(0, 7, produce_request("t", [b"wake up"]))
                assert r.responses[0].partition_responses[0].error_code == 0
            r = w.receive(1, 11, cid)
            waited_ms = (time.monotonic() - waited_from) * 1000
            assert r.responses[0].partitions[0].records
        wait_until(lambda: family(scrape(port), "totaltimems", "Fetch") == 1, what="the fetch timed")
        s = scrape(port)
        assert family(s, "remotetimems", "FetchConsumer") == 1
        remote = family(s, "remotetimems", "Fetch", "sum")
        assert remote >= 300
        assert family(s, "totaltimems", "Fetch", "sum") >= remote + family(s, "localtimems", "Fetch", "sum")
        # It was not running on the loop while it waited.
        assert family(s, "localtimems", "Fetch", "sum") < remote
        assert waited_ms >= 300
        # The acks=1 produce was answered at once: no remote time.
        assert family(s, "remotetimems", "Produce") == 1
        assert family(s, "remotetimems", "Produce", "sum") == 0


def test_throttle_time_is_what_the_answers_carry(tmp_path):
    config = {**METRICS, "quota.window.num": "2", "quota.window.size.seconds": "1"}
    with running_broker(tmp_path / "d", config=config) as b:
        b.broker.create_topic("q", 1)
        port = b.broker.metrics.port
        Q = m.AlterClientQuotasRequest
        with Wire(b, client_id="admin") as admin:
            r = admin.request(49, 1, Q(validate_only=False, entries=[Q.EntryData(
                entity=[Q.EntityData(entity_type="client-id", entity_name="slow")],
                ops=[Q.OpData(key="producer_byte_rate", value=20000.0, remove=False)])]))
            assert r.entries[0].error_code == 0
        quotas = b.broker.client_quotas
        wait_until(lambda: quotas._quota("producer_byte_rate", "User:ANONYMOUS", "slow")[0] is not None,
                   what="the quota enforced")
        before = scrape(port)
        throttled = []
        with Wire(b, client_id="slow") as w:
            w.sock.settimeout(60)
            for _ in range(3):
                r = w.request(0, 7, produce_request("q", [b"x" * 40000]))
                throttled.append(r.throttle_time_ms)
        assert max(throttled) > 0    # 120 KB at 20 KB/s
        wait_until(lambda: family(scrape(port), "throttletimems", "Produce") -
                   family(before, "throttletimems", "Produce") == 3, what="the produces timed")
        s = scrape(port)
        assert family(s, "throttletimems", "Produce", "sum") - family(before, "throttletimems", "Produce", "sum") \
            == sum(throttled)


def test_an_answer_the_client_does_not_read_is_send_time(tmp_path):
    with running_broker(tmp_path / "d", config=METRICS) as b:
        b.broker.create_topic("big", 1)
        port = b.broker.metrics.port
        with Wire(b) as w:
            w.sock.settimeout(60)
            for _ in range(24):   # 12 MB: more than the broker's socket buffer (tcp_wmem's 4 MB at most)
                r = w.request(0, 7, produce_request("big", [b"v" * (MB // 2)]))
                assert r.responses[0].partition_responses[0].error_code == 0
        # The reader's receive window stays small while it does not read
        # (Linux grows it as the application reads).
        with Wire(b) as reader:
            reader.sock.settimeout(60)
            cid = reader.send(1, 11, fetch("big", max_wait_ms=0, min_bytes=0, max_bytes=16 * MB))
            time.sleep(1.0)
            r = reader.receive(1, 11, cid)
            assert len(r.responses[0].partitions[0].records) > 12 * MB - MB // 2
        wait_until(lambda: family(scrape(port), "totaltimems", "Fetch") == 1, what="the fetch timed")
        s = scrape(port)
        send = family(s, "responsesendtimems", "Fetch", "sum")
        assert send >= 500
        assert family(s, "totaltimems", "Fetch", "sum") >= send
        assert family(s, "remotetimems", "Fetch", "sum") < send


@pytest.mark.kafka_broker(tls=True, config=METRICS)
def test_requests_over_tls_are_timed_too(kafka_broker):
    # The timer sits in front of asyncio's TLS transport as of the plain one.
    ck = pytest.importorskip("confluent_kafka")
    pytest.importorskip("cryptography")
    port = kafka_broker.broker.metrics.port
    conf = {"bootstrap.servers": str(kafka_broker), "security.protocol": "SSL",
            "ssl.ca.location": kafka_broker.certs.ca}
    p = ck.Producer({**conf, "acks": "all", "linger.ms": 5})
    for i in range(200):
        p.produce("tls-timed", b"%06d" % i + b"x" * 4000)
    assert p.flush(60) == 0
    c = ck.Consumer({**conf, "group.id": "tls-timed", "auto.offset.reset": "earliest"})
    c.subscribe(["tls-timed"])
    got = []
    try:
        wait_until(lambda: got.extend(m for m in c.consume(100, 0.5) if not m.error()) or len(got) >= 200,
                   what="200 records over TLS")
    finally:
        c.close()

    def all_timed():
        s = scrape(port)
        sent = {r: sum(v for (n, lab), v in s.items() if n == "kafka_network_requestmetrics_requests_total"
                       and ("request", r) in lab) for r in ("Produce", "Fetch")}
        return all(n > 0 and family(s, ph, r) == n for r, n in sent.items() for ph in PHASES)
    wait_until(all_timed, what="every produce and fetch over TLS timed in every phase")
    s = scrape(port)
    assert family(s, "localtimems", "Produce", "sum") > 0
    assert family(s, "totaltimems", "Produce", "sum") >= family(s, "localtimems", "Produce", "sum")
