# Records: the Record type, batch building (in C, one call per batch) and batch
# decoding. Values and keys of uncompressed batches are zero-copy memoryview
# slices of a pinned FetchSlice; compressed batches decode from their inflated bytes.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.object cimport PyObject
from cpython.memoryview cimport PyMemoryView_FromObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME

from pylog import codecs as _codecs

cdef extern from "pyview.h":
    object pl_subview(object base, Py_ssize_t start, Py_ssize_t length)
    int pl_narrow(object view, object base, Py_ssize_t start, Py_ssize_t length)

cdef extern from *:
    void __builtin_prefetch(const void *addr) nogil

cdef int64_t now_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000


@cython.final
@cython.freelist(128)
@cython.no_gc
cdef class Record:
    """One record: offset, timestamp, key, value, headers.

    key and value are read-only zero-copy views (memoryview) or None; headers is a
    tuple of (str, view or None) pairs. Records are not tracked by the cyclic GC
    (they cannot be part of a cycle), which keeps large scans cheap. A view of a stored batch keeps its segment pinned:
    the log refuses truncate and close while it is alive (copy with bytes() to keep).
    """
    cdef readonly int64_t offset
    cdef readonly int64_t timestamp
    cdef readonly object key
    cdef readonly object value
    cdef readonly tuple headers

    def __repr__(self):
        return (f"Record(offset={self.offset}, timestamp={self.timestamp}, key={_short(self.key)}, "
                f"value={_short(self.value)}, headers={_plain_headers(self.headers)!r})")

    def __eq__(self, other):
        if not isinstance(other, Record):
            return NotImplemented
        cdef Record o = other
        return (self.offset == o.offset and self.timestamp == o.timestamp and self.key == o.key
                and self.value == o.value and self.headers == o.headers)

    __hash__ = None

    def __reduce__(self):
        return (_make_record, (self.offset, self.timestamp,
                               None if self.key is None else bytes(self.key),
                               None if self.value is None else bytes(self.value),
                               tuple((k, None if v is None else bytes(v)) for k, v in self.headers)))


def _short(v):
    """A key or value for a repr: bytes, cut after 40."""
    if v is None:
        return "None"
    b = bytes(v)
    return repr(b if len(b) <= 40 else b[:40] + b"...")


def _plain_headers(headers):
    return [(k, None if v is None else bytes(v)) for k, v in headers]


def _make_record(offset, timestamp, key, value, headers):
    cdef Record r = Record.__new__(Record)
    r.offset = offset
    r.timestamp = timestamp
    r.key = key
    r.value = value
    r.headers = tuple(headers)
    return r


# ---- building ----

@cython.final
cdef class _Scratch:
    """A growable malloc'd byte buffer reused across builds (one per segment)."""
    cdef uint8_t *buf
    cdef size_t cap

    def __dealloc__(self):
        free(self.buf)

    cdef uint8_t *reserve(self, size_t n) except NULL:
        cdef uint8_t *p
        if n > self.cap:
            p = <uint8_t *>realloc(self.buf, n)
            if p == NULL:
                raise MemoryError()
            self.buf = p
            self.cap = n
        return self.buf


cdef inline int _bytes_field(object v, const uint8_t **ptr, int32_t *length, list keep) except -1:
    """Point at the bytes of v (bytes fast path; any buffer is copied once)."""
    if v is None:
        ptr[0] = NULL
        length[0] = -1
        return 0
    if not PyBytes_CheckExact(v):
        if isinstance(v, str):
            raise TypeError("record keys and values are bytes-like, not str (encode it first)")
        v = bytes(v)
        keep.append(v)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(v)
    if n > 0x7FFFFFFF:
        raise _errors.RecordTooLargeError("a key or value is over 2 GiB")
    ptr[0] = <const uint8_t *>PyBytes_AS_STRING(v)
    length[0] = <int32_t>n
    return 0


cdef int _fill_headers(object hdrs, pl_header_in *out, list keep) except -1:
    cdef int32_t j = 0
    for item in hdrs:
        k, v = item
        if isinstance(k, str):
            k = (<str>k).encode("utf-8")
            keep.append(k)
        if k is None:
            raise TypeError("header keys are never None")
        _bytes_field(k, &out[j].key, &out[j].key_len, keep)
        _bytes_field(v, &out[j].value, &out[j].value_len, keep)
        j += 1
    return 0


