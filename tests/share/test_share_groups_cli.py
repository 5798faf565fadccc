"""`pylog share-groups` (kafka-share-groups.sh) against a real broker with a
share group that real ShareConsumer traffic built."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pylog.testing import running_broker

from .test_share_wire import ACCEPT, fetch_until
from .wire import (CONFIG, acquired, connect, create_topic, heartbeat, join_assigned, member_id, produce,
                   set_group_configs, share_ack)


@pytest.fixture(scope="module")
def broker():
    with running_broker(config=CONFIG) as b:
        yield b


def tool(broker, *args):
    r = subprocess.run([sys.executable, "-m", "pylog", "share-groups", *args, "--bootstrap-server", str(broker)],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def test_list_describe_reset_and_delete(broker):
    group, topic = "cli-g", "cli-t"
    create_topic(broker, topic, 2)
    set_group_configs(broker, group, share_auto_offset_reset="earliest")
    produce(broker, topic, 6, partitions=2)
    conn = connect(broker)
    mid = member_id()
    r = join_assigned(conn, group, mid, [topic], 2)
    tid = r.assignment.topic_partitions[0].topic_id
    tp = (tid, 0)
    f, epoch = fetch_until(conn, group, mid, 0, [tp], True)
    assert acquired(f) == {tp: [(0, 2, 1)]}
    share_ack(conn, group, mid, epoch, {tp: [(0, 0, [ACCEPT])]})

    code, out, _ = tool(broker, "list")
    assert code == 0 and group in out.split()
    code, out, _ = tool(broker, "describe", group)
    assert code == 0
    lines = [line.split() for line in out.strip().splitlines()]
    assert lines[0] == ["GROUP", "TOPIC", "PARTITION", "START-OFFSET", "LAG"]
    assert sorted(lines[1:]) == [[group, topic, "0", "1", "2"], [group, topic, "1", "0", "3"]]
    code, out, _ = tool(broker, "describe", group, "--members")
    assert code == 0 and mid in out and f"{topic}:0,1" in out
    code, out, _ = tool(broker, "describe", group, "--state")
    assert code == 0 and out.split()[-2:] == ["Stable", "1"]
    code, _, err = tool(broker, "describe", "cli-nope")
    assert code == 1 and "does not exist" in err

    # Not while it has a member.
    code, _, err = tool(broker, "reset-offsets", "--group", group, "--topic", topic, "--to-latest", "--execute")
    assert code == 1 and "NON_EMPTY_GROUP" in err
    heartbeat(conn, group, mid, -1)
    share_ack(conn, group, mid, -1, {})
    code, out, _ = tool(broker, "reset-offsets", "--group", group, "--topic", f"{topic}:0", "--to-latest",
                        "--execute")
    assert code == 0 and out.splitlines()[1].split() == [group, topic, "0", "3"]
    code, out, _ = tool(broker, "describe", group)
    assert [group, topic, "0", "3", "0"] in [line.split() for line in out.splitlines()]
    code, out, _ = tool(broker, "delete", "--group", group)
    assert code == 0 and "successful" in out
    code, out, _ = tool(broker, "list")
    assert group not in out.split()
    conn.close()
