# Headers that steer share-group delivery (delayed delivery, priority): one C
# walk per batch (engine/delivery.c), nothing per record in Python.
import struct as _struct

def find_headers(data, keys, int64_t max_inflated=-1):
    """The records of the whole batches in data carrying one of keys (bytes,
    at most 8) with a decimal integer value: (hits, end_offset, used) where
    hits is bytes of native int64 quadruples (offset, key index,
    record timestamp, value) in offset order, end_offset the offset after
    the last whole batch walked (-1 if none) and used its end position.
    Control batches are skipped; compressed ones are inflated (to at most
    max_inflated bytes, -1: codecs.READ_MAX_INFLATED). A batch cut short at
    the end stops the walk; one whose records do not parse raises
    CorruptRecordError."""
    cdef const uint8_t[::1] view = data
    cdef Py_ssize_t pos = 0, n = view.shape[0], total
    cdef pl_batch_header h
    cdef int nkeys = len(keys), i, rc, codec
    cdef const uint8_t *kp[PL_HEADER_FIND_MAX_KEYS]
    cdef int32_t kl[PL_HEADER_FIND_MAX_KEYS]
    cdef int32_t found = 0, j, cap
    cdef int64_t end_offset = -1, ts_base
    cdef const uint8_t *sec
    cdef Py_ssize_t sec_len
    cdef const uint8_t[::1] raw_view
    cdef pl_header_hit *hits = NULL
    cdef int64_t *quad
    cdef char *obuf
    cdef Py_ssize_t at
    if nkeys < 1 or nkeys > PL_HEADER_FIND_MAX_KEYS:
        raise ValueError(f"1 to {PL_HEADER_FIND_MAX_KEYS} keys")
    keys = [bytes(k) for k in keys]
    for i in range(nkeys):
        kp[i] = <const uint8_t *>PyBytes_AS_STRING(keys[i])
        kl[i] = <int32_t>PyBytes_GET_SIZE(keys[i])
    prefix = keys[0]
    for k in keys[1:]:
        j = 0
        while j < len(prefix) and j < len(k) and prefix[j] == k[j]:
            j += 1
        prefix = prefix[:j]
    cdef const uint8_t *pp = <const uint8_t *>PyBytes_AS_STRING(prefix)
    cdef size_t plen = <size_t>PyBytes_GET_SIZE(prefix)
    out = bytearray()
    try:
        while pos < n:
            if pl_batch_parse_header(&view[pos], <size_t>(n - pos), &h) != PL_OK:
                break
            total = h.batch_length + PL_BATCH_LOG_OVERHEAD
            end_offset = h.base_offset + h.last_offset_delta + 1
            if h.attributes & PL_ATTR_CONTROL or h.records_count <= 0:
                pos += total
                continue
            codec = h.attributes & PL_ATTR_COMPRESSION_MASK
            if codec == 0:
                sec = &view[pos + PL_BATCH_HEADER_SIZE]
                sec_len = total - PL_BATCH_HEADER_SIZE
            else:
                raw = _inflate(codec, memoryview(data)[pos + PL_BATCH_HEADER_SIZE:pos + total], max_inflated,
                               None, pos)
                raw_view = raw
                sec = &raw_view[0] if len(raw) else NULL
                sec_len = len(raw)
            if h.records_count > sec_len:
                # Every record takes bytes: a count beyond the section is a
                # lie, and must not size an allocation.
                check(PL_ECORRUPT, None, pos)
            cap = h.records_count * nkeys
            hits = <pl_header_hit *>realloc(hits, cap * sizeof(pl_header_hit))
            if hits == NULL:
                raise MemoryError()
            with nogil:
                rc = pl_records_find_headers(sec, <size_t>sec_len, h.records_count, kp, kl, nkeys, pp, plen,
                                             hits, cap, &found)
            if rc != PL_OK:
                check(rc, None, pos)
            if found:
                at = len(out)
                out.extend(bytes(32 * found))
                obuf = out
                quad = <int64_t *>(obuf + at)
                for j in range(found):
                    ts_base = h.max_timestamp if h.attributes & PL_ATTR_LOG_APPEND_TIME else \
                        h.base_timestamp + hits[j].timestamp_delta
                    quad[4 * j] = h.base_offset + hits[j].offset_delta
                    quad[4 * j + 1] = hits[j].key
                    quad[4 * j + 2] = ts_base
                    quad[4 * j + 3] = hits[j].value
            pos += total
    finally:
        free(hits)
    return bytes(out), end_offset, pos


def trim_batch(batch, ranges, int64_t max_inflated=-1):
    """The one stored batch in `batch` (not a control batch, CRC intact) cut
    down to the records whose offsets lie in ranges (ascending, disjoint
    (first, last) pairs): a batch in the form log compaction leaves, its
    records byte for byte as stored (engine/delivery.c pl_batch_cut); b""
    when no record is kept. A compressed batch's records are inflated (to at
    most max_inflated bytes, -1: codecs.READ_MAX_INFLATED) and the cut batch
    is uncompressed: a client reads each batch by its own attributes.
    CorruptRecordError for bytes that fail the batch's checks, ValueError for
    a control batch."""
    cdef const uint8_t[::1] view = batch
    cdef Py_ssize_t n = view.shape[0]
    cdef int32_t nr = len(ranges), i
    cdef size_t out_len = 0
    cdef int rc, check_crc = 1, codec
    cdef pl_batch_header h
    cdef const uint8_t[::1] src = view
    if n == 0:
        check(PL_ETRUNCATED, None, 0)
    check(pl_batch_parse_header(&view[0], <size_t>n, &h), None, 0)
    codec = h.attributes & PL_ATTR_COMPRESSION_MASK
    if codec != 0 and not h.attributes & PL_ATTR_CONTROL:
        # The CRC of the stored bytes first; the records inflated under the
        # same header, compression bits cleared, are then cut without one.
        check(pl_batch_validate(&view[0], <size_t>n, &h), None, 0)
        if h.batch_length + PL_BATCH_LOG_OVERHEAD != n:
            raise ValueError("one whole batch expected")
        raw = _inflate(codec, memoryview(batch)[PL_BATCH_HEADER_SIZE:], max_inflated, None, 0)
        plain = bytearray(PL_BATCH_HEADER_SIZE + len(raw))
        plain[:PL_BATCH_HEADER_SIZE] = memoryview(batch)[:PL_BATCH_HEADER_SIZE]
        plain[PL_BATCH_HEADER_SIZE:] = raw
        _struct.pack_into(">h", plain, PL_BATCH_ATTRIBUTES_OFFSET, h.attributes & ~PL_ATTR_COMPRESSION_MASK)
        _struct.pack_into(">i", plain, PL_BATCH_LENGTH_OFFSET, len(plain) - PL_BATCH_LOG_OVERHEAD)
        src = plain
        n = len(plain)
        check_crc = 0
    cdef int64_t *rs = <int64_t *>malloc(max(nr, 1) * 2 * sizeof(int64_t))
    if rs == NULL:
        raise MemoryError()
    out = bytearray(n)
    cdef uint8_t *o = <uint8_t *><char *>out
    try:
        for i in range(nr):
            rs[2 * i] = ranges[i][0]
            rs[2 * i + 1] = ranges[i][1]
        with nogil:
            rc = pl_batch_cut(&src[0], <size_t>n, rs, nr, check_crc, o, <size_t>n, &out_len)
    finally:
        free(rs)
    check(rc, None, 0)
    del out[out_len:]
    return bytes(out)
