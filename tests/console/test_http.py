"""Every console route over plain HTTP against a real broker: status codes,
what the pages say, and bad input answered with a 4xx page, not a crash."""
from __future__ import annotations

import html
import json
import re
import time

import confluent_kafka
import pytest

from pylog.client import Client
from pylog.testing import wait_until

from .conftest import group_part_way


def _notice(body: str) -> str:
    m = re.search(r'id="notice">([^<]*)<', body)
    return html.unescape(m.group(1)) if m else ""


def _error(body: str) -> str:
    m = re.search(r'id="error">([^<]*)<', body)
    return html.unescape(m.group(1)) if m else ""


def _lags(body: str) -> dict[str, str]:
    """{topic-partition: the LAG cell} of a group page's offsets table."""
    return dict(re.findall(r'<tr data-tp="([^"]+)">(?:(?!</tr>).)*?<td class="lag">([^<]*)</td>', body, re.S))


def test_cluster_page_names_the_broker_and_its_api_versions(kafka_broker, http):
    status, body, _ = http.get("/")
    assert status == 200
    host, port = kafka_broker.bootstrap.rsplit(":", 1)
    assert f"<td>{host}</td><td>{port}</td>" in body
    assert "controller" in body
    assert re.search(r"<td>Metadata</td><td>\d+–\d+</td>", body)
    assert re.search(r"<td>Produce</td><td>\d+–\d+</td>", body)


def test_create_topic_then_its_page_shows_partitions_and_configs(http):
    status, body, url = http.post("/topics", {"name": "orders", "partitions": "3", "replication": "",
                                              "configs": "retention.ms=3600000\ncleanup.policy=delete"})
    assert status == 200 and url.split("?")[0].endswith("/topics/orders"), (status, url)
    assert _notice(body) == "Created topic orders."
    rows = re.findall(r"<tr\s*>\s*<td><a href=\"/topics/orders/messages\?partition=(\d+)", body)
    assert rows == ["0", "1", "2"]
    assert re.search(r'data-config="retention.ms" class="override">.*?value="3600000"', body, re.S)
    status, body, _ = http.get("/topics")
    assert status == 200 and '<a href="/topics/orders">orders</a>' in body
    assert "__consumer_offsets" not in body or "internal" in body


@pytest.mark.parametrize("form, status, says", [
    ({"name": "", "partitions": "1"}, 400, "A topic needs a name."),
    ({"name": "x", "partitions": "many"}, 400, "Partitions must be a whole number"),
    ({"name": "x", "partitions": "1", "configs": "retention.ms"}, 400, "Config lines are key=value"),
    ({"name": "x", "partitions": "1", "configs": "no.such.key=1"}, 400, "INVALID_CONFIG"),
    ({"name": "bad name!", "partitions": "1"}, 400, "INVALID_TOPIC_EXCEPTION"),
])
def test_create_topic_refusals_are_400_pages(http, form, status, says):
    got, body, _ = http.post("/topics", form)
    assert got == status, body
    assert says in _error(body) or says in body


def test_existing_topic_is_refused(http):
    assert http.post("/topics", {"name": "twice", "partitions": "1"})[0] == 200
    status, body, _ = http.post("/topics", {"name": "twice", "partitions": "1"})
    assert status == 400 and "TOPIC_ALREADY_EXISTS" in body


def test_unknown_topic_and_page_are_404(http):
    for path in ("/topics/nope", "/topics/nope/messages", "/no/such/page"):
        status, body, _ = http.get(path)
        assert status == 404, path
        assert _error(body)
    status, body, _ = http.post("/topics/nope/messages", {"value": "v"})
    assert status == 404


def test_config_edit_sets_and_removes_an_override(kafka_broker, http):
    http.post("/topics", {"name": "cfg", "partitions": "1", "configs": "segment.ms=600000"})
    status, body, _ = http.post("/topics/cfg/config", {"key": "retention.ms", "value": "120000", "action": "set"})
    assert status == 200 and _notice(body) == "Set retention.ms=120000."
    with Client(kafka_broker.bootstrap) as c:
        # the other override is kept (AlterConfigs replaces the whole set)
        assert c.dynamic_configs("cfg") == {"segment.ms": "600000", "retention.ms": "120000"}
    status, body, _ = http.post("/topics/cfg/config", {"key": "retention.ms", "action": "delete"})
    assert status == 200
    with Client(kafka_broker.bootstrap) as c:
        assert c.dynamic_configs("cfg") == {"segment.ms": "600000"}
    status, body, _ = http.post("/topics/cfg/config", {"key": "retention.ms", "value": "soon", "action": "set"})
    assert status == 400 and "INVALID_CONFIG" in body


