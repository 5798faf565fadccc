"""Each API's authorization, as Kafka's KafkaApis checks it (KAFKA-NOTES
§12.6), put around the handlers of the broker's table when an authorizer is
configured: the handlers themselves stay unaware of ACLs, and with no
authorizer nothing here runs at all.

A guard either refuses the whole request (the API's response with the error
code), or takes the resources the principal may not touch out of the request,
lets the handler answer the rest, and adds those resources to the answer with
TOPIC_/GROUP_/CLUSTER_/TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka answers
them. Produce, Fetch and Metadata decide inside their handlers (hot paths,
or answers built from classification the handler does).

Runs on the broker's event loop.
"""
from __future__ import annotations

import asyncio

from ..protocol import messages as m
from ..protocol.error_codes import Errors
from . import api_versions as av
from .authorizer import (ALTER, ALTER_CONFIGS, CLUSTER, CLUSTER_ACTION, CLUSTER_NAME, DELETE, DESCRIBE,
                         DESCRIBE_CONFIGS, GROUP, IDEMPOTENT_WRITE, READ, TOPIC, TRANSACTIONAL_ID, WRITE)

TOPIC_DENIED, GROUP_DENIED = Errors.TOPIC_AUTHORIZATION_FAILED, Errors.GROUP_AUTHORIZATION_FAILED
CLUSTER_DENIED, TXN_DENIED = Errors.CLUSTER_AUTHORIZATION_FAILED, Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
# DescribeConfigs / AlterConfigs resource types: 2 topic, 4 broker, 8 broker logger, 32 group.
_CONFIG_RESOURCES = {2: (TOPIC, TOPIC_DENIED), 4: (CLUSTER, CLUSTER_DENIED), 8: (CLUSTER, CLUSTER_DENIED),
                     32: (GROUP, GROUP_DENIED)}


def install(table: dict, az) -> None:
    """Wrap every handler of table whose API has a check (a no-op for APIs
    this broker does not serve)."""
    for key, guard in _GUARDS.items():
        handler = table.get(key)
        if handler is not None:
            table[key] = _wrapped(handler, guard, az)


def _wrapped(handler, guard, az):
    def guarded(header, req):
        return guard(az, header, req, handler)
    guarded.__wrapped__ = handler
    return guarded


def _then(result, fn):
    """fn applied to the handler's answer, now or when its coroutine ends."""
    if asyncio.iscoroutine(result):
        async def later():
            return fn(await result)
        return later()
    return fn(result)


def _cluster(op, code=CLUSTER_DENIED):
    """A whole request refused unless op is allowed on the cluster; the
    response's top-level error_code carries it."""
    def guard(az, header, req, handler):
        if az.allows_cluster(header, op):
            return handler(header, req)
        return m.RESPONSES[header.request_api_key](error_code=code)
    return guard


def _group(op, attr="group_id"):
    def guard(az, header, req, handler):
        if az.allows(header, op, GROUP, getattr(req, attr)):
            return handler(header, req)
        return m.RESPONSES[header.request_api_key](error_code=GROUP_DENIED)
    return guard


def _consumer_group_heartbeat(az, header, req, handler):
    """READ on the group, then DESCRIBE on every subscribed topic name: one
    that is not allowed fails the whole heartbeat with
    TOPIC_AUTHORIZATION_FAILED (no topic named, so the member cannot learn
    which exist), as KafkaApis answers it."""
    if not az.allows(header, READ, GROUP, req.group_id):
        return m.RESPONSES[header.request_api_key](error_code=GROUP_DENIED)
    if req.subscribed_topic_names and az.denied(header, DESCRIBE, TOPIC, set(req.subscribed_topic_names)):
        return m.RESPONSES[header.request_api_key](error_code=TOPIC_DENIED)
    return handler(header, req)


def _txn(op=WRITE, then=None):
    def guard(az, header, req, handler):
        if not az.allows(header, op, TRANSACTIONAL_ID, req.transactional_id):
            return m.RESPONSES[header.request_api_key](error_code=TXN_DENIED)
        if then is not None and not then(az, header, req):
            return m.RESPONSES[header.request_api_key](error_code=GROUP_DENIED)
        return handler(header, req)
    return guard


