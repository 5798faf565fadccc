# Producer side: the record accumulator. Producer.send appends one record at a
# time (append), send_many whole lists (append_many); the sender thread takes
# batches out (drain), builds each once (build) and ends it (complete or fail,
# then release). Records are encoded into a batch's malloc'd buffer as they
# arrive (engine/batch.c: pl_record_size, pl_record_encode), so a batch is never
# a list of Python objects, and build() only adds the 61-byte header (and the
# compression) while copying them once into the bytes it sends; seal() writes
# the header into the batch's own buffer instead, for a writer in this process
# (the embedded transport), which appends that buffer in place with no copy.
# append_many encodes large calls without the GIL, so the sender thread writes
# earlier batches out on the other core meanwhile.
#
# Thread-safety of this file, "GIL-atomic": every method runs with the GIL held
# and makes its state change in a stretch of C code that calls no Python code
# (no Python-level call, no allocation of a GC-tracked object, no DECREF that can
# free an object). The GIL cannot move to another thread in such a stretch, so
# no lock is needed. Conversions, allocations and user callables (wakeup,
# callbacks) run before the stretch (drain and abort_all re-check a version
# counter in case one of their allocations let another thread in) or after it.
import logging as _logging
import os as _os_prod
import threading as _threading

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.list cimport PyList_GET_ITEM
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdlib cimport calloc
from libc.stdint cimport uint64_t
from cpython.memoryview cimport PyMemoryView_FromMemory, PyMemoryView_FromObject
from cpython.buffer cimport PyBUF_READ, PyBuffer_FillInfo

# pylog.structs.RecordMetadata, imported on first use: the engine module loads
# without the Python package's value types.
cdef object _RecordMetadataType = None


cdef object _RecordMetadata(object topic, int32_t partition, int64_t offset, int64_t timestamp):
    global _RecordMetadataType
    if _RecordMetadataType is None:
        from pylog.structs import RecordMetadata
        _RecordMetadataType = RecordMetadata
    return _RecordMetadataType(topic, partition, offset, timestamp)

cdef extern from "batch.h" nogil:
    size_t pl_record_size(pl_record_in *r, int32_t offset_delta)
    size_t pl_record_encode(uint8_t *out, const pl_record_in *r, int32_t offset_delta)
    size_t pl_records_fit(pl_record_in *recs, size_t n, size_t max_bytes, size_t *size_out)

_producer_log = _logging.getLogger("pylog.producer")

cdef enum:
    # Work on at least this many bytes is done without the GIL (releasing it
    # costs more than smaller work takes).
    _NOGIL_MIN_BYTES = 65536
    _RECS_KEEP_MAX = 1 << 16
    _POOL_SLOTS = 64
    _POOL_MIN = 65536

cdef enum:
    _PART_MURMUR2 = 0
    _PART_XXHASH = 1
    _PART_ROUND_ROBIN = 2

cdef object _xxh64 = None
# A batch's buffer starts at this capacity (or the first record's size) and
# doubles: a small batch never costs batch_size bytes of address space.
cdef size_t _FIRST_CAPACITY = 16384


class NeedMetadata(Exception):
    """append() met a topic whose partition count is not known yet: fetch the
    metadata, call set_partition_count(topic, n), and append again."""

    def __init__(self, topic):
        super().__init__(f"no partition count known for topic {topic!r}")
        self.topic = topic


class BufferFull(Exception):
    """Appending would take the batches not yet released over buffer_memory:
    wait until the sender releases some, then append again. Nothing was added."""


cdef inline int _record_from(pl_record_in *rec, object key, object value, list keep) except -1:
    """Point rec at key and value (bytes fast path, any buffer copied once into keep)."""
    if PyBytes_CheckExact(value):
        rec.value = <const uint8_t *>PyBytes_AS_STRING(value)
        rec.value_len = <int32_t>PyBytes_GET_SIZE(value)
    else:
        _bytes_field(value, &rec.value, &rec.value_len, keep)
    if key is None:
        rec.key = NULL
        rec.key_len = -1
    elif PyBytes_CheckExact(key):
        rec.key = <const uint8_t *>PyBytes_AS_STRING(key)
        rec.key_len = <int32_t>PyBytes_GET_SIZE(key)
    else:
        _bytes_field(key, &rec.key, &rec.key_len, keep)
    rec.headers = NULL
    rec.header_count = 0
    return 0


@cython.final
cdef class _Memory:
    """The buffer_memory count of one accumulator: bytes (headers and records)
    of its batches not yet released. Shared with every batch it made, so a batch
    gives its bytes back after it left the accumulator. GIL-atomic.

    Also freed large batch buffers, kept for the next batches as Kafka's
    BufferPool keeps freed batch.size buffers: a fresh malloc of a batch-sized
    buffer is a fresh mapping whose every page faults and is zeroed on first
    write, which halved a bulk producer's speed whenever its caller ran ahead
    of the writer. At most _POOL_SLOTS buffers of _POOL_MIN bytes or more, and
    at most pool_limit bytes (half of buffer_memory), are kept; trim() frees
    them (the Producer's close)."""
    cdef int64_t used
    cdef int64_t pool_limit
    cdef int64_t _pool_bytes
    cdef uint8_t *_pool_buf[_POOL_SLOTS]
    cdef size_t _pool_cap[_POOL_SLOTS]
    cdef int _pool_n

    cdef uint8_t *take(self, size_t need, size_t *cap) noexcept:
        """A kept buffer of at least need bytes (its size in *cap), or NULL.
        The most recently kept one that fits: it may still be in the cache."""
        cdef int i, j
        cdef uint8_t *p
        for i in range(self._pool_n - 1, -1, -1):
            if self._pool_cap[i] >= need:
                p = self._pool_buf[i]
                cap[0] = self._pool_cap[i]
                self._pool_bytes -= <int64_t>self._pool_cap[i]
                self._pool_n -= 1
                for j in range(i, self._pool_n):
                    self._pool_buf[j] = self._pool_buf[j + 1]
                    self._pool_cap[j] = self._pool_cap[j + 1]
                return p
        return NULL

    cdef void give(self, uint8_t *p, size_t cap) noexcept:
        """Keep p for a later batch, or free it."""
        if p == NULL:
            return
        if (cap >= _POOL_MIN and self._pool_n < _POOL_SLOTS
                and self._pool_bytes + <int64_t>cap <= self.pool_limit):
            self._pool_buf[self._pool_n] = p
            self._pool_cap[self._pool_n] = cap
            self._pool_n += 1
            self._pool_bytes += <int64_t>cap
        else:
            free(p)

    cdef void trim(self) noexcept:
        cdef int i
        for i in range(self._pool_n):
            free(self._pool_buf[i])
        self._pool_n = 0
        self._pool_bytes = 0

    def __dealloc__(self):
        self.trim()


