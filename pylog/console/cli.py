"""`pylog console`: the web console for a cluster reached at --bootstrap-server."""
from __future__ import annotations

import signal
import sys

from ..cli.common import RawHelp, add_bootstrap

__all__ = ["add_console_parser"]


def add_console_parser(sub) -> None:
    p = sub.add_parser("console", help="web console for a Kafka cluster (topics, messages, groups)",
                       formatter_class=RawHelp,
                       description="Serve the web console for the cluster at --bootstrap-server:\n"
                                   "brokers, topics and their configs, a message browser and\n"
                                   "producer, consumer groups with lag (and offset resets),\n"
                                   "transactions. It talks to the cluster over the Kafka protocol\n"
                                   "only, so it works against Apache Kafka too.\n"
                                   "example: pylog console --bootstrap-server 127.0.0.1:9092 --port 8080")
    add_bootstrap(p)
    p.add_argument("--host", default="127.0.0.1", help="address the console listens on")
    p.add_argument("--port", type=int, default=8080, help="port the console listens on (0: any free one)")
    p.set_defaults(tool=_run)


def _run(args) -> int:
    try:
        from .server import ConsoleServer
        server = ConsoleServer(args.bootstrap_server, args.host, args.port, args.request_timeout_ms)
    except ImportError as e:
        print(f"Error: the console needs its extra: pip install 'pylog[console]' ({e})", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"Error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    # uvicorn stops gracefully on SIGTERM, then raises it again for the
    # handler it found: a no-op one makes that a normal exit (0), as
    # `pylog broker` exits on SIGTERM. Ctrl-C stays KeyboardInterrupt (130).
    signal.signal(signal.SIGTERM, lambda *_: None)
    print(f"pylog console for {args.bootstrap_server} at {server.url}", flush=True)
    server.serve_forever()
    return 0
