/*
 * cleaner.h: the hot parts of log compaction (Kafka's Cleaner and
 * SkimpyOffsetMap; KAFKA-NOTES §7): the key -> latest offset map, and the
 * filtered copy of a segment, batch by batch.
 *
 * Offset map: open addressing (linear probing) over one anonymous mapping of
 * 16-byte slots, each the 64-bit xxhash of a key (0 means empty; a hash of 0
 * is stored as 1) and the key's latest offset. Kafka's map spends 24 bytes a
 * slot (MD5 + offset). Two keys whose 64-bit hashes collide count as one key,
 * as two MD5-colliding keys do in Kafka: at a million keys a cleaning meets
 * such a pair with odds near 3e-8. The map takes new keys until
 * entries = slots * load_factor (log.cleaner.io.buffer.load.factor, 0.9).
 *
 * Walks (map building and filtering) go over whole stored batches in a
 * caller's buffer (a segment's mapping). Batches whose records are compressed
 * stop a walk with PL_CLEAN_INFLATE: the caller inflates the records section
 * (the codecs are Python's), hands it back, and goes on: per batch, never per
 * record. Transaction state (aborted transactions from the .txnindex files,
 * markers) and the producers whose last batch must stay (as an empty batch
 * when its records go) are kept in the pl_cleaner context, following Kafka's
 * CleanedTransactionMetadata and its RETAIN_EMPTY rule.
 *
 * Thread-safety: none; one cleaning owns its map and context. No call takes
 * a lock or makes a system call except map creation and freeing.
 */
#ifndef PL_CLEANER_H
#define PL_CLEANER_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"

#define PL_OFFSET_MAP_SLOT_BYTES 16

typedef struct pl_offset_map {
    uint64_t *slots;       /* 2 words a slot: hash, offset */
    size_t mapped_bytes;
    int64_t nslots;
    int64_t entries;
    int64_t max_entries;   /* nslots * load factor, at least 1 */
    int64_t latest_offset; /* the last offset the map accounts for; -1 when empty */
    int64_t lookups, probes;
} pl_offset_map;

/* Size the map from a memory bound (log.cleaner.dedupe.buffer.size).
 * @return PL_OK, PL_EINVAL (fewer than 1 slot, load factor outside (0, 1]),
 *   PL_ENOMEM (the mapping failed). */
int pl_offset_map_init(pl_offset_map *m, int64_t memory_bytes, double load_factor);
void pl_offset_map_free(pl_offset_map *m);
/* Forget every entry (the pages go back to the OS). */
void pl_offset_map_clear(pl_offset_map *m);
/* The hash the map keys records by (xxhash64, seed 0; 0 mapped to 1). */
uint64_t pl_offset_map_hash(const uint8_t *key, size_t len);
/* Put (hash, offset), overwriting the key's offset. @return PL_OK, or
 * PL_EFULL when the key is new and the map holds max_entries already. */
int pl_offset_map_put(pl_offset_map *m, uint64_t hash, int64_t offset);
/* The key's offset, or -1. */
int64_t pl_offset_map_get(pl_offset_map *m, uint64_t hash);

/* Walk results (not errors). */
enum {
    PL_CLEAN_DONE = 0,     /* the walk reached the end of the buffer */
    PL_CLEAN_FULL = 1,     /* map building: the map is full; latest_offset says how far it got */
    PL_CLEAN_INFLATE = 2,  /* a compressed batch needs its records inflated (pl_cleaner_pending) */
    PL_CLEAN_OUT_FULL = 3, /* filtering: the output buffer has no room for the next batch */
};

/* What pl_cleaner_filter_inflated decided for a compressed batch. */
enum {
    PL_KEEP_ORIGINAL = 0, /* every record stays: copy the stored batch as it is */
    PL_KEEP_REENCODE = 1, /* the retained records are in out (uncompressed): compress them, then seal */
    PL_KEEP_EMPTY = 2,    /* an empty batch (header only) was written to out */
    PL_KEEP_NOTHING = 3,  /* the batch goes */
};

typedef struct pl_cleaner pl_cleaner;

typedef struct pl_cleaner_stats {
    int64_t map_records;      /* records read building the map */
    int64_t map_bytes;        /* bytes of batches walked building the map */
    int64_t records_read;     /* records read filtering */
    int64_t records_kept;
    int64_t bytes_read;       /* bytes of batches walked filtering */
    int64_t bytes_written;
    int64_t batches_copied;   /* kept byte for byte */
    int64_t batches_rewritten;
    int64_t batches_emptied;  /* kept as a header for producer state or the round's last offset */
    int64_t batches_dropped;
    int64_t invalid_records;  /* keyless records below the map's latest offset (dropped) */
    /* the earliest horizon among the kept batches that still hold something it
     * removes (a tombstone, or a marker), -1 none: from then on a round with
     * nothing new to map can remove something */
    int64_t earliest_delete_horizon;
} pl_cleaner_stats;