def _split(items, name_of, denied):
    keep, out = [], []
    for item in items:
        (out if name_of(item) in denied else keep).append(item)
    return keep, out


def _topic_partitions(op, topics_attr, name_attr, parts_attr, part_index, make_topic, make_part, code=TOPIC_DENIED):
    """Topics without op are taken out; their partitions come back with code."""
    def guard(az, header, req, handler):
        topics = getattr(req, topics_attr) or []
        denied = az.denied(header, op, TOPIC, (getattr(t, name_attr) for t in topics))
        if not denied:
            return handler(header, req)
        keep, out = _split(topics, lambda t: getattr(t, name_attr), denied)
        setattr(req, topics_attr, keep)
        R = m.RESPONSES[header.request_api_key]

        def add(resp):
            getattr(resp, topics_attr).extend(make_topic(R, getattr(t, name_attr), [
                make_part(R, part_index(p), code) for p in getattr(t, parts_attr)]) for t in out)
            return resp
        return _then(handler(header, req), add)
    return guard


def _named(op, rtype, req_attr, resp_attr, make, name_of=lambda x: x):
    """Resources named in a list (req_attr) without op are taken out; each
    comes back as make(R, name) in the response's resp_attr list."""
    def guard(az, header, req, handler):
        items = getattr(req, req_attr)
        denied = az.denied(header, op, rtype, (name_of(x) for x in items))
        if not denied:
            return handler(header, req)
        keep, out = _split(items, name_of, denied)
        setattr(req, req_attr, keep)
        R = m.RESPONSES[header.request_api_key]

        def add(resp):
            getattr(resp, resp_attr).extend(make(R, name_of(x)) for x in out)
            return resp
        if not keep:
            return add(R(throttle_time_ms=0))
        return _then(handler(header, req), add)
    return guard


# ---- per API ----

_list_offsets = _topic_partitions(
    DESCRIBE, "topics", "name", "partitions", lambda p: p.partition_index,
    lambda R, n, ps: R.ListOffsetsTopicResponse(name=n, partitions=ps),
    lambda R, i, c: R.ListOffsetsPartitionResponse(partition_index=i, error_code=c, timestamp=-1, offset=-1))
_consumer_epochs = _topic_partitions(
    DESCRIBE, "topics", "topic", "partitions", lambda p: p.partition,
    lambda R, n, ps: R.OffsetForLeaderTopicResult(topic=n, partitions=ps),
    lambda R, i, c: R.EpochEndOffset(error_code=c, partition=i, leader_epoch=-1, end_offset=-1))
_delete_records = _topic_partitions(
    DELETE, "topics", "name", "partitions", lambda p: p.partition_index,
    lambda R, n, ps: R.DeleteRecordsTopicResult(name=n, partitions=ps),
    lambda R, i, c: R.DeleteRecordsPartitionResult(partition_index=i, low_watermark=-1, error_code=c))
_describe_producers = _topic_partitions(
    READ, "topics", "name", "partition_indexes", lambda p: p,
    lambda R, n, ps: R.TopicResponse(name=n, partitions=ps),
    lambda R, i, c: R.PartitionResponse(partition_index=i, error_code=c, error_message=None, active_producers=[]))
_commit_topics = _topic_partitions(
    READ, "topics", "name", "partitions", lambda p: p.partition_index,
    lambda R, n, ps: R.OffsetCommitResponseTopic(name=n, partitions=ps),
    lambda R, i, c: R.OffsetCommitResponsePartition(partition_index=i, error_code=c))
_txn_commit_topics = _topic_partitions(
    READ, "topics", "name", "partitions", lambda p: p.partition_index,
    lambda R, n, ps: R.TxnOffsetCommitResponseTopic(name=n, partitions=ps),
    lambda R, i, c: R.TxnOffsetCommitResponsePartition(partition_index=i, error_code=c))


