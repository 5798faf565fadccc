"""`pylog consume`: kafka-console-consumer without a consumer group.

Reads one partition (--partition) or every partition of the topic, starting
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

Stops after --max-messages records, or when no record arrived for
--timeout-ms (exit 0 in both cases); "Processed a total of N messages" goes
to stderr as kafka-console-consumer's does.
"""
from __future__ import annotations

import sys
import time

from ..client import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from ..client.errors import ConnectionClosedError, check, error_for
from ..client.records import consumed_records, next_fetch_offset
from .common import RawHelp, add_bootstrap, key_value, open_client, properties

__all__ = ["FORMATTER_PROPERTIES", "MessageFormatter", "add_consume_parser"]

FORMATTER_PROPERTIES = {
    "print.timestamp": False, "print.partition": False, "print.offset": False,
    "print.headers": False, "print.key": False, "print.value": True,
    "key.separator": "\t", "line.separator": "\n", "headers.separator": ",",
    "headers.key.separator": ":", "null.literal": "null",
}

OFFSET_OUT_OF_RANGE = 1
_REFRESH_CODES = frozenset({3, 5, 6, 74, 75})  # metadata changed under us: look again


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
    for name in ("key", "partition", "offset", "timestamp", "headers"):
        p.add_argument(f"--print-{name}", action="store_true", help=f"print.{name}=true")
    p.add_argument("--property", type=key_value, action="append", default=[], metavar="NAME=VALUE",
                   help="formatter property (see above; repeatable)")
    p.set_defaults(tool=_consume)


class MessageFormatter:
    """Formats a ConsumedRecord as bytes, as Kafka's DefaultMessageFormatter
    does. Holds only its settings."""

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


def _consume(args) -> int:
    if args.offset is not None and args.partition is None:
        raise SystemExit("--offset needs --partition")
    if args.offset is not None and args.from_beginning:
        raise SystemExit("--offset and --from-beginning cannot be used together")
    props = properties(args.property, FORMATTER_PROPERTIES, "formatter")
    for name in ("key", "partition", "offset", "timestamp", "headers"):
        if getattr(args, f"print_{name}"):
            props[f"print.{name}"] = True
    formatter = MessageFormatter(props)
    isolation = 1 if args.isolation_level == "read_committed" else 0
    out = sys.stdout.buffer
    count = 0
    with open_client(args) as client:
        all_partitions = client.partitions_for(args.topic)
        if args.partition is not None and args.partition not in all_partitions:
            raise error_for(3, f"{args.topic} has no partition {args.partition}")
        partitions = all_partitions if args.partition is None else [args.partition]
        positions = _start_offsets(client, args, partitions)
        # Where an out-of-range position goes: auto.offset.reset, which the
        # console consumer sets from --from-beginning.
        reset_ts = EARLIEST_TIMESTAMP if args.from_beginning else LATEST_TIMESTAMP
        last_record = time.monotonic()
        try:
            while args.max_messages is None or count < args.max_messages:
                wait_ms = 500
                if args.timeout_ms is not None:
                    left = args.timeout_ms / 1000.0 - (time.monotonic() - last_record)
                    if left <= 0:
                        break
                    wait_ms = max(1, min(wait_ms, int(left * 1000)))
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


def _usable(client, args, part, fetched, positions, reset_ts) -> bool:
    """True when fetched holds records to read; handles the errors a consumer
    recovers from (out of range: reset the position; leadership moved:
    refresh metadata) and raises for the others."""
    code = fetched.error_code
    if code == OFFSET_OUT_OF_RANGE:
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