cdef pl_header_in *_record_headers(pl_record_in *rec, object headers, pl_header_in *hbuf,
                                   list keep) except NULL:
    """Point rec at its headers: in hbuf (8 entries) when they fit, else in a
    malloc'd array the caller frees when it is not hbuf. Returns the array."""
    cdef Py_ssize_t nh = len(headers)
    cdef pl_header_in *hdrs = hbuf
    if nh > 8:
        hdrs = <pl_header_in *>malloc(nh * sizeof(pl_header_in))
        if hdrs == NULL:
            raise MemoryError()
    try:
        _fill_headers(headers, hdrs, keep)
    except BaseException:
        if hdrs != hbuf:
            free(hdrs)
        raise
    rec.headers = hdrs
    rec.header_count = <int32_t>nh
    return hdrs


cdef Py_ssize_t build_batch(_Scratch scratch, object values, object keys, object headers,
                            object timestamps, int codec, int32_t leader_epoch,
                            int64_t *max_ts_out) except -1:
    """Encode one batch (base offset 0) into scratch; return its length."""
    values = PySequence_Fast(values, "values must be a sequence")
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(values), i, total_headers = 0, hpos = 0
    cdef PyObject **vitems = PySequence_Fast_ITEMS(values)
    if n == 0:
        raise ValueError("a batch needs at least one record")
    if n > 0x7FFFFFFF:
        raise ValueError("too many records for one batch")
    if keys is not None and len(keys) != n:
        raise ValueError("keys and values differ in length")
    if timestamps is not None and len(timestamps) != n:
        raise ValueError("timestamps and values differ in length")
    if headers is not None:
        if len(headers) != n:
            raise ValueError("headers and values differ in length")
        for hl in headers:
            if hl:
                total_headers += len(hl)
    cdef list keep = []
    cdef pl_record_in *recs = <pl_record_in *>malloc(n * sizeof(pl_record_in))
    cdef pl_header_in *hdrs = NULL
    cdef int64_t ts, base_ts, max_ts, now
    cdef size_t rsize, total
    cdef uint8_t *out
    cdef pl_batch_header h
    if recs == NULL:
        raise MemoryError()
    try:
        if total_headers:
            hdrs = <pl_header_in *>malloc(total_headers * sizeof(pl_header_in))
            if hdrs == NULL:
                raise MemoryError()
        now = now_ms()
        base_ts = now if timestamps is None else <int64_t>timestamps[0]
        max_ts = base_ts
        for i in range(n):
            _bytes_field(<object>vitems[i], &recs[i].value, &recs[i].value_len, keep)
            if keys is None:
                recs[i].key = NULL
                recs[i].key_len = -1
            else:
                _bytes_field(keys[i], &recs[i].key, &recs[i].key_len, keep)
            if timestamps is None:
                ts = now
            else:
                ts = timestamps[i]
                if ts > max_ts:
                    max_ts = ts
            recs[i].timestamp_delta = ts - base_ts
            recs[i].header_count = 0
            recs[i].headers = NULL
            if headers is not None:
                hl = headers[i]
                if hl:
                    recs[i].headers = hdrs + hpos
                    recs[i].header_count = <int32_t>len(hl)
                    _fill_headers(hl, hdrs + hpos, keep)
                    hpos += len(hl)
        rsize = pl_records_size(recs, n)
        h.base_offset = 0
        h.batch_length = 0
        h.partition_leader_epoch = leader_epoch
        h.magic = 2
        h.crc = 0
        h.attributes = codec
        h.last_offset_delta = <int32_t>(n - 1)
        h.base_timestamp = base_ts
        h.max_timestamp = max_ts
        h.producer_id = -1
        h.producer_epoch = -1
        h.base_sequence = -1
        h.records_count = <int32_t>n
        if codec == 0:
            total = PL_BATCH_HEADER_SIZE + rsize
            out = scratch.reserve(total)
            pl_records_encode(out + PL_BATCH_HEADER_SIZE, recs, n)
        else:
            raw = bytearray(rsize)
            pl_records_encode(<uint8_t *><char *>raw, recs, n)
            packed = _codecs.compress(codec, raw)
            total = PL_BATCH_HEADER_SIZE + len(packed)
            out = scratch.reserve(total)
            memcpy(out + PL_BATCH_HEADER_SIZE, PyBytes_AS_STRING(packed), len(packed))
        if total > 0x7FFFFFFF:
            raise _errors.RecordTooLargeError("batch over 2 GiB")
        pl_batch_write_header(out, &h)
        pl_batch_seal(out, total)
        max_ts_out[0] = max_ts
        return <Py_ssize_t>total
    finally:
        free(recs)
        free(hdrs)


