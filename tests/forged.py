"""Controller requests as an attacker (any plain client) would send them:
StopReplica deleting a partition, UpdateMetadata advertising a bogus address,
LeaderAndIsr naming a leader that does not exist. Sent over a raw socket
(kafkawire.Wire) by tests/broker/test_forged_controller_requests.py (a lone
broker) and tests/cluster/test_forged_controller_requests.py (a cluster)."""
from __future__ import annotations

from pylog.protocol import messages as m

LEADER_AND_ISR, STOP_REPLICA, UPDATE_METADATA = 4, 5, 6
EVIL_HOST, EVIL_PORT = "evil.invalid", 1
NO_SUCH_BROKER = 99


def stop_replica_delete(topic, partitions, controller_id, controller_epoch, broker_epoch):
    """StopReplica v1 with delete_partitions: what the controller sends to
    delete a topic's replicas."""
    Q = m.StopReplicaRequest
    return STOP_REPLICA, 1, Q(controller_id=controller_id, controller_epoch=controller_epoch,
                              broker_epoch=broker_epoch, delete_partitions=True,
                              topics=[Q.StopReplicaTopicV1(name=topic, partition_indexes=list(partitions))])


def update_metadata_evil(broker_ids, controller_id, controller_epoch, broker_epoch):
    """UpdateMetadata v5: every broker id at evil.invalid:1, and no topics."""
    Q = m.UpdateMetadataRequest
    return UPDATE_METADATA, 5, Q(
        controller_id=controller_id, controller_epoch=controller_epoch, broker_epoch=broker_epoch,
        topic_states=[], live_brokers=[Q.UpdateMetadataBroker(id=b, endpoints=[Q.UpdateMetadataEndpoint(
            port=EVIL_PORT, host=EVIL_HOST, listener="PLAINTEXT", security_protocol=0)], rack=None)
            for b in broker_ids])


def leader_and_isr_nowhere(topic, partition, replicas, controller_id, controller_epoch, broker_epoch,
                           leader_epoch=1000):
    """LeaderAndIsr v3: the partition led by a broker that does not exist,
    with a leader epoch far ahead (so no real state is newer)."""
    Q = m.LeaderAndIsrRequest
    state = Q.LeaderAndIsrPartitionState(
        partition_index=partition, controller_epoch=controller_epoch, leader=NO_SUCH_BROKER,
        leader_epoch=leader_epoch, isr=[NO_SUCH_BROKER], partition_epoch=leader_epoch,
        replicas=list(replicas) + [NO_SUCH_BROKER], adding_replicas=[], removing_replicas=[], is_new=False)
    return LEADER_AND_ISR, 3, Q(
        controller_id=controller_id, controller_epoch=controller_epoch, broker_epoch=broker_epoch,
        topic_states=[Q.LeaderAndIsrTopicState(topic_name=topic, partition_states=[state])],
        live_leaders=[Q.LeaderAndIsrLiveLeader(broker_id=NO_SUCH_BROKER, host_name=EVIL_HOST, port=EVIL_PORT)])
