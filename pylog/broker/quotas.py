"""Client quotas: entities, the stored quota table, the entity resolution
every quota shares, and KIP-599's controller mutation quota.

Entities are Kafka's: a `user`, a `client-id`, or both, each a name or the
default (Kafka's `<default>`), and an `ip` (or the default ip) for
connection_creation_rate; stored under Kafka's ZooKeeper entity paths
(`users/<user>`, `clients/<client-id>`, `users/<user>/clients/<client-id>`,
`ips/<ip>`, names sanitized as Kafka's Sanitizer does) in the cluster's
metadata store. Keys are Kafka's and checked as its ClientQuotaControlManager
checks them: producer_byte_rate, consumer_byte_rate (whole numbers),
request_percentage, controller_mutation_rate on user / client-id entities,
connection_creation_rate (a whole number) on ip entities only.

Who enforces what: controller_mutation_rate here (ControllerMutationQuotas);
the byte rates and request_percentage in client_quotas.py; the ip
connection_creation_rate and the broker's connection limits in
connection_quotas.py.

ControllerMutationQuotas is Kafka's ControllerMutationQuotaManager: one token
bucket per quota entity (Kafka's metric tags: the user and/or client-id the
matching quota is keyed by), holding up to rate x
controller.quota.window.num x controller.quota.window.size.seconds tokens,
refilled at `rate` per second. Each partition created, added or deleted costs
a token. Strict (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+): a
topic is refused with THROTTLING_QUOTA_EXCEEDED while the bucket is below
zero, and admitted otherwise, even past zero (one request may overdraw it).
Permissive (older versions): always admitted, the response carries the
throttle time and the connection is muted for it. The throttle time is how
long the bucket takes to climb back to zero.

Without authentication every client is the principal ANONYMOUS, as in Kafka
on a PLAINTEXT listener, so user quotas match the user `ANONYMOUS`.

Threads: ControllerMutationQuotas runs on the broker's event loop only (its
table is loaded from the store on a worker thread and handed back to the
loop); the entity helpers are pure functions.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from urllib.parse import quote, unquote

from ..errors import InvalidRequestError

log = logging.getLogger("pylog.broker.quotas")

USER, CLIENT_ID, IP = "user", "client-id", "ip"
ENTITY_TYPES = (USER, CLIENT_ID, IP)
DEFAULT = "<default>"          # Kafka's ZooKeeper name of a default entity
ANONYMOUS = "ANONYMOUS"        # the principal of every unauthenticated client
ANONYMOUS_PRINCIPAL = "User:" + ANONYMOUS   # Kafka's KafkaPrincipal.ANONYMOUS
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONNECTION_CREATION_RATE = "connection_creation_rate"
# Kafka's QuotaConfig: the keys of each kind of entity, and whether the value
# must be a whole number (LONG / INT) or may be fractional (DOUBLE).
USER_CLIENT_KEYS = {PRODUCER_BYTE_RATE: True, CONSUMER_BYTE_RATE: True, REQUEST_PERCENTAGE: False,
                    CONTROLLER_MUTATION_RATE: False}
IP_KEYS = {CONNECTION_CREATION_RATE: True}
INT_MAX = (1 << 31) - 1
LONG_MAX = (1 << 63) - 1
# How long a controller's copy of the quota table may be out of date with
# the store (a quota altered through another broker).
RELOAD_S = 1.0


def sanitize(name: str) -> str:
    """Kafka's Sanitizer.sanitize: URL-encoding with `*` and spaces escaped
    too, so any name is one ZooKeeper path segment."""
    return quote(name, safe="-_.!~'()")


def entity_path(entity: dict) -> str:
    """entity {type: name or None (the default)} -> Kafka's path under /config."""
    def seg(name):
        return DEFAULT if name is None else sanitize(name)
    if USER in entity and CLIENT_ID in entity:
        return f"users/{seg(entity[USER])}/clients/{seg(entity[CLIENT_ID])}"
    if USER in entity:
        return f"users/{seg(entity[USER])}"
    if IP in entity:
        return f"ips/{seg(entity[IP])}"
    return f"clients/{seg(entity[CLIENT_ID])}"


