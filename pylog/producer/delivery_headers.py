"""The record headers of Producer.send(deliver_at=..., priority=...): what a
pylog broker's share groups read to hold a record back until a time
(delayed delivery) and to hand out more urgent records first (priority).

    pylog.deliver.at   the earliest delivery time, epoch milliseconds, decimal ASCII
    pylog.priority     0 (lowest) to 9 (highest), one ASCII digit

They are ordinary headers: any Kafka client may set them, and a consumer
that is no share-group member sees them as such.
"""
from __future__ import annotations

import datetime

__all__ = ["DELIVER_AT", "PRIORITY", "delivery_headers"]

DELIVER_AT = "pylog.deliver.at"
PRIORITY = "pylog.priority"
MAX_PRIORITY = 9


def delivery_headers(headers, deliver_at, priority) -> list:
    """headers (a sequence of (key, value) pairs, or None) with the two
    headers added for the arguments that are not None. deliver_at: epoch
    milliseconds (int) or an aware datetime; priority: an int 0-9."""
    out = list(headers or ())
    taken = {(k.decode() if isinstance(k, bytes) else k) for k, _ in out}
    if deliver_at is not None:
        out.append((_unique(DELIVER_AT, taken), str(_epoch_ms(deliver_at)).encode("ascii")))
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
            raise ValueError(f"priority must be an int from 0 to {MAX_PRIORITY}, not {priority!r}")
        out.append((_unique(PRIORITY, taken), str(priority).encode("ascii")))
    return out


def _epoch_ms(deliver_at) -> int:
    if isinstance(deliver_at, datetime.datetime):
        if deliver_at.tzinfo is None:
            raise ValueError("deliver_at as a datetime must carry its time zone (e.g. datetime.now(timezone.utc))")
        return int(deliver_at.timestamp() * 1000)
    if isinstance(deliver_at, bool) or not isinstance(deliver_at, int) or deliver_at < 0:
        raise ValueError(f"deliver_at must be epoch milliseconds (an int >= 0) or an aware datetime, "
                         f"not {deliver_at!r}")
    return deliver_at


def _unique(key: str, taken: set) -> str:
    if key in taken:
        raise ValueError(f"header {key} is given twice (in headers and as an argument)")
    return key
