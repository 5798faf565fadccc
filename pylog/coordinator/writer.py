"""What a coordinator may ask of the broker: the partitions of its internal
topic, and nothing else (Kafka's coordinator-common PartitionWriter is the
model). The broker implements it in one adapter (broker/coordinator_writer.py);
a coordinator never sees the Broker, its config, controller or caches.

Threads: implementations are called from the event loop's thread only
(`append` and `read` run where the partition's appends run).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class PartitionWriter(Protocol):
    node_id: int   # this broker's id (for log lines and answers naming the coordinator)
    # True when the runtime runs on this broker's event loop and may replay a
    # big partition in slices between other requests; False for a caller
    # with no loop of its own: replay at once.
    loads_in_steps: bool

    def partition_count(self, topic: str) -> int | None:
        """The topic's partition count as this broker knows it; None while
        the topic does not exist."""

    def led_partitions(self, topic: str) -> list[int]:
        """The partitions of topic this broker leads now (a lone broker leads
        every one); later changes arrive as on_become_leader/on_resign."""

    def append(self, topic: str, index: int, keys: list, values: list) -> int:
        """Append records as leader (a value of None is a tombstone); the
        offset of the last one. Raises NotLeaderOrFollowerError,
        UnknownTopicOrPartitionError, a storage error."""

    def append_txn_marker(self, topic: str, index: int, producer_id: int, producer_epoch: int,
                          coordinator_epoch: int, committed: bool) -> int:
        """Append a transaction's COMMIT (committed) or ABORT marker as
        leader (WriteTxnMarkers for a partition of the coordinator's topic);
        its offset. Raises as append does, or the producer's fencing error."""

    def read(self, topic: str, index: int) -> Iterator:
        """Every record of the partition from its log start, in offset order
        (objects with .offset, .key, .value), for replay."""

    def commit_outcome(self, topic: str, index: int, offset: int) -> int | None:
        """0 when the high watermark already passes offset, an error when it
        never will here (not leader, ISR too small), None while undecided."""

    async def wait_committed(self, topic: str, index: int, offset: int, timeout_s: float) -> int:
        """Wait until the partition's high watermark passes offset: 0, or
        the error (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        REQUEST_TIMED_OUT)."""

    def topic_image(self) -> dict:
        """{name: (topic_id, partition count)} of the cluster's topics, as
        this broker knows them (KIP-848 groups subscribe by name or regex
        and are assigned by topic id)."""

    def partition_racks(self, topic: str, count: int) -> list[list[str]]:
        """For each of the topic's partitions 0..count-1, the racks of its
        replicas' brokers (a rack once per replica; brokers without one left
        out): Kafka's partitionRacks, hashed into KIP-848 and share groups'
        metadata hash."""

    def metadata_version(self) -> int:
        """A number that moves whenever topic_image or partition_racks may
        answer otherwise (cached topic hashes are dropped then)."""

    def group_config(self, group_id: str) -> dict:
        """A KIP-848 group's effective consumer.session.timeout.ms and
        consumer.heartbeat.interval.ms (its GROUP overrides, else the
        broker's group.consumer.* values)."""

    def partition_exists(self, topic: str, index: int) -> bool:
        """Whether topic-index exists in the cluster (any topic)."""

    def leader_endpoint(self, topic: str, index: int) -> tuple[int, str, int] | None:
        """(node_id, host, port) of the partition's live leader, or None."""

    def create_topic(self, topic: str, num_partitions: int, replication_factor: int, configs: dict) -> None:
        """Ask for the internal topic to be created (idempotent, may complete
        later: leadership of its partitions then arrives as usual)."""
