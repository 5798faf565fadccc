"""`pylog groups list|describe|reset-offsets|configs|delete`: kafka-consumer-groups.sh
over the Kafka protocol (ListGroups, FindCoordinator, ConsumerGroupDescribe
for KIP-848 groups and DescribeGroups for classic ones, OffsetFetch,
ListOffsets, OffsetCommit, DeleteGroups).

Output follows kafka-consumer-groups' (its tables, its "-" for an unknown
value, its notes and error sentences) so that scripts written for it keep
working. As in Kafka, the notes about a group's state ("has no active
members", "is rebalancing") go to stderr and the tables to stdout.

Exit codes: 0 when everything asked for was done, 1 when a group does not
exist, a reset was refused (active group), a deletion failed or a request
failed, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import re
import sys
import time

from ..client.client import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, RESOURCE_GROUP
from ..client.errors import check, error_name
from ..errors import PylogError
from ..protocol.error_codes import Errors
from ..protocol.errors import ProtocolError
from .common import action_parsers, open_client

__all__ = ["add_groups_parser", "parse_datetime"]

MISSING = "-"  # Kafka's MISSING_COLUMN_VALUE
STATES = ("PreparingRebalance", "CompletingRebalance", "Stable", "Dead", "Empty", "Assigning", "Reconciling")
# Kafka's GroupType names: --type values (case-insensitive) and the TYPE column.
TYPES = {"consumer": "Consumer", "classic": "Classic", "share": "Share"}
REBALANCING = ("PreparingRebalance", "CompletingRebalance", "Assigning", "Reconciling")
INACTIVE = ("Empty", "Dead")

# The messages of Kafka's exceptions for the codes a group command meets, so
# that failure lines read as the Java tool's.
KAFKA_MESSAGES = {
    15: "The coordinator is not available.",
    16: "This is not the correct coordinator.",
    24: "The configured groupId is invalid.",
    30: "Group authorization failed.",
    68: "The group is not empty.",
    69: "The group id does not exist.",
}


def add_groups_parser(sub) -> None:
    action = action_parsers(sub, "groups", "list, describe, reset offsets of or delete consumer groups "
                            "(kafka-consumer-groups)", "Manage consumer groups, as kafka-consumer-groups.sh does.")

    ls = action("list", "list consumer groups",
                "Print the id of every consumer group (ListGroups on every broker),\n"
                "one a line, sorted. With --type and/or --state, a GROUP [TYPE] [STATE]\n"
                "table (ListGroups v5: types filter, v4: states filter).",
                _list)
    ls.add_argument("--state", nargs="?", const="", default=None, metavar="STATE[,STATE...]",
                    help="show each group's state; with a value, only groups in those states "
                         f"({', '.join(STATES)}; case-insensitive)")
    ls.add_argument("--type", nargs="?", const="", default=None, metavar="TYPE[,TYPE...]",
                    help="show each group's type; with a value, only groups of those types "
                         f"({', '.join(TYPES)}; case-insensitive)")

    d = action("describe", "describe consumer groups: offsets and lag, members or state",
               "By default one row per partition the group has committed or been\n"
               "assigned: GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG\n"
               "CONSUMER-ID HOST CLIENT-ID (CURRENT-OFFSET from OffsetFetch,\n"
               "LOG-END-OFFSET from ListOffsets latest, consumer columns from the\n"
               "member assignments of DescribeGroups; \"-\" where unknown).\n"
               "--members: one row per member; --state: the group's coordinator,\n"
               "assignor, state and member count. Consumer-protocol groups (KIP-848)\n"
               "are described with ConsumerGroupDescribe, classic ones with DescribeGroups.\n"
               "example: pylog groups describe my-group --members --verbose", _describe)
    d.add_argument("groups", nargs="*", metavar="GROUP", help="the group(s) to describe")
    d.add_argument("--group", action="append", default=[], help="a group to describe (repeatable)")
    d.add_argument("--all-groups", action="store_true", help="describe every consumer group")
    what = d.add_mutually_exclusive_group()
    what.add_argument("--offsets", action="store_true", help="the offsets table (the default)")
    what.add_argument("--members", action="store_true", help="the group's members")
    what.add_argument("--state", action="store_true", help="the group's state")
    d.add_argument("--verbose", action="store_true",
                   help="with --members: each member's epoch, current and target assignment; with "
                        "--state: the group and target assignment epochs")

    r = action("reset-offsets", "reset the committed offsets of an inactive group",
               "Compute new committed offsets for the group's partitions and print\n"
               "them (GROUP TOPIC PARTITION NEW-OFFSET); with --execute commit them\n"
               "(OffsetCommit, generation -1, member id \"\"). Only for a group\n"
               "without active members (state Empty, or Dead: not known yet).\n"
               "New offsets are kept within [earliest, latest] of each partition.\n"
               "example: pylog groups reset-offsets --group g --topic t:0,1 --to-offset 5 --execute",
               _reset)
    r.add_argument("--group", action="append", default=[], help="the group (repeatable)")
    r.add_argument("--all-groups", action="store_true", help="every consumer group")
    r.add_argument("--topic", action="append", default=[], metavar="TOPIC[:P,P...]",
                   help="a topic, all its partitions or the listed ones (repeatable)")
    r.add_argument("--all-topics", action="store_true",
                   help="every partition the group has a committed offset for")
    to = r.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the earliest offset")
    to.add_argument("--to-latest", action="store_true", help="the latest offset (log end)")
    to.add_argument("--to-current", action="store_true",
                    help="the committed offset (latest where none)")
    to.add_argument("--to-offset", type=int, metavar="N", help="offset N")
    to.add_argument("--shift-by", type=int, metavar="N",
                    help="the committed offset plus N (N may be negative)")
    to.add_argument("--to-datetime", type=parse_datetime, metavar="YYYY-MM-DDTHH:mm:SS.sss",
                    help="the first offset whose timestamp is at or after the time (latest where "
                         "none is); local time unless a zone is given (Z, +hh:mm)")
    to.add_argument("--by-duration", type=parse_duration, metavar="PnDTnHnMnS",
                    help="the first offset at or after now minus the duration (Java's Duration "
                         "format, e.g. PT1H30M or P1DT2H)")
    to.add_argument("--from-file", metavar="FILE",
                    help="the offsets in a CSV file, as --export writes it (topic,partition,offset; "
                         "with several groups group,topic,partition,offset)")
    r.add_argument("--export", action="store_true",
                   help="print the new offsets as CSV (for --from-file) instead of the table")
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="only print the new offsets")
    mode.add_argument("--execute", action="store_true", help="commit the new offsets")

    cf = action("configs", "describe or alter a group's configs (kafka-configs --entity-type groups)",
                "A group's KIP-848 configs (consumer.session.timeout.ms,\n"
                "consumer.heartbeat.interval.ms) as kafka-configs.sh --entity-type groups\n"
                "--entity-name GROUP shows and changes them (DescribeConfigs,\n"
                "IncrementalAlterConfigs on resource type GROUP). Without --add-config or\n"
                "--delete-config: the configs set on the group (--all: every config).\n"
                "example: pylog groups configs --group g --add-config consumer.session.timeout.ms=50000",
                _configs)
    cf.add_argument("--group", "--entity-name", dest="config_group", required=True, metavar="GROUP",
                    help="the group")
    cf.add_argument("--describe", action="store_true", help="show the configs (the default)")
    cf.add_argument("--alter", action="store_true", help="change them (implied by --add-config/--delete-config)")
    cf.add_argument("--all", action="store_true", help="with --describe: every config, defaults too")
    cf.add_argument("--add-config", default=None, metavar="K=V[,K=V...]", help="configs to set")
    cf.add_argument("--delete-config", default=None, metavar="K[,K...]", help="configs to remove")

    do = action("delete-offsets", "delete a group's committed offsets of some topics",
                "Delete the committed offsets of topics the group no longer consumes\n"
                "(OffsetDelete, KIP-496); kafka-consumer-groups.sh --delete-offsets.\n"
                "example: pylog groups delete-offsets --group g --topic old-topic", _delete_offsets)
    do.add_argument("--group", required=True, help="the group")
    do.add_argument("--topic", action="append", required=True, metavar="TOPIC[:P,P...]",
                    help="a topic, all its partitions or the listed ones (repeatable)")

    rm = action("delete", "delete consumer groups",
                "Delete groups without active members, with their committed offsets\n"
                "(DeleteGroups, at each group's coordinator).", _delete)
    rm.add_argument("--group", action="append", default=[], help="the group (repeatable)")
    rm.add_argument("--all-groups", action="store_true", help="every consumer group")


# --- helpers ------------------------------------------------------------------


_DURATION = re.compile(r"([-+]?)P(?:([-+]?[0-9]+)D)?(T(?:([-+]?[0-9]+)H)?(?:([-+]?[0-9]+)M)?"
                       r"(?:([-+]?[0-9]+)(?:[.,]([0-9]{0,9}))?S)?)?", re.I)


def parse_duration(text: str) -> int:
    """Java's Duration.parse (PnDTnHnMn.nS) in milliseconds, as Kafka's
    --by-duration takes it."""
    m = _DURATION.fullmatch(text.strip())
    if m is None or m.group(3) == "T" or not any(m.group(i) for i in (2, 4, 5, 6)):
        raise argparse.ArgumentTypeError(f"Text cannot be parsed to a Duration: {text}")
    days, hours, minutes, seconds = (int(m.group(i) or 0) for i in (2, 4, 5, 6))
    frac = (m.group(7) or "").ljust(9, "0")[:3]
    ms = ((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000 + (int(frac) if frac else 0) * (
        -1 if (m.group(6) or "").startswith("-") else 1)
    return -ms if m.group(1) == "-" else ms


def parse_datetime(text: str) -> int:
    """'YYYY-MM-DDTHH:mm:SS.sss' (seconds and milliseconds optional; a zone
    as Z or +hh:mm optional, else local time) -> epoch milliseconds."""
    if "T" not in text:
        raise argparse.ArgumentTypeError(
            f"Error parsing timestamp {text!r}: it does not contain a 'T' according to ISO8601 format")
    try:
        dt = datetime.datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"Error parsing timestamp {text!r}: {e}") from None
    return int(round(dt.timestamp() * 1000))


def _error(text: str) -> None:
    print(f"Error: {text}", file=sys.stderr)


def _kafka_error(code: int) -> str:
    msg = KAFKA_MESSAGES.get(code)
    return f"{error_name(code)}: {msg}" if msg else f"{error_name(code)} ({code})"


def _consumer_groups(client) -> list[str]:
    """Every consumer group (protocol type "consumer", or "" for a group with
    committed offsets only), as Kafka's --all-groups takes them."""
    return [g.group_id for g in client.list_groups() if g.protocol_type in ("consumer", "")]


