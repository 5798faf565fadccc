"""What the console's pages show and change, read and written through
pylog's own client (pylog.client and the functions of the `pylog` tools),
so the console works against any Kafka cluster. Each function takes a
Client and returns plain data for a template; nothing here knows HTTP.

Errors a page can explain (an unknown topic, a group that is not empty, a
bad offset) are raised as ConsoleError with an HTTP status; a broker's
error reaches the page as the pylog exception (its Kafka error name).
"""
from __future__ import annotations

import json
import time
import types
from dataclasses import dataclass, field

from .. import _engine
from ..client.client import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from ..client.errors import check, error_for
from ..client.partitioner import partition_for_key
from ..client.records import consumed_records, next_fetch_offset
from ..errors import PylogError
from ..protocol.error_codes import Errors
from ..protocol.messages import (
    DescribeTransactionsRequest,
    ListTransactionsRequest,
)

__all__ = [
    "ConsoleError",
    "browse_messages",
    "cluster_overview",
    "create_topic",
    "group_detail",
    "list_groups",
    "produce_message",
    "reset_group_offsets",
    "set_topic_config",
    "topic_detail",
    "topics_overview",
    "transactions_overview",
]

# A page of the message browser holds at most this many records; a key
# search reads at most SEARCH_SCAN records per partition (it is a scan of
# the log over the wire, as any Kafka UI's is).
PAGE_LIMIT = 200
SEARCH_SCAN = 10000
SHOWN_VALUE_BYTES = 64 << 10
INACTIVE_GROUP_STATES = ("Empty", "Dead")


class ConsoleError(Exception):
    """A request the console refuses or cannot serve, with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _api_name(key: int) -> str:
    from ..protocol.messages import REQUESTS
    try:
        return REQUESTS[key].__name__.removesuffix("Request")
    except (KeyError, AttributeError, IndexError):
        return f"api {key}"


# --- cluster ------------------------------------------------------------------


def cluster_overview(client) -> dict:
    md = client.metadata(None)
    brokers = []
    for node_id in sorted(md.brokers):
        b = md.brokers[node_id]
        entry = {"id": node_id, "host": b.host, "port": b.port, "rack": b.rack,
                 "controller": node_id == md.controller_id, "apis": [], "error": None}
        try:
            conn = client.connection(node_id)
            entry["apis"] = [(k, _api_name(k), lo, hi) for k, (lo, hi) in sorted(conn.api_versions.items())]
        except (PylogError, OSError) as e:
            entry["error"] = str(e)
        brokers.append(entry)
    internal = sum(1 for t in md.topics.values() if t.is_internal)
    partitions = sum(len(t.partitions) for t in md.topics.values())
    return {"cluster_id": md.cluster_id, "controller_id": md.controller_id, "brokers": brokers,
            "topic_count": len(md.topics), "internal_count": internal, "partition_count": partitions}


# --- topics -------------------------------------------------------------------


def _log_sizes(client, brokers) -> dict[tuple[str, int], int]:
    """{(topic, partition): bytes} from each broker's DescribeLogDirs (the
    leader's replica when several report one)."""
    from ..cli.log_dirs import _log_dirs
    sizes: dict[tuple[str, int, int], int] = {}
    for node in brokers:
        try:
            results = _log_dirs(client, node)
        except (PylogError, OSError):
            continue  # sizes are extra: the page still shows the rest
        for r in results:
            if r.error_code:
                continue
            for t in r.topics:
                for p in t.partitions:
                    if not p.is_future_key:
                        sizes[(t.name, p.partition_index, node)] = p.partition_size
    return sizes


def topics_overview(client) -> list[dict]:
    md = client.metadata(None)
    sizes = _log_sizes(client, sorted(md.brokers))
    out = []
    for name in sorted(md.topics):
        t = md.topics[name]
        parts = t.partitions.values()
        size = sum(sizes.get((name, p.partition, p.leader_id), 0) for p in parts)
        out.append({"name": name, "internal": t.is_internal, "partitions": len(t.partitions),
                    "replication": len(next(iter(parts)).replicas) if parts else 0,
                    "under_replicated": sum(1 for p in parts if len(p.isr) < len(p.replicas)),
                    "size": size, "error": t.error_code})
    return out


