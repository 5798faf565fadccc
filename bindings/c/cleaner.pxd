from libc.stdint cimport int16_t, int64_t, uint8_t, uint64_t

cdef extern from "cleaner.h" nogil:
    enum:
        PL_OFFSET_MAP_SLOT_BYTES
        PL_CLEAN_DONE
        PL_CLEAN_FULL
        PL_CLEAN_INFLATE
        PL_CLEAN_OUT_FULL
        PL_KEEP_ORIGINAL
        PL_KEEP_REENCODE
        PL_KEEP_EMPTY
        PL_KEEP_NOTHING
    ctypedef struct pl_offset_map:
        uint64_t *slots
        size_t mapped_bytes
        int64_t nslots
        int64_t entries
        int64_t max_entries
        int64_t latest_offset
        int64_t lookups
        int64_t probes
    int pl_offset_map_init(pl_offset_map *m, int64_t memory_bytes, double load_factor)
    void pl_offset_map_free(pl_offset_map *m)
    void pl_offset_map_clear(pl_offset_map *m)
    uint64_t pl_offset_map_hash(const uint8_t *key, size_t len)
    int pl_offset_map_put(pl_offset_map *m, uint64_t hash, int64_t offset)
    int64_t pl_offset_map_get(pl_offset_map *m, uint64_t hash)

    ctypedef struct pl_cleaner:
        pass
    ctypedef struct pl_cleaner_stats:
        int64_t map_records
        int64_t map_bytes
        int64_t records_read
        int64_t records_kept
        int64_t bytes_read
        int64_t bytes_written
        int64_t batches_copied
        int64_t batches_rewritten
        int64_t batches_emptied
        int64_t batches_dropped
        int64_t invalid_records
        int64_t earliest_delete_horizon
    int pl_cleaner_new(pl_cleaner **out, int64_t now_ms, int64_t delete_retention_ms, int64_t upper_bound)
    void pl_cleaner_free(pl_cleaner *c)
    void pl_cleaner_set_upper_bound(pl_cleaner *c, int64_t upper_bound)
    void pl_cleaner_get_stats(const pl_cleaner *c, pl_cleaner_stats *out)
    int pl_cleaner_note_producers(pl_cleaner *c, const uint8_t *buf, size_t len)
    int pl_cleaner_set_producer(pl_cleaner *c, int64_t producer_id, int64_t last_data_offset, int16_t epoch)
    int pl_cleaner_set_aborted(pl_cleaner *c, const int64_t *triples, size_t n)
    void pl_cleaner_reset_txns(pl_cleaner *c)
    int pl_cleaner_map_walk(pl_cleaner *c, pl_offset_map *m, const uint8_t *buf, size_t len, size_t *pos,
                            int64_t start_offset, int *status)
    int pl_cleaner_map_inflated(pl_cleaner *c, pl_offset_map *m, const uint8_t *records, size_t len,
                                int *status)
    void pl_cleaner_pending(const pl_cleaner *c, int64_t *position, int64_t *total, int *codec)
    int pl_cleaner_filter_walk(pl_cleaner *c, pl_offset_map *m, const uint8_t *buf, size_t len, size_t *pos,
                               uint8_t *out, size_t out_cap, size_t *out_len, int *status)
    size_t pl_cleaner_out_needed(const pl_cleaner *c)
    int pl_cleaner_filter_inflated(pl_cleaner *c, pl_offset_map *m, const uint8_t *records, size_t len,
                                   uint8_t *out, size_t out_cap, size_t *out_len, int *decision)
    int pl_cleaner_seal_pending(pl_cleaner *c, const uint8_t *compressed, size_t len, uint8_t *out,
                                size_t out_cap, size_t *out_len)
    size_t pl_cleaner_take_retained_aborted(pl_cleaner *c, int64_t *out, size_t cap)

cdef extern from "xxhash64.h" nogil:
    uint64_t pl_xxhash64(const void *data, size_t len, uint64_t seed)
