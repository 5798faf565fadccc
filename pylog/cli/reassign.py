"""`pylog reassign`: move partition replicas between brokers, as
kafka-reassign-partitions.sh does (KIP-455's AlterPartitionReassignments and
ListPartitionReassignments, sent to the active controller), with its options
and its lines.

    pylog reassign --generate --topics-to-move-json-file topics.json --broker-list 1,2,3,4 [--disable-rack-aware]
    pylog reassign --execute --reassignment-json-file plan.json [--throttle 10000000] [--additional]
    pylog reassign --verify --reassignment-json-file plan.json
    pylog reassign --list
    pylog reassign --cancel --reassignment-json-file plan.json

The plan is Kafka's JSON: {"version":1,"partitions":[{"topic":"t","partition":0,
"replicas":[2,3,4],"log_dirs":["any","any","any"]},...]} (log_dirs optional;
pylog has one log dir per broker, so only "any" is taken). topics.json is
{"version":1,"topics":[{"topic":"t"}]}; --topics t1,t2 is pylog's shorthand
for it. New replicas copy the data through replication; --throttle caps the
bytes per second each broker copies for this reassignment (pylog keeps the
throttle with the reassignment, in a tagged field, and drops it when the
reassignment ends, so there are no throttle configs for --verify to clear
and --preserve-throttles is refused). --execute refuses while another
reassignment runs unless --additional is given, as Kafka's does.

--verify prints Kafka's status lines, and under each partition still
moving, how far each new replica got: `  broker 4: 1048576 of 3145728
bytes copied (33%)` (its size against the leader's, from DescribeLogDirs).
"""
from __future__ import annotations

import json
import sys

from ..cluster.assignment import assign_replicas
from ..errors import PylogError
from ..protocol.messages import AlterPartitionReassignmentsRequest as Alter
from ..protocol.messages import DescribeLogDirsRequest
from ..protocol.messages import ListPartitionReassignmentsRequest as ListReq
from ..protocol.pylog_tags import reassignment_throttle_field
from .common import RawHelp, add_bootstrap, add_command_config, open_client
from .java_compat import exception_text

__all__ = ["add_reassign_parser"]

_CANNOT_EXECUTE = ("Cannot execute because there is an existing partition assignment.  Use --additional to "
                   "override this and create a new partition assignment in addition to the existing one. The "
                   "--additional flag can also be used to change the throttle by resubmitting the current "
                   "reassignment.")


class ToolError(Exception):
    """Kafka's TerseException / AdminCommandFailedException: its message, exit 1."""


