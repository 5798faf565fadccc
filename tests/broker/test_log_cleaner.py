"""The broker's log cleaner (pylog/broker/log_cleaner.py) with a real broker,
real clients and the files on disk: which log is cleaned and when
(min.cleanable.dirty.ratio, max.compaction.lag.ms, dynamic topic configs),
Kafka's config keys and their validation, the data dir's
cleaner-offset-checkpoint, pausing, the throttle, and compact,delete."""
from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.log.checkpoint import read_checkpoint
from pylog.testing import running_broker, wait_until

TIMEOUT = 60
FAST = {"num.partitions": "1", "log.cleaner.backoff.ms": "50"}


def create_topic(broker, configs: dict, name=None) -> str:
    name = name or f"lc-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, 1, 1, config=configs)])[name].result(TIMEOUT)
    return name


def create_topic_error(broker, configs: dict) -> str:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    name = f"lc-{uuid.uuid4().hex[:10]}"
    with pytest.raises(KafkaException) as ei:
        admin.create_topics([NewTopic(name, 1, 1, config=configs)])[name].result(TIMEOUT)
    return ei.value.args[0]


def alter(broker, topic, configs: dict):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource("TOPIC", topic, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()])
    admin.incremental_alter_configs([res])[res].result(TIMEOUT)


