"""Client quotas on a real broker with real clients: producer_byte_rate and
consumer_byte_rate (Kafka's ClientQuotaManager) and request_percentage
(ClientRequestQuotaManager), set with AlterClientQuotas.

Rates are measured on the client, over long windows, in the steady state
(after the broker first throttled): the first burst is what Kafka's rate
allows before it has a window of history. The rate tests run the broker with
quota.window.num=2: with Kafka's default 11 samples the rate holds over each
11-sample span, but a whole window's worth goes through at once whenever the
oldest sample rolls off (Kafka's behaviour too), so a 10-second measurement
would swing with the phase of those bursts."""
from __future__ import annotations

import threading
import time

import pytest

from pylog import _engine
from pylog.protocol import messages as m
from pylog.testing import running_broker, wait_until

# The autouse fixture closes what conn opened, here too.
from .test_controller_mutation_quota import _close_connections, alter, conn, describe  # noqa: F401

ck = pytest.importorskip("confluent_kafka")

MB = 1 << 20
SHORT_WINDOWS = {"quota.window.num": "2", "quota.window.size.seconds": "1"}

def create_topic(c, name, partitions=1):
    T = m.CreateTopicsRequest
    r = c.request(T(timeout_ms=30000, validate_only=False, topics=[T.CreatableTopic(
        name=name, num_partitions=partitions, replication_factor=1, assignments=[], configs=[])]), api_version=5)
    assert r.topics[0].error_code == 0, r.topics[0].error_message


def produce(c, topic, value_size, n=1, acks=1, version=9):
    """One Produce request of n records of value_size bytes: (throttle_time_ms, error codes)."""
    P = m.ProduceRequest
    batch = _engine.encode_batch([b"x" * value_size] * n)
    r = c.request(P(transactional_id=None, acks=acks, timeout_ms=30000, topic_data=[P.TopicProduceData(
        name=topic, partition_data=[P.PartitionProduceData(index=0, records=batch)])]), api_version=version)
    return r.throttle_time_ms, [p.error_code for t in r.responses for p in t.partition_responses]


def enforced(b, client_id, key):
    """Wait until the broker enforces what AlterClientQuotas stored (at once
    on the broker that altered it; this only guards the first table read)."""
    quotas = b.broker.client_quotas
    wait_until(lambda: quotas._quota(key, "User:ANONYMOUS", client_id)[0] is not None, f"{key} enforced")