@cython.final
cdef class _TopicState:
    """One topic's partitions as the accumulator knows them. Invariants:
    len(open) == count; open[p] is None or the open ProducerBatch of partition p;
    sticky is -1 or < count (the partition unkeyed records go to, KIP-480).
    Changed only inside the accumulator's GIL-atomic stretches."""
    cdef str name
    cdef int32_t count
    cdef int32_t sticky
    cdef int32_t last_sticky
    cdef uint32_t rr
    cdef list open


@cython.final
cdef class ProducerBatch:
    """Records for one partition, encoded as they are appended, sent as one
    record batch v2.

    Life: open (takes appends; in the accumulator) -> closed (full, in the
    accumulator's ready list) -> drained (the sender's) -> built (bytes fixed)
    -> done (complete() or fail(), exactly once; a second call is ignored and
    returns False) and released (its bytes leave buffer_memory; idempotent, and
    done by __dealloc__ if nobody did). Invariants: records_count > 0; offset
    delta i is the i-th append; base_timestamp is the first record's timestamp
    and max_timestamp the largest; build() returns the identical bytes object
    until reset_producer_fields() allows new producer fields.

    Thread-safety: GIL-atomic (see the top of producer.pyx). build, complete,
    fail and release are the sender thread's; wait/result/done may be called
    from any thread; callbacks run on the thread that calls complete or fail.
    """
    cdef readonly str topic
    cdef readonly int32_t partition
    cdef readonly int32_t records_count
    cdef readonly int64_t created_ms
    cdef readonly int64_t base_timestamp
    cdef readonly int64_t max_timestamp
    cdef readonly int64_t producer_id
    cdef readonly int16_t producer_epoch
    cdef readonly bint transactional
    cdef public int32_t attempts
    cdef public int32_t base_sequence
    cdef _TopicState _ts
    cdef _Memory _mem
    cdef uint8_t *_buf       # PL_BATCH_HEADER_SIZE bytes of room, then the records
    cdef size_t _len         # header room + records so far
    cdef size_t _cap
    cdef int64_t _held       # bytes counted in _mem.used
    cdef int _codec
    cdef bint _open
    cdef bint _locked        # the built header's producer fields are fixed
    cdef bint _done
    cdef object _built
    cdef object _exc
    cdef int64_t _base_offset
    cdef int64_t _log_append_time
    cdef object _event
    cdef list _callbacks     # DeliveryHandles with a callback, in record order
    cdef list _waiters       # (handle, fn) from add_done_callback
    cdef bint _sealed        # header and CRC written into _buf itself (seal())
    cdef Py_ssize_t _exports # buffer views of _buf alive: it is not freed meanwhile

    def __cinit__(self):
        self.partition = -1
        self.producer_id = -1
        self.producer_epoch = -1
        self.base_sequence = -1
        self._base_offset = -1
        self._log_append_time = -1

    def __dealloc__(self):
        # No view can be alive here: each holds a reference to the batch.
        self._free_buf()
        if self._held and self._mem is not None:
            self._mem.used -= self._held

    @property
    def size(self):
        """Bytes of the records section (uncompressed) so far."""
        return <int64_t>(self._len - PL_BATCH_HEADER_SIZE) if self._len else 0

    @property
    def done(self):
        return self._done

    @property
    def exception(self):
        """The exception fail() gave, or None."""
        return self._exc

    def __repr__(self):
        state = "done" if self._done else ("open" if self._open else "closed")
        return (f"ProducerBatch({self.topic!r}, partition={self.partition}, "
                f"records_count={self.records_count}, size={self.size}, {state})")

    cdef void _free_buf(self) noexcept:
        if self._mem is not None:
            self._mem.give(self._buf, self._cap)
        else:
            free(self._buf)
        self._buf = NULL
        self._cap = 0

    cdef int _grow(self, size_t need, size_t first) except -1:
        cdef size_t cap = self._cap if self._cap else first
        cdef uint8_t *p
        if self._buf == NULL and self._mem is not None and need >= _POOL_MIN:
            p = self._mem.take(need, &cap)
            if p != NULL:
                self._buf = p
                self._cap = cap
                return 0
        if cap == 0:
            cap = need
        while cap < need:
            cap *= 2
        p = <uint8_t *>realloc(self._buf, cap)
        if p == NULL:
            raise MemoryError()
        self._buf = p
        self._cap = cap
        return 0

    cdef void _fresh_header(self, pl_batch_header *h) noexcept:
        """The header fields of a first build; the caller sets attributes and the producer fields."""
        h.base_offset = 0
        h.batch_length = 0
        h.partition_leader_epoch = -1
        h.magic = 2
        h.crc = 0
        h.last_offset_delta = self.records_count - 1
        h.base_timestamp = self.base_timestamp
        h.max_timestamp = self.max_timestamp
        h.records_count = self.records_count

    cdef int _check_fields(self, str what, int64_t producer_id, int16_t producer_epoch,
                           int32_t base_sequence, bint transactional) except -1:
        """1 when the fields are those of the bytes already made (use them
        again); 0 when new ones may be written; ValueError when they differ
        and are locked."""
        if (producer_id == self.producer_id and producer_epoch == self.producer_epoch
                and base_sequence == self.base_sequence and transactional == self.transactional):
            return 1
        if self._locked:
            raise ValueError(
                f"{what}() of {self.topic}-{self.partition} with other producer fields "
                f"(producer_id {producer_id}, epoch {producer_epoch}, base_sequence "
                f"{base_sequence}) than its first {what}; call reset_producer_fields() first")
        return 0

    cdef void _stamp(self, uint8_t *p, size_t total, pl_batch_header *h, int16_t codec,
                     int64_t producer_id, int16_t producer_epoch, int32_t base_sequence,
                     bint transactional) noexcept:
        """Write h with these producer fields and the CRC over p[:total], and
        lock the fields (an idempotent retry must resend identical bytes)."""
        h.attributes = <int16_t>(codec | (PL_ATTR_TRANSACTIONAL if transactional else 0))
        h.producer_id = producer_id
        h.producer_epoch = producer_epoch
        h.base_sequence = base_sequence
        pl_batch_write_header(p, h)
        if total >= _NOGIL_MIN_BYTES:
            with nogil:
                pl_batch_seal(p, total)
        else:
            pl_batch_seal(p, total)
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence
        self.transactional = transactional
        self._locked = True

    def build(self, int64_t producer_id=-1, int16_t producer_epoch=-1, int32_t base_sequence=-1,
              bint transactional=False):
        """The record batch v2 to send (bytes): base_offset 0,
        partition_leader_epoch -1, compressed as the accumulator says, CRC-32C.
        base_sequence -1 takes self.base_sequence. The first call fixes the
        bytes; later calls return the same object (an idempotent retry must
        resend identical data) and refuse other producer fields (ValueError)
        unless reset_producer_fields() was called in between."""
        cdef pl_batch_header h
        cdef object out
        cdef uint8_t *p
        cdef Py_ssize_t total
        if self._open:
            raise ValueError("build() of a batch still open for appends (drain it first)")
        if self._buf == NULL and self._built is None:
            raise ValueError(f"build() of {self.topic}-{self.partition} after its bytes were dropped")
        if base_sequence == -1:
            base_sequence = self.base_sequence
        if self._built is not None:
            if self._check_fields("build", producer_id, producer_epoch, base_sequence, transactional):
                return self._built
            # A new producer id or epoch: the same records under a new header
            # (the fields are inside the CRC, so it is recomputed).
            total = PyBytes_GET_SIZE(self._built)
            out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(self._built), total)
            p = <uint8_t *>PyBytes_AS_STRING(out)
            check(pl_batch_parse_header(p, <size_t>total, &h))
        else:
            self._fresh_header(&h)
            if self._codec == 0:
                total = <Py_ssize_t>self._len
                out = PyBytes_FromStringAndSize(NULL, total)
                p = <uint8_t *>PyBytes_AS_STRING(out)
                memcpy(p + PL_BATCH_HEADER_SIZE, self._buf + PL_BATCH_HEADER_SIZE,
                       self._len - PL_BATCH_HEADER_SIZE)
            else:
                packed = _codecs.compress(self._codec, PyMemoryView_FromMemory(
                    <char *>self._buf + PL_BATCH_HEADER_SIZE,
                    <Py_ssize_t>(self._len - PL_BATCH_HEADER_SIZE), PyBUF_READ))
                total = PL_BATCH_HEADER_SIZE + PyBytes_GET_SIZE(packed)
                out = PyBytes_FromStringAndSize(NULL, total)
                p = <uint8_t *>PyBytes_AS_STRING(out)
                memcpy(p + PL_BATCH_HEADER_SIZE, PyBytes_AS_STRING(packed), PyBytes_GET_SIZE(packed))
            if total > 0x7FFFFFFF:
                raise _errors.RecordTooLargeError("batch over 2 GiB")
        self._stamp(p, <size_t>total, &h, <int16_t>self._codec, producer_id, producer_epoch,
                    base_sequence, transactional)
        self._built = out
        # The bytes object holds the batch from now on; the records buffer is
        # no longer needed (a rebuild copies the bytes).
        self.drop_buffer()
        return out

    def seal(self, int64_t producer_id=-1, int16_t producer_epoch=-1, int32_t base_sequence=-1,
             bint transactional=False):
        """build() without the copy, for a writer in this process (the embedded
        transport): the header and CRC are written into the batch's own buffer
        and a writable memoryview of it comes back, which the log patches in
        place (base offset, leader epoch: outside the CRC) and writes out. The
        buffer lives while any view of it does; drop_buffer() frees it early.
        A compressed batch, or one already built, returns build()'s bytes.
        The same producer-field rules as build()."""
        cdef pl_batch_header h
        if self._open:
            raise ValueError("seal() of a batch still open for appends (drain it first)")
        if self._codec != 0 or self._built is not None or self._buf == NULL:
            return self.build(producer_id, producer_epoch, base_sequence, transactional)
        if base_sequence == -1:
            base_sequence = self.base_sequence
        if not (self._sealed and self._check_fields("seal", producer_id, producer_epoch, base_sequence,
                                                    transactional)):
            if self._exports:
                raise BufferError("seal() with new producer fields while a view of the batch is alive")
            self._fresh_header(&h)
            self._stamp(self._buf, self._len, &h, 0, producer_id, producer_epoch, base_sequence,
                        transactional)
            self._sealed = True
        return PyMemoryView_FromObject(self)

    def drop_buffer(self):
        """Free the records buffer now (after the batch was written), unless a
        view of it is still alive; then it goes with the batch."""
        if self._exports == 0 and self._buf != NULL:
            self._free_buf()

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if not self._sealed or self._buf == NULL:
            raise BufferError("only a sealed batch exposes its bytes (seal())")
        PyBuffer_FillInfo(buffer, self, <void *>self._buf, <Py_ssize_t>self._len, 0, flags)
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self._exports -= 1

    def reset_producer_fields(self):
        """Allow the next build() to use another producer id, epoch and
        base_sequence (after the producer id was re-initialised)."""
        self._locked = False

    def complete(self, int64_t base_offset, int64_t log_append_time=-1):
        """The broker took the batch at base_offset (-1 with acks=0: offsets
        unknown). Resolves every record's DeliveryHandle, then calls the
        callbacks in record order (callback(None, RecordMetadata)) and the done
        callbacks. Returns False (doing nothing) if the batch was already done."""
        if self._done:
            return False
        self._base_offset = base_offset
        self._log_append_time = log_append_time
        self._done = True
        self._run_callbacks()
        return True

    def fail(self, exc):
        """The batch will not be written: every handle raises exc, callbacks get
        (exc, None). Returns False (doing nothing) if the batch was already done."""
        if self._done:
            return False
        self._exc = exc
        self._done = True
        self._run_callbacks()
        return True

    cdef _run_callbacks(self):
        cdef DeliveryHandle h
        ev = self._event
        if ev is not None:
            ev.set()
        # Taken out first: the batch -> handle -> batch cycle ends here.
        cbs = self._callbacks
        waiters = self._waiters
        self._callbacks = None
        self._waiters = None
        if cbs:
            for x in cbs:
                h = <DeliveryHandle>x
                try:
                    if self._exc is None:
                        h._callback(None, h._metadata())
                    else:
                        h._callback(self._exc, None)
                except Exception:
                    _producer_log.exception("delivery callback of %s-%d raised", self.topic, self.partition)
        if waiters:
            for h, fn in waiters:
                try:
                    fn(h)
                except Exception:
                    _producer_log.exception("done callback of %s-%d raised", self.topic, self.partition)

    def release(self):
        """Give the batch's bytes back to buffer_memory (idempotent). Only for a
        batch out of the accumulator (drained or aborted)."""
        if self._open:
            raise ValueError("release() of a batch still open for appends")
        if self._held:
            self._mem.used -= self._held
            self._held = 0

    def wait(self, timeout=None):
        """Block until the batch is done; False if timeout (seconds) passed first.
        The Event is made only here, so appends never pay for it."""
        if self._done:
            return True
        ev = self._event
        if ev is None:
            ev = _threading.Event()
            # No Python code between this check and the store: a complete()
            # on another thread either saw this Event or set _done before.
            if self._event is None:
                self._event = ev
            else:
                ev = self._event
        if self._done:
            return True
        return ev.wait(timeout)

    def result(self, timeout=None):
        """RecordMetadata of the batch's first record (append_many's handle);
        raises fail()'s exception, or TimeoutError."""
        if not self._done and not self.wait(timeout):
            raise TimeoutError(f"{self.topic}-{self.partition}: not acknowledged within {timeout} s")
        if self._exc is not None:
            raise self._exc
        return _RecordMetadata(self.topic, self.partition, self._base_offset,
                               self._log_append_time if self._log_append_time != -1
                               else self.base_timestamp)

    get = result


