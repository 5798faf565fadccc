"""pylog's own tagged fields on Kafka's inter-broker messages.

A flexible message version may carry tagged fields its receiver does not know
(the receiver skips them), so the controller adds what Kafka's LeaderAndIsr
(v4) and UpdateMetadata (v6) do not carry and Kafka keeps elsewhere (in
ZooKeeper's /config/topics, or the KRaft metadata log):

- TOPIC_CONFIGS (tag 7001) on each topic state: the topic's config overrides
  as a JSON object of strings. Present means "exactly these" (an empty object
  clears every override); absent means "unchanged".
- REASSIGNMENT_THROTTLE (tag 7002) on a LeaderAndIsr partition state being
  reassigned: the rate in bytes/s (int64) at which its adding replicas copy
  it (`pylog reassign --throttle`; Kafka keeps such rates as dynamic broker
  configs, which pylog does not have).
- CONTROLLER_EPOCH (tag 7003) on the embedded controller's BrokerRegistration
  and BrokerHeartbeat answers: its current controller epoch (int32). Its
  brokers cannot read its store; this is how they check a controller request
  with an epoch they have not seen, as a ZooKeeper broker reads /controller.
- CLEANER_STATE (tag 7004) on a DescribeLogDirs (v2+) partition entry of a
  compacted log: the log cleaner's view of it as a JSON object (dirty_ratio,
  first_dirty_offset, first_uncleanable_offset, max_compaction_delay_ms,
  state, and last_round: null or the last round's finished_ms, elapsed_ms,
  first_dirty_offset, end_offset, bytes_read, bytes_written, records_read,
  records_kept), for `pylog topics describe`. Kafka keeps these as the
  cleaner's JMX metrics and log lines, which a client cannot ask for.
- GROUP_CONFIGS (tag 7005) on UpdateMetadata itself: every group's config
  overrides (KIP-848 GROUP resources) as a JSON object {group id: {key:
  value}}, always complete. Kafka's brokers read them from the KRaft
  metadata log; the group coordinator on every broker needs them.
- BROKER_CONFIGS (tag 7006) on UpdateMetadata itself: the dynamic broker
  configs as a JSON object {broker id, or "" for the cluster default: {key:
  value}}, always complete. Kafka's brokers read them from /config/brokers
  or the KRaft metadata log; each broker applies its own and the default.
- SHARE_DLQ_STATS (tag 7010) on a DescribeShareGroupOffsets partition entry
  of a share group with a dead-letter topic (KIP-1191): {"written": n,
  "failed": k}, the records the share-partition's leader wrote to the
  dead-letter topic and archived without writing, since it started, for
  `pylog share-groups describe`. Kafka keeps them as JMX metrics
  (DeadLetterQueueRecordCount), which a client cannot ask for.
- SHARE_DELAY_STATS (tag 7011) on a DescribeShareGroupOffsets partition
  entry of a share-partition loaded on its leader that has met delayed
  records (pylog's delayed delivery, pylog/share/delivery.py): {"delayed": n,
  "next_due_ms": ms or null}, the records the leader has indexed whose due
  time is still ahead, and the milliseconds until the earliest due time (of
  those, or of the batch the topic delay holds back).
- SHARE_LEADER_STATS (tag 7012) on a DescribeShareGroupOffsets request
  itself (value b"1"): the broker answers, without being the group's
  coordinator, only the tags above for the named partitions it leads (the
  other fields -1; NOT_LEADER_OR_FOLLOWER for one it does not lead). `pylog
  share-groups describe` asks each partition's leader so, since the counts
  live where the share-partition is.
"""
from __future__ import annotations

import json

__all__ = ["BROKER_CONFIGS_TAG", "broker_configs_field", "broker_configs_of", "GROUP_CONFIGS_TAG", "group_configs_field", "group_configs_of", "CLEANER_STATE_TAG", "cleaner_state_field", "cleaner_state_of", "CONTROLLER_EPOCH_TAG", "controller_epoch_field", "controller_epoch_of", "REASSIGNMENT_THROTTLE_TAG", "TOPIC_CONFIGS_TAG", "reassignment_throttle_field",
           "reassignment_throttle_of", "topic_configs_field", "topic_configs_of", "SHARE_DLQ_STATS_TAG",
           "share_dlq_stats_field", "share_dlq_stats_of", "SHARE_DELAY_STATS_TAG", "share_delay_stats_field",
           "share_delay_stats_of", "SHARE_LEADER_STATS_TAG", "share_leader_stats_field", "asks_share_leader_stats"]

# Far above the small numbers Kafka gives its own tagged fields.
TOPIC_CONFIGS_TAG = 7001
REASSIGNMENT_THROTTLE_TAG = 7002
CONTROLLER_EPOCH_TAG = 7003
CLEANER_STATE_TAG = 7004
GROUP_CONFIGS_TAG = 7005
BROKER_CONFIGS_TAG = 7006
SHARE_DLQ_STATS_TAG = 7010
SHARE_DELAY_STATS_TAG = 7011
SHARE_LEADER_STATS_TAG = 7012


def topic_configs_field(configs: dict[str, str]) -> tuple[int, bytes]:
    """The (tag, bytes) to put in a topic state's _unknown_tagged_fields."""
    return TOPIC_CONFIGS_TAG, json.dumps(configs, separators=(",", ":"), sort_keys=True).encode()


def topic_configs_of(struct) -> dict[str, str] | None:
    """The overrides a decoded topic state carries, or None when it carries none."""
    for tag, data in getattr(struct, "_unknown_tagged_fields", None) or ():
        if tag == TOPIC_CONFIGS_TAG:
            value = json.loads(bytes(data))
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise ValueError(f"tagged field {tag}: not an object of strings")
            return value
    return None


