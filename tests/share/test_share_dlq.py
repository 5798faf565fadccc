"""Dead-letter topics (KIP-1191) with an unmodified confluent_kafka.ShareConsumer
against a real pylog broker: rejected records and records whose delivery
count ran out land in the group's dead-letter topic with Kafka's headers and
are never delivered again; without a dead-letter topic they are only
archived; a missing topic is created only with
errors.deadletterqueue.auto.create.topics.enable; names and topics Kafka
refuses are refused; dead letters fit the topic's max.message.bytes; what a
crash left Archiving is written after the restart."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import AcknowledgeType, Consumer, KafkaException, ShareConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from pylog.client import Client
from pylog.errors import InvalidRequestError
from pylog.share.partition import ARCHIVING
from pylog.testing import running_broker, wait_until

from .wire import CONFIG, create_topic, produce, set_group_configs

TIMEOUT = 60.0
RESOURCE_BROKER = 4
REJECTED = b"Offset rejected by client."
EXHAUSTED = b"Offset delivery count exceeded the threshold."


@pytest.fixture(scope="module")
def broker():
    # A delivery limit of 2 (Kafka's minimum): two RELEASEs exhaust a record.
    with running_broker(config={**CONFIG, "group.share.delivery.count.limit": "2"}) as b:
        yield b


def admin(b):
    return AdminClient({"bootstrap.servers": str(b)})


def create_dlq_topic(b, name, partitions=1, enabled=True):
    configs = {"errors.deadletterqueue.group.enable": "true"} if enabled else {}
    a = admin(b)   # kept: the futures fail once their client is gone
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=configs)],
                    operation_timeout=10, request_timeout=30)[name].result(30)


def set_cluster_config(b, **configs):
    # The cluster default (resource name ""): confluent's admin client refuses that name.
    with Client(str(b)) as client:
        client.incremental_alter_configs(RESOURCE_BROKER, "", {k.replace("_", "."): str(v)
                                                               for k, v in configs.items()})


def consume_share(b, topic, group, decide, until, timeout=TIMEOUT):
    """A ShareConsumer in explicit mode acknowledging each record with
    decide(offset, delivery_count) until until(deliveries) holds; the
    deliveries [(offset, delivery count)]."""
    c = ShareConsumer({"bootstrap.servers": str(b), "group.id": group, "share.acknowledgement.mode": "explicit"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while not until(got):
            assert time.monotonic() < deadline, f"timed out; deliveries so far {got}"
            for msg in c.poll(0.2):
                assert msg.error() is None, msg.error()
                got.append((msg.offset(), msg.delivery_count()))
                c.acknowledge(msg, decide(msg.offset(), msg.delivery_count()))
        c.commit_sync()
        # Whatever was rejected or exhausted does not come back.
        end = time.monotonic() + 2
        while time.monotonic() < end:
            for msg in c.poll(0.2):
                got.append((msg.offset(), msg.delivery_count()))
                c.acknowledge(msg, AcknowledgeType.ACCEPT)
        c.commit_sync()
    finally:
        c.close()
    return got


def _poll_into(c, out):
    msg = c.poll(0.2)
    if msg is not None and msg.error() is None:
        out.append(msg)


def read_topic(b, topic, n, partition=0, then_s=0.0):
    """The first n records of topic-partition (waits for them), and what
    else comes in the then_s seconds after (so a caller can see there is
    nothing beyond them)."""
    c = Consumer({"bootstrap.servers": str(b), "group.id": f"reader-{uuid.uuid4()}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, 0)])
    out = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(out) < n:
            assert time.monotonic() < deadline, f"{topic}-{partition}: {len(out)} of {n} records"
            _poll_into(c, out)
        end = time.monotonic() + then_s
        while time.monotonic() < end:
            _poll_into(c, out)
    finally:
        c.close()
    return out


def headers(msg):
    return [(k, v) for k, v in (msg.headers() or [])]


def describe_offsets(b, group):
    """`pylog share-groups describe GROUP` output rows as lists of words."""
    out = subprocess.run([sys.executable, "-m", "pylog", "share-groups", "describe", group, "--bootstrap-server",
                          str(b)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split() for line in out.stdout.splitlines() if line.strip()]


def topic_exists(b, name):
    return name in admin(b).list_topics(timeout=10).topics


def test_a_rejected_record_is_never_delivered_again_and_is_in_the_dead_letter_topic(broker):
    topic, group, dlq = "dlq-rej", "dlq-rej-g", "dlq.rej"
    create_topic(broker, topic)
    create_dlq_topic(broker, dlq)
    set_group_configs(broker, group, share_auto_offset_reset="earliest", errors_deadletterqueue_topic_name=dlq)
    produce(broker, topic, 6)
    got = consume_share(broker, topic, group,
                        lambda off, _n: AcknowledgeType.REJECT if off in (1, 4) else AcknowledgeType.ACCEPT,
                        lambda got: len(got) >= 6)
    assert sorted(got) == [(i, 1) for i in range(6)]
    letters = read_topic(broker, dlq, 2)
    for msg, offset in zip(letters, (1, 4)):
        assert headers(msg) == [("__dlq.errors.topic", topic.encode()), ("__dlq.errors.partition", b"0"),
                                ("__dlq.errors.offset", str(offset).encode()), ("__dlq.errors.group", group.encode()),
                                ("__dlq.errors.delivery.count", b"1"), ("__dlq.errors.message", REJECTED)]
        # errors.deadletterqueue.copy.record.enable is false by default: headers only.
        assert msg.key() is None and msg.value() is None
        assert abs(msg.timestamp()[1] - time.time() * 1000) < 600_000
    # Written, then archived: the group's start offset is past them, nothing left.
    wait_until(lambda: describe_offsets(broker, group) == [
        ["GROUP", "TOPIC", "PARTITION", "START-OFFSET", "LAG", "DLQ-WRITTEN", "DLQ-FAILED"],
        [group, topic, "0", "6", "0", "2", "0"]], timeout=TIMEOUT, what="the dead letters written, then archived")


def test_records_released_to_the_delivery_limit_go_to_the_dead_letter_topic(broker):
    topic, group, dlq = "dlq-rel", "dlq-rel-g", "dlq.rel"
    create_topic(broker, topic)
    create_dlq_topic(broker, dlq, partitions=3)
    set_group_configs(broker, group, share_auto_offset_reset="earliest", errors_deadletterqueue_topic_name=dlq,
                      errors_deadletterqueue_copy_record_enable="true")
    produce(broker, topic, 3)
    got = consume_share(broker, topic, group,
                        lambda off, _n: AcknowledgeType.RELEASE if off == 2 else AcknowledgeType.ACCEPT,
                        lambda got: (2, 2) in got)
    assert sorted(got) == [(0, 1), (1, 1), (2, 1), (2, 2)]
    # Source partition 0 % 3 partitions: the dead letter is in partition 0.
    (msg,) = read_topic(broker, dlq, 1, partition=0)
    assert dict(headers(msg)) == {"__dlq.errors.topic": topic.encode(), "__dlq.errors.partition": b"0",
                                  "__dlq.errors.offset": b"2", "__dlq.errors.group": group.encode(),
                                  "__dlq.errors.delivery.count": b"2", "__dlq.errors.message": EXHAUSTED}
    # With copy.record.enable the record's value comes along.
    assert msg.value() == b"v-2" and msg.key() is None


def test_without_a_dead_letter_topic_a_rejected_record_is_only_archived(broker):
    topic, group = "dlq-none", "dlq-none-g"
    create_topic(broker, topic)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    produce(broker, topic, 4)
    before = set(admin(broker).list_topics(timeout=10).topics)
    got = consume_share(broker, topic, group,
                        lambda off, _n: AcknowledgeType.REJECT if off == 0 else AcknowledgeType.ACCEPT,
                        lambda got: len(got) >= 4)
    assert sorted(got) == [(i, 1) for i in range(4)]
    rows = describe_offsets(broker, group)
    # No dead-letter columns for a group without a dead-letter topic; everything done.
    assert rows[0] == ["GROUP", "TOPIC", "PARTITION", "START-OFFSET", "LAG"]
    assert rows[1] == [group, topic, "0", "4", "0"]
    assert set(admin(broker).list_topics(timeout=10).topics) == before


def test_a_missing_dead_letter_topic_is_created_only_when_the_broker_allows(broker):
    topic, group, dlq = "dlq-auto", "dlq-auto-g", "dlq.auto"
    create_topic(broker, topic)
    set_group_configs(broker, group, share_auto_offset_reset="earliest", errors_deadletterqueue_topic_name=dlq)
    produce(broker, topic, 2)
    # errors.deadletterqueue.auto.create.topics.enable is false by default:
    # the write fails, and (as in Kafka) the record is archived anyway.
    got = consume_share(broker, topic, group, lambda off, _n: AcknowledgeType.REJECT, lambda got: len(got) >= 2)
    assert sorted(got) == [(0, 1), (1, 1)]
    wait_until(lambda: describe_offsets(broker, group)[1][-2:] == ["0", "2"], timeout=TIMEOUT,
               what="two failed dead letters counted")
    assert not topic_exists(broker, dlq)
    # Switched on (a dynamic cluster-wide broker config, as in Kafka): created on the next dead letter.
    set_cluster_config(broker, errors_deadletterqueue_auto_create_topics_enable="true")
    try:
        produce(broker, topic, 1, start=2)
        got = consume_share(broker, topic, group, lambda off, _n: AcknowledgeType.REJECT,
                            lambda got: len(got) >= 1)
        assert got == [(2, 1)]
        (msg,) = read_topic(broker, dlq, 1)
        assert dict(headers(msg))["__dlq.errors.offset"] == b"2"
        res = ConfigResource(ResourceType.TOPIC, dlq)
        a = admin(broker)
        configs = a.describe_configs([res])[res].result(30)
        assert configs["errors.deadletterqueue.group.enable"].value == "true"
        assert configs["message.timestamp.type"].value == "CreateTime"
        wait_until(lambda: describe_offsets(broker, group)[1][-2:] == ["1", "2"], timeout=TIMEOUT,
                   what="one dead letter written, two failed")
    finally:
        set_cluster_config(broker, errors_deadletterqueue_auto_create_topics_enable="false")


def test_a_topic_not_enabled_or_outside_the_prefix_gets_no_dead_letters(broker):
    topic = "dlq-off"
    create_topic(broker, topic)
    create_dlq_topic(broker, "dlq.off", enabled=False)      # errors.deadletterqueue.group.enable=false
    create_dlq_topic(broker, "letters.off")                 # enabled, but not under the prefix "dlq."
    produce(broker, topic, 1)
    for group, dlq in (("dlq-off-g1", "dlq.off"), ("dlq-off-g2", "letters.off")):
        set_group_configs(broker, group, share_auto_offset_reset="earliest", errors_deadletterqueue_topic_name=dlq)
        got = consume_share(broker, topic, group, lambda off, _n: AcknowledgeType.REJECT, lambda got: len(got) >= 1)
        assert got == [(0, 1)]
        wait_until(lambda: describe_offsets(broker, group)[1][2:] == ["0", "1", "0", "0", "1"], timeout=TIMEOUT,
                   what=f"{group}: archived with one failed dead letter")
    c = Consumer({"bootstrap.servers": str(broker), "group.id": "dlq-off-reader"})
    for dlq in ("dlq.off", "letters.off"):
        low, high = c.get_watermark_offsets(TopicPartition(dlq, 0), timeout=10)
        assert (low, high) == (0, 0)
    c.close()


def test_group_configs_refuse_what_kafka_refuses(broker):
    for configs, words in (({"errors_deadletterqueue_topic_name": "__dlq"},
                            "errors.deadletterqueue.topic.name: DLQ topic name must not start with '__'"),
                           ({"errors_deadletterqueue_copy_record_enable": "yes"},
                            "Expected value to be either true or false")):
        with pytest.raises(KafkaException) as e:
            set_group_configs(broker, "dlq-bad-g", **configs)
        err = e.value.args[0]
        assert err.name() == "INVALID_CONFIG" and words in err.str()
    # A blank name is allowed: no dead-letter topic.
    set_group_configs(broker, "dlq-bad-g", errors_deadletterqueue_topic_name="")


def on_loop(b, coro):
    return asyncio.run_coroutine_threadsafe(coro, b.broker._loop).result(30)


def test_records_left_archiving_by_a_crash_reach_the_dead_letter_topic_after_a_restart(tmp_path):
    """What a crash between step 1 (Archiving persisted) and step 3 (Archived)
    leaves in __share_group_state: the next load writes the dead letter (again)
    and only then archives; the record is never delivered."""
    topic, group, dlq = "dlq-crash", "dlq-crash-g", "dlq.crash"
    config = {**CONFIG, "group.share.delivery.count.limit": "2"}
    with running_broker(data_dir=tmp_path, config=config) as b:
        create_topic(b, topic)
        create_dlq_topic(b, dlq)
        set_group_configs(b, group, share_auto_offset_reset="earliest", errors_deadletterqueue_topic_name=dlq)
        produce(b, topic, 3)
        tid = b.broker.metadata_cache.topic_ids[topic]
        coord = b.broker.share.coordinator
        wait_until(lambda: on_loop(b, coord.initialize(group, tid, 0, 0, 0)) == 0, timeout=TIMEOUT,
                   what="the share-partition initialized")
        code, st = on_loop(b, coord.read(group, tid, 0, 0))
        assert code == 0
        # Offset 0 rejected on its first delivery, Archiving persisted, then the crash.
        assert on_loop(b, coord.write(group, tid, 0, st.state_epoch, 0, 0, [(0, 0, ARCHIVING, 1)])) == 0
    with running_broker(data_dir=tmp_path, config=config) as b:
        got = consume_share(b, topic, group, lambda _off, _n: AcknowledgeType.ACCEPT, lambda got: len(got) >= 2)
        assert sorted(got) == [(1, 1), (2, 1)]
        (msg,) = read_topic(b, dlq, 1)
        # The reason is not persisted: inferred from the delivery count, as Kafka does.
        assert dict(headers(msg)) == {"__dlq.errors.topic": topic.encode(), "__dlq.errors.partition": b"0",
                                      "__dlq.errors.offset": b"0", "__dlq.errors.group": group.encode(),
                                      "__dlq.errors.delivery.count": b"1", "__dlq.errors.message": REJECTED}
        wait_until(lambda: describe_offsets(b, group)[1][2:5] == ["0", "3", "0"], timeout=TIMEOUT,
                   what="the start offset past the dead letter")


def test_the_broker_and_topic_keys_take_only_their_types(broker):
    with pytest.raises(InvalidRequestError, match="Expected value to be either true or false"):
        set_cluster_config(broker, errors_deadletterqueue_auto_create_topics_enable="maybe")
    a = admin(broker)
    f = a.create_topics([NewTopic("dlq.typed", 1, 1, config={"errors.deadletterqueue.group.enable": "maybe"})])
    with pytest.raises(KafkaException) as e:
        f["dlq.typed"].result(30)
    assert e.value.args[0].name() == "INVALID_CONFIG"
    res = ConfigResource(ResourceType.BROKER, "1")
    configs = a.describe_configs([res])[res].result(30)
    assert configs["errors.deadletterqueue.topic.name.prefix"].value == "dlq."
    assert configs["errors.deadletterqueue.auto.create.topics.enable"].value == "false"


def test_dead_letters_are_split_to_fit_the_dead_letter_topics_max_message_bytes(broker):
    topic, group, dlq = "dlq-big", "dlq-big-g", "dlq.big"
    create_topic(broker, topic)
    a = admin(broker)
    a.create_topics([NewTopic(dlq, 1, 1, config={"errors.deadletterqueue.group.enable": "true",
                                                 "max.message.bytes": "2048"})])[dlq].result(30)
    set_group_configs(broker, group, share_auto_offset_reset="earliest", errors_deadletterqueue_topic_name=dlq,
                      errors_deadletterqueue_copy_record_enable="true")
    produce(broker, topic, 60)
    consume_share(broker, topic, group, lambda _off, _n: AcknowledgeType.REJECT, lambda got: len(got) >= 60)
    letters = read_topic(broker, dlq, 60)
    assert sorted(int(dict(headers(m))["__dlq.errors.offset"]) for m in letters) == list(range(60))
    assert all(m.value() == b"v-" + dict(headers(m))["__dlq.errors.offset"] for m in letters)
    wait_until(lambda: describe_offsets(broker, group)[1][2:] == ["0", "60", "0", "60", "0"], timeout=TIMEOUT,
               what="60 dead letters written, none failed")