def _topic(client, name: str):
    t = client.metadata([name]).topics.get(name)
    if t is None or t.error_code == Errors.UNKNOWN_TOPIC_OR_PARTITION:
        raise ConsoleError(404, f"There is no topic {name!r}.")
    check(t.error_code, f"topic {name!r}")
    return t


def topic_detail(client, name: str) -> dict:
    t = _topic(client, name)
    tps = [(name, p) for p in sorted(t.partitions)]
    starts = client.list_offsets_many({tp: EARLIEST_TIMESTAMP for tp in tps})
    ends = client.list_offsets_many({tp: LATEST_TIMESTAMP for tp in tps})
    sizes = _log_sizes(client, sorted({r for p in t.partitions.values() for r in p.replicas}))
    partitions = []
    for _, index in tps:
        p = t.partitions[index]
        s_err, start = starts[(name, index)]
        e_err, end = ends[(name, index)]
        partitions.append({
            "partition": index, "leader": p.leader_id, "replicas": p.replicas, "isr": p.isr,
            "offline": p.offline_replicas, "start": start if not s_err else None,
            "end": end if not e_err else None, "size": sizes.get((name, index, p.leader_id)),
            "under_replicated": len(p.isr) < len(p.replicas)})
    configs = sorted(client.describe_configs(name).values(), key=lambda e: e.name)
    messages = sum(p["end"] - p["start"] for p in partitions
                   if p["end"] is not None and p["start"] is not None)
    return {"name": name, "topic_id": t.topic_id, "internal": t.is_internal, "partitions": partitions,
            "configs": configs, "messages": messages,
            "size": sum(p["size"] or 0 for p in partitions)}


def _int_field(text: str, what: str, low: int | None = None) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ConsoleError(400, f"{what} must be a whole number, not {text!r}.") from None
    if low is not None and value < low:
        raise ConsoleError(400, f"{what} must be at least {low}, not {value}.")
    return value


def parse_config_lines(text: str) -> dict[str, str]:
    """'key=value' lines (blank lines ignored) -> dict; a line without '='
    is refused rather than dropped."""
    out = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConsoleError(400, f"Config lines are key=value; {line!r} is not.")
        out[key.strip()] = value.strip()
    return out


def create_topic(client, name: str, partitions: str, replication: str, configs: str) -> None:
    name = (name or "").strip()
    if not name:
        raise ConsoleError(400, "A topic needs a name.")
    count = _int_field(partitions or "-1", "Partitions")
    factor = _int_field(replication or "-1", "Replication factor")
    client.create_topics(name, count, factor, parse_config_lines(configs))
    client.wait_for_leaders(name, timeout=client.timeout)


def set_topic_config(client, topic: str, key: str, value: str | None) -> None:
    """Set (value given) or remove (value None) one topic config, keeping
    the other overrides: AlterConfigs replaces the whole set, as
    `pylog topics alter` does it."""
    _topic(client, topic)
    key = (key or "").strip()
    if not key:
        raise ConsoleError(400, "Which config? The key is empty.")
    merged = client.dynamic_configs(topic)
    if value is None:
        merged.pop(key, None)
    else:
        merged[key] = value
    client.alter_configs(topic, merged)


# --- messages -----------------------------------------------------------------


@dataclass
class Message:
    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key: str | None
    value: str | None
    pretty: str | None      # the value as indented JSON when it parses as JSON
    headers: list = field(default_factory=list)
    value_size: int = 0

    @property
    def time_text(self) -> str:
        if self.timestamp < 0:
            return ""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.timestamp / 1000)) + \
            f".{self.timestamp % 1000:03d}Z"


def _text(b, limit: int | None = None) -> str | None:
    """bytes as text (undecodable bytes as \\x escapes); beyond limit bytes,
    cut with a note of the full size, so one huge record cannot make a page
    of megabytes."""
    if b is None:
        return None
    b = memoryview(b)
    if limit is not None and len(b) > limit:
        return bytes(b[:limit]).decode("utf-8", errors="backslashreplace") + f"… ({len(b)} bytes in all)"
    return bytes(b).decode("utf-8", errors="backslashreplace")