def test_produce_then_browse_by_offset_timestamp_and_key(http):
    http.post("/topics", {"name": "browse", "partitions": "2"})
    produced = []
    for i in range(6):
        value = json.dumps({"n": i, "tags": ["a", "b"]}) if i % 2 == 0 else f"plain {i}"
        status, body, url = http.post("/topics/browse/messages", {
            "partition": "1", "key": f"key-{i}", "value": value, "headers": f"trace: t{i}\nsource: console"})
        assert status == 200, body
        m = re.search(r"Produced to partition 1 at offset (\d+)\.", _notice(body))
        produced.append(int(m.group(1)))
        time.sleep(0.002)  # distinct timestamps for the search by time below
    assert produced == list(range(6))
    # By offset: the redirect after producing shows the record itself.
    assert 'data-partition="1" data-offset="5"' in body
    status, body, _ = http.get("/topics/browse/messages", partition="1", **{"from": "offset"}, offset="2", limit="2")
    assert status == 200
    assert re.findall(r'data-offset="(\d+)"', body) == ["2", "3"]
    # JSON values pretty-printed, headers shown.
    assert '<pre class="json">{\n  &#34;n&#34;: 2,' in body
    assert "<b>trace</b>: t2" in body and "<b>source</b>: console" in body
    # By timestamp: the first record at or after record 4's time.
    ts4 = int(re.search(r'data-offset="4">\s*<td>1</td><td>4</td>\s*<td title="CreateTime (\d+)"',
                        http.get("/topics/browse/messages", partition="1", **{"from": "earliest"})[1]).group(1))
    status, body, _ = http.get("/topics/browse/messages", partition="1", **{"from": "timestamp"},
                               timestamp=str(ts4))
    assert re.findall(r'data-offset="(\d+)"', body)[0] == "4"
    # Key search over every partition.
    status, body, _ = http.get("/topics/browse/messages", key="key-3", **{"from": "earliest"})
    assert re.findall(r'data-offset="(\d+)"', body) == ["3"]
    status, body, _ = http.get("/topics/browse/messages", key="nothing-like-it")
    assert "No messages here." in body


@pytest.mark.parametrize("query, says", [
    ({"from": "offset", "offset": "abc"}, "Offset must be a whole number"),
    ({"from": "offset", "offset": "-3"}, "Offset must be at least 0"),
    ({"from": "timestamp", "timestamp": "yesterday"}, "Timestamp 'yesterday' is neither"),
    ({"from": "sideways"}, "Start from 'earliest'"),
    ({"partition": "7"}, "has no partition 7"),
    ({"partition": "x"}, "Partition must be a whole number"),
    ({"limit": "0"}, "Limit must be at least 1"),
])
def test_bad_browse_input_is_a_400_message(http, query, says):
    http.post("/topics", {"name": "b400", "partitions": "1"})
    status, body, _ = http.get("/topics/b400/messages", **query)
    assert status == 400, body
    assert says in _error(body)


def test_bad_produce_input_is_a_400_message(http):
    http.post("/topics", {"name": "p400", "partitions": "1"})
    for form, says in [({"value": "v", "partition": "3"}, "has no partition 3"),
                       ({"value": "v", "headers": "no colon here"}, "Header lines are name: value")]:
        status, body, _ = http.post("/topics/p400/messages", form)
        assert status == 400 and says in _error(body), body


def test_group_page_shows_lag_and_reset_needs_an_empty_group(kafka_broker, http):
    http.post("/topics", {"name": "work", "partitions": "2"})
    c, expected = group_part_way(kafka_broker.bootstrap, "work", "workers", 20, **{"session.timeout.ms": 6000})
    try:
        status, body, _ = http.get("/groups")
        assert status == 200 and '<a href="/groups/workers">workers</a>' in body
        status, body, _ = http.get("/groups/workers")
        assert status == 200
        assert re.search(r'id="group-state">Stable<', body)
        assert _lags(body) == expected
        assert '<svg class="lag-chart"' in body
        assert all(f'data-partition="{tp}"' in body for tp in expected)
        assert 'id="reset-refused"' in body
        status, body, _ = http.post("/groups/workers/reset", {"topic": "work", "to": "earliest"})
        assert status == 409 and "no active" in _error(body)
    finally:
        c.close()
    wait_until(lambda: 'id="group-state">Empty<' in http.get("/groups/workers")[1], timeout=60,
               what="the group to be empty")
    status, body, _ = http.post("/groups/workers/reset", {"topic": "work", "to": "earliest"})
    assert status == 200 and _notice(body).startswith("Offsets reset (work-0: 0, work-1: 0)")
    assert _lags(body) == {"work-0": "10", "work-1": "10"}
    status, body, _ = http.post("/groups/workers/reset", {"topic": "work", "to": "offset", "offset": "4"})
    assert _lags(body) == {"work-0": "6", "work-1": "6"}
    for form, says in [({"to": "offset", "offset": "x"}, "Offset must be a whole number"),
                       ({"to": "nowhere"}, "Reset to 'earliest'"),
                       ({"to": "datetime", "datetime": "today"}, "Error parsing timestamp"),
                       ({"topic": "nope", "to": "earliest"}, "There is no topic 'nope'.")]:
        status, body, _ = http.post("/groups/workers/reset", form)
        assert status in (400, 404) and says in _error(body), (form, body)
    assert http.get("/groups/nobody")[0] == 404


