"""The API versions this broker advertises in ApiVersions (KAFKA-NOTES §3.3).

ADVERTISED goes as far as Apache Kafka 4.x brokers serve each API pylog
implements (issue 17), flexible versions included: what librdkafka 2.16,
kafka-python, aiokafka and the Java client send. The comment on each line
names what its newest versions add. An API missing from the table is not
served.

Minima are never above aiokafka's maxima, and Fetch 11 stays in range so
kafka-python infers a 2.3+ broker (zstd, idempotence). Produce is advertised
from 0 (as Kafka 4.0 does, KAFKA-18659: librdkafka before 2.11.1 enables
compression only when v0 is in range) but versions 0-2 (message formats 0/1)
are refused with UNSUPPORTED_VERSION when sent (SERVED_MIN).

The inter-broker APIs (LeaderAndIsr 5 and UpdateMetadata 7 with topic ids,
StopReplica, AlterPartition, ControlledShutdown) are advertised in the
versions pylog's controller sends, by brokers of a cluster only
(INTER_BROKER_APIS) and only on listeners that carry inter-broker traffic
(BROKER_ONLY_APIS). OffsetForLeaderEpoch 0-3 serves followers (KIP-101) and
consumers validating positions with Metadata's leader epochs (KIP-320).
"""
from __future__ import annotations

PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
API_VERSIONS = 18
CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS, INIT_PRODUCER_ID = 19, 20, 21, 22
DESCRIBE_CONFIGS, ALTER_CONFIGS, CREATE_PARTITIONS = 32, 33, 37
DESCRIBE_CLUSTER = 60
INCREMENTAL_ALTER_CONFIGS = 44
DESCRIBE_CLIENT_QUOTAS, ALTER_CLIENT_QUOTAS = 48, 49
DESCRIBE_LOG_DIRS = 35
LEADER_AND_ISR, STOP_REPLICA, UPDATE_METADATA, OFFSET_FOR_LEADER_EPOCH = 4, 5, 6, 23
ALTER_PARTITION = 56
CONTROLLED_SHUTDOWN = 7
BROKER_REGISTRATION, BROKER_HEARTBEAT, ALLOCATE_PRODUCER_IDS = 62, 63, 67
ALTER_PARTITION_REASSIGNMENTS, LIST_PARTITION_REASSIGNMENTS = 45, 46
ELECT_LEADERS = 43
ADD_PARTITIONS_TO_TXN, ADD_OFFSETS_TO_TXN, END_TXN, TXN_OFFSET_COMMIT = 24, 25, 26, 28
DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 65, 66
WRITE_TXN_MARKERS, DESCRIBE_PRODUCERS = 27, 61
DESCRIBE_ACLS, CREATE_ACLS, DELETE_ACLS = 29, 30, 31

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
DESCRIBE_USER_SCRAM_CREDENTIALS, ALTER_USER_SCRAM_CREDENTIALS = 50, 51

OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT, LEAVE_GROUP = 8, 9, 10, 11, 12, 13
SYNC_GROUP, DESCRIBE_GROUPS, LIST_GROUPS, DELETE_GROUPS = 14, 15, 16, 42
OFFSET_DELETE = 47
CONSUMER_GROUP_HEARTBEAT, CONSUMER_GROUP_DESCRIBE = 68, 69
SHARE_GROUP_HEARTBEAT, SHARE_GROUP_DESCRIBE, SHARE_FETCH, SHARE_ACKNOWLEDGE = 76, 77, 78, 79
DESCRIBE_SHARE_GROUP_OFFSETS, ALTER_SHARE_GROUP_OFFSETS, DELETE_SHARE_GROUP_OFFSETS = 90, 91, 92
INITIALIZE_SHARE_GROUP_STATE, READ_SHARE_GROUP_STATE, WRITE_SHARE_GROUP_STATE = 83, 84, 85
DELETE_SHARE_GROUP_STATE, READ_SHARE_GROUP_STATE_SUMMARY = 86, 87

