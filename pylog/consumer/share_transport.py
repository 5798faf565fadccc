"""Where a ShareConsumer's requests go: a cluster over the Kafka protocol, or
an embedded store's broker core in-process.

Both answer the same calls, so share_consumer.py holds no transport logic:
- topics() -> {topic id: name}; leader(topic_id, index) -> node key;
- start(node, request) -> ticket, then finish(ticket) -> response: several
  share fetches (one per leader) wait on the broker side at once, and an
  asynchronous commit's ShareAcknowledge is read back later (the network
  transport pipelines on the leader's connection; the local one answers
  in start() and only hands the answer over in finish());
- ready(tickets, timeout) -> the tickets finish() reads without waiting
  for the broker, within timeout; abandon(ticket) for one never answered;
  outlives_poll: whether a request may stay in flight after the poll that
  sent it (its answer read by a later one);
- membership(group_id, ...) -> ShareMembership talking to the group's
  coordinator the same way.

NetworkShareTransport: a pylog.client.Client (TLS and SASL as Kafka's client
keys give them) for metadata and one connection per leader; the heartbeat
thread has its own Client (a Client belongs to one thread).
LocalShareTransport: LocalStore.handle, the broker's own ShareFetch /
ShareAcknowledge / ShareGroupHeartbeat handlers, as ConsumerProtocolMembership
uses it for KIP-848 groups; the store is the process's one for that directory
(shared with embedded Producers and Consumers).

Thread-safety: the user's thread, except what membership() hands its thread.
"""
from __future__ import annotations

from ..client.client import Client
from ..client.errors import error_for
from ..client.wire import wait_readable
from ..protocol.error_codes import Errors
from .share_membership import ShareMembership

__all__ = ["LocalShareTransport", "NetworkShareTransport", "SHARE_VERSION"]

# ShareFetch / ShareAcknowledge / ShareGroupHeartbeat v1: Kafka 4.1's stable
# KIP-932 versions, and what pylog's broker serves.
SHARE_VERSION = 1
_SHARE_APIS = (76, 78, 79)   # ShareGroupHeartbeat, ShareFetch, ShareAcknowledge


class NetworkShareTransport:
    outlives_poll = True

    def __init__(self, bootstrap_servers: str, *, client_id: str, request_timeout_ms: int, ssl_context=None,
                 sasl=None):
        self.request_timeout = request_timeout_ms / 1000
        self._args = dict(client_id=client_id, timeout=request_timeout_ms / 1000, ssl_context=ssl_context,
                          sasl=sasl)
        self._bootstrap = bootstrap_servers
        self.client = Client(bootstrap_servers, **self._args)
        self._leaders: dict = {}

    def topics(self) -> dict:
        md = self.client.metadata(None)
        self._leaders = {(t.topic_id, i): p.leader_id for t in md.topics.values() if t.topic_id is not None
                         for i, p in t.partitions.items()}
        return {t.topic_id: name for name, t in md.topics.items() if t.topic_id is not None}

    def leader(self, topic_id, index: int):
        node = self._leaders.get((topic_id, index), -1)
        if node < 0:
            self.topics()
            node = self._leaders.get((topic_id, index), -1)
        return node if node >= 0 else None

    def start(self, node, body):
        conn = self.client.connection(node)
        _check_served(conn.api_versions, body.API_KEY, f"broker {node}")
        conn.send(body, SHARE_VERSION)
        return conn

    def finish(self, ticket):
        return ticket.receive()

    def ready(self, tickets, timeout: float) -> list:
        return wait_readable(tickets, timeout=timeout)[0]

    def abandon(self, ticket) -> None:
        """A request never answered: its connection's stream is given up (the next start() opens another)."""
        ticket.close()

    def forget_leaders(self) -> None:
        self._leaders = {}

    def membership(self, group_id: str, **kw) -> ShareMembership:
        holder = {}

        def client():
            # The heartbeat thread's own client (made and used on that thread,
            # and by close() after the thread ended).
            if "c" not in holder:
                holder["c"] = Client(self._bootstrap, **self._args)
            return holder["c"]

        def coordinator(refresh):
            c = client()
            c.find_coordinator(group_id, refresh=refresh)
            b = c.coordinator(group_id)
            if b is None:
                raise error_for(Errors.COORDINATOR_NOT_AVAILABLE, f"coordinator of {group_id!r} not in the metadata")
            return b.host, b.port

        def connect(host, port):
            conn = client().open_connection(host, port)
            _check_served(conn.api_versions, 76, f"{host}:{port}")
            return conn

        def release():
            c = holder.pop("c", None)
            if c is not None:
                c.close()

        return ShareMembership(group_id, coordinator=coordinator, connect=connect, release=release, **kw)

    def close(self) -> None:
        self.client.close()


class LocalShareTransport:
    NODE = 0   # the store's one broker core
    # start() waits for the answer (the store's calls are synchronous), so a
    # fetch waits no longer than the poll that sends it.
    outlives_poll = False
    request_timeout = 0.0

    def __init__(self, log_dir, **store_options):
        from ..embedded.store import LocalStore
        self.store = LocalStore.open(log_dir, **store_options)
        _check_served(self.store.api_versions(), 78, "the embedded store")

    def topics(self) -> dict:
        cache = self.store.broker.metadata_cache
        return self.store.call(lambda: {tid: name for name, tid in cache.topic_ids.items()})

    def leader(self, topic_id, index: int):
        return self.NODE

    def start(self, node, body):
        return self.store.handle(body, SHARE_VERSION)

    def finish(self, ticket):
        return ticket

    def ready(self, tickets, timeout: float) -> list:
        return list(tickets)

    def abandon(self, ticket) -> None:
        pass   # answered in start()

    def forget_leaders(self) -> None:
        pass

    def membership(self, group_id: str, **kw) -> ShareMembership:
        return ShareMembership(group_id, local_store=self.store, **kw)

    def close(self) -> None:
        self.store.close()


def _check_served(versions: dict, api_key: int, where: str) -> None:
    lo, hi = versions.get(api_key, (0, -1))
    if not lo <= SHARE_VERSION <= hi:
        raise error_for(Errors.UNSUPPORTED_VERSION,
                        f"{where} does not serve share groups (api key {api_key} v{SHARE_VERSION}): KIP-932 needs "
                        f"a broker with share groups enabled")
