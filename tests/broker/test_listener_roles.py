"""inter.broker.listener.name and control.plane.listener.name, Kafka's keys:
pylog binds one listener, so it honours an inter-broker listener that is that
listener, and refuses at startup (as Kafka refuses a bad listener config) what
it cannot honour, instead of accepting the key and ignoring it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pylog.broker.config import BrokerConfig
from pylog.errors import InvalidConfigError
from pylog.testing import running_broker


def test_the_inter_broker_listener_may_name_the_one_listener(tmp_path):
    with running_broker(data_dir=str(tmp_path / "d"), config={
            "listeners": "INTERNAL://127.0.0.1:0", "inter.broker.listener.name": "internal"}) as b:
        assert b.broker.config.get("inter.broker.listener.name") == "internal"


@pytest.mark.parametrize("props, words", [
    # not a listener at all (Kafka's own rule and message)
    ({"inter.broker.listener.name": "INTERNAL"}, "must be a listener name defined in advertised.listeners"),
    # a second listener pylog would not bind
    ({"listeners": "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0", "inter.broker.listener.name": "INTERNAL"},
     "binds only one listener"),
    # Kafka: must differ from the inter-broker listener
    ({"control.plane.listener.name": "PLAINTEXT"}, "should have a different value from the inter broker"),
    # a listener of its own: a second one
    ({"listeners": "PLAINTEXT://127.0.0.1:0,CONTROL://127.0.0.1:0", "control.plane.listener.name": "CONTROL"},
     "must be a listener of its own"),
])
def test_listener_roles_pylog_cannot_honour_are_refused_at_startup(props, words):
    with pytest.raises(InvalidConfigError, match=words):
        BrokerConfig(props)


def test_the_broker_command_refuses_a_control_plane_listener(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pylog", "broker", "--data-dir", str(tmp_path / "d"), "--port", "0",
                        "--override", "control.plane.listener.name=CONTROL"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "control.plane.listener.name" in r.stderr and "Traceback" not in r.stderr