def entity_of(path: str) -> dict:
    parts = path.split("/")

    def name(s):
        return None if s == DEFAULT else unquote(s)
    out = {}
    if parts[0] == "users":
        out[USER] = name(parts[1])
        if len(parts) == 4:
            out[CLIENT_ID] = name(parts[3])
    elif parts[0] == "ips":
        out[IP] = name(parts[1])
    else:
        out[CLIENT_ID] = name(parts[1])
    return out


def check_entity(components) -> dict:
    """[(entity_type, entity_name or None)] of an AlterClientQuotas entry ->
    {type: name}; InvalidRequestError for what Kafka refuses."""
    entity: dict = {}
    for etype, name in components:
        if etype in entity:
            raise InvalidRequestError(f"Invalid client quota entity, duplicate entity entry {etype}")
        if etype not in ENTITY_TYPES:
            raise InvalidRequestError(f"Unhandled client quota entity type: {etype}")
        if name == "":
            raise InvalidRequestError(f"Empty {etype} not supported")
        entity[etype] = name
    if not entity:
        raise InvalidRequestError("Invalid empty client quota entity")
    if IP in entity:
        if len(entity) > 1:
            raise InvalidRequestError("Invalid quota entity combination, IP entity should not be combined with "
                                      "User or ClientId")
        if entity[IP] is not None and not valid_ip(entity[IP]):
            raise InvalidRequestError(f"{entity[IP]} is not a valid IP or resolvable host.")
    return entity


