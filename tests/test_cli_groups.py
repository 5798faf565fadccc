"""`python -m pylog groups ...` (kafka-consumer-groups) run as subprocesses
against a real in-process broker; the groups are made and checked with
confluent-kafka (a subscribed consumer for an active group, committed() for
what the CLI committed)."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.__main__ import main as pylog_main
from pylog.client import Client
from pylog.client.client import consumer_assignment
from pylog.protocol.messages import (
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
    JoinGroupRequest,
)
from pylog.protocol.types import INT16
from pylog.testing import running_broker

TIMEOUT = 20.0
TOPIC = "t"
PER_PARTITION = 10
OLD_TS = 1577836800000   # 2020-01-01T00:00:00Z: the first 5 records of each partition
NEW_TS = 1609459200000   # 2021-01-01T00:00:00Z: the last 5
BETWEEN = "2020-06-01T00:00:00.000Z"


@pytest.fixture
def broker(tmp_path):
    with running_broker(tmp_path / "data", config={"group.initial.rebalance.delay.ms": "100",
                                                   "group.min.session.timeout.ms": "1000"}) as b:
        admin = AdminClient({"bootstrap.servers": b})
        admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])[TOPIC].result(TIMEOUT)
        p = Producer({"bootstrap.servers": b, "acks": "all"})
        for part in range(3):
            for i in range(PER_PARTITION):
                ts = (OLD_TS if i < PER_PARTITION // 2 else NEW_TS) + i
                p.produce(TOPIC, b"v%d" % i, partition=part, timestamp=ts)
        assert p.flush(TIMEOUT) == 0
        yield b


def groups(broker, *args, rc=0):
    """`python -m pylog groups ARGS --bootstrap-server BROKER`: (stdout, stderr),
    asserting the exit code."""
    out = subprocess.run([sys.executable, "-m", "pylog", "groups", *args, "--bootstrap-server", broker],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == rc, (args, out.returncode, out.stdout, out.stderr)
    return out.stdout, out.stderr


def table(stdout: str) -> list[dict]:
    """The rows of a whitespace-separated table (first non-blank line = header)."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    rows = [line.split() for line in lines[1:]]
    for r in rows:
        assert len(r) == len(header), (header, r)
    return [dict(zip(header, r)) for r in rows]


def offsets_table(stdout: str) -> dict[int, tuple[str, str, str]]:
    """describe's rows: {partition: (CURRENT-OFFSET, LOG-END-OFFSET, LAG)}."""
    rows = table(stdout)
    assert all(r["TOPIC"] == TOPIC for r in rows), rows
    return {int(r["PARTITION"]): (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for r in rows}


def committed(broker, group) -> dict[int, int]:
    """The group's committed offsets as confluent-kafka reads them (-1001: none)."""
    c = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(TOPIC, p) for p in range(3)], timeout=TIMEOUT)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in tps}


@contextlib.contextmanager
def active_consumer(broker, group, commit: dict[int, int]):
    """A confluent consumer subscribed to TOPIC in `group`, holding all three
    partitions, that has committed `commit` ({partition: offset}); closed
    (LeaveGroup) on exit."""
    c = Consumer({"bootstrap.servers": broker, "group.id": group, "client.id": "cli-test",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})
    try:
        c.subscribe([TOPIC])
        deadline = time.monotonic() + TIMEOUT
        while len(c.assignment()) < 3:
            assert time.monotonic() < deadline, "the consumer got no assignment"
            c.poll(0.1)
        c.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in commit.items()], asynchronous=False)
        yield c
    finally:
        c.close()


def test_help_of_every_sub_command(capsys):
    for action in ("list", "describe", "reset-offsets", "delete"):
        with pytest.raises(SystemExit) as e:
            pylog_main(["groups", action, "--help"])
        assert e.value.code == 0, action
        assert "--bootstrap-server" in capsys.readouterr().out, action


