"""`pylog consume`: kafka-console-consumer.

With --group (or group.id in --consumer-property / --consumer.config) it is a
member of that consumer group: it is given partitions by the group, starts at
the group's committed offsets (else auto.offset.reset: earliest with
--from-beginning, latest otherwise) and commits what it printed (auto commit,
and once more when it stops), as Kafka's tool does. Without a group it reads
one partition (--partition) or every partition of the topic, starting
at --offset (earliest, latest or a number; needs --partition), or at the
earliest offset with --from-beginning, else at the latest. Each record is
printed as kafka-console-consumer's DefaultMessageFormatter prints it:

    [CreateTime:TS<sep>] [Partition:P<sep>] [Offset:O<sep>] [h1:v1,h2:v2<sep>] [KEY<sep>] VALUE

with <sep> = key.separator (TAB), "NO_HEADERS" / "NO_TIMESTAMP" / "null" for
missing parts. The --print-* flags are the print.* properties; --property
NAME=VALUE sets the same ones by their Kafka names (print.key,
print.timestamp, print.partition, print.offset, print.headers, print.value,
key.separator, line.separator, headers.separator, headers.key.separator,
null.literal).

Kafka client settings: --consumer-property KEY=VALUE (repeatable) and
--consumer.config FILE take the keys in CONSUMER_PROPERTIES; security
settings: security.protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
sasl.mechanism (PLAIN, SCRAM-SHA-256/512) with sasl.username/sasl.password
or sasl.jaas.config, and TLS in the Java client's or librdkafka's keys
(pylog/client/security.py).

--formatter takes Kafka's formatter classes: DefaultMessageFormatter (the
default, above), LoggingMessageFormatter (the same, and each record logged
at INFO on stderr), NoOpMessageFormatter (nothing), and for the internal
topics OffsetsMessageFormatter, GroupMetadataMessageFormatter and
TransactionLogMessageFormatter (one JSON object per record, as Kafka 4's).
--formatter-property / --formatter-config and --command-property /
--command-config are Kafka 4's names for --property and --consumer-property /
--consumer.config.

Stops after --max-messages records, or when no record arrived for
--timeout-ms (exit 0 in both cases); "Processed a total of N messages" goes
to stderr as kafka-console-consumer's does.
"""
from __future__ import annotations

import logging
import sys
import time

from ..client import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from ..client.errors import ConnectionClosedError, check, error_for
from ..client.records import consumed_records, next_fetch_offset
from ..protocol.error_codes import Errors
from .log_decoders import coordinator_formatter_json
from .common import (
    RawHelp,
    add_bootstrap,
    apply_client_properties,
    client_properties,
    client_security,
    key_value,
    open_client,
    parse_bool,
    properties,
)

__all__ = ["CONSUMER_PROPERTIES", "FORMATTERS", "FORMATTER_PROPERTIES", "MessageFormatter", "add_consume_parser"]

_log = logging.getLogger("org.apache.kafka.tools.consumer.LoggingMessageFormatter")

# Kafka consumer keys this tool honours (besides common.COMMON_CLIENT_PROPERTIES):
# key -> (argument, converter). GROUP_ONLY ones need a group.
CONSUMER_PROPERTIES = {
    "group.id": ("group", str),
    "auto.offset.reset": ("auto_offset_reset", str),
    "isolation.level": ("isolation_level", str),
    "max.partition.fetch.bytes": ("max_partition_fetch_bytes", int),
    "enable.auto.commit": ("enable_auto_commit", parse_bool),
    "auto.commit.interval.ms": ("auto_commit_interval_ms", int),
    "session.timeout.ms": ("session_timeout_ms", int),
    "heartbeat.interval.ms": ("heartbeat_interval_ms", int),
    "max.poll.interval.ms": ("max_poll_interval_ms", int),
    "group.instance.id": ("group_instance_id", str),
    "partition.assignment.strategy": ("partition_assignment_strategy",
                                      lambda v: tuple(x.strip() for x in v.split(","))),
}
_GROUP_ONLY = ("enable_auto_commit", "auto_commit_interval_ms", "session_timeout_ms", "heartbeat_interval_ms",
               "max_poll_interval_ms", "group_instance_id", "partition_assignment_strategy")

