"""`pylog leader-election`: kafka-leader-election.sh (Kafka's LeaderElectionCommand).

    pylog leader-election --bootstrap-server H:P --election-type preferred|unclean
        (--topic T --partition P | --all-topic-partitions | --path-to-json-file F)
        [--command-config FILE]

Sends ElectLeaders to the active controller and prints Kafka's lines:
`Successfully completed leader election (PREFERRED) for partitions t-0, t-1`,
`Valid replica already elected for partitions t-2` (ELECTION_NOT_NEEDED), and
per failure `Error completing leader election (PREFERRED) for partition: t-3:
<exception>`, then exits 1 with `N replica(s) could not be elected`. The JSON
file is Kafka's: {"partitions": [{"topic": "foo", "partition": 1}, ...]},
duplicates refused.

One thread; blocking sockets (pylog's Client).
"""
from __future__ import annotations

import json
import sys

from ..client.errors import error_for
from ..protocol.error_codes import Errors
from ..protocol.messages import ElectLeadersRequest
from .common import add_bootstrap, add_command_config, open_client
from .java_compat import exception_text

__all__ = ["add_leader_election_parser"]

_MAX_VERSION = 2
_TYPES = {"preferred": 0, "unclean": 1}


def add_leader_election_parser(sub) -> None:
    p = sub.add_parser("leader-election", help="elect partition leaders: preferred or unclean (kafka-leader-election)",
                       description="This tool attempts to elect a new leader for a set of topic partitions. "
                                   "The type of elections supported are preferred replicas and unclean replicas.")
    add_bootstrap(p)
    add_command_config(p)
    p.add_argument("--election-type", required=True, type=str.lower, choices=sorted(_TYPES),
                   help='Type of election to attempt: "preferred" elects the preferred replica if it is not the '
                        'leader; "unclean" elects a live replica only when the partition has no leader. REQUIRED.')
    p.add_argument("--topic", help="Name of topic for which to perform an election. "
                                   "Not allowed if --path-to-json-file or --all-topic-partitions is specified.")
    p.add_argument("--partition", type=int, help="Partition id for which to perform an election. "
                                                 "REQUIRED if --topic is specified.")
    p.add_argument("--all-topic-partitions", action="store_true",
                   help="Perform election on all of the eligible topic partitions based on the type of election.")
    p.add_argument("--path-to-json-file", metavar="Path to JSON file",
                   help='The JSON file with the list of partitions: {"partitions": [{"topic": "foo", '
                        '"partition": 1}]}. Not allowed if --all-topic-partitions or --topic flags are specified.')
    p.set_defaults(tool=_elect, client_id="leader-election-tool")


def _partitions(args) -> list[tuple[str, int]] | None:
    """The partitions asked for, or None for --all-topic-partitions; ValueError
    with Kafka's message for a bad combination or file."""
    chosen = [o for o, given in (("--topic", args.topic is not None),
                                 ("--all-topic-partitions", args.all_topic_partitions),
                                 ("--path-to-json-file", args.path_to_json_file is not None)) if given]
    if len(chosen) != 1:
        raise ValueError("One and only one of the following options is required: "
                         "--topic, --all-topic-partitions, --path-to-json-file")
    if args.topic is not None and args.partition is None:
        raise ValueError("Missing required option(s): --partition")
    if args.topic is None and args.partition is not None:
        raise ValueError("Option --partition is only allowed if --topic is used")
    if args.topic is not None:
        return [(args.topic, args.partition)]
    if args.all_topic_partitions:
        return None
    with open(args.path_to_json_file) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "partitions" not in data:
        raise ValueError('Replica election data is missing "partitions" field')
    parts = [(str(e["topic"]), int(e["partition"])) for e in data["partitions"]]
    dups = sorted({tp for tp in parts if parts.count(tp) > 1})
    if dups:
        raise ValueError("Replica election data contains duplicate partitions: "
                         + ",".join(f"{t}-{p}" for t, p in dups))
    return parts


def _elect(args) -> int:
    try:
        wanted = _partitions(args)
    except (ValueError, KeyError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    kind = args.election_type.upper()
    topics: dict[str, list[int]] = {}
    for t, p in wanted or ():
        topics.setdefault(t, []).append(p)
    req = ElectLeadersRequest(election_type=_TYPES[args.election_type], timeout_ms=60000, topic_partitions=None
                              if wanted is None else [ElectLeadersRequest.TopicPartitions(topic=t, partitions=ps)
                                                      for t, ps in topics.items()])
    with open_client(args) as client:
        resp = client.controller_connection().request(req, api_version=_MAX_VERSION)
    if resp.error_code:
        if resp.error_code == Errors.CLUSTER_AUTHORIZATION_FAILED:
            print("Not authorized to perform leader election")
            return 1
        raise error_for(resp.error_code)
    done, noop, failed = [], [], []
    for r in resp.replica_election_results:
        for pr in r.partition_result:
            name = f"{r.topic}-{pr.partition_id}"
            if pr.error_code == 0:
                done.append(name)
            elif pr.error_code == Errors.ELECTION_NOT_NEEDED:
                noop.append(name)
            else:
                failed.append((name, exception_text(pr.error_code, pr.error_message)))
    if done:
        print(f"Successfully completed leader election ({kind}) for partitions {', '.join(done)}")
    if noop:
        print(f"Valid replica already elected for partitions {', '.join(noop)}")
    for name, err in failed:
        print(f"Error completing leader election ({kind}) for partition: {name}: {err}")
    if failed:
        print(f"{len(failed)} replica(s) could not be elected", file=sys.stderr)
        return 1
    return 0
