"""`pylog verifiable-consumer`: Kafka's VerifiableConsumer, whose JSON lines
Kafka's system tests read.

    pylog verifiable-consumer --topic T --group-id G --bootstrap-server H:P
        [--max-messages N] [--session-timeout MS] [--verbose] [--enable-autocommit]
        [--reset-policy earliest|latest|none] [--assignment-strategy CLASS]
        [--group-instance-id ID] [--close-timeout MS] [--command-config FILE | --consumer.config FILE]

A member of group G (pylog.Consumer, the classic protocol) printing one JSON
object a line as Kafka's tool: `startup_complete`; `partitions_assigned` /
`partitions_revoked` with [{"topic","partition"}]; per poll
`records_consumed` with count and per partition
{"topic","partition","count","minOffset","maxOffset"} (each record as
`record_data` with --verbose); without --enable-autocommit each poll's
offsets committed synchronously, then `offsets_committed` with the offsets
and success (and error when it failed); `shutdown_requested` on
SIGTERM/SIGINT; `shutdown_complete` at the end. Values and keys are read as
UTF-8 strings (Kafka's StringDeserializer).

--group-protocol consumer makes it a KIP-848 member (the broker assigns;
--group-remote-assignor names the broker's assignor).

One thread (signal handlers only set a flag).
"""
from __future__ import annotations

import json
import signal
import sys
import time

from .common import verifiable_tool_settings

__all__ = ["add_verifiable_consumer_parser"]

# Kafka's assignor classes -> pylog's assignor names.
_STRATEGIES = {
    "org.apache.kafka.clients.consumer.RangeAssignor": "range",
    "org.apache.kafka.clients.consumer.RoundRobinAssignor": "roundrobin",
    "org.apache.kafka.clients.consumer.StickyAssignor": "sticky",
    "org.apache.kafka.clients.consumer.CooperativeStickyAssignor": "cooperative-sticky",
}
# Consumer settings a --command-config may carry -> pylog.Consumer's argument.
_CONSUMER_KEYS = {
    "client.id": ("client_id", str),
    "heartbeat.interval.ms": ("heartbeat_interval_ms", int),
    "max.poll.interval.ms": ("max_poll_interval_ms", int),
    "max.poll.records": ("max_poll_records", int),
    "fetch.max.wait.ms": ("fetch_max_wait_ms", int),
    "isolation.level": ("isolation_level", str),
    "request.timeout.ms": ("request_timeout_ms", int),
    "auto.commit.interval.ms": ("auto_commit_interval_ms", int),
}


def add_verifiable_consumer_parser(sub) -> None:
    p = sub.add_parser("verifiable-consumer", help="consume as a group member, printing JSON events "
                                                   "(Kafka's VerifiableConsumer)",
                       description="This tool consumes messages from a specific topic and emits consumer events "
                                   "(e.g. group rebalances, received messages, and offsets committed) as JSON "
                                   "objects to STDOUT.")
    p.add_argument("--bootstrap-server", required=True, metavar="HOST1:PORT1[,HOST2:PORT2[...]]")
    p.add_argument("--topic", required=True, metavar="TOPIC", help="Consumes messages from this topic.")
    p.add_argument("--group-protocol", default="classic", metavar="GROUP-PROTOCOL",
                   help="Group protocol (must be one of classic, consumer)")
    p.add_argument("--group-remote-assignor", metavar="GROUP-REMOTE-ASSIGNOR",
                   help="Group remote assignor; only used if the group protocol is consumer")
    p.add_argument("--group-id", required=True, metavar="GROUP-ID", help="The group id of the consumer group")
    p.add_argument("--group-instance-id", metavar="GROUP-INSTANCE-ID",
                   help="A unique identifier of the consumer instance")
    p.add_argument("--max-messages", type=int, default=-1, metavar="MAX-MESSAGES",
                   help="Consume this many messages. If -1 (the default), until the process is killed")
    p.add_argument("--session-timeout", type=int, metavar="TIMEOUT-MS",
                   help="Set the consumer's session timeout")
    p.add_argument("--verbose", action="store_true", help="Enable to log individual consumed records")
    p.add_argument("--enable-autocommit", action="store_true", help="Enable offset auto-commit on consumer")
    p.add_argument("--close-timeout", type=int, default=30000, metavar="CLOSE-TIMEOUT-MS",
                   help="Timeout in milliseconds for closing the consumer")
    p.add_argument("--reset-policy", default="earliest", metavar="RESET-POLICY",
                   help="Set reset policy (must be either 'earliest', 'latest', or 'none')")
    p.add_argument("--assignment-strategy", default="org.apache.kafka.clients.consumer.RangeAssignor",
                   metavar="ASSIGNMENT-STRATEGY", help="Set assignment strategy: one of " + ", ".join(_STRATEGIES))
    p.add_argument("--consumer.config", dest="consumer_config", metavar="CONFIG-FILE",
                   help="(DEPRECATED) Consumer config properties file. Use --command-config instead")
    p.add_argument("--command-config", metavar="CONFIG-FILE",
                   help="Config properties file (config options shared with command line parameters will be "
                        "overridden).")
    p.set_defaults(tool=_run)


