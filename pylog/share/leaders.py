"""Where a share-partition's leader is now, for a ShareFetch or
ShareAcknowledge answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH:
each such partition's CurrentLeader and the response's NodeEndpoints (the
leaders' endpoints on the listener the request came in on), as Kafka's
KafkaApis fills them, so the client moves without a metadata round first.

Threads: the event loop's thread only.
"""
from __future__ import annotations

from ..protocol.error_codes import Errors

_MOVED = (Errors.NOT_LEADER_OR_FOLLOWER, Errors.FENCED_LEADER_EPOCH)


def add_leaders(broker, header, R, partitions) -> list:
    """partitions: [(topic id, PartitionData)] of response class R; sets the
    moved ones' current_leader from the metadata; R's NodeEndpoints to send."""
    cache = broker.metadata_cache
    listener = getattr(header, "listener_name", None)
    ids = set()
    for tid, pd in partitions:
        if pd.error_code not in _MOVED:
            continue
        st = cache.partition(cache.topic_name(tid) or "", pd.partition_index)
        if st is None:
            continue
        pd.current_leader = R.LeaderIdAndEpoch(leader_id=st.leader, leader_epoch=st.leader_epoch)
        if st.leader >= 0:
            ids.add(st.leader)
    out = []
    for bid in sorted(ids):
        ep = cache.node(bid, listener)
        if ep is not None:
            out.append(R.NodeEndpoint(node_id=ep.id, host=ep.host, port=ep.port, rack=ep.rack))
    return out