def _offset_for_leader_epoch(az, header, req, handler):
    """A follower (replica_id >= 0) needs CLUSTER_ACTION, a consumer DESCRIBE per topic."""
    if getattr(req, "replica_id", -1) < 0:
        return _consumer_epochs(az, header, req, handler)
    if az.allows_cluster(header, CLUSTER_ACTION):
        return handler(header, req)
    R = m.OffsetForLeaderEpochResponse
    return R(throttle_time_ms=0, topics=[R.OffsetForLeaderTopicResult(topic=t.topic, partitions=[
        R.EpochEndOffset(error_code=CLUSTER_DENIED, partition=p.partition, leader_epoch=-1, end_offset=-1)
        for p in t.partitions]) for t in req.topics])


def _create_topics(az, header, req, handler):
    """CREATE on the cluster or the topic; a created topic's configs (v5+)
    only with DESCRIBE_CONFIGS on it, else topic_config_error_code says why."""
    denied = {t.name for t in req.topics if not az.may_create_topic(header, t.name)}
    req.topics, out = _split(req.topics, lambda t: t.name, denied)
    R = m.CreateTopicsResponse

    def add(resp):
        for t in resp.topics:
            if t.configs and not az.allows(header, DESCRIBE_CONFIGS, TOPIC, t.name):
                t.topic_config_error_code, t.configs = TOPIC_DENIED, None
        resp.topics.extend(R.CreatableTopicResult(name=t.name, error_code=TOPIC_DENIED,
                                                  error_message="Authorization failed.", num_partitions=-1,
                                                  replication_factor=-1, configs=None) for t in out)
        return resp
    return _then(handler(header, req), add)


def _delete_topics(az, header, req, handler):
    by_name = header.request_api_version < 6
    names = req.topic_names if by_name else [t.name for t in req.topics]
    denied = az.denied(header, DELETE, TOPIC, names)
    if not denied:
        return handler(header, req)
    if by_name:
        req.topic_names, out = _split(req.topic_names, lambda n: n, denied)
    else:
        req.topics, out = _split(req.topics, lambda t: t.name, denied)
        out = [t.name for t in out]
    R = m.DeleteTopicsResponse

    def add(resp):
        resp.responses.extend(R.DeletableTopicResult(name=n, error_code=TOPIC_DENIED, error_message=None)
                              for n in out)
        return resp
    return _then(handler(header, req), add)


_create_partitions = _named(ALTER, TOPIC, "topics", "results", lambda R, n: R.CreatePartitionsTopicResult(
    name=n, error_code=TOPIC_DENIED, error_message=None), name_of=lambda t: t.name)


def _configs(op, results_attr, make):
    def guard(az, header, req, handler):
        out = []
        keep = []
        for r in req.resources:
            rtype, code = _CONFIG_RESOURCES.get(r.resource_type, (None, 0))
            name = CLUSTER_NAME if rtype == CLUSTER else r.resource_name
            if rtype is not None and not az.allows(header, op, rtype, name):
                out.append((r, code))
            else:
                keep.append(r)
        if not out:
            return handler(header, req)
        req.resources = keep
        R = m.RESPONSES[header.request_api_key]

        def add(resp):
            getattr(resp, results_attr).extend(make(R, r, code) for r, code in out)
            return resp
        return _then(handler(header, req), add)
    return guard


_describe_configs = _configs(DESCRIBE_CONFIGS, "results", lambda R, r, c: R.DescribeConfigsResult(
    error_code=c, error_message=None, resource_type=r.resource_type, resource_name=r.resource_name, configs=[]))
_alter_configs = _configs(ALTER_CONFIGS, "responses", lambda R, r, c: R.AlterConfigsResourceResponse(
    error_code=c, error_message=None, resource_type=r.resource_type, resource_name=r.resource_name))


def _offset_commit(az, header, req, handler):
    R = m.OffsetCommitResponse
    if not az.allows(header, READ, GROUP, req.group_id):
        return R(throttle_time_ms=0, topics=[R.OffsetCommitResponseTopic(name=t.name, partitions=[
            R.OffsetCommitResponsePartition(partition_index=p.partition_index, error_code=GROUP_DENIED)
            for p in t.partitions]) for t in req.topics])
    return _commit_topics(az, header, req, handler)


