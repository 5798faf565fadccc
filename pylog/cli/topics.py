"""`pylog topics create|list|describe|delete|alter`: kafka-topics.sh over the
Kafka protocol (CreateTopics, Metadata, DescribeConfigs, DeleteTopics,
CreatePartitions, AlterConfigs). Output lines follow kafka-topics' so that
scripts written for it keep working; describe adds columns only to the
partition lines of compacted topics (cleanup.policy has compact): the log
cleaner's dirty ratio, first dirty offset and last round, which the partition
leader reports in DescribeLogDirs' pylog tagged field 7004."""
from __future__ import annotations

import sys
import time

from ..errors import PylogError
from ..protocol.error_codes import Errors
from ..protocol.messages import DescribeLogDirsRequest, ListPartitionReassignmentsRequest
from ..protocol.pylog_tags import cleaner_state_of
from .common import action_parsers, key_value, open_client, topic_include_list

__all__ = ["add_topics_parser"]


def add_topics_parser(sub) -> None:
    action = action_parsers(sub, "topics", "create, list, describe, delete or alter topics (kafka-topics)",
                            "Manage topics, as kafka-topics.sh does.")

    c = action("create", "create a topic", "Create a topic (CreateTopics, sent to the controller).\n"
               "example: pylog topics create --topic t --partitions 6 --config retention.ms=60000", _create)
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, default=-1, help="-1: the broker's num.partitions")
    c.add_argument("--replication-factor", type=int, default=-1,
                   help="-1: the broker's default.replication.factor")
    c.add_argument("--config", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="topic config override (repeatable)")
    c.add_argument("--if-not-exists", action="store_true",
                   help="succeed quietly when the topic already exists")
    c.add_argument("--replica-assignment", metavar="broker_id_for_part1_replica1:broker_id_for_part1_replica2,...",
                   help="manual partition-to-broker assignments: partitions separated by ',', a partition's "
                        "replicas by ':' (not with --partitions or --replication-factor)")

    ls = action("list", "list topic names", "Print every topic name, one a line, sorted.", _list)
    ls.add_argument("--topic", help="a topic name or a regular expression (Java's, whole name)")
    ls.add_argument("--exclude-internal", action="store_true", help="leave out internal topics")

    d = action("describe", "describe topics and their partitions",
               "kafka-topics --describe output: one line per topic\n"
               "(Topic, TopicId when known, PartitionCount, ReplicationFactor,\n"
               "non-default Configs), then one line per partition\n"
               "(Topic, Partition, Leader, Replicas, Isr). For a compacted topic\n"
               "(cleanup.policy has compact) a partition line goes on with the\n"
               "log cleaner's view from its leader: DirtyRatio, FirstDirtyOffset,\n"
               "LastCleaning (UTC; none before a round) and that round's\n"
               "BytesRead, BytesWritten, RecordsKept (of RecordsRead).", _describe)
    d.add_argument("--topic", help="a topic name or a regular expression (default: every topic)")
    d.add_argument("--exclude-internal", action="store_true", help="leave out internal topics")
    d.add_argument("--if-exists", action="store_true", help="no error when no topic matches --topic")
    d.add_argument("--under-replicated-partitions", action="store_true",
                   help="only partitions whose ISR is smaller than their replica list")
    d.add_argument("--unavailable-partitions", action="store_true",
                   help="only partitions whose leader is not available")
    d.add_argument("--under-min-isr-partitions", action="store_true",
                   help="only partitions whose ISR is smaller than min.insync.replicas")
    d.add_argument("--at-min-isr-partitions", action="store_true",
                   help="only partitions whose ISR is exactly min.insync.replicas")
    d.add_argument("--topics-with-overrides", action="store_true",
                   help="only topics that have configs overridden (their topic lines)")

    rm = action("delete", "delete a topic", "Delete a topic (DeleteTopics, sent to the controller).",
                _delete)
    rm.add_argument("--topic", required=True, help="a topic name or a regular expression: every match goes")
    rm.add_argument("--if-exists", action="store_true", help="succeed quietly when there is no such topic")
    rm.add_argument("--exclude-internal", action="store_true", help="leave out internal topics")

    a = action("alter", "add partitions or change topic configs",
               "--partitions N grows the topic to N partitions (CreatePartitions);\n"
               "--config k=v sets and --delete-config k removes topic configs\n"
               "(read with DescribeConfigs, written whole with AlterConfigs,\n"
               "so the topic's other overrides are kept).", _alter)
    a.add_argument("--topic", required=True, help="a topic name or a regular expression")
    a.add_argument("--partitions", type=int, help="the new total partition count")
    a.add_argument("--replica-assignment", metavar="broker_id_for_part1_replica1:broker_id_for_part1_replica2,...",
                   help="with --partitions: the replicas of every partition, the new ones placed as given")
    a.add_argument("--if-exists", action="store_true", help="succeed quietly when there is no such topic")
    a.add_argument("--config", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="set a topic config (repeatable)")
    a.add_argument("--delete-config", action="append", default=[], metavar="KEY",
                   help="remove a topic config override (repeatable)")


