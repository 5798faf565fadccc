"""OffsetForLeaderEpoch (key 23): the leader's answer to "where does epoch E end?".

Followers ask it when they become followers, to find where their log diverges
from the leader's (KIP-101/279); consumers ask it after a leader change to
detect truncation (KIP-320). Versions 0-3 (v3 adds replica_id, v2
current_leader_epoch and throttle_time_ms, v1 the answer's leader_epoch).

As Kafka's ReplicaManager.lastOffsetForLeaderEpoch / Partition.lastOffsetForLeaderEpoch,
per partition and in this order:
  NOT_LEADER_OR_FOLLOWER (6)        not hosted here but a partition the metadata knows
                                    (Kafka's getPartitionOrError: the client refreshes and
                                    goes to the replicas);
  UNKNOWN_TOPIC_OR_PARTITION (3)    not hosted and not known (or whatever code lookup's error carries);
  FENCED_LEADER_EPOCH (74)          current_leader_epoch (v2+, -1 = not given) < our leader_epoch;
  UNKNOWN_LEADER_EPOCH (75)         current_leader_epoch > our leader_epoch;
  NOT_LEADER_OR_FOLLOWER (6)        we are not the leader: Kafka serves this API from
                                    leaders only, whoever asks (fetchOnlyFromLeader = true);
  else (leader_epoch, end_offset) = epoch_cache.end_offset_for(requested, log_end_offset),
  which is (-1, -1) when the epoch is unknown.
"""
from __future__ import annotations

from typing import Callable

from ..errors import PylogError, UnknownTopicOrPartitionError, code_for
from ..protocol import messages as m
from ..protocol.error_codes import Errors

# RecordBatch.NO_PARTITION_LEADER_EPOCH: the request carries no current_leader_epoch.
NO_PARTITION_LEADER_EPOCH = -1


def offset_for_leader_epoch(req: m.OffsetForLeaderEpochRequest,
                            lookup: Callable, known: Callable = lambda topic, index: False
                            ) -> m.OffsetForLeaderEpochResponse:
    """The response to req. lookup(topic, partition) returns the hosted replica (an
    object with leader_epoch, is_leader, epoch_cache and log_end_offset; the broker's
    Partition) or raises a PylogError such as UnknownTopicOrPartitionError, whose
    code becomes the partition's error; known(topic, partition) says whether the
    cluster's metadata has that partition. Runs on the broker's event loop."""
    R = m.OffsetForLeaderEpochResponse
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            error, epoch, end_offset = _answer(t.topic, p, lookup, known)
            parts.append(R.EpochEndOffset(error_code=error, partition=p.partition,
                                          leader_epoch=epoch, end_offset=end_offset))
        topics.append(R.OffsetForLeaderTopicResult(topic=t.topic, partitions=parts))
    return R(throttle_time_ms=0, topics=topics)


def _answer(topic, p, lookup, known):
    try:
        replica = lookup(topic, p.partition)
    except UnknownTopicOrPartitionError:
        code = Errors.NOT_LEADER_OR_FOLLOWER if known(topic, p.partition) else Errors.UNKNOWN_TOPIC_OR_PARTITION
        return code, -1, -1
    except PylogError as e:
        return code_for(e), -1, -1
    current = p.current_leader_epoch
    if current != NO_PARTITION_LEADER_EPOCH:
        if replica.leader_epoch > current:
            return Errors.FENCED_LEADER_EPOCH, -1, -1
        if replica.leader_epoch < current:
            return Errors.UNKNOWN_LEADER_EPOCH, -1, -1
    if not replica.is_leader:
        return Errors.NOT_LEADER_OR_FOLLOWER, -1, -1
    epoch, end_offset = replica.epoch_cache.end_offset_for(p.leader_epoch, replica.log_end_offset)
    return Errors.NONE, epoch, end_offset
