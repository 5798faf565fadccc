"""`pylog transactions list|describe|describe-producers|find-hanging|abort`:
kafka-transactions.sh over the Kafka protocol (ListTransactions on every
broker, FindCoordinator key_type 1 + DescribeTransactions, DescribeProducers
on the partition's leader, WriteTxnMarkers to abort a hanging transaction).
find-hanging is the Java tool's search: the open transactions of the
partitions' producer states older than --max-transaction-timeout whose
producer id no coordinator lists, or whose coordinator does not count the
partition in the transaction.

Option names, table headers and the "None" for an absent value are
kafka-transactions.sh's; its tables are columns padded to the widest value,
each followed by a tab. Errors go to stderr as one line in the Java tool's
words ("Failed to ...: <reason>.") with exit code 1.
"""
from __future__ import annotations

import sys
import time

from ..client.errors import error_for
from ..errors import PylogError
from ..protocol.errors import ProtocolError
from ..client.wire import Connection
from ..protocol.error_codes import Errors
from ..protocol.messages import (
    DescribeProducersRequest,
    DescribeTransactionsRequest,
    FindCoordinatorRequest,
    ListTransactionsRequest,
    WriteTxnMarkersRequest,
)
from .common import action_parsers, open_client

__all__ = ["add_transactions_parser", "pretty_table"]

LIST_HEADERS = ("TransactionalId", "Coordinator", "ProducerId", "TransactionState")
DESCRIBE_HEADERS = ("CoordinatorId", "TransactionalId", "ProducerId", "ProducerEpoch", "TransactionState",
                    "TransactionTimeoutMs", "CurrentTransactionStartTimeMs", "TransactionDurationMs",
                    "TopicPartitions")
PRODUCERS_HEADERS = ("ProducerId", "ProducerEpoch", "LatestCoordinatorEpoch", "LastSequence",
                     "LastTimestamp", "CurrentTransactionStartOffset")
HANGING_HEADERS = ("Topic", "Partition", "ProducerId", "ProducerEpoch", "CoordinatorEpoch", "StartOffset",
                   "LastTimestamp", "Duration(min)")
# The Java tool's batch: partitions per DescribeProducers request.
MAX_BATCH_SIZE = 500

# api key -> the highest version this tool builds.
_MAX_VERSIONS = {10: 3, 27: 1, 61: 0, 65: 0, 66: 1}


# What a step may fail with: a broker's answer, a lost connection, a bad frame.
_ERRORS = (PylogError, ProtocolError, OSError)


def add_transactions_parser(sub) -> None:
    action = action_parsers(
        sub, "transactions", "list, describe and abort transactions (kafka-transactions)",
        "Analyse the transactional state of producers in the cluster, as\n"
        "kafka-transactions.sh does; detect and abort hanging transactions.")
    action("list", "list transactions",
           "One row per transactional id known to a coordinator (ListTransactions\n"
           "on every broker): " + " ".join(LIST_HEADERS), _list)
    d = action("describe", "describe the state of an active transactional-id",
               "The transaction of one transactional id from its coordinator\n"
               "(DescribeTransactions): " + " ".join(DESCRIBE_HEADERS), _describe)
    d.add_argument("--transactional-id", required=True, help="transactional id")
    p = action("describe-producers", "describe the states of active producers for a topic partition",
               "The producers the partition's leader (or --broker-id) keeps state for\n"
               "(DescribeProducers): " + " ".join(PRODUCERS_HEADERS), _describe_producers)
    p.add_argument("--broker-id", type=int, help="optional broker id to describe the producer state on a "
                                                 "specific replica")
    p.add_argument("--topic", required=True, help="topic name")
    p.add_argument("--partition", type=int, required=True, help="partition number")
    h = action("find-hanging", "find hanging transactions",
               "Open transactions of the partitions' producers older than\n"
               "--max-transaction-timeout that their coordinator does not know of\n"
               "(DescribeProducers, ListTransactions, DescribeTransactions): " + " ".join(HANGING_HEADERS),
               _find_hanging)
    h.add_argument("--broker-id", type=int, help="broker id to search for hanging transactions")
    h.add_argument("--max-transaction-timeout", type=int, default=15,
                   help="maximum transaction timeout in minutes to limit the scope of the search (15 minutes by "
                        "default)")
    h.add_argument("--topic", help="topic name to limit search to (required if --partition is specified)")
    h.add_argument("--partition", type=int, help="partition number")
    a = action("abort", "abort a hanging transaction (requires administrative privileges)",
               "Write an ABORT marker for one producer's open transaction on a\n"
               "partition (WriteTxnMarkers to its leader). --start-offset finds the\n"
               "producer by its transaction's first offset (DescribeProducers);\n"
               "or give --producer-id, --producer-epoch and --coordinator-epoch.", _abort)
    a.add_argument("--topic", required=True, help="topic name")
    a.add_argument("--partition", type=int, required=True, help="partition number")
    a.add_argument("--start-offset", type=int, help="start offset of the transaction to abort")
    a.add_argument("--producer-id", type=int, help="producer id")
    a.add_argument("--producer-epoch", type=int, help="producer epoch")
    a.add_argument("--coordinator-epoch", type=int, help="coordinator epoch")


