from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from c.batch cimport pl_batch_header

cdef extern from "validate.h" nogil:
    enum:
        PL_VALIDATE_MESSAGE_SIZE
    ctypedef struct pl_validate_opts:
        int64_t now_ms
        int64_t timestamp_before_max_ms
        int64_t timestamp_after_max_ms
        int compacted
        int produce_version
    ctypedef struct pl_record_error:
        int32_t index
        int32_t kind
        int64_t timestamp
    ctypedef struct pl_record_walker:
        int32_t records_count
        int64_t find_timestamp
        int32_t find_min_delta
        int32_t records
        int32_t errors_count
        int32_t has_timestamp_error
        int64_t max_timestamp
        int32_t found_delta
        int64_t found_timestamp
        uint64_t bytes
        char message[256]
    void pl_record_walker_init(pl_record_walker *w, const pl_batch_header *h, const pl_validate_opts *opts,
                               pl_record_error *errors, int32_t errors_cap)
    int64_t pl_record_walker_feed(pl_record_walker *w, const uint8_t *buf, size_t len, int eof, size_t *need)
    int pl_record_walker_verdict(const pl_record_walker *w)
    ctypedef struct pl_validate_result:
        pl_batch_header header
        int codec
        size_t batch_size
        int64_t max_timestamp
        int32_t errors_count
        int32_t has_timestamp_error
        char message[256]
    int pl_validate_produce(const uint8_t *buf, size_t len, const pl_validate_opts *opts,
                            pl_record_error *errors, int32_t errors_cap, pl_validate_result *out)

cdef extern from "pl_common.h" nogil:
    void pl_store_be64(uint8_t *p, uint64_t v)
