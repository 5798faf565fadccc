"""The FetchSource seam: where a Consumer's records come from.

A Consumer keeps positions, buffers, commits and group state itself; a
FetchSource only answers "what is at these offsets" and stores commits. Two
implementations exist: NetworkSource (a cluster over the Kafka protocol,
pylog/consumer/network_source.py) and EmbeddedSource (a broker's log
directory read directly, pylog/consumer/embedded_source.py).
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

from pylog.structs import OffsetAndMetadata, TopicPartition

__all__ = ["FetchSource", "FetchedPartition"]


class FetchedPartition(NamedTuple):
    """One partition's part of a fetch answer.

    records is the raw record batches (bytes-like) exactly as a Fetch
    response carries them; it may be empty or None. error is a pylog.errors
    exception instance (e.g. OffsetOutOfRangeError, NotLeaderOrFollowerError)
    or None when the fetch succeeded. aborted_transactions: a read_committed
    fetch's (producer_id, first_offset) pairs (KAFKA-NOTES §6.3).
    """

    records: object
    high_watermark: int
    log_start_offset: int
    error: BaseException | None
    aborted_transactions: tuple = ()


class FetchSource(Protocol):
    """Where a Consumer's records live: a cluster over the network or a local directory.
    Used from the consumer's own thread only, except wakeup() (any thread)."""

    def partitions_for(self, topic: str, refresh: bool = False) -> list[int] | None:
        """Partition ids of topic, None when there is no such topic."""
        ...

    def topics(self) -> list[str]:
        """All topic names (for pattern subscriptions)."""
        ...

    def fetch(self, positions: dict[TopicPartition, int], *, max_wait_ms: int, min_bytes: int,
              max_bytes: int, max_partition_bytes: int,
              isolation_level: int) -> dict[TopicPartition, FetchedPartition]:
        """Records from each position; blocks up to max_wait_ms when nothing
        is available (long poll); may return a subset of positions."""
        ...

    def list_offsets(self, timestamps: dict[TopicPartition, int],
                     isolation_level: int = 0) -> dict[TopicPartition, tuple[int, int]]:
        """timestamp -2 earliest, -1 latest, else the first offset whose
        timestamp >= ts; value (offset, timestamp), (-1, -1) when none."""
        ...

    def commit_offsets(self, group_id: str, offsets: dict[TopicPartition, OffsetAndMetadata], *,
                       generation_id: int = -1, member_id: str = "",
                       group_instance_id: str | None = None) -> None:
        """Store offsets for group_id; raises pylog.errors exceptions."""
        ...

    def committed_offsets(self, group_id: str, partitions: list[TopicPartition],
                          timeout: float | None = None) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The committed offset of each partition, None when none is stored;
        timeout bounds a wait for offsets an open transaction is committing."""
        ...

    def wakeup(self) -> None:
        """Make a blocking fetch return early (any thread)."""
        ...

    def close(self) -> None:
        ...
