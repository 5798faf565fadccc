from libc.stdint cimport int64_t, uint8_t

cdef extern from "index.h" nogil:
    ctypedef struct pl_index:
        pass
    enum:
        PL_INDEX_OFFSET
        PL_INDEX_TIME
        PL_OFFSET_ENTRY_SIZE
        PL_TIME_ENTRY_SIZE
    int64_t pl_index_entries(const pl_index *ix)
    const uint8_t *pl_index_data(const pl_index *ix)
    void pl_offset_index_lookup2(const pl_index *ix, int64_t target, int64_t *offset, int64_t *position,
                                 int64_t *next_offset, int64_t *next_position, int64_t *next_slot)
    int pl_index_entry(const pl_index *ix, int64_t i, int64_t *a, int64_t *b)