def _pretty(text: str | None) -> str | None:
    if not text or text.lstrip()[:1] not in ("{", "["):
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return None


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds, or an ISO-8601 date-time (UTC unless it names a zone)."""
    import datetime
    text = (text or "").strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConsoleError(400, f"Timestamp {text!r} is neither epoch milliseconds nor an ISO-8601 "
                                "date-time like 2026-12-04T16:00:00Z.") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return int(dt.timestamp() * 1000)


def _read(client, topic: str, partition: int, offset: int, end: int, limit: int, match=None) -> list:
    """Records of topic-partition from offset (below end), at most limit,
    those whose key passes match (None: all), reading at most SEARCH_SCAN."""
    out = []
    scanned = 0
    while offset < end and len(out) < limit and scanned < SEARCH_SCAN:
        err, _hw, _start, records = client.fetch(topic, partition, offset, max_wait_ms=0)
        check(err, f"fetch {topic}-{partition} at offset {offset}")
        got = 0
        for r in consumed_records(partition, records, offset):
            if r.offset >= end:
                break
            got += 1
            scanned += 1
            key = _text(r.key)
            if match is not None and (key is None or match not in key):
                continue
            value = _text(r.value, SHOWN_VALUE_BYTES)
            out.append(Message(partition, r.offset, r.timestamp, r.timestamp_type, key, value,
                               _pretty(value), [(k, _text(v)) for k, v in r.headers],
                               0 if r.value is None else len(r.value)))
            if len(out) >= limit:
                break
        following = next_fetch_offset(records, offset)
        if following == offset and not got:
            break  # nothing readable here (an empty fetch: the end, or only markers below end)
        offset = following
    return out


def browse_messages(client, topic: str, params: dict) -> dict:
    """The browser's query: partition (or all), where to start (offset,
    timestamp, or the last `limit` records), how many, and a key substring."""
    t = _topic(client, topic)
    partitions = sorted(t.partitions)
    part_text = (params.get("partition") or "").strip()
    if part_text in ("", "all"):
        chosen = partitions
    else:
        p = _int_field(part_text, "Partition", 0)
        if p not in t.partitions:
            raise ConsoleError(400, f"Topic {topic!r} has no partition {p} (it has {len(partitions)}).")
        chosen = [p]
    limit = min(_int_field(params.get("limit") or "50", "Limit", 1), PAGE_LIMIT)
    mode = params.get("from") or "latest"
    key = params.get("key") or None
    tps = [(topic, p) for p in chosen]
    starts = {tp[1]: o for tp, (e, o) in client.list_offsets_many({tp: EARLIEST_TIMESTAMP for tp in tps}).items()
              if not e}
    ends = {tp[1]: o for tp, (e, o) in client.list_offsets_many({tp: LATEST_TIMESTAMP for tp in tps}).items()
            if not e}
    begin: dict[int, int] = {}
    if mode == "offset":
        offset = _int_field(params.get("offset", ""), "Offset", 0)
        begin = {p: max(offset, starts.get(p, 0)) for p in chosen}
    elif mode == "timestamp":
        ts = parse_timestamp(params.get("timestamp", ""))
        found = client.list_offsets_many({tp: ts for tp in tps})
        begin = {p: (o if not e and o >= 0 else ends.get(p, 0)) for (_, p), (e, o) in found.items()}
    elif mode == "earliest":
        begin = dict(starts)
    elif mode == "latest":
        # The newest `limit` of each partition (a key search looks back further).
        back = SEARCH_SCAN if key else limit
        begin = {p: max(starts.get(p, 0), ends.get(p, 0) - back) for p in chosen}
    else:
        raise ConsoleError(400, f"Start from 'earliest', 'latest', 'offset' or 'timestamp', not {mode!r}.")
    messages = []
    for p in chosen:
        if p in begin and p in ends:
            messages += _read(client, topic, p, begin[p], ends[p], limit, key)
    if mode == "latest":
        messages.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
        messages = messages[-limit:]
    else:
        messages.sort(key=lambda m: (m.timestamp, m.partition, m.offset) if len(chosen) > 1
                      else (m.offset,))
        messages = messages[:limit]
    older = newer = None
    if len(chosen) == 1 and messages and not key:
        # Paging within one partition: the `limit` records before the first
        # shown, and those after the last.
        p = chosen[0]
        if messages[0].offset > starts.get(p, 0):
            older = max(starts.get(p, 0), messages[0].offset - limit)
        if messages[-1].offset + 1 < ends.get(p, 0):
            newer = messages[-1].offset + 1
    return {"topic": topic, "partitions": partitions, "messages": messages, "limit": limit,
            "starts": starts, "ends": ends, "older": older, "newer": newer,
            "partition": chosen[0] if len(chosen) == 1 else None}


def parse_header_lines(text: str) -> list[tuple[str, bytes]]:
    out = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise ConsoleError(400, f"Header lines are name: value; {line!r} is not.")
        out.append((key.strip(), value.strip().encode()))
    return out


def produce_message(client, topic: str, form: dict) -> tuple[int, int]:
    """One record from the form, acks=all: (partition, offset). The key's
    partition is Kafka's murmur2 one when no partition is chosen."""
    t = _topic(client, topic)
    count = len(t.partitions)
    key = form.get("key") or None
    part_text = (form.get("partition") or "").strip()
    if part_text:
        partition = _int_field(part_text, "Partition", 0)
        if partition not in t.partitions:
            raise ConsoleError(400, f"Topic {topic!r} has no partition {partition}.")
    elif key is not None:
        partition = partition_for_key(key.encode(), count)
    else:
        partition = 0
    headers = parse_header_lines(form.get("headers", ""))
    value = form.get("value")
    batch = _engine.encode_batch([None if value is None else value.encode()],
                                 keys=[None if key is None else key.encode()], headers=[headers])
    err, base = client.produce(topic, partition, batch, acks=-1)
    check(err, f"produce to {topic}-{partition}")
    return partition, base


