"""pylog's Producer and Consumer export Kafka's client metric names into the
prometheus_client registry they are given; a real broker, the registry's
own text exposition parsed back."""
from __future__ import annotations

import math

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from pylog.consumer import Consumer  # noqa: E402
from pylog.producer import Producer  # noqa: E402
from pylog.structs import TopicPartition  # noqa: E402
from pylog.testing import running_broker, wait_until  # noqa: E402


def samples(registry) -> dict[tuple, float]:
    text = prometheus_client.generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_producer_and_consumer_metrics(tmp_path):
    reg = prometheus_client.CollectorRegistry()
    with running_broker(tmp_path / "d") as b:
        p = Producer(b, client_id="prod-1", acks="all", metrics_registry=reg, linger_ms=5)
        try:
            for i in range(1000):
                p.send("client-metrics", b"v%05d" % i, partition=0)
            assert p.flush(30) == 0
            s = samples(reg)
        finally:
            p.close()
        cid = (("client_id", "prod-1"),)
        assert s[("kafka_producer_record_send_total", cid)] == 1000
        assert s[("kafka_producer_request_total", cid)] >= 1
        assert s[("kafka_producer_record_error_total", cid)] == 0
        assert s[("kafka_producer_batch_size_avg", cid)] > 0
        assert s[("kafka_producer_batch_size_max", cid)] >= s[("kafka_producer_batch_size_avg", cid)]
        assert s[("kafka_producer_request_latency_avg", cid)] >= 0
        assert s[("kafka_producer_record_send_rate", cid)] > 0

        c = Consumer(bootstrap_servers=b, client_id="cons-1", auto_offset_reset="earliest",
                     metrics_registry=reg)
        c.assign([TopicPartition("client-metrics", 0)])
        got = []
        try:
            wait_until(lambda: got.extend(c.poll(0.5)) or len(got) >= 1000, what="1000 records polled")
            s = samples(reg)
        finally:
            c.close()
        cid = (("client_id", "cons-1"),)
        assert s[("kafka_consumer_records_consumed_total", cid)] == len(got) == 1000
        assert s[("kafka_consumer_fetch_total", cid)] >= 1
        assert s[("kafka_consumer_bytes_consumed_total", cid)] > 1000 * 6
        # The first fetch asked at offset 0 with the high watermark at 1000.
        assert s[("kafka_consumer_records_lag_max", cid)] == 1000
        assert not math.isnan(s[("kafka_consumer_fetch_latency_avg", cid)])
        # Closed clients leave the registry.
        assert not any(k[1] in ((("client_id", "cons-1"),), (("client_id", "prod-1"),)) for k in samples(reg))


def test_windows_follow_kafkas_sampled_stats():
    from pylog.metrics.clients import Windowed
    w = Windowed()
    w.record(10, 100.0)
    w.record(30, 101.0)
    # Kafka's Rate: the elapsed time counts at least one whole 30 s window more.
    assert w.rate(101.0) == pytest.approx(40 / 31.0)
    assert w.count_rate(101.0) == pytest.approx(2 / 31.0)
    assert (w.avg(101.0), w.max(101.0)) == (20, 30)
    w.record(2, 131.0)      # a second window
    assert w.max(131.0) == 30 and w.avg(131.0) == pytest.approx(14)
    w.record(1, 162.0)      # a third: the first falls out
    assert w.max(162.0) == 2 and w.avg(162.0) == pytest.approx(1.5)
    assert w.rate(162.0) == pytest.approx(3 / 31.0)   # samples from 131 s: 31 s elapsed, one whole window
    assert math.isnan(Windowed().avg(0.0))
