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

from pylog.metrics.requests import _ConnectionTimer
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


def wrapper_cost(n: int = 100_000) -> None:
    """One request answered at once, as a Connection sees it: the handler's
    answer gathered and written, then the send check, against the same steps
    untimed. (On a broker the check runs once per read, from call_soon:
    that call is not in the figure.)"""
    class Transport:
        def write(self, data):
            pass

        def get_write_buffer_size(self):
            return 0

        pause_reading = resume_reading = write

    out = []

    def handler(frame):
        out.append(b"answer")

    conn = types.SimpleNamespace(_pending=collections.deque(), _out=out, last_active=time.monotonic(),
                                 closed=False, transport=Transport(), _on_frame=handler, _mute=None)
    bare_write = conn.transport.write
    timer = _ConnectionTimer({}, conn)
    frame = b"\x00\x03\x00\x0c" + b"x" * 100   # Metadata v12

    def bare():
        handler(frame)
        bare_write(out.pop())

    def timed():
        conn._on_frame(frame)
        timer.check = True    # (as if scheduled: checked right here instead)
        conn.transport.write(out.pop())
        timer.check_sent()

    a = min(timeit.repeat(bare, number=n, repeat=5))
    t = min(timeit.repeat(timed, number=n, repeat=5))
    print(f"request timing: {(t - a) / n * 1e9:.0f} ns per request (best of 5 x {n})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--scrapes", type=int, default=15)
    args = ap.parse_args()
    wrapper_cost()
    scrape_cost(args.topics, args.partitions, args.scrapes)