def _txn_offset_commit(az, header, req, handler):
    R = m.TxnOffsetCommitResponse
    code = (TXN_DENIED if not az.allows(header, WRITE, TRANSACTIONAL_ID, req.transactional_id) else
            GROUP_DENIED if not az.allows(header, READ, GROUP, req.group_id) else 0)
    if code:
        return R(throttle_time_ms=0, topics=[R.TxnOffsetCommitResponseTopic(name=t.name, partitions=[
            R.TxnOffsetCommitResponsePartition(partition_index=p.partition_index, error_code=code)
            for p in t.partitions]) for t in req.topics])
    return _txn_commit_topics(az, header, req, handler)


def _offset_fetch(az, header, req, handler):
    """DESCRIBE on the group (else GROUP_AUTHORIZATION_FAILED), then topics
    without DESCRIBE: dropped from an all-topics answer, refused per
    partition when named."""
    R = m.OffsetFetchResponse
    if header.request_api_version < 8:
        if not az.allows(header, DESCRIBE, GROUP, req.group_id):
            return R(throttle_time_ms=0, error_code=GROUP_DENIED, topics=[
                R.OffsetFetchResponseTopic(name=t.name, partitions=[R.OffsetFetchResponsePartition(
                    partition_index=i, committed_offset=-1, metadata="", error_code=GROUP_DENIED)
                    for i in t.partition_indexes]) for t in req.topics or []])
        groups = None
    else:
        refused = [g.group_id for g in req.groups if not az.allows(header, DESCRIBE, GROUP, g.group_id)]
        groups = {g.group_id: g for g in req.groups}
        req.groups = [g for g in req.groups if g.group_id not in refused]
    named = {}   # group -> the topics it named and may not describe

    def drop(g_topics, key):
        if g_topics is None:
            return None
        denied = az.denied(header, DESCRIBE, TOPIC, (t.name for t in g_topics))
        keep, out = _split(g_topics, lambda t: t.name, denied)
        named[key] = out
        return keep
    if groups is None:
        req.topics = drop(req.topics, None)
    else:
        for g in req.groups:
            g.topics = drop(g.topics, g.group_id)

    def filtered(topics, key, topic_cls, part_cls):
        kept = [t for t in topics if az.allows(header, DESCRIBE, TOPIC, t.name)]
        kept += [topic_cls(name=t.name, partitions=[part_cls(partition_index=i, committed_offset=-1, metadata="",
                                                             error_code=TOPIC_DENIED) for i in t.partition_indexes])
                 for t in named.get(key, ())]
        return kept

    def add(resp):
        if groups is None:
            resp.topics = filtered(resp.topics, None, R.OffsetFetchResponseTopic, R.OffsetFetchResponsePartition)
            return resp
        for g in resp.groups:
            g.topics = filtered(g.topics, g.group_id, R.OffsetFetchResponseTopics, R.OffsetFetchResponsePartitions)
        resp.groups.extend(R.OffsetFetchResponseGroup(group_id=gid, topics=[], error_code=GROUP_DENIED)
                           for gid in refused)
        return resp
    if groups is not None and not req.groups:
        return add(R(throttle_time_ms=0, groups=[]))
    return _then(handler(header, req), add)


def _describe_groups(az, header, req, handler):
    R = m.DescribeGroupsResponse
    denied = az.denied(header, DESCRIBE, GROUP, req.groups)
    req.groups = [g for g in req.groups if g not in denied]

    def add(resp):
        if req.include_authorized_operations:
            for g in resp.groups:
                g.authorized_operations = az.authorized_operations(header.principal, header.peer_host, GROUP,
                                                                   g.group_id)
        resp.groups.extend(R.DescribedGroup(error_code=GROUP_DENIED, group_id=g, group_state="", protocol_type="",
                                            protocol_data="", members=[]) for g in sorted(denied))
        return resp
    if not req.groups:
        return add(R(throttle_time_ms=0, groups=[]))
    return _then(handler(header, req), add)


_consumer_group_describe_named = _named(DESCRIBE, GROUP, "group_ids", "groups", lambda R, g: R.DescribedGroup(
    error_code=GROUP_DENIED, error_message=None, group_id=g))


