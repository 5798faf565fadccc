"""pylog's own Consumer with group_protocol="consumer" (KIP-848) against a
real broker, sharing a group with librdkafka consumers: the broker's
assignment is applied (revocations first), commits carry the member epoch,
a restarted member resumes from its commits, and a refused membership is
raised from poll()."""
from __future__ import annotations

import pytest

from pylog import Consumer as PylogConsumer
from pylog.errors import PylogError
from pylog.testing import running_broker, wait_until

from .helpers import create_topic, produce
from .kip848 import CONFIG, assigned, consumer


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def pylog_consumer(b, group, *topics, **kw):
    return PylogConsumer(*topics, bootstrap_servers=str(b), group_id=group, group_protocol="consumer",
                         auto_offset_reset="earliest", enable_auto_commit=False, **kw)


def test_a_pylog_member_and_librdkafka_members_share_the_partitions(broker):
    topic, group = "p-share", "p-share-g"
    create_topic(broker, topic, 6)
    produce(broker, topic, 60, 6)
    mine = pylog_consumer(broker, group, topic)
    theirs = [consumer(broker, group) for _ in range(2)]
    for c in theirs:
        c.subscribe([topic])
    seen = set()
    try:
        def balanced():
            for rec in mine.poll(0.1):
                seen.add((rec.partition, rec.offset))
            for c in theirs:
                msg = c.poll(0.1)
                if msg is not None and not msg.error():
                    seen.add((msg.partition(), msg.offset()))
            sets = [{tp.partition for tp in mine.assignment()}] + [{p for _t, p in assigned(c)} for c in theirs]
            every = sorted(p for s in sets for p in s)
            return every == list(range(6)) and all(len(s) == 2 for s in sets) and len(seen) == 60
        wait_until(balanced, "two partitions each and every message read")
        mine.commit()        # with its member epoch (OffsetCommit v9)
        committed = mine.committed([(topic, tp.partition) for tp in mine.assignment()])
        assert all(om is not None and om.offset == 10 for om in committed.values())
        mine.close()
        mine = None

        def taken_over():
            for c in theirs:
                c.poll(0.1)
            return sorted(p for c in theirs for _t, p in assigned(c)) == list(range(6))
        wait_until(taken_over, "the librdkafka members owning every partition")
    finally:
        if mine is not None:
            mine.close()
        for c in theirs:
            c.close()


def test_a_restarted_pylog_member_resumes_from_its_commits(broker):
    topic, group = "p-resume", "p-resume-g"
    create_topic(broker, topic, 1)
    produce(broker, topic, 20, 1)
    c = pylog_consumer(broker, group, topic, max_poll_records=5)
    try:
        got = wait_until(lambda: c.poll(0.5), "the first records")
        c.commit({(topic, 0): got[-1].offset + 1})
        first_end = got[-1].offset + 1
    finally:
        c.close()
    c = pylog_consumer(broker, group, topic)
    try:
        again = wait_until(lambda: c.poll(0.5), "records after the restart")
        assert again[0].offset == first_end
    finally:
        c.close()


def test_a_refused_membership_is_raised_from_poll(broker):
    create_topic(broker, "p-refused", 1)
    c = pylog_consumer(broker, "p-refused-g", "p-refused", group_remote_assignor="no-such-assignor")
    try:
        def raised():
            try:
                c.poll(0.2)
            except PylogError as e:
                return e
            return None
        err = wait_until(raised, "the broker's refusal")
        assert getattr(err, "error_code", None) == 112      # UNSUPPORTED_ASSIGNOR
    finally:
        c.close()


def test_bad_settings():
    with pytest.raises(ValueError):
        PylogConsumer(bootstrap_servers="127.0.0.1:1", group_id="g", group_protocol="eager")
    with pytest.raises(ValueError):
        PylogConsumer(log_dir="/nonexistent", group_id="g", group_protocol="consumer", read_only=True)
    with pytest.raises(ValueError):
        PylogConsumer(bootstrap_servers="127.0.0.1:1", group_id="g", group_remote_assignor="range")


def test_a_pylog_member_that_stops_polling_leaves_and_rejoins(broker):
    import time
    topic, group = "p-idle", "p-idle-g"
    create_topic(broker, topic, 4)
    mine = pylog_consumer(broker, group, topic, max_poll_interval_ms=2000)
    theirs = consumer(broker, group)
    theirs.subscribe([topic])
    try:
        def shared():
            mine.poll(0.1)
            theirs.poll(0.1)
            return len(mine.assignment()) == 2 and len(assigned(theirs)) == 2
        wait_until(shared, "the partitions shared")
        t0 = time.monotonic()
        # mine stops polling: once past max.poll.interval it leaves, and theirs gets everything.
        def taken_over():
            theirs.poll(0.1)
            return len(assigned(theirs)) == 4
        wait_until(taken_over, "the idle member's partitions taken over")
        assert time.monotonic() - t0 >= 1.5
        wait_until(shared, "the idle member back after polling again")
    finally:
        mine.close()
        theirs.close()


def test_embedded_consumers_share_a_kip848_group_of_the_store(tmp_path):
    """Consumer(log_dir=..., group_protocol="consumer"): members of the
    store's own coordinator in-process; then a broker serving the directory
    has the group's offsets committed with member epochs."""
    import pylog
    d = str(tmp_path / "data")
    with pylog.Producer(log_dir=d, num_partitions=4) as p:
        for i in range(40):
            p.send("emb", b"v%d" % i, partition=i % 4)
        assert p.flush(10) == 0
    kw = dict(log_dir=d, group_id="emb-g", group_protocol="consumer", auto_offset_reset="earliest",
              enable_auto_commit=False)
    a, b = pylog.Consumer("emb", **kw), pylog.Consumer("emb", **kw)
    seen = set()
    try:
        def shared():
            for c in (a, b):
                for rec in c.poll(0.1):
                    seen.add((rec.partition, rec.offset))
            return len(a.assignment()) == 2 and len(b.assignment()) == 2 and len(seen) == 40
        wait_until(shared, "two partitions each and every record read")
        assert not ({tp.partition for tp in a.assignment()} & {tp.partition for tp in b.assignment()})
        a.commit()
        b.commit()
    finally:
        a.close()
        b.close()
    with running_broker(d) as broker:
        c = consumer(broker, "emb-g")
        try:
            from confluent_kafka import TopicPartition
            got = c.committed([TopicPartition("emb", p) for p in range(4)], timeout=30)
            assert [tp.offset for tp in got] == [10, 10, 10, 10]
        finally:
            c.close()
