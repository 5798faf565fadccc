"""The other APIs' checks, over the wire, each refused without its ACL and
answered with it, as Kafka's KafkaApis answers: ListOffsets, DeleteRecords,
CreatePartitions, DescribeConfigs / IncrementalAlterConfigs (topic and
broker resources), DescribeProducers, DescribeTransactions, ListGroups,
DeleteGroups, DescribeLogDirs, the inter-broker APIs; and kcat's listing."""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import wait_until

from .conftest import AclOperation, ResourcePatternType, ResourceType, binding, ck, grant

T, G = ResourceType.TOPIC, ResourceType.GROUP
OP = AclOperation


@pytest.fixture
def conn(acl_broker):
    host, port = str(acl_broker).rsplit(":", 1)
    with Connection(host, int(port), client_id="acl-test", timeout=30) as c:
        yield c


@pytest.fixture
def made(admin, topic):
    grant(admin, binding(T, topic, OP.CREATE))
    admin.create_topics([ck.admin.NewTopic(topic, 1, 1)])[topic].result()
    return topic


def test_list_offsets_and_delete_records(admin, conn, made):
    L, D = m.ListOffsetsRequest, m.DeleteRecordsRequest

    def offsets():
        r = conn.request(L(replica_id=-1, topics=[L.ListOffsetsTopic(name=made, partitions=[
            L.ListOffsetsPartition(partition_index=0, timestamp=-1)])]), api_version=7)
        return r.topics[0].partitions[0].error_code

    def delete():
        r = conn.request(D(topics=[D.DeleteRecordsTopic(name=made, partitions=[
            D.DeleteRecordsPartition(partition_index=0, offset=0)])], timeout_ms=30000), api_version=1)
        return r.topics[0].partitions[0].error_code
    assert offsets() == Errors.TOPIC_AUTHORIZATION_FAILED
    assert delete() == Errors.TOPIC_AUTHORIZATION_FAILED
    grant(admin, binding(T, made, OP.DESCRIBE))
    assert offsets() == 0
    grant(admin, binding(T, made, OP.DELETE))
    assert delete() == 0


def test_create_partitions_needs_alter(admin, conn, made):
    C = m.CreatePartitionsRequest

    def grow(n):
        r = conn.request(C(topics=[C.CreatePartitionsTopic(name=made, count=n, assignments=None)],
                           timeout_ms=30000, validate_only=False), api_version=3)
        return r.results[0].error_code
    assert grow(2) == Errors.TOPIC_AUTHORIZATION_FAILED
    grant(admin, binding(T, made, OP.ALTER))
    assert grow(2) == 0


def test_configs_need_describe_configs_and_alter_configs(admin, conn, made):
    D, A = m.DescribeConfigsRequest, m.IncrementalAlterConfigsRequest

    def describe():
        r = conn.request(D(resources=[D.DescribeConfigsResource(resource_type=2, resource_name=made),
                                      D.DescribeConfigsResource(resource_type=4, resource_name="1")]),
                         api_version=2)
        return {x.resource_type: x.error_code for x in r.results}

    def alter():
        r = conn.request(A(resources=[A.AlterConfigsResource(resource_type=2, resource_name=made, configs=[
            A.AlterableConfig(name="retention.ms", config_operation=0, value="1000000")])], validate_only=False),
            api_version=1)
        return r.responses[0].error_code
    assert describe() == {2: Errors.TOPIC_AUTHORIZATION_FAILED, 4: Errors.CLUSTER_AUTHORIZATION_FAILED}
    assert alter() == Errors.TOPIC_AUTHORIZATION_FAILED
    grant(admin, binding(T, made, OP.ALTER_CONFIGS),
          binding(ResourceType.BROKER, "kafka-cluster", OP.DESCRIBE_CONFIGS))
    assert describe() == {2: 0, 4: 0}     # ALTER_CONFIGS implies DESCRIBE_CONFIGS
    assert alter() == 0


def test_describe_producers_and_transactions(admin, conn, made):
    P, DT = m.DescribeProducersRequest, m.DescribeTransactionsRequest
    r = conn.request(P(topics=[P.TopicRequest(name=made, partition_indexes=[0])]), api_version=0)
    assert r.topics[0].partitions[0].error_code == Errors.TOPIC_AUTHORIZATION_FAILED
    grant(admin, binding(T, made, OP.READ))
    r = conn.request(P(topics=[P.TopicRequest(name=made, partition_indexes=[0])]), api_version=0)
    assert r.topics[0].partitions[0].error_code == 0
    txn = f"tx-{uuid.uuid4().hex[:8]}"
    r = conn.request(DT(transactional_ids=[txn]), api_version=0)
    assert r.transaction_states[0].error_code == Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    grant(admin, binding(ResourceType.TRANSACTIONAL_ID, txn, OP.DESCRIBE))
    r = conn.request(DT(transactional_ids=[txn]), api_version=0)
    assert r.transaction_states[0].error_code != Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED


