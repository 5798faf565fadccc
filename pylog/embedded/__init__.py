"""Embedded mode: a broker's data directory used in-process, with no broker
(pylog.Producer / pylog.Consumer with log_dir=...)."""
from .store import LocalStore

__all__ = ["LocalStore"]
