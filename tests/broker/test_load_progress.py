"""A broker's start-up reports how far it got loading (and recovering) its
logs, by bytes, while that takes long (issue 20: "log recovery of a large data
dir at start-up logs percent done"). The interval is set to zero here so that
a small data dir reports too; the lines' numbers are checked against the
segments on disk."""
from __future__ import annotations

import logging
import os
import re

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.broker import log_manager
from pylog.testing import running_broker

LINE = re.compile(r"(loading|loaded) logs in (\S+): (\d+)% done \((\d+)/(\d+) partitions, (\d+) of (\d+) bytes\)")


def test_start_up_reports_percent_done(tmp_path, caplog, monkeypatch):
    data = tmp_path / "data"
    with running_broker(data) as b:
        admin = AdminClient({"bootstrap.servers": str(b)})   # kept alive until the result is in
        admin.create_topics([NewTopic("big", 4, 1)])["big"].result(20)
        p = confluent_kafka.Producer({"bootstrap.servers": str(b), "linger.ms": 5})
        for i in range(4000):
            p.produce("big", b"x" * 100, partition=i % 4)
        assert p.flush(30) == 0
    total = sum(e.stat().st_size for d in os.scandir(data) if d.is_dir()
                for e in os.scandir(d.path) if e.name.endswith(".log"))
    monkeypatch.setattr(log_manager, "LOAD_PROGRESS_INTERVAL_S", 0.0)
    with caplog.at_level(logging.INFO, logger="pylog.broker"):
        with running_broker(data):
            pass
    found = [LINE.search(r.getMessage()) for r in caplog.records]
    found = [m for m in found if m]
    assert found, [r.getMessage() for r in caplog.records]
    assert all(int(m.group(7)) == total for m in found)
    done = [int(m.group(6)) for m in found]
    assert done == sorted(done) and found[-1].group(1) == "loaded"
    assert (found[-1].group(3), found[-1].group(4), found[-1].group(6)) == ("100", found[-1].group(5), str(total))