def test_list_groups_filters_and_delete_groups_needs_delete(acl_broker, admin, conn, made):
    group = f"g-{uuid.uuid4().hex[:8]}"
    grant(admin, binding(G, group, OP.READ), binding(T, made, OP.READ))
    OC = m.OffsetCommitRequest

    def commit():
        # the first group of the broker: the coordinator loads until FindCoordinator made __consumer_offsets
        conn.request(m.FindCoordinatorRequest(key=group, key_type=0), api_version=3)
        r = conn.request(OC(group_id=group, generation_id_or_member_epoch=-1, member_id="", topics=[
            OC.OffsetCommitRequestTopic(name=made, partitions=[
                OC.OffsetCommitRequestPartition(partition_index=0, committed_offset=0)])]), api_version=8)
        return r.topics[0].partitions[0].error_code == 0
    wait_until(commit, what="the offset committed")
    # DESCRIBE on the cluster (the fixture's admin ACL) lists every group
    groups = {g.group_id for g in conn.request(m.ListGroupsRequest(), api_version=4).groups}
    assert group in groups
    r = conn.request(m.DeleteGroupsRequest(groups_names=[group]), api_version=2)
    assert r.results[0].error_code == Errors.GROUP_AUTHORIZATION_FAILED
    grant(admin, binding(G, group[:4], OP.DELETE, pattern=ResourcePatternType.PREFIXED))
    r = conn.request(m.DeleteGroupsRequest(groups_names=[group]), api_version=2)
    assert r.results[0].error_code == 0


def test_cluster_apis_need_their_cluster_acl(tmp_path):
    from pylog.testing import running_broker

    from .conftest import AUTHZ
    with running_broker(data_dir=str(tmp_path / "d"), config=AUTHZ) as b:
        host, port = str(b).rsplit(":", 1)
        with Connection(host, int(port), client_id="t", timeout=30) as c:
            r = c.request(m.DescribeLogDirsRequest(topics=None), api_version=4)
            assert r.error_code == Errors.CLUSTER_AUTHORIZATION_FAILED and r.results == []
            r = c.request(m.ListGroupsRequest(), api_version=4)
            assert r.error_code == 0 and r.groups == []
            r = c.request(m.ListPartitionReassignmentsRequest(timeout_ms=1000, topics=None), api_version=0)
            assert r.error_code == Errors.CLUSTER_AUTHORIZATION_FAILED
            r = c.request(m.DescribeClientQuotasRequest(components=[], strict=False), api_version=1)
            assert r.error_code == Errors.CLUSTER_AUTHORIZATION_FAILED
            r = c.request(m.DescribeClusterRequest(include_cluster_authorized_operations=True), api_version=1)
            assert r.error_code == 0 and r.cluster_authorized_operations == 0
            # a follower's fetch without CLUSTER_ACTION: every partition refused
            F = m.FetchRequest
            r = c.request(F(replica_id=5, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
                            topics=[F.FetchTopic(topic="t", partitions=[F.FetchPartition(
                                partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])]), api_version=11)
            assert r.responses[0].partitions[0].error_code == Errors.TOPIC_AUTHORIZATION_FAILED


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_lists_only_what_it_may_describe(acl_broker, admin, made):
    hidden = f"{made}-x"
    grant(admin, binding(T, hidden, OP.CREATE))
    admin.create_topics([ck.admin.NewTopic(hidden, 1, 1)])[hidden].result()
    grant(admin, binding(T, made, OP.DESCRIBE))
    r = subprocess.run(["kcat", "-b", str(acl_broker), "-L", "-J"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    names = {t["topic"] for t in json.loads(r.stdout)["topics"]}
    assert made in names and hidden not in names


def test_created_topics_configs_need_describe_configs(admin, conn, topic):
    C = m.CreateTopicsRequest
    grant(admin, binding(T, topic[:10], OP.CREATE, pattern=ResourcePatternType.PREFIXED))

    def create(name):
        r = conn.request(C(topics=[C.CreatableTopic(name=name, num_partitions=1, replication_factor=1,
                                                    assignments=[], configs=[])],
                           timeout_ms=30000, validate_only=False), api_version=5)
        return r.topics[0]
    t = create(topic)
    assert (t.error_code, t.topic_config_error_code, t.configs) == (0, Errors.TOPIC_AUTHORIZATION_FAILED, None)
    assert t.num_partitions == 1
    grant(admin, binding(T, f"{topic}-2", OP.DESCRIBE_CONFIGS))
    t = create(f"{topic}-2")
    assert t.error_code == 0 and t.topic_config_error_code == 0 and t.configs


def test_metadata_by_id_without_describe_gives_the_id_not_the_name(admin, conn, made):
    grant(admin, binding(T, made, OP.ALTER))     # implies DESCRIBE: the id can be learnt
    MR = m.MetadataRequest
    r = conn.request(MR(topics=[MR.MetadataRequestTopic(name=made)], allow_auto_topic_creation=False),
                     api_version=12)
    tid = r.topics[0].topic_id
    assert r.topics[0].error_code == 0 and tid.int
    from .conftest import revoke
    revoke(admin, binding(T, made, OP.ALTER))
    r = conn.request(MR(topics=[MR.MetadataRequestTopic(name=None, topic_id=tid)], allow_auto_topic_creation=False),
                     api_version=12)
    assert [(t.error_code, t.name, t.topic_id) for t in r.topics] == [(Errors.TOPIC_AUTHORIZATION_FAILED, None, tid)]
