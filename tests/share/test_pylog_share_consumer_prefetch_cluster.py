"""pylog.ShareConsumer's buffer across leaders, three brokers over sockets:
one poll's ShareFetches go to every leader at once, a poll returns up to
max.poll.records (completed to a log batch's end) and keeps the other
leaders' answers for the next polls; each record is received once, and
close() releases what was buffered and never returned."""
from __future__ import annotations

import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pylog import ShareConsumer
from tests.cluster.zkcluster import CLUSTER, bootstrap, embedded_cluster, wait_for

from .wire import CONFIG, set_group_configs

TIMEOUT = 60.0
BASE = {**CLUSTER, **CONFIG, "offsets.topic.replication.factor": "3", "offsets.topic.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": "3", "share.coordinator.state.topic.min.isr": "2",
        "share.coordinator.state.topic.num.partitions": "3",
        "group.share.max.record.lock.duration.ms": "3600000"}
BATCH = 10      # records per log batch
MAX_POLL = 20


def test_one_member_reads_three_leaders_a_poll_at_a_time_each_record_once():
    with embedded_cluster(3, base=BASE) as brokers:
        topic, group = "prec-leaders", "prec-leaders-g"
        admin = AdminClient({"bootstrap.servers": bootstrap(brokers)})
        admin.create_topics([NewTopic(topic, num_partitions=3, replica_assignment=[[1, 2, 3], [2, 3, 1], [3, 1, 2]])]
                            )[topic].result(30)
        md = brokers[0].broker.metadata_cache
        wait_for(lambda: {i: st.leader for i, st in md.topics.get(topic, {}).items()} == {0: 1, 1: 2, 2: 3},
                 TIMEOUT, "the topic's leaders")
        # Locks of an hour: what the second member gets was released by close, not by expiry.
        set_group_configs(brokers[0], group, share_auto_offset_reset="earliest",
                          share_record_lock_duration_ms=3600000)
        p = Producer({"bootstrap.servers": bootstrap(brokers), "acks": "all", "linger.ms": 5})
        total = 300
        for start in range(0, total, 3 * BATCH):
            for i in range(start, start + 3 * BATCH):
                p.produce(topic, b"v-%d" % i, partition=(i // BATCH) % 3)
            assert p.flush(30) == 0    # one batch of BATCH records per partition
        c = ShareConsumer(topic, bootstrap_servers=bootstrap(brokers), group_id=group, max_poll_records=MAX_POLL)
        got, sizes = [], []
        deadline = time.monotonic() + TIMEOUT
        # Stop after 90 records (every leader has more), while other leaders' answers wait, buffered
        # or still on their way (a poll returns with the first answer that brings records).
        while len(got) < 90 or not (c._buffer or c._outstanding):
            assert time.monotonic() < deadline, f"{len(got)} records received"
            records = c.poll(0.5)
            if records:
                sizes.append(len(records))
                got += [(r.partition, r.offset) for r in records]
        assert max(sizes) <= MAX_POLL + BATCH - 1, sizes     # never three leaders' answers in one poll
        assert len(set(got)) == len(got)
        delivered = set(got)
        c.commit_sync()   # what the polls returned: accepted
        c.close()         # what was buffered and never returned: back to the group
        other = ShareConsumer(topic, bootstrap_servers=bootstrap(brokers), group_id=group)
        again = []
        deadline = time.monotonic() + TIMEOUT
        while len(delivered) + len({(p_, o) for p_, o, _ in again} - delivered) < total:
            assert time.monotonic() < deadline, f"{len(again)} records received by the second member"
            again += [(r.partition, r.offset, r.delivery_count) for r in other.poll(0.5)]
        other.commit_sync()
        other.close()
        seen = {(p_, o) for p_, o, _ in again}
        # Everything not returned to the first member, once; nothing it returned.
        assert len(seen) == len(again) and not seen & delivered
        assert seen | delivered == {(i // BATCH % 3, i // (3 * BATCH) * BATCH + i % BATCH) for i in range(total)}
        # The buffered answers were acquired for the first member (delivery 1), released at its close.
        assert any(n == 2 for _, _, n in again)
