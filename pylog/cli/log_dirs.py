"""`pylog log-dirs --describe`: kafka-log-dirs.sh (Kafka's LogDirsCommand).

    pylog log-dirs --describe --bootstrap-server H:P [--broker-list 0,1]
        [--topic-list t1,t2] [--command-config FILE]

Asks each broker (every broker of the cluster, or those of --broker-list,
which must all exist) with DescribeLogDirs for all its replicas, and prints
what Kafka's tool prints: `Querying brokers for log directories
information`, `Received log directory information from brokers 0,1`, then
one line of JSON, `{"brokers":[{"broker":0,"logDirs":[{"partitions":[...],
"error":null,"logDir":"/data"}]}],"version":1}`, partitions as
`{"partition":"t-0","size":N,"offsetLag":N,"isFuture":false}` filtered by
--topic-list, a directory's error as the Java exception's class name. The
Java tool builds its JSON from hash maps, so its keys and list items come in
java.util.HashMap's order; java_hash_order reproduces that order so the
output is byte for byte the same.

One thread; blocking sockets (pylog's Client).
"""
from __future__ import annotations

import json
import sys

from ..client.errors import error_for
from ..errors import PylogError
from ..protocol.errors import ProtocolError
from ..protocol.error_codes import Errors
from ..protocol.messages import DescribeLogDirsRequest
from .common import add_bootstrap, add_command_config, open_client
from .java_compat import exception_class, java_hash_order, java_int32, java_string_hash, java_topic_partition_hash

__all__ = ["add_log_dirs_parser"]

_API_KEY, _MAX_VERSION = 35, 4
_ERRORS = (PylogError, ProtocolError, OSError)


def add_log_dirs_parser(sub) -> None:
    p = sub.add_parser("log-dirs", help="query the log directories of brokers (kafka-log-dirs)",
                       description="This tool helps to query log directory usage on the specified brokers.")
    add_bootstrap(p)
    add_command_config(p)
    p.add_argument("--describe", action="store_true", required=True,
                   help="Describe the specified log directories on the specified brokers.")
    p.add_argument("--topic-list", default="", metavar="Topic list",
                   help='The list of topics to be queried in the form "topic1,topic2,topic3". '
                        "All topics will be queried if no topic list is specified")
    p.add_argument("--broker-list", default="", metavar="Broker list",
                   help='The list of brokers to be queried in the form "0,1,2". '
                        "All brokers in the cluster will be queried if no broker list is specified")
    p.set_defaults(tool=_describe, client_id="log-dirs-tool")   # Kafka's tool's client.id


def _describe(args) -> int:
    topics = {t for t in args.topic_list.split(",") if t}
    try:
        wanted = [int(b) for b in args.broker_list.split(",") if b]
    except ValueError:
        print(f"ERROR: --broker-list must be broker ids separated by commas: {args.broker_list}", file=sys.stderr)
        return 1
    with open_client(args) as client:
        cluster = sorted(client.metadata([]).brokers)
        missing = [b for b in wanted if b not in cluster]
        if missing:
            print("ERROR: The given brokers do not exist from --broker-list: "
                  f"{_join(missing)}. Current existent brokers: {_join(cluster)}", file=sys.stderr)
            return 1
        brokers = [b for b in cluster if not wanted or b in wanted]
        print("Querying brokers for log directories information")
        by_broker = {}
        for node in brokers:
            try:
                by_broker[node] = _log_dirs(client, node)
            except _ERRORS as e:
                print(f"Error while describing the log directories of broker {node}: {e}", file=sys.stderr)
                return 1
    print(f"Received log directory information from brokers {_join(brokers)}")
    print(_json(by_broker, topics))
    return 0


def _log_dirs(client, node: int) -> list:
    conn = client.connection(node)
    lo, hi = conn.api_versions.get(_API_KEY, (0, -1))
    version = min(hi, _MAX_VERSION)
    if version < lo:
        raise error_for(Errors.UNSUPPORTED_VERSION, f"broker {node} does not serve DescribeLogDirs")
    resp = conn.request(DescribeLogDirsRequest(topics=None), api_version=version)
    if version >= 3 and resp.error_code:
        raise error_for(resp.error_code, f"broker {node}")
    return resp.results


def _exception(code: int):
    return None if code == 0 else exception_class(code)


def _json(by_broker: dict, topics: set) -> str:
    brokers = []
    for broker in java_hash_order(list(by_broker), java_int32):
        dirs = []
        results = {r.log_dir: r for r in by_broker[broker]}
        for log_dir in java_hash_order(list(results), java_string_hash):
            r = results[log_dir]
            parts = [(t.name, p) for t in r.topics for p in t.partitions if not topics or t.name in topics]
            parts = java_hash_order(parts, lambda tp: java_topic_partition_hash((tp[0], tp[1].partition_index)))
            dirs.append(_java_map({
                "logDir": log_dir,
                "error": _exception(r.error_code),
                "partitions": [_java_map({"partition": f"{name}-{p.partition_index}",
                                          "size": p.partition_size, "offsetLag": p.offset_lag,
                                          "isFuture": p.is_future_key}) for name, p in parts],
            }))
        brokers.append(_java_map({"broker": broker, "logDirs": dirs}))
    return json.dumps(_java_map({"version": 1, "brokers": brokers}), separators=(",", ":"))


def _join(ids) -> str:
    return ",".join(str(i) for i in java_hash_order(list(ids), java_int32))


def _java_map(d: dict) -> dict:
    return {k: d[k] for k in java_hash_order(list(d), java_string_hash)}
