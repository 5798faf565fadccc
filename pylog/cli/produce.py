"""`pylog produce`: kafka-console-producer. Each stdin line becomes a record.

Line format (kafka-console-producer's LineMessageReader properties, given as
--property NAME=VALUE):

    parse.headers=true   the line starts with headers, ended by headers.delimiter
                         (default TAB): h1:v1,h2:v2 (headers.separator ",",
                         headers.key.separator ":"); a header without the key
                         separator has a null value
    parse.key=true       then the key, ended by key.separator (default TAB)
    (always)             the rest of the line is the value
    null.marker=S        a key, value or header value equal to S is sent as null
    ignore.error=true    a line without the expected separator is sent whole as
                         the value (default: stop with an error)

Records are batched per partition: a batch goes out when it holds
--batch-size lines, when its oldest line is --linger-ms old, or at end of
input. Partition: --partition if given, else Kafka's murmur2 hash of the key,
else one partition per batch, rotating (Kafka's sticky partitioner).
"""
from __future__ import annotations

import queue
import sys
import threading
import time

from .. import _engine
from ..client.errors import ConnectionClosedError, error_for
from ..client.partitioner import partition_for_key
from .common import RawHelp, acks_value, add_bootstrap, key_value, open_client, properties

__all__ = ["add_produce_parser", "LineReader", "READER_PROPERTIES"]

READER_PROPERTIES = {
    "parse.key": False, "key.separator": "\t",
    "parse.headers": False, "headers.delimiter": "\t", "headers.separator": ",",
    "headers.key.separator": ":", "ignore.error": False, "null.marker": None,
}

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


def add_produce_parser(sub) -> None:
    doc = __doc__.split("\n", 2)[2]
    p = sub.add_parser("produce", help="console producer: stdin lines -> records (kafka-console-producer)",
                       description="Produce stdin lines to a topic, as kafka-console-producer does.\n" + doc,
                       formatter_class=RawHelp,
                       epilog="example: printf 'k1:v1\\nk2:v2\\n' | pylog produce --topic t "
                              "--property parse.key=true --property key.separator=:")
    add_bootstrap(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--property", type=key_value, action="append", default=[], metavar="NAME=VALUE",
                   help="line reader property (see above; repeatable)")
    p.add_argument("--acks", "--request-required-acks", type=acks_value, default=-1,
                   help="all/-1, 1 or 0 (no response awaited)")
    p.add_argument("--compression", "--compression-codec", choices=COMPRESSIONS, default="none")
    p.add_argument("--batch-size", type=int, default=200, help="lines per batch at most")
    p.add_argument("--linger-ms", "--timeout", type=int, default=1000,
                   help="longest a line waits for its batch to fill")
    p.add_argument("--partition", type=int, help="send every record to this partition")
    p.add_argument("--retries", type=int, default=10,
                   help="resends of a batch after a retriable error (NOT_LEADER_OR_FOLLOWER, ...)")
    p.add_argument("--produce-timeout-ms", type=int, default=30000,
                   help="timeout_ms of Produce requests (how long acks=all may wait)")
    p.set_defaults(tool=_produce)


class LineReader:
    """Parses one stdin line (bytes, line ending removed) into (key, value,
    headers) by the READER_PROPERTIES. Not thread-safe; holds no state
    besides its settings."""

    def __init__(self, props: dict):
        self.parse_key = props["parse.key"]
        self.parse_headers = props["parse.headers"]
        self.ignore_error = props["ignore.error"]
        enc = (lambda s: None if s is None else s.encode())
        self.key_sep = enc(props["key.separator"])
        self.headers_delim = enc(props["headers.delimiter"])
        self.headers_sep = enc(props["headers.separator"])
        self.header_key_sep = enc(props["headers.key.separator"])
        self.null_marker = enc(props["null.marker"])
        for name in ("key.separator", "headers.delimiter", "headers.separator", "headers.key.separator"):
            if not props[name]:
                raise SystemExit(f"property {name} must not be empty")

    def _null(self, b: bytes):
        return None if self.null_marker is not None and b == self.null_marker else b

    def parse(self, line: bytes, lineno: int):
        headers = []
        rest = line
        if self.parse_headers:
            head, sep, tail = rest.partition(self.headers_delim)
            if not sep:
                if not self.ignore_error:
                    raise ValueError(f"no headers delimiter found on line number {lineno}: {line!r}")
            else:
                rest = tail
                for item in head.split(self.headers_sep) if head else ():
                    k, ksep, v = item.partition(self.header_key_sep)
                    headers.append((k.decode(errors="replace"), self._null(v) if ksep else None))
        key = None
        if self.parse_key:
            k, sep, tail = rest.partition(self.key_sep)
            if not sep:
                if not self.ignore_error:
                    raise ValueError(f"no key separator found on line number {lineno}: {line!r}")
            else:
                key, rest = self._null(k), tail
        return key, self._null(rest), headers