def _group_ids(args, client) -> list[str]:
    ids = list(getattr(args, "groups", [])) + list(args.group)
    if args.all_groups:
        ids += [g for g in _consumer_groups(client) if g not in ids]
    return list(dict.fromkeys(ids))


def _columns(rows, header, mins=None) -> list[str]:
    """Kafka's layout: every column but the last padded to max(its minimum
    (15 unless given), widest value) and separated by one space; the last
    one unpadded."""
    mins = mins or [15] * (len(header) - 1)
    widths = [max(mins[i], *(len(str(r[i])) for r in [header, *rows])) for i in range(len(header) - 1)]
    return [" ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " " + str(r[-1]) for r in [header, *rows]]


def _state_note(group: str, state: str, rows: int) -> bool:
    """Kafka's shouldPrintMemberState: say why nothing (or little) is shown;
    True when there are rows to print."""
    if state == "Dead":
        _error(f"Consumer group '{group}' does not exist.")
        return False
    if state == "Empty":
        print(f"\nConsumer group '{group}' has no active members.", file=sys.stderr)
    elif state in REBALANCING:
        print(f"\nWarning: Consumer group '{group}' is rebalancing.", file=sys.stderr)
    return rows > 0


def _assignment(member) -> list[tuple[str, int]]:
    try:
        return member.assigned_partitions()
    except ProtocolError as e:
        print(f"Warning: member {member.member_id}: unreadable consumer assignment: {e}",
              file=sys.stderr)
        return []


# --- list -----------------------------------------------------------------------


def _list(args) -> int:
    if args.state is None and args.type is None:
        with open_client(args) as client:
            for g in _consumer_groups(client):
                print(g)
        return 0
    states, types = [], []
    canonical = {s.lower(): s for s in STATES}
    for s in filter(None, (s.strip() for s in (args.state or "").split(","))):
        if s.lower() not in canonical:
            _error(f"unknown group state {s!r}; known: {', '.join(STATES)}")
            return 2
        states.append(canonical[s.lower()])
    for t in filter(None, (t.strip().lower() for t in (args.type or "").split(","))):
        if t not in TYPES:
            # Kafka's sentence for it (ConsumerGroupCommand.consumerGroupTypesFromString).
            _error(f"Invalid types list '{args.type}'. Valid types are: {', '.join(TYPES.values())}")
            return 2
        types.append(t)
    with open_client(args) as client:
        groups = [g for g in client.list_groups(states or None, types or None)
                  if g.protocol_type in ("consumer", "")]
    # Kafka 4's table (ConsumerGroupCommand.printGroupInfo): the GROUP column
    # 10 wider than the longest id (at least 15), the others 20 wide.
    width = max([15] + [len(g.group_id) for g in groups]) + 10
    columns = [("GROUP", width, lambda g: g.group_id)]
    if args.type is not None:
        columns.append(("TYPE", 20, lambda g: TYPES.get((g.group_type or "").lower(), "Unknown")))
    if args.state is not None:
        columns.append(("STATE", 20, lambda g: g.state or "Unknown"))
    print(" ".join(name.ljust(w) for name, w, _ in columns))
    for g in groups:
        print(" ".join(str(get(g)).ljust(w) for _, w, get in columns))
    return 0


# --- describe -------------------------------------------------------------------


def _describe(args) -> int:
    with open_client(args) as client:
        groups = _group_ids(args, client)
        if not groups:
            _error("describe needs a GROUP, --group or --all-groups")
            return 2
        rc = 0
        for group in groups:
            desc = client.describe_group(group)
            if args.members:
                ok = _describe_members(args, desc)
            elif args.state:
                ok = _describe_state(args, desc)
            else:
                ok = _describe_offsets(client, desc)
            rc = rc or (0 if ok else 1)
    return rc


def _describe_offsets(client, desc) -> bool:
    group = desc.group_id
    if desc.state == "Dead":
        return _state_note(group, desc.state, 0)
    committed = client.committed_offsets(group)
    # Members with partitions, most partitions first (as Kafka), then the
    # committed partitions no member holds.
    rows = []
    assigned = set()
    members = [(m, sorted(_assignment(m))) for m in desc.members]
    members = sorted((x for x in members if x[1]), key=lambda x: -len(x[1]))
    for m, tps in members:
        for tp in tps:
            assigned.add(tp)
            rows.append((tp, m.member_id, m.client_host, m.client_id))
    for tp in sorted(set(committed) - assigned):
        rows.append((tp, MISSING, MISSING, MISSING))
    if not _state_note(group, desc.state, len(rows)):
        return True
    ends = client.list_offsets_many({tp: LATEST_TIMESTAMP for tp, *_ in rows})
    table = []
    for tp, consumer, host, client_id in rows:
        current = committed.get(tp)
        err, end = ends.get(tp, (-1, -1))
        end = end if err == 0 and end >= 0 else None
        lag = end - current if end is not None and current is not None else None
        table.append([group, tp[0], tp[1], *(MISSING if v is None else v for v in (current, end, lag)),
                      consumer, host, client_id])
    header = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
              "CONSUMER-ID", "HOST", "CLIENT-ID"]
    print()
    print("\n".join(_columns(table, header, [15, 15, 10, 15, 15, 15, 15, 15])))
    return True


