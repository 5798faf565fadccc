"""The test as the controller: real controller requests over real sockets.

- ``TestController`` sends LeaderAndIsr v3, UpdateMetadata v5 and
  StopReplica v1 to in-process brokers with pylog.client.wire.Connection (an
  explicit api_version), as pylog's controller will, and returns the decoded
  responses.
- ``FakeControllerListener`` is the controller's socket as far as the
  brokers go: a tiny thread-served TCP listener that decodes every request
  frame with our codecs. Brokers configured with ``broker_config()``
  (pylog.controller.id / pylog.controller.listener naming it) register with it
  as with the embedded controller and get a broker epoch, which
  ``TestController`` puts in its requests (brokers refuse any other, KIP-380).
  It records the AlterPartition requests and (when ``answer`` is set) commits
  the asked ISR the way a controller does (partition_epoch + 1), otherwise
  leaves them unanswered.

Not thread-safe beyond what its lock guards: tests read ``alter_requests``
while the listener thread appends to it.
"""
from __future__ import annotations

import copy
import socket
import struct
import threading
import time

from pylog.client.wire import Connection
from pylog.protocol import messages as m
from pylog.protocol.framing import decode_request, encode_response
from pylog.protocol.pylog_tags import controller_epoch_field

_I32 = struct.Struct(">i")


class TestController:
    __test__ = False  # not a pytest test class

    def __init__(self, controller_id: int = 100, controller_epoch: int = 1, listener=None):
        self.controller_id = controller_id
        self.controller_epoch = controller_epoch
        self.listener = listener   # the FakeControllerListener the brokers registered with
        self.brokers: dict[int, tuple[str, int]] = {}   # live brokers: id -> (host, port)
        self.partition_epochs: dict[tuple[str, int], int] = {}

    def add_broker(self, broker_id: int, host: str, port: int):
        self.brokers[broker_id] = (host, port)

    def _send(self, broker_id: int, body, version: int):
        host, port = self.brokers[broker_id]
        body = copy.copy(body)
        body.broker_epoch = self.listener.broker_epoch(broker_id) if self.listener is not None else -1
        if self.listener is not None:   # one controller: its listener answers the epoch it sends with
            self.listener.controller_epoch = max(self.listener.controller_epoch, body.controller_epoch)
        with Connection(host, port, client_id=f"controller-{self.controller_id}") as c:
            return c.request(body, api_version=version)

    def leader_and_isr(self, broker_ids, topic, partition, leader, leader_epoch, replicas, isr,
                       controller_epoch=None, partition_epoch=None):
        """LeaderAndIsr v3 for one partition to each of broker_ids; {broker id: response}."""
        Q = m.LeaderAndIsrRequest
        epoch = self.controller_epoch if controller_epoch is None else controller_epoch
        pe = self.partition_epochs.get((topic, partition), 0) if partition_epoch is None else partition_epoch
        state = Q.LeaderAndIsrPartitionState(
            partition_index=partition, controller_epoch=epoch, leader=leader, leader_epoch=leader_epoch,
            isr=list(isr), partition_epoch=pe, replicas=list(replicas), adding_replicas=[],
            removing_replicas=[], is_new=False)
        live = [Q.LeaderAndIsrLiveLeader(broker_id=leader, host_name=self.brokers[leader][0],
                                         port=self.brokers[leader][1])] if leader in self.brokers else []
        req = Q(controller_id=self.controller_id, controller_epoch=epoch, broker_epoch=-1,
                topic_states=[Q.LeaderAndIsrTopicState(topic_name=topic, partition_states=[state])],
                live_leaders=live)
        return {b: self._send(b, req, 3) for b in broker_ids}

    def update_metadata(self, broker_ids, partitions, controller_epoch=None, extra_brokers=()):
        """UpdateMetadata v5 to each of broker_ids. partitions: {(topic, index):
        (leader, leader_epoch, replicas, isr)}; live brokers are self.brokers plus
        extra_brokers [(id, host, port)] (e.g. the fake controller listener)."""
        Q = m.UpdateMetadataRequest
        epoch = self.controller_epoch if controller_epoch is None else controller_epoch
        by_topic: dict[str, list] = {}
        for (topic, idx), (leader, le, replicas, isr) in sorted(partitions.items()):
            by_topic.setdefault(topic, []).append(Q.UpdateMetadataPartitionState(
                partition_index=idx, controller_epoch=epoch, leader=leader, leader_epoch=le, isr=list(isr),
                zk_version=self.partition_epochs.get((topic, idx), 0), replicas=list(replicas),
                offline_replicas=[r for r in replicas if r not in self.brokers]))
        live = [(bid, h, p) for bid, (h, p) in sorted(self.brokers.items())] + list(extra_brokers)
        req = Q(controller_id=self.controller_id, controller_epoch=epoch, broker_epoch=-1,
                topic_states=[Q.UpdateMetadataTopicState(topic_name=t, partition_states=ps)
                              for t, ps in by_topic.items()],
                live_brokers=[Q.UpdateMetadataBroker(id=bid, endpoints=[Q.UpdateMetadataEndpoint(
                    port=p, host=h, listener="PLAINTEXT", security_protocol=0)], rack=None)
                    for bid, h, p in live])
        return {b: self._send(b, req, 5) for b in broker_ids}

    def stop_replica(self, broker_ids, topic, partitions, delete=False, controller_epoch=None):
        Q = m.StopReplicaRequest
        epoch = self.controller_epoch if controller_epoch is None else controller_epoch
        req = Q(controller_id=self.controller_id, controller_epoch=epoch, broker_epoch=-1,
                delete_partitions=delete,
                topics=[Q.StopReplicaTopicV1(name=topic, partition_indexes=list(partitions))])
        return {b: self._send(b, req, 1) for b in broker_ids}


