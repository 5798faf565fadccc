"""What one /metrics scrape and one timed request cost, measured directly
(bench G's metrics row compares whole brokers, which a loaded machine blurs).

    .venv/bin/python bench/metrics_scrape_cost.py [--topics 10] [--partitions 100] [--scrapes 15]

Prints the event loop's share of a scrape (BrokerMetrics.snapshot run through
Broker.call: the thread hop included), the whole scrape over HTTP (text built
on the exporter's thread), and the request-timing wrapper's cost per call
around a handler that does nothing.
"""
from __future__ import annotations

import argparse
import collections
import statistics
import time
import timeit
import types
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

from pylog.metrics.requests import RequestMetrics
from pylog.testing import running_broker, wait_until


def scrape_cost(topics: int, partitions: int, scrapes: int) -> None:
    with running_broker(config={"pylog.metrics.listener": "127.0.0.1:0"}) as b:
        admin = AdminClient({"bootstrap.servers": b})
        for f in admin.create_topics([NewTopic(f"scrape-{i}", partitions, 1) for i in range(topics)]).values():
            f.result(60)
        wait_until(lambda: len(b.broker.log_manager.partitions) >= topics * partitions, what="partitions open")
        m = b.broker.metrics
        on_loop, whole, size = [], [], 0
        for _ in range(scrapes):
            t = time.perf_counter()
            b.broker.call(m.snapshot)
            on_loop.append(time.perf_counter() - t)
            t = time.perf_counter()
            size = len(urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics", timeout=60).read())
            whole.append(time.perf_counter() - t)
        print(f"{topics * partitions} partitions: snapshot on the loop {statistics.median(on_loop) * 1e3:.2f} ms, "
              f"whole scrape {statistics.median(whole) * 1e3:.1f} ms, {size} bytes (medians of {scrapes})")


def wrapper_cost(n: int = 1_000_000) -> None:
    conn = types.SimpleNamespace(_pending=collections.deque())
    bare = lambda frame: None  # noqa: E731
    timed = RequestMetrics()._timed(conn, bare)
    frame = b"\x00\x00\x00\x09" + b"x" * 100
    a = min(timeit.repeat(lambda: bare(frame), number=n, repeat=5))
    t = min(timeit.repeat(lambda: timed(frame), number=n, repeat=5))
    print(f"request timing: {(t - a) / n * 1e9:.0f} ns per request (best of 5 x {n})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--scrapes", type=int, default=15)
    args = ap.parse_args()
    wrapper_cost()
    scrape_cost(args.topics, args.partitions, args.scrapes)