def produce(broker, topic, pairs):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.num.messages": 10})  # several segments of segment.bytes=4096
    errors = []
    for k, v in pairs:
        p.produce(topic, v, key=k, partition=0, on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(TIMEOUT) == 0
    assert errors == []


def read_all(broker, topic):
    """(offset, key, value) of every record from the beginning to the log end."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"lc-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == -191, msg.error()  # _PARTITION_EOF
                return got
            got.append((msg.offset(), msg.key(), msg.value()))
    finally:
        c.close()
    raise AssertionError("no end of partition within the deadline")


def compacted(broker, segment_bytes=4096) -> str:
    """A compacted topic cleaned as soon as it has a sealed segment."""
    return create_topic(broker, {"cleanup.policy": "compact", "segment.bytes": str(segment_bytes),
                                 "min.cleanable.dirty.ratio": "0.01"})


def status(broker, topic):
    return broker.broker.log_cleaner.stats().get((topic, 0))


def wait_for(cond, what, timeout=TIMEOUT):
    return wait_until(cond, what, timeout)


def pairs(n_keys, rounds, tag=b"v"):
    return [(b"key-%d" % k, b"%s-%d-%d" % (tag, r, k) + b"x" * 40) for r in range(rounds) for k in range(n_keys)]


def latest(ps):
    out = {}
    for k, v in ps:
        out[k] = v
    return out


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=FAST) as b:
        yield b


def test_compacted_topic_is_cleaned_and_reads_give_latest_values(broker):
    topic = compacted(broker)
    data = pairs(20, 30)
    produce(broker, topic, data)
    st = wait_for(lambda: (s := status(broker, topic)) is not None and s.last_round is not None
                  and s.last_round.records_removed > 0 and s, "a cleaning round")
    assert st.first_dirty_offset > 0
    got = read_all(broker, topic)
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(set(offsets)) and offsets[-1] == len(data) - 1
    assert len(got) < len(data)  # something was cleaned away
    assert latest([(k, v) for _, k, v in got]) == latest(data)


def test_dirty_ratio_threshold_and_dynamic_config(broker):
    # Ratio 1: a log is never "more than" all dirty, so nothing is cleaned
    # until the topic's threshold is lowered.
    topic = create_topic(broker, {"cleanup.policy": "compact", "segment.bytes": "4096",
                                  "min.cleanable.dirty.ratio": "1"})
    produce(broker, topic, pairs(10, 30))
    st = wait_for(lambda: status(broker, topic), "the partition in the cleaner's stats")
    time.sleep(0.5)  # ten backoffs
    st = status(broker, topic)
    assert st.last_round is None and st.dirty_ratio == 1.0 and st.first_dirty_offset == 0
    alter(broker, topic, {"min.cleanable.dirty.ratio": "0.5"})
    st = wait_for(lambda: (s := status(broker, topic)).last_round is not None and s, "a round after the change")
    assert st.last_round.records_removed > 0
    assert st.dirty_ratio < 0.5


def test_max_compaction_lag_cleans_whatever_the_ratio(broker):
    topic = create_topic(broker, {"cleanup.policy": "compact", "segment.bytes": "4096",
                                  "min.cleanable.dirty.ratio": "1", "max.compaction.lag.ms": "1000"})
    data = pairs(10, 30)
    produce(broker, topic, data)
    st = wait_for(lambda: (s := status(broker, topic)).last_round is not None and s, "a round forced by the lag")
    assert st.last_round.records_removed > 0
    assert latest([(k, v) for _, k, v in read_all(broker, topic)]) == latest(data)


def test_delete_policy_topics_are_not_cleaned(broker):
    topic = create_topic(broker, {"segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01"})
    data = pairs(10, 20)
    produce(broker, topic, data)
    time.sleep(0.5)
    assert status(broker, topic) is None
    assert len(read_all(broker, topic)) == len(data)


@pytest.mark.parametrize("configs", [
    {"min.cleanable.dirty.ratio": "1.5"}, {"min.cleanable.dirty.ratio": "-0.1"},
    {"min.cleanable.dirty.ratio": "half"}, {"max.compaction.lag.ms": "0"}, {"min.compaction.lag.ms": "-1"},
    {"delete.retention.ms": "-1"}, {"min.compaction.lag.ms": "5000", "max.compaction.lag.ms": "1000"},
])
def test_topic_cleaner_configs_refused_as_kafka_refuses_them(broker, configs):
    assert create_topic_error(broker, configs).code() == 40  # INVALID_CONFIG


@pytest.mark.parametrize("key,value", [
    ("log.cleaner.threads", "-1"), ("log.cleaner.backoff.ms", "-1"), ("log.cleaner.min.cleanable.ratio", "2"),
    ("log.cleaner.delete.retention.ms", "-5"), ("log.cleaner.max.compaction.lag.ms", "0"),
    ("log.cleaner.enable", "maybe"), ("log.cleaner.io.max.bytes.per.second", "fast"),
    ("log.cleaner.io.max.bytes.per.second", "0"), ("log.cleaner.min.compaction.lag.ms", "-1"),
])
def test_broker_cleaner_configs_refused(key, value):
    with pytest.raises(InvalidConfigError):
        BrokerConfig({key: value})


def test_topic_defaults_come_from_the_broker_keys():
    with running_broker(config={**FAST, "log.cleaner.min.cleanable.ratio": "0.25",
                                "log.cleaner.delete.retention.ms": "1234",
                                "log.cleaner.max.compaction.lag.ms": "99999"}) as b:
        topic = create_topic(b, {"cleanup.policy": "compact"})
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        res = ConfigResource("TOPIC", topic)
        cfg = admin.describe_configs([res])[res].result(TIMEOUT)
        assert cfg["min.cleanable.dirty.ratio"].value == "0.25"
        assert cfg["delete.retention.ms"].value == "1234"
        assert cfg["max.compaction.lag.ms"].value == "99999"
        assert cfg["min.compaction.lag.ms"].value == "0"


def test_one_cleaner_checkpoint_per_data_dir_and_the_old_one_migrated(tmp_path):
    with running_broker(data_dir=tmp_path, config=FAST) as b:
        topic = compacted(b)
        data = pairs(10, 30)
        produce(b, topic, data)
        st = wait_for(lambda: (s := status(b, topic)) is not None and s.last_round is not None and s, "a round")
        entries = {(t, int(p)): int(o) for t, p, o in read_checkpoint(str(tmp_path / "cleaner-offset-checkpoint"))}
        assert entries[(topic, 0)] == st.last_round.end_offset
        assert not (tmp_path / f"{topic}-0" / "cleaner-offset-checkpoint").exists()
        first_dirty = st.last_round.end_offset
    # An older release's per-log file, and no entry in the data dir's file:
    # taken in at the next start, then removed.
    os.remove(tmp_path / "cleaner-offset-checkpoint")
    (tmp_path / f"{topic}-0" / "cleaner-offset-checkpoint").write_text(f"0\n1\n{topic} 0 {first_dirty}\n")
    with running_broker(data_dir=tmp_path, config={**FAST, "log.cleaner.enable": "false"}) as b:
        assert b.broker.log_cleaner.num_threads == 0
        assert not (tmp_path / f"{topic}-0" / "cleaner-offset-checkpoint").exists()
        entries = {(t, int(p)): int(o) for t, p, o in read_checkpoint(str(tmp_path / "cleaner-offset-checkpoint"))}
        assert entries[(topic, 0)] == first_dirty
        assert status(b, topic).first_dirty_offset == first_dirty
        assert latest([(k, v) for _, k, v in read_all(b, topic)]) == latest(data)


def test_cleaner_disabled_cleans_nothing():
    with running_broker(config={**FAST, "log.cleaner.enable": "false"}) as b:
        topic = compacted(b)
        data = pairs(10, 20)
        produce(b, topic, data)
        time.sleep(0.5)
        assert status(b, topic).last_round is None
        assert len(read_all(b, topic)) == len(data)


def test_paused_partition_is_not_cleaned_until_resumed(broker):
    topic = compacted(broker)
    cleaner = broker.broker.log_cleaner
    cleaner.abort_and_pause((topic, 0))
    try:
        produce(broker, topic, pairs(10, 20))
        time.sleep(0.5)
        st = status(broker, topic)
        assert st.state == "paused" and st.last_round is None and st.dirty_ratio > 0.5
    finally:
        cleaner.resume((topic, 0))
    wait_for(lambda: status(broker, topic).last_round is not None, "a round after resume")


def test_io_throttle_slows_the_round():
    rate = 200_000.0
    with running_broker(config={**FAST, "log.cleaner.io.max.bytes.per.second": str(rate)}) as b:
        topic = compacted(b, 65536)
        produce(b, topic, pairs(50, 80))  # about 400 KB
        st = wait_for(lambda: (s := status(b, topic)) is not None and s.last_round is not None and s,
                      "a throttled round")
        moved = st.last_round.bytes_read + st.last_round.bytes_written
        assert moved > 3 * rate * 0.3  # several check intervals' worth
        assert b.broker.log_cleaner.throttler.slept_s > 0
        # Kept near the rate over the round (the last interval is not slept off).
        assert st.last_round.elapsed_s >= moved / rate - 0.6


def test_compact_delete_also_deletes_by_size():
    with running_broker(config={**FAST, "log.retention.check.interval.ms": "100"}) as b:
        topic = create_topic(b, {"cleanup.policy": "compact,delete", "segment.bytes": "4096",
                                 "retention.bytes": "8192", "min.cleanable.dirty.ratio": "0.01"})
        data = [(b"unique-%d" % i, b"x" * 60) for i in range(600)]  # no key repeats: compaction keeps all
        produce(b, topic, data)
        p = b.broker.log_manager.partitions[(topic, 0)]
        wait_for(lambda: p.log.log_start_offset > 0 and p.log.size_bytes <= 8192 + 4096, "retention.bytes")
        got = read_all(b, topic)
        assert got[0][0] == p.log.log_start_offset and got[-1][0] == len(data) - 1


def test_tombstones_go_after_delete_retention(broker):
    topic = create_topic(broker, {"cleanup.policy": "compact", "segment.bytes": "4096",
                                  "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"})
    data = pairs(10, 10)
    produce(broker, topic, data)
    produce(broker, topic, [(b"key-%d" % k, None) for k in range(5)])
    produce(broker, topic, [(b"filler-%d" % i, b"f" * 60) for i in range(200)])  # rolls the tombstones' segment

    def gone():
        keys = {k for _, k, _ in read_all(broker, topic)}
        return not keys & {b"key-%d" % k for k in range(5)}
    wait_for(gone, "the tombstones and their keys removed")
    got = read_all(broker, topic)
    assert {k: v for _, k, v in got if k.startswith(b"key-")} == {k: v for k, v in latest(data).items()
                                                                   if int(k[4:]) >= 5}


def test_stats_of_a_deleted_partition_go(broker):
    topic = compacted(broker)
    produce(broker, topic, pairs(10, 20))
    wait_for(lambda: (s := status(broker, topic)) is not None and s.last_round is not None, "a round")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics([topic])[topic].result(TIMEOUT)
    wait_for(lambda: status(broker, topic) is None, "the partition gone from the stats")
    wait_for(lambda: not any(t == topic for t, _, _ in read_checkpoint(
        str(Path(broker.data_dir) / "cleaner-offset-checkpoint"))) or None, "its checkpoint entry gone")


def test_read_from_a_segment_compaction_emptied_gives_the_next_record(tmp_path):
    # Kafka's read moves to the next segment when one has nothing at or past
    # the offset: a consumer at offset 0 of a cleaned log gets the first survivor.
    import struct

    from pylog.log.log import Log
    with Log.open(str(tmp_path / "t-0"), segment_bytes=1024) as lg:
        for r in range(20):
            lg.append_batch([b"v%d" % r] * 5, [b"k%d" % i for i in range(5)])
        lg.roll()
        lg.compact()
        assert any(s.size == 0 for s in lg.segments()[:-1])  # emptied segments stay until the next round
        data = bytes(lg.read_batches(0, 1 << 20))
        assert [r.offset for r in lg.scan()][0] == 95
        base, delta = struct.unpack_from(">q", data)[0], struct.unpack_from(">i", data, 23)[0]
        assert base <= 95 <= base + delta


def test_an_open_transaction_bounds_the_round_at_the_last_stable_offset(broker):
    topic = compacted(broker)
    plain = pairs(10, 20)
    produce(broker, topic, plain)  # offsets 0..199
    txp = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"tx-{uuid.uuid4().hex[:6]}",
                    "linger.ms": 5, "batch.num.messages": 10})
    txp.init_transactions(TIMEOUT)
    txp.begin_transaction()
    txn = pairs(10, 30, tag=b"t")
    for k, v in txn:
        txp.produce(topic, v, key=k, partition=0)
    assert txp.flush(TIMEOUT) == 0
    p = broker.broker.log_manager.partitions[(topic, 0)]
    wait_for(lambda: p.log.log_end_offset >= len(plain) + len(txn), "the transaction's records stored")
    st = wait_for(lambda: (s := status(broker, topic)).last_round is not None and s, "a round below the LSO")
    time.sleep(0.3)  # more rounds may come: none may pass the open transaction's first offset
    st = status(broker, topic)
    assert st.last_round.first_uncleanable_offset <= len(plain)
    assert st.last_round.end_offset <= len(plain)
    txp.commit_transaction(TIMEOUT)
    wait_for(lambda: status(broker, topic).last_round.end_offset > len(plain), "a round past the committed txn")
    assert latest([(k, v) for _, k, v in read_all(broker, topic)]) == latest(plain + txn)


def test_abort_and_pause_stops_a_round_in_progress():
    # What truncation, partition deletion and DeleteRecords do: a round under
    # way (slowed by the throttle here) is aborted and waited for; nothing
    # of it is swapped in; resume lets the next one run.
    with running_broker(config={**FAST, "log.cleaner.io.max.bytes.per.second": "100000"}) as b:
        topic = compacted(b, 65536)
        data = pairs(50, 80)
        produce(b, topic, data)
        cleaner = b.broker.log_cleaner
        wait_for(lambda: status(b, topic).state == "cleaning", "a round under way")
        segments = b.broker.log_manager.partitions[(topic, 0)].log.segments()
        cleaner.abort_and_pause((topic, 0))
        try:
            st = status(b, topic)
            assert st.state == "paused" and st.last_round is None
            assert b.broker.log_manager.partitions[(topic, 0)].log.segments() == segments
            assert latest([(k, v) for _, k, v in read_all(b, topic)]) == latest(data)
        finally:
            cleaner.resume((topic, 0))
        st = wait_for(lambda: (s := status(b, topic)).last_round is not None and s, "the round after resume")
        assert st.last_round.records_removed > 0


def test_truncation_below_the_cleaned_part_moves_the_checkpoint_down(tmp_path):
    # Kafka's maybeTruncateCheckpoint: records appended after the cut are dirty again.
    from pylog.log.cleaner import read_cleaner_checkpoint
    from pylog.log.log import Log
    path = str(tmp_path / "t-0")
    with Log.open(path, segment_bytes=1024) as lg:
        for r in range(20):
            lg.append_batch([b"v%d" % r] * 5, [b"k%d" % i for i in range(5)])
        lg.roll()
        assert lg.compact().end_offset == 100 == read_cleaner_checkpoint(path)
        lg.truncate_to(50)
        assert lg.first_dirty_offset == 50 == read_cleaner_checkpoint(path)
    with Log.open(path, segment_bytes=1024) as lg:
        assert lg.first_dirty_offset == 50


def test_delete_records_aborts_a_round_in_progress_on_a_compact_delete_topic(caplog):
    # DeleteRecords' segment deletion pauses the partition's cleaning
    # (LogManager._delete_below_log_start): the throttled round under way is
    # aborted, the records go, and the next round cleans what is left.
    with running_broker(config={**FAST, "log.cleaner.io.max.bytes.per.second": "100000"}) as b:
        topic = create_topic(b, {"cleanup.policy": "compact,delete", "segment.bytes": "65536",
                                 "min.cleanable.dirty.ratio": "0.01"})
        data = pairs(50, 80)
        produce(b, topic, data)
        wait_for(lambda: status(b, topic).state == "cleaning", "a round under way")
        caplog.set_level(logging.INFO, logger="pylog.log.cleaner")
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        cut = TopicPartition(topic, 0, 2000)
        assert admin.delete_records([cut])[cut].result(TIMEOUT).low_watermark == 2000
        st = status(b, topic)
        assert st.last_round is None  # the round in progress was dropped, not finished
        # Aborted by the pause (not left to find its segments gone at the swap).
        assert any(f"cleaning of {topic}-0 was aborted" in r.getMessage() for r in caplog.records)
        p = b.broker.log_manager.partitions[(topic, 0)]
        assert p.log.log_start_offset == 2000
        st = wait_for(lambda: (s := status(b, topic)).last_round is not None and s, "the next round")
        got = read_all(b, topic)
        assert got[0][0] >= 2000 and latest([(k, v) for _, k, v in got]) == latest(data[2000:])


def test_threads_share_the_dedupe_buffer_and_clean_logs_side_by_side():
    with running_broker(config={**FAST, "log.cleaner.threads": "2",
                                "log.cleaner.dedupe.buffer.size": str(8 << 20)}) as b:
        cleaner = b.broker.log_cleaner
        assert cleaner.num_threads == 2 and cleaner.map_bytes == 4 << 20  # Kafka splits it among them
        assert sorted(t.name for t in cleaner._threads) == ["kafka-log-cleaner-thread-0",
                                                              "kafka-log-cleaner-thread-1"]
        topics = [compacted(b) for _ in range(3)]
        for t in topics:
            produce(b, t, pairs(10, 30))
        for t in topics:
            wait_for(lambda: (s := status(b, t)).last_round is not None and s.last_round.records_removed > 0,
                     f"a round on {t}")
