"""`pylog verifiable-producer`: Kafka's VerifiableProducer, whose JSON lines
Kafka's system tests read.

    pylog verifiable-producer --topic T --bootstrap-server H:P [--max-messages N]
        [--throughput MSG/S] [--acks -1|0|1] [--message-create-time MS]
        [--value-prefix P] [--repeating-keys K] [--command-config FILE | --producer.config FILE]

Produces the integers 0, 1, 2, ... as string values (`P.i` with
--value-prefix; keys 0..K-1 round and round with --repeating-keys, else
null), without retries, and prints one JSON object a line, as Kafka's tool:
`{"timestamp":…,"name":"startup_complete"}`; per acknowledged record
`{"timestamp":…,"name":"producer_send_success","key":…,"value":"7","topic":"t","partition":0,"offset":7}`;
per failed one `producer_send_error` with `exception` (`class
org.apache.kafka.common.errors.<X>`) and `message`; at the end (after
--max-messages, or on SIGTERM/SIGINT) `shutdown_complete`, then `tool_data`
with sent, acked, target_throughput and avg_throughput.

Threads: the main thread sends; delivery lines are printed from the
producer's sender thread under a lock (one line at a time, as Kafka's
synchronized printing).
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time

from .common import verifiable_tool_settings
from .java_compat import exception_class

__all__ = ["add_verifiable_producer_parser"]

# Producer settings a --command-config may carry -> pylog.Producer's argument.
_PRODUCER_KEYS = {
    "bootstrap.servers": ("bootstrap_servers", str),
    "client.id": ("client_id", str),
    "acks": ("acks", str),
    "linger.ms": ("linger_ms", int),
    "batch.size": ("batch_size", int),
    "compression.type": ("compression_type", lambda v: None if v == "none" else v),
    "request.timeout.ms": ("request_timeout_ms", int),
    "delivery.timeout.ms": ("delivery_timeout_ms", int),
    "retries": ("retries", int),
    "enable.idempotence": ("enable_idempotence", lambda v: v.strip().lower() == "true"),
    "max.block.ms": ("max_block_ms", int),
}


def add_verifiable_producer_parser(sub) -> None:
    p = sub.add_parser("verifiable-producer", help="produce increasing integers, printing JSON events "
                                                   "(Kafka's VerifiableProducer)",
                       description="This tool produces increasing integers to the specified topic and prints "
                                   "JSON metadata to stdout on each \"send\" request, making externally visible "
                                   "which messages have been acked and which have not.")
    p.add_argument("--topic", required=True, metavar="TOPIC", help="Produce messages to this topic.")
    p.add_argument("--bootstrap-server", required=True, metavar="HOST1:PORT1[,HOST2:PORT2[...]]",
                   help="REQUIRED: The server(s) to connect to.")
    p.add_argument("--max-messages", type=int, default=-1, metavar="MAX-MESSAGES",
                   help="Produce this many messages. If -1, produce messages until the process is killed.")
    p.add_argument("--throughput", type=int, default=-1, metavar="THROUGHPUT",
                   help="If set >= 0, throttle maximum message throughput to *approximately* THROUGHPUT "
                        "messages/sec.")
    p.add_argument("--acks", type=int, default=-1, choices=(0, 1, -1), metavar="ACKS",
                   help="Acks required on each produced message.")
    p.add_argument("--producer.config", dest="producer_config", metavar="CONFIG-FILE",
                   help="(DEPRECATED) Producer config properties file. Use --command-config instead.")
    p.add_argument("--command-config", metavar="CONFIG-FILE",
                   help="Config properties file (config options shared with command line parameters will "
                        "be overridden).")
    p.add_argument("--message-create-time", type=int, default=-1, metavar="CREATE-TIME",
                   help="Send messages with creation time starting at the arguments value, in ms since epoch")
    p.add_argument("--value-prefix", type=int, metavar="VALUE-PREFIX",
                   help="If specified, each produced value will have this prefix with a dot separator")
    p.add_argument("--repeating-keys", type=int, metavar="REPEATING-KEYS",
                   help="keys 0, 1, ... up to this number (exclusive), then 0 again")
    p.set_defaults(tool=_run)


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Printer:
    def __init__(self):
        self.lock = threading.Lock()

    def event(self, name: str, **fields) -> None:
        line = json.dumps({"timestamp": _now_ms(), "name": name, **fields}, separators=(",", ":"))
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def _producer_settings(args) -> dict:
    kw = {"bootstrap_servers": args.bootstrap_server, "acks": args.acks, "retries": 0,
          # Kafka's client turns idempotence off when retries=0 is the tool's own choice.
          "enable_idempotence": False}
    return verifiable_tool_settings(args.producer_config, "--producer.config", args.command_config,
                                    _PRODUCER_KEYS, kw, "producer")


def _run(args) -> int:
    from ..producer import Producer
    kw = _producer_settings(args)
    out = _Printer()
    state = {"sent": 0, "acked": 0, "stop": False}
    producer = Producer(**kw)
    start_ms = _now_ms()
    create_time = None if args.message_create_time == -1 else args.message_create_time

    def on_stop(signum, frame):
        state["stop"] = True
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    def callback(key, value):
        def done(err, md):
            if err is None:
                state["acked"] += 1
                out.event("producer_send_success", key=key, value=value, topic=md.topic,
                          partition=md.partition, offset=md.offset)
            else:
                out.event("producer_send_error", key=key, value=value, topic=args.topic,
                          exception="class " + _java_class(err), message=str(err))
        return done

    out.event("startup_complete")
    limit = float("inf") if args.max_messages < 0 else args.max_messages
    key_counter = 0
    i = 0
    try:
        while i < limit and not state["stop"]:
            key = None
            if args.repeating_keys is not None:
                key = str(key_counter)
                key_counter = 0 if key_counter + 1 == args.repeating_keys else key_counter + 1
            value = f"{args.value_prefix}.{i}" if args.value_prefix is not None else str(i)
            ts = None
            if create_time is not None:
                ts = create_time
                create_time += _now_ms() - start_ms
            state["sent"] += 1
            try:
                producer.send(args.topic, value.encode(), key=None if key is None else key.encode(),
                              timestamp=ts, on_delivery=callback(key, value))
            except Exception as e:       # noqa: BLE001 - reported as Kafka's tool reports it
                out.event("producer_send_error", key=key, value=value, topic=args.topic,
                          exception="class " + _java_class(e), message=str(e))
            i += 1
            _throttle(args.throughput, start_ms, i, state)
    finally:
        producer.close()
        out.event("shutdown_complete")
        elapsed = max(1, _now_ms() - start_ms)
        out.event("tool_data", sent=state["sent"], acked=state["acked"], target_throughput=args.throughput,
                  avg_throughput=1000 * state["acked"] / elapsed)
    return 0


def _throttle(throughput: int, start_ms: int, sent: int, state: dict) -> None:
    """Kafka's ThroughputThrottler: at `throughput` msg/s (0: none at all,
    until stopped; negative: no limit), sleep until `sent` messages are due;
    a stop request ends the wait."""
    if throughput < 0:
        return
    due = float("inf") if throughput == 0 else start_ms / 1000 + sent / throughput
    while not state["stop"] and (wait := due - time.time()) > 0:
        time.sleep(min(wait, 0.1))


def _java_class(err) -> str:
    code = getattr(err, "error_code", None)
    if code:
        return exception_class(int(code))
    return "org.apache.kafka.common.KafkaException"