/* now_ms: the cleaning's time (tombstone and marker horizons are compared to it);
 * delete_retention_ms: delete.retention.ms; upper_bound: the round's first
 * uncleanable offset: the map takes records below it, and the filtering keeps
 * the batch ending just below it, empty if need be (pl_cleaner_set_upper_bound
 * moves that second bound alone). */
int pl_cleaner_new(pl_cleaner **out, int64_t now_ms, int64_t delete_retention_ms, int64_t upper_bound);
void pl_cleaner_free(pl_cleaner *c);
/* The round's upper bound once known (after the map is built). */
void pl_cleaner_set_upper_bound(pl_cleaner *c, int64_t upper_bound);
void pl_cleaner_get_stats(const pl_cleaner *c, pl_cleaner_stats *out);

/* Producers: note the last batch of each producer id over whole batches in
 * buf[0,len) (headers only; call for every segment of the log in order).
 * A batch of a producer is kept (empty if need be) when it is that producer's
 * last data batch, or, for a producer with no data batch, a marker of its
 * last epoch (Kafka keeps them for the producer's sequence and epoch).
 * @return PL_OK, PL_ENOMEM, or the header error where the walk stopped. */
int pl_cleaner_note_producers(pl_cleaner *c, const uint8_t *buf, size_t len);
/* Or set them from an owner that knows which producers are active:
 * last_data_offset -1 when the producer's last entry is a marker. */
int pl_cleaner_set_producer(pl_cleaner *c, int64_t producer_id, int64_t last_data_offset, int16_t epoch);

/* Aborted transactions (producer_id, first_offset, last_offset) triples, n of
 * them, any order; the context keeps its own sorted copy. Entry i keeps its
 * number i (pl_cleaner_retained_aborted reports them by it). */
int pl_cleaner_set_aborted(pl_cleaner *c, const int64_t *triples, size_t n);
/* Start a pass (map building, then filtering) over the transactions anew. */
void pl_cleaner_reset_txns(pl_cleaner *c);

/* Map building over whole batches in buf[0,len) from *pos, adding keys of
 * records at or past start_offset (control batches and aborted transactions
 * add none). *status: DONE, FULL or INFLATE (then inflate the pending batch's
 * records and call pl_cleaner_map_inflated; *pos is already past it).
 * @return PL_OK or PL_ECORRUPT / PL_ETRUNCATED / PL_EMAGIC at *pos. */
int pl_cleaner_map_walk(pl_cleaner *c, pl_offset_map *m, const uint8_t *buf, size_t len, size_t *pos,
                        int64_t start_offset, int *status);
int pl_cleaner_map_inflated(pl_cleaner *c, pl_offset_map *m, const uint8_t *records, size_t len,
                            int *status);

/* The compressed batch a walk stopped at: its position in the walked buffer,
 * total size and codec (attributes bits 0-2). */
void pl_cleaner_pending(const pl_cleaner *c, int64_t *position, int64_t *total, int *codec);

/* Filtering: copy the batches of buf[0,len) from *pos that keep records (or
 * must stay empty) into out[*out_len, out_cap), moving both positions.
 * *status: DONE, OUT_FULL (write out what is there, or give a larger buffer
 * when *out_len is 0: pl_cleaner_out_needed says how large), or INFLATE (then
 * pl_cleaner_filter_inflated on the pending batch's inflated records).
 * @return PL_OK or a header error at *pos. */
int pl_cleaner_filter_walk(pl_cleaner *c, pl_offset_map *m, const uint8_t *buf, size_t len, size_t *pos,
                           uint8_t *out, size_t out_cap, size_t *out_len, int *status);
size_t pl_cleaner_out_needed(const pl_cleaner *c);

/* The pending compressed batch's records, inflated, filtered: *decision says
 * what to do (enum above). For PL_KEEP_REENCODE the retained records section
 * (uncompressed) is in out[0, *out_len); compress it with the batch's codec
 * and call pl_cleaner_seal_pending. For PL_KEEP_EMPTY the header is in out.
 * out must hold len + 10 bytes a record + 61. @return PL_OK, PL_ECORRUPT. */
int pl_cleaner_filter_inflated(pl_cleaner *c, pl_offset_map *m, const uint8_t *records, size_t len,
                               uint8_t *out, size_t out_cap, size_t *out_len, int *decision);
/* Write the pending batch's new header and the compressed records into out,
 * with its length and CRC. @return PL_OK or PL_EINVAL (out too small). */
int pl_cleaner_seal_pending(pl_cleaner *c, const uint8_t *compressed, size_t len, uint8_t *out, size_t out_cap,
                            size_t *out_len);

/* Aborted transactions (by their number in pl_cleaner_set_aborted) whose
 * ABORT marker the filtering kept with records of theirs seen: they belong in
 * the cleaned segment's .txnindex. Taken (and forgotten) by each call. */
size_t pl_cleaner_take_retained_aborted(pl_cleaner *c, int64_t *out, size_t cap);

#endif
