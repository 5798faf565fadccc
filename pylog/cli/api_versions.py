"""`pylog cluster api-versions`: kafka-broker-api-versions.sh (Kafka's
BrokerApiVersionsCommand).

    pylog cluster api-versions --bootstrap-server H:P [--command-config FILE]

For every broker in Metadata, its ApiVersions answer as Kafka's
NodeApiVersions.toString(true) prints it: `host:port (id: 1 rack: null
isFenced: false) -> (`, then one line per API in key order, `\tProduce(0): 0
to 11 [usable: 11],` (`[usable: N]` is the newest version both this client
and the broker speak; `UNSUPPORTED` for a client API the broker does not
advertise; `UNKNOWN(k)` for a key this client does not know), then `)`.
"This client" is pylog's protocol codecs (Kafka's 2024 schemas), and its
client APIs are the schemas served on the broker listener, as Kafka's
ApiKeys.clientApis(). Brokers come in java.util.HashMap order of their Node,
as the Java tool prints them.

One thread; blocking sockets (pylog's Client).
"""
from __future__ import annotations

from ..protocol.messages import REQUESTS
from .common import add_bootstrap, add_command_config, open_client
from .java_compat import java_hash_order, java_int32, java_string_hash

__all__ = ["add_api_versions_action"]

# Kafka's ApiKeys.clientApis() for the schemas pylog is generated from: the
# request schemas whose "listeners" include "broker".
CLIENT_APIS = (0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
               30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 55, 57,
               60, 61, 64, 65, 66, 68, 69, 71, 72, 74, 75, 76, 77, 78, 79, 80, 81, 83, 84, 85, 86, 87)


def add_api_versions_action(acts) -> None:
    a = acts.add_parser("api-versions", help="the API versions of every broker (kafka-broker-api-versions)",
                        description="This tool helps to retrieve broker version information.")
    add_bootstrap(a)
    add_command_config(a)
    a.set_defaults(tool=_api_versions)


def _name(key: int) -> str | None:
    try:
        return REQUESTS[key].__name__.removesuffix("Request")
    except (KeyError, IndexError, AttributeError):
        return None


def _node_hash(node_id: int, host: str, port: int) -> int:
    """org.apache.kafka.common.Node.hashCode() with rack null and isFenced false."""
    h = 31 + java_string_hash(host)
    h = java_int32(31 * h + node_id)
    h = java_int32(31 * h + port)
    h = java_int32(31 * h + 0)
    return java_int32(31 * h + 1237)      # Boolean.hashCode(false)


def format_versions(advertised: dict[int, tuple[int, int]]) -> str:
    lines = {}
    for key, (lo, hi) in advertised.items():
        name = _name(key)
        text = f"{name}({key}): " if name else f"UNKNOWN({key}): "
        text += str(lo) if lo == hi else f"{lo} to {hi}"
        if name:
            ours_lo, ours_hi = REQUESTS[key].VALID_VERSIONS
            if ours_hi < lo:
                text += " [unusable: node too new]"
            elif hi < ours_lo:
                text += " [unusable: node too old]"
            else:
                text += f" [usable: {min(ours_hi, hi)}]"
        lines[key] = text
    for key in CLIENT_APIS:
        lines.setdefault(key, f"{_name(key)}({key}): UNSUPPORTED")
    return "(\n\t" + ",\n\t".join(lines[k] for k in sorted(lines)) + "\n)"


def _api_versions(args) -> int:
    with open_client(args) as client:
        brokers = client.metadata([]).brokers
        order = java_hash_order(sorted(brokers), lambda b: _node_hash(b, brokers[b].host, brokers[b].port))
        for node in order:
            b = brokers[node]
            label = f"{b.host}:{b.port} (id: {node} rack: {b.rack if b.rack is not None else 'null'} isFenced: false)"
            try:
                with client.open_connection(b.host, b.port) as conn:
                    text = format_versions(conn.api_versions)
            except OSError as e:
                print(f"{label} -> ERROR: {e}")
                continue
            print(f"{label} -> {text}")
    return 0
