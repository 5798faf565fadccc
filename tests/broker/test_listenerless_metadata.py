"""A broker without a listener (pylog's embedded store, Broker(listen=False))
advertises no endpoint: nothing listens at the host:port its config names, so
its Metadata lists no broker a client could connect to, and the partitions it
leads have no reachable leader (LEADER_NOT_AVAILABLE, leader -1), as Kafka
answers for a leader without an endpoint on the listener asked on. A broker
that listens answers with itself as before."""
from __future__ import annotations

from pylog import _engine
from pylog.client.wire import Connection
from pylog.embedded import LocalStore
from pylog.embedded.store import _Header
from pylog.protocol import messages as m
from pylog.protocol.error_codes import Errors
from pylog.testing import running_broker

VERSION = 5   # the highest Metadata version served


def test_the_embedded_store_advertises_nothing(tmp_path):
    with LocalStore.open(tmp_path / "d") as s:
        s.create_topic("t", 2)
        s.append("t", 0, _engine.encode_batch([b"x"]))
        resp = s._call(s.broker.handlers.metadata, _Header(VERSION), m.MetadataRequest(topics=None))
        assert resp.brokers == []
        (t,) = [t for t in resp.topics if t.name == "t"]
        assert t.error_code == 0
        assert [(p.partition_index, p.error_code, p.leader_id) for p in t.partitions] == \
            [(0, Errors.LEADER_NOT_AVAILABLE, -1), (1, Errors.LEADER_NOT_AVAILABLE, -1)]
        # The store itself serves the partition as before.
        assert s.list_offset("t", 0, -1)[0] == 1


def test_a_listening_broker_advertises_itself(tmp_path):
    with running_broker(tmp_path / "d") as b:
        with Connection("127.0.0.1", b.port) as c:
            c.request(m.CreateTopicsRequest(topics=[m.CreateTopicsRequest.CreatableTopic(
                name="t", num_partitions=1, replication_factor=1, assignments=[], configs=[])],
                timeout_ms=30000), 5)
            resp = c.request(m.MetadataRequest(topics=None), VERSION)
        assert [(x.node_id, x.port) for x in resp.brokers] == [(b.broker.broker_id, b.port)]
        (t,) = [t for t in resp.topics if t.name == "t"]
        assert [(p.error_code, p.leader_id) for p in t.partitions] == [(0, b.broker.broker_id)]
