"""Kafka's quota arithmetic: a sampled Rate and the throttle time of a
violation (org.apache.kafka.common.metrics.stats.Rate / SampledStat and
QuotaUtils), shared by the client quotas and the connection quotas.

A Rate keeps quota.window.num samples (plus one overlapping, as Kafka) of
quota.window.size.seconds each. A sample starts when the first value after
the previous one's end is recorded (windows are not aligned to the clock);
samples whose last event is older than num x size are emptied. The rate is
the samples' sum over the elapsed time since the oldest sample started, that
time being at least (num - 1) full windows, so a client's first burst is
spread over ten seconds rather than measured over a few milliseconds.

A value over the bound (Quota.upperBound: rate <= bound is acceptable) gives
the throttle time (rate - bound) / bound x elapsed window, in ms, rounded:
how long the client must stay silent for its rate to fall back to the bound.

Cost: a record is O(1); a measure is O(num) (11 by default), no allocation.
Threads: the broker's event loop only.
"""
from __future__ import annotations


class Rate:
    __slots__ = ("_cur", "_num", "_starts", "_lasts", "_totals", "_window_ms")

    def __init__(self, num: int, window_s: int, now_ms: float):
        self._num = num
        self._window_ms = window_s * 1000.0
        # One extra slot: the sample overlapping the monitored window's start.
        n = num + 1
        self._starts = [now_ms] * n
        self._lasts = [now_ms] * n
        self._totals = [0.0] * n
        self._cur = 0

    def record(self, value: float, now_ms: float) -> None:
        cur = self._cur
        if now_ms - self._starts[cur] >= self._window_ms:
            cur = self._cur = (cur + 1) % len(self._starts)
            self._starts[cur] = now_ms
            self._totals[cur] = 0.0
        self._totals[cur] += value
        self._lasts[cur] = now_ms

    def measure(self, now_ms: float) -> tuple[float, float]:
        """(rate per second, the elapsed window in ms it was taken over)."""
        expire = self._num * self._window_ms
        starts, lasts, totals = self._starts, self._lasts, self._totals
        total = 0.0
        oldest = now_ms
        for i in range(len(starts)):
            if now_ms - lasts[i] >= expire:
                starts[i] = lasts[i] = now_ms
                totals[i] = 0.0
            else:
                total += totals[i]
                if starts[i] < oldest:
                    oldest = starts[i]
        elapsed = now_ms - oldest
        full = int(elapsed // self._window_ms)
        if full < self._num - 1:
            elapsed += (self._num - 1 - full) * self._window_ms
        elapsed = max(elapsed, 1.0)
        return total * 1000.0 / elapsed, elapsed

    def record_and_throttle(self, value: float, bound: float, now_ms: float) -> int:
        """Record value; the throttle time in ms when the rate is now above
        bound (Sensor.record then QuotaUtils.throttleTime), else 0."""
        self.record(value, now_ms)
        rate, elapsed = self.measure(now_ms)
        if rate <= bound:
            return 0
        if bound <= 0:
            return 1 << 62  # Kafka's infinite delay, which its callers cap at a window
        return round((rate - bound) / bound * elapsed)

    def idle(self, now_ms: float) -> bool:
        """Nothing recorded within the last num windows."""
        return now_ms - max(self._lasts) >= self._num * self._window_ms