def test_consumer_assignment_bytes():
    a = ConsumerProtocolAssignment(assigned_partitions=[
        ConsumerProtocolAssignment.TopicPartition("a", [2, 0]),
        ConsumerProtocolAssignment.TopicPartition("b", [1])], user_data=b"x")
    v1 = INT16.pack(1) + ConsumerProtocolAssignment.encode(a, 1)
    assert consumer_assignment(v1) == [("a", 2), ("a", 0), ("b", 1)]
    # A newer version is read as its known prefix, as Kafka's readers do.
    assert consumer_assignment(INT16.pack(9) + ConsumerProtocolAssignment.encode(a, 3) + b"\0\0") == \
        [("a", 2), ("a", 0), ("b", 1)]
    assert consumer_assignment(b"") == []


def test_list_describe_delete_active_then_empty_group(broker):
    with active_consumer(broker, "g", {0: 3, 1: 5, 2: 7}) as c:
        member = c.memberid()
        out, _ = groups(broker, "list")
        assert out.split() == ["g"]
        assert table(groups(broker, "list", "--state")[0]) == [{"GROUP": "g", "STATE": "Stable"}]
        assert table(groups(broker, "list", "--state", "empty,Dead")[0]) == []
        # Kafka 4's --type (ListGroups v5), alone or with --state, in its printGroupInfo layout.
        out, _ = groups(broker, "list", "--type")
        assert out.splitlines() == ["GROUP".ljust(25) + " " + "TYPE".ljust(20), "g".ljust(25) + " " + "Classic".ljust(20)]
        assert table(groups(broker, "list", "--type", "CLASSIC,consumer", "--state", "stable")[0]) == \
            [{"GROUP": "g", "TYPE": "Classic", "STATE": "Stable"}]
        assert table(groups(broker, "list", "--type", "consumer")[0]) == []
        _, err = groups(broker, "list", "--type", "bogus", rc=2)
        assert "Invalid types list 'bogus'. Valid types are: Consumer, Classic, Share" in err

        out, err = groups(broker, "describe", "g")
        assert err == ""
        rows = table(out)
        assert [r["PARTITION"] for r in rows] == ["0", "1", "2"]
        assert offsets_table(out) == {0: ("3", "10", "7"), 1: ("5", "10", "5"), 2: ("7", "10", "3")}
        for r in rows:
            assert r["GROUP"] == "g" and r["CONSUMER-ID"] == member and r["CLIENT-ID"] == "cli-test"
            assert "127.0.0.1" in r["HOST"], r

        # Kafka 4's verbose members: a classic group's members have no epochs and no target.
        out, _ = groups(broker, "describe", "g", "--members", "--verbose")
        assert table(out) == [{"GROUP": "g", "CONSUMER-ID": member, "HOST": rows[0]["HOST"],
                               "CLIENT-ID": "cli-test", "#PARTITIONS": "3", "CURRENT-EPOCH": "-",
                               "CURRENT-ASSIGNMENT": "t:0,1,2", "TARGET-EPOCH": "-", "TARGET-ASSIGNMENT": "-"}]
        out, _ = groups(broker, "describe", "g", "--state")
        lines = out.strip().splitlines()
        assert lines[0].split() == ["GROUP", "COORDINATOR", "(ID)", "ASSIGNMENT-STRATEGY", "STATE",
                                    "#MEMBERS"]
        assert lines[1].split()[0] == "g" and lines[1].split()[-3:] == ["range", "Stable", "1"]
        out, _ = groups(broker, "describe", "g", "--state", "--verbose")
        lines = out.strip().splitlines()
        assert lines[0].split() == ["GROUP", "COORDINATOR", "(ID)", "ASSIGNMENT-STRATEGY", "STATE",
                                    "GROUP-EPOCH", "TARGET-ASSIGNMENT-EPOCH", "#MEMBERS"]
        assert lines[1].split()[-5:] == ["range", "Stable", "-", "-", "1"]

        # An active group can neither be reset nor deleted.
        out, err = groups(broker, "reset-offsets", "--group", "g", "--all-topics", "--to-earliest",
                          "--execute", rc=1)
        assert err.strip() == ("Error: Assignments can only be reset if the group 'g' is inactive, "
                               "but the current state is Stable.")
        assert out == ""
        out, err = groups(broker, "delete", "--group", "g", rc=1)
        assert "Error: Deletion of some consumer groups failed:" in err
        assert "* Group 'g' could not be deleted due to: NON_EMPTY_GROUP" in out
        assert committed(broker, "g") == {0: 3, 1: 5, 2: 7}

    # Closed (LeaveGroup): Empty, the offsets stay, the consumer columns go.
    out, err = groups(broker, "describe", "g")
    assert "Consumer group 'g' has no active members." in err
    assert offsets_table(out) == {0: ("3", "10", "7"), 1: ("5", "10", "5"), 2: ("7", "10", "3")}
    assert {(r["CONSUMER-ID"], r["HOST"], r["CLIENT-ID"]) for r in table(out)} == {("-", "-", "-")}
    assert table(groups(broker, "list", "--state")[0]) == [{"GROUP": "g", "STATE": "Empty"}]
    out, err = groups(broker, "describe", "g", "--members")
    assert out == "" and "Consumer group 'g' has no active members." in err

    out, _ = groups(broker, "delete", "--group", "g")
    assert out.strip() == "Deletion of requested consumer groups ('g') was successful."
    assert groups(broker, "list")[0] == ""
    _, err = groups(broker, "describe", "g", rc=1)
    assert err.strip() == "Error: Consumer group 'g' does not exist."
    out, _ = groups(broker, "delete", "--group", "g", rc=1)
    assert "* Group 'g' could not be deleted due to: GROUP_ID_NOT_FOUND" in out
    assert committed(broker, "g") == {0: -1001, 1: -1001, 2: -1001}