def reassignment_throttle_field(rate: int) -> tuple[int, bytes]:
    return REASSIGNMENT_THROTTLE_TAG, rate.to_bytes(8, "big", signed=True)


def reassignment_throttle_of(struct) -> int | None:
    """The bytes/s an adding replica of this partition may copy at, or None."""
    for tag, data in getattr(struct, "_unknown_tagged_fields", None) or ():
        if tag == REASSIGNMENT_THROTTLE_TAG:
            if len(data) != 8:
                raise ValueError(f"tagged field {tag}: {len(data)} bytes, not 8")
            rate = int.from_bytes(bytes(data), "big", signed=True)
            return rate if rate > 0 else None
    return None


def controller_epoch_field(epoch: int) -> tuple[int, bytes]:
    return CONTROLLER_EPOCH_TAG, epoch.to_bytes(4, "big", signed=True)


def controller_epoch_of(struct) -> int | None:
    """The controller epoch an embedded controller's answer carries, or None."""
    for tag, data in getattr(struct, "_unknown_tagged_fields", None) or ():
        if tag == CONTROLLER_EPOCH_TAG:
            if len(data) != 4:
                raise ValueError(f"tagged field {tag}: {len(data)} bytes, not 4")
            return int.from_bytes(bytes(data), "big", signed=True)
    return None


def cleaner_state_field(state: dict) -> tuple[int, bytes]:
    return CLEANER_STATE_TAG, json.dumps(state, separators=(",", ":"), sort_keys=True).encode()


def cleaner_state_of(struct) -> dict | None:
    """The cleaner state a DescribeLogDirs partition entry carries, or None."""
    for tag, data in getattr(struct, "_unknown_tagged_fields", None) or ():
        if tag == CLEANER_STATE_TAG:
            value = json.loads(bytes(data))
            if not isinstance(value, dict) or not isinstance(value.get("last_round"), (dict, type(None))):
                raise ValueError(f"tagged field {tag}: not a cleaner state object")
            return value
    return None


def group_configs_field(configs: dict[str, dict[str, str]]) -> tuple[int, bytes]:
    return GROUP_CONFIGS_TAG, json.dumps(configs, separators=(",", ":"), sort_keys=True).encode()


def group_configs_of(struct) -> dict[str, dict[str, str]] | None:
    """Every group's overrides an UpdateMetadata carries, or None when it carries none."""
    return _configs_table_of(struct, GROUP_CONFIGS_TAG)


def broker_configs_field(configs: dict[str, dict[str, str]]) -> tuple[int, bytes]:
    return BROKER_CONFIGS_TAG, json.dumps(configs, separators=(",", ":"), sort_keys=True).encode()


def broker_configs_of(struct) -> dict[str, dict[str, str]] | None:
    """The dynamic broker configs an UpdateMetadata carries, or None when it carries none."""
    return _configs_table_of(struct, BROKER_CONFIGS_TAG)


def _configs_table_of(struct, wanted: int) -> dict[str, dict[str, str]] | None:
    for tag, data in getattr(struct, "_unknown_tagged_fields", None) or ():
        if tag == wanted:
            value = json.loads(bytes(data))
            if not isinstance(value, dict) or not all(
                    isinstance(g, str) and isinstance(c, dict)
                    and all(isinstance(k, str) and isinstance(v, str) for k, v in c.items())
                    for g, c in value.items()):
                raise ValueError(f"tagged field {tag}: not an object of objects of strings")
            return value
    return None


def share_dlq_stats_field(written: int, failed: int) -> tuple[int, bytes]:
    return SHARE_DLQ_STATS_TAG, json.dumps({"failed": failed, "written": written}, separators=(",", ":")).encode()


def share_dlq_stats_of(struct) -> dict[str, int] | None:
    """The dead-letter counts a DescribeShareGroupOffsets partition entry carries, or None."""
    for tag, data in getattr(struct, "_unknown_tagged_fields", None) or ():
        if tag == SHARE_DLQ_STATS_TAG:
            value = json.loads(bytes(data))
            if not isinstance(value, dict) or not all(isinstance(value.get(k), int) for k in ("written", "failed")):
                raise ValueError(f"tagged field {tag}: not a dead-letter stats object")
            return value
    return None


def share_delay_stats_field(delayed: int, next_due_ms: int | None) -> tuple[int, bytes]:
    return SHARE_DELAY_STATS_TAG, json.dumps({"delayed": delayed, "next_due_ms": next_due_ms},
                                             separators=(",", ":")).encode()


def share_delay_stats_of(struct) -> dict | None:
    """The delay statistics a DescribeShareGroupOffsets partition entry carries, or None."""
    for tag, data in getattr(struct, "_unknown_tagged_fields", None) or ():
        if tag == SHARE_DELAY_STATS_TAG:
            value = json.loads(bytes(data))
            due = value.get("next_due_ms") if isinstance(value, dict) else None
            if not isinstance(value, dict) or not isinstance(value.get("delayed"), int) \
                    or not (due is None or isinstance(due, int)):
                raise ValueError(f"tagged field {tag}: not a delay stats object")
            return value
    return None


def share_leader_stats_field() -> tuple[int, bytes]:
    return SHARE_LEADER_STATS_TAG, b"1"


def asks_share_leader_stats(request) -> bool:
    return any(tag == SHARE_LEADER_STATS_TAG for tag, _ in getattr(request, "_unknown_tagged_fields", None) or ())
