"""The `pylog` command line: one entry point with sub-commands."""
from __future__ import annotations

import argparse
import sys


def _dump_log(args) -> int:
    """Print the batches (and with --records, the records) of a .log file, as
    kafka-dump-log does, checking every CRC."""
    from . import _engine
    from .errors import CorruptRecordError

    decode = None
    if args.transaction_log_decoder:
        from .cli.dump_log import transaction_log_text as decode
    with open(args.file, "rb") as f:
        data = f.read()
    pos = 0
    bad = 0
    while pos < len(data):
        valid, batches, _records, _last, err = _engine.validate_batches(memoryview(data)[pos:])
        if valid and (args.records or decode is not None):
            try:
                records = _engine.decode_batches(memoryview(data)[pos:pos + valid], args.max_inflated_bytes)
            except CorruptRecordError as e:
                print(f"position: {pos}: {e}")
                return 1
        else:
            records = ()
        if valid:
            for rec in records:
                print(f"| offset: {rec.offset} CreateTime: {rec.timestamp} "
                      f"keySize: {-1 if rec.key is None else len(rec.key)} "
                      f"valueSize: {-1 if rec.value is None else len(rec.value)} "
                      f"headerKeys: {[k for k, _ in rec.headers]}"
                      + ("" if decode is None else decode(rec.key, rec.value)))
            print(f"position: {pos} .. {pos + valid}: {batches} valid batches")
            pos += valid
        if err is not None:
            print(f"position: {pos}: {err}; {len(data) - pos} bytes not readable as batches")
            bad = 1
            break
    return bad


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
    d = sub.add_parser("dump-log", help="print and check the record batches of a .log segment file",
                       description=_dump_log.__doc__)
    d.add_argument("file")
    d.add_argument("--records", action="store_true", help="print every record too")
    d.add_argument("--transaction-log-decoder", action="store_true",
                   help="decode records as __transaction_state's keys and values (implies --records)")
    d.add_argument("--max-inflated-bytes", type=int, default=-1, metavar="N",
                   help="the most one compressed batch may inflate to (default 64 MiB, a broker's "
                        "pylog.message.max.decompressed.bytes); a batch past it is reported, not inflated further")
    d.set_defaults(run=_dump_log)
    from .cli import add_client_commands, run_tool
    add_client_commands(sub)
    args = p.parse_args(argv)
    if getattr(args, "tool", None) is not None:
        return run_tool(args.tool, args)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