def _assignment_text(tps) -> str:
    """Kafka 4's getAssignmentString: "topic:0,1;other:2", topics and partitions sorted."""
    by_topic: dict[str, list[int]] = {}
    for t, p in tps:
        by_topic.setdefault(t, []).append(p)
    return ";".join(f"{t}:{','.join(str(p) for p in sorted(ps))}" for t, ps in sorted(by_topic.items()))


def _describe_members(args, desc) -> bool:
    """Kafka 4's printMembers: GROUP CONSUMER-ID [GROUP-INSTANCE-ID] HOST CLIENT-ID #PARTITIONS,
    and with --verbose CURRENT-EPOCH CURRENT-ASSIGNMENT TARGET-EPOCH TARGET-ASSIGNMENT (UPGRADED
    too in a group mixing classic and consumer-protocol members). A classic group's members have
    no epochs and no target: "-"."""
    group = desc.group_id
    if not _state_note(group, desc.state, len(desc.members)):
        return desc.state != "Dead"
    rows = []
    for m in desc.members:
        tps = _assignment(m)
        rows.append((m, tps, _assignment_text(tps) or MISSING, _assignment_text(m.target_partitions or ()) or MISSING))
    with_instance = any(m.group_instance_id for m in desc.members)
    migrating = any(m.upgraded is True for m in desc.members) and any(m.upgraded is False for m in desc.members)
    widths = [max([15, len(group)]), max([15] + [len(m.member_id) for m in desc.members])]
    if with_instance:
        widths.append(max([17] + [len(m.group_instance_id or "") for m in desc.members]))
    widths += [max([15] + [len(m.client_host) for m in desc.members]),
               max([15] + [len(m.client_id) for m in desc.members]), 15]
    header = ["GROUP", "CONSUMER-ID", *(["GROUP-INSTANCE-ID"] if with_instance else []), "HOST", "CLIENT-ID",
              "#PARTITIONS"]
    if args.verbose:
        widths += [15, max([20] + [len(r[2]) for r in rows]), 15, max([20] + [len(r[3]) for r in rows])]
        header += ["CURRENT-EPOCH", "CURRENT-ASSIGNMENT", "TARGET-EPOCH", "TARGET-ASSIGNMENT"]
        if migrating:
            widths.append(0)
            header.append("UPGRADED")
    table = []
    for m, tps, current, target in rows:
        row = [group, m.member_id, *([m.group_instance_id or ""] if with_instance else []), m.client_host,
               m.client_id, len(tps)]
        if args.verbose:
            row += [_or_missing(m.member_epoch), current, _or_missing(desc.target_assignment_epoch), target]
            if migrating:
                row.append(_or_missing(None if m.upgraded is None else str(m.upgraded).lower()))
        table.append(row)
    print()
    for r in (header, *table):
        print(" ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    return True


def _or_missing(value) -> str:
    return MISSING if value is None else str(value)


def _describe_state(args, desc) -> bool:
    """Kafka 4's printStates; --verbose adds GROUP-EPOCH and TARGET-ASSIGNMENT-EPOCH ("-" for a
    classic group)."""
    group = desc.group_id
    if not _state_note(group, desc.state, 1):
        return False
    c = desc.coordinator
    coordinator = MISSING if c is None else f"{c.host}:{c.port}  ({c.node_id})"
    header = ["GROUP", "COORDINATOR (ID)", "ASSIGNMENT-STRATEGY", "STATE"]
    row = [group, coordinator, desc.protocol or MISSING, desc.state]
    widths = [max(15, len(group)), max(25, len(coordinator)), 20, 20]
    if args.verbose:
        header += ["GROUP-EPOCH", "TARGET-ASSIGNMENT-EPOCH"]
        row += [_or_missing(desc.group_epoch), _or_missing(desc.target_assignment_epoch)]
        widths += [15, 25]
    header.append("#MEMBERS")
    row.append(len(desc.members))
    print()
    for r in (header, row):
        print(" ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " " + str(r[-1]))
    return True


# --- reset-offsets --------------------------------------------------------------


def _partitions_to_reset(args, client, group) -> list[tuple[str, int]]:
    if args.all_topics:
        return sorted(client.committed_offsets(group))
    out = []
    for spec in args.topic:
        topic, sep, parts = spec.partition(":")
        known = client.partitions_for(topic)  # raises UNKNOWN_TOPIC_OR_PARTITION
        if not sep:
            out += [(topic, p) for p in known]
            continue
        for p in parts.split(","):
            try:
                partition = int(p)
            except ValueError:
                raise SystemExit(f"Error: bad partition {p!r} in --topic {spec!r}") from None
            if partition not in known:
                check(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"topic {topic!r} has no partition {partition}")
            out.append((topic, partition))
    return sorted(set(out))


def _clamp(tps, wanted: dict, client) -> dict:
    """Kafka's checkOffsetsRange: a new offset above the log end becomes the
    log end, one below the log start becomes the log start."""
    ends = _offsets(client, tps, LATEST_TIMESTAMP)
    starts = _offsets(client, tps, EARLIEST_TIMESTAMP)
    out = {}
    for tp in tps:
        offset = wanted[tp]
        if offset > ends[tp]:
            print(f"WARN: New offset ({offset}) is higher than latest offset for topic partition "
                  f"{tp[0]}-{tp[1]}. Value will be set to {ends[tp]}", file=sys.stderr)
            offset = ends[tp]
        elif offset < starts[tp]:
            print(f"WARN: New offset ({offset}) is lower than earliest offset for topic partition "
                  f"{tp[0]}-{tp[1]}. Value will be set to {starts[tp]}", file=sys.stderr)
            offset = starts[tp]
        out[tp] = offset
    return out


def _offsets(client, tps, timestamp) -> dict:
    got = client.list_offsets_many({tp: timestamp for tp in tps})
    for tp in tps:
        check(got[tp][0], f"list offsets of {tp[0]}-{tp[1]}")
    return {tp: got[tp][1] for tp in tps}


def _new_offsets(args, client, group, tps) -> dict:
    if args.to_earliest:
        return _offsets(client, tps, EARLIEST_TIMESTAMP)
    if args.to_latest:
        return _offsets(client, tps, LATEST_TIMESTAMP)
    if args.to_offset is not None:
        return _clamp(tps, {tp: args.to_offset for tp in tps}, client)
    if args.from_file is not None:
        return _clamp(sorted(plan := _file_plan(args.from_file, group)), plan, client)
    timestamp = args.to_datetime
    if args.by_duration is not None:
        timestamp = int(time.time() * 1000) - args.by_duration
    if timestamp is not None:
        got = client.list_offsets_many({tp: timestamp for tp in tps})
        found, empty = {}, []
        for tp in tps:
            check(got[tp][0], f"list offsets of {tp[0]}-{tp[1]}")
            if got[tp][1] >= 0:
                found[tp] = got[tp][1]
            else:
                empty.append(tp)
        for tp in empty:
            print(f"\nWarn: Partition {tp[1]} from topic {tp[0]} is empty. "
                  "Falling back to latest known offset.", file=sys.stderr)
        found.update(_offsets(client, empty, LATEST_TIMESTAMP) if empty else {})
        return found
    committed = client.committed_offsets(group, tps) if tps else {}
    if args.to_current:
        missing = [tp for tp in tps if tp not in committed]
        latest = _offsets(client, missing, LATEST_TIMESTAMP) if missing else {}
        return {tp: committed[tp] if tp in committed else latest[tp] for tp in tps}
    # --shift-by
    for tp in tps:
        if tp not in committed:
            raise SystemExit(f"Error: Cannot shift offset for partition {tp[0]}-{tp[1]} since "
                             "there is no current committed offset")
    return _clamp(tps, {tp: committed[tp] + args.shift_by for tp in tps}, client)


def _file_plan(path: str, group: str) -> dict:
    """{(topic, partition): offset} for group from a CSV file as --export
    writes it: topic,partition,offset lines, or group,topic,partition,offset
    when it holds several groups (Kafka's CsvRecordNoGroup / WithGroup)."""
    plan = {}
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
    except OSError as e:
        raise SystemExit(f"Error: cannot read --from-file {path}: {e.strerror}") from None
    for row in rows:
        try:
            if len(row) == 3:
                plan[(row[0], int(row[1]))] = int(row[2])
            elif len(row) == 4:
                if row[0] == group:
                    plan[(row[1], int(row[2]))] = int(row[3])
            else:
                raise ValueError(row)
        except ValueError:
            raise SystemExit(f"Error: {path}: not a reset plan line: {','.join(row)}") from None
    return plan


def _reset(args) -> int:
    if args.from_file is None and bool(args.topic) == bool(args.all_topics):
        _error("reset-offsets takes one of --topic and --all-topics")
        return 2
    with open_client(args) as client:
        groups = _group_ids(args, client)
        if not groups:
            _error("reset-offsets needs --group or --all-groups")
            return 2
        rc = 0
        plans = {}
        for group in groups:
            state = client.describe_group(group).state
            if state not in INACTIVE:
                _error(f"Assignments can only be reset if the group '{group}' is inactive, "
                       f"but the current state is {state}.")
                rc = 1
                continue
            tps = [] if args.from_file is not None else _partitions_to_reset(args, client, group)
            plans[group] = _new_offsets(args, client, group, tps)
            if args.execute and plans[group]:
                client.commit_offsets(group, plans[group])
    if plans and args.export:
        # Kafka's CSV: no header, a group column only when several groups were asked for.
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        for group, plan in plans.items():
            for (topic, partition), offset in sorted(plan.items()):
                w.writerow(([group] if len(groups) > 1 else []) + [topic, partition, offset])
        print(out.getvalue())
    elif plans:
        fmt = "{:<30} {:<30} {:<10} {}"
        print()
        print(fmt.format("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"))
        for group, plan in plans.items():
            for (topic, partition), offset in sorted(plan.items()):
                print(fmt.format(group, topic, partition, offset))
    if not args.execute and not args.dry_run:
        print("\nWARN: No action will be performed as the --execute option is missing. "
              "Add --dry-run to keep this behaviour without the warning, or --execute to "
              "commit the new offsets.", file=sys.stderr)
    return rc


def _delete_offsets(args) -> int:
    """kafka-consumer-groups.sh --delete-offsets: Kafka's lines and table."""
    from ..protocol.messages import OffsetDeleteRequest as Req
    group = args.group
    with open_client(args) as client:
        wanted: dict[str, list[int]] = {}
        for spec in args.topic:
            topic, sep, parts = spec.partition(":")
            try:
                ps = [int(p) for p in parts.split(",")] if sep else None
            except ValueError:
                raise SystemExit(f"Error: bad partition list in --topic {spec!r}") from None
            if ps is None:
                try:
                    ps = client.partitions_for(topic)
                except PylogError:
                    ps = [-1]     # Kafka's tool shows an unknown topic's row with partition "-"
            wanted.setdefault(topic, []).extend(ps)
        known = {t: ps for t, ps in wanted.items() if ps != [-1]}
        results: dict[tuple[str, int], int] = {(t, -1): Errors.UNKNOWN_TOPIC_OR_PARTITION
                                               for t, ps in wanted.items() if ps == [-1]}
        top = 0
        if known:
            conn = client.connection(client.find_coordinator(group))
            resp = conn.request(Req(group_id=group, topics=[
                Req.OffsetDeleteRequestTopic(name=t, partitions=[Req.OffsetDeleteRequestPartition(partition_index=p)
                                                                 for p in ps]) for t, ps in known.items()]),
                api_version=0)
            top = resp.error_code
            for t in resp.topics:
                for p in t.partitions:
                    results[(t.name, p.partition_index)] = p.error_code
            for t, ps in known.items():
                for p in ps:
                    results.setdefault((t, p), top)
        if not top:
            partition_errors = {c for c in results.values() if c}
            top = next(iter(partition_errors)) if partition_errors else 0
    if top == 0:
        print(f"Request succeeded for deleting offsets from group {group}.")
    elif top in (Errors.INVALID_GROUP_ID, Errors.GROUP_ID_NOT_FOUND, Errors.GROUP_AUTHORIZATION_FAILED,
                 Errors.NON_EMPTY_GROUP):
        print(f"\nError: {Errors.for_code(top).message}", file=sys.stderr)
    elif top in (Errors.GROUP_SUBSCRIBED_TO_TOPIC, Errors.TOPIC_AUTHORIZATION_FAILED,
                 Errors.UNKNOWN_TOPIC_OR_PARTITION):
        print("\nError: Encountered some partition-level error, see the follow-up details.", file=sys.stderr)
    else:
        print(f"\nError: Encountered some unknown error: {error_name(top)}", file=sys.stderr)
    width = max([15] + [len(t) for t, _ in results])
    fmt = f"\n{{:<{width}}} {{:<10}} {{:<15}}"
    out = fmt.format("TOPIC", "PARTITION", "STATUS")
    for (topic, partition), code in sorted(results.items(), key=lambda kv: kv[0][0] + str(kv[0][1])):
        status = "Successful" if not code else "Error: " + Errors.for_code(code).message
        out += fmt.format(topic, partition if partition >= 0 else "-", status)
    print(out)
    return 0 if top == 0 else 1


# --- configs --------------------------------------------------------------------

# DescribeConfigs config_source -> the name kafka-configs.sh prints (Kafka's ConfigEntry.ConfigSource).
CONFIG_SOURCES = {1: "DYNAMIC_TOPIC_CONFIG", 2: "DYNAMIC_BROKER_CONFIG", 3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
                  4: "STATIC_BROKER_CONFIG", 5: "DEFAULT_CONFIG", 8: "DYNAMIC_GROUP_CONFIG"}
GROUP_CONFIG_SOURCE = 8


def _configs(args) -> int:
    group = args.config_group
    altering = args.add_config is not None or args.delete_config is not None
    if args.alter and not altering:
        _error("--alter needs --add-config and/or --delete-config")
        return 2
    if altering and (args.describe or args.all):
        _error("--describe and --all cannot be combined with --add-config or --delete-config")
        return 2
    with open_client(args) as client:
        if altering:
            changes = {}
            for item in filter(None, (x.strip() for x in (args.add_config or "").split(","))):
                key, sep, value = item.partition("=")
                if not sep or not key:
                    _error(f"--add-config: expected key=value, got {item!r}")
                    return 2
                changes[key.strip()] = value.strip()
            deletes = [k.strip() for k in (args.delete_config or "").split(",") if k.strip()]
            client.incremental_alter_configs(RESOURCE_GROUP, group, changes, deletes)
            print(f"Completed updating config for group {group}.")
            return 0
        entries = client.describe_configs(group, resource_type=RESOURCE_GROUP)
        dynamic = [e for e in entries.values() if e.config_source == GROUP_CONFIG_SOURCE]
        if not args.all and not dynamic and group not in {g.group_id for g in client.list_groups()}:
            print(f"The group '{group}' doesn't exist and doesn't have dynamic config.")
            return 0
        print(f"{'All' if args.all else 'Dynamic'} configs for group {group} are:")
        for e in sorted(entries.values() if args.all else dynamic, key=lambda e: e.name):
            source = CONFIG_SOURCES.get(e.config_source, "UNKNOWN")
            print(f"  {e.name}={e.value} sensitive={str(e.is_sensitive).lower()} "
                  f"synonyms={{{source}:{e.name}={e.value}}}")
    return 0


# --- delete ---------------------------------------------------------------------


def _delete(args) -> int:
    with open_client(args) as client:
        groups = _group_ids(args, client)
        if not groups:
            _error("delete needs --group or --all-groups")
            return 2
        results = client.delete_groups(groups)
    ok = [g for g, code in results.items() if code == 0]
    failed = {g: code for g, code in results.items() if code != 0}
    names = ", ".join(f"'{g}'" for g in ok)
    if not failed:
        print(f"Deletion of requested consumer groups ({names}) was successful.")
        return 0
    _error("Deletion of some consumer groups failed:")
    for g, code in failed.items():
        print(f"* Group '{g}' could not be deleted due to: {_kafka_error(code)}")
    if ok:
        print(f"\nThese other groups were deleted successfully: {names}")
    return 1
