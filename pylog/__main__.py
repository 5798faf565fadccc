"""The `pylog` command line: one entry point with sub-commands."""
from __future__ import annotations

import argparse
import sys


def _version() -> str:
    """The installed distribution's version (what pip installed), else the
    package's own (a source tree on sys.path)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("pylog")
    except PackageNotFoundError:
        from . import __version__
        return __version__


def _add_broker_parser(sub) -> None:
    b = sub.add_parser("broker", help="run a Kafka-protocol broker",
                       description="Run a Kafka-protocol broker until SIGTERM / Ctrl-C.")
    try:
        from .broker.cli import add_broker_arguments, run_broker
    except ImportError as exc:
        # The rest of the command line must keep working in a tree where the
        # broker package is absent or broken; say why when it is asked for.
        reason = str(exc)

        def run_broker(_args) -> int:
            print(f"pylog broker: not available: {reason}", file=sys.stderr)
            return 2
    else:
        add_broker_arguments(b)
    b.set_defaults(run=run_broker)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pylog", description="pylog: a log engine and a Kafka-compatible broker")
    p.add_argument("--version", action="version", version=f"pylog {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_broker_parser(sub)
    from .cli import add_client_commands, run_tool
    add_client_commands(sub)
    args = p.parse_args(argv)
    if getattr(args, "tool", None) is not None:
        return run_tool(args.tool, args)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