# api_key: (min advertised, max advertised)
ADVERTISED: dict[int, tuple[int, int]] = {
    # The group APIs up to what Kafka 4.x serves (pylog/groups/api.py), the
    # minima kept at or below aiokafka's maxima (§3.3).
    OFFSET_COMMIT: (2, 9),    # v6: leader epoch; v7: instance id; v8 flexible; v9: GROUP_ID_NOT_FOUND
    OFFSET_FETCH: (1, 9),     # v7: require_stable (KIP-447); v8: several groups (KIP-709); v9: member epoch
    FIND_COORDINATOR: (0, 6),  # v4: batched keys (KIP-699); v6: share key type (KIP-932)
    JOIN_GROUP: (0, 9),       # v4: MEMBER_ID_REQUIRED (KIP-394); v5: static members; v9: skip_assignment (KIP-814)
    HEARTBEAT: (0, 4),
    LEAVE_GROUP: (0, 5),      # aiokafka's maximum is 1; v3: batched members; v5: reason
    SYNC_GROUP: (0, 5),       # v5: protocol type and name checked (KIP-559)
    DESCRIBE_GROUPS: (0, 5),  # v3: authorized operations; v4: group_instance_id of members
    LIST_GROUPS: (0, 5),      # v4: states filter; v5: types filter (KIP-848)
    DELETE_GROUPS: (0, 2),
    OFFSET_DELETE: (0, 0),    # KIP-496: offsets of topics a group no longer consumes
    # KIP-848 consumer groups (pylog/groups/consumer_group.py): librdkafka
    # sends only heartbeat v1 (client-made member ids, regex subscriptions).
    CONSUMER_GROUP_HEARTBEAT: (0, 1),
    CONSUMER_GROUP_DESCRIBE: (0, 1),   # v1: MemberType (KIP-1099)
    # KIP-932 share groups (pylog/share/): v1 is Kafka 4.1+'s stable version and
    # what librdkafka sends; ShareFetch/ShareAcknowledge v2 (KIP-1206 acquire
    # modes, KIP-1222 renew) are not served.
    SHARE_GROUP_HEARTBEAT: (1, 1),
    SHARE_GROUP_DESCRIBE: (1, 1),
    SHARE_FETCH: (1, 1),
    SHARE_ACKNOWLEDGE: (1, 1),
    DESCRIBE_SHARE_GROUP_OFFSETS: (0, 1),   # v1: Lag (KIP-1226)
    ALTER_SHARE_GROUP_OFFSETS: (0, 0),
    DELETE_SHARE_GROUP_OFFSETS: (0, 0),
    # Share-partition leaders -> the share coordinator (pylog/share/persister*.py),
    # advertised and served on every listener as Kafka's brokers do (CLUSTER_ACTION).
    # ReadSummary v1: DeliveryCompleteCount (KIP-1226); Write v1's (the leader's
    # own count) is not served: the coordinator counts from the batches.
    INITIALIZE_SHARE_GROUP_STATE: (0, 0),
    READ_SHARE_GROUP_STATE: (0, 0),
    WRITE_SHARE_GROUP_STATE: (0, 0),
    DELETE_SHARE_GROUP_STATE: (0, 0),
    READ_SHARE_GROUP_STATE_SUMMARY: (0, 1),
    PRODUCE: (0, 11),         # v8: record_errors (KIP-467); v9 flexible; v10-11: current leader (KIP-951)
    FETCH: (4, 17),           # v12 flexible, v13 topic ids, v15 replica_state, v16 node_endpoints (fetch_api.py)
    LIST_OFFSETS: (1, 9),     # v4: leader epochs; v7 MAX_TIMESTAMP; v8 EARLIEST_LOCAL; v9 LATEST_TIERED
    METADATA: (0, 12),        # v7: leader epochs (KIP-320); v10: topic ids; v12: lookups by id
    DESCRIBE_CLUSTER: (0, 1),
    API_VERSIONS: (0, 4),
    # CreateTopics v6, DeleteTopics v5, CreatePartitions v3: the controller
    # mutation quota refuses topics with THROTTLING_QUOTA_EXCEEDED (KIP-599);
    # older versions are throttled instead (broker/quotas.py).
    CREATE_TOPICS: (2, 6),
    DELETE_TOPICS: (1, 5),
    DELETE_RECORDS: (0, 1),
    # Transactions (pylog/transactions): the versions librdkafka 2.16
    # (InitProducerId 0-4 incl. KIP-360's v3+, AddPartitions/AddOffsets 0,
    # EndTxn 0-1, TxnOffsetCommit 0-3), kafka-python 3 (InitProducerId 4, the
    # others 3; flexible from 2/3) and aiokafka (0) send. Not KIP-890 part 2
    # (AddPartitionsToTxn 5, EndTxn 5, InitProducerId 5, the
    # transaction.version feature), which is not served.
    INIT_PRODUCER_ID: (0, 4),
    ADD_PARTITIONS_TO_TXN: (0, 4),  # v4: verify_only, from brokers (KIP-890 part 1)
    ADD_OFFSETS_TO_TXN: (0, 3),
    END_TXN: (0, 3),
    TXN_OFFSET_COMMIT: (0, 3),
    DESCRIBE_TRANSACTIONS: (0, 0),
    LIST_TRANSACTIONS: (0, 1),
    DESCRIBE_CONFIGS: (1, 2),
    ALTER_CONFIGS: (0, 1),
    CREATE_PARTITIONS: (0, 3),
    DESCRIBE_CLIENT_QUOTAS: (0, 1),   # broker/quotas.py, client_quotas.py, connection_quotas.py
    ALTER_CLIENT_QUOTAS: (0, 1),
    INCREMENTAL_ALTER_CONFIGS: (0, 1),  # v1 is flexible; confluent-kafka's non-deprecated way
    # Inter-broker APIs (controller -> broker), advertised as Kafka brokers do;
    # only the versions pylog's controller sends (topic_states grouping).
    LEADER_AND_ISR: (2, 5),
    UPDATE_METADATA: (5, 7),  # v7: topic ids (KIP-516)
    STOP_REPLICA: (1, 2),
    OFFSET_FOR_LEADER_EPOCH: (0, 3),
    ALTER_PARTITION: (0, 0),  # leaders -> controller; NOT_CONTROLLER on other brokers
    CONTROLLED_SHUTDOWN: (2, 2),  # a stopping broker -> controller; NOT_CONTROLLER elsewhere
    # Brokers -> the embedded controller (KRaft's APIs, served on the ordinary
    # listener of the broker that is the controller; NOT_CONTROLLER elsewhere).
    # Admin clients -> the active controller (NOT_CONTROLLER elsewhere).
    ALTER_PARTITION_REASSIGNMENTS: (0, 0),
    LIST_PARTITION_REASSIGNMENTS: (0, 0),
    ELECT_LEADERS: (0, 2),    # v1: election type (KIP-460: unclean); v2 flexible
    BROKER_REGISTRATION: (0, 0),
    BROKER_HEARTBEAT: (0, 0),
    ALLOCATE_PRODUCER_IDS: (0, 0),
    # Transaction coordinator -> partition leaders (v1 flexible); admins.
    WRITE_TXN_MARKERS: (0, 1),
    DESCRIBE_PRODUCERS: (0, 0),
    DESCRIBE_LOG_DIRS: (0, 4),  # v2 flexible; v3 top-level error_code; v4 volume total/usable bytes
    # ACLs (broker/acl_apis.py): Kafka 4.0 dropped v0; v1 pattern types (KIP-290); v2 flexible.
    DESCRIBE_ACLS: (1, 3),
    CREATE_ACLS: (1, 3),
    DELETE_ACLS: (1, 3),
    # SASL (broker/sasl.py): v0 handshake = raw tokens; SaslAuthenticate v1
    # session lifetime (KIP-368), v2 flexible.
    SASL_HANDSHAKE: (0, 1),
    SASL_AUTHENTICATE: (0, 2),
    DESCRIBE_USER_SCRAM_CREDENTIALS: (0, 0),
    ALTER_USER_SCRAM_CREDENTIALS: (0, 0),
}

# Sent only between brokers and their controller: a broker outside a cluster
# serves and advertises none of them (Broker.start) but WriteTxnMarkers, which
# an admin on its host sends to abort a hanging transaction.
INTER_BROKER_APIS = frozenset({LEADER_AND_ISR, UPDATE_METADATA, STOP_REPLICA, CONTROLLED_SHUTDOWN, ALTER_PARTITION,
                               WRITE_TXN_MARKERS})

# Served only on a listener that carries inter-broker traffic (the inter-broker
# and control-plane listeners) when the broker has several: a client listener
# neither advertises nor serves them (server.Connection._handler).
BROKER_ONLY_APIS = INTER_BROKER_APIS | {BROKER_REGISTRATION, BROKER_HEARTBEAT, ALLOCATE_PRODUCER_IDS}

# Versions inside the advertised range that are still refused when sent.
SERVED_MIN = {PRODUCE: 3}


def is_served(api_key: int, version: int) -> bool:
    rng = ADVERTISED.get(api_key)
    return rng is not None and max(rng[0], SERVED_MIN.get(api_key, rng[0])) <= version <= rng[1]
