"""pylog share-groups list|describe|reset-offsets|delete: Kafka's
kafka-share-groups.sh for KIP-932 share groups (its options and columns).

    pylog share-groups list
    pylog share-groups describe GROUP [--offsets | --members | --state]
        (--offsets adds pylog's DLQ-WRITTEN and DLQ-FAILED columns for a group
        with a dead-letter topic, KIP-1191, and DELAYED and NEXT-DUE-MS for
        partitions with delayed records; both from each partition's leader)
    pylog share-groups reset-offsets --group G --topic T (--to-earliest | --to-latest | --to-offset N)
                                     (--dry-run | --execute)
    pylog share-groups delete --group G
"""
from __future__ import annotations

import sys

import time

from ..client.client import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from ..client.errors import COORDINATOR_ERRORS, check, error_name
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..protocol.pylog_tags import share_delay_stats_of, share_dlq_stats_of, share_leader_stats_field
from .common import action_parsers, open_client


def add_share_groups_parser(sub) -> None:
    action = action_parsers(sub, "share-groups", "list, describe, reset and delete share groups",
                            "Share groups (KIP-932), as kafka-share-groups.sh shows and changes them.")
    action("list", "the share groups", "Every share group, one per line.", _list)
    d = action("describe", "a share group's offsets, members or state",
               "A share group's start offsets and lag per partition (the default), its members, or its state.",
               _describe)
    d.add_argument("groups", nargs="*", metavar="GROUP")
    d.add_argument("--group", action="append", default=[], help="a group to describe (repeatable)")
    what = d.add_mutually_exclusive_group()
    what.add_argument("--offsets", action="store_true", help="start offset and lag per partition (the default)")
    what.add_argument("--members", action="store_true", help="the group's members and their assignments")
    what.add_argument("--state", action="store_true", help="the group's state")
    r = action("reset-offsets", "move an empty share group's start offsets",
               "Set the start offset of an empty share group's partitions (AlterShareGroupOffsets).", _reset)
    r.add_argument("--group", required=True)
    r.add_argument("--topic", action="append", required=True, metavar="TOPIC[:P,P...]")
    to = r.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true")
    to.add_argument("--to-latest", action="store_true")
    to.add_argument("--to-offset", type=int, metavar="N")
    mode = r.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="only print the new offsets")
    mode.add_argument("--execute", action="store_true", help="set them")
    rm = action("delete", "delete empty share groups", "Delete empty share groups and their state.", _delete)
    rm.add_argument("--group", action="append", required=True)


# The share-group APIs' versions this tool sends (what Kafka 4.2+ brokers
# serve; pylog's client library does not negotiate them itself).
_VERSIONS = {m.ShareGroupDescribeRequest.API_KEY: 1, m.DescribeShareGroupOffsetsRequest.API_KEY: 1,
             m.AlterShareGroupOffsetsRequest.API_KEY: 0}


def _request(client, gid, body, error_of):
    """body to the group's coordinator, again (to a coordinator looked up
    afresh) while error_of(response) is a coordinator error."""
    deadline = time.monotonic() + client.timeout
    refresh = False
    while True:
        resp = client.connection(client.find_coordinator(gid, refresh)).request(body, _VERSIONS[body.API_KEY])
        code = error_of(resp)
        if code not in COORDINATOR_ERRORS or time.monotonic() >= deadline:
            return resp
        refresh = code != Errors.COORDINATOR_LOAD_IN_PROGRESS
        time.sleep(0.1)


