# The single place where the engine's PL_E* codes become pylog.errors exceptions.
from libc.errno cimport errno
import os as _os
from pylog import errors as _errors

_ERROR_CLASSES = {
    PL_EIO: _errors.StorageError,
    PL_ENOSPC: _errors.DiskFullError,
    PL_ENOMEM: MemoryError,
    PL_ECORRUPT: _errors.CorruptRecordError,
    PL_ETRUNCATED: _errors.CorruptRecordError,
    PL_EMAGIC: _errors.CorruptRecordError,
    PL_ERANGE: _errors.OffsetOutOfRangeError,
    PL_EINVAL: ValueError,
    PL_EFULL: _errors.StorageError,
    PL_EOVERFLOW: _errors.StorageError,
    PL_EBUSY: BufferError,
    PL_ECLOSED: _errors.LogClosedError,
    PL_ELOCKED: _errors.LogLockedError,
    PL_EINVALREC: _errors.InvalidRecordError,
    PL_EINVALTS: _errors.InvalidTimestampError,
    PL_ECODEC: _errors.UnsupportedCompressionError,
}


cdef object _error_for(int rc, object where, object position, int saved_errno):
    cls = _ERROR_CLASSES.get(rc, _errors.PylogError)
    msg = pl_strerror(rc).decode()
    if where is not None:
        msg = f"{where}: {msg}"
    if position is not None:
        msg = f"{msg} (position {position})"
    if rc == PL_EIO or rc == PL_ENOSPC:
        if saved_errno:
            msg = f"{msg}: {_os.strerror(saved_errno)}"
        return cls(msg, errno=saved_errno or None)
    if cls is _errors.CorruptRecordError:
        return cls(msg, path=where, position=position)
    return cls(msg)


cdef int check(int rc, object where=None, object position=None) except -1:
    """Raise the exception for rc (errno read at once, before anything can change it)."""
    if rc == PL_OK:
        return 0
    cdef int saved = errno
    raise _error_for(rc, where, position, saved)


def strerror(int rc):
    return pl_strerror(rc).decode()


def debug_counters():
    """Native resources opened and closed so far (non-zero only in PYLOG_DEBUG builds)."""
    cdef pl_debug_counters c
    pl_debug_get_counters(&c)
    return {"maps_opened": c.maps_opened, "maps_closed": c.maps_closed,
            "fds_opened": c.fds_opened, "fds_closed": c.fds_closed}