def _consumer_group_describe(az, header, req, handler):
    """DESCRIBE on each group; the described groups' authorized_operations are
    the principal's on that group (the coordinator, unaware of ACLs, fills in
    every group operation), as KafkaApis sets them for groups without error."""
    def ops(resp):
        if req.include_authorized_operations:
            for g in resp.groups:
                if g.error_code == Errors.NONE:
                    g.authorized_operations = az.authorized_operations(header.principal, header.peer_host, GROUP,
                                                                       g.group_id)
        return resp
    return _then(_consumer_group_describe_named(az, header, req, handler), ops)


def _list_groups(az, header, req, handler):
    if az.allows_cluster(header, DESCRIBE):
        return handler(header, req)

    def keep(resp):
        resp.groups = [g for g in resp.groups if az.allows(header, DESCRIBE, GROUP, g.group_id)]
        return resp
    return _then(handler(header, req), keep)


_delete_groups = _named(DELETE, GROUP, "groups_names", "results", lambda R, g: R.DeletableGroupResult(
    group_id=g, error_code=GROUP_DENIED))


_offset_delete_topics = _topic_partitions(
    READ, "topics", "name", "partitions", lambda p: p.partition_index,
    lambda R, name, parts: R.OffsetDeleteResponseTopic(name=name, partitions=parts),
    lambda R, index, code: R.OffsetDeleteResponsePartition(partition_index=index, error_code=code))


def _offset_delete(az, header, req, handler):
    """Kafka's handleDeleteOffsets: DELETE on the group (else the request's
    GROUP_AUTHORIZATION_FAILED), then READ on each topic (per partition)."""
    if not az.allows(header, DELETE, GROUP, req.group_id):
        return m.OffsetDeleteResponse(error_code=GROUP_DENIED, throttle_time_ms=0, topics=[])
    return _offset_delete_topics(az, header, req, handler)


def _find_coordinator(az, header, req, handler):
    R = m.FindCoordinatorResponse

    def refused(key, key_type):
        if key_type == 0:
            return None if az.allows(header, DESCRIBE, GROUP, key) else GROUP_DENIED
        if key_type == 1:
            return None if az.allows(header, DESCRIBE, TRANSACTIONAL_ID, key) else TXN_DENIED
        if key_type == 2:   # the share coordinator: brokers only, as Kafka
            return None if az.allows_cluster(header, CLUSTER_ACTION) else CLUSTER_DENIED
        return None
    if header.request_api_version < 4:
        code = refused(req.key, req.key_type)
        if code is None:
            return handler(header, req)
        return R(throttle_time_ms=0, error_code=code, error_message=None, node_id=-1, host="", port=-1)
    out = [(k, refused(k, req.key_type)) for k in req.coordinator_keys]
    denied = [(k, c) for k, c in out if c is not None]
    if not denied:
        return handler(header, req)
    req.coordinator_keys = [k for k, c in out if c is None]

    def add(resp):
        resp.coordinators.extend(R.Coordinator(key=k, node_id=-1, host="", port=-1, error_code=c,
                                               error_message=None) for k, c in denied)
        return resp
    if not req.coordinator_keys:
        return add(R(throttle_time_ms=0, coordinators=[]))
    return _then(handler(header, req), add)


# ---- share groups (KIP-932), as KafkaApis checks them ----

def _share_group(op):
    """op on the group, else the request's GROUP_AUTHORIZATION_FAILED; a
    missing group id is left to the handler (INVALID_REQUEST). ShareFetch and
    ShareAcknowledge then need READ on each topic, checked per partition by
    the share-partition manager against the session's partitions, and
    AlterShareGroupOffsets per topic beside its unknown topics (api.py)."""
    def guard(az, header, req, handler):
        if req.group_id is None or az.allows(header, op, GROUP, req.group_id):
            return handler(header, req)
        return m.RESPONSES[header.request_api_key](error_code=GROUP_DENIED)
    return guard


_UNDESCRIBABLE = "The group has described topic(s) that the client is not authorized to describe."


