"""`pylog topics` options found missing by trying them as a Kafka user would,
against a real 3-broker cluster: --replica-assignment (create and alter),
--topics-with-overrides, --under-min-isr-partitions, --at-min-isr-partitions,
regular expressions in --topic, and Kafka 4's partition line (Elr columns)."""
from __future__ import annotations

import subprocess
import sys

from .zkcluster import bootstrap, embedded_cluster, partition_md, wait_for


def topics(boot, *args):
    return subprocess.run([sys.executable, "-m", "pylog", "topics", *args, "--bootstrap-server", boot],
                          capture_output=True, text=True, timeout=120)


def test_topic_options_as_kafka_topics_has_them():
    with embedded_cluster(n=3) as bs:
        boot = bootstrap(bs)
        r = topics(boot, "create", "--topic", "ra", "--replica-assignment", "2:3,3:1,1:2")
        assert (r.returncode, r.stdout) == (0, "Created topic ra.\n"), r.stderr
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": boot})
        wait_for(lambda: {p: md.replicas for p, md in partition_md(admin, "ra").items()}
                 == {0: [2, 3], 1: [3, 1], 2: [1, 2]}, what="ra's replicas as assigned")
        r = topics(boot, "create", "--topic", "rb", "--replica-assignment", "1:1", "--partitions", "1")
        assert r.returncode == 1 and "can't be used with option" in r.stderr
        r = topics(boot, "create", "--topic", "rb", "--replica-assignment", "1:1")
        assert r.returncode == 1 and "may not contain duplicate entries: 1" in r.stderr
        r = topics(boot, "create", "--topic", "rb", "--replica-assignment", "1:2,3")
        assert r.returncode == 1 and "Partition 1 has different replication factor: [3]" in r.stderr

        r = topics(boot, "alter", "--topic", "ra", "--partitions", "4", "--replica-assignment", "2:3,3:1,1:2,3:2")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: partition_md(admin, "ra").get(3) is not None and partition_md(admin, "ra")[3].replicas
                 == [3, 2], what="ra-3 on 3 and 2")

        # Two replicas: at min ISR with min.insync.replicas=2 (the cluster's
        # default here, so ra too), under it with 3.
        assert topics(boot, "create", "--topic", "at-min", "--partitions", "2", "--replication-factor", "2",
                      "--config", "min.insync.replicas=2").returncode == 0
        assert topics(boot, "create", "--topic", "under-min", "--partitions", "1", "--replication-factor", "2",
                      "--config", "min.insync.replicas=3").returncode == 0
        wait_for(lambda: all(len(md.isrs) == 2 for t in ("at-min", "under-min")
                             for md in partition_md(admin, t).values()) and len(partition_md(admin, "at-min")) == 2,
                 what="full ISRs")
        r = topics(boot, "describe", "--at-min-isr-partitions", "--exclude-internal")
        assert [line.split("\t")[1:3] for line in r.stdout.splitlines()] == [
            ["Topic: at-min", "Partition: 0"], ["Topic: at-min", "Partition: 1"],
            *(["Topic: ra", f"Partition: {p}"] for p in range(4))], r.stdout
        r = topics(boot, "describe", "--under-min-isr-partitions", "--exclude-internal")
        assert [line.split("\t")[1:3] for line in r.stdout.splitlines()] == [["Topic: under-min", "Partition: 0"]]
        assert all(line.endswith("\tElr: N/A\tLastKnownElr: N/A") for line in r.stdout.splitlines())

        # Only the topic lines of topics with a config not at Kafka's default
        # (a broker's own setting counts, as in Kafka: ra shows the cluster's
        # min.insync.replicas=2).
        r = topics(boot, "describe", "--topics-with-overrides", "--exclude-internal")
        lines = r.stdout.splitlines()
        assert [line.split("\t")[0] for line in lines] == ["Topic: at-min", "Topic: ra", "Topic: under-min"]
        assert lines[0].endswith("Configs: min.insync.replicas=2")
        r = topics(boot, "describe", "--topics-with-overrides", "--under-replicated-partitions")
        assert r.returncode == 1

        # --topic is a regular expression over the whole name.
        assert topics(boot, "list", "--topic", ".*-min").stdout.split() == ["at-min", "under-min"]
        assert topics(boot, "list", "--topic", "at").stdout == ""
        r = topics(boot, "describe", "--topic", "nope.*")
        assert (r.returncode, r.stderr) == (1, "Error: Topic 'nope.*' does not exist as expected\n")
        assert topics(boot, "describe", "--topic", "nope.*", "--if-exists").returncode == 0
        assert topics(boot, "delete", "--topic", ".*-min").returncode == 0
        wait_for(lambda: topics(boot, "list", "--exclude-internal").stdout.split() == ["ra"],
                 what="both -min topics deleted")