cdef Py_ssize_t build_one(_Scratch scratch, object value, object key, object headers,
                          object timestamp, int32_t leader_epoch, int64_t *ts_out) except -1:
    """build_batch for a single record without the lists (the per-record append path)."""
    cdef pl_record_in rec
    cdef pl_header_in hbuf[8]
    cdef pl_header_in *hdrs = hbuf
    cdef list keep = None
    cdef size_t rsize, total
    cdef int64_t ts
    cdef uint8_t *out
    cdef pl_batch_header h
    if PyBytes_CheckExact(value):
        rec.value = <const uint8_t *>PyBytes_AS_STRING(value)
        rec.value_len = <int32_t>PyBytes_GET_SIZE(value)
    else:
        keep = []
        _bytes_field(value, &rec.value, &rec.value_len, keep)
    if key is None:
        rec.key = NULL
        rec.key_len = -1
    else:
        if keep is None:
            keep = []
        _bytes_field(key, &rec.key, &rec.key_len, keep)
    rec.timestamp_delta = 0
    rec.header_count = 0
    rec.headers = NULL
    try:
        if headers:
            if keep is None:
                keep = []
            hdrs = _record_headers(&rec, headers, hbuf, keep)
        ts = now_ms() if timestamp is None else <int64_t>timestamp
        rsize = pl_records_size(&rec, 1)
        total = PL_BATCH_HEADER_SIZE + rsize
        out = scratch.reserve(total)
        h.base_offset = 0
        h.batch_length = 0
        h.partition_leader_epoch = leader_epoch
        h.magic = 2
        h.crc = 0
        h.attributes = 0
        h.last_offset_delta = 0
        h.base_timestamp = ts
        h.max_timestamp = ts
        h.producer_id = -1
        h.producer_epoch = -1
        h.base_sequence = -1
        h.records_count = 1
        pl_batch_write_header(out, &h)
        pl_records_encode(out + PL_BATCH_HEADER_SIZE, &rec, 1)
        pl_batch_seal(out, total)
        ts_out[0] = ts
        return <Py_ssize_t>total
    finally:
        if hdrs != hbuf:
            free(hdrs)


# ---- decoding ----

@cython.final
cdef class _DecodedBatch:
    """A batch whose records were checked and located: mv holds the records
    section starting at rec_start; starts[i] is record i's position in it."""
    cdef object mv
    cdef const uint8_t *base
    cdef Py_ssize_t rec_start
    cdef Py_ssize_t rec_len
    cdef int32_t count
    cdef int32_t *starts
    cdef int64_t base_offset
    cdef int64_t last_offset
    cdef int64_t base_timestamp
    cdef int64_t max_timestamp
    cdef int16_t attributes
    cdef int64_t slot  # its offset-index entry in the segment's slot cache, or -1

    def __dealloc__(self):
        free(self.starts)

    cdef Record record(self, int32_t i, object where):
        cdef pl_record_out r
        cdef int32_t n
        cdef Py_ssize_t p = self.starts[i]
        cdef const uint8_t *at = self.base + self.rec_start + p
        # On a random read the record is a cache miss: start fetching it, and
        # allocate the Record and its value's view while the line arrives.
        __builtin_prefetch(at)
        __builtin_prefetch(at + 64)
        cdef Record rec = Record.__new__(Record)
        cdef object view = PyMemoryView_FromObject(self.mv)
        cdef int rc = pl_records_decode(at, <size_t>(self.rec_len - p), 1, &r, &n)
        if rc != PL_OK:
            check(rc, where)
        return _make(self, &r, p + self.rec_start, rec, view)