def _share_group_describe(az, header, req, handler):
    """As ConsumerGroupDescribe; then a group assigning a topic the principal
    may not DESCRIBE is answered TOPIC_AUTHORIZATION_FAILED without members."""
    R = m.ShareGroupDescribeResponse

    def hide(resp):
        names = {tp.topic_name for g in resp.groups for mm in g.members or () for tp in mm.assignment.topic_partitions}
        denied = az.denied(header, DESCRIBE, TOPIC, names)
        if denied:
            resp.groups = [R.DescribedGroup(group_id=g.group_id, error_code=TOPIC_DENIED, error_message=_UNDESCRIBABLE)
                           if any(tp.topic_name in denied for mm in g.members or ()
                                  for tp in mm.assignment.topic_partitions) else g for g in resp.groups]
        return resp
    return _then(_consumer_group_describe(az, header, req, handler), hide)


def _describe_share_group_offsets(az, header, req, handler):
    """DESCRIBE on each group (else its GROUP_AUTHORIZATION_FAILED); topics
    without DESCRIBE are left out of an all-topics answer and refused per
    partition when named (start offset and lag -1)."""
    R = m.DescribeShareGroupOffsetsResponse
    refused = [g.group_id for g in req.groups if not az.allows(header, DESCRIBE, GROUP, g.group_id)]
    req.groups = [g for g in req.groups if g.group_id not in refused]
    named = {}
    for g in req.groups:
        if g.topics:
            denied = az.denied(header, DESCRIBE, TOPIC, (t.topic_name for t in g.topics))
            g.topics, named[g.group_id] = _split(g.topics, lambda t: t.topic_name, denied)

    def add(resp):
        for g in resp.groups:
            if g.error_code:
                continue
            g.topics = [t for t in g.topics if az.allows(header, DESCRIBE, TOPIC, t.topic_name)]
            g.topics.extend(R.DescribeShareGroupOffsetsResponseTopic(topic_name=t.topic_name, partitions=[
                R.DescribeShareGroupOffsetsResponsePartition(partition_index=i, start_offset=-1, leader_epoch=-1,
                                                             lag=-1, error_code=TOPIC_DENIED,
                                                             error_message=TOPIC_DENIED.message)
                for i in t.partitions]) for t in named.get(g.group_id, ()))
        resp.groups.extend(R.DescribeShareGroupOffsetsResponseGroup(group_id=gid, topics=[], error_code=GROUP_DENIED)
                           for gid in refused)
        return resp
    if not req.groups:
        return add(R(throttle_time_ms=0, groups=[]))
    return _then(handler(header, req), add)


def _delete_share_group_offsets(az, header, req, handler):
    """DELETE on the group, then READ on each topic; a group-level error answers alone."""
    R = m.DeleteShareGroupOffsetsResponse
    if not az.allows(header, DELETE, GROUP, req.group_id):
        return R(throttle_time_ms=0, error_code=GROUP_DENIED, responses=[])
    denied = az.denied(header, READ, TOPIC, (t.topic_name for t in req.topics))
    if not denied:
        return handler(header, req)
    req.topics, out = _split(req.topics, lambda t: t.topic_name, denied)

    def add(resp):
        if not resp.error_code:
            resp.responses[:0] = [R.DeleteShareGroupOffsetsResponseTopic(
                topic_name=t.topic_name, error_code=TOPIC_DENIED, error_message=TOPIC_DENIED.message)
                for t in out]
        return resp
    return _then(handler(header, req), add)


def _init_producer_id(az, header, req, handler):
    R = m.InitProducerIdResponse
    if req.transactional_id is not None:
        if not az.allows(header, WRITE, TRANSACTIONAL_ID, req.transactional_id):
            return R(throttle_time_ms=0, error_code=TXN_DENIED, producer_id=-1, producer_epoch=-1)
    elif not (az.allows_cluster(header, IDEMPOTENT_WRITE)
              or az.any_allowed(header.principal, header.peer_host, WRITE, TOPIC)):
        # KIP-679: an idempotent producer needs IDEMPOTENT_WRITE, or WRITE on some topic.
        return R(throttle_time_ms=0, error_code=CLUSTER_DENIED, producer_id=-1, producer_epoch=-1)
    return handler(header, req)


