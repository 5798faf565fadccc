"""The console in a real browser: Debian's headless Chromium, driven over
the DevTools protocol (cdp.py), loads every page and walks the main flows
(create a topic, edit a config, produce, browse by offset, by timestamp
and by key, a confluent-kafka group's lag, a reset of its offsets) with
clicks and typing; a screenshot of each step is saved (conftest.ARTIFACTS)."""
from __future__ import annotations

from pylog.testing import wait_until

from .conftest import group_part_way


def test_every_page_loads_in_chromium(console, browser):
    for name, path, heading in [("cluster", "/", "Cluster"), ("topics", "/topics", "Topics"),
                                ("groups", "/groups", "Consumer groups"),
                                ("transactions", "/transactions", "Transactions")]:
        browser.goto(console.url + path)
        assert browser.text("h1") == heading
        browser.screenshot(name)
    browser.goto(console.url + "/topics/missing")
    assert browser.text("h1") == "Error 404"
    assert browser.text("#error") == "There is no topic 'missing'."
    browser.screenshot("unknown-topic")


def test_topic_flows_in_chromium(console, browser):
    b = browser
    b.goto(console.url + "/topics")
    b.fill("#create-topic input[name=name]", "payments")
    b.fill("#create-topic input[name=partitions]", "3")
    b.fill("#create-topic textarea[name=configs]", "retention.ms=7200000")
    b.screenshot("1-create-form")
    b.submit("#create-topic button")
    assert b.url.startswith(console.url + "/topics/payments")
    assert b.text("#notice") == "Created topic payments."
    assert b.texts("#partitions tbody tr td:first-child") == ["0", "1", "2"]
    assert b.eval("document.querySelector('tr[data-config=\"retention.ms\"] input[name=value]').value") == "7200000"
    b.screenshot("2-topic")

    # Edit a config in its row's form.
    row = 'tr[data-config="retention.ms"]'
    b.fill(f"{row} input[name=value]", "3600000")
    b.submit(f"{row} button[value=set]")
    assert b.text("#notice") == "Set retention.ms=3600000."
    assert b.eval(f"document.querySelector('{row} input[name=value]').value") == "3600000"
    # Back to the broker's default: the override removed.
    b.submit(f"{row} button[value=delete]")
    assert b.text("#notice") == "Removed the override of retention.ms."
    assert b.text(f"{row} td:nth-child(3)") == "default"
    assert b.eval(f"document.querySelector('{row} input[name=value]').value") == "604800000"

    # Produce three records to partition 1 through the form.
    b.click("a.button")  # "Browse messages"
    b.wait_for("location.pathname === '/topics/payments/messages' && document.readyState === 'complete'")
    for i, value in enumerate(['{"amount": 10, "currency": "EUR"}', "plain text", '{"amount": 30}']):
        b.fill("#produce input[name=partition]", "1")
        b.fill("#produce input[name=key]", f"customer-{i}")
        b.fill("#produce textarea[name=headers]", f"trace-id: t-{i}")
        b.fill("#produce textarea[name=value]", value)
        b.submit("#produce button")
        assert b.text("#notice") == f"Produced to partition 1 at offset {i}."
    b.screenshot("3-produced")

    # Browse to offset 0 of partition 1: the JSON value indented, its header shown.
    b.eval("document.querySelector('#browse select[name=partition]').value = '1'")
    b.eval("document.querySelector('#browse select[name=from]').value = 'offset'")
    b.fill("#browse input[name=offset]", "0")
    b.fill("#browse input[name=limit]", "1")
    b.submit("#browse button")
    rows = b.eval("Array.from(document.querySelectorAll('tr.message')).map(r => r.dataset.offset)")
    assert rows == ["0"]
    assert b.text("tr.message td.value pre.json") == '{\n  "amount": 10,\n  "currency": "EUR"\n}'
    assert b.text("tr.message td.headers") == "trace-id: t-0"
    assert b.text("tr.message td.key") == "customer-0"
    b.screenshot("4-by-offset")
    # Paging: newer, then older again.
    b.submit("#newer")
    assert b.eval("Array.from(document.querySelectorAll('tr.message')).map(r => r.dataset.offset)") == ["1"]
    b.submit("#older")
    assert b.eval("Array.from(document.querySelectorAll('tr.message')).map(r => r.dataset.offset)") == ["0"]
    assert b.eval("!document.querySelector('#older')")

    # By timestamp: record 2's own time finds record 2 first.
    b.goto(console.url + "/topics/payments/messages?partition=1&from=earliest")
    ts = b.eval("document.querySelector('tr.message[data-offset=\"2\"] td[title]').title.split(' ')[1]")
    b.eval("document.querySelector('#browse select[name=from]').value = 'timestamp'")
    b.fill("#browse input[name=timestamp]", ts)
    b.fill("#browse input[name=limit]", "5")
    b.submit("#browse button")
    offsets = b.eval("Array.from(document.querySelectorAll('tr.message')).map(r => r.dataset.offset)")
    assert offsets[0] == "2", offsets
    b.screenshot("5-by-timestamp")

    # Key search across partitions.
    b.eval("document.querySelector('#browse select[name=partition]').value = 'all'")
    b.eval("document.querySelector('#browse select[name=from]').value = 'latest'")
    b.fill("#browse input[name=key]", "customer-1")
    b.submit("#browse button")
    assert b.texts("tr.message td.key") == ["customer-1"]
    assert b.text("tr.message td.value") == "plain text"
    b.screenshot("6-key-search")

    # A bad offset is a message on a 400 page, not a crash.
    b.goto(console.url + "/topics/payments/messages?from=offset&offset=abc")
    assert b.text("h1") == "Error 400"
    assert "Offset must be a whole number" in b.text("#error")


def test_group_lag_and_reset_in_chromium(kafka_broker, console, browser):
    b = browser
    admin_topic = "events"
    b.goto(console.url + "/topics")
    b.fill("#create-topic input[name=name]", admin_topic)
    b.fill("#create-topic input[name=partitions]", "2")
    b.submit("#create-topic button")
    c, lags = group_part_way(kafka_broker.bootstrap, admin_topic, "readers", 40, **{"session.timeout.ms": 6000})
    try:
        b.goto(console.url + "/groups")
        b.submit('a[href="/groups/readers"]')
        assert b.text("#group-state") == "Stable"
        assert b.text("#total-lag") == str(sum(int(v) for v in lags.values() if v != "-"))
        assert b.eval("document.querySelectorAll('svg.lag-chart g.lag-bar').length") >= 1
        assert b.text("#members tbody") != "No active members."
        assert "only while the group has no active members" in b.text("#reset-refused")
        b.screenshot("1-group-stable")
    finally:
        c.close()

    def empty():
        b.goto(console.url + "/groups/readers")
        return b.text("#group-state") == "Empty"
    wait_until(empty, timeout=60, what="the group to be empty")
    b.eval("document.querySelector('#reset select[name=topic]').value = 'events'")
    b.eval("document.querySelector('#reset select[name=to]').value = 'earliest'")
    b.submit("#reset button")
    assert b.text("#notice") == "Offsets reset (events-0: 0, events-1: 0)."
    assert b.text("#total-lag") == "40"
    assert b.eval("Array.from(document.querySelectorAll('svg.lag-chart g.lag-bar'))"
                  ".map(g => g.dataset.lag)") == ["20", "20"]
    b.screenshot("2-group-reset")
