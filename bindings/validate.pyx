# Kafka's record validation of produced batches (engine/validate.h), and the
# bounded streaming walk over compressed records sections it and ListOffsets
# share. Included by _engine.pyx.
from c.validate cimport *
from libc.stdlib cimport malloc, free

# Bytes asked of a decompressor at a time: large enough that the per-call cost
# is small against the inflate work, small enough that a bomb never holds more
# than this (plus the one record being assembled) in memory.
_INFLATE_CHUNK = 1 << 18
# Kafka sends every per-record error; pylog keeps the first this many of a
# batch (the count is still exact in the message), so a batch of millions of
# bad records cannot make a response of millions of entries.
_MAX_RECORD_ERRORS = 1000


cdef object _walker_error(int rc, const char *message):
    return _ERROR_CLASSES.get(rc, _errors.PylogError)(message.decode("utf-8", "replace"))


cdef object _record_errors_exception(int rc, pl_record_error *errors, int32_t count, int32_t cap, object topic_partition,
                             int64_t now, int64_t before, int64_t after):
    """Kafka's LogValidator.processRecordErrors: INVALID_TIMESTAMP if any record's
    timestamp failed, else INVALID_RECORD; each error as a (batch_index, message)."""
    cdef int32_t i
    cdef list details = []
    for i in range(min(count, cap)):
        if errors[i].kind == PL_EINVALTS:
            lo = now - before if before <= now - (-(1 << 63)) else -(1 << 63)
            hi = now + after if after <= (1 << 63) - 1 - now else (1 << 63) - 1
            msg = (f"Timestamp {errors[i].timestamp} of message with offset {errors[i].index} is out of range. "
                   f"The timestamp should be within [{lo}, {hi}]")
        else:
            msg = f"Compacted topic cannot accept message without key in topic partition {topic_partition}"
        details.append((errors[i].index, msg))
    if rc == PL_EINVALTS:
        exc = _errors.InvalidTimestampError("One or more records have been rejected due to invalid timestamp")
    else:
        shown = ", ".join(f"RecordError(batchIndex={ix}, message='{m}')" for ix, m in details[:3])
        exc = _errors.InvalidRecordError(
            f"One or more records have been rejected due to {count} record errors in total, and only "
            f"showing the first three errors at most: [{shown}]")
    exc.record_errors = details
    return exc


cdef int _walk_inflated(pl_record_walker *w, int codec, object section, int64_t limit) except -1:
    """Feed the inflated records section (at most limit bytes) to w as a stream.
    Raises RecordTooLargeError past limit, CorruptRecordError if the bytes do not
    inflate, the walker's error for bad records; 0 when the walk reached the end."""
    cdef bytearray buf = bytearray()
    cdef size_t need = 1
    cdef int64_t n
    cdef int64_t total = 0
    cdef const uint8_t[::1] view
    cdef bint eof = False
    stream = _codecs.inflate_stream(codec, section, _INFLATE_CHUNK)
    while True:
        try:
            chunk = next(stream)
        except StopIteration:
            eof = True
            chunk = None
        if chunk is not None:
            total += len(chunk)
            if total > limit:
                raise _errors.RecordTooLargeError(
                    f"the records of a {codec_name(codec)} batch inflate to more than {limit} bytes")
            buf += chunk
            if <size_t>len(buf) < need:
                continue
        if len(buf) == 0:
            n = pl_record_walker_feed(w, NULL, 0, eof, &need)
        else:
            view = buf
            n = pl_record_walker_feed(w, &view[0], <size_t>len(buf), eof, &need)
            view = None
        if n < 0:
            raise _walker_error(<int>n, w.message)
        if w.find_timestamp >= 0 and w.found_delta >= 0:
            return 0  # a search stops at its answer
        if n:
            del buf[:n]
        if eof:
            return 0


def codec_name(int codec):
    return {1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}.get(codec, str(codec))