def parse_replica_assignment(text: str) -> dict[int, list[int]]:
    """kafka-topics' --replica-assignment ("1:2,2:3": partition 0 on 1 and 2,
    partition 1 on 2 and 3); ValueError with Kafka's messages."""
    out: dict[int, list[int]] = {}
    for i, part in enumerate(text.split(",")):
        brokers = [int(b.strip()) for b in part.split(":")]
        dups = sorted({b for b in brokers if brokers.count(b) > 1})
        if dups:
            raise ValueError("Partition replica lists may not contain duplicate entries: "
                             + ",".join(map(str, dups)))
        out[i] = brokers
        if len(brokers) != len(out[0]):
            raise ValueError(f"Partition {i} has different replication factor: {brokers}")
    return out


def _create(args) -> int:
    assignment = None
    if args.replica_assignment:
        if args.partitions != -1 or args.replication_factor != -1:
            print('Error: Option "[replica-assignment]" can\'t be used with option "[partitions]" or '
                  '"[replication-factor]"', file=sys.stderr)
            return 1
        try:
            assignment = parse_replica_assignment(args.replica_assignment)
        except ValueError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
    with open_client(args) as client:
        try:
            client.create_topics(args.topic, args.partitions, args.replication_factor,
                                 dict(args.config), assignment=assignment)
        except Exception as e:
            if args.if_not_exists and getattr(e, "error_code", None) == Errors.TOPIC_ALREADY_EXISTS:
                return 0
            raise
    print(f"Created topic {args.topic}.")
    return 0


def _matching(client, pattern: str | None, exclude_internal: bool) -> tuple[dict, list[str]]:
    """(every topic's metadata, the names --topic selects, sorted): Kafka's
    TopicCommand.getTopics, --topic an IncludeList regex over the whole name."""
    topics = client.metadata(None).topics
    rx = None if pattern is None else topic_include_list(pattern)
    names = [n for n in sorted(topics)
             if not (exclude_internal and topics[n].is_internal) and (rx is None or rx.fullmatch(n))]
    return topics, names


def _ensure_found(args, names) -> None:
    if getattr(args, "topic", None) and not names and not getattr(args, "if_exists", False):
        raise ValueError(f"Topic '{args.topic}' does not exist as expected")


def _list(args) -> int:
    with open_client(args) as client:
        _, names = _matching(client, args.topic, args.exclude_internal)
    for name in names:
        print(name)
    return 0


def _ids(nodes) -> str:
    return ",".join(str(n) for n in nodes)


def _describe(args) -> int:
    reports = (args.under_replicated_partitions, args.unavailable_partitions, args.under_min_isr_partitions,
               args.at_min_isr_partitions)
    if args.topics_with_overrides and any(reports):
        print("Error: --topics-with-overrides cannot be used with the partition reports", file=sys.stderr)
        return 1
    with open_client(args) as client:
        try:
            topics, names = _matching(client, args.topic, args.exclude_internal)
            _ensure_found(args, names)
        except ValueError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
        live = set(client.cluster.brokers)
        moving = _reassignments(client, names)
        out = []
        for name in names:
            t = topics[name]
            if t.error_code:
                continue
            configs = client.describe_configs(name)
            parts = [t.partitions[i] for i in sorted(t.partitions)]
            moves = [moving.get((name, p.partition)) for p in parts]
            rf = (len(parts[0].replicas) - len(moves[0][0] if moves[0] else ())) if parts else 0
            shown = ",".join(f"{e.name}={e.value}" for e in configs.values() if not e.is_default)
            if not any(reports) and (not args.topics_with_overrides or shown):
                line = f"Topic: {name}"
                if t.topic_id is not None:
                    line += f"\tTopicId: {t.topic_id}"
                out.append(f"{line}\tPartitionCount: {len(parts)}\tReplicationFactor: {rf}\tConfigs: {shown}")
            if args.topics_with_overrides:
                continue     # Kafka's tool prints only the topic lines then
            min_isr = int(configs["min.insync.replicas"].value) if "min.insync.replicas" in configs else 1
            policy = configs.get("cleanup.policy")
            cleaning = {}
            if policy is not None and "compact" in [v.strip() for v in (policy.value or "").split(",")]:
                cleaning = _cleaner_states(client, name, parts)
            for p, move in zip(parts, moves):
                has_leader = p.leader_id >= 0
                if any(reports) and not (
                        (args.under_replicated_partitions
                         and len(p.replicas) - len(move[0] if move else ()) > len(p.isr))
                        or (args.unavailable_partitions and (not has_leader or p.leader_id not in live))
                        or (args.under_min_isr_partitions and (not has_leader or len(p.isr) < min_isr))
                        or (args.at_min_isr_partitions and len(p.isr) == min_isr)):
                    continue
                leader = p.leader_id if has_leader else "none"
                line = (f"\tTopic: {name}\tPartition: {p.partition}\tLeader: {leader}\t"
                        f"Replicas: {_ids(p.replicas)}\tIsr: {_ids(p.isr)}")
                if move:
                    line += f"\tAdding Replicas: {_ids(move[0])}\tRemoving Replicas: {_ids(move[1])}"
                # Kafka 4's tool prints the eligible leader replicas (KIP-966);
                # pylog has none, which its tool shows as Kafka's does for a
                # broker without them.
                line += "\tElr: N/A\tLastKnownElr: N/A"
                if p.offline_replicas:
                    line += f"\tOffline: {_ids(p.offline_replicas)}"
                if p.partition in cleaning:
                    line += _cleaner_columns(cleaning[p.partition])
                out.append(line)
    if out:
        print("\n".join(out))
    return 0


