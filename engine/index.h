/*
 * index.h: Kafka's sparse, mmap'ed segment indexes (KAFKA-NOTES §1.2-1.4).
 *
 *   .index      8-byte entries:  relative_offset int32 | position int32   (big-endian)
 *   .timeindex  12-byte entries: timestamp int64 | relative_offset int32  (big-endian)
 *
 * relative_offset = offset - base_offset of the segment; it stays private to
 * this file: every function here takes and returns absolute int64 offsets.
 * A writable index file is preallocated to max_bytes (rounded down to whole
 * entries) and mapped; pl_index_close(trim=1) cuts it to the valid entries, as
 * Kafka's trimToValidSize. Reopening an untrimmed file (after a crash) drops
 * trailing all-zero entries; pl_index_check() finds anything else that is wrong
 * and the caller rebuilds the index from the .log.
 *
 * Offset-index offsets and positions are strictly increasing. Time-index
 * timestamps are strictly increasing (an entry is added only when the maximum
 * timestamp grew) and their offsets never decrease (Kafka allows a repeat).
 * Lookups are floor lookups: an interpolation guess, then a galloping and a
 * binary search (index.c says why), so they touch few entries and few pages.
 *
 * Thread-safety: none; the owner serialises access.
 */
#ifndef PL_INDEX_H
#define PL_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct pl_index pl_index;

enum { PL_INDEX_OFFSET = 1, PL_INDEX_TIME = 2 };
#define PL_OFFSET_ENTRY_SIZE 8
#define PL_TIME_ENTRY_SIZE 12

/* Open (creating if absent) the index at path. When writable, extend the file to
 * max_bytes and map that much; else map the file as it is, or, with max_bytes
 * < 0 (another process's active segment, whose index it trims at its roll),
 * leave it unread: no entries.
 * @return PL_OK, PL_EIO (errno), PL_ENOMEM, PL_EINVAL. */
int pl_index_open(pl_index **out, const char *path, int kind, int64_t base_offset, int64_t max_bytes,
                  int writable);

/* Unmap and close; with trim (and writable) first cut the file to the valid
 * entries. Frees ix even when an error is returned. */
int pl_index_close(pl_index *ix, int trim);

/* Make sure the file has disk blocks for n entries. The file is sparse (set by
 * ftruncate) and written through a shared mapping, where a full disk would show
 * up as SIGBUS on the first store to a new page; allocating ahead (fallocate, a
 * page or more at a time) turns that into PL_ENOSPC before anything is written.
 * Appends below do this themselves; a caller that must not fail halfway (the
 * segment, before it writes a batch) calls it first. @return PL_OK, PL_ENOSPC,
 * PL_EFULL (n is past the capacity), PL_EIO. */
int pl_index_reserve(pl_index *ix, int64_t n);

int64_t pl_index_entries(const pl_index *ix);
int64_t pl_index_max_entries(const pl_index *ix);
int pl_index_is_full(const pl_index *ix);
int pl_index_kind(const pl_index *ix);
/* The mapped entries (entries * entry size bytes are valid). */
const uint8_t *pl_index_data(const pl_index *ix);

/* Offset index: add (offset, position). @return PL_OK; PL_EFULL; PL_EOVERFLOW when
 * offset - base does not fit int32; PL_EINVAL when not strictly increasing. */
int pl_offset_index_append(pl_index *ix, int64_t offset, int64_t position);

/* Greatest entry with offset <= target; (base_offset, 0) when there is none. */
void pl_offset_index_lookup(const pl_index *ix, int64_t target, int64_t *offset, int64_t *position);

/* pl_offset_index_lookup, and also the entry after the floor: (-1, -1) when there
 * is none. Kafka's entries name the LAST offset of a batch set, so the floor
 * usually points at the set before the target's; the next entry starts the set
 * that holds the target whenever next_offset >= target and no unindexed batch
 * lies between (callers check the batch's base offset). next_slot is that
 * entry's number, a stable name for the batch until the index is truncated. */
void pl_offset_index_lookup2(const pl_index *ix, int64_t target, int64_t *offset, int64_t *position,
                             int64_t *next_offset, int64_t *next_position, int64_t *next_slot);

/* Time index: add (timestamp, offset) when timestamp is greater than the last
 * entry's (otherwise nothing is added and PL_OK returned). @return as above. */
int pl_time_index_append(pl_index *ix, int64_t timestamp, int64_t offset);

/* Greatest entry with timestamp <= target; (-1, base_offset) when there is none. */
void pl_time_index_lookup(const pl_index *ix, int64_t target, int64_t *timestamp, int64_t *offset);

/* Entry i as absolute values: (offset, position) or (timestamp, offset). */
int pl_index_entry(const pl_index *ix, int64_t i, int64_t *a, int64_t *b);

/* Drop entries whose offset >= offset. */
void pl_index_truncate_to_offset(pl_index *ix, int64_t offset);
/* Drop every entry. */
void pl_index_reset(pl_index *ix);

/* Entries ordered and within the segment: PL_OK or PL_ECORRUPT. */
int pl_index_check(const pl_index *ix);

/* msync the mapped entries. */
int pl_index_sync(pl_index *ix);
/* The index file's descriptor (valid until close). */
int pl_index_fd(const pl_index *ix);

/* Cut the file to the valid entries and accept no more appends (the segment
 * became inactive), or grow it back to max_bytes (it became active again). */
int pl_index_trim(pl_index *ix);
int pl_index_extend(pl_index *ix, int64_t max_bytes);

#endif
