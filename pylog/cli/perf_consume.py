"""`pylog perf consume`: kafka-consumer-perf-test.

Reads --messages records from every partition of the topic (from the
earliest offset, or the latest with --from-latest; with --group, as a member
of that consumer group from its committed offsets, committing on the way out)
and prints
kafka-consumer-perf-test's header and result line:

    start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec

MB are 2^20 bytes of record keys + values; rebalance.time.ms is the time
until the group gave this consumer its partitions (0 without --group).
--consumer.config FILE takes Kafka consumer settings (CONSUMER_PROPERTIES of
`pylog consume`; security settings are refused). Ctrl-C prints the result
line of what was read so far, as Kafka's tool does on shutdown. With --show-detailed-stats, a line per --reporting-interval instead
(time, threadId, then the same columns over the interval), as Kafka's tool;
without it a progress line goes to stderr every interval. Stops when
--messages records were read (exactly that many are counted) or when none
arrived for --timeout ms (then a warning on stderr and exit code 1).

Fetching: one Fetch per leader for all the partitions it leads, sent to all
leaders before any answer is read, so brokers work in parallel.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime

from .. import _engine
from ..client import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from ..client.client import fetched_partitions
from ..client.errors import check
from ..client.records import batch_headers, whole_batches
from ..protocol.error_codes import Errors
from .common import (
    RawHelp,
    add_bootstrap,
    apply_client_properties,
    client_properties,
    client_security,
    open_client,
)

__all__ = ["add_perf_consume_parser"]

_MB = 1024.0 * 1024.0
_REFRESH_CODES = frozenset({Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.LEADER_NOT_AVAILABLE,
                            Errors.NOT_LEADER_OR_FOLLOWER, Errors.FENCED_LEADER_EPOCH,
                            Errors.UNKNOWN_LEADER_EPOCH})
HEADER = ("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
          "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")
DETAILED_HEADER = ("time, threadId, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
                   "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")


def add_perf_consume_parser(sub) -> None:
    p = sub.add_parser("consume", help="consumer throughput test (kafka-consumer-perf-test)",
                       description=__doc__.split("\n", 2)[2], formatter_class=RawHelp)
    add_bootstrap(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--messages", type=int, required=True, help="records to consume")
    p.add_argument("--fetch-size", type=int, default=1048576, help="bytes per partition per fetch")
    p.add_argument("--max-bytes", type=int, default=52428800, help="bytes per fetch response")
    p.add_argument("--timeout", type=int, default=10000, help="ms allowed between returned records")
    p.add_argument("--from-latest", action="store_true", help="start at the latest offset")
    p.add_argument("--show-detailed-stats", action="store_true")
    p.add_argument("--reporting-interval", type=int, default=5000, help="ms between stats lines")
    p.add_argument("--hide-header", action="store_true")
    p.add_argument("--date-format", default="%Y-%m-%d %H:%M:%S:%f",
                   help="strftime format of times (%%f is shown as milliseconds)")
    p.add_argument("--group", help="consume as a member of this consumer group (default: no group)")
    p.add_argument("--consumer.config", dest="consumer_config", metavar="FILE",
                   help="a properties file of Kafka consumer settings")
    p.set_defaults(tool=_perf_consume)


def _when(fmt: str, t: float) -> str:
    # Kafka prints SimpleDateFormat "yyyy-MM-dd HH:mm:ss:SSS": milliseconds.
    dt = datetime.fromtimestamp(t)
    return dt.strftime(fmt.replace("%f", f"{dt.microsecond // 1000:03d}"))


class _Progress:
    """Totals and the reporting window; prints Kafka's lines. One thread."""

    def __init__(self, args):
        self.args = args
        self.start = self.window_start = time.time()
        self.messages = self.bytes = 0
        self.window_messages = self.window_bytes = 0

    def add(self, messages: int, nbytes: int) -> None:
        self.messages += messages
        self.bytes += nbytes
        now = time.time()
        if now - self.window_start >= self.args.reporting_interval / 1000.0:
            self.report(now)

    def report(self, now: float) -> None:
        elapsed = max(now - self.window_start, 1e-9)
        mb = (self.bytes - self.window_bytes) / _MB
        n = self.messages - self.window_messages
        if self.args.show_detailed_stats:
            print(f"{_when(self.args.date_format, now)}, 0, {self.bytes / _MB:.4f}, {mb / elapsed:.4f}, "
                  f"{self.messages}, {n / elapsed:.4f}, 0, {int(elapsed * 1000)}, {mb / elapsed:.4f}, "
                  f"{n / elapsed:.4f}", flush=True)
        else:
            print(f"{self.messages} messages consumed, {self.bytes / _MB:.1f} MB, "
                  f"{n / elapsed:.1f} records/sec ({mb / elapsed:.2f} MB/sec)", file=sys.stderr, flush=True)
        self.window_start, self.window_messages, self.window_bytes = now, self.messages, self.bytes

    def total(self, end: float) -> None:
        if self.args.show_detailed_stats:
            return  # Kafka's tool prints only the interval lines then
        elapsed = max(end - self.start, 1e-9)
        fetch = max(elapsed - self.rebalance_s, 1e-9)
        mb = self.bytes / _MB
        n = self.messages
        print(f"{_when(self.args.date_format, self.start)}, {_when(self.args.date_format, end)}, "
              f"{mb:.4f}, {mb / elapsed:.4f}, {n}, {n / elapsed:.4f}, {int(self.rebalance_s * 1000)}, "
              f"{int(fetch * 1000)}, {mb / fetch:.4f}, {n / fetch:.4f}", flush=True)

    rebalance_s = 0.0