def pretty_table(headers, rows, out=None) -> None:
    """kafka-transactions' table: each value padded to its column's widest,
    then a tab."""
    out = sys.stdout if out is None else out
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row)]
    for row in [headers, *rows]:
        out.write("".join(v.ljust(w) + "\t" for v, w in zip(row, widths)) + "\n")


def _version(conn: Connection, api_key: int) -> int:
    lo, hi = conn.api_versions.get(api_key, (0, -1))
    version = min(hi, _MAX_VERSIONS[api_key])
    if version < lo:
        raise error_for(Errors.UNSUPPORTED_VERSION,
                        f"broker {conn.host}:{conn.port} does not support api key {api_key}")
    return version


def _request(conn: Connection, body, api_key: int):
    return conn.request(body, api_version=_version(conn, api_key))


def _fail(message: str, cause) -> int:
    print(f"{message}: {cause}. Enable debug logging for additional detail.", file=sys.stderr)
    return 1


def _run(fn, args) -> int:
    with open_client(args) as client:
        return fn(client, args)


# --- list -----------------------------------------------------------------------


def _list(args) -> int:
    return _run(_list_with, args)


def _list_with(client, args) -> int:
    cluster = client.metadata([])
    rows = []
    for node in sorted(cluster.brokers):
        try:
            resp = _request(client.connection(node), ListTransactionsRequest(), 66)
        except _ERRORS as e:   # one line for the user, as the Java tool
            return _fail("Failed to list transactions", e)
        if resp.error_code:
            return _fail("Failed to list transactions", error_for(resp.error_code, f"broker {node}"))
        for t in resp.transaction_states:
            rows.append((t.transactional_id, str(node), str(t.producer_id), t.transaction_state))
    pretty_table(LIST_HEADERS, rows)
    return 0


# --- describe -------------------------------------------------------------------


def _coordinator(client, key: str, key_type: int) -> tuple[int, Connection]:
    deadline = time.monotonic() + client.timeout
    while True:
        conn = client.any_connection()
        resp = _request(conn, FindCoordinatorRequest(key=key, key_type=key_type), 10)
        if resp.error_code == Errors.NONE:
            return resp.node_id, client.connection(resp.node_id)
        if resp.error_code not in (Errors.COORDINATOR_NOT_AVAILABLE, Errors.COORDINATOR_LOAD_IN_PROGRESS,
                                   Errors.NOT_COORDINATOR) or time.monotonic() >= deadline:
            raise error_for(resp.error_code, resp.error_message or f"coordinator of {key!r}")
        time.sleep(0.1)


def _describe(args) -> int:
    return _run(_describe_with, args)


def _describe_with(client, args) -> int:
    tid = args.transactional_id
    what = f"Failed to describe transaction state of transactional-id `{tid}`"
    deadline = time.monotonic() + client.timeout
    while True:
        try:
            node, conn = _coordinator(client, tid, 1)
            resp = _request(conn, DescribeTransactionsRequest(transactional_ids=[tid]), 65)
        except _ERRORS as e:
            return _fail(what, e)
        state = next((s for s in resp.transaction_states if s.transactional_id == tid), None)
        if state is None:
            return _fail(what, "the coordinator's answer does not name it")
        if state.error_code in (Errors.NOT_COORDINATOR, Errors.COORDINATOR_LOAD_IN_PROGRESS,
                                Errors.COORDINATOR_NOT_AVAILABLE) and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        if state.error_code:
            return _fail(what, error_for(state.error_code).args[0])
        break
    if state.transaction_start_time_ms >= 0:
        start = str(state.transaction_start_time_ms)
        duration = str(int(time.time() * 1000) - state.transaction_start_time_ms)
    else:
        start = duration = "None"
    partitions = ",".join(f"{t.topic}-{p}" for t in sorted(state.topics, key=lambda t: t.topic)
                          for p in sorted(t.partitions))
    pretty_table(DESCRIBE_HEADERS, [(str(node), tid, str(state.producer_id), str(state.producer_epoch),
                                     state.transaction_state, str(state.transaction_timeout_ms),
                                     start, duration, partitions)])
    return 0


# --- describe-producers / abort ---------------------------------------------------


