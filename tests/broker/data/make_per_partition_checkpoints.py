"""Makes per-partition-checkpoints.tar.gz: a data dir written by pylog before
checkpoints moved to one file per data dir (commit 30315d7), for the migration
test. Run with that release's interpreter and sources:

    cd <checkout of 30315d7> && .venv/bin/python <this file> <out.tar.gz>

Topic "mig", 2 partitions: 50 records in each, log start moved to 20 in
partition 0 (DeleteRecords), checkpoints written, then a clean stop."""
import os
import shutil
import sys
import tarfile
import tempfile

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.testing import running_broker

out = os.path.abspath(sys.argv[1])
tmp = tempfile.mkdtemp()
data = os.path.join(tmp, "data")
with running_broker(data) as b:
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic("mig", 2, 1)]).values():
        f.result(10)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 1})
    for part in (0, 1):
        for i in range(50):
            p.produce("mig", b"v%d-%d" % (part, i), partition=part)
    assert p.flush(10) == 0
    for f in admin.delete_records([TopicPartition("mig", 0, 20)]).values():
        f.result(10)
    b.broker.log_manager.housekeeping()  # the checkpoints as that release wrote them
with tarfile.open(out, "w:gz") as tar:
    tar.add(data, arcname="data")
shutil.rmtree(tmp)
