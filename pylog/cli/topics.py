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
from ..protocol.messages import DescribeLogDirsRequest
from ..protocol.pylog_tags import cleaner_state_of
from .common import action_parsers, key_value, open_client

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

    ls = action("list", "list topic names", "Print every topic name, one a line, sorted.", _list)
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
    d.add_argument("--topic", help="the topic (default: every topic)")
    d.add_argument("--exclude-internal", action="store_true", help="leave out internal topics")
    d.add_argument("--under-replicated-partitions", action="store_true",
                   help="only partitions whose ISR is smaller than their replica list")
    d.add_argument("--unavailable-partitions", action="store_true",
                   help="only partitions without a leader")

    rm = action("delete", "delete a topic", "Delete a topic (DeleteTopics, sent to the controller).",
                _delete)
    rm.add_argument("--topic", required=True)
    rm.add_argument("--if-exists", action="store_true", help="succeed quietly when there is no such topic")

    a = action("alter", "add partitions or change topic configs",
               "--partitions N grows the topic to N partitions (CreatePartitions);\n"
               "--config k=v sets and --delete-config k removes topic configs\n"
               "(read with DescribeConfigs, written whole with AlterConfigs,\n"
               "so the topic's other overrides are kept).", _alter)
    a.add_argument("--topic", required=True)
    a.add_argument("--partitions", type=int, help="the new total partition count")
    a.add_argument("--config", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="set a topic config (repeatable)")
    a.add_argument("--delete-config", action="append", default=[], metavar="KEY",
                   help="remove a topic config override (repeatable)")


def _create(args) -> int:
    with open_client(args) as client:
        try:
            client.create_topics(args.topic, args.partitions, args.replication_factor,
                                 dict(args.config))
        except Exception as e:
            if args.if_not_exists and getattr(e, "error_code", None) == Errors.TOPIC_ALREADY_EXISTS:
                return 0
            raise
    print(f"Created topic {args.topic}.")
    return 0


def _list(args) -> int:
    with open_client(args) as client:
        topics = client.metadata(None).topics
    for name in sorted(topics):
        if not (args.exclude_internal and topics[name].is_internal):
            print(name)
    return 0


def _ids(nodes) -> str:
    return ",".join(str(n) for n in nodes)


def _describe(args) -> int:
    with open_client(args) as client:
        topics = client.metadata(None if args.topic is None else [args.topic]).topics
        if args.topic is not None:
            client.topic(args.topic)  # raises UNKNOWN_TOPIC_OR_PARTITION and the like
        out = []
        for name in sorted(topics):
            t = topics[name]
            if t.error_code or (args.exclude_internal and t.is_internal):
                continue
            configs = client.describe_configs(name)
            parts = [t.partitions[i] for i in sorted(t.partitions)]
            rf = len(parts[0].replicas) if parts else 0
            shown = ",".join(f"{e.name}={e.value}" for e in configs.values() if not e.is_default)
            policy = configs.get("cleanup.policy")
            cleaning = {}
            if policy is not None and "compact" in [v.strip() for v in (policy.value or "").split(",")]:
                cleaning = _cleaner_states(client, name, parts)
            line = f"Topic: {name}"
            if t.topic_id is not None:
                line += f"\tTopicId: {t.topic_id}"
            if not (args.under_replicated_partitions or args.unavailable_partitions):
                # kafka-topics prints only the partition lines with these filters.
                out.append(f"{line}\tPartitionCount: {len(parts)}\tReplicationFactor: {rf}\tConfigs: {shown}")
            only = args.under_replicated_partitions or args.unavailable_partitions
            for p in parts:
                if only and not ((args.under_replicated_partitions and len(p.isr) < len(p.replicas))
                                 or (args.unavailable_partitions and p.leader_id < 0)):
                    continue
                leader = p.leader_id if p.leader_id >= 0 else "none"
                line = (f"\tTopic: {name}\tPartition: {p.partition}\tLeader: {leader}\t"
                        f"Replicas: {_ids(p.replicas)}\tIsr: {_ids(p.isr)}")
                if p.offline_replicas:
                    line += f"\tOffline: {_ids(p.offline_replicas)}"
                if p.partition in cleaning:
                    line += _cleaner_columns(cleaning[p.partition])
                out.append(line)
    if out:
        print("\n".join(out))
    return 0


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
            client.delete_topics([args.topic])
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
    with open_client(args) as client:
        if args.partitions is not None:
            client.create_partitions(args.topic, args.partitions)
        if args.config or args.delete_config:
            merged = client.dynamic_configs(args.topic)
            merged.update(dict(args.config))
            for key in args.delete_config:
                merged.pop(key, None)
            client.alter_configs(args.topic, merged)
    return 0