cdef Record _make(_DecodedBatch b, pl_record_out *r, Py_ssize_t shift, Record rec=None, object view=None):
    """The Record for r; rec and view, when given, are fresh objects to fill
    (view a PyMemoryView_FromObject(b.mv) for the value)."""
    if rec is None:
        rec = Record.__new__(Record)
    cdef object mv = b.mv
    cdef pl_header_out hbuf[16]
    cdef pl_header_out *hs = hbuf
    cdef int32_t j
    cdef Py_ssize_t kp, vp
    cdef int rc
    rec.offset = b.base_offset + r.offset_delta
    if b.attributes & PL_ATTR_LOG_APPEND_TIME:
        rec.timestamp = b.max_timestamp
    else:
        rec.timestamp = b.base_timestamp + r.timestamp_delta
    if r.key_len >= 0:
        kp = shift + r.key_pos
        rec.key = pl_subview(mv, kp, r.key_len)
    else:
        rec.key = None
    if r.value_len >= 0:
        vp = shift + r.value_pos
        if view is not None and pl_narrow(view, mv, vp, r.value_len) == 0:
            rec.value = view
        else:
            rec.value = pl_subview(mv, vp, r.value_len)
    else:
        rec.value = None
    if r.header_count == 0:
        rec.headers = ()
        return rec
    if r.header_count > 16:
        hs = <pl_header_out *>malloc(r.header_count * sizeof(pl_header_out))
        if hs == NULL:
            raise MemoryError()
    try:
        rc = pl_headers_decode(b.base + shift, <size_t>(b.rec_start + b.rec_len - shift), r.headers_pos,
                               r.header_count, hs)
        if rc != PL_OK:
            check(rc)
        out = []
        for j in range(r.header_count):
            k = PyUnicode_DecodeUTF8(<const char *>b.base + shift + hs[j].key_pos, hs[j].key_len, "replace")
            if hs[j].value_len < 0:
                out.append((k, None))
            else:
                vp = shift + hs[j].value_pos
                out.append((k, pl_subview(mv, vp, hs[j].value_len)))
        rec.headers = tuple(out)
    finally:
        if hs != hbuf:
            free(hs)
    return rec


cdef inline int _check_count_fits(_DecodedBatch b, object where, object position) except -1:
    """Every record holds at least 7 bytes (a length varint and six one-byte
    fields): a records_count the section cannot hold is corrupt, found before
    an array of that many records is allocated on the header's word."""
    if <int64_t>b.count * 7 > b.rec_len:
        raise _errors.CorruptRecordError(
            f"{where or 'batch'}: {b.count} records cannot fit in {b.rec_len} bytes", position=position)
    return 0


cdef _DecodedBatch _batch_from_header(const pl_batch_header *h):
    """A _DecodedBatch with the header's fields; records not located yet."""
    cdef _DecodedBatch b = _DecodedBatch.__new__(_DecodedBatch)
    b.slot = -1
    b.base_offset = h.base_offset
    b.last_offset = h.base_offset + h.last_offset_delta
    b.base_timestamp = h.base_timestamp
    b.max_timestamp = h.max_timestamp
    b.attributes = h.attributes
    b.count = h.records_count
    return b


cdef _DecodedBatch decode_batch(object batch_view, const uint8_t *ptr, Py_ssize_t length,
                                object where, int64_t position, bint locate=True, int64_t max_inflated=-1):
    """Check the CRC of the batch at ptr[0,length) and locate its records.
    batch_view must export exactly those bytes and keep them alive. A
    compressed batch inflates to at most max_inflated bytes (-1:
    codecs.READ_MAX_INFLATED), else CorruptRecordError."""
    cdef pl_batch_header h
    cdef int rc = pl_batch_validate(ptr, <size_t>length, &h)
    if rc != PL_OK:
        check(rc, where, position)
    cdef _DecodedBatch b = _batch_from_header(&h)
    cdef int codec = h.attributes & PL_ATTR_COMPRESSION_MASK
    if codec == 0:
        b.mv = memoryview(batch_view)
        b.base = ptr
        b.rec_start = PL_BATCH_HEADER_SIZE
        b.rec_len = h.batch_length + PL_BATCH_LOG_OVERHEAD - PL_BATCH_HEADER_SIZE
    else:
        raw = _inflate(codec, memoryview(batch_view)[PL_BATCH_HEADER_SIZE:], max_inflated, where, position)
        b.mv = memoryview(raw)
        b.base = <const uint8_t *>PyBytes_AS_STRING(raw)
        b.rec_start = 0
        b.rec_len = len(raw)
    _check_count_fits(b, where, position)
    if b.count > 0 and locate:
        b.starts = <int32_t *>malloc(b.count * sizeof(int32_t))
        if b.starts == NULL:
            raise MemoryError()
        rc = pl_records_positions(b.base + b.rec_start, <size_t>b.rec_len, b.count, b.starts)
        if rc != PL_OK:
            check(rc, where, position)
    return b