def valid_ip(text: str) -> bool:
    """An IP address literal. Kafka also takes a host name it can resolve; a
    lookup would block the loop and tie the quota to what DNS said once, so
    pylog takes addresses only."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def check_op(entity: dict, key: str, value: float, remove: bool) -> None:
    keys = IP_KEYS if IP in entity else USER_CLIENT_KEYS
    whole = keys.get(key)
    if whole is None:
        raise InvalidRequestError(f"Invalid configuration key {key}")
    if remove:
        return
    if math.isnan(value) or value <= 0.0:
        raise InvalidRequestError(f"Quota {key} must be greater than 0")
    if whole:
        if value > (INT_MAX if key == CONNECTION_CREATION_RATE else LONG_MAX):
            kind = "an INT" if key == CONNECTION_CREATION_RATE else "a LONG"
            raise InvalidRequestError(f"Proposed value for {key} is too large for {kind}.")
        if abs(value % 1.0) > 1e-6:
            raise InvalidRequestError(f"{key} cannot be a fractional value.")
    elif math.isinf(value):
        raise InvalidRequestError(f"Quota {key} must be a finite number")


def user_of(principal: str | None) -> str:
    """The user a quota is looked up by: the principal's name
    ("User:alice" -> "alice"), as Kafka's session.sanitizedUser; None is the
    unauthenticated ANONYMOUS."""
    if principal is None:
        return ANONYMOUS
    return principal.split(":", 1)[1] if ":" in principal else principal


def resolve(table: dict, key: str, user: str, client_id: str):
    """Kafka's DefaultQuotaCallback: (the bound, the metric tags) of the most
    specific entity with a value for key, or (None, None). The order is
    user+client, user+default client, user, default user+client, default
    user+default client, default user, client, default client. The tags (the
    user and/or client-id the matching entity is keyed by, a default
    entity's being each actual name's own) say which clients share one rate."""
    if not table:
        return None, None
    u, c = sanitize(user), sanitize(client_id)
    order = ((f"users/{u}/clients/{c}", (user, client_id)), (f"users/{u}/clients/{DEFAULT}", (user, client_id)),
             (f"users/{u}", (user, "")),
             (f"users/{DEFAULT}/clients/{c}", (user, client_id)),
             (f"users/{DEFAULT}/clients/{DEFAULT}", (user, client_id)),
             (f"users/{DEFAULT}", (user, "")),
             (f"clients/{c}", ("", client_id)), (f"clients/{DEFAULT}", ("", client_id)))
    for path, tags in order:
        value = table.get(path, {}).get(key)
        if value is not None:
            try:
                return float(value), tags
            except ValueError:
                log.warning("ignoring a malformed %s at %s: %r", key, path, value)
    return None, None


def matches(entity: dict, filters: list, strict: bool) -> bool:
    """DescribeClientQuotas' filter: filters are (entity_type, match_type,
    match); match_type 0 exact name, 1 the default, 2 any entity of the type."""
    for etype, match_type, match in filters:
        if etype not in entity:
            return False
        name = entity[etype]
        if match_type == 0 and name != match:
            return False
        if match_type == 1 and name is not None:
            return False
    return not strict or set(entity) == {f[0] for f in filters}


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float, now: float):
        self.tokens = tokens
        self.last = now


class MutationQuota:
    """The quota of one request (Kafka's Strict/PermissiveControllerMutationQuota)."""

    __slots__ = ("_bucket", "_burst", "_clock", "_rate", "_strict", "_throttled_at", "_throttle_ms")

    def __init__(self, bucket, rate, burst, strict, clock):
        self._bucket, self._rate, self._burst, self._strict, self._clock = bucket, rate, burst, strict, clock
        self._throttle_ms = 0
        self._throttled_at = 0.0

    def _refill(self, now):
        b = self._bucket
        b.tokens = min(self._burst, b.tokens + self._rate * (now - b.last))
        b.last = now

    def admit(self, permits: int) -> bool:
        """Record permits mutations; False (strict only) when refused: the
        bucket was below zero before them."""
        if self._bucket is None:
            return True
        now = self._clock()
        self._refill(now)
        b = self._bucket
        if self._strict and b.tokens < 0:
            self._throttled(now)
            return False
        b.tokens -= permits
        if not self._strict and b.tokens < 0:
            self._throttled(now)
        return True

    def _throttled(self, now):
        self._throttle_ms = round(-self._bucket.tokens / self._rate * 1000)
        self._throttled_at = now

    @property
    def throttle_time_ms(self) -> int:
        """What is left of the throttle time last computed (Kafka deducts the
        time elapsed since, for answers that waited)."""
        if not self._throttle_ms:
            return 0
        return max(0, self._throttle_ms - int((self._clock() - self._throttled_at) * 1000))


class ControllerMutationQuotas:
    """The controller's token buckets (module doc). Event loop only."""

    def __init__(self, config, load, clock=time.monotonic):
        self.samples = config.get("controller.quota.window.num")
        self.window_s = config.get("controller.quota.window.size.seconds")
        self._load = load          # () -> {entity path: {key: value}}, a blocking store read
        self._clock = clock
        self._table: dict[str, dict[str, str]] | None = None
        self._loaded_at = -1e9
        self._buckets: dict[tuple, _Bucket] = {}

    def invalidate(self) -> None:
        self._loaded_at = -1e9

    async def quota_for(self, client_id: str, strict: bool, user: str = ANONYMOUS) -> MutationQuota:
        now = self._clock()
        if self._table is None or now - self._loaded_at > RELOAD_S:
            try:
                self._table = await asyncio.get_running_loop().run_in_executor(None, self._load)
                self._loaded_at = now
            except Exception as e:  # noqa: BLE001 - the store unreachable: the last table read
                log.warning("cannot read the client quotas: %s", e)
                if self._table is None:
                    self._table = {}
        rate, tags = self._resolve(user, client_id or "")
        if rate is None:
            return MutationQuota(None, 0, 0, strict, self._clock)
        burst = rate * self.samples * self.window_s
        bucket = self._buckets.get(tags)
        if bucket is None:
            bucket = self._buckets[tags] = _Bucket(burst, now)
        return MutationQuota(bucket, rate, burst, strict, self._clock)

    def _resolve(self, user: str, client_id: str):
        return resolve(self._table or {}, CONTROLLER_MUTATION_RATE, user, client_id)
