"""The `pylog` command line: one entry point with sub-commands."""
from __future__ import annotations

import argparse
import sys


def _dump_log(args) -> int:
    """Print the batches (and with --records, the records) of a .log file, as
    kafka-dump-log does, checking every CRC."""
    from . import _engine

    with open(args.file, "rb") as f:
        data = f.read()
    pos = 0
    bad = 0
    while pos < len(data):
        valid, batches, _records, _last, err = _engine.validate_batches(memoryview(data)[pos:])
        if valid:
            for rec in _engine.decode_batches(memoryview(data)[pos:pos + valid]) if args.records else ():
                print(f"| offset: {rec.offset} CreateTime: {rec.timestamp} "
                      f"keySize: {-1 if rec.key is None else len(rec.key)} "
                      f"valueSize: {-1 if rec.value is None else len(rec.value)} "
                      f"headerKeys: {[k for k, _ in rec.headers]}")
            print(f"position: {pos} .. {pos + valid}: {batches} valid batches")
            pos += valid
        if err is not None:
            print(f"position: {pos}: {err}; {len(data) - pos} bytes not readable as batches")
            bad = 1
            break
    return bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pylog", description="pylog: a log engine and a Kafka-compatible broker")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("broker", help="run a broker (not built yet: the 'pylog broker' issue)")
    b.add_argument("--data-dir", default="./data")
    b.add_argument("--host", default="127.0.0.1")
    b.add_argument("--port", type=int, default=9092)
    d = sub.add_parser("dump-log", help="print and check the record batches of a .log segment file")
    d.add_argument("file")
    d.add_argument("--records", action="store_true", help="print every record too")
    args = p.parse_args(argv)
    if args.command == "dump-log":
        return _dump_log(args)
    if args.command == "broker":
        print("pylog broker: the Kafka-protocol broker is not implemented yet (open issue "
              "'pylog broker'); the log library (import pylog) and the benchmarks are ready.",
              file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