FORMATTER_PROPERTIES = {
    "print.timestamp": False, "print.partition": False, "print.offset": False, "print.delivery": False,
    "print.headers": False, "print.key": False, "print.value": True,
    "key.separator": "\t", "line.separator": "\n", "headers.separator": ",",
    "headers.key.separator": ":", "null.literal": "null",
}

_REFRESH_CODES = frozenset({Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.LEADER_NOT_AVAILABLE,
                            Errors.NOT_LEADER_OR_FOLLOWER, Errors.FENCED_LEADER_EPOCH,
                            Errors.UNKNOWN_LEADER_EPOCH})  # metadata changed under us: look again


def add_consume_parser(sub) -> None:
    p = sub.add_parser("consume", help="console consumer: print records (kafka-console-consumer)",
                       description=__doc__.split("\n", 2)[2], formatter_class=RawHelp)
    add_bootstrap(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--from-beginning", action="store_true",
                   help="start at the earliest offset (default: the latest)")
    p.add_argument("--partition", type=int, help="read only this partition (default: all)")
    p.add_argument("--offset", help="earliest, latest or an offset; needs --partition")
    p.add_argument("--max-messages", type=int, help="stop after this many records")
    p.add_argument("--timeout-ms", type=int, help="stop when no record arrived for this long")
    p.add_argument("--isolation-level", choices=("read_uncommitted", "read_committed"),
                   default="read_uncommitted")
    p.add_argument("--max-partition-fetch-bytes", type=int, default=1048576)
    p.add_argument("--group", help="consume as a member of this consumer group, committing offsets")
    p.add_argument("--consumer-property", "--command-property", dest="consumer_property", type=key_value,
                   action="append", default=[], metavar="KEY=VALUE",
                   help="a Kafka consumer setting (repeatable; see above)")
    p.add_argument("--consumer.config", "--command-config", dest="consumer_config", metavar="FILE",
                   help="a properties file of Kafka consumer settings")
    for name in ("key", "partition", "offset", "timestamp", "headers"):
        p.add_argument(f"--print-{name}", action="store_true", help=f"print.{name}=true")
    p.add_argument("--property", "--formatter-property", dest="property", type=key_value, action="append",
                   default=[], metavar="NAME=VALUE", help="formatter property (see above; repeatable)")
    p.add_argument("--formatter-config", metavar="FILE",
                   help="a properties file of formatter properties (--formatter-property wins)")
    p.add_argument("--formatter", default=DEFAULT_FORMATTER, metavar="CLASS",
                   help="how records are printed: one of Kafka's formatter classes, "
                        + ", ".join(sorted({c.rsplit(".", 1)[1] for c in FORMATTERS})))
    p.set_defaults(tool=_consume)


class MessageFormatter:
    """Formats a ConsumedRecord as bytes, as Kafka's DefaultMessageFormatter
    does. Holds only its settings."""
    shows_records = True

    def __init__(self, props: dict):
        self.props = props
        enc = str.encode
        self.sep = enc(props["key.separator"])
        self.line_sep = enc(props["line.separator"])
        self.headers_sep = enc(props["headers.separator"])
        self.header_key_sep = enc(props["headers.key.separator"])
        self.null = enc(props["null.literal"])

    def _bytes(self, b) -> bytes:
        return self.null if b is None else bytes(b)

    def format(self, r) -> bytes:
        p = self.props
        parts = []
        if p["print.timestamp"]:
            parts.append(f"{r.timestamp_type}:{r.timestamp}".encode() if r.timestamp >= 0
                         else b"NO_TIMESTAMP")
        if p["print.partition"]:
            parts.append(b"Partition:%d" % r.partition)
        if p["print.offset"]:
            parts.append(b"Offset:%d" % r.offset)
        if p["print.delivery"]:
            # A share consumer's delivery count; a consumer has none.
            parts.append(b"Delivery:NOT_PRESENT")
        if p["print.headers"]:
            parts.append(self.headers_sep.join(
                k.encode() + self.header_key_sep + self._bytes(v) for k, v in r.headers)
                if r.headers else b"NO_HEADERS")
        if p["print.key"]:
            parts.append(self._bytes(r.key))
        if p["print.value"]:
            parts.append(self._bytes(r.value))
            return self.sep.join(parts) + self.line_sep
        # Kafka writes no line separator when the value is not printed.
        return self.sep.join(parts)


