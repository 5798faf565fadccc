"""Record real Kafka clients' request frames (and the broker's responses) as golden files.

Two modes:

    python tests/protocol/golden/capture.py proxy --listen 127.0.0.1:19092 \\
        --upstream 127.0.0.1:9092 --out /tmp/raw
        A recording TCP proxy: every complete request frame a client sends and
        every response frame the upstream broker returns is written to --out as
        NNNN-<api_key>-<Api>-v<version>-request.bin / -response.bin (the whole
        frame, int32 size prefix included; a response gets the number of the
        request whose correlation id it carries), plus index.jsonl. Clients
        must reach the proxy for every connection, so the upstream broker has
        to advertise the proxy's address (advertised.listeners).

    python tests/protocol/golden/capture.py session {librdkafka,kafka-python,all} \\
        [--out tests/protocol/golden] [--raw DIR] [--port N]
        Starts an in-process pylog broker that advertises a recording proxy in
        front of it, runs a short scripted session of the client library
        (create topic, describe configs, produce keyed records with headers and
        fixed timestamps, fetch, list offsets, metadata, create partitions,
        delete records, delete topic), then keeps one request (and its
        response) per api key and version (Metadata: one each for all / no /
        listed topics) in OUT/<client>-<version>/, with a
        manifest.json describing each file.

The request files are the clients' own bytes, unmodified.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
TOPIC = "golden"
DOOMED = "golden-doomed"        # created and deleted again
TS0 = 1700000000000             # fixed record timestamps: TS0, TS0 + 1000, ...
RECORDS = [  # (partition, key, value, headers)
    (0, b"key-0", b"value-0", [("trace", b"t0"), ("source", b"golden")]),
    (0, b"key-1", b"value-1", [("trace", b"t1")]),
    (0, None, b"value-2 without key", []),
    (1, b"key-3", b"value-3", [("empty", b"")]),
]
RAW_NAME = re.compile(r"^(\d+)-(\d+)-([A-Za-z]+)-v(\d+)-(request|response)\.bin$")


def api_name(key: int) -> str:
    try:
        from pylog.protocol.messages import REQUESTS
        return REQUESTS[key].__name__.removesuffix("Request")
    except Exception:  # noqa: BLE001 - unknown key, or pylog not importable
        return "Unknown"


def parse_header(frame: bytes):
    """(api_key, api_version, correlation_id, client_id) read with struct only
    (independent of pylog's decoder, which the golden tests check)."""
    key, version, corr = struct.unpack_from(">hhi", frame, 0)
    client_id = None
    if len(frame) >= 10:
        (n,) = struct.unpack_from(">h", frame, 8)
        if n >= 0:
            client_id = frame[10:10 + n].decode("utf-8", "replace")
    return key, version, corr, client_id


# ---- the recording proxy ---------------------------------------------------------------

class Recorder:
    def __init__(self, out_dir: str):
        self.out = out_dir
        os.makedirs(out_dir, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = 0
        self._index = open(os.path.join(out_dir, "index.jsonl"), "a", encoding="utf-8")

    def request(self, conn_id: int, frame: bytes) -> tuple[int, int, int, int]:
        key, version, corr, client_id = parse_header(frame[4:])
        with self._lock:
            self._seq += 1
            seq = self._seq
            name = f"{seq:04d}-{key}-{api_name(key)}-v{version}-request.bin"
            with open(os.path.join(self.out, name), "wb") as f:
                f.write(frame)
            self._log(dict(seq=seq, conn=conn_id, dir="request", file=name, api_key=key, version=version,
                           correlation_id=corr, client_id=client_id, size=len(frame)))
        return seq, key, version, corr

    def response(self, conn_id: int, seq: int, key: int, version: int, frame: bytes):
        (corr,) = struct.unpack_from(">i", frame, 4)
        name = f"{seq:04d}-{key}-{api_name(key)}-v{version}-response.bin"
        with self._lock:
            with open(os.path.join(self.out, name), "wb") as f:
                f.write(frame)
            self._log(dict(seq=seq, conn=conn_id, dir="response", file=name, api_key=key, version=version,
                           correlation_id=corr, size=len(frame)))

    def unmatched(self, conn_id: int, frame: bytes):
        with self._lock:
            self._log(dict(conn=conn_id, dir="response", unmatched=True, size=len(frame)))

    def _log(self, entry):
        self._index.write(json.dumps(entry) + "\n")
        self._index.flush()

    def close(self):
        self._index.close()


def _read_frame(sock) -> bytes | None:
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    if size < 0 or size > 200 << 20:
        return None
    body = _read_exact(sock, size)
    return None if body is None else head + body


def _read_exact(sock, n) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Proxy:
    """Listen on `listen`, forward each connection to `upstream`, record frames."""

    def __init__(self, recorder: Recorder, listen=("127.0.0.1", 0), upstream=None):
        self.recorder = recorder
        self.upstream = upstream
        self.sock = socket.create_server(listen, reuse_port=False)
        self.port = self.sock.getsockname()[1]
        self._conn_ids = 0
        self._threads = []
        self._socks = []
        self._stopping = False

    def start(self):
        t = threading.Thread(target=self._accept_loop, name="golden-proxy", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept_loop(self):
        while not self._stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self._conn_ids += 1
            cid = self._conn_ids
            try:
                up = socket.create_connection(self.upstream, timeout=10)
                up.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socks += [client, up]
            pending = {}   # correlation id -> (seq, api_key, version)
            lock = threading.Lock()
            for target in (self._client_to_broker, self._broker_to_client):
                t = threading.Thread(target=target, args=(cid, client, up, pending, lock), daemon=True)
                t.start()
                self._threads.append(t)

    def _client_to_broker(self, cid, client, up, pending, lock):
        while True:
            frame = _read_frame(client)
            if frame is None:
                break
            seq, key, version, corr = self.recorder.request(cid, frame)
            with lock:
                pending[corr] = (seq, key, version)
            try:
                up.sendall(frame)
            except OSError:
                break
        _shutdown(up)

    def _broker_to_client(self, cid, client, up, pending, lock):
        while True:
            frame = _read_frame(up)
            if frame is None:
                break
            (corr,) = struct.unpack_from(">i", frame, 4)
            with lock:
                hit = pending.pop(corr, None)
            if hit is None:
                self.recorder.unmatched(cid, frame)
            else:
                self.recorder.response(cid, hit[0], hit[1], hit[2], frame)
            try:
                client.sendall(frame)
            except OSError:
                break
        _shutdown(client)

    def stop(self):
        self._stopping = True
        _shutdown(self.sock)   # wakes the accept() blocked in the accept thread
        self.sock.close()
        for s in self._socks:
            _shutdown(s)
            s.close()
        for t in self._threads:
            t.join(5)


def _shutdown(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# ---- scripted client sessions -------------------------------------------------------------

def session_librdkafka(bootstrap: str):
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

    common = {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}
    admin = AdminClient(dict(common))
    for f in admin.create_topics([NewTopic(TOPIC, 2, 1, config={"retention.ms": "604800000"}),
                                  NewTopic(DOOMED, 1, 1)], operation_timeout=10).values():
        f.result(10)
    for f in admin.describe_configs([ConfigResource("TOPIC", TOPIC)]).values():
        f.result(10)
    with warnings.catch_warnings():  # deprecated for incremental_alter_configs, which pylog lacks
        warnings.simplefilter("ignore", DeprecationWarning)
        futures = admin.alter_configs([ConfigResource("TOPIC", TOPIC, set_config={"retention.ms": "604800000"})])
    for f in futures.values():
        f.result(10)
    admin.list_topics(timeout=10)

    producer = ck.Producer(dict(common, **{"linger.ms": 0, "acks": "all", "enable.idempotence": False}))
    for i, (p, k, v, h) in enumerate(RECORDS):
        producer.produce(TOPIC, key=k, value=v, headers=h, partition=p, timestamp=TS0 + 1000 * i)
        producer.flush(10)   # one request per record batch, in order
    assert producer.flush(10) == 0

    consumer = ck.Consumer(dict(common, **{"group.id": "golden", "enable.auto.commit": False,
                                           "auto.offset.reset": "earliest"}))
    consumer.assign([ck.TopicPartition(TOPIC, 0, 0), ck.TopicPartition(TOPIC, 1, 0)])
    got = []
    deadline = time.monotonic() + 15
    while len(got) < len(RECORDS) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg)
    assert len(got) == len(RECORDS), f"consumed {len(got)} of {len(RECORDS)}"
    consumer.get_watermark_offsets(ck.TopicPartition(TOPIC, 0), timeout=10, cached=False)
    consumer.offsets_for_times([ck.TopicPartition(TOPIC, 0, TS0 + 500)], timeout=10)
    consumer.close()

    for f in admin.create_partitions([NewPartitions(TOPIC, 3)], operation_timeout=10).values():
        f.result(10)
    for f in admin.delete_records([ck.TopicPartition(TOPIC, 0, 1)], operation_timeout=10).values():
        f.result(10)
    for f in admin.list_offsets({ck.TopicPartition(TOPIC, 0): ck.admin.OffsetSpec.latest()}).values():
        f.result(10)
    for f in admin.delete_topics([DOOMED], operation_timeout=10).values():
        f.result(10)


def session_kafka_python(bootstrap: str):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(TOPIC, 2, 1, topic_configs={"retention.ms": "604800000"}),
                         NewTopic(DOOMED, 1, 1)], timeout_ms=10000)
    admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC,
                                        configs={"retention.ms": "604800000"})])
    admin.list_topics()
    admin.describe_topics([TOPIC])

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    for i, (p, k, v, h) in enumerate(RECORDS):
        producer.send(TOPIC, key=k, value=v, headers=h, partition=p, timestamp_ms=TS0 + 1000 * i).get(10)
    producer.flush(10)
    producer.close(10)

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    tps = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got = []
    deadline = time.monotonic() + 15
    while len(got) < len(RECORDS) and time.monotonic() < deadline:
        for recs in consumer.poll(500).values():
            got.extend(recs)
    assert len(got) == len(RECORDS), f"consumed {len(got)} of {len(RECORDS)}"
    consumer.end_offsets(tps)
    consumer.offsets_for_times({tps[0]: TS0 + 500})
    consumer.close()

    admin.create_partitions({TOPIC: NewPartitions(3)})
    admin.delete_records({TopicPartition(TOPIC, 0): 1})
    admin.delete_topics([DOOMED], timeout_ms=10000)
    admin.close()


