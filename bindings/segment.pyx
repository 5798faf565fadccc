# Segment: one .log with its .index and .timeindex (engine/segment.c), plus the
# read paths that must stay in native code: record lookup, batch decoding and
# zero-copy slices. Not thread-safe: pylog.log.Log serialises every call.
import os as _os_seg
import weakref as _weakref_seg

cdef int64_t _INT64_MAX = 0x7FFFFFFFFFFFFFFF
# Batches with fewer records are decoded on each read instead of cached.
cdef int32_t _CACHE_MIN_RECORDS = 16

import logging as _logging_seg
_seg_log = _logging_seg.getLogger("pylog.log")


@cython.final
cdef class _SegmentBudget:
    """How many segments may have their files open at once, process-wide (each
    costs three descriptors and three mappings); all logs share it, so many
    segments can never run the process out of descriptors.

    Sealed segments owned by a Log wait in a ring; when opening one more would
    pass the limit, a CLOCK sweep closes ("parks") the least recently used: a
    segment used since the last sweep gets a second chance. A parked segment
    reopens by itself on its next use. Active segments and segments with live
    views (pins) are never parked, so the limit can be passed while views are
    alive; their closing is deferred to a later sweep.

    Thread-safety: the GIL plus each segment's owner lock, taken without
    waiting (a busy owner's segments are skipped, never waited for)."""
    cdef public Py_ssize_t limit
    cdef public Py_ssize_t open_count
    cdef public Py_ssize_t parked_total
    cdef list _ring
    cdef Py_ssize_t _hand
    cdef bint _sweeping

    def __cinit__(self):
        self.limit = 0
        self.open_count = 0
        self.parked_total = 0
        self._ring = []
        self._hand = 0
        self._sweeping = False

    cdef int make_room(self, Segment keep) except -1:
        if self.limit <= 0:
            self.limit = default_segment_limit()
        if self.open_count < self.limit or self._sweeping:
            # (A sweep is already under way in another thread that let the GIL
            # go, to log: the limit is soft, this opening goes ahead.)
            return 0
        self._sweeping = True
        try:
            self._sweep(keep)
        finally:
            self._sweeping = False
        return 0

    cdef int _sweep(self, Segment keep) except -1:
        cdef list ring = self._ring
        cdef Py_ssize_t steps = 0, max_steps = 2 * len(ring) + 1
        cdef Segment seg
        cdef bint drop
        while self.open_count >= self.limit and ring and steps < max_steps:
            steps += 1
            if self._hand >= len(ring):
                self._hand = 0
            obj = ring[self._hand]()
            drop = obj is None or (<Segment>obj)._s == NULL or not (<Segment>obj)._sealed \
                or (<Segment>obj)._closing
            if not drop:
                seg = <Segment>obj
                if seg is keep or seg._ref:
                    seg._ref = False
                    self._hand += 1
                    continue
                drop = seg._try_park()
                if not drop:
                    self._hand += 1
                    continue
            if obj is not None:
                (<Segment>obj)._in_ring = False
            if self._hand < len(ring):
                ring[self._hand] = ring[len(ring) - 1]
                ring.pop()
        return 0

    cdef void join(self, Segment seg):
        if not seg._in_ring and seg._owner_lock is not None:
            seg._in_ring = True
            self._ring.append(seg._weakself)


cdef _SegmentBudget _BUDGET = _SegmentBudget()


