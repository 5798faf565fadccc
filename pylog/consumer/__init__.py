"""pylog's Consumer: reads records from a cluster or a local log directory.

    consumer.py        Consumer: positions, buffers, commits, rebalance callbacks
    source.py          FetchSource: the seam between the Consumer and where records live
    network_source.py  NetworkSource: a cluster over the Kafka protocol
    membership.py      GroupMembership: classic consumer-group membership over the network
    assignors.py       partition assignors (range, roundrobin, sticky, cooperative-sticky)
    embedded_source.py EmbeddedSource / LocalMembership: a broker's log directory, no broker
    share_consumer.py  ShareConsumer: a share-group member (KIP-932): acquire, acknowledge, run(handler)
    share_membership.py ShareMembership: ShareGroupHeartbeat on a thread of its own
    share_transport.py the ShareConsumer's requests: to each leader, or to an embedded store in-process
"""
from ..errors import CommitFailedError, NoOffsetForPartitionError
from .consumer import Consumer, ConsumerRecord, OffsetAndTimestamp

__all__ = ["CommitFailedError", "Consumer", "ConsumerRecord", "NoOffsetForPartitionError",
           "OffsetAndTimestamp"]