def add_reassign_parser(sub) -> None:
    p = sub.add_parser("reassign", help="move partition replicas between brokers (kafka-reassign-partitions)",
                       description=__doc__, formatter_class=RawHelp)
    add_bootstrap(p)
    add_command_config(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--generate", action="store_true", help="print a plan moving the topics onto --broker-list")
    what.add_argument("--execute", action="store_true", help="start the plan in --reassignment-json-file")
    what.add_argument("--verify", action="store_true", help="the status of the plan's reassignments")
    what.add_argument("--list", action="store_true", help="the reassignments in progress")
    what.add_argument("--cancel", action="store_true", help="stop the plan's reassignments in progress")
    p.add_argument("--reassignment-json-file", metavar="FILE", help="the plan (Kafka's JSON)")
    p.add_argument("--topics-to-move-json-file", metavar="FILE",
                   help='the topics to move (--generate): {"topics": [{"topic": "foo"}], "version": 1}')
    p.add_argument("--topics", help="comma-separated topics (--generate; pylog's shorthand for the JSON file)")
    p.add_argument("--broker-list", help="comma-separated broker ids to place them on (--generate)")
    p.add_argument("--disable-rack-aware", action="store_true", help="place replicas without rack information")
    p.add_argument("--throttle", type=int, default=None, metavar="BYTES_PER_S",
                   help="copy rate per broker for the new replicas (--execute)")
    p.add_argument("--additional", action="store_true",
                   help="execute while other reassignments run (--execute)")
    p.add_argument("--preserve-throttles", action="store_true",
                   help="refused: pylog's throttle ends with its reassignment, nothing is left to preserve")
    p.set_defaults(tool=_run)


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError:
        raise ToolError("The input string is not a valid JSON") from None


def _plan(args) -> dict[tuple[str, int], list[int]]:
    if not args.reassignment_json_file:
        raise ToolError("Missing required argument \"[reassignment-json-file]\"")
    doc = _read_json(args.reassignment_json_file)
    version = doc.get("version", 1) if isinstance(doc, dict) else None
    if version != 1:
        raise ToolError(f"Not supported version field value {version}")
    entries = doc.get("partitions")
    if not entries:
        raise ToolError("Partition reassignment list cannot be empty")
    plan: dict[tuple[str, int], list[int]] = {}
    try:
        for e in entries:
            tp, replicas = (e["topic"], int(e["partition"])), [int(b) for b in e["replicas"]]
            if not replicas:
                raise ToolError("Partition replica list cannot be empty")
            dups = sorted({b for b in replicas if replicas.count(b) > 1})
            if dups:
                raise ToolError("Partition replica lists may not contain duplicate entries: "
                                f"{tp[0]}-{tp[1]} contains multiple entries for {','.join(map(str, dups))}")
            dirs = e.get("log_dirs")
            if dirs is not None:
                if len(dirs) != len(replicas):
                    raise ToolError(f"Size of replicas list {replicas} is different from size of log dirs list "
                                    f"{dirs} for partition {tp[0]}-{tp[1]}")
                if any(d != "any" for d in dirs):
                    raise ToolError(f"log_dirs other than \"any\" ({tp[0]}-{tp[1]}: {dirs}): pylog brokers have "
                                    "one log dir each, and moves between dirs (AlterReplicaLogDirs) are not served")
            if tp in plan:
                raise ToolError(f"Reassignment data contains multiple entries for {tp[0]}-{tp[1]}")
            plan[tp] = replicas
    except (KeyError, TypeError, ValueError) as e:
        raise ToolError(f"{args.reassignment_json_file}: not a reassignment plan ({e})") from None
    return plan


def _plan_json(assignment: dict[tuple[str, int], list[int]]) -> str:
    return json.dumps({"version": 1, "partitions": [
        {"topic": t, "partition": p, "replicas": r, "log_dirs": ["any"] * len(r)}
        for (t, p), r in sorted(assignment.items())]}, separators=(",", ":"))


def _names(parts) -> str:
    return ",".join(f"{t}-{p}" for t, p in sorted(parts))


def _alter(client, targets: dict[tuple[str, int], list[int] | None], throttle: int | None) -> dict:
    """{partition: error text} for those the controller refused."""
    by_topic: dict[str, list] = {}
    for (t, p), replicas in sorted(targets.items()):
        by_topic.setdefault(t, []).append(Alter.ReassignablePartition(partition_index=p, replicas=replicas))
    req = Alter(timeout_ms=60000, topics=[Alter.ReassignableTopic(name=t, partitions=ps)
                                          for t, ps in by_topic.items()],
                _unknown_tagged_fields=[reassignment_throttle_field(throttle)] if throttle else None)
    resp = client.controller_connection().request(req, api_version=0)
    if resp.error_code:
        raise ToolError(exception_text(resp.error_code, resp.error_message))
    return {(t.name, pr.partition_index): exception_text(pr.error_code, pr.error_message).split(": ", 1)[1]
            for t in resp.responses for pr in t.partitions if pr.error_code}


def _ongoing(client) -> dict[tuple[str, int], tuple[list[int], list[int], list[int]]]:
    resp = client.controller_connection().request(ListReq(timeout_ms=60000, topics=None), api_version=0)
    if resp.error_code:
        raise ToolError(exception_text(resp.error_code, resp.error_message))
    return {(t.name, p.partition_index): (list(p.replicas), list(p.adding_replicas), list(p.removing_replicas))
            for t in resp.topics for p in t.partitions}


def _run(args) -> int:
    try:
        return _action(args)
    except ToolError as e:
        print(e)     # Kafka's tool prints its TerseException on stdout
        return 1


def _action(args) -> int:
    if args.throttle is not None and args.throttle <= 0:
        raise ToolError("--throttle must be a positive number of bytes per second")
    if args.preserve_throttles:
        raise ToolError("--preserve-throttles: pylog keeps a reassignment's throttle with the reassignment and "
                        "drops it when it ends; there are no throttle configs to preserve")
    for opt, allowed in (("additional", args.execute), ("throttle", args.execute),
                         ("disable_rack_aware", args.generate), ("topics_to_move_json_file", args.generate),
                         ("topics", args.generate), ("broker_list", args.generate)):
        if getattr(args, opt) not in (None, False) and not allowed:
            action = next(a for a in ("generate", "execute", "verify", "list", "cancel") if getattr(args, a))
            raise ToolError(f"Option \"[{opt.replace('_', '-')}]\" can't be used with action \"[{action}]\"")
    with open_client(args) as client:
        if args.generate:
            return _generate(client, args)
        if args.list:
            ongoing = _ongoing(client)
            if not ongoing:
                print("No partition reassignments found.")
                return 0
            print("Current partition reassignments:")
            for (t, p), (replicas, adding, removing) in sorted(ongoing.items()):
                print(f"{t}-{p}: replicas: {','.join(map(str, replicas))}."
                      + (f" adding: {','.join(map(str, adding))}." if adding else "")
                      + (f" removing: {','.join(map(str, removing))}." if removing else ""))
            return 0
        plan = _plan(args)
        if args.execute:
            return _execute(client, args, plan)
        if args.cancel:
            ongoing = _ongoing(client)
            moving = [tp for tp in plan if tp in ongoing and (ongoing[tp][1] or ongoing[tp][2])]
            if not moving:
                print("None of the specified partition reassignments are active.")
                return 0
            errors = _alter(client, {tp: None for tp in moving}, None)
            if errors:
                raise ToolError(f"Error cancelling partition reassignment{'' if len(errors) == 1 else 's'} for:\n"
                                + "\n".join(f"{t}-{p}: {msg}" for (t, p), msg in sorted(errors.items())))
            print(f"Successfully cancelled partition reassignment{'' if len(moving) == 1 else 's'} for: "
                  f"{_names(moving)}")
            return 0
        return _verify(client, plan)


def _execute(client, args, plan) -> int:
    if not args.additional and _ongoing(client):
        raise ToolError(_CANNOT_EXECUTE)
    brokers = set(client.metadata([]).brokers)
    unknown = sorted({b for replicas in plan.values() for b in replicas} - brokers)
    if unknown:
        raise ToolError(f"Unknown broker id {unknown[0]}")
    current = _current(client, {t for t, _ in plan})
    missing = sorted(tp for tp in plan if tp not in current)
    if missing:
        raise ToolError(f"Unable to find partition: {_names(missing)}")
    print("Current partition replica assignment\n")
    print(_plan_json({tp: current[tp] for tp in plan}))
    print("\nSave this to use as the --reassignment-json-file option during rollback")
    if args.throttle is not None:
        print(f"The inter-broker throttle limit was set to {args.throttle} B/s")
    errors = _alter(client, plan, args.throttle)
    if errors:
        raise ToolError("Error reassigning partition(s):\n"
                        + "\n".join(f"{t}-{p}: {msg}" for (t, p), msg in sorted(errors.items())))
    print(f"Successfully started partition reassignment{'' if len(plan) == 1 else 's'} for {_names(plan)}")
    return 0


def _verify(client, plan) -> int:
    ongoing = _ongoing(client)
    current = _current(client, {t for t, _ in plan})
    print("Status of partition reassignment:")
    for tp, target in sorted(plan.items()):
        name = f"{tp[0]}-{tp[1]}"
        if tp in ongoing:
            print(f"Reassignment of partition {name} is still in progress.")
            for line in _copy_progress(client, tp, ongoing[tp][1]):
                print(line)
        elif current.get(tp) == target:
            print(f"Reassignment of partition {name} is completed.")
        else:
            print(f"There is no active reassignment of partition {name}, but replica set is "
                  f"{','.join(map(str, current.get(tp, [])))} rather than {','.join(map(str, target))}.")
    return 0


def _replica_size(client, broker: int, tp: tuple[str, int]) -> int | None:
    try:
        conn = client.connection(broker)
        lo, hi = conn.api_versions.get(DescribeLogDirsRequest.API_KEY, (0, -1))
        if hi < lo:
            return None
        resp = conn.request(DescribeLogDirsRequest(topics=[
            DescribeLogDirsRequest.DescribableLogDirTopic(topic=tp[0], partitions=[tp[1]])]),
            api_version=min(hi, 4))
    except (OSError, PylogError):
        return None
    for r in resp.results:
        for t in r.topics:
            for p in t.partitions:
                if t.name == tp[0] and p.partition_index == tp[1]:
                    return p.partition_size
    return 0    # the broker answered: it has no replica yet, so nothing is copied


def _copy_progress(client, tp, adding) -> list[str]:
    """`  broker B: N of M bytes copied (P%)` per new replica: its size
    against the leader's (DescribeLogDirs); nothing for a broker that cannot
    be asked."""
    if not adding:
        return []
    try:
        leader_size = _replica_size(client, client.leader_for(*tp), tp)
    except PylogError:
        return []
    out = []
    for b in adding:
        size = _replica_size(client, b, tp)
        if size is None or leader_size is None:
            continue
        pct = 100 if leader_size == 0 else min(100, 100 * size // leader_size)
        out.append(f"  broker {b}: {size} of {leader_size} bytes copied ({pct}%)")
    return out


def _current(client, topics) -> dict[tuple[str, int], list[int]]:
    md = client.metadata(sorted(topics))
    return {(t, p): list(pm.replicas) for t, tm in md.topics.items() if not tm.error_code
            for p, pm in tm.partitions.items()}


def _topics_to_move(args) -> list[str]:
    if args.topics_to_move_json_file and args.topics:
        raise ToolError("--topics-to-move-json-file and --topics are the same thing: give one")
    if args.topics:
        topics = [t for t in args.topics.split(",") if t]
    elif args.topics_to_move_json_file:
        doc = _read_json(args.topics_to_move_json_file)
        version = doc.get("version", 1) if isinstance(doc, dict) else None
        if version != 1:
            raise ToolError(f"Not supported version field value {version}")
        try:
            topics = [str(e["topic"]) for e in doc["topics"]]
        except (KeyError, TypeError) as e:
            raise ToolError(f"{args.topics_to_move_json_file}: not a topics-to-move file ({e})") from None
    else:
        raise ToolError("Missing required argument \"[topics-to-move-json-file]\"")
    dups = sorted({t for t in topics if topics.count(t) > 1})
    if dups:
        raise ToolError(f"List of topics to reassign contains duplicate entries: [{', '.join(dups)}]")
    return topics


def _generate(client, args) -> int:
    topics = _topics_to_move(args)
    if not args.broker_list:
        raise ToolError("Missing required argument \"[broker-list]\"")
    ids = [int(b) for b in args.broker_list.split(",") if b]
    dups = sorted({b for b in ids if ids.count(b) > 1})
    if dups:
        raise ToolError(f"Broker list contains duplicate entries: [{', '.join(map(str, dups))}]")
    md = client.metadata(topics)
    unknown = [b for b in ids if b not in md.brokers]
    if unknown:
        raise ToolError(f"Unknown broker id {unknown[0]}")
    racks = {b: (None if args.disable_rack_aware else md.brokers[b].rack) for b in ids}
    if 0 < sum(1 for r in racks.values() if r is None) < len(ids):
        raise ToolError("Not all brokers have rack information. Add --disable-rack-aware in command line to make "
                        "replica assignment without rack information.")
    current, proposed = {}, {}
    for t in topics:
        tm = md.topics.get(t)
        if tm is None or tm.error_code or not tm.partitions:
            raise ToolError(f"Topic {t} not found")
        rf = len(tm.partitions[0].replicas)
        if rf > len(ids):
            raise ToolError(f"Replication factor: {rf} larger than available brokers: {len(ids)}.")
        for p, pm in tm.partitions.items():
            current[(t, p)] = list(pm.replicas)
        placed = assign_replicas([(b, racks[b]) for b in ids] if all(racks.values()) else ids,
                                 len(tm.partitions), rf)
        proposed.update({(t, p): r for p, r in placed.items()})
    print("Current partition replica assignment")
    print(_plan_json(current))
    print()
    print("Proposed partition reassignment configuration")
    print(_plan_json(proposed))
    return 0
