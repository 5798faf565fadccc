"""`pylog verifiable-producer` and `pylog verifiable-consumer` against a real
broker: the JSON event lines Kafka's system tests read (names, fields, order),
every acknowledged value consumed and committed, and a SIGTERM handled as
Kafka's tools handle it."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.testing import running_broker, wait_until


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with running_broker(tmp_path_factory.mktemp("data"), config={"group.initial.rebalance.delay.ms": "0"}) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})   # kept alive until the result is in
        admin.create_topics([NewTopic("vt", 3, 1)])["vt"].result(20)
        yield b


def tool(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pylog", *args], capture_output=True, text=True, timeout=120,
                          **kw)


def events(text):
    return [json.loads(line) for line in text.splitlines()]


def test_the_producer_then_the_consumer_agree_on_every_message(broker):
    r = tool("verifiable-producer", "--topic", "vt", "--bootstrap-server", str(broker), "--max-messages", "200",
             "--value-prefix", "7", "--repeating-keys", "5", "--throughput", "2000")
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    assert [e["name"] for e in ev[:1] + ev[-2:]] == ["startup_complete", "shutdown_complete", "tool_data"]
    sent = [e for e in ev if e["name"] == "producer_send_success"]
    assert len(sent) == 200 and list(sent[0]) == ["timestamp", "name", "key", "value", "topic", "partition",
                                                  "offset"]
    assert sorted(e["value"] for e in sent) == sorted(f"7.{i}" for i in range(200))
    assert all(e["key"] == str(int(e["value"].split(".")[1]) % 5) for e in sent)   # keys 0..4, round and round
    tool_data = ev[-1]
    assert (tool_data["sent"], tool_data["acked"], tool_data["target_throughput"]) == (200, 200, 2000)
    where = {(e["partition"], e["offset"]): e["value"] for e in sent}

    r = tool("verifiable-consumer", "--topic", "vt", "--group-id", "vg", "--bootstrap-server", str(broker),
             "--max-messages", "200", "--verbose")
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    assert ev[0]["name"] == "startup_complete" and ev[-1]["name"] == "shutdown_complete"
    assigned = next(e for e in ev if e["name"] == "partitions_assigned")
    assert sorted(p["partition"] for p in assigned["partitions"]) == [0, 1, 2]
    got = {(e["partition"], e["offset"]): e["value"] for e in ev if e["name"] == "record_data"}
    assert got == where
    consumed = [e for e in ev if e["name"] == "records_consumed"]
    assert sum(p["count"] for e in consumed for p in e["partitions"]) == 200
    commits = [e for e in ev if e["name"] == "offsets_committed"]
    assert commits and all(e["success"] and "error" not in e for e in commits)
    last = {}
    for e in commits:
        for o in e["offsets"]:
            last[o["partition"]] = o["offset"]
    assert last == {p: 1 + max(o for (q, o) in where if q == p) for p in {q for q, _ in where}}


def test_sigterm_ends_both_tools_with_their_closing_lines(broker):
    prod = subprocess.Popen([sys.executable, "-m", "pylog", "verifiable-producer", "--topic", "vt",
                             "--bootstrap-server", str(broker), "--throughput", "100"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cons = subprocess.Popen([sys.executable, "-m", "pylog", "verifiable-consumer", "--topic", "vt",
                             "--group-id", "vg2", "--bootstrap-server", str(broker), "--reset-policy", "latest"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(prod.stdout.readline())["name"] == "startup_complete"
        assert json.loads(prod.stdout.readline())["name"] == "producer_send_success"
        seen = []
        wait_until(lambda: seen.append(json.loads(cons.stdout.readline())["name"]) or "records_consumed" in seen,
                   what="the consumer consuming", timeout=60)
    finally:
        for p in (prod, cons):
            p.send_signal(signal.SIGTERM)
        p_out, _ = prod.communicate(timeout=60)
        c_out, _ = cons.communicate(timeout=60)
    assert [e["name"] for e in events(p_out)][-2:] == ["shutdown_complete", "tool_data"]
    names = [e["name"] for e in events(c_out)]
    assert "shutdown_requested" in names and names[-1] == "shutdown_complete"
    assert prod.returncode == 0 and cons.returncode == 0


def test_the_consumer_as_a_kip848_member(broker):
    r = tool("verifiable-producer", "--topic", "vt", "--bootstrap-server", str(broker), "--max-messages", "30")
    assert r.returncode == 0, r.stderr
    r = tool("verifiable-consumer", "--topic", "vt", "--group-id", "v848", "--bootstrap-server", str(broker),
             "--group-protocol", "consumer", "--group-remote-assignor", "uniform", "--max-messages", "30")
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    assigned = [p["partition"] for e in ev if e["name"] == "partitions_assigned" for p in e["partitions"]]
    assert sorted(assigned) == [0, 1, 2]
    assert sum(p["count"] for e in ev if e["name"] == "records_consumed" for p in e["partitions"]) == 30
    assert all(e["success"] for e in ev if e["name"] == "offsets_committed")


def test_the_consumer_refuses_what_pylog_has_not(broker):
    r = tool("verifiable-consumer", "--topic", "vt", "--group-id", "g", "--bootstrap-server", str(broker),
             "--assignment-strategy", "com.example.Mine")
    assert r.returncode != 0 and "pylog has" in r.stderr