def _read_lines(stream, out: queue.Queue) -> None:
    # A thread, so that the main loop can wake up for --linger-ms while a
    # terminal user is typing; None marks end of input.
    try:
        for line in stream:
            out.put(line)
    finally:
        out.put(None)


class _Pending:
    __slots__ = ("keys", "values", "headers", "since")

    def __init__(self, now):
        self.keys, self.values, self.headers, self.since = [], [], [], now


_NOTHING = object()  # the linger timer fired before a line arrived


def _produce(args) -> int:
    reader = LineReader(properties(args.property, READER_PROPERTIES, "line reader"))
    compression = None if args.compression == "none" else args.compression
    linger = args.linger_ms / 1000.0
    with open_client(args) as client:
        # A producer's Metadata asks for auto-creation, as Kafka's does;
        # whether it happens is up to the broker (auto.create.topics.enable).
        client.metadata([args.topic], allow_auto_topic_creation=True)
        partitions = sorted(client.wait_for_leaders(args.topic, timeout=10.0).partitions)
        if args.partition is not None and args.partition not in partitions:
            raise error_for(3, f"{args.topic} has no partition {args.partition}")
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_read_lines, args=(sys.stdin.buffer, lines), daemon=True).start()
        pending: dict[int, _Pending] = {}
        sticky = 0  # index into partitions of the unkeyed records' partition
        failures = lineno = 0
        eof = False
        while not eof:
            timeout = None
            if pending:
                oldest = min(b.since for b in pending.values())
                timeout = max(0.0, oldest + linger - time.monotonic())
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                line = _NOTHING
            if line is None:
                eof = True
            elif line is not _NOTHING:
                lineno += 1
                key, value, headers = reader.parse(line.rstrip(b"\r\n"), lineno)
                if args.partition is not None:
                    part = args.partition
                elif key is not None:
                    part = partition_for_key(key, len(partitions))
                else:
                    part = partitions[sticky % len(partitions)]
                b = pending.get(part)
                if b is None:
                    b = pending[part] = _Pending(time.monotonic())
                b.keys.append(key)
                b.values.append(value)
                b.headers.append(headers)
            now = time.monotonic()
            for part in sorted(pending):
                b = pending[part]
                if eof or len(b.values) >= args.batch_size or now - b.since >= linger:
                    del pending[part]
                    batch = _engine.encode_batch(b.values, keys=b.keys, headers=b.headers,
                                                 compression=compression)
                    failures += not _send(client, args, part, batch, len(b.values))
                    if args.partition is None and part == partitions[sticky % len(partitions)]:
                        sticky += 1
    return 1 if failures else 0


def _send(client, args, partition: int, batch: bytes, count: int) -> bool:
    """Produce one batch, retrying retriable errors; False (after a message
    on stderr) when it could not be written."""
    for attempt in range(args.retries + 1):
        try:
            code, _base = client.produce(args.topic, partition, batch, args.acks,
                                         args.produce_timeout_ms)
        except ConnectionClosedError as e:
            code, detail = 13, str(e)  # NETWORK_EXCEPTION, as Kafka's producer reports it
        else:
            detail = None
        if code == 0:
            return True
        exc = error_for(code, detail)
        if not exc.retriable or attempt == args.retries:
            break
        time.sleep(0.1)
        client.metadata([args.topic])
    print(f"Error when sending {count} message(s) to topic {args.topic} partition {partition}: {exc}",
          file=sys.stderr)
    return False

