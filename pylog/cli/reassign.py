"""`pylog reassign`: move partition replicas between brokers, as
kafka-reassign-partitions.sh does (KIP-455's AlterPartitionReassignments and
ListPartitionReassignments, sent to the active controller).

    pylog reassign --generate --topics t1,t2 --broker-list 1,2,3,4   # save the proposed plan
    pylog reassign --execute --reassignment-json-file plan.json --throttle 10000000
    pylog reassign --verify --reassignment-json-file plan.json
    pylog reassign --list
    pylog reassign --cancel --reassignment-json-file plan.json

The plan is Kafka's JSON: {"version":1,"partitions":[{"topic":"t","partition":0,
"replicas":[2,3,4]},...]}. New replicas copy the data through replication;
--throttle caps the bytes per second each broker copies for the reassignment
(sent in a pylog tagged field; other tools' reassignments run unthrottled).
--generate spreads the topics over --broker-list with Kafka's replica
assignment (rack-aware when the brokers have racks) and prints the current
and the proposed plan.
"""
from __future__ import annotations

import json
import sys

from ..client.errors import check
from ..protocol.messages import AlterPartitionReassignmentsRequest as Alter
from ..protocol.messages import ListPartitionReassignmentsRequest as ListReq
from ..protocol.pylog_tags import reassignment_throttle_field
from .common import RawHelp, add_bootstrap, add_command_config, open_client

__all__ = ["add_reassign_parser"]


