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

Kafka client settings: --producer-property KEY=VALUE (repeatable) and
--producer.config FILE take the keys in PRODUCER_PROPERTIES (over the options
above); security settings are refused, since pylog has none yet.
"""
from __future__ import annotations

import queue
import sys
import threading
import time

from .. import _engine
from ..client.errors import ConnectionClosedError, error_for
from ..client.partitioner import partition_for_key
from ..errors import UnknownTopicOrPartitionError
from ..protocol.error_codes import Errors
from .common import (
    RawHelp,
    acks_value,
    add_bootstrap,
    apply_client_properties,
    client_properties,
    key_value,
    open_client,
    properties,
)

__all__ = ["PRODUCER_PROPERTIES", "READER_PROPERTIES", "LineReader", "add_produce_parser"]

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
    p.add_argument("--producer-property", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a Kafka producer setting (repeatable; see above)")
    p.add_argument("--producer.config", dest="producer_config", metavar="FILE",
                   help="a properties file of Kafka producer settings")
    p.set_defaults(tool=_produce)


def _compression(value: str) -> str:
    if value not in COMPRESSIONS:
        raise ValueError(f"one of {', '.join(COMPRESSIONS)}")
    return value


# Kafka producer keys this tool honours (besides common.COMMON_CLIENT_PROPERTIES).
PRODUCER_PROPERTIES = {
    "acks": ("acks", acks_value),
    "compression.type": ("compression", _compression),
    "linger.ms": ("linger_ms", int),
    "retries": ("retries", int),
}


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

    def _split(self, rest: bytes, sep: bytes, what: str, line: bytes, lineno: int):
        """(head, tail) around the first sep, or None when sep is missing
        and ignore.error allows that."""
        head, found, tail = rest.partition(sep)
        if found:
            return head, tail
        if self.ignore_error:
            return None
        raise ValueError(f"no {what} found on line number {lineno}: {line!r}")

    def parse(self, line: bytes, lineno: int):
        headers = []
        key = None
        rest = line
        if self.parse_headers:
            cut = self._split(rest, self.headers_delim, "headers delimiter", line, lineno)
            if cut is not None:
                head, rest = cut
                for item in head.split(self.headers_sep) if head else ():
                    k, ksep, v = item.partition(self.header_key_sep)
                    headers.append((k.decode(errors="replace"), self._null(v) if ksep else None))
        if self.parse_key:
            cut = self._split(rest, self.key_sep, "key separator", line, lineno)
            if cut is not None:
                key, rest = self._null(cut[0]), cut[1]
        return key, self._null(rest), headers


def _chomp(line: bytes) -> bytes:
    """The line without its ending ("\n" or "\r\n"), as Java's readLine."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def _read_lines(stream, out: queue.Queue) -> None:
    # A thread, so that the main loop can wake up for --linger-ms while a
    # terminal user is typing; None marks end of input.
    try:
        for line in stream:
            out.put(line)
    finally:
        out.put(None)


class _Batcher:
    """Records waiting for their batch, per partition, and the partition
    choice (see the module doc). One thread."""

    def __init__(self, client, args, partitions):
        self.client, self.args, self.partitions = client, args, partitions
        self.compression = None if args.compression == "none" else args.compression
        self.linger = args.linger_ms / 1000.0
        self.pending: dict[int, tuple[float, list, list, list]] = {}  # since, keys, values, headers
        self.sticky = 0  # index in partitions of the unkeyed records' partition
        self.failures = 0

    def add(self, key, value, headers) -> None:
        if self.args.partition is not None:
            part = self.args.partition
        elif key is not None:
            part = partition_for_key(key, len(self.partitions))
        else:
            part = self.partitions[self.sticky % len(self.partitions)]
        _since, keys, values, hdrs = self.pending.setdefault(part, (time.monotonic(), [], [], []))
        keys.append(key)
        values.append(value)
        hdrs.append(headers)

    def wait(self) -> float | None:
        """Seconds until the oldest pending batch lingers out (None: nothing pending)."""
        if not self.pending:
            return None
        oldest = min(since for since, *_ in self.pending.values())
        return max(0.0, oldest + self.linger - time.monotonic())

    def send_ready(self, everything: bool = False) -> None:
        now = time.monotonic()
        for part in sorted(self.pending):
            since, keys, values, headers = self.pending[part]
            if everything or len(values) >= self.args.batch_size or now - since >= self.linger:
                del self.pending[part]
                batch = _engine.encode_batch(values, keys=keys, headers=headers,
                                             compression=self.compression)
                self.failures += not _send(self.client, self.args, part, batch, len(values))
                if self.args.partition is None and part == self.partitions[self.sticky % len(self.partitions)]:
                    self.sticky += 1


def _produce(args) -> int:
    apply_client_properties(args, client_properties([args.producer_config] if args.producer_config else [],
                                                    args.producer_property), PRODUCER_PROPERTIES, "producer")
    reader = LineReader(properties(args.property, READER_PROPERTIES, "line reader"))
    with open_client(args) as client:
        # A producer's Metadata asks for auto-creation, as Kafka's does;
        # whether it happens is up to the broker (auto.create.topics.enable).
        client.metadata([args.topic], allow_auto_topic_creation=True)
        try:
            partitions = sorted(client.wait_for_leaders(args.topic, timeout=10.0).partitions)
        except UnknownTopicOrPartitionError:
            raise UnknownTopicOrPartitionError(
                f"topic {args.topic!r} does not exist and was not created: {_why_not_created(client)}; "
                f"create it with `pylog topics create --topic {args.topic}`") from None
        if args.partition is not None and args.partition not in partitions:
            raise error_for(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"{args.topic} has no partition {args.partition}")
        batcher = _Batcher(client, args, partitions)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_read_lines, args=(sys.stdin.buffer, lines), daemon=True).start()
        lineno = 0
        while True:
            try:
                line = lines.get(timeout=batcher.wait())
            except queue.Empty:  # the oldest batch lingered out
                batcher.send_ready()
                continue
            if line is None:
                break
            lineno += 1
            try:
                batcher.add(*reader.parse(_chomp(line), lineno))
            except ValueError as e:
                # As kafka-console-producer: stop at a malformed line; the
                # lines read before it are still sent.
                print(f"Error: {e}", file=sys.stderr)
                batcher.failures += 1
                break
            batcher.send_ready()
        batcher.send_ready(everything=True)
    return 1 if batcher.failures else 0


def _why_not_created(client) -> str:
    """Why a producer's Metadata request did not auto-create its topic."""
    node = client.cluster.controller_id if client.cluster is not None else -1
    if node >= 0:
        try:
            client.controller_connection()
        except ConnectionClosedError as e:
            return str(e)
    return ("the broker does not create topics on demand (auto.create.topics.enable=false, or a broker of "
            "a cluster, which does not yet)")


def _send(client, args, partition: int, batch: bytes, count: int) -> bool:
    """Produce one batch, retrying retriable errors; False (after a message
    on stderr) when it could not be written."""
    for attempt in range(args.retries + 1):
        try:
            code, _base = client.produce(args.topic, partition, batch, args.acks,
                                         args.produce_timeout_ms)
        except ConnectionClosedError as e:
            code, detail = Errors.NETWORK_EXCEPTION, str(e)  # as Kafka's producer reports it
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

