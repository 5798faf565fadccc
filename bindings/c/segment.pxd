from libc.stdint cimport int32_t, int64_t, uint8_t
from c.batch cimport pl_batch_header
from c.index cimport pl_index

cdef extern from "segment.h" nogil:
    ctypedef struct pl_segment:
        pass
    ctypedef struct pl_segment_config:
        int64_t base_offset
        int64_t reserve_bytes
        int64_t index_max_bytes
        int32_t index_interval_bytes
        int32_t write_buffer_bytes
        int writable
        int sealed
    ctypedef struct pl_segment_info:
        int64_t size
        int64_t truncated_bytes
        int64_t batches
        int64_t next_offset
        int stop_rc
        int64_t stop_position
    int pl_segment_open(pl_segment **out, const char *log_path, const char *index_path,
                        const char *time_index_path, const pl_segment_config *cfg)
    int pl_segment_close(pl_segment *s, int trim_indexes)
    int pl_segment_load(pl_segment *s, pl_segment_info *out)
    int pl_segment_recover(pl_segment *s, pl_segment_info *out)
    int pl_segment_append(pl_segment *s, const uint8_t *buf, size_t len, int64_t largest_offset,
                          int64_t max_timestamp, int64_t offset_of_max_timestamp)
    int pl_segment_can_append(const pl_segment *s, size_t len, int64_t largest_offset)
    int pl_segment_flush_buffer(pl_segment *s)
    int pl_segment_sync(pl_segment *s)
    int pl_segment_sync_data(pl_segment *s)
    int pl_segment_bytes(pl_segment *s, int64_t pos, int64_t len, const uint8_t **out)
    int pl_segment_find_batch(pl_segment *s, int64_t target, int64_t *position, pl_batch_header *hdr)
    int pl_segment_find_time(pl_segment *s, int64_t timestamp, int64_t *position, pl_batch_header *hdr)
    int pl_segment_truncate_to(pl_segment *s, int64_t offset, int64_t *cut_offset)
    int pl_segment_seal(pl_segment *s)
    int pl_segment_unseal(pl_segment *s)
    int pl_segment_pin(pl_segment *s)
    int pl_segment_pin_range(pl_segment *s, int64_t end)
    int pl_segment_detach(pl_segment *s, int trim_indexes)
    int pl_segment_refresh(pl_segment *s, int from_start, int drop_indexes, pl_segment_info *out)
    int pl_segment_sync_begin(pl_segment *s, int *fd, int64_t *upto)
    void pl_segment_sync_done(pl_segment *s, int64_t upto)
    void pl_segment_unpin(pl_segment *s)
    int64_t pl_segment_pins(const pl_segment *s)
    int64_t pl_segment_base_offset(const pl_segment *s)
    int pl_segment_log_fd(const pl_segment *s)
    void pl_segment_index_fds(const pl_segment *s, int *offset_fd, int *time_fd)
    int64_t pl_segment_size(const pl_segment *s)
    int64_t pl_segment_synced_size(const pl_segment *s)
    int64_t pl_segment_next_offset(const pl_segment *s)
    int64_t pl_segment_max_timestamp(const pl_segment *s)
    int64_t pl_segment_first_batch_timestamp(const pl_segment *s)
    const pl_index *pl_segment_offset_index(const pl_segment *s)
    const pl_index *pl_segment_time_index(const pl_segment *s)