def default_segment_limit():
    """The open-segment limit the current RLIMIT_NOFILE allows: half of the soft
    limit for segment files (three per segment; the rest is for sockets and
    everything else), and at most a third of vm.max_map_count's half, as each
    open segment also maps three files."""
    import resource
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 1 << 20
    limit = soft // 2 // 3
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            limit = min(limit, int(f.read()) // 2 // 3)
    except (OSError, ValueError):
        pass
    return max(8, limit)


def open_segments():
    """(segments with open files, the limit) of this process's segment budget."""
    if _BUDGET.limit <= 0:
        _BUDGET.limit = default_segment_limit()
    return _BUDGET.open_count, _BUDGET.limit


def set_open_segment_limit(limit=None):
    """Set the open-segment limit (None: derive it from the current RLIMIT_NOFILE,
    e.g. after raising that). Takes effect at the next segment opening."""
    if limit is None:
        limit = default_segment_limit()
    if limit < 1:
        raise ValueError("the open-segment limit must be at least 1")
    _BUDGET.limit = limit


@cython.final
cdef class FetchSlice:
    """Bytes [position, position + length) of a segment's .log, exported as a
    read-only buffer without copying. While a FetchSlice (or any memoryview made
    from it) is alive the segment is pinned: truncation below its end raises
    BufferError, and close leaves the mapping (and the descriptor) to the last view.
    A broker can also hand (fileno(), position, length) to os.sendfile."""
    cdef readonly Segment segment
    cdef readonly int64_t position
    cdef readonly int64_t length
    cdef const uint8_t *ptr

    def __len__(self):
        return self.length

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        PyBuffer_FillInfo(buffer, self, <void *>self.ptr, self.length, 1, flags)

    def __releasebuffer__(self, Py_buffer *buffer):
        pass

    def __dealloc__(self):
        if self.segment is not None:
            self.segment._unpin()

    def fileno(self):
        """The segment's own .log descriptor (valid while this slice lives: it
        pins the segment open). Not to be closed by the caller."""
        return self.segment._fd()

    def __repr__(self):
        return f"FetchSlice({self.segment.path!r}, position={self.position}, length={self.length})"


cdef FetchSlice _slice(Segment seg, int64_t position, int64_t length):
    cdef const uint8_t *p
    check(pl_segment_bytes(seg._s, position, length, &p), seg.path, position)
    cdef FetchSlice fs = FetchSlice.__new__(FetchSlice)
    fs.segment = seg
    fs.position = position
    fs.length = length
    fs.ptr = p
    pl_segment_pin_range(seg._s, position + length)
    return fs


@cython.final
cdef class IndexView:
    """The valid entries of a segment's .index or .timeindex as a read-only buffer
    (big-endian, Kafka's layout); numpy.frombuffer turns it into an array. Pins
    the segment like a FetchSlice."""
    cdef readonly Segment segment
    cdef const uint8_t *ptr
    cdef Py_ssize_t nbytes

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        PyBuffer_FillInfo(buffer, self, <void *>self.ptr, self.nbytes, 1, flags)

    def __releasebuffer__(self, Py_buffer *buffer):
        pass

    def __dealloc__(self):
        if self.segment is not None:
            self.segment._unpin()


cdef int _prepare_batches(uint8_t *buf, const uint8_t *src, Py_ssize_t n, int64_t next_offset,
                          int32_t leader_epoch, bint allow_control, bint assign_offsets,
                          pl_batches_info *info, bint crc_checked=False) noexcept nogil:
    """Copy src into buf (unless the batches are appended in place: src NULL),
    then validate them and assign offsets, or only validate (a follower's)."""
    if src != NULL:
        memcpy(buf, src, <size_t>n)
    if assign_offsets:
        return pl_batches_assign_offsets_crc(buf, <size_t>n, next_offset, leader_epoch, allow_control,
                                             not crc_checked, info)
    pl_batches_scan(buf, <size_t>n, 1, info)
    return PL_OK


cdef class Segment:
    """One segment. Invariants (checked in C): synced_size <= size; offsets of
    stored batches increase; index entries stay below next_offset.

    Thread-safety: none; the owning Log holds its lock around every call.
    """
    cdef pl_segment *_s
    cdef readonly str path
    cdef readonly int64_t base_offset
    cdef readonly int64_t segment_bytes
    cdef readonly int64_t segment_ms
    cdef int32_t _leader_epoch
    cdef _Scratch _scratch
    cdef dict _cache          # position -> _DecodedBatch, oldest first
    cdef list _by_slot        # offset-index entry -> the same _DecodedBatch, or None
    cdef int64_t _cache_records
    cdef int64_t _cache_limit
    cdef int64_t _max_inflated  # the most a stored compressed batch may inflate to when read
    # Reopening a parked segment (see _SegmentBudget):
    cdef pl_segment_config _cfg
    cdef bytes _lp, _ip, _tp
    cdef bint _parked          # files closed to save descriptors; reopened on use
    cdef bint _sealed
    cdef bint _ref             # used since the budget's last sweep
    cdef bint _in_ring
    cdef bint _closing         # closed while views were alive: unmapped by the last one
    cdef int _holds            # fdatasyncs under way outside the owner's lock (sync_begin)
    cdef bint _index_dirty     # sealed, its indexes not yet made durable since
    cdef object _owner_lock    # the owning Log's lock; None: never parked
    cdef object _weakself
    cdef object __weakref__
    # Facts kept while parked; -2: not known (ask the files).
    cdef int64_t _p_next_offset, _p_size, _p_max_ts, _p_first_ts

    def __cinit__(self, str directory, int64_t base_offset, *, int64_t segment_bytes=1 << 30,
                  int64_t segment_ms=-1, int64_t index_max_bytes=10 * 1024 * 1024,
                  int32_t index_interval_bytes=4096, int32_t write_buffer_bytes=0,
                  int64_t reserve_bytes=-1, bint writable=True, bint sealed=False,
                  int64_t cache_records=1 << 22,
                  int32_t leader_epoch=-1, owner_lock=None, bint defer=False,
                  int64_t next_offset=-1, int64_t size=-1, int64_t max_inflated=-1):
        """defer (sealed segments of a Log only): open nothing now; next_offset
        and size are taken as given and the files open on first use, checked
        then (pl_segment_load, recovered when that fails)."""
        cdef pl_segment_config cfg
        name = f"{base_offset:020d}"
        self.path = _os_seg.path.join(directory, name + ".log")
        self.base_offset = base_offset
        self.segment_bytes = segment_bytes
        self.segment_ms = segment_ms
        self._leader_epoch = leader_epoch
        self._scratch = _Scratch()
        self._cache = {}
        self._by_slot = []
        self._cache_records = 0
        self._cache_limit = cache_records
        self._max_inflated = max_inflated
        cfg.base_offset = base_offset
        # Reserve address space for a full segment plus one large batch, so the
        # mapping (and every view into it) never has to move while it fills.
        cfg.reserve_bytes = reserve_bytes if reserve_bytes >= 0 else min(segment_bytes + (1 << 20), 0x7FFFFFFF)
        cfg.index_max_bytes = index_max_bytes
        cfg.index_interval_bytes = index_interval_bytes
        cfg.write_buffer_bytes = write_buffer_bytes
        cfg.writable = writable
        cfg.sealed = sealed
        self._lp = _os_seg.fsencode(self.path)
        self._ip = _os_seg.fsencode(_os_seg.path.join(directory, name + ".index"))
        self._tp = _os_seg.fsencode(_os_seg.path.join(directory, name + ".timeindex"))
        self._cfg = cfg
        self._sealed = sealed
        self._owner_lock = owner_lock
        self._weakself = _weakref_seg.ref(self)
        self._p_max_ts = self._p_first_ts = -2
        if defer:
            if not sealed or owner_lock is None or next_offset < base_offset or size < 0:
                raise ValueError("only a Log's sealed segment of known next_offset and size is deferred")
            self._parked = True
            self._p_next_offset = next_offset
            self._p_size = size
            return
        self._open_files()

    cdef int _open_files(self) except -1:
        _BUDGET.make_room(self)
        check(pl_segment_open(&self._s, self._lp, self._ip, self._tp, &self._cfg), self.path)
        _BUDGET.open_count += 1
        self._ref = True
        if self._sealed:
            _BUDGET.join(self)
        return 0

    def __dealloc__(self):
        if self._s != NULL:
            # Only reached when the owner forgot close(); views hold a reference,
            # so none can be alive here.
            pl_segment_close(self._s, 0)
            self._s = NULL
            _BUDGET.open_count -= 1

    cdef inline int _ensure_open(self) except -1:
        if self._s == NULL or self._closing:
            if self._parked:
                return self._unpark()
            raise _errors.LogClosedError(f"{self.path}: segment is closed")
        self._ref = True
        return 0

    cdef int _unpark(self) except -1:
        cdef pl_segment_info info
        cdef int rc
        self._cfg.sealed = 1
        self._open_files()
        rc = pl_segment_load(self._s, &info)
        if rc == PL_ECORRUPT:
            _seg_log.warning("%s: index or tail fails its check on reopening; recovering the segment",
                             self.path)
            with nogil:
                rc = pl_segment_recover(self._s, &info)
            if rc == PL_OK:
                rc = pl_segment_sync(self._s)
            if rc == PL_OK and info.next_offset != self._p_next_offset:
                _seg_log.error("%s: recovered up to offset %d, but the next segment starts at %d "
                               "(data below the recovery point was damaged)",
                               self.path, info.next_offset, self._p_next_offset)
        if rc != PL_OK:
            pl_segment_close(self._s, 0)
            self._s = NULL
            _BUDGET.open_count -= 1
            check(rc, self.path)
        self._parked = False
        return 0

    cdef bint _try_park(self):
        """Close the files of this sealed segment if nobody is using it; False
        when its owner is busy or views are alive."""
        lock = self._owner_lock
        if lock is None or not lock.try_acquire():
            return False
        cdef int rc
        try:
            if self._s == NULL or not self._sealed:
                return False
            self._drop_cache()
            if pl_segment_pins(self._s) > 0 or self._holds > 0:
                return False
            self._p_next_offset = pl_segment_next_offset(self._s)
            self._p_size = pl_segment_size(self._s)
            self._p_max_ts = pl_segment_max_timestamp(self._s)
            self._p_first_ts = pl_segment_first_batch_timestamp(self._s)
            # A sealed segment is synced by its Log after the roll (or was
            # recovered and synced); whatever is still unsynced is made durable
            # before its descriptors go, indexes too.
            rc = PL_OK
            if self._index_dirty:
                rc = pl_segment_sync(self._s)
            elif pl_segment_synced_size(self._s) < pl_segment_size(self._s):
                rc = pl_segment_sync_data(self._s)
            if rc != PL_OK:
                return False
            self._index_dirty = False
            rc = pl_segment_close(self._s, 0)
            self._s = NULL
            self._parked = True
            _BUDGET.open_count -= 1
            _BUDGET.parked_total += 1
            if rc != PL_OK:
                _seg_log.warning("%s: closing the parked segment's files: %s", self.path,
                                 pl_strerror(rc).decode())
            return True
        finally:
            lock.release()

    cdef int _fd(self) except -1:
        self._ensure_open()
        return pl_segment_log_fd(self._s)

    # ---- lifecycle ----

    def close(self, bint trim=True):
        """Flush buffered bytes, trim the indexes, unmap. While views are alive the
        file work is done now and the unmap waits for the last view (which keeps
        reading valid bytes until then); the segment counts as closed at once."""
        if self._s == NULL or self._closing:
            self._parked = False
            return
        self._drop_cache()
        if pl_segment_pins(self._s) > 0 or self._holds > 0:
            check(pl_segment_detach(self._s, trim), self.path)
            self._closing = True
            return
        check(pl_segment_flush_buffer(self._s), self.path)
        cdef int rc = pl_segment_close(self._s, trim)
        self._s = NULL
        _BUDGET.open_count -= 1
        check(rc, self.path)

    cdef void _unpin(self):
        # Called by each view as it goes (GIL held; a view may go on any thread,
        # after its Log released the segment, so this takes no lock).
        if self._s == NULL:
            return
        pl_segment_unpin(self._s)
        self._finish_close()

    cdef void _finish_close(self):
        cdef int rc
        if self._closing and pl_segment_pins(self._s) == 0 and self._holds == 0:
            rc = pl_segment_close(self._s, 0)
            self._s = NULL
            self._closing = False
            _BUDGET.open_count -= 1
            if rc != PL_OK:
                _seg_log.warning("%s: closing the segment after its last view: %s", self.path,
                                 pl_strerror(rc).decode())

    @property
    def closed(self):
        """Closed for good (a parked segment is not: it reopens on use). A closed
        segment whose views are alive keeps its mapping until the last one goes."""
        return (self._s == NULL and not self._parked) or self._closing

    @property
    def parked(self):
        """Its files are closed for the open-segment budget until the next use."""
        return self._parked

    def load(self):
        """Trusting open; returns (ok, next_offset). ok is False when the indexes or
        the tail need a recovery."""
        self._ensure_open()
        cdef pl_segment_info info
        cdef int rc = pl_segment_load(self._s, &info)
        if rc == PL_ECORRUPT:
            return False, info.next_offset
        check(rc, self.path)
        return True, info.next_offset

    def recover(self):
        """Check every batch, rebuild the indexes, cut at the first bad batch.
        Returns (valid_bytes, truncated_bytes, batches, next_offset, reason or None)."""
        self._ensure_open()
        self._drop_cache()
        cdef pl_segment_info info
        cdef int rc
        with nogil:
            rc = pl_segment_recover(self._s, &info)
        check(rc, self.path)
        reason = None if info.stop_rc == PL_OK else pl_strerror(info.stop_rc).decode()
        return info.size, info.truncated_bytes, info.batches, info.next_offset, reason

    def refresh(self, bint from_start=False, bint drop_indexes=False):
        """A read-only segment takes the whole batches another process appended
        since (see pl_segment_refresh); returns next_offset."""
        self._ensure_open()
        cdef pl_segment_info info
        check(pl_segment_refresh(self._s, from_start, drop_indexes, &info), self.path)
        return info.next_offset

    def flush_buffer(self):
        self._ensure_open()
        check(pl_segment_flush_buffer(self._s), self.path)

    def sync(self, bint indexes=True):
        """Buffered bytes to the OS, then fdatasync (without the GIL), and msync of
        the indexes unless indexes is False. A parked segment was synced before
        its files closed: nothing to do."""
        if self._parked:
            return
        self._ensure_open()
        cdef int rc
        with nogil:
            rc = pl_segment_sync(self._s) if indexes else pl_segment_sync_data(self._s)
        check(rc, self.path)
        if indexes:
            self._index_dirty = False

    def sync_begin(self, bint indexes=False):
        """(fd, upto, index_fds): the .log's descriptor and the size to make
        durable with an fdatasync outside the owner's lock, buffered bytes
        pushed to the OS first (fd -1: nothing to sync), and with indexes, the
        descriptors of a sealed segment's index files to fsync when they were
        not made durable since it was sealed (else ()). Unless there is nothing
        to do, the segment stays held (its descriptors open, even if it is
        closed meanwhile) until sync_end."""
        cdef int fd, ofd, tfd
        cdef int64_t upto
        if self._parked or self._s == NULL or self._closing:
            return -1, 0, ()
        check(pl_segment_sync_begin(self._s, &fd, &upto), self.path)
        if fd < 0 or upto <= pl_segment_synced_size(self._s):
            fd, upto = -1, 0
        index_fds = ()
        if indexes and self._index_dirty and self._sealed:
            pl_segment_index_fds(self._s, &ofd, &tfd)
            index_fds = (ofd, tfd)
        if fd < 0 and not index_fds:
            return -1, 0, ()
        # Not a view (truncation may go on): only keeps the descriptors open.
        self._holds += 1
        return fd, upto, index_fds

    def sync_end(self, int64_t upto, bint synced, bint indexes_synced=False):
        """After the syncs of sync_begin (synced: they succeeded;
        indexes_synced: its index descriptors were fsync'd and the segment was
        not changed meanwhile), under the owner's lock."""
        if synced and self._s != NULL and not self._closing:
            if upto > 0:
                pl_segment_sync_done(self._s, upto)
            if indexes_synced and self._sealed:
                self._index_dirty = False
        self._holds -= 1
        if self._s != NULL:
            self._finish_close()

    def seal(self):
        if self._parked:
            return  # only sealed segments are parked
        self._ensure_open()
        check(pl_segment_seal(self._s), self.path)
        if not self._sealed and self._cfg.writable:
            self._index_dirty = True
        self._sealed = True
        _BUDGET.join(self)

    def unseal(self):
        self._ensure_open()
        cdef int rc = pl_segment_unseal(self._s)
        if rc == PL_EBUSY:
            raise BufferError(f"{self.path}: an index view (Log.index_arrays) is still alive")
        check(rc, self.path)
        self._sealed = False

    def truncate_to(self, int64_t offset):
        """Cut at the start of the batch holding offset; return the new next_offset."""
        self._ensure_open()
        self._drop_cache()
        cdef int64_t cut
        cdef int rc = pl_segment_truncate_to(self._s, offset, &cut)
        if rc == PL_EBUSY:
            raise BufferError(f"{self.path}: cannot truncate to offset {offset}: a record or slice "
                              "view of the data past that point is still alive; release it (or "
                              "copy with bytes()) first")
        check(rc, self.path)
        return cut

    # ---- facts ----

    @property
    def size(self):
        if self._parked:
            return self._p_size
        self._ensure_open()
        return pl_segment_size(self._s)

    @property
    def synced_size(self):
        if self._parked:
            return self._p_size
        self._ensure_open()
        return pl_segment_synced_size(self._s)

    @property
    def next_offset(self):
        if self._parked:
            return self._p_next_offset
        self._ensure_open()
        return pl_segment_next_offset(self._s)

    @property
    def max_timestamp(self):
        if self._parked and self._p_max_ts != -2:
            return self._p_max_ts
        self._ensure_open()
        return pl_segment_max_timestamp(self._s)

    @property
    def first_batch_timestamp(self):
        if self._parked and self._p_first_ts != -2:
            return self._p_first_ts
        self._ensure_open()
        return pl_segment_first_batch_timestamp(self._s)

    @property
    def pins(self):
        """Live views of this segment, not counting the read cache's own (which
        is dropped whenever the segment must change)."""
        if self._s == NULL:
            return 0
        self._drop_cache()
        return pl_segment_pins(self._s)

    @property
    def index_entries(self):
        self._ensure_open()
        return (pl_index_entries(pl_segment_offset_index(self._s)),
                pl_index_entries(pl_segment_time_index(self._s)))

    def index_view(self, bint time=False):
        """IndexView over the offset index (or the time index)."""
        self._ensure_open()
        cdef const pl_index *ix = pl_segment_time_index(self._s) if time else pl_segment_offset_index(self._s)
        cdef IndexView v = IndexView.__new__(IndexView)
        v.segment = self
        v.ptr = pl_index_data(ix)
        v.nbytes = pl_index_entries(ix) * (PL_TIME_ENTRY_SIZE if time else PL_OFFSET_ENTRY_SIZE)
        pl_segment_pin(self._s)
        return v

    # ---- appends ----

    cdef inline bint _must_roll(self, Py_ssize_t n, int64_t largest, int64_t ts):
        cdef int64_t size = pl_segment_size(self._s), first
        if size == 0:
            return False  # an empty segment takes any batch (C remaps when needed)
        if size + n > self.segment_bytes:
            return True
        if self.segment_ms >= 0:
            first = pl_segment_first_batch_timestamp(self._s)
            if first >= 0 and ts - first > self.segment_ms:
                return True
        return pl_segment_can_append(self._s, <size_t>n, largest) != PL_OK

    cdef int64_t _append_scratch(self, Py_ssize_t n, int32_t count, int64_t max_ts) except -2:
        cdef int64_t base = pl_segment_next_offset(self._s)
        cdef int64_t last = base + count - 1
        if self._must_roll(n, last, max_ts):
            return -1
        pl_batch_set_base_offset(self._scratch.buf, base)
        check(pl_segment_append(self._s, self._scratch.buf, <size_t>n, last, max_ts, last), self.path)
        return base

    cdef int64_t _append_record(self, value, key, headers, timestamp) except -2:
        self._ensure_open()
        cdef int64_t ts
        cdef Py_ssize_t n = build_one(self._scratch, value, key, headers, timestamp, self._leader_epoch, &ts)
        return self._append_scratch(n, 1, ts)

    cdef int64_t _append_records(self, values, keys, headers, timestamps, int codec) except -2:
        self._ensure_open()
        cdef int64_t max_ts
        cdef Py_ssize_t n = build_batch(self._scratch, values, keys, headers, timestamps, codec,
                                        self._leader_epoch, &max_ts)
        return self._append_scratch(n, <int32_t>len(values), max_ts)

    def append_record(self, value, key=None, headers=None, timestamp=None):
        """Append one record as one batch; its offset, or -1 when the segment must roll first."""
        return self._append_record(value, key, headers, timestamp)

    def append_records(self, values, keys=None, headers=None, timestamps=None, int codec=0):
        """Append one batch of records; its first offset, or -1 when the segment must roll first."""
        return self._append_records(values, keys, headers, timestamps, codec)

    def append_batches(self, data, int32_t leader_epoch=-1, bint assign_offsets=True,
                       bint allow_control=False, bint in_place=False, bint crc_checked=False):
        """Append whole v2 batches received as bytes: validated (CRC and all), given
        offsets from next_offset on and stamped with leader_epoch (as a leader does),
        or kept as they are (assign_offsets=False, as a follower does).
        in_place: data is a writable buffer the caller no longer needs; offsets and
        epoch are patched into it instead of into a copy (the broker's receive buffer).
        crc_checked: validate_produce has just checked the CRC of these very bytes.
        Returns (first_offset, last_offset), or None when the segment must roll first."""
        self._ensure_open()
        cdef const uint8_t[::1] view
        cdef uint8_t[::1] wview
        cdef Py_ssize_t n
        cdef pl_batches_info info
        cdef uint8_t *buf
        cdef const uint8_t *src = NULL
        cdef int rc = PL_OK
        cdef int64_t next_offset = pl_segment_next_offset(self._s)
        cdef bint big
        if in_place:
            wview = data
            n = wview.shape[0]
            if n == 0:
                raise ValueError("no batches")
            buf = &wview[0]
        else:
            view = data
            n = view.shape[0]
            if n == 0:
                raise ValueError("no batches")
            buf = self._scratch.reserve(n)
            src = &view[0]
        # Large appends copy, CRC-check and write without the GIL, so another
        # thread (an embedded producer's caller encoding the next batch) runs
        # meanwhile. The Log's lock keeps every other user of this segment
        # out; small appends keep the GIL (releasing it costs more than they do).
        big = n >= 65536
        if big:
            with nogil:
                rc = _prepare_batches(buf, src, n, next_offset, leader_epoch, allow_control,
                                      assign_offsets, &info, crc_checked)
        else:
            rc = _prepare_batches(buf, src, n, next_offset, leader_epoch, allow_control,
                                  assign_offsets, &info, crc_checked)
        if assign_offsets:
            if rc != PL_OK:
                check(rc, "record batches", info.valid_bytes)
        else:
            if info.stop_rc != PL_OK:
                check(info.stop_rc, "record batches", info.valid_bytes)
            if info.first_offset < next_offset:
                raise ValueError(f"batches start at {info.first_offset}, below next offset "
                                 f"{next_offset}")
        if self._must_roll(n, info.last_offset, info.max_timestamp):
            return None
        if big:
            with nogil:
                rc = pl_segment_append(self._s, buf, <size_t>n, info.last_offset,
                                       info.max_timestamp, info.offset_of_max_timestamp)
        else:
            rc = pl_segment_append(self._s, buf, <size_t>n, info.last_offset, info.max_timestamp,
                                   info.offset_of_max_timestamp)
        check(rc, self.path)
        return info.first_offset, info.last_offset

    # ---- reads ----

    cdef void _drop_cache(self):
        self._cache.clear()
        self._by_slot = []
        self._cache_records = 0

    cdef _DecodedBatch _decoded(self, int64_t position, pl_batch_header *h):
        """The batch at position, checked and located, from the cache when there.
        The cache holds a pin on each batch it keeps: it is dropped before any
        truncate or close."""
        cdef _DecodedBatch b = self._cache.get(position)
        if b is not None:
            return b
        cdef int64_t total = h.batch_length + PL_BATCH_LOG_OVERHEAD
        cdef FetchSlice fs = _slice(self, position, total)
        b = decode_batch(fs, fs.ptr, total, self.path, position, h.records_count >= _CACHE_MIN_RECORDS,
                         self._max_inflated)
        # Small batches decode faster than a cache lookup pays for, and a cache of
        # many tiny entries only feeds the cyclic GC: keep only batches worth it.
        if b.count < _CACHE_MIN_RECORDS or b.count > self._cache_limit:
            return b
        while self._cache_records + b.count > self._cache_limit and self._cache:
            # Evict the oldest entry (dicts keep insertion order).
            old = <_DecodedBatch>self._cache.pop(next(iter(self._cache)))
            self._cache_records -= old.count
            if old.slot >= 0:
                self._by_slot[old.slot] = None
        self._cache[position] = b
        self._cache_records += b.count
        return b

    def read_record(self, int64_t offset):
        """The Record at offset (OffsetOutOfRangeError when it is not here)."""
        return self._read_record(offset)

    cdef Record _read_record(self, int64_t offset):
        self._ensure_open()
        cdef int64_t position, off, next_off, next_pos, slot
        cdef PyObject *item
        cdef pl_batch_header h
        cdef _DecodedBatch b
        cdef int rc
        # Fast path: the index's next entry names the batch holding offset and the
        # batch is decoded in the cache, so no byte of the .log is touched before
        # the record itself (each header read is a cache miss on random reads),
        # and the entry's number finds the batch without hashing.
        pl_offset_index_lookup2(pl_segment_offset_index(self._s), offset, &off, &position,
                                &next_off, &next_pos, &slot)
        if next_off >= offset and offset < pl_segment_next_offset(self._s):
            b = None
            if slot < PyList_GET_SIZE(self._by_slot):
                item = PyList_GET_ITEM(self._by_slot, slot)
                if item != <PyObject *>None:
                    b = <_DecodedBatch>item
            if b is None:
                b = self._cache.get(next_pos)
                if b is not None and b.base_offset <= offset <= b.last_offset:
                    self._remember_slot(b, slot)
            if b is not None and b.starts != NULL and b.base_offset <= offset <= b.last_offset:
                return self._record_in(b, offset)
        rc = pl_segment_find_batch(self._s, offset, &position, &h)
        if rc != PL_OK:
            if rc == PL_ERANGE:
                raise _errors.OffsetOutOfRangeError(f"offset {offset} is not in segment {self.path}")
            check(rc, self.path)
        if offset < h.base_offset:
            raise _errors.OffsetOutOfRangeError(f"offset {offset} is not stored (compacted away)")
        b = self._decoded(position, &h)
        if position == next_pos and next_off >= offset and self._cache.get(position) is b:
            self._remember_slot(b, slot)
        return self._record_in(b, offset)

    cdef void _remember_slot(self, _DecodedBatch b, int64_t slot):
        cdef Py_ssize_t n = PyList_GET_SIZE(self._by_slot)
        if slot >= n:
            self._by_slot.extend([None] * (slot + 1 - n))
        self._by_slot[slot] = b
        b.slot = slot

    cdef Record _record_in(self, _DecodedBatch b, int64_t offset):
        cdef int32_t i = <int32_t>(offset - b.base_offset)
        cdef Record rec
        if b.starts == NULL:  # not located (a small batch): decode it all once
            for r in batch_records(b, offset, offset + 1, False, self.path):
                return r
            raise _errors.OffsetOutOfRangeError(f"offset {offset} is not stored (compacted away)")
        if i < b.count:
            rec = b.record(i, self.path)
            if rec.offset == offset:
                return rec
        # Offsets inside the batch have gaps (a compacted batch): look for it.
        for r in batch_records(b, offset, offset + 1, False, self.path):
            return r
        raise _errors.OffsetOutOfRangeError(f"offset {offset} is not stored (compacted away)")

    def find_batch(self, int64_t offset):
        """(position, base_offset, last_offset) of the batch holding offset, or None."""
        self._ensure_open()
        cdef int64_t position
        cdef pl_batch_header h
        cdef int rc = pl_segment_find_batch(self._s, offset, &position, &h)
        if rc == PL_ERANGE:
            return None
        check(rc, self.path)
        return position, h.base_offset, h.base_offset + h.last_offset_delta

    def scan_batch(self, int64_t position, int64_t start_offset=0, int64_t end_offset=_INT64_MAX,
                   bint values_only=False):
        """Decode the batch at position: (an iterator over the records or values with
        start_offset <= offset < end_offset, next position, last offset of the batch).
        Checks the CRC and every record's bounds before returning."""
        self._ensure_open()
        cdef pl_batch_header h
        cdef const uint8_t *p
        cdef int64_t size = pl_segment_size(self._s)
        if position >= size:
            return [], position, -1
        check(pl_segment_bytes(self._s, position, size - position, &p), self.path)
        cdef int rc = pl_batch_parse_header(p, <size_t>(size - position), &h)
        if rc != PL_OK:
            check(rc, self.path, position)
        cdef int64_t total = h.batch_length + PL_BATCH_LOG_OVERHEAD
        cdef FetchSlice fs = _slice(self, position, total)
        cdef _DecodedBatch b = decode_batch(fs, fs.ptr, total, self.path, position, False, self._max_inflated)
        return batch_records(b, start_offset, end_offset, values_only, self.path), position + total, b.last_offset

    def find_time(self, int64_t timestamp):
        """Offset of the first record with timestamp >= timestamp, or None."""
        found = self.find_time_record(timestamp)
        return None if found is None else found[0]

    def find_time_record(self, int64_t timestamp, int64_t min_offset=-1, int64_t max_inflated=64 << 20):
        """(offset, timestamp) of the first record with timestamp >= timestamp and
        offset >= min_offset, or None (Kafka's LogSegment.findOffsetByTimestamp):
        the time index gives the first batch that can hold one; when its only
        such records lie below min_offset (the log start cut the batch), the
        search goes on in the later batches. A compressed batch is inflated as
        a stream of at most max_inflated bytes (RecordTooLargeError past it) and
        only up to the answer: a stored bomb costs bounded memory and time,
        never the whole inflated batch."""
        self._ensure_open()
        cdef int64_t position, total, size
        cdef const uint8_t *p
        cdef pl_batch_header h
        cdef int rc = pl_segment_find_time(self._s, timestamp, &position, &h)
        if rc == PL_ERANGE:
            return None
        check(rc, self.path)
        size = pl_segment_size(self._s)
        while True:
            total = h.batch_length + PL_BATCH_LOG_OVERHEAD
            if h.max_timestamp >= timestamp and h.base_offset + h.last_offset_delta >= min_offset:
                found = self._find_time_in_batch(position, &h, timestamp, min_offset, max_inflated)
                if found is not None:
                    return found
            position += total
            if position >= size:
                return None
            check(pl_segment_bytes(self._s, position, size - position, &p), self.path)
            rc = pl_batch_parse_header(p, <size_t>(size - position), &h)
            if rc != PL_OK:
                check(rc, self.path, position)

    cdef _find_time_in_batch(self, int64_t position, pl_batch_header *h, int64_t timestamp,
                             int64_t min_offset, int64_t max_inflated):
        cdef FetchSlice fs
        cdef int64_t min_delta
        if h.attributes & PL_ATTR_COMPRESSION_MASK:
            fs = _slice(self, position, h.batch_length + PL_BATCH_LOG_OVERHEAD)
            min_delta = min_offset - h.base_offset
            found = find_time_inflated(fs, timestamp, max_inflated,
                                       <int32_t>max(0, min(min_delta, <int64_t>0x7FFFFFFF)))
            return None if found is None else (h.base_offset + found[0], found[1])
        cdef _DecodedBatch b = self._decoded(position, h)
        for rec in batch_records(b, min_offset, _INT64_MAX, False, self.path):
            if (<Record>rec).timestamp >= timestamp:
                return ((<Record>rec).offset, (<Record>rec).timestamp)
        return None

    def slice(self, int64_t position, int64_t length):
        """A FetchSlice of [position, position + length)."""
        self._ensure_open()
        return _slice(self, position, length)

    def read_batches(self, int64_t offset, int64_t max_bytes, int64_t max_position=-1):
        """Whole batches from the one holding offset, at most max_bytes but at least
        one batch (KIP-74), as a FetchSlice; None when offset is past this segment."""
        self._ensure_open()
        cdef int64_t position, end, total
        cdef pl_batch_header h
        cdef const uint8_t *p
        cdef int rc = pl_segment_find_batch(self._s, offset, &position, &h)
        if rc == PL_ERANGE:
            return None
        check(rc, self.path)
        cdef int64_t size = pl_segment_size(self._s) if max_position < 0 else max_position
        check(pl_segment_bytes(self._s, position, pl_segment_size(self._s) - position, &p), self.path)
        end = position + h.batch_length + PL_BATCH_LOG_OVERHEAD
        while end < size:
            rc = pl_batch_parse_header(p + (end - position), <size_t>(size - end), &h)
            if rc != PL_OK:
                break
            total = h.batch_length + PL_BATCH_LOG_OVERHEAD
            if end + total - position > max_bytes:
                break
            end += total
        return _slice(self, position, end - position)