def _columns(rows, header) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    return [" ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " " + str(r[-1]) for r in [header, *rows]]


def _list(args) -> int:
    with open_client(args) as client:
        for g in client.list_groups(types=["share"]):
            print(g.group_id)
    return 0


def _describe(args) -> int:
    groups = list(dict.fromkeys(list(args.groups) + list(args.group)))
    if not groups:
        print("Error: name a group (GROUP or --group)", file=sys.stderr)
        return 2
    status = 0
    with open_client(args) as client:
        for gid in groups:
            resp = _request(client, gid, m.ShareGroupDescribeRequest(group_ids=[gid]),
                                         lambda r: r.groups[0].error_code)
            g = resp.groups[0]
            if g.error_code == Errors.GROUP_ID_NOT_FOUND:
                print(f"Error: Share group '{gid}' does not exist.", file=sys.stderr)
                status = 1
                continue
            check(g.error_code, g.error_message or f"describe share group {gid}")
            if args.state:
                coord = client.coordinator(gid)
                where = f"{coord.host}:{coord.port} ({coord.node_id})" if coord is not None else "?"
                print("\n".join(_columns([(gid, where, g.group_state, len(g.members))],
                                         ("GROUP", "COORDINATOR (ID)", "STATE", "#MEMBERS"))))
            elif args.members:
                rows = [(gid, mm.member_id, mm.client_host, mm.client_id,
                         sum(len(tp.partitions) for tp in mm.assignment.topic_partitions),
                         ",".join(f"{tp.topic_name}:{','.join(map(str, sorted(tp.partitions)))}"
                                  for tp in mm.assignment.topic_partitions) or "-")
                        for mm in g.members]
                print("\n".join(_columns(rows, ("GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS",
                                                "ASSIGNMENT"))))
            else:
                R = m.DescribeShareGroupOffsetsRequest
                resp = _request(client, gid, R(groups=[R.DescribeShareGroupOffsetsRequestGroup(
                    group_id=gid, topics=None)]), lambda r: r.groups[0].error_code)
                og = resp.groups[0]
                check(og.error_code, og.error_message or f"describe share group offsets of {gid}")
                parts = [(t, p) for t in og.topics for p in sorted(t.partitions, key=lambda p: p.partition_index)]
                rows = [(gid, t.topic_name, p.partition_index, p.start_offset if p.start_offset >= 0 else "-",
                         p.lag if p.lag >= 0 else "-") for t, p in parts]
                header = ("GROUP", "TOPIC", "PARTITION", "START-OFFSET", "LAG")
                led = _leader_stats(client, gid, [(t.topic_name, p.partition_index) for t, p in parts])
                stats = [led.get((t.topic_name, p.partition_index), p) for t, p in parts]
                dlq = [share_dlq_stats_of(p) for p in stats]
                if any(d is not None for d in dlq):
                    # pylog's own columns (kafka-share-groups.sh has none for KIP-1191).
                    header += ("DLQ-WRITTEN", "DLQ-FAILED")
                    rows = [r + ((d["written"], d["failed"]) if d else ("-", "-")) for r, d in zip(rows, dlq)]
                delay = [share_delay_stats_of(p) for p in stats]
                if any(d is not None for d in delay):
                    # pylog's delayed delivery: records not due yet, and the wait for the earliest.
                    header += ("DELAYED", "NEXT-DUE-MS")
                    rows = [r + ((d["delayed"], "-" if d["next_due_ms"] is None else d["next_due_ms"]) if d
                                 else ("-", "-")) for r, d in zip(rows, delay)]
                print("\n".join(_columns(rows, header)))
            if g.group_state == "Empty" and not args.state:
                print(f"\nShare group '{gid}' has no active members.", file=sys.stderr)
    return status


def _leader_stats(client, gid, parts) -> dict:
    """{(topic, partition): the leader's DescribeShareGroupOffsets entry} (pylog's
    SHARE_LEADER_STATS), one request per leader; a partition whose leader cannot be
    asked is left out (its columns then come from the coordinator's answer)."""
    R = m.DescribeShareGroupOffsetsRequest
    if not parts:
        return {}
    md = client.metadata(sorted({t for t, _ in parts}))
    by_leader: dict[int, dict[str, list[int]]] = {}
    for t, i in parts:
        pm = md.topics[t].partitions.get(i) if t in md.topics else None
        if pm is not None and pm.leader_id >= 0:
            by_leader.setdefault(pm.leader_id, {}).setdefault(t, []).append(i)
    out = {}
    for leader, topics in sorted(by_leader.items()):
        body = R(groups=[R.DescribeShareGroupOffsetsRequestGroup(group_id=gid, topics=[
            R.DescribeShareGroupOffsetsRequestTopic(topic_name=t, partitions=ps) for t, ps in topics.items()])],
                 _unknown_tagged_fields=[share_leader_stats_field()])
        try:
            resp = client.connection(leader).request(body, _VERSIONS[body.API_KEY])
        except OSError as e:
            print(f"Warning: statistics from broker {leader}: {e}", file=sys.stderr)
            continue
        for g in resp.groups:
            for t in g.topics:
                for p in t.partitions:
                    if not p.error_code:
                        out[(t.topic_name, p.partition_index)] = p
    return out


def _reset(args) -> int:
    A = m.AlterShareGroupOffsetsRequest
    with open_client(args) as client:
        wanted = []
        for spec in args.topic:
            topic, _, parts = spec.partition(":")
            if parts:
                indexes = [int(p) for p in parts.split(",")]
            else:
                indexes = client.partitions_for(topic)
            for idx in indexes:
                if args.to_offset is not None:
                    offset = args.to_offset
                else:
                    offset = client.list_offsets(topic, idx, EARLIEST_TIMESTAMP if args.to_earliest
                                                 else LATEST_TIMESTAMP)
                wanted.append((topic, idx, offset))
        rows = [(args.group, t, i, o) for t, i, o in wanted]
        if args.execute:
            by_topic = {}
            for t, i, o in wanted:
                by_topic.setdefault(t, []).append(A.AlterShareGroupOffsetsRequestPartition(partition_index=i,
                                                                                           start_offset=o))
            resp = _request(client, args.group, A(group_id=args.group, topics=[
                A.AlterShareGroupOffsetsRequestTopic(topic_name=t, partitions=ps) for t, ps in by_topic.items()]),
                lambda r: r.error_code)
            check(resp.error_code, resp.error_message or f"reset the offsets of share group {args.group}")
            failed = {(t.topic_name, p.partition_index): p.error_code for t in resp.responses for p in t.partitions
                      if p.error_code}
            for (t, i), code in sorted(failed.items()):
                print(f"Error: {t}-{i}: {error_name(code)}", file=sys.stderr)
            if failed:
                return 1
        print("\n".join(_columns(rows, ("GROUP", "TOPIC", "PARTITION", "NEW-START-OFFSET"))))
    return 0


def _delete(args) -> int:
    status = 0
    with open_client(args) as client:
        for gid in dict.fromkeys(args.group):
            resp = client._group_request(gid, m.DeleteGroupsRequest(groups_names=[gid]),
                                         lambda r: r.results[0].error_code)
            code = resp.results[0].error_code
            if code:
                print(f"Error: share group '{gid}' was not deleted: {error_name(code)}", file=sys.stderr)
                status = 1
            else:
                print(f"Deletion of requested share groups ('{gid}') was successful.")
    return status
