"""Client quotas on bytes and on request time: Kafka's ClientQuotaManager
(producer_byte_rate, consumer_byte_rate) and ClientRequestQuotaManager
(request_percentage).

Each quota is looked up for a request's (principal, client id) as Kafka's
DefaultQuotaCallback does (quotas.resolve: the most specific of user+client,
user+default client, user, default user+client, default user+default client,
default user, client, default client); clients that resolve to the same
entity (the same metric tags) share one Rate (quota_rate.py) of
quota.window.num samples of quota.window.size.seconds. The lookup is cached
per (principal, client id) until the quota table changes, so a request costs
one dict lookup and a sum over the samples; with no quota of a kind set, the
kind costs nothing (the *_on flags).

- producer_byte_rate: every Produce request's size (Kafka's
  request.sizeInBytes: the request frame) is recorded; over the bound, the
  answer carries throttle_time_ms = (rate - bound) / bound x window and the
  connection reads nothing more for that long after it (Kafka mutes the
  channel; KIP-219 clients also wait by themselves). acks=0 requests get no
  answer but the connection is muted all the same.
- consumer_byte_rate: a consumer's Fetch answer's size is recorded once it
  is read (the partitions' record bytes plus each partition's fixed header);
  over the bound, as Kafka, the bytes are taken back out of the rate and the
  answer goes out with the throttle time and no partitions at all, so a
  throttled consumer gets no data faster than its quota. A consumer's fetch
  is also capped at bound x (quota.window.num - 1) x window bytes (Kafka's
  getMaxValueInQuotaWindow), so one fetch cannot be worth minutes of quota.
  Follower fetches are never counted (replication has its own throttles).
- request_percentage: the share of the broker's request-handling time a
  client may use. Kafka counts time on its request handler threads, 100 per
  thread (a quota of 50 is half of one thread). pylog handles every request
  on one event loop, so 100 is the whole loop: a quota of 10 lets a client
  use 10% of the loop's time, i.e. 100 ms of handling per second. The time
  counted is CPU time, so a machine too loaded to run the broker does not
  charge its clients: the loop thread's time the request costs (decoding,
  its handler's synchronous work and each step of a waiting handler,
  encoding the answer), plus the worker thread's time decoding and encoding
  a large request off the loop; waiting (a long poll, acks=all) costs
  nothing. The rate is
  checked when a request arrives (the time of the requests before it) and
  its own time recorded when its answer goes out, so the throttle is known
  before the answer is encoded and rides in its throttle_time_ms; as Kafka,
  it is capped at one window. Exempt, as Kafka's ClusterAction requests: the
  inter-broker APIs and follower fetches; and acks=0 Produce, as in Kafka.

A Produce or Fetch over both its byte quota and the request quota is
throttled by the larger of the two, as Kafka.

Threads: the broker's event loop only (the quota table is read on a worker
thread by refresh() and handed to the loop).
"""
from __future__ import annotations

import asyncio
import logging
import time

from .quota_rate import Rate
from .quotas import (CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE, resolve, user_of)

log = logging.getLogger("pylog.broker.quotas")

# How long a broker's copy of the quota table may lag the store (a quota
# altered through another broker); an alteration through this broker is seen
# at once.
REFRESH_S = 1.0
# Bounds the (principal, client id) cache against clients that invent ids.
MAX_CACHED = 100_000
_MISSING = (None, None)


