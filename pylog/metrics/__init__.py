"""Prometheus metrics, named as the Prometheus JMX exporter names Kafka's
MBeans (README: "Metrics").

stats: the per-topic counters the broker's hot path increments (no
prometheus_client import: they exist whether or not metrics are exported).
requests: per-API request counts and times, when metrics are on.
broker: the broker's collector (gauges read from broker state at scrape time)
and the HTTP endpoint (pylog.metrics.listener).
clients: pylog's Producer and Consumer metrics (metrics_registry=).
"""
from __future__ import annotations

from ..errors import InvalidConfigError

LISTENER_KEY = "pylog.metrics.listener"


def parse_listener(text: str) -> tuple[str, int]:
    """(host, port) of a pylog.metrics.listener value "HOST:PORT" ("[v6]:PORT",
    ":PORT" for every interface, port 0 for an ephemeral one); raises
    InvalidConfigError."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidConfigError(f"{LISTENER_KEY}={text!r}: expected HOST:PORT (e.g. 0.0.0.0:9404)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def require_prometheus_client(what: str) -> None:
    """Raise InvalidConfigError naming how to install prometheus_client when
    it is missing: what asked for metrics is refused rather than ignored."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as e:
        raise InvalidConfigError(
            f"{what} needs the prometheus_client package, which is not installed ({e}): "
            f"pip install 'pylog[metrics]' (or pip install prometheus_client)") from None


def check_listener(text: str) -> None:
    """The broker config's check of pylog.metrics.listener: a valid HOST:PORT
    and prometheus_client importable."""
    parse_listener(text)
    require_prometheus_client(f"{LISTENER_KEY}={text}")
