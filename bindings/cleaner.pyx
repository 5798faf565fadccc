# The log cleaner's native parts (engine/cleaner.c): the offset map and the
# per-segment walks. Python work happens per compressed batch only (the codecs
# are Python's: inflate, then compress what stays); everything per record is C.
# pylog/log/cleaner.py drives them.
from cpython.bytearray cimport PyByteArray_AS_STRING


def xxhash64(data, uint64_t seed=0):
    """XXH64 of data (any bytes-like object)."""
    cdef const uint8_t[::1] view = data
    cdef size_t n = view.shape[0]
    return pl_xxhash64(&view[0] if n else NULL, n, seed)


@cython.final
cdef class OffsetMap:
    """Key hash -> latest offset, in one anonymous mapping of 16-byte slots
    sized from a memory bound (log.cleaner.dedupe.buffer.size) and filled to
    load_factor (log.cleaner.io.buffer.load.factor).

    Thread-safety: none; one cleaning at a time uses a map (the cleaner
    thread that owns it)."""
    cdef pl_offset_map m

    def __cinit__(self, int64_t memory_bytes, double load_factor=0.9):
        check(pl_offset_map_init(&self.m, memory_bytes, load_factor), "offset map")

    def __dealloc__(self):
        pl_offset_map_free(&self.m)

    bytes_per_entry = PL_OFFSET_MAP_SLOT_BYTES

    @property
    def slots(self):
        return self.m.nslots

    @property
    def entries(self):
        return self.m.entries

    @property
    def max_entries(self):
        return self.m.max_entries

    @property
    def memory_bytes(self):
        return self.m.mapped_bytes

    @property
    def latest_offset(self):
        return self.m.latest_offset

    @latest_offset.setter
    def latest_offset(self, int64_t value):
        self.m.latest_offset = value

    @property
    def probes_per_lookup(self):
        return self.m.probes / self.m.lookups if self.m.lookups else 0.0

    def clear(self):
        # Dropping a used map's pages (madvise over up to 2 GiB) takes
        # milliseconds: not while holding the GIL the event loop needs.
        with nogil:
            pl_offset_map_clear(&self.m)

    def put(self, key, int64_t offset):
        """False when the map is full and key is new."""
        cdef const uint8_t[::1] view = key
        cdef size_t n = view.shape[0]
        return pl_offset_map_put(&self.m, pl_offset_map_hash(&view[0] if n else NULL, n), offset) == PL_OK

    def get(self, key):
        """The key's offset, or -1."""
        cdef const uint8_t[::1] view = key
        cdef size_t n = view.shape[0]
        return pl_offset_map_get(&self.m, pl_offset_map_hash(&view[0] if n else NULL, n))


