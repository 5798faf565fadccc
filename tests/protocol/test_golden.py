"""Golden frames: real clients' request bytes, decoded and re-encoded.

tests/protocol/golden/<client>-<version>/ holds request frames recorded from
librdkafka (confluent-kafka) and kafka-python talking to a pylog broker
through a recording proxy (tests/protocol/golden/capture.py; see the README
there), and the broker's responses to them.

For every request: decode_request must read it completely, the header must say
what the file name and the proxy's own header parse (manifest.json) say, the
body must hold what the scripted session sent, and encode_request with the same
correlation id and client id must give back the client's exact bytes. That
last check holds for every captured request because the clients write the
canonical encoding: no tagged fields in any of them (the flexible ones,
ApiVersions v3/v4, carry empty tag sections) and Kafka's field order is fixed.

For every response (from pylog's own broker, so a weaker check): decode_response
reads it completely and encode_response gives back the same bytes.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import re

import pytest

from pylog import _engine
from pylog.protocol.framing import decode_request, decode_response, encode_request, encode_response
from pylog.protocol.messages import REQUESTS, RESPONSES

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
NAME = re.compile(r"^(\d{3})-(\d+)-([A-Za-z]+)-v(\d+)-(request|response)\.bin$")

_spec = importlib.util.spec_from_file_location("golden_capture", GOLDEN / "capture.py")
capture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(capture)


def _entries():
    out = []
    for d in sorted(p for p in GOLDEN.iterdir() if p.is_dir()):
        manifest = json.loads((d / "manifest.json").read_text())
        for item in manifest["files"]:
            out.append(pytest.param(d, item, id=f"{d.name}/{item['request'][:-12]}"))
    return out


ENTRIES = _entries()
CLIENT_DIRS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def _expected_client_id(client_dir: str, client_id: str) -> bool:
    if client_dir.startswith("librdkafka-"):
        return client_id == "rdkafka"                       # librdkafka's default client.id
    version = client_dir.removeprefix("kafka-python-")
    return client_id == f"kafka-python-{version}" or re.fullmatch(r"kafka-python-producer-\d+", client_id)


def test_golden_sets_present():
    assert any(d.startswith("librdkafka-") for d in CLIENT_DIRS)
    assert any(d.startswith("kafka-python-") for d in CLIENT_DIRS)
    total = sum(f.stat().st_size for f in GOLDEN.rglob("*") if f.is_file())
    assert total < 200_000


@pytest.mark.parametrize("client_dir", CLIENT_DIRS)
def test_manifest_matches_directory(client_dir):
    d = GOLDEN / client_dir
    manifest = json.loads((d / "manifest.json").read_text())
    named = {i["request"] for i in manifest["files"]} | {i["response"] for i in manifest["files"] if i["response"]}
    on_disk = {p.name for p in d.iterdir() if p.suffix == ".bin"}
    assert named == on_disk
    for name in on_disk:
        assert NAME.match(name), name
    keys = [(i["api_key"], i["version"]) for i in manifest["files"]]
    # The handshake comes first, and in the version each client is known to send.
    first = manifest["files"][0]
    assert (first["api_key"], first["version"]) == (18, 3 if client_dir.startswith("librdkafka-") else 4)
    # Every api the session exercises is there. kafka-python alters configs
    # with IncrementalAlterConfigs (44) once it takes the broker for 2.3+.
    alters = 33 if client_dir.startswith("librdkafka-") else 44
    assert {k for k, _ in keys} >= {18, 3, 19, 32, alters, 0, 1, 2, 37, 21, 20}
    # Metadata for all topics (null), for none (empty) and for a list.
    assert sorted(i["variant"] for i in manifest["files"] if i["api_key"] == 3) == ["all", "list", "none"]


@pytest.mark.parametrize("client_dir, item", ENTRIES)
def test_request_roundtrip(client_dir, item):
    frame = (client_dir / item["request"]).read_bytes()
    seq, key, api, version, kind = NAME.match(item["request"]).groups()
    key, version = int(key), int(version)
    assert kind == "request"
    assert (key, version) == (item["api_key"], item["version"])
    assert api == REQUESTS[key].__name__.removesuffix("Request") == item["api"]

    assert int.from_bytes(frame[:4], "big", signed=True) == len(frame) - 4
    header, body = decode_request(frame[4:])
    assert (header.request_api_key, header.request_api_version) == (key, version)
    assert header.correlation_id == item["correlation_id"]
    assert header.client_id == item["client_id"]
    assert _expected_client_id(client_dir.name, header.client_id), header.client_id

    again = encode_request(header.correlation_id, key, version, body, client_id=header.client_id)
    if key == 3 and item["variant"] == "all" and client_dir.name.startswith("librdkafka-") and version >= 9:
        # librdkafka #5049: the null topic array written as a 4-byte
        # placeholder; read as Kafka reads it (null, false, false, no tags),
        # the 3 bytes after the fields are left over (ignored, as framing says).
        assert len(frame) == len(again) + 3 and frame[4:len(again)] == again[4:], _first_difference(again, frame)
        assert frame[len(again):] == b"\x01\x00\x00"
    else:
        assert again == frame, _first_difference(again, frame)

    if key == 3:
        _metadata(client_dir.name, version, body, item["variant"])
    else:
        CHECKS[key](client_dir.name, version, body)


@pytest.mark.parametrize("client_dir, item", [e for e in ENTRIES if e.values[1]["response"]])
def test_response_roundtrip(client_dir, item):
    frame = (client_dir / item["response"]).read_bytes()
    key, version = item["api_key"], item["version"]
    assert item["response"] == item["request"].replace("-request.bin", "-response.bin")
    assert int.from_bytes(frame[:4], "big", signed=True) == len(frame) - 4
    header, body = decode_response(frame[4:], key, version)
    assert header.correlation_id == item["correlation_id"]
    assert type(body) is RESPONSES[key]
    again = encode_response(header.correlation_id, key, version, body)
    assert again == frame, _first_difference(again, frame)
    RESPONSE_CHECKS.get(key, _no_check)(client_dir.name, version, body)


def _first_difference(a: bytes, b: bytes) -> str:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"re-encoded {len(a)} bytes vs captured {len(b)}; first difference at byte {n}: " \
           f"{a[n:n + 16].hex()} vs {b[n:n + 16].hex()}"


# ---- what the scripted sessions (capture.py) sent ----------------------------------------

TOPIC, DOOMED, TS0, RECORDS = capture.TOPIC, capture.DOOMED, capture.TS0, capture.RECORDS
SOFTWARE_NAME = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def _api_versions(client, version, body):
    assert version in (3, 4)
    # Both must be valid per KIP-511, else Kafka answers INVALID_REQUEST.
    assert SOFTWARE_NAME.fullmatch(body.client_software_name)
    assert SOFTWARE_NAME.fullmatch(body.client_software_version)
    if client.startswith("librdkafka-"):
        assert body.client_software_name == "confluent-kafka-python"
        assert body.client_software_version.endswith("-rdkafka-" + client.removeprefix("librdkafka-"))
    else:
        assert (body.client_software_name, body.client_software_version) == \
            ("kafka-python", client.removeprefix("kafka-python-"))


def _metadata(client, version, body, variant):
    assert version == 12   # both clients' maximum is above the broker's 12
    assert variant == ("all" if body.topics is None else "list" if body.topics else "none")
    if body.topics is not None:
        assert {t.name for t in body.topics} <= {TOPIC, DOOMED}


def _create_topics(client, version, body):
    topics = {t.name: t for t in body.topics}
    assert set(topics) == {TOPIC, DOOMED}
    t = topics[TOPIC]
    assert (t.num_partitions, t.replication_factor, t.assignments) == (2, 1, [])
    assert [(c.name, c.value) for c in t.configs] == [("retention.ms", "604800000")]
    assert body.validate_only is False and body.timeout_ms == 10000


def _describe_configs(client, version, body):
    [r] = body.resources
    assert (r.resource_type, r.resource_name, r.configuration_keys) == (2, TOPIC, None)


def _alter_configs(client, version, body):
    [r] = body.resources
    assert (r.resource_type, r.resource_name) == (2, TOPIC)
    assert [(c.name, c.value) for c in r.configs] == [("retention.ms", "604800000")]


def _incremental_alter_configs(client, version, body):
    [r] = body.resources
    assert (r.resource_type, r.resource_name) == (2, TOPIC)
    assert [(c.name, c.config_operation, c.value) for c in r.configs] == [("retention.ms", 0, "604800000")]


def _find_coordinator(client, version, body):
    # librdkafka's consumer (it has a group.id) looks up its group's coordinator.
    assert body.key_type == 0 and body.key


def _init_producer_id(client, version, body):
    assert body.transactional_id is None
    assert (body.producer_id, body.producer_epoch) == (-1, -1)


def _records(data):
    """[(offset, timestamp, key, value, headers)] of whole batches, as bytes and lists."""
    def b(x):
        return None if x is None else bytes(x)
    return [(r.offset, r.timestamp, b(r.key), b(r.value), [(k, b(v)) for k, v in r.headers])
            for r in _engine.decode_batches(bytes(data))]


def _produce(client, version, body):
    assert body.acks == -1 and body.transactional_id is None
    [t] = body.topic_data
    [p] = t.partition_data
    assert t.name == TOPIC and p.index == RECORDS[0][0]
    # The first request carries the first record alone (the sessions wait
    # for each record to be acknowledged before sending the next).
    _, key, value, headers = RECORDS[0]
    assert _records(p.records) == [(0, TS0, key, value, headers)]
    [(pos, base_offset, *_)] = _engine.batch_headers(bytes(p.records))
    assert pos == 0 and base_offset == 0


def _fetch(client, version, body):
    assert body.replica_id == -1 and body.max_bytes > 0
    assert body.isolation_level == (1 if client.startswith("librdkafka-") else 0)  # rdkafka: read_committed
    [t] = body.topics
    if version >= 13:   # topics by id (the capture's topic id is random); no name on the wire
        assert t.topic == "" and t.topic_id.int != 0
    else:
        assert t.topic == TOPIC
    assert {p.partition for p in t.partitions} == {0, 1}
    assert all(p.fetch_offset == 0 for p in t.partitions)


def _list_offsets(client, version, body):
    assert body.replica_id == -1
    [t] = body.topics
    assert t.name == TOPIC
    assert all(p.timestamp in (-1, -2) or p.timestamp >= TS0 for p in t.partitions)


def _create_partitions(client, version, body):
    [t] = body.topics
    assert (t.name, t.count, t.assignments) == (TOPIC, 3, None)


def _delete_records(client, version, body):
    [t] = body.topics
    assert t.name == TOPIC
    assert [(p.partition_index, p.offset) for p in t.partitions] == [(0, 1)]


def _delete_topics(client, version, body):
    assert list(body.topic_names) == [DOOMED]


CHECKS = {18: _api_versions, 19: _create_topics, 32: _describe_configs, 33: _alter_configs,
          44: _incremental_alter_configs, 10: _find_coordinator,
          22: _init_producer_id, 0: _produce, 1: _fetch, 2: _list_offsets, 37: _create_partitions,
          21: _delete_records, 20: _delete_topics}


def _no_check(client, version, body):
    pass


def _api_versions_response(client, version, body):
    assert body.error_code == 0
    keys = {k.api_key: (k.min_version, k.max_version) for k in body.api_keys}
    assert keys[18][0] == 0 and keys[18][1] >= version


def _fetch_response(client, version, body):
    assert body.error_code == 0
    [t] = body.responses
    parts = {p.partition_index: p for p in t.partitions}
    assert set(parts) == {0, 1}
    got = []
    for idx, p in parts.items():
        assert p.error_code == 0 and p.preferred_read_replica == -1
        if p.records:
            got += [(idx, ts, k, v, h) for _, ts, k, v, h in _records(p.records)]
    # Everything produced, with the producers' timestamps, keys and headers.
    assert sorted(got, key=lambda r: r[1]) == [(p, TS0 + 1000 * i, k, v, h)
                                               for i, (p, k, v, h) in enumerate(RECORDS)]


def _errors_zero(client, version, body):
    codes = re.findall(r"error_code=(-?\d+)", repr(body))
    assert codes and set(codes) == {"0"}, repr(body)


RESPONSE_CHECKS = {18: _api_versions_response, 1: _fetch_response, 0: _errors_zero, 19: _errors_zero,
                   20: _errors_zero, 21: _errors_zero, 22: _errors_zero, 32: _errors_zero, 33: _errors_zero,
                   37: _errors_zero, 2: _errors_zero, 44: _errors_zero}
