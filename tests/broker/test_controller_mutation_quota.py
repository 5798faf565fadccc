"""KIP-599's controller mutation quota and KIP-546's client quota APIs on a
real broker over real sockets: AlterClientQuotas / DescribeClientQuotas for
controller_mutation_rate (Kafka's entities, defaults and filters; what Kafka
refuses, refused per entry), a CreateTopics storm refused with
THROTTLING_QUOTA_EXCEEDED once the token bucket is empty (v6+), older
versions admitted but throttled (the connection muted), the quota kept in the
cluster's metadata across a restart, and kafka-python's admin client
throttled."""
from __future__ import annotations

import time

import pytest

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.testing import running_broker

THROTTLING_QUOTA_EXCEEDED, INVALID_REQUEST = 89, 42
# A bucket of rate x 2 x 1 tokens: 4 partitions at a rate of 2/s.
WINDOWS = {"controller.quota.window.num": "2", "controller.quota.window.size.seconds": "1"}


_open: list = []


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    while _open:
        _open.pop().close()


def conn(b, client_id):
    host, port = str(b).rsplit(":", 1)
    c = Connection(host, int(port), client_id=client_id, timeout=60)
    _open.append(c)
    return c


def alter(c, entries, validate_only=False):
    Q = m.AlterClientQuotasRequest
    req = Q(validate_only=validate_only, entries=[Q.EntryData(
        entity=[Q.EntityData(entity_type=t, entity_name=n) for t, n in entity],
        ops=[Q.OpData(key=k, value=0.0 if v is None else v, remove=v is None) for k, v in ops]) for entity, ops in entries])
    return [(e.error_code, e.error_message) for e in c.request(req, api_version=1).entries]


def describe(c, components, strict=False):
    Q = m.DescribeClientQuotasRequest
    r = c.request(Q(strict=strict, components=[Q.ComponentData(entity_type=t, match_type=mt, match=n)
                                               for t, mt, n in components]), api_version=1)
    assert r.error_code == 0, r.error_message
    return sorted(((tuple((e.entity_type, e.entity_name) for e in x.entity),
                    tuple((v.key, v.value) for v in x.values)) for x in r.entries), key=repr)


def create(c, names, version, partitions=1):
    T = m.CreateTopicsRequest
    r = c.request(T(timeout_ms=30000, validate_only=False, topics=[
        T.CreatableTopic(name=n, num_partitions=partitions, replication_factor=1, assignments=[], configs=[])
        for n in names]), api_version=version)
    return r.throttle_time_ms, [(t.name, t.error_code) for t in r.topics], r


def test_client_quotas_are_altered_described_and_kept(tmp_path):
    data = str(tmp_path / "d")
    with running_broker(data_dir=data) as b:
        c = conn(b, "admin")
        assert alter(c, [([("client-id", "storm")], [("controller_mutation_rate", 2.0)]),
                         ([("user", None)], [("controller_mutation_rate", 50.0)]),
                         ([("user", "alice"), ("client-id", None)], [("controller_mutation_rate", 7.5)])]) == [
            (0, None)] * 3
        # Kafka's ClientQuotaControlManager refusals
        refused = alter(c, [([("client-id", "x")], [("producer_byte_rate", 1000.5)]),
                            ([("client-id", "x")], [("no_such_quota", 1.0)]),
                            ([("client-id", "x"), ("client-id", "y")], [("controller_mutation_rate", 1.0)]),
                            ([("client-id", "x")], [("controller_mutation_rate", -1.0)]),
                            ([("client-id", "x")], [("connection_creation_rate", 5.0)]),
                            ([("ip", "127.0.0.1")], [("producer_byte_rate", 5.0)]),
                            ([("ip", "127.0.0.1"), ("user", "u")], [("connection_creation_rate", 5.0)]),
                            ([("ip", "not an ip")], [("connection_creation_rate", 5.0)])])
        assert [code for code, _ in refused] == [INVALID_REQUEST] * 8
        assert refused[0][1] == "producer_byte_rate cannot be a fractional value."
        assert refused[1][1] == "Invalid configuration key no_such_quota"
        assert refused[3][1] == "Quota controller_mutation_rate must be greater than 0"
        assert refused[4][1] == "Invalid configuration key connection_creation_rate"
        assert refused[5][1] == "Invalid configuration key producer_byte_rate"
        assert "IP entity should" in refused[6][1]
        assert refused[7][1] == "not an ip is not a valid IP or resolvable host."
        # validate_only stores nothing
        assert alter(c, [([("client-id", "v")], [("controller_mutation_rate", 1.0)])], validate_only=True) == [
            (0, None)]
        everything = [((("client-id", "storm"),), (("controller_mutation_rate", 2.0),)),
                      ((("user", None),), (("controller_mutation_rate", 50.0),)),
                      ((("user", "alice"), ("client-id", None)), (("controller_mutation_rate", 7.5),))]
        assert describe(c, []) == sorted(everything, key=repr)
        assert describe(c, [("client-id", 0, "storm")]) == [everything[0]]
        assert describe(c, [("user", 1, None)]) == [everything[1]]
        assert describe(c, [("user", 2, None)], strict=True) == [everything[1]]
        assert describe(c, [("user", 0, "alice")]) == [everything[2]]
        c.close()
    with running_broker(data_dir=data) as b:   # kept in the cluster's metadata
        c = conn(b, "admin")
        assert describe(c, [("client-id", 0, "storm")]) == [everything[0]]
        assert alter(c, [([("client-id", "storm")], [("controller_mutation_rate", None)])]) == [(0, None)]
        assert describe(c, [("client-id", 0, "storm")]) == []
        c.close()