def _add_partitions_to_txn(az, header, req, handler):
    R = m.AddPartitionsToTxnResponse
    if header.request_api_version >= 4:   # batched, from brokers verifying
        return _cluster(CLUSTER_ACTION)(az, header, req, handler)
    txn_ok = az.allows(header, WRITE, TRANSACTIONAL_ID, req.v3_and_below_transactional_id)
    denied = set() if not txn_ok else az.denied(header, WRITE, TOPIC, (t.name for t in req.v3_and_below_topics))
    if txn_ok and not denied:
        return handler(header, req)
    return R(throttle_time_ms=0, results_by_topic_v3_and_below=[R.AddPartitionsToTxnTopicResult(
        name=t.name, results_by_partition=[R.AddPartitionsToTxnPartitionResult(
            partition_index=p, partition_error_code=TXN_DENIED if not txn_ok else
            TOPIC_DENIED if t.name in denied else Errors.OPERATION_NOT_ATTEMPTED) for p in t.partitions])
        for t in req.v3_and_below_topics])


_describe_transactions = _named(
    DESCRIBE, TRANSACTIONAL_ID, "transactional_ids", "transaction_states", lambda R, t: R.TransactionState(
        error_code=TXN_DENIED, transactional_id=t, transaction_state="", transaction_timeout_ms=0,
        transaction_start_time_ms=-1, producer_id=-1, producer_epoch=-1, topics=[]))


def _list_transactions(az, header, req, handler):
    def keep(resp):
        resp.transaction_states = [s for s in resp.transaction_states
                                   if az.allows(header, DESCRIBE, TRANSACTIONAL_ID, s.transactional_id)]
        return resp
    return _then(handler(header, req), keep)


def _describe_log_dirs(az, header, req, handler):
    if az.allows_cluster(header, DESCRIBE):
        return handler(header, req)
    return m.DescribeLogDirsResponse(throttle_time_ms=0, error_code=CLUSTER_DENIED, results=[])


def _alter_client_quotas(az, header, req, handler):
    if az.allows_cluster(header, ALTER_CONFIGS):
        return handler(header, req)
    R = m.AlterClientQuotasResponse
    return R(throttle_time_ms=0, entries=[R.EntryData(error_code=CLUSTER_DENIED, error_message=None, entity=[
        R.EntityData(entity_type=x.entity_type, entity_name=x.entity_name) for x in e.entity]) for e in req.entries])


def _alter_user_scram_credentials(az, header, req, handler):
    if az.allows_cluster(header, ALTER):
        return handler(header, req)
    R = m.AlterUserScramCredentialsResponse
    users = dict.fromkeys(x.name for x in (*req.deletions, *req.upsertions))
    return R(throttle_time_ms=0, results=[R.AlterUserScramCredentialsResult(
        user=u, error_code=CLUSTER_DENIED, error_message=None) for u in users])


def _write_txn_markers(az, header, req, handler):
    if az.allows_cluster(header, CLUSTER_ACTION):
        return handler(header, req)
    R = m.WriteTxnMarkersResponse
    return R(markers=[R.WritableTxnMarkerResult(producer_id=mk.producer_id, topics=[
        R.WritableTxnMarkerTopicResult(name=t.name, partitions=[
            R.WritableTxnMarkerPartitionResult(partition_index=i, error_code=CLUSTER_DENIED)
            for i in t.partition_indexes]) for t in mk.topics]) for mk in req.markers])


def _describe_cluster(az, header, req, handler):
    if not req.include_cluster_authorized_operations:
        return handler(header, req)

    def ops(resp):
        resp.cluster_authorized_operations = az.cluster_operations(header)
        return resp
    return _then(handler(header, req), ops)


def _persister(az, header, req, handler):
    """The share coordinator's RPCs (83-87): CLUSTER_ACTION, else every
    share-partition of the request CLUSTER_AUTHORIZATION_FAILED."""
    if az.allows_cluster(header, CLUSTER_ACTION):
        return handler(header, req)
    from ..share.persister_apis import denied
    return denied(req, m.RESPONSES[header.request_api_key])


