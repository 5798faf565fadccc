"""`pylog delete-records`: kafka-delete-records.sh (Kafka's DeleteRecordsCommand).

    pylog delete-records --bootstrap-server H:P --offset-json-file F [--command-config FILE]

F is Kafka's JSON: {"partitions": [{"topic": "foo", "partition": 1, "offset": 1}], "version": 1}
(version 1 when absent; offset -1 means the high watermark). Prints Kafka's
lines: `Executing records delete operation`, `Records delete operation
completed:`, then per partition `partition: foo-1\tlow_watermark: N` or
`partition: foo-1\terror: <exception>`, in java.util.HashMap order of the
partitions as the Java tool prints them.

One thread; blocking sockets (pylog's Client).
"""
from __future__ import annotations

import json
import sys

from ..errors import PylogError
from ..protocol.messages import DeleteRecordsRequest
from .common import add_bootstrap, add_command_config, open_client
from .java_compat import exception_text, java_hash_order, java_topic_partition_hash

__all__ = ["add_delete_records_parser"]


def add_delete_records_parser(sub) -> None:
    p = sub.add_parser("delete-records", help="delete records below an offset (kafka-delete-records)",
                       description="This tool helps to delete records of the given partitions down to the "
                                   "specified offset.")
    add_bootstrap(p)
    add_command_config(p)
    p.add_argument("--offset-json-file", required=True, metavar="Offset json file path",
                   help='REQUIRED: The JSON file with offset per partition. The format to use is: '
                        '{"partitions": [{"topic": "foo", "partition": 1, "offset": 1}], "version": 1}')
    p.set_defaults(tool=_delete, client_id="delete-records-tool")


def _plan(text: str) -> dict[tuple[str, int], int]:
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("The input string is not a valid JSON") from None
    version = data.get("version", 1) if isinstance(data, dict) else None
    if version != 1:
        raise ValueError(f"Not supported version field value {version}")
    if "partitions" not in data:
        raise ValueError("Missing partitions field")
    seen: dict[tuple[str, int], list[int]] = {}
    for e in data["partitions"]:
        seen.setdefault((str(e["topic"]), int(e["partition"])), []).append(int(e["offset"]))
    dups = [tp for tp, offsets in seen.items() if len(offsets) > 1]
    if dups:
        raise ValueError("Offset json file contains duplicate topic partitions: "
                         + ",".join(f"{t}-{p}" for t, p in dups))
    return {tp: offsets[0] for tp, offsets in seen.items()}


def _delete(args) -> int:
    try:
        with open(args.offset_json_file) as f:
            plan = _plan(f.read())
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(e, file=sys.stderr)
        return 1
    print("Executing records delete operation")
    results: dict[tuple[str, int], str] = {}
    with open_client(args) as client:
        client.metadata(sorted({t for t, _ in plan}))
        by_leader: dict[int, dict[str, list]] = {}
        for (topic, partition), offset in plan.items():
            try:
                leader = client.leader_for(topic, partition)
            except PylogError as e:    # printed for that partition, as Kafka's tool does
                code = getattr(e, "error_code", 3)
                results[(topic, partition)] = f"error: {exception_text(code)}"
                continue
            by_leader.setdefault(leader, {}).setdefault(topic, []).append(
                DeleteRecordsRequest.DeleteRecordsPartition(partition_index=partition, offset=offset))
        for node, topics in by_leader.items():
            resp = client.connection(node).request(DeleteRecordsRequest(timeout_ms=30000, topics=[
                DeleteRecordsRequest.DeleteRecordsTopic(name=t, partitions=ps) for t, ps in topics.items()]))
            for t in resp.topics:
                for p in t.partitions:
                    results[(t.name, p.partition_index)] = (
                        f"error: {exception_text(p.error_code)}" if p.error_code
                        else f"low_watermark: {p.low_watermark}")
    print("Records delete operation completed:")
    for tp in java_hash_order(list(plan), java_topic_partition_hash):
        print(f"partition: {tp[0]}-{tp[1]}\t{results.get(tp, 'error: ' + exception_text(3))}")
    return 0