def test_transactions_page_lists_a_transactional_producer(kafka_broker, http):
    http.post("/topics", {"name": "txn", "partitions": "1"})
    p = confluent_kafka.Producer({"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": "tx-1"})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce("txn", b"v")
    p.flush(30)
    status, body, _ = http.get("/transactions")
    assert status == 200
    row = re.search(r"<tr><td>tx-1</td>(.*?)</tr>", body, re.S)
    assert row and "Ongoing" in row.group(1) and "txn-0" in row.group(1), body
    p.commit_transaction(30)


def test_unreachable_cluster_is_a_503_page():
    from pylog.console.server import ConsoleServer
    from pylog.testing import free_port
    from .conftest import Http
    server = ConsoleServer(f"127.0.0.1:{free_port()}", "127.0.0.1", 0).start()
    try:
        status, body, _ = Http(server.url).get("/topics")
        assert status == 503 and "cannot be reached" in body
    finally:
        server.stop()


def test_a_huge_binary_value_is_cut_on_the_page_and_keys_pick_partitions(kafka_broker, http):
    from pylog.client.partitioner import partition_for_key
    http.post("/topics", {"name": "big", "partitions": "3"})
    p = confluent_kafka.Producer({"bootstrap.servers": kafka_broker.bootstrap, "message.max.bytes": 2000000})
    p.produce("big", value=b"\xff" + b"x" * 600000, partition=0)
    assert p.flush(30) == 0
    status, body, _ = http.get("/topics/big/messages", partition="0", **{"from": "earliest"})
    assert status == 200 and len(body) < 300000
    assert "<pre>\\xff" in body and "(600001 bytes in all)" in body
    status, body, _ = http.post("/topics/big/messages", {"key": "alice", "value": "v"})
    assert _notice(body) == f"Produced to partition {partition_for_key(b'alice', 3)} at offset " + \
        ("1." if partition_for_key(b"alice", 3) == 0 else "0.")


def test_a_form_posted_from_another_site_is_refused(kafka_broker, http):
    import urllib.request
    req = urllib.request.Request(http.base + "/topics", data=b"name=csrf&partitions=1", method="POST",
                                 headers={"Origin": "http://elsewhere.example"})
    status, body, _ = http._open(req)
    assert status == 403 and "another site" in _error(body)
    with Client(kafka_broker.bootstrap) as c:
        assert "csrf" not in c.metadata(None).topics
    # The console's own origin is accepted.
    req = urllib.request.Request(http.base + "/topics", data=b"name=same&partitions=1", method="POST",
                                 headers={"Origin": http.base})
    assert http._open(req)[0] == 200


def test_pages_reconnect_after_a_broker_restart(kafka_broker, http):
    assert http.post("/topics", {"name": "before", "partitions": "1"})[0] == 200
    assert http.get("/topics/before")[0] == 200   # the worker threads' clients are connected
    kafka_broker.restart()
    # Reads retry once on a fresh connection: no error page after the restart.
    for _ in range(3):
        status, body, _ = http.get("/topics/before")
        assert status == 200, body


def test_a_kip848_consumer_group_page_and_reset(kafka_broker, http):
    with Client(kafka_broker.bootstrap) as c:
        if 69 not in c.any_connection().api_versions:
            pytest.skip("this broker does not serve ConsumerGroupDescribe (KIP-848 consumer groups)")
    http.post("/topics", {"name": "modern", "partitions": "2"})
    c, expected = group_part_way(kafka_broker.bootstrap, "modern", "kip848", 20, **{"group.protocol": "consumer"})
    try:
        def stable():
            body = http.get("/groups/kip848")[1]
            return 'id="group-state">Stable<' in body and "modern-0, modern-1" in body and body
        body = wait_until(stable, timeout=60, what="the KIP-848 group stable with both partitions")
        assert "consumer (KIP-848)" in body
        assert _lags(body) == expected
        status, body, _ = http.post("/groups/kip848/reset", {"topic": "modern", "to": "earliest"})
        assert status == 409
    finally:
        c.close()
    wait_until(lambda: 'id="group-state">Empty<' in http.get("/groups/kip848")[1], timeout=60,
               what="the group to be empty")
    status, body, _ = http.post("/groups/kip848/reset", {"topic": "modern", "to": "earliest"})
    assert status == 200, body
    assert _lags(body) == {"modern-0": "10", "modern-1": "10"}