@cython.final
cdef class Cleaning:
    """One cleaning round's state (engine/cleaner.h): producers whose last
    batch stays, aborted transactions, the counters. now_ms, delete_retention_ms
    and upper_bound (the first uncleanable offset) are fixed for the round.

    Thread-safety: none; the cleaner thread running the round owns it. Every
    C walk (a segment's map or filter pass, an inflated batch's) runs without
    the GIL, so the event loop is never kept waiting on a walk; the GIL is
    held only between walks (the codecs, handing output to the sink)."""
    cdef pl_cleaner *c
    cdef bytearray _out
    cdef int64_t _max_inflated

    def __cinit__(self, int64_t now_ms, int64_t delete_retention_ms, int64_t upper_bound,
                  int64_t max_inflated=-1):
        check(pl_cleaner_new(&self.c, now_ms, delete_retention_ms, upper_bound), "cleaner")
        self._out = bytearray(1 << 20)
        self._max_inflated = _codecs.READ_MAX_INFLATED if max_inflated < 0 else max_inflated

    def __dealloc__(self):
        pl_cleaner_free(self.c)

    def note_producers(self, data):
        """Note each producer's last batch from the whole batches of data (a
        segment's bytes; call for every segment of the log, oldest first)."""
        cdef const uint8_t[::1] view = data
        cdef size_t n = view.shape[0]
        cdef int rc = PL_OK
        if n:
            with nogil:
                rc = pl_cleaner_note_producers(self.c, &view[0], n)
        check(rc, "cleaner: producer walk")

    def set_producer(self, int64_t producer_id, int64_t last_data_offset, int16_t epoch):
        check(pl_cleaner_set_producer(self.c, producer_id, last_data_offset, epoch), "cleaner")

    def set_aborted(self, triples):
        """[(producer_id, first_offset, last_offset)]: the aborted transactions
        of the cleaned range (from the .txnindex files)."""
        cdef Py_ssize_t n = len(triples), i
        cdef int64_t *buf = <int64_t *>malloc(<size_t>(3 * n + 1) * sizeof(int64_t))
        if buf == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                buf[3 * i], buf[3 * i + 1], buf[3 * i + 2] = triples[i]
            check(pl_cleaner_set_aborted(self.c, buf, <size_t>n), "cleaner")
        finally:
            free(buf)

    def set_upper_bound(self, int64_t upper_bound):
        pl_cleaner_set_upper_bound(self.c, upper_bound)

    def reset_txns(self):
        pl_cleaner_reset_txns(self.c)

    def map_segment(self, OffsetMap omap, data, int64_t start_offset):
        """Add the keys of data's records at or past start_offset to omap.
        True when the map filled up (its latest_offset says how far it got)."""
        cdef const uint8_t[::1] view = data
        cdef size_t n = view.shape[0], pos = 0
        cdef int rc = PL_OK, status = PL_CLEAN_DONE
        cdef int64_t ppos, ptotal
        cdef int codec
        cdef const uint8_t[::1] inflated
        cdef size_t n_in
        if n == 0:
            return False
        while True:
            with nogil:
                rc = pl_cleaner_map_walk(self.c, &omap.m, &view[0], n, &pos, start_offset, &status)
            check(rc, "cleaner: map walk", pos)
            if status != PL_CLEAN_INFLATE:
                return status == PL_CLEAN_FULL
            pl_cleaner_pending(self.c, &ppos, &ptotal, &codec)
            raw = _codecs.decompress(codec, view[ppos + PL_BATCH_HEADER_SIZE:ppos + ptotal], self._max_inflated)
            inflated = raw
            n_in = len(raw)
            with nogil:
                rc = pl_cleaner_map_inflated(self.c, &omap.m, &inflated[0] if n_in else NULL, n_in, &status)
            check(rc, "cleaner: map walk", ppos)
            if status == PL_CLEAN_FULL:
                return True

    def filter_segment(self, OffsetMap omap, data, sink):
        """Copy what stays of data's batches, calling sink(view) with whole
        output batches (about 1 MiB at a time; the view is valid during the call)."""
        cdef const uint8_t[::1] view = data
        cdef size_t n = view.shape[0], pos = 0, out_len = 0, cap, need
        cdef int rc = PL_OK, status = PL_CLEAN_DONE, decision
        cdef int64_t ppos, ptotal
        cdef int codec
        cdef uint8_t[::1] out = self._out
        cdef const uint8_t[::1] inflated
        cdef const uint8_t[::1] packed_view
        cdef size_t n_in, scratch_len
        cdef uint8_t *scratch_buf
        if n == 0:
            return
        while True:
            cap = out.shape[0]
            with nogil:
                rc = pl_cleaner_filter_walk(self.c, &omap.m, &view[0], n, &pos, &out[0], cap, &out_len, &status)
            check(rc, "cleaner: filter walk", pos)
            if status == PL_CLEAN_DONE:
                break
            if status == PL_CLEAN_OUT_FULL:
                if out_len:
                    sink(memoryview(self._out)[:out_len])
                    out_len = 0
                need = pl_cleaner_out_needed(self.c)
                if need > cap:
                    self._out = bytearray(need)
                    out = self._out
                continue
            # A compressed batch: inflate, judge in C, compress what stays.
            if out_len:
                sink(memoryview(self._out)[:out_len])
                out_len = 0
            pl_cleaner_pending(self.c, &ppos, &ptotal, &codec)
            raw = _codecs.decompress(codec, view[ppos + PL_BATCH_HEADER_SIZE:ppos + ptotal], self._max_inflated)
            inflated = raw
            n_in = len(raw)
            scratch = bytearray(n_in + 10 * (n_in // 7 + 1) + PL_BATCH_HEADER_SIZE)
            out2 = memoryview(scratch)
            scratch_buf = <uint8_t *>PyByteArray_AS_STRING(scratch)
            scratch_len = len(scratch)
            with nogil:
                rc = pl_cleaner_filter_inflated(self.c, &omap.m, &inflated[0] if n_in else NULL, n_in,
                                                scratch_buf, scratch_len, &out_len, &decision)
            check(rc, "cleaner: filter walk", ppos)
            if decision == PL_KEEP_ORIGINAL:
                sink(view[ppos:ppos + ptotal])
            elif decision == PL_KEEP_EMPTY:
                sink(out2[:out_len])
            elif decision == PL_KEEP_REENCODE:
                packed = _codecs.compress(codec, out2[:out_len])
                packed_view = packed
                sealed = bytearray(len(packed) + PL_BATCH_HEADER_SIZE)
                check(pl_cleaner_seal_pending(self.c, &packed_view[0] if len(packed) else NULL, len(packed),
                                              <uint8_t *>PyByteArray_AS_STRING(sealed), len(sealed), &out_len),
                      "cleaner: seal")
                sink(memoryview(sealed))
            out_len = 0
        if out_len:
            sink(memoryview(self._out)[:out_len])

    def take_retained_aborted(self):
        """Numbers (positions in set_aborted's list) of the aborted transactions
        whose ABORT marker was kept with records of theirs seen since the last call."""
        cdef int64_t buf[256]
        cdef size_t k
        found = []
        while True:
            k = pl_cleaner_take_retained_aborted(self.c, buf, 256)
            found.extend(buf[i] for i in range(k))
            if k < 256:
                return found

    def stats(self):
        cdef pl_cleaner_stats s
        pl_cleaner_get_stats(self.c, &s)
        return s