class FakeControllerListener:
    """A listening socket standing in for the controller (see the module doc)."""

    def __init__(self, answer: bool = True, controller_id: int = 100, controller_epoch: int = 1):
        self.answer = answer
        self.controller_id = controller_id
        # The epoch its registration and heartbeat answers carry (pylog's
        # tagged field): brokers admit a new controller epoch only when the
        # controller answers it (TestController keeps it at what it sends).
        self.controller_epoch = controller_epoch
        self.alter_requests: list = []   # (monotonic time, AlterPartitionRequest)
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._sock.getsockname()
        self._closed = False
        self._epochs: dict[tuple[str, int], int] = {}
        self._broker_epochs: dict[int, int] = {}
        self._incarnations: dict[int, object] = {}
        self._next_broker_epoch = 1000
        self._next_pid = 0
        threading.Thread(target=self._accept, daemon=True, name="fake-controller").start()

    def broker_config(self) -> dict[str, str]:
        """What makes a broker one of this controller's cluster."""
        return {"pylog.controller.id": str(self.controller_id),
                "pylog.controller.listener": f"{self.host}:{self.port}"}

    def broker_epoch(self, broker_id: int, timeout: float = 30.0) -> int:
        """The epoch the broker got when it last registered (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if broker_id in self._broker_epochs:
                    return self._broker_epochs[broker_id]
            time.sleep(0.02)
        raise AssertionError(f"broker {broker_id} never registered with the fake controller")

    def close(self):
        self._closed = True
        self._sock.close()

    def requests(self):
        with self._lock:
            return list(self.alter_requests)

    def wait_for(self, predicate, timeout: float = 10.0):
        """The first recorded AlterPartition request satisfying predicate, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _t, r in self.requests():
                if predicate(r):
                    return r
            time.sleep(0.05)
        return None

    def _accept(self):
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            while True:
                head = _recv_exactly(conn, 4)
                if head is None:
                    return
                frame = _recv_exactly(conn, _I32.unpack(head)[0])
                if frame is None:
                    return
                header, req = decode_request(frame)
                other = self._registration_api(req)
                if other is not None:
                    conn.sendall(encode_response(header.correlation_id, header.request_api_key,
                                                 header.request_api_version, other))
                    continue
                if header.request_api_key != m.AlterPartitionRequest.API_KEY:
                    return  # a fake: nothing else is served (the connection closes)
                with self._lock:
                    self.alter_requests.append((time.monotonic(), req))
                if not self.answer:
                    continue
                R = m.AlterPartitionResponse
                topics = []
                for t in req.topics:
                    parts = []
                    for p in t.partitions:
                        key = (t.topic_name, p.partition_index)
                        epoch = self._epochs[key] = max(self._epochs.get(key, 0), p.partition_epoch) + 1
                        parts.append(R.PartitionData(partition_index=p.partition_index, error_code=0,
                                                     leader_id=req.broker_id, leader_epoch=p.leader_epoch,
                                                     isr=list(p.new_isr), partition_epoch=epoch))
                    topics.append(R.TopicData(topic_name=t.topic_name, partitions=parts))
                conn.sendall(encode_response(header.correlation_id, header.request_api_key,
                                             header.request_api_version,
                                             R(throttle_time_ms=0, error_code=0, topics=topics)))


    def _registration_api(self, req):
        """The answer to a broker's registration-side request (as the embedded
        controller gives it), or None for another API."""
        if isinstance(req, m.ApiVersionsRequest):
            R = m.ApiVersionsResponse
            return R(error_code=0, throttle_time_ms=0, api_keys=[R.ApiVersion(k, lo, hi) for k, lo, hi in (
                (3, 0, 5), (7, 2, 2), (18, 0, 3), (56, 0, 0), (62, 0, 0), (63, 0, 0), (67, 0, 0))])
        if isinstance(req, m.BrokerRegistrationRequest):
            with self._lock:
                if self._incarnations.get(req.broker_id) != req.incarnation_id:
                    self._incarnations[req.broker_id] = req.incarnation_id
                    self._next_broker_epoch += 1
                    self._broker_epochs[req.broker_id] = self._next_broker_epoch
                epoch = self._broker_epochs[req.broker_id]
            return m.BrokerRegistrationResponse(throttle_time_ms=0, error_code=0, broker_epoch=epoch,
                                                _unknown_tagged_fields=[controller_epoch_field(self.controller_epoch)])
        if isinstance(req, m.BrokerHeartbeatRequest):
            with self._lock:
                ok = self._broker_epochs.get(req.broker_id) == req.broker_epoch
            return m.BrokerHeartbeatResponse(throttle_time_ms=0, error_code=0 if ok else 77, is_caught_up=ok,
                                             is_fenced=not ok, should_shut_down=bool(req.want_shut_down),
                                             _unknown_tagged_fields=[controller_epoch_field(self.controller_epoch)])
        if isinstance(req, m.MetadataRequest):
            return m.MetadataResponse(throttle_time_ms=0, brokers=[], cluster_id="fake-controller-cluster",
                                      controller_id=self.controller_id, topics=[])
        if isinstance(req, m.AllocateProducerIdsRequest):
            with self._lock:
                start, self._next_pid = self._next_pid, self._next_pid + 1000
            return m.AllocateProducerIdsResponse(throttle_time_ms=0, error_code=0, producer_id_start=start,
                                                 producer_id_len=1000)
        if isinstance(req, m.ControlledShutdownRequest):
            return m.ControlledShutdownResponse(error_code=0, remaining_partitions=[])
        return None


def _recv_exactly(conn, n):
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = conn.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