# --- consumer groups ----------------------------------------------------------


def list_groups(client) -> list[dict]:
    out = []
    for g in client.list_groups():
        out.append({"id": g.group_id, "protocol_type": g.protocol_type or "", "state": g.state,
                    "type": g.group_type})
    return out


def _group_state(client, group: str) -> tuple[str, object]:
    """(state, description) as the client's describe_group finds the group:
    ConsumerGroupDescribe for a KIP-848 consumer group (group_type
    "consumer"), DescribeGroups for a classic one (Kafka's coordinator calls
    a consumer group Dead there)."""
    desc = client.describe_group(group)
    return desc.state, desc


def group_detail(client, group: str) -> dict:
    state, desc = _group_state(client, group)
    if state == "Dead":
        raise ConsoleError(404, f"There is no consumer group {group!r}.")
    if desc.group_type == "consumer":
        return _consumer_group_detail(client, group, desc)
    committed = client.committed_offsets(group)
    members = []
    owner = {}
    for m in desc.members:
        try:
            tps = sorted(m.assigned_partitions()) if desc.protocol_type == "consumer" else []
        except Exception:  # noqa: BLE001 - an assignment in another protocol: shown without partitions
            tps = []
        for tp in tps:
            owner[tp] = m.member_id
        members.append({"id": m.member_id, "instance": m.group_instance_id, "client_id": m.client_id,
                        "host": m.client_host, "assignment": tps})
    rows = _lag_rows(client, committed, owner)
    return {"id": group, "state": desc.state, "protocol_type": desc.protocol_type,
            "protocol": desc.protocol, "members": members, "offsets": rows,
            "coordinator": desc.coordinator, "total_lag": sum(r["lag"] or 0 for r in rows),
            "topics": sorted({r["topic"] for r in rows})}


def _consumer_group_detail(client, group: str, g) -> dict:
    """group_detail of a KIP-848 consumer group (ConsumerGroupDescribe)."""
    committed = client.committed_offsets(group)
    members, owner = [], {}
    for m in g.members:
        tps = sorted(m.partitions or ())
        for tp in tps:
            owner[tp] = m.member_id
        members.append({"id": m.member_id, "instance": m.group_instance_id, "client_id": m.client_id,
                        "host": m.client_host, "assignment": tps})
    rows = _lag_rows(client, committed, owner)
    return {"id": group, "state": g.state, "protocol_type": "consumer (KIP-848)",
            "protocol": g.protocol, "members": members, "offsets": rows,
            "coordinator": g.coordinator, "total_lag": sum(r["lag"] or 0 for r in rows),
            "topics": sorted({r["topic"] for r in rows})}


