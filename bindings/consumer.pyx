# Consumer side: the records field of a Fetch response -> ConsumerRecords, in
# one native pass (the semantics of pylog/client/records.py: consumed_records
# and next_fetch_offset). Keys and values are zero-copy views of the response
# (or of the inflated records of a compressed batch).

cdef extern from "pl_common.h" nogil:
    uint32_t pl_load_be32(const uint8_t *p)


@cython.final
@cython.freelist(256)
@cython.no_gc
cdef class ConsumerRecord:
    """One fetched record. key and value are read-only views (memoryview) of
    the fetch response, or of a compressed batch's inflated records, or None;
    headers a tuple of (str, view or None). timestamp_type is 0 (CreateTime) or
    1 (LogAppendTime: timestamp is the batch's max_timestamp); leader_epoch is
    the batch's partition_leader_epoch. Immutable once made; safe to share
    between threads. Not tracked by the cyclic GC (it cannot be part of a
    cycle). Copy with bytes() to keep a key or value without the response."""
    cdef readonly str topic
    cdef readonly int32_t partition
    cdef readonly int64_t offset
    cdef readonly int64_t timestamp
    cdef readonly int32_t timestamp_type
    cdef readonly object key
    cdef readonly object value
    cdef readonly tuple headers
    cdef readonly int32_t leader_epoch
    cdef int16_t _delivery_count     # 0: not a share-group delivery

    @property
    def delivery_count(self):
        """How many times a share group has delivered this record (KIP-932:
        1 the first time); None for a record not read by a share consumer."""
        return None if self._delivery_count == 0 else self._delivery_count

    @property
    def serialized_key_size(self):
        return -1 if self.key is None else len(self.key)

    @property
    def serialized_value_size(self):
        return -1 if self.value is None else len(self.value)

    def __repr__(self):
        return (f"ConsumerRecord(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
                f"timestamp={self.timestamp}, timestamp_type={self.timestamp_type}, "
                f"key={_short(self.key)}, value={_short(self.value)}, "
                f"headers={_plain_headers(self.headers)!r}, leader_epoch={self.leader_epoch})")

    def __eq__(self, other):
        if not isinstance(other, ConsumerRecord):
            return NotImplemented
        cdef ConsumerRecord o = other
        return (self.offset == o.offset and self.partition == o.partition and self.topic == o.topic
                and self.timestamp == o.timestamp and self.timestamp_type == o.timestamp_type
                and self.leader_epoch == o.leader_epoch and self.key == o.key
                and self.value == o.value and self.headers == o.headers)

    __hash__ = None


cdef _DecodedBatch _fetched_batch(object mv, const uint8_t *ptr, Py_ssize_t pos, pl_batch_header *h,
                                  int64_t max_inflated):
    """decode_batch's record location, without its CRC check: decode_fetched
    checked the CRC already (or was told not to)."""
    cdef _DecodedBatch b = _batch_from_header(h)
    cdef int codec = h.attributes & PL_ATTR_COMPRESSION_MASK
    cdef Py_ssize_t total = h.batch_length + PL_BATCH_LOG_OVERHEAD
    if codec == 0:
        # The whole response is the base: every key and value is a view of it.
        b.mv = mv
        b.base = ptr
        b.rec_start = pos + PL_BATCH_HEADER_SIZE
        b.rec_len = total - PL_BATCH_HEADER_SIZE
    else:
        raw = _inflate(codec, mv[pos + PL_BATCH_HEADER_SIZE:pos + total], max_inflated, None, pos)
        b.mv = memoryview(raw)
        b.base = <const uint8_t *>PyBytes_AS_STRING(raw)
        b.rec_start = 0
        b.rec_len = len(raw)
    return b


cdef bint _is_abort_marker(object mv, const uint8_t *ptr, Py_ssize_t pos, pl_batch_header *h,
                           int64_t max_inflated) except -1:
    """Whether the control batch at pos holds an ABORT marker: its first
    record's key is int16 version + int16 type 0 (KAFKA-NOTES §2.4)."""
    cdef _DecodedBatch b
    cdef pl_record_out r
    cdef int32_t decoded = 0
    cdef const uint8_t *key
    if h.records_count < 1:
        return False
    b = _fetched_batch(mv, ptr, pos, h, max_inflated)
    if pl_records_decode(b.base + b.rec_start, <size_t>b.rec_len, 1, &r, &decoded) != PL_OK or decoded < 1 \
            or r.key_len < 4:
        return False
    key = b.base + b.rec_start + r.key_pos
    return key[2] == 0 and key[3] == 0


def set_delivery_count(list records, Py_ssize_t start, Py_ssize_t end, int count):
    """Stamp records[start:end] with a share fetch's delivery count for their
    acquired range (one call per range, not per record)."""
    cdef Py_ssize_t i
    if start < 0 or end > len(records) or count < 1 or count > 32767:
        raise ValueError("set_delivery_count: bad range or count")
    for i in range(start, end):
        (<ConsumerRecord?>records[i])._delivery_count = <int16_t>count


def _first_offset(entry):
    return entry[1]


