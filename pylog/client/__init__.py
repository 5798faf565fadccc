"""A small synchronous Kafka protocol client, for pylog's tools and tests.

    wire.py         Connection: one socket, ApiVersions handshake, version choice, pipelining;
                    wait_readable (select over connections, TLS-correct)
    security.py     Kafka's client keys (security.protocol, ssl.*, sasl.*) -> ssl_context and sasl
    sasl.py         the client side of SASL PLAIN and SCRAM
    client.py       Client: metadata, leader routing, admin requests, produce, fetch, list_offsets
    records.py      reading fetched record batches as a consumer does (partial tail, control batches)
    partitioner.py  Kafka's murmur2 key partitioner
    errors.py       Kafka error names; the pylog.errors exception for a broker's error code

Nothing here is thread-safe: each Client or Connection belongs to one thread.
"""
from .client import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    BrokerMetadata,
    Client,
    ClusterMetadata,
    ConfigEntry,
    FetchedPartition,
    PartitionMetadata,
    TopicMetadata,
)
from .errors import ConnectionClosedError, SslAuthenticationError, check, error_for, error_name
from .wire import OUR_VERSIONS, Connection

__all__ = [
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "OUR_VERSIONS",
    "BrokerMetadata",
    "Client",
    "ClusterMetadata",
    "ConfigEntry",
    "Connection",
    "ConnectionClosedError",
    "FetchedPartition",
    "PartitionMetadata",
    "SslAuthenticationError",
    "TopicMetadata",
    "check",
    "error_for",
    "error_name",
]
