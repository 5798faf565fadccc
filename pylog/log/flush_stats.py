"""Kafka's LogFlushStats (LogFlushRateAndTimeMs): the time of every flush of
any Log in this process that had something to make durable."""
from __future__ import annotations

import threading
from collections import deque

SAMPLES = 1028   # Yammer's reservoir size, as the broker's request times


class FlushTimer:
    """Any thread (flushes run on the log's callers, the broker's flusher and
    workers): a lock held for three additions per flush."""

    def __init__(self):
        self._lock = threading.Lock()
        self.count = 0
        self.sum_ms = 0.0
        self._samples = deque(maxlen=SAMPLES)

    def record(self, ms: float) -> None:
        with self._lock:
            self.count += 1
            self.sum_ms += ms
            self._samples.append(ms)

    def snapshot(self) -> tuple[int, float, list[float]]:
        with self._lock:
            return self.count, self.sum_ms, list(self._samples)


FLUSHES = FlushTimer()
