"""`pylog groups` on a KIP-848 consumer group served by a real broker, with librdkafka members
(group.protocol=consumer): list --type, describe (offsets, --members --verbose, --state
--verbose) over ConsumerGroupDescribe, and a group config override the members then follow."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pylog.testing import running_broker, wait_until

from .helpers import create_topic
from .kip848 import CONFIG, assigned, consumer, poll_all, wait_balanced

TOPIC, GROUP = "cli848", "cli848-g"


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def pylog_groups(broker, *args):
    out = subprocess.run([sys.executable, "-m", "pylog", "groups", *args, "--bootstrap-server", str(broker)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout, out.stderr


def rows(stdout):
    lines = [line for line in stdout.splitlines() if line.strip()]
    header = lines[0].replace("COORDINATOR (ID)", "COORDINATOR-(ID)").split()
    out = []
    for line in lines[1:]:
        values = line.split()
        if "COORDINATOR-(ID)" in header:   # "host:port  (id)" is one column
            values[1:3] = [f"{values[1]} {values[2]}"]
        out.append(dict(zip(header, values)))
    return out


def test_describe_members_state_and_type(broker):
    create_topic(broker, TOPIC, 6)
    cs = [consumer(broker, GROUP, {"client.id": f"app-{i}"}) for i in range(2)]
    try:
        for c in cs:
            c.subscribe([TOPIC])
        wait_balanced(cs, TOPIC, 6)

        def stable_members():
            poll_all(cs)
            out, err = pylog_groups(broker, "describe", GROUP, "--members", "--verbose")
            table = rows(out)
            if "rebalancing" in err or len(table) != 2 or any(r["TARGET-ASSIGNMENT"] != r["CURRENT-ASSIGNMENT"]
                                                             for r in table):
                return None
            return table
        table = wait_until(stable_members, "both members described at the target assignment")
        member_ids = {c.memberid() for c in cs}
        assert {r["CONSUMER-ID"] for r in table} == member_ids
        assert sorted(r["CLIENT-ID"] for r in table) == ["app-0", "app-1"]
        assert [r["#PARTITIONS"] for r in table] == ["3", "3"]
        epochs = {r["CURRENT-EPOCH"] for r in table} | {r["TARGET-EPOCH"] for r in table}
        assert len(epochs) == 1 and int(epochs.pop()) >= 1
        by_client = {r["CLIENT-ID"]: r["CURRENT-ASSIGNMENT"] for r in table}
        for i, c in enumerate(cs):
            want = f"{TOPIC}:" + ",".join(str(p) for _, p in sorted(assigned(c, TOPIC)))
            assert by_client[f"app-{i}"] == want

        out, err = pylog_groups(broker, "describe", GROUP, "--state", "--verbose")
        (state,) = rows(out)
        assert state["ASSIGNMENT-STRATEGY"] == "uniform" and state["STATE"] == "Stable"
        assert state["#MEMBERS"] == "2"
        assert state["GROUP-EPOCH"] == state["TARGET-ASSIGNMENT-EPOCH"] == table[0]["TARGET-EPOCH"]

        # offsets view: every partition with its consumer; nothing committed yet
        out, _ = pylog_groups(broker, "describe", GROUP)
        offsets = rows(out)
        assert sorted(int(r["PARTITION"]) for r in offsets) == list(range(6))
        assert {r["CONSUMER-ID"] for r in offsets} == member_ids
        assert {r["CURRENT-OFFSET"] for r in offsets} == {"-"}

        out, _ = pylog_groups(broker, "list", "--type", "--state")
        assert {"GROUP": GROUP, "TYPE": "Consumer", "STATE": "Stable"} in rows(out)
        out, _ = pylog_groups(broker, "list", "--type", "consumer")
        assert GROUP in {r["GROUP"] for r in rows(out)}
    finally:
        for c in cs:
            c.close()


def test_group_heartbeat_interval_override_reaches_the_members(broker):
    """The per-group heartbeat interval (GROUP config) is what the coordinator hands out."""
    from .kip848 import connect, heartbeat, member_id

    create_topic(broker, "cli848-hb", 1)
    out, _ = pylog_groups(broker, "configs", "--group", "cli848-hb-g", "--add-config",
                          "consumer.heartbeat.interval.ms=700")
    assert out == "Completed updating config for group cli848-hb-g.\n"
    conn = connect(broker)
    try:
        r = heartbeat(conn, "cli848-hb-g", member_id(), 0, ["cli848-hb"])
        assert r.error_code == 0 and r.heartbeat_interval_ms == 700
    finally:
        conn.close()
