"""Kafka's BrokerTopicMetrics counters, per topic."""
from __future__ import annotations

from collections import Counter

from ..protocol.error_codes import Errors

# Kafka's ReplicaManager answers these without marking FailedProduceRequestsPerSec
# (appendToLocalLog) or FailedFetchRequestsPerSec (readFromLog): they are the
# client's to handle (a metadata refresh, a smaller batch), not the broker's failure.
PRODUCE_NOT_FAILED = frozenset((
    Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.NOT_LEADER_OR_FOLLOWER, Errors.MESSAGE_TOO_LARGE,
    Errors.RECORD_LIST_TOO_LARGE, Errors.CORRUPT_MESSAGE, Errors.KAFKA_STORAGE_ERROR))
FETCH_NOT_FAILED = frozenset((
    Errors.UNKNOWN_TOPIC_OR_PARTITION, Errors.NOT_LEADER_OR_FOLLOWER, Errors.UNKNOWN_LEADER_EPOCH,
    Errors.FENCED_LEADER_EPOCH, Errors.REPLICA_NOT_AVAILABLE, Errors.KAFKA_STORAGE_ERROR,
    Errors.OFFSET_OUT_OF_RANGE, Errors.INCONSISTENT_TOPIC_ID))


class BrokerTopicStats:
    """Counts per topic name (topics that exist here: no key is made for a
    name a client invents), incremented once per partition of a request
    (never per record): MessagesInPerSec, BytesInPerSec,
    TotalProduceRequestsPerSec, FailedProduceRequestsPerSec,
    TotalFetchRequestsPerSec, FailedFetchRequestsPerSec. BytesOutPerSec is
    each Partition's bytes_out. Always counted, as Kafka's are; exported
    only with pylog.metrics.listener. Event-loop thread only: the collector
    copies them there."""

    __slots__ = ("messages_in", "bytes_in", "produce_total", "produce_failed", "fetch_total", "fetch_failed")

    def __init__(self):
        self.messages_in = Counter()
        self.bytes_in = Counter()
        self.produce_total = Counter()
        self.produce_failed = Counter()
        self.fetch_total = Counter()
        self.fetch_failed = Counter()

    def produced(self, topic: str, result, nbytes: int) -> None:
        self.messages_in[topic] += result.last_offset - result.first_offset + 1
        self.bytes_in[topic] += nbytes

    def forget_topics_except(self, topics) -> None:
        """Drop the counts of topics no longer here (deleted): Kafka removes a
        topic's meters with it."""
        for name in self.__slots__:
            counts = getattr(self, name)
            for topic in [t for t in counts if t not in topics]:
                del counts[topic]

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {name: dict(getattr(self, name)) for name in self.__slots__}
