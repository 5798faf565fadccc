"""`pylog broker`: options in Kafka's terms, then run until SIGTERM / Ctrl-C."""
from __future__ import annotations

import argparse
import logging
import os
import sys


def add_broker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where the logs live (Kafka's log.dirs); default ./data")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 9092; 0 picks a free one)")
    p.add_argument("--broker-id", type=int, help="this broker's id (broker.id, default 1)")
    p.add_argument("--config", metavar="server.properties",
                   help="a Kafka server.properties file (Kafka's key names)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="set one config key, e.g. --override num.partitions=6 (repeatable); "
                        "wins over --config")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")


def build_config(args) -> dict:
    from .config import read_properties
    props: dict[str, str] = {}
    if args.config:
        props.update(read_properties(args.config))
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--override expects KEY=VALUE, got {item!r}")
        props[key.strip()] = value.strip()
    if args.data_dir is not None:
        props["log.dirs"] = args.data_dir
    elif "log.dirs" not in props and "log.dir" not in props:
        props["log.dirs"] = "./data"
    if args.broker_id is not None:
        props["broker.id"] = str(args.broker_id)
    if not any(k in props for k in ("zookeeper.connect", "pylog.controller.id",
                                    "offsets.topic.replication.factor")):
        # A lone broker: as Kafka's shipped config/server.properties for one
        # development broker, one replica of __consumer_offsets (the key's
        # default, 3, is for clusters; `pylog cluster up` sets min(3, brokers)).
        props["offsets.topic.replication.factor"] = "1"
    if not any(k in props for k in ("zookeeper.connect", "pylog.controller.id",
                                    "transaction.state.log.replication.factor")):
        # The same for __transaction_state (server.properties sets both keys to 1).
        props["transaction.state.log.replication.factor"] = "1"
        props.setdefault("transaction.state.log.min.isr", "1")
    if not any(k in props for k in ("zookeeper.connect", "pylog.controller.id",
                                    "share.coordinator.state.topic.replication.factor")):
        # The same for __share_group_state (KIP-932 share groups).
        props["share.coordinator.state.topic.replication.factor"] = "1"
        props.setdefault("share.coordinator.state.topic.min.isr", "1")
    if args.host is not None or args.port is not None or "listeners" not in props:
        # --host / --port move the first listener; the others stay as given.
        from .config import parse_listeners
        listeners = parse_listeners("listeners", props.get("listeners", "PLAINTEXT://127.0.0.1:9092"))
        name, host, port = listeners[0]
        host = args.host if args.host is not None else host
        port = args.port if args.port is not None else port
        props["listeners"] = ",".join(f"{n}://{h}:{p}" for n, h, p in [(name, host, port), *listeners[1:]])
    return props


def run_broker(args) -> int:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from ..errors import PylogError
    from .broker import Broker
    from .config import BrokerConfig
    try:
        props = build_config(args)
        for d in (props.get("log.dirs") or props.get("log.dir") or "").split(","):
            if d and os.path.exists(d) and not os.path.isdir(d):
                print(f"pylog broker: the data directory {d} is a file, not a directory: give --data-dir "
                      f"(log.dirs) a directory, or move the file away", file=sys.stderr)
                return 1
        broker = Broker(BrokerConfig(props))
        return broker.run()
    except (PylogError, OSError, RuntimeError) as e:
        print(f"pylog broker: {e}", file=sys.stderr)
        return 1
