"""How tests/data/legacy-30315d7-datadir.tar.gz was made: run with the release
at commit 30315d7 (topics in pylog-topics.json, cluster id in meta.properties,
producer-id blocks in pylog-producer-ids), before the lone broker became a
one-node cluster. A broker with three topics (configs, one grown from 1 to 2
partitions), records from an idempotent producer and a committed group offset
(legacy-group, orders-0 at 7). The migration test starts today's broker on it.

    git checkout 30315d7 && .venv/bin/python tests/data/make_legacy_datadir.py
"""
import os
import shutil
import tarfile
from confluent_kafka import Producer, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from pylog.testing import running_broker

d = "/tmp/i12ctl-legacy/data"
shutil.rmtree("/tmp/i12ctl-legacy", ignore_errors=True)
os.makedirs(d)
with running_broker(d, {"broker.id": "0", "offsets.topic.num.partitions": "3"}) as b:
    a = AdminClient({"bootstrap.servers": b})
    fs = a.create_topics([NewTopic("orders", 3, 1, config={"retention.ms": "86400000", "cleanup.policy": "delete"}),
                          NewTopic("events", 1, 1, config={"max.message.bytes": "200000"}),
                          NewTopic("grow", 1, 1)])
    for f in fs.values(): f.result(30)
    for f in a.create_partitions([NewPartitions("grow", 2)]).values(): f.result(30)
    p = Producer({"bootstrap.servers": b, "enable.idempotence": True})
    for i in range(30):
        p.produce("orders", key=b"k%d" % i, value=b"order-%d" % i, partition=i % 3)
    for i in range(5):
        p.produce("events", value=b"event-%d" % i)
    for i in range(4):
        p.produce("grow", value=b"grow-%d" % i, partition=i % 2)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": b, "group.id": "legacy-group", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("orders", 0, 0)])
    got = []
    while len(got) < 10:
        msg = c.poll(5)
        if msg is not None and not msg.error(): got.append(msg)
    c.commit(offsets=[TopicPartition("orders", 0, 7)], asynchronous=False)
    c.close()
print(sorted(os.listdir(d)))
print(open(os.path.join(d, "pylog-topics.json")).read())
print(open(os.path.join(d, "meta.properties")).read())
print(open(os.path.join(d, "pylog-producer-ids")).read())
os.unlink(os.path.join(d, ".lock"))
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "legacy-30315d7-datadir.tar.gz")
with tarfile.open(out, "w:gz") as t:
    t.add(d, arcname="data")
