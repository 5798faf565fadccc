"""I. Consumer groups: offset commits per second, and how fast a group settles.

commits: a `python -m pylog.broker` process; a confluent-kafka consumer (assign(),
standalone group) commits offsets for 10 partitions per OffsetCommit request, as
a consumer committing its assignment does, asynchronously (librdkafka pipelines
them), --bench-commit-requests requests per round; timed until every commit's
callback came back. commits/s counts partition offsets stored (each appended to
__consumer_offsets before it is acknowledged). Broker CPU per 1000 commits from
/proc like G.

settle: 10 confluent-kafka consumers subscribe to a 10-partition topic with the
default group.initial.rebalance.delay.ms (3000); timed from the last consumer's
subscribe() until all 10 hold one partition each.

Goals (issue "consumer groups"): >= 20,000 commits/s; a group of 10 settles within
group.initial.rebalance.delay.ms + 1 s after the last joins.
"""
from __future__ import annotations

import os
import statistics
import threading
import time

import pytest

ck = pytest.importorskip("confluent_kafka")
from bench_g_broker import BrokerProcess, _self_cpu  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

PARTITIONS_PER_COMMIT = 10


@pytest.fixture(scope="module")
def broker():
    b = BrokerProcess()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    futs = admin.create_topics([NewTopic("commits", PARTITIONS_PER_COMMIT, 1), NewTopic("settle", 10, 1)])
    for f in futs.values():
        f.result(30)
    yield b
    b.stop()


def test_i_offset_commits(benchmark, broker, request):
    n_req = request.config.getoption("--bench-commit-requests")
    samples = []
    state = {"round": 0}

    def setup():
        os.sync()
        state["round"] += 1
        c = state["consumer"] = ck.Consumer({
            "bootstrap.servers": broker.bootstrap, "group.id": f"commit-bench-{state['round']}",
            "enable.auto.commit": False, "on_commit": lambda err, parts: state["done"].append(err)})
        state["done"] = []
        c.assign([ck.TopicPartition("commits", p, 0) for p in range(PARTITIONS_PER_COMMIT)])
        c.commit(offsets=[ck.TopicPartition("commits", p, 0) for p in range(PARTITIONS_PER_COMMIT)],
                 asynchronous=False)  # coordinator found, connection up: outside the timing
        return (), {}

    def commit_all():
        c = state["consumer"]
        done = state["done"]
        b0, c0 = broker.cpu(), _self_cpu()
        for i in range(n_req):
            c.commit(offsets=[ck.TopicPartition("commits", p, i + 1) for p in range(PARTITIONS_PER_COMMIT)],
                     asynchronous=True)
        deadline = time.monotonic() + 120
        while len(done) < n_req and time.monotonic() < deadline:
            c.poll(0.01)
        samples.append((broker.cpu() - b0, _self_cpu() - c0))
        assert len(done) == n_req and not any(done), f"{len(done)} of {n_req} commits answered"
        got = c.committed([ck.TopicPartition("commits", p) for p in range(PARTITIONS_PER_COMMIT)], timeout=10)
        assert [tp.offset for tp in got] == [n_req] * PARTITIONS_PER_COMMIT
        c.close()

    benchmark.pedantic(commit_all, setup=setup, rounds=5, iterations=1, warmup_rounds=1)
    samples.pop(0)
    commits = n_req * PARTITIONS_PER_COMMIT
    benchmark.extra_info.update(
        scenario="I_groups", impl="offset commits", records=commits,
        broker_cpu_s_per_k=statistics.median(s[0] for s in samples) / commits * 1000,
        client_cpu_s_per_k=statistics.median(s[1] for s in samples) / commits * 1000,
        loadavg1=os.getloadavg()[0])


def test_i_group_of_10_settles(benchmark, broker):
    delay_ms = 3000  # the broker's default group.initial.rebalance.delay.ms
    state = {"round": 0}
    settle = []

    def run():
        state["round"] += 1
        gid = f"settle-{state['round']}"
        consumers = [ck.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": gid,
                                  "enable.auto.commit": False}) for _ in range(10)]
        stop = threading.Event()

        def poll_all():
            while not stop.is_set():
                for c in consumers:
                    c.poll(0.005)
        try:
            for c in consumers[:-1]:
                c.subscribe(["settle"])
            t = threading.Thread(target=poll_all)
            t.start()
            time.sleep(0.2)
            t_last = time.monotonic()
            consumers[-1].subscribe(["settle"])
            deadline = t_last + 30
            while time.monotonic() < deadline:
                sizes = [len(c.assignment()) for c in consumers]
                if sizes == [1] * 10:
                    break
                time.sleep(0.005)
            settle.append(time.monotonic() - t_last)
            stop.set()
            t.join()
            assert sizes == [1] * 10, f"assignment sizes {sizes}"
        finally:
            stop.set()
            for c in consumers:
                c.close()

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(scenario="I_groups", impl="group of 10 settles", records=10,
                                settle_s=statistics.median(settle), settle_rounds=[round(s, 3) for s in settle],
                                goal_s=delay_ms / 1000 + 1, loadavg1=os.getloadavg()[0])
