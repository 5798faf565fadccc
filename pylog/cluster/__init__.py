"""Cluster metadata and (later) the controller: how several brokers agree on
brokers, topics, leaders and ISRs.

- metadata_store: the MetadataStore interface and its records.
- zk_store: ZkMetadataStore, over ZooKeeper with Kafka's znodes.
- local_store: LocalMetadataStore, embedded, files under one broker's data dir.
- zk_server: ZooKeeperServer, a real standalone ZooKeeper for tests and `pylog cluster up`.

ZkMetadataStore is not imported here so that kazoo is only needed when used.
"""
from .metadata_store import (BrokerIdInUseError, BrokerInfo, ControllerMovedError, MetadataStore, PartitionState,
                             TopicAssignment)

__all__ = ["BrokerIdInUseError", "BrokerInfo", "ControllerMovedError", "MetadataStore", "PartitionState",
           "TopicAssignment"]
