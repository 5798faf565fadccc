"""Partition reassignment (`pylog reassign`, KIP-455) with four real brokers
and a real ZooKeeper: a replica moves to a new broker through replication,
at no more than the throttle, while a producer keeps writing; the old replica
is deleted; a cancelled move goes back to where it was."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

from confluent_kafka.admin import NewTopic

from .test_cluster_zk import read_all
from .zkcluster import AdminClient, bootstrap, ck, cluster, partition_md, wait_for

RECORD = b"x" * 1000


def pylog(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "pylog", "reassign", *args], capture_output=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def _controller(bs):
    return next(b.broker.controller for b in bs if b.broker.controller is not None and b.broker.controller.is_active)


def _fill(bs, topic, n):
    p = ck.Producer({"bootstrap.servers": bootstrap(bs), "acks": "all", "linger.ms": 5})
    for i in range(n):
        p.produce(topic, RECORD, key=str(i).encode())
    assert p.flush(60) == 0


def test_a_throttled_move_copies_through_replication_and_loses_nothing(zk_connect, tmp_path):
    with cluster(zk_connect, n=4) as bs:
        admin = AdminClient({"bootstrap.servers": bootstrap(bs)})
        admin.create_topics([NewTopic("r", 1, replica_assignment=[[1, 2, 3]])])["r"].result(20)
        wait_for(lambda: len(partition_md(admin, "r")) == 1 and len(partition_md(admin, "r")[0].isrs) == 3,
                 what="a full ISR")
        _fill(bs, "r", 3000)                                       # ~3.1 MB on disk
        size = bs[0].broker.log_manager.get_partition("r", 0).log.size_bytes
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": "r", "partition": 0, "replicas": [2, 3, 4]}]}))
        boot = bootstrap(bs)
        rate = 1_000_000

        # A producer keeps writing during the move.
        acked, stop = [], threading.Event()

        def produce():
            p = ck.Producer({"bootstrap.servers": boot, "acks": "all", "enable.idempotence": True,
                             "linger.ms": 5})
            i = 0
            while not stop.is_set():
                p.produce("r", str(i).encode(), on_delivery=lambda err, m: err or acked.append(int(m.value())))
                p.poll(0)
                i += 1
                time.sleep(0.001)
            assert p.flush(60) == 0
        t = threading.Thread(target=produce)
        t.start()
        try:
            t0 = time.monotonic()
            pylog("--bootstrap-server", boot, "--execute", "--reassignment-json-file", str(plan),
                  "--throttle", str(rate))
            listed = pylog("--bootstrap-server", boot, "--list").stdout.decode()
            assert listed == "Current partition reassignments:\nr-0: replicas: 2,3,4,1. adding: 4. removing: 1.\n"
            verify = pylog("--bootstrap-server", boot, "--verify", "--reassignment-json-file", str(plan)).stdout
            lines = verify.decode().splitlines()
            assert lines[:2] == ["Status of partition reassignment:",
                                 "Reassignment of partition r-0 is still in progress."], lines
            # How far the new replica got, against the leader's size.
            m = re.fullmatch(r"  broker 4: (\d+) of (\d+) bytes copied \((\d+)%\)", lines[2])
            assert m and int(m.group(1)) <= int(m.group(2)), lines
            # Another plan while this one runs needs --additional.
            again = pylog("--bootstrap-server", boot, "--execute", "--reassignment-json-file", str(plan),
                          check=False)
            assert again.returncode == 1 and b"Use --additional to override this" in again.stdout
            ctl = _controller(bs)
            wait_for(lambda: not ctl.reassignments(), timeout=60, what="the reassignment to finish")
            elapsed = time.monotonic() - t0
        finally:
            stop.set()
            t.join(60)
        # Never faster than the throttle allows (one second's worth may be saved up).
        print(f"reassignment of {size} bytes at {rate} B/s took {elapsed:.1f} s")
        assert elapsed >= (size - rate) / rate * 0.9, elapsed
        assert b"is completed" in pylog("--bootstrap-server", boot, "--verify", "--reassignment-json-file",
                                        str(plan)).stdout
        wait_for(lambda: sorted(partition_md(admin, "r")[0].replicas) == [2, 3, 4]
                 and sorted(partition_md(admin, "r")[0].isrs) == [2, 3, 4], what="replicas and ISR = 2,3,4")
        assert partition_md(admin, "r")[0].leader in (2, 3, 4)
        wait_for(lambda: ("r", 0) not in bs[0].broker.log_manager.partitions, what="broker 1's replica deleted")
        new = bs[3].broker.log_manager.get_partition("r", 0)
        wait_for(lambda: new.log_end_offset == bs[1].broker.log_manager.get_partition("r", 0).log_end_offset,
                 what="the new replica caught up")
        got = read_all(boot, "r", 1, 3000 + len(acked))
        assert [m.value() for m in got[:3000]] == [RECORD] * 3000
        assert set(acked) <= {int(m.value()) for m in got[3000:]}, "acknowledged messages lost"
        assert [m.offset() for m in got] == list(range(len(got)))


def test_cancel_goes_back_and_generate_proposes_a_valid_plan(zk_connect, tmp_path):
    with cluster(zk_connect, n=4) as bs:
        admin = AdminClient({"bootstrap.servers": bootstrap(bs)})
        admin.create_topics([NewTopic("c", 2, replica_assignment=[[1, 2, 3], [2, 3, 1]])])["c"].result(20)
        wait_for(lambda: len(partition_md(admin, "c")) == 2 and all(
            len(p.isrs) == 3 for p in partition_md(admin, "c").values()), what="full ISRs")
        _fill(bs, "c", 2000)
        boot = bootstrap(bs)
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": "c", "partition": 0, "replicas": [4, 2, 3]}]}))
        # 10 kB/s: the ~1 MB partition would take minutes.
        pylog("--bootstrap-server", boot, "--execute", "--reassignment-json-file", str(plan), "--throttle", "10000")
        wait_for(lambda: ("c", 0) in bs[3].broker.log_manager.partitions, what="the new replica created")
        assert _controller(bs).reassignments()
        out = pylog("--bootstrap-server", boot, "--cancel", "--reassignment-json-file", str(plan)).stdout
        assert out == b"Successfully cancelled partition reassignment for: c-0\n"
        assert not _controller(bs).reassignments()
        # Kafka's order after a cancel: the original replicas minus none, as
        # they stood behind the target ones.
        wait_for(lambda: sorted(partition_md(admin, "c")[0].replicas) == [1, 2, 3], what="the original replicas back")
        wait_for(lambda: ("c", 0) not in bs[3].broker.log_manager.partitions, what="the new replica deleted")
        # Cancelling what is not moving is an error (NO_REASSIGNMENT_IN_PROGRESS).
        from pylog.client import Client
        from pylog.protocol.messages import AlterPartitionReassignmentsRequest as A
        with Client(boot) as c:
            r = c.controller_connection().request(A(topics=[A.ReassignableTopic(
                name="c", partitions=[A.ReassignablePartition(partition_index=1, replicas=None)])]), api_version=0)
        assert r.responses[0].partitions[0].error_code == 85
        # A plan naming an unknown broker is refused, nothing changes.
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": "c", "partition": 1, "replicas": [2, 3, 9]}]}))
        bad = pylog("--bootstrap-server", boot, "--execute", "--reassignment-json-file", str(plan), check=False)
        assert (bad.returncode, bad.stdout) == (1, b"Unknown broker id 9\n")
        assert partition_md(admin, "c")[1].replicas == [2, 3, 1]

        topics = tmp_path / "topics.json"
        topics.write_text(json.dumps({"version": 1, "topics": [{"topic": "c"}]}))
        out = pylog("--bootstrap-server", boot, "--generate", "--topics-to-move-json-file", str(topics),
                    "--broker-list", "1,2,3,4", "--disable-rack-aware").stdout
        proposed = json.loads(out.decode().split("Proposed partition reassignment configuration\n")[1])
        parts = {e["partition"]: e["replicas"] for e in proposed["partitions"]}
        assert sorted(parts) == [0, 1]
        assert all(len(r) == 3 and len(set(r)) == 3 and set(r) <= {1, 2, 3, 4} for r in parts.values())