def count_records(records, fetch_offset: int, limit: int) -> tuple[int, int, int]:
    """(records, key+value bytes, next fetch offset) for the data records at
    or after fetch_offset, counting at most `limit`."""
    batches = whole_batches(records)
    count = nbytes = 0
    next_offset = fetch_offset
    for h in batch_headers(batches):
        if h.last_offset < fetch_offset or h.is_control:
            next_offset = max(next_offset, h.last_offset + 1)
            continue
        for r in _engine.decode_batches(batches[h.position:h.position + h.size]):
            if r.offset < fetch_offset:
                continue
            if count == limit:
                return count, nbytes, r.offset
            count += 1
            nbytes += (0 if r.key is None else len(r.key)) + (0 if r.value is None else len(r.value))
        next_offset = max(next_offset, h.last_offset + 1)
    return count, nbytes, next_offset


def _perf_consume(args) -> int:
    from .consume import CONSUMER_PROPERTIES
    props = client_properties([args.consumer_config] if args.consumer_config else [], ())
    if args.group is not None and props.setdefault("group.id", args.group) != args.group:
        raise SystemExit(f"--group {args.group} and group.id={props['group.id']} in --consumer.config differ")
    args.group = props.pop("group.id", None)
    args.session_timeout_ms = args.auto_offset_reset = None
    apply_client_properties(args, props, {k: v for k, v in CONSUMER_PROPERTIES.items()
                                          if k in ("session.timeout.ms", "auto.offset.reset")}, "consumer")
    progress = _Progress(args)
    try:
        if not args.hide_header:
            print(DETAILED_HEADER if args.show_detailed_stats else HEADER, flush=True)
        if args.group is not None:
            _consume_in_group(args, progress)
        else:
            _consume_alone(args, progress)
    except KeyboardInterrupt:
        progress.total(time.time())
        return 130
    end = time.time()
    if progress.messages < args.messages:
        print(f"WARNING: Exiting before consuming the expected number of messages: timeout "
              f"({args.timeout} ms) exceeded. You can use the --timeout option to increase the "
              f"timeout.", file=sys.stderr)
    progress.total(end)
    return 0 if progress.messages >= args.messages else 1


def _consume_in_group(args, progress) -> None:
    from ..consumer import Consumer
    kw = {} if args.session_timeout_ms is None else {"session_timeout_ms": args.session_timeout_ms}
    reset = args.auto_offset_reset or ("latest" if args.from_latest else "earliest")

    def assigned(_consumer, _partitions):
        if not progress.rebalance_s:
            progress.rebalance_s = time.time() - progress.start
    c = Consumer(args.topic, bootstrap_servers=args.bootstrap_server, group_id=args.group,
                 client_id=args.client_id, request_timeout_ms=args.request_timeout_ms,
                 auto_offset_reset=reset, max_partition_fetch_bytes=args.fetch_size,
                 fetch_max_bytes=args.max_bytes, on_assign=assigned, **client_security(args), **kw)
    try:
        last_record = time.monotonic()
        while progress.messages < args.messages:
            if time.monotonic() - last_record > args.timeout / 1000.0:
                break
            records = c.poll(timeout=0.1, max_records=min(10000, args.messages - progress.messages))
            if records:
                last_record = time.monotonic()
                progress.add(len(records), sum(r.serialized_key_size + r.serialized_value_size
                                               + (r.key is None) + (r.value is None) for r in records))
    finally:
        c.close()


def _consume_alone(args, progress) -> None:
    with open_client(args) as client:
        parts = client.partitions_for(args.topic)
        ts = LATEST_TIMESTAMP if args.from_latest else EARLIEST_TIMESTAMP
        positions = {p: client.list_offsets(args.topic, p, ts) for p in parts}
        last_record = time.monotonic()
        while progress.messages < args.messages:
            if time.monotonic() - last_record > args.timeout / 1000.0:
                break
            by_leader: dict[int, dict] = {}
            for p, offset in positions.items():
                by_leader.setdefault(client.leader_for(args.topic, p), {})[(args.topic, p)] = offset
            sent = []
            for node, offsets in by_leader.items():
                conn = client.connection(node)
                conn.send(client.fetch_request(offsets, max_wait_ms=100, max_bytes=args.max_bytes,
                                               partition_max_bytes=args.fetch_size))
                sent.append(conn)
            for conn in sent:
                resp = conn.receive()
                check(resp.error_code, "fetch")
                for (_topic, p), f in sorted(fetched_partitions(resp).items()):
                    if f.error_code == Errors.OFFSET_OUT_OF_RANGE:  # auto.offset.reset
                        positions[p] = client.list_offsets(args.topic, p, ts)
                        continue
                    if f.error_code in _REFRESH_CODES:
                        client.metadata([args.topic])
                        continue
                    check(f.error_code, f"fetch {args.topic}-{p}")
                    n, nbytes, positions[p] = count_records(
                        f.records, positions[p], args.messages - progress.messages)
                    if n:
                        last_record = time.monotonic()
                        progress.add(n, nbytes)
