# LogCore: the hot paths of pylog.log.Log (append, append_batch, read) and its
# lock, in native code so that one call costs one call. Everything else about
# the log (open, recovery, roll, retention, truncation) is Python in
# pylog/log/log.py, which subclasses this.
import io as _io_lc
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock,
                               PyThread_get_thread_ident, WAIT_LOCK)


@cython.final
cdef class RLock:
    """A re-entrant lock with threading.RLock's semantics, at a fraction of its
    cost on the per-record path.

    Every state change happens while holding the GIL, so taking a free lock is
    just setting _owner and _count: no OS lock, no clock read (CPython's
    non-blocking lock acquire reads the clock). An OS lock comes in only under
    contention: the first waiter takes it on the owner's behalf (_is_locked),
    then blocks on it without the GIL until the owner's last release frees it,
    and wakes as the new owner."""
    cdef PyThread_type_lock _real_lock
    cdef unsigned long _owner
    cdef long _count
    cdef long _pending
    cdef bint _is_locked

    def __cinit__(self):
        self._real_lock = PyThread_allocate_lock()
        if self._real_lock == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self._real_lock != NULL:
            PyThread_free_lock(self._real_lock)

    cdef inline int acquire_(self) except -1:
        cdef unsigned long me = PyThread_get_thread_ident()
        if self._count:
            if self._owner == me:
                self._count += 1
                return 0
        elif not self._pending:
            self._owner = me
            self._count = 1
            return 0
        return self._wait(me)

    cdef int _wait(self, unsigned long me) except -1:
        cdef int locked
        if not self._is_locked and not self._pending:
            # The owner took the lock without the OS lock: take it for them, so
            # their release is what wakes us.
            PyThread_acquire_lock(self._real_lock, WAIT_LOCK)
            self._is_locked = True
        self._pending += 1
        with nogil:
            locked = PyThread_acquire_lock(self._real_lock, WAIT_LOCK)
        self._pending -= 1
        self._is_locked = True
        self._owner = me
        self._count = 1
        return 0

    cdef inline int release_(self) except -1:
        if self._count == 0 or self._owner != PyThread_get_thread_ident():
            raise RuntimeError("cannot release an un-acquired lock")
        self._count -= 1
        if self._count == 0:
            self._owner = 0
            if self._is_locked:
                self._is_locked = False
                PyThread_release_lock(self._real_lock)
        return 0

    def try_acquire(self):
        """Take the lock if that needs no waiting (re-entrant): True when taken.
        The open-segment budget parks another log's segment only this way."""
        cdef unsigned long me = PyThread_get_thread_ident()
        if self._count:
            if self._owner != me:
                return False
            self._count += 1
            return True
        if self._pending:
            return False
        self._owner = me
        self._count = 1
        return True

    def release(self):
        self.release_()

    def __enter__(self):
        self.acquire_()
        return self

    def __exit__(self, *exc):
        self.release_()
        return False


cdef class LogCore:
    """State and hot paths shared with pylog.log.Log (see its docstring for the
    invariants). _segments is ordered by base offset; _bases mirrors their base
    offsets; the last segment is the active one. Every method holds _lock."""
    cdef public RLock _lock
    cdef public list _segments
    cdef public list _bases
    cdef public int64_t _log_start_offset
    cdef public bint _closed
    cdef public object flush_messages
    cdef public bint _read_only
    cdef public bint _pristine   # opened clean and unchanged since (see Log._leave_pristine)

    def __cinit__(self, *args, **kwargs):
        self._lock = RLock()
        self._segments = []
        self._bases = []
        self._closed = True
        self.flush_messages = None

    cdef inline Segment _active_for_append(self):
        if self._read_only or self._pristine:
            self._check_writable()
        return self._active()

    cdef inline Segment _active(self):
        if self._closed:
            raise _errors.LogClosedError(f"{self.path}: log is closed")
        cdef Segment seg = <Segment>PyList_GET_ITEM(self._segments, PyList_GET_SIZE(self._segments) - 1)
        seg._ensure_open()
        return seg

    cpdef Py_ssize_t _segment_index(self, int64_t offset):
        """Index in _segments of the segment whose range holds offset (the first
        one for offsets below it): a binary search over _bases."""
        cdef Py_ssize_t lo = 0, hi = PyList_GET_SIZE(self._bases) - 1, mid
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if <int64_t>(<object>PyList_GET_ITEM(self._bases, mid)) <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo if lo > 0 else 0

    cdef inline Segment _segment_for(self, int64_t offset):
        return <Segment>PyList_GET_ITEM(self._segments, self._segment_index(offset))

    @property
    def log_end_offset(self):
        """The offset the next appended record gets."""
        if PyList_GET_SIZE(self._segments) == 0:
            return self._log_start_offset
        cdef Segment seg = <Segment>PyList_GET_ITEM(self._segments, PyList_GET_SIZE(self._segments) - 1)
        seg._ensure_open()
        return pl_segment_next_offset(seg._s)

    def append(self, value, key=None, headers=None, timestamp=None):
        """Append one record; return its offset. headers: [(str, bytes or None)]."""
        cdef int64_t off
        cdef bint due = False, rolled = False
        self._lock.acquire_()
        try:
            off = self._active_for_append()._append_record(value, key, headers, timestamp)
            if off < 0:
                rolled = True
                off = (<Segment>self._roll())._append_record(value, key, headers, timestamp)
                if off < 0:
                    raise _errors.RecordTooLargeError("record does not fit an empty segment")
            if self.flush_messages is not None:
                due = self._after_append(1)
        finally:
            self._lock.release_()
        if rolled:  # the sealed segment is synced without the lock (Log._after_roll)
            self._after_roll()
        if due:  # flush.messages reached: fdatasync, without the lock
            self._flush_due()
        return off

    def append_batch(self, values, keys=None, headers=None, timestamps=None, compression=None):
        """Append values (with optional keys, per-record header lists and timestamps)
        as one record batch; return the first offset."""
        cdef int codec = 0 if compression is None else _codecs.codec_id(compression)
        cdef int64_t off
        cdef bint due = False, rolled = False
        self._lock.acquire_()
        try:
            off = self._active_for_append()._append_records(values, keys, headers, timestamps, codec)
            if off < 0:
                rolled = True
                off = (<Segment>self._roll())._append_records(values, keys, headers, timestamps, codec)
                if off < 0:
                    raise _errors.RecordTooLargeError("batch does not fit an empty segment")
            if self.flush_messages is not None:
                due = self._after_append(len(values))
        finally:
            self._lock.release_()
        if rolled:
            self._after_roll()
        if due:
            self._flush_due()
        return off

    def read(self, int64_t offset):
        """The record at offset. Its key and value are zero-copy views."""
        cdef Segment active
        self._lock.acquire_()
        try:
            active = self._active()
            if offset < self._log_start_offset or offset >= pl_segment_next_offset(active._s):
                raise _errors.OffsetOutOfRangeError(
                    f"offset {offset} is out of range [{self._log_start_offset}, "
                    f"{pl_segment_next_offset(active._s)})")
            return self._segment_for(offset)._read_record(offset)
        finally:
            self._lock.release_()