def add_reassign_parser(sub) -> None:
    p = sub.add_parser("reassign", help="move partition replicas between brokers (kafka-reassign-partitions)",
                       description=__doc__, formatter_class=RawHelp)
    add_bootstrap(p)
    add_command_config(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--generate", action="store_true", help="print a plan moving --topics onto --broker-list")
    what.add_argument("--execute", action="store_true", help="start the plan in --reassignment-json-file")
    what.add_argument("--verify", action="store_true", help="is the plan done? exit 0 when every partition is")
    what.add_argument("--list", action="store_true", help="the reassignments in progress")
    what.add_argument("--cancel", action="store_true", help="stop the plan's reassignments in progress")
    p.add_argument("--reassignment-json-file", metavar="FILE", help="the plan (Kafka's JSON)")
    p.add_argument("--topics", help="comma-separated topics (--generate)")
    p.add_argument("--broker-list", help="comma-separated broker ids to place them on (--generate)")
    p.add_argument("--throttle", type=int, default=None, metavar="BYTES_PER_S",
                   help="copy rate per broker for the new replicas (--execute)")
    p.set_defaults(tool=_run)


def _plan(args) -> dict[tuple[str, int], list[int]]:
    if not args.reassignment_json_file:
        raise SystemExit("--reassignment-json-file is required")
    with open(args.reassignment_json_file) as f:
        doc = json.load(f)
    try:
        return {(e["topic"], int(e["partition"])): [int(b) for b in e["replicas"]] for e in doc["partitions"]}
    except (KeyError, TypeError, ValueError) as e:
        raise SystemExit(f"{args.reassignment_json_file}: not a reassignment plan ({e})") from None


def _plan_json(assignment: dict[tuple[str, int], list[int]]) -> str:
    return json.dumps({"version": 1, "partitions": [
        {"topic": t, "partition": p, "replicas": r} for (t, p), r in sorted(assignment.items())]})


def _alter(client, targets: dict[tuple[str, int], list[int] | None], throttle: int | None) -> int:
    by_topic: dict[str, list] = {}
    for (t, p), replicas in sorted(targets.items()):
        by_topic.setdefault(t, []).append(Alter.ReassignablePartition(partition_index=p, replicas=replicas))
    req = Alter(timeout_ms=60000, topics=[Alter.ReassignableTopic(name=t, partitions=ps)
                                          for t, ps in by_topic.items()],
                _unknown_tagged_fields=[reassignment_throttle_field(throttle)] if throttle else None)
    resp = client.controller_connection().request(req, api_version=0)
    check(resp.error_code, resp.error_message)
    failed = 0
    for t in resp.responses:
        for pr in t.partitions:
            if pr.error_code:
                failed += 1
                print(f"{t.name}-{pr.partition_index}: error {pr.error_code}: {pr.error_message}", file=sys.stderr)
    return failed


def _ongoing(client) -> dict[tuple[str, int], tuple[list[int], list[int], list[int]]]:
    resp = client.controller_connection().request(ListReq(timeout_ms=60000, topics=None), api_version=0)
    check(resp.error_code, resp.error_message)
    return {(t.name, p.partition_index): (list(p.replicas), list(p.adding_replicas), list(p.removing_replicas))
            for t in resp.topics for p in t.partitions}


def _run(args) -> int:
    if args.throttle is not None and args.throttle <= 0:
        raise SystemExit("--throttle must be a positive number of bytes per second")
    with open_client(args) as client:
        if args.generate:
            return _generate(client, args)
        if args.list:
            for (t, p), (replicas, adding, removing) in sorted(_ongoing(client).items()):
                print(f"Topic: {t}\tPartition: {p}\tReplicas: {','.join(map(str, replicas))}\t"
                      f"Adding: {','.join(map(str, adding))}\tRemoving: {','.join(map(str, removing))}")
            return 0
        plan = _plan(args)
        if args.execute:
            current = _current(client, {t for t, _ in plan})
            print("Current partition replica assignment (to roll back):")
            print(_plan_json({tp: current[tp] for tp in plan if tp in current}))
            failed = _alter(client, plan, args.throttle)
            print(f"Started the reassignment of {len(plan) - failed} partition(s)"
                  + (f"; {failed} refused" if failed else "")
                  + (f", throttled to {args.throttle} B/s per broker" if args.throttle else ""))
            return 1 if failed else 0
        if args.cancel:
            ongoing = _ongoing(client)
            failed = _alter(client, {tp: None for tp in plan if tp in ongoing}, None)
            print(f"Cancelled {sum(1 for tp in plan if tp in ongoing) - failed} reassignment(s)")
            return 1 if failed else 0
        # --verify
        ongoing = _ongoing(client)
        current = _current(client, {t for t, _ in plan})
        pending = 0
        for tp, target in sorted(plan.items()):
            if tp in ongoing:
                state, pending = "is still in progress", pending + 1
            elif current.get(tp) == target:
                state = "is completed"
            else:
                state, pending = f"has replicas {current.get(tp)}, not {target}", pending + 1
            print(f"Reassignment of partition {tp[0]}-{tp[1]} {state}.")
        return 1 if pending else 0


def _current(client, topics) -> dict[tuple[str, int], list[int]]:
    md = client.metadata(sorted(topics))
    return {(t, p): list(pm.replicas) for t, tm in md.topics.items() for p, pm in tm.partitions.items()}


def _generate(client, args) -> int:
    from ..cluster.assignment import assign_replicas
    if not args.topics or not args.broker_list:
        raise SystemExit("--generate needs --topics and --broker-list")
    topics = [t for t in args.topics.split(",") if t]
    ids = [int(b) for b in args.broker_list.split(",") if b]
    md = client.metadata(topics)
    unknown = [b for b in ids if b not in md.brokers]
    if unknown:
        raise SystemExit(f"brokers {unknown} are not in the cluster")
    current, proposed = {}, {}
    for t in topics:
        tm = md.topics.get(t)
        if tm is None or tm.error_code or not tm.partitions:
            raise SystemExit(f"topic {t!r} does not exist")
        rf = len(tm.partitions[0].replicas)
        if rf > len(ids):
            raise SystemExit(f"topic {t!r} has replication factor {rf}, more than the {len(ids)} brokers given")
        for p, pm in tm.partitions.items():
            current[(t, p)] = list(pm.replicas)
        placed = assign_replicas([(b, md.brokers[b].rack) for b in ids] if all(
            md.brokers[b].rack for b in ids) else ids, len(tm.partitions), rf)
        proposed.update({(t, p): r for p, r in placed.items()})
    print("Current partition replica assignment")
    print(_plan_json(current))
    print()
    print("Proposed partition reassignment configuration")
    print(_plan_json(proposed))
    return 0