def client_dirname(client: str) -> str:
    if client == "librdkafka":
        import confluent_kafka
        return f"librdkafka-{confluent_kafka.libversion()[0]}"
    import kafka
    return f"kafka-python-{kafka.__version__}"


SESSIONS = {"librdkafka": session_librdkafka, "kafka-python": session_kafka_python}


def run_session(client: str, raw_dir: str, port: int = 0):
    from pylog.testing import running_broker

    recorder = Recorder(raw_dir)
    proxy = Proxy(recorder, ("127.0.0.1", port))
    config = {
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}",
        "cluster.id": "golden-cluster-0000000",
        "num.partitions": 1,
    }
    try:
        with running_broker(config=config) as b:
            proxy.upstream = ("127.0.0.1", b.broker.port)
            proxy.start()
            SESSIONS[client](f"127.0.0.1:{proxy.port}")
            time.sleep(0.5)
    finally:
        proxy.stop()
        recorder.close()


def variant(path: str):
    """Requests of one api key and version worth keeping apart: Metadata for all
    topics (null), for none (empty) and for a list of topics."""
    with open(path, "rb") as f:
        frame = f.read()
    key = struct.unpack_from(">h", frame, 4)[0]
    if key != 3:
        return None
    from pylog.protocol.framing import decode_request
    topics = decode_request(frame[4:])[1].topics
    return "all" if topics is None else "none" if not topics else "list"