def _lag_rows(client, committed: dict, owner: dict) -> list[dict]:
    """One row per partition committed or assigned: committed offset, log
    end (ListOffsets latest), lag, owning member."""
    tps = sorted(set(committed) | set(owner))
    ends = client.list_offsets_many({tp: LATEST_TIMESTAMP for tp in tps}) if tps else {}
    rows = []
    for tp in tps:
        err, end = ends.get(tp, (-1, -1))
        end = end if not err and end >= 0 else None
        current = committed.get(tp)
        lag = end - current if end is not None and current is not None else None
        rows.append({"topic": tp[0], "partition": tp[1], "committed": current, "end": end, "lag": lag,
                     "member": owner.get(tp)})
    return rows


def reset_group_offsets(client, group: str, form: dict) -> dict:
    """Kafka's reset-offsets for one topic (or every committed partition) of
    an inactive group, computed and committed by `pylog groups`' own code."""
    from ..cli.groups import _new_offsets, parse_datetime
    state, _desc = _group_state(client, group)
    if state not in INACTIVE_GROUP_STATES:
        raise ConsoleError(409, f"Offsets can only be reset while the group {group!r} has no active "
                                f"members; its state is {state}. Stop its consumers first.")
    topic = (form.get("topic") or "").strip()
    if topic:
        tps = [(topic, p) for p in _topic(client, topic).partitions]
    else:
        tps = sorted(client.committed_offsets(group))
    if not tps:
        raise ConsoleError(400, f"Group {group!r} has no committed offsets to reset; name a topic.")
    to = form.get("to") or ""
    args = types.SimpleNamespace(to_earliest=to == "earliest", to_latest=to == "latest", to_current=False,
                                 to_offset=None, to_datetime=None, shift_by=None)
    if to == "offset":
        args.to_offset = _int_field(form.get("offset", ""), "Offset", 0)
    elif to == "shift":
        args.shift_by = _int_field(form.get("shift", ""), "Shift")
    elif to == "datetime":
        text = (form.get("datetime") or "").strip()
        try:
            args.to_datetime = parse_datetime(text if text[-1:] == "Z" or "+" in text[10:] else text + "Z")
        except Exception as e:  # noqa: BLE001 - argparse's error type: the message is the user's answer
            raise ConsoleError(400, str(e)) from None
    elif to not in ("earliest", "latest"):
        raise ConsoleError(400, f"Reset to 'earliest', 'latest', 'offset', 'shift' or 'datetime', not {to!r}.")
    try:
        plan = _new_offsets(args, client, group, tps)
    except SystemExit as e:  # the tool's way of refusing (e.g. a shift without committed offsets)
        raise ConsoleError(400, str(e.code).removeprefix("Error: ")) from None
    client.commit_offsets(group, plan)
    return plan


# --- transactions -------------------------------------------------------------


def transactions_overview(client) -> list[dict]:
    """Every transactional id the coordinators know (ListTransactions on each
    broker), with what its coordinator's DescribeTransactions says."""
    from ..cli.transactions import _coordinator, _request
    md = client.metadata([])
    out = []
    for node in sorted(md.brokers):
        resp = _request(client.connection(node), ListTransactionsRequest(), 66)
        check(resp.error_code, f"list transactions on broker {node}")
        for t in resp.transaction_states:
            row = {"id": t.transactional_id, "coordinator": node, "producer_id": t.producer_id,
                   "state": t.transaction_state, "epoch": None, "timeout_ms": None, "start": None,
                   "partitions": [], "error": None}
            try:
                _node, conn = _coordinator(client, t.transactional_id, 1)
                d = _request(conn, DescribeTransactionsRequest(transactional_ids=[t.transactional_id]), 65)
                s = next(s for s in d.transaction_states if s.transactional_id == t.transactional_id)
                if s.error_code:
                    raise error_for(s.error_code)
                row.update(epoch=s.producer_epoch, timeout_ms=s.transaction_timeout_ms,
                           start=s.transaction_start_time_ms if s.transaction_start_time_ms >= 0 else None,
                           partitions=[f"{x.topic}-{p}" for x in s.topics for p in sorted(x.partitions)])
            except (PylogError, OSError, StopIteration) as e:
                row["error"] = str(e) or type(e).__name__
            out.append(row)
    return sorted(out, key=lambda r: r["id"])
