"""The Kafka-protocol broker: `pylog broker`, or Broker(config) in-process."""
from .broker import Broker
from .config import BrokerConfig

__all__ = ["Broker", "BrokerConfig"]
