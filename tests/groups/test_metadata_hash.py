"""The metadata hash of KIP-848 groups (KIP-1101): Kafka's computeTopicHash /
computeGroupHash byte for byte, what a real broker writes in
ConsumerGroupMetadataValue (its broker.rack included), and a data dir written
with pylog's former hash: the group reloads with its members and its epoch
moves once, as on Kafka's upgrade to the hash."""
from __future__ import annotations

import uuid
from contextlib import closing

from pylog.groups import metadata_hash as mh
from pylog.testing import running_broker, wait_until

from .helpers import create_topic
from .kip848 import CONFIG, connect, describe, former_metadata_hash, heartbeat, member_id, metadata_hashes, owned


def _uuid(msb, lsb):
    """Kafka's new Uuid(mostSignificantBits, leastSignificantBits)."""
    return uuid.UUID(int=((msb & (1 << 64) - 1) << 64) | (lsb & (1 << 64) - 1))


# What Kafka trunk's Utils.computeTopicHash / computeGroupHash give, run on the
# JVM over hash4j 0.22.0 (Kafka's version) for these inputs: constants, since
# Kafka's own UtilsTest builds its expected values with the hasher instead.
FOO = mh.compute_topic_hash("foo", _uuid(0x0123456789abcdef, 0xfedcba9876543210),
                            [["rack2", "rack1"], ["rack0", "rack1", "rack1"], []])
# A name with a letter outside ASCII and one outside the BMP (a surrogate pair in Java).
BAR_NAME = "b\u00e5r-\U0001F600"
BAR = mh.compute_topic_hash(BAR_NAME, _uuid(0x7a3e0b2c4d5f6071, 0x8293a4b5c6d7e8f9), [[], []])
# More than XXH3's 240 bytes, and a rack with the separator Kafka's length prefix guards against.
BIG_NAME = "a-topic-with-forty-partitions"
BIG = mh.compute_topic_hash(BIG_NAME, _uuid(-1, 1),
                            [[f"z-rack-{i % 3}", f"\u00e9-{i}", "a,b"] for i in range(40)])


def test_topic_hashes_are_kafkas():
    assert FOO == 1898826920854488945
    assert BAR == 6727283694047175193
    assert BIG == 55606935734644307
    assert mh.compute_topic_hash("no-racks", _uuid(0, 0), [[], [], [], []]) == 1964841233658160679
    # Java sorts racks by UTF-16 code unit: U+FB01 after a surrogate pair, though its code point is lower.
    assert mh.compute_topic_hash("edge", _uuid(1, 2), [["\ufb01", "\U0001F600"]]) == 4067573192487994819


def test_group_hashes_are_kafkas():
    assert mh.compute_group_hash({}) == 0
    assert mh.compute_group_hash({"foo": FOO}) == -6719686856967920327
    assert mh.compute_group_hash({"foo": FOO, BAR_NAME: BAR, BIG_NAME: BIG}) == 3840827619598612369


def kafka_hash(topic, topic_id, partitions, rack):
    return mh.compute_group_hash({topic: mh.compute_topic_hash(topic, topic_id, [[rack] if rack else []] * partitions)})


def test_the_group_epoch_record_carries_kafkas_hash_with_the_brokers_rack(tmp_path):
    with running_broker(tmp_path / "data", config={**CONFIG, "broker.rack": "rack-a"}) as b:
        create_topic(b, "mh-wire", 3)
        with closing(connect(b)) as conn:
            r = heartbeat(conn, "mh-wire-g", member_id(), 0, ["mh-wire"])
        assert r.error_code == 0, r.error_message
        [tp] = r.assignment.topic_partitions
        assert metadata_hashes(b, "mh-wire-g") == [kafka_hash("mh-wire", tp.topic_id, 3, "rack-a")]


def test_a_data_dir_with_the_former_hash_keeps_its_members_and_bumps_the_epoch_once(tmp_path, monkeypatch):
    with running_broker(tmp_path / "data", config=CONFIG) as b:
        create_topic(b, "mh-old", 2)
        with monkeypatch.context() as p:
            p.setattr(mh.TopicHashes, "group_hash", lambda self, topics: former_metadata_hash(topics))
            mid = member_id()
            with closing(connect(b)) as conn:
                r = heartbeat(conn, "mh-old-g", mid, 0, ["mh-old"], instance_id="keep")
            assert r.error_code == 0, r.error_message
            [tp] = r.assignment.topic_partitions
            old = former_metadata_hash({"mh-old": (tp.topic_id, 2)})
            assert metadata_hashes(b, "mh-old-g") == [old]
            epoch = r.member_epoch
        b.restart()
        with closing(connect(b)) as conn:
            before = wait_until(lambda: (lambda g: g if g.error_code == 0 else None)(describe(conn, "mh-old-g")),
                                "the group reloaded")
            assert before.group_epoch == epoch and [mm.member_id for mm in before.members] == [mid]
            # The first heartbeat finds the hash changed: one new epoch, the same partitions.
            again = heartbeat(conn, "mh-old-g", mid, epoch, instance_id="keep", owned=owned(r))
            assert again.error_code == 0 and again.member_epoch == epoch + 1
            # Then no more: the hash written is Kafka's and stays.
            steady = heartbeat(conn, "mh-old-g", mid, epoch + 1, instance_id="keep", owned=owned(r))
            assert steady.error_code == 0 and steady.member_epoch == epoch + 1
            after = describe(conn, "mh-old-g")
            assert (after.group_epoch, after.assignment_epoch) == (epoch + 1, epoch + 1)
            [mm] = after.members
            assert (mm.member_id, mm.member_epoch) == (mid, epoch + 1)
            assert [(t.topic_id, sorted(t.partitions)) for t in mm.assignment.topic_partitions] == \
                [(tp.topic_id, [0, 1])]
            assert metadata_hashes(b, "mh-old-g") == [old, kafka_hash("mh-old", tp.topic_id, 2, None)]