def test_reset_offsets(broker):
    with active_consumer(broker, "r", {0: 3, 1: 5, 2: 7}):
        pass

    def reset(*args, rc=0):
        out, err = groups(broker, "reset-offsets", "--group", "r", *args, rc=rc)
        return {(r["GROUP"], int(r["PARTITION"])): int(r["NEW-OFFSET"]) for r in table(out)}, err

    # --dry-run (and no mode at all, with Kafka's warning) print and change nothing.
    plan, err = reset("--all-topics", "--to-earliest", "--dry-run")
    assert plan == {("r", 0): 0, ("r", 1): 0, ("r", 2): 0} and err == ""
    plan, err = reset("--topic", TOPIC, "--to-latest")
    assert plan == {("r", 0): 10, ("r", 1): 10, ("r", 2): 10}
    assert "No action will be performed as the --execute option is missing" in err
    assert committed(broker, "r") == {0: 3, 1: 5, 2: 7}

    reset("--topic", TOPIC, "--to-earliest", "--execute")
    assert committed(broker, "r") == {0: 0, 1: 0, 2: 0}

    # --to-offset: only the partitions named; out-of-range values clamped.
    plan, _ = reset("--topic", f"{TOPIC}:0,1", "--to-offset", "4", "--execute")
    assert plan == {("r", 0): 4, ("r", 1): 4}
    plan, err = reset("--topic", f"{TOPIC}:2", "--to-offset", "99", "--execute")
    assert plan == {("r", 2): 10} and "Value will be set to 10" in err
    assert committed(broker, "r") == {0: 4, 1: 4, 2: 10}

    reset("--all-topics", "--shift-by", "-2", "--execute")
    assert committed(broker, "r") == {0: 2, 1: 2, 2: 8}
    plan, err = reset("--topic", f"{TOPIC}:0", "--shift-by", "-5", "--execute")
    assert plan == {("r", 0): 0} and "Value will be set to 0" in err
    reset("--topic", f"{TOPIC}:1", "--shift-by", "+100", "--execute")
    assert committed(broker, "r") == {0: 0, 1: 10, 2: 8}

    # --to-datetime: the first record at or after the time; none -> latest.
    reset("--topic", TOPIC, "--to-datetime", BETWEEN, "--execute")
    assert committed(broker, "r") == {0: 5, 1: 5, 2: 5}
    plan, err = reset("--topic", f"{TOPIC}:0", "--to-datetime", "2019-12-31T23:59:59.999Z", "--execute")
    assert plan == {("r", 0): 0}
    plan, err = reset("--topic", f"{TOPIC}:2", "--to-datetime", "2030-01-01T00:00:00.000+02:00",
                      "--execute")
    assert plan == {("r", 2): 10} and "Falling back to latest known offset" in err
    assert committed(broker, "r") == {0: 0, 1: 5, 2: 10}

    out, _ = groups(broker, "describe", "r")
    assert offsets_table(out) == {0: ("0", "10", "10"), 1: ("5", "10", "5"), 2: ("10", "10", "0")}


