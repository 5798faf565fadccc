"""`pylog configs --entity-type brokers` as kafka-configs.sh: --alter with --entity-name (one
broker's dynamic configs) or --entity-default (the cluster's), --add-config / --delete-config,
--describe (with --all), each with kafka-configs.sh's lines, and the broker really changed."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pylog.testing import running_broker


@pytest.fixture
def broker(tmp_path):
    with running_broker(str(tmp_path / "d"), config={"log.retention.hours": "100"}) as b:
        yield b


def configs(broker, *args, rc=0):
    r = subprocess.run([sys.executable, "-m", "pylog", "configs", "--bootstrap-server", str(broker),
                        "--entity-type", "brokers", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == rc, (args, r.stdout, r.stderr)
    return r.stdout, r.stderr


def test_alter_and_describe_with_kafka_configs_lines(broker):
    out, _ = configs(broker, "--entity-default", "--alter", "--add-config", "log.retention.ms=70000,max.connections=900")
    assert out == "Completed updating default config for brokers in the cluster.\n"
    out, _ = configs(broker, "--entity-name", "1", "--alter", "--add-config", "log.retention.ms=60000")
    assert out == "Completed updating config for broker 1.\n"
    assert broker.broker.config.retention_ms() == 60000
    assert broker.broker.connection_quotas.max_connections == 900

    out, _ = configs(broker, "--entity-name", "1", "--describe")
    assert out.splitlines() == [
        "Dynamic configs for broker 1 are:",
        "  log.retention.ms=60000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=60000, "
        "DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=70000, STATIC_BROKER_CONFIG:log.retention.hours=100, "
        "DEFAULT_CONFIG:log.retention.hours=168}",
    ]
    out, _ = configs(broker, "--entity-default", "--describe")
    assert out.splitlines() == [
        "Default configs for brokers in the cluster are:",
        "  log.retention.ms=70000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=70000}",
        "  max.connections=900 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:max.connections=900}",
    ]
    # every broker, then the cluster default, as kafka-configs.sh lists them
    out, _ = configs(broker, "--describe")
    assert [x for x in out.splitlines() if not x.startswith("  ")] == [
        "Dynamic configs for broker 1 are:", "Default configs for brokers in the cluster are:"]

    out, _ = configs(broker, "--entity-name", "1", "--describe", "--all")
    lines = out.splitlines()
    assert lines[0] == "All configs for broker 1 are:"
    assert ("  max.connections=900 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:max.connections=900, "
            "DEFAULT_CONFIG:max.connections=2147483647}") in lines
    assert ("  log.retention.hours=100 sensitive=false synonyms={STATIC_BROKER_CONFIG:log.retention.hours=100, "
            "DEFAULT_CONFIG:log.retention.hours=168}") in lines
    assert "  log.retention.minutes=null sensitive=false synonyms={}" in lines

    out, _ = configs(broker, "--entity-name", "1", "--alter", "--delete-config", "log.retention.ms")
    assert out == "Completed updating config for broker 1.\n"
    assert broker.broker.config.retention_ms() == 70000
    out, _ = configs(broker, "--entity-name", "1", "--describe")
    assert out == "Dynamic configs for broker 1 are:\n"


def test_refusals(broker):
    _, err = configs(broker, "--entity-name", "1", "--alter", "--add-config", "log.retention.hours=1", rc=1)
    assert "INVALID_REQUEST" in err and "Cannot update these configs dynamically: [log.retention.hours]" in err
    _, err = configs(broker, "--entity-name", "1", "--alter", "--add-config", "num.io.threads=4", rc=1)
    assert "INVALID_CONFIG" in err and "num.io.threads" in err
    _, err = configs(broker, "--alter", "--add-config", "log.retention.ms=1", rc=1)
    assert "An entity-name or default entity must be specified with --alter of users, clients, brokers or ips" in err
    _, err = configs(broker, "--entity-name", "1", "--alter", rc=1)
    assert "At least one of --add-config, --add-config-file, or --delete-config must be specified with --alter" in err
    out, _ = configs(broker, "--entity-name", "9", "--describe")
    assert out == "The broker '9' doesn't exist and doesn't have dynamic config.\n"
    _, err = configs(broker, "--entity-name", "1", "--entity-default", "--describe", rc=1)
    assert "Only one of --entity-name or --entity-default" in err
    assert broker.broker.config.dynamic_broker == {} and broker.broker.config.dynamic_default == {}


def test_broker_loggers(broker):
    import logging
    logger = logging.getLogger("pylog.broker.handlers")
    before = logger.level
    try:
        out, _ = configs(broker, "--entity-type", "broker-loggers", "--entity-name", "1", "--alter",
                         "--add-config", "pylog.broker.handlers=DEBUG")
        assert out == "Completed updating config for broker-logger 1.\n"
        assert logger.level == logging.DEBUG
        out, _ = configs(broker, "--entity-type", "broker-loggers", "--entity-name", "1", "--describe")
        lines = out.splitlines()
        assert lines[0] == "Dynamic configs for broker-logger 1 are:"
        assert "  pylog.broker.handlers=DEBUG sensitive=false synonyms={}" in lines
        assert any(x.startswith("  root=") for x in lines)
        out, _ = configs(broker, "--entity-type", "broker-loggers", "--entity-name", "1", "--alter",
                         "--delete-config", "pylog.broker.handlers")
        assert logger.level == logging.NOTSET
        _, err = configs(broker, "--entity-type", "broker-loggers", "--entity-name", "1", "--alter",
                         "--add-config", "no.such.logger=INFO", rc=1)
        assert "Invalid broker logger(s): no.such.logger" in err
        _, err = configs(broker, "--entity-type", "broker-loggers", "--describe", rc=1)
        assert "An entity name must be specified with --describe of broker-loggers" in err
    finally:
        logger.setLevel(before)