@cython.final
@cython.freelist(256)
cdef class DeliveryHandle:
    """What Producer.send returns, future-like: the record index of one record
    in its ProducerBatch. Its result is read from the batch when asked for
    (offset = base_offset + index), so the batch does nothing per record when
    it completes unless the record has a callback.

    Thread-safety: GIL-atomic; get/result/exception/done from any thread,
    add_done_callback's fn runs on the thread that completes the batch (or at
    once, if it is already done)."""
    cdef readonly ProducerBatch batch
    cdef readonly int32_t index
    cdef readonly int64_t timestamp   # the record's CreateTime as appended
    cdef object _callback

    @property
    def topic(self):
        return self.batch.topic

    @property
    def partition(self):
        return self.batch.partition

    cdef object _metadata(self):
        cdef ProducerBatch b = self.batch
        cdef int64_t off = -1 if b._base_offset == -1 else b._base_offset + self.index
        return _RecordMetadata(b.topic, b.partition, off,
                               b._log_append_time if b._log_append_time != -1 else self.timestamp)

    def done(self):
        return self.batch._done

    def get(self, timeout=None):
        """RecordMetadata once the batch is acknowledged; raises the batch's
        exception, or TimeoutError when timeout (seconds) passes first."""
        cdef ProducerBatch b = self.batch
        if not b._done and not b.wait(timeout):
            raise TimeoutError(f"{b.topic}-{b.partition}: not acknowledged within {timeout} s")
        if b._exc is not None:
            raise b._exc
        return self._metadata()

    result = get

    def exception(self, timeout=None):
        """The batch's exception (None on success); TimeoutError if not done in time."""
        cdef ProducerBatch b = self.batch
        if not b._done and not b.wait(timeout):
            raise TimeoutError(f"{b.topic}-{b.partition}: not acknowledged within {timeout} s")
        return b._exc

    def add_done_callback(self, fn):
        """fn(handle) once the batch is done; at once if it already is."""
        cdef ProducerBatch b = self.batch
        lst = [] if b._waiters is None else None
        entry = (self, fn)
        # GIL-atomic from here: a complete() on another thread ran entirely
        # before (we see _done) or runs after (it sees the entry).
        if not b._done:
            if b._waiters is None:
                b._waiters = lst if lst is not None else []
            b._waiters.append(entry)
            return
        try:
            fn(self)
        except Exception:
            _producer_log.exception("done callback of %s-%d raised", b.topic, b.partition)

    def __repr__(self):
        b = self.batch
        state = "pending"
        if b._done:
            state = f"error={b._exc!r}" if b._exc is not None else f"offset={self._metadata().offset}"
        return f"DeliveryHandle({b.topic!r}, partition={b.partition}, index={self.index}, {state})"


cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void *op)


cdef tuple _pin(PyObject **items, Py_ssize_t n):
    """A tuple holding items[0:n]: append_many's references for the time it
    works without the GIL. Untracked by the garbage collector (it lives for
    one call; tracked, a collection meanwhile would walk its n items)."""
    cdef tuple t = PyTuple_New(n)
    cdef Py_ssize_t i
    cdef object o
    for i in range(n):
        o = <object>items[i]
        Py_INCREF(o)
        PyTuple_SET_ITEM(t, i, o)
    PyObject_GC_UnTrack(<void *>t)
    return t


cdef Py_ssize_t _plan_chunks(pl_record_in *recs, Py_ssize_t n, bint keyed, const Py_ssize_t *ends,
                             int32_t partition, int32_t start, int32_t count, size_t max_section,
                             Py_ssize_t **chunks_out, int64_t *total_out) noexcept nogil:
    """append_many's split of recs into batches of at most max_section record
    bytes: (partition, first, count, size) per chunk into a malloc'd
    *chunks_out, the bytes of all batches (headers too) into *total_out.
    keyed: recs are grouped by partition, group p ending at ends[p]; else
    partition >= 0 takes all, or chunks go round from start. Returns the
    number of chunks, or -1 when out of memory."""
    cdef Py_ssize_t a = 0, e, nchunks = 0, cap = 0
    cdef Py_ssize_t *chunks = NULL
    cdef Py_ssize_t *grown
    cdef int32_t p = 0
    cdef size_t k, sz
    cdef int64_t total = 0
    while a < n:
        if keyed:
            while ends[p] <= a:
                p += 1
            e = ends[p]
        else:
            e = n
        k = pl_records_fit(recs + a, <size_t>(e - a), max_section, &sz)
        if nchunks == cap:
            cap = cap * 2 if cap else 16
            grown = <Py_ssize_t *>realloc(chunks, cap * 4 * sizeof(Py_ssize_t))
            if grown == NULL:
                free(chunks)
                return -1
            chunks = grown
        if keyed:
            chunks[4 * nchunks] = p
        elif partition >= 0:
            chunks[4 * nchunks] = partition
        else:
            chunks[4 * nchunks] = (start + nchunks) % count
        chunks[4 * nchunks + 1] = a
        chunks[4 * nchunks + 2] = <Py_ssize_t>k
        chunks[4 * nchunks + 3] = <Py_ssize_t>sz
        total += PL_BATCH_HEADER_SIZE + <int64_t>sz
        nchunks += 1
        a += <Py_ssize_t>k
    chunks_out[0] = chunks
    total_out[0] = total
    return nchunks