def test_reset_offsets_of_a_new_group_and_bad_requests(broker):
    # A group nobody joined yet (Dead) may be given offsets; it is Empty after.
    _, err = groups(broker, "reset-offsets", "--group", "new", "--topic", TOPIC, "--shift-by", "1",
                    "--execute", rc=1)
    assert "Cannot shift offset for partition t-0 since there is no current committed offset" in err
    groups(broker, "reset-offsets", "--group", "new", "--topic", TOPIC, "--to-offset", "6", "--execute")
    assert committed(broker, "new") == {0: 6, 1: 6, 2: 6}
    assert table(groups(broker, "list", "--state")[0]) == [{"GROUP": "new", "STATE": "Empty"}]

    _, err = groups(broker, "reset-offsets", "--group", "new", "--topic", "nosuch", "--to-earliest",
                    "--execute", rc=1)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in err
    _, err = groups(broker, "reset-offsets", "--group", "new", "--topic", f"{TOPIC}:7", "--to-earliest",
                    "--execute", rc=1)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in err
    groups(broker, "reset-offsets", "--group", "new", "--to-earliest", "--execute", rc=2)
    groups(broker, "reset-offsets", "--group", "new", "--topic", TOPIC, "--to-earliest", "--to-latest",
           rc=2)
    groups(broker, "reset-offsets", "--group", "new", "--all-topics", "--to-datetime", "yesterday",
           rc=2)
    assert committed(broker, "new") == {0: 6, 1: 6, 2: 6}


def test_rebalancing_group(broker):
    """A member that joined (JoinGroup v0) but never synced holds the group in
    CompletingRebalance: describe says it is rebalancing, reset refuses."""
    groups(broker, "reset-offsets", "--group", "rb", "--topic", TOPIC, "--to-offset", "2", "--execute")
    with Client(broker) as client:
        sub = INT16.pack(0) + ConsumerProtocolSubscription.encode(
            ConsumerProtocolSubscription(topics=[TOPIC]), 0)
        resp = client.connection(client.find_coordinator("rb")).request(JoinGroupRequest(
            group_id="rb", session_timeout_ms=20000, member_id="", protocol_type="consumer",
            protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=sub)]), 0)
        assert resp.error_code == 0, resp
        out, err = groups(broker, "describe", "rb")
        assert "Warning: Consumer group 'rb' is rebalancing." in err
        assert offsets_table(out) == {p: ("2", "10", "8") for p in range(3)}
        out, _ = groups(broker, "describe", "rb", "--members")
        assert [(r["CONSUMER-ID"], r["#PARTITIONS"]) for r in table(out)] == [(resp.member_id, "0")]
        _, err = groups(broker, "reset-offsets", "--group", "rb", "--all-topics", "--to-earliest",
                        "--execute", rc=1)
        assert "but the current state is CompletingRebalance." in err
        out, _ = groups(broker, "delete", "--group", "rb", rc=1)
        assert "NON_EMPTY_GROUP" in out
    assert committed(broker, "rb") == {0: 2, 1: 2, 2: 2}