class NoOpMessageFormatter:
    """Kafka's NoOpMessageFormatter: prints nothing (a consumer for load)."""
    shows_records = False

    def __init__(self, props: dict):
        pass

    def format(self, r) -> bytes:
        return b""


class LoggingMessageFormatter(MessageFormatter):
    """Kafka's LoggingMessageFormatter: the default formatter's output, and
    the record logged at INFO (to stderr, where Kafka's tools log)."""

    def format(self, r) -> bytes:
        ts = f"{r.timestamp_type}:{r.timestamp}, " if r.timestamp >= 0 else ""
        key = "key:null " if r.key is None else f"key:{bytes(r.key).decode('utf-8', 'replace')}, "
        value = "value:null" if r.value is None else f"value:{bytes(r.value).decode('utf-8', 'replace')}"
        _log.info("%s%s%s", ts, key, value)
        return super().format(r)


class CoordinatorRecordFormatter:
    """Kafka 4's OffsetsMessageFormatter (offset commits of
    __consumer_offsets), GroupMetadataMessageFormatter (its group metadata)
    and TransactionLogMessageFormatter (__transaction_state): each record as
    one JSON object, written without a line separator as Kafka's are."""
    shows_records = True

    def __init__(self, log: str, allowed):
        self.log, self.allowed = log, allowed

    def __call__(self, props: dict):
        return self

    def format(self, r) -> bytes:
        text = coordinator_formatter_json(self.log, r.key, r.value, self.allowed, r.offset)
        return b"" if text is None else text.encode()


DEFAULT_FORMATTER = "org.apache.kafka.tools.consumer.DefaultMessageFormatter"
# Kafka's class names (and the pre-4.0 kafka.tools ones) -> pylog's formatter.
FORMATTERS = {
    DEFAULT_FORMATTER: MessageFormatter,
    "kafka.tools.DefaultMessageFormatter": MessageFormatter,
    "org.apache.kafka.tools.consumer.LoggingMessageFormatter": LoggingMessageFormatter,
    "kafka.tools.LoggingMessageFormatter": LoggingMessageFormatter,
    "org.apache.kafka.tools.consumer.NoOpMessageFormatter": NoOpMessageFormatter,
    "kafka.tools.NoOpMessageFormatter": NoOpMessageFormatter,
    "org.apache.kafka.tools.consumer.OffsetsMessageFormatter": CoordinatorRecordFormatter("offsets", {0, 1}),
    "org.apache.kafka.tools.consumer.GroupMetadataMessageFormatter": CoordinatorRecordFormatter("offsets", {2}),
    "org.apache.kafka.tools.consumer.TransactionLogMessageFormatter": CoordinatorRecordFormatter("transactions",
                                                                                               None),
}


def make_formatter(args):
    cls = FORMATTERS.get(args.formatter)
    if cls is None:
        raise SystemExit(f"--formatter {args.formatter}: not a formatter pylog has; it has "
                         + ", ".join(sorted(FORMATTERS)))
    if cls is LoggingMessageFormatter and not _log.handlers:
        # Kafka's tools log to stderr as "[time] LEVEL message (logger)".
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(message)s (%(name)s)"))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
        _log.propagate = False
    return cls(_formatter_props(args))


def _formatter_props(args) -> dict:
    pairs = list(args.property)
    if getattr(args, "formatter_config", None):
        from ..broker.config import read_properties
        try:
            pairs = list(read_properties(args.formatter_config).items()) + pairs
        except OSError as e:
            raise SystemExit(f"cannot read --formatter-config {args.formatter_config}: {e.strerror}") from None
    props = properties(pairs, FORMATTER_PROPERTIES, "formatter")
    for name in ("key", "partition", "offset", "timestamp", "headers"):
        if getattr(args, f"print_{name}"):
            props[f"print.{name}"] = True
    return props


