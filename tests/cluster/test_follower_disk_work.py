"""A follower's truncation never runs its file work on the broker's event loop
(issue 12, point 6): the leader-epoch-checkpoint write (an fsync), the log's
cut, the transaction index's and the producer state's rebuild run on the
LogManager's file thread, and so does the checkpoint write of the new leader
epoch the follower then copies. Real brokers on loopback (the replication
tests' cluster, the test as their controller); every fsync, fdatasync,
rename, replace, truncate and unlink made from Python, and every call of
Log.truncate_to, is recorded with the thread that made it."""
from __future__ import annotations

import os
import threading

from pylog.log.log import Log

from .test_replication import cluster, produce, publish, wait_until  # noqa: F401 -- cluster is a fixture


def _record(monkeypatch, calls, recording):
    for name in ("fsync", "fdatasync", "rename", "replace", "truncate", "ftruncate", "unlink", "remove"):
        real = getattr(os, name)

        def record(*args, _real=real, _name=name, **kwargs):
            if recording.is_set():
                calls.append((_name, threading.current_thread().name, str(args[0])))
            return _real(*args, **kwargs)
        monkeypatch.setattr(os, name, record)
    real_truncate = Log.truncate_to

    def truncate_to(self, offset):
        if recording.is_set():
            calls.append(("Log.truncate_to", threading.current_thread().name, offset))
        return real_truncate(self, offset)
    monkeypatch.setattr(Log, "truncate_to", truncate_to)


def test_a_follower_truncates_its_divergent_tail_off_the_loop(cluster, monkeypatch):
    calls = []
    recording = threading.Event()
    _record(monkeypatch, calls, recording)
    ctl, nodes, listener = cluster()
    nodes[3].stop()
    publish(ctl, listener, nodes, 1, 0, [1, 2], [1, 2])
    assert not produce(nodes[1].bootstrap, 100, prefix=b"common")[1]
    wait_until(lambda: nodes[2].state()[0] == 100, what="broker 2 caught up")
    # Broker 1 alone leads epoch 1 and takes 50 records there, then goes;
    # broker 2 leads epoch 2 with 30 others.
    nodes[2].stop()
    publish(ctl, listener, nodes, 1, 1, [1, 2], [1], to=[1])
    assert not produce(nodes[1].bootstrap, 50, prefix=b"divergent", acks="1")[1]
    nodes[1].stop()
    nodes[2].start()
    ctl.add_broker(2, "127.0.0.1", nodes[2].port)
    del ctl.brokers[1]
    publish(ctl, listener, nodes, 2, 2, [1, 2], [2], to=[2])
    assert not produce(nodes[2].bootstrap, 30, prefix=b"new-leader", acks="1")[1]
    nodes[1].start()
    ctl.add_broker(1, "127.0.0.1", nodes[1].port)
    recording.set()
    # Broker 1 follows: epoch 1 is unknown to the leader, which answers that
    # epoch 0 ends at 100, so broker 1 cuts its 50 records and its epoch 1
    # entry, then copies epoch 2.
    publish(ctl, listener, nodes, 2, 2, [1, 2], [2], to=[1])
    wait_until(lambda: nodes[1].state()[0] == 130 and nodes[1].state()[2] == 2, timeout=60,
               what="broker 1 caught up")
    epochs = nodes[1].broker.call(lambda: nodes[1].partition().epoch_cache.epoch_entries())
    recording.clear()
    assert epochs == [(0, 0), (2, 100)]
    assert nodes[1].log_bytes() == nodes[2].log_bytes()
    truncations = [c for c in calls if c[0] == "Log.truncate_to"]
    assert truncations and all(c[2] == 100 for c in truncations), calls
    on_loop = [c for c in calls if c[1].startswith("pylog-broker-")]
    assert on_loop == [], on_loop
    # The epoch file was written twice (epoch 1 cut, then epoch 2 added),
    # each time on the file thread.
    epoch_file = os.path.join(nodes[1].config["log.dirs"], "replicated-0", "leader-epoch-checkpoint")
    replaced = [c for c in calls if c[0] == "replace" and c[2] == epoch_file + ".tmp"]
    assert len(replaced) >= 2 and all(c[1].startswith("pylog-topic-files") for c in replaced), calls
    assert all(c[1].startswith("pylog-topic-files") for c in truncations)