def test_reset_export_from_file_and_by_duration(broker, tmp_path):
    with active_consumer(broker, "x", {0: 3, 1: 5, 2: 7}):
        pass
    # --export: Kafka's CSV (no header, no group column for one group), then a blank line.
    out, _ = groups(broker, "reset-offsets", "--group", "x", "--all-topics", "--shift-by", "1", "--dry-run",
                    "--export")
    assert out == f"{TOPIC},0,4\n{TOPIC},1,6\n{TOPIC},2,8\n\n"
    plan = tmp_path / "plan.csv"
    plan.write_text(f"{TOPIC},0,1\n{TOPIC},2,9\n")
    groups(broker, "reset-offsets", "--group", "x", "--from-file", str(plan), "--execute")
    assert committed(broker, "x") == {0: 1, 1: 5, 2: 9}
    # Several groups: a group column, and each group takes its own lines from the file.
    with active_consumer(broker, "y", {0: 1, 1: 1, 2: 1}):
        pass
    out, _ = groups(broker, "reset-offsets", "--group", "x", "--group", "y", "--topic", f"{TOPIC}:1",
                    "--to-latest", "--dry-run", "--export")
    assert out == f"x,{TOPIC},1,10\ny,{TOPIC},1,10\n\n"
    plan.write_text(f"x,{TOPIC},1,2\ny,{TOPIC},1,3\n")
    groups(broker, "reset-offsets", "--group", "x", "--group", "y", "--from-file", str(plan), "--execute")
    assert committed(broker, "x")[1] == 2 and committed(broker, "y")[1] == 3
    # --by-duration: now minus the duration. Every record is from 2020-2021, so one
    # hour back finds none (latest) and ten years back finds the first.
    groups(broker, "reset-offsets", "--group", "x", "--topic", TOPIC, "--by-duration", "PT1H", "--execute")
    assert committed(broker, "x") == {0: 10, 1: 10, 2: 10}
    groups(broker, "reset-offsets", "--group", "x", "--topic", TOPIC, "--by-duration", "P3650D", "--execute")
    assert committed(broker, "x") == {0: 0, 1: 0, 2: 0}
    _, err = groups(broker, "reset-offsets", "--group", "x", "--topic", TOPIC, "--by-duration", "1h", rc=2)
    assert "Text cannot be parsed to a Duration: 1h" in err


def test_delete_offsets(broker):
    admin = AdminClient({"bootstrap.servers": broker})
    admin.create_topics([NewTopic("gone", num_partitions=1, replication_factor=1)])["gone"].result(TIMEOUT)
    with active_consumer(broker, "d", {0: 3, 1: 5, 2: 7}) as c:
        # One request, a subscribed topic and one the group no longer reads:
        # the first refused, the second's offset deleted (its tombstone
        # committed at once on one broker: the codes must survive that path).
        c.commit(offsets=[TopicPartition("gone", 0, 1)], asynchronous=False)
        out, _ = groups(broker, "delete-offsets", "--group", "d", "--topic", f"{TOPIC}:0", "--topic", "gone:0",
                        rc=1)
        rows = [x.split()[:3] for x in out.split("\n") if x.strip() and not x.startswith("TOPIC")]
        assert rows == [["gone", "0", "Successful"], [TOPIC, "0", "Error:"]], out
        # The group is active and subscribed to the topic: per-partition refusal.
        _, err = groups(broker, "delete-offsets", "--group", "d", "--topic", f"{TOPIC}:0", rc=1)
        assert "Encountered some partition-level error" in err
        out, _ = groups(broker, "delete-offsets", "--group", "d", "--topic", f"{TOPIC}:0", rc=1)
        assert out.split("\n")[2].split()[:3] == [TOPIC, "0", "Error:"]
        assert out.split("\n")[2].endswith("Error: Deleting offsets of a topic is forbidden while the consumer "
                                            "group is actively subscribed to it.")
        assert committed(broker, "d") == {0: 3, 1: 5, 2: 7}
        del c
    out, _ = groups(broker, "delete-offsets", "--group", "d", "--topic", f"{TOPIC}:0,2")
    lines = out.split("\n")
    assert lines[0] == "Request succeeded for deleting offsets from group d."
    assert [x.split() for x in lines[2:]] == [["TOPIC", "PARTITION", "STATUS"], [TOPIC, "0", "Successful"],
                                               [TOPIC, "2", "Successful"], []]
    assert committed(broker, "d") == {0: -1001, 1: 5, 2: -1001}
    _, err = groups(broker, "delete-offsets", "--group", "nobody", "--topic", TOPIC, rc=1)
    assert "The group id does not exist." in err