def validate_produce(data, int64_t now_ms, int64_t before_max_ms, int64_t after_max_ms, bint compacted,
                     int produce_version, int64_t max_inflated, topic_partition=None):
    """Check the records of one partition of a Produce request as Kafka's
    LogValidator does (engine/validate.h); compressed records are inflated as a
    stream of at most max_inflated bytes. Returns data, or a patched copy when
    the batch's max_timestamp had to be set to its records' (Kafka rewrites it).
    Raises CorruptRecordError, InvalidRecordError, InvalidTimestampError,
    UnsupportedCompressionError or RecordTooLargeError (record_errors on the
    exception when records failed one by one)."""
    cdef const uint8_t[::1] view = data
    cdef pl_validate_opts opts
    cdef pl_validate_result res
    cdef pl_record_walker w
    cdef pl_record_error *errors = NULL
    cdef int32_t cap = _MAX_RECORD_ERRORS
    cdef size_t n = view.shape[0]
    cdef int rc
    cdef int64_t max_ts
    opts.now_ms = now_ms
    opts.timestamp_before_max_ms = before_max_ms
    opts.timestamp_after_max_ms = after_max_ms
    opts.compacted = compacted
    opts.produce_version = produce_version
    errors = <pl_record_error *>malloc(cap * sizeof(pl_record_error))
    if errors == NULL:
        raise MemoryError()
    try:
        if n == 0:
            rc = pl_validate_produce(NULL, 0, &opts, errors, cap, &res)
        elif n >= 65536:
            # As Segment.append_batches: large batches are walked without the
            # GIL; for small ones releasing it costs more than the walk.
            with nogil:
                rc = pl_validate_produce(&view[0], n, &opts, errors, cap, &res)
        else:
            rc = pl_validate_produce(&view[0], n, &opts, errors, cap, &res)
        if rc != PL_OK:
            if res.errors_count > 0:
                raise _record_errors_exception(rc, errors, res.errors_count, cap, topic_partition, now_ms,
                                               before_max_ms, after_max_ms)
            raise _walker_error(rc, res.message)
        max_ts = res.max_timestamp
        if res.codec != 0:
            pl_record_walker_init(&w, &res.header, &opts, errors, cap)
            _walk_inflated(&w, res.codec, memoryview(data)[PL_BATCH_HEADER_SIZE:], max_inflated)
            rc = pl_record_walker_verdict(&w)
            if rc != PL_OK:
                raise _record_errors_exception(rc, errors, w.errors_count, cap, topic_partition, now_ms,
                                               before_max_ms, after_max_ms)
            max_ts = w.max_timestamp
    finally:
        free(errors)
    view = None
    if (res.header.attributes & PL_ATTR_LOG_APPEND_TIME) == 0 and max_ts != res.header.max_timestamp:
        # Kafka's in-place path sets the batch's max_timestamp to its records'
        # (the time index is built from it); the CRC covers it, so reseal.
        out = bytearray(data) if memoryview(data).readonly else data
        patch_max_timestamp(out, max_ts)
        return out
    return data


def patch_max_timestamp(buf, int64_t max_timestamp):
    cdef uint8_t[::1] v = buf
    pl_store_be64(&v[PL_BATCH_MAX_TIMESTAMP_OFFSET], <uint64_t>max_timestamp)
    pl_batch_seal(&v[0], <size_t>v.shape[0])


def find_time_inflated(data, int64_t timestamp, int64_t max_inflated, int32_t min_delta=0):
    """In one stored compressed batch (data: its bytes), the (offset_delta,
    timestamp) of the first record with timestamp >= timestamp and offset_delta
    >= min_delta, or None; the records are inflated as a stream of at most
    max_inflated bytes, and the walk stops at the answer."""
    cdef const uint8_t[::1] view = data
    cdef pl_batch_header h
    cdef pl_record_walker w
    check(pl_batch_parse_header(&view[0], <size_t>view.shape[0], &h))
    view = None
    pl_record_walker_init(&w, &h, NULL, NULL, 0)
    w.find_timestamp = timestamp
    w.find_min_delta = min_delta
    _walk_inflated(&w, h.attributes & PL_ATTR_COMPRESSION_MASK, memoryview(data)[PL_BATCH_HEADER_SIZE:],
                   max_inflated)
    if w.found_delta < 0:
        return None
    return (w.found_delta, w.found_timestamp)


def stamp_log_append_time(buf, int64_t now_ms):
    """LogAppendTime on every batch of buf (writable, batches validated):
    engine/batch.h's pl_batches_set_log_append_time, one C walk."""
    cdef uint8_t[::1] v = buf
    cdef size_t n = v.shape[0]
    if n:
        check(pl_batches_set_log_append_time(&v[0], n, now_ms))


