"""ElectLeaders (KIP-183/460) and `pylog leader-election` against real brokers
of a cluster on the embedded controller, with confluent-kafka's and
kafka-python's admin clients and the CLI.

A partition whose leader is not its preferred replica is made the way an
operator makes one: `pylog reassign` reorders its replicas (same set, so no
replica moves and the leader stays), which leaves the new first replica as the
preferred leader that does not lead."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from confluent_kafka import ElectionType, TopicPartition

from .zkcluster import AdminClient, bootstrap, create_topic, embedded_cluster, partition_md, wait_for

kafka_admin = pytest.importorskip("kafka.admin")


def pylog(*args):
    return subprocess.run([sys.executable, "-m", "pylog", *args], capture_output=True, text=True, timeout=120)


def _reorder(boot, topic, partition, replicas, tmp_path):
    plan = tmp_path / f"plan-{topic}-{partition}.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": partition, "replicas": replicas}]}))
    r = pylog("reassign", "--bootstrap-server", boot, "--reassignment-json-file", str(plan), "--execute")
    assert r.returncode == 0, r.stderr


def test_preferred_election_with_the_cli_and_both_admin_clients(tmp_path):
    with embedded_cluster(n=3) as bs:
        boot = bootstrap(bs)
        admin = create_topic(bs, "e", 2)
        leaders = {p: md.leader for p, md in partition_md(admin, "e").items()}
        # Reorder both partitions' replicas so the current leader is last.
        for p in (0, 1):
            replicas = [b for b in partition_md(admin, "e")[p].replicas if b != leaders[p]] + [leaders[p]]
            _reorder(boot, "e", p, replicas, tmp_path)
        wait_for(lambda: all(md.replicas[-1] == leaders[p] for p, md in partition_md(admin, "e").items()),
                 what="the reordered replicas in Metadata")
        assert {p: md.leader for p, md in partition_md(admin, "e").items()} == leaders

        r = pylog("leader-election", "--bootstrap-server", boot, "--election-type", "preferred",
                  "--topic", "e", "--partition", "0")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "Successfully completed leader election (PREFERRED) for partitions e-0\n"
        wait_for(lambda: partition_md(admin, "e")[0].leader == partition_md(admin, "e")[0].replicas[0],
                 what="the preferred replica leading e-0")

        # Again: nothing to do, which the tool reports as Kafka's does.
        r = pylog("leader-election", "--bootstrap-server", boot, "--election-type", "PREFERRED",
                  "--topic", "e", "--partition", "0")
        assert (r.returncode, r.stdout) == (0, "Valid replica already elected for partitions e-0\n"), r.stderr

        # confluent-kafka: e-1 elected, e-0 already led by its preferred replica.
        fut = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("e", 1)])
        assert fut.result(30) == {TopicPartition("e", 1): None}
        wait_for(lambda: partition_md(admin, "e")[1].leader == partition_md(admin, "e")[1].replicas[0],
                 what="the preferred replica leading e-1")
        res = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("e", 0)]).result(30)
        assert res[TopicPartition("e", 0)].code() == 84   # ELECTION_NOT_NEEDED

        # Every partition (a null list, as Kafka's tool sends for
        # --all-topic-partitions): those that needed no election are left out
        # of the answer, so the tool prints nothing.
        r = pylog("leader-election", "--bootstrap-server", boot, "--election-type", "preferred",
                  "--all-topic-partitions")
        assert (r.returncode, r.stdout) == (0, ""), r.stderr

        # kafka-python lists every partition itself: each is ELECTION_NOT_NEEDED.
        ka = kafka_admin.KafkaAdminClient(bootstrap_servers=boot)
        try:
            resp = ka.elect_leaders(0, None)
            assert {(t.topic, p.partition_id): p.error_code for t in resp.replica_election_results
                    for p in t.partition_result if t.topic == "e"} == {("e", 0): 84, ("e", 1): 84}
            resp = ka.elect_leaders(1, {"e": [0, 7]}, raise_errors=False)
            codes = {(t.topic, p.partition_id): p.error_code
                     for t in resp.replica_election_results for p in t.partition_result}
            assert codes == {("e", 0): 84, ("e", 7): 3}   # ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PARTITION
        finally:
            ka.close()


def test_the_cli_refuses_bad_option_combinations_and_reports_failures(tmp_path):
    with embedded_cluster(n=3) as bs:
        boot = bootstrap(bs)
        create_topic(bs, "f", 1)
        r = pylog("leader-election", "--bootstrap-server", boot, "--election-type", "preferred", "--topic", "f")
        assert r.returncode == 1 and "Missing required option(s): --partition" in r.stderr
        r = pylog("leader-election", "--bootstrap-server", boot, "--election-type", "preferred",
                  "--topic", "f", "--partition", "0", "--all-topic-partitions")
        assert r.returncode == 1 and "One and only one of the following options is required" in r.stderr
        plan = tmp_path / "dup.json"
        plan.write_text(json.dumps({"partitions": [{"topic": "f", "partition": 0}, {"topic": "f", "partition": 0}]}))
        r = pylog("leader-election", "--bootstrap-server", boot, "--election-type", "unclean",
                  "--path-to-json-file", str(plan))
        assert r.returncode == 1 and "contains duplicate partitions: f-0" in r.stderr
        plan.write_text(json.dumps({"partitions": [{"topic": "f", "partition": 0}, {"topic": "f", "partition": 3}]}))
        r = pylog("leader-election", "--bootstrap-server", boot, "--election-type", "unclean",
                  "--path-to-json-file", str(plan))
        assert r.returncode == 1
        assert r.stdout == (
            "Valid replica already elected for partitions f-0\n"
            "Error completing leader election (UNCLEAN) for partition: f-3: "
            "org.apache.kafka.common.errors.UnknownTopicOrPartitionException: No such partition as f-3\n")
        assert "1 replica(s) could not be elected" in r.stderr


def test_a_lone_broker_answers_as_a_one_node_cluster(kafka_broker):
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.create_topics([__import__("confluent_kafka.admin", fromlist=["NewTopic"]).NewTopic("lone", 1, 1)])[
        "lone"].result(20)
    res = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("lone", 0)]).result(30)
    print(repr(res))
    assert res[TopicPartition("lone", 0)].code() == 84   # ELECTION_NOT_NEEDED