def curate(raw_dir: str, out_dir: str, client: str):
    """Keep the first request of each (api key, version[, variant]) and its response."""
    entries = [json.loads(line) for line in open(os.path.join(raw_dir, "index.jsonl"), encoding="utf-8")]
    requests = [e for e in entries if e["dir"] == "request"]
    responses = {e["seq"]: e for e in entries if e["dir"] == "response" and not e.get("unmatched")}
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    seen = set()
    manifest = []
    for e in sorted(requests, key=lambda e: e["seq"]):
        var = variant(os.path.join(raw_dir, e["file"]))
        kv = (e["api_key"], e["version"], var)
        if kv in seen:
            continue
        resp = responses.get(e["seq"])
        if resp is None and e["api_key"] != 0:
            continue   # the connection closed before an answer: not a golden pair
        seen.add(kv)
        n = len(manifest) + 1
        stem = f"{n:03d}-{e['api_key']}-{api_name(e['api_key'])}-v{e['version']}"
        item = dict(request=f"{stem}-request.bin", api_key=e["api_key"], api=api_name(e["api_key"]),
                    version=e["version"], variant=var, correlation_id=e["correlation_id"], client_id=e["client_id"],
                    response=None)
        shutil.copyfile(os.path.join(raw_dir, e["file"]), os.path.join(out_dir, item["request"]))
        if resp is not None:
            item["response"] = f"{stem}-response.bin"
            shutil.copyfile(os.path.join(raw_dir, resp["file"]), os.path.join(out_dir, item["response"]))
        manifest.append(item)
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump({"client": client, "files": manifest}, f, indent=1)
        f.write("\n")
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("proxy", help="a recording proxy in front of a running broker")
    p.add_argument("--listen", default="127.0.0.1:19092")
    p.add_argument("--upstream", required=True)
    p.add_argument("--out", required=True)
    s = sub.add_parser("session", help="run a scripted client session through the proxy and curate it")
    s.add_argument("client", choices=[*SESSIONS, "all"])
    s.add_argument("--out", default=HERE)
    s.add_argument("--raw", default=None, help="keep the raw capture here (default: a temp dir)")
    s.add_argument("--port", type=int, default=0,
                   help="the proxy's port (default: any free one); only Metadata responses carry it")
    args = ap.parse_args(argv)

    if args.mode == "proxy":
        host, port = args.listen.rsplit(":", 1)
        uhost, uport = args.upstream.rsplit(":", 1)
        rec = Recorder(args.out)
        proxy = Proxy(rec, (host, int(port)), (uhost, int(uport))).start()
        print(f"recording {args.listen} -> {args.upstream} into {args.out}; Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            proxy.stop()
            rec.close()
        return 0

    clients = list(SESSIONS) if args.client == "all" else [args.client]
    for client in clients:
        raw = os.path.join(args.raw, client) if args.raw else tempfile.mkdtemp(prefix=f"golden-{client}-")
        if os.path.isdir(raw):
            shutil.rmtree(raw)
        run_session(client, raw, args.port)
        out = os.path.join(args.out, client_dirname(client))
        manifest = curate(raw, out, client)
        print(f"{client}: kept {len(manifest)} request(s) in {out}")
        for item in manifest:
            print(f"  {item['request']}  client_id={item['client_id']!r}"
                  f"{'' if item['response'] else '  (no response)'}")
        if not args.raw:
            shutil.rmtree(raw, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
    sys.exit(main())
