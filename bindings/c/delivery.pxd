from libc.stdint cimport int32_t, int64_t, uint8_t

cdef extern from "delivery.h" nogil:
    enum:
        PL_HEADER_FIND_MAX_KEYS
    ctypedef struct pl_header_hit:
        int32_t offset_delta
        int32_t key
        int64_t timestamp_delta
        int64_t value
    int pl_records_find_headers(const uint8_t *buf, size_t len, int32_t count, const uint8_t *const *keys,
                                const int32_t *key_lens, int nkeys, const uint8_t *prefix, size_t prefix_len,
                                pl_header_hit *out, int32_t cap, int32_t *found)
    int pl_batch_cut(const uint8_t *batch, size_t len, const int64_t *ranges, int32_t nranges, int check_crc,
                     uint8_t *out, size_t out_cap, size_t *out_len)
