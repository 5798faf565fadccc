"""Coordinators over internal topics: the runtime they run on (runtime.py)
and the narrow interface to the partitions they write (writer.py)."""
from .runtime import CoordinatorRuntime, CoordinatorShard
from .writer import PartitionWriter

__all__ = ["CoordinatorRuntime", "CoordinatorShard", "PartitionWriter"]
