"""Kafka's default partitioner, so pylog places keys where Java and librdkafka
("murmur2_random") producers do.

Keyed records go to ``toPositive(murmur2(key)) % partition_count``; unkeyed
records are left to the caller (the tools stick to one partition per batch,
as Kafka's sticky partitioner does). The hash is computed in C
(engine/murmur2.h); pure functions, safe from any thread.
"""
from __future__ import annotations

from .._engine import murmur2, partition_for_key

__all__ = ["murmur2", "partition_for_key"]
