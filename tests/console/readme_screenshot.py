"""Make docs/console.png, the README's console screenshot: a broker with a
topic, a consumer group part-way through it, and that group's page in
headless Chromium.

    .venv/bin/python -m tests.console.readme_screenshot [docs/console.png]
"""
from __future__ import annotations

import json
import sys
import tempfile

import confluent_kafka

from pylog.console.server import ConsoleServer
from pylog.testing import FAST_GROUP_CONFIG, running_broker, wait_until

from .cdp import Browser


def main(out: str = "docs/console.png") -> None:
    with running_broker(config=FAST_GROUP_CONFIG) as broker:
        console = ConsoleServer(broker.bootstrap, "127.0.0.1", 0).start()
        from pylog.client import Client
        with Client(broker.bootstrap) as c:
            c.create_topics("orders", 4)
            c.wait_for_leaders("orders")
        p = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(400):
            p.produce("orders", key=f"customer-{i % 37}",
                      value=json.dumps({"order": i, "amount": i * 3 % 97}), headers={"source": "web"})
        p.flush(30)
        consumer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "billing",
                                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe(["orders"])
        got = []
        wait_until(lambda: got.extend(m for m in consumer.consume(50, 0.5) if not m.error()) or len(got) >= 250,
                   timeout=60, what="records")
        consumer.commit(asynchronous=False)
        browser = Browser(tempfile.mkdtemp())
        try:
            browser.call("Emulation.setDeviceMetricsOverride", width=1100, height=760, deviceScaleFactor=1,
                         mobile=False)
            browser.goto(console.url + "/groups/billing")
            data = browser.call("Page.captureScreenshot", format="png")["data"]
        finally:
            browser.close()
            consumer.close()
            console.stop()
    import base64
    with open(out, "wb") as f:
        f.write(base64.b64decode(data))
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