def _start_offsets(client, args, partitions) -> dict[int, int]:
    if args.offset is None:
        ts = EARLIEST_TIMESTAMP if args.from_beginning else LATEST_TIMESTAMP
        return {p: client.list_offsets(args.topic, p, ts) for p in partitions}
    where = args.offset.lower()
    if where in ("earliest", "latest"):
        ts = EARLIEST_TIMESTAMP if where == "earliest" else LATEST_TIMESTAMP
        return {p: client.list_offsets(args.topic, p, ts) for p in partitions}
    try:
        offset = int(where)
    except ValueError:
        raise SystemExit(f"--offset must be earliest, latest or a number, not {args.offset!r}") from None
    if offset < 0:
        raise SystemExit("--offset must not be negative")
    return {p: offset for p in partitions}


def _client_settings(args) -> None:
    """--group, --consumer-property and --consumer.config into args, with
    Kafka's checks: one group id wherever given, no group with --partition,
    auto.offset.reset consistent with --from-beginning."""
    props = client_properties([args.consumer_config] if args.consumer_config else [], args.consumer_property)
    given = {g for g in (args.group, props.get("group.id")) if g is not None}
    if len(given) > 1:
        raise SystemExit("the group ids given in different places (--group, --consumer-property, "
                         f"--consumer.config) do not match: {', '.join(sorted(given))}")
    for attr in _GROUP_ONLY:
        setattr(args, attr, None)
    args.auto_offset_reset = None
    group = args.group
    apply_client_properties(args, props, CONSUMER_PROPERTIES, "consumer")
    args.group = group if group is not None else args.group
    if args.group is not None and args.partition is not None:
        raise SystemExit("--group and --partition cannot be used together")
    if args.auto_offset_reset is not None:
        if args.auto_offset_reset not in ("earliest", "latest", "none"):
            raise SystemExit(f"auto.offset.reset must be earliest, latest or none, not {args.auto_offset_reset!r}")
        if args.from_beginning and args.auto_offset_reset != "earliest":
            raise SystemExit(f"--from-beginning and auto.offset.reset={args.auto_offset_reset} contradict "
                             f"each other; give one of them")
    if args.group is None:
        set_ = [a for a in _GROUP_ONLY if getattr(args, a) is not None]
        if set_:
            raise SystemExit(f"{', '.join(set_)} need a consumer group (--group)")
        if args.auto_offset_reset is not None and args.offset is None:
            args.from_beginning = args.auto_offset_reset == "earliest"


def _consume(args) -> int:
    _client_settings(args)
    if args.group is not None:
        return _consume_in_group(args)
    if args.offset is not None and args.partition is None:
        raise SystemExit("--offset needs --partition")
    if args.offset is not None and args.from_beginning:
        raise SystemExit("--offset and --from-beginning cannot be used together")
    formatter = make_formatter(args)
    isolation = 1 if args.isolation_level == "read_committed" else 0
    out = sys.stdout.buffer
    count = 0
    with open_client(args) as client:
        all_partitions = client.partitions_for(args.topic)
        if args.partition is not None and args.partition not in all_partitions:
            raise error_for(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"{args.topic} has no partition {args.partition}")
        partitions = all_partitions if args.partition is None else [args.partition]
        positions = _start_offsets(client, args, partitions)
        # Where an out-of-range position goes: auto.offset.reset, which the
        # console consumer sets from --from-beginning.
        reset_ts = EARLIEST_TIMESTAMP if args.from_beginning else LATEST_TIMESTAMP
        last_record = time.monotonic()
        try:
            while args.max_messages is None or count < args.max_messages:
                wait = _next_wait(args, last_record)
                if wait is None:
                    break
                wait_ms = max(1, int(wait * 1000))
                got = _fetch_round(client, args, positions, wait_ms, isolation)
                for part, fetched in got:
                    if not _usable(client, args, part, fetched, positions, reset_ts):
                        continue
                    limit = None if args.max_messages is None else args.max_messages - count
                    printed, positions[part] = _write_records(out, formatter, part, fetched.records,
                                                              positions[part], limit)
                    if printed:
                        count += printed
                        last_record = time.monotonic()
                    if args.max_messages is not None and count >= args.max_messages:
                        break
                out.flush()
        finally:
            out.flush()
            print(f"Processed a total of {count} messages", file=sys.stderr)
    return 0


