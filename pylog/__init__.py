"""pylog: a log engine with a native core, and a Kafka-compatible broker."""
try:
    from . import _engine  # noqa: F401  (fails early, with the message below)
except ImportError as exc:  # pragma: no cover - the build is required, never optional
    raise ImportError(
        "pylog's native module pylog._engine is not built. Run `make build` (or "
        "`pip install -e .`) in the source tree; there is no pure-Python fallback."
    ) from exc

from . import errors
from ._engine import Record, crc32c
from .errors import CorruptRecordError, OffsetOutOfRangeError, PylogError
from .log.log import Log

from .structs import OffsetAndMetadata, RecordMetadata, TopicPartition

__version__ = "0.1.0"
__all__ = ["AcknowledgeType", "Consumer", "Log", "ShareConsumer", "OffsetAndMetadata", "Producer", "Record", "RecordMetadata",
           "TopicPartition", "aio", "crc32c", "errors", "PylogError", "CorruptRecordError",
           "OffsetOutOfRangeError", "__version__"]


def __getattr__(name):
    # The clients are imported on first use: `import pylog` for the log
    # library alone stays as quick as it was.
    if name == "Producer":
        from .producer import Producer
        return Producer
    if name == "Consumer":
        from .consumer import Consumer
        return Consumer
    if name in ("ShareConsumer", "AcknowledgeType"):
        from .consumer import share_consumer
        return getattr(share_consumer, name)
    if name == "aio":
        import importlib
        return importlib.import_module(".aio", __name__)
    raise AttributeError(f"module 'pylog' has no attribute {name!r}")
