"""`pylog perf produce|consume`: the kafka-*-perf-test tools."""
from __future__ import annotations

from .perf_consume import add_perf_consume_parser
from .perf_produce import add_perf_produce_parser

__all__ = ["add_perf_parser"]


def add_perf_parser(sub) -> None:
    p = sub.add_parser("perf", help="producer / consumer performance tests (kafka-*-perf-test)",
                       description="Throughput and latency tests modelled on Kafka's perf-test tools.")
    tests = p.add_subparsers(dest="test", required=True, metavar="TEST")
    add_perf_produce_parser(tests)
    add_perf_consume_parser(tests)