def test_a_create_topics_storm_is_refused_past_the_quota(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config=WINDOWS) as b:
        admin = conn(b, "admin")
        assert alter(admin, [([("client-id", "storm")], [("controller_mutation_rate", 2.0)])]) == [(0, None)]
        storm = conn(b, "storm")
        throttle, topics, _ = create(storm, [f"s{i}" for i in range(20)], version=6)
        codes = [code for _, code in topics]
        admitted = [n for n, code in topics if code == 0]
        # The bucket's 4 tokens (and what refills meanwhile) admit a few; the
        # rest is refused at once, with the time until the bucket is back at 0.
        assert 4 <= len(admitted) < 20 and set(codes) == {0, THROTTLING_QUOTA_EXCEEDED}
        assert codes.index(THROTTLING_QUOTA_EXCEEDED) == len(admitted)   # in order: the first ones pass
        assert throttle > 0
        # Other clients have no quota: not throttled.
        other = conn(b, "other")
        t2, topics2, _ = create(other, [f"o{i}" for i in range(20)], version=6)
        assert t2 == 0 and {code for _, code in topics2} == {0}
        # Nothing refused was created.
        md = admin.request(m.MetadataRequest(topics=None, allow_auto_topic_creation=False), api_version=5)
        names = {t.name for t in md.topics}
        assert set(admitted) <= names and not ({f"s{i}" for i in range(20)} - set(admitted)) & names
        # Once the throttle time has passed, the bucket admits again.
        time.sleep(throttle / 1000 + 0.5)
        storm = conn(b, "storm")
        _, topics3, r = create(storm, ["late"], version=6)
        assert topics3 == [("late", 0)]
        # v5+: what the topic was created with
        assert r.topics[0].num_partitions == 1 and r.topics[0].replication_factor == 1
        assert {cf.name for cf in r.topics[0].configs} >= {"retention.ms", "cleanup.policy"}


def test_older_versions_are_admitted_and_throttled(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config=WINDOWS) as b:
        admin = conn(b, "admin")
        assert alter(admin, [([("client-id", None)], [("controller_mutation_rate", 2.0)])]) == [(0, None)]
        old = conn(b, "old-client")   # the default client-id quota applies to it
        throttle, topics, _ = create(old, [f"p{i}" for i in range(12)], version=4)
        assert {code for _, code in topics} == {0}      # permissive: nothing refused...
        assert throttle > 1000                          # ...but the bucket is deep below zero
        # and the connection is muted: its next request waits the throttle out.
        t0 = time.monotonic()
        old.request(m.ApiVersionsRequest(client_software_name="t", client_software_version="1"), api_version=3)
        assert time.monotonic() - t0 >= throttle / 1000 * 0.8


def test_kafka_python_admin_is_throttled(tmp_path):
    kafka = pytest.importorskip("kafka")
    from kafka.admin import KafkaAdminClient, NewTopic
    with running_broker(data_dir=str(tmp_path / "d"), config=WINDOWS) as b:
        c = conn(b, "admin")
        assert alter(c, [([("client-id", "kp")], [("controller_mutation_rate", 1.0)])]) == [(0, None)]
        admin = KafkaAdminClient(bootstrap_servers=str(b), client_id="kp")
        try:
            with pytest.raises(kafka.errors.ThrottlingQuotaExceededError):
                admin.create_topics([NewTopic(f"k{i}", 1, 1) for i in range(10)])
        finally:
            admin.close()
        md = c.request(m.MetadataRequest(topics=None, allow_auto_topic_creation=False), api_version=5)
        created = {t.name for t in md.topics} & {f"k{i}" for i in range(10)}
        assert 2 <= len(created) < 10