class Delivered:
    """Bytes delivered, with the client's clock, and the throttle librdkafka reports."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events: list[tuple[float, int]] = []
        self.throttle_max = 0
        self.first_throttle = None

    def delivered(self, err, msg):
        if err is None:
            with self.lock:
                self.events.append((time.monotonic(), len(msg.value())))

    def stats(self, text):
        import json
        for broker in json.loads(text).get("brokers", {}).values():
            t = broker.get("throttle", {}).get("max", 0)
            if t > 0:
                self.throttle_max = max(self.throttle_max, t)
                if self.first_throttle is None:
                    self.first_throttle = time.monotonic()

    def rate(self, start, seconds):
        with self.lock:
            n = sum(size for t, size in self.events if start <= t < start + seconds)
        return n / seconds


def test_producer_quota_holds_confluent_kafka_to_1_mb_per_s(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config=SHORT_WINDOWS) as b:
        admin = conn(b, "admin")
        create_topic(admin, "q-prod")
        assert alter(admin, [([("client-id", "q-prod")], [("producer_byte_rate", float(MB))])]) == [(0, None)]
        enforced(b, "q-prod", "producer_byte_rate")
        d = Delivered()
        p = ck.Producer({"bootstrap.servers": str(b), "client.id": "q-prod", "linger.ms": 5,
                         "batch.size": 65536, "acks": 1, "statistics.interval.ms": 500,
                         "stats_cb": d.stats, "queue.buffering.max.kbytes": 8192})
        value = b"v" * 8000
        measure_s = 20.0
        start = None
        give_up = time.monotonic() + 120
        try:
            while True:
                now = time.monotonic()
                if start is None and d.first_throttle is not None:
                    start = d.first_throttle + 2.0   # past the first burst's tail
                if start is not None and now > start + measure_s + 1.0:
                    break
                try:
                    p.produce("q-prod", value, on_delivery=d.delivered)
                except BufferError:
                    p.poll(0.05)
                p.poll(0)
                if start is None and now > give_up:
                    pytest.fail("the producer was never throttled")
        finally:
            p.purge()
            p.flush(30)
        rate = d.rate(start, measure_s)
        assert 0.9 * MB <= rate <= 1.1 * MB, f"{rate / MB:.3f} MB/s over {measure_s} s"
        assert d.throttle_max > 0


def test_consumer_quota_throttles_a_fetching_consumer(tmp_path):
    quota = 256 << 10
    with running_broker(data_dir=str(tmp_path / "d"), config=SHORT_WINDOWS) as b:
        admin = conn(b, "admin")
        create_topic(admin, "q-cons")
        for _ in range(600):   # 6 MB, unthrottled: no quota for the client id "admin"
            assert produce(admin, "q-cons", 10000) == (0, [0])
        assert alter(admin, [([("client-id", "q-cons")], [("consumer_byte_rate", float(quota))])]) == [(0, None)]
        enforced(b, "q-cons", "consumer_byte_rate")
        d = Delivered()
        c = ck.Consumer({"bootstrap.servers": str(b), "client.id": "q-cons", "group.id": "q-cons",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         # Small fetches: a fetch over the quota is withheld whole and
                         # its bytes still count in the throttle time (Kafka's
                         # algorithm), so large fetches get less than the quota.
                         "fetch.max.bytes": 16384, "message.max.bytes": 16384, "max.partition.fetch.bytes": 16384,
                         "statistics.interval.ms": 500, "stats_cb": d.stats})
        measure_s = 12.0
        try:
            c.subscribe(["q-cons"])
            deadline = time.monotonic() + 120
            start = None
            while time.monotonic() < deadline:
                msg = c.poll(0.2)
                if msg is not None and msg.error() is None:
                    d.events.append((time.monotonic(), len(msg.value())))
                if start is None and d.first_throttle is not None:
                    start = d.first_throttle + 2.0
                if start is not None and time.monotonic() > start + measure_s + 1.0:
                    break
        finally:
            c.close()
        assert start is not None, "the consumer was never throttled"
        rate = d.rate(start, measure_s)
        assert 0.9 * quota <= rate <= 1.1 * quota, f"{rate / 1024:.1f} KB/s over {measure_s} s"
        assert d.throttle_max > 0
        assert sum(n for _, n in d.events) < 6_000_000  # not everything: it was held back


def test_user_quota_matches_anonymous_and_the_most_specific_entity_wins(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config=SHORT_WINDOWS) as b:
        admin = conn(b, "admin")
        create_topic(admin, "q-user")
        # Defaults: every user (ANONYMOUS here) and every client id.
        assert alter(admin, [([("user", None)], [("producer_byte_rate", 50000.0)]),
                             ([("client-id", None)], [("producer_byte_rate", 1e9)]),
                             ([("user", "ANONYMOUS"), ("client-id", "vip")], [("producer_byte_rate", 1e9)])]) \
            == [(0, None)] * 3
        enforced(b, "someone", "producer_byte_rate")
        # The default user's quota (before the default client id's in Kafka's
        # order) holds "someone" to 50 KB/s: 200 KB is 4 s over a 1-2 s window.
        c = conn(b, "someone")
        throttles = [produce(c, "q-user", 50000)[0] for _ in range(4)]
        assert max(throttles) > 1000
        # user ANONYMOUS + client vip is more specific: not throttled.
        vip = conn(b, "vip")
        assert [produce(vip, "q-user", 50000)[0] for _ in range(4)] == [0] * 4
        # A user quota of its own name for ANONYMOUS wins over the default user.
        assert alter(admin, [([("user", "ANONYMOUS")], [("producer_byte_rate", 1e9)])]) == [(0, None)]
        wait_until(lambda: produce(conn(b, "someone-else"), "q-user", 100)[0] == 0, "the user quota applied")
        assert describe(admin, [("user", 0, "ANONYMOUS")], strict=True) == [
            ((("user", "ANONYMOUS"),), (("producer_byte_rate", 1e9),))]


def test_a_removed_quota_gives_full_speed_again(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config=SHORT_WINDOWS) as b:
        admin = conn(b, "admin")
        create_topic(admin, "q-rm")
        assert alter(admin, [([("client-id", "slow")], [("producer_byte_rate", 20000.0)])]) == [(0, None)]
        enforced(b, "slow", "producer_byte_rate")
        c = conn(b, "slow")
        first = [produce(c, "q-rm", 40000)[0] for _ in range(3)]
        assert max(first) > 1000   # 120 KB at 20 KB/s
        assert alter(admin, [([("client-id", "slow")], [("producer_byte_rate", None)])]) == [(0, None)]
        wait_until(lambda: b.broker.client_quotas._quota("producer_byte_rate", "User:ANONYMOUS", "slow")[0]
                   is None, "the quota removed")
        time.sleep(max(first) / 1000)   # the mute of the last throttled answer ends
        c2 = conn(b, "slow")
        assert [produce(c2, "q-rm", 40000)[0] for _ in range(20)] == [0] * 20


def test_produce_throttle_time_reaches_kafka_python(tmp_path):
    kafka = pytest.importorskip("kafka")
    with running_broker(data_dir=str(tmp_path / "d"), config=SHORT_WINDOWS) as b:
        admin = conn(b, "admin")
        create_topic(admin, "q-kp")
        assert alter(admin, [([("client-id", "kp")], [("producer_byte_rate", 100000.0)])]) == [(0, None)]
        enforced(b, "kp", "producer_byte_rate")
        p = kafka.KafkaProducer(bootstrap_servers=str(b), client_id="kp", batch_size=16384, linger_ms=5)
        try:
            for _ in range(60):
                p.send("q-kp", b"x" * 10000)
            p.flush(60)

            # Older kafka-python: produce-throttle-time-*; newer: the
            # connection's throttle-time-* of the producer's metric group.
            metrics = p.metrics().get("producer-metrics", {})
            seen = {k: v for k, v in metrics.items() if k in ("produce-throttle-time-max", "throttle-time-max")}
            assert seen and max(seen.values()) > 0, seen
        finally:
            p.close(10)


def test_request_percentage_throttles_a_client_hammering_metadata(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config=SHORT_WINDOWS) as b:
        admin = conn(b, "admin")
        for i in range(20):
            create_topic(admin, f"q-md-{i}", partitions=4)
        # 1% of the loop: 10 ms of handling per second.
        assert alter(admin, [([("client-id", "hammer")], [("request_percentage", 1.0)])]) == [(0, None)]
        enforced(b, "hammer", "request_percentage")
        M = m.MetadataRequest

        def hammer(client_id, seconds):
            c = conn(b, client_id)
            n, throttled, end = 0, 0, time.monotonic() + seconds
            while time.monotonic() < end:
                r = c.request(M(topics=None, allow_auto_topic_creation=False), api_version=9)
                n += 1
                throttled += r.throttle_time_ms > 0
            return n, throttled
        n_hammer, throttled = hammer("hammer", 6)
        # What the broker let through, by its own accounting: near 1% (one
        # request's time may overshoot before the next is throttled).
        quotas = b.broker.client_quotas
        (rate, _), = [r.measure(time.monotonic() * 1000) for (k, _t), r in quotas._rates.items()
                      if k == "request_percentage"]
        assert rate < 3.0, rate
        n_free, free_throttled = hammer("free", 6)
        assert throttled > 0 and free_throttled == 0
        assert n_hammer * 3 < n_free, (n_hammer, n_free)


def test_acks_0_produce_over_its_byte_quota_mutes_the_connection(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config=SHORT_WINDOWS) as b:
        admin = conn(b, "admin")
        create_topic(admin, "q-acks0")
        assert alter(admin, [([("client-id", "fire")], [("producer_byte_rate", 20000.0)])]) == [(0, None)]
        enforced(b, "fire", "producer_byte_rate")
        c = conn(b, "fire")
        P = m.ProduceRequest
        # 100 KB at 20 KB/s over a window of at least 1 s: throttled about 4 s,
        # with no answer to say so: the broker reads nothing from it meanwhile.
        assert c.send(P(transactional_id=None, acks=0, timeout_ms=30000, topic_data=[P.TopicProduceData(
            name="q-acks0", partition_data=[P.PartitionProduceData(
                index=0, records=_engine.encode_batch([b"x" * 100000]))])]), api_version=9) is None
        t0 = time.monotonic()
        assert c.request(m.ApiVersionsRequest(), api_version=0).error_code == 0
        assert time.monotonic() - t0 >= 2.0


def test_a_throttled_kafka_python_consumer_in_a_fetch_session_still_gets_everything(tmp_path):
    """kafka-python fetches in incremental sessions (KIP-227): answers withheld
    by the quota leave its session as it was, and every record still comes,
    at the quota's pace."""
    kafka = pytest.importorskip("kafka")
    with running_broker(data_dir=str(tmp_path / "d"), config=SHORT_WINDOWS) as b:
        admin = conn(b, "admin")
        create_topic(admin, "q-kpc")
        for _ in range(100):
            assert produce(admin, "q-kpc", 10000) == (0, [0])
        assert alter(admin, [([("client-id", "kpc")], [("consumer_byte_rate", 100000.0)])]) == [(0, None)]
        enforced(b, "kpc", "consumer_byte_rate")
        c = kafka.KafkaConsumer("q-kpc", bootstrap_servers=str(b), client_id="kpc", group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_bytes=32768, max_partition_fetch_bytes=32768)
        try:
            t0 = time.monotonic()
            offsets = []
            deadline = t0 + 120
            while len(offsets) < 100 and time.monotonic() < deadline:
                for records in c.poll(timeout_ms=500).values():
                    offsets.extend(r.offset for r in records)
            elapsed = time.monotonic() - t0
            assert b.broker.handlers.fetch_api.sessions.size() >= 1   # it did fetch in a session
        finally:
            c.close()
        assert offsets == list(range(100))
        # 1 MB at 100 KB/s, less what the first window lets through at once.
        assert elapsed >= 5.0, elapsed
