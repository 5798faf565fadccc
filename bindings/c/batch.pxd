from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t

cdef extern from "batch.h" nogil:
    # The header layout, mirrored from batch.h (tests/test_batch_layout.py checks
    # the names and values against it and against pylog/protocol/batch_layout.py).
    enum:
        PL_BATCH_BASE_OFFSET_OFFSET
        PL_BATCH_LENGTH_OFFSET
        PL_BATCH_PARTITION_LEADER_EPOCH_OFFSET
        PL_BATCH_MAGIC_OFFSET
        PL_BATCH_CRC_OFFSET
        PL_BATCH_ATTRIBUTES_OFFSET
        PL_BATCH_LAST_OFFSET_DELTA_OFFSET
        PL_BATCH_BASE_TIMESTAMP_OFFSET
        PL_BATCH_MAX_TIMESTAMP_OFFSET
        PL_BATCH_PRODUCER_ID_OFFSET
        PL_BATCH_PRODUCER_EPOCH_OFFSET
        PL_BATCH_BASE_SEQUENCE_OFFSET
        PL_BATCH_RECORDS_COUNT_OFFSET
        PL_BATCH_RECORDS_OFFSET
        PL_BATCH_MAGIC_END
        PL_BATCH_MIN_LENGTH
        PL_BATCH_HEADER_SIZE
        PL_BATCH_LOG_OVERHEAD
        PL_BATCH_CRC_START
        PL_BATCH_MAGIC
        PL_ATTR_COMPRESSION_MASK
        PL_ATTR_LOG_APPEND_TIME
        PL_ATTR_TRANSACTIONAL
        PL_ATTR_CONTROL
    ctypedef struct pl_batch_header:
        int64_t base_offset
        int32_t batch_length
        int32_t partition_leader_epoch
        int8_t magic
        uint32_t crc
        int16_t attributes
        int32_t last_offset_delta
        int64_t base_timestamp
        int64_t max_timestamp
        int64_t producer_id
        int16_t producer_epoch
        int32_t base_sequence
        int32_t records_count
    int pl_batch_parse_header(const uint8_t *buf, size_t len, pl_batch_header *out)
    int pl_batch_validate(const uint8_t *buf, size_t len, pl_batch_header *out)
    void pl_batch_set_base_offset(uint8_t *batch, int64_t base_offset)
    void pl_batch_set_leader_epoch(uint8_t *batch, int32_t leader_epoch)
    ctypedef struct pl_batches_info:
        size_t valid_bytes
        int64_t batches
        int64_t records
        int64_t first_offset
        int64_t last_offset
        int64_t max_timestamp
        int64_t offset_of_max_timestamp
        int stop_rc
    int pl_batches_scan(const uint8_t *buf, size_t len, int check_crc, pl_batches_info *out)
    int pl_batches_assign_offsets(uint8_t *buf, size_t len, int64_t next_offset, int32_t leader_epoch,
                                  int allow_control, pl_batches_info *out)
    int pl_batches_assign_offsets_crc(uint8_t *buf, size_t len, int64_t next_offset, int32_t leader_epoch,
                                      int allow_control, int check_crc, pl_batches_info *out)
    ctypedef struct pl_header_in:
        const uint8_t *key
        int32_t key_len
        const uint8_t *value
        int32_t value_len
    ctypedef struct pl_record_in:
        const uint8_t *key
        int32_t key_len
        const uint8_t *value
        int32_t value_len
        int64_t timestamp_delta
        const pl_header_in *headers
        int32_t header_count
        size_t body_size
    size_t pl_records_size(pl_record_in *recs, size_t n)
    size_t pl_records_encode(uint8_t *out, const pl_record_in *recs, size_t n)
    void pl_batch_write_header(uint8_t *out, const pl_batch_header *h)
    void pl_batch_seal(uint8_t *batch, size_t total_len)
    int pl_batches_set_log_append_time(uint8_t *buf, size_t len, int64_t now_ms)
    int pl_records_prefix(const uint8_t *buf, size_t len, int32_t count, int32_t keep, int64_t base_timestamp,
                          size_t *prefix_len, int64_t *max_timestamp)
    ctypedef struct pl_record_out:
        int64_t timestamp_delta
        int32_t offset_delta
        int32_t key_pos, key_len
        int32_t value_pos, value_len
        int32_t headers_pos
        int32_t header_count
    int pl_records_decode(const uint8_t *buf, size_t len, int32_t count, pl_record_out *out,
                          int32_t *decoded)
    ctypedef struct pl_header_out:
        int32_t key_pos, key_len
        int32_t value_pos, value_len
    int pl_records_positions(const uint8_t *buf, size_t len, int32_t count, int32_t *starts)
    int pl_headers_decode(const uint8_t *buf, size_t len, int32_t pos, int32_t count, pl_header_out *out)
