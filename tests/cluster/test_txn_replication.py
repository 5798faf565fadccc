"""Transaction markers on a 3-broker cluster (KAFKA-NOTES §6.3): WriteTxnMarkers
sent over the inter-broker path to the leader, answered once replicated;
followers rebuild the same producer state, last stable offset and
aborted-transaction index from the replicated batches; a marker from an
address that is no broker's changes nothing (CLUSTER_AUTHORIZATION_FAILED,
Kafka's answer without CLUSTER_ACTION)."""
from __future__ import annotations

import socket

from kafkawire import Wire

from pylog.protocol import messages as m

from broker.test_txn_partition import ENTRY, index_files, txn_batch
from .test_replication import TOPIC, cluster, publish, wait_until  # noqa: F401 -- cluster is a fixture

CLUSTER_AUTHORIZATION_FAILED = 31


def produce(w, batch):
    req = m.ProduceRequest(transactional_id="txn", acks=-1, timeout_ms=10000, topic_data=[
        m.ProduceRequest.TopicProduceData(name=TOPIC, partition_data=[
            m.ProduceRequest.PartitionProduceData(index=0, records=batch)])])
    p = w.request(0, 7, req).responses[0].partition_responses[0]
    return p.error_code, p.base_offset


def markers(w, *marks, version=1):
    """WriteTxnMarkers over the wire: (producer id, epoch, commit, coordinator
    epoch) each; the error codes, per marker."""
    M = m.WriteTxnMarkersRequest
    req = M(markers=[M.WritableTxnMarker(producer_id=pid, producer_epoch=ep, transaction_result=commit,
                                         coordinator_epoch=ce, topics=[M.WritableTxnMarkerTopic(
                                             name=TOPIC, partition_indexes=[0])])
                     for pid, ep, commit, ce in marks])
    return [mk.topics[0].partitions[0].error_code for mk in w.request(27, version, req).markers]


def replica_view(node):
    def read():
        p = node.partition()
        return (p.high_watermark, p.last_stable_offset, dict(p.producer_state.ongoing),
                [(e.producer_id, e.first_offset, e.last_offset, e.last_stable_offset)
                 for e in p.txn_indexes.all_entries()])
    return node.broker.call(read)


def test_followers_end_with_the_leaders_lso_and_aborted_index(cluster):  # noqa: F811
    ctl, nodes, listener = cluster()
    publish(ctl, listener, nodes, 1, 0, [1, 2, 3], [1, 2, 3])
    a, b, c = 7001, 7002, 7003   # producer ids as a coordinator hands them out
    with Wire(nodes[1].bootstrap) as w:
        assert produce(w, txn_batch(-1, -1, -1, [b"p0"], transactional=False))[0] == 0    # 0
        assert produce(w, txn_batch(a, 0, 0, [b"a0", b"a1"])) == (0, 1)                   # 1-2
        assert produce(w, txn_batch(b, 0, 0, [b"b0"])) == (0, 3)                           # 3
        assert produce(w, txn_batch(c, 0, 0, [b"c0"])) == (0, 4)                           # 4, left open
        # ABORT A (5), COMMIT B (6), in one request as a coordinator may send them.
        assert markers(w, (a, 0, False, 2), (b, 0, True, 2)) == [0, 0]
    # Answered once replicated: every replica has both markers already.
    leader = replica_view(nodes[1])
    assert leader == (7, 4, {4: c}, [(a, 1, 5, 3)])
    for i in (2, 3):
        wait_until(lambda: replica_view(nodes[i]) == leader, what=f"follower {i} LSO and index")
        assert index_files(nodes[i].partition().path) == index_files(nodes[1].partition().path) == {
            "00000000000000000000.txnindex": ENTRY.pack(0, a, 1, 5, 3)}
    # A stale coordinator epoch (per producer, as Kafka keeps it) is fenced.
    with Wire(nodes[1].bootstrap) as w:
        assert markers(w, (a, 0, True, 1), version=0) == [52]   # A last saw coordinator epoch 2


def test_a_marker_from_an_address_that_is_no_brokers_is_refused(cluster):  # noqa: F811
    ctl, nodes, listener = cluster()
    publish(ctl, listener, nodes, 1, 0, [1, 2, 3], [1, 2, 3])
    with Wire(nodes[1].bootstrap) as w:
        assert produce(w, txn_batch(7001, 0, 0, [b"a0"])) == (0, 0)
    before = replica_view(nodes[1])
    # Loopback answers any 127.x address: this client is not at the brokers' 127.0.0.1.
    w = Wire(nodes[1].bootstrap)
    w.sock.close()
    w.sock = socket.create_connection(("127.0.0.1", nodes[1].port), timeout=15, source_address=("127.0.0.2", 0))
    with w:
        assert markers(w, (7001, 0, False, 0)) == [CLUSTER_AUTHORIZATION_FAILED]
    assert replica_view(nodes[1]) == before
    assert nodes[1].state()[0] == 1   # nothing appended