def rewrite_batches(data, int target_codec, int64_t log_append_time, int64_t max_inflated):
    """What Kafka's LogValidator does to batches a leader appends, beyond
    validation: with target_codec >= 0 (the topic's compression.type other
    than producer) a batch of another codec is rebuilt with that codec, its
    producer id, epoch, base sequence, transactional bit, base timestamp,
    record count and records kept (the records section moves between codecs
    as it is; its inflation bounded by max_inflated as produce validation
    bounds it); with log_append_time >= 0 every batch gets the LogAppendTime
    bit and that max_timestamp. Control batches keep their codec (Kafka never
    compresses them). Returns (data, rebuilt): data itself when stamped in
    place (a copy first when it is read-only); rebuilt says a batch changed
    size (the caller re-checks max.message.bytes, as Kafka does after a
    rebuild)."""
    cdef const uint8_t[::1] view = data
    cdef size_t n = view.shape[0]
    cdef size_t pos = 0, total
    cdef pl_batch_header h
    cdef list spans = []  # (start, end) of each batch
    cdef int codec
    cdef bint rebuild = False
    while pos < n:
        check(pl_batch_parse_header(&view[pos], n - pos, &h))
        total = <size_t>h.batch_length + PL_BATCH_LOG_OVERHEAD
        codec = h.attributes & PL_ATTR_COMPRESSION_MASK
        if target_codec >= 0 and codec != target_codec and not (h.attributes & PL_ATTR_CONTROL):
            rebuild = True
        spans.append((pos, pos + total))
        pos += total
    view = None
    if not rebuild:
        if log_append_time < 0:
            return data, False  # every batch already has the topic's codec
        out = bytearray(data) if memoryview(data).readonly else data
        stamp_log_append_time(out, log_append_time)
        return out, False
    mv = memoryview(data)
    parts = []
    for start, end in spans:
        parts.append(_rebuild_batch(mv[start:end], target_codec, log_append_time, max_inflated))
    return bytearray().join(parts), True


cdef bytes _rebuild_batch(object batch, int target_codec, int64_t log_append_time, int64_t max_inflated):
    cdef const uint8_t[::1] view = batch
    cdef pl_batch_header h
    check(pl_batch_parse_header(&view[0], <size_t>view.shape[0], &h))
    view = None
    cdef int codec = h.attributes & PL_ATTR_COMPRESSION_MASK
    if codec == target_codec or (h.attributes & PL_ATTR_CONTROL):
        out = bytearray(batch)
        if log_append_time >= 0:
            stamp_log_append_time(out, log_append_time)
        return bytes(out)
    section = batch[PL_BATCH_HEADER_SIZE:]
    if codec != 0:
        section = _codecs.decompress(codec, section, max_inflated)
    payload = _codecs.compress(target_codec, section) if target_codec != 0 else bytes(section)
    h.attributes = <int16_t>((h.attributes & ~(PL_ATTR_COMPRESSION_MASK | PL_ATTR_LOG_APPEND_TIME)) | target_codec)
    if log_append_time >= 0:
        h.attributes = <int16_t>(h.attributes | PL_ATTR_LOG_APPEND_TIME)
        h.max_timestamp = log_append_time
    return _sealed_batch(&h, payload)


def cut_batch(batch, int32_t keep, int64_t max_inflated):
    """The stored batch (its bytes) holding only its first keep records, for a
    truncation inside it: base offset, leader epoch, producer id, epoch, base
    sequence, attributes (codec, timestamp type, transactional) and base
    timestamp kept; count, last offset delta and (CreateTime) max timestamp
    those of the kept records; the records section recompressed with the
    batch's own codec, its inflation bounded by max_inflated. Returns bytes."""
    cdef const uint8_t[::1] view = batch
    cdef pl_batch_header h
    cdef size_t prefix_len = 0
    cdef int64_t max_ts = -1
    cdef const uint8_t[::1] sv
    check(pl_batch_validate(&view[0], <size_t>view.shape[0], &h))
    view = None
    if keep < 1 or keep > h.records_count:
        raise ValueError(f"cannot keep {keep} of a batch of {h.records_count} records")
    cdef int codec = h.attributes & PL_ATTR_COMPRESSION_MASK
    section = memoryview(batch)[PL_BATCH_HEADER_SIZE:PL_BATCH_LOG_OVERHEAD + h.batch_length]
    if codec != 0:
        section = _inflate(codec, section, max_inflated, None, 0)
    sv = section
    check(pl_records_prefix(&sv[0], <size_t>sv.shape[0], h.records_count, keep,
                            h.base_timestamp, &prefix_len, &max_ts))
    sv = None
    kept = section[:prefix_len]
    payload = _codecs.compress(codec, kept) if codec != 0 else bytes(kept)
    h.records_count = keep
    h.last_offset_delta = keep - 1
    if not (h.attributes & PL_ATTR_LOG_APPEND_TIME):
        h.max_timestamp = max_ts
    return _sealed_batch(&h, payload)


cdef bytes _sealed_batch(pl_batch_header *h, bytes payload):
    """h's header over payload (the records section as stored), length and CRC set."""
    cdef Py_ssize_t size = PL_BATCH_HEADER_SIZE + len(payload)
    cdef bytearray out = bytearray(size)
    cdef uint8_t[::1] w = out
    pl_batch_write_header(&w[0], h)
    if len(payload):
        memcpy(&w[PL_BATCH_HEADER_SIZE], <const uint8_t *>payload, len(payload))
    pl_batch_seal(&w[0], <size_t>size)
    w = None
    return bytes(out)