cdef bytes _inflate(int codec, object section, int64_t max_inflated, object where, int64_t position):
    """A stored batch's records inflated, bounded (decode_batch); the error
    says which batch."""
    if max_inflated < 0:
        max_inflated = _codecs.READ_MAX_INFLATED
    try:
        return _codecs.decompress(codec, section, max_inflated)
    except _errors.CorruptRecordError as e:
        at = f"the batch at position {position}" if where is None else f"{where}: the batch at position {position}"
        raise _errors.CorruptRecordError(f"{at}: {e}") from e


@cython.final
cdef class _BatchIter:
    """Records (or values) of one decoded batch with start_offset <= offset <
    end_offset, made one at a time: a scan keeps only the record in hand alive,
    so the cyclic GC's young generation stays small (memoryviews are tracked)."""
    cdef _DecodedBatch b
    cdef pl_record_out *rs
    cdef int32_t n, i
    cdef int64_t start_offset, end_offset
    cdef bint values_only

    def __dealloc__(self):
        free(self.rs)

    def __iter__(self):
        return self

    def __next__(self):
        x = self._next()
        if x is _DONE:
            raise StopIteration
        return x

    cdef object _next(self):
        """The next record or value, or _DONE (None is a tombstone's value)."""
        cdef pl_record_out *r
        cdef int64_t off
        while self.i < self.n:
            r = &self.rs[self.i]
            self.i += 1
            off = self.b.base_offset + r.offset_delta
            if off < self.start_offset:
                continue
            if off >= self.end_offset:
                self.i = self.n
                break
            if not self.values_only:
                return _make(self.b, r, self.b.rec_start)
            if r.value_len < 0:
                return None
            return pl_subview(self.b.mv, self.b.rec_start + r.value_pos, r.value_len)
        return _DONE


cdef object _DONE = object()


@cython.final
cdef class Flatten:
    """Iterates over the records of each per-batch iterator that batches yields,
    natively: a long scan costs no Python frame per record, only per batch."""
    cdef object batches
    cdef _BatchIter cur

    def __cinit__(self, batches):
        self.batches = iter(batches)

    def __iter__(self):
        return self

    def __next__(self):
        cdef object x
        while True:
            if self.cur is not None:
                x = self.cur._next()
                if x is not _DONE:
                    return x
                self.cur = None
            self.cur = <_BatchIter?>next(self.batches)  # StopIteration ends the scan


cdef _BatchIter batch_records(_DecodedBatch b, int64_t start_offset, int64_t end_offset, bint values_only,
                              object where):
    """Decode every record of b (bounds-checked, in one C pass) and iterate over
    those in [start_offset, end_offset)."""
    cdef _BatchIter it = _BatchIter.__new__(_BatchIter)
    cdef int rc
    it.b = b
    it.start_offset = start_offset
    it.end_offset = end_offset
    it.values_only = values_only
    if b.count > 0:
        _check_count_fits(b, where, None)
        it.rs = <pl_record_out *>malloc(b.count * sizeof(pl_record_out))
        if it.rs == NULL:
            raise MemoryError()
        rc = pl_records_decode(b.base + b.rec_start, <size_t>b.rec_len, b.count, it.rs, &it.n)
        if rc != PL_OK:
            check(rc, where)
    return it