def decode_fetched(records, str topic, int partition, int64_t fetch_offset, bint check_crcs=True,
                   int max_records=-1, aborted=None, int64_t max_inflated=-1):
    """The data records at or after fetch_offset in a Fetch response's records
    field, and where the next fetch starts: (list of ConsumerRecord,
    next_fetch_offset).

    A batch cut short at the end is dropped (KIP-74); a whole batch failing its
    checks (CRC when check_crcs) raises CorruptRecordError; control batches are
    skipped. next_fetch_offset is one past the last whole batch, never below
    fetch_offset; when max_records (>= 0) stops the decoding before the data
    records run out, it is one past the last record returned.

    aborted: a read_committed fetch's aborted_transactions, as (producer_id,
    first_offset) pairs. A transactional batch of a producer whose aborted
    transaction began at or before the batch's last offset is dropped, until
    that producer's ABORT marker (the Java consumer's rule), per batch.

    A compressed batch inflates to at most max_inflated bytes (-1:
    codecs.READ_MAX_INFLATED), else CorruptRecordError."""
    cdef const uint8_t[::1] view
    cdef const uint8_t *ptr
    cdef Py_ssize_t n, pos = 0, total, rest
    cdef pl_batch_header h
    cdef int rc
    cdef int32_t length, ts_type, i, decoded
    cdef int64_t next_offset = fetch_offset, off, last_returned = -1
    cdef list out = []
    cdef _DecodedBatch b
    cdef pl_record_out *rs = NULL
    cdef pl_record_out *r
    cdef int32_t rs_cap = 0
    cdef Record rec
    cdef ConsumerRecord cr
    cdef bint stopped = False
    cdef list pending = None          # aborted transactions by first offset
    cdef Py_ssize_t next_aborted = 0, n_aborted = 0
    cdef set aborted_pids = None      # producers whose batches are dropped now
    cdef int64_t last
    if records is None:
        return out, fetch_offset
    if aborted:
        pending = sorted(aborted, key=_first_offset)
        n_aborted = len(pending)
        aborted_pids = set()
    mv = memoryview(records)
    if mv.nbytes == 0:
        return out, fetch_offset
    view = mv.cast("B") if mv.format != "B" else mv
    if view.shape[0] != mv.nbytes:
        raise ValueError("records must be a contiguous buffer")
    ptr = &view[0]
    n = view.shape[0]
    try:
        while pos < n and not stopped:
            rc = (pl_batch_validate(ptr + pos, <size_t>(n - pos), &h) if check_crcs
                  else pl_batch_parse_header(ptr + pos, <size_t>(n - pos), &h))
            if rc != PL_OK:
                rest = n - pos
                if rest >= PL_BATCH_LOG_OVERHEAD:
                    length = <int32_t>pl_load_be32(ptr + pos + PL_BATCH_LENGTH_OFFSET)
                    if length >= 0 and length + PL_BATCH_LOG_OVERHEAD <= rest:
                        raise _errors.CorruptRecordError(
                            f"fetched batch at byte {pos}: {pl_strerror(rc).decode()}", position=pos)
                break   # the KIP-74 partial trailing batch
            total = h.batch_length + PL_BATCH_LOG_OVERHEAD
            if aborted_pids is not None and h.producer_id >= 0:
                last = h.base_offset + h.last_offset_delta
                while next_aborted < n_aborted and pending[next_aborted][1] <= last:
                    aborted_pids.add(pending[next_aborted][0])
                    next_aborted += 1
                if h.attributes & PL_ATTR_CONTROL:
                    if h.producer_id in aborted_pids and _is_abort_marker(mv, ptr, pos, &h, max_inflated):
                        aborted_pids.discard(h.producer_id)
                elif (h.attributes & PL_ATTR_TRANSACTIONAL) and h.producer_id in aborted_pids:
                    next_offset = last + 1
                    pos += total
                    continue
            if (h.attributes & PL_ATTR_CONTROL) or h.base_offset + h.last_offset_delta < fetch_offset \
                    or h.records_count == 0:
                next_offset = h.base_offset + h.last_offset_delta + 1
                pos += total
                continue
            b = _fetched_batch(mv, ptr, pos, &h, max_inflated)
            _check_count_fits(b, "fetched batch", pos)
            if b.count > rs_cap:
                free(rs)
                rs = <pl_record_out *>malloc(b.count * sizeof(pl_record_out))
                if rs == NULL:
                    rs_cap = 0
                    raise MemoryError()
                rs_cap = b.count
            rc = pl_records_decode(b.base + b.rec_start, <size_t>b.rec_len, b.count, rs, &decoded)
            if rc != PL_OK:
                check(rc, None, pos)
            ts_type = 1 if h.attributes & PL_ATTR_LOG_APPEND_TIME else 0
            for i in range(decoded):
                r = &rs[i]
                off = b.base_offset + r.offset_delta
                if off < fetch_offset:
                    continue
                if max_records >= 0 and len(out) >= max_records:
                    stopped = True
                    break
                # _make gives the key, value and header views (and the
                # LogAppendTime rule) exactly as every other reader does.
                rec = _make(b, r, b.rec_start)
                cr = ConsumerRecord.__new__(ConsumerRecord)
                cr.topic = topic
                cr.partition = partition
                cr.offset = off
                cr.timestamp = rec.timestamp
                cr.timestamp_type = ts_type
                cr.key = rec.key
                cr.value = rec.value
                cr.headers = rec.headers
                cr.leader_epoch = h.partition_leader_epoch
                out.append(cr)
                last_returned = off
            if not stopped:
                next_offset = h.base_offset + h.last_offset_delta + 1
                pos += total
    finally:
        free(rs)
    if stopped:
        next_offset = last_returned + 1 if last_returned >= 0 else fetch_offset
    return out, next_offset if next_offset > fetch_offset else fetch_offset
