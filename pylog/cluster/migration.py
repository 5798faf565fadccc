"""Adopting a lone broker's data dir into its one-node cluster's metadata.

Before the control plane was one, a broker alone kept its topics in
`pylog-topics.json` (id, partition count, config overrides), its cluster id in
`meta.properties` and its producer-id blocks in `pylog-producer-ids`. A lone
broker is now a one-node cluster whose controller keeps all of that in the
LocalMetadataStore under <data dir>/pylog-cluster. At every start, before its
controller starts, whatever the data dir holds that the store does not know is
written into the store: the same topic ids, partitions led by this broker with
the leader epoch each log has reached, the configs, the cluster id, and
producer-id blocks past the last one handed out. Nothing is lost and nothing
is done twice (a topic the store knows is left alone). The same step adopts
partition directories written by pylog's embedded producer.

Threads: adopt_local_data runs on a worker thread (it writes and fsyncs
files); its input is a snapshot taken on the broker's loop.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from .metadata_store import PartitionState, TopicAssignment

log = logging.getLogger("pylog.cluster.migration")


@dataclass
class LocalTopic:
    """One topic of the data dir as LogManager has it (taken on the loop).

    A snapshot taken on the broker's loop, then read on a worker thread only.
    """
    name: str
    topic_id: object
    num_partitions: int
    hosted: list[int]
    configs: dict[str, str]
    leader_epochs: dict[int, int] = field(default_factory=dict)


def adopt_local_data(store, topics: list[LocalTopic], broker_id: int, cluster_id: str,
                     producer_id_file: str) -> list[str]:
    """Write into store (a LocalMetadataStore not yet driven by a controller)
    what the data dir holds and it lacks; the names of the topics adopted.
    One batch: each file written once, all on disk before this returns."""
    with store.batch():
        return _adopt(store, topics, broker_id, cluster_id, producer_id_file)


def _adopt(store, topics, broker_id, cluster_id, producer_id_file) -> list[str]:
    if cluster_id:
        store.adopt_cluster_id(cluster_id)
    try:
        with open(producer_id_file) as f:
            next_id = int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        next_id = 0
    if next_id:
        store.reserve_producer_ids_below(next_id)
    known = store.topics()
    adopted = []
    for t in topics:
        if t.name in known:
            grown = _adopt_added_partitions(store, known[t.name], t, broker_id)
            if grown:
                adopted.append(f"{t.name} (partitions {grown})")
            continue
        if sorted(t.hosted) != list(range(t.num_partitions)):
            # Some partitions of a topic of another cluster: there is no
            # whole topic to adopt (its logs stay on disk, unserved).
            log.warning("not adopting %s: only partitions %s of %d are in this data dir", t.name, t.hosted,
                        t.num_partitions)
            continue
        store.create_topic(TopicAssignment(t.name, t.topic_id, {i: [broker_id] for i in t.hosted}), t.configs)
        epoch = store.controller_epoch()
        for i in t.hosted:
            store.create_partition_state(t.name, i, PartitionState(
                leader=broker_id, leader_epoch=max(t.leader_epochs.get(i, 0), 0), isr=[broker_id],
                controller_epoch=epoch))
        adopted.append(t.name)
    if adopted:
        log.info("adopted %d topics of %s into the cluster metadata: %s", len(adopted),
                 os.path.dirname(producer_id_file), ", ".join(adopted))
    return adopted


def _adopt_added_partitions(store, stored, t: LocalTopic, broker_id: int) -> list[int]:
    """Partitions of a topic the store knows that were added in this data dir
    since (pylog's embedded store, which runs no controller, grew the topic
    while no broker ran): the same topic (same id), every partition the store
    has led by this broker alone, the new ones contiguous after them. Returns
    the partitions adopted."""
    new = sorted(set(t.hosted) - set(stored.partitions))
    if not new or t.topic_id != stored.topic_id or sorted(t.hosted) != list(range(t.num_partitions)):
        return []
    if any(replicas != [broker_id] for replicas in stored.partitions.values()) or stored.adding:
        return []
    stored.partitions.update({i: [broker_id] for i in new})
    store.set_assignment(stored)
    epoch = store.controller_epoch()
    for i in new:
        store.create_partition_state(t.name, i, PartitionState(
            leader=broker_id, leader_epoch=max(t.leader_epochs.get(i, 0), 0), isr=[broker_id],
            controller_epoch=epoch))
    return new
