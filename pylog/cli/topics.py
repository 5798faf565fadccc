"""`pylog topics create|list|describe|delete|alter`: kafka-topics.sh over the
Kafka protocol (CreateTopics, Metadata, DescribeConfigs, DeleteTopics,
CreatePartitions, AlterConfigs). Output lines follow kafka-topics' so that
scripts written for it keep working."""
from __future__ import annotations

import sys

from ..protocol.error_codes import Errors
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
               "(Topic, Partition, Leader, Replicas, Isr).", _describe)
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
                out.append(line)
    if out:
        print("\n".join(out))
    return 0


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

