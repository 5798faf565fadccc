"""BROKER_LOGGER config resources (ConfigResource type 8): Kafka's RuntimeLoggerManager and
LoggingController over Python's logging.

Each logger this process has made (logging's manager) is one config whose value is its
effective level in log4j's names (FATAL, ERROR, WARN, INFO, DEBUG, TRACE); the root logger is
"root", as Kafka keeps log4j 1's name. IncrementalAlterConfigs SET gives a logger a level,
DELETE takes its own level away (it inherits again); the change is this broker's alone and
lasts until it stops, as in Kafka (nothing is stored). The broker that gets the request
applies it; it is never forwarded.

Threads: the broker's event loop (logging's own lock guards the loggers).
"""
from __future__ import annotations

import logging

from ..errors import InvalidConfigError, InvalidRequestError
from ..protocol import messages as m

__all__ = ["apply_changes", "describe", "loggers"]

ROOT_LOGGER = "root"
TRACE = 5   # log4j's TRACE, below Python's DEBUG
_TO_PYTHON = {"FATAL": logging.CRITICAL, "ERROR": logging.ERROR, "WARN": logging.WARNING, "INFO": logging.INFO,
              "DEBUG": logging.DEBUG, "TRACE": TRACE}
VALID_LEVELS = ", ".join(sorted(_TO_PYTHON))
_SET, _DELETE, _APPEND, _SUBTRACT = 0, 1, 2, 3
_DYNAMIC_BROKER_LOGGER_CONFIG = 6


def _level_name(level: int) -> str:
    """A Python level in log4j's words: the nearest log4j level at or above it."""
    for name, value in sorted(_TO_PYTHON.items(), key=lambda kv: kv[1]):
        if level <= value:
            return name
    return "OFF"


def _logger(name: str) -> logging.Logger | None:
    if name == ROOT_LOGGER:
        return logging.getLogger()
    found = logging.Logger.manager.loggerDict.get(name)
    return found if isinstance(found, logging.Logger) else None


def loggers() -> dict[str, str]:
    """Every logger with its effective level (Kafka's LoggingController.loggers)."""
    out = {name: _level_name(lg.getEffectiveLevel()) for name, lg in list(logging.Logger.manager.loggerDict.items())
           if isinstance(lg, logging.Logger)}
    out[ROOT_LOGGER] = _level_name(logging.getLogger().getEffectiveLevel())
    return out


def _check_node(name: str, node_id: int, describing: bool) -> None:
    if describing and not name:
        raise InvalidRequestError("Broker id must not be empty")
    try:
        got = int(name)
    except ValueError:
        what = "Broker id" if describing else "Node id"
        raise InvalidRequestError(f"{what} must be an integer, but it is: {name}") from None
    if got != node_id:
        raise InvalidRequestError(f"Unexpected broker id, expected {node_id} but received {name}" if describing
                                  else f"Unexpected node id. Expected {node_id}, but received {got}")


def describe(name: str, node_id: int, keys) -> list:
    _check_node(name, node_id, describing=True)
    C = m.DescribeConfigsResponse.DescribeConfigsResourceResult
    return [C(name=k, value=v, read_only=False, is_default=False, config_source=_DYNAMIC_BROKER_LOGGER_CONFIG,
              is_sensitive=False, synonyms=[]) for k, v in sorted(loggers().items())
            if keys is None or k in keys]


def apply_changes(name: str, node_id: int, configs, validate_only: bool) -> None:
    """Kafka's RuntimeLoggerManager.applyChangesForResource: every op checked, then applied."""
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise InvalidRequestError("Error due to duplicate config keys")
    nulls = [c.name for c in configs if c.config_operation != _DELETE and c.value is None]
    if nulls:
        raise InvalidRequestError("Null value not supported for : " + ", ".join(nulls))
    _check_node(name, node_id, describing=False)
    for c in configs:
        op = c.config_operation
        if op in (_SET, _DELETE) and _logger(c.name) is None:
            raise InvalidConfigError(f"Logger {c.name} does not exist!")
        if op == _SET and c.value not in _TO_PYTHON:
            raise InvalidConfigError(f"Cannot set the log level of {c.name} to {c.value} as it is not a supported "
                                     f"log level. Valid log levels are {VALID_LEVELS}")
        if op == _DELETE and c.name == ROOT_LOGGER:
            raise InvalidRequestError(f"Removing the log level of the {ROOT_LOGGER} logger is not allowed")
        if op in (_APPEND, _SUBTRACT):
            raise InvalidRequestError(f"{'APPEND' if op == _APPEND else 'SUBTRACT'} operation is not allowed for "
                                      "the BROKER_LOGGER resource")
        if op not in (_SET, _DELETE, _APPEND, _SUBTRACT):
            raise InvalidRequestError(f"Unknown operation type {op} is not allowed for the BROKER_LOGGER resource")
    if validate_only:
        return
    log = logging.getLogger("pylog.broker")
    for c in configs:
        if c.config_operation == _SET:
            _logger(c.name).setLevel(_TO_PYTHON[c.value])
            log.warning("Updated the log level of %s to %s", c.name, c.value)
        else:
            _logger(c.name).setLevel(logging.NOTSET)
            log.warning("Unset the log level of %s", c.name)