def _producers(client, topic: str, partition: int, broker_id: int | None):
    """The partition's active producer states from its leader (or broker_id)."""
    node = broker_id if broker_id is not None else client.leader_for(topic, partition)
    resp = _request(client.connection(node), DescribeProducersRequest(topics=[
        DescribeProducersRequest.TopicRequest(name=topic, partition_indexes=[partition])]), 61)
    for t in resp.topics:
        for p in t.partitions:
            if t.name == topic and p.partition_index == partition:
                if p.error_code:
                    raise error_for(p.error_code, p.error_message)
                return node, p.active_producers
    raise error_for(Errors.UNKNOWN_TOPIC_OR_PARTITION, f"the answer does not name {topic}-{partition}")


def _describe_producers(args) -> int:
    return _run(_describe_producers_with, args)


def _describe_producers_with(client, args) -> int:
    where = "leader" if args.broker_id is None else f"broker {args.broker_id}"
    try:
        _node, producers = _producers(client, args.topic, args.partition, args.broker_id)
    except _ERRORS as e:
        return _fail(f"Failed to describe producers for partition {args.topic}-{args.partition} on {where}", e)
    rows = [(str(s.producer_id), str(s.producer_epoch), str(s.coordinator_epoch), str(s.last_sequence),
             str(s.last_timestamp),
             str(s.current_txn_start_offset) if s.current_txn_start_offset >= 0 else "None")
            for s in producers]
    pretty_table(PRODUCERS_HEADERS, rows)
    return 0


# --- find-hanging -------------------------------------------------------------------


def _find_hanging(args) -> int:
    if args.topic is None and args.broker_id is None:
        print("The `find-hanging` command requires either --topic or --broker-id to limit the scope of the "
              "search", file=sys.stderr)
        return 1
    if args.partition is not None and args.topic is None:
        print("The --partition argument requires --topic to be provided", file=sys.stderr)
        return 1
    return _run(_find_hanging_with, args)