def _consume_in_group(args) -> int:
    """The console consumer as a member of args.group (pylog.Consumer)."""
    from ..consumer import Consumer
    if args.offset is not None:
        raise SystemExit("--offset needs --partition, which cannot be used with --group")
    formatter = make_formatter(args)
    kw = {a: getattr(args, a) for a in _GROUP_ONLY if getattr(args, a) is not None}
    consumer = Consumer(args.topic, bootstrap_servers=args.bootstrap_server, group_id=args.group,
                        client_id=args.client_id, request_timeout_ms=args.request_timeout_ms,
                        auto_offset_reset=args.auto_offset_reset or ("earliest" if args.from_beginning
                                                                     else "latest"),
                        isolation_level=args.isolation_level,
                        max_partition_fetch_bytes=args.max_partition_fetch_bytes, **client_security(args),
                        **kw)
    out = sys.stdout.buffer
    count = 0
    last_record = time.monotonic()
    try:
        while args.max_messages is None or count < args.max_messages:
            wait = _next_wait(args, last_record)
            if wait is None:
                break
            limit = 500 if args.max_messages is None else min(500, args.max_messages - count)
            records = consumer.poll(timeout=wait, max_records=limit)
            for r in records:
                out.write(formatter.format(_Printed(r)))
            if records:
                count += len(records)
                last_record = time.monotonic()
                out.flush()
    finally:
        out.flush()
        # close() commits the positions after what was printed (with auto
        # commit on, Kafka's default), then leaves the group.
        consumer.close()
        print(f"Processed a total of {count} messages", file=sys.stderr)
    return 0


class _Printed:
    """A pylog ConsumerRecord as the formatter reads records (its
    timestamp_type as Kafka's name)."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "timestamp_type", "value")

    def __init__(self, r):
        self.partition, self.offset, self.timestamp = r.partition, r.offset, r.timestamp
        self.timestamp_type = "LogAppendTime" if r.timestamp_type == 1 else "CreateTime"
        self.key, self.value, self.headers = r.key, r.value, r.headers


def _next_wait(args, last_record: float) -> float | None:
    """Seconds the next fetch may wait (at most 0.5), or None when
    --timeout-ms has passed since the last record."""
    if args.timeout_ms is None:
        return 0.5
    left = args.timeout_ms / 1000.0 - (time.monotonic() - last_record)
    return None if left <= 0 else min(left, 0.5)


def _usable(client, args, part, fetched, positions, reset_ts) -> bool:
    """True when fetched holds records to read; handles the errors a consumer
    recovers from (out of range: reset the position; leadership moved:
    refresh metadata) and raises for the others."""
    code = fetched.error_code
    if code == Errors.OFFSET_OUT_OF_RANGE:
        new = client.list_offsets(args.topic, part, reset_ts)
        print(f"WARN offset {positions[part]} is out of range for {args.topic}-{part}; "
              f"resetting to offset {new}", file=sys.stderr)
        positions[part] = new
        return False
    if code in _REFRESH_CODES:
        client.metadata([args.topic])
        time.sleep(0.1)
        return False
    check(code, f"fetch {args.topic}-{part}")
    return True


def _write_records(out, formatter, part, records, start, limit):
    """Print the records at or after offset start, at most limit (None: no
    limit): (records printed, the partition's next position)."""
    printed = 0
    for r in consumed_records(part, records, start):
        if printed == limit:
            return printed, r.offset
        out.write(formatter.format(r))
        printed += 1
    return printed, next_fetch_offset(records, start)


def _fetch_round(client, args, positions, wait_ms, isolation):
    """One Fetch per leader for the partitions it leads: [(partition, FetchedPartition)]."""
    by_leader: dict[int, dict] = {}
    for part, offset in positions.items():
        by_leader.setdefault(client.leader_for(args.topic, part), {})[(args.topic, part)] = offset
    # With several leaders, each waits in turn; split the wait so a round
    # stays within the caller's budget.
    wait_each = max(1, wait_ms // len(by_leader))
    got = []
    for node_id, offsets in by_leader.items():
        try:
            answer = client.fetch_from(node_id, offsets, max_wait_ms=wait_each,
                                       partition_max_bytes=args.max_partition_fetch_bytes,
                                       isolation_level=isolation)
        except ConnectionClosedError:
            client.metadata([args.topic])
            time.sleep(0.1)
            continue
        for (_topic, part), fetched in sorted(answer.items()):
            if part in positions:
                got.append((part, fetched))
    return got