class ClientQuotas:
    """Threads: the broker's event loop only."""

    def __init__(self, config, clock=time.monotonic):
        self.samples = config.get("quota.window.num")
        self.window_s = config.get("quota.window.size.seconds")
        self._clock = clock
        self._table: dict[str, dict[str, str]] = {}
        self._resolved: dict[tuple, dict] = {}
        self._rates: dict[tuple, Rate] = {}
        self.produce_on = self.fetch_on = self.request_on = False

    # ---- the table ----

    def set_table(self, table: dict) -> None:
        if table == self._table:
            return
        self._table = table
        self._resolved.clear()
        keys = {k for configs in table.values() for k in configs}
        self.produce_on = PRODUCER_BYTE_RATE in keys
        self.fetch_on = CONSUMER_BYTE_RATE in keys
        self.request_on = REQUEST_PERCENTAGE in keys

    def _quota(self, key, principal, client_id):
        """(bound, tags) of key for this client, or (None, None)."""
        cid = client_id or ""
        entry = self._resolved.get((principal, cid))
        if entry is None:
            if len(self._resolved) >= MAX_CACHED:
                self._resolved.clear()
            entry = self._resolved[(principal, cid)] = {}
        q = entry.get(key)
        if q is None:
            q = entry[key] = resolve(self._table, key, user_of(principal), cid)
        return q

    def _rate(self, key, tags, now_ms) -> Rate:
        rate = self._rates.get((key, tags))
        if rate is None:
            rate = self._rates[(key, tags)] = Rate(self.samples, self.window_s, now_ms)
        return rate

    # ---- byte quotas ----

    def record_bytes(self, key: str, principal: str, client_id, n: int) -> int:
        """Record n bytes against key's quota; the throttle time in ms (0:
        within the quota, or no quota)."""
        bound, tags = self._quota(key, principal, client_id)
        if bound is None:
            return 0
        now = self._clock() * 1000.0
        return self._rate(key, tags, now).record_and_throttle(n, bound, now)

    def unrecord_bytes(self, key: str, principal: str, client_id, n: int) -> None:
        """Take back bytes recorded for an answer not sent (a throttled fetch)."""
        bound, tags = self._quota(key, principal, client_id)
        if bound is not None:
            now = self._clock() * 1000.0
            self._rate(key, tags, now).record(-n, now)

    def max_fetch_bytes(self, principal: str, client_id):
        """Kafka's getMaxValueInQuotaWindow for consumer_byte_rate, or None."""
        bound, _tags = self._quota(CONSUMER_BYTE_RATE, principal, client_id)
        if bound is None:
            return None
        return max(1, int(bound * (self.samples - 1) * self.window_s))

    # ---- request time ----

    def request_throttle(self, principal: str, client_id) -> int:
        """The throttle time in ms a request of this client gets from the
        time its earlier requests took (capped at one window), 0 if none."""
        bound, tags = self._quota(REQUEST_PERCENTAGE, principal, client_id)
        if bound is None:
            return 0
        now = self._clock() * 1000.0
        rate, elapsed = self._rate(REQUEST_PERCENTAGE, tags, now).measure(now)
        if rate <= bound:
            return 0
        return min(round((rate - bound) / bound * elapsed), int(self.window_s * 1000))

    def record_time(self, principal: str, client_id, seconds: float) -> None:
        """Record a request's handling time, in Kafka's percentage units (one
        second of handling = 100)."""
        bound, tags = self._quota(REQUEST_PERCENTAGE, principal, client_id)
        if bound is not None:
            now = self._clock() * 1000.0
            self._rate(REQUEST_PERCENTAGE, tags, now).record(seconds * 100.0, now)

    def sweep(self) -> None:
        """Forget rates with nothing left in their window (Kafka expires idle
        quota sensors)."""
        now = self._clock() * 1000.0
        for k in [k for k, r in self._rates.items() if r.idle(now)]:
            del self._rates[k]


async def refresh(broker, load, consumers) -> None:
    """Every REFRESH_S (and at once after broker.quotas_changed is set), read
    the quota table with load() on a worker thread and hand it to each
    consumer's set_table. A table that cannot be read leaves the last one in
    force."""
    loop = asyncio.get_running_loop()
    changed = broker.quotas_changed
    while not broker.stopping:
        try:
            table = await loop.run_in_executor(None, load)
        except Exception as e:  # noqa: BLE001 - the store or the controller unreachable: keep the last table
            log.debug("cannot read the client quotas: %s", e)
        else:
            for c in consumers:
                c.set_table(table)
        for c in consumers:
            sweep = getattr(c, "sweep", None)
            if sweep is not None:
                sweep()
        changed.clear()
        try:
            await asyncio.wait_for(changed.wait(), REFRESH_S)
        except asyncio.TimeoutError:
            pass