def _find_hanging_with(client, args) -> int:
    try:
        partitions = _partitions_to_search(client, args)
    except _ERRORS as e:
        return _fail("Failed to describe topics" if args.topic is not None else "Failed to list topics", e)
    max_ms = args.max_transaction_timeout * 60000
    try:
        candidates = _open_transactions(client, partitions, args.broker_id, max_ms)
    except _ERRORS as e:
        return _fail(f"Failed to describe producers for {len(partitions)} partitions on broker "
                     f"{'Optional.empty' if args.broker_id is None else args.broker_id}", e)
    hanging = []
    if candidates:
        pids = {s.producer_id for _tp, s in candidates}
        try:
            tids = _transactional_ids(client, pids)
        except _ERRORS as e:
            return _fail(f"Failed to list transactions for {len(pids)} producers", e)
        described = {}
        for tid in set(tids.values()):
            try:
                described[tid] = _transaction_partitions(client, tid)
            except _ERRORS as e:
                return _fail(f"Failed to describe {len(set(tids.values()))} transactions", e)
        for tp, s in candidates:
            tid = tids.get(s.producer_id)
            # Hanging unless its coordinator still counts the partition in the
            # transaction (it will write the marker there).
            if tid is None or described.get(tid) is None or tp not in described[tid]:
                hanging.append((tp, s))
    now = int(time.time() * 1000)
    pretty_table(HANGING_HEADERS, [
        (t, str(p), str(s.producer_id), str(s.producer_epoch), str(s.coordinator_epoch),
         str(s.current_txn_start_offset), str(s.last_timestamp), str((now - s.last_timestamp) // 60000))
        for (t, p), s in hanging])
    return 0


def _partitions_to_search(client, args) -> list:
    if args.topic is not None and args.partition is not None:
        return [(args.topic, args.partition)]
    found = client.metadata(None if args.topic is None else [args.topic]).topics
    out = []
    for name, t in sorted(found.items()):
        if t.error_code:
            raise error_for(t.error_code, f"topic {name!r}")
        out += [(name, i) for i, p in sorted(t.partitions.items())
                if args.broker_id is None or args.broker_id in p.replicas]
    return out


def _open_transactions(client, partitions, broker_id, max_ms) -> list:
    """[((topic, partition), producer state)] of the open transactions whose
    producer wrote last more than max_ms ago, from each partition's leader
    (or broker_id)."""
    by_node: dict[int, list] = {}
    for tp in partitions:
        by_node.setdefault(broker_id if broker_id is not None else client.leader_for(*tp), []).append(tp)
    out = []
    now = int(time.time() * 1000)
    for node, tps in sorted(by_node.items()):
        for i in range(0, len(tps), MAX_BATCH_SIZE):
            batch: dict[str, list] = {}
            for t, p in tps[i:i + MAX_BATCH_SIZE]:
                batch.setdefault(t, []).append(p)
            resp = _request(client.connection(node), DescribeProducersRequest(topics=[
                DescribeProducersRequest.TopicRequest(name=t, partition_indexes=ps) for t, ps in batch.items()]), 61)
            for t in resp.topics:
                for p in t.partitions:
                    if p.error_code:
                        raise error_for(p.error_code, p.error_message or f"{t.name}-{p.partition_index}")
                    out += [((t.name, p.partition_index), s) for s in p.active_producers
                            if s.current_txn_start_offset >= 0 and now - s.last_timestamp > max_ms]
    return out


def _transactional_ids(client, producer_ids) -> dict:
    """{producer id: transactional id} from every broker's ListTransactions."""
    out = {}
    for node in sorted(client.metadata([]).brokers):
        resp = _request(client.connection(node), ListTransactionsRequest(
            producer_id_filters=sorted(producer_ids)), 66)
        if resp.error_code:
            raise error_for(resp.error_code, f"broker {node}")
        out.update({t.producer_id: t.transactional_id for t in resp.transaction_states
                    if t.producer_id in producer_ids})
    return out


def _transaction_partitions(client, tid):
    """The (topic, partition)s tid's coordinator counts in its transaction;
    None when it does not know tid."""
    deadline = time.monotonic() + client.timeout
    while True:
        _node, conn = _coordinator(client, tid, 1)
        state = _request(conn, DescribeTransactionsRequest(transactional_ids=[tid]), 65).transaction_states[0]
        if state.error_code == Errors.TRANSACTIONAL_ID_NOT_FOUND:
            return None
        if state.error_code in (Errors.NOT_COORDINATOR, Errors.COORDINATOR_LOAD_IN_PROGRESS,
                                Errors.COORDINATOR_NOT_AVAILABLE) and time.monotonic() < deadline:
            time.sleep(0.1)
            continue
        if state.error_code:
            raise error_for(state.error_code, tid)
        return {(t.topic, p) for t in state.topics for p in t.partitions}


def _abort(args) -> int:
    if args.start_offset is None and args.producer_id is None:
        print("The transaction to abort must be identified either with --start-offset (for brokers on "
              "3.0 or above) or with --producer-id, --producer-epoch, and --coordinator-epoch (for older "
              "brokers)", file=sys.stderr)
        return 1
    if args.start_offset is None:
        for name in ("producer_epoch", "coordinator_epoch"):
            if getattr(args, name) is None:
                print(f"Missing required argument --{name.replace('_', '-')}", file=sys.stderr)
                return 1
    return _run(_abort_with, args)


def _abort_with(client, args) -> int:
    tp = f"{args.topic}-{args.partition}"
    if args.start_offset is not None:
        try:
            _node, producers = _producers(client, args.topic, args.partition, None)
        except _ERRORS as e:
            return _fail(f"Failed to validate producer state for partition {tp}", e)
        found = next((s for s in producers if s.current_txn_start_offset == args.start_offset), None)
        if found is None:
            print(f"Could not find any open transactions starting at offset {args.start_offset} on "
                  f"partition {tp}", file=sys.stderr)
            return 1
        pid, epoch, coordinator_epoch = found.producer_id, found.producer_epoch, found.coordinator_epoch
    else:
        pid, epoch, coordinator_epoch = args.producer_id, args.producer_epoch, args.coordinator_epoch
    # A transaction hanging before its first marker has coordinator epoch -1:
    # 0 is at most any real coordinator epoch (as the Java tool does).
    coordinator_epoch = max(0, coordinator_epoch)
    spec = (f"AbortTransactionSpec(topicPartition={tp}, producerId={pid}, producerEpoch={epoch}, "
            f"coordinatorEpoch={coordinator_epoch})")
    try:
        leader = client.leader_for(args.topic, args.partition)
        conn = client.connection(leader)
        if 27 not in conn.api_versions:
            # A client listener of a broker with several listeners does not
            # offer it (the inter-broker one does).
            return _fail(f"Failed to abort transaction {spec}",
                         f"broker {leader} does not accept WriteTxnMarkers on this listener (use the "
                         "inter-broker listener, from the host of a live broker)")
        resp = _request(conn, WriteTxnMarkersRequest(markers=[
            WriteTxnMarkersRequest.WritableTxnMarker(
                producer_id=pid, producer_epoch=epoch, transaction_result=False,
                coordinator_epoch=coordinator_epoch,
                topics=[WriteTxnMarkersRequest.WritableTxnMarkerTopic(
                    name=args.topic, partition_indexes=[args.partition])])]), 27)
    except _ERRORS as e:
        return _fail(f"Failed to abort transaction {spec}", e)
    for m in resp.markers:
        for t in m.topics:
            for p in t.partitions:
                if p.error_code:
                    return _fail(f"Failed to abort transaction {spec}", error_for(p.error_code).args[0])
    return 0