@cython.final
cdef class RecordAccumulator:
    """The producer's per-partition batches: one open batch per partition that
    takes appends, a ready list of closed (full) batches, and the buffer_memory
    count of every batch not yet released.

    Invariants: a partition has at most one open batch, and its closed batches
    precede it in the ready list, so drain() returns each partition's batches
    oldest first; batch_size bounds a batch's uncompressed bytes (header plus
    records), and a batch over it holds exactly one record; the
    buffer count is the sum of unreleased batches' bytes (61-byte header plus
    uncompressed records); it exceeds buffer_memory only by a single append or
    append_many made while it was zero.

    Partitioning of partition < 0: murmur2 (Java, librdkafka murmur2_random:
    (murmur2(key) & 0x7fffffff) % count) or xxhash (xxh64(key) % count) for keyed
    records, sticky for unkeyed ones (KIP-480: one partition until its batch is
    full or drained, then another at random); round_robin cycles the partitions
    for every record, keyed or not.

    Timestamps: record timestamps and created_ms are wall-clock milliseconds
    (time.time_ns() // 1_000_000 is the same clock), and drain's now_ms must be
    too.

    Thread-safety: GIL-atomic (see the top of producer.pyx): append and
    append_many from any number of threads, drain and the rest from the
    sender thread, with no lock. wakeup() is called after the state change.
    """
    cdef int64_t _batch_size
    cdef int64_t _buffer_memory
    cdef int _codec
    cdef int _partitioner
    cdef object _wakeup
    cdef _Memory _mem
    cdef dict _topics
    cdef list _ready      # closed batches, in the order they closed
    cdef list _opens      # open batches in creation order; closed ones purged lazily
    cdef Py_ssize_t _open_count
    cdef ProducerBatch _spare  # made before a state change, so append never allocates inside one
    cdef uint64_t _rng
    cdef uint64_t _version
    cdef int64_t _linger_ms
    cdef size_t _first_capacity
    # append_many's array of record pointers, kept between calls (a fresh one
    # per call was a fresh mapping to fault in); a concurrent call, which finds
    # it taken, uses its own.
    cdef pl_record_in *_recs
    cdef size_t _recs_cap
    cdef bint _recs_taken

    def __dealloc__(self):
        free(self._recs)

    def __init__(self, int batch_size, int64_t buffer_memory, str compression=None, object wakeup=None,
                 str partitioner="murmur2"):
        global _xxh64
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        if buffer_memory <= 0:
            raise ValueError("buffer_memory must be positive")
        if partitioner == "murmur2":
            self._partitioner = _PART_MURMUR2
        elif partitioner == "xxhash":
            if _xxh64 is None:
                import xxhash
                _xxh64 = xxhash.xxh64_intdigest
            self._partitioner = _PART_XXHASH
        elif partitioner == "round_robin":
            self._partitioner = _PART_ROUND_ROBIN
        else:
            raise ValueError(f"unknown partitioner {partitioner!r} (murmur2, xxhash or round_robin)")
        self._batch_size = batch_size
        self._first_capacity = min(<size_t>batch_size, _FIRST_CAPACITY)
        self._buffer_memory = buffer_memory
        self._codec = _codecs.codec_id(compression)
        self._wakeup = wakeup
        self._mem = _Memory()
        self._mem.pool_limit = buffer_memory // 2
        self._topics = {}
        self._ready = []
        self._opens = []
        self._rng = int.from_bytes(_os_prod.urandom(8), "little") | 1

    cdef inline uint32_t _random(self) noexcept:
        # xorshift64: the sticky choice needs no quality, and no Python call.
        cdef uint64_t x = self._rng
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        self._rng = x
        return <uint32_t>(x >> 32)

    cdef int32_t _next_sticky(self, _TopicState t, int32_t avoid) noexcept:
        """A random partition, another than avoid when there is a choice."""
        cdef int32_t p
        if t.count == 1:
            return 0
        p = <int32_t>(self._random() % <uint32_t>t.count)
        if p == avoid:
            p = <int32_t>((p + 1 + self._random() % <uint32_t>(t.count - 1)) % t.count)
        return p

    cdef inline ProducerBatch _open_at(self, _TopicState t, int32_t p):
        cdef object x = <object>PyList_GET_ITEM(t.open, p)
        return None if x is None else <ProducerBatch>x

    cdef ProducerBatch _new_batch(self):
        cdef ProducerBatch b = ProducerBatch.__new__(ProducerBatch)
        b._callbacks = []
        b._mem = self._mem
        b._codec = self._codec
        return b

    cdef int _close(self, _TopicState t, ProducerBatch b) except -1:
        """Open -> ready (C stores, and list stores that free nothing)."""
        b._open = False
        t.open[b.partition] = None
        self._ready.append(b)
        self._open_count -= 1
        if t.sticky == b.partition:
            t.last_sticky = t.sticky
            t.sticky = -1
        return 0

    def set_partition_count(self, str topic, int count):
        """The topic's partition count from metadata. A smaller count than
        before (a re-created topic) closes the open batches of the partitions
        gone; the broker will refuse them."""
        cdef _TopicState t
        cdef bint closed = False
        if count <= 0:
            raise ValueError(f"partition count of {topic!r} must be positive, not {count}")
        t = self._topics.get(topic)
        if t is None:
            t = _TopicState()
            t.name = topic
            t.sticky = -1
            t.last_sticky = -1
            t.open = [None] * count
            t.count = count
            # Another thread may have set the topic while this one allocated.
            if self._topics.get(topic) is None:
                self._topics[topic] = t
                return
            t = self._topics[topic]
        more = [None] * (count - t.count) if count > t.count else None
        if count == t.count:
            return
        if count > t.count:
            t.open.extend(more)
        else:
            for p in range(count, t.count):
                if t.open[p] is not None:
                    self._close(t, t.open[p])
                    closed = True
            del t.open[count:]
            if t.sticky >= count:
                t.sticky = -1
        t.count = count
        self._version += 1
        if closed:
            self._wake()

    def partition_count(self, str topic):
        """The partition count set for topic, or -1 if unknown."""
        t = self._topics.get(topic)
        return -1 if t is None else (<_TopicState>t).count

    cdef void _wake(self):
        if self._wakeup is not None:
            try:
                self._wakeup()
            except Exception:
                _producer_log.exception("the accumulator's wakeup callable raised")

    cpdef DeliveryHandle append(self, str topic, int partition, object key, object value,
                                object timestamp, object headers, object callback):
        """Add one record to its partition's open batch; returns its
        DeliveryHandle. partition < 0 lets the partitioner choose. Raises
        NeedMetadata (topic's partition count unknown), BufferFull,
        ValueError (partition out of range), TypeError (str key or value)."""
        cdef pl_record_in rec
        cdef pl_header_in hbuf[8]
        cdef pl_header_in *hdrs = hbuf
        cdef list keep = None
        cdef int64_t ts, used
        cdef uint64_t khash = 0
        cdef _TopicState t
        cdef ProducerBatch b, closing = None, nb
        cdef DeliveryHandle h
        cdef size_t rsize, need
        cdef int32_t p
        cdef bint sticky = False, woke = False
        cdef object to
        if topic is None:
            raise TypeError("topic must be a str")
        to = self._topics.get(topic)
        if to is None:
            raise NeedMetadata(topic)
        t = <_TopicState>to
        if not (PyBytes_CheckExact(value) and (key is None or PyBytes_CheckExact(key))):
            keep = []
        _record_from(&rec, key, value, keep)
        try:
            if headers:
                if keep is None:
                    keep = []
                hdrs = _record_headers(&rec, headers, hbuf, keep)
            ts = now_ms() if timestamp is None else <int64_t>timestamp
            if partition < 0 and key is not None:
                if self._partitioner == _PART_XXHASH:
                    khash = _xxh64(key if PyBytes_CheckExact(key) else bytes(key))
                elif self._partitioner == _PART_MURMUR2:
                    khash = <uint32_t>pl_murmur2(rec.key, <size_t>rec.key_len) & 0x7fffffff
            h = DeliveryHandle.__new__(DeliveryHandle)
            while self._spare is None:
                self._spare = self._new_batch()

            # ---- GIL-atomic from here: no Python code until the state is consistent ----
            if partition >= 0:
                if partition >= t.count:
                    raise ValueError(f"partition {partition} out of range for topic {topic} "
                                     f"(count {t.count})")
                p = partition
            elif self._partitioner == _PART_ROUND_ROBIN:
                p = <int32_t>(t.rr % <uint32_t>t.count)
            elif key is not None:
                p = <int32_t>(khash % <uint64_t>t.count)
            else:
                sticky = True
                p = t.sticky if t.sticky >= 0 else self._next_sticky(t, t.last_sticky)
            b = self._open_at(t, p)
            if b is not None:
                rec.timestamp_delta = ts - b.base_timestamp
                rsize = pl_record_size(&rec, b.records_count)
                if <int64_t>(b._len + rsize) > self._batch_size or b.records_count == 0x7FFFFFFF:
                    closing = b
                    b = None
                    if sticky:
                        # KIP-480: a full sticky batch moves the topic on; this
                        # record starts the next partition's batch (or joins it).
                        p = self._next_sticky(t, p)
                        if p != closing.partition:
                            b = self._open_at(t, p)
                            if b is not None:
                                rec.timestamp_delta = ts - b.base_timestamp
                                rsize = pl_record_size(&rec, b.records_count)
                                if <int64_t>(b._len + rsize) > self._batch_size:
                                    b = None   # p's batch is full too: a new one replaces it
            if b is None:
                rec.timestamp_delta = 0
                rsize = pl_record_size(&rec, 0)
                need = PL_BATCH_HEADER_SIZE + rsize
            else:
                need = rsize
            used = self._mem.used
            if used > 0 and used + <int64_t>need > self._buffer_memory:
                if closing is not None:
                    # The full batch goes to the sender anyway: it is what frees memory.
                    self._close(t, closing)
                    self._version += 1
                    self._wake()
                raise BufferFull(f"buffer_memory {self._buffer_memory} full ({used} bytes held, "
                                 f"{need} more needed)")
            if b is None:
                nb = self._spare
                nb._grow(need, self._first_capacity)    # MemoryError leaves the state as it was
            elif b._len + rsize > b._cap:
                b._grow(b._len + rsize, 0)
            # Commit: C stores and list stores of objects held elsewhere only.
            if closing is not None:
                self._close(t, closing)
                woke = True
            if b is None:
                other = self._open_at(t, p)
                if other is not None:
                    self._close(t, other)
                self._spare = None
                b = nb
                b.topic = t.name
                b.partition = p
                b._ts = t
                b._open = True
                b.created_ms = now_ms() if timestamp is not None else ts
                b.base_timestamp = ts
                b.max_timestamp = ts
                b._len = PL_BATCH_HEADER_SIZE
                t.open[p] = b
                self._opens.append(b)
                self._open_count += 1
                woke = True
            if sticky:
                t.sticky = p
            if self._partitioner == _PART_ROUND_ROBIN and partition < 0:
                t.rr += 1
            pl_record_encode(b._buf + b._len, &rec, b.records_count)
            b._len += rsize
            b._held += <int64_t>need
            self._mem.used += <int64_t>need
            h.batch = b
            h.index = b.records_count
            h.timestamp = ts
            b.records_count += 1
            if ts > b.max_timestamp:
                b.max_timestamp = ts
            if callback is not None:
                h._callback = callback
                b._callbacks.append(h)
            if <int64_t>b._len >= self._batch_size:
                # Nothing more fits (or a record over batch_size sits alone):
                # the sender need not wait for linger.
                self._close(t, b)
                woke = True
            self._version += 1
            # ---- end of the GIL-atomic stretch ----
        finally:
            if hdrs != hbuf:
                free(hdrs)
        if woke:
            self._wake()
        return h

    def append_many(self, str topic, int partition, list values, object keys=None, object timestamp=None,
                    Py_ssize_t start=0, Py_ssize_t stop=-1):
        """Bulk append, batches built in C: returns the new ProducerBatch
        objects (closed at once, ready to drain), which serve as the handles
        (wait, result, done). partition >= 0: all records there; < 0 without
        keys (or with round_robin): batch_size chunks going to the partitions in
        turn from the sticky one; with keys: each record to its key's partition,
        grouped per partition in the order given. The open batches of the
        partitions written are closed first, so records keep their order.
        One timestamp (None: now) for every record. BufferFull when the new
        batches do not fit in buffer_memory, unless the buffer is empty.
        start, stop: only values[start:stop] (and those keys), without a copy
        of the list (stop -1: to the end)."""
        cdef Py_ssize_t n, i, a, e, nchunks = 0, ci
        cdef _TopicState t
        cdef pl_record_in *recs = NULL
        cdef pl_record_in *grouped = NULL
        cdef int32_t *parts = NULL
        cdef Py_ssize_t *counts = NULL
        cdef Py_ssize_t *chunks = NULL   # (partition, first, count, size) per chunk
        cdef size_t sz, k, max_section
        cdef int64_t ts, total = 0, used
        cdef int32_t p, first_p, count, null_p = -1
        cdef list keep = []
        cdef list out = []
        cdef ProducerBatch b
        cdef PyObject **vitems
        cdef PyObject **kitems = NULL
        cdef uint8_t **bufs = NULL
        cdef tuple pinned = None
        cdef bint keyed, took = False
        if stop < 0 or stop > len(values):
            stop = len(values)
        if start < 0 or start > stop:
            raise ValueError(f"start {start} outside 0..{stop}")
        n = stop - start
        if n == 0:
            return []
        t = self._topics.get(topic)
        if t is None:
            raise NeedMetadata(topic)
        if partition >= t.count:
            raise ValueError(f"partition {partition} out of range for topic {topic} (count {t.count})")
        keyed = partition < 0 and keys is not None and self._partitioner != _PART_ROUND_ROBIN
        if keys is not None:
            keys = PySequence_Fast(keys, "keys must be a sequence")
            if PySequence_Fast_GET_SIZE(keys) != len(values):
                raise ValueError("keys and values differ in length")
            kitems = PySequence_Fast_ITEMS(keys) + start
        if n > 0x7FFFFFFF:
            raise ValueError("too many records for one call")
        vitems = PySequence_Fast_ITEMS(values) + start
        if n >= 64:
            # References to every value and key for the GIL-free work below
            # (another thread could replace a list's items meanwhile).
            pinned = (_pin(vitems, n), None if keys is None else _pin(kitems, n))
            vitems = PySequence_Fast_ITEMS(pinned[0])
            if keys is not None:
                kitems = PySequence_Fast_ITEMS(pinned[1])
        ts = now_ms() if timestamp is None else <int64_t>timestamp
        max_section = <size_t>(self._batch_size - PL_BATCH_HEADER_SIZE) if self._batch_size > PL_BATCH_HEADER_SIZE else 0
        # The count as read now: a Python call below (xxhash) may let another
        # thread change it, which the commit checks.
        count = t.count
        if not self._recs_taken and <size_t>n <= _RECS_KEEP_MAX:
            if self._recs_cap < <size_t>n:
                recs = <pl_record_in *>realloc(self._recs, n * sizeof(pl_record_in))
                if recs == NULL:
                    raise MemoryError()
                self._recs = recs
                self._recs_cap = <size_t>n
            recs = self._recs
            self._recs_taken = took = True
        else:
            recs = <pl_record_in *>malloc(n * sizeof(pl_record_in))
            if recs == NULL:
                raise MemoryError()
        try:
            for i in range(n):
                _record_from(&recs[i], None if kitems == NULL else <object>kitems[i],
                             <object>vitems[i], keep)
                recs[i].timestamp_delta = 0
            if keyed:
                # Per-record partitions, then a stable counting sort by partition.
                parts = <int32_t *>malloc(n * sizeof(int32_t))
                counts = <Py_ssize_t *>calloc(count + 1, sizeof(Py_ssize_t))
                grouped = <pl_record_in *>malloc(n * sizeof(pl_record_in))
                if parts == NULL or counts == NULL or grouped == NULL:
                    raise MemoryError()
                for i in range(n):
                    if recs[i].key_len < 0:
                        # A null key among keys: unkeyed, so the sticky partition.
                        if null_p < 0:
                            null_p = t.sticky if 0 <= t.sticky < count else self._next_sticky(t, t.last_sticky)
                        parts[i] = null_p
                    elif self._partitioner == _PART_XXHASH:
                        parts[i] = <int32_t>(<uint64_t>_xxh64(<object>kitems[i] if PyBytes_CheckExact(<object>kitems[i])
                                                              else bytes(<object>kitems[i])) % <uint64_t>count)
                    else:
                        parts[i] = <int32_t>((<uint32_t>pl_murmur2(recs[i].key, <size_t>recs[i].key_len)
                                              & 0x7fffffff) % <uint32_t>count)
                    counts[parts[i] + 1] += 1
                for p in range(count):
                    counts[p + 1] += counts[p]
                for i in range(n):
                    grouped[counts[parts[i]]] = recs[i]
                    counts[parts[i]] += 1
                if recs != self._recs:
                    free(recs)
                recs = grouped
                grouped = NULL
                # counts[p] is now the end of p's group; its start is counts[p-1].
            first_p = partition
            if partition < 0 and not keyed:
                first_p = t.sticky if t.sticky >= 0 else self._next_sticky(t, t.last_sticky)
            # Chunks of at most batch_size bytes each (sizing every record: as
            # the encode below, without the GIL for a large call).
            if pinned is not None:
                with nogil:
                    nchunks = _plan_chunks(recs, n, keyed, counts, partition, first_p, count,
                                           max_section, &chunks, &total)
            else:
                nchunks = _plan_chunks(recs, n, keyed, counts, partition, first_p, count,
                                       max_section, &chunks, &total)
            if nchunks < 0:
                raise MemoryError()
            used = self._mem.used
            if used > 0 and used + total > self._buffer_memory:
                raise BufferFull(f"buffer_memory {self._buffer_memory} full ({used} bytes held, "
                                 f"{total} more needed)")
            # Build every batch (private objects, no shared state touched).
            bufs = <uint8_t **>malloc(nchunks * sizeof(uint8_t *))
            if bufs == NULL:
                raise MemoryError()
            for ci in range(nchunks):
                b = self._new_batch()
                k = <size_t>chunks[4 * ci + 2]
                sz = <size_t>chunks[4 * ci + 3]
                b._grow(PL_BATCH_HEADER_SIZE + sz, 0)
                bufs[ci] = b._buf + PL_BATCH_HEADER_SIZE
                b.topic = t.name
                b.partition = <int32_t>chunks[4 * ci]
                b._ts = t
                b.created_ms = ts if timestamp is None else now_ms()
                b.base_timestamp = ts
                b.max_timestamp = ts
                b.records_count = <int32_t>k
                b._len = PL_BATCH_HEADER_SIZE + sz
                out.append(b)
            # pl_records_fit noted the body size of each record with its offset
            # delta in its chunk (a record that did not fit one chunk was sized
            # again as the first of the next), as encode needs. Large calls
            # encode without the GIL, so the sender thread writes out earlier
            # batches meanwhile: every record points into a bytes object (or a
            # copy in keep) that `pinned` and keep hold, so no other thread can
            # free or change one (a list's items could be replaced meanwhile).
            if total >= _NOGIL_MIN_BYTES and pinned is not None:
                with nogil:
                    for ci in range(nchunks):
                        pl_records_encode(bufs[ci], recs + chunks[4 * ci + 1], <size_t>chunks[4 * ci + 2])
            else:
                for ci in range(nchunks):
                    pl_records_encode(bufs[ci], recs + chunks[4 * ci + 1], <size_t>chunks[4 * ci + 2])
            # ---- GIL-atomic commit ----
            if t.count < count:
                raise NeedMetadata(topic)   # the topic shrank meanwhile: ask again
            used = self._mem.used
            if used > 0 and used + total > self._buffer_memory:
                raise BufferFull(f"buffer_memory {self._buffer_memory} full ({used} bytes held, "
                                 f"{total} more needed)")
            for ci in range(nchunks):
                b = <ProducerBatch>PyList_GET_ITEM(out, ci)
                b._held = <int64_t>b._len
                other = self._open_at(t, b.partition)
                if other is not None:
                    self._close(t, other)
                self._ready.append(b)
            if partition < 0 and not keyed:
                # The next unkeyed record starts after the last partition written.
                t.last_sticky = <int32_t>chunks[4 * (nchunks - 1)]
                t.sticky = -1
                if self._partitioner == _PART_ROUND_ROBIN:
                    t.rr += <uint32_t>nchunks
            self._mem.used += total
            self._version += 1
        finally:
            if recs != self._recs:
                free(recs)
            if took:
                self._recs_taken = False
            free(grouped)
            free(parts)
            free(counts)
            free(chunks)
            free(bufs)
        self._wake()
        return out

    def drain(self, int64_t now_ms, int64_t linger_ms, bint flush=False, object only=None):
        """Take out the batches to send now, oldest first per partition: every
        closed batch, and each open batch created linger_ms or more before
        now_ms (every open batch when flush). only: None, or a set of (topic,
        partition) to restrict the drain to (the sender's way to leave
        partitions with a batch in flight alone)."""
        cdef list take_ready, keep_ready, take_open, keep_opens
        cdef ProducerBatch b
        cdef Py_ssize_t i, n
        cdef uint64_t v
        cdef _TopicState t
        self._linger_ms = linger_ms
        while True:
            v = self._version
            if only is None:
                take_ready = self._ready
                keep_ready = []
            else:
                take_ready = []
                keep_ready = []
                for x in self._ready:
                    b = <ProducerBatch>x
                    if (b.topic, b.partition) in only:
                        take_ready.append(b)
                    else:
                        keep_ready.append(b)
            take_open = []
            keep_opens = []
            n = len(self._opens)
            i = 0
            while i < n:
                b = <ProducerBatch>PyList_GET_ITEM(self._opens, i)
                i += 1
                if not b._open:
                    continue   # closed since: in the ready list, purged here
                if flush or now_ms - b.created_ms >= linger_ms:
                    if only is None or (b.topic, b.partition) in only:
                        take_open.append(b)
                    else:
                        keep_opens.append(b)
                elif only is None:
                    # created_ms never decreases along the list: the rest are younger.
                    keep_opens.append(b)
                    keep_opens.extend(self._opens[i:])
                    break
                else:
                    keep_opens.append(b)
            if v == self._version:
                break   # no other thread ran during the allocations above
        # ---- GIL-atomic commit ----
        # The old lists stay referenced until the end, so freeing them (and
        # anything only they held) happens after the commit.
        old_ready = self._ready
        old_opens = self._opens
        self._ready = keep_ready
        self._opens = keep_opens
        for x in take_open:
            b = <ProducerBatch>x
            t = b._ts
            b._open = False
            t.open[b.partition] = None
            self._open_count -= 1
            if t.sticky == b.partition:
                t.last_sticky = t.sticky
                t.sticky = -1
        self._version += 1
        if take_open:
            take_ready.extend(take_open)
        return take_ready

    def next_linger_deadline(self, linger_ms=None):
        """When the oldest open batch's linger expires (ms, the clock of
        created_ms), or -1 if no batch is open. linger_ms defaults to the one
        given to the last drain()."""
        cdef int64_t linger = self._linger_ms if linger_ms is None else <int64_t>linger_ms
        cdef Py_ssize_t i = 0, n = len(self._opens)
        cdef ProducerBatch b
        while i < n:
            b = <ProducerBatch>PyList_GET_ITEM(self._opens, i)
            if b._open:
                break
            i += 1
        if i:
            del self._opens[:i]   # closed batches only: no state change
        if i == n:
            return -1
        return b.created_ms + linger

    def has_ready(self):
        """Whether a closed (full) batch waits to be drained."""
        return len(self._ready) > 0

    def pending_count(self):
        """Batches not yet drained (closed and open)."""
        return len(self._ready) + self._open_count

    def pooled_bytes(self):
        """Bytes of freed batch buffers kept for the next batches (at most half
        of buffer_memory)."""
        return self._mem._pool_bytes

    def trim_pool(self):
        """Free the kept buffers (the Producer's close)."""
        self._mem.trim()

    def buffered_bytes(self):
        """Bytes of batches not yet released (what buffer_memory limits)."""
        return self._mem.used

    def abort_all(self, exc):
        """Fail and release every batch not drained (close with timeout 0).
        Returns how many batches were failed."""
        cdef list victims
        cdef _TopicState t
        cdef ProducerBatch b
        cdef uint64_t v
        empty_ready = []
        empty_opens = []
        while True:
            v = self._version
            victims = list(self._ready)
            for t in self._topics.values():
                for x in t.open:
                    if x is not None:
                        victims.append(x)
            if v == self._version:
                break
        # ---- GIL-atomic commit ----
        old_ready = self._ready
        old_opens = self._opens
        self._ready = empty_ready
        self._opens = empty_opens
        self._open_count = 0
        for t in self._topics.values():
            for p in range(t.count):
                t.open[p] = None
            t.sticky = -1
        for x in victims:
            (<ProducerBatch>x)._open = False
        self._version += 1
        # ---- callbacks after the state is consistent ----
        for x in victims:
            b = <ProducerBatch>x
            b.fail(exc)
            b.release()
        return len(victims)

    def __repr__(self):
        return (f"RecordAccumulator(batch_size={self._batch_size}, buffer_memory={self._buffer_memory}, "
                f"pending={self.pending_count()}, buffered_bytes={self._mem.used})")