# The header layout as compiled from engine/batch.h (via c/batch.pxd), so a test
# can check pylog/protocol/batch_layout.py against what the engine really uses.
BATCH_LAYOUT = {
    "BASE_OFFSET_OFFSET": PL_BATCH_BASE_OFFSET_OFFSET,
    "LENGTH_OFFSET": PL_BATCH_LENGTH_OFFSET,
    "PARTITION_LEADER_EPOCH_OFFSET": PL_BATCH_PARTITION_LEADER_EPOCH_OFFSET,
    "MAGIC_OFFSET": PL_BATCH_MAGIC_OFFSET,
    "CRC_OFFSET": PL_BATCH_CRC_OFFSET,
    "ATTRIBUTES_OFFSET": PL_BATCH_ATTRIBUTES_OFFSET,
    "LAST_OFFSET_DELTA_OFFSET": PL_BATCH_LAST_OFFSET_DELTA_OFFSET,
    "BASE_TIMESTAMP_OFFSET": PL_BATCH_BASE_TIMESTAMP_OFFSET,
    "MAX_TIMESTAMP_OFFSET": PL_BATCH_MAX_TIMESTAMP_OFFSET,
    "PRODUCER_ID_OFFSET": PL_BATCH_PRODUCER_ID_OFFSET,
    "PRODUCER_EPOCH_OFFSET": PL_BATCH_PRODUCER_EPOCH_OFFSET,
    "BASE_SEQUENCE_OFFSET": PL_BATCH_BASE_SEQUENCE_OFFSET,
    "RECORDS_COUNT_OFFSET": PL_BATCH_RECORDS_COUNT_OFFSET,
    "RECORDS_OFFSET": PL_BATCH_RECORDS_OFFSET,
    "HEADER_SIZE": PL_BATCH_HEADER_SIZE,
    "LOG_OVERHEAD": PL_BATCH_LOG_OVERHEAD,
    "CRC_START": PL_BATCH_CRC_START,
    "MAGIC": PL_BATCH_MAGIC,
    "MIN_LENGTH": PL_BATCH_MIN_LENGTH,
}


def validate_batches(data):
    """Walk record batches in data checking each CRC: (valid_bytes, batches,
    records, last_offset, stop_error or None)."""
    cdef const uint8_t[::1] view = data
    cdef pl_batches_info info
    if view.shape[0] == 0:
        return (0, 0, 0, -1, None)
    with nogil:
        pl_batches_scan(&view[0], view.shape[0], 1, &info)
    return (info.valid_bytes, info.batches, info.records, info.last_offset,
            None if info.stop_rc == PL_OK else pl_strerror(info.stop_rc).decode())


def encode_batch(values, keys=None, headers=None, timestamps=None, compression=None,
                 int64_t base_offset=0, int32_t leader_epoch=-1):
    """One record batch v2 as bytes (for tools, tests and clients)."""
    cdef _Scratch s = _Scratch()
    cdef int64_t max_ts
    cdef Py_ssize_t n = build_batch(s, values, keys, headers, timestamps,
                                    _codecs.codec_id(compression), leader_epoch, &max_ts)
    pl_batch_set_base_offset(s.buf, base_offset)
    return (<char *>s.buf)[:n]


def decode_batches(data, int64_t max_inflated=-1):
    """Every Record in data (whole batches), copying nothing from data; a
    compressed batch inflates to at most max_inflated bytes (-1:
    codecs.READ_MAX_INFLATED)."""
    cdef const uint8_t[::1] view = data
    cdef Py_ssize_t pos = 0, total, n = view.shape[0]
    cdef pl_batch_header h
    cdef list out = []
    cdef _DecodedBatch b
    mv = memoryview(data)
    while pos < n:
        rc = pl_batch_parse_header(&view[pos], <size_t>(n - pos), &h)
        if rc != PL_OK:
            check(rc, None, pos)
        total = h.batch_length + PL_BATCH_LOG_OVERHEAD
        b = decode_batch(mv[pos:pos + total], &view[pos], total, None, pos, False, max_inflated)
        out.extend(batch_records(b, -1, 0x7FFFFFFFFFFFFFFF, False, None))
        pos += total
    return out


def batch_headers(data):
    """The header of every whole batch in data, without checking CRCs: a list of
    (position, base_offset, last_offset_delta, max_timestamp, producer_id,
    producer_epoch, base_sequence, records_count, attributes). For the broker's
    producer-state checks before an append and its replay of a log on start;
    stops at the first batch that is cut short or unreadable."""
    cdef const uint8_t[::1] view = data
    cdef Py_ssize_t pos = 0, n = view.shape[0]
    cdef pl_batch_header h
    cdef list out = []
    while pos < n:
        if pl_batch_parse_header(&view[pos], <size_t>(n - pos), &h) != PL_OK:
            break
        out.append((pos, h.base_offset, h.last_offset_delta, h.max_timestamp, h.producer_id,
                    h.producer_epoch, h.base_sequence, h.records_count, h.attributes))
        pos += h.batch_length + PL_BATCH_LOG_OVERHEAD
    return out
