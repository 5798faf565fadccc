"""`pylog get-offsets`: kafka-get-offsets.sh (Kafka's GetOffsetShell).

    pylog get-offsets --bootstrap-server H:P [--topic REGEX] [--partitions 0,1]
        [--topic-partitions 'orders:0-3,logs.*,:5-'] [--time latest|earliest|max-timestamp|
        earliest-local|latest-tiered|-1..-5|<ms>] [--exclude-internal-topics] [--command-config FILE]

Prints `topic:partition:offset` for every matching partition, sorted as
Kafka's tool sorts them (by the string "topic-partition"); a partition
without an answer (no record at or after the timestamp) is left out, one
whose ListOffsets failed is named on stderr as `Skip getting offsets for
topic-partition t-0 due to error: ...`. Topic patterns are Java regexes
matched against the whole name (Kafka's IncludeList: commas mean `|`, spaces
and surrounding quotes dropped); --topic-partitions takes Kafka's rule list
(`REGEX:N`, `REGEX:N-M` with M exclusive, `REGEX:N-`, `REGEX:-M`, `:N`).

One thread; blocking sockets (pylog's Client).
"""
from __future__ import annotations

import re
import sys

from ..client.errors import error_for
from .common import add_bootstrap, add_command_config, open_client, topic_include_list

__all__ = ["add_get_offsets_parser"]

_SPECS = {"latest": -1, "earliest": -2, "max-timestamp": -3, "earliest-local": -4, "latest-tiered": -5}
# The tool's own regex for one rule of --topic-partitions.
_RULE = re.compile(r"([^:,]*)(?::(?:([0-9]*)|(?:([0-9]*)-([0-9]*))))?")
_INT_MAX = 2**31 - 1


class ToolError(Exception):
    """Kafka's TerseException: printed as `Error occurred: <message>`, exit 1."""


def add_get_offsets_parser(sub) -> None:
    p = sub.add_parser("get-offsets", help="offsets of partitions at a time (kafka-get-offsets)",
                       description="An interactive shell for getting topic-partition offsets.")
    add_bootstrap(p)
    p.add_argument("--topic-partitions", metavar="topic1:1,topic2:0-3,topic3,topic4:5-,topic5:-3",
                   help="Comma separated list of topic-partition patterns: an optional topic regex, then after "
                        "':' a partition number, a range N-M (upper exclusive), N- or -M.")
    p.add_argument("--topic", help="The topic to get the offsets for. It also accepts a regular expression. "
                                   "If not present, all authorized topics are queried. "
                                   "Cannot be used if --topic-partitions is present.")
    p.add_argument("--partitions", metavar="partition ids",
                   help="Comma separated list of partition ids to get the offsets for. Cannot be used if "
                        "--topic-partitions is present.")
    p.add_argument("--time", default="latest",
                   metavar="<timestamp> / -1 or latest / -2 or earliest / -3 or max-timestamp / "
                           "-4 or earliest-local / -5 or latest-tiered",
                   help="timestamp of the offsets before that (default latest).")
    p.add_argument("--exclude-internal-topics", action="store_true",
                   help="By default, internal topics are included. If specified, internal topics are excluded.")
    add_command_config(p)
    p.set_defaults(tool=_get_offsets, client_id="GetOffsetShell")


def _topic_regex(raw: str) -> re.Pattern:
    try:
        return topic_include_list(raw)
    except ValueError as e:
        raise ToolError(str(e)) from None


def _timestamp(text: str) -> int:
    if text in _SPECS:
        return _SPECS[text]
    try:
        value = int(text)
    except ValueError:
        raise ToolError(f"Malformed time argument {text}. Please use -1 or latest / -2 or earliest / -3 or "
                        "max-timestamp / -4 or earliest-local / -5 or latest-tiered, or a specified long "
                        "format timestamp") from None
    if value == -6:   # earliest-pending-upload: ListOffsets v11 (Kafka 4.2), not served by pylog
        raise ToolError("earliest-pending-upload (-6) needs ListOffsets v11, which pylog does not serve")
    return value


def _rules(args) -> list[tuple[re.Pattern, object]]:
    """[(topic regex, partition predicate)]: a partition is asked for when any rule allows it."""
    if args.topic_partitions is not None:
        if args.topic is not None or args.partitions is not None:
            raise ToolError("--topic-partitions cannot be used with --topic or --partitions")
        rules = []
        for spec in args.topic_partitions.split(","):
            m = _RULE.fullmatch(spec)
            if m is None:
                raise ToolError(f"Invalid rule specification: {spec}")
            topic, exact, low, high = (g or None for g in m.groups())
            regex = _topic_regex(topic or ".*")
            if exact is not None:
                rules.append((regex, lambda p, n=int(exact): p == n))
            else:
                lo, hi = int(low) if low else 0, int(high) if high else _INT_MAX
                rules.append((regex, lambda p, lo=lo, hi=hi: lo <= p < hi))
        return rules
    wanted: set[int] = set()
    if args.partitions:
        try:
            wanted = {int(x) for x in args.partitions.split(",")}
        except ValueError:
            raise ToolError("--partitions expects a comma separated list of numeric partition ids, but "
                            f"received: {args.partitions}") from None
    return [(_topic_regex(args.topic or ".*"), lambda p: not wanted or p in wanted)]


def _get_offsets(args) -> int:
    try:
        rules = _rules(args)
        ts = _timestamp(args.time)
    except ToolError as e:
        print(f"Error occurred: {e}", file=sys.stderr)
        return 1
    with open_client(args) as client:
        topics = client.metadata(None).topics
        asked = [(name, p) for name, t in topics.items()
                 if not (args.exclude_internal_topics and t.is_internal)
                 for p in t.partitions
                 if any(rx.fullmatch(name) and allows(p) for rx, allows in rules)]
        if not asked:
            print("Error occurred: Could not match any topic-partitions with the specified filters", file=sys.stderr)
            return 1
        answers = client.list_offsets_many({tp: ts for tp in asked})
    for topic, partition in sorted(asked, key=lambda tp: f"{tp[0]}-{tp[1]}"):
        code, offset = answers[(topic, partition)]
        if code:
            print(f"Skip getting offsets for topic-partition {topic}-{partition} due to error: "
                  f"{error_for(code)}", file=sys.stderr)
        elif offset != -1:
            print(f"{topic}:{partition}:{offset}")
    return 0