def _reassignments(client, names) -> dict[tuple[str, int], tuple[list[int], list[int]]]:
    """{(topic, partition): (adding, removing)} of the ongoing reassignments
    (ListPartitionReassignments at the controller); empty when it cannot be
    asked, as Kafka's tool carries on without them."""
    if not names:
        return {}
    try:
        resp = client.controller_connection().request(ListPartitionReassignmentsRequest(
            timeout_ms=30000, topics=None), api_version=0)
    except (OSError, PylogError):
        return {}
    if resp.error_code:
        return {}
    return {(t.name, p.partition_index): (list(p.adding_replicas), list(p.removing_replicas))
            for t in resp.topics for p in t.partitions if t.name in names}


def _cleaner_states(client, topic: str, parts) -> dict[int, dict]:
    """{partition: tag 7004's object} from each leader's DescribeLogDirs (v2+:
    the tag needs a flexible version). A leader that cannot be asked, or
    answers without the tag (another broker), leaves its partitions out."""
    by_leader: dict[int, list[int]] = {}
    for p in parts:
        if p.leader_id >= 0:
            by_leader.setdefault(p.leader_id, []).append(p.partition)
    found = {}
    for leader, indexes in sorted(by_leader.items()):
        try:
            conn = client.connection(leader)
            lo, hi = conn.api_versions.get(DescribeLogDirsRequest.API_KEY, (0, -1))
            version = min(hi, 4)
            if version < max(lo, 2):
                continue
            resp = conn.request(DescribeLogDirsRequest(topics=[DescribeLogDirsRequest.DescribableLogDirTopic(
                topic=topic, partitions=indexes)]), api_version=version)
        except (OSError, PylogError) as e:
            # The columns are extra: the lines kafka-topics prints still go out.
            print(f"WARNING: no cleaner state of {topic} from broker {leader}: {e}", file=sys.stderr)
            continue
        for r in resp.results:
            for t in r.topics:
                if t.name != topic:
                    continue
                for p in t.partitions:
                    try:
                        state = cleaner_state_of(p)
                    except ValueError as e:
                        print(f"WARNING: broker {leader}: unreadable cleaner state of {topic}-"
                              f"{p.partition_index}: {e}", file=sys.stderr)
                        continue
                    if state is not None and p.partition_index in indexes:
                        found[p.partition_index] = state
    return found


def _cleaner_columns(st: dict) -> str:
    cols = f"\tDirtyRatio: {st['dirty_ratio']:.3f}\tFirstDirtyOffset: {st['first_dirty_offset']}"
    r = st.get("last_round")
    if r is None:
        return cols + "\tLastCleaning: none"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["finished_ms"] / 1000))
    return (cols + f"\tLastCleaning: {when}\tBytesRead: {r['bytes_read']}\tBytesWritten: {r['bytes_written']}"
            f"\tRecordsKept: {r['records_kept']}\tRecordsRead: {r['records_read']}")


def _delete(args) -> int:
    with open_client(args) as client:
        try:
            _, names = _matching(client, args.topic, args.exclude_internal)
            _ensure_found(args, names)
        except ValueError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
        if not names:
            return 0
        try:
            client.delete_topics(names)
        except Exception as e:
            if args.if_exists and getattr(e, "error_code", None) == Errors.UNKNOWN_TOPIC_OR_PARTITION:
                return 0
            raise
    return 0


def _alter(args) -> int:
    if args.partitions is None and not args.config and not args.delete_config:
        print("Error: nothing to alter: give --partitions and/or --config / --delete-config",
              file=sys.stderr)
        return 2
    if args.replica_assignment and args.partitions is None:
        print("Error: --replica-assignment needs --partitions when altering a topic", file=sys.stderr)
        return 1
    try:
        assignment = parse_replica_assignment(args.replica_assignment) if args.replica_assignment else None
    except ValueError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    with open_client(args) as client:
        try:
            topics, names = _matching(client, args.topic, False)
            _ensure_found(args, names)
        except ValueError as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
        for name in names:
            if args.partitions is not None:
                # Kafka's tool gives the new partitions the assignment's
                # entries past the topic's current count.
                new = None if assignment is None else [
                    assignment[i] for i in sorted(assignment) if i >= len(topics[name].partitions)]
                client.create_partitions(name, args.partitions, assignments=new)
            if args.config or args.delete_config:
                merged = client.dynamic_configs(name)
                merged.update(dict(args.config))
                for key in args.delete_config:
                    merged.pop(key, None)
                client.alter_configs(name, merged)
    return 0