_GUARDS = {
    av.LIST_OFFSETS: _list_offsets,
    av.OFFSET_FOR_LEADER_EPOCH: _offset_for_leader_epoch,
    av.CREATE_TOPICS: _create_topics,
    av.DELETE_TOPICS: _delete_topics,
    av.CREATE_PARTITIONS: _create_partitions,
    av.DELETE_RECORDS: _delete_records,
    av.DESCRIBE_CONFIGS: _describe_configs,
    av.ALTER_CONFIGS: _alter_configs,
    av.INCREMENTAL_ALTER_CONFIGS: _alter_configs,
    av.DESCRIBE_CLUSTER: _describe_cluster,
    av.JOIN_GROUP: _group(READ),
    av.SYNC_GROUP: _group(READ),
    av.HEARTBEAT: _group(READ),
    av.LEAVE_GROUP: _group(READ),
    av.CONSUMER_GROUP_HEARTBEAT: _consumer_group_heartbeat,
    av.CONSUMER_GROUP_DESCRIBE: _consumer_group_describe,
    av.OFFSET_COMMIT: _offset_commit,
    av.OFFSET_FETCH: _offset_fetch,
    av.DESCRIBE_GROUPS: _describe_groups,
    av.LIST_GROUPS: _list_groups,
    av.DELETE_GROUPS: _delete_groups,
    av.OFFSET_DELETE: _offset_delete,
    av.FIND_COORDINATOR: _find_coordinator,
    av.SHARE_GROUP_HEARTBEAT: _consumer_group_heartbeat,
    av.SHARE_GROUP_DESCRIBE: _share_group_describe,
    av.SHARE_FETCH: _share_group(READ),
    av.SHARE_ACKNOWLEDGE: _share_group(READ),
    av.DESCRIBE_SHARE_GROUP_OFFSETS: _describe_share_group_offsets,
    av.ALTER_SHARE_GROUP_OFFSETS: _share_group(READ),   # then READ per topic: pylog/share/api.py
    av.DELETE_SHARE_GROUP_OFFSETS: _delete_share_group_offsets,
    av.INIT_PRODUCER_ID: _init_producer_id,
    av.ADD_PARTITIONS_TO_TXN: _add_partitions_to_txn,
    av.ADD_OFFSETS_TO_TXN: _txn(WRITE, lambda az, header, req: az.allows(header, READ, GROUP, req.group_id)),
    av.END_TXN: _txn(WRITE),
    av.TXN_OFFSET_COMMIT: _txn_offset_commit,
    av.DESCRIBE_TRANSACTIONS: _describe_transactions,
    av.LIST_TRANSACTIONS: _list_transactions,
    av.DESCRIBE_PRODUCERS: _describe_producers,
    av.DESCRIBE_LOG_DIRS: _describe_log_dirs,
    av.DESCRIBE_CLIENT_QUOTAS: _cluster(DESCRIBE_CONFIGS),
    av.ALTER_CLIENT_QUOTAS: _alter_client_quotas,
    av.ALTER_PARTITION_REASSIGNMENTS: _cluster(ALTER),
    av.LIST_PARTITION_REASSIGNMENTS: _cluster(DESCRIBE),
    av.WRITE_TXN_MARKERS: _write_txn_markers,
    av.DESCRIBE_USER_SCRAM_CREDENTIALS: _cluster(DESCRIBE),
    av.ALTER_USER_SCRAM_CREDENTIALS: _alter_user_scram_credentials,
    # Between brokers and their controller: the brokers' principal needs
    # CLUSTER_ACTION (or super.users), as in Kafka.
    av.LEADER_AND_ISR: _cluster(CLUSTER_ACTION),
    av.UPDATE_METADATA: _cluster(CLUSTER_ACTION),
    av.STOP_REPLICA: _cluster(CLUSTER_ACTION),
    av.CONTROLLED_SHUTDOWN: _cluster(CLUSTER_ACTION),
    av.ALTER_PARTITION: _cluster(CLUSTER_ACTION),
    av.BROKER_REGISTRATION: _cluster(CLUSTER_ACTION),
    av.BROKER_HEARTBEAT: _cluster(CLUSTER_ACTION),
    av.ALLOCATE_PRODUCER_IDS: _cluster(CLUSTER_ACTION),
    av.INITIALIZE_SHARE_GROUP_STATE: _persister,
    av.READ_SHARE_GROUP_STATE: _persister,
    av.WRITE_SHARE_GROUP_STATE: _persister,
    av.DELETE_SHARE_GROUP_STATE: _persister,
    av.READ_SHARE_GROUP_STATE_SUMMARY: _persister,
}