@cython.final
cdef class SendPath:
    """Producer.send in C: the accumulator's append, and the Producer's slow
    path (metadata not known yet, buffer_memory full) when append raises. A
    Python method around append cost about as much as append itself; the
    Producer installs this object's bound send over its own method.

    After close(), send calls refuse() (which raises) instead, also through
    a bound send taken before.

    Thread-safety: that of RecordAccumulator.append (GIL-atomic)."""
    cdef RecordAccumulator _acc
    cdef object _slow
    cdef object _refuse
    cdef object _headers_for
    cdef bint _closed

    def __cinit__(self, RecordAccumulator acc not None, object slow, object refuse, object headers_for=None):
        # headers_for(headers, deliver_at, priority): the headers a send with
        # deliver_at or priority carries (pylog/producer/delivery_headers.py).
        self._acc = acc
        self._slow = slow
        self._refuse = refuse
        self._headers_for = headers_for

    def close(self):
        self._closed = True

    def send(self, str topic, value=None, key=None, partition=None, timestamp=None, headers=None,
             on_delivery=None, *, deliver_at=None, priority=None):
        if self._closed:
            return self._refuse()
        if deliver_at is not None or priority is not None:
            headers = self._headers_for(headers, deliver_at, priority)
        try:
            return self._acc.append(topic, -1 if partition is None else partition, key, value,
                                    timestamp, headers, on_delivery)
        except (NeedMetadata, BufferFull) as e:
            return self._slow(e, topic, partition, key, value, timestamp, headers, on_delivery)