def _event(name: str, **fields) -> None:
    sys.stdout.write(json.dumps({"timestamp": int(time.time() * 1000), "name": name, **fields},
                                separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _tps(partitions) -> list[dict]:
    return [{"topic": tp[0], "partition": tp[1]} for tp in partitions]


def _text(b):
    return None if b is None else bytes(b).decode("utf-8", "replace")


def _settings(args) -> dict:
    protocol = args.group_protocol.lower()
    if protocol not in ("classic", "consumer"):
        raise SystemExit(f"--group-protocol {args.group_protocol}: must be one of classic, consumer")
    if args.group_remote_assignor is not None and protocol != "consumer":
        raise SystemExit("--group-remote-assignor is only used with --group-protocol consumer")
    if args.assignment_strategy not in _STRATEGIES:
        raise SystemExit(f"--assignment-strategy {args.assignment_strategy}: pylog has "
                         + ", ".join(_STRATEGIES))
    if args.reset_policy not in ("earliest", "latest", "none"):
        raise SystemExit("--reset-policy must be either 'earliest', 'latest', or 'none'")
    kw = {"bootstrap_servers": args.bootstrap_server, "group_id": args.group_id,
          "enable_auto_commit": args.enable_autocommit, "auto_offset_reset": args.reset_policy,
          "group_instance_id": args.group_instance_id, "group_protocol": protocol}
    if protocol == "consumer":
        # As Kafka's tool: the broker assigns; the client's strategy is not used.
        if args.group_remote_assignor is not None:
            kw["group_remote_assignor"] = args.group_remote_assignor
    else:
        kw["partition_assignment_strategy"] = (_STRATEGIES[args.assignment_strategy],)
    if args.session_timeout is not None:
        if protocol == "consumer":
            raise SystemExit("--session-timeout is not supported with --group-protocol consumer (the "
                             "broker's group.consumer.session.timeout.ms applies)")
        kw["session_timeout_ms"] = args.session_timeout
    return verifiable_tool_settings(args.consumer_config, "--consumer.config", args.command_config,
                                    _CONSUMER_KEYS, kw, "consumer")


def _run(args) -> int:
    from ..consumer import Consumer
    kw = _settings(args)
    stop = {"requested": False}

    def on_stop(signum, frame):
        if not stop["requested"]:
            stop["requested"] = True
            _event("shutdown_requested")
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    consumed = 0
    limit = args.max_messages
    _event("startup_complete")
    consumer = Consumer(args.topic, **kw,
                        on_assign=lambda _c, parts: _event("partitions_assigned", partitions=_tps(parts)),
                        on_revoke=lambda _c, parts: _event("partitions_revoked", partitions=_tps(parts)))
    try:
        while not stop["requested"] and (limit < 0 or consumed < limit):
            records = consumer.poll(0.5)
            if not records:
                continue
            by_tp: dict[tuple[str, int], list] = {}
            for r in records:
                by_tp.setdefault((r.topic, r.partition), []).append(r)
            summaries, offsets = [], {}
            for tp, recs in by_tp.items():
                if limit >= 0 and consumed + len(recs) > limit:
                    recs = recs[:limit - consumed]
                if not recs:
                    continue
                offsets[tp] = recs[-1].offset + 1
                summaries.append({"topic": tp[0], "partition": tp[1], "count": len(recs),
                                  "minOffset": recs[0].offset, "maxOffset": recs[-1].offset})
                if args.verbose:
                    for r in recs:
                        _event("record_data", key=_text(r.key), value=_text(r.value), topic=r.topic,
                               partition=r.partition, offset=r.offset)
                consumed += len(recs)
                if limit >= 0 and consumed >= limit:
                    break
            _event("records_consumed", count=len(records), partitions=summaries)
            if not args.enable_autocommit and offsets:
                committed = [{"topic": t, "partition": p, "offset": o} for (t, p), o in offsets.items()]
                try:
                    consumer.commit(offsets)
                except Exception as e:       # noqa: BLE001 - reported as Kafka's tool reports it
                    _event("offsets_committed", offsets=committed, error=str(e), success=False)
                else:
                    _event("offsets_committed", offsets=committed, success=True)
    finally:
        consumer.close(timeout=args.close_timeout / 1000)
        _event("shutdown_complete")
    return 0
