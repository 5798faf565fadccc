"""One function per Kafka API: a decoded request in, a response out.

Produce is the exception: it takes the whole frame and returns the whole
response frame, through the hand-written codec of protocol/produce.py (the
hot path); the connection routes it before generic decoding.

A handler returns a response object (encoded by the connection with the
generated codecs), a list of pre-encoded chunks (bytes and FetchSlices, the
Fetch path, so segment bytes are never copied through Python), None (acks=0
produce: no response at all), or a coroutine when the answer must wait (a
long-poll fetch). Exceptions raised inside per-partition work become that
partition's error code through errors.code_for; an exception escaping a
handler closes the connection, as Kafka does for a request it cannot serve.

Runs on the broker's event loop only.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from collections import Counter

from ..errors import (
    InvalidConfigError,
    InvalidRequestError,
    InvalidRequiredAcksError,
    InvalidTopicError,
    OffsetOutOfRangeError,
    PolicyViolationError,
    PylogError,
    TopicDeletionDisabledError,
    UnknownTopicOrPartitionError,
    code_for,
)
from ..errors import for_code
from ..metrics.stats import PRODUCE_NOT_FAILED, BrokerTopicStats
from ..protocol import messages as m
from ..protocol.error_codes import Errors
from ..protocol.produce import decode_produce_request, encode_produce_response
from . import api_versions as av
from . import broker_loggers, dynamic_config
from ..groups.group_configs import check_group_id, describe_group_configs, validate_group_configs
from .config import TOPIC_CONFIGS, TopicConfig, validate_topic_name
from .epoch_api import offset_for_leader_epoch
from .replication import leader_and_isr_response
from .fetch_api import FetchApi
from .log_manager import MAX_PARTITIONS_PER_BATCH, merge_overrides
from .purgatory import HIGH_WATERMARK, DelayedOperation, Purgatory
from .authorizer import CLUSTER_ACTION, NOT_ASKED
from .quotas import user_of
from .txn_partition_apis import TxnPartitionApis

log = logging.getLogger("pylog.broker")
TransactionalIdAuthorizationFailedError = for_code(Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)

RESOURCE_TOPIC, RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_GROUP = 2, 4, 8, 32
OFFSETS_TOPIC = "__consumer_offsets"
# The authorized-operations bitfields (bit n = AclOperation code n) of
# Metadata v8+ and DescribeCluster: with no authorizer, every operation the
# resource type supports (Kafka's AclEntry.supportedOperations); NOT_ASKED
# (Integer.MIN_VALUE) when the request did not ask for them.
TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))   # READ..DESCRIBE, DESCRIBE/ALTER_CONFIGS
CLUSTER_OPERATIONS = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))   # CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
                                                                     # DESCRIBE/ALTER_CONFIGS, IDEMPOTENT_WRITE
# ListOffsets' special timestamps (ListOffsetsRequest's constants).
LATEST_TIMESTAMP, EARLIEST_TIMESTAMP, MAX_TIMESTAMP = -1, -2, -3
EARLIEST_LOCAL_TIMESTAMP, LATEST_TIERED_TIMESTAMP = -4, -5
ENDPOINT_BROKER = 1  # DescribeCluster's EndpointType: 1 broker, 2 controller
METADATA_CHUNK = 2000  # topic names a Metadata request handles between turns of the event loop
TRANSACTION_TOPIC = "__transaction_state"
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TRANSACTION_TOPIC})


def _err_message(exc):
    return str(exc) or type(exc).__name__


def _code(exc):
    code = code_for(exc)
    if code == Errors.UNKNOWN_SERVER_ERROR and not isinstance(exc, PylogError):
        log.exception("unexpected error serving a request", exc_info=exc)
    return code


class Handlers:
    def __init__(self, broker):
        self.broker = broker
        self.logs = broker.log_manager
        self.purgatory = Purgatory()  # acks=all produces, fetch long-polls, coordinator writes
        self.topic_stats = BrokerTopicStats()
        self.fetch_api = FetchApi(broker, self.purgatory)
        self.table = {
            av.API_VERSIONS: self.api_versions,
            av.METADATA: self.metadata,
            av.DESCRIBE_CLUSTER: self.describe_cluster,
            av.FETCH: self.fetch_api.fetch,
            av.LIST_OFFSETS: self.list_offsets,
            av.CREATE_TOPICS: self.create_topics,
            av.DELETE_TOPICS: self.delete_topics,
            av.CREATE_PARTITIONS: self.create_partitions,
            av.DESCRIBE_CONFIGS: self.describe_configs,
            av.ALTER_CONFIGS: self.alter_configs,
            av.INCREMENTAL_ALTER_CONFIGS: self.incremental_alter_configs,
            av.DELETE_RECORDS: self.delete_records,
            av.INIT_PRODUCER_ID: self.init_producer_id,
            av.LEADER_AND_ISR: self.leader_and_isr,
            av.UPDATE_METADATA: self.update_metadata,
            av.STOP_REPLICA: self.stop_replica,
            av.OFFSET_FOR_LEADER_EPOCH: self.offset_for_leader_epoch,
            av.ALTER_PARTITION: self.alter_partition,
            av.CONTROLLED_SHUTDOWN: self.controlled_shutdown,
        }
        self.txn_partition_apis = TxnPartitionApis(broker, self.purgatory)
        self.table.update(self.txn_partition_apis.table(av))

    # ---- ApiVersions (18) ----

    def api_versions(self, header, req):
        R = m.ApiVersionsResponse
        # Only what this broker serves: a lone broker leaves the inter-broker
        # APIs out of its table (Kafka advertises only a listener's enabled APIs).
        # On a client listener of a broker with several, none of the inter-broker ones.
        listener = getattr(header, "listener", None)
        inter = listener is None or listener.inter_broker
        keys = [R.ApiVersion(k, lo, hi) for k, (lo, hi) in sorted(av.ADVERTISED.items())
                if (k not in av.INTER_BROKER_APIS or k in self.table) and (inter or k not in av.BROKER_ONLY_APIS)]
        return R(error_code=0, api_keys=keys, throttle_time_ms=0)

    @staticmethod
    def api_versions_error():
        """The v0-shaped reply to an ApiVersions version we do not know (§3.2)."""
        lo, hi = av.ADVERTISED[av.API_VERSIONS]
        return m.ApiVersionsResponse(error_code=Errors.UNSUPPORTED_VERSION,
                                     api_keys=[m.ApiVersionsResponse.ApiVersion(18, lo, hi)])

    # ---- Metadata (3) ----

    def metadata(self, header, req):
        """Answered from the MetadataCache (the controller's UpdateMetadata),
        in every mode: before the first one arrives, this broker alone, no
        controller, no topics, and clients ask again. Unknown topics are
        created through the controller when auto.create.topics.enable allows
        (Kafka's AutoTopicCreationManager): the answer has them once this
        broker knows them, LEADER_NOT_AVAILABLE until then (clients retry)."""
        R = m.MetadataResponse
        b = self.broker
        cache = b.metadata_cache
        version = header.request_api_version
        listener = getattr(header, "listener_name", None)   # None: the inter-broker one
        # A broker without a listener (pylog's embedded store) is reachable by
        # no network client: it advertises no endpoint, and what it leads has
        # no leader a client could reach (Kafka's answer for a leader without
        # an endpoint on the listener asked on).
        unreachable = () if b.listen else (b.broker_id,)
        by_id = []       # answers to topics asked for by id (v12+): found ones go on by name
        by_id_lookup = False
        if req.topics is None or (version == 0 and not req.topics):
            names = sorted(cache.topics)
        elif version >= 10 and any(t.name is None or t.topic_id.int for t in req.topics):
            if version < 12:
                # Kafka refuses ids (and null names) before v12: every topic
                # asked for gets INVALID_REQUEST.
                return self._metadata_refused(req, version)
            # Kafka's v12 lookup: once any id is given, topics are looked up
            # by id only (entries without one are ignored) and nothing is
            # created on demand.
            names = []
            by_id_lookup = True
            for t in req.topics:
                if not t.topic_id.int:
                    continue
                name = cache.topic_name(t.topic_id)
                if name is None:
                    by_id.append(R.MetadataResponseTopic(error_code=Errors.UNKNOWN_TOPIC_ID, name=None,
                                                         topic_id=t.topic_id, is_internal=False))
                elif name not in names:
                    names.append(name)
        else:
            names = [t.name for t in req.topics]
        auto = b.config.get("auto.create.topics.enable") and (version < 4 or req.allow_auto_topic_creation) \
            and not by_id
        # No authorizer: every operation a resource type supports is allowed
        # (Kafka's AuthHelper.authorizedOperations without one); the field
        # keeps its "not asked" default otherwise.
        topic_ops = TOPIC_OPERATIONS if version >= 8 and req.include_topic_authorized_operations else NOT_ASKED
        cluster_ops = CLUSTER_OPERATIONS if 8 <= version <= 10 and req.include_cluster_authorized_operations \
            else NOT_ASKED
        answers = {}     # name -> an error code, for names not in the cache
        to_create = []   # names to create on demand, in order
        internal = []    # internal topics asked for
        az = b.authorizer
        refused = ()     # names without DESCRIBE: omitted from "all topics", else TOPIC_AUTHORIZATION_FAILED
        if az is not None:
            names, refused, topic_ops, cluster_ops = az.metadata_view(header, names, req.topics is None or (
                version == 0 and not req.topics), topic_ops != NOT_ASKED, cluster_ops != NOT_ASKED)

        def classify(chunk):
            for name in chunk:
                if name in cache.topics or name in answers:
                    continue
                try:
                    validate_topic_name(name)
                except PylogError as e:
                    answers[name] = code_for(e)
                    continue
                if name in refused:
                    answers[name] = Errors.TOPIC_AUTHORIZATION_FAILED
                elif not auto:
                    answers[name] = Errors.UNKNOWN_TOPIC_OR_PARTITION
                elif az is not None and not az.may_create_topic(header, name):
                    answers[name] = Errors.TOPIC_AUTHORIZATION_FAILED
                elif name == OFFSETS_TOPIC:
                    internal.append(name)
                    answers[name] = 0
                elif name in INTERNAL_TOPICS:
                    answers[name] = InvalidRequestError.error_code  # not created on demand
                else:
                    to_create.append(name)
                    answers[name] = 0

        def answer(chunk, topics):
            for name in chunk:
                parts_state = cache.topics.get(name) if name not in refused else None
                if parts_state is None:
                    # Created (or being created) but not known here yet: Kafka's
                    # LEADER_NOT_AVAILABLE; else the error found for it.
                    code = answers.get(name, Errors.UNKNOWN_TOPIC_OR_PARTITION) or Errors.LEADER_NOT_AVAILABLE
                    if name in refused:
                        if by_id_lookup:   # asked by id: answered by id, the name not given away
                            topics.append(R.MetadataResponseTopic(
                                error_code=Errors.TOPIC_AUTHORIZATION_FAILED, name=None,
                                topic_id=cache.topic_id(name), is_internal=False))
                            continue
                        code = Errors.TOPIC_AUTHORIZATION_FAILED
                    topics.append(R.MetadataResponseTopic(error_code=code, name=name,
                                                          is_internal=name in INTERNAL_TOPICS))
                    continue
                parts = []
                for i, st in sorted(parts_state.items()):
                    p = self.logs.partitions.get((name, i)) if st.leader == b.broker_id else None
                    if st.leader == b.broker_id and p is None and i in self.logs.offline(name):
                        # Led here but its log could not be opened: no leader, as
                        # Kafka answers for a partition whose log dir is offline.
                        parts.append(R.MetadataResponsePartition(
                            error_code=Errors.LEADER_NOT_AVAILABLE, partition_index=i, leader_id=-1, leader_epoch=-1,
                            replica_nodes=list(st.replicas), isr_nodes=[], offline_replicas=[b.broker_id]))
                        continue
                    # LEADER_NOT_AVAILABLE while the leader is not a live broker,
                    # or has no endpoint on the listener asked on (Kafka's answer
                    # up to Metadata v5; LISTENER_NOT_FOUND from v6).
                    code, leader = 0, st.leader
                    if st.leader in unreachable or cache.node(st.leader, listener) is None:
                        code, leader = Errors.LEADER_NOT_AVAILABLE, -1
                        if version >= 6 and st.leader not in unreachable and cache.node(st.leader, None):
                            code = Errors.LISTENER_NOT_FOUND
                    parts.append(R.MetadataResponsePartition(
                        error_code=code, partition_index=i, leader_id=leader, leader_epoch=st.leader_epoch,
                        replica_nodes=list(st.replicas), isr_nodes=list(st.isr),
                        offline_replicas=list(st.offline_replicas)))
                topics.append(R.MetadataResponseTopic(error_code=0, name=name, topic_id=cache.topic_id(name),
                                                      is_internal=name in INTERNAL_TOPICS, partitions=parts,
                                                      topic_authorized_operations=topic_ops if az is None
                                                      or topic_ops == NOT_ASKED else topic_ops(name)))
            return topics

        def response(topics):
            brokers = [R.MetadataResponseBroker(e.id, e.host, e.port, e.rack) for e in cache.nodes(listener)
                       if e.id not in unreachable]
            if not cache.brokers and not unreachable:
                own = b.advertised_endpoint(listener)
                if own is not None:
                    brokers = [R.MetadataResponseBroker(b.broker_id, own[0], own[1], b.config.get("broker.rack"))]
            return R(throttle_time_ms=0, brokers=brokers, cluster_id=self.logs.cluster_id,
                     controller_id=cache.controller_id, topics=by_id + topics,
                     cluster_authorized_operations=cluster_ops)

        async def create():
            # Kafka sends the names to create to its controller as one
            # CreateTopics, which refuses the whole batch past its partition limit.
            if len(to_create) * max(b.config.get("num.partitions"), 1) > MAX_PARTITIONS_PER_BATCH:
                log.warning("not creating %d topics on demand: more than %d partitions in one request",
                            len(to_create), MAX_PARTITIONS_PER_BATCH)
                for name in to_create:
                    answers[name] = PolicyViolationError.error_code
            else:
                for name in to_create:
                    code, _msg = await b.create_topic_async(name)
                    # Already there: created for another request meanwhile.
                    answers[name] = 0 if code == Errors.TOPIC_ALREADY_EXISTS else code
            for name in internal:
                answers[name] = await b.ensure_internal_topic(name)

        if len(names) > METADATA_CHUNK:
            # Many names: the work is done a chunk at a time, the event loop
            # serving others in between.
            async def in_chunks():
                for k in range(0, len(names), METADATA_CHUNK):
                    classify(names[k:k + METADATA_CHUNK])
                    await asyncio.sleep(0)
                if to_create or internal:
                    await create()
                topics = []
                for k in range(0, len(names), METADATA_CHUNK):
                    answer(names[k:k + METADATA_CHUNK], topics)
                    await asyncio.sleep(0)
                return response(topics)
            return _to_the_end(in_chunks())
        classify(names)
        if not to_create and not internal:
            return response(answer(names, []))

        async def create_then_answer():
            await create()
            return response(answer(names, []))
        return _to_the_end(create_then_answer())

    @staticmethod
    def _metadata_refused(req, version):
        """Kafka's answer to a v10-11 request naming a topic by id or with a
        null name (an InvalidRequestException: every topic asked for gets
        INVALID_REQUEST, nothing else is answered)."""
        R = m.MetadataResponse
        return R(throttle_time_ms=0, brokers=[], cluster_id=None, controller_id=-1, topics=[
            R.MetadataResponseTopic(error_code=Errors.INVALID_REQUEST, name=t.name if t.name is not None else "",
                                    topic_id=t.topic_id, is_internal=False) for t in req.topics])

    # ---- DescribeCluster (60) ----

    def describe_cluster(self, header, req):
        """The live brokers on the listener asked on, the cluster id and the
        controller, as a Kafka broker answers (Kafka's
        computeDescribeClusterResponse): only endpoint_type BROKER (1) is served
        here, anything else gets MISMATCHED_ENDPOINT_TYPE."""
        R = m.DescribeClusterResponse
        b = self.broker
        cache = b.metadata_cache
        if req.endpoint_type != ENDPOINT_BROKER:
            return R(throttle_time_ms=0, error_code=Errors.MISMATCHED_ENDPOINT_TYPE,
                     error_message=f"The request was sent to an endpoint of type BROKER, but we wanted an "
                                   f"endpoint of type {req.endpoint_type}",
                     endpoint_type=ENDPOINT_BROKER, cluster_id=self.logs.cluster_id or "", brokers=[])
        listener = getattr(header, "listener_name", None)
        brokers = [R.DescribeClusterBroker(broker_id=e.id, host=e.host, port=e.port, rack=e.rack)
                   for e in cache.nodes(listener)]
        if not cache.brokers and b.listen:
            own = b.advertised_endpoint(listener)
            if own is not None:
                brokers = [R.DescribeClusterBroker(broker_id=b.broker_id, host=own[0], port=own[1],
                                                   rack=b.config.get("broker.rack"))]
        ops = CLUSTER_OPERATIONS if req.include_cluster_authorized_operations else NOT_ASKED
        return R(throttle_time_ms=0, error_code=0, error_message=None, endpoint_type=ENDPOINT_BROKER,
                 cluster_id=self.logs.cluster_id or "", controller_id=cache.controller_id, brokers=brokers,
                 cluster_authorized_operations=ops)

    # ---- LeaderAndIsr (4) / UpdateMetadata (6) / StopReplica (5): from the controller ----
    # Served only by a broker of a cluster (a lone broker has no controller:
    # Broker.start leaves them out of its table and ApiVersions). Each is
    # admitted first (ReplicaManager.admit: this broker's epoch, the current
    # controller); a refused one is answered with that error and applied nowhere.

    def _admitted(self, req, apply, refuse):
        code = self.broker.replica_manager.admit(req)
        if isinstance(code, int):
            return apply() if code == 0 else refuse(code)

        async def later():
            c = await code
            out = apply() if c == 0 else refuse(c)
            return (await out) if asyncio.iscoroutine(out) else out
        return later()

    def leader_and_isr(self, header, req):
        rm = self.broker.replica_manager
        # None: from this process's own controller, which sends topic ids (v5's shape).
        version = 5 if header is None else header.request_api_version

        def answer():
            return leader_and_isr_response(req, 0, rm.become_leader_or_follower(req), version)

        def apply():
            preparing = rm.prepare_leader_and_isr(req)   # None: no file work to do first
            if preparing is None:
                return answer()

            async def prepare_then_answer():   # new logs, new leader epochs: written off the loop first
                if await preparing:
                    return answer()
                return refuse(Errors.BROKER_NOT_AVAILABLE)   # the broker is stopping: nothing is opened any more
            return _to_the_end(prepare_then_answer())

        def refuse(code):
            return leader_and_isr_response(req, code, [(ts.topic_name, ps.partition_index, code)
                                                       for ts in req.topic_states for ps in ts.partition_states],
                                           version)
        return self._admitted(req, apply, refuse)

    def update_metadata(self, header, req):
        rm = self.broker.replica_manager

        def apply():
            # Topics the controller is deleting (the cache drops them): the group
            # coordinator here forgets their committed offsets, as Kafka's does on
            # UpdateMetadata, whether or not this broker held a replica.
            deleted = self.broker.metadata_cache.update(req)
            dynamic_config.apply(self.broker, self.broker.metadata_cache.broker_configs)
            rm.apply_topic_configs(req)
            if self.broker.groups is not None:
                for name in deleted:
                    self.broker.groups.topic_deleted(name)
            return m.UpdateMetadataResponse(error_code=0)
        return self._admitted(req, apply, lambda code: m.UpdateMetadataResponse(error_code=code))

    def stop_replica(self, header, req):
        R = m.StopReplicaResponse
        rm = self.broker.replica_manager

        def apply():
            stopping = rm.stop_replicas(req)   # applied now, in request order

            async def stop_then_answer():   # deleted replicas' file work runs off the loop first
                results = await stopping
                return R(error_code=0, partition_errors=[
                    R.StopReplicaPartitionError(topic_name=t, partition_index=i, error_code=c)
                    for t, i, c in results])
            return _to_the_end(stop_then_answer())

        def refuse(code):
            return R(error_code=code, partition_errors=[
                R.StopReplicaPartitionError(topic_name=t.name, partition_index=i, error_code=code)
                for t in req.topics for i in t.partition_indexes])
        return self._admitted(req, apply, refuse)

    # ---- AlterPartition (56): leaders -> the controller ----

    def alter_partition(self, header, req):
        """Served by the broker hosting the active controller (broker.controller,
        a pylog.cluster.controller.Controller whose event thread decides);
        NOT_CONTROLLER (41) anywhere else."""
        ctl = getattr(self.broker, "controller", None)
        if ctl is None or not ctl.is_active:
            return m.AlterPartitionResponse(throttle_time_ms=0, error_code=Errors.NOT_CONTROLLER, topics=[])
        fut = ctl.submit("alter_partition", req, header.request_api_version, True)

        async def wait():
            return await asyncio.wrap_future(fut)
        return wait()

    # ---- ControlledShutdown (7): a stopping broker -> the controller ----

    def controlled_shutdown(self, header, req):
        ctl = self._active_controller()
        if ctl is None:
            return m.ControlledShutdownResponse(error_code=Errors.NOT_CONTROLLER, remaining_partitions=[])
        fut = ctl.submit("controlled_shutdown", req.broker_id, req.broker_epoch)

        async def wait():
            return await asyncio.wrap_future(fut)
        return wait()

    def _active_controller(self):
        """This broker's Controller when it is the active one, else None
        (then cluster requests are answered NOT_CONTROLLER, 41, and clients
        look the controller up in Metadata again)."""
        ctl = getattr(self.broker, "controller", None)
        return ctl if ctl is not None and ctl.is_active else None

    async def _by_controller(self, ctl, fn_name, *args):
        """Run one controller operation on its event thread (store writes and
        their fsyncs stay off the loop); the pylog error it raises (a bad
        replication factor, an existing topic, ...) is the answer's error
        code. Once done, what the controller sent this broker is applied."""
        try:
            await asyncio.wrap_future(ctl.submit(fn_name, *args))
            code, msg = 0, None
        except Exception as e:  # noqa: BLE001 - a store write failing (OSError) is this request's error
            code, msg = _file_work_error(e, f"the controller's {fn_name}")
        await self.broker.settled()
        return code, msg

    # ---- OffsetForLeaderEpoch (23) ----

    def offset_for_leader_epoch(self, header, req):
        return offset_for_leader_epoch(req, self.logs.get_partition,
                                      self.broker.metadata_cache.has_partition)

    # ---- Produce (0) ----

    def produce(self, frame, listener=None, who=None, throttle_ms=0):
        """A whole Produce request frame in, the whole response frame out (None
        for acks=0). Decoded by the hand-written codec (protocol/produce.py):
        this is the broker's hot path. Raises ProtocolError for malformed bytes.
        listener: the name of the listener it came on (None: the inter-broker
        one), where v10+ answers name the current leaders (KIP-951). who: the
        connection (its principal and host), for the authorizer. throttle_ms:
        what the client's quotas decided (broker/client_quotas.py), carried in
        the answer's throttle_time_ms."""
        correlation_id, version, _client, txn_id, acks, timeout_ms, topics = decode_produce_request(frame)
        denied = None if self.broker.authorizer is None else self.broker.authorizer.produce_denials(
            who, txn_id, topics, _has_transactional_batch)
        # Kafka answers transactional batches without a transactional id with
        # TRANSACTIONAL_ID_AUTHORIZATION_FAILED for the whole request.
        refused = produce_refused(txn_id, topics)
        results = []
        failed = False
        endpoints = {}  # leader id -> its endpoint, for v10+ NOT_LEADER_OR_FOLLOWER answers
        waiting = []  # (Partition, last offset, result index) of acks=all appends not yet committed
        for name, parts in topics:
            out = []
            for index, records in parts:
                if denied and name in denied:
                    failed = True
                    out.append((index, denied.get(name), -1, -1, -1, None, (), None))
                    continue
                try:
                    p, r = self.produce_partition(name, index, records, acks, version, refused)
                    out.append((index, 0, r.first_offset, r.log_append_time, r.log_start_offset, None))
                    if acks == -1 and p.produce_outcome(r.last_offset) is None:
                        waiting.append((p, r.last_offset, len(results), len(out) - 1))
                except (PylogError, ValueError, OSError) as e:
                    failed = True
                    code = self._not_hosted(name, index, _code(e))
                    if code not in PRODUCE_NOT_FAILED and name in self.logs.topics:   # (no key per unknown name)
                        self.topic_stats.produce_failed[name] += 1
                    if code in (Errors.CORRUPT_MESSAGE, Errors.MESSAGE_TOO_LARGE, Errors.INVALID_RECORD,
                                Errors.OUT_OF_ORDER_SEQUENCE_NUMBER, Errors.INVALID_PRODUCER_EPOCH):
                        log.info("produce to %s-%d refused: %s", name, index, e)
                    leader = None
                    if version >= 10 and code == Errors.NOT_LEADER_OR_FOLLOWER:
                        leader = self._current_leader(name, index, listener, endpoints)
                    out.append((index, code, -1, -1, -1, _err_message(e), getattr(e, "record_errors", ()), leader))
            results.append((name, out))
        if acks == 0:
            if failed:
                # Kafka closes the connection so that an acks=0 producer notices.
                raise ConnectionAbortedError("acks=0 produce failed")
            return None
        if waiting:
            return self._produce_wait(correlation_id, version, results, waiting, timeout_ms, throttle_ms)
        return encode_produce_response(correlation_id, version, results, list(endpoints.values()), throttle_ms)

    def _not_hosted(self, topic, index, code):
        """Kafka's ReplicaManager.getPartitionOrError: a partition of a topic
        that exists but has no replica here is NOT_LEADER_OR_FOLLOWER (the
        client refreshes its metadata and goes to the leader), not
        UNKNOWN_TOPIC_OR_PARTITION."""
        if code == Errors.UNKNOWN_TOPIC_OR_PARTITION and self.broker.metadata_cache.partition(topic, index):
            return Errors.NOT_LEADER_OR_FOLLOWER
        return code

    def _current_leader(self, topic, index, listener, endpoints):
        """KIP-951: (leader_id, leader_epoch) of a partition a Produce was
        refused for with NOT_LEADER_OR_FOLLOWER, as Kafka's getCurrentLeader:
        the hosted replica's view, else the metadata cache's, else (-1, -1);
        the leader's endpoint on listener goes into endpoints when it is live."""
        p = self.logs.partitions.get((topic, index))
        if p is not None:
            leader = (p.leader_id, p.leader_epoch)
        else:
            st = self.broker.metadata_cache.partition(topic, index)
            leader = (st.leader, st.leader_epoch) if st is not None else (-1, -1)
        if leader[0] >= 0 and leader[0] not in endpoints and self.broker.listen:
            ep = self.broker.metadata_cache.node(leader[0], listener)
            if ep is not None:
                endpoints[leader[0]] = (ep.id, ep.host, ep.port, ep.rack)
        return leader

    def produce_partition(self, name, index, records, acks, version, refused):
        """One partition of a Produce request: the body the wire's Produce and
        the embedded store's appends share (pylog/embedded/store.py), so a
        batch is checked the same way whichever path brings it (acks, the
        transactional id rule, internal topics, every record by Kafka's
        LogValidator rules, the producer's sequence and epoch). refused: the
        request holds a transactional batch but no transactional id
        (produce_refused). Returns (Partition, AppendResult); raises the
        partition's error, with nothing appended."""
        if acks not in (0, 1, -1):
            raise InvalidRequiredAcksError(f"acks must be 0, 1 or -1 (all), not {acks}")
        if refused:
            raise TransactionalIdAuthorizationFailedError("transactional batches need the request's transactional id")
        if name in INTERNAL_TOPICS:
            raise InvalidTopicError(f"{name} is an internal topic: clients cannot produce to it")
        p = self.logs.get_partition(name, index)
        self.topic_stats.produce_total[name] += 1
        r = p.append_as_leader(records, acks, version)
        self.topic_stats.produced(name, r, len(records))
        return p, r

    async def _produce_wait(self, correlation_id, version, results, waiting, timeout_ms, throttle_ms=0):
        """acks=all: answer once the HW passed every appended offset (§4.1),
        REQUEST_TIMED_OUT after timeout_ms, NOT_ENOUGH_REPLICAS_AFTER_APPEND
        when the ISR shrank below min.insync.replicas meanwhile. Waits in the
        purgatory, so other connections are served meanwhile."""
        op = _DelayedProduce(waiting, self.broker)
        await self.purgatory.wait(op, {w[0] for w in waiting}, (HIGH_WATERMARK,), max(timeout_ms, 0) / 1000.0)
        for p, last, ti, pi in waiting:
            code = p.produce_outcome(last)
            if code is None:
                code = Errors.REQUEST_TIMED_OUT
            if code:
                idx = results[ti][1][pi][0]
                results[ti][1][pi] = (idx, code, -1, -1, -1, None)
        return encode_produce_response(correlation_id, version, results, throttle_ms=throttle_ms)

    # ---- ListOffsets (2) ----

    def list_offsets(self, header, req):
        """Per partition, Partition.list_offset_now / list_offset_by_time (the
        one body, shared with the embedded store). Earliest/latest are answered
        at once; lookups by timestamp (and MAX_TIMESTAMP's) may inflate a
        stored compressed batch, so they run on a worker thread and the
        response waits for them in a coroutine while other clients are served.

        As Kafka's Partition.fetchOffsetForTimestamp: current_leader_epoch
        (v4+) is checked first (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH),
        then leadership; each answer carries the leader epoch of the offset
        (v4+): the current one for LATEST, the epoch the record was written
        in otherwise. EARLIEST_LOCAL (-4, KIP-405) is EARLIEST without tiered
        storage; LATEST_TIERED (-5) is offset -1, epoch -1 (nothing tiered);
        MAX_TIMESTAMP (-3, KIP-734) is the first record with the largest
        timestamp below the high watermark (LSO for read_committed).
        OFFSET_NOT_AVAILABLE exists from v5; older versions get
        LEADER_NOT_AVAILABLE instead, as Kafka answers them."""
        R = m.ListOffsetsResponse
        P = R.ListOffsetsPartitionResponse
        version = header.request_api_version
        committed = req.isolation_level == 1
        topics = []
        by_time = []  # (parts, position in parts, Partition, timestamp)

        def failed(name, index, exc):
            code = self._not_hosted(name, index, _code(exc))
            if code == Errors.OFFSET_NOT_AVAILABLE and version < 5:
                code = Errors.LEADER_NOT_AVAILABLE
            return P(partition_index=index, error_code=code, timestamp=-1, offset=-1)

        def found(p, index, offset, ts, epoch=None):
            if epoch is None:
                epoch = p.epoch_cache.epoch_for_offset(offset) if offset >= 0 else -1
            return P(partition_index=index, error_code=0, timestamp=ts, offset=offset,
                     old_style_offsets=[offset], leader_epoch=epoch)

        for t in req.topics:
            parts = []
            for lp in t.partitions:
                try:
                    p = self.logs.get_partition(t.name, lp.partition_index)
                    current = lp.current_leader_epoch if version >= 4 else -1
                    if current >= 0 and current != p.leader_epoch:
                        parts.append(P(partition_index=lp.partition_index, timestamp=-1, offset=-1,
                                       error_code=Errors.FENCED_LEADER_EPOCH if current < p.leader_epoch
                                       else Errors.UNKNOWN_LEADER_EPOCH))
                        continue
                    ts = lp.timestamp
                    if ts == LATEST_TIERED_TIMESTAMP:
                        if not p.is_leader:
                            raise NotLeaderOrFollowerError(f"this broker is not the leader of {t.name}")
                        parts.append(found(p, lp.partition_index, -1, -1, -1))
                        continue
                    # MAX_TIMESTAMP: the same checks as a lookup by time (ts 0), then a scan.
                    now = p.list_offset_now(EARLIEST_TIMESTAMP if ts == EARLIEST_LOCAL_TIMESTAMP else
                                            0 if ts == MAX_TIMESTAMP else ts, committed)
                    if now is None:
                        by_time.append((parts, len(parts), p, ts,
                                        p.last_stable_offset if committed else p.high_watermark))
                        parts.append(None)
                        continue
                    offset, out_ts = now
                    parts.append(found(p, lp.partition_index, offset, out_ts,
                                       p.leader_epoch if ts == LATEST_TIMESTAMP else None))
                except PylogError as e:
                    parts.append(failed(t.name, lp.partition_index, e))
            topics.append(R.ListOffsetsTopicResponse(name=t.name, partitions=parts))
        resp = R(throttle_time_ms=0, topics=topics)
        if not by_time:
            return resp

        async def by_timestamp():
            loop = asyncio.get_running_loop()
            for parts, i, p, ts, bound in by_time:
                index = p.index
                name = p.topic
                try:
                    if ts == MAX_TIMESTAMP:
                        offset, out_ts = await loop.run_in_executor(None, _max_timestamp_offset, p, bound)
                    else:
                        offset, out_ts = await loop.run_in_executor(None, p.list_offset_by_time, ts, bound)
                    parts[i] = found(p, index, offset, out_ts)
                except PylogError as e:
                    parts[i] = failed(name, index, e)
            return resp
        return by_timestamp()

    # ---- CreateTopics (19) / DeleteTopics (20) / CreatePartitions (37) ----

    def _too_many_partitions(self, req):
        """Kafka's controller check (validateTotalNumberOfPartitions): the
        partitions a CreateTopics asks for, counted before any work."""
        default = self.broker.config.get("num.partitions")
        total = 0
        for t in req.topics:
            if t.assignments:
                total += len(t.assignments)
            elif t.num_partitions == -1:
                total += default
            elif t.num_partitions > 0:
                total += t.num_partitions
        return total > MAX_PARTITIONS_PER_BATCH

    def create_topics(self, header, req):
        R = m.CreateTopicsResponse
        if self._too_many_partitions(req):
            return R(throttle_time_ms=0, topics=[R.CreatableTopicResult(
                name=t.name, error_code=PolicyViolationError.error_code,
                error_message=f"Excessively large number of partitions per request (more than "
                              f"{MAX_PARTITIONS_PER_BATCH}).") for t in req.topics])
        ctl = self._active_controller()
        cfg = self.broker.config

        async def run():
            quota = await self._mutation_quota(header, 6)
            results = []
            for t in req.topics:
                code, msg = 0, None
                created = {}
                try:
                    if ctl is None:
                        code, msg = Errors.NOT_CONTROLLER, "this broker is not the controller"
                    elif t.name == OFFSETS_TOPIC and not self._is_offsets_topic_request(t):
                        # Whoever asks (a broker's ensure_internal_topic forwarded
                        # here), the topic is the one the coordinators expect.
                        code, msg = Errors.INVALID_REQUEST, (f"{t.name} is created by the group coordinators, with "
                                         f"offsets.topic.num.partitions={cfg.get('offsets.topic.num.partitions')} "
                                         f"and offsets.topic.replication.factor="
                                         f"{cfg.get('offsets.topic.replication.factor')}")
                    elif t.name == TRANSACTION_TOPIC and not self._is_transaction_topic_request(t):
                        code, msg = Errors.INVALID_REQUEST, (f"{t.name} is created by the transaction coordinators, "
                                         f"with transaction.state.log.num.partitions and replication.factor")
                    elif t.name in INTERNAL_TOPICS and t.name not in (OFFSETS_TOPIC, TRANSACTION_TOPIC):
                        code, msg = Errors.INVALID_REQUEST, f"{t.name} is an internal topic: the broker creates it"
                    else:
                        n, rf = t.num_partitions, t.replication_factor
                        assignment = None
                        if t.assignments:
                            if n != -1 or rf != -1:
                                raise InvalidRequestError("give either a replica assignment or "
                                                          "num_partitions/replication_factor, not both")
                            assignment = {a.partition_index: list(a.broker_ids) for a in t.assignments}
                        n = n if n != -1 else cfg.get("num.partitions")
                        rf = rf if rf != -1 else cfg.get("default.replication.factor")
                        configs = {c.name: c.value for c in t.configs}
                        if t.name == OFFSETS_TOPIC:
                            configs = self.broker.groups.offsets_topic_configs()
                        elif t.name == TRANSACTION_TOPIC:
                            configs = self.broker.transactions.topic_configs()
                        cost = len(assignment) if assignment else n
                        if not req.validate_only and t.name not in self.broker.metadata_cache.topics \
                                and not quota.admit(cost):
                            code, msg = Errors.THROTTLING_QUOTA_EXCEEDED, THROTTLED
                        else:
                            code, msg = await self._by_controller(ctl, "create_topic", t.name, n, rf, assignment,
                                                                  configs, req.validate_only)
                            created = _created_fields(cfg, n, rf, configs) if code == 0 else {}
                except PylogError as e:
                    code, msg = _code(e), str(e)
                results.append(R.CreatableTopicResult(name=t.name, error_code=code, error_message=msg, **created))
            return R(throttle_time_ms=_throttled(header, quota), topics=results)
        return _to_the_end(run())

    async def _mutation_quota(self, header, strict_since):
        """This request's controller mutation quota (KIP-599): strict from
        strict_since, permissive before (broker/quotas.py)."""
        return await self.broker.mutation_quotas.quota_for(
            getattr(header, "client_id", None), getattr(header, "request_api_version", strict_since) >= strict_since,
            user_of(getattr(header, "principal", None)))

    def _is_offsets_topic_request(self, t) -> bool:
        cfg = self.broker.config
        return (not t.assignments and t.num_partitions == cfg.get("offsets.topic.num.partitions")
                and t.replication_factor == cfg.get("offsets.topic.replication.factor"))

    def _is_transaction_topic_request(self, t) -> bool:
        cfg = self.broker.config
        return (not t.assignments and t.num_partitions == cfg.get("transaction.state.log.num.partitions")
                and t.replication_factor == cfg.get("transaction.state.log.replication.factor"))

    def delete_topics(self, header, req):
        R = m.DeleteTopicsResponse
        ctl = self._active_controller()

        async def run():
            quota = await self._mutation_quota(header, 5)
            out = []
            for name in req.topic_names:
                parts = len(self.broker.metadata_cache.topics.get(name, ()))
                if ctl is None:
                    code, msg = Errors.NOT_CONTROLLER, "this broker is not the controller"
                elif not self.broker.config.get("delete.topic.enable"):
                    code, msg = TopicDeletionDisabledError.error_code, "topic deletion is disabled"
                elif name in INTERNAL_TOPICS:
                    code, msg = Errors.INVALID_REQUEST, f"{name} is an internal topic and cannot be deleted"
                elif parts and not quota.admit(parts):
                    code, msg = Errors.THROTTLING_QUOTA_EXCEEDED, THROTTLED
                else:
                    code, msg = await self._by_controller(ctl, "delete_topic", name)
                out.append(R.DeletableTopicResult(name=name, error_code=code, error_message=msg))
            return R(throttle_time_ms=_throttled(header, quota), responses=out)
        return _to_the_end(run())

    def create_partitions(self, header, req):
        R = m.CreatePartitionsResponse
        # Kafka's controller builds at most MAX_RECORDS_PER_USER_OP (10,000)
        # records per request, one per new partition, and refuses the whole
        # request past that (POLICY_VIOLATION), before any work.
        current = self._partition_counts()
        added = sum(max(t.count - current.get(t.name, t.count), 0) for t in req.topics)
        if added > MAX_PARTITIONS_PER_BATCH:
            return R(throttle_time_ms=0, results=[R.CreatePartitionsTopicResult(
                name=t.name, error_code=PolicyViolationError.error_code,
                error_message="Unable to perform excessively large batch operation.") for t in req.topics])
        ctl = self._active_controller()

        async def run():
            quota = await self._mutation_quota(header, 3)
            out = []
            for t in req.topics:
                existing = current.get(t.name, 0)
                if ctl is None:
                    code, msg = Errors.NOT_CONTROLLER, "this broker is not the controller"
                elif t.name in INTERNAL_TOPICS:
                    code, msg = Errors.INVALID_REQUEST, (f"{t.name} is an internal topic: its partition count is fixed "
                                     "(groups are placed by hashing over it)")
                elif not req.validate_only and existing and t.count > existing \
                        and not quota.admit(t.count - existing):
                    code, msg = Errors.THROTTLING_QUOTA_EXCEEDED, THROTTLED
                else:
                    assignment = ({existing + k: list(a.broker_ids) for k, a in enumerate(t.assignments)}
                                  if t.assignments else None)
                    code, msg = await self._by_controller(ctl, "create_partitions", t.name, t.count, assignment,
                                                          req.validate_only)
                out.append(R.CreatePartitionsTopicResult(name=t.name, error_code=code, error_message=msg))
            return R(throttle_time_ms=_throttled(header, quota), results=out)
        return _to_the_end(run())

    def _partition_counts(self):
        return {name: len(parts) for name, parts in self.broker.metadata_cache.topics.items()}

    # ---- DescribeConfigs (32) / AlterConfigs (33) ----

    def describe_configs(self, header, req):
        R = m.DescribeConfigsResponse
        C = R.DescribeConfigsResourceResult
        S = R.DescribeConfigsSynonym
        results = []
        for res in req.resources:
            keys = res.configuration_keys
            try:
                configs = []
                if res.resource_type == RESOURCE_TOPIC:
                    tc = self._topic_config(res.resource_name)
                    for key in sorted(TOPIC_CONFIGS):
                        if keys is not None and key not in keys:
                            continue
                        src = tc.source(key)
                        syn = []
                        if req.include_synonyms:
                            if key in tc.overrides:
                                syn.append(S(name=key, value=tc.overrides[key], source=1))
                            broker_key = TOPIC_CONFIGS[key][0]
                            bc = self.broker.config
                            for layer, source in ((bc.dynamic_broker, 2), (bc.dynamic_default, 3)):
                                if broker_key in layer:
                                    syn.append(S(name=broker_key, value=layer[broker_key], source=source))
                            if broker_key and self.broker.config.is_set(broker_key):
                                syn.append(S(name=broker_key, value=tc.broker.topic_default(key), source=4))
                            syn.append(S(name=broker_key or key, value=tc.broker.topic_default(key), source=5))
                        configs.append(C(name=key, value=tc.get_str(key), read_only=False,
                                         is_default=src == 5, config_source=src, is_sensitive=False,
                                         synonyms=syn))
                elif res.resource_type == RESOURCE_BROKER:
                    configs = dynamic_config.describe(self.broker.config, res.resource_name, keys,
                                                      req.include_synonyms)
                elif res.resource_type == RESOURCE_BROKER_LOGGER:
                    configs = broker_loggers.describe(res.resource_name, self.broker.broker_id, keys)
                elif res.resource_type == RESOURCE_GROUP:
                    configs = describe_group_configs(self.broker.config, res.resource_name,
                                                     self.broker.metadata_cache.group_configs.get(res.resource_name, {}),
                                                     keys, req.include_synonyms, req.include_documentation)
                else:
                    raise InvalidRequestError(f"resource type {res.resource_type} is not supported")
                results.append(R.DescribeConfigsResult(error_code=0, error_message=None,
                                                       resource_type=res.resource_type,
                                                       resource_name=res.resource_name, configs=configs))
            except PylogError as e:
                results.append(R.DescribeConfigsResult(error_code=_code(e), error_message=str(e),
                                                       resource_type=res.resource_type,
                                                       resource_name=res.resource_name, configs=[]))
        return R(throttle_time_ms=0, results=results)

    def alter_configs(self, header, req):
        """AlterConfigs: each resource's overrides replaced by the given set."""
        return self._alter(m.AlterConfigsResponse, req, lambda res: (
            {c.name: c.value for c in res.configs}, False), header)

    def incremental_alter_configs(self, header, req):
        """IncrementalAlterConfigs: SET/DELETE/APPEND/SUBTRACT per key, others kept."""
        def changes(res):
            if res.resource_type == RESOURCE_GROUP:
                return _group_config_changes(res.configs), True
            tc = self._topic_config(res.resource_name)
            out = {}
            for c in res.configs:
                out[c.name] = _apply_config_op(c.name, c.config_operation, c.value,
                                               out.get(c.name, tc.overrides.get(c.name)), tc)
            return out, True
        return self._alter(m.IncrementalAlterConfigsResponse, req, changes, header)

    def _topic_config(self, name):
        """A topic's configs: the controller's overrides (every broker has them
        from UpdateMetadata, replica here or not)."""
        cache = self.broker.metadata_cache
        if name not in cache.topics:
            raise UnknownTopicOrPartitionError(f"topic {name} does not exist")
        return TopicConfig(self.broker.config, cache.topic_configs.get(name, {}))

    async def _alter(self, R, req, changes_of, header):
        """Topic overrides are the controller's: the active controller merges
        and stores them and tells every broker (UpdateMetadata); any other
        broker forwards the request to it, as a KRaft broker does. A
        per-broker BROKER resource is checked first by the broker it names
        (Kafka's ConfigAdminManager), which is where clients send it."""
        loop = asyncio.get_running_loop()
        version = header.request_api_version
        # The client id alone can be spoofed: with an authorizer, only a principal
        # with CLUSTER_ACTION (a broker) skips the named broker's checks.
        az = self.broker.authorizer
        forwarded = header.client_id == FORWARD_CLIENT_ID and (
            az is None or az.allows_cluster(header, CLUSTER_ACTION))
        answered = {}   # here: refused BROKER resources, and every BROKER_LOGGER one (never forwarded)
        seen = Counter((res.resource_type, res.resource_name) for res in req.resources)
        for res in req.resources:
            code, message = None, None
            try:
                if seen[(res.resource_type, res.resource_name)] > 1:
                    raise InvalidRequestError("Each resource must appear at most once.")
                if res.resource_type == RESOURCE_BROKER_LOGGER:
                    if R is not m.IncrementalAlterConfigsResponse:
                        # Kafka's AlterConfigs has no BROKER_LOGGER resource
                        raise InvalidRequestError(f"Unknown resource type {res.resource_type}")
                    broker_loggers.apply_changes(res.resource_name, self.broker.broker_id, res.configs,
                                                 req.validate_only)
                    code = 0
                elif res.resource_type == RESOURCE_BROKER and not forwarded:
                    self._check_broker_resource(res, R is m.IncrementalAlterConfigsResponse)
            except PylogError as e:
                code, message = _code(e), str(e)
            if code is not None:
                answered[id(res)] = R.AlterConfigsResourceResponse(
                    error_code=code, error_message=message, resource_type=res.resource_type,
                    resource_name=res.resource_name)
        ctl = self._active_controller()
        if ctl is None:
            rest = [res for res in req.resources if id(res) not in answered]
            got, throttle = {}, 0
            ep = self.broker.metadata_cache.controller()
            if rest and ep is not None:
                sub = type(req)(resources=rest, validate_only=req.validate_only)
                try:
                    resp = await loop.run_in_executor(None, _forward, ep, sub, version,
                                                      self.broker.config.inter_broker_tls(),
                                                      self.broker.inter_broker_sasl)
                    got = {(r.resource_type, r.resource_name): r for r in resp.responses}
                    throttle = resp.throttle_time_ms
                except PylogError as e:
                    log.warning("forwarding %s to the controller failed: %s", type(req).__name__, e)

            def answer(res):
                return answered.get(id(res)) or got.get((res.resource_type, res.resource_name)) or \
                    R.AlterConfigsResourceResponse(error_code=Errors.NOT_CONTROLLER,
                                                   error_message="the controller cannot be reached",
                                                   resource_type=res.resource_type, resource_name=res.resource_name)
            return R(throttle_time_ms=throttle, responses=[answer(res) for res in req.resources])
        out = []
        for res in req.resources:
            if id(res) in answered:
                out.append(answered[id(res)])
                continue
            code, message = 0, None
            try:
                name = res.resource_name
                if res.resource_type == RESOURCE_BROKER:
                    code, message = await self._alter_broker(ctl, res, R is m.IncrementalAlterConfigsResponse,
                                                             req.validate_only)
                    out.append(R.AlterConfigsResourceResponse(error_code=code, error_message=message,
                                                              resource_type=res.resource_type, resource_name=name))
                    continue
                if res.resource_type == RESOURCE_GROUP:
                    code, message = await self._alter_group(ctl, res, changes_of, req.validate_only)
                    out.append(R.AlterConfigsResourceResponse(error_code=code, error_message=message,
                                                              resource_type=res.resource_type, resource_name=name))
                    continue
                if res.resource_type != RESOURCE_TOPIC:
                    raise InvalidRequestError(f"Unknown resource type {res.resource_type}")
                if name not in self.broker.metadata_cache.topics:
                    raise UnknownTopicOrPartitionError(f"topic {name} does not exist")
                changes, incremental = changes_of(res)
                current = await loop.run_in_executor(None, ctl.topic_configs, name)
                new = merge_overrides(current, changes, incremental)
                if not req.validate_only:
                    code, message = await self._by_controller(ctl, "alter_topic_configs", name, new)
            except PylogError as e:
                code, message = _code(e), str(e)
            out.append(R.AlterConfigsResourceResponse(error_code=code, error_message=message,
                                                      resource_type=res.resource_type, resource_name=res.resource_name))
        return R(throttle_time_ms=0, responses=out)

    def _check_broker_resource(self, res, incremental) -> None:
        """What Kafka's ConfigAdminManager checks on the broker that got the request,
        against that broker's view of the entity and its own config."""
        entity = res.resource_name
        if entity:
            dynamic_config.check_node_id(entity, self.broker.broker_id)
        new = _broker_config_changes(self.broker.metadata_cache.broker_configs.get(entity, {}), res, incremental)
        dynamic_config.check_on_broker(self.broker.config, entity, dynamic_config.validate(new, bool(entity)))

    async def _alter_broker(self, ctl, res, incremental, validate_only):
        """A BROKER resource's dynamic configs, merged with the controller's (or replaced,
        for AlterConfigs) on its event thread, so two changes never lose one another,
        checked, stored and pushed to every broker."""
        entity = res.resource_name
        if entity:
            try:
                int(entity)
            except ValueError:
                raise InvalidRequestError(f"Node id must be an integer, but it is: {entity}") from None

        def compute(current):
            return dynamic_config.validate(_broker_config_changes(current, res, incremental), per_broker=bool(entity))
        return await self._by_controller(ctl, "update_broker_configs", entity, compute, validate_only)

    async def _alter_group(self, ctl, res, changes_of, validate_only):
        """A group's overrides: merged (or replaced, for AlterConfigs), checked against this
        controller's broker bounds as Kafka's controller does, stored and pushed to every broker."""
        check_group_id(res.resource_name, altering=True)
        changes, incremental = changes_of(res)
        current = await asyncio.get_running_loop().run_in_executor(None, ctl.group_configs, res.resource_name)
        new = dict(current) if incremental else {}
        for key, value in changes.items():
            if incremental and value is None:
                new.pop(key, None)
            else:
                new[key] = value
        new = validate_group_configs(self.broker.config, new)
        if validate_only:
            return 0, None
        return await self._by_controller(ctl, "alter_group_configs", res.resource_name, new)

    # ---- DeleteRecords (21) ----

    def delete_records(self, header, req):
        R = m.DeleteRecordsResponse
        topics = []
        deleting = []   # the segment deletions and checkpoint writes, off the loop
        for t in req.topics:
            parts = []
            for dp in t.partitions:
                try:
                    if t.name in INTERNAL_TOPICS:
                        raise InvalidRequestError(f"records of the internal topic {t.name} cannot be deleted")
                    p = self.logs.get_partition(t.name, dp.partition_index)
                    if "delete" not in {x.strip() for x in p.config.get("cleanup.policy").split(",")}:
                        # Kafka's Partition.deleteRecordsOnLeader: only a deleting policy lets records go.
                        raise PolicyViolationError(f"Records of partition {t.name}-{dp.partition_index} can not "
                                                   f"be deleted due to the configured policy")
                    if dp.offset < 0 and dp.offset != -1:
                        # Kafka's Partition.deleteRecordsOnLeader: only -1
                        # (HIGH_WATERMARK) stands for an offset.
                        raise OffsetOutOfRangeError(f"cannot delete records below the negative offset {dp.offset}")
                    low = p.advance_log_start_offset(dp.offset)
                    deleting.append(self.logs.delete_below_log_start(p))
                    parts.append(R.DeleteRecordsPartitionResult(partition_index=dp.partition_index,
                                                                low_watermark=low, error_code=0))
                except PylogError as e:
                    parts.append(R.DeleteRecordsPartitionResult(partition_index=dp.partition_index,
                                                                low_watermark=-1, error_code=_code(e)))
            topics.append(R.DeleteRecordsTopicResult(name=t.name, partitions=parts))
        resp = R(throttle_time_ms=0, topics=topics)
        deleting = [f for f in deleting if f is not None]
        if not deleting:
            return resp

        async def answer_when_durable():
            # The records are gone for readers already; the answer waits for
            # the new log start to be on disk.
            for f in deleting:
                try:
                    await asyncio.wrap_future(f)
                except Exception as e:  # noqa: BLE001 -- the next DeleteRecords or retention tries again
                    log.error("deleting the segments below a log start failed: %s", e)
            return resp
        return _to_the_end(answer_when_durable())

    # ---- InitProducerId (22) ----

    def init_producer_id(self, header, req):
        """Without a transactional id (idempotent producers); a transactional
        one goes to the transaction coordinator (transactions/api.py)."""
        R = m.InitProducerIdResponse
        async def allocate():
            try:
                pid = await self.broker.allocate_producer_id()
            except Exception as e:  # the cluster's store unreachable: the client retries
                log.warning("no producer id block from the cluster: %s", e)
                return R(throttle_time_ms=0, error_code=Errors.COORDINATOR_NOT_AVAILABLE,
                         producer_id=-1, producer_epoch=-1)
            return R(throttle_time_ms=0, error_code=0, producer_id=pid, producer_epoch=0)
        return allocate()



# Kafka's message for THROTTLING_QUOTA_EXCEEDED.
THROTTLED = "The throttling quota has been exceeded."


def _max_timestamp_offset(p, bound):
    """ListOffsets MAX_TIMESTAMP: (offset, timestamp) of the first record
    holding the largest timestamp in the log, (-1, -1) when the log is empty
    or that record is not below bound (Kafka's lastFetchableOffset). Reads
    the disk: a worker thread, never the event loop."""
    top = max((s.max_timestamp for s in p.log.segments()), default=-1)
    if top < 0:
        return -1, -1
    hit = p.log.offset_and_timestamp_for_time(top, p.max_inflated_bytes)
    if hit is None or hit[0] >= bound:
        return -1, -1
    return hit


def _throttled(header, quota) -> int:
    """The answer's throttle_time_ms; the connection is muted that long after it."""
    ms = quota.throttle_time_ms
    if header is not None:
        # The request quota's throttle may be set already: the larger wins.
        ms = header.throttle_ms = max(ms, header.throttle_ms)
    return ms


def _created_fields(cfg, n, rf, configs) -> dict:
    """CreateTopics v5+: what the topic was created with, every config and its source."""
    from .config import TOPIC_CONFIGS, TopicConfig, validate_topic_configs
    tc = TopicConfig(cfg, validate_topic_configs(configs or {}))
    C = m.CreateTopicsResponse.CreatableTopicConfigs
    return dict(num_partitions=n, replication_factor=rf, configs=[
        C(name=k, value=tc.get_str(k), read_only=False, config_source=tc.source(k), is_sensitive=False)
        for k in sorted(TOPIC_CONFIGS)])


# Requests this broker forwards to the controller say so (the controller then skips
# the checks the forwarding broker made, as Kafka's Envelope lets it).
FORWARD_CLIENT_ID = "pylog-forward"


def _forward(ep, req, version, ssl_context=None, sasl=None):
    """req sent as it came to the controller at ep (on a worker thread), over
    TLS when the inter-broker listener is SSL, authenticated when it is SASL; its answer."""
    from ..client.wire import Connection
    with Connection(ep.host, ep.port, client_id=FORWARD_CLIENT_ID, timeout=30, ssl_context=ssl_context,
                    sasl=sasl) as c:
        return c.request(req, api_version=version)


async def forward_to_controller(broker, req, version, refuse):
    """The controller's answer to req (a broker without the metadata store
    forwards it, as KRaft brokers do), or refuse(why) when there is none."""
    ep = broker.metadata_cache.controller()
    if ep is None:
        return refuse("no controller is known")
    try:
        return await asyncio.get_running_loop().run_in_executor(None, _forward, ep, req, version,
                                                                broker.config.inter_broker_tls(),
                                                                broker.inter_broker_sasl)
    except (OSError, PylogError) as e:
        log.warning("forwarding %s to the controller failed: %s", type(req).__name__, e)
        return refuse(f"the controller cannot be reached: {e}")


_I32 = struct.Struct(">i")


_SET, _DELETE, _APPEND, _SUBTRACT = 0, 1, 2, 3
_LIST_CONFIGS = frozenset({"cleanup.policy"})


def _broker_config_changes(current, res, incremental) -> dict:
    """A BROKER resource's configs after the request: merged (IncrementalAlterConfigs)
    or replaced (AlterConfigs)."""
    if incremental:
        return dynamic_config.apply_ops(current, [(c.name, c.config_operation, c.value) for c in res.configs])
    return dynamic_config.apply_ops({}, [(c.name, _SET, c.value) for c in res.configs])


def _group_config_changes(configs) -> dict:
    """IncrementalAlterConfigs operations on a group: {key: new value, None to delete}.
    Group configs are all INT, so APPEND and SUBTRACT never apply (Kafka's words)."""
    out = {}
    for c in configs:
        if c.config_operation == _SET:
            if c.value is None:
                raise InvalidConfigError(f"Null value not supported for group configs: {c.name}")
            out[c.name] = c.value
        elif c.config_operation == _DELETE:
            out[c.name] = None
        elif c.config_operation in (_APPEND, _SUBTRACT):
            op = "APPEND" if c.config_operation == _APPEND else "SUBTRACT"
            raise InvalidConfigError(f"Can't {op} to key {c.name} because its type is not LIST.")
        else:
            raise InvalidRequestError(f"unknown config operation {c.config_operation}")
    return out


def _apply_config_op(name, op, value, current, topic_config):
    """The new override for one IncrementalAlterConfigs operation (None: removed)."""
    if op == _SET:
        return value
    if op == _DELETE:
        return None
    if op in (_APPEND, _SUBTRACT):
        if name not in _LIST_CONFIGS:
            raise InvalidConfigError(f"{name} is not a list config: APPEND and SUBTRACT do not apply")
        base = current if current is not None else topic_config.get_str(name)
        items = [x.strip() for x in base.split(",") if x.strip()]
        given = [x.strip() for x in (value or "").split(",") if x.strip()]
        if op == _APPEND:
            items += [x for x in given if x not in items]
        else:
            items = [x for x in items if x not in given]
        return ",".join(items)
    raise InvalidRequestError(f"unknown config operation {op}")


def detach_chunks(chunks):
    """The chunks with segment bytes copied out. A delayed answer may wait behind
    another before it is written, and a FetchSlice kept that long would pin its
    segment against retention and topic deletion; delayed answers are small
    (they waited for new data), so the copy is cheap."""
    return [c if type(c) is bytes else bytes(c) for c in chunks]


def produce_refused(txn_id, topics) -> bool:
    """Whether Kafka answers a Produce request TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    for all its partitions: a transactional batch without the request's
    transactional id. topics: [(name, [(index, records)])]."""
    return txn_id is None and _has_transactional_batch(topics)


def _has_transactional_batch(topics) -> bool:
    """Whether a produce request holds a transactional batch: the attributes'
    bit 4 (KAFKA-NOTES §2.1) of each whole magic-2 batch, walked by length as
    Kafka's batch iterator does (it stops at a batch cut short; a malformed
    one is left to validation, which refuses it)."""
    for _name, parts in topics:
        for _index, records in parts:
            if not records:
                continue
            pos, n = 0, len(records)
            while pos + 61 <= n:
                length = _I32.unpack_from(records, pos + 8)[0]
                if length < 49 or pos + 12 + length > n:
                    break
                if records[pos + 16] == 2 and records[pos + 22] & 0x10:
                    return True
                pos += 12 + length
    return False


async def _to_the_end(coro):
    """Run coro to its end even when its client goes away (the connection
    cancels what it waits for): topic file work half done would leave
    partitions opened but never registered."""
    return await asyncio.shield(asyncio.ensure_future(coro))


def _file_work_error(exc, what):
    """(error code, message) for topic file work that failed; an OSError (no
    disk space, no file descriptors left) is the request's error, not the
    connection's end."""
    if isinstance(exc, PylogError):
        return _code(exc), str(exc)
    if isinstance(exc, OSError):
        log.warning("%s failed: %s", what, exc)
        return Errors.UNKNOWN_SERVER_ERROR, f"{what} failed: {exc}"
    log.error("%s failed", what, exc_info=exc)
    return Errors.UNKNOWN_SERVER_ERROR, f"{what} failed: {type(exc).__name__}"


class _DelayedProduce(DelayedOperation):
    """acks=all: complete once every appended offset has an outcome
    (Partition.produce_outcome: committed, ISR too small, not leader) or the
    broker stops. Event-loop thread only."""

    __slots__ = ("waiting", "broker")

    def __init__(self, waiting, broker):
        self.waiting = waiting   # [(Partition, last offset, topic index, partition index)]
        self.broker = broker

    def try_complete(self) -> bool:
        if self.broker.stopping:
            return True
        return all(p.produce_outcome(last) is not None for p, last, _t, _i in self.waiting)
