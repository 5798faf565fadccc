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

__version__ = "0.1.0"
__all__ = ["Log", "Record", "crc32c", "errors", "PylogError", "CorruptRecordError",
           "OffsetOutOfRangeError", "__version__"]
